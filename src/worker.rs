//! The worker loop, the same for every queue backend: reserve, run, acknowledge and reserve
//! again, heartbeat what is held, give it back on shutdown.
//!
//! [`run`] takes its shutdown signal as a future, so tests and the local mode's many workers
//! can stop it without a real signal.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use thiserror::Error;
use tokio::time::{Instant, sleep, sleep_until};

use crate::batching::{BatchSize, Batcher, Saves};
use crate::order_log::OrderLog;
use crate::outcome::{FailureDetail, Outcome, TestResult};
use crate::queue::{Ack, Lease, Queue, QueueError, Recorded, Reservation, Reserved, Want};
use crate::report::{Summary, TestRecord};
use crate::runner::{Feed, Ran, Reported, Runner, RunnerError};
use crate::test_id::TestId;
use crate::time_limits::{self, TestTimeout};
use crate::timeline::Leave;

/// How a worker runs its tests.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// Tests per reservation.
    pub batch_size: BatchSize,
    /// What a batch saves, which bounds auto batches.
    pub saves: Saves,
    /// Each test's time limit; heartbeats for a batch stop when its limits have passed, so a
    /// hung test can never be held forever.
    pub test_timeout: TestTimeout,
    /// Stop taking tests after this many failed or errored runs in a row: the machine is more
    /// likely broken than the tests.
    pub max_consecutive_failures: Option<u32>,
    /// Stop taking tests once this long has passed since the worker started; what is left is
    /// reported as not run.
    pub max_duration: Option<Duration>,
    /// Stop taking tests once this many tests of the build finally failed or errored (checked
    /// when this worker records a failure, and at every heartbeat for the others').
    pub max_failures: Option<usize>,
    /// Where the order tests run in is logged, for `ciq bisect`.
    pub order_log: Option<Arc<OrderLog>>,
}

/// How a worker's loop ended.
#[derive(Debug)]
pub enum WorkerEnd {
    /// The queue is drained.
    Done {
        /// The build's summary.
        summary: Box<Summary>,
        /// The build was already done when this worker first asked for tests.
        finished_before: bool,
    },
    /// A shutdown signal arrived; held tests were given back.
    Interrupted(i32),
    /// A breaker tripped; held tests were given back for the other workers.
    Stopped(Stop),
}

/// Why a worker stopped taking tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// `--max-consecutive-failures` tests failed in a row on it.
    Failures(u32),
    /// `--max-duration` passed.
    OutOfTime(Duration),
    /// `--max-failures` tests of the build failed.
    BuildFailing(usize),
}

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stop::Failures(n) => write!(
                f,
                "{n} tests failed in a row on it (--max-consecutive-failures): a broken machine?"
            ),
            Stop::OutOfTime(limit) => write!(
                f,
                "--max-duration {} passed; the tests left are not run",
                crate::human::duration(*limit)
            ),
            Stop::BuildFailing(failed) => write!(
                f,
                "the build has {failed} failed tests (--max-failures); the tests left are not run"
            ),
        }
    }
}

/// How [`work`] ended, when it did not fail.
enum Ended {
    Drained,
    Signal(i32),
    Stopped(Stop),
}

/// What ends a worker early.
#[derive(Debug, Error)]
pub enum WorkerError {
    /// The queue failed (Redis gone, state lost, no leader...).
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// The runner cannot run tests at all.
    #[error(transparent)]
    Runner(#[from] RunnerError),
}

/// Runs tests from `queue` with `runner` until the queue is done or `shutdown` resolves (to a
/// signal number).
pub async fn run<Q: Queue, R: Runner>(
    queue: &Q,
    runner: &R,
    options: &WorkerOptions,
    shutdown: impl Future<Output = i32>,
    decided: Option<&mut Vec<TestRecord>>,
) -> Result<WorkerEnd, WorkerError> {
    let held = Mutex::new(Vec::<(Reserved, Option<Instant>)>::new());
    let mut finished_before = false;
    let mut kept = Kept {
        measured: HashMap::new(),
        decided: decided.is_some().then(Vec::new),
        order_log: options.order_log.clone(),
    };
    let failing = AtomicBool::new(false);
    let watch = Watch {
        held: &held,
        max_failures: options.max_failures,
        failing: &failing,
        asked_at: Mutex::new(Instant::now()),
    };
    let ended = tokio::select! {
        done = work(queue, runner, options, &watch, &mut finished_before, &mut kept) => done,
        err = heartbeats(queue, &watch) => Err(err.into()),
        signal = shutdown => Ok(Ended::Signal(signal)),
    };
    if let (Some(out), Some(decided)) = (decided, kept.decided.take()) {
        *out = decided;
    }
    let measured: Vec<(TestId, Duration)> = kept.measured.into_iter().collect();
    let done = matches!(ended, Ok(Ended::Drained));
    // A drained build's report waits for its workers to leave before it reads what they
    // measured; a worker stopped early gives its tests back first, then keeps what it can.
    if done {
        record(queue, &measured).await;
    }
    let held: Vec<Reserved> = held
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .drain(..)
        .map(|(reserved, _)| reserved)
        .collect();
    let (how, why) = match &ended {
        Ok(Ended::Drained) => (Leave::Drained, None),
        Ok(Ended::Signal(_)) => (Leave::Sigterm, None),
        Ok(Ended::Stopped(stop @ Stop::OutOfTime(_))) => {
            (Leave::MaxDuration, Some(stop.to_string()))
        }
        Ok(Ended::Stopped(stop)) => (Leave::Breaker, Some(stop.to_string())),
        Err(_) => (Leave::Failed, None),
    };
    let released = queue.release(&held, how, why.as_deref()).await;
    runner.shutdown().await;
    if !done
        && tokio::time::timeout(RECORD_WHEN_STOPPED, record(queue, &measured))
            .await
            .is_err()
    {
        crate::say!(
            "ciq: warning: worker `{}` stopped before it could keep its tests' durations",
            queue.worker_id()
        );
    }
    if released.is_ok() && !held.is_empty() {
        crate::say!(
            "ciq: worker `{}` gave {} test(s) back to the queue",
            queue.worker_id(),
            held.len()
        );
    }
    match ended {
        Ok(Ended::Drained) => {
            released?;
            Ok(WorkerEnd::Done {
                summary: Box::new(queue.summary().await?),
                finished_before,
            })
        }
        Ok(Ended::Signal(signal)) => {
            released?;
            Ok(WorkerEnd::Interrupted(signal))
        }
        Ok(Ended::Stopped(stop)) => {
            released?;
            crate::say!(
                "ciq: worker `{}` stops taking tests: {stop}",
                queue.worker_id()
            );
            queue.record_stop(&stop.to_string()).await?;
            Ok(WorkerEnd::Stopped(stop))
        }
        Err(err) => Err(err),
    }
}

/// What the worker loop and its heartbeats share: the tests held, and whether the build has
/// reached `--max-failures` (the heartbeats look for the other workers' failures).
struct Watch<'a> {
    held: &'a Mutex<Vec<(Reserved, Option<Instant>)>>,
    max_failures: Option<usize>,
    failing: &'a AtomicBool,
    /// When the queue was last asked for the build's failures.
    asked_at: Mutex<Instant>,
}

/// How often a worker with `--max-failures` asks for the build's failures between its own
/// (after a batch, or while it waits): another worker's failure stops it about this soon, not
/// a heartbeat interval later, for one small read a second.
const FAILURES_ASKED_EVERY: Duration = Duration::from_secs(1);

impl Watch<'_> {
    /// The tests held, locked.
    fn held(&self) -> std::sync::MutexGuard<'_, Vec<(Reserved, Option<Instant>)>> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the build's failures reached `--max-failures`, asking the queue when `ask`, when
    /// a heartbeat found them, or when it was last asked [`FAILURES_ASKED_EVERY`] ago.
    async fn too_many<Q: Queue>(&self, queue: &Q, ask: bool) -> Result<Option<Stop>, QueueError> {
        let Some(max) = self.max_failures else {
            return Ok(None);
        };
        let due = {
            let mut asked_at = self.asked_at.lock().unwrap_or_else(PoisonError::into_inner);
            let due = ask || asked_at.elapsed() >= FAILURES_ASKED_EVERY;
            if due {
                *asked_at = Instant::now();
            }
            due
        };
        if due || self.failing.load(Ordering::Relaxed) {
            let failed = queue.failures().await?;
            if failed >= max {
                return Ok(Some(Stop::BuildFailing(failed)));
            }
        }
        Ok(None)
    }
}

/// Takes batches from `queue` until it is drained, a breaker trips or the state goes stale
/// for good: reserve, run, acknowledge and reserve again.
async fn work<Q: Queue, R: Runner>(
    queue: &Q,
    runner: &R,
    options: &WorkerOptions,
    watch: &Watch<'_>,
    finished_before: &mut bool,
    keep: &mut Kept,
) -> Result<Ended, WorkerError> {
    let pacing = queue.pacing();
    let mut work = Loop {
        queue,
        runner,
        options,
        watch,
        keep,
        batcher: Batcher::new(
            options.batch_size,
            options.saves,
            options.test_timeout.overall(),
        ),
        provisional: None,
        failures_in_a_row: 0,
        began: Instant::now(),
    };
    runner.prepare().await?;
    let mut next = queue.reserve(work.batcher.next()).await?;
    *finished_before = next == Reservation::Done;
    let mut poll = Duration::from_millis(10);
    loop {
        match next {
            Reservation::Tests(batch) => {
                poll = Duration::from_millis(10);
                let stop;
                (next, stop) = work.take(batch).await?;
                if let Some(stop) = stop {
                    return Ok(Ended::Stopped(stop));
                }
            }
            Reservation::Empty | Reservation::Done if work.provisional.is_some() => {
                next = work.settle_kept().await?;
            }
            Reservation::Empty => {
                if let Some(stop) = work.out_of_time() {
                    return Ok(Ended::Stopped(stop));
                }
                if let Some(stop) = watch.too_many(queue, false).await? {
                    return Ok(Ended::Stopped(stop));
                }
                sleep(poll).await;
                poll = (poll * 2).min(pacing.max_poll_interval);
                next = queue.reserve(work.batcher.next()).await?;
            }
            Reservation::Done => return Ok(Ended::Drained),
            Reservation::Stale => {
                // The kept test's lease went with the old state: its result cannot count.
                if work.provisional.take().is_some() {
                    runner.settle().await;
                    watch.held().clear();
                }
                queue.rejoin().await?;
                next = queue.reserve(work.batcher.next()).await?;
            }
        }
    }
}

/// The worker loop's state from one reservation to the next.
struct Loop<'a, Q, R> {
    queue: &'a Q,
    runner: &'a R,
    options: &'a WorkerOptions,
    watch: &'a Watch<'a>,
    keep: &'a mut Kept,
    batcher: Batcher,
    /// A test that ran, whose result waits for the runner's final word (Ran::provisional).
    provisional: Option<Ack>,
    failures_in_a_row: u32,
    began: Instant,
}

impl<Q: Queue, R: Runner> Loop<'_, Q, R> {
    /// `--max-duration`, when it has passed.
    fn out_of_time(&self) -> Option<Stop> {
        self.options
            .max_duration
            .filter(|limit| Instant::now().duration_since(self.began) >= *limit)
            .map(Stop::OutOfTime)
    }

    /// Runs `batch` and acknowledges it: what the queue hands out next, and the breaker that
    /// tripped, if one did (what it handed out is then held, to be given back).
    async fn take(
        &mut self,
        batch: Vec<Reserved>,
    ) -> Result<(Reservation, Option<Stop>), WorkerError> {
        let ids: Vec<TestId> = batch.iter().map(|r| r.id.clone()).collect();
        let limits = limits(self.queue, self.options.test_timeout, &ids).await;
        let deadline = self.hold(&batch, &ids, &limits);
        let batch_run = run_batch(
            self.queue,
            self.runner,
            Batch {
                reserved: &batch,
                ids: &ids,
                limits: &limits,
            },
            &mut self.provisional,
            self.watch.held,
            self.keep,
        )
        .await?;
        let failed_while = batch_run.failed;
        let ran = self.rerun_cut_short(batch_run, &ids, &limits).await?;
        let acks = self.acks(batch, ran, deadline);
        let (next, failed_here) =
            acknowledge(self.queue, acks, self.batcher.next(), self.keep).await?;
        let stop = self.breaker(failed_here || failed_while).await?;
        if stop.is_some()
            && let Reservation::Tests(batch) = &next
        {
            // What the acknowledgement reserved goes back with what is held.
            self.watch
                .held()
                .extend(batch.iter().map(|reserved| (reserved.clone(), None)));
        }
        Ok((next, stop))
    }

    /// Holds `batch` (and the kept test) until its deadline: the tests' limits, a framework's
    /// restart, and a second; logs its order. Returns the deadline.
    fn hold(&self, batch: &[Reserved], ids: &[TestId], limits: &[Duration]) -> Option<Instant> {
        // Runners apply the limits per test (nextest, persistent) or their sum per batch, and
        // a persistent framework may restart once: heartbeats stop after that much.
        let total = time_limits::total(limits);
        // A framework restarted after a crash gets the limit of a test without history to
        // start.
        let restart = self.options.test_timeout.overall();
        let deadline = Instant::now().checked_add(
            total
                .saturating_add(restart)
                .saturating_add(Duration::from_secs(1)),
        );
        *self.watch.held() = batch
            .iter()
            .chain(self.provisional.as_ref().map(Ack::reserved).as_ref())
            .map(|r| (r.clone(), deadline))
            .collect();
        if let Some(log) = &self.options.order_log {
            log.record(self.queue.worker_id(), ids);
        }
        deadline
    }

    /// The batch's results: those of a batch that timed out with tests it did not finish run
    /// again one per batch, so only a hanging test is errored; otherwise the batch's times
    /// teach the batcher.
    async fn rerun_cut_short(
        &mut self,
        batch_run: BatchRun,
        ids: &[TestId],
        limits: &[Duration],
    ) -> Result<(Ran, HashSet<TestId>), WorkerError> {
        let mut ran = batch_run.ran;
        if ids.len() > 1 && !ran.cut_short.is_empty() {
            crate::say!(
                "ciq: worker `{}`: a batch of {} tests timed out after {}; running the {} it did not finish again, one per batch",
                self.queue.worker_id(),
                ids.len(),
                crate::human::duration(batch_run.took),
                ran.cut_short.len()
            );
            let cut_short: Vec<(TestId, Duration)> = std::mem::take(&mut ran.cut_short)
                .into_iter()
                .filter_map(|id| {
                    let at = ids.iter().position(|listed| *listed == id)?;
                    Some((id, limits[at]))
                })
                .collect();
            let alone = run_alone(
                self.queue.worker_id(),
                self.runner,
                self.options,
                self.watch.held,
                cut_short,
                &mut self.batcher,
            )
            .await?;
            for result in alone {
                if let Some(slot) = ran.results.iter_mut().find(|r| r.id == result.id) {
                    *slot = result;
                }
            }
        } else {
            self.batcher.observe(
                batch_run.took,
                ran.results.iter().map(|result| result.duration),
                batch_run.first_after,
            );
        }
        Ok((ran, batch_run.acked))
    }

    /// The acknowledgements of what `batch` ran and was not acknowledged while it ran: the
    /// previous kept test's first (it ran before), and the batch's own but the test the runner
    /// keeps now, which waits, held until `deadline`, for its final word.
    fn acks(
        &mut self,
        batch: Vec<Reserved>,
        (ran, acked): (Ran, HashSet<TestId>),
        deadline: Option<Instant>,
    ) -> Vec<Ack> {
        for result in &ran.results {
            self.failures_in_a_row = match result.outcome {
                Outcome::Failed | Outcome::Errored => self.failures_in_a_row + 1,
                _ => 0,
            };
        }
        let left: Vec<Reserved> = batch
            .into_iter()
            .filter(|reserved| !acked.contains(&reserved.id))
            .collect();
        let results = ran
            .results
            .into_iter()
            .filter(|result| !acked.contains(&result.id))
            .collect();
        let mut acks = pair(&left, results);
        let kept = ran
            .provisional
            .and_then(|id| acks.iter().position(|ack| ack.result.id == id))
            .map(|at| acks.remove(at));
        if let Some(mut ack) = self.provisional.take() {
            if let Some(settled) = ran.settled {
                ack.result = settled;
            }
            // It ran before this batch: its line comes first.
            acks.insert(0, ack);
        }
        *self.watch.held() = kept
            .as_ref()
            .map(|ack| (ack.reserved(), deadline))
            .into_iter()
            .collect();
        self.provisional = kept;
        acks
    }

    /// The breaker that trips after a batch: failures in a row, `--max-duration`, or the
    /// build's failures (asked of the queue when this batch recorded one).
    async fn breaker(&self, failed: bool) -> Result<Option<Stop>, QueueError> {
        let stop = self
            .options
            .max_consecutive_failures
            .filter(|limit| self.failures_in_a_row >= *limit)
            .map(Stop::Failures)
            .or_else(|| self.out_of_time());
        match stop {
            Some(stop) => Ok(Some(stop)),
            None => self.watch.too_many(self.queue, failed).await,
        }
    }

    /// Nothing follows for now: the runner's final word on the kept test, which keeps the
    /// queue from ending until it is acknowledged.
    async fn settle_kept(&mut self) -> Result<Reservation, WorkerError> {
        let mut acks: Vec<Ack> = self.provisional.take().into_iter().collect();
        // Held while the framework tears down, within a test's limit.
        let deadline = Instant::now().checked_add(self.options.test_timeout.overall());
        *self.watch.held() = acks.iter().map(|ack| (ack.reserved(), deadline)).collect();
        if let (Some(settled), Some(ack)) = (self.runner.settle().await, acks.first_mut()) {
            ack.result = settled;
        }
        self.watch.held().clear();
        let (next, _) = acknowledge(self.queue, acks, self.batcher.next(), self.keep).await?;
        Ok(next)
    }
}

/// How long results a runner reports before its batch ends wait to be acknowledged together: a
/// batch shorter than this costs one acknowledgement, a longer one prints (and records) its
/// tests' lines as it goes.
const EARLY_ACKS_EVERY: Duration = Duration::from_secs(1);

/// A batch to run: its reservations, their ids and each test's time limit.
struct Batch<'a> {
    reserved: &'a [Reserved],
    ids: &'a [TestId],
    limits: &'a [Duration],
}

/// What running a batch came to.
struct BatchRun {
    ran: Ran,
    /// From the batch's start to its end.
    took: Duration,
    /// When its first result came, when the runner reported results as they came.
    first_after: Option<Duration>,
    /// The tests acknowledged while the batch ran (the previous batch's provisional test among
    /// them, when it was settled and acknowledged then).
    acked: HashSet<TestId>,
    /// Whether an acknowledgement while it ran recorded a final failure.
    failed: bool,
}

/// Runs `batch`, acknowledging the results the runner reports before the batch ends at most
/// every [`EARLY_ACKS_EVERY`] (and the previous batch's `provisional` test, once the runner
/// settles it); what is acknowledged leaves `held`. What is not acknowledged yet is in the
/// returned [`Ran`], for the acknowledgement at the batch's end.
async fn run_batch<Q: Queue, R: Runner>(
    queue: &Q,
    runner: &R,
    batch: Batch<'_>,
    provisional: &mut Option<Ack>,
    held: &Mutex<Vec<(Reserved, Option<Instant>)>>,
    keep: &mut Kept,
) -> Result<BatchRun, WorkerError> {
    let started = Instant::now();
    let (feed, mut reported) = Feed::channel();
    let mut running = std::pin::pin!(runner.run(batch.ids, batch.limits, &feed));
    let leases: HashMap<&TestId, &Lease> = batch
        .reserved
        .iter()
        .map(|reserved| (&reserved.id, &reserved.lease))
        .collect();
    let mut first_after = None;
    let mut acked = HashSet::new();
    let mut pending: Vec<Ack> = Vec::new();
    let mut failed = false;
    let mut due = started + EARLY_ACKS_EVERY;
    let ran = loop {
        tokio::select! {
            ran = &mut running => break ran?,
            Some(report) = reported.recv() => {
                first_after.get_or_insert_with(|| started.elapsed());
                match report {
                    Reported::Result(result) => {
                        if let Some(lease) = leases.get(&result.id) {
                            pending.push(Ack {
                                lease: (*lease).clone(),
                                result,
                            });
                        }
                    }
                    Reported::Settled(result) => {
                        if let Some(mut ack) = provisional.take() {
                            ack.result = result;
                            pending.insert(0, ack);
                        }
                    }
                }
            }
            () = sleep_until(due), if !pending.is_empty() => {
                let acks = std::mem::take(&mut pending);
                let ids: HashSet<TestId> = acks.iter().map(|ack| ack.result.id.clone()).collect();
                // Nothing is reserved while the batch runs: the tests left are the batch's.
                let (_, failed_now) = acknowledge(queue, acks, Want::up_to(0), keep).await?;
                failed |= failed_now;
                held.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .retain(|(reserved, _)| !ids.contains(&reserved.id));
                acked.extend(ids);
                due = Instant::now() + EARLY_ACKS_EVERY;
            }
        }
    };
    // What was reported but not acknowledged yet is in `ran`, and a settled provisional test
    // goes back to wait for `ran.settled` with the rest.
    if let Some(at) = pending
        .iter()
        .position(|ack| !leases.contains_key(&ack.result.id))
    {
        *provisional = Some(pending.swap_remove(at));
    }
    Ok(BatchRun {
        ran,
        took: started.elapsed(),
        first_after,
        acked,
        failed,
    })
}

/// Runs each of `tests` (with its limit) as a batch of its own: the tests a batch that timed
/// out did not finish, so a hanging test errors alone and those it held up get their own
/// outcomes. Their heartbeats go on for as long as that may take.
async fn run_alone<R: Runner>(
    worker: &str,
    runner: &R,
    options: &WorkerOptions,
    held: &Mutex<Vec<(Reserved, Option<Instant>)>>,
    tests: Vec<(TestId, Duration)>,
    batcher: &mut Batcher,
) -> Result<Vec<TestResult>, RunnerError> {
    let restart = options.test_timeout.overall();
    let mut results = Vec::with_capacity(tests.len());
    for (id, limit) in tests {
        let deadline = Instant::now().checked_add(
            limit
                .saturating_add(restart)
                .saturating_add(Duration::from_secs(1)),
        );
        for (_, held_until) in held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter_mut()
        {
            *held_until = deadline;
        }
        let alone = std::slice::from_ref(&id);
        if let Some(log) = &options.order_log {
            log.record(worker, alone);
        }
        let started = Instant::now();
        let ran = runner.run(alone, &[limit], &Feed::none()).await?;
        batcher.observe(
            started.elapsed(),
            ran.results.iter().map(|r| r.duration),
            None,
        );
        results.extend(ran.results.into_iter().filter(|result| result.id == id));
    }
    Ok(results)
}

/// What a worker keeps of its runs: each test's time (for later builds), for
/// `ciq run --junit` the tests whose final outcome it recorded, and in its order log whether
/// a run failed.
struct Kept {
    measured: HashMap<TestId, Duration>,
    decided: Option<Vec<TestRecord>>,
    order_log: Option<Arc<OrderLog>>,
}

/// Acknowledges `acks` (printing a line for each) and asks for what `want` says; also says
/// whether one of them was recorded as finally failed.
async fn acknowledge<Q: Queue>(
    queue: &Q,
    acks: Vec<Ack>,
    want: Want,
    kept: &mut Kept,
) -> Result<(Reservation, bool), WorkerError> {
    let durations: HashMap<TestId, Duration> = acks
        .iter()
        .map(|ack| (ack.result.id.clone(), ack.result.duration))
        .collect();
    // Whole results (their output) are copied only for `ciq run --junit`: not on every ack.
    let results: HashMap<TestId, TestResult> = match kept.decided {
        Some(_) => acks
            .iter()
            .map(|ack| (ack.result.id.clone(), ack.result.clone()))
            .collect(),
        None => HashMap::new(),
    };
    kept.measured.extend(
        acks.iter()
            .filter(|ack| ack.result.is_own_run())
            .map(|ack| (ack.result.id.clone(), ack.result.duration)),
    );
    if let Some(log) = &kept.order_log
        && acks
            .iter()
            .any(|ack| matches!(ack.result.outcome, Outcome::Failed | Outcome::Errored))
    {
        log.note_failure();
    }
    let reply = queue.ack(acks, want).await?;
    let mut failed = false;
    for (id, recorded) in &reply.recorded {
        let duration = durations.get(id).copied().unwrap_or_default();
        print_line(queue.worker_id(), id.as_str(), *recorded, duration);
        if let (Recorded::Final(outcome), Some(decided), Some(result)) =
            (recorded, kept.decided.as_mut(), results.get(id))
        {
            decided.push(record_of(queue.worker_id(), *outcome, result));
        }
        failed |= matches!(
            recorded,
            Recorded::Final(Outcome::Failed | Outcome::Errored)
        );
    }
    Ok((reply.next, failed))
}

/// How long a worker that was stopped early spends keeping its tests' durations.
const RECORD_WHEN_STOPPED: Duration = Duration::from_secs(5);

/// Keeps the durations this worker measured (best effort: they only steer later builds).
async fn record<Q: Queue>(queue: &Q, measured: &[(TestId, Duration)]) {
    if measured.is_empty() {
        return;
    }
    if let Err(err) = queue.record_durations(measured).await {
        crate::say!(
            "ciq: warning: worker `{}` could not keep its tests' durations for later builds: {err}",
            queue.worker_id()
        );
    }
}

/// Each test's time limit under `timeout`, from its history when the limit is `auto`.
async fn limits<Q: Queue>(queue: &Q, timeout: TestTimeout, ids: &[TestId]) -> Vec<Duration> {
    let history = match timeout {
        TestTimeout::Fixed(_) => Vec::new(),
        TestTimeout::Auto => queue.slowest_runs(ids).await,
    };
    (0..ids.len())
        .map(|at| timeout.limit(history.get(at).copied().flatten()))
        .collect()
}

/// One acknowledgement per reserved test: its result, or an error when the runner gave none.
fn pair(batch: &[Reserved], results: Vec<TestResult>) -> Vec<Ack> {
    let mut by_id: HashMap<_, _> = results.into_iter().map(|r| (r.id.clone(), r)).collect();
    batch
        .iter()
        .map(|reserved| Ack {
            lease: reserved.lease.clone(),
            result: by_id.remove(&reserved.id).unwrap_or_else(|| {
                TestResult::new(
                    reserved.id.clone(),
                    Outcome::Errored,
                    Duration::ZERO,
                    "[ciq: the runner reported no result for this test]\n".to_owned(),
                )
            }),
        })
        .collect()
}

/// The record of a test whose final outcome this worker's run decided.
fn record_of(worker: &str, outcome: Outcome, result: &TestResult) -> TestRecord {
    let failure = matches!(outcome, Outcome::Failed | Outcome::Errored).then(|| FailureDetail {
        outcome: result.outcome,
        worker: worker.to_owned(),
        duration_ms: u64::try_from(result.duration.as_millis()).unwrap_or(u64::MAX),
        output: result.output.clone(),
    });
    TestRecord {
        id: result.id.as_str().to_owned(),
        outcome,
        duration: Some(result.duration),
        failure,
        // A flaky test was requeued at least once; how often is the build's to say.
        requeues: u32::from(outcome == Outcome::Flaky),
    }
}

async fn heartbeats<Q: Queue>(queue: &Q, watch: &Watch<'_>) -> QueueError {
    let held = watch.held;
    let interval = queue.pacing().heartbeat_interval;
    loop {
        sleep(interval).await;
        if watch.max_failures.is_some() && !watch.failing.load(Ordering::Relaxed) {
            match watch.too_many(queue, true).await {
                Ok(Some(_)) => watch.failing.store(true, Ordering::Relaxed),
                Ok(None) => {}
                Err(err) => return err,
            }
        }
        let now = Instant::now();
        let alive: Vec<Reserved> = held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|(_, deadline)| deadline.is_none_or(|d| d > now))
            .map(|(reserved, _)| reserved.clone())
            .collect();
        // Sent even when nothing is held: a worker preparing (a build, a framework's start)
        // or waiting for the last tests is alive, and the report must not count it gone.
        match queue.heartbeat(&alive).await {
            Ok(lost) => {
                let held = held.lock().unwrap_or_else(PoisonError::into_inner);
                for id in really_lost(lost, &held) {
                    crate::say!(
                        "ciq: worker `{}` lost test `{id}` to another worker (its heartbeat lapsed); this run's result will not count",
                        queue.worker_id()
                    );
                }
            }
            Err(err) => return err,
        }
    }
}

/// The tests a heartbeat reported lost that this worker still runs. Regression (chaos seed
/// 3150): a test acknowledged while its heartbeat was on the way came back "lost" and the
/// worker said its result would not count, though it had just been recorded.
fn really_lost(lost: Vec<TestId>, held: &[(Reserved, Option<Instant>)]) -> Vec<TestId> {
    lost.into_iter()
        .filter(|id| held.iter().any(|(reserved, _)| reserved.id == *id))
        .collect()
}

fn print_line(worker: &str, id: &str, recorded: Recorded, duration: Duration) {
    let status = match recorded {
        Recorded::Final(Outcome::Passed) => "PASS",
        Recorded::Final(Outcome::Failed) => "FAIL",
        Recorded::Final(Outcome::Errored) => "ERROR",
        Recorded::Final(Outcome::Skipped) => "SKIP",
        Recorded::Final(Outcome::Flaky) => "FLAKY",
        Recorded::Requeued => "RETRY",
        Recorded::Discarded => "LOST",
        Recorded::Duplicate => "DUP",
    };
    crate::say!(
        "{status:>7} [{:>8.3}s] {worker}: {id}",
        duration.as_secs_f64()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_test_acknowledged_during_a_heartbeat_is_not_lost() {
        let id = |name: &str| TestId::new(name).unwrap();
        let running = vec![(
            Reserved {
                id: id("still-running"),
                lease: crate::queue::Lease("l7".into()),
            },
            None,
        )];
        let lost = vec![id("acknowledged-meanwhile"), id("still-running")];
        assert_eq!(really_lost(lost, &running), [id("still-running")]);
    }
}
