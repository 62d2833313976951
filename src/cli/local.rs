//! `ciq run` without Redis: `-j N` workers in this process over an in-memory queue (or, with
//! `--fallback static`, one worker on this machine's share of the suite). List, order, run,
//! then write the outputs and end with the verdict.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinSet;

use super::Failed;
use crate::batching::BatchSize;
use crate::ci::Share;
use crate::config::RunConfig;
use crate::discovery::{FrameworkListing, TestSource};
use crate::exit_code::{self, ExitCode};
use crate::junit::write::JunitReport;
use crate::quarantine::Quarantine;
use crate::queue::local::{LocalQueue, LocalTiming};
use crate::report::{Findings, Summary, TestRecord, html};
use crate::runner::Runner as _;
use crate::runner::launch::{AnyRunner, Launch};
use crate::signal;
use crate::test_id::{TestId, TestList};
use crate::timings;
use crate::worker::{self, WorkerEnd};

/// Runs the build in this process with `jobs` workers; with `share`, only that share of the
/// sorted list (`--fallback static`).
pub(super) async fn run_local(
    config: &RunConfig,
    launch: &Launch,
    source: TestSource,
    jobs: usize,
    timing: LocalTiming,
    share: Option<Share>,
    quarantine: &Quarantine,
) -> Result<ExitCode, Failed> {
    let (stop_tx, stop_rx) = watch::channel(None::<i32>);
    let signals = tokio::spawn(async move {
        let _ = stop_tx.send(Some(signal::shutdown().await));
    });
    let setup = config.runner_setup();
    let runners: Vec<Arc<AnyRunner>> = (1..=jobs)
        .map(|n| Arc::new(launch.runner(&setup, &local_worker(n))))
        .collect();
    // Frameworks that start while the first one lists; they go on starting while the tests run.
    let mut starting = JoinSet::new();
    let list = tokio::select! {
        list = list(config, &source, &runners, &mut starting) => list?,
        signal = stopped(stop_rx.clone()) => return Ok(super::interrupted(signal, "local")),
    };
    if !matches!(source, TestSource::List(_)) {
        quarantine.warn_unknown(&list.ids);
    }
    let list = match share {
        None => list,
        Some(share) => share_of(list, share),
    };
    crate::say!(
        "ciq: running {} tests on {jobs} local worker{}",
        list.ids.len(),
        if jobs == 1 { "" } else { "s" }
    );
    let file = config.scheduling.read_file(&list.ids);
    let ordered = config.scheduling.order(
        &list.ids,
        timings::Stored::default(),
        &file,
        &HashSet::new(),
    );
    if let Some(log) = &config.worker.order_log {
        log.note_order(&config.scheduling.order.to_string());
    }
    let queue = LocalQueue::ordered(&ordered, config.budget, timing);
    if !config.scheduling.groups.is_empty() {
        queue.limit_groups(config.scheduling.groups.clone());
    }
    let known = file.into_map();
    // The timing file's durations are the usual times the page's slowest tests are held to.
    let usual_ms: HashMap<String, u64> = if config.html.is_some() {
        known
            .iter()
            .map(|(id, took)| (id.as_str().to_owned(), millis(*took)))
            .collect()
    } else {
        HashMap::new()
    };
    queue.remember(known);
    let worked = work(&queue, runners, config, &stop_rx).await;
    signals.abort();
    let signal = worked?;
    if let Some(path) = &config.timings_out {
        super::write_timings(path, queue.durations(), &failed_in(&queue.summary()));
    }
    super::show_slower(queue.slower());
    let findings = Findings::new(queue.summary(), quarantine);
    if let Some(path) = &config.junit {
        write_junit(path, &config.build, findings.summary(), &queue.records());
    }
    if config.html.is_some() || config.trace.is_some() {
        let timeline = queue.timeline();
        let build = html::Build {
            build: &config.build,
            namespace: "",
            timeline: &timeline,
            findings: &findings,
            usual_ms: &usual_ms,
            heartbeat_timeout_ms: None,
            batch_size: match config.worker.batch_size {
                BatchSize::Fixed(size) => Some(size as u64),
                BatchSize::Auto => None,
            },
            running: false,
            generated_at_ms: super::now_ms(),
        };
        super::write_pictures(
            "ciq",
            config.html.as_deref(),
            config.trace.as_deref(),
            &build,
        );
    }
    super::print_last(&findings.render());
    Ok(match signal {
        Some(signal) => ExitCode::Signal(signal),
        None => exit_code::for_verdict(findings.verdict()),
    })
}

/// The tests `summary` names failed, errored or flaky: a timing file keeps them for
/// `--order failed-first`.
pub(super) fn failed_in(summary: &Summary) -> Vec<TestId> {
    summary
        .failing
        .iter()
        .chain(&summary.flaky)
        .map(|listed| listed.id.clone())
        .collect()
}

fn millis(took: std::time::Duration) -> u64 {
    u64::try_from(took.as_millis()).unwrap_or(u64::MAX)
}

/// The test list, listed by the first worker's framework where it lists (the others then
/// collect the suite side by side, in `starting`), else by the source.
async fn list(
    config: &RunConfig,
    source: &TestSource,
    runners: &[Arc<AnyRunner>],
    starting: &mut JoinSet<()>,
) -> Result<TestList, Failed> {
    let listing = FrameworkListing {
        source,
        framework: runners.first().and_then(|runner| runner.framework()),
    };
    // A framework that fails here fails again, and says why, in its worker.
    if listing.by_framework() {
        for runner in runners.iter().skip(1) {
            let runner = Arc::clone(runner);
            starting.spawn(async move {
                let _ = runner.prepare().await;
            });
        }
    }
    let list = listing.discover(config.discovery_timeout).await?;
    if let Some(warning) = list.duplicate_warning() {
        crate::say!("ciq: {warning}");
    }
    Ok(list)
}

/// `list`'s tests that are this machine's `share`, sorted.
fn share_of(list: TestList, share: Share) -> TestList {
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

/// Runs a worker per runner until the queue is drained or a signal stops them; the signal,
/// if one did.
async fn work(
    queue: &Arc<LocalQueue>,
    runners: Vec<Arc<AnyRunner>>,
    config: &RunConfig,
    stop: &watch::Receiver<Option<i32>>,
) -> Result<Option<i32>, Failed> {
    let mut workers = JoinSet::new();
    for (n, runner) in (1..).zip(runners) {
        let handle = queue.worker(local_worker(n));
        let options = config.worker.clone();
        let stop = stop.clone();
        workers.spawn(async move {
            worker::run(&handle, &*runner, &options, stopped(stop), None).await
        });
    }
    let mut signal = None;
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
            Ok(WorkerEnd::Interrupted(stopped_by)) => signal = Some(stopped_by),
            Err(err) => {
                // One worker's fatal error (a missing command) would repeat in every worker.
                workers.abort_all();
                failure.get_or_insert(err);
            }
        }
    }
    match failure {
        Some(err) => Err(err.into()),
        None => Ok(signal),
    }
}

/// A JUnit report of `records` named `name` at `path`, its head from `summary`; a warning if
/// it cannot be written: the verdict stands, and the log has every failure.
pub(super) fn write_junit(
    path: &std::path::Path,
    name: &str,
    summary: &Summary,
    records: &[TestRecord],
) {
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
