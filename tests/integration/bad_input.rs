//! Bad input: every case gets one clear message and its documented exit code, never a panic
//! or a hang (DESIGN "Bad input and failure").

use std::time::Duration;

use ciq_testkit::{
    Output, Proc, RedisServer, Scratch, free_port, record_test, report_args, with_list_command,
    worker_args,
};

const USAGE: i32 = 2;
const INFRASTRUCTURE: i32 = 5;
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

fn assert_fails(out: &Output, code: i32, message: &str) {
    assert_eq!(out.code, Some(code), "{}", out.both());
    assert!(
        out.stderr.contains(message),
        "expected `{message}`\n{}",
        out.both()
    );
    assert!(!out.stderr.contains("panicked"), "{}", out.both());
}

#[test]
fn malformed_test_lists_name_the_line() {
    assert_fails(&local_with_list(b""), USAGE, "is empty");
    assert_fails(
        &local_with_list(b"a\n\nb\n"),
        USAGE,
        "line 2: test id is blank",
    );
    assert_fails(
        &local_with_list(b"a\nb\0c\n"),
        USAGE,
        "line 2: test id contains a NUL byte",
    );
    assert_fails(
        &local_with_list(b"a\rb\n"),
        USAGE,
        "line 1: test id contains a line break",
    );
    assert_fails(
        &local_with_list(b"ok\nbad\xff\n"),
        USAGE,
        "is not valid UTF-8 (line 2)",
    );
    let long = format!("ok\n{}\n", "x".repeat(5000));
    assert_fails(
        &local_with_list(long.as_bytes()),
        USAGE,
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
        USAGE,
        "error: cannot read test list `/nonexistent/tests.txt`: No such file",
    );
}

#[test]
fn duplicate_ids_are_dropped_with_a_warning() {
    let out = local_with_list(b"pass/a\npass/b\npass/a\n");
    assert_eq!(out.code, Some(0), "{}", out.both());
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
        assert_fails(&out, USAGE, reason);
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
        USAGE,
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
        INFRASTRUCTURE,
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
    assert_fails(&out, INFRASTRUCTURE, "cannot reach Redis");
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
            USAGE,
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
        assert_fails(&out, INFRASTRUCTURE, "refused the credentials");
        assert!(!out.stderr.contains("wrong-secret"), "{}", out.both());
    }
    // The right password works.
    let out = Proc::spawn(
        "w",
        &scratch,
        &ciq_testkit::with_command(worker_args(&server, "pw", "w", &list)),
    )
    .wait(WITHIN);
    assert_eq!(out.code, Some(0), "{}", out.both());
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
        assert_fails(&out, USAGE, message);
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
        assert_fails(&out, USAGE, message);
        assert!(out.stderr.len() < 1000, "{}", out.both());
    }
    let out = ciq(&scratch, &["report", "--queue", queue[1], "--build", &long]);
    assert_fails(&out, USAGE, "is 100000 bytes long");
    let out = ciq(&scratch, &["report", "--build", "b"]);
    assert_fails(&out, USAGE, "--queue <QUEUE>");
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
        assert_fails(&out, USAGE, message);
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
        assert_fails(&out, USAGE, message);
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
    assert_fails(&out, USAGE, "must be at least 1s");
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
    assert_fails(&out, USAGE, "command `/nonexistent/run-tests` not found");
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
    assert_fails(&out, USAGE, "command `/nonexistent/run-tests` not found");
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
    assert_eq!(out.code, Some(0), "{}", out.both());
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
    assert_eq!(out.code, Some(1), "{}", out.both());
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
        USAGE,
        "list command `sh -c 'echo collection error >&2; exit 4'` failed (exit code 4): collection error",
    );
    let follower = Proc::spawn("follower", &scratch, &args("follower")).wait(WITHIN);
    assert_fails(
        &follower,
        USAGE,
        "build aborted by worker `leader`: list command",
    );
    let report = Proc::spawn("report", &scratch, &report_args(&server, "nolist")).wait(WITHIN);
    assert_fails(&report, USAGE, "build aborted by worker `leader`");
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
        assert_fails(&out, INFRASTRUCTURE, "refused a command: NOPERM");
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
    assert_eq!(out.code, Some(1), "{}", out.both());
    assert!(
        out.stderr.contains("its 1 failed test(s) run again"),
        "{}",
        out.both()
    );
}
