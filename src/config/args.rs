//! The command line as clap parses it: flags, their `CIQ_*` variables, defaults and help.
//! [`crate::config`] turns these raw values into validated configurations.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::batching::BatchSize;
use crate::config::floors::{self, at_least};
use crate::frameworks::Framework;
use crate::human::parse_duration;
use crate::time_limits::TestTimeout;

/// ciq: a distributed test queue. Workers on many CI machines pull one test suite from Redis,
/// so no machine idles while another runs a long tail, and a machine that dies takes no tests
/// with it.
#[derive(Debug, Parser)]
#[command(name = "ciq", version, max_term_width = 100)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run tests from the queue: one `ciq run` per CI machine, or `-j N` locally without Redis.
    #[command(after_help = RUN_EXAMPLES)]
    Run(Box<RunArgs>),
    /// Wait for a build's queue to drain and print its verdict: failures with their output,
    /// flaky tests, tests not run. Run it once per build, in its own CI step.
    #[command(after_help = EXIT_CODES)]
    Report(Box<ReportArgs>),
    /// Show where a build stands, from any machine: each worker and what it runs now (for how
    /// long, against its usual time), tests done and left, failures so far, and the time left
    /// estimated from the timing history. It only reads: it never changes the build.
    #[command(after_help = STATUS_EXIT_CODES)]
    Status(Box<StatusArgs>),
    /// List a namespace's flakiest tests over its recent builds (as `ciq report` recorded
    /// them): how many builds each was flaky and failed in, and the last one.
    Flaky(FlakyArgs),
    /// Find which tests that ran before a failing test, in one worker's process, make it fail:
    /// replays the worker's order log with `ciq run`'s runner flags, narrows by halves, then
    /// confirms the culprit by running it again (a flaky failure names no test: exit 7).
    #[command(after_help = BISECT_EXAMPLES)]
    Bisect(Box<BisectArgs>),
}

const BISECT_EXAMPLES: &str = "\
Examples:
  ciq bisect --order-log ~/.cache/ciq/order-logs/ciq-order-4242.log --failing-test tests/test_b.py::test_x pytest
  ciq bisect --order-log order.log --failing-test t/42 --worker w3 -- ./run-test {}

A culprit is named only once confirmed: the culprit(s) then the failing test fail 3 runs in a
row, and the failing test alone passes 3. A test failing at random, at any rate, gets through
that (and the first two checks) at most once in 256 bisects; a real order dependency always
does.

Exit codes: 0 culprit found, 1 the failure does not reproduce (it passes after the tests
before it, or fails alone), 2 bad input, 7 the failure looks flaky (it did not repeat the same
way on every run), no test named.";

/// `ciq bisect`.
#[derive(Debug, Args)]
pub struct BisectArgs {
    /// The test that failed after others ran in its process.
    #[arg(long, value_name = "ID")]
    pub failing_test: String,
    /// The runner, as for `ciq run` (`--order-log` names the log to replay, `--worker` whose
    /// order to replay [default: the first worker that ran the test]).
    #[command(flatten)]
    pub run: RunArgs,
}

/// `ciq flaky`.
#[derive(Debug, Args)]
pub struct FlakyArgs {
    /// Redis URL of the shared queue (as `ciq run --queue`: a node, or redis+cluster://).
    #[arg(long, env = "CIQ_QUEUE")]
    pub queue: String,
    /// The namespace whose builds to look at.
    #[arg(long, env = "CIQ_NAMESPACE", default_value = "")]
    pub namespace: String,
    /// How many tests to list.
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    /// How long to wait out an outage of Redis before failing, in all (at least 1s).
    #[arg(long, env = "CIQ_REDIS_TIMEOUT", default_value = "60s",
          value_parser = at_least(floors::REDIS_TIMEOUT, REDIS_TIMEOUT_WHY))]
    pub redis_timeout: Duration,
}

/// Why `--redis-timeout` has a floor.
const REDIS_TIMEOUT_WHY: &str = "a reply from a busy Redis must fit in it";

const RUN_EXAMPLES: &str = "\
Examples:
  ciq run -j 4 --tests tests.txt -- ./run-test
  ciq run --queue redis://redis-host/0 --tests tests.txt -- ./run-test {} --verbose

Exit codes: 0 green, 1 tests failed, 2 bad input, 3 tests not run, 4 no leader elected,
5 infrastructure error (Redis unreachable, build state lost), 130/143 interrupted.";

const EXIT_CODES: &str = "\
Exit codes: 0 green, 1 tests failed, 2 bad input, 3 tests not run, 4 no leader elected,
5 infrastructure error (Redis unreachable, build state lost).";

const STATUS_EXIT_CODES: &str = "\
Exit codes: 0 the build is underway (or finished green), 1 it finished with failed tests, 3 it
finished with tests not run, 4 no such build in Redis (not started, or expired), 5
infrastructure error (Redis unreachable, build state lost), 6 list mismatch, 130 interrupted
(--watch).";

/// `ciq status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Redis URL of the shared queue (as `ciq run --queue`: a node, or redis+cluster://).
    #[arg(long, env = "CIQ_QUEUE")]
    pub queue: String,
    /// Where the build lives.
    #[command(flatten)]
    pub build: BuildArgs,
    /// Keep showing the build until it finishes (or Ctrl-C): redrawn every second on a
    /// terminal, a line every 10 seconds (and on each change of phase) in a log. Exits as
    /// `ciq report` would with the build's verdict. A build not in Redis yet is waited for, up
    /// to --queue-init-timeout.
    #[arg(long)]
    pub watch: bool,
    /// Print the status as one JSON document (with --watch, one per line, every second), for
    /// scripts; the fields are documented in docs/status-json.md.
    #[arg(long)]
    pub json: bool,
}

/// Where the build lives.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Build id, shared by every worker of one CI run, at most 256 bytes [default: from the CI
    /// provider's environment]
    #[arg(long, env = "CIQ_BUILD")]
    pub build: Option<String>,
    /// Namespace for the build's keys, when several suites share one build id (at most 256
    /// bytes).
    #[arg(long, env = "CIQ_NAMESPACE", default_value = "")]
    pub namespace: String,
    /// How long to wait out an outage of Redis before failing (exit 5), in all: every request
    /// of the process shares it, from the first that failed until Redis answers (at least 1s).
    #[arg(long, env = "CIQ_REDIS_TIMEOUT", default_value = "60s",
          value_parser = at_least(floors::REDIS_TIMEOUT, REDIS_TIMEOUT_WHY))]
    pub redis_timeout: Duration,
    /// Give up with "lost leader" once this many elected leaders died before filling the queue.
    #[arg(long, env = "CIQ_MAX_ELECTION_ATTEMPTS", default_value_t = 3,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_election_attempts: u32,
    /// Bound on the leader's test discovery, and on the report's wait for a leader (at least
    /// 1s).
    #[arg(long, env = "CIQ_QUEUE_INIT_TIMEOUT", default_value = "15m",
          value_parser = at_least(floors::WAIT, "a leader must have time to list the tests"))]
    pub queue_init_timeout: Duration,
}

/// `ciq run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Redis URL of the shared queue (redis://[USER:PASSWORD@]HOST:PORT/DB, rediss:// for TLS).
    /// A Redis Cluster is found by itself from any node's URL, or named with
    /// redis+cluster://HOST:PORT,HOST:PORT (rediss+cluster:// for TLS), listing several nodes
    /// so a job starts while one is down. Without it, tests run locally with -j workers.
    #[arg(long, env = "CIQ_QUEUE")]
    pub queue: Option<String>,
    /// What to do when Redis is unreachable at the start (after --redis-timeout): `static`
    /// runs this machine's fixed share of the suite (every N-th test of the sorted list, by
    /// --worker-index/--worker-count or the CI's parallelism variables) and exits with its
    /// own verdict [default: fail with exit code 5]
    #[arg(long, env = "CIQ_FALLBACK", value_enum, value_name = "static")]
    pub fallback: Option<Fallback>,
    /// This job is a retry of a build that already finished: run only the build's failed tests
    /// (a pass now makes a test flaky), shared by every job of the retry, or exit 0 at once with
    /// "nothing to retry". A build still running is joined as usual. ROUND tells retries apart:
    /// the jobs of one retry give the same one [default ROUND: 1; default: on when
    /// BUILDKITE_RETRY_COUNT > 0 or GITHUB_RUN_ATTEMPT > 1; on GitLab, when this worker id
    /// already took part in the finished build]
    #[arg(long, env = "CIQ_RETRY", value_name = "ROUND", num_args = 0..=1,
          default_missing_value = "1", requires = "queue")]
    pub retry: Option<String>,
    /// Run the failed tests of an earlier finished build (same --namespace) instead of listing
    /// the suite: CircleCI's "rerun failed tests" starts a new workflow, so a new build id. With
    /// none failed, the new build is filled with no test: its report ends at once, green
    #[arg(long, env = "CIQ_RETRY_OF", value_name = "BUILD", requires = "queue",
          conflicts_with_all = ["retry", "tests", "list_command"])]
    pub retry_of: Option<String>,
    /// This machine's index among --worker-count machines, from 0, for --fallback static
    /// [default: BUILDKITE_PARALLEL_JOB, CIRCLE_NODE_INDEX, or CI_NODE_INDEX - 1]
    #[arg(long, env = "CIQ_WORKER_INDEX", requires = "worker_count")]
    pub worker_index: Option<usize>,
    /// How many machines share the suite, for --fallback static [default: from the CI]
    #[arg(long, env = "CIQ_WORKER_COUNT", requires = "worker_index", value_parser = clap::value_parser!(u32).range(1..))]
    pub worker_count: Option<u32>,
    /// Local workers, when no --queue is given [default: number of CPUs]
    #[arg(short = 'j', long, env = "CIQ_JOBS", value_parser = clap::value_parser!(u32).range(1..))]
    pub jobs: Option<u32>,
    /// Worker id, unique within the build, at most 256 bytes [default: from the CI provider's
    /// environment]
    #[arg(long, env = "CIQ_WORKER")]
    pub worker: Option<String>,
    /// File with one test id per line (`-` for stdin).
    #[arg(
        long,
        env = "CIQ_TESTS",
        value_name = "FILE",
        conflicts_with = "list_command"
    )]
    pub tests: Option<PathBuf>,
    /// Command printing one test id per line, run by a shell, so pipes, quotes and variables
    /// work (`cargo nextest list ... | grep ...`): `bash -o pipefail -c` (a failing step of a
    /// pipeline fails the listing, as does one that `head` stops reading early: exit 141, write
    /// `sed -n 1,5p` for `head -5`), or `sh -c` where there is no bash. Only the elected leader
    /// runs it.
    #[arg(long, env = "CIQ_LIST_COMMAND", value_name = "CMD")]
    pub list_command: Option<String>,
    /// Tests per reservation and per run of the command: a count (at most 1000), or `auto`,
    /// sized by estimated time (about 2 s of tests, by history or this worker's typical test),
    /// never more than a fair share of what is left [default: auto for pytest, --persistent and
    /// nextest through Redis; 1 for nextest in local mode and for a command, which may take one
    /// id only]
    #[arg(long, env = "CIQ_BATCH_SIZE", value_name = "N|auto")]
    pub batch_size: Option<BatchSize>,
    /// A timing file of an earlier run, to order tests longest first: ciq's own (from
    /// --timings-out) or a JUnit XML report. Adds to what the Redis store remembers.
    #[arg(long, env = "CIQ_TIMINGS", value_name = "FILE")]
    pub timings: Option<PathBuf>,
    /// Which tests go first. `failed-first`: the tests that failed or were flaky in the last 10
    /// builds (the namespace's history that `ciq flaky` reads; locally, the --timings file's
    /// failures), then longest first, so a build broken by a known failure goes red at once
    /// (with --max-failures 1 it ends then); with no known failure it is longest first.
    /// `longest-first`: by the durations of earlier builds alone. `random`: shuffled by --seed,
    /// for hunting tests that depend on the order. Framework units (a pytest module) stay
    /// together. With --queue the leader's order is the build's
    #[arg(
        long,
        env = "CIQ_ORDER",
        value_enum,
        value_name = "ORDER",
        default_value = "failed-first"
    )]
    pub order: OrderArg,
    /// A build-wide resource group: at most N tests of group NAME run at once across the whole
    /// build, every machine together (tests sharing one database or one emulator); repeatable.
    /// Which tests are in a group: --group-map. With --queue the leader's groups are the build's
    #[arg(
        long = "group",
        env = "CIQ_GROUP",
        value_name = "NAME=N",
        value_delimiter = ','
    )]
    pub groups: Vec<String>,
    /// Which tests are in which --group: a file of `TEST-ID<TAB>GROUP` lines
    #[arg(long, env = "CIQ_GROUP_MAP", value_name = "FILE")]
    pub group_map: Option<PathBuf>,
    /// With --order random: the seed; the same seed gives the same order, whatever the list's
    /// own order [default: a new one, printed and written to the order log]
    #[arg(long, env = "CIQ_SEED", value_name = "S")]
    pub seed: Option<u64>,
    /// Local mode: write every test's duration to this timing file at the end, for --timings
    /// next time (with --queue, `ciq report --timings-out` writes the build's; its variable is
    /// CIQ_TIMINGS_OUT, this one's is another, so a job-wide setting reaches the report only).
    #[arg(long, env = "CIQ_LOCAL_TIMINGS_OUT", value_name = "FILE")]
    pub timings_out: Option<PathBuf>,
    /// Write a JUnit XML report to this file when done: in local mode the whole build; with
    /// --queue the tests whose final outcome this worker recorded, each test in one worker's file
    /// at most (as a CI that merges its jobs' reports wants; a worker killed with SIGKILL writes
    /// none: `ciq report --junit` is the complete file)
    #[arg(long, env = "CIQ_RUN_JUNIT", value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Local mode: write the build as one self-contained HTML page to this file when done, as
    /// `ciq report --html` does for a build through Redis (the timeline of every local worker,
    /// the failures with their output, why it took as long as it did)
    #[arg(long, env = "CIQ_RUN_HTML", value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Local mode: write the build's timeline in the Trace Event format to this file when done,
    /// as `ciq report --trace` does (Perfetto, chrome://tracing)
    #[arg(long, env = "CIQ_RUN_TRACE", value_name = "FILE")]
    pub trace: Option<PathBuf>,
    /// Grind: queue each test of the list N times across the build's workers (no retries, one
    /// test per batch); `ciq report --grind` gives each test's pass rate and durations
    #[arg(long, env = "CIQ_GRIND", value_name = "N", requires = "queue",
          conflicts_with_all = ["retry", "retry_of"],
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub grind: Option<u32>,
    /// Log the order this worker runs its tests in (for `ciq bisect`) to this file [default: a
    /// new file in $XDG_CACHE_HOME/ciq/order-logs (~/.cache/ciq/order-logs), kept only when a
    /// test run failed, and then named at the end; the directory keeps its newest 20]
    #[arg(long, env = "CIQ_ORDER_LOG", value_name = "FILE")]
    pub order_log: Option<PathBuf>,
    /// Test ids (one per line, `#` comment lines) whose failures do not make the build red: they
    /// still run and are reported under QUARANTINED. Ids not in the test list are warned about
    #[arg(long, env = "CIQ_QUARANTINE", value_name = "FILE")]
    pub quarantine: Option<PathBuf>,
    /// Kill a test's process group after this long and record it as errored (a batch command
    /// gets the sum of its tests' limits; the tests of a batch killed there that did not
    /// finish run again one per batch, so only a hanging test is errored). `auto`: five times
    /// the slowest of the test's recent runs in the namespace's store (local mode: the
    /// --timings file), at least 5s; 30m for a test without history.
    #[arg(
        long,
        env = "CIQ_TEST_TIMEOUT",
        value_name = "DURATION|auto",
        default_value = "30m"
    )]
    pub test_timeout: TestTimeout,
    /// A worker whose runs fail this many times in a row stops taking tests (its machine is
    /// likely broken: a full disk, a dead service) and gives back what it holds; the other
    /// workers take over, and the summary names it [default: never]
    #[arg(long, env = "CIQ_MAX_CONSECUTIVE_FAILURES", value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_consecutive_failures: Option<u32>,
    /// A worker stops taking tests once this long has passed since it started (say, under the
    /// CI job's own time limit, so the report still runs); the tests left are reported as not
    /// run and the build is incomplete, exit 3 [default: no limit]
    #[arg(long, env = "CIQ_MAX_DURATION", value_name = "DURATION", value_parser = parse_duration)]
    pub max_duration: Option<Duration>,
    /// Every worker stops taking tests once this many tests of the build finally failed (a
    /// broken build need not run to its end): the tests left are reported as not run, the
    /// build is red [default: no limit]
    #[arg(long, env = "CIQ_MAX_FAILURES", value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_failures: Option<u32>,
    /// The command speaks ciq's persistent protocol (docs/persistent-protocol.md): it is started once per
    /// worker and fed test ids over stdin, instead of once per batch.
    #[arg(long, env = "CIQ_PERSISTENT")]
    pub persistent: bool,
    /// Most bytes of a failing run's output kept (the start and the end survive).
    #[arg(long, env = "CIQ_OUTPUT_LIMIT", default_value_t = 64 * 1024,
          value_parser = clap::value_parser!(u32).range(1024..))]
    pub output_limit: u32,
    /// How often one test may be retried on another worker after failing.
    #[arg(long, env = "CIQ_MAX_REQUEUES", default_value_t = 1)]
    pub max_requeues: u32,
    /// Fraction of the suite that may be retried in all (0.1 = one test in ten).
    #[arg(long, env = "CIQ_REQUEUE_TOLERANCE", default_value_t = 0.1, value_parser = tolerance)]
    pub requeue_tolerance: f64,
    /// TTL of the leader's setup lock; it renews the lock every third of it (at least 500ms).
    #[arg(long, env = "CIQ_LOCK_TTL", default_value = "30s",
          value_parser = at_least(floors::LOCK_TTL,
              "the leader renews its lock every third of it, and a shorter lock lapses while a renewal is on its way"))]
    pub lock_ttl: Duration,
    /// How often a worker tells Redis it is alive (at least 100ms, at most half of
    /// --heartbeat-timeout and of --redis-ttl).
    #[arg(long, env = "CIQ_HEARTBEAT_INTERVAL", default_value = "5s",
          value_parser = at_least(floors::HEARTBEAT_INTERVAL, "each heartbeat is a Redis call"))]
    pub heartbeat_interval: Duration,
    /// How long a silent worker keeps its tests before another takes them over (at least 1s).
    #[arg(long, env = "CIQ_HEARTBEAT_TIMEOUT", default_value = "30s",
          value_parser = at_least(floors::HEARTBEAT_TIMEOUT,
              "a live worker's heartbeats must reach Redis several times within it"))]
    pub heartbeat_timeout: Duration,
    /// TTL of every key of the build, from when it stops working (at least 1s, and twice
    /// --heartbeat-interval: a working build's calls refresh it).
    #[arg(long, env = "CIQ_REDIS_TTL", default_value = "8h",
          value_parser = at_least(floors::REDIS_TTL,
              "a working build's keys must outlive the gaps between the calls that refresh them"))]
    pub redis_ttl: Duration,
    /// Where the build lives.
    #[command(flatten)]
    pub build: BuildArgs,
    /// A test framework that ciq lists and runs itself, instead of a command after `--`.
    #[command(subcommand)]
    pub framework: Option<Framework>,
    /// The test command; test ids replace a `{}` argument, or are appended, and a `{junit}` in
    /// an argument becomes a path for a JUnit XML report (also in CIQ_JUNIT_PATH). Exit code 0
    /// means passed, unless the report gives each test its own outcome.
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

/// `ciq report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Redis URL of the shared queue (as `ciq run --queue`: a node, or redis+cluster://).
    #[arg(long, env = "CIQ_QUEUE")]
    pub queue: String,
    /// Where the build lives.
    #[command(flatten)]
    pub build: BuildArgs,
    /// How long to wait for the queue to drain, from the report's start (at least 1s).
    #[arg(long, env = "CIQ_REPORT_TIMEOUT", default_value = "2h",
          value_parser = at_least(floors::WAIT, "the report must have time to read the build"))]
    pub report_timeout: Duration,
    /// The build is a grind (`ciq run --grind N`): report each test's pass rate and duration
    /// percentiles (p50, p95, max), and exit by --grind-min-pass-rate and --grind-max-p95, the
    /// report's one verdict. A build that is not a grind is refused (exit 2)
    #[arg(long, env = "CIQ_REPORT_GRIND")]
    pub grind: bool,
    /// With --grind: the build fails when a test passed fewer than this share of its runs
    #[arg(long, env = "CIQ_GRIND_MIN_PASS_RATE", default_value_t = 1.0, value_parser = pass_rate,
          requires = "grind")]
    pub grind_min_pass_rate: f64,
    /// With --grind: the build fails when a test's 95th percentile duration is longer
    #[arg(long, env = "CIQ_GRIND_MAX_P95", value_parser = parse_duration, requires = "grind")]
    pub grind_max_p95: Option<Duration>,
    /// The report of a retry (as `ciq run --retry`): it re-opens the finished build's failed
    /// tests when it comes before the retried workers, then reports their re-run; when no
    /// retried job re-runs them within a heartbeat timeout, they keep their earlier outcome
    /// [default: on when BUILDKITE_RETRY_COUNT > 0 or GITHUB_RUN_ATTEMPT > 1]
    #[arg(long, env = "CIQ_RETRY", value_name = "ROUND", num_args = 0..=1,
          default_missing_value = "1")]
    pub retry: Option<String>,
    /// Write each test's duration in this build to this timing file, for `ciq run --timings`
    /// in later builds (keep it as a CI artifact or in a cache). After the verdict, the report
    /// waits for the live workers to leave (they write the durations), at most a heartbeat
    /// timeout.
    #[arg(long, env = "CIQ_TIMINGS_OUT", value_name = "FILE")]
    pub timings_out: Option<PathBuf>,
    /// Write the whole build as one JUnit XML report to this file, for the CI's test view:
    /// every test with an outcome once, with its failure's output and its time; retries as
    /// Surefire writes them (flakyFailure, rerunFailure). After the verdict, it waits for the live
    /// workers to leave (they write the tests' times), at most a heartbeat timeout.
    #[arg(long, env = "CIQ_REPORT_JUNIT", value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Test ids (one per line, `#` comment lines) whose failures do not make the build red: they
    /// still run and are reported under QUARANTINED. (as for `ciq run`)
    #[arg(long, env = "CIQ_QUARANTINE", value_name = "FILE")]
    pub quarantine: Option<PathBuf>,
    /// Write the whole build as one JSON document to this file: the verdict, the counts, and
    /// every test with an outcome (attempts, duration, last failing run). Its shape is
    /// versioned and documented in docs/report-json.md. After the verdict, it waits for the live
    /// workers to leave (they write the tests' times), at most a heartbeat timeout.
    #[arg(long, env = "CIQ_REPORT_JSON", value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write the build as one self-contained HTML page to this file (it opens without network;
    /// keep it as a CI artifact): the verdict, counts and failures with their output, the
    /// timeline of every worker process (each attempt, the leader's election and listing,
    /// take-overs, requeues, workers lost), and why the build took as long as it did (makespan
    /// against its lower bound, idle workers, the tail, tests slower than usual). Documented in
    /// docs/report-html.md. After the verdict, it waits for the live workers to leave, at most
    /// a heartbeat timeout.
    #[arg(long, env = "CIQ_REPORT_HTML", value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Write the build's timeline in the Trace Event format to this file, for Perfetto
    /// (ui.perfetto.dev) or chrome://tracing: a process per worker, a slice per attempt,
    /// instant events for elections, take-overs, requeues and departures. After the verdict,
    /// it waits for the live workers to leave, at most a heartbeat timeout.
    #[arg(long, env = "CIQ_REPORT_TRACE", value_name = "FILE")]
    pub trace: Option<PathBuf>,
}

/// `--order`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OrderArg {
    /// Longest estimated first.
    LongestFirst,
    /// Recent failures first, then longest first.
    FailedFirst,
    /// Shuffled by --seed.
    Random,
}

/// `--fallback`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Fallback {
    /// Run a fixed share of the suite on each machine.
    Static,
}

fn pass_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(rate) if (0.0..=1.0).contains(&rate) => Ok(rate),
        _ => Err(format!(
            "`{text}` is not a share between 0 and 1 (e.g. 0.95)"
        )),
    }
}

fn tolerance(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(value) if (0.0..=1.0).contains(&value) => Ok(value),
        _ => Err("must be a fraction between 0 and 1".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    /// Every framework is a subcommand of `ciq run`, named as its adapter, with its help line.
    #[test]
    fn frameworks_are_subcommands_of_run() {
        let cli = Cli::command();
        let run = cli.find_subcommand("run").unwrap();
        let names: Vec<&str> = run.get_subcommands().map(|sub| sub.get_name()).collect();
        assert_eq!(names.join(", "), Framework::names());
        for sub in run.get_subcommands() {
            let about = sub.get_about().map(ToString::to_string).unwrap_or_default();
            assert!(about.len() > 40, "{}: {about:?}", sub.get_name());
        }
    }

    /// The README's flag table must not drift from the command line.
    #[test]
    fn readme_lists_every_flag_and_variable() {
        let readme = include_str!("../../README.md");
        let command = Cli::command();
        let subcommands = command
            .get_subcommands()
            .flat_map(|sub| std::iter::once(sub).chain(sub.get_subcommands()));
        for sub in subcommands {
            for arg in sub.get_arguments() {
                if let Some(long) = arg.get_long() {
                    assert!(
                        readme.contains(&format!("`--{long}`")),
                        "README lacks --{long}"
                    );
                }
                if let Some(env) = arg.get_env() {
                    let env = env.to_string_lossy();
                    assert!(readme.contains(&format!("`{env}`")), "README lacks {env}");
                }
            }
        }
    }
}
