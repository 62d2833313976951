//! How many tests a worker asks for at a time: a fixed count, or [`BatchSize::Auto`], which
//! sizes batches by estimated time instead of count.
//!
//! A batch pays its costs once for all its tests (a batch command's process start, a module's
//! fixtures, a Redis round trip), so short tests want big batches; but a worker holding a big
//! batch near the end of the build keeps it alone while the others idle. An auto batch holds
//! about 2 seconds of tests by the estimates the queue was ordered by (history, or the median
//! of the known), or by this worker's typical test (the median of its last runs) where there
//! are none; a test estimated longer goes alone. The queue applies that budget as it hands
//! tests out, with a fair share: never more than 1/(live workers x 4) of the tests left, so
//! batches shrink toward the end ([`crate::queue::Want`]), though never below the batch's own
//! cost (its process start: a batch of tests that take less than their start would save less at
//! the end than the extra start costs). That cost is measured as the time before a batch's first
//! result, or what a batch took beyond its tests: never inferred from a typical test, which a few
//! slow tests in a batch would inflate into a batch of a thousand. Where each test is its own
//! process anyway (nextest), a batch only saves round trips: it stays small.

use std::collections::VecDeque;
use std::str::FromStr;
use std::time::Duration;

use crate::queue::{Timed, Want};

/// The most tests in one batch: a batch travels in one script call.
pub const MAX: usize = 1000;
/// How much estimated test time an auto batch aims to hold.
const TARGET: Duration = Duration::from_secs(2);
/// The most tests in an auto batch that saves only round trips.
const ROUND_TRIP_BATCH: usize = 8;
/// How much estimated test time such a batch may hold: a test of its own process in a batch
/// waits for the tests before it, which another worker could have run.
const ROUND_TRIP_TARGET: Duration = Duration::from_secs(1);
/// How many of the latest test runs the typical test is taken from.
const SAMPLES: usize = 64;
/// Weight of the newest batch in the running cost per batch.
const ALPHA: f64 = 0.5;

/// `--batch-size`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchSize {
    /// This many tests per reservation.
    Fixed(usize),
    /// Sized by estimated time, shrinking toward the end of the build.
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

/// What running tests together saves, which decides how big an auto batch may grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Saves {
    /// A start per batch (a process, a framework's collection, fixtures): batches as big as
    /// the time budget and the fair share allow.
    Starts,
    /// Only round trips to the queue: every test is its own process anyway (nextest).
    RoundTrips,
}

/// One worker's batch sizes, from what its batches took.
#[derive(Debug, Clone)]
pub struct Batcher {
    size: BatchSize,
    saves: Saves,
    target: Duration,
    /// The latest tests' times, as the runner measured them, in seconds.
    samples: VecDeque<f64>,
    /// A batch's own cost (its process start), seconds.
    per_batch: Option<f64>,
}

impl Batcher {
    /// Batches of `size`; an auto batch also stays within a quarter of `test_timeout` (the
    /// limit of a test without history), so a batch whose tests are unknown is no risk.
    pub fn new(size: BatchSize, saves: Saves, test_timeout: Duration) -> Self {
        let target = match saves {
            Saves::Starts => TARGET,
            Saves::RoundTrips => ROUND_TRIP_TARGET,
        };
        Self {
            size,
            saves,
            target: target.min(test_timeout / 4),
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

    /// What to ask for next.
    pub fn next(&self) -> Want {
        let cost = seconds(self.per_batch.unwrap_or(0.0));
        let (max, budget, floor) = match (self.size, self.saves) {
            (BatchSize::Fixed(n), _) => return Want::up_to(n),
            (BatchSize::Auto, Saves::RoundTrips) => (ROUND_TRIP_BATCH, self.target, Duration::ZERO),
            // A batch holds at least as much work as its own start costs.
            (BatchSize::Auto, Saves::Starts) => (MAX, self.target.max(cost), cost),
        };
        Want {
            max,
            timed: Some(Timed {
                budget,
                typical: self.typical().map(|typical| seconds(typical.max(1e-6))),
                floor,
            }),
        }
    }

    /// Records a batch that took `took` from start to end, its tests `times` by the runner's
    /// measure, its first result `first_after` its start when the runner reported results as
    /// they came. The batch's own cost is the time before its first test's result beyond that
    /// test, or else what the batch took beyond its tests: never inferred from a typical test,
    /// which a few slow tests in the batch would inflate.
    pub fn observe(
        &mut self,
        took: Duration,
        times: impl IntoIterator<Item = Duration>,
        first_after: Option<Duration>,
    ) {
        let mut first = None;
        let mut sum = 0.0;
        for time in times {
            let time = time.as_secs_f64();
            first.get_or_insert(time);
            sum += time;
            if self.samples.len() == SAMPLES {
                self.samples.pop_front();
            }
            self.samples.push_back(time);
        }
        let Some(first) = first else {
            return;
        };
        let cost = match first_after {
            Some(after) => after.as_secs_f64() - first,
            None => took.as_secs_f64() - sum,
        }
        .max(0.0);
        self.per_batch = Some(
            self.per_batch
                .map_or(cost, |before| before * (1.0 - ALPHA) + cost * ALPHA),
        );
    }
}

/// `seconds` as a duration; a measure past what a duration holds is the longest one.
fn seconds(seconds: f64) -> Duration {
    Duration::try_from_secs_f64(seconds).unwrap_or(Duration::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    /// How many of `queued` tests without estimates one of `live` workers takes.
    fn size(batcher: &Batcher, queued: usize, live: usize) -> usize {
        batcher
            .next()
            .take(queued, live, std::iter::repeat_n(None, queued), None)
            .min(queued)
    }

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
        let mut batcher = Batcher::new(BatchSize::Fixed(20), Saves::Starts, HOUR);
        batcher.observe(Duration::from_secs(60), [Duration::from_secs(3); 20], None);
        assert_eq!(size(&batcher, 3, 1), 3);
        assert_eq!(size(&batcher, 100, 8), 20);
    }

    /// Drains `queued` tests of `test` each on one of two workers, with `cost` per batch, and
    /// returns the sizes.
    fn drain(mut queued: usize, test: Duration, cost: Duration) -> Vec<usize> {
        let mut batcher = Batcher::new(BatchSize::Auto, Saves::Starts, HOUR);
        assert_eq!(size(&batcher, 100, 2), 1, "nothing known: one test");
        let mut sizes = Vec::new();
        while queued > 0 {
            let n = size(&batcher, queued, 2);
            let tests_time = test * u32::try_from(n).unwrap();
            assert!(
                n == 1 || tests_time <= TARGET.max(cost),
                "a batch of {n} holds {tests_time:?} of tests"
            );
            let worth = usize::try_from(cost.as_nanos() / test.as_nanos()).unwrap();
            assert!(
                n <= queued.div_ceil(8).max(worth),
                "{n} of {queued}: more than a fair share and than the start is worth"
            );
            batcher.observe(cost + tests_time, vec![test; n], Some(cost + test));
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
            sizes[1..sizes.len() - 1].iter().all(|&n| n >= 300),
            "each batch's tests take about as long as its start: {sizes:?}"
        );
    }

    /// A start of 3 s and 10 ms tests: the budget grows to the start's worth, 300 tests.
    #[test]
    fn a_costly_batch_start_raises_the_budget() {
        let sizes = drain(4000, Duration::from_millis(10), Duration::from_secs(3));
        assert_eq!(sizes[1], 300, "3 s of 10 ms tests: {sizes:?}");
    }

    /// attrs: a batch holding a few slow tests among fast ones. Its cost is what came before
    /// its first result, not what its slow tests took beyond a typical test's time (that made
    /// one worker take a thousand tests at once).
    #[test]
    fn slow_tests_in_a_batch_do_not_count_as_its_cost() {
        for first_after in [Some(Duration::from_millis(20)), None] {
            let mut batcher = Batcher::new(BatchSize::Auto, Saves::Starts, HOUR);
            let mut times = vec![Duration::from_millis(10); 40];
            times.extend([Duration::from_secs(8); 3]);
            let took = times.iter().sum::<Duration>() + Duration::from_millis(10);
            batcher.observe(took, times, first_after);
            let budget = batcher.next().timed.unwrap().budget;
            assert_eq!(budget, TARGET, "{first_after:?}");
            assert_eq!(size(&batcher, 10_000, 2), 200, "2 s of 10 ms tests");
        }
    }

    /// A module fixture's setup charged to the first test of every batch does not make the
    /// typical test look long, so batches stay big instead of setting it up again and again.
    #[test]
    fn a_fixture_setup_in_each_batch_does_not_shrink_batches() {
        let mut batcher = Batcher::new(BatchSize::Auto, Saves::Starts, HOUR);
        let setup = Duration::from_millis(200);
        let test = Duration::from_millis(1);
        batcher.observe(setup, [setup], None);
        let n = size(&batcher, 19, 1);
        batcher.observe(setup + test * 2, [setup, test, test], None);
        assert!(n >= 2, "{n}");
        assert!(size(&batcher, 64, 1) >= 16, "{}", size(&batcher, 64, 1));
    }

    #[test]
    fn a_short_test_timeout_keeps_auto_batches_shorter() {
        let mut batcher = Batcher::new(BatchSize::Auto, Saves::Starts, Duration::from_secs(1));
        let ten = Duration::from_millis(10);
        batcher.observe(ten, [ten], None);
        assert_eq!(
            size(&batcher, 10_000, 1),
            25,
            "a quarter of the timeout, 10 ms a test"
        );
    }

    /// nextest runs every test as its own process: a batch saves only round trips, so it stays
    /// a few tests and about a second of work.
    #[test]
    fn a_batch_that_saves_round_trips_stays_small() {
        let mut batcher = Batcher::new(BatchSize::Auto, Saves::RoundTrips, HOUR);
        let ms = Duration::from_millis(1);
        batcher.observe(ms * 10, [ms; 10], None);
        assert_eq!(size(&batcher, 10_000, 2), ROUND_TRIP_BATCH);
        let slow = Duration::from_millis(400);
        batcher.observe(slow * 64, [slow; 64], None);
        assert_eq!(size(&batcher, 10_000, 2), 2, "1 s of 400 ms tests");
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
