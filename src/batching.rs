//! How many tests a worker asks for at a time: a fixed count, or [`BatchSize::Auto`], which
//! sizes batches by time instead of count.
//!
//! A batch pays its costs once for all its tests (a batch command's process start, a module's
//! fixtures, a Redis round trip), so short tests want big batches; but a worker holding a big
//! batch near the end of the build keeps it alone while the others idle. An auto batch holds
//! about 2 seconds of tests, by the typical test this worker ran (the median of its last
//! runs, which a fixture's setup in a batch's first test does not sway), and near the end at
//! most an eighth of the tests still queued, so batches shrink as the queue
//! empties; but never so few that the batch's own cost (what it took beyond its tests' typical
//! time: a process start, a module's fixtures) outweighs them. Its first batch is one test:
//! with the queue ordered longest first, the first tests are the longest, and nothing is known.

use std::collections::VecDeque;
use std::str::FromStr;
use std::time::Duration;

use crate::queue::Want;

/// The most tests in one batch: a batch travels in one script call.
pub const MAX: usize = 1000;
/// How much test time an auto batch aims to hold.
const TARGET: Duration = Duration::from_secs(2);
/// Near the end, an auto batch takes at most this fraction (1/n) of the tests still queued.
const SHARE_OF_QUEUE: usize = 8;
/// How many of the latest test runs the typical test is taken from.
const SAMPLES: usize = 64;
/// Weight of the newest batch in the running cost per batch.
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
    /// The latest tests' times, as the runner measured them, in seconds.
    samples: VecDeque<f64>,
    /// Time per batch beyond its tests' typical time (a process start, fixtures), seconds.
    per_batch: Option<f64>,
}

impl Batcher {
    /// Batches of `size`; an auto batch also stays within a quarter of `test_timeout` (the
    /// limit of a test without history), so a batch whose tests are unknown is no risk.
    pub fn new(size: BatchSize, test_timeout: Duration) -> Self {
        let target = TARGET.min(test_timeout / 4);
        Self {
            size,
            target,
            samples: VecDeque::with_capacity(SAMPLES),
            per_batch: None,
        }
    }

    /// The typical test's time: the lower median of the latest runs.
    fn typical(&self) -> Option<f64> {
        let mut sorted: Vec<f64> = self.samples.iter().copied().collect();
        sorted.sort_by(f64::total_cmp);
        sorted.get(sorted.len().saturating_sub(1) / 2).copied()
    }

    /// What to ask for next. The share of the queue is applied by the queue as it hands the
    /// tests out: it knows how many are left then.
    pub fn next(&self) -> Want {
        if let BatchSize::Fixed(n) = self.size {
            return Want::up_to(n);
        }
        let Some(per_test) = self.typical() else {
            return Want::up_to(1);
        };
        let per_test = per_test.max(1e-6);
        let by_time = self.target.as_secs_f64() / per_test;
        // A batch worth its own cost: its tests take at least as long as the cost.
        let worth_it = (self.per_batch.unwrap_or(0.0) / per_test).min(by_time);
        let count = |n: f64| (n as usize).clamp(1, MAX);
        Want {
            max: count(by_time),
            share: Some(SHARE_OF_QUEUE),
            at_least: count(worth_it),
        }
    }

    /// Records a batch that took `took` from start to end, its tests `times` by the runner's
    /// measure.
    pub fn observe(&mut self, took: Duration, times: impl IntoIterator<Item = Duration>) {
        let mut tests = 0usize;
        for time in times {
            tests += 1;
            if self.samples.len() == SAMPLES {
                self.samples.pop_front();
            }
            self.samples.push_back(time.as_secs_f64());
        }
        let Some(typical) = self.typical().filter(|_| tests > 0) else {
            return;
        };
        let cost = (took.as_secs_f64() - typical * tests as f64).max(0.0);
        self.per_batch = Some(
            self.per_batch
                .map_or(cost, |before| before * (1.0 - ALPHA) + cost * ALPHA),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

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
        let mut batcher = Batcher::new(BatchSize::Fixed(20), HOUR);
        batcher.observe(Duration::from_secs(60), [Duration::from_secs(3); 20]);
        assert_eq!(batcher.next().of(3), 20);
    }

    /// Drains `queued` tests of `test` each, with `cost` per batch, and returns the sizes.
    fn drain(mut queued: usize, test: Duration, cost: Duration) -> Vec<usize> {
        let mut batcher = Batcher::new(BatchSize::Auto, HOUR);
        assert_eq!(batcher.next().of(usize::MAX), 1, "nothing known: one test");
        let mut sizes = Vec::new();
        while queued > 0 {
            let n = batcher.next().of(queued).min(queued);
            let tests_time = test * u32::try_from(n).unwrap();
            assert!(
                tests_time <= TARGET,
                "a batch of {n} holds {tests_time:?} of tests"
            );
            batcher.observe(cost + tests_time, vec![test; n]);
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
        assert!(
            sizes[sizes.len() - 3..].iter().all(|&n| n == 1),
            "the last batches are single tests: {sizes:?}"
        );
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

    /// A module fixture's setup charged to the first test of every batch does not make the
    /// typical test look long, so batches stay big instead of setting it up again and again.
    #[test]
    fn a_fixture_setup_in_each_batch_does_not_shrink_batches() {
        let mut batcher = Batcher::new(BatchSize::Auto, HOUR);
        let setup = Duration::from_millis(200);
        let test = Duration::from_millis(1);
        batcher.observe(setup, [setup]);
        let n = batcher.next().of(19);
        batcher.observe(setup + test * 2, [setup, test, test]);
        assert!(n >= 2, "{n}");
        assert!(batcher.next().of(16) >= 16, "{}", batcher.next().of(16));
    }

    #[test]
    fn a_short_test_timeout_keeps_auto_batches_shorter() {
        let mut batcher = Batcher::new(BatchSize::Auto, Duration::from_secs(1));
        batcher.observe(Duration::from_millis(10), [Duration::from_millis(10)]);
        assert_eq!(
            batcher.next().of(usize::MAX),
            25,
            "a quarter of the timeout, 10 ms a test"
        );
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;
    use crate::property_testing::{config, noisy_text};

    proptest! {
        #![proptest_config(config())]

        /// Any text (`--batch-size`, `CIQ_BATCH_SIZE`) is `auto`, a size from 1 to [`MAX`], or
        /// an error; a size in range reads back.
        #[test]
        fn any_text_is_a_batch_size_or_an_error(
            text in prop_oneof![noisy_text(), "[ +-]?[0-9]{1,22}"],
            size in 1..=MAX,
        ) {
            match text.parse::<BatchSize>() {
                Ok(BatchSize::Auto) => prop_assert_eq!(text, "auto"),
                Ok(BatchSize::Fixed(n)) => prop_assert!((1..=MAX).contains(&n), "{n}"),
                Err(err) => prop_assert!(!err.contains('\n'), "{err}"),
            }
            prop_assert_eq!(size.to_string().parse::<BatchSize>(), Ok(BatchSize::Fixed(size)));
        }
    }
}
