//! [`LocalQueue`]: the queue in memory, for `ciq run -j N` on one machine without Redis.
//!
//! It keeps the Redis queue's rules (leases, take-over after the heartbeat timeout, requeue
//! budgets, a failing test left to another worker for a grace period, flaky detection, one
//! outcome per test), so a local run predicts a distributed one; the conformance tests run the
//! same scenarios against both. Workers share one queue through [`LocalWorker`] handles.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

use crate::groups::Groups;
use crate::outcome::{FailureDetail, Outcome};
use crate::queue::budget::RequeueBudget;
use crate::queue::{
    Ack, AckReply, Lease, Pacing, Queue, QueueError, Recorded, Reservation, Reserved, Want,
};
use crate::report::summary::{self, Listed};
use crate::report::{Summary, TestRecord};
use crate::test_id::TestId;
use crate::timeline::record::{header, leave_letter, one_line, outcome_letter};
use crate::timeline::{self, Leave, Timeline};
use crate::timings::{Ordered, Slower};

/// How the local queue's workers are timed.
#[derive(Debug, Clone, Copy)]
pub struct LocalTiming {
    /// How often a worker heartbeats what it holds.
    pub heartbeat_interval: Duration,
    /// Silence after which a worker's tests are taken over.
    pub heartbeat_timeout: Duration,
}

/// The shared in-memory queue of one local build.
#[derive(Debug)]
pub struct LocalQueue {
    state: Mutex<State>,
    max_requeues: u32,
    requeue_limit: u64,
    timing: LocalTiming,
}

/// A test being run: its lease, and its holder's last heartbeat for it.
#[derive(Debug)]
struct Running {
    lease: Lease,
    heartbeat: Instant,
}

#[derive(Debug, Default)]
struct State {
    total: usize,
    queue: VecDeque<TestId>,
    running: HashMap<TestId, Running>,
    outcomes: BTreeMap<TestId, Outcome>,
    failures: BTreeMap<TestId, FailureDetail>,
    requeues: BTreeMap<TestId, u32>,
    requeued_by: HashMap<TestId, (String, Instant)>,
    requeued_total: u64,
    taken_over: u64,
    /// Workers that have not left, and when each was last heard from.
    workers: HashMap<String, Instant>,
    /// Each test's last run, as its worker measured it.
    durations: HashMap<TestId, Duration>,
    /// Each test's run in an earlier build (the timing file), for auto time limits.
    history: HashMap<TestId, Duration>,
    /// What each test was estimated to take when the queue was ordered (auto batches hold a
    /// bounded amount of it), and what a test without an estimate is taken to take.
    estimates: HashMap<TestId, Duration>,
    default_estimate: Option<Duration>,
    /// The build's resource groups: a test whose group has as many tests running as its limit
    /// waits at its place while the queue hands out tests that fit.
    groups: Groups,
    left: HashSet<String>,
    /// Workers that stopped taking tests, and why.
    stopped: Vec<String>,
    /// The build's records, in the Redis queue's format (`timeline::record`).
    timeline: String,
    /// How many worker handles were made: each gets the session `w<n>`.
    sessions: u64,
    /// How many reservations handed tests out.
    reservations: u64,
}

/// One worker's handle on a [`LocalQueue`].
#[derive(Debug, Clone)]
pub struct LocalWorker {
    queue: Arc<LocalQueue>,
    id: String,
    /// Its session in the timeline, `w<n>`: the prefix of its leases.
    session: String,
}

impl LocalWorker {
    /// The timeline of this worker's build ([`LocalQueue::timeline`]).
    pub fn timeline(&self) -> Timeline {
        self.queue.timeline()
    }
}

/// How long a failure requeued by a worker waits for another live worker before that worker
/// may run it again itself (the Redis queue's rule: a sixth of the heartbeat timeout, 1 to 5 s).
fn requeue_grace(heartbeat_timeout: Duration) -> Duration {
    (heartbeat_timeout / 6).clamp(Duration::from_secs(1), Duration::from_secs(5))
}

/// The final outcome of a run that is not requeued: a pass after a requeued failure is flaky,
/// and a skip after one proves nothing, so the failure stands.
fn settle(outcome: Outcome, requeued: bool) -> Outcome {
    match outcome {
        Outcome::Passed if requeued => Outcome::Flaky,
        Outcome::Skipped if requeued => Outcome::Failed,
        outcome => outcome,
    }
}

impl LocalQueue {
    /// A queue holding `tests`, in order.
    pub fn new(tests: Vec<TestId>, budget: RequeueBudget, timing: LocalTiming) -> Arc<Self> {
        let total = tests.len();
        Arc::new(Self {
            state: Mutex::new(State {
                total,
                queue: tests.into(),
                ..State::default()
            }),
            max_requeues: budget.max_requeues,
            requeue_limit: budget.build_limit(total),
            timing,
        })
    }

    /// A queue of a list in the order it was given, keeping the estimates it was ordered by
    /// for auto batches.
    pub fn ordered(ordered: &Ordered<'_>, budget: RequeueBudget, timing: LocalTiming) -> Arc<Self> {
        let queue = Self::new(
            ordered.ids.iter().map(|id| (*id).clone()).collect(),
            budget,
            timing,
        );
        {
            let mut state = queue.lock();
            state.estimates = ordered
                .longest_known(usize::MAX)
                .into_iter()
                .map(|(id, estimate)| (id.clone(), estimate))
                .collect();
            state.default_estimate = ordered.default;
        }
        queue
    }

    /// Limits the build's resource groups: at most each group's limit of its tests run at once.
    pub fn limit_groups(&self, groups: Groups) {
        self.lock().groups = groups;
    }

    /// A handle for the worker named `id`; the worker counts as live until it releases. The
    /// first one stands for the leader in the timeline: the queue's commit is on its lane.
    pub fn worker(self: &Arc<Self>, id: impl Into<String>) -> LocalWorker {
        let id = id.into();
        let mut state = self.lock();
        state.workers.insert(id.clone(), Instant::now());
        state.sessions += 1;
        let session = format!("w{}", state.sessions);
        let mut records = format!("J {}", one_line(&id));
        if state.sessions == 1 {
            let _ = write!(records, "\nC {}", state.total);
        }
        state.record(&session, &records);
        drop(state);
        LocalWorker {
            queue: Arc::clone(self),
            id,
            session,
        }
    }

    /// What each run of the build did and when, as far as it went: the same facts the Redis
    /// queue records (local time), for `ciq run -j N`'s report.
    pub fn timeline(&self) -> Timeline {
        timeline::parse(self.lock().timeline.as_bytes())
    }

    /// Every test with an outcome, for a JUnit report of the build.
    pub fn records(&self) -> Vec<TestRecord> {
        let state = self.lock();
        state
            .outcomes
            .iter()
            .map(|(id, outcome)| TestRecord {
                id: id.as_str().to_owned(),
                outcome: *outcome,
                duration: state.durations.get(id).copied(),
                failure: state.failures.get(id).cloned(),
                requeues: state.requeues.get(id).copied().unwrap_or(0),
            })
            .collect()
    }

    /// The build's outcomes so far.
    pub fn summary(&self) -> Summary {
        let state = self.lock();
        let mut counts = BTreeMap::new();
        for outcome in state.outcomes.values() {
            *counts.entry(*outcome).or_insert(0) += 1;
        }
        let listed = |wanted: &dyn Fn(Outcome) -> bool| -> Vec<Listed> {
            state
                .outcomes
                .iter()
                .filter(|(_, outcome)| wanted(**outcome))
                .take(summary::LISTED)
                .map(|(id, outcome)| Listed {
                    id: id.clone(),
                    outcome: *outcome,
                    detail: state.failures.get(id).cloned(),
                    requeues: state.requeues.get(id).copied().unwrap_or(0),
                })
                .collect()
        };
        let unfinished = state.queue.iter().chain(state.running.keys());
        Summary {
            total: state.total,
            counts,
            failing: listed(&|o| matches!(o, Outcome::Failed | Outcome::Errored)),
            flaky: listed(&|o| o == Outcome::Flaky),
            requeued: state.requeued_total,
            not_run: unfinished
                .clone()
                .take(summary::NOT_RUN_LISTED)
                .cloned()
                .collect(),
            not_run_count: unfinished.count(),
            taken_over: state.taken_over,
            mismatches: Vec::new(),
            stopped: state.stopped.clone(),
        }
    }

    /// Keeps `history`, each test's run in an earlier build, for `--test-timeout auto`.
    pub fn remember(&self, history: HashMap<TestId, Duration>) {
        self.lock().history = history;
    }

    /// The runs that took much longer than the test's time in the timing file.
    pub fn slower(&self) -> Vec<Slower> {
        let state = self.lock();
        state
            .durations
            .iter()
            .filter_map(|(id, took)| Slower::of(id, *took, *state.history.get(id)?))
            .collect()
    }

    /// Each test's last run, as the workers measured it (for a timing file).
    pub fn durations(&self) -> Vec<(TestId, Duration)> {
        let mut durations: Vec<_> = self
            .lock()
            .durations
            .iter()
            .map(|(id, d)| (id.clone(), *d))
            .collect();
        durations.sort();
        durations
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl State {
    /// Appends `records` (lines of the timeline's format) of `session`, now.
    fn record(&mut self, session: &str, records: &str) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        self.timeline.push_str(&header(now, session));
        self.timeline.push_str(records);
        self.timeline.push('\n');
    }

    fn take(&mut self, id: TestId, now: Instant, lease: String, out: &mut Vec<Reserved>) {
        let lease = Lease(lease);
        self.running.insert(
            id.clone(),
            Running {
                lease: lease.clone(),
                heartbeat: now,
            },
        );
        out.push(Reserved { id, lease });
    }

    fn others_alive(&self, worker: &str, now: Instant, timeout: Duration) -> bool {
        self.workers
            .iter()
            .any(|(other, seen)| other != worker && now.duration_since(*seen) < timeout)
    }

    fn reserve(
        &mut self,
        (worker, session): (&str, &str),
        want: Want,
        timing: LocalTiming,
        records: &mut Vec<String>,
    ) -> Reservation {
        let now = Instant::now();
        self.workers.insert(worker.to_owned(), now);
        let live = self
            .workers
            .values()
            .filter(|seen| now.duration_since(**seen) < timing.heartbeat_timeout)
            .count();
        // Lost tests go back to the head of the queue, the longest silent first, as the Redis
        // queue's scan puts them: a dead worker's batch is shared out like any queued tests.
        let mut lost: Vec<(Instant, TestId)> = self
            .running
            .iter()
            .filter(|(_, running)| {
                now.duration_since(running.heartbeat) >= timing.heartbeat_timeout
            })
            .map(|(id, running)| (running.heartbeat, id.clone()))
            .collect();
        lost.sort();
        // Only a reservation puts them back (an acknowledgement that asks for nothing does not).
        if want.max > 0 && !lost.is_empty() {
            let mut leases = Vec::new();
            for (_, id) in lost.into_iter().rev() {
                if let Some(running) = self.running.remove(&id) {
                    leases.push(running.lease.0);
                }
                self.taken_over += 1;
                self.queue.push_front(id);
            }
            records.push(format!("T {}", leases.join(" ")));
        }
        let max = want.take(
            self.queue.len(),
            live,
            self.queue.iter().map(|id| self.estimates.get(id).copied()),
            self.default_estimate,
        );
        let mut taken = Vec::new();
        let seq = self.reservations + 1;
        let grace = requeue_grace(timing.heartbeat_timeout);
        let mut deferred = Vec::new();
        // Each group's running tests, counted from the running tests when groups are used: the
        // running map is the only record of who holds a slot, so a slot is freed exactly when
        // its lease ends (acknowledged, released or taken over).
        let mut held: HashMap<String, u32> = HashMap::new();
        if !self.groups.is_empty() {
            for id in self.running.keys() {
                if let Some(group) = self.groups.group_of(id) {
                    *held.entry(group.to_owned()).or_default() += 1;
                }
            }
        }
        while taken.len() < max {
            let Some(id) = self.queue.pop_front() else {
                break;
            };
            if let Some(group) = self.groups.group_of(&id)
                && let Some(limit) = self.groups.limit(group)
            {
                let count = held.entry(group.to_owned()).or_default();
                if *count >= limit {
                    // Its group is full: it keeps its place, and a test that fits goes instead.
                    deferred.push(id);
                    continue;
                }
                *count += 1;
            }
            let own_fresh = self
                .requeued_by
                .get(&id)
                .is_some_and(|(by, at)| by == worker && now.duration_since(*at) < grace);
            if own_fresh && self.others_alive(worker, now, timing.heartbeat_timeout) {
                deferred.push(id);
            } else {
                let lease = format!("{session}.{seq}.{}", taken.len() + 1);
                self.take(id, now, lease, &mut taken);
            }
        }
        for id in deferred.into_iter().rev() {
            self.queue.push_front(id);
        }
        if !taken.is_empty() {
            self.reservations = seq;
            let mut line = format!("R {seq}");
            for reserved in &taken {
                line.push_str("\n ");
                line.push_str(reserved.id.as_str());
            }
            records.push(line);
            Reservation::Tests(taken)
        } else if self.queue.is_empty() && self.running.is_empty() {
            Reservation::Done
        } else {
            Reservation::Empty
        }
    }

    fn acknowledge(&mut self, worker: &str, ack: Ack, max_requeues: u32, limit: u64) -> Recorded {
        let id = ack.result.id;
        if !self
            .running
            .get(&id)
            .is_some_and(|running| running.lease == ack.lease)
        {
            return Recorded::Discarded;
        }
        self.running.remove(&id);
        let outcome = ack.result.outcome;
        let detail = FailureDetail {
            outcome,
            worker: worker.to_owned(),
            duration_ms: u64::try_from(ack.result.duration.as_millis()).unwrap_or(u64::MAX),
            output: ack.result.output,
        };
        let requeued = self.requeues.get(&id).copied().unwrap_or(0);
        if !outcome.is_success() && requeued < max_requeues && self.requeued_total < limit {
            self.requeues.insert(id.clone(), requeued + 1);
            self.requeued_total += 1;
            self.requeued_by
                .insert(id.clone(), (worker.to_owned(), Instant::now()));
            self.failures.insert(id.clone(), detail);
            self.queue.push_front(id);
            return Recorded::Requeued;
        }
        let outcome = settle(outcome, requeued > 0);
        if self.outcomes.contains_key(&id) {
            return Recorded::Duplicate;
        }
        if !detail.outcome.is_success() {
            self.failures.insert(id.clone(), detail);
        }
        self.outcomes.insert(id, outcome);
        Recorded::Final(outcome)
    }
}

impl Queue for LocalWorker {
    async fn reserve(&self, want: Want) -> Result<Reservation, QueueError> {
        let mut state = self.queue.lock();
        let mut records = Vec::new();
        let next = state.reserve(
            (&self.id, &self.session),
            want,
            self.queue.timing,
            &mut records,
        );
        if !records.is_empty() {
            state.record(&self.session, &records.join("\n"));
        }
        Ok(next)
    }

    async fn ack(&self, acks: Vec<Ack>, want: Want) -> Result<AckReply, QueueError> {
        let mut state = self.queue.lock();
        let mut acked = String::from("A");
        let recorded = acks
            .into_iter()
            .map(|ack| {
                let id = ack.result.id.clone();
                let lease = ack.lease.0.clone();
                let ran = ack.result.outcome;
                let took = ack.result.duration.as_millis();
                let what = state.acknowledge(
                    &self.id,
                    ack,
                    self.queue.max_requeues,
                    self.queue.requeue_limit,
                );
                let letter = match what {
                    Recorded::Requeued => 'q',
                    _ => outcome_letter(ran),
                };
                let letter = if what == Recorded::Discarded {
                    letter.to_ascii_uppercase()
                } else {
                    letter
                };
                let position = lease.split_once('.').map_or("0.0", |(_, rest)| rest);
                let _ = write!(acked, " {position}{letter}{took}");
                (id, what)
            })
            .collect::<Vec<_>>();
        let mut records = Vec::new();
        if !recorded.is_empty() {
            records.push(acked);
        }
        let next = state.reserve(
            (&self.id, &self.session),
            want,
            self.queue.timing,
            &mut records,
        );
        if !records.is_empty() {
            state.record(&self.session, &records.join("\n"));
        }
        Ok(AckReply { recorded, next })
    }

    async fn heartbeat(&self, held: &[Reserved]) -> Result<Vec<TestId>, QueueError> {
        let mut state = self.queue.lock();
        let now = Instant::now();
        if !state.left.contains(&self.id) {
            state.workers.insert(self.id.clone(), now);
        }
        let mut lost = Vec::new();
        for reserved in held {
            match state.running.get_mut(&reserved.id) {
                Some(running) if running.lease == reserved.lease => running.heartbeat = now,
                _ => lost.push(reserved.id.clone()),
            }
        }
        Ok(lost)
    }

    async fn release(
        &self,
        held: &[Reserved],
        how: Leave,
        why: Option<&str>,
    ) -> Result<(), QueueError> {
        let mut state = self.queue.lock();
        let mut records = String::new();
        if let Some(why) = why {
            let _ = writeln!(records, "B {}", one_line(why));
        }
        let _ = write!(records, "X {}", leave_letter(how));
        state.record(&self.session, &records);
        for reserved in held.iter().rev() {
            if state
                .running
                .get(&reserved.id)
                .is_some_and(|running| running.lease == reserved.lease)
            {
                state.running.remove(&reserved.id);
                state.queue.push_front(reserved.id.clone());
            }
        }
        state.workers.remove(&self.id);
        state.left.insert(self.id.clone());
        Ok(())
    }

    async fn rejoin(&self) -> Result<(), QueueError> {
        Ok(())
    }

    async fn slowest_runs(&self, ids: &[TestId]) -> Vec<Option<Duration>> {
        let state = self.queue.lock();
        ids.iter()
            .map(|id| state.history.get(id).copied())
            .collect()
    }

    async fn record_durations(&self, durations: &[(TestId, Duration)]) -> Result<(), QueueError> {
        let mut state = self.queue.lock();
        state.durations.extend(durations.iter().cloned());
        Ok(())
    }

    async fn failures(&self) -> Result<usize, QueueError> {
        let state = self.queue.lock();
        Ok(state
            .outcomes
            .values()
            .filter(|outcome| matches!(outcome, Outcome::Failed | Outcome::Errored))
            .count())
    }

    async fn record_stop(&self, why: &str) -> Result<(), QueueError> {
        let line = format!("worker `{}`: {why}", self.id);
        self.queue.lock().stopped.push(line);
        Ok(())
    }

    async fn summary(&self) -> Result<Summary, QueueError> {
        Ok(self.queue.summary())
    }

    fn worker_id(&self) -> &str {
        &self.id
    }

    fn pacing(&self) -> Pacing {
        Pacing {
            heartbeat_interval: self.queue.timing.heartbeat_interval,
            max_poll_interval: Duration::from_millis(50),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retry_settles_a_failure() {
        assert_eq!(settle(Outcome::Passed, true), Outcome::Flaky);
        assert_eq!(settle(Outcome::Skipped, true), Outcome::Failed);
        assert_eq!(settle(Outcome::Failed, true), Outcome::Failed);
        assert_eq!(settle(Outcome::Passed, false), Outcome::Passed);
        assert_eq!(
            requeue_grace(Duration::from_secs(30)),
            Duration::from_secs(5)
        );
        assert_eq!(
            requeue_grace(Duration::from_millis(1500)),
            Duration::from_secs(1)
        );
    }
}
