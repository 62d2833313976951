//! Real test frameworks through ciq: the persistent protocol with a fixture framework, pytest in
//! batch and persistent mode on a fixture suite, nextest on a fixture crate. Counts are held
//! against what the framework itself reports.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ciq::exit_code::ExitCode;
use ciq_testkit::{Output, Proc, RedisServer, Scratch, fast_flags, report_args, require_pytest};

const LONG: Duration = Duration::from_secs(300);

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| (*s).to_owned()).collect()
}

/// Writes a pytest suite into `scratch`: each `(file, source)`, and a `pytest.ini` that makes
/// the scratch directory pytest's rootdir.
fn pytest_suite(scratch: &Scratch, files: &[(&str, &str)]) {
    for (file, source) in files {
        std::fs::write(scratch.path(file), source).unwrap();
    }
    std::fs::write(scratch.path("pytest.ini"), "[pytest]\n").unwrap();
}

/// Starts worker `name` of `build` on `server`, persistent pytest over the suite in `scratch`,
/// with `flags` before the framework's.
fn pytest_worker(
    server: &RedisServer,
    scratch: &Scratch,
    build: &str,
    name: &str,
    flags: &[String],
) -> Proc {
    let mut args = strings(&[
        "run",
        "--queue",
        &server.url(),
        "--build",
        build,
        "--worker",
        name,
    ]);
    args.extend(flags.iter().cloned());
    args.extend(strings(&["pytest", "--persistent"]));
    Proc::spawn_in(name, scratch, &args, &[], scratch.dir.path())
}

/// `out`, worker `worker`'s output, has a `PASS` line (on stderr, with its progress) for each
/// of `tests` and none for another test.
fn assert_ran(out: &Output, worker: &str, tests: &[&str]) {
    let mark = format!("{worker}: ");
    let mut ran: Vec<(bool, &str)> = out
        .stderr
        .lines()
        .filter_map(|line| {
            let (status, id) = line.split_once(&mark)?;
            Some((status.trim_start().starts_with("PASS"), id))
        })
        .collect();
    ran.sort_unstable();
    let mut expected: Vec<(bool, &str)> = tests.iter().map(|id| (true, *id)).collect();
    expected.sort_unstable();
    assert_eq!(ran, expected, "{}", out.both());
}

/// Two distributed workers and a report over `framework_args` (what follows the queue flags),
/// run in `cwd`.
pub(crate) fn distributed(
    cwd: &Path,
    build: &str,
    framework_args: &[&str],
    env: &[(&str, &str)],
) -> Output {
    let server = RedisServer::start();
    let scratch = Scratch::new();
    let report = Proc::spawn("report", &scratch, &report_args(&server, build));
    let workers: Vec<Proc> = ["w1", "w2"]
        .iter()
        .map(|worker| {
            let mut args = strings(&[
                "run",
                "--queue",
                &server.url(),
                "--build",
                build,
                "--worker",
                worker,
            ]);
            args.extend(fast_flags());
            args.extend(strings(&["--max-requeues", "0"]));
            args.extend(strings(framework_args));
            Proc::spawn_in(worker, &scratch, &args, env, cwd)
        })
        .collect();
    for worker in workers {
        let out = worker.wait(LONG);
        let verdicts = [ExitCode::Success, ExitCode::TestsFailed].map(|code| Some(code.code()));
        assert!(verdicts.contains(&out.code), "{}", out.both());
    }
    report.wait(LONG)
}

#[test]
fn persistent_protocol_boots_once_per_worker_and_survives_crashes() {
    let scratch = Scratch::new();
    let mut tests: Vec<String> = (0..10).map(|i| format!("pass/{i}")).collect();
    tests.extend(strings(&[
        "fail/one",
        "skip/one",
        "crash/one",
        "noise/one",
        "hang/one",
    ]));
    let list = scratch.tests(&tests);
    let args = strings(&[
        "run",
        "-j",
        "2",
        "--max-requeues",
        "0",
        "--test-timeout",
        "2s",
        "--persistent",
        "--tests",
        &list.to_string_lossy(),
        "--",
        &fixture("protocol-framework").to_string_lossy(),
    ]);
    let out = Proc::spawn("local", &scratch, &args).wait(LONG);
    assert_eq!(
        out.code,
        Some(ExitCode::TestsFailed.code()),
        "{}",
        out.both()
    );
    assert!(
        out.stdout
            .contains("15 tests: 10 passed, 1 skipped, 1 failed, 3 errored"),
        "{}",
        out.both()
    );
    assert!(
        out.stdout.contains("fail/one failed: expected 1, got 2"),
        "{}",
        out.both()
    );
    assert!(
        out.stdout
            .contains("crash/one: segmentation fault (simulated)"),
        "{}",
        out.both()
    );
    assert!(
        out.stdout
            .contains("the framework process died running this test"),
        "{}",
        out.both()
    );
    assert!(out.stdout.contains("timed out after 2s"), "{}", out.both());
    // The line's number depends on the tests its process ran before.
    assert!(
        out.stdout
            .contains("the framework broke the protocol (line ")
            && out
                .stdout
                .contains(" of its stdout is `this line is not a protocol message`)"),
        "{}",
        out.both()
    );
    // One boot per worker, plus a restart after the crash, the hang and the protocol breach
    // unless that was the worker's last test: never one per test.
    let starts = std::fs::read_to_string(scratch.path("starts.log")).unwrap();
    assert!((2..=5).contains(&starts.lines().count()), "{starts}");
    scratch.assert_each_ran_once(15);
}

/// The counts the fixture suite's own pytest run gives, mapped to ciq's outcomes.
fn expected_pytest_line() -> String {
    let expected: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("pytest_suite/expected.json")).unwrap(),
    )
    .unwrap();
    let count = |outcome: &str| expected["ciq"][outcome].as_u64().unwrap();
    format!(
        "{} tests: {} passed, {} skipped, {} failed, {} errored",
        expected["tests"],
        count("passed"),
        count("skipped"),
        count("failed"),
        count("errored")
    )
}

/// The fixture suite through ciq with `mode` (what follows the queue flags): the report's
/// counts are pytest's own, and the failure is shown.
fn pytest_counts_equal_pytest(build: &str, mode: &[&str]) {
    require_pytest();
    let out = distributed(&fixture("pytest_suite"), build, mode, &[]);
    assert_eq!(
        out.code,
        Some(ExitCode::TestsFailed.code()),
        "{}",
        out.both()
    );
    for expected in [
        expected_pytest_line(),
        "FAILED test_basic.py::test_failure_with_output".to_owned(),
    ] {
        assert!(out.stdout.contains(&expected), "{}", out.both());
    }
}

#[test]
fn pytest_batch_mode_counts_equal_pytest() {
    pytest_counts_equal_pytest("pytest-batch", &["--batch-size", "3", "pytest", "--batch"]);
}

#[test]
fn pytest_persistent_mode_counts_equal_pytest() {
    pytest_counts_equal_pytest("pytest-persistent", &["pytest", "--persistent"]);
}

#[test]
fn pytest_collection_errors_fail_the_build_clearly() {
    require_pytest();
    let scratch = Scratch::new();
    for persistent in [false, true] {
        let mut args = strings(&["run", "-j", "2", "pytest"]);
        args.push(
            if persistent {
                "--persistent"
            } else {
                "--batch"
            }
            .to_owned(),
        );
        let out = Proc::spawn_in(
            "local",
            &scratch,
            &args,
            &[],
            &fixture("pytest_collect_error"),
        )
        .wait(LONG);
        assert_eq!(out.code, Some(ExitCode::Usage.code()), "{}", out.both());
        assert!(out.stderr.contains("ModuleNotFoundError"), "{}", out.both());
        assert!(!out.stdout.contains("verdict: green"), "{}", out.both());
    }
}

#[test]
fn nextest_adapter_counts_equal_cargo_nextest() {
    let project = fixture("nextest_project");
    let target = Scratch::new();
    let target_dir = target.dir.path().to_string_lossy().into_owned();
    let env = [("CARGO_TARGET_DIR", target_dir.as_str())];
    let plain = std::process::Command::new("cargo")
        .args(["nextest", "run", "--no-fail-fast"])
        .current_dir(&project)
        .env("CARGO_TARGET_DIR", &target_dir)
        .output()
        .unwrap();
    let plain_err = String::from_utf8_lossy(&plain.stderr);
    assert!(
        plain_err.contains("6 tests run: 5 passed, 1 failed, 1 skipped"),
        "cargo nextest itself: {plain_err}"
    );
    let out = distributed(&project, "nextest", &["nextest"], &env);
    assert_eq!(
        out.code,
        Some(ExitCode::TestsFailed.code()),
        "{}",
        out.both()
    );
    assert!(
        out.stdout
            .contains("7 tests: 5 passed, 1 skipped, 1 failed"),
        "{}",
        out.both()
    );
    assert!(
        out.stdout
            .contains("FAILED nextest-fixture tests::fails_on_purpose"),
        "{}",
        out.both()
    );
    assert!(
        out.stdout.contains("two and two make four"),
        "{}",
        out.both()
    );
}

/// A ciq process lists a nextest suite once: `cargo nextest list` runs every test binary, so
/// listing again for each worker (the leader's listing, then each local worker's, to learn its
/// binaries) cost `ciq run -j 2 nextest` seconds against `cargo nextest run` on a real crate.
/// A `cargo` ahead on PATH counts the listings, locally with 2 workers and for a Redis leader.
#[test]
fn a_ciq_process_lists_a_nextest_suite_once() {
    let project = fixture("nextest_project");
    let scratch = Scratch::new();
    let shims = scratch.path("shims");
    std::fs::create_dir(&shims).unwrap();
    let log = scratch.path("listings.log");
    // The real cargo as a path, found before the shim goes ahead of it on PATH: a shim that
    // ran `cargo` by name would run itself for ever (under `ciq run nextest`, as in
    // scripts/dogfood.sh, CARGO is the bare name `cargo`).
    let found = std::process::Command::new("sh")
        .args(["-c", "command -v \"${CARGO:-cargo}\""])
        .output()
        .unwrap();
    let cargo = String::from_utf8(found.stdout).unwrap().trim().to_owned();
    assert!(!cargo.is_empty(), "no cargo on PATH");
    std::fs::write(
        shims.join("cargo"),
        format!(
            "#!/bin/sh\nif [ \"$1 $2\" = 'nextest list' ]; then echo listed >> '{}'; fi\nexec '{cargo}' \"$@\"\n",
            log.display()
        ),
    )
    .unwrap();
    std::process::Command::new("chmod")
        .arg("+x")
        .arg(shims.join("cargo"))
        .status()
        .unwrap();
    let path = format!(
        "{}:{}",
        shims.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let target = scratch.path("target");
    let target = target.to_string_lossy();
    let env = [
        ("PATH", path.as_str()),
        ("CARGO_TARGET_DIR", target.as_ref()),
    ];
    let listings = || {
        let count = std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .count();
        std::fs::remove_file(&log).unwrap_or_default();
        count
    };
    let local = Proc::spawn_in(
        "local",
        &scratch,
        &strings(&["run", "-j", "2", "nextest"]),
        &env,
        &project,
    )
    .wait(LONG);
    assert!(
        local
            .stdout
            .contains("7 tests: 5 passed, 1 skipped, 1 failed"),
        "{}",
        local.both()
    );
    assert_eq!(listings(), 1, "local mode, 2 workers: {}", local.both());
    let server = RedisServer::start();
    let mut args = strings(&[
        "run",
        "--queue",
        &server.url(),
        "--build",
        "once",
        "--worker",
        "w1",
    ]);
    args.push("nextest".to_owned());
    let leader = Proc::spawn_in("leader", &scratch, &args, &env, &project).wait(LONG);
    assert_eq!(
        leader.code,
        Some(ExitCode::TestsFailed.code()),
        "{}",
        leader.both()
    );
    assert_eq!(listings(), 1, "a Redis leader: {}", leader.both());
}

/// Writes a pytest project of `files` x `tests` passing tests whose pytest.ini has `addopts`.
fn pytest_project(dir: &Path, addopts: &str, files: usize, tests: usize) {
    std::fs::write(
        dir.join("pytest.ini"),
        format!("[pytest]\naddopts = {addopts}\n"),
    )
    .unwrap();
    for file in 0..files {
        let body: String = (0..tests)
            .map(|test| format!("def test_{test:02}():\n    pass\n\n"))
            .collect();
        std::fs::write(dir.join(format!("test_triv_{file:02}.py")), body).unwrap();
    }
}

/// Regression: `addopts = -ra -q` (pytest's own documentation's example) made
/// `--collect-only -q` print `test_triv_00.py: 5` per file, and `-v` a header and a tree; ciq
/// queued those lines as test ids and ran none of the real tests, in every mode.
#[test]
fn pytest_addopts_cannot_reshape_the_listing() {
    require_pytest();
    for addopts in ["-ra -q", "-v"] {
        let project = Scratch::new();
        pytest_project(project.dir.path(), addopts, 2, 5);
        let expected = "10 tests: 10 passed\nverdict: green";
        for mode in [&["pytest", "--batch"][..], &["pytest", "--persistent"]] {
            let mut args = strings(&["run", "-j", "2", "--batch-size", "5"]);
            args.extend(strings(mode));
            let out = Proc::spawn_in("local", &project, &args, &[], project.dir.path()).wait(LONG);
            assert_eq!(
                out.code,
                Some(ExitCode::Success.code()),
                "{addopts} {mode:?}: {}",
                out.both()
            );
            assert!(
                out.stdout.contains(expected),
                "{addopts} {mode:?}: {}",
                out.both()
            );
            let mut distributed_mode = strings(&["--batch-size", "5"]);
            distributed_mode.extend(strings(mode));
            let mode_args: Vec<&str> = distributed_mode.iter().map(String::as_str).collect();
            let build = format!("addopts-{}-{}", addopts.len(), mode.len());
            let out = distributed(project.dir.path(), &build, &mode_args, &[]);
            assert_eq!(
                out.code,
                Some(ExitCode::Success.code()),
                "{addopts} {mode:?}: {}",
                out.both()
            );
            assert!(
                out.stdout.contains(expected),
                "{addopts} {mode:?}: {}",
                out.both()
            );
        }
    }
}

/// A listing line that is not a node id is a listing error naming the line, never a test.
#[test]
fn pytest_listing_lines_that_are_not_node_ids_fail_the_build() {
    require_pytest();
    let project = Scratch::new();
    pytest_project(project.dir.path(), "", 1, 2);
    // A conftest that writes to the real stdout during collection, as a noisy plugin might.
    std::fs::write(
        project.path("conftest.py"),
        "import os\n\ndef pytest_collection_finish(session):\n    os.write(1, b'plugin says hello\\n')\n",
    )
    .unwrap();
    let out = Proc::spawn_in(
        "local",
        &project,
        &strings(&["run", "-j", "2", "pytest", "--batch"]),
        &[],
        project.dir.path(),
    )
    .wait(LONG);
    assert_eq!(out.code, Some(ExitCode::Usage.code()), "{}", out.both());
    assert!(
        out.stderr
            .contains("is not a pytest node id: `plugin says hello`"),
        "{}",
        out.both()
    );
    assert!(!out.stdout.contains("verdict"), "{}", out.both());
}

/// A real interpreter without pytest, in a fresh virtualenv.
fn python_without_pytest(scratch: &Scratch) -> String {
    let venv = scratch.path("bare-venv");
    let made = std::process::Command::new("python3")
        .args(["-m", "venv", "--without-pip"])
        .arg(&venv)
        .status()
        .unwrap();
    assert!(made.success(), "python3 -m venv failed");
    venv.join("bin/python3").to_string_lossy().into_owned()
}

/// Checking the command line starts no interpreter: a `ciq run pytest` refused for its flags
/// never ran Python (it used to look for the plugin before it checked the other flags).
#[test]
fn a_refused_command_line_starts_no_python() {
    let scratch = Scratch::new();
    let ran = scratch.path("python-ran");
    let python = scratch.path("python3");
    std::fs::write(
        &python,
        format!("#!/bin/sh\ntouch '{}'\nexit 1\n", ran.display()),
    )
    .unwrap();
    std::fs::set_permissions(&python, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let args = strings(&[
        "run",
        "-j",
        "1",
        "--heartbeat-interval",
        "20s",
        "--heartbeat-timeout",
        "30s",
        "pytest",
    ]);
    let python = python.to_string_lossy().into_owned();
    let out = Proc::spawn_in(
        "local",
        &scratch,
        &args,
        &[("CIQ_PYTHON", python.as_str())],
        scratch.dir.path(),
    )
    .wait(LONG);
    assert_eq!(out.code, Some(ExitCode::Usage.code()), "{}", out.both());
    assert!(
        out.stderr.contains("--heartbeat-interval (20s)"),
        "{}",
        out.both()
    );
    assert!(
        !ran.exists(),
        "python ran while the command line was checked"
    );
}

/// Without Python or pytest, ciq says how to point it at the interpreter that has pytest.
#[test]
fn a_missing_python_or_pytest_gets_a_hint_about_ciq_python() {
    require_pytest();
    let project = Scratch::new();
    pytest_project(project.dir.path(), "", 1, 4);
    let bare = python_without_pytest(&project);
    for (python, said) in [
        ("/nonexistent/python3", "`/nonexistent/python3`: not found"),
        (bare.as_str(), "No module named"),
    ] {
        // Out of the box too: without the plugin, batch mode, which says what is missing.
        for mode in [
            &["pytest"][..],
            &["pytest", "--batch"],
            &["pytest", "--persistent"],
        ] {
            let mut args = strings(&["run", "-j", "2"]);
            args.extend(strings(mode));
            let out = Proc::spawn_in(
                "local",
                &project,
                &args,
                &[("CIQ_PYTHON", python)],
                project.dir.path(),
            )
            .wait(LONG);
            assert_eq!(
                out.code,
                Some(ExitCode::Usage.code()),
                "{python} {mode:?}: {}",
                out.both()
            );
            assert!(
                out.stderr.contains(said),
                "{python} {mode:?}: {}",
                out.both()
            );
            assert!(
                out.stderr.contains("set CIQ_PYTHON to the one that has it"),
                "{python} {mode:?}: {}",
                out.both()
            );
        }
    }
    // A follower whose interpreter lacks pytest stops before taking a test (when it joins
    // after the leader ran them all, at its own listing); the leader runs them all and the
    // build is green.
    let server = RedisServer::start();
    let scratch = Scratch::new();
    let worker = |name: &str, env: &[(&str, &str)]| {
        let mut args = strings(&[
            "run",
            "--queue",
            &server.url(),
            "--build",
            "bare",
            "--worker",
            name,
        ]);
        args.extend(fast_flags());
        args.push("pytest".to_owned());
        Proc::spawn_in(name, &scratch, &args, env, project.dir.path())
    };
    let leader = worker("w1", &[]);
    leader.wait_for_stderr("queued 4 tests", LONG);
    let bare_worker = worker("w2", &[("CIQ_PYTHON", bare.as_str())]).wait(LONG);
    assert_eq!(
        bare_worker.code,
        Some(ExitCode::Usage.code()),
        "{}",
        bare_worker.both()
    );
    assert!(
        bare_worker.stderr.contains("No module named"),
        "{}",
        bare_worker.both()
    );
    let leader = leader.wait(LONG);
    assert_eq!(
        leader.code,
        Some(ExitCode::Success.code()),
        "{}",
        leader.both()
    );
    assert!(
        leader.stdout.contains("4 tests: 4 passed"),
        "{}",
        leader.both()
    );
}

/// 20 tests sharing one module-scoped fixture that takes 0.1 s to set up (a cost auto batches
/// see) and logs each setup to `setups.log`; each test logs its run to `ran.log`.
fn module_fixture_suite(dir: &Path) {
    let mut source = String::from(
        "import os\nimport time\nimport pytest\n\n\n@pytest.fixture(scope='module')\ndef shared():\n    time.sleep(0.1)\n    with open(os.path.join(os.path.dirname(__file__), 'setups.log'), 'a') as log:\n        log.write('setup\\n')\n    return 1\n",
    );
    for n in 0..20 {
        source.push_str(&format!(
            "\n\ndef test_{n:02}(shared):\n    with open(os.path.join(os.path.dirname(__file__), 'ran.log'), 'a') as log:\n        log.write('test_{n:02}\\n')\n    assert shared == 1\n"
        ));
    }
    std::fs::write(dir.join("test_shared.py"), source).unwrap();
    std::fs::write(dir.join("pytest.ini"), "[pytest]\n").unwrap();
}

/// Every test of [`module_fixture_suite`] in `dir` ran exactly once, by its own log.
fn assert_each_ran_once(dir: &Path, context: &str) {
    let mut ran: Vec<String> = std::fs::read_to_string(dir.join("ran.log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect();
    ran.sort();
    let expected: Vec<String> = (0..20).map(|n| format!("test_{n:02}")).collect();
    assert_eq!(ran, expected, "{context}: each test ran once");
}

/// A module's fixture is set up a few times, not once per test: in batch mode a batch holds
/// many of its tests; the persistent plugin is told the next test of a batch, and keeps the
/// module up past a batch's end (ciq holds the last result until it is torn down), so one
/// worker sets it up once, whatever the batch size.
#[test]
fn batches_share_a_modules_fixture() {
    require_pytest();
    for (mode, setups_allowed) in [
        (&["pytest", "--batch"][..], 1..=4),
        (&["pytest", "--persistent"][..], 1..=1),
        // Before the plugin kept the module past a batch's end: one setup per test.
        (&["--batch-size", "1", "pytest", "--persistent"][..], 1..=1),
    ] {
        let scratch = Scratch::new();
        module_fixture_suite(scratch.dir.path());
        let mut args = strings(&["run", "-j", "1"]);
        args.extend(strings(mode));
        let out = Proc::spawn_in("local", &scratch, &args, &[], scratch.dir.path()).wait(LONG);
        assert_eq!(
            out.code,
            Some(ExitCode::Success.code()),
            "{mode:?}: {}",
            out.both()
        );
        assert!(out.stdout.contains("20 tests: 20 passed"), "{}", out.both());
        assert_each_ran_once(scratch.dir.path(), &format!("{mode:?}"));
        let setups = std::fs::read_to_string(scratch.path("setups.log"))
            .unwrap()
            .lines()
            .count();
        assert!(
            setups_allowed.contains(&setups),
            "{mode:?}: the fixture was set up {setups} times"
        );
    }
}

/// A module teardown that fails after the last test of a batch (kept up for a test that might
/// follow) errors that test, as plain pytest would: the build is red, never green. Here
/// `test_one` fails once, and its retry, the last test the worker runs, breaks the module's
/// teardown: the module stays up after it until the worker settles, and that teardown fails.
#[test]
fn a_failing_kept_module_teardown_makes_the_build_red() {
    require_pytest();
    let scratch = Scratch::new();
    std::fs::write(
        scratch.path("test_breaks.py"),
        "import os\nimport pytest\n\n\n@pytest.fixture(scope='module')\ndef shared():\n    yield 1\n    if os.path.exists('break-teardown'):\n        raise RuntimeError('module teardown went wrong')\n\n\ndef test_one(shared):\n    if os.path.exists('failed-once'):\n        open('break-teardown', 'w').close()\n    else:\n        open('failed-once', 'w').close()\n        assert False, 'fails the first time'\n\n\ndef test_two(shared):\n    pass\n",
    )
    .unwrap();
    std::fs::write(scratch.path("pytest.ini"), "[pytest]\n").unwrap();
    let args = strings(&[
        "run",
        "-j",
        "1",
        "--batch-size",
        "1",
        "--requeue-tolerance",
        "1",
        "pytest",
        "--persistent",
    ]);
    let out = Proc::spawn_in("local", &scratch, &args, &[], scratch.dir.path()).wait(LONG);
    assert_eq!(
        out.code,
        Some(ExitCode::TestsFailed.code()),
        "{}",
        out.both()
    );
    assert!(out.stdout.contains("verdict: failed"), "{}", out.both());
    assert!(
        out.stdout.contains("ERRORED test_breaks.py::test_one")
            && out
                .stdout
                .contains("kept up for the test that might follow it")
            && out.stdout.contains("module teardown went wrong"),
        "the kept test is errored with the teardown's error: {}",
        out.both()
    );
}

/// A follower whose check comes after the build ended (its collection slower than the whole
/// build) but that joined while it ran: the report, which waits for the build's live workers
/// to leave before it prints, reads the mismatch they recorded meanwhile and is red. Here
/// `w2` leads over two tests, `w1` joins during the first and collects for 3 s, one test more.
#[test]
fn a_mismatch_recorded_while_the_report_waits_for_the_workers_turns_it_red() {
    require_pytest();
    let server = RedisServer::start();
    let scratch = Scratch::new();
    pytest_suite(
        &scratch,
        &[
            (
                "conftest.py",
                "import os, time\n\n\ndef pytest_collection_modifyitems(config, items):\n    if os.environ.get('CIQ_WORKER') == 'w2':\n        items[:] = [i for i in items if 'test_c.py' not in i.nodeid]\n    else:\n        time.sleep(3)\n",
            ),
            (
                "test_a.py",
                "import time\n\n\ndef test_a1():\n    open('a1-started', 'w').close()\n    time.sleep(1.5)\n\n\ndef test_a2():\n    pass\n",
            ),
            ("test_c.py", "def test_c():\n    pass\n"),
        ],
    );
    // Default timings: a heartbeat timeout far longer than w1's collection.
    let build = "late-check";
    let report = Proc::spawn("report", &scratch, &report_args(&server, build));
    let leader = pytest_worker(&server, &scratch, build, "w2", &[]);
    ciq_testkit::wait_until("w2 to run its first test", LONG, || {
        scratch.path("a1-started").exists()
    });
    let follower = pytest_worker(&server, &scratch, build, "w1", &[]);
    let leader = leader.wait(LONG);
    assert_eq!(
        leader.code,
        Some(ExitCode::Success.code()),
        "{}",
        leader.both()
    );
    assert_ran(&leader, "w2", &["test_a.py::test_a1", "test_a.py::test_a2"]);
    let follower = follower.wait(LONG);
    assert_eq!(
        follower.code,
        Some(ExitCode::ListMismatch.code()),
        "{}",
        follower.both()
    );
    assert!(
        !follower.both().contains("w1: test_c.py"),
        "{}",
        follower.both()
    );
    let report = report.wait(LONG);
    assert_eq!(
        report.code,
        Some(ExitCode::ListMismatch.code()),
        "{}",
        report.both()
    );
    assert!(
        report.stdout.contains("worker `w1`: 1 of its 3 ids"),
        "{}",
        report.both()
    );
}

/// A follower checks its own collection before it takes a test, and heartbeats while it
/// collects: a collection longer than the heartbeat timeout must not make the report count it
/// gone. Here the leader dies mid-test while the follower collects for 4 s (the heartbeat
/// timeout is 1.5 s); the follower takes the test over and the build ends green.
#[test]
fn a_follower_collecting_longer_than_the_heartbeat_timeout_is_alive() {
    require_pytest();
    let server = RedisServer::start();
    let scratch = Scratch::new();
    pytest_suite(
        &scratch,
        &[
            (
                "conftest.py",
                "import os, time\n\n\ndef pytest_collection_modifyitems(config, items):\n    if os.environ.get('CIQ_WORKER') != 'w2':\n        time.sleep(4)\n",
            ),
            (
                "test_a.py",
                "import os, time\n\n\ndef test_a1():\n    if os.environ.get('CIQ_WORKER') == 'w2':\n        open('a1-started', 'w').close()\n        time.sleep(20)\n\n\ndef test_a2():\n    pass\n",
            ),
        ],
    );
    let build = "slow-collection";
    let report = Proc::spawn("report", &scratch, &report_args(&server, build));
    let mut flags = fast_flags();
    flags.extend(strings(&["--batch-size", "1"]));
    let leader = pytest_worker(&server, &scratch, build, "w2", &flags);
    ciq_testkit::wait_until("w2 to start its first test", LONG, || {
        scratch.path("a1-started").exists()
    });
    let follower = pytest_worker(&server, &scratch, build, "w1", &flags);
    std::thread::sleep(Duration::from_millis(500));
    leader.signal(nix::sys::signal::Signal::SIGKILL);
    let follower = follower.wait(LONG);
    assert_eq!(
        follower.code,
        Some(ExitCode::Success.code()),
        "{}",
        follower.both()
    );
    // The leader's test, taken over, and the other: both run by the follower.
    assert_ran(
        &follower,
        "w1",
        &["test_a.py::test_a1", "test_a.py::test_a2"],
    );
    let report = report.wait(LONG);
    assert_eq!(
        report.code,
        Some(ExitCode::Success.code()),
        "{}",
        report.both()
    );
    assert!(
        report.stdout.contains("2 tests: 2 passed"),
        "{}",
        report.both()
    );
}

/// Regression (a hostile probe): a session-scoped fixture whose teardown fails made plain
/// pytest exit 1, but ciq tore the session down only at shutdown, after every result was sent:
/// a warning, and a green build. Now the worker's last test is kept up to the end and the
/// session's teardown, at settle, errors it, as pytest errors the last test's teardown.
#[test]
fn a_failing_session_teardown_makes_the_build_red() {
    require_pytest();
    let scratch = Scratch::new();
    pytest_suite(
        &scratch,
        &[
            (
                "conftest.py",
                "import pytest\n\n\n@pytest.fixture(scope='session', autouse=True)\ndef db():\n    yield\n    raise RuntimeError('leaked connections at session teardown')\n",
            ),
            (
                "test_a.py",
                "def test_one():\n    pass\n\n\ndef test_two():\n    pass\n",
            ),
        ],
    );
    let args = strings(&[
        "run",
        "-j",
        "1",
        "--max-requeues",
        "0",
        "pytest",
        "--persistent",
    ]);
    let out = Proc::spawn_in("local", &scratch, &args, &[], scratch.dir.path()).wait(LONG);
    assert_eq!(
        out.code,
        Some(ExitCode::TestsFailed.code()),
        "{}",
        out.both()
    );
    assert!(
        out.stdout.contains("2 tests: 1 passed, 1 errored")
            && out.stdout.contains("ERRORED test_a.py::test_two")
            && out
                .stdout
                .contains("leaked connections at session teardown"),
        "{}",
        out.both()
    );
}

/// Persistent pytest collects the suite once per worker: the framework that runs the tests
/// also lists them (the leader's, or the first local worker's), instead of a listing run of its
/// own before it. Where the plugin is installed (as here), `ciq run pytest` is persistent.
#[test]
fn persistent_pytest_collects_once_per_worker() {
    require_pytest();
    let collections = |dir: &Path| {
        std::fs::read_to_string(dir.join("collections.log"))
            .unwrap_or_default()
            .lines()
            .count()
    };
    let suite = |dir: &Path| {
        module_fixture_suite(dir);
        std::fs::write(
            dir.join("conftest.py"),
            "import os\n\n\ndef pytest_collection_finish(session):\n    with open(os.path.join(os.path.dirname(__file__), 'collections.log'), 'a') as log:\n        log.write(f'{len(session.items)}\\n')\n",
        )
        .unwrap();
    };

    let scratch = Scratch::new();
    suite(scratch.dir.path());
    let args = strings(&["run", "-j", "2", "pytest"]);
    let out = Proc::spawn_in("local", &scratch, &args, &[], scratch.dir.path()).wait(LONG);
    assert_eq!(out.code, Some(ExitCode::Success.code()), "{}", out.both());
    assert!(out.stdout.contains("20 tests: 20 passed"), "{}", out.both());
    assert_each_ran_once(scratch.dir.path(), "local");
    assert_eq!(collections(scratch.dir.path()), 2, "local: one per worker");

    let dir = Scratch::new();
    suite(dir.dir.path());
    let out = distributed(
        dir.dir.path(),
        "collect-once",
        &["pytest", "--persistent"],
        &[],
    );
    assert_eq!(out.code, Some(ExitCode::Success.code()), "{}", out.both());
    assert!(out.stdout.contains("20 tests: 20 passed"), "{}", out.both());
    assert_each_ran_once(dir.dir.path(), "Redis");
    assert_eq!(collections(dir.dir.path()), 2, "Redis: one per worker");
}

/// Issue 23: on 1,000 trivial pytest tests with 4 workers started together, one worker used to
/// run all of them (the others started pytest only once the queue was filled, then found it
/// drained). Followers start their framework while the leader lists and batches are a fair
/// share of what is left, so every worker runs some.
#[test]
fn four_workers_on_a_thousand_trivial_tests_each_run_some() {
    require_pytest();
    let server = RedisServer::start();
    let scratch = Scratch::new();
    let files: Vec<(String, String)> = (0..20)
        .map(|file| {
            let tests: String = (0..50)
                .map(|n| format!("def test_{n:02}():\n    assert {n} + 1 == {}\n\n\n", n + 1))
                .collect();
            (format!("test_{file:02}.py"), tests)
        })
        .collect();
    let files: Vec<(&str, &str)> = files
        .iter()
        .map(|(f, s)| (f.as_str(), s.as_str()))
        .collect();
    pytest_suite(&scratch, &files);
    let build = "thousand";
    let workers: Vec<(String, Proc)> = ["w1", "w2", "w3", "w4"]
        .iter()
        .map(|name| {
            let worker = pytest_worker(&server, &scratch, build, name, &[]);
            ((*name).to_owned(), worker)
        })
        .collect();
    let mut total = 0;
    for (name, worker) in workers {
        let out = worker.wait(LONG);
        assert_eq!(out.code, Some(ExitCode::Success.code()), "{}", out.both());
        let mark = format!("{name}: ");
        let ran = out
            .stderr
            .lines()
            .filter(|line| {
                line.split_once(&mark)
                    .is_some_and(|(status, _)| status.trim_start().starts_with("PASS"))
            })
            .count();
        assert!(ran > 0, "{name} ran no test:\n{}", out.both());
        total += ran;
    }
    assert_eq!(total, 1000, "each test ran once");
}

/// Regression (a hostile probe): in persistent mode every worker's pytest collects the suite,
/// but only the leader's collection was used; a follower that collected more (a platform
/// conditional, a generated file) ran none of its own tests and the build went green. Now it
/// compares its collection with the build's, as a follower given `--tests` does: it runs
/// nothing, exits 6, and the build's verdict is red. Here `w2` leads and does not see
/// `test_c.py`; `w1` comes after it finished the build.
#[test]
fn a_persistent_follower_whose_collection_differs_turns_the_build_red() {
    require_pytest();
    let server = RedisServer::start();
    let scratch = Scratch::new();
    pytest_suite(
        &scratch,
        &[
            (
                "conftest.py",
                "import os\n\n\ndef pytest_collection_modifyitems(config, items):\n    if os.environ.get('CIQ_WORKER') == 'w2':\n        items[:] = [i for i in items if 'test_c.py' not in i.nodeid]\n",
            ),
            (
                "test_a.py",
                "def test_a1():\n    pass\n\n\ndef test_a2():\n    pass\n",
            ),
            ("test_c.py", "def test_c_fails():\n    assert False\n"),
        ],
    );
    let build = "collections";
    let leader = pytest_worker(&server, &scratch, build, "w2", &fast_flags()).wait(LONG);
    assert_eq!(
        leader.code,
        Some(ExitCode::Success.code()),
        "{}",
        leader.both()
    );
    assert_ran(&leader, "w2", &["test_a.py::test_a1", "test_a.py::test_a2"]);
    let follower = pytest_worker(&server, &scratch, build, "w1", &fast_flags()).wait(LONG);
    assert_eq!(
        follower.code,
        Some(ExitCode::ListMismatch.code()),
        "{}",
        follower.both()
    );
    assert!(
        follower
            .stderr
            .contains("1 of its 3 ids are not in the build's list of 2"),
        "{}",
        follower.both()
    );
    assert!(
        !follower.both().contains("w1: test_c.py"),
        "{}",
        follower.both()
    );
    let report = Proc::spawn("report", &scratch, &report_args(&server, build)).wait(LONG);
    assert_eq!(
        report.code,
        Some(ExitCode::ListMismatch.code()),
        "{}",
        report.both()
    );
}
