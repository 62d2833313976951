//! [`Summary`]: a build's outcomes as the queue holds them, its verdict, and how it is printed.
//!
//! Both backends produce the same summary, so `ciq run -j N`, a distributed worker that saw
//! the queue drain, and `ciq report` print one format and reach one verdict. Its size does not
//! grow with the suite: counts for every outcome, and the failing, flaky and unfinished tests by
//! name up to [`LISTED`] each, so a million-test build summarises in the memory of a small one.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::outcome::{FailureDetail, Outcome};
use crate::quarantine::Quarantine;
use crate::test_id::TestId;

/// Most failing (and most flaky) tests a summary names; the rest are counted.
pub const LISTED: usize = 200;
/// Most unfinished tests a summary names.
pub const NOT_RUN_LISTED: usize = 20;
/// Most failing tests whose output is printed; the rest are named.
const WITH_OUTPUT: usize = 50;
/// Lines of output printed per quarantined failure: enough to see it is the known failure.
const QUARANTINED_LINES: usize = 10;

/// Everything known about a build's tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// How many tests the leader listed.
    pub total: usize,
    /// How many tests ended with each outcome.
    pub counts: BTreeMap<Outcome, usize>,
    /// Failed and errored tests (at most [`LISTED`]), by id.
    pub failing: Vec<Listed>,
    /// Flaky tests (at most [`LISTED`]), by id.
    pub flaky: Vec<Listed>,
    /// Requeues in all.
    pub requeued: u64,
    /// Tests without an outcome (at most [`NOT_RUN_LISTED`]): still queued or running when
    /// the summary was taken.
    pub not_run: Vec<TestId>,
    /// How many tests have no outcome.
    pub not_run_count: usize,
    /// How many reservations took a test over from a worker whose heartbeat lapsed.
    pub taken_over: u64,
    /// Workers that refused to run because their test list was not the build's.
    pub mismatches: Vec<String>,
    /// Workers that stopped taking tests (a breaker tripped), and why.
    pub stopped: Vec<String>,
    /// Failed and errored tests under `--quarantine`, moved out of `failing`: reported, not
    /// counted against the build.
    pub quarantined: Vec<Listed>,
    /// Failing tests that were flaky in other recent builds, and how often (from the
    /// namespace's history; the report only).
    pub marks: BTreeMap<TestId, String>,
    /// Quarantined tests with no failure in the recent builds: ready to leave quarantine.
    pub ready_to_leave: Vec<TestId>,
    /// How many recent builds `ready_to_leave` looked at.
    pub ready_after: usize,
}

/// A failing or flaky test, named in the summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// The test.
    pub id: TestId,
    /// Its final outcome.
    pub outcome: Outcome,
    /// Its last failing run, when kept.
    pub detail: Option<FailureDetail>,
    /// How often it was requeued.
    pub requeues: u32,
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
    /// A worker of the build had another test list: tests of the suite it meant to run may
    /// never have run at all.
    ListMismatch,
}

impl Verdict {
    /// The verdict as the summary's last line says it.
    pub fn describe(self) -> &'static str {
        match self {
            Verdict::Green => "green",
            Verdict::Failed => "failed",
            Verdict::Incomplete => "incomplete (tests not run)",
            Verdict::ListMismatch => "failed (a worker had another test list)",
        }
    }
}

impl Summary {
    /// How many tests ended with `outcome`.
    pub fn count(&self, outcome: Outcome) -> usize {
        self.counts.get(&outcome).copied().unwrap_or(0)
    }

    /// How many tests failed or errored.
    pub fn failed_count(&self) -> usize {
        self.count(Outcome::Failed) + self.count(Outcome::Errored)
    }

    /// How many tests have an outcome.
    pub fn decided(&self) -> usize {
        self.counts.values().sum()
    }

    /// Tests missing from the outcomes: those not run, or never counted.
    pub fn missing(&self) -> usize {
        self.total.saturating_sub(self.decided())
    }

    /// Moves the failing tests `quarantine` names out of `failing`, so they no longer count
    /// against the build. Only named failures can be: a failure past the [`LISTED`] named
    /// ones, unknown by id, still makes the build red.
    pub fn quarantine(&mut self, quarantine: &Quarantine) {
        let (quarantined, failing) = std::mem::take(&mut self.failing)
            .into_iter()
            .partition(|listed| quarantine.contains(&listed.id));
        self.failing = failing;
        self.quarantined.extend(quarantined);
    }

    /// The verdict: a foreign list first, then failures (quarantined ones aside), then
    /// completeness.
    pub fn verdict(&self) -> Verdict {
        if !self.mismatches.is_empty() {
            Verdict::ListMismatch
        } else if self.failed_count() > self.quarantined.len() {
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
        if self.requeued > 0 {
            let _ = write!(line, "; {} requeued", self.requeued);
        }
        if self.taken_over > 0 {
            let _ = write!(line, "; {} taken over from lost workers", self.taken_over);
        }
        if !self.quarantined.is_empty() {
            let _ = write!(
                line,
                "; {} of the failures quarantined",
                self.quarantined.len()
            );
        }
        line
    }

    /// A warning when the build is green only because `--quarantine` set every one of its
    /// failures aside: a suite broken as a whole (every test failing) would otherwise look
    /// green without a word.
    pub fn quarantine_warning(&self) -> Option<String> {
        let failures = self.failed_count();
        if failures == 0 || self.quarantined.len() < failures {
            return None;
        }
        let passed = self.count(Outcome::Passed) + self.count(Outcome::Flaky);
        Some(format!(
            "WARNING: every failure was quarantined ({failures} of {} tests failed{}): the verdict is green only because of --quarantine",
            self.total,
            if passed == 0 { ", none passed" } else { "" }
        ))
    }

    /// The full human report: failures with their output, flaky tests, tests not run, counts,
    /// verdict.
    pub fn render(&self) -> String {
        self.render_ending(&format!("verdict: {}", self.verdict().describe()))
    }

    /// The full human report, ending with `verdict` (a grind's own verdict line, say, in place
    /// of the build's: the report prints one verdict, the one its exit code gives).
    pub fn render_ending(&self, verdict: &str) -> String {
        let mut out = String::new();
        for (at, listed) in self.failing.iter().enumerate() {
            let title = match listed.outcome {
                Outcome::Errored => "ERRORED",
                _ => "FAILED",
            };
            let mark = self
                .marks
                .get(&listed.id)
                .map(|mark| format!(" [often flaky: {mark}]"))
                .unwrap_or_default();
            let _ = writeln!(out, "\n{title} {}{}{mark}", listed.id, listed.suffix());
            if let Some(detail) = listed.detail.as_ref().filter(|_| at < WITH_OUTPUT) {
                for line in detail.output.lines() {
                    let _ = writeln!(out, "    | {line}");
                }
            }
        }
        let failing = self.failed_count().saturating_sub(self.quarantined.len());
        if failing > self.failing.len() {
            let _ = writeln!(
                out,
                "\n... and {} more failed or errored tests",
                failing - self.failing.len()
            );
        }
        if !self.quarantined.is_empty() {
            let _ = writeln!(
                out,
                "\nQUARANTINED (failed, not counted against the build):"
            );
            for listed in &self.quarantined {
                let _ = writeln!(
                    out,
                    "    {} {}{}",
                    listed.outcome,
                    listed.id,
                    listed.suffix()
                );
                if let Some(detail) = &listed.detail {
                    for line in detail.output.lines().take(QUARANTINED_LINES) {
                        let _ = writeln!(out, "    | {line}");
                    }
                }
            }
        }
        if !self.ready_to_leave.is_empty() {
            let _ = writeln!(
                out,
                "\nQUARANTINED, NO FAILURE IN THE LAST {} BUILDS (ready to leave quarantine?):",
                self.ready_after
            );
            for id in &self.ready_to_leave {
                let _ = writeln!(out, "    {id}");
            }
        }
        if !self.flaky.is_empty() {
            let _ = writeln!(out, "\nFLAKY (failed, then passed on a retry):");
            for listed in &self.flaky {
                let _ = writeln!(out, "    {}{}", listed.id, listed.suffix());
            }
            let flaky = self.count(Outcome::Flaky);
            if flaky > self.flaky.len() {
                let _ = writeln!(out, "    ... and {} more", flaky - self.flaky.len());
            }
        }
        if self.not_run_count > 0 {
            let _ = writeln!(out, "\nNOT RUN ({}):", self.not_run_count);
            for id in &self.not_run {
                let _ = writeln!(out, "    {id}");
            }
            if self.not_run_count > self.not_run.len() {
                let _ = writeln!(
                    out,
                    "    ... and {} more",
                    self.not_run_count - self.not_run.len()
                );
            }
        }
        if !self.stopped.is_empty() {
            let _ = writeln!(out, "\nWORKERS THAT STOPPED TAKING TESTS:");
            for stopped in &self.stopped {
                let _ = writeln!(out, "    {stopped}");
            }
        }
        if !self.mismatches.is_empty() {
            let _ = writeln!(out, "\nWORKERS WITH ANOTHER TEST LIST (they ran nothing):");
            for mismatch in &self.mismatches {
                let _ = writeln!(out, "    {mismatch}");
            }
        }
        let _ = writeln!(out, "\n{}", self.counts_line());
        if let Some(warning) = self.quarantine_warning() {
            let _ = writeln!(out, "{warning}");
        }
        let _ = writeln!(out, "{verdict}");
        out
    }
}

impl Listed {
    pub(crate) fn suffix(&self) -> String {
        let mut parts = Vec::new();
        if let Some(detail) = &self.detail {
            let seconds = detail.duration_ms as f64 / 1000.0;
            if self.outcome == Outcome::Flaky {
                parts.push(format!(
                    "failed on worker {} in {seconds:.2}s",
                    detail.worker
                ));
            } else {
                parts.push(format!("worker {}", detail.worker));
                parts.push(format!("{seconds:.2}s"));
            }
        }
        if self.requeues > 0 {
            parts.push(format!("requeued {}x", self.requeues));
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

    fn counts(pairs: &[(Outcome, usize)]) -> BTreeMap<Outcome, usize> {
        pairs.iter().copied().collect()
    }

    #[test]
    fn verdict_prefers_mismatches_then_failures_over_missing_tests() {
        let mut summary = Summary {
            total: 3,
            counts: counts(&[(Outcome::Passed, 1), (Outcome::Flaky, 1)]),
            ..Summary::default()
        };
        assert_eq!(summary.verdict(), Verdict::Incomplete);
        summary.counts.insert(Outcome::Skipped, 1);
        assert_eq!(summary.verdict(), Verdict::Green);
        summary.counts.insert(Outcome::Skipped, 0);
        summary.counts.insert(Outcome::Errored, 1);
        assert_eq!(summary.verdict(), Verdict::Failed);
        summary.mismatches.push("worker `w2`: 5 ids differ".into());
        assert_eq!(summary.verdict(), Verdict::ListMismatch);
    }

    #[test]
    fn render_shows_failure_output_and_flaky_tests() {
        let summary = Summary {
            total: 3,
            counts: counts(&[
                (Outcome::Passed, 1),
                (Outcome::Failed, 1),
                (Outcome::Flaky, 1),
            ]),
            failing: vec![Listed {
                id: id("bad"),
                outcome: Outcome::Failed,
                detail: Some(FailureDetail {
                    outcome: Outcome::Failed,
                    worker: "w2".into(),
                    duration_ms: 1500,
                    output: "assertion failed\nleft: 1".into(),
                }),
                requeues: 1,
            }],
            flaky: vec![Listed {
                id: id("shaky"),
                outcome: Outcome::Flaky,
                detail: None,
                requeues: 1,
            }],
            requeued: 2,
            ..Summary::default()
        };
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

    fn quarantine(text: &str) -> Quarantine {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), text).unwrap();
        Quarantine::read(file.path()).unwrap()
    }

    /// Regression (a hostile trial): every test failed, every failure quarantined, and the
    /// summary said "verdict: green" without a word.
    #[test]
    fn a_green_verdict_that_rests_on_the_quarantine_says_so() {
        let failing: Vec<Listed> = (0..3)
            .map(|n| Listed {
                id: id(&format!("f{n}")),
                outcome: Outcome::Failed,
                detail: None,
                requeues: 0,
            })
            .collect();
        let mut summary = Summary {
            total: 3,
            counts: counts(&[(Outcome::Failed, 3)]),
            failing,
            ..Summary::default()
        };
        assert_eq!(summary.quarantine_warning(), None);
        summary.quarantine(&quarantine("f0\nf1\nf2\n"));
        assert_eq!(summary.verdict(), Verdict::Green);
        let text = summary.render();
        assert!(
            text.ends_with("3 tests: 0 passed, 3 failed; 3 of the failures quarantined\nWARNING: every failure was quarantined (3 of 3 tests failed, none passed): the verdict is green only because of --quarantine\nverdict: green\n"),
            "{text}"
        );
        // One failure outside the quarantine: red, and no such warning.
        let mut summary = Summary {
            total: 3,
            counts: counts(&[(Outcome::Failed, 2), (Outcome::Passed, 1)]),
            failing: summary.quarantined.split_off(1),
            ..Summary::default()
        };
        summary.quarantine(&quarantine("f1\n"));
        assert_eq!(summary.verdict(), Verdict::Failed);
        assert_eq!(summary.quarantine_warning(), None);
    }

    #[test]
    fn render_counts_what_it_does_not_name() {
        let summary = Summary {
            total: 1000,
            counts: counts(&[(Outcome::Passed, 700), (Outcome::Failed, 250)]),
            failing: (0..LISTED)
                .map(|n| Listed {
                    id: id(&format!("f{n}")),
                    outcome: Outcome::Failed,
                    detail: None,
                    requeues: 0,
                })
                .collect(),
            not_run: (0..NOT_RUN_LISTED).map(|n| id(&format!("q{n}"))).collect(),
            not_run_count: 50,
            ..Summary::default()
        };
        let text = summary.render();
        assert!(
            text.contains("\n... and 50 more failed or errored tests\n"),
            "{text}"
        );
        assert!(text.contains("NOT RUN (50):"), "{text}");
        assert!(text.contains("    ... and 30 more\n"), "{text}");
        assert!(text.contains("1000 tests: 700 passed, 250 failed, 50 not run"));
    }
}
