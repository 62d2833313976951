//! `rediss://`: a real redis-server, and a real cluster, serving TLS with a certificate from a
//! CA made for the test, trusted through `SSL_CERT_FILE` as a CI machine with a private CA would.

use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ciq::exit_code::ExitCode;
use ciq_testkit::{Proc, RedisCluster, Scratch, free_port, ids, record_test, results};

const LONG: Duration = Duration::from_secs(120);

fn openssl(dir: &Path, args: &[&str]) {
    let status = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("openssl is installed");
    assert!(status.success(), "openssl {args:?}");
}

/// A CA, and a certificate it signs for 127.0.0.1.
fn make_certificates(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=ciq test CA",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    );
    std::fs::write(dir.join("ext.cnf"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ],
    );
}

struct TlsServer(Child);

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_tls_server(dir: &Path, port: u16) -> TlsServer {
    let child = Command::new("redis-server")
        .args([
            "--port",
            "0",
            "--tls-port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ])
        .args([
            "--tls-cert-file",
            "server.crt",
            "--tls-key-file",
            "server.key",
            "--tls-ca-cert-file",
            "ca.crt",
        ])
        .args(["--tls-auth-clients", "no", "--dir"])
        .arg(dir)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server");
    let mut server = TlsServer(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        // Never go on to another test's server on this port.
        if let Ok(Some(status)) = server.0.try_wait() {
            panic!("TLS redis-server exited at once ({status}): port {port} taken?");
        }
        assert!(Instant::now() < deadline, "TLS redis-server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    server
}

#[test]
fn rediss_urls_work_and_verify_the_certificate() {
    let scratch = Scratch::new();
    let certs = scratch.path("certs");
    std::fs::create_dir(&certs).unwrap();
    make_certificates(&certs);
    let port = free_port();
    let _server = start_tls_server(&certs, port);
    let url = format!("rediss://127.0.0.1:{port}/0");
    let list = scratch.tests(&ids("pass", 6));
    let ca = certs.join("ca.crt").to_string_lossy().into_owned();
    let args = |worker: &str| -> Vec<String> {
        [
            "run",
            "--queue",
            &url,
            "--build",
            "tls",
            "--worker",
            worker,
            "--redis-timeout",
            "2s",
            "--tests",
            &list.to_string_lossy(),
            "--",
            &record_test(),
        ]
        .map(str::to_owned)
        .into()
    };
    let trusted = [("SSL_CERT_FILE", ca.as_str())];
    let out = Proc::spawn_with_env("w1", &scratch, &args("w1"), &trusted).wait(LONG);
    assert_eq!(out.code, Some(ExitCode::Success.code()), "{}", out.both());
    assert!(out.stdout.contains("6 tests: 6 passed"), "{}", out.both());
    let report: Vec<String> = [
        "report",
        "--queue",
        &url,
        "--build",
        "tls",
        "--redis-timeout",
        "2s",
    ]
    .map(str::to_owned)
    .into();
    let out = Proc::spawn_with_env("report", &scratch, &report, &trusted).wait(LONG);
    assert_eq!(out.code, Some(ExitCode::Success.code()), "{}", out.both());
    // Without the CA the server is not trusted: an infrastructure error naming the cause.
    let out = Proc::spawn("untrusted", &scratch, &args("w2")).wait(LONG);
    assert_eq!(
        out.code,
        Some(ExitCode::Infrastructure.code()),
        "{}",
        out.both()
    );
    assert!(
        out.stderr.to_lowercase().contains("certificate"),
        "{}",
        out.both()
    );
}

/// `rediss+cluster://`: a cluster serving TLS, its nodes found by a TLS client on their TLS
/// ports; a report given one node's plain `rediss://` URL finds the cluster too.
#[test]
fn a_cluster_over_tls_runs_a_build() {
    let scratch = Scratch::new();
    let certs = scratch.path("certs");
    std::fs::create_dir(&certs).unwrap();
    make_certificates(&certs);
    let cluster = RedisCluster::start_tls(&certs);
    let url = cluster.tls_url();
    let list = scratch.tests(&ids("pass", 12));
    let ca = certs.join("ca.crt").to_string_lossy().into_owned();
    let trusted = [("SSL_CERT_FILE", ca.as_str())];
    let workers: Vec<Proc> = ["w1", "w2"]
        .iter()
        .map(|worker| {
            let args: Vec<String> = [
                "run",
                "--queue",
                &url,
                "--build",
                "tls-cluster",
                "--worker",
                worker,
                "--tests",
                &list.to_string_lossy(),
                "--",
                &record_test(),
            ]
            .map(str::to_owned)
            .into();
            Proc::spawn_with_env(worker, &scratch, &args, &trusted)
        })
        .collect();
    for worker in workers {
        let out = worker.wait(LONG);
        assert_eq!(out.code, Some(ExitCode::Success.code()), "{}", out.both());
        assert!(out.stdout.contains("12 tests: 12 passed"), "{}", out.both());
    }
    let one_node = url
        .split(',')
        .next()
        .unwrap()
        .replace("rediss+cluster://", "rediss://");
    let report: Vec<String> = ["report", "--queue", &one_node, "--build", "tls-cluster"]
        .map(str::to_owned)
        .into();
    let out = Proc::spawn_with_env("report", &scratch, &report, &trusted).wait(LONG);
    assert_eq!(out.code, Some(ExitCode::Success.code()), "{}", out.both());
    assert!(out.stdout.contains("12 tests: 12 passed"), "{}", out.both());
    scratch.assert_each_ran_once(12);
    assert_eq!(results(&cluster, "tls-cluster").len(), 12);
}
