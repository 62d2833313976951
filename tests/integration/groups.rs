//! Build-wide resource groups (`--group NAME=N --group-map FILE`): at most N tests of a group run
//! at once across every worker, checked on a log each test appends its start and end to; the
//! rest of the queue keeps going meanwhile; a SIGKILLed worker's slot is freed when its test is
//! taken over; bad input is one line and exit 2.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ciq::exit_code::ExitCode;
use ciq_testkit::{Output, Proc, RedisServer, Scratch, report_args, wait_until, worker_args};
use nix::sys::signal::Signal;

const LONG: Duration = Duration::from_secs(120);

/// Six tests of group `db` that each take 400 ms, and 14 others of 100 ms.
fn suite() -> Vec<String> {
    let mut tests: Vec<String> = (0..6).map(|n| format!("db/{n}")).collect();
    tests.extend((0..14).map(|n| format!("other/{n}")));
    tests
}

/// The group map of `tests`: those starting with `db/` are in group `db`.
fn group_map(scratch: &Scratch, tests: &[String]) -> PathBuf {
    let map: String = tests
        .iter()
        .filter(|test| test.starts_with("db/"))
        .map(|test| format!("{test}\tdb\n"))
        .collect();
    let path = scratch.path("groups.tsv");
    std::fs::write(&path, map).unwrap();
    path
}

/// A test command that logs `start <test>` and `end <test>` around its run to `events.log`; a
/// `db/` test of worker `w1` writes `w1-holds` and hangs instead when `hang_on_w1`.
fn command(scratch: &Scratch, hang_on_w1: bool) -> PathBuf {
    let log = scratch.path("events.log");
    let holds = scratch.path("w1-holds");
    let hang = if hang_on_w1 {
        format!(
            "  case \"$CIQ_WORKER:$t\" in w1:db/*) touch '{}'; sleep 600;; esac\n",
            holds.display()
        )
    } else {
        String::new()
    };
    scratch.script(
        "group-test",
        &format!(
            "#!/bin/sh\nfor t in \"$@\"; do\n  echo \"start $t\" >> '{log}'\n{hang}  case \"$t\" in db/*) sleep 0.4;; *) sleep 0.1;; esac\n  echo \"end $t\" >> '{log}'\ndone\n",
            log = log.display()
        ),
    )
}

/// Every test of `tests` ended exactly once in the events log (a killed run starts but never
/// ends), and no other test ran.
fn assert_each_ended_once(log: &Path, tests: &[String]) {
    let text = std::fs::read_to_string(log).unwrap();
    let mut ended: Vec<&str> = text
        .lines()
        .filter_map(|line| line.strip_prefix("end "))
        .collect();
    ended.sort_unstable();
    let mut expected: Vec<&str> = tests.iter().map(String::as_str).collect();
    expected.sort_unstable();
    assert_eq!(ended, expected, "{text}");
}

/// What the log shows: the most `db/` tests running at once, and whether another test started
/// while one ran. A run ends at its `end` line, or at the next `start` of its test (a run
/// killed with its worker logs no end).
fn overlaps(log: &Path) -> (usize, bool) {
    let text = std::fs::read_to_string(log).unwrap();
    let mut running: BTreeSet<String> = BTreeSet::new();
    let (mut most, mut others_meanwhile) = (0, false);
    for line in text.lines() {
        let (what, test) = line.split_once(' ').unwrap();
        match what {
            "start" => {
                if test.starts_with("db/") {
                    running.insert(test.to_owned());
                    most = most.max(running.len());
                } else if !running.is_empty() {
                    others_meanwhile = true;
                }
            }
            _ => {
                running.remove(test);
            }
        }
    }
    (most, others_meanwhile)
}

fn group_flags(map: &Path) -> Vec<String> {
    vec![
        "--group".to_owned(),
        "db=1".to_owned(),
        "--group-map".to_owned(),
        map.display().to_string(),
    ]
}

fn worker(
    server: &RedisServer,
    scratch: &Scratch,
    name: &str,
    list: &Path,
    map: &Path,
    command: &Path,
) -> Proc {
    let mut args = worker_args(server, "b", name, list);
    args.extend(group_flags(map));
    args.extend(["--".to_owned(), command.display().to_string()]);
    Proc::spawn(name, scratch, &args)
}

fn report(server: &RedisServer, scratch: &Scratch) -> Output {
    Proc::spawn("report", scratch, &report_args(server, "b")).wait(LONG)
}

/// Four workers, six tests of `db=1` among 20: never two `db` tests at once, the other tests
/// run meanwhile, and the build is green with every test run once.
#[test]
fn a_group_of_one_never_runs_two_of_its_tests_at_once_across_workers() {
    let server = RedisServer::start();
    let scratch = Scratch::new();
    let tests = suite();
    let list = scratch.tests(&tests);
    let map = group_map(&scratch, &tests);
    let command = command(&scratch, false);
    let workers: Vec<Proc> = (1..=4)
        .map(|n| worker(&server, &scratch, &format!("w{n}"), &list, &map, &command))
        .collect();
    for proc in workers {
        let out = proc.wait(LONG);
        assert_eq!(out.code, Some(ExitCode::Success.code()), "{}", out.both());
    }
    let out = report(&server, &scratch);
    assert_eq!(out.code, Some(ExitCode::Success.code()), "{}", out.both());
    assert!(out.stdout.contains("20 tests: 20 passed"), "{}", out.both());
    assert_each_ended_once(&scratch.path("events.log"), &tests);
    let (most, others_meanwhile) = overlaps(&scratch.path("events.log"));
    assert_eq!(most, 1, "two db tests ran at once");
    assert!(others_meanwhile, "the other tests waited for the group");
}

/// A worker SIGKILLed while it holds the group's one slot: its test is taken over, the slot
/// with it, and the build completes without two `db` tests at once.
#[test]
fn a_dead_workers_slot_is_freed_when_its_test_is_taken_over() {
    let server = RedisServer::start();
    let scratch = Scratch::new();
    let tests = suite();
    let list = scratch.tests(&tests);
    let map = group_map(&scratch, &tests);
    let command = command(&scratch, true);
    let w1 = worker(&server, &scratch, "w1", &list, &map, &command);
    wait_until("w1 holds a db test", LONG, || {
        scratch.path("w1-holds").exists()
    });
    let others: Vec<Proc> = (2..=3)
        .map(|n| worker(&server, &scratch, &format!("w{n}"), &list, &map, &command))
        .collect();
    w1.signal(Signal::SIGKILL);
    let _ = w1.wait(LONG);
    for proc in others {
        let out = proc.wait(LONG);
        assert_eq!(out.code, Some(ExitCode::Success.code()), "{}", out.both());
    }
    let out = report(&server, &scratch);
    assert_eq!(out.code, Some(ExitCode::Success.code()), "{}", out.both());
    assert!(out.stdout.contains("20 tests: 20 passed"), "{}", out.both());
    assert_each_ended_once(&scratch.path("events.log"), &tests);
    let (most, _) = overlaps(&scratch.path("events.log"));
    assert_eq!(most, 1, "two db tests ran at once");
}

/// Local mode keeps the same rule.
#[test]
fn local_workers_keep_a_group_within_its_limit() {
    let scratch = Scratch::new();
    let tests = suite();
    let list = scratch.tests(&tests);
    let map = group_map(&scratch, &tests);
    let command = command(&scratch, false);
    let mut args = vec![
        "run".to_owned(),
        "-j".to_owned(),
        "4".to_owned(),
        "--tests".to_owned(),
        list.display().to_string(),
    ];
    args.extend(group_flags(&map));
    args.extend(["--".to_owned(), command.display().to_string()]);
    let out = Proc::spawn("local", &scratch, &args).wait(LONG);
    assert_eq!(out.code, Some(ExitCode::Success.code()), "{}", out.both());
    assert!(out.stdout.contains("20 tests: 20 passed"), "{}", out.both());
    assert_each_ended_once(&scratch.path("events.log"), &tests);
    let (most, others_meanwhile) = overlaps(&scratch.path("events.log"));
    assert_eq!(most, 1, "two db tests ran at once");
    assert!(others_meanwhile, "the other tests waited for the group");
}

/// `--group` without a count or with 0, a map naming a group without a limit, a map line that
/// is not `ID<TAB>GROUP`: one line saying what is wrong, and the usage exit code.
#[test]
fn bad_groups_are_one_line_and_exit_2() {
    let scratch = Scratch::new();
    let list = scratch.tests(&suite());
    let unknown = scratch.path("unknown.tsv");
    std::fs::write(&unknown, "db/0\tdb\ndb/1\tweb\n").unwrap();
    let bad_line = scratch.path("bad.tsv");
    std::fs::write(&bad_line, "db/0\tdb\ndb/1 db\n").unwrap();
    let cases: [(&[&str], &str); 4] = [
        (
            &["--group", "db"],
            "--group (CIQ_GROUP) `db`: expected NAME=N",
        ),
        (
            &["--group", "db=0"],
            "--group (CIQ_GROUP) `db=0`: expected NAME=N",
        ),
        (
            &[
                "--group",
                "db=1",
                "--group-map",
                &unknown.display().to_string(),
            ],
            "line 2: group `web` has no limit: pass --group web=N",
        ),
        (
            &[
                "--group",
                "db=1",
                "--group-map",
                &bad_line.display().to_string(),
            ],
            "line 2: expected `TEST-ID<TAB>GROUP`, got \"db/1 db\"",
        ),
    ];
    for (flags, message) in cases {
        let mut args = vec![
            "run".to_owned(),
            "-j".to_owned(),
            "2".to_owned(),
            "--tests".to_owned(),
            list.display().to_string(),
        ];
        args.extend(flags.iter().map(|flag| (*flag).to_owned()));
        args.extend(["--".to_owned(), "true".to_owned()]);
        let out = Proc::spawn("bad", &scratch, &args).wait(LONG);
        assert_eq!(out.code, Some(ExitCode::Usage.code()), "{}", out.both());
        assert!(out.stderr.contains(message), "{flags:?}: {}", out.both());
        assert_eq!(out.stderr.trim().lines().count(), 1, "{}", out.both());
    }
}
