//! Real Ruby through `ciq run minitest` and `ciq run rspec`: the fixture suites'
//! (`tests/fixtures/ruby`) outcomes test by test, locally and through Redis, their boots and
//! context hooks counted, and the bad inputs (no Ruby, no gem, a file that does not load, a
//! selection of nothing). A test never passes or skips because Ruby is missing: it fails, saying
//! to run `scripts/test`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ciq::exit_code::ExitCode;
use ciq_testkit::{Output, Proc, RedisServer, Scratch, fast_flags, require_ruby, test_lines};

use crate::frameworks::distributed;

const LONG: Duration = Duration::from_secs(300);

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/ruby")
        .join(name)
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| (*s).to_owned()).collect()
}

/// A fixture suite's `expected.json`: each test's outcome, and the counts.
struct Expected {
    outcomes: BTreeMap<String, String>,
    counts: String,
}

fn expected(suite: &str) -> Expected {
    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture(suite).join("expected.json")).unwrap(),
    )
    .unwrap();
    let outcomes = json["by_test"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(id, test)| (id.clone(), test["ciq"].as_str().unwrap().to_owned()))
        .collect();
    let mut counts = format!("{} tests:", json["tests"]);
    for (at, outcome) in ["passed", "skipped", "failed", "errored"]
        .iter()
        .enumerate()
    {
        let n = json["ciq"][outcome].as_u64().unwrap_or(0);
        if n > 0 || at == 0 {
            counts.push_str(&format!("{} {n} {outcome}", if at == 0 { "" } else { "," }));
        }
    }
    Expected { outcomes, counts }
}

/// Each test's final outcome in the workers' lines, as expected.json names outcomes.
fn outcomes<'a>(stderrs: impl IntoIterator<Item = &'a str>) -> BTreeMap<String, String> {
    let mut outcomes = BTreeMap::new();
    for stderr in stderrs {
        for line in test_lines(stderr)
            .into_iter()
            .filter(|line| line.is_final())
        {
            let outcome = match line.status.as_str() {
                "PASS" => "passed",
                "FAIL" => "failed",
                "ERROR" => "errored",
                "SKIP" => "skipped",
                other => other,
            };
            let earlier = outcomes.insert(line.test.clone(), outcome.to_owned());
            assert!(earlier.is_none(), "{} decided twice", line.test);
        }
    }
    outcomes
}

/// `ciq run -j 2 <args>` in `cwd`, with the fixtures' counters in `scratch`; no retry unless
/// `args` give `--max-requeues`.
fn local(scratch: &Scratch, cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut argv = strings(&["run", "-j", "2"]);
    if !args.contains(&"--max-requeues") {
        argv.extend(strings(&["--max-requeues", "0"]));
    }
    argv.extend(strings(args));
    let dir = scratch.dir.path().to_string_lossy().into_owned();
    let mut env = env.to_vec();
    env.push(("CIQ_RUBY_FIXTURE_DIR", &dir));
    Proc::spawn_in("local", scratch, &argv, &env, cwd).wait(LONG)
}

/// The lines of counter file `name` in the fixture directory.
fn counted(scratch: &Scratch, name: &str) -> Vec<String> {
    std::fs::read_to_string(scratch.path(name))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// No line of counter file `name` is there twice: no process ran that hook twice.
fn assert_once_per_process(scratch: &Scratch, name: &str, out: &Output) {
    let lines = counted(scratch, name);
    assert!(!lines.is_empty(), "{name} never counted: {}", out.both());
    let mut unique = lines.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), lines.len(), "{name}: {lines:?}");
}

/// A fixture suite through `ciq run -j 2 <framework>`: every test's outcome is the one the
/// suite's expected.json gives (the framework's own), the hang is timed out, the crash
/// errored, a failure shows what the test printed; the 2 s boot runs once per worker process
/// (two workers, and a new process after the crash and the hang), a slow context hook once per
/// process.
fn fixture_outcomes_equal_expected(suite: &str, framework: &str) {
    require_ruby();
    let scratch = Scratch::new();
    let expected = expected(suite);
    let out = local(
        &scratch,
        &fixture(suite),
        &["--test-timeout", "10s", framework],
        &[],
    );
    assert_eq!(
        out.code,
        Some(ExitCode::TestsFailed.code()),
        "{}",
        out.both()
    );
    assert!(out.stdout.contains(&expected.counts), "{}", out.both());
    assert_eq!(outcomes([out.stderr.as_str()]), expected.outcomes);
    for said in [
        "timed out after 10s",
        "the framework process died running this test",
        // What the failing test wrote on stdout and on stderr.
        "about to compare 41 with 42",
        "a warning on stderr",
    ] {
        assert!(out.stdout.contains(said), "{said}: {}", out.both());
    }
    let boots = counted(&scratch, "boot.count").len();
    assert!((1..=4).contains(&boots), "{boots} boots: {}", out.both());
    assert_once_per_process(&scratch, "context.count", &out);
}

#[test]
fn minitest_fixture_outcomes_equal_the_suites_own() {
    fixture_outcomes_equal_expected("minitest_suite", "minitest");
}

#[test]
fn rspec_fixture_outcomes_equal_the_suites_own() {
    fixture_outcomes_equal_expected("rspec_suite", "rspec");
}

/// Without the hostile tests (no crash, no hang, so no new process), each of the two workers
/// boots the suite once, however many batches it takes; minitest's files given as `rails test`
/// takes them (`-I test` and a glob), RSpec's with a `--seed`; each process runs the suite's
/// end-of-run hooks (`Minitest.after_run`, `after(:suite)`) at its shutdown.
#[test]
fn each_worker_boots_the_suite_once() {
    require_ruby();
    for (suite, args) in [
        (
            "minitest_suite",
            &[
                "--batch-size",
                "2",
                "minitest",
                "--",
                "-I",
                "test",
                // A glob as ciq passes it, unexpanded: the gem expands it.
                "test/{basic,slow_context,spec_style}_test.rb",
            ][..],
        ),
        (
            "rspec_suite",
            &[
                "--batch-size",
                "2",
                "rspec",
                "--",
                "--seed",
                "1234",
                "spec/basic_spec.rb",
                "spec/context_spec.rb",
            ],
        ),
    ] {
        let scratch = Scratch::new();
        let out = local(&scratch, &fixture(suite), args, &[]);
        assert_eq!(
            out.code,
            Some(ExitCode::TestsFailed.code()),
            "{}",
            out.both()
        );
        let boots = counted(&scratch, "boot.count").len();
        assert!(
            (1..=2).contains(&boots),
            "{suite}: {boots} boots: {}",
            out.both()
        );
        // Every process ran the suite's end-of-run hooks at its shutdown.
        let (hooks, hook) = if suite == "minitest_suite" {
            ("after_run.count", "")
        } else {
            ("suite.log", "after-suite ")
        };
        let ended: std::collections::BTreeSet<String> = counted(&scratch, hooks)
            .iter()
            .filter_map(|line| line.strip_prefix(hook).map(str::to_owned))
            .collect();
        let booted: std::collections::BTreeSet<String> =
            counted(&scratch, "boot.count").into_iter().collect();
        assert_eq!(ended, booted, "{suite}: {}", out.both());
        let tests = if suite == "minitest_suite" { 12 } else { 15 };
        assert!(
            out.stdout.contains(&format!("{tests} tests: ")),
            "{suite}: {}",
            out.both()
        );
        assert_once_per_process(&scratch, "context.count", &out);
    }
}

/// A test that fails once, then passes, is flaky with a retry: the build is green.
#[test]
fn a_ruby_test_that_passes_on_its_retry_is_flaky() {
    require_ruby();
    for (suite, args) in [
        (
            "minitest_suite",
            &["minitest", "--", "test/flaky_test.rb"][..],
        ),
        ("rspec_suite", &["rspec", "--", "spec/flaky_spec.rb"]),
    ] {
        let scratch = Scratch::new();
        let mut argv = vec!["--max-requeues", "1", "--requeue-tolerance", "1"];
        argv.extend(args);
        let out = local(&scratch, &fixture(suite), &argv, &[]);
        assert_eq!(out.code, Some(ExitCode::Success.code()), "{}", out.both());
        assert!(
            out.stdout.contains("1 tests: 0 passed, 1 flaky"),
            "{}",
            out.both()
        );
    }
}

/// Through Redis, two workers and a report: the report's counts are the suite's own.
#[test]
fn ruby_fixtures_through_redis_count_as_the_suites_own() {
    require_ruby();
    for (suite, framework) in [("minitest_suite", "minitest"), ("rspec_suite", "rspec")] {
        let counters = Scratch::new();
        let dir = counters.dir.path().to_string_lossy().into_owned();
        let out = distributed(
            &fixture(suite),
            &format!("ruby-{framework}"),
            &["--test-timeout", "10s", framework],
            &[("CIQ_RUBY_FIXTURE_DIR", &dir)],
        );
        assert_eq!(
            out.code,
            Some(ExitCode::TestsFailed.code()),
            "{}",
            out.both()
        );
        assert!(
            out.stdout.contains(&expected(suite).counts),
            "{}",
            out.both()
        );
    }
}

/// A test file that does not load stops every worker with exit 2, naming it: never a green
/// build without its tests.
#[test]
fn a_ruby_file_that_does_not_load_stops_every_worker() {
    require_ruby();
    let project = Scratch::new();
    for dir in ["test", "spec"] {
        std::fs::create_dir(project.path(dir)).unwrap();
    }
    std::fs::write(
        project.path("test/ok_test.rb"),
        "require 'minitest/autorun'\nclass OkTest < Minitest::Test\n  def test_ok\n    assert true\n  end\nend\n",
    )
    .unwrap();
    std::fs::write(
        project.path("test/broken_test.rb"),
        "class Broken <\n  def (\nend\n",
    )
    .unwrap();
    std::fs::write(
        project.path("spec/ok_spec.rb"),
        "RSpec.describe 'ok' do\n  it('passes') { expect(1).to eq(1) }\nend\n",
    )
    .unwrap();
    std::fs::write(
        project.path("spec/broken_spec.rb"),
        "RSpec.describe 'x' do\n  it(\nend\n",
    )
    .unwrap();
    for (framework, file) in [("minitest", "broken_test.rb"), ("rspec", "broken_spec.rb")] {
        let scratch = Scratch::new();
        let out = local(&scratch, project.dir.path(), &[framework], &[]);
        assert_eq!(out.code, Some(ExitCode::Usage.code()), "{}", out.both());
        for said in ["SyntaxError", file] {
            assert!(out.stderr.contains(said), "{said}: {}", out.both());
        }
        assert!(!out.stdout.contains("verdict: green"), "{}", out.both());

        let server = RedisServer::start();
        let workers: Vec<Proc> = ["w1", "w2"]
            .iter()
            .map(|worker| {
                let mut args = strings(&[
                    "run",
                    "--queue",
                    &server.url(),
                    "--build",
                    "broken",
                    "--worker",
                    worker,
                ]);
                args.extend(fast_flags());
                args.push(framework.to_owned());
                Proc::spawn_in(worker, &scratch, &args, &[], project.dir.path())
            })
            .collect();
        for worker in workers {
            let out = worker.wait(LONG);
            assert_eq!(out.code, Some(ExitCode::Usage.code()), "{}", out.both());
            assert!(out.stderr.contains(file), "{}", out.both());
        }
    }
}

/// A `--tag` (or minitest's `-n`) that selects nothing is a clear line and exit 2, not a green
/// build of no tests.
#[test]
fn a_ruby_selection_of_nothing_is_refused() {
    require_ruby();
    for (suite, args) in [
        ("rspec_suite", &["rspec", "--", "--tag", "no_such_tag"][..]),
        (
            "minitest_suite",
            &["minitest", "--", "-n", "/no_such_test/"],
        ),
    ] {
        let scratch = Scratch::new();
        let out = local(
            &scratch,
            &fixture(suite),
            args,
            &[("CIQ_RUBY_FIXTURE_BOOT_SECONDS", "0")],
        );
        assert_eq!(out.code, Some(ExitCode::Usage.code()), "{}", out.both());
        assert!(
            out.stderr
                .contains(&format!("test list from {}'s collection is empty", args[0])),
            "{}",
            out.both()
        );
        assert!(!out.stdout.contains("verdict: green"), "{}", out.both());
    }
}

/// A Ruby that does not exist, or one without ciq's gem, is an error saying what to install or
/// set, exit 2, before any test.
#[test]
fn a_missing_ruby_or_gem_says_what_to_install() {
    require_ruby();
    let empty_gems = Scratch::new();
    let empty = empty_gems.dir.path().to_string_lossy().into_owned();
    for framework in ["minitest", "rspec"] {
        for (env, said) in [
            (
                ("CIQ_RUBY", "/nonexistent/ruby"),
                "`/nonexistent/ruby`: not found\n(hint: ciq starts Ruby as `/nonexistent/ruby`",
            ),
            (
                ("GEM_HOME", empty.as_str()),
                "(LoadError)\n(hint: install ciq's Ruby gem for this Ruby",
            ),
        ] {
            let scratch = Scratch::new();
            let out = local(&scratch, &fixture("minitest_suite"), &[framework], &[env]);
            assert_eq!(out.code, Some(ExitCode::Usage.code()), "{}", out.both());
            assert!(out.stderr.contains(said), "{said}: {}", out.both());
            assert!(
                counted(&scratch, "boot.count").is_empty(),
                "the suite loaded: {}",
                out.both()
            );
        }
    }
}
