//! From the command line to one validated configuration per subcommand.
//!
//! [`args`] is what clap parses; this module checks what clap cannot (ids from the CI
//! environment, flags that only make sense together) and produces [`RunConfig`] and the report's
//! [`ReportSettings`]. Every error names the flag and its `CIQ_*` variable.

pub mod args;
pub mod floors;

use std::path::PathBuf;
use std::time::Duration;

use thiserror::Error;

use crate::batching::BatchSize;
use crate::ci::{self, CiIds, RetryRound, Share};
use crate::discovery::{DiscoveryError, ListFormat, TestSource};
use crate::frameworks::{Framework, RunnerSpec};
use crate::groups::{GroupError, Groups};
use crate::listing;
use crate::queue::budget::RequeueBudget;
use crate::queue::local::LocalTiming;
use crate::queue::redis::RedisSettings;
use crate::queue::redis::status::StatusSettings;
use crate::queue::redis::supervisor::ReportSettings;
use crate::runner::launch::Setup;
use crate::time_limits::TestTimeout;
use crate::timings::{Order, Scheduling};
use crate::worker::WorkerOptions;
use args::{BuildArgs, Fallback, OrderArg, ReportArgs, RunArgs, StatusArgs};

/// A command line that parses but cannot be used.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// A `--group` or `--group-map` that cannot be used.
    #[error(transparent)]
    Group(#[from] GroupError),
    /// No build id anywhere.
    #[error(
        "no build id: pass --build ID or set CIQ_BUILD\n(hint: on Buildkite, GitHub Actions, GitLab CI, CircleCI and Jenkins it is read from the environment)"
    )]
    MissingBuild,
    /// No worker id anywhere.
    #[error(
        "no worker id: pass --worker ID or set CIQ_WORKER (unique per CI machine of the build)\n(hint: on Buildkite, GitHub Actions, GitLab CI, CircleCI and Jenkins it is read from the environment)"
    )]
    MissingWorker,
    /// No test list.
    #[error("no test list: pass --tests FILE (`-` for stdin) or --list-command CMD")]
    NoTestList,
    /// `--retry-of` names a build this Redis does not hold.
    #[error(
        "--retry-of: build `{0}` is not in this Redis (never run here, run under another --namespace, or its keys expired after --redis-ttl), so its failed tests are unknown"
    )]
    RetryOfUnknown(String),
    /// `ciq bisect --failing-test` is not a test id.
    #[error("--failing-test: {0}")]
    BadFailingTest(String),
    /// `ciq bisect` without the log to replay.
    #[error(
        "ciq bisect needs --order-log FILE: the order log of the run where the test failed (a `ciq run` with a failed test says where it kept one)"
    )]
    NoOrderLog,
    /// `ciq bisect --failing-test` names a test the order log does not hold.
    #[error("--failing-test: `{test}` never ran in the order log `{}`{}", .log.display(), .worker.as_deref().map(|w| format!(" on worker `{w}`")).unwrap_or_default())]
    NeverRan {
        /// The test.
        test: String,
        /// The order log.
        log: PathBuf,
        /// The worker asked for (`--worker`).
        worker: Option<String>,
    },
    /// `--retry-of` names a build whose failures alone cannot stand for it.
    #[error("--retry-of: the failed tests of build `{0}` cannot be re-run alone: {1}")]
    RetryOfUnusable(String, String),
    /// `--fallback static` without this machine's place among the others.
    #[error(
        "--fallback static needs this machine's share: pass --worker-index I --worker-count N (I from 0), or run where the CI sets its parallelism (Buildkite parallelism, CircleCI parallelism, GitLab parallel:)"
    )]
    NoShare,
    /// `--worker-index` not below `--worker-count`.
    #[error("--worker-index {0} must be below --worker-count {1} (indexes count from 0)")]
    BadShare(usize, u32),
    /// No way to run tests.
    #[error(
        "no test command: put it after `--` (ciq run --tests FILE -- ./run-test), or name a framework (ciq run {})", Framework::names().replace(", ", ", ciq run ")
    )]
    NoCommand,
    /// Both a framework and a command.
    #[error(
        "give either a framework ({}) or a command after `--`, not both",
        Framework::names()
    )]
    CommandAndFramework,
    /// `-j` given with a queue.
    #[error(
        "-j/--jobs runs local workers without Redis; with --queue, run one `ciq run` per CI machine"
    )]
    JobsWithQueue,
    /// The list command is blank.
    #[error("--list-command is empty: give the command that prints the test ids")]
    EmptyListCommand,
    /// Heartbeats too slow for their timeout would let healthy workers lose their tests.
    #[error("--heartbeat-interval ({}) must be at most half of --heartbeat-timeout ({}), so a live worker is heard at least twice before its tests are taken over", crate::human::duration(*.0), crate::human::duration(*.1))]
    HeartbeatTooSlow(Duration, Duration),
    /// Keys that could expire between the calls that keep a working build's keys alive.
    #[error("--redis-ttl ({}) must be at least twice --heartbeat-interval ({}): a working build's keys are kept alive by its calls, heartbeats included, and would expire between two of them", crate::human::duration(*.0), crate::human::duration(*.1))]
    TtlUnderHeartbeats(Duration, Duration),
    /// A worker of a shared build writes only its own share of the durations.
    #[error(
        "--timings-out (CIQ_LOCAL_TIMINGS_OUT) on `ciq run` is for local mode; with --queue, `ciq report --timings-out FILE` writes the whole build's durations"
    )]
    TimingsOutWithQueue,
    /// `ciq run --html` or `--trace` with `--queue`: a worker sees only its own share.
    #[error(
        "{0} on `ciq run` is for local mode; with --queue, `ciq report {0} FILE` draws the whole build, every worker"
    )]
    PictureWithQueue(&'static str),
    /// An id flag is blank.
    #[error("{0} is blank")]
    BlankId(&'static str),
    /// An id too long to be in every key and line of output.
    #[error(
        "{0} is {1} bytes long; an id may be at most {MAX_ID_BYTES} bytes (it is part of every Redis key of the build and of many lines of output)"
    )]
    IdTooLong(&'static str, usize),
    /// `--seed` for an order that is not random.
    #[error(
        "--seed (CIQ_SEED) is for --order random, and the order is {0}: pass --order random too, or drop the seed"
    )]
    SeedWithoutRandom(Order),
    /// A worker id that would split the order log's `<worker><TAB><test id>` lines.
    #[error(
        "--worker (CIQ_WORKER, or the CI's worker id) {0:?} holds a tab or a line break; the order log writes `<worker><TAB><test id>` lines"
    )]
    WorkerWithSeparator(String),
}

/// Where a run's tests come from before they are read.
#[derive(Debug, Clone)]
pub enum SourceSpec {
    /// `--tests FILE` (`-` for stdin).
    File(String),
    /// A list command (`--list-command`, or a framework's), split into argv.
    Command(Vec<String>, ListFormat),
    /// The failed tests of an earlier build (`--retry-of`), read from Redis once connected.
    Earlier(String),
}

impl SourceSpec {
    /// Reads a file list now (every worker checks it before joining); a command stays a
    /// command for the leader to run. `None` for an earlier build's failed tests: only Redis
    /// has them.
    pub fn load(&self) -> Result<Option<TestSource>, DiscoveryError> {
        match self {
            SourceSpec::File(path) => TestSource::read(path).map(Some),
            SourceSpec::Command(argv, format) => Ok(Some(TestSource::Command {
                argv: argv.clone(),
                format: *format,
            })),
            SourceSpec::Earlier(_) => Ok(None),
        }
    }
}

/// Local or distributed.
#[derive(Debug, Clone)]
pub enum Mode {
    /// `-j N` workers in this process, queue in memory.
    Local {
        /// Number of workers.
        jobs: usize,
        /// Their heartbeats.
        timing: LocalTiming,
    },
    /// One worker of a build shared through Redis.
    Redis {
        /// The build.
        settings: Box<RedisSettings>,
        /// This worker's id.
        worker: String,
        /// With `--fallback static`: this machine's share, run alone when Redis is
        /// unreachable at the start.
        fallback: Option<Share>,
        /// When this job is a retry of a finished build: which retry.
        retry: Option<RetryRound>,
    },
}

/// Everything `ciq run` needs.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// Local or distributed.
    pub mode: Mode,
    /// Where the tests come from.
    pub source: SourceSpec,
    /// How tests are run.
    pub runner: RunnerSpec,
    /// Per-test time limits.
    pub test_timeout: TestTimeout,
    /// Most bytes of a failing run's output kept.
    pub output_limit: usize,
    /// Batch size and timeouts.
    pub worker: WorkerOptions,
    /// Requeue limits.
    pub budget: RequeueBudget,
    /// The build id given to the test command as `CIQ_BUILD`.
    pub build: String,
    /// Bound on running the list command.
    pub discovery_timeout: Duration,
    /// How the queue is ordered.
    pub scheduling: Scheduling,
    /// Local mode: where to write every test's duration at the end.
    pub timings_out: Option<PathBuf>,
    /// Where to write a JUnit report at the end (`ciq run --junit`).
    pub junit: Option<PathBuf>,
    /// Local mode: where to write the HTML report at the end (`ciq run --html`).
    pub html: Option<PathBuf>,
    /// Local mode: where to write the trace at the end (`ciq run --trace`).
    pub trace: Option<PathBuf>,
}

/// The longest build, worker or namespace id accepted: far longer than any CI's ids, far
/// shorter than what would bloat every key and line (a 100 KB worker id was once printed on
/// every line).
pub const MAX_ID_BYTES: usize = 256;

/// Refuses an id longer than [`MAX_ID_BYTES`]; `flag` names where it came from.
fn check_length(flag: &'static str, id: &str) -> Result<(), ConfigError> {
    if id.len() > MAX_ID_BYTES {
        return Err(ConfigError::IdTooLong(flag, id.len()));
    }
    Ok(())
}

/// `--namespace`, checked: empty (none) or at most [`MAX_ID_BYTES`].
pub fn namespace(namespace: &str) -> Result<&str, ConfigError> {
    check_length("--namespace (CIQ_NAMESPACE)", namespace)?;
    Ok(namespace)
}

/// An id given by its flag, else by the CI: present, not blank, not too long.
fn id_of(
    given: &Option<String>,
    from_ci: &Option<String>,
    missing: ConfigError,
    (flag, named): (&'static str, &'static str),
) -> Result<String, ConfigError> {
    let id = given.clone().or_else(|| from_ci.clone()).ok_or(missing)?;
    if id.trim().is_empty() {
        return Err(ConfigError::BlankId(flag));
    }
    check_length(named, &id)?;
    Ok(id)
}

fn build_id(args: &BuildArgs, ids: &CiIds) -> Result<String, ConfigError> {
    let build = id_of(
        &args.build,
        &ids.build,
        ConfigError::MissingBuild,
        ("--build", "--build (CIQ_BUILD, or the CI's build id)"),
    )?;
    namespace(&args.namespace)?;
    Ok(build)
}

impl RunConfig {
    /// Validates `ciq run`'s arguments; `ids` are those found in the CI environment.
    pub fn new(args: RunArgs, ids: &CiIds) -> Result<Self, ConfigError> {
        let runner = runner_spec(args.framework.clone(), &args.command, args.persistent)?;
        let source = source_spec(&args, &runner)?;
        check_heartbeats(&args)?;
        // A grind counts every run: a failure is not retried.
        let budget = RequeueBudget {
            max_requeues: if args.grind.is_some() {
                0
            } else {
                args.max_requeues
            },
            tolerance: args.requeue_tolerance,
        };
        let batch_size = match (args.grind, args.batch_size) {
            // A grind runs one copy per batch (grind::GrindRunner).
            (Some(_), _) => BatchSize::Fixed(1),
            (None, Some(size)) => size,
            (None, None) => runner.batch_size(args.queue.is_some()),
        };
        let scheduling = Scheduling {
            timings_file: args.timings.clone(),
            // A grind keeps its copy-by-copy order.
            keep_together: runner.unit().filter(|_| args.grind.is_none()),
            order: order(args.order, args.seed)?,
            groups: Groups::new(&args.groups, args.group_map.as_deref())?,
        };
        if args.queue.is_some() && args.timings_out.is_some() {
            return Err(ConfigError::TimingsOutWithQueue);
        }
        if args.queue.is_some() {
            if args.html.is_some() {
                return Err(ConfigError::PictureWithQueue("--html"));
            }
            if args.trace.is_some() {
                return Err(ConfigError::PictureWithQueue("--trace"));
            }
        }
        let (mode, build) = match &args.queue {
            None => local_mode(&args)?,
            Some(url) => redis_mode(url, &args, ids, budget, &scheduling)?,
        };
        Ok(Self {
            mode,
            source,
            worker: WorkerOptions {
                batch_size,
                saves: runner.saves(),
                test_timeout: args.test_timeout,
                max_consecutive_failures: args.max_consecutive_failures,
                max_duration: args.max_duration,
                max_failures: args.max_failures.map(|max| max as usize),
                order_log: None,
            },
            runner,
            test_timeout: args.test_timeout,
            output_limit: args.output_limit as usize,
            budget,
            build,
            discovery_timeout: args.build.queue_init_timeout,
            scheduling,
            timings_out: args.timings_out,
            junit: args.junit,
            html: args.html,
            trace: args.trace,
        })
    }

    /// What every runner of this run is given.
    pub fn runner_setup(&self) -> Setup {
        Setup {
            build: self.build.clone(),
            timeout: Some(self.test_timeout.overall()),
            output_limit: self.output_limit,
            list_timeout: self.discovery_timeout,
        }
    }
}

/// How the tests run: a framework, or the command after `--` (speaking the persistent protocol
/// with `--persistent`).
fn runner_spec(
    framework: Option<Framework>,
    command: &[String],
    persistent: bool,
) -> Result<RunnerSpec, ConfigError> {
    match (framework, command.is_empty()) {
        (Some(_), false) => Err(ConfigError::CommandAndFramework),
        (None, true) => Err(ConfigError::NoCommand),
        (None, false) if persistent => Ok(RunnerSpec::Persistent(command.to_vec())),
        (None, false) => Ok(RunnerSpec::Command(command.to_vec())),
        (Some(framework), true) => Ok(RunnerSpec::Framework(framework)),
    }
}

/// Where the tests come from: an earlier build's failures, a file, a list command, or the
/// framework's own listing.
fn source_spec(args: &RunArgs, runner: &RunnerSpec) -> Result<SourceSpec, ConfigError> {
    if let Some(earlier) = &args.retry_of {
        return Ok(SourceSpec::Earlier(earlier.clone()));
    }
    match (&args.tests, &args.list_command) {
        (Some(path), _) => Ok(SourceSpec::File(path.to_string_lossy().into_owned())),
        (None, Some(command)) if command.trim().is_empty() => Err(ConfigError::EmptyListCommand),
        (None, Some(command)) => Ok(SourceSpec::Command(
            listing::shell(command),
            ListFormat::Lines,
        )),
        (None, None) => {
            let (argv, format) = runner.listing().ok_or(ConfigError::NoTestList)?;
            Ok(SourceSpec::Command(argv, format))
        }
    }
}

/// `--order` with its `--seed`: a random order without one gets a new seed (printed when the
/// queue is ordered); a seed for another order is refused, not ignored.
fn order(order: OrderArg, seed: Option<u64>) -> Result<Order, ConfigError> {
    match (order, seed) {
        (OrderArg::Random, seed) => Ok(Order::Random {
            seed: seed.unwrap_or_else(Order::random_seed),
        }),
        (OrderArg::LongestFirst, None) => Ok(Order::LongestFirst),
        (OrderArg::FailedFirst, None) => Ok(Order::FailedFirst),
        (OrderArg::LongestFirst, Some(_)) => {
            Err(ConfigError::SeedWithoutRandom(Order::LongestFirst))
        }
        (OrderArg::FailedFirst, Some(_)) => Err(ConfigError::SeedWithoutRandom(Order::FailedFirst)),
    }
}

/// Heartbeats often enough for their timeout and for the keys' TTL.
fn check_heartbeats(args: &RunArgs) -> Result<(), ConfigError> {
    if args.heartbeat_interval * 2 > args.heartbeat_timeout {
        return Err(ConfigError::HeartbeatTooSlow(
            args.heartbeat_interval,
            args.heartbeat_timeout,
        ));
    }
    if args.queue.is_some() && args.heartbeat_interval * 2 > args.redis_ttl {
        return Err(ConfigError::TtlUnderHeartbeats(
            args.redis_ttl,
            args.heartbeat_interval,
        ));
    }
    Ok(())
}

/// Local mode: `-j` workers (the CPUs by default) under a build id of their own.
fn local_mode(args: &RunArgs) -> Result<(Mode, String), ConfigError> {
    let jobs = args.jobs.map_or_else(
        || std::thread::available_parallelism().map_or(1, |n| n.get()),
        |jobs| jobs as usize,
    );
    let build = match &args.build.build {
        Some(build) => {
            check_length("--build (CIQ_BUILD)", build)?;
            build.clone()
        }
        None => format!("local-{}", uuid::Uuid::new_v4().simple()),
    };
    let timing = LocalTiming {
        heartbeat_interval: args.heartbeat_interval,
        heartbeat_timeout: args.heartbeat_timeout,
    };
    Ok((Mode::Local { jobs, timing }, build))
}

/// One worker of the build at `url`: its ids checked, its fallback and its retry round.
fn redis_mode(
    url: &str,
    args: &RunArgs,
    ids: &CiIds,
    budget: RequeueBudget,
    scheduling: &Scheduling,
) -> Result<(Mode, String), ConfigError> {
    if args.jobs.is_some() {
        return Err(ConfigError::JobsWithQueue);
    }
    let build = build_id(&args.build, ids)?;
    let worker = worker_id(args, ids)?;
    if let Some(earlier) = &args.retry_of {
        check_length("--retry-of (CIQ_RETRY_OF)", earlier)?;
    }
    let settings = RedisSettings {
        url: url.to_owned(),
        namespace: args.build.namespace.clone(),
        build: build.clone(),
        key_ttl: args.redis_ttl,
        lock_ttl: args.lock_ttl,
        max_election_attempts: args.build.max_election_attempts,
        queue_init_timeout: args.build.queue_init_timeout,
        heartbeat_interval: args.heartbeat_interval,
        heartbeat_timeout: args.heartbeat_timeout,
        budget,
        redis_timeout: args.build.redis_timeout,
        scheduling: scheduling.clone(),
    };
    let fallback = match args.fallback {
        None => None,
        Some(Fallback::Static) => Some(fallback_share(args.worker_index, args.worker_count)?),
    };
    let mode = Mode::Redis {
        settings: Box::new(settings),
        worker,
        fallback,
        retry: retry_round(args, ids),
    };
    Ok((mode, build))
}

/// `--worker`, or the CI's worker id, checked.
fn worker_id(args: &RunArgs, ids: &CiIds) -> Result<String, ConfigError> {
    let worker = id_of(
        &args.worker,
        &ids.worker,
        ConfigError::MissingWorker,
        ("--worker", "--worker (CIQ_WORKER, or the CI's worker id)"),
    )?;
    if worker.contains(['\t', '\n', '\r']) {
        return Err(ConfigError::WorkerWithSeparator(worker));
    }
    Ok(worker)
}

/// Which retry of a finished build this job is, if it is one.
fn retry_round(args: &RunArgs, ids: &CiIds) -> Option<RetryRound> {
    match (&args.retry, &args.retry_of) {
        (Some(round), _) => Some(RetryRound::Named(round.clone())),
        // A new build of an earlier one's failures: nothing of it to retry. A grind counts
        // every run: a retry would overwrite its failures.
        (None, Some(_)) => None,
        (None, None) if args.grind.is_some() => None,
        // Ids given by hand may repeat for other reasons than a retry.
        (None, None) => ids.retry.clone().filter(|round| {
            *round != RetryRound::Rejoined || (args.worker.is_none() && args.build.build.is_none())
        }),
    }
}

/// Validates `ciq report`'s arguments.
pub fn report_settings(args: ReportArgs, ids: &CiIds) -> Result<ReportSettings, ConfigError> {
    let retry_round = match (&args.retry, &ids.retry) {
        (Some(round), _) | (None, Some(RetryRound::Named(round))) => Some(round.clone()),
        _ => None,
    };
    Ok(ReportSettings {
        url: args.queue,
        namespace: args.build.namespace.clone(),
        build: build_id(&args.build, ids)?,
        queue_init_timeout: args.build.queue_init_timeout,
        report_timeout: args.report_timeout,
        max_election_attempts: args.build.max_election_attempts,
        redis_timeout: args.build.redis_timeout,
        poll_interval: Duration::from_millis(500),
        retry_round,
        grind: args.grind,
    })
}

/// Validates `ciq status`'s arguments: the build to read, as `ciq report` names it.
pub fn status_settings(args: &StatusArgs, ids: &CiIds) -> Result<StatusSettings, ConfigError> {
    Ok(StatusSettings {
        url: args.queue.clone(),
        namespace: args.build.namespace.clone(),
        build: build_id(&args.build, ids)?,
        redis_timeout: args.build.redis_timeout,
    })
}

/// This machine's share for `--fallback static`: the flags, else the CI's parallelism.
fn fallback_share(index: Option<usize>, count: Option<u32>) -> Result<Share, ConfigError> {
    match (index, count) {
        (Some(index), Some(count)) if index < count as usize => Ok(Share {
            index,
            count: count as usize,
        }),
        (Some(index), Some(count)) => Err(ConfigError::BadShare(index, count)),
        _ => ci::share(|name| std::env::var(name).ok()).ok_or(ConfigError::NoShare),
    }
}
