//! Grind (`ciq run --grind N`): each test of the list queued N times, as N copies
//! (`<id>#grind-<k>`), so the build's election, leases, take-over and exactly-once counting
//! apply to every run; [`GrindRunner`] runs a copy as its test, and [`stats`] gives each test's
//! pass rate and duration percentiles for the report.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use crate::list_source::{ListFailure, ListSource};
use crate::outcome::{FailureDetail, Outcome, TestResult};
use crate::report::TestRecord;
use crate::runner::{Feed, Ran, Runner, RunnerError};
use crate::test_id::{GRIND_MARK as MARK, TestId, TestList, grind_base as base};

/// Copy `k` (from 1) of `id`.
fn copy(id: &TestId, k: u32) -> Option<TestId> {
    TestId::new(format!("{id}{MARK}{k}")).ok()
}

/// `list` with each test `n` times, copy by copy (every test's first run, then every second):
/// a build cut short still ran each test about as often as the others.
pub fn copies(list: &TestList, n: u32) -> TestList {
    let ids = (1..=n)
        .flat_map(|k| list.ids.iter().filter_map(move |id| copy(id, k)))
        .collect();
    TestList {
        ids,
        duplicates: list.duplicates,
        first_duplicate: list.first_duplicate.clone(),
    }
}

/// A list source whose list is each test `n` times.
pub struct GrindSource<'a, S> {
    inner: &'a S,
    n: u32,
    held: Option<TestList>,
}

impl<'a, S: ListSource> GrindSource<'a, S> {
    /// `inner`'s list, each test `n` times.
    pub fn new(inner: &'a S, n: u32) -> Self {
        Self {
            held: inner.held().map(|list| warned(list, copies(list, n), n)),
            inner,
            n,
        }
    }
}

/// `copied`, after a warning naming how many tests could not be copied (an id within a few
/// bytes of the longest allowed): they are not ground.
fn warned(list: &TestList, copied: TestList, n: u32) -> TestList {
    let expected = list.ids.len() * n as usize;
    if copied.ids.len() < expected {
        crate::say!(
            "ciq: warning: {} test(s) are not ground: their ids are too long to add `{MARK}<k>` to",
            (expected - copied.ids.len()) / n.max(1) as usize
        );
    }
    copied
}

impl<S: ListSource> ListSource for GrindSource<'_, S> {
    async fn produce(&self, timeout: Duration) -> Result<Cow<'_, TestList>, ListFailure> {
        if let Some(held) = &self.held {
            return Ok(Cow::Borrowed(held));
        }
        let list = self.inner.produce(timeout).await?;
        Ok(Cow::Owned(warned(&list, copies(&list, self.n), self.n)))
    }

    fn held(&self) -> Option<&TestList> {
        self.held.as_ref()
    }

    async fn to_check(&self, timeout: Duration) -> Option<Cow<'_, TestList>> {
        if let Some(held) = &self.held {
            return Some(Cow::Borrowed(held));
        }
        let list = self.inner.to_check(timeout).await?;
        Some(Cow::Owned(copies(&list, self.n)))
    }
}

/// Runs copies as their tests, one copy per batch (two copies of one test in a batch could not
/// be told apart in the runner's results).
pub struct GrindRunner<R> {
    inner: R,
    /// The copy whose result the framework still holds (kept up for a next test).
    provisional: Mutex<Option<TestId>>,
}

impl<R: Runner> GrindRunner<R> {
    /// Wraps `inner`.
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            provisional: Mutex::new(None),
        }
    }

    fn as_copy(result: TestResult, copy: &TestId) -> TestResult {
        TestResult {
            id: copy.clone(),
            ..result
        }
    }
}

impl<R: Runner> Runner for GrindRunner<R> {
    async fn run(
        &self,
        batch: &[TestId],
        limits: &[Duration],
        _feed: &Feed,
    ) -> Result<Ran, RunnerError> {
        let mut results = Vec::with_capacity(batch.len());
        let mut provisional = None;
        let mut settled = None;
        for (copy, limit) in batch.iter().zip(limits) {
            let test = TestId::new(base(copy.as_str()).0).unwrap_or_else(|_| copy.clone());
            let ran = self
                .inner
                .run(std::slice::from_ref(&test), &[*limit], &Feed::none())
                .await?;
            let held = self
                .provisional
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
            if let (Some(result), Some(held)) = (ran.settled, held) {
                settled = Some(Self::as_copy(result, &held));
            }
            results.extend(
                ran.results
                    .into_iter()
                    .filter(|r| r.id == test)
                    .map(|r| Self::as_copy(r, copy)),
            );
            if ran.provisional.is_some() {
                provisional = Some(copy.clone());
                *self
                    .provisional
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some(copy.clone());
            }
        }
        Ok(Ran {
            results,
            provisional,
            settled,
            ..Ran::default()
        })
    }

    async fn settle(&self) -> Option<TestResult> {
        let held = self
            .provisional
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()?;
        self.inner
            .settle()
            .await
            .map(|result| Self::as_copy(result, &held))
    }

    async fn prepare(&self) -> Result<(), RunnerError> {
        self.inner.prepare().await
    }

    async fn shutdown(&self) {
        self.inner.shutdown().await;
    }
}

/// One test's runs in a grind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestGrind {
    /// The test.
    pub id: String,
    /// Runs with an outcome.
    pub runs: usize,
    /// Runs that passed (or were skipped).
    pub passed: usize,
    /// The median duration, as measured.
    pub p50: Option<Duration>,
    /// The 95th percentile duration.
    pub p95: Option<Duration>,
    /// The longest run.
    pub max: Option<Duration>,
    /// A failing run's detail, when one failed.
    pub failure: Option<FailureDetail>,
}

impl TestGrind {
    /// The share of its runs that passed.
    pub fn pass_rate(&self) -> f64 {
        if self.runs == 0 {
            return 0.0;
        }
        self.passed as f64 / self.runs as f64
    }
}

/// Each test's grind from the build's records (copies), by id.
pub fn stats(records: &[TestRecord]) -> Vec<TestGrind> {
    let mut by_test: BTreeMap<&str, Vec<&TestRecord>> = BTreeMap::new();
    for record in records {
        by_test.entry(base(&record.id).0).or_default().push(record);
    }
    by_test
        .into_iter()
        .map(|(id, runs)| {
            let mut durations: Vec<Duration> = runs.iter().filter_map(|r| r.duration).collect();
            durations.sort();
            // Nearest rank: the smallest run at or above the share q of the runs.
            let at = |q: f64| -> Option<Duration> {
                let rank = (q * durations.len() as f64).ceil() as usize;
                durations.get(rank.max(1) - 1).copied()
            };
            TestGrind {
                id: id.to_owned(),
                runs: runs.len(),
                passed: runs
                    .iter()
                    .filter(|r| matches!(r.outcome, Outcome::Passed | Outcome::Skipped))
                    .count(),
                p50: at(0.5),
                p95: at(0.95),
                max: durations.last().copied(),
                failure: runs.iter().find_map(|r| r.failure.clone()),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_name_their_test_and_percentiles_come_from_the_runs() {
        let list = TestList::parse(b"a\nb#x\n", "t").unwrap();
        let copied = copies(&list, 3);
        let names: Vec<&str> = copied.ids.iter().map(TestId::as_str).collect();
        assert_eq!(
            names,
            [
                "a#grind-1",
                "b#x#grind-1",
                "a#grind-2",
                "b#x#grind-2",
                "a#grind-3",
                "b#x#grind-3"
            ]
        );
        assert_eq!(base("b#x#grind-2"), ("b#x", Some(2)));
        assert_eq!(base("b#grind-x"), ("b#grind-x", None));
        let record = |k: u64, outcome| TestRecord {
            id: format!("a{MARK}{k}"),
            outcome,
            duration: Some(Duration::from_millis(k * 10)),
            failure: None,
            requeues: 0,
        };
        let records: Vec<TestRecord> = (1..=20)
            .map(|k| {
                record(
                    k,
                    if k == 7 {
                        Outcome::Failed
                    } else {
                        Outcome::Passed
                    },
                )
            })
            .collect();
        let grind = &stats(&records)[0];
        assert_eq!((grind.id.as_str(), grind.runs, grind.passed), ("a", 20, 19));
        assert_eq!(grind.p50, Some(Duration::from_millis(100)));
        assert_eq!(grind.p95, Some(Duration::from_millis(190)));
        assert_eq!(grind.max, Some(Duration::from_millis(200)));
        assert!((grind.pass_rate() - 0.95).abs() < 1e-9);
    }
}
