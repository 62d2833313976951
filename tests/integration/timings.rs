//! Durations: measured by the workers, remembered in the namespace's store and in timing files,
//! and used to queue the longest tests first.

use std::collections::BTreeMap;
use std::time::Duration;

use ciq::exit_code::ExitCode;
use ciq_testkit::{Proc, RedisServer, Scratch, with_command, worker_args};

const LONG: Duration = Duration::from_secs(120);

/// The store of the default namespace.
const STORE: &str = "ciq:{timings:}:estimates";

/// Six short tests, then two of 400 ms listed last: list order puts the long ones at the end.
fn skewed() -> Vec<String> {
    let mut tests: Vec<String> = (0..6).map(|n| format!("pass/short{n}")).collect();
    tests.extend((0..2).map(|n| format!("pass/long{n}@400")));
    tests
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|arg| (*arg).to_owned()).collect()
}

/// The tests `worker` ran, in the order it started them.
fn order_of(scratch: &Scratch, worker: &str) -> Vec<String> {
    scratch
        .runs()
        .into_iter()
        .filter(|(ran_on, _)| ran_on == worker)
        .map(|(_, test)| test)
        .collect()
}

/// The tests run after the first `earlier` runs, in the order they started.
fn runs_after(scratch: &Scratch, earlier: usize) -> Vec<String> {
    scratch
        .runs()
        .into_iter()
        .skip(earlier)
        .map(|(_, test)| test)
        .collect()
}

/// A timing file's lines, test id -> milliseconds.
fn timing_file(path: &std::path::Path) -> BTreeMap<String, u64> {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.starts_with("# ciq timings v1\n"), "{text}");
    text.lines()
        .skip(1)
        .map(|line| {
            let (ms, id) = line.split_once('\t').unwrap();
            (id.to_owned(), ms.parse().unwrap())
        })
        .collect()
}

/// Asserts that `out`'s stderr says `text`.
fn assert_said(out: &ciq_testkit::Output, text: &str) {
    assert!(out.stderr.contains(text), "{}", out.both());
}

fn assert_long_first(order: &[String]) {
    assert_eq!(order.len(), 8, "{order:?}");
    assert!(
        order[..2].iter().all(|test| test.starts_with("pass/long")),
        "the long tests start first: {order:?}"
    );
}

#[test]
fn a_build_remembers_its_durations_and_the_next_starts_the_long_tests_first() {
    let server = RedisServer::start();
    let scratch = Scratch::new();
    let list = scratch.tests(&skewed());
    let written = scratch.path("timings.tsv");
    let first = Proc::spawn(
        "first",
        &scratch,
        &with_command(worker_args(&server, "b1", "first", &list)),
    );
    let mut report = ciq_testkit::report_args(&server, "b1");
    report.extend(["--timings-out".to_owned(), written.display().to_string()]);
    let report = Proc::spawn("report", &scratch, &report);
    let out = first.wait(LONG);
    assert_eq!(out.code, Some(ExitCode::Success.code()), "{}", out.both());
    let out = report.wait(LONG);
    assert_eq!(out.code, Some(ExitCode::Success.code()), "{}", out.both());
    scratch.assert_each_ran_once(8);
    assert_said(&out, "wrote the durations of 8 tests");
    assert_eq!(
        order_of(&scratch, "first")[6..],
        ["pass/long0@400", "pass/long1@400"],
        "without history the list's order stands"
    );

    // The report's timing file holds every test, as measured.
    let file = timing_file(&written);
    assert_eq!(file.len(), 8, "{file:?}");
    assert!(file["pass/long0@400"] >= 400, "{file:?}");
    assert!(file["pass/short0"] < 400, "{file:?}");

    // The namespace's store holds every test for the next build.
    let stored: BTreeMap<String, String> = redis::cmd("HGETALL")
        .arg(STORE)
        .query(&mut server.conn())
        .unwrap();
    assert_eq!(stored.len(), 8, "{stored:?}");

    let next = Proc::spawn(
        "next",
        &scratch,
        &with_command(worker_args(&server, "b2", "next", &list)),
    );
    let out = next.wait(LONG);
    assert_eq!(out.code, Some(ExitCode::Success.code()), "{}", out.both());
    assert_said(
        &out,
        "ordered 8 tests longest first (8 with an estimate from earlier runs",
    );
    assert_long_first(&order_of(&scratch, "next"));
}

/// A big suite's leader reads only the store's longest estimates (ten thousand), not one entry
/// per test: the long tests still start first, and the others count as the shortest of those.
#[test]
fn a_big_suites_leader_reads_the_longest_estimates_only() {
    let server = RedisServer::start();
    let scratch = Scratch::new();
    let mut tests: Vec<String> = (0..10_050).map(|n| format!("pass/short{n}~1")).collect();
    tests.extend((0..20).map(|n| format!("pass/long{n}~5000")));
    let list = scratch.tests(&tests);
    let framework = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/protocol-framework")
        .display()
        .to_string();
    let build = |build: &str| {
        let mut args = worker_args(&server, build, build, &list);
        args.extend(strings(&["--persistent", "--", &framework]));
        let out = Proc::spawn(build, &scratch, &args).wait(LONG);
        assert_eq!(out.code, Some(ExitCode::Success.code()), "{}", out.both());
        out
    };
    build("first");
    let out = build("next");
    assert_said(
        &out,
        "ordered 10070 tests longest first (10000 with an estimate from earlier runs, the others taken as 1ms)",
    );
    let order = order_of(&scratch, "next");
    assert!(
        order[..20].iter().all(|test| test.starts_with("pass/long")),
        "the long tests start first: {:?}",
        &order[..25]
    );
    let counts = scratch.run_counts();
    assert!(
        counts.len() == tests.len() && counts.values().all(|&n| n == 2),
        "each test ran once in each build"
    );
}

#[test]
fn departed_tests_leave_the_store_and_recent_ones_stay() {
    let server = RedisServer::start();
    let scratch = Scratch::new();
    let mut seed = redis::cmd("HSET");
    seed.arg(STORE);
    for n in 0..300 {
        // Last run at the epoch: long gone.
        seed.arg(format!("gone/{n}")).arg("10:1:10");
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    seed.arg("other/suite").arg(format!("10:{now}:10"));
    let _: i64 = seed.query(&mut server.conn()).unwrap();

    let list = scratch.tests(&["pass/a".to_owned(), "pass/b".to_owned()]);
    let out = Proc::spawn(
        "w",
        &scratch,
        &with_command(worker_args(&server, "b", "w", &list)),
    )
    .wait(LONG);
    assert_eq!(out.code, Some(ExitCode::Success.code()), "{}", out.both());
    scratch.assert_each_ran_once(2);
    let stored: BTreeMap<String, String> = redis::cmd("HGETALL")
        .arg(STORE)
        .query(&mut server.conn())
        .unwrap();
    let names: Vec<&str> = stored.keys().map(String::as_str).collect();
    assert_eq!(names, ["other/suite", "pass/a", "pass/b"]);
}

#[test]
fn a_local_timing_file_or_an_earlier_junit_report_orders_the_next_run() {
    let scratch = Scratch::new();
    let list = scratch.tests(&skewed());
    let written = scratch.path("timings.tsv");
    let local = |worker: &str, extra: &[String]| {
        let mut args = strings(&["run", "-j", "1", "--build", worker, "--tests"]);
        args.push(list.display().to_string());
        args.extend(extra.iter().cloned());
        Proc::spawn(worker, &scratch, &with_command(args)).wait(LONG)
    };

    // No timing file yet (a CI cache's first run): a warning, and the list's order.
    let out = local(
        "local-1",
        &[
            "--timings".to_owned(),
            scratch.path("absent.tsv").display().to_string(),
            "--timings-out".to_owned(),
            written.display().to_string(),
        ],
    );
    assert_eq!(out.code, Some(ExitCode::Success.code()), "{}", out.both());
    scratch.assert_each_ran_once(8);
    assert_said(&out, "warning: cannot read timing file");
    assert_said(&out, "wrote the durations of 8 tests");
    assert!(timing_file(&written)["pass/long1@400"] >= 400);

    // The same file in and out (a CI cache): read before it is written again.
    let out = local(
        "local-2",
        &[
            "--timings".to_owned(),
            written.display().to_string(),
            "--timings-out".to_owned(),
            written.display().to_string(),
        ],
    );
    assert_eq!(out.code, Some(ExitCode::Success.code()), "{}", out.both());
    assert_eq!(timing_file(&written).len(), 8);
    let order = runs_after(&scratch, 8);
    assert_long_first(&order);

    // A JUnit report of an earlier run: its times order the tests it names, and tests it does
    // not name take the median of the known ones (300 ms here).
    let junit = scratch.path("junit.xml");
    std::fs::write(
        &junit,
        r#"<testsuites><testsuite name="earlier">
             <testcase name="pass/short2" time="9.5"/>
             <testcase name="pass/short3" time="0.3"/>
             <testcase name="pass/short4" time="0.001"/>
             <testcase name="pass/short5" time="0.002"/>
           </testsuite></testsuites>"#,
    )
    .unwrap();
    let out = local(
        "local-3",
        &["--timings".to_owned(), junit.display().to_string()],
    );
    assert_eq!(out.code, Some(ExitCode::Success.code()), "{}", out.both());
    let order = runs_after(&scratch, 16);
    assert_eq!(order.first().map(String::as_str), Some("pass/short2"));
    assert_eq!(
        order[6..],
        ["pass/short5", "pass/short4"],
        "the shortest known go last, after the unknown ones: {order:?}"
    );
}

#[test]
fn a_timing_file_that_cannot_be_written_is_refused_before_the_build() {
    let scratch = Scratch::new();
    let list = scratch.tests(&skewed());
    let mut args = strings(&["run", "-j", "1", "--tests"]);
    args.push(list.display().to_string());
    args.extend(strings(&["--timings-out", "/nonexistent-dir/timings.tsv"]));
    let out = Proc::spawn("w", &scratch, &with_command(args)).wait(LONG);
    assert_eq!(out.code, Some(ExitCode::Usage.code()), "{}", out.both());
    assert_said(
        &out,
        "error: --timings-out (CIQ_LOCAL_TIMINGS_OUT) `/nonexistent-dir/timings.tsv`: the directory `/nonexistent-dir` does not exist (create it first)",
    );
    assert!(scratch.runs().is_empty(), "nothing ran");
}

/// `--test-timeout auto`: a test that normally takes 200 ms and hangs is killed after the
/// 5 s floor; one that takes a little longer than usual, and one without history, are spared.
fn assert_auto_limits(out: &ciq_testkit::Output, scratch: &Scratch) {
    assert_eq!(
        out.code,
        Some(ExitCode::TestsFailed.code()),
        "{}",
        out.both()
    );
    scratch.assert_each_ran_once(3);
    assert!(
        out.stdout.contains("3 tests: 2 passed, 1 errored"),
        "{}",
        out.both()
    );
    assert!(out.stdout.contains("slow/hung"), "{}", out.both());
    assert!(out.stdout.contains("timed out after 5s"), "{}", out.both());
}

fn auto_limit_tests(scratch: &Scratch) -> std::path::PathBuf {
    scratch.tests(&strings(&["slow/hung", "pass/usual@1500", "pass/new@100"]))
}

#[test]
fn auto_time_limits_in_local_mode_come_from_the_timing_file() {
    let mut scratch = Scratch::new();
    scratch.set_env("SLOW_SECONDS", "60");
    let list = auto_limit_tests(&scratch);
    let file = scratch.path("timings.tsv");
    std::fs::write(
        &file,
        "# ciq timings v1\n200\tslow/hung\n1000\tpass/usual@1500\n",
    )
    .unwrap();
    let mut args = strings(&["run", "-j", "2", "--max-requeues", "0", "--tests"]);
    args.push(list.display().to_string());
    args.extend(strings(&["--test-timeout", "auto", "--timings"]));
    args.push(file.display().to_string());
    assert_auto_limits(
        &Proc::spawn("local", &scratch, &with_command(args)).wait(LONG),
        &scratch,
    );
}

#[test]
fn auto_time_limits_through_redis_come_from_the_store() {
    let server = RedisServer::start();
    let mut scratch = Scratch::new();
    scratch.set_env("SLOW_SECONDS", "60");
    let list = auto_limit_tests(&scratch);
    let _: i64 = redis::cmd("HSET")
        .arg(STORE)
        .arg("slow/hung")
        .arg("200:1:150,200")
        .arg("pass/usual@1500")
        .arg("1000:1:900,1000")
        .query(&mut server.conn())
        .unwrap();
    let mut args = worker_args(&server, "auto", "w", &list);
    args.extend(strings(&["--max-requeues", "0", "--test-timeout", "auto"]));
    assert_auto_limits(
        &Proc::spawn("w", &scratch, &with_command(args)).wait(LONG),
        &scratch,
    );
}

/// The drifting test is named with its usual time; the time it took depends on the machine's
/// load (a loaded one stretches a 1.5 s sleep), so only its start is checked.
fn assert_named_only_the_drifting_test(out: &ciq_testkit::Output, named: &str) {
    assert_eq!(out.code, Some(ExitCode::Success.code()), "{}", out.both());
    let line = out
        .stderr
        .lines()
        .find(|line| line.contains("ran much longer than usual: pass/drifting@1500 took "))
        .unwrap_or_else(|| panic!("the drifting test is named: {}", out.both()));
    assert!(line.ends_with(named), "{line}");
    assert!(
        !out.stderr.contains("pass/steady@1500 took"),
        "{}",
        out.both()
    );
}

/// A run three times longer than the test's earlier runs (and a second longer at least) is
/// named: by the report through Redis, by the local run itself.
#[test]
fn runs_much_longer_than_usual_are_named() {
    let scratch = Scratch::new();
    let list = scratch.tests(&strings(&["pass/drifting@1500", "pass/steady@1500"]));
    let named = "(its earlier runs: at most 100ms)";

    let file = scratch.path("timings.tsv");
    std::fs::write(
        &file,
        "# ciq timings v1\n100\tpass/drifting@1500\n1400\tpass/steady@1500\n",
    )
    .unwrap();
    let mut args = strings(&["run", "-j", "2", "--tests"]);
    args.push(list.display().to_string());
    args.extend(["--timings".to_owned(), file.display().to_string()]);
    let out = Proc::spawn("local", &scratch, &with_command(args)).wait(LONG);
    assert_named_only_the_drifting_test(&out, named);
    scratch.assert_each_ran_once(2);

    let server = RedisServer::start();
    let _: i64 = redis::cmd("HSET")
        .arg(STORE)
        .arg("pass/drifting@1500")
        .arg("100:1:90,100")
        .arg("pass/steady@1500")
        .arg("1400:1:1400")
        .query(&mut server.conn())
        .unwrap();
    let report = Proc::spawn(
        "report",
        &scratch,
        &ciq_testkit::report_args(&server, "drift"),
    );
    let worker = Proc::spawn(
        "w",
        &scratch,
        &with_command(worker_args(&server, "drift", "w", &list)),
    );
    assert_eq!(worker.wait(LONG).code, Some(ExitCode::Success.code()));
    let out = report.wait(LONG);
    assert_named_only_the_drifting_test(&out, named);
    let counts = scratch.run_counts();
    assert!(
        counts.len() == 2 && counts.values().all(|&n| n == 2),
        "each test ran once in each build: {counts:?}"
    );
}
