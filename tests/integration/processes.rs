//! The processes around a worker: what its test commands leave behind when it dies, what a
//! JUnit report may not hide, and a log pipe nobody reads.

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::process::Stdio;
use std::time::Duration;

use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use ciq::exit_code::ExitCode;
use ciq_testkit::{
    Proc, RedisServer, Scratch, ciq, results, wait_until, with_command, worker_args,
};

const LONG: Duration = Duration::from_secs(120);

/// Writes an executable shell script `name` into `scratch`.
fn script(scratch: &Scratch, name: &str, body: &str) -> String {
    let path = scratch.path(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::process::Command::new("chmod")
        .arg("+x")
        .arg(&path)
        .status()
        .unwrap();
    path.to_string_lossy().into_owned()
}

/// Regression: a batch command that wrote a JUnit report saying every test passed and then
/// crashed, was killed, exited 1 or timed out was `6 tests: 6 passed`, green, locally and
/// through Redis.
#[test]
fn a_passing_junit_report_never_hides_a_bad_end() {
    let server = RedisServer::start();
    let scratch = Scratch::new();
    let list = scratch.tests(&(1..=6).map(|n| format!("t{n}")).collect::<Vec<_>>());
    for (at, (end, said)) in [
        ("kill -SEGV $$", "killed by signal 11"),
        ("kill -TERM $$", "killed by signal 15"),
        ("exit 1", "exit code 1"),
        // A batch of 3 gets its tests' limits added up.
        ("sleep 30", "timed out after 3s"),
    ]
    .into_iter()
    .enumerate()
    {
        let command = script(
            &scratch,
            "junit-then-end",
            &format!(
                "{{ echo '<testsuite>'; for t in \"$@\"; do echo \"<testcase name='$t'/>\"; done; echo '</testsuite>'; }} > \"$CIQ_JUNIT_PATH\"\n{end}"
            ),
        );
        let common = [
            "--batch-size",
            "3",
            "--max-requeues",
            "0",
            "--test-timeout",
            "1s",
        ];
        let mut local: Vec<String> = ["run", "-j", "2", "--tests"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        local.push(list.to_string_lossy().into_owned());
        local.extend(common.iter().map(|s| (*s).to_owned()));
        local.extend(["--".to_owned(), command.clone()]);
        let mut distributed = worker_args(&server, &format!("junit-{at}"), "w1", &list);
        distributed.extend(common.iter().map(|s| (*s).to_owned()));
        distributed.extend(["--".to_owned(), command.clone()]);
        for args in [local, distributed] {
            let out = Proc::spawn("run", &scratch, &args).wait(LONG);
            assert_eq!(
                out.code,
                Some(ExitCode::TestsFailed.code()),
                "{end}: {}",
                out.both()
            );
            assert!(
                out.stdout.contains("6 tests: 0 passed, 6 errored"),
                "{end}: {}",
                out.both()
            );
            assert!(out.stdout.contains(said), "{end}: {}", out.both());
            assert!(
                out.stdout.contains("an error of the batch"),
                "{end}: {}",
                out.both()
            );
        }
    }
}

/// Regression: a SIGKILLed worker's test process kept running as an orphan. The test here is a
/// shell whose test is a grandchild, which a parent-death signal alone would not reach.
#[test]
fn a_killed_workers_tests_die_with_it() {
    let scratch = Scratch::new();
    let pids = scratch.path("pids");
    let command = script(
        &scratch,
        "long-test",
        &format!("sleep 300 &\necho $! >> '{}'\nwait", pids.display()),
    );
    let list = scratch.tests(&["long/one".to_owned(), "long/two".to_owned()]);
    let worker = Proc::spawn(
        "local",
        &scratch,
        &[
            "run".to_owned(),
            "-j".to_owned(),
            "2".to_owned(),
            "--tests".to_owned(),
            list.to_string_lossy().into_owned(),
            "--".to_owned(),
            command,
        ],
    );
    wait_until("both tests to start", LONG, || read_pids(&pids).len() == 2);
    worker.signal(Signal::SIGKILL);
    let _ = worker.wait(LONG);
    for pid in read_pids(&pids) {
        wait_until(
            &format!("test process {pid} to die"),
            Duration::from_secs(20),
            || kill(Pid::from_raw(pid), None).is_err(),
        );
    }
}

/// A test that starts a daemon of its own (a new session, so out of the test's process group)
/// does not outlive ciq either: not when ciq is SIGKILLed, not when it ends as it should.
#[test]
fn a_test_daemon_that_left_its_group_dies_with_ciq() {
    for kill_ciq in [true, false] {
        let scratch = Scratch::new();
        let pids = scratch.path("pids");
        let command = script(
            &scratch,
            "daemon-test",
            &format!(
                "setsid sleep 300 </dev/null >/dev/null 2>&1 &\necho $! >> '{}'\n{}",
                pids.display(),
                if kill_ciq { "sleep 300" } else { "exit 0" }
            ),
        );
        let list = scratch.tests(&["daemon/one".to_owned()]);
        let worker = Proc::spawn(
            "local",
            &scratch,
            &[
                "run".to_owned(),
                "-j".to_owned(),
                "1".to_owned(),
                "--tests".to_owned(),
                list.to_string_lossy().into_owned(),
                "--".to_owned(),
                command,
            ],
        );
        wait_until("the daemon to start", LONG, || read_pids(&pids).len() == 1);
        if kill_ciq {
            worker.signal(Signal::SIGKILL);
        }
        let out = worker.wait(LONG);
        if !kill_ciq {
            assert_eq!(out.code, Some(0), "{}", out.both());
        }
        for pid in read_pids(&pids) {
            wait_until(
                &format!("daemon {pid} to die (ciq killed: {kill_ciq})"),
                Duration::from_secs(20),
                || kill(Pid::from_raw(pid), None).is_err(),
            );
        }
    }
}

/// A pipe whose buffer is already full: whoever writes to it blocks until it is read.
fn stalled_pipe() -> (std::io::PipeReader, std::io::PipeWriter) {
    let (reader, mut writer) = std::io::pipe().unwrap();
    fcntl(writer.as_fd(), FcntlArg::F_SETPIPE_SZ(4096)).unwrap();
    fcntl(writer.as_fd(), FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).unwrap();
    while writer.write(&[b'.'; 512]).is_ok_and(|n| n > 0) {}
    fcntl(writer.as_fd(), FcntlArg::F_SETFL(OFlag::empty())).unwrap();
    (reader, writer)
}

/// Regression: per-test lines were written by the task that also sent heartbeats, so a CI log
/// pipe that nobody read for a while held the worker back and its test was taken over as lost.
/// Here the worker's stderr is a full pipe nobody reads until its test is done and recorded.
#[test]
fn a_stalled_log_pipe_never_holds_back_the_protocol() {
    let server = RedisServer::start();
    let mut scratch = Scratch::new();
    scratch.set_env("SLOW_SECONDS", "4");
    let build = "stalled-log";
    let list = scratch.tests(&["slow/long".to_owned()]);
    let (mut reader, writer) = stalled_pipe();
    // The command is dropped at once: it would keep the pipe's write end open.
    let mut stalled = ciq()
        .args(with_command(worker_args(&server, build, "stalled", &list)))
        .envs(scratch.env())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(writer))
        .spawn()
        .unwrap();
    wait_until("the long test to start", LONG, || {
        ciq_testkit::ran(&scratch, "stalled", "slow/long")
    });
    // Ready to take the test over, should the stalled worker's heartbeats stop.
    let watcher = Proc::spawn(
        "watcher",
        &scratch,
        &with_command(worker_args(&server, build, "watcher", &list)),
    );
    wait_until("the long test to be recorded", LONG, || {
        results(&server, build).contains_key("slow/long")
    });
    let mut drained = String::new();
    reader.read_to_string(&mut drained).unwrap();
    assert!(stalled.wait().unwrap().success(), "{drained}");
    assert!(drained.contains("PASS"), "{drained}");
    let watcher = watcher.wait(LONG);
    assert_eq!(
        watcher.code,
        Some(ExitCode::Success.code()),
        "{}",
        watcher.both()
    );
    assert!(
        watcher.stdout.contains("1 tests: 1 passed\n"),
        "taken over: {}",
        watcher.both()
    );
    assert_eq!(scratch.run_counts()["slow/long"], 1);
}

/// Regression (issue 22): a batch with a hanging test was errored whole at its time limit, and
/// its requeues batched the hanging test with innocent ones again, so innocent tests ended
/// ERRORED, with a share of the batch's time beside "timed out after" the whole batch's. The
/// tests a timed-out batch did not finish run again one per batch: only the hanging test is
/// errored, with the time its own run took; requeued, it is batched again, and still errors
/// alone.
#[test]
fn a_hanging_test_errors_alone_not_its_batch() {
    let scratch = Scratch::new();
    let mut tests: Vec<String> = (1..=8).map(|n| format!("pass/{n}")).collect();
    tests[2] = "hang/3".to_owned();
    let list = scratch.tests(&tests);
    let args: Vec<String> = [
        "run",
        "-j",
        "1",
        "--batch-size",
        "4",
        "--max-requeues",
        "1",
        "--test-timeout",
        "1s",
        "--tests",
        &list.to_string_lossy(),
        "--",
        &ciq_testkit::record_test(),
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let out = Proc::spawn("local", &scratch, &args).wait(LONG);
    assert_eq!(
        out.code,
        Some(ExitCode::TestsFailed.code()),
        "{}",
        out.both()
    );
    assert!(
        out.stdout.contains("8 tests: 7 passed, 1 errored"),
        "{}",
        out.both()
    );
    assert!(
        out.stdout.contains("ERRORED hang/3 (worker local-1, 1.0")
            && out
                .stdout
                .contains("[ciq: timed out after 1s; process group killed]"),
        "its own run's time and limit, not the batch's: {}",
        out.both()
    );
    assert!(!out.stdout.contains("after 4s"), "{}", out.both());
    assert!(
        out.stderr.contains(
            "a batch of 4 tests timed out after 4s; running the 4 it did not finish again, one per batch"
        ),
        "{}",
        out.both()
    );
    let errored: Vec<String> = ciq_testkit::test_lines(&out.stderr)
        .into_iter()
        .filter(|line| line.status == "ERROR" || line.status == "RETRY")
        .map(|line| line.test)
        .collect();
    assert_eq!(errored, ["hang/3", "hang/3"], "{}", out.both());
}

/// A batch command writing its JUnit report as it goes, killed at its limit: the tests the
/// report shows finished keep their outcomes (a failure stays a failure, run once); only those
/// it does not show run again, one per batch (through Redis here, as in a build).
#[test]
fn a_timed_out_batch_keeps_what_its_report_shows_finished() {
    let server = RedisServer::start();
    let scratch = Scratch::new();
    let command = script(
        &scratch,
        "junit-as-it-goes",
        "cases=''\nfor t in \"$@\"; do\n  echo \"$CIQ_WORKER $t\" >> \"$RECORD_TEST_DIR/runs.log\"\n  case \"$t\" in\n    hang/*) sleep 1000 ;;\n    fail/*) cases=\"$cases<testcase name='$t'><failure message='boom'/></testcase>\" ;;\n    *) cases=\"$cases<testcase name='$t'/>\" ;;\n  esac\n  echo \"<testsuite>$cases</testsuite>\" > \"$CIQ_JUNIT_PATH\"\ndone",
    );
    let tests: Vec<String> = ["pass/1", "fail/2", "hang/3", "pass/4"]
        .map(str::to_owned)
        .into();
    let list = scratch.tests(&tests);
    let mut args = worker_args(&server, "junit-timeout", "w1", &list);
    args.extend(
        [
            "--batch-size",
            "4",
            "--max-requeues",
            "0",
            "--test-timeout",
            "1s",
            "--",
            &command,
        ]
        .map(str::to_owned),
    );
    let out = Proc::spawn("w1", &scratch, &args).wait(LONG);
    assert_eq!(
        out.code,
        Some(ExitCode::TestsFailed.code()),
        "{}",
        out.both()
    );
    assert!(
        out.stdout
            .contains("4 tests: 2 passed, 1 failed, 1 errored"),
        "{}",
        out.both()
    );
    assert!(
        out.stderr.contains(
            "a batch of 4 tests timed out after 4s; running the 2 it did not finish again"
        ),
        "{}",
        out.both()
    );
    let counts = scratch.run_counts();
    let expected: Vec<(String, usize)> =
        [("fail/2", 1), ("hang/3", 2), ("pass/1", 1), ("pass/4", 1)]
            .map(|(test, n)| (test.to_owned(), n))
            .into();
    assert_eq!(counts.into_iter().collect::<Vec<_>>(), expected);
}

/// The process ids a test command wrote to `path`, one a line.
fn read_pids(path: &std::path::Path) -> Vec<i32> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}
