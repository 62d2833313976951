//! The files ciq reads and writes besides its reports' verdicts: order logs kept only where
//! `ciq bisect` needs them, input files saved with a byte order mark, timing files too big to
//! read, and failure output with terminal escapes written into files.

use std::time::{Duration, SystemTime};

use ciq::exit_code::ExitCode;
use ciq_testkit::{Output, Proc, RedisServer, Scratch, report_args, with_command, worker_args};

const WITHIN: Duration = Duration::from_secs(120);

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|arg| (*arg).to_owned()).collect()
}

/// `ciq run -j 2` of `ids` with the fixture command, and `extra` flags.
fn local(scratch: &Scratch, ids: &[&str], extra: &[&str]) -> Output {
    let ids: Vec<String> = strings(ids);
    let list = scratch.tests(&ids).to_string_lossy().into_owned();
    let mut args = strings(&["run", "-j", "2", "--tests", &list]);
    args.extend(strings(extra));
    Proc::spawn("local", scratch, &with_command(args)).wait(WITHIN)
}

/// Regression: every `ciq run` said "the order tests run in is logged to /tmp/ciq-order-...log"
/// and left the file, even a green one or one that failed on a bad URL or an empty list (370
/// files after one day). A default log is kept only when a run it logged failed, in ciq's own
/// directory (here under the scratch's `XDG_CACHE_HOME`), which keeps the newest 20; the path
/// is said at the end, and only then. `--order-log FILE` is always kept.
#[test]
fn order_logs_are_kept_only_after_a_failed_run_and_bounded() {
    let scratch = Scratch::new();
    let out = local(&scratch, &["pass/a", "pass/b"], &[]);
    assert_eq!(out.code, Some(ExitCode::Success.code()), "{}", out.both());
    assert!(!out.stderr.contains("order"), "{}", out.both());
    assert_eq!(scratch.order_logs(), Vec::<std::path::PathBuf>::new());
    let stray: Vec<_> = std::fs::read_dir(scratch.dir.path())
        .unwrap()
        .flatten()
        .filter(|entry| entry.file_name().to_string_lossy().starts_with("ciq-order"))
        .collect();
    assert!(stray.is_empty(), "{stray:?}");

    let list = scratch.tests(&strings(&["pass/a"]));
    let bad_url = Proc::spawn(
        "bad-url",
        &scratch,
        &with_command(strings(&[
            "run",
            "--queue",
            "redis://127.0.0.1:1/0",
            "--build",
            "b",
            "--worker",
            "w",
            "--redis-timeout",
            "1s",
            "--tests",
            &list.to_string_lossy(),
        ])),
    )
    .wait(WITHIN);
    assert_eq!(
        bad_url.code,
        Some(ExitCode::Infrastructure.code()),
        "{}",
        bad_url.both()
    );
    std::fs::write(scratch.path("empty.txt"), "").unwrap();
    let empty = Proc::spawn(
        "empty",
        &scratch,
        &with_command(strings(&[
            "run",
            "-j",
            "1",
            "--tests",
            &scratch.path("empty.txt").to_string_lossy(),
        ])),
    )
    .wait(WITHIN);
    assert_eq!(empty.code, Some(ExitCode::Usage.code()), "{}", empty.both());
    for out in [&bad_url, &empty] {
        assert!(!out.stderr.contains("order"), "{}", out.both());
    }
    assert_eq!(scratch.order_logs(), Vec::<std::path::PathBuf>::new());

    // 25 logs of earlier runs: the newest 20 logs stay, this run's among them.
    let dir = scratch.path("cache/ciq/order-logs");
    for n in 0..25u64 {
        let old = dir.join(format!("ciq-order-old{n:02}.log"));
        std::fs::write(&old, "w\tt\n").unwrap();
        let file = std::fs::File::options().write(true).open(&old).unwrap();
        file.set_modified(SystemTime::now() - Duration::from_secs(3600 - n))
            .unwrap();
    }
    let out = local(&scratch, &["pass/a", "fail/b", "pass/c"], &[]);
    assert_eq!(
        out.code,
        Some(ExitCode::TestsFailed.code()),
        "{}",
        out.both()
    );
    let logs = scratch.order_logs();
    assert_eq!(logs.len(), 20, "{logs:?}");
    let kept: Vec<_> = logs
        .iter()
        .filter(|log| !log.to_string_lossy().contains("old"))
        .collect();
    assert_eq!(kept.len(), 1, "{logs:?}");
    assert!(
        !logs.iter().any(|log| log.ends_with("ciq-order-old04.log")),
        "the oldest went"
    );
    let last = out.stderr.lines().last().unwrap_or_default();
    assert_eq!(
        last,
        format!(
            "ciq: the order tests ran in is kept in `{0}` for `ciq bisect --order-log {0} --failing-test ID` (the newest 20 such logs are kept)",
            kept[0].display()
        ),
        "{}",
        out.both()
    );
    let log = std::fs::read_to_string(kept[0]).unwrap();
    assert!(log.contains("\tfail/b\n"), "{log}");

    let named = scratch.path("named.log");
    let out = local(
        &scratch,
        &["pass/a"],
        &["--order-log", &named.to_string_lossy()],
    );
    assert_eq!(out.code, Some(ExitCode::Success.code()), "{}", out.both());
    assert!(
        std::fs::read_to_string(&named)
            .unwrap()
            .contains("\tpass/a\n")
    );
    assert_eq!(scratch.order_logs().len(), 20);
}

/// Regression: a quarantine file saved with a UTF-8 byte order mark kept it in its first id, so
/// that test was not quarantined. Every file ciq reads drops one: test lists, quarantine and
/// timing files.
#[test]
fn files_with_a_byte_order_mark_read_as_without() {
    let scratch = Scratch::new();
    let bom = "\u{feff}";
    std::fs::write(
        scratch.path("quarantine.txt"),
        format!("{bom}fail/known\r\n"),
    )
    .unwrap();
    std::fs::write(
        scratch.path("timings.tsv"),
        format!("{bom}# ciq timings v1\n9\tpass/a\n400\tpass/b\n"),
    )
    .unwrap();
    std::fs::write(
        scratch.path("tests.txt"),
        format!("{bom}pass/a\npass/b\nfail/known\n"),
    )
    .unwrap();
    let path = |name: &str| scratch.path(name).to_string_lossy().into_owned();
    let (tests, quarantine, timings) = (
        path("tests.txt"),
        path("quarantine.txt"),
        path("timings.tsv"),
    );
    let args = [
        "run",
        "-j",
        "1",
        "--max-requeues",
        "0",
        "--tests",
        &tests,
        "--quarantine",
        &quarantine,
        "--timings",
        &timings,
    ];
    let out = Proc::spawn("local", &scratch, &with_command(strings(&args))).wait(WITHIN);
    assert_eq!(
        out.code,
        Some(ExitCode::Success.code()),
        "the quarantined failure is forgiven: {}",
        out.both()
    );
    assert!(out.stdout.contains("QUARANTINED"), "{}", out.both());
    assert!(!out.stderr.contains("warning"), "{}", out.both());
    let ran: Vec<String> = scratch.runs().into_iter().map(|(_, test)| test).collect();
    // pass/b is known to take longest; fail/known, unknown, counts as the median of the known.
    assert_eq!(
        ran,
        ["pass/b", "fail/known", "pass/a"],
        "ids without the mark, longest first"
    );
}

/// Regression: `--timings /dev/zero` read until memory ran out (2.1 GB). What ciq reads of a
/// timing file is bounded, and past a bound it says which and carries on: timings only order
/// the tests, never decide a verdict.
#[test]
fn a_timing_file_without_end_is_read_within_bounds() {
    let scratch = Scratch::new();
    let out = local(&scratch, &["pass/a", "pass/b"], &["--timings", "/dev/zero"]);
    assert_eq!(out.code, Some(ExitCode::Success.code()), "{}", out.both());
    assert!(
        out.stderr.contains(
            "warning: timing file `/dev/zero`, line 1: longer than 4128 bytes: not `<milliseconds><TAB><test id>`; tests are ordered without it"
        ),
        "{}",
        out.both()
    );
    scratch.assert_each_ran_once(2);
}

/// A failing test's output in colour: `ESC[31mRED ESC[0m`.
const COLOURED: &str =
    "printf '\\033[31mRED\\033[0m %s\\n' \"$1\"; case \"$1\" in fail/*) exit 1;; esac";

/// Regression: ANSI colour codes in failure output became `�[31mRED�[0m` in the JUnit file.
/// The files ciq writes (JUnit, JSON, the CI page's Markdown) hold the output without terminal
/// escapes; the log keeps them, for the terminal or CI log that shows colours.
#[test]
fn terminal_escapes_stay_out_of_written_files() {
    let server = RedisServer::start();
    let scratch = Scratch::new();
    let page = scratch.path("step-summary.md");
    let list = scratch.tests(&strings(&["pass/a", "fail/b"]));
    let run_junit = scratch.path("w1.xml");
    let mut worker = worker_args(&server, "ansi", "w1", &list);
    worker.extend(strings(&[
        "--max-requeues",
        "0",
        "--junit",
        &run_junit.to_string_lossy(),
        "--",
        "sh",
        "-c",
        COLOURED,
        "sh",
    ]));
    let out = Proc::spawn("w1", &scratch, &worker).wait(WITHIN);
    assert_eq!(
        out.code,
        Some(ExitCode::TestsFailed.code()),
        "{}",
        out.both()
    );
    assert!(
        out.stdout.contains("\u{1b}[31mRED\u{1b}[0m fail/b"),
        "the log keeps them: {}",
        out.both()
    );
    let junit = scratch.path("build.xml");
    let json = scratch.path("build.json");
    let mut report = report_args(&server, "ansi");
    report.extend(strings(&[
        "--junit",
        &junit.to_string_lossy(),
        "--json",
        &json.to_string_lossy(),
    ]));
    let github = [
        ("GITHUB_ACTIONS", "true"),
        ("GITHUB_STEP_SUMMARY", &page.to_string_lossy()),
    ];
    let out = Proc::spawn_with_env("report", &scratch, &report, &github).wait(WITHIN);
    assert_eq!(
        out.code,
        Some(ExitCode::TestsFailed.code()),
        "{}",
        out.both()
    );
    for file in [&run_junit, &junit, &json, &page] {
        let text = std::fs::read_to_string(file).unwrap();
        assert!(text.contains("RED fail/b"), "{}: {text}", file.display());
        assert!(
            !text.contains(['\u{1b}', '\u{fffd}'])
                && !text.contains("[31m")
                && !text.contains("\\u001b"),
            "{}: {text}",
            file.display()
        );
    }
}
