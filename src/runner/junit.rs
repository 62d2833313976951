//! Per-test results from a JUnit XML report: [`parse`] reads the test cases, [`Cases::find`]
//! matches a test id to its case.
//!
//! Frameworks name cases differently: libtest-style reporters use the id as the case name,
//! most others `classname` + `name`, and pytest mangles its node ids (`a/b.py::C::t[x]` becomes
//! classname `a.b.C`, name `t[x]`). All of these are tried, so one reader serves the generic
//! runner and the pytest adapter.

use std::collections::HashMap;
use std::time::Duration;

use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};
use thiserror::Error;

use crate::outcome::{Outcome, reported_duration};

/// One `<testcase>`.
#[derive(Debug, Clone, PartialEq)]
pub struct Case {
    /// Its `classname` attribute (may be empty).
    pub classname: String,
    /// Its `name` attribute.
    pub name: String,
    /// `failure` -> failed, `error` -> errored, `skipped` -> skipped, none -> passed.
    pub outcome: Outcome,
    /// Its `time` attribute, when it has a usable one.
    pub duration: Option<Duration>,
    /// Failure or skip message and text, then `system-out` and `system-err`.
    pub output: String,
}

/// A JUnit file that cannot be read as one: what is wrong, and the line to look at when one
/// line is at fault (a report may have thousands).
#[derive(Debug, Error)]
#[error("malformed JUnit XML{}: {reason}", .line.map(|line| format!(", line {line}")).unwrap_or_default())]
pub struct JunitError {
    line: Option<usize>,
    reason: String,
}

impl JunitError {
    /// The 1-based line at fault, when one is.
    pub fn line(&self) -> Option<usize> {
        self.line
    }
}

/// Reads every `<testcase>` of the report `bytes`, which must be UTF-8.
pub fn parse_bytes(bytes: &[u8]) -> Result<Cases, JunitError> {
    let xml = crate::lines::utf8(bytes).map_err(|line| JunitError {
        line: Some(line),
        reason: "not valid UTF-8".to_owned(),
    })?;
    parse(xml)
}

/// The cases of a report, indexed by every name a test id may take.
#[derive(Debug, Default)]
pub struct Cases {
    cases: Vec<Case>,
    index: HashMap<String, usize>,
}

impl Cases {
    /// The case of test `id`, if the report has one.
    pub fn find(&self, id: &str) -> Option<&Case> {
        if let Some(&at) = self.index.get(id) {
            return self.cases.get(at);
        }
        let (classname, name) = pytest_address(id);
        self.index
            .get(&format!("{classname}\u{0}{name}"))
            .and_then(|&at| self.cases.get(at))
    }
}

/// Reads every `<testcase>` of `xml`, however its suites are nested.
pub fn parse(xml: &str) -> Result<Cases, JunitError> {
    let mut reader = Reader::from_str(xml);
    let mut state = State::default();
    let line_at = |at: u64| {
        Some(crate::lines::line_at(
            xml.as_bytes(),
            usize::try_from(at).unwrap_or(usize::MAX),
        ))
    };
    loop {
        // Where the next event starts: the line an element's own errors name.
        let start = reader.buffer_position();
        let event = reader.read_event().map_err(|err| JunitError {
            line: line_at(reader.error_position()),
            reason: crate::lines::one_line(&err.to_string()),
        })?;
        let at_start = |reason: String| JunitError {
            line: line_at(start),
            reason: crate::lines::one_line(&reason),
        };
        match event {
            Event::Start(element) => state.open(&element, false).map_err(at_start)?,
            Event::Empty(element) => state.open(&element, true).map_err(at_start)?,
            Event::Text(text) => state.text(&text.xml10_content()),
            Event::CData(text) => state.text(&text.xml10_content()),
            Event::GeneralRef(reference) => {
                let resolved = match reference.resolve_char_ref() {
                    Ok(Some(c)) => c.to_string(),
                    _ => quick_xml::escape::resolve_predefined_entity(&reference)
                        .unwrap_or_default()
                        .to_owned(),
                };
                state.text(&resolved);
            }
            Event::End(element) => state.close(element.local_name().as_ref()),
            Event::Eof => break,
            _ => {}
        }
    }
    if !state.seen_element {
        return Err(JunitError {
            line: None,
            reason: "no XML elements".to_owned(),
        });
    }
    let mut index = HashMap::new();
    for (at, case) in state.cases.iter().enumerate() {
        index.entry(case.name.clone()).or_insert(at);
        if !case.classname.is_empty() {
            for separator in [".", "::", "/", " "] {
                index
                    .entry(format!("{}{separator}{}", case.classname, case.name))
                    .or_insert(at);
            }
        }
        index
            .entry(format!("{}\u{0}{}", case.classname, case.name))
            .or_insert(at);
    }
    Ok(Cases {
        cases: state.cases,
        index,
    })
}

#[derive(Default)]
struct State {
    cases: Vec<Case>,
    current: Option<Case>,
    /// Whether text is being collected (inside a failure, error, skipped or system-* element).
    collecting: bool,
    seen_element: bool,
}

impl State {
    fn open(&mut self, element: &BytesStart<'_>, empty: bool) -> Result<(), String> {
        self.seen_element = true;
        if element.local_name().as_ref() == "testcase" {
            let case = start_case(element)?;
            if empty {
                self.cases.push(case);
            } else {
                self.current = Some(case);
            }
            return Ok(());
        }
        let Some(case) = self.current.as_mut() else {
            return Ok(());
        };
        let tag = element.local_name();
        match tag.as_ref() {
            "failure" => case.outcome = Outcome::Failed,
            "error" if case.outcome != Outcome::Failed => case.outcome = Outcome::Errored,
            "skipped" if case.outcome == Outcome::Passed => case.outcome = Outcome::Skipped,
            _ => {}
        }
        if matches!(tag.as_ref(), "failure" | "error" | "skipped")
            && let Some(message) = attribute(element, "message")?
        {
            case.output.push_str(&message);
            case.output.push('\n');
        }
        self.collecting = !empty
            && matches!(
                tag.as_ref(),
                "failure" | "error" | "skipped" | "system-out" | "system-err"
            );
        Ok(())
    }

    fn text(&mut self, text: &str) {
        if let (Some(case), true) = (self.current.as_mut(), self.collecting) {
            case.output.push_str(text);
        }
    }

    fn close(&mut self, tag: &str) {
        if tag == "testcase" {
            self.cases.extend(self.current.take());
        } else if self.collecting {
            if let Some(case) = self.current.as_mut()
                && !case.output.is_empty()
                && !case.output.ends_with('\n')
            {
                case.output.push('\n');
            }
            self.collecting = false;
        }
    }
}

fn start_case(element: &BytesStart<'_>) -> Result<Case, String> {
    let duration = attribute(element, "time")?
        .and_then(|time| time.trim().parse::<f64>().ok())
        .and_then(reported_duration);
    Ok(Case {
        classname: attribute(element, "classname")?.unwrap_or_default(),
        name: attribute(element, "name")?.ok_or_else(|| "a <testcase> has no name".to_owned())?,
        outcome: Outcome::Passed,
        duration,
        output: String::new(),
    })
}

fn attribute(element: &BytesStart<'_>, name: &str) -> Result<Option<String>, String> {
    match element.try_get_attribute(name) {
        Ok(Some(attr)) => attr
            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
            .map(|v| Some(v.into_owned()))
            .map_err(|err| err.to_string()),
        Ok(None) => Ok(None),
        Err(err) => Err(err.to_string()),
    }
}

/// The `(classname, name)` pytest's JUnit writer gives node id `id`: the file path as a dotted
/// module, classes joined by dots, the parameters kept as they are.
pub fn pytest_address(id: &str) -> (String, String) {
    let (path, params) = match id.find('[') {
        Some(at) => id.split_at(at),
        None => (id, ""),
    };
    let mut names: Vec<String> = path.split("::").map(str::to_owned).collect();
    if let Some(file) = names.first_mut() {
        let dotted = file.replace('/', ".");
        *file = dotted
            .strip_suffix(".py")
            .map(str::to_owned)
            .unwrap_or(dotted);
    }
    let mut name = names.pop().unwrap_or_default();
    name.push_str(params);
    (names.join("."), name)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PYTEST: &str = r#"<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest" errors="1" failures="1" skipped="1" tests="5" time="0.1">
<testcase classname="tests.test_x" name="test_ok" time="0.001" />
<testcase classname="tests.test_x.TestC" name="test_p[a b-&#233;]" time="0.25"><system-out>hello &amp; bye</system-out></testcase>
<testcase classname="tests.test_x" name="test_bad" time="0.002"><failure message="assert 1 == 2">def test_bad():
&gt;       assert 1 == 2</failure><system-out>printed</system-out></testcase>
<testcase classname="tests.test_x" name="test_skip" time="0.0"><skipped type="pytest.skip" message="not today">/x.py:3: not today</skipped></testcase>
<testcase classname="tests.test_x" name="test_fixture" time="0.0"><error message="failed on setup with &quot;boom&quot;">setup failed</error></testcase>
</testsuite></testsuites>"#;

    #[test]
    fn reads_pytest_reports_by_node_id() {
        let cases = parse(PYTEST).unwrap();
        assert_eq!(cases.cases.len(), 5);
        let ok = cases.find("tests/test_x.py::test_ok").unwrap();
        assert_eq!(ok.outcome, Outcome::Passed);
        let param = cases.find("tests/test_x.py::TestC::test_p[a b-é]").unwrap();
        assert_eq!(param.duration, Some(Duration::from_millis(250)));
        assert_eq!(param.output, "hello & bye\n");
        let bad = cases.find("tests/test_x.py::test_bad").unwrap();
        assert_eq!(bad.outcome, Outcome::Failed);
        assert_eq!(
            bad.output,
            "assert 1 == 2\ndef test_bad():\n>       assert 1 == 2\nprinted\n"
        );
        assert_eq!(
            cases.find("tests/test_x.py::test_skip").unwrap().outcome,
            Outcome::Skipped
        );
        let setup = cases.find("tests/test_x.py::test_fixture").unwrap();
        assert_eq!(setup.outcome, Outcome::Errored);
        assert!(setup.output.starts_with("failed on setup with \"boom\""));
        assert!(cases.find("tests/test_x.py::test_missing").is_none());
    }

    #[test]
    fn plain_names_and_classnames_match() {
        let cases = parse(r#"<testsuite><testcase name="math/add"/><testcase classname="Calc" name="div"><error/></testcase></testsuite>"#).unwrap();
        assert_eq!(cases.find("math/add").unwrap().outcome, Outcome::Passed);
        assert_eq!(cases.find("Calc.div").unwrap().outcome, Outcome::Errored);
        assert_eq!(cases.find("Calc::div").unwrap().outcome, Outcome::Errored);
    }

    #[test]
    fn malformed_reports_are_errors_not_panics() {
        for xml in [
            "",
            "not xml at all",
            "<testsuite><testcase name='x'></testsuite>",
            "<testcase/>",
        ] {
            assert!(parse(xml).is_err(), "{xml:?} parsed");
        }
        let named = |xml: &str| parse(xml).err().map(|err| err.to_string());
        assert_eq!(
            named("<testsuite>\n<testcase classname=\"c\"/>\n</testsuite>").as_deref(),
            Some("malformed JUnit XML, line 2: a <testcase> has no name")
        );
        assert_eq!(
            named("<testsuite>\n<testcase name=\"a\">\n</testsuite>").as_deref(),
            Some(
                "malformed JUnit XML, line 3: ill-formed document: expected `</testcase>`, but `</testsuite>` was found"
            )
        );
        assert_eq!(
            parse_bytes(b"<testsuite>\n<testcase name=\"\xff\"/>")
                .err()
                .map(|err| err.to_string())
                .as_deref(),
            Some("malformed JUnit XML, line 2: not valid UTF-8")
        );
    }

    /// Regression: `time="1e30"` (a timing file from anywhere) panicked.
    #[test]
    fn absurd_times_are_unknown_not_panics() {
        let cases = parse(r#"<testsuite><testcase name="a" time="1e30"/><testcase name="b" time="-1"/><testcase name="c" time="NaN"/><testcase name="d" time="0.25"/></testsuite>"#).unwrap();
        for name in ["a", "b", "c"] {
            assert_eq!(cases.find(name).unwrap().duration, None, "{name}");
        }
        assert_eq!(
            cases.find("d").unwrap().duration,
            Some(Duration::from_millis(250))
        );
    }

    #[test]
    fn pytest_addresses_follow_pytest_mangling() {
        assert_eq!(
            pytest_address("a/b.py::C::t[x::y]"),
            ("a.b.C".to_owned(), "t[x::y]".to_owned())
        );
        assert_eq!(pytest_address("t.py::f"), ("t".to_owned(), "f".to_owned()));
    }
}
