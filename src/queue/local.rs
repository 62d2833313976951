//! [`LocalQueue`]: the queue in memory, for `ciq run -j N` on one machine without Redis.
//!
//! It keeps the Redis queue's rules (leases, requeue budgets, a failing test retried by another
//! worker, flaky detection, one outcome per test) so a local run predicts a distributed one.
//! Workers share one queue through [`LocalWorker`] handles; they live in one process, so no
//! worker can vanish without releasing and there is nothing to take over.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use crate::outcome::{FailureDetail, Outcome};
use crate::queue::budget::RequeueBudget;
use crate::queue::{Ack, AckReply, Pacing, Queue, QueueError, Recorded, Reservation, Reserved};
use crate::report::Summary;
use crate::report::summary::{self, Listed};
use crate::test_id::TestId;

/// The shared in-memory queue of one local build.
#[derive(Debug)]
pub struct LocalQueue {
    state: Mutex<State>,
    max_requeues: u32,
    requeue_limit: u64,
}

#[derive(Debug, Default)]
struct State {
    total: usize,
    queue: VecDeque<TestId>,
    running: HashMap<TestId, (u64, String)>,
    outcomes: BTreeMap<TestId, Outcome>,
    failures: BTreeMap<TestId, FailureDetail>,
    requeues: BTreeMap<TestId, u32>,
    requeued_by: HashMap<TestId, String>,
    requeued_total: u64,
    next_lease: u64,
    active_workers: HashSet<String>,
}

/// One worker's handle on a [`LocalQueue`].
#[derive(Debug, Clone)]
pub struct LocalWorker {
    queue: Arc<LocalQueue>,
    id: String,
}

impl LocalQueue {
    /// A queue holding `tests`, in order.
    pub fn new(tests: Vec<TestId>, budget: RequeueBudget) -> Arc<Self> {
        let total = tests.len();
        Arc::new(Self {
            state: Mutex::new(State {
                total,
                queue: tests.into(),
                ..State::default()
            }),
            max_requeues: budget.max_requeues,
            requeue_limit: budget.build_limit(total),
        })
    }

    /// A handle for the worker named `id`; the worker counts as active until it releases.
    pub fn worker(self: &Arc<Self>, id: impl Into<String>) -> LocalWorker {
        let id = id.into();
        self.lock().active_workers.insert(id.clone());
        LocalWorker {
            queue: Arc::clone(self),
            id,
        }
    }

    /// The build's outcomes so far.
    pub fn summary(&self) -> Summary {
        let state = self.lock();
        let mut counts = std::collections::BTreeMap::new();
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
            taken_over: 0,
            mismatches: Vec::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl State {
    fn reserve(&mut self, worker: &str, max: usize) -> Reservation {
        let others_active = self.active_workers.iter().any(|w| w != worker);
        let mut taken = Vec::new();
        let mut deferred = Vec::new();
        while taken.len() < max {
            let Some(id) = self.queue.pop_front() else {
                break;
            };
            if others_active && self.requeued_by.get(&id).is_some_and(|w| w == worker) {
                deferred.push(id);
                continue;
            }
            self.next_lease += 1;
            self.running
                .insert(id.clone(), (self.next_lease, worker.to_owned()));
            taken.push(Reserved {
                id,
                lease: self.next_lease,
            });
        }
        for id in deferred.into_iter().rev() {
            self.queue.push_front(id);
        }
        if !taken.is_empty() {
            Reservation::Tests(taken)
        } else if self.queue.is_empty() && self.running.is_empty() {
            Reservation::Done
        } else {
            Reservation::Empty
        }
    }

    fn record(&mut self, worker: &str, ack: Ack, max_requeues: u32, limit: u64) -> Recorded {
        let id = ack.result.id;
        match self.running.get(&id) {
            Some((lease, holder)) if *lease == ack.lease && holder == worker => {}
            _ => return Recorded::Discarded,
        }
        self.running.remove(&id);
        let outcome = ack.result.outcome;
        let detail = FailureDetail {
            outcome,
            worker: worker.to_owned(),
            duration_ms: ack.result.duration.as_millis() as u64,
            output: ack.result.output,
        };
        let requeued = self.requeues.get(&id).copied().unwrap_or(0);
        if !outcome.is_success() && requeued < max_requeues && self.requeued_total < limit {
            self.requeues.insert(id.clone(), requeued + 1);
            self.requeued_total += 1;
            self.requeued_by.insert(id.clone(), worker.to_owned());
            self.failures.insert(id.clone(), detail);
            self.queue.push_front(id);
            return Recorded::Requeued;
        }
        // A retry that passes makes a failure flaky; one that is skipped leaves it standing.
        let outcome = match outcome {
            Outcome::Passed if requeued > 0 => Outcome::Flaky,
            Outcome::Skipped if requeued > 0 => Outcome::Failed,
            outcome => outcome,
        };
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
    async fn reserve(&self, max: usize) -> Result<Reservation, QueueError> {
        Ok(self.queue.lock().reserve(&self.id, max))
    }

    async fn ack(&self, acks: Vec<Ack>, max: usize) -> Result<AckReply, QueueError> {
        let mut state = self.queue.lock();
        let recorded = acks
            .into_iter()
            .map(|ack| {
                let id = ack.result.id.clone();
                let what = state.record(
                    &self.id,
                    ack,
                    self.queue.max_requeues,
                    self.queue.requeue_limit,
                );
                (id, what)
            })
            .collect();
        let next = state.reserve(&self.id, max);
        Ok(AckReply { recorded, next })
    }

    async fn heartbeat(&self, _held: &[Reserved]) -> Result<Vec<TestId>, QueueError> {
        Ok(Vec::new())
    }

    async fn release(&self, held: &[Reserved]) -> Result<(), QueueError> {
        let mut state = self.queue.lock();
        for reserved in held.iter().rev() {
            if state
                .running
                .get(&reserved.id)
                .is_some_and(|(lease, holder)| *lease == reserved.lease && *holder == self.id)
            {
                state.running.remove(&reserved.id);
                state.queue.push_front(reserved.id.clone());
            }
        }
        state.active_workers.remove(&self.id);
        Ok(())
    }

    async fn rejoin(&self) -> Result<(), QueueError> {
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
            heartbeat_interval: Duration::from_secs(3600),
            max_poll_interval: Duration::from_millis(50),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::TestResult;

    fn ids(names: &[&str]) -> Vec<TestId> {
        names.iter().map(|n| TestId::new(*n).unwrap()).collect()
    }

    fn ack(reserved: &Reserved, outcome: Outcome) -> Ack {
        Ack {
            lease: reserved.lease,
            result: TestResult {
                id: reserved.id.clone(),
                outcome,
                duration: Duration::from_millis(5),
                output: String::new(),
            },
        }
    }

    fn one(reservation: Reservation) -> Reserved {
        match reservation {
            Reservation::Tests(mut tests) if tests.len() == 1 => tests.remove(0),
            other => panic!("expected one test, got {other:?}"),
        }
    }

    const BUDGET: RequeueBudget = RequeueBudget {
        max_requeues: 1,
        tolerance: 1.0,
    };

    #[tokio::test]
    async fn failure_is_retried_by_another_worker_and_becomes_flaky() {
        let queue = LocalQueue::new(ids(&["t"]), BUDGET);
        let (a, b) = (queue.worker("a"), queue.worker("b"));
        let first = one(a.reserve(1).await.unwrap());
        let reply = a.ack(vec![ack(&first, Outcome::Failed)], 1).await.unwrap();
        assert_eq!(reply.recorded[0].1, Recorded::Requeued);
        assert_eq!(
            reply.next,
            Reservation::Empty,
            "a must not retry its own failure"
        );
        let second = one(b.reserve(1).await.unwrap());
        let reply = b.ack(vec![ack(&second, Outcome::Passed)], 1).await.unwrap();
        assert_eq!(reply.recorded[0].1, Recorded::Final(Outcome::Flaky));
        assert_eq!(reply.next, Reservation::Done);
        let summary = b.summary().await.unwrap();
        assert_eq!(summary.count(Outcome::Flaky), 1);
        assert_eq!(summary.requeued, 1);
        assert_eq!(summary.flaky[0].requeues, 1);
    }

    #[tokio::test]
    async fn a_skipped_retry_leaves_the_failure_standing() {
        let queue = LocalQueue::new(ids(&["t"]), BUDGET);
        let (a, b) = (queue.worker("a"), queue.worker("b"));
        let first = one(a.reserve(1).await.unwrap());
        a.ack(vec![ack(&first, Outcome::Failed)], 0).await.unwrap();
        let retry = one(b.reserve(1).await.unwrap());
        let reply = b.ack(vec![ack(&retry, Outcome::Skipped)], 1).await.unwrap();
        assert_eq!(reply.recorded[0].1, Recorded::Final(Outcome::Failed));
        let summary = b.summary().await.unwrap();
        assert_eq!(summary.failing[0].id, retry.id);
        assert!(summary.failing[0].detail.is_some());
    }

    #[tokio::test]
    async fn requeue_budget_is_per_test_and_per_build() {
        let budget = RequeueBudget {
            max_requeues: 2,
            tolerance: 0.5,
        };
        let queue = LocalQueue::new(ids(&["x", "y"]), budget);
        let solo = queue.worker("solo");
        let mut results = Vec::new();
        let mut next = solo.reserve(1).await.unwrap();
        while let Reservation::Tests(tests) = next {
            let reply = solo
                .ack(vec![ack(&tests[0], Outcome::Failed)], 1)
                .await
                .unwrap();
            results.push(reply.recorded[0].clone());
            next = reply.next;
        }
        let requeued = results.iter().filter(|r| r.1 == Recorded::Requeued).count();
        assert_eq!(requeued, 1, "build limit ceil(0.5 x 2) = 1: {results:?}");
        let summary = solo.summary().await.unwrap();
        assert_eq!(summary.count(Outcome::Failed), 2);
        assert_eq!(summary.not_run_count, 0);
    }

    #[tokio::test]
    async fn stale_lease_is_discarded_and_release_gives_tests_back() {
        let queue = LocalQueue::new(ids(&["t", "u"]), BUDGET);
        let a = queue.worker("a");
        let b = queue.worker("b");
        let held = one(a.reserve(1).await.unwrap());
        a.release(std::slice::from_ref(&held)).await.unwrap();
        let again = one(b.reserve(1).await.unwrap());
        assert_eq!(again.id, held.id, "released test goes back to the head");
        let reply = a.ack(vec![ack(&held, Outcome::Passed)], 0).await.unwrap();
        assert_eq!(reply.recorded[0].1, Recorded::Discarded);
        let reply = b.ack(vec![ack(&again, Outcome::Passed)], 0).await.unwrap();
        assert_eq!(reply.recorded[0].1, Recorded::Final(Outcome::Passed));
    }
}
