//! `ciq run`: local workers over an in-memory queue, or one worker of a Redis build.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;

use super::Failed;
use crate::ci::{self, RetryRound, Share};
use crate::config::args::RunArgs;
use crate::config::{ConfigError, Mode, RunConfig, RunnerSpec, SourceSpec};
use crate::discovery::{FrameworkListing, TestSource};
use crate::exit_code;
use crate::frameworks::nextest::NextestRunner;
use crate::frameworks::pytest;
use crate::grind::{GrindRunner, GrindSource};
use crate::junit::write::JunitReport;
use crate::order_log::OrderLog;
use crate::outcome::TestResult;
use crate::quarantine::{Checked, Quarantine};
use crate::queue::local::{LocalQueue, LocalTiming};
use crate::queue::redis::{FailedOf, RedisQueue, RedisSettings, Retrying, connection};
use crate::queue::{Queue as _, QueueError};
use crate::report::output_file::{self, Planned};
use crate::report::{Summary, TestRecord};
use crate::runner::command::CommandRunner;
use crate::runner::persistent::{Hints, PersistentRunner};
use crate::runner::{Feed, Ran, Runner, RunnerError};
use crate::signal;
use crate::test_id::{TestId, TestList};
use crate::timings;
use crate::worker::{self, Stop, WorkerEnd};

pub async fn run(args: RunArgs) -> Result<i32, Failed> {
    let ids = ci::detect(|name| std::env::var(name).ok());
    let quarantine = args
        .quarantine
        .as_deref()
        .map(Quarantine::read)
        .transpose()?;
    let grind = args.grind;
    let order_log = args.order_log.clone();
    let mut config = RunConfig::new(args, &ids)?;
    // Found now, not after the build.
    let outputs: Vec<Planned<'_>> = [
        ("--junit (CIQ_RUN_JUNIT)", &config.junit),
        ("--timings-out (CIQ_LOCAL_TIMINGS_OUT)", &config.timings_out),
        ("--order-log (CIQ_ORDER_LOG)", &order_log),
    ]
    .into_iter()
    .filter_map(|(flag, path)| {
        Some(Planned {
            flag,
            path: path.as_deref()?,
        })
    })
    .collect();
    output_file::check(&outputs)?;
    let order_log = match order_log {
        Some(path) => Some(OrderLog::create(&path)?),
        None => OrderLog::create_default(),
    }
    .map(Arc::new);
    config.worker.order_log = order_log.clone();
    let ended = run_with(config, quarantine, grind).await;
    if let Some(log) = order_log {
        log.end();
    }
    ended
}

/// `ciq run` once its outputs are checked and its order log open.
async fn run_with(
    config: RunConfig,
    quarantine: Option<Quarantine>,
    grind: Option<u32>,
) -> Result<i32, Failed> {
    if let Mode::Redis { settings, .. } = &config.mode {
        connection::client(&settings.url)?;
    }
    let source = config.source.load()?;
    if let (Some(quarantine), Some(TestSource::List(list))) = (&quarantine, &source) {
        quarantine.warn_unknown(&list.ids);
    }
    let quarantine = quarantine.unwrap_or_default();
    match config.mode.clone() {
        Mode::Local { jobs, timing } => {
            let source = source.ok_or(ConfigError::NoTestList)?;
            run_local(config, source, jobs, timing, None, &quarantine).await
        }
        Mode::Redis {
            settings,
            worker,
            fallback,
            retry,
        } => {
            let build = settings.build.clone();
            let timing = LocalTiming {
                heartbeat_interval: settings.heartbeat_interval,
                heartbeat_timeout: settings.heartbeat_timeout,
            };
            // Signals are handled from the start: a leader stopped while it lists its tests
            // kills the list command instead of leaving it behind.
            let mut shutdown = std::pin::pin!(signal::shutdown());
            let retry_settings = (*settings).clone();
            let connected = tokio::select! {
                queue = RedisQueue::connect(*settings, worker.clone()) => queue,
                signal = &mut shutdown => return Ok(interrupted(signal, &worker)),
            };
            // A retry's failed tests are in Redis: no share of the whole suite stands in for them.
            let retry_of = match &config.source {
                SourceSpec::Earlier(earlier) => Some(earlier.clone()),
                _ => None,
            };
            let retrying = matches!(retry, Some(RetryRound::Named(_))) || retry_of.is_some();
            let queue = match (connected, fallback) {
                (Ok(queue), _) => queue,
                (Err(err @ QueueError::Unreachable { .. }), Some(_)) if retrying => {
                    crate::say!(
                        "ciq: --fallback static is not used on a retry: the failed tests to re-run are in Redis"
                    );
                    return Err(Failed::from(err));
                }
                (Err(err @ QueueError::Unreachable { .. }), Some(share)) => {
                    crate::say!(
                        "ciq: WARNING: {err}\nciq: WARNING: --fallback static: worker `{worker}` runs share {} of {} of the suite without Redis (the sorted list's tests {}, {}, ...): no retries on other machines, no take-over if one dies, and its verdict covers only its share",
                        share.index + 1,
                        share.count,
                        share.index + 1,
                        share.index + 1 + share.count
                    );
                    let source = source.ok_or(ConfigError::NoTestList)?;
                    return run_local(config, source, 1, timing, Some(share), &quarantine).await;
                }
                (Err(err), _) => return Err(Failed::from(err)),
            };
            let source = match (source, &retry_of) {
                (Some(source), _) => source,
                (None, None) => return Err(Failed::from(ConfigError::NoTestList)),
                (None, Some(earlier)) => match queue.failed_of(earlier).await? {
                    FailedOf::Tests(Some(list)) => {
                        crate::say!(
                            "ciq: build `{build}` runs the {} failed test(s) of build `{earlier}`",
                            list.ids.len()
                        );
                        TestSource::List(list)
                    }
                    FailedOf::Tests(None) => {
                        crate::say!("ciq: nothing to retry: no test of build `{earlier}` failed");
                        return nothing_to_retry(&queue, earlier).await;
                    }
                    FailedOf::Unknown => {
                        return Err(Failed::from(ConfigError::RetryOfUnknown(earlier.clone())));
                    }
                    FailedOf::Unusable(why) => {
                        return Err(Failed::from(ConfigError::RetryOfUnusable(
                            earlier.clone(),
                            why,
                        )));
                    }
                },
            };
            let (queue, build) = match &retry {
                Some(round) => retried(queue, &retry_settings, round, &worker).await?,
                None => (queue, build),
            };
            let runner = runner_for(&config, &worker);
            let listing = FrameworkListing {
                source: &source,
                framework: runner.framework(),
            };
            let checked = Checked {
                inner: &listing,
                quarantine: &quarantine,
            };
            // The framework starts (and collects) while the election runs and the leader
            // lists, so every worker takes its first test as soon as the queue is committed. A
            // framework that fails here fails again, and says why, when the worker prepares it.
            let joining = async {
                let joined = async {
                    match grind {
                        Some(n) => queue.join(&GrindSource::new(&checked, n)).await,
                        None => queue.join(&checked).await,
                    }
                };
                let (joined, _) = tokio::join!(joined, runner.prepare());
                joined
            };
            // A worker stopped or failed before it joined says it left (and a leader gives its
            // lock up), so neither the others nor the report wait out its timeouts.
            let resign = async || {
                if let Err(err) = queue.resign().await {
                    crate::say!("ciq: could not say worker `{worker}` left the build: {err}");
                }
            };
            tokio::select! {
                joined = joining => {
                    if let Err(err) = joined {
                        // Saying so would only wait out --redis-timeout again.
                        if !matches!(err, QueueError::Unreachable { .. }) {
                            resign().await;
                        }
                        return Err(err.into());
                    }
                }
                signal = &mut shutdown => {
                    resign().await;
                    return Ok(interrupted(signal, &worker));
                }
            }
            let mut decided = Vec::new();
            let decided_into = config.junit.is_some().then_some(&mut decided);
            let end = match grind {
                Some(_) => {
                    let runner = GrindRunner::new(runner);
                    worker::run(&queue, &runner, &config.worker, shutdown, decided_into).await
                }
                None => worker::run(&queue, &runner, &config.worker, shutdown, decided_into).await,
            }
            .map_err(|err| {
                Failed::from(err).context(format!("worker `{worker}` of build `{build}` stopped"))
            })?;
            if let Some(path) = &config.junit {
                let mut summary = Summary {
                    total: decided.len(),
                    ..Summary::default()
                };
                for record in &decided {
                    *summary.counts.entry(record.outcome).or_insert(0) += 1;
                }
                write_junit(path, &worker, &summary, &decided);
            }
            if let WorkerEnd::Done {
                finished_before: true,
                ..
            } = end
            {
                crate::say!(
                    "ciq: build `{build}` had already finished when worker `{worker}` joined: it ran nothing, and the verdict below is the build's"
                );
            }
            Ok(finish(end, &worker, &quarantine))
        }
    }
}

/// A build that re-runs the failed tests of build `earlier`, which had none, is a build of no
/// test: its workers fill it with nothing (the report then ends at once, green, where it would
/// wait for a leader), say why for the report, and leave with its verdict. The build is a real
/// one: run again with another list, it is a list mismatch, never a green build of nothing.
async fn nothing_to_retry(queue: &RedisQueue, earlier: &str) -> Result<i32, Failed> {
    queue.record_nothing_to_retry(earlier).await?;
    let none = TestList {
        ids: Vec::new(),
        duplicates: 0,
        first_duplicate: None,
    };
    queue.join(&TestSource::List(none)).await?;
    let summary = queue.summary().await?;
    queue.release(&[]).await?;
    super::print_last(&summary.render());
    Ok(exit_code::for_verdict(summary.verdict()))
}

/// Before joining, a retried job re-opens its finished build's failed tests (or finds them
/// re-opened). A build aborted for everyone cannot be re-run in place: the retry starts a build
/// of its own, `<build>-retry-<round>`, which every job and the report of the round derive
/// alike. Returns the queue to join and its build id.
async fn retried(
    queue: RedisQueue,
    settings: &RedisSettings,
    round: &RetryRound,
    worker: &str,
) -> Result<(RedisQueue, String), Failed> {
    let build = settings.build.clone();
    match queue.retry(round).await? {
        Retrying::Join => {}
        // Joining the finished build ends at once, with its verdict.
        Retrying::Nothing { round } => crate::say!(
            "ciq: nothing to retry: no test of build `{build}` failed (retry `{round}`)"
        ),
        Retrying::Reopened { round, tests } if tests > 0 => crate::say!(
            "ciq: retry `{round}` of build `{build}`: its {tests} failed test(s) run again (passed tests do not); a pass now makes a test flaky"
        ),
        Retrying::Reopened { round, .. } => crate::say!(
            "ciq: retry `{round}` of build `{build}`: worker `{worker}` joins the re-run of its failed tests"
        ),
        Retrying::Aborted { round, fresh } => {
            crate::say!(
                "ciq: build `{build}` was aborted, so retry `{round}` runs the whole suite as build `{fresh}`"
            );
            let settings = RedisSettings {
                build: fresh.clone(),
                ..settings.clone()
            };
            let queue = RedisQueue::connect(settings, worker.to_owned()).await?;
            return Ok((queue, fresh));
        }
    }
    Ok((queue, build))
}

/// Runs the build in this process with `jobs` workers; with `share`, only that share of the
/// sorted list (`--fallback static`).
async fn run_local(
    config: RunConfig,
    source: TestSource,
    jobs: usize,
    timing: LocalTiming,
    share: Option<Share>,
    quarantine: &Quarantine,
) -> Result<i32, Failed> {
    let (stop_tx, stop_rx) = watch::channel(None::<i32>);
    let signals = tokio::spawn(async move {
        let _ = stop_tx.send(Some(signal::shutdown().await));
    });
    let runners: Vec<Arc<AnyRunner>> = (1..=jobs)
        .map(|n| Arc::new(runner_for(&config, &local_worker(n))))
        .collect();
    let listing = FrameworkListing {
        source: &source,
        framework: runners.first().and_then(|runner| runner.framework()),
    };
    // While the first framework lists the suite, the others collect it too, side by side; a
    // framework that fails here fails again, and says why, in its worker.
    let mut starting = JoinSet::new();
    if listing.by_framework() {
        for runner in runners.iter().skip(1) {
            let runner = Arc::clone(runner);
            starting.spawn(async move {
                let _ = runner.prepare().await;
            });
        }
    }
    let list = tokio::select! {
        list = listing.discover(config.discovery_timeout) => list?,
        signal = stopped(stop_rx.clone()) => return Ok(interrupted(signal, "local")),
    };
    if let Some(warning) = list.duplicate_warning() {
        crate::say!("ciq: {warning}");
    }
    if !matches!(source, TestSource::List(_)) {
        quarantine.warn_unknown(&list.ids);
    }
    let list = match share {
        None => list,
        Some(share) => {
            let mut ids = list.ids;
            ids.sort();
            let all = ids.len();
            let ids: Vec<TestId> = ids
                .into_iter()
                .enumerate()
                .filter(|(at, _)| share.holds(*at))
                .map(|(_, id)| id)
                .collect();
            crate::say!(
                "ciq: --fallback static: {} of the {all} tests are this machine's (share {} of {})",
                ids.len(),
                share.index + 1,
                share.count
            );
            TestList {
                ids,
                duplicates: 0,
                first_duplicate: None,
            }
        }
    };
    crate::say!(
        "ciq: running {} tests on {jobs} local worker{}",
        list.ids.len(),
        if jobs == 1 { "" } else { "s" }
    );
    let file = config.scheduling.read_file(&list.ids);
    let ordered = config
        .scheduling
        .order(&list.ids, timings::Stored::default(), &file);
    let queue = LocalQueue::ordered(&ordered, config.budget, timing);
    queue.remember(file.into_map());
    let mut workers = JoinSet::new();
    for (n, runner) in (1..).zip(runners) {
        let handle = queue.worker(local_worker(n));
        let options = config.worker.clone();
        let stop = stop_rx.clone();
        workers.spawn(async move {
            worker::run(&handle, &*runner, &options, stopped(stop), None).await
        });
    }
    let mut interrupted = None;
    let mut failure = None;
    while let Some(joined) = workers.join_next().await {
        let ended = match joined {
            Ok(ended) => ended,
            // Aborted below, after another worker's fatal error.
            Err(err) if err.is_cancelled() => continue,
            Err(err) => return Err(crate::error::Error::Panicked(err).into()),
        };
        match ended {
            Ok(WorkerEnd::Done { .. } | WorkerEnd::Stopped(_)) => {}
            Ok(WorkerEnd::Interrupted(signal)) => interrupted = Some(signal),
            Err(err) => {
                // One worker's fatal error (a missing command) would repeat in every worker.
                workers.abort_all();
                failure.get_or_insert(err);
            }
        }
    }
    signals.abort();
    if let Some(err) = failure {
        return Err(err.into());
    }
    if let Some(path) = &config.timings_out {
        super::write_timings(path, queue.durations());
    }
    super::show_slower(queue.slower());
    let mut summary = queue.summary();
    summary.quarantine(quarantine);
    if let Some(path) = &config.junit {
        write_junit(path, &config.build, &summary, &queue.records());
    }
    super::print_last(&summary.render());
    Ok(match interrupted {
        Some(signal) => exit_code::SIGNAL_BASE + signal,
        None => exit_code::for_verdict(summary.verdict()),
    })
}

/// A JUnit report of `records` named `name` at `path`; a warning if it cannot be written: the
/// verdict stands, and the log has every failure.
fn write_junit(path: &std::path::Path, name: &str, summary: &Summary, records: &[TestRecord]) {
    let written = JunitReport::create(path, name, summary)
        .and_then(|mut report| report.add(records).and_then(|()| report.finish()));
    match written {
        Ok(()) => crate::say!(
            "ciq: wrote the JUnit report of {} tests to `{}`",
            records.len(),
            path.display()
        ),
        Err(err) => {
            crate::say!(
                "ciq: warning: no JUnit report: {}",
                crate::human::error_chain(&err)
            );
        }
    }
}

/// The id of local worker `n` (from 1).
fn local_worker(n: usize) -> String {
    format!("local-{n}")
}

/// The runner the command line chose.
#[expect(
    clippy::large_enum_variant,
    reason = "one runner per worker, built once and never moved on a hot path"
)]
pub(super) enum AnyRunner {
    /// A command per batch.
    Command(CommandRunner),
    /// cargo-nextest's binaries, one process per test.
    Nextest(NextestRunner),
    /// A persistent framework process.
    Persistent(PersistentRunner),
}

impl AnyRunner {
    /// The framework process of a persistent runner, which may list the suite it runs.
    fn framework(&self) -> Option<&PersistentRunner> {
        match self {
            AnyRunner::Persistent(runner) => Some(runner),
            AnyRunner::Command(_) | AnyRunner::Nextest(_) => None,
        }
    }
}

impl Runner for AnyRunner {
    async fn run(
        &self,
        batch: &[TestId],
        limits: &[Duration],
        feed: &Feed,
    ) -> Result<Ran, RunnerError> {
        match self {
            AnyRunner::Command(runner) => runner.run(batch, limits, feed).await,
            AnyRunner::Nextest(runner) => runner.run(batch, limits, feed).await,
            AnyRunner::Persistent(runner) => runner.run(batch, limits, feed).await,
        }
    }

    async fn settle(&self) -> Option<TestResult> {
        match self {
            AnyRunner::Command(runner) => runner.settle().await,
            AnyRunner::Nextest(runner) => runner.settle().await,
            AnyRunner::Persistent(runner) => runner.settle().await,
        }
    }

    async fn prepare(&self) -> Result<(), RunnerError> {
        match self {
            AnyRunner::Command(runner) => runner.prepare().await,
            AnyRunner::Nextest(runner) => runner.prepare().await,
            AnyRunner::Persistent(runner) => runner.prepare().await,
        }
    }

    async fn shutdown(&self) {
        match self {
            AnyRunner::Command(runner) => runner.shutdown().await,
            AnyRunner::Nextest(runner) => runner.shutdown().await,
            AnyRunner::Persistent(runner) => runner.shutdown().await,
        }
    }
}

/// The runner of one worker: the configured kind, with the build and worker ids in its
/// environment.
pub(super) fn runner_for(config: &RunConfig, worker: &str) -> AnyRunner {
    let env = vec![
        ("CIQ_BUILD".to_owned(), config.build.clone()),
        ("CIQ_WORKER".to_owned(), worker.to_owned()),
    ];
    let timeout = Some(config.test_timeout.overall());
    let output_limit = config.output_limit;
    let mut preflight = None;
    let mut hints = Hints::default();
    let (command, persistent) = match &config.runner {
        RunnerSpec::Command(command) => (command.clone(), false),
        RunnerSpec::Persistent(argv) => {
            // A pytest started by hand gets the plugin hints too; they name pytest's words.
            hints.exited_early = pytest::persistent_hints().exited_early;
            (argv.clone(), true)
        }
        RunnerSpec::Pytest { args, persistent } if *persistent => {
            hints = pytest::persistent_hints();
            (pytest::persistent_argv(args), true)
        }
        RunnerSpec::Pytest { args, .. } => {
            preflight = Some(pytest::preflight());
            (pytest::batch_command(args), false)
        }
        RunnerSpec::Nextest(args) => {
            return AnyRunner::Nextest(NextestRunner::new(
                args.clone(),
                env,
                config.discovery_timeout,
                output_limit,
            ));
        }
    };
    if persistent {
        AnyRunner::Persistent(PersistentRunner::new(
            command,
            env,
            timeout,
            output_limit,
            hints,
        ))
    } else {
        AnyRunner::Command(CommandRunner {
            command,
            env,
            timeout,
            output_limit,
            preflight,
        })
    }
}

/// Resolves to the signal number once the signal task reports one.
async fn stopped(mut stop: watch::Receiver<Option<i32>>) -> i32 {
    let signal = match stop.wait_for(Option::is_some).await {
        Ok(signal) => *signal,
        Err(_) => None,
    };
    match signal {
        Some(signal) => signal,
        None => std::future::pending().await,
    }
}

fn interrupted(signal: i32, worker: &str) -> i32 {
    crate::say!("ciq: worker `{worker}` stopped by signal {signal}");
    exit_code::SIGNAL_BASE + signal
}

fn finish(end: WorkerEnd, worker: &str, quarantine: &Quarantine) -> i32 {
    match end {
        WorkerEnd::Done { mut summary, .. } => {
            summary.quarantine(quarantine);
            super::print_last(&summary.render());
            exit_code::for_verdict(summary.verdict())
        }
        WorkerEnd::Interrupted(signal) => interrupted(signal, worker),
        WorkerEnd::Stopped(Stop::BuildFailing(_)) => exit_code::TESTS_FAILED,
        WorkerEnd::Stopped(Stop::Failures(_)) => {
            crate::say!(
                "ciq: the other workers take its tests; `ciq report` gives the build's verdict"
            );
            exit_code::TESTS_FAILED
        }
        WorkerEnd::Stopped(Stop::OutOfTime(_)) => exit_code::TESTS_NOT_RUN,
    }
}
