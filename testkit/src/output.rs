//! What workers print: their per-test lines, read back and counted.

use std::collections::BTreeMap;

/// One per-test line a worker printed: `PASS [  0.051s] w1: pass/0001`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestLine {
    pub status: String,
    pub worker: String,
    pub test: String,
}

impl TestLine {
    /// Whether the line reports the test's final outcome (not a retry, a discarded late result,
    /// or a duplicate).
    pub fn is_final(&self) -> bool {
        matches!(
            self.status.as_str(),
            "PASS" | "FAIL" | "ERROR" | "SKIP" | "FLAKY"
        )
    }
}

/// The per-test lines in a worker's stderr.
pub fn test_lines(stderr: &str) -> Vec<TestLine> {
    stderr
        .lines()
        .filter_map(|line| {
            let (status, rest) = line.trim_start().split_once(" [")?;
            let (_, rest) = rest.split_once("s] ")?;
            let (worker, test) = rest.split_once(": ")?;
            Some(TestLine {
                status: status.to_owned(),
                worker: worker.to_owned(),
                test: test.to_owned(),
            })
        })
        .collect()
}

/// The statuses (`PASS`, `LOST`...) a worker printed for `test`, in order.
pub fn statuses(stderr: &str, test: &str) -> Vec<String> {
    test_lines(stderr)
        .into_iter()
        .filter(|line| line.test == test)
        .map(|line| line.status)
        .collect()
}

/// Asserts that the workers printed exactly one final outcome for each of `expected` tests.
pub fn assert_one_final_line_each<'a>(stderrs: impl IntoIterator<Item = &'a str>, expected: usize) {
    let finals = final_lines(stderrs);
    assert_eq!(finals.len(), expected, "{finals:?}");
    assert!(finals.values().all(|&n| n == 1), "{finals:?}");
}

/// Final-outcome lines per test over several workers' stderr: one each when nothing was
/// counted twice.
pub fn final_lines<'a>(stderrs: impl IntoIterator<Item = &'a str>) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for stderr in stderrs {
        for line in test_lines(stderr).into_iter().filter(TestLine::is_final) {
            *counts.entry(line.test).or_insert(0) += 1;
        }
    }
    counts
}
