//! The whole build as one JUnit XML report (`ciq report --junit FILE`), for the CI's test view.
//!
//! Every test with an outcome is one `testcase`, written as the queue is read, page by page, so
//! a million-test build is written in constant memory. Requeues follow Surefire's conventions,
//! which Jenkins, GitLab and the test views built on them read: a flaky test passed, with a
//! `flakyFailure` holding its failing run; a test that failed after requeues has its `failure`
//! and one `rerunFailure` (`rerunError`) per requeue. Output goes in without its terminal
//! escapes. The file is written as an [`OutputFile`].

use std::borrow::Cow;
use std::io::Write;
use std::path::Path;

use quick_xml::Writer;
use quick_xml::events::{BytesDecl, BytesEnd, BytesStart, BytesText, Event};

use crate::outcome::{FailureDetail, Outcome};
use crate::report::output_file::{OutputError, OutputFile};
use crate::report::{Summary, TestRecord};

/// A JUnit report being written.
pub struct JunitReport {
    xml: Writer<OutputFile>,
}

impl JunitReport {
    /// Starts the report of `build` at `path`, its counts from `summary`: the tests with an
    /// outcome (tests not run are counted in a property, since they have none).
    pub fn create(path: &Path, build: &str, summary: &Summary) -> Result<Self, OutputError> {
        let mut report = JunitReport {
            xml: Writer::new_with_indent(OutputFile::create(path)?, b' ', 2),
        };
        let tests = summary.decided().to_string();
        let failures = summary.count(Outcome::Failed).to_string();
        let errors = summary.count(Outcome::Errored).to_string();
        let skipped = summary.count(Outcome::Skipped).to_string();
        let counts = [
            ("tests", tests.as_str()),
            ("failures", failures.as_str()),
            ("errors", errors.as_str()),
        ];
        report.io(|w| {
            w.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))?;
            w.write_event(Event::Start(
                BytesStart::new("testsuites")
                    .with_attributes([("name", "ciq")])
                    .with_attributes(counts),
            ))?;
            w.write_event(Event::Start(
                BytesStart::new("testsuite")
                    .with_attributes([("name", build)])
                    .with_attributes(counts)
                    .with_attributes([("skipped", skipped.as_str())]),
            ))?;
            if summary.missing() > 0 {
                w.create_element("properties").write_inner_content(|w| {
                    let missing = summary.missing().to_string();
                    w.create_element("property")
                        .with_attributes([("name", "ciq.not-run"), ("value", missing.as_str())])
                        .write_empty()?;
                    Ok(())
                })?;
            }
            Ok(())
        })?;
        Ok(report)
    }

    /// Adds the tests of `records`.
    pub fn add(&mut self, records: &[TestRecord]) -> Result<(), OutputError> {
        self.io(|w| {
            for record in records {
                case(w, record)?;
            }
            Ok(())
        })
    }

    /// Ends the report and puts it in place.
    pub fn finish(mut self) -> Result<(), OutputError> {
        self.io(|w| {
            w.write_event(Event::End(BytesEnd::new("testsuite")))?;
            w.write_event(Event::End(BytesEnd::new("testsuites")))?;
            w.get_mut().write_all(b"\n")
        })?;
        self.xml.into_inner().finish()
    }

    fn io(
        &mut self,
        write: impl FnOnce(&mut Writer<OutputFile>) -> std::io::Result<()>,
    ) -> Result<(), OutputError> {
        write(&mut self.xml).map_err(|source| self.xml.get_ref().failed(source))
    }
}

/// `text` with what XML 1.0 cannot hold (control characters other than tab and line breaks,
/// and U+FFFE/U+FFFF) replaced by U+FFFD. A test's output loses its terminal escapes first
/// ([`crate::ansi::strip`]), so a colour code leaves no `�[31m` behind.
fn xml_text(text: &str) -> Cow<'_, str> {
    let allowed = |c: char| {
        (!c.is_control() || matches!(c, '\t' | '\n' | '\r'))
            && !matches!(c, '\u{FFFE}' | '\u{FFFF}')
    };
    if text.chars().all(allowed) {
        Cow::Borrowed(text)
    } else {
        Cow::Owned(
            text.chars()
                .map(|c| if allowed(c) { c } else { '\u{FFFD}' })
                .collect(),
        )
    }
}

/// One `testcase`: its name is the test id, its class the id's module (before `::`), if any.
fn case(w: &mut Writer<impl Write>, record: &TestRecord) -> std::io::Result<()> {
    let id = xml_text(&record.id);
    let mut start = BytesStart::new("testcase").with_attributes([("name", id.as_ref())]);
    if let Some((module, _)) = id.split_once("::") {
        start.push_attribute(("classname", module));
    }
    if let Some(duration) = record.duration {
        start.push_attribute(("time", format!("{:.3}", duration.as_secs_f64()).as_str()));
    }
    let detail = record.failure.as_ref();
    match record.outcome {
        Outcome::Passed => w.write_event(Event::Empty(start)),
        Outcome::Skipped => {
            w.write_event(Event::Start(start))?;
            w.create_element("skipped").write_empty()?;
            w.write_event(Event::End(BytesEnd::new("testcase")))
        }
        Outcome::Flaky => {
            w.write_event(Event::Start(start))?;
            let message = detail.map_or_else(
                || "failed, then passed on a retry".to_owned(),
                |detail| {
                    format!(
                        "{} on worker {}, then passed on a retry",
                        detail.outcome, detail.worker
                    )
                },
            );
            rerun(w, "flakyFailure", &message, detail)?;
            w.write_event(Event::End(BytesEnd::new("testcase")))
        }
        Outcome::Failed | Outcome::Errored => {
            w.write_event(Event::Start(start))?;
            let (element, kind) = match record.outcome {
                Outcome::Errored => ("error", "errored"),
                _ => ("failure", "failed"),
            };
            let message = detail.map_or_else(
                || kind.to_owned(),
                |detail| format!("{kind} on worker {}", detail.worker),
            );
            let output = crate::ansi::strip(detail.map_or("", |detail| detail.output.as_str()));
            let output = xml_text(&output);
            w.create_element(element)
                .with_attributes([("type", kind), ("message", xml_text(&message).as_ref())])
                .write_text_content(BytesText::new(&output))?;
            let again = match record.outcome {
                Outcome::Errored => "rerunError",
                _ => "rerunFailure",
            };
            for _ in 0..record.requeues {
                rerun(
                    w,
                    again,
                    &format!("{kind} on a retry too (the output above is the last run's)"),
                    None,
                )?;
            }
            w.write_event(Event::End(BytesEnd::new("testcase")))
        }
    }
}

/// A Surefire rerun element (`flakyFailure`, `rerunFailure`, `rerunError`), with the run's
/// output if kept.
fn rerun(
    w: &mut Writer<impl Write>,
    element: &str,
    message: &str,
    detail: Option<&FailureDetail>,
) -> std::io::Result<()> {
    let failure = w
        .create_element(element)
        .with_attributes([("type", "failure"), ("message", xml_text(message).as_ref())]);
    match detail.filter(|detail| !detail.output.is_empty()) {
        Some(detail) => {
            failure.write_inner_content(|w| {
                let output = crate::ansi::strip(&detail.output);
                w.create_element("stackTrace")
                    .write_text_content(BytesText::new(&xml_text(&output)))?;
                Ok(())
            })?;
        }
        None => {
            failure.write_empty()?;
        }
    }
    Ok(())
}
