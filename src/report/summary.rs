//! [`Summary`]: a build's outcomes as the queue holds them, its verdict, and how it is printed.
//!
//! Both backends produce the same summary, so `ciq run -j N`, a distributed worker that saw
//! the queue drain, and `ciq report` print one format and reach one verdict.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::outcome::{FailureDetail, Outcome};
use crate::test_id::TestId;

/// Everything known about a build's tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// How many tests the leader listed.
    pub total: usize,
    /// Final outcome of every test that has one.
    pub outcomes: BTreeMap<TestId, Outcome>,
    /// Output of the last failing run, for failed, errored and flaky tests.
    pub failures: BTreeMap<TestId, FailureDetail>,
    /// How often each requeued test was put back.
    pub requeues: BTreeMap<TestId, u32>,
    /// Tests without an outcome: still queued or running when the summary was taken.
    pub not_run: Vec<TestId>,
    /// How many reservations took a test over from a worker whose heartbeat lapsed.
    pub taken_over: u64,
}

/// The build's verdict, from which exit codes follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Every test passed, was skipped, or was flaky.
    Green,
    /// At least one test failed or errored.
    Failed,
    /// No test failed, but some never got an outcome.
    Incomplete,
}

impl Summary {
    /// How many tests ended with `outcome`.
    pub fn count(&self, outcome: Outcome) -> usize {
        self.outcomes.values().filter(|&&o| o == outcome).count()
    }

    /// Tests missing from the outcomes: those not run, or never counted.
    pub fn missing(&self) -> usize {
        self.total.saturating_sub(self.outcomes.len())
    }

    /// The verdict: failures first, then completeness.
    pub fn verdict(&self) -> Verdict {
        if self.outcomes.values().any(|o| !o.is_success()) {
            Verdict::Failed
        } else if self.missing() > 0 {
            Verdict::Incomplete
        } else {
            Verdict::Green
        }
    }

    /// One line of counts, e.g. `20 tests: 17 passed, 1 flaky, 1 failed, 1 errored`.
    pub fn counts_line(&self) -> String {
        let mut line = format!("{} tests:", self.total);
        let mut first = true;
        for outcome in Outcome::ALL {
            let n = self.count(outcome);
            if n > 0 || outcome == Outcome::Passed {
                let _ = write!(line, "{} {n} {outcome}", if first { "" } else { "," });
                first = false;
            }
        }
        if self.missing() > 0 {
            let _ = write!(line, ", {} not run", self.missing());
        }
        let requeued: u32 = self.requeues.values().sum();
        if requeued > 0 {
            let _ = write!(line, "; {requeued} requeued");
        }
        if self.taken_over > 0 {
            let _ = write!(line, "; {} taken over from lost workers", self.taken_over);
        }
        line
    }

    /// The full human report: failures with their output, flaky tests, tests not run, counts,
    /// verdict.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (outcome, title) in [(Outcome::Failed, "FAILED"), (Outcome::Errored, "ERRORED")] {
            for (id, _) in self.outcomes.iter().filter(|(_, o)| **o == outcome) {
                let _ = writeln!(out, "\n{title} {id}{}", self.detail_suffix(id));
                if let Some(detail) = self.failures.get(id) {
                    for line in detail.output.lines() {
                        let _ = writeln!(out, "    | {line}");
                    }
                }
            }
        }
        let flaky: Vec<_> = self
            .outcomes
            .iter()
            .filter(|(_, o)| **o == Outcome::Flaky)
            .map(|(id, _)| id)
            .collect();
        if !flaky.is_empty() {
            let _ = writeln!(out, "\nFLAKY (failed, then passed on a retry):");
            for id in flaky {
                let _ = writeln!(out, "    {id}{}", self.detail_suffix(id));
            }
        }
        if !self.not_run.is_empty() {
            let _ = writeln!(out, "\nNOT RUN ({}):", self.not_run.len());
            for id in self.not_run.iter().take(20) {
                let _ = writeln!(out, "    {id}");
            }
            if self.not_run.len() > 20 {
                let _ = writeln!(out, "    ... and {} more", self.not_run.len() - 20);
            }
        }
        let verdict = match self.verdict() {
            Verdict::Green => "green",
            Verdict::Failed => "failed",
            Verdict::Incomplete => "incomplete (tests not run)",
        };
        let _ = writeln!(out, "\n{}\nverdict: {verdict}", self.counts_line());
        out
    }

    fn detail_suffix(&self, id: &TestId) -> String {
        let mut parts = Vec::new();
        if let Some(detail) = self.failures.get(id) {
            let seconds = detail.duration_ms as f64 / 1000.0;
            if self.outcomes.get(id) == Some(&Outcome::Flaky) {
                parts.push(format!(
                    "failed on worker {} in {seconds:.2}s",
                    detail.worker
                ));
            } else {
                parts.push(format!("worker {}", detail.worker));
                parts.push(format!("{seconds:.2}s"));
            }
        }
        if let Some(n) = self.requeues.get(id) {
            parts.push(format!("requeued {n}x"));
        }
        if parts.is_empty() {
            String::new()
        } else {
            format!(" ({})", parts.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> TestId {
        TestId::new(s).unwrap()
    }

    #[test]
    fn verdict_prefers_failures_over_missing_tests() {
        let mut summary = Summary {
            total: 3,
            ..Summary::default()
        };
        summary.outcomes.insert(id("a"), Outcome::Passed);
        summary.outcomes.insert(id("b"), Outcome::Flaky);
        assert_eq!(summary.verdict(), Verdict::Incomplete);
        summary.outcomes.insert(id("c"), Outcome::Skipped);
        assert_eq!(summary.verdict(), Verdict::Green);
        summary.outcomes.insert(id("c"), Outcome::Errored);
        assert_eq!(summary.verdict(), Verdict::Failed);
    }

    #[test]
    fn render_shows_failure_output_and_flaky_tests() {
        let mut summary = Summary {
            total: 3,
            ..Summary::default()
        };
        summary.outcomes.insert(id("ok"), Outcome::Passed);
        summary.outcomes.insert(id("bad"), Outcome::Failed);
        summary.outcomes.insert(id("shaky"), Outcome::Flaky);
        summary.requeues.insert(id("bad"), 1);
        summary.requeues.insert(id("shaky"), 1);
        summary.failures.insert(
            id("bad"),
            FailureDetail {
                outcome: Outcome::Failed,
                worker: "w2".into(),
                duration_ms: 1500,
                output: "assertion failed\nleft: 1".into(),
            },
        );
        let text = summary.render();
        assert!(text.contains("FAILED bad (worker w2, 1.50s, requeued 1x)\n    | assertion failed\n    | left: 1\n"), "{text}");
        assert!(
            text.contains("FLAKY (failed, then passed on a retry):\n    shaky (requeued 1x)\n"),
            "{text}"
        );
        assert!(
            text.ends_with("3 tests: 1 passed, 1 flaky, 1 failed; 2 requeued\nverdict: failed\n"),
            "{text}"
        );
    }
}
