//! The build's summary in Markdown, for the CI's own page: GitHub Actions' job summary and
//! Buildkite's annotations render it above the log, where a user looks first.
//!
//! Failures come first, each folded (`<details>`) with its output cut to [`OUTPUT_LINES`]
//! lines and its terminal escapes stripped; then the flaky tests, the tests not run, and the
//! counts. Both providers refuse more than 1 MiB, and a summary of a few hundred names with
//! long ids and output can pass it: [`Findings::markdown_within`] cuts it between whole pieces
//! (a failure, a line of a list) and says so at its end.

use std::fmt::Write as _;

use crate::outcome::Outcome;
use crate::report::findings::Findings;
use crate::report::summary::Listed;

/// Most failures shown with their output; the rest are named.
const WITH_OUTPUT: usize = 30;
/// Most lines of one failure's output; the rest are counted.
const OUTPUT_LINES: usize = 60;
/// Most characters of one output line.
const LINE_CHARS: usize = 300;

impl Findings {
    /// The findings as Markdown, headed by `title` (which build it is).
    pub fn markdown(&self, title: &str) -> String {
        self.markdown_pieces(title).concat()
    }

    /// [`Findings::markdown`] in at most `limit` bytes: when it is longer, the pieces that fit
    /// (whole failures, whole lines of a list), then `note`, which says it was cut and where
    /// the whole report is. Empty when not even the note fits.
    pub fn markdown_within(&self, title: &str, limit: usize, note: &str) -> String {
        let pieces = self.markdown_pieces(title);
        if pieces.iter().map(String::len).sum::<usize>() <= limit {
            return pieces.concat();
        }
        let mut out = String::new();
        for piece in pieces {
            if out.len() + piece.len() + note.len() > limit {
                break;
            }
            out.push_str(&piece);
        }
        if out.len() + note.len() > limit {
            return String::new();
        }
        out.push_str(note);
        out
    }

    /// The Markdown in pieces that can be cut between.
    fn markdown_pieces(&self, title: &str) -> Vec<String> {
        let mut pieces = Vec::new();
        let mut out = String::new();
        let _ = writeln!(
            out,
            "### {}: {}\n",
            escape(title),
            escape(self.verdict().describe())
        );
        let _ = writeln!(out, "{}\n", escape(&self.counts_line()));
        if let Some(warning) = self.quarantine_warning() {
            let _ = writeln!(out, "> **{}**\n", escape(&warning));
        }
        pieces.push(std::mem::take(&mut out));
        if !self.summary.failing.is_empty() {
            let _ = writeln!(out, "#### Failed\n");
            for (at, listed) in self.summary.failing.iter().enumerate() {
                failure(&mut out, listed, at < WITH_OUTPUT);
                pieces.push(std::mem::take(&mut out));
            }
        }
        // Failures past the named ones, shown even when every named one is quarantined.
        let unnamed = self.unnamed_failures();
        if unnamed > 0 {
            let _ = writeln!(
                out,
                "... and {unnamed} more failed or errored tests (see the log)\n"
            );
        }
        if !self.quarantined.is_empty() {
            let _ = writeln!(
                out,
                "#### Quarantined (failed, not counted against the build)\n"
            );
            for listed in &self.quarantined {
                let _ = writeln!(out, "- `{}` ({})", code(listed.id.as_str()), listed.outcome);
                pieces.push(std::mem::take(&mut out));
            }
            out.push('\n');
        }
        if !self.summary.flaky.is_empty() {
            let _ = writeln!(out, "#### Flaky (failed, then passed on a retry)\n");
            for listed in &self.summary.flaky {
                let _ = writeln!(out, "- `{}`", code(listed.id.as_str()));
                pieces.push(std::mem::take(&mut out));
            }
            let flaky = self.summary.count(Outcome::Flaky);
            if flaky > self.summary.flaky.len() {
                let _ = writeln!(out, "- ... and {} more", flaky - self.summary.flaky.len());
            }
            out.push('\n');
        }
        if self.summary.not_run_count > 0 {
            let _ = writeln!(out, "#### Not run ({})\n", self.summary.not_run_count);
            for id in &self.summary.not_run {
                let _ = writeln!(out, "- `{}`", code(id.as_str()));
                pieces.push(std::mem::take(&mut out));
            }
            if self.summary.not_run_count > self.summary.not_run.len() {
                let _ = writeln!(
                    out,
                    "- ... and {} more",
                    self.summary.not_run_count - self.summary.not_run.len()
                );
            }
            out.push('\n');
        }
        if !self.summary.mismatches.is_empty() {
            let _ = writeln!(
                out,
                "#### Workers with another test list (they ran nothing)\n"
            );
            for mismatch in &self.summary.mismatches {
                let _ = writeln!(out, "- {}", escape(mismatch));
                pieces.push(std::mem::take(&mut out));
            }
            out.push('\n');
        }
        pieces.push(out);
        pieces
    }
}

/// One failing test: folded with its output, or named.
fn failure(out: &mut String, listed: &Listed, with_output: bool) {
    let title = match listed.outcome {
        Outcome::Errored => "ERRORED",
        _ => "FAILED",
    };
    let head = format!("{title} {}{}", listed.id, listed.suffix());
    let Some(detail) = listed.detail.as_ref().filter(|_| with_output) else {
        let _ = writeln!(out, "- {}", escape(&head));
        return;
    };
    let _ = writeln!(out, "<details><summary>{}</summary>\n", html(&head));
    let output = crate::ansi::strip(&detail.output);
    let lines: Vec<&str> = output.lines().collect();
    let shown: Vec<String> = lines
        .iter()
        .take(OUTPUT_LINES)
        .map(|line| match line.char_indices().nth(LINE_CHARS) {
            Some((cut, _)) => format!("{}...", &line[..cut]),
            None => (*line).to_owned(),
        })
        .collect();
    let fence = fence_for(&shown);
    let _ = writeln!(out, "{fence}\n{}\n{fence}", shown.join("\n"));
    if lines.len() > OUTPUT_LINES {
        let _ = writeln!(
            out,
            "\n... {} more lines in the log",
            lines.len() - OUTPUT_LINES
        );
    }
    let _ = writeln!(out, "\n</details>\n");
}

/// A code fence longer than any run of backticks in `lines`, so output cannot close it.
fn fence_for(lines: &[String]) -> String {
    let longest = lines
        .iter()
        .flat_map(|line| line.split(|c| c != '`'))
        .map(str::len)
        .max()
        .unwrap_or(0);
    "`".repeat((longest + 1).max(3))
}

/// Text safe in Markdown and in HTML (`<summary>`): markup characters escaped.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\\' | '`' | '*' | '_' | '[' | ']' | '|' | '#' => {
                out.push('\\');
                out.push(c);
            }
            '\n' | '\r' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// Text inside an HTML element (`<summary>`), where Markdown's escapes are not read.
fn html(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace(['\n', '\r'], " ")
}

/// Text inside an inline code span: a backtick would end it, so it becomes a quote.
fn code(text: &str) -> String {
    text.replace('`', "'")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::FailureDetail;
    use crate::quarantine::Quarantine;
    use crate::report::Summary;
    use crate::test_id::TestId;

    fn findings(summary: Summary) -> Findings {
        Findings::new(summary, &Quarantine::default())
    }

    fn listed(id: &str, outcome: Outcome, output: &str) -> Listed {
        Listed {
            id: TestId::new(id).unwrap(),
            outcome,
            detail: Some(FailureDetail {
                outcome,
                worker: "w1".into(),
                duration_ms: 250,
                output: output.into(),
            }),
            requeues: 0,
        }
    }

    #[test]
    fn failures_fold_their_output_and_markup_is_escaped() {
        let summary = findings(Summary {
            total: 3,
            counts: [
                (Outcome::Passed, 1),
                (Outcome::Failed, 1),
                (Outcome::Flaky, 1),
            ]
            .into_iter()
            .collect(),
            failing: vec![listed(
                "t.py::test_x[<a>|b]",
                Outcome::Failed,
                "```\nassert 1 == 2",
            )],
            flaky: vec![listed("t.py::test_`y`", Outcome::Flaky, "")],
            ..Summary::default()
        });
        let text = summary.markdown("build 7");
        assert!(text.starts_with("### build 7: failed\n"), "{text}");
        assert!(
            text.contains(
                "<details><summary>FAILED t.py::test_x[&lt;a&gt;|b] (worker w1, 0.25s)</summary>"
            ),
            "{text}"
        );
        assert!(text.contains("````\n```\nassert 1 == 2\n````"), "{text}");
        assert!(text.contains("- `t.py::test_'y'`"), "{text}");
        assert!(
            text.contains("3 tests: 1 passed, 1 flaky, 1 failed"),
            "{text}"
        );
    }

    /// Regression: a summary of 220 failures with long output came to 2.3 MB, over the 1 MiB
    /// GitHub takes for a job summary.
    #[test]
    fn a_summary_past_its_limit_is_cut_between_pieces_and_says_so() {
        let output = "é".repeat(300);
        let summary = findings(Summary {
            total: 220,
            counts: [(Outcome::Failed, 220)].into_iter().collect(),
            failing: (0..220)
                .map(|n| listed(&format!("t{n}"), Outcome::Failed, &output))
                .collect(),
            ..Summary::default()
        });
        let whole = summary.markdown("b");
        assert_eq!(summary.markdown_within("b", whole.len(), "CUT"), whole);
        let limit = whole.len() / 2;
        let cut = summary.markdown_within("b", limit, "\nCUT\n");
        assert!(cut.len() <= limit, "{} > {limit}", cut.len());
        assert!(
            cut.ends_with("</details>\n\n\nCUT\n"),
            "cut between failures"
        );
        assert_eq!(summary.markdown_within("b", 2, "CUT"), "");
    }

    #[test]
    fn terminal_escapes_are_stripped_from_output() {
        let summary = findings(Summary {
            total: 1,
            counts: [(Outcome::Failed, 1)].into_iter().collect(),
            failing: vec![listed("t", Outcome::Failed, "\u{1b}[31mRED\u{1b}[0m")],
            ..Summary::default()
        });
        let text = summary.markdown("b");
        assert!(text.contains("```\nRED\n```"), "{text}");
    }

    #[test]
    fn a_green_page_that_rests_on_the_quarantine_says_so() {
        let summary = Findings {
            summary: Summary {
                total: 1,
                counts: [(Outcome::Failed, 1)].into_iter().collect(),
                ..Summary::default()
            },
            quarantined: vec![listed("t", Outcome::Failed, "boom")],
            history: Default::default(),
        };
        let text = summary.markdown("b");
        assert!(text.starts_with("### b: green\n"), "{text}");
        assert!(
            text.contains("\n> **WARNING: every failure was quarantined (1 of 1 tests failed, none passed): the verdict is green only because of --quarantine**\n"),
            "{text}"
        );
    }

    #[test]
    fn long_output_is_cut_and_counted() {
        let output: Vec<String> = (0..100).map(|n| format!("line {n}")).collect();
        let summary = findings(Summary {
            total: 1,
            counts: [(Outcome::Errored, 1)].into_iter().collect(),
            failing: vec![listed("t", Outcome::Errored, &output.join("\n"))],
            ..Summary::default()
        });
        let text = summary.markdown("b");
        assert!(text.contains("line 59\n```"), "{text}");
        assert!(!text.contains("line 60\n"), "{text}");
        assert!(text.contains("... 40 more lines in the log"), "{text}");
    }
}
