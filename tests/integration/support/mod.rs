//! Test support: real redis-server processes, real `ciq` processes, a TCP fault proxy, and a
//! fixture test command that records every run.

pub mod proxy;
pub mod redis_server;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

pub use proxy::FaultProxy;
pub use redis_server::{RedisServer, free_port};

/// The `ciq` binary under test.
pub fn ciq() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ciq"))
}

/// The fixture test command (see `tests/fixtures/record-test`).
pub fn record_test() -> String {
    format!("{}/tests/fixtures/record-test", env!("CARGO_MANIFEST_DIR"))
}

/// A scratch directory holding a test list, the run log and markers.
pub struct Scratch {
    pub dir: tempfile::TempDir,
    extra_env: Vec<(String, String)>,
}

impl Scratch {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("scratch dir"),
            extra_env: Vec::new(),
        }
    }

    /// Adds a variable to every process started from this scratch.
    pub fn set_env(&mut self, name: &str, value: &str) {
        self.extra_env.push((name.to_owned(), value.to_owned()));
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes a test list file and returns its path.
    pub fn tests(&self, ids: &[String]) -> PathBuf {
        let path = self.path("tests.txt");
        std::fs::write(&path, ids.join("\n") + "\n").expect("write tests");
        path
    }

    /// The fixture's log: one `worker test` line per run started, in order.
    pub fn runs(&self) -> Vec<(String, String)> {
        std::fs::read_to_string(self.path("runs.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(|line| {
                let (worker, test) = line.split_once(' ')?;
                Some((worker.to_owned(), test.to_owned()))
            })
            .collect()
    }

    /// Asserts that `expected` tests ran, each exactly once.
    pub fn assert_each_ran_once(&self, expected: usize) {
        let counts = self.run_counts();
        assert_eq!(counts.len(), expected, "every test ran: {counts:?}");
        let twice: Vec<_> = counts.iter().filter(|(_, n)| **n != 1).collect();
        assert!(twice.is_empty(), "tests run more than once: {twice:?}");
    }

    /// How often each test ran.
    pub fn run_counts(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for (_, test) in self.runs() {
            *counts.entry(test).or_insert(0) += 1;
        }
        counts
    }

    /// Environment every ciq process of a test gets, so the fixture logs into this scratch.
    pub fn env(&self) -> Vec<(String, String)> {
        let mut env = self.extra_env.clone();
        env.extend([
            (
                "RECORD_TEST_DIR".to_owned(),
                self.dir.path().to_string_lossy().into_owned(),
            ),
            // What the test commands leave in a temporary directory goes with the scratch.
            (
                "TMPDIR".to_owned(),
                self.dir.path().to_string_lossy().into_owned(),
            ),
            ("PATH".to_owned(), test_path()),
            // Tests must not pick up the CI environment of the machine running them.
            ("BUILDKITE".to_owned(), String::new()),
            ("GITHUB_ACTIONS".to_owned(), String::new()),
            ("GITLAB_CI".to_owned(), String::new()),
            ("CIRCLECI".to_owned(), String::new()),
            ("JENKINS_URL".to_owned(), String::new()),
        ]);
        env
    }
}

/// The virtualenv `scripts/test` builds with pytest and ciq's plugin.
pub fn test_venv() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-venv")
}

/// `PATH` for ciq processes: the test virtualenv first when it exists, so `python3` is the one
/// with pytest and the plugin even under a plain `cargo test`.
pub fn test_path() -> String {
    let path = std::env::var("PATH").unwrap_or_default();
    let venv = test_venv().join("bin");
    if venv.join("python3").exists() {
        format!("{}:{path}", venv.display())
    } else {
        path
    }
}

/// Fails, saying how to fix it, when `python3` has no pytest: a pytest test must never pass or
/// skip because pytest is missing.
pub fn require_pytest() {
    let found = Command::new("python3")
        .args(["-c", "import pytest, ciq_pytest"])
        .env("PATH", test_path())
        .status()
        .is_ok_and(|status| status.success());
    assert!(
        found,
        "pytest or ciq's pytest plugin is not installed for `python3`: run `scripts/test`, which installs them into target/test-venv (the tests use it from then on)"
    );
}

/// `n` ids with a prefix: `pass/0001`, ...
pub fn ids(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}/{i:04}")).collect()
}

/// A ciq process whose output goes to files (a pipe could fill up and block it).
pub struct Proc {
    pub name: String,
    child: Child,
    out: PathBuf,
    err: PathBuf,
}

/// A finished process.
#[derive(Debug)]
pub struct Output {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// Both streams, for assertion messages.
    pub fn both(&self) -> String {
        format!("--- stdout\n{}\n--- stderr\n{}", self.stdout, self.stderr)
    }
}

impl Proc {
    /// Starts `args` of `ciq` with the scratch's environment.
    pub fn spawn(name: &str, scratch: &Scratch, args: &[String]) -> Self {
        Self::spawn_with_env(name, scratch, args, &[])
    }

    /// Like [`Proc::spawn`], with extra variables for this process only.
    pub fn spawn_with_env(
        name: &str,
        scratch: &Scratch,
        args: &[String],
        env: &[(&str, &str)],
    ) -> Self {
        Self::spawn_in(name, scratch, args, env, Path::new("."))
    }

    /// Like [`Proc::spawn_with_env`], in the working directory `cwd`.
    pub fn spawn_in(
        name: &str,
        scratch: &Scratch,
        args: &[String],
        env: &[(&str, &str)],
        cwd: &Path,
    ) -> Self {
        let out = scratch.path(&format!("{name}.stdout"));
        let err = scratch.path(&format!("{name}.stderr"));
        let mut command = ciq();
        // A test's ciq must not inherit the CIQ_* settings of a ciq running this suite.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("CIQ_") {
                command.env_remove(name);
            }
        }
        let child = command
            .current_dir(cwd)
            .args(args)
            .envs(scratch.env())
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).expect("stdout file"))
            .stderr(std::fs::File::create(&err).expect("stderr file"))
            .spawn()
            .expect("spawn ciq");
        Self {
            name: name.to_owned(),
            child,
            out,
            err,
        }
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    pub fn signal(&self, signal: Signal) {
        let _ = kill(self.pid(), signal);
    }

    /// What it printed to stderr so far.
    pub fn stderr_so_far(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }

    /// Waits until stderr contains `needle`.
    pub fn wait_for_stderr(&self, needle: &str, within: Duration) {
        let deadline = Instant::now() + within;
        while !self.stderr_so_far().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "{} never printed `{needle}`; stderr:\n{}",
                self.name,
                self.stderr_so_far()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the process to end (killing it after `within`).
    pub fn wait(self, within: Duration) -> Output {
        let name = self.name.clone();
        let (output, ended) = self.wait_or_kill(within);
        assert!(
            ended,
            "{name} did not finish within {within:?}\n{}",
            output.both()
        );
        output
    }

    /// Waits for the process to end; after `within` kills it. Returns what it printed and
    /// whether it ended by itself.
    pub fn wait_or_kill(mut self, within: Duration) -> (Output, bool) {
        let deadline = Instant::now() + within;
        let status: Option<ExitStatus> = loop {
            match self.child.try_wait().expect("try_wait") {
                Some(status) => break Some(status),
                None if Instant::now() >= deadline => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break None;
                }
                None => std::thread::sleep(Duration::from_millis(20)),
            }
        };
        let output = Output {
            code: status.and_then(|s| s.code()),
            stdout: std::fs::read_to_string(&self.out).unwrap_or_default(),
            stderr: std::fs::read_to_string(&self.err).unwrap_or_default(),
        };
        (output, status.is_some())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Fast timings for tests: short heartbeats and lock TTL, so faults resolve in seconds.
pub fn fast_flags() -> Vec<String> {
    [
        "--heartbeat-interval",
        "200ms",
        "--heartbeat-timeout",
        "1500ms",
        "--lock-ttl",
        "900ms",
        "--redis-timeout",
        "10s",
        "--queue-init-timeout",
        "60s",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect()
}

/// `ciq run` arguments for one worker of `build`.
pub fn worker_args(server: &RedisServer, build: &str, worker: &str, tests: &Path) -> Vec<String> {
    let mut args = vec![
        "run".to_owned(),
        "--queue".to_owned(),
        server.url(),
        "--build".to_owned(),
        build.to_owned(),
        "--worker".to_owned(),
        worker.to_owned(),
        "--tests".to_owned(),
        tests.to_string_lossy().into_owned(),
    ];
    args.extend(fast_flags());
    args
}

/// `args` with `flag` and its value replaced by `by`, a flag and its value.
pub fn replace_flag(mut args: Vec<String>, flag: &str, by: [String; 2]) -> Vec<String> {
    let at = args
        .iter()
        .position(|a| a == flag)
        .unwrap_or_else(|| panic!("no {flag} in {args:?}"));
    args.splice(at..at + 2, by);
    args
}

/// `args` with its `--queue` URL replaced by `proxy`'s, so the process talks to Redis through it.
pub fn through(args: Vec<String>, proxy: &FaultProxy) -> Vec<String> {
    replace_flag(args, "--queue", ["--queue".to_owned(), proxy.url()])
}

/// `args` listing tests with `command` (on the leader) instead of reading `--tests`.
pub fn with_list_command(args: Vec<String>, command: String) -> Vec<String> {
    replace_flag(args, "--tests", ["--list-command".to_owned(), command])
}

/// `ciq report` arguments for `build`.
pub fn report_args(server: &RedisServer, build: &str) -> Vec<String> {
    vec![
        "report".to_owned(),
        "--queue".to_owned(),
        server.url(),
        "--build".to_owned(),
        build.to_owned(),
        "--redis-timeout".to_owned(),
        "10s".to_owned(),
        "--queue-init-timeout".to_owned(),
        "60s".to_owned(),
        "--report-timeout".to_owned(),
        "120s".to_owned(),
    ]
}

/// Appends `-- record-test`.
pub fn with_command(mut args: Vec<String>) -> Vec<String> {
    args.push("--".to_owned());
    args.push(record_test());
    args
}

/// The outcome of every test, from the build-wide results hash.
pub fn results(server: &RedisServer, build: &str) -> BTreeMap<String, String> {
    let keys = ciq::queue::redis::keys::BuildKeys::new("", build);
    redis::cmd("HGETALL")
        .arg(keys.results())
        .query(&mut server.conn())
        .expect("HGETALL results")
}

/// One per-test line a worker printed: `PASS [  0.051s] w1: pass/0001`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestLine {
    pub status: String,
    pub worker: String,
    pub test: String,
}

impl TestLine {
    /// Whether the line reports the test's final outcome (not a retry, a discarded late result,
    /// or a duplicate).
    pub fn is_final(&self) -> bool {
        matches!(
            self.status.as_str(),
            "PASS" | "FAIL" | "ERROR" | "SKIP" | "FLAKY"
        )
    }
}

/// The per-test lines in a worker's stderr.
pub fn test_lines(stderr: &str) -> Vec<TestLine> {
    stderr
        .lines()
        .filter_map(|line| {
            let (status, rest) = line.trim_start().split_once(" [")?;
            let (_, rest) = rest.split_once("s] ")?;
            let (worker, test) = rest.split_once(": ")?;
            Some(TestLine {
                status: status.to_owned(),
                worker: worker.to_owned(),
                test: test.to_owned(),
            })
        })
        .collect()
}

/// The statuses (`PASS`, `LOST`...) a worker printed for `test`, in order.
pub fn statuses(stderr: &str, test: &str) -> Vec<String> {
    test_lines(stderr)
        .into_iter()
        .filter(|line| line.test == test)
        .map(|line| line.status)
        .collect()
}

/// Asserts that the workers printed exactly one final outcome for each of `expected` tests.
pub fn assert_one_final_line_each<'a>(stderrs: impl IntoIterator<Item = &'a str>, expected: usize) {
    let finals = final_lines(stderrs);
    assert_eq!(finals.len(), expected, "{finals:?}");
    assert!(finals.values().all(|&n| n == 1), "{finals:?}");
}

/// Final-outcome lines per test over several workers' stderr: one each when nothing was
/// counted twice.
pub fn final_lines<'a>(stderrs: impl IntoIterator<Item = &'a str>) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for stderr in stderrs {
        for line in test_lines(stderr).into_iter().filter(TestLine::is_final) {
            *counts.entry(line.test).or_insert(0) += 1;
        }
    }
    counts
}

/// The build's state value.
pub fn state(server: &RedisServer, build: &str) -> Option<String> {
    let keys = ciq::queue::redis::keys::BuildKeys::new("", build);
    redis::cmd("GET")
        .arg(keys.state())
        .query(&mut server.conn())
        .expect("GET state")
}

/// Deletes every key of `build`, as a Redis that lost its data would. The pattern follows the
/// keyspace's `ciq:{build}:` prefix; a mismatch deletes nothing and the caller's assertions fail.
pub fn lose_build(server: &RedisServer, build: &str) {
    let mut conn = server.conn();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("ciq:{{{build}}}:*"))
        .query(&mut conn)
        .expect("KEYS");
    assert!(!keys.is_empty(), "build `{build}` has no keys to lose");
    redis::cmd("DEL")
        .arg(&keys)
        .exec(&mut conn)
        .expect("DEL build keys");
}

/// Every key of generation `generation` of `build` still in Redis, whatever its name.
pub fn generation_keys(server: &RedisServer, build: &str, generation: &str) -> Vec<String> {
    let queue = ciq::queue::redis::keys::BuildKeys::new("", build)
        .generation(generation)
        .queue;
    let prefix = queue.rsplit_once(':').map_or("", |(prefix, _)| prefix);
    redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query(&mut server.conn())
        .expect("KEYS")
}

/// The generation a leader is filling, from the build's `setup:<gen>:<worker>` lock, if any.
pub fn setup_generation(server: &RedisServer, build: &str) -> Option<String> {
    let state = state(server, build)?;
    let (generation, _worker) = state.strip_prefix("setup:")?.split_once(':')?;
    Some(generation.to_owned())
}

/// The generation the build's state names as ready, if any.
pub fn ready_generation(server: &RedisServer, build: &str) -> Option<String> {
    state(server, build).and_then(|s| s.strip_prefix("ready:").map(str::to_owned))
}

/// Whether `worker` has started a run of `test`.
pub fn ran(scratch: &Scratch, worker: &str, test: &str) -> bool {
    scratch.runs().iter().any(|(w, t)| w == worker && t == test)
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
    let generation = ciq::queue::redis::keys::BuildKeys::new("", build).generation(&generation);
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
        assert_eq!(out.code, Some(0), "{}", out.both());
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

/// Waits until `condition` holds.
pub fn wait_until(what: &str, within: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Stages a new generation `name` holding `ids`, with the current generation's settings, and
/// makes it the build's, as an operator re-filling the queue would. False when the build has
/// no ready generation yet.
pub fn replace_generation(server: &RedisServer, build: &str, name: &str, ids: &[&str]) -> bool {
    let Some(current) = ready_generation(server, build) else {
        return false;
    };
    let keys = ciq::queue::redis::keys::BuildKeys::new("", build);
    let old = keys.generation(&current);
    let new = keys.generation(name);
    let mut conn = server.conn();
    let settings: Vec<Option<String>> = redis::cmd("HMGET")
        .arg(&old.meta)
        .arg(&["max-requeues", "requeue-limit", "heartbeat-timeout-ms"])
        .query(&mut conn)
        .expect("HMGET meta");
    let setting = |at: usize, default: &str| settings[at].clone().unwrap_or(default.to_owned());
    let _: () = redis::cmd("RPUSH")
        .arg(&new.queue)
        .arg(ids)
        .query(&mut conn)
        .expect("RPUSH");
    let _: () = redis::cmd("HSET")
        .arg(&new.meta)
        .arg("total")
        .arg(ids.len())
        .arg("max-requeues")
        .arg(setting(0, "1"))
        .arg("requeue-limit")
        .arg(setting(1, "1"))
        .arg("heartbeat-timeout-ms")
        .arg(setting(2, "2000"))
        .arg("requeued")
        .arg(0)
        .arg("leases")
        .arg(0)
        .arg("list-digest")
        .arg(ciq::test_id::digest(ids.iter().copied()))
        .query(&mut conn)
        .expect("HSET meta");
    let _: () = redis::cmd("ZADD")
        .arg(&new.running)
        .arg("+inf")
        .arg("")
        .query(&mut conn)
        .expect("ZADD running");
    let _: () = redis::cmd("SET")
        .arg(keys.state())
        .arg(format!("ready:{name}"))
        .query(&mut conn)
        .expect("SET state");
    true
}
