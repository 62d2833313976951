//! How many tests a worker asks for at a time: a fixed count, or [`BatchSize::Auto`], which
//! sizes batches by time instead of count.
//!
//! A batch pays its costs once for all its tests (a batch command's process start, a Redis
//! round trip), so short tests want big batches; but a worker holding a big batch near the end
//! of the build keeps it alone while the others idle. An auto batch holds about [`TARGET`] of
//! tests, by the time per test this worker measured, and near the end at most a
//! [`SHARE_OF_QUEUE`]th of the tests still queued, so batches shrink as the queue empties; but
//! never so few that the batch's own cost (what a batch took beyond its tests' times) outweighs
//! its tests. Its first batch is one test: with the queue ordered longest first, the first tests
//! are the longest, and nothing is known yet.

use std::str::FromStr;
use std::time::Duration;

/// The most tests in one batch: a batch travels in one script call.
pub const MAX: usize = 1000;
/// How much test time an auto batch aims to hold.
const TARGET: Duration = Duration::from_secs(2);
/// Near the end, an auto batch takes at most this fraction (1/n) of the tests still queued.
const SHARE_OF_QUEUE: usize = 8;
/// Weight of the newest batch in the running estimates.
const ALPHA: f64 = 0.5;

/// `--batch-size`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchSize {
    /// This many tests per reservation.
    Fixed(usize),
    /// Sized by time, shrinking toward the end of the build.
    Auto,
}

impl FromStr for BatchSize {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        if text == "auto" {
            return Ok(BatchSize::Auto);
        }
        match text.parse::<usize>() {
            Ok(n) if (1..=MAX).contains(&n) => Ok(BatchSize::Fixed(n)),
            _ => Err(format!(
                "must be `auto` or a whole number from 1 to {MAX} (a batch travels in one script call)"
            )),
        }
    }
}

/// One worker's batch sizes, from what its batches took.
#[derive(Debug, Clone)]
pub struct Batcher {
    size: BatchSize,
    target: Duration,
    /// Time per test, as the runner measured its tests.
    per_test: Option<f64>,
    /// Time per batch beyond its tests' own (a process start, a collection).
    per_batch: Option<f64>,
}

fn smooth(before: Option<f64>, now: f64) -> f64 {
    before.map_or(now, |before| before * (1.0 - ALPHA) + now * ALPHA)
}

impl Batcher {
    /// Batches of `size`; an auto batch also stays within a quarter of `test_timeout`, which a
    /// batch command's whole run must fit in.
    pub fn new(size: BatchSize, test_timeout: Option<Duration>) -> Self {
        let target = test_timeout.map_or(TARGET, |timeout| TARGET.min(timeout / 4));
        Self {
            size,
            target,
            per_test: None,
            per_batch: None,
        }
    }

    /// How many tests to ask for next, with `queued` tests left in the queue (when known).
    pub fn next(&self, queued: Option<usize>) -> usize {
        if let BatchSize::Fixed(n) = self.size {
            return n;
        }
        let Some(per_test) = self.per_test else {
            return 1;
        };
        let per_test = per_test.max(1e-6);
        let by_time = self.target.as_secs_f64() / per_test;
        // A batch worth its own cost: its tests take at least as long as the cost.
        let worth_it = (self.per_batch.unwrap_or(0.0) / per_test).min(by_time);
        let by_queue = queued.map_or(f64::MAX, |queued| queued.div_ceil(SHARE_OF_QUEUE) as f64);
        let n = by_time.min(by_queue.max(worth_it));
        (n as usize).clamp(1, MAX)
    }

    /// Records that a batch took `took` from start to end, and its `tests` took `tests_time`
    /// by the runner's measure.
    pub fn observe(&mut self, tests: usize, took: Duration, tests_time: Duration) {
        if tests == 0 {
            return;
        }
        let tests_time = tests_time.min(took).as_secs_f64();
        self.per_test = Some(smooth(self.per_test, tests_time / tests as f64));
        self.per_batch = Some(smooth(self.per_batch, took.as_secs_f64() - tests_time));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_auto_or_a_count() {
        assert_eq!("auto".parse(), Ok(BatchSize::Auto));
        assert_eq!("20".parse(), Ok(BatchSize::Fixed(20)));
        for bad in ["0", "1001", "many", ""] {
            assert!(bad.parse::<BatchSize>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_fixed_size_is_kept() {
        let mut batcher = Batcher::new(BatchSize::Fixed(20), None);
        batcher.observe(20, Duration::from_secs(60), Duration::from_secs(60));
        assert_eq!(batcher.next(Some(3)), 20);
    }

    /// Drains `queued` tests of `test` each, with `cost` per batch, and returns the sizes.
    fn drain(mut queued: usize, test: Duration, cost: Duration) -> Vec<usize> {
        let mut batcher = Batcher::new(BatchSize::Auto, None);
        assert_eq!(batcher.next(None), 1, "nothing known: one test");
        let mut sizes = Vec::new();
        while queued > 0 {
            let n = batcher.next(Some(queued)).min(queued);
            let tests_time = test * u32::try_from(n).unwrap();
            assert!(
                tests_time <= TARGET,
                "a batch of {n} holds {tests_time:?} of tests"
            );
            batcher.observe(n, cost + tests_time, tests_time);
            sizes.push(n);
            queued -= n;
        }
        sizes
    }

    /// Tests of 50 ms run by a persistent runner (no cost per batch): batches grow to the
    /// target's worth and shrink to single tests as the queue empties.
    #[test]
    fn auto_batches_stay_within_their_time_and_shrink_at_the_end() {
        let sizes = drain(2000, Duration::from_millis(50), Duration::ZERO);
        assert_eq!(
            *sizes.iter().max().unwrap(),
            40,
            "2 s of 50 ms tests: {sizes:?}"
        );
        let tail: Vec<usize> = sizes.iter().rev().take(12).copied().collect();
        assert!(tail.windows(2).all(|w| w[0] <= w[1]), "{sizes:?}");
        assert_eq!(sizes.last(), Some(&1), "{sizes:?}");
    }

    /// A batch command that starts in 300 ms, with 1 ms tests: batches hold hundreds of tests,
    /// and even at the end never so few that the start outweighs them.
    #[test]
    fn a_costly_batch_start_keeps_batches_worth_it() {
        let sizes = drain(1000, Duration::from_millis(1), Duration::from_millis(300));
        assert!(sizes.len() <= 8, "a few batches: {sizes:?}");
        assert!(
            sizes[1..sizes.len() - 1].iter().all(|&n| n >= 150),
            "each batch's tests take about as long as its start: {sizes:?}"
        );
    }

    #[test]
    fn a_short_test_timeout_keeps_auto_batches_shorter() {
        let mut batcher = Batcher::new(BatchSize::Auto, Some(Duration::from_secs(1)));
        batcher.observe(1, Duration::from_millis(10), Duration::from_millis(10));
        assert_eq!(
            batcher.next(None),
            25,
            "a quarter of the timeout, 10 ms a test"
        );
    }
}
