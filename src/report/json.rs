//! The whole build as one JSON document (`ciq report --json FILE`), for scripts and dashboards.
//! Its shape is versioned (`"version": 1`) and documented in `docs/report-json.md`; a change
//! that breaks a reader gets a new version. Tests are written as the queue is read, page by
//! page, so a million-test build is written in constant memory, as an [`OutputFile`]. A
//! failure's output goes in without its terminal escapes.

use std::borrow::Cow;
use std::io::Write;
use std::path::Path;

use serde::Serialize;

use crate::outcome::{FailureDetail, Outcome};
use crate::report::output_file::{OutputError, OutputFile};
use crate::report::{Findings, Summary, TestRecord, Verdict};

/// The shape's version.
pub const VERSION: u32 = 1;

/// The document's head: everything but the tests.
#[derive(Serialize)]
struct Head<'a> {
    version: u32,
    build: &'a str,
    namespace: &'a str,
    verdict: &'static str,
    counts: Counts,
    not_run: Vec<&'a str>,
    /// The failing tests `--quarantine` kept from making the build red.
    quarantined: Vec<&'a str>,
    /// What a reader of the verdict should know: a green build whose every failure was
    /// quarantined.
    warnings: Vec<String>,
}

/// The summary's counts, named as the `--json` document and the HTML page both name them.
#[derive(Debug, Serialize)]
pub(crate) struct Counts {
    total: usize,
    passed: usize,
    flaky: usize,
    skipped: usize,
    failed: usize,
    errored: usize,
    not_run: usize,
    requeued: u64,
    taken_over: u64,
}

impl Counts {
    pub(crate) fn of(summary: &Summary) -> Self {
        Counts {
            total: summary.total,
            passed: summary.count(Outcome::Passed),
            flaky: summary.count(Outcome::Flaky),
            skipped: summary.count(Outcome::Skipped),
            failed: summary.count(Outcome::Failed),
            errored: summary.count(Outcome::Errored),
            not_run: summary.missing(),
            requeued: summary.requeued,
            taken_over: summary.taken_over,
        }
    }
}

/// A verdict as the `--json` document and the HTML page name it.
pub(crate) fn verdict_name(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Green => "green",
        Verdict::Failed => "failed",
        Verdict::Incomplete => "incomplete",
        Verdict::ListMismatch => "list-mismatch",
    }
}

/// One test.
#[derive(Serialize)]
struct Test<'a> {
    id: &'a str,
    outcome: Outcome,
    /// Runs in all: the first, and one per requeue.
    attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    duration_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    failure: Option<Cow<'a, FailureDetail>>,
}

/// `failure` with its output's terminal escapes stripped.
fn plain(failure: &FailureDetail) -> Cow<'_, FailureDetail> {
    match crate::ansi::strip(&failure.output) {
        Cow::Borrowed(_) => Cow::Borrowed(failure),
        Cow::Owned(output) => Cow::Owned(FailureDetail {
            output,
            ..failure.clone()
        }),
    }
}

/// A JSON report being written.
pub struct JsonReport {
    file: OutputFile,
    first: bool,
}

impl JsonReport {
    /// Starts the report of `build` in `namespace` at `path`, its head from `findings`.
    pub fn create(
        path: &Path,
        build: &str,
        namespace: &str,
        findings: &Findings,
    ) -> Result<Self, OutputError> {
        let summary = findings.summary();
        let head = Head {
            version: VERSION,
            build,
            namespace,
            verdict: verdict_name(findings.verdict()),
            counts: Counts::of(summary),
            not_run: summary.not_run.iter().map(|id| id.as_str()).collect(),
            quarantined: findings
                .quarantined
                .iter()
                .map(|listed| listed.id.as_str())
                .collect(),
            warnings: findings.quarantine_warning().into_iter().collect(),
        };
        let mut report = JsonReport {
            file: OutputFile::create(path)?,
            first: true,
        };
        let head = serde_json::to_vec(&head).map_err(|err| report.file.failed(err.into()))?;
        // The head's closing brace gives way to the tests' array.
        let open = head.strip_suffix(b"}").unwrap_or(&head);
        report.io(|file| {
            file.write_all(open)?;
            file.write_all(b",\"tests\":[")
        })?;
        Ok(report)
    }

    /// Adds the tests of `records`.
    pub fn add(&mut self, records: &[TestRecord]) -> Result<(), OutputError> {
        for record in records {
            let test = Test {
                id: &record.id,
                outcome: record.outcome,
                attempts: record.requeues.saturating_add(1),
                duration_ms: record
                    .duration
                    .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
                failure: record.failure.as_ref().map(plain),
            };
            let line = serde_json::to_vec(&test).map_err(|err| self.file.failed(err.into()))?;
            let first = std::mem::take(&mut self.first);
            self.io(|file| {
                file.write_all(if first { b"\n" } else { b",\n" })?;
                file.write_all(&line)
            })?;
        }
        Ok(())
    }

    /// Ends the report and puts it in place.
    pub fn finish(mut self) -> Result<(), OutputError> {
        self.io(|file| file.write_all(b"\n]}\n"))?;
        self.file.finish()
    }

    fn io(
        &mut self,
        write: impl FnOnce(&mut OutputFile) -> std::io::Result<()>,
    ) -> Result<(), OutputError> {
        write(&mut self.file).map_err(|source| self.file.failed(source))
    }
}
