//! Checks shared by several fault tests, and scenarios run against one server and against a
//! cluster alike.

use std::path::Path;
use std::time::Duration;

use ciq::exit_code::ExitCode;
use ciq::queue::redis::keys::BuildKeys;

use nix::sys::signal::Signal;

use crate::args::{report_args, with_command, with_list_command, worker_args};
use crate::inspect::{ready_generation, results, state};
use crate::output::{final_lines, statuses};
use crate::processes::{Output, Proc, wait_until};
use crate::redis_server::{RedisServer, TestRedis};
use crate::scratch::{Scratch, ids};

/// How long a scenario's processes may take.
const WITHIN: Duration = Duration::from_secs(120);

/// Starts a worker of `build` named after each of `names`, running the tests of `list` with
/// the fixture command.
pub fn spawn_workers(
    server: &impl TestRedis,
    scratch: &Scratch,
    build: &str,
    names: &[&str],
    list: &Path,
) -> Vec<Proc> {
    names
        .iter()
        .map(|name| {
            Proc::spawn(
                name,
                scratch,
                &with_command(worker_args(server, build, name, list)),
            )
        })
        .collect()
}

/// The leader of `build` hangs in its list command and is SIGKILLed there; the two workers
/// waiting for it elect one of them, which lists again, and they finish 30 passing tests, each
/// run once, with the report green.
pub fn leader_killed_during_its_list_command(server: &impl TestRedis, build: &str) {
    let scratch = Scratch::new();
    let list = scratch.tests(&ids("pass", 30));
    // The first leader's listing hangs; later leaders list at once.
    let list_command = format!(
        "sh -c 'if mkdir {dir}/first-listing 2>/dev/null; then sleep 60; fi; cat {list}'",
        dir = scratch.dir.path().display(),
        list = list.display()
    );
    let args = |worker: &str| {
        with_command(with_list_command(
            worker_args(server, build, worker, &list),
            list_command.clone(),
        ))
    };
    let report = Proc::spawn("report", &scratch, &report_args(server, build));
    let first = Proc::spawn("w1", &scratch, &args("w1"));
    wait_until("w1's election", WITHIN, || {
        state(server, build).is_some_and(|s| s.ends_with(":w1"))
    });
    first.wait_for_stderr("listing tests", WITHIN);
    let others: Vec<Proc> = ["w2", "w3"]
        .iter()
        .map(|w| Proc::spawn(w, &scratch, &args(w)))
        .collect();
    for other in &others {
        other.wait_for_stderr("waits for leader `w1`", WITHIN);
    }
    first.signal(Signal::SIGKILL);
    let _ = first.wait(WITHIN);
    for other in others {
        let out = other.wait(WITHIN);
        assert_eq!(out.code, Some(ExitCode::Success.code()), "{}", out.both());
    }
    let out = report.wait(WITHIN);
    assert_eq!(out.code, Some(ExitCode::Success.code()), "{}", out.both());
    assert!(out.stdout.contains("30 tests: 30 passed"), "{}", out.both());
    scratch.assert_each_ran_once(30);
    assert_eq!(results(server, build).len(), 30);
}

/// Waits for `test` (a gated test: it runs until its worker's `open-<name>` gate file exists)
/// to start, SIGKILLs the worker running it and opens every other worker's gate: the killed
/// worker's name (its orphaned run ends once its gate opens too) and the others, for the caller
/// to wait on.
pub fn kill_the_holder(
    scratch: &Scratch,
    workers: Vec<Proc>,
    test: &str,
    within: Duration,
) -> (String, Vec<Proc>) {
    wait_until("the gated test to start", within, || {
        scratch.runs().iter().any(|(_, run)| run == test)
    });
    let holder = scratch
        .runs()
        .into_iter()
        .find(|(_, run)| run == test)
        .map(|(worker, _)| worker)
        .expect("the gated test's worker");
    let (victim, survivors): (Vec<Proc>, Vec<Proc>) =
        workers.into_iter().partition(|p| p.name == holder);
    for proc in &victim {
        proc.signal(Signal::SIGKILL);
    }
    drop(victim);
    for proc in &survivors {
        std::fs::write(scratch.path(&format!("open-{}", proc.name)), "").expect("open the gate");
    }
    (holder, survivors)
}

/// Of two workers of `build`, the one running `gated/victim` is SIGKILLed mid-test; the
/// survivor takes the test over once the dead worker's heartbeat lapsed and runs it again, and
/// the build ends green with 11 tests, the victim counted once.
pub fn worker_killed_mid_test_is_taken_over(server: &impl TestRedis, build: &str) {
    let scratch = Scratch::new();
    let mut tests = vec!["gated/victim".to_owned()];
    tests.extend(ids("pass", 10));
    let list = scratch.tests(&tests);
    let workers = spawn_workers(server, &scratch, build, &["w1", "w2"], &list);
    // The victim runs until its worker's gate opens: only the survivor's ever does.
    let (holder, survivor) = kill_the_holder(&scratch, workers, "gated/victim", WITHIN);
    for proc in survivor {
        let out = proc.wait(WITHIN);
        assert_eq!(out.code, Some(ExitCode::Success.code()), "{}", out.both());
        assert!(
            out.stdout
                .contains("11 tests: 11 passed; 1 taken over from lost workers"),
            "{}",
            out.both()
        );
    }
    let counts = scratch.run_counts();
    assert_eq!(counts.len(), 11, "every test ran: {counts:?}");
    assert_eq!(
        counts["gated/victim"], 2,
        "run once more after the take-over"
    );
    assert_eq!(results(server, build)["gated/victim"], "passed");
    // Lets the killed worker's orphaned run end.
    std::fs::write(scratch.path(&format!("open-{holder}")), "").expect("open the gate");
    let out = Proc::spawn("report", &scratch, &report_args(server, build)).wait(WITHIN);
    assert_eq!(out.code, Some(ExitCode::Success.code()), "{}", out.both());
    assert!(out.stdout.contains("11 tests: 11 passed"), "{}", out.both());
}

/// Two workers and the report of `build`, each given `url` (a user with the README's least
/// privileges), run a passing, a failing and a flaky test: every process ends red with those
/// counts and without a warning (the flakiness history is written with the same rights).
pub fn least_privilege_build(server: &impl TestRedis, url: &str, build: &str) -> Scratch {
    let scratch = Scratch::new();
    let list = scratch.tests(&[
        "pass/a".to_owned(),
        "fail/b".to_owned(),
        "flaky/c".to_owned(),
    ]);
    let as_user = |mut args: Vec<String>| {
        args[2] = url.to_owned();
        args
    };
    let report = Proc::spawn("report", &scratch, &as_user(report_args(server, build)));
    let workers: Vec<Proc> = ["w1", "w2"]
        .iter()
        .map(|w| {
            let mut args = as_user(worker_args(server, build, w, &list));
            args.extend(
                [
                    "--requeue-tolerance",
                    "1",
                    "--",
                    &crate::processes::record_test(),
                ]
                .map(str::to_owned),
            );
            Proc::spawn(w, &scratch, &args)
        })
        .collect();
    for out in workers
        .into_iter()
        .map(|w| w.wait(WITHIN))
        .chain([report.wait(WITHIN)])
    {
        assert_eq!(
            out.code,
            Some(ExitCode::TestsFailed.code()),
            "{}",
            out.both()
        );
        assert!(
            out.stdout.contains("3 tests: 1 passed, 1 flaky, 1 failed"),
            "{}",
            out.both()
        );
        assert!(!out.stderr.contains("warning"), "{}", out.both());
    }
    assert_eq!(results(server, build).len(), 3);
    scratch
}

/// The end of a take-over over six passing tests: `late` ran `gated/victim`, lost it after
/// its heartbeat lapsed, and `taker` is running it again (gated by its `open-<taker>` file)
/// when `late` comes back. Checks that `late`'s acknowledgement changed nothing: the taker
/// keeps its lease and its running entry and no outcome is recorded; let go, the taker decides
/// the one outcome, both finish green with one take-over, and no test is counted twice.
/// Returns both outputs, `late`'s first.
pub fn assert_late_result_changes_nothing(
    server: &RedisServer,
    scratch: &Scratch,
    build: &str,
    late: Proc,
    taker: Proc,
) -> (Output, Output) {
    const VICTIM: &str = "gated/victim";
    const LONG: Duration = Duration::from_secs(120);
    wait_until("the late acknowledgement", LONG, || {
        !statuses(&late.stderr_so_far(), VICTIM).is_empty()
    });
    let generation = ready_generation(server, build).expect("a ready generation");
    let generation = BuildKeys::new("", build).generation(&generation);
    // `<lease>:<test>` entries: the late worker's was removed at the take-over, so the one left
    // is the new holder's.
    let running: Vec<String> = redis::cmd("ZRANGE")
        .arg(&generation.running)
        .arg(0)
        .arg(-1)
        .query(&mut server.conn())
        .expect("ZRANGE running");
    let held: Vec<&String> = running
        .iter()
        .filter(|entry| entry.ends_with(&format!(":{VICTIM}")))
        .collect();
    assert_eq!(held.len(), 1, "the new holder's entry stays: {running:?}");
    assert!(
        !results(server, build).contains_key(VICTIM),
        "the late result was recorded"
    );
    std::fs::write(scratch.path(&format!("open-{}", taker.name)), "").expect("open the gate");
    let taker_out = taker.wait(LONG);
    let late_out = late.wait(LONG);
    for out in [&late_out, &taker_out] {
        assert_eq!(out.code, Some(ExitCode::Success.code()), "{}", out.both());
        assert!(
            out.stdout
                .contains("6 tests: 6 passed; 1 taken over from lost workers"),
            "{}",
            out.both()
        );
    }
    assert_eq!(
        statuses(&late_out.stderr, VICTIM),
        ["LOST"],
        "{}",
        late_out.both()
    );
    assert_eq!(
        statuses(&taker_out.stderr, VICTIM),
        ["PASS"],
        "{}",
        taker_out.both()
    );
    let outcomes = results(server, build);
    assert_eq!(outcomes.len(), 6);
    assert_eq!(outcomes[VICTIM], "passed");
    assert_eq!(scratch.run_counts()[VICTIM], 2);
    let finals = final_lines([late_out.stderr.as_str(), taker_out.stderr.as_str()]);
    assert!(finals.values().all(|&n| n == 1), "{finals:?}");
    (late_out, taker_out)
}
