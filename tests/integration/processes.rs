//! The processes around a worker: what its test commands leave behind when it dies, what a
//! JUnit report may not hide, and a log pipe nobody reads.

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::process::Stdio;
use std::time::Duration;

use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

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
            assert_eq!(out.code, Some(1), "{end}: {}", out.both());
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
    let read_pids = || -> Vec<i32> {
        std::fs::read_to_string(&pids)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    };
    wait_until("both tests to start", LONG, || read_pids().len() == 2);
    worker.signal(Signal::SIGKILL);
    let _ = worker.wait(LONG);
    for pid in read_pids() {
        wait_until(
            &format!("test process {pid} to die"),
            Duration::from_secs(20),
            || kill(Pid::from_raw(pid), None).is_err(),
        );
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
    assert_eq!(watcher.code, Some(0), "{}", watcher.both());
    assert!(
        watcher.stdout.contains("1 tests: 1 passed\n"),
        "taken over: {}",
        watcher.both()
    );
    assert_eq!(scratch.run_counts()["slow/long"], 1);
}
