//! `ciq run`: local workers over an in-memory queue ([`super::local`]), or one worker of a
//! Redis build: connect (or fall back to a static share), resolve the test source, join the
//! build (or say it left), work, write the outputs, and end with the verdict.

use crate::timeline::Leave;
use std::future::Future;
use std::ops::ControlFlow;
use std::sync::Arc;

use super::Failed;
use super::local::{self, run_local};
use crate::ci::{self, RetryRound, Share};
use crate::config::args::RunArgs;
use crate::config::{ConfigError, Mode, RunConfig, SourceSpec};
use crate::discovery::{FrameworkListing, TestSource};
use crate::exit_code::{self, ExitCode};
use crate::grind::{GrindRunner, GrindSource};
use crate::order_log::OrderLog;
use crate::quarantine::{Checked, Quarantine};
use crate::queue::local::LocalTiming;
use crate::queue::redis::{FailedOf, RedisQueue, RedisSettings, Retrying, connection};
use crate::queue::{Queue as _, QueueError};
use crate::report::output_file::{self, Planned};
use crate::report::{Findings, Summary};
use crate::runner::Runner as _;
use crate::runner::launch::{AnyRunner, Launch};
use crate::signal;
use crate::test_id::TestList;
use crate::worker::{self, WorkerEnd};

pub async fn run(args: RunArgs) -> Result<ExitCode, Failed> {
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
    output_file::check(&Planned::given(&[
        ("--junit (CIQ_RUN_JUNIT)", config.junit.as_deref()),
        (
            "--timings-out (CIQ_LOCAL_TIMINGS_OUT)",
            config.timings_out.as_deref(),
        ),
        ("--order-log (CIQ_ORDER_LOG)", order_log.as_deref()),
        ("--html (CIQ_RUN_HTML)", config.html.as_deref()),
        ("--trace (CIQ_RUN_TRACE)", config.trace.as_deref()),
    ]))?;
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
) -> Result<ExitCode, Failed> {
    if let Mode::Redis { settings, .. } = &config.mode {
        connection::client(&settings.url)?;
    }
    let source = config.source.load()?;
    if let (Some(quarantine), Some(TestSource::List(list))) = (&quarantine, &source) {
        quarantine.warn_unknown(&list.ids);
    }
    let quarantine = quarantine.unwrap_or_default();
    // The framework's pre-flight checks, once for every worker of this process.
    let launch = config.runner.launch()?;
    match config.mode.clone() {
        Mode::Local { jobs, timing } => {
            let source = source.ok_or(ConfigError::NoTestList)?;
            run_local(&config, &launch, source, jobs, timing, None, &quarantine).await
        }
        Mode::Redis {
            settings,
            worker,
            fallback,
            retry,
        } => {
            let job = Job {
                config: &config,
                launch: &launch,
                quarantine: &quarantine,
                worker: &worker,
            };
            run_distributed(job, *settings, source, fallback, retry, grind).await
        }
    }
}

/// What every step of a distributed worker shares.
#[derive(Clone, Copy)]
struct Job<'a> {
    config: &'a RunConfig,
    launch: &'a Launch,
    quarantine: &'a Quarantine,
    worker: &'a str,
}

/// One worker of a build shared through Redis.
async fn run_distributed(
    job: Job<'_>,
    settings: RedisSettings,
    source: Option<TestSource>,
    fallback: Option<Share>,
    retry: Option<RetryRound>,
    grind: Option<u32>,
) -> Result<ExitCode, Failed> {
    // Signals are handled from the start: a leader stopped while it lists its tests kills the
    // list command instead of leaving it behind.
    let mut shutdown = std::pin::pin!(signal::shutdown());
    let retrying = matches!(retry, Some(RetryRound::Named(_)))
        || matches!(job.config.source, SourceSpec::Earlier(_));
    let mut source = source;
    let connected = connect_or_fall_back(
        job,
        &settings,
        &mut source,
        fallback,
        retrying,
        &mut shutdown,
    );
    let queue = match connected.await? {
        ControlFlow::Continue(queue) => queue,
        ControlFlow::Break(code) => return Ok(code),
    };
    let source = match resolve_source(job, &queue, source, &settings.build).await? {
        ControlFlow::Continue(source) => source,
        ControlFlow::Break(code) => return Ok(code),
    };
    let (queue, build) = match &retry {
        Some(round) => retried(queue, &settings, round, job.worker).await?,
        None => (queue, settings.build.clone()),
    };
    let runner = job.launch.runner(&job.config.runner_setup(), job.worker);
    if let Some(code) = join_or_resign(job, &queue, &runner, &source, grind, &mut shutdown).await? {
        return Ok(code);
    }
    note_build_order(&queue, job.config, &build).await;
    let mut decided = Vec::new();
    let decided_into = job.config.junit.is_some().then_some(&mut decided);
    let end = match grind {
        Some(_) => {
            let runner = GrindRunner::new(runner);
            worker::run(&queue, &runner, &job.config.worker, shutdown, decided_into).await
        }
        None => worker::run(&queue, &runner, &job.config.worker, shutdown, decided_into).await,
    }
    .map_err(|err| {
        Failed::from(err).context(format!(
            "worker `{}` of build `{build}` stopped",
            job.worker
        ))
    })?;
    if let Some(path) = &job.config.junit {
        local::write_junit(path, job.worker, &Summary::of_records(&decided), &decided);
    }
    if let WorkerEnd::Done {
        finished_before: true,
        ..
    } = end
    {
        crate::say!(
            "ciq: build `{build}` had already finished when worker `{}` joined: it ran nothing, and the verdict below is the build's",
            job.worker
        );
    }
    Ok(finish(end, job.worker, job.quarantine))
}

/// Writes the order the build's leader queued the tests in to the order log, and says a random
/// one with its seed: every worker runs the leader's, whatever its own `--order`.
async fn note_build_order(queue: &RedisQueue, config: &RunConfig, build: &str) {
    match queue.build_order().await {
        Ok(Some(order)) => {
            if order.starts_with("random") {
                crate::say!(
                    "ciq: build `{build}` runs its tests in a random order: `--order {order}` repeats it"
                );
            }
            if let Some(log) = &config.worker.order_log {
                log.note_order(&order);
            }
        }
        Ok(None) => {}
        Err(err) => crate::say!("ciq: warning: cannot read the build's order: {err}"),
    }
}

/// Connects to the build's Redis. When it is unreachable and `--fallback static` is given
/// (and this is no retry, whose failed tests only Redis has), runs this machine's share of the
/// suite (taken from `source`) locally instead, and breaks with its exit code.
async fn connect_or_fall_back(
    job: Job<'_>,
    settings: &RedisSettings,
    source: &mut Option<TestSource>,
    fallback: Option<Share>,
    retrying: bool,
    shutdown: &mut (impl Future<Output = i32> + Unpin),
) -> Result<ControlFlow<ExitCode, RedisQueue>, Failed> {
    let connected = tokio::select! {
        queue = RedisQueue::connect(settings.clone(), job.worker.to_owned()) => queue,
        signal = shutdown => return Ok(ControlFlow::Break(super::interrupted(signal, job.worker))),
    };
    match (connected, fallback) {
        (Ok(queue), _) => Ok(ControlFlow::Continue(queue)),
        (Err(err @ QueueError::Unreachable { .. }), Some(_)) if retrying => {
            crate::say!(
                "ciq: --fallback static is not used on a retry: the failed tests to re-run are in Redis"
            );
            Err(Failed::from(err))
        }
        (Err(err @ QueueError::Unreachable { .. }), Some(share)) => {
            crate::say!(
                "ciq: WARNING: {err}\nciq: WARNING: --fallback static: worker `{}` runs share {} of {} of the suite without Redis (the sorted list's tests {}, {}, ...): no retries on other machines, no take-over if one dies, and its verdict covers only its share",
                job.worker,
                share.index + 1,
                share.count,
                share.index + 1,
                share.index + 1 + share.count
            );
            let source = source.take().ok_or(ConfigError::NoTestList)?;
            let timing = LocalTiming {
                heartbeat_interval: settings.heartbeat_interval,
                heartbeat_timeout: settings.heartbeat_timeout,
            };
            let code = run_local(
                job.config,
                job.launch,
                source,
                1,
                timing,
                Some(share),
                job.quarantine,
            )
            .await?;
            Ok(ControlFlow::Break(code))
        }
        (Err(err), _) => Err(Failed::from(err)),
    }
}

/// The test source of this worker: the one given, or the failed tests of `--retry-of`'s build
/// (read from Redis); a build with none to retry breaks with its verdict at once.
async fn resolve_source(
    job: Job<'_>,
    queue: &RedisQueue,
    source: Option<TestSource>,
    build: &str,
) -> Result<ControlFlow<ExitCode, TestSource>, Failed> {
    if let Some(source) = source {
        return Ok(ControlFlow::Continue(source));
    }
    let SourceSpec::Earlier(earlier) = &job.config.source else {
        return Err(Failed::from(ConfigError::NoTestList));
    };
    match queue.failed_of(earlier).await? {
        FailedOf::Tests(Some(list)) => {
            crate::say!(
                "ciq: build `{build}` runs the {} failed test(s) of build `{earlier}`",
                list.ids.len()
            );
            Ok(ControlFlow::Continue(TestSource::List(list)))
        }
        FailedOf::Tests(None) => {
            crate::say!("ciq: nothing to retry: no test of build `{earlier}` failed");
            Ok(ControlFlow::Break(nothing_to_retry(queue, earlier).await?))
        }
        FailedOf::Unknown => Err(Failed::from(ConfigError::RetryOfUnknown(earlier.clone()))),
        FailedOf::Unusable(why) => Err(Failed::from(ConfigError::RetryOfUnusable(
            earlier.clone(),
            why,
        ))),
    }
}

/// Joins the build (the leader lists and fills it) while the runner starts; a worker stopped or
/// failed before it joined says it left. `Some` exit code when a signal stopped it.
async fn join_or_resign(
    job: Job<'_>,
    queue: &RedisQueue,
    runner: &AnyRunner,
    source: &TestSource,
    grind: Option<u32>,
    shutdown: &mut (impl Future<Output = i32> + Unpin),
) -> Result<Option<ExitCode>, Failed> {
    let listing = FrameworkListing {
        source,
        framework: runner.framework(),
    };
    let checked = Checked {
        inner: &listing,
        quarantine: job.quarantine,
    };
    // The framework starts (and collects) while the election runs and the leader lists, so
    // every worker takes its first test as soon as the queue is committed. A framework that
    // fails here fails again, and says why, when the worker prepares it.
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
    // Saying so lets neither the others nor the report wait out its timeouts (and a leader
    // gives its lock up).
    let resign = async |how| {
        if let Err(err) = queue.resign(how).await {
            crate::say!(
                "ciq: could not say worker `{}` left the build: {err}",
                job.worker
            );
        }
    };
    tokio::select! {
        joined = joining => match joined {
            Ok(_) => Ok(None),
            Err(err) => {
                // Saying so would only wait out --redis-timeout again.
                if !matches!(err, QueueError::Unreachable { .. }) {
                    resign(Leave::Failed).await;
                }
                Err(err.into())
            }
        },
        signal = shutdown => {
            resign(Leave::Sigterm).await;
            Ok(Some(super::interrupted(signal, job.worker)))
        }
    }
}

/// A build that re-runs the failed tests of build `earlier`, which had none, is a build of no
/// test: its workers fill it with nothing (the report then ends at once, green, where it would
/// wait for a leader), say why for the report, and leave with its verdict. The build is a real
/// one: run again with another list, it is a list mismatch, never a green build of nothing.
async fn nothing_to_retry(queue: &RedisQueue, earlier: &str) -> Result<ExitCode, Failed> {
    queue.record_nothing_to_retry(earlier).await?;
    let none = TestList {
        ids: Vec::new(),
        duplicates: 0,
        first_duplicate: None,
    };
    queue.join(&TestSource::List(none)).await?;
    let findings = Findings::new(queue.summary().await?, &Quarantine::default());
    queue.release(&[], Leave::Drained, None).await?;
    super::print_last(&findings.render());
    Ok(exit_code::for_verdict(findings.verdict()))
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

/// Prints how the worker ended and gives its exit code: the build's verdict when it drained.
fn finish(end: WorkerEnd, worker: &str, quarantine: &Quarantine) -> ExitCode {
    match end {
        WorkerEnd::Done { summary, .. } => {
            let findings = Findings::new(*summary, quarantine);
            super::print_last(&findings.render());
            exit_code::for_verdict(findings.verdict())
        }
        WorkerEnd::Interrupted(signal) => super::interrupted(signal, worker),
        WorkerEnd::Stopped(stop) => {
            if matches!(stop, crate::worker::Stop::Failures(_)) {
                crate::say!(
                    "ciq: the other workers take its tests; `ciq report` gives the build's verdict"
                );
            }
            exit_code::for_stop(&stop)
        }
    }
}
