//! [`Findings`]: what a step prints and judges, composed once from what the queue produced (a
//! [`Summary`]) and what only the step knows: the quarantine, the namespace's history (the
//! report), the list mismatches recorded after the summary was read (the report). The verdict is
//! taken from the composed value, and nothing changes it afterwards.

use std::fmt::Write as _;

use crate::outcome::Outcome;
use crate::quarantine::Quarantine;
use crate::report::summary::{Listed, Summary, Verdict};
use crate::test_id::TestId;

/// Most failing tests whose output is printed; the rest are named.
const WITH_OUTPUT: usize = 50;
/// Lines of output printed per quarantined failure: enough to see it is the known failure.
const QUARANTINED_LINES: usize = 10;

/// What the namespace's flakiness history says of a build's tests (the report only).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HistoryMarks {
    /// Failing tests that were flaky in other recent builds, and how often.
    pub flaky_elsewhere: std::collections::BTreeMap<TestId, String>,
    /// Quarantined tests with no failure in the last `window` builds: ready to leave
    /// quarantine.
    pub ready_to_leave: Vec<TestId>,
    /// How many recent builds `ready_to_leave` looked at.
    pub window: usize,
}

/// A build's outcomes as a step prints and judges them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Findings {
    /// What the queue produced, but `failing` holds only the failures the quarantine left, and
    /// `mismatches` also those recorded after it was read.
    pub(in crate::report) summary: Summary,
    /// Failed and errored tests under `--quarantine`: reported, not counted against the build.
    pub(in crate::report) quarantined: Vec<Listed>,
    /// What the history says.
    pub(in crate::report) history: HistoryMarks,
}

impl Findings {
    /// A worker's or a local build's findings: `summary` with `quarantine` applied.
    pub fn new(summary: Summary, quarantine: &Quarantine) -> Self {
        Self::compose(summary, quarantine, HistoryMarks::default(), Vec::new())
    }

    /// The report's findings: `summary` with `quarantine` applied, the `history` marks, and
    /// the list mismatches the workers recorded after the summary was read (`late`).
    ///
    /// Only named failures can be quarantined: a failure past the
    /// [`LISTED`](crate::report::summary::LISTED) named ones, unknown by id, still makes the
    /// build red.
    pub fn compose(
        mut summary: Summary,
        quarantine: &Quarantine,
        history: HistoryMarks,
        late: Vec<String>,
    ) -> Self {
        let (quarantined, failing) = std::mem::take(&mut summary.failing)
            .into_iter()
            .partition(|listed| quarantine.contains(&listed.id));
        summary.failing = failing;
        for mismatch in late {
            if !summary.mismatches.contains(&mismatch) {
                summary.mismatches.push(mismatch);
            }
        }
        Self {
            summary,
            quarantined,
            history,
        }
    }

    /// What the queue produced, for a file that counts the outcomes.
    pub fn summary(&self) -> &Summary {
        &self.summary
    }

    /// The verdict: failures are those the quarantine did not take.
    pub fn verdict(&self) -> Verdict {
        let failed = self.summary.failed_count() > self.quarantined.len();
        self.verdict_failed(failed)
    }

    /// A grind's verdict: whether it `failed` is the grind's limits' to say, not the counts'.
    pub fn grind_verdict(&self, failed: bool) -> Verdict {
        self.verdict_failed(failed)
    }

    /// Failures that count against the build past the named ones (a summary names at most
    /// [`LISTED`](crate::report::summary::LISTED)).
    pub(in crate::report) fn unnamed_failures(&self) -> usize {
        self.summary
            .failed_count()
            .saturating_sub(self.quarantined.len())
            .saturating_sub(self.summary.failing.len())
    }

    fn verdict_failed(&self, failed: bool) -> Verdict {
        Verdict::of(
            !self.summary.mismatches.is_empty(),
            failed,
            self.summary.missing() > 0,
        )
    }

    /// One line of counts, e.g. `20 tests: 17 passed, 1 flaky, 1 failed, 1 errored`.
    pub fn counts_line(&self) -> String {
        let mut line = format!("{} tests:", self.summary.total);
        let mut first = true;
        for outcome in Outcome::ALL {
            let n = self.summary.count(outcome);
            if n > 0 || outcome == Outcome::Passed {
                let _ = write!(line, "{} {n} {outcome}", if first { "" } else { "," });
                first = false;
            }
        }
        if self.summary.missing() > 0 {
            let _ = write!(line, ", {} not run", self.summary.missing());
        }
        if self.summary.requeued > 0 {
            let _ = write!(line, "; {} requeued", self.summary.requeued);
        }
        if self.summary.taken_over > 0 {
            let _ = write!(
                line,
                "; {} taken over from lost workers",
                self.summary.taken_over
            );
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
        let failures = self.summary.failed_count();
        if failures == 0 || self.quarantined.len() < failures {
            return None;
        }
        let passed = self.summary.count(Outcome::Passed) + self.summary.count(Outcome::Flaky);
        Some(format!(
            "WARNING: every failure was quarantined ({failures} of {} tests failed{}): the verdict is green only because of --quarantine",
            self.summary.total,
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
        for (at, listed) in self.summary.failing.iter().enumerate() {
            let title = match listed.outcome {
                Outcome::Errored => "ERRORED",
                _ => "FAILED",
            };
            let mark = self
                .history
                .flaky_elsewhere
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
        let unnamed = self.unnamed_failures();
        if unnamed > 0 {
            let _ = writeln!(out, "\n... and {unnamed} more failed or errored tests");
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
        if !self.history.ready_to_leave.is_empty() {
            let _ = writeln!(
                out,
                "\nQUARANTINED, NO FAILURE IN THE LAST {} BUILDS (ready to leave quarantine?):",
                self.history.window
            );
            for id in &self.history.ready_to_leave {
                let _ = writeln!(out, "    {id}");
            }
        }
        if !self.summary.flaky.is_empty() {
            let _ = writeln!(out, "\nFLAKY (failed, then passed on a retry):");
            for listed in &self.summary.flaky {
                let _ = writeln!(out, "    {}{}", listed.id, listed.suffix());
            }
            let flaky = self.summary.count(Outcome::Flaky);
            if flaky > self.summary.flaky.len() {
                let _ = writeln!(out, "    ... and {} more", flaky - self.summary.flaky.len());
            }
        }
        if self.summary.not_run_count > 0 {
            let _ = writeln!(out, "\nNOT RUN ({}):", self.summary.not_run_count);
            for id in &self.summary.not_run {
                let _ = writeln!(out, "    {id}");
            }
            if self.summary.not_run_count > self.summary.not_run.len() {
                let _ = writeln!(
                    out,
                    "    ... and {} more",
                    self.summary.not_run_count - self.summary.not_run.len()
                );
            }
        }
        if !self.summary.stopped.is_empty() {
            let _ = writeln!(out, "\nWORKERS THAT STOPPED TAKING TESTS:");
            for stopped in &self.summary.stopped {
                let _ = writeln!(out, "    {stopped}");
            }
        }
        if !self.summary.mismatches.is_empty() {
            let _ = writeln!(out, "\nWORKERS WITH ANOTHER TEST LIST (they ran nothing):");
            for mismatch in &self.summary.mismatches {
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::outcome::FailureDetail;
    use crate::report::summary::{LISTED, NOT_RUN_LISTED};

    fn id(s: &str) -> TestId {
        TestId::new(s).unwrap()
    }

    fn counts(pairs: &[(Outcome, usize)]) -> BTreeMap<Outcome, usize> {
        pairs.iter().copied().collect()
    }

    fn verdict(summary: &Summary) -> Verdict {
        Findings::new(summary.clone(), &Quarantine::default()).verdict()
    }

    #[test]
    fn verdict_prefers_mismatches_then_failures_over_missing_tests() {
        let mut summary = Summary {
            total: 3,
            counts: counts(&[(Outcome::Passed, 1), (Outcome::Flaky, 1)]),
            ..Summary::default()
        };
        assert_eq!(verdict(&summary), Verdict::Incomplete);
        summary.counts.insert(Outcome::Skipped, 1);
        assert_eq!(verdict(&summary), Verdict::Green);
        summary.counts.insert(Outcome::Skipped, 0);
        summary.counts.insert(Outcome::Errored, 1);
        assert_eq!(verdict(&summary), Verdict::Failed);
        summary.mismatches.push("worker `w2`: 5 ids differ".into());
        assert_eq!(verdict(&summary), Verdict::ListMismatch);
        // A grind's failures are its limits', and a mismatch still comes first.
        let findings = Findings::new(summary, &Quarantine::default());
        assert_eq!(findings.grind_verdict(false), Verdict::ListMismatch);
    }

    /// The report's mismatches read after the wait join the queue's, once each.
    #[test]
    fn late_mismatches_join_the_summary_once() {
        let summary = Summary {
            total: 1,
            counts: counts(&[(Outcome::Passed, 1)]),
            mismatches: vec!["w2".into()],
            ..Summary::default()
        };
        let findings = Findings::compose(
            summary,
            &Quarantine::default(),
            HistoryMarks::default(),
            vec!["w2".into(), "w3".into()],
        );
        assert_eq!(findings.summary().mismatches, ["w2", "w3"]);
        assert_eq!(findings.verdict(), Verdict::ListMismatch);
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
        let text = Findings::new(summary, &Quarantine::default()).render();
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
        let summary = Summary {
            total: 3,
            counts: counts(&[(Outcome::Failed, 3)]),
            failing,
            ..Summary::default()
        };
        let plain = Findings::new(summary.clone(), &Quarantine::default());
        assert_eq!(plain.quarantine_warning(), None);
        let findings = Findings::new(summary, &quarantine("f0\nf1\nf2\n"));
        assert_eq!(findings.verdict(), Verdict::Green);
        let text = findings.render();
        assert!(
            text.ends_with("3 tests: 0 passed, 3 failed; 3 of the failures quarantined\nWARNING: every failure was quarantined (3 of 3 tests failed, none passed): the verdict is green only because of --quarantine\nverdict: green\n"),
            "{text}"
        );
        // One failure outside the quarantine: red, and no such warning.
        let summary = Summary {
            total: 3,
            counts: counts(&[(Outcome::Failed, 2), (Outcome::Passed, 1)]),
            failing: findings.quarantined[1..].to_vec(),
            ..Summary::default()
        };
        let findings = Findings::new(summary, &quarantine("f1\n"));
        assert_eq!(findings.verdict(), Verdict::Failed);
        assert_eq!(findings.quarantine_warning(), None);
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
        let text = Findings::new(summary, &Quarantine::default()).render();
        assert!(
            text.contains("\n... and 50 more failed or errored tests\n"),
            "{text}"
        );
        assert!(text.contains("NOT RUN (50):"), "{text}");
        assert!(text.contains("    ... and 30 more\n"), "{text}");
        assert!(text.contains("1000 tests: 700 passed, 250 failed, 50 not run"));
    }
}
