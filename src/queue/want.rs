//! [`Want`]: how many tests a worker asks for, and the bounds of an auto batch ([`Timed`]),
//! which both queues apply the same way when they hand tests out.

use std::time::Duration;

/// How many tests a worker asks for: at most `max`, and for an auto batch ([`Timed`]) a bounded
/// amount of estimated time. The queue applies the bounds when it hands the tests out, not the
/// worker from what it saw a batch ago: the queue knows the estimates it was ordered by, how
/// many tests are left and how many workers share them then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Want {
    /// The most tests.
    pub max: usize,
    /// An auto batch's bounds, if any.
    pub timed: Option<Timed>,
}

/// An auto batch: tests from the head of the queue while their estimated time stays within
/// `budget` (a test estimated longer goes alone), and never more than a fair share of the tests
/// left, `1 / (live workers x` [`SHARE_PER_WORKER`]`)` of them, so batches shrink toward the end
/// and no worker sits on tests another could run; but never so few that their estimated time
/// falls below `floor`, the batch's own start: splitting such a batch would save less time at
/// the end than the extra start costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timed {
    /// The most estimated test time in one batch.
    pub budget: Duration,
    /// What a test without an estimate is taken to take when the build has no estimates of its
    /// own (no history): this worker's typical test, or `None` before it ran one, when a batch is
    /// one test.
    pub typical: Option<Duration>,
    /// The batch's own cost (a process start, measured before its first result): the fewest
    /// estimated time a batch holds when the queue has as much.
    pub floor: Duration,
}

/// An auto batch takes at most 1/(live workers x this) of the tests left.
pub const SHARE_PER_WORKER: usize = 4;

impl Want {
    /// Up to `max` tests, whatever the queue holds.
    pub fn up_to(max: usize) -> Self {
        Self { max, timed: None }
    }

    /// How many tests to take from the head of a queue of `queued` tests shared by `live`
    /// workers, given the head's estimates in order (`None` for a test without one) and the
    /// build's `default` estimate. The Redis queue's `handout.lua` computes the same.
    pub fn take(
        self,
        queued: usize,
        live: usize,
        head: impl IntoIterator<Item = Option<Duration>>,
        default: Option<Duration>,
    ) -> usize {
        let Some(timed) = self.timed else {
            return self.max;
        };
        let share = queued.div_ceil(live.max(1) * SHARE_PER_WORKER).max(1);
        let Some(default) = default.or(timed.typical) else {
            return self.max.min(1);
        };
        let mut sum = Duration::ZERO;
        let mut taken = 0;
        for estimate in head.into_iter().take(self.max) {
            let estimate = estimate.unwrap_or(default);
            if taken > 0
                && (sum.saturating_add(estimate) > timed.budget
                    || (taken >= share && sum >= timed.floor))
            {
                break;
            }
            sum = sum.saturating_add(estimate);
            taken += 1;
        }
        taken.max(self.max.min(1))
    }
}
