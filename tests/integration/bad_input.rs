//! Bad input: every case gets one clear message and its documented exit code, never a panic
//! or a hang (DESIGN "Bad input and failure").

use std::time::Duration;

use ciq::exit_code::ExitCode;
use ciq_testkit::{
    Output, Proc, RedisServer, Scratch, TestRedis, free_port, record_test, report_args,
    with_list_command, worker_args,
};

const WITHIN: Duration = Duration::from_secs(60);

fn ciq(scratch: &Scratch, args: &[&str]) -> Output {
    let args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
    Proc::spawn("ciq", scratch, &args).wait(WITHIN)
}

/// Runs the local mode on a list file holding `bytes`.
fn local_with_list(bytes: &[u8]) -> Output {
    let scratch = Scratch::new();
    let list = scratch.path("tests.txt");
    std::fs::write(&list, bytes).unwrap();
    let list = list.to_string_lossy().into_owned();
    ciq(
        &scratch,
        &["run", "-j", "2", "--tests", &list, "--", &record_test()],
    )
}

fn assert_fails(out: &Output, code: ExitCode, message: &str) {
    assert_eq!(out.code, Some(code.code()), "{}", out.both());
    assert!(
        out.stderr.contains(message),
        "expected `{message}`\n{}",
        out.both()
    );
    assert!(!out.stderr.contains("panicked"), "{}", out.both());
}

#[test]
fn malformed_test_lists_name_the_line() {
    assert_fails(&local_with_list(b""), ExitCode::Usage, "is empty");
    assert_fails(
        &local_with_list(b"a\n\nb\n"),
        ExitCode::Usage,
        "line 2: test id is blank",
    );
    assert_fails(
        &local_with_list(b"a\nb\0c\n"),
        ExitCode::Usage,
        "line 2: test id contains a NUL byte",
    );
    assert_fails(
        &local_with_list(b"a\rb\n"),
        ExitCode::Usage,
        "line 1: test id contains a line break",
    );
    assert_fails(
        &local_with_list(b"ok\nbad\xff\n"),
        ExitCode::Usage,
        "is not valid UTF-8 (line 2)",
    );
    let long = format!("ok\n{}\n", "x".repeat(5000));
    assert_fails(
        &local_with_list(long.as_bytes()),
        ExitCode::Usage,
        "line 2: test id is 5000 bytes long, over the limit of 4096",
    );
}

#[test]
fn missing_list_file_is_named() {
    let scratch = Scratch::new();
    let out = ciq(
        &scratch,
        &["run", "--tests", "/nonexistent/tests.txt", "--", "true"],
    );
    assert_fails(
        &out,
        ExitCode::Usage,
        "error: cannot read test list `/nonexistent/tests.txt`: No such file",
    );
}

#[test]
fn duplicate_ids_are_dropped_with_a_warning() {
    let out = local_with_list(b"pass/a\npass/b\npass/a\n");
    assert_eq!(out.code, Some(ExitCode::Success.code()), "{}", out.both());
    assert!(
        out.stderr
            .contains("warning: dropped 1 duplicate test id from the test list (first: `pass/a`)"),
        "{}",
        out.both()
    );
    assert!(out.stdout.contains("2 tests: 2 passed"), "{}", out.both());
}

#[test]
fn queue_url_must_parse() {
    let scratch = Scratch::new();
    for (url, reason) in [
        (
            "example.com:7000",
            "the scheme must be redis://, rediss://, unix://, redis+cluster:// or rediss+cluster://",
        ),
        (
            "redis://example.com:notaport/0",
            "invalid queue URL `redis://example.com:notaport/0`",
        ),
        (
            "redis+cluster://127.0.0.1:1/3",
            "a Redis Cluster has only database 0",
        ),
        (
            "redis+cluster://127.0.0.1:1,example.com:notaport",
            "invalid queue URL",
        ),
    ] {
        let out = ciq(
            &scratch,
            &[
                "run", "--queue", url, "--build", "b", "--worker", "w", "--tests", "-", "--",
                "true",
            ],
        );
        assert_fails(&out, ExitCode::Usage, reason);
        assert!(
            out.stderr.contains("(hint: use redis://HOST:PORT/DB"),
            "{}",
            out.both()
        );
    }
}

#[test]
fn database_number_out_of_range_is_bad_input() {
    let server = RedisServer::start();
    let scratch = Scratch::new();
    let url = format!("redis://127.0.0.1:{}/99", server.port);
    let out = ciq(&scratch, &["report", "--queue", &url, "--build", "b"]);
    assert_fails(
        &out,
        ExitCode::Usage,
        "the database number is out of range for this server",
    );
}

#[test]
fn unreachable_redis_is_an_infrastructure_error() {
    let scratch = Scratch::new();
    let url = format!("redis://127.0.0.1:{}/0", free_port());
    let list = scratch.tests(&["pass/a".to_owned()]);
    let out = ciq(
        &scratch,
        &[
            "run",
            "--queue",
            &url,
            "--build",
            "b",
            "--worker",
            "w",
            "--redis-timeout",
            "1s",
            "--tests",
            &list.to_string_lossy(),
            "--",
            "true",
        ],
    );
    assert_fails(
        &out,
        ExitCode::Infrastructure,
        &format!("error: cannot reach Redis at `{url}` (tried for "),
    );
    // Rounded for people (it once read `tried for 1s 559ms 64us 884ns`).
    let tried = out.stderr.split("(tried for ").nth(1).unwrap_or_default();
    let tried = tried.split(')').next().unwrap_or_default();
    let seconds = tried.strip_suffix('s').unwrap_or_default();
    assert!(
        seconds.parse::<f64>().is_ok_and(|s| s >= 1.0) && seconds.len() <= 4,
        "{tried}"
    );
    let out = ciq(
        &scratch,
        &[
            "report",
            "--queue",
            &url,
            "--build",
            "b",
            "--redis-timeout",
            "1s",
        ],
    );
    assert_fails(&out, ExitCode::Infrastructure, "cannot reach Redis");
}

/// Regression: `redis+cluster://` naming a single server (cluster support disabled) ended with
/// exit 5 and Redis's raw `ResponseError: This instance has cluster support disabled`: it is a
/// wrong URL (exit 2), and the line says which scheme a single server takes.
#[test]
fn a_cluster_url_naming_a_single_server_is_bad_input() {
    let server = RedisServer::start();
    let scratch = Scratch::new();
    let list = scratch.tests(&["pass/a".to_owned()]);
    let url = format!("redis+cluster://127.0.0.1:{}", server.port);
    let run = ciq(
        &scratch,
        &[
            "run",
            "--queue",
            &url,
            "--build",
            "b",
            "--worker",
            "w",
            "--tests",
            &list.to_string_lossy(),
            "--",
            "true",
        ],
    );
    let report = ciq(&scratch, &["report", "--queue", &url, "--build", "b"]);
    for out in [run, report] {
        assert_fails(
            &out,
            ExitCode::Usage,
            &format!(
                "`{url}` names a Redis Cluster (redis+cluster://), but the server has cluster support disabled\n(hint: for a single Redis server use redis://"
            ),
        );
        assert!(!out.stderr.contains("ResponseError"), "{}", out.both());
    }
}

#[test]
fn wrong_password_is_refused_and_never_printed() {
    let server = RedisServer::start_with_password("right-secret");
    let scratch = Scratch::new();
    let list = scratch.tests(&["pass/a".to_owned()]);
    for url in [
        format!("redis://:wrong-secret@127.0.0.1:{}/0", server.port),
        format!("redis://127.0.0.1:{}/0", server.port),
    ] {
        let out = ciq(
            &scratch,
            &[
                "run",
                "--queue",
                &url,
                "--build",
                "b",
                "--worker",
                "w",
                "--tests",
                &list.to_string_lossy(),
                "--",
                "true",
            ],
        );
        assert_fails(&out, ExitCode::Infrastructure, "refused the credentials");
        assert!(!out.stderr.contains("wrong-secret"), "{}", out.both());
    }
    // The right password works.
    let out = Proc::spawn(
        "w",
        &scratch,
        &ciq_testkit::with_command(worker_args(&server, "pw", "w", &list)),
    )
    .wait(WITHIN);
    assert_eq!(out.code, Some(ExitCode::Success.code()), "{}", out.both());
}

#[test]
fn missing_ids_name_their_flags() {
    let scratch = Scratch::new();
    let queue = ["--queue", "redis://127.0.0.1:1/0"];
    let cases: [(Vec<&str>, &str); 7] = [
        (
            [&queue[..], &["--tests", "-", "--", "true"]].concat(),
            "error: no build id: pass --build ID or set CIQ_BUILD",
        ),
        (
            [&queue[..], &["--build", "b", "--tests", "-", "--", "true"]].concat(),
            "error: no worker id: pass --worker ID or set CIQ_WORKER",
        ),
        (
            [
                &queue[..],
                &[
                    "--build", "b", "--worker", "w\t1", "--tests", "-", "--", "true",
                ],
            ]
            .concat(),
            "error: --worker (CIQ_WORKER, or the CI's worker id) \"w\\t1\" holds a tab or a line break",
        ),
        (vec!["--", "true"], "error: no test list: pass --tests FILE"),
        (
            vec!["--tests", "-"],
            "error: no test command: put it after `--`",
        ),
        (
            vec!["--heartbeat-interval", "20s", "--tests", "-", "--", "true"],
            "--heartbeat-interval (20s) must be at most half of --heartbeat-timeout (30s)",
        ),
        (
            vec!["--test-timeout", "soon", "--tests", "-", "--", "true"],
            "write e.g. 30s, 500ms, 15m or 2h",
        ),
    ];
    for (args, message) in cases {
        let out = ciq(&scratch, &[&["run"], &args[..]].concat());
        assert_fails(&out, ExitCode::Usage, message);
    }
    // Regression: a 100 KB worker id was accepted and printed on every line.
    let long = "w".repeat(100_000);
    let ids: [(&str, &str); 3] = [
        (
            "--worker",
            "--worker (CIQ_WORKER, or the CI's worker id) is 100000 bytes long; an id may be at most 256 bytes",
        ),
        (
            "--build",
            "--build (CIQ_BUILD, or the CI's build id) is 100000 bytes long",
        ),
        (
            "--namespace",
            "--namespace (CIQ_NAMESPACE) is 100000 bytes long",
        ),
    ];
    for (flag, message) in ids {
        let mut args = [
            "run",
            queue[0],
            queue[1],
            "--build",
            "b",
            "--worker",
            "w",
            "--namespace",
            "n",
            "--tests",
            "-",
            "--",
            "true",
        ];
        let at = args.iter().position(|arg| *arg == flag).unwrap();
        args[at + 1] = &long;
        let out = ciq(&scratch, &args);
        assert_fails(&out, ExitCode::Usage, message);
        assert!(out.stderr.len() < 1000, "{}", out.both());
    }
    let out = ciq(&scratch, &["report", "--queue", queue[1], "--build", &long]);
    assert_fails(&out, ExitCode::Usage, "is 100000 bytes long");
    let out = ciq(&scratch, &["report", "--build", "b"]);
    assert_fails(&out, ExitCode::Usage, "--queue <QUEUE>");
}

/// Regression: `--lock-ttl 1ms` was accepted and the build ended with "lost leader" (exit 4).
/// Every timing flag of the queue has a floor, and a heartbeat that cannot keep a worker or
/// its build's keys alive is refused: bad input, one line naming the floor.
#[test]
fn timing_flags_under_their_floor_are_refused() {
    let scratch = Scratch::new();
    let list = scratch.tests(&["pass/a".to_owned()]);
    let run = [
        "run",
        "--queue",
        "redis://127.0.0.1:1/0",
        "--build",
        "b",
        "--worker",
        "w",
        "--tests",
        &list.to_string_lossy(),
    ];
    let cases: [(&[&str], &str); 8] = [
        (
            &["--lock-ttl", "1ms"],
            "invalid value '1ms' for '--lock-ttl <LOCK_TTL>': must be at least 500ms (the leader renews its lock every third of it",
        ),
        (
            &["--heartbeat-interval", "10ms"],
            "for '--heartbeat-interval <HEARTBEAT_INTERVAL>': must be at least 100ms",
        ),
        (
            &[
                "--heartbeat-interval",
                "100ms",
                "--heartbeat-timeout",
                "300ms",
            ],
            "for '--heartbeat-timeout <HEARTBEAT_TIMEOUT>': must be at least 1s",
        ),
        (
            &["--redis-ttl", "500ms"],
            "for '--redis-ttl <REDIS_TTL>': must be at least 1s",
        ),
        (
            &["--redis-ttl", "4s"],
            "--redis-ttl (4s) must be at least twice --heartbeat-interval (5s)",
        ),
        (
            &["--redis-timeout", "100ms"],
            "for '--redis-timeout <REDIS_TIMEOUT>': must be at least 1s",
        ),
        (
            &["--queue-init-timeout", "1ms"],
            "for '--queue-init-timeout <QUEUE_INIT_TIMEOUT>': must be at least 1s",
        ),
        (&["--heartbeat-interval", "0"], "must be longer than zero"),
    ];
    for (flags, message) in cases {
        // Were the flags taken, the unreachable queue would end the run soon.
        let wait = if flags.contains(&"--redis-timeout") {
            &[][..]
        } else {
            &["--redis-timeout", "1s"][..]
        };
        let out = ciq(&scratch, &[&run[..], wait, flags, &["--", "true"]].concat());
        assert_fails(&out, ExitCode::Usage, message);
    }
    let report = ["report", "--queue", "redis://127.0.0.1:1/0", "--build", "b"];
    for (flags, message) in [
        (
            ["--report-timeout", "10ms"],
            "for '--report-timeout <REPORT_TIMEOUT>': must be at least 1s",
        ),
        (
            ["--redis-timeout", "10ms"],
            "for '--redis-timeout <REDIS_TIMEOUT>': must be at least 1s",
        ),
    ] {
        let out = ciq(&scratch, &[&report[..], &flags].concat());
        assert_fails(&out, ExitCode::Usage, message);
    }
    let out = ciq(
        &scratch,
        &[
            "flaky",
            "--queue",
            "redis://127.0.0.1:1/0",
            "--redis-timeout",
            "10ms",
        ],
    );
    assert_fails(&out, ExitCode::Usage, "must be at least 1s");
}

#[test]
fn missing_command_stops_the_worker_once() {
    let scratch = Scratch::new();
    let list = scratch.tests(&ciq_testkit::ids("pass", 5));
    let out = ciq(
        &scratch,
        &[
            "run",
            "-j",
            "3",
            "--tests",
            &list.to_string_lossy(),
            "--",
            "/nonexistent/run-tests",
        ],
    );
    assert_fails(
        &out,
        ExitCode::Usage,
        "command `/nonexistent/run-tests` not found",
    );
    assert_eq!(out.stderr.matches("not found").count(), 1, "{}", out.both());
    assert!(!out.stderr.contains("FAIL"), "{}", out.both());
}

#[test]
fn missing_command_on_one_worker_loses_no_test() {
    let server = RedisServer::start();
    let scratch = Scratch::new();
    let list = scratch.tests(&ciq_testkit::ids("pass", 5));
    let mut broken = worker_args(&server, "nocmd", "broken", &list);
    broken.extend(["--".to_owned(), "/nonexistent/run-tests".to_owned()]);
    let out = Proc::spawn("broken", &scratch, &broken).wait(WITHIN);
    assert_fails(
        &out,
        ExitCode::Usage,
        "command `/nonexistent/run-tests` not found",
    );
    assert!(
        out.stderr
            .contains("worker `broken` gave 1 test(s) back to the queue"),
        "{}",
        out.both()
    );
    // A healthy worker runs all five.
    let out = Proc::spawn(
        "healthy",
        &scratch,
        &ciq_testkit::with_command(worker_args(&server, "nocmd", "healthy", &list)),
    )
    .wait(WITHIN);
    assert_eq!(out.code, Some(ExitCode::Success.code()), "{}", out.both());
    assert!(out.stdout.contains("5 tests: 5 passed"), "{}", out.both());
}

#[test]
fn crashing_and_flooding_runners_are_contained() {
    let scratch = Scratch::new();
    let list = scratch.tests(&["crash".to_owned(), "flood".to_owned()]);
    let script = "case \"$1\" in crash) kill -SEGV $$ ;; flood) yes flooding | head -c 3000000; exit 1 ;; esac";
    let out = ciq(
        &scratch,
        &[
            "run",
            "-j",
            "2",
            "--max-requeues",
            "0",
            "--output-limit",
            "4096",
            "--tests",
            &list.to_string_lossy(),
            "--",
            "sh",
            "-c",
            script,
            "sh",
        ],
    );
    assert_eq!(
        out.code,
        Some(ExitCode::TestsFailed.code()),
        "{}",
        out.both()
    );
    assert!(out.stdout.contains("ERRORED crash"), "{}", out.both());
    assert!(
        out.stdout.contains("[ciq: killed by signal 11; crashed]"),
        "{}",
        out.both()
    );
    assert!(out.stdout.contains("FAILED flood"), "{}", out.both());
    assert!(
        out.stdout.contains("bytes of output cut here; 4096 kept]"),
        "{}",
        out.both()
    );
    assert!(
        out.stdout.len() < 20_000,
        "output is bounded: {} bytes",
        out.stdout.len()
    );
}

#[test]
fn a_leader_that_cannot_list_aborts_the_build_for_everyone() {
    let server = RedisServer::start();
    let scratch = Scratch::new();
    let list = scratch.tests(&["unused".to_owned()]);
    let args = |worker: &str| {
        let args = with_list_command(
            worker_args(&server, "nolist", worker, &list),
            "sh -c 'echo collection error >&2; exit 4'".to_owned(),
        );
        ciq_testkit::with_command(args)
    };
    let leader = Proc::spawn("leader", &scratch, &args("leader")).wait(WITHIN);
    assert_fails(
        &leader,
        ExitCode::Usage,
        "list command `sh -c 'echo collection error >&2; exit 4'` failed (exit code 4): collection error",
    );
    let follower = Proc::spawn("follower", &scratch, &args("follower")).wait(WITHIN);
    assert_fails(
        &follower,
        ExitCode::Usage,
        "build aborted by worker `leader`: list command",
    );
    let report = Proc::spawn("report", &scratch, &report_args(&server, "nolist")).wait(WITHIN);
    assert_fails(&report, ExitCode::Usage, "build aborted by worker `leader`");
}

/// Regression: an ACL user missing a permission ciq needs was told its credentials were
/// refused (with a password hint), or got a raw Lua error. Redis names what is missing
/// (NOPERM): ciq says it, and exits 5.
#[test]
fn a_redis_user_missing_a_permission_is_told_which() {
    let server = RedisServer::start();
    let mut conn = server.conn();
    for (user, rules, named) in [
        ("noeval", "~* &* +@all -evalsha -eval", "'evalsha' command"),
        ("nokeys", "~other:* &* +@all", "access one of the keys"),
        ("nopexpire", "~* &* +@all -pexpire", "PEXPIRE (in ciq's"),
    ] {
        redis::cmd("ACL")
            .arg("SETUSER")
            .arg(user)
            .arg("on")
            .arg(">secret")
            .arg(rules.split(' ').collect::<Vec<_>>())
            .exec(&mut conn)
            .unwrap();
        let scratch = Scratch::new();
        let list = scratch.tests(&["pass/a".to_owned()]);
        let url = format!("redis://{user}:secret@127.0.0.1:{}/0", server.port);
        let mut args = worker_args(&server, user, "w1", &list);
        args[2] = url;
        args.extend(["--".to_owned(), record_test()]);
        let out = Proc::spawn("worker", &scratch, &args).wait(WITHIN);
        assert_fails(&out, ExitCode::Infrastructure, "refused a command: NOPERM");
        assert!(out.stderr.contains(named), "{user}: {}", out.both());
        assert!(
            !out.stderr.contains("credentials") && !out.stderr.contains("script:"),
            "{user}: {}",
            out.both()
        );
        assert!(
            out.stderr.contains("Redis permissions"),
            "{user}: {}",
            out.both()
        );
    }
}

/// The README's least-privilege user (`ACL_RULE`) runs a whole build, its report and a retry.
#[test]
fn a_user_with_only_the_documented_permissions_runs_a_build() {
    let server = RedisServer::start();
    redis::cmd("ACL")
        .arg("SETUSER")
        .arg("ci")
        .arg("on")
        .arg(">secret")
        .arg(ciq::queue::redis::ACL_RULE.split(' ').collect::<Vec<_>>())
        .exec(&mut server.conn())
        .unwrap();
    let url = format!("redis://ci:secret@127.0.0.1:{}/0", server.port);
    let scratch = ciq_testkit::least_privilege_build(&server, &url, "least");
    let list = scratch.path("tests.txt");
    // A retry of the build needs no other permission.
    let mut args = worker_args(&server, "least", "w1", &list);
    args[2] = url;
    args.extend(["--retry", "--", &record_test()].map(str::to_owned));
    let out = Proc::spawn("retry", &scratch, &args).wait(WITHIN);
    assert_eq!(
        out.code,
        Some(ExitCode::TestsFailed.code()),
        "{}",
        out.both()
    );
    assert!(
        out.stderr.contains("its 1 failed test(s) run again"),
        "{}",
        out.both()
    );
}

/// A FIFO at `path` and a reader of it in a thread, which returns what was written once the
/// writer closed it (it opens without waiting for a writer, so ciq finds its reader there).
fn fifo_with_reader(path: &std::path::Path) -> std::thread::JoinHandle<Vec<u8>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let mut fifo = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(path)
        .unwrap();
    std::thread::spawn(move || {
        let mut got = Vec::new();
        let mut buf = [0; 65536];
        let deadline = std::time::Instant::now() + WITHIN;
        while std::time::Instant::now() < deadline {
            match fifo.read(&mut buf) {
                // No writer yet, or the writer closed it.
                Ok(0) if got.is_empty() => {}
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(err) => panic!("{err}"),
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        got
    })
}

fn is_char_device(path: &std::path::Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::symlink_metadata(path).is_ok_and(|meta| meta.file_type().is_char_device())
}

/// Regression: `--junit n1`, where `n1` is a character device (`mknod n1 c 1 3`, what
/// `/dev/null` is), replaced it with a regular file; on the real `/dev/null` as root that breaks
/// it for every process on the machine. Every output (run's and report's `--junit`, report's
/// `--json` and `--timings-out`) is written through a device or a FIFO, never renamed over it,
/// and a device that refuses the bytes (`/dev/full`) is a clear warning, not a success.
///
/// Making a device node needs root (as CI containers and this suite's CI run): when not root,
/// only the FIFO half runs, which covers the same writer, and the test says so.
#[test]
fn an_output_that_is_a_device_or_a_fifo_is_written_through_never_replaced() {
    let scratch = Scratch::new();
    let list = scratch.tests(&ciq_testkit::ids("pass", 3));
    let list = list.to_string_lossy().into_owned();
    let fifo = scratch.path("junit.fifo");
    let reader = fifo_with_reader(&fifo);
    let fifo_arg = fifo.to_string_lossy().into_owned();
    let out = ciq(
        &scratch,
        &[
            "run",
            "-j",
            "2",
            "--tests",
            &list,
            "--junit",
            &fifo_arg,
            "--",
            &record_test(),
        ],
    );
    assert_eq!(out.code, Some(ExitCode::Success.code()), "{}", out.both());
    assert!(
        out.stderr.contains("wrote the JUnit report of 3 tests"),
        "{}",
        out.both()
    );
    let got = String::from_utf8(reader.join().unwrap()).unwrap();
    assert!(got.contains("<testcase name=\"pass/0002\""), "{got}");
    use std::os::unix::fs::FileTypeExt;
    assert!(
        std::fs::symlink_metadata(&fifo)
            .unwrap()
            .file_type()
            .is_fifo()
    );

    if !nix::unistd::geteuid().is_root() {
        eprintln!("not root: device nodes cannot be made, only the FIFO was checked");
        return;
    }
    let device = |name: &str, minor: u64| {
        let path = scratch.path(name);
        nix::sys::stat::mknod(
            &path,
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::from_bits_truncate(0o666),
            nix::sys::stat::makedev(1, minor),
        )
        .unwrap();
        path
    };
    // Minor 3 is /dev/null's, 7 /dev/full's.
    let [null_run, null_junit, null_json, null_timings, full] = [
        device("n1", 3),
        device("n2", 3),
        device("n3", 3),
        device("n4", 3),
        device("full", 7),
    ];
    let out = ciq(
        &scratch,
        &[
            "run",
            "-j",
            "2",
            "--tests",
            &list,
            "--junit",
            &null_run.to_string_lossy(),
            "--timings-out",
            &null_timings.to_string_lossy(),
            "--",
            &record_test(),
        ],
    );
    assert_eq!(out.code, Some(ExitCode::Success.code()), "{}", out.both());
    assert!(
        out.stderr.contains("wrote the JUnit report of 3 tests"),
        "{}",
        out.both()
    );
    assert!(
        out.stderr.contains("wrote the durations of 3 tests"),
        "{}",
        out.both()
    );

    let server = RedisServer::start();
    let list = scratch.tests(&ciq_testkit::ids("pass", 5));
    let mut worker = worker_args(&server, "device", "w1", &list);
    worker.extend([
        "--junit".to_owned(),
        null_run.to_string_lossy().into_owned(),
    ]);
    let out = Proc::spawn("w1", &scratch, &ciq_testkit::with_command(worker)).wait(WITHIN);
    assert_eq!(out.code, Some(ExitCode::Success.code()), "{}", out.both());
    assert!(
        out.stderr.contains("wrote the JUnit report of 5 tests"),
        "{}",
        out.both()
    );
    let mut report = report_args(&server, "device");
    for (flag, path) in [
        ("--junit", &null_junit),
        ("--json", &null_json),
        ("--timings-out", &null_timings),
    ] {
        report.extend([flag.to_owned(), path.to_string_lossy().into_owned()]);
    }
    let out = Proc::spawn("report", &scratch, &report).wait(WITHIN);
    assert_eq!(out.code, Some(ExitCode::Success.code()), "{}", out.both());
    assert!(
        out.stderr.contains("wrote the JUnit report of 5 tests"),
        "{}",
        out.both()
    );
    assert!(
        out.stderr.contains("wrote the JSON report of 5 tests"),
        "{}",
        out.both()
    );
    assert!(
        out.stderr.contains("wrote the durations of 5 tests"),
        "{}",
        out.both()
    );
    for path in [&null_run, &null_junit, &null_json, &null_timings] {
        assert!(
            is_char_device(path),
            "{} is no longer a device",
            path.display()
        );
    }

    let mut report = report_args(&server, "device");
    report.extend(["--junit".to_owned(), full.to_string_lossy().into_owned()]);
    let out = Proc::spawn("report-full", &scratch, &report).wait(WITHIN);
    assert_eq!(
        out.code,
        Some(ExitCode::Success.code()),
        "the verdict stands: {}",
        out.both()
    );
    assert!(
        out.stderr.contains(&format!(
            "warning: cannot write `{}`: No space left on device",
            full.display()
        )),
        "{}",
        out.both()
    );
    assert!(
        !out.stderr.contains("wrote the JUnit report"),
        "{}",
        out.both()
    );
    assert!(is_char_device(&full));
}

/// Runs `args` and asserts it was refused at once, before anything ran: exit 2 and one line.
fn assert_refused_at_the_start(scratch: &Scratch, args: &[&str], message: &str) {
    let args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
    let out = Proc::spawn_in("refused", scratch, &args, &[], scratch.dir.path()).wait(WITHIN);
    assert_fails(&out, ExitCode::Usage, message);
    assert_eq!(out.stderr.lines().count(), 1, "one line: {}", out.both());
    assert!(scratch.runs().is_empty(), "nothing ran: {}", out.both());
}

/// Regression: `--junit DIR` or `--json DIR` was found only after the whole build (a warning,
/// no file). Every output path is checked at the start, before a report waits for the build or
/// a worker runs anything: a directory, a directory that does not exist, a place that cannot
/// take a file. The report here would otherwise wait 10 minutes for a leader.
#[test]
fn every_output_path_is_checked_before_the_build() {
    let server = RedisServer::start();
    let scratch = Scratch::new();
    let list = scratch.tests(&ciq_testkit::ids("pass", 2));
    let list = list.to_string_lossy().into_owned();
    let url = server.queue_url();
    std::fs::write(scratch.path("a-file"), "").unwrap();
    let report = |flag: &str, path: &str, message: &str| {
        let args = [
            "report",
            "--queue",
            &url,
            "--build",
            "never",
            "--queue-init-timeout",
            "10m",
            flag,
            path,
        ];
        assert_refused_at_the_start(&scratch, &args, message);
    };
    let dir = scratch.dir.path().to_string_lossy().into_owned();
    report(
        "--junit",
        &dir,
        &format!(
            "error: --junit (CIQ_REPORT_JUNIT) `{dir}` is a directory: give the path of a file"
        ),
    );
    report(
        "--json",
        ".",
        "error: --json (CIQ_REPORT_JSON) `.` is a directory",
    );
    report(
        "--timings-out",
        &dir,
        "error: --timings-out (CIQ_TIMINGS_OUT) `",
    );
    report(
        "--json",
        "no-such-dir/build.json",
        "error: --json (CIQ_REPORT_JSON) `no-such-dir/build.json`: the directory `no-such-dir` does not exist (create it first)",
    );
    report(
        "--junit",
        "a-file/build.xml",
        "error: --junit (CIQ_REPORT_JUNIT) `a-file/build.xml` cannot be written: Not a directory",
    );
    let run = |flag: &str, path: &str, message: &str| {
        let args = [
            "run",
            "--queue",
            &url,
            "--build",
            "b",
            "--worker",
            "w",
            "--tests",
            &list,
            flag,
            path,
            "--",
            &record_test(),
        ];
        assert_refused_at_the_start(&scratch, &args, message);
    };
    run("--junit", &dir, "error: --junit (CIQ_RUN_JUNIT) `");
    run("--order-log", &dir, "error: --order-log (CIQ_ORDER_LOG) `");
    run(
        "--junit",
        "no-such-dir/w.xml",
        "error: --junit (CIQ_RUN_JUNIT) `no-such-dir/w.xml`: the directory `no-such-dir` does not exist",
    );
    let local = [
        "run",
        "-j",
        "1",
        "--tests",
        &list,
        "--timings-out",
        "a-file/t.tsv",
        "--",
        &record_test(),
    ];
    assert_refused_at_the_start(
        &scratch,
        &local,
        "error: --timings-out (CIQ_LOCAL_TIMINGS_OUT) `a-file/t.tsv` cannot be written",
    );
    let leftovers: Vec<_> = std::fs::read_dir(scratch.dir.path())
        .unwrap()
        .flatten()
        .filter(|entry| entry.file_name().to_string_lossy().contains("partial"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// Regression: `--junit X --json X` wrote the JSON into the file the output said held the
/// JUnit report. Two outputs naming one file, however spelled (`./X` and `X`, a link to it),
/// are refused at the start.
#[test]
fn two_outputs_naming_one_file_are_refused() {
    let scratch = Scratch::new();
    let list = scratch.tests(&ciq_testkit::ids("pass", 2));
    let list = list.to_string_lossy().into_owned();
    let url = format!("redis://127.0.0.1:{}/0", free_port());
    let report = |first: (&str, &str), second: (&str, &str), message: &str| {
        let args = [
            "report", "--queue", &url, "--build", "b", first.0, first.1, second.0, second.1,
        ];
        assert_refused_at_the_start(&scratch, &args, message);
    };
    report(
        ("--junit", "X"),
        ("--json", "X"),
        "error: --junit (CIQ_REPORT_JUNIT) and --json (CIQ_REPORT_JSON) both name `X`: give each output a file of its own",
    );
    report(
        ("--junit", "./X"),
        ("--timings-out", "X"),
        "error: --junit (CIQ_REPORT_JUNIT) and --timings-out (CIQ_TIMINGS_OUT) both name `X`",
    );
    std::fs::write(scratch.path("build.xml"), "").unwrap();
    std::os::unix::fs::symlink(scratch.path("build.xml"), scratch.path("link.xml")).unwrap();
    report(
        ("--junit", "build.xml"),
        ("--json", "link.xml"),
        "both name `link.xml`",
    );
    let local = [
        "run",
        "-j",
        "1",
        "--tests",
        &list,
        "--junit",
        "out",
        "--order-log",
        "./out",
        "--",
        &record_test(),
    ];
    assert_refused_at_the_start(
        &scratch,
        &local,
        "error: --junit (CIQ_RUN_JUNIT) and --order-log (CIQ_ORDER_LOG) both name `./out`",
    );
    assert_eq!(
        std::fs::read_to_string(scratch.path("build.xml")).unwrap(),
        ""
    );
}
