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
    let xml = crate::lines::utf8(crate::lines::strip_bom(bytes)).map_err(|line| JunitError {
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
    let mut state = Reading::default();
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
    let cases = state.cases;
    for (at, case) in cases.iter().enumerate() {
        let mut names = vec![case.name.clone()];
        if !case.classname.is_empty() {
            for separator in [".", "::", "/", " "] {
                names.push(format!("{}{separator}{}", case.classname, case.name));
            }
        }
        names.push(format!("{}\u{0}{}", case.classname, case.name));
        for name in names {
            index
                .entry(name)
                .and_modify(|first: &mut usize| {
                    if fails(&case.outcome) && !cases.get(*first).is_some_and(|c| fails(&c.outcome))
                    {
                        *first = at;
                    }
                })
                .or_insert(at);
        }
    }
    Ok(Cases { cases, index })
}

/// Whether a case failed. A name the report gives more than once (a rerun plugin's entries,
/// two suites with a test of one name, two paths pytest mangles alike) stands for its first
/// failing case, else its first: ciq cannot tell which entry is the test's own, and a failure
/// must never hide behind a pass.
fn fails(outcome: &Outcome) -> bool {
    matches!(outcome, Outcome::Failed | Outcome::Errored)
}

/// The cases read so far, and where the reader stands.
#[derive(Default)]
struct Reading {
    cases: Vec<Case>,
    current: Option<Case>,
    /// Whether text is being collected (inside a failure, error, skipped or system-* element).
    collecting: bool,
    seen_element: bool,
}

impl Reading {
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

    /// Regression (a hostile probe): a report naming a test twice, a pass then a failure, was
    /// read as a pass, and a build whose command exited 0 went green.
    #[test]
    fn a_name_given_twice_stands_for_its_failing_case() {
        let cases = parse(
            r#"<testsuite><testcase classname="A" name="t2"/><testcase classname="B" name="t2"><failure message="boom"/></testcase><testcase name="t3"><skipped/></testcase><testcase name="t3"/></testsuite>"#,
        )
        .unwrap();
        assert_eq!(cases.find("t2").unwrap().outcome, Outcome::Failed);
        assert_eq!(cases.find("A.t2").unwrap().outcome, Outcome::Passed);
        assert_eq!(cases.find("t3").unwrap().outcome, Outcome::Skipped);
        // pytest mangles `a.b/t.py` and `a/b/t.py` alike: both ids take the failure.
        let cases = parse(
            r#"<testsuite><testcase classname="tests.a.b.test_c" name="test_t"><failure/></testcase><testcase classname="tests.a.b.test_c" name="test_t"/></testsuite>"#,
        )
        .unwrap();
        for id in ["tests/a.b/test_c.py::test_t", "tests/a/b/test_c.py::test_t"] {
            assert_eq!(cases.find(id).unwrap().outcome, Outcome::Failed, "{id}");
        }
    }

    #[test]
    fn a_report_with_a_byte_order_mark_reads() {
        let cases =
            parse_bytes(b"\xEF\xBB\xBF<testsuite><testcase name=\"a\"/></testsuite>").unwrap();
        assert_eq!(cases.find("a").unwrap().outcome, Outcome::Passed);
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

#[cfg(test)]
mod properties {
    use proptest::prelude::*;
    use proptest::sample::Index;

    use super::*;
    use crate::property_testing::{config, corrupt, edits, noisy_text};

    /// A `<testcase>` to write: its attributes, result element and output.
    #[derive(Debug, Clone)]
    struct Written {
        classname: Option<String>,
        name: String,
        millis: Option<u32>,
        /// `failure`, `error` or `skipped`, its `message` and its text.
        result: Option<(&'static str, Option<String>, String)>,
        system_out: Option<String>,
        system_err: Option<String>,
    }

    /// Text with what XML must escape: markup, quotes, entities' `&`, line ends, any Unicode.
    fn text() -> impl Strategy<Value = String> {
        "[^\\x00]{0,16}|[<>&'\"\\t\\r\\n ]{1,6}|(&|&amp;|<!\\[CDATA\\[|]]>|\\r\\n){1,3}"
    }

    fn written() -> impl Strategy<Value = Written> {
        let result = prop::option::of((
            prop::sample::select(vec!["failure", "error", "skipped"]),
            prop::option::of(text()),
            text(),
        ));
        (
            prop::option::of(text()),
            text(),
            prop::option::of(0..10_000_000u32),
            result,
            prop::option::of(text()),
            prop::option::of(text()),
        )
            .prop_map(
                |(classname, name, millis, result, system_out, system_err)| Written {
                    classname,
                    name,
                    millis,
                    result,
                    system_out,
                    system_err,
                },
            )
    }

    /// `text` escaped for XML, line ends as character references so that an element stays on
    /// its line (and an attribute keeps them: a literal one would be read as a space).
    fn escape(text: &str) -> String {
        let mut escaped = String::new();
        for c in text.chars() {
            match c {
                '<' => escaped.push_str("&lt;"),
                '>' => escaped.push_str("&gt;"),
                '&' => escaped.push_str("&amp;"),
                '"' => escaped.push_str("&quot;"),
                '\'' => escaped.push_str("&apos;"),
                '\t' | '\n' | '\r' => escaped.push_str(&format!("&#{};", u32::from(c))),
                c => escaped.push(c),
            }
        }
        escaped
    }

    /// `case` as one line of XML.
    fn render(case: &Written) -> String {
        let mut xml = String::from("<testcase");
        if let Some(classname) = &case.classname {
            xml.push_str(&format!(" classname=\"{}\"", escape(classname)));
        }
        xml.push_str(&format!(" name=\"{}\"", escape(&case.name)));
        if let Some(millis) = case.millis {
            xml.push_str(&format!(" time=\"{}.{:03}\"", millis / 1000, millis % 1000));
        }
        xml.push('>');
        if let Some((tag, message, text)) = &case.result {
            xml.push_str(&format!("<{tag}"));
            if let Some(message) = message {
                xml.push_str(&format!(" message=\"{}\"", escape(message)));
            }
            xml.push_str(&format!(">{}</{tag}>", escape(text)));
        }
        for (tag, text) in [
            ("system-out", &case.system_out),
            ("system-err", &case.system_err),
        ] {
            if let Some(text) = text {
                xml.push_str(&format!("<{tag}>{}</{tag}>", escape(text)));
            }
        }
        xml.push_str("</testcase>");
        xml
    }

    /// A report holding `lines`, one per line, from line 4.
    fn document(lines: &[String]) -> String {
        let mut xml = String::from(
            "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<testsuites>\n<testsuite name=\"pytest\">\n",
        );
        for line in lines {
            xml.push_str(line);
            xml.push('\n');
        }
        xml.push_str("</testsuite>\n</testsuites>\n");
        xml
    }

    /// What the parser should make of `case`.
    fn expected(case: &Written) -> Case {
        let mut output = String::new();
        let end_line = |output: &mut String| {
            if !output.is_empty() && !output.ends_with('\n') {
                output.push('\n');
            }
        };
        let mut outcome = Outcome::Passed;
        if let Some((tag, message, text)) = &case.result {
            outcome = match *tag {
                "failure" => Outcome::Failed,
                "error" => Outcome::Errored,
                _ => Outcome::Skipped,
            };
            if let Some(message) = message {
                output.push_str(message);
                output.push('\n');
            }
            output.push_str(text);
            end_line(&mut output);
        }
        for text in [&case.system_out, &case.system_err].into_iter().flatten() {
            output.push_str(text);
            end_line(&mut output);
        }
        Case {
            classname: case.classname.clone().unwrap_or_default(),
            name: case.name.clone(),
            outcome,
            duration: case
                .millis
                .map(|millis| Duration::from_millis(millis.into())),
            output,
        }
    }

    /// A line that breaks a report where it stands.
    fn bad_line() -> impl Strategy<Value = String> {
        prop::sample::select(vec![
            "<testcase classname=\"no.name\"/>",
            "<testcase name=unquoted/>",
            "<testcase name=\"a &bogus; entity\"/>",
            "<testcase name=\"t\"></testcas>",
            "</testcase>",
        ])
        .prop_map(str::to_owned)
    }

    /// Whatever `parse` made of `xml`: a report, or an error naming a line of it (when it
    /// names one) in one line of text.
    fn check_outcome(xml: &[u8], parsed: Result<Cases, JunitError>) -> Result<(), TestCaseError> {
        if let Err(err) = parsed {
            let lines = xml.split(|&byte| byte == b'\n').count();
            if let Some(line) = err.line() {
                prop_assert!((1..=lines).contains(&line), "line {line} of {lines}: {err}");
            }
            let message = err.to_string();
            prop_assert!(!message.contains(['\n', '\r']), "{message}");
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(config())]

        /// Any text is a report or an error, never a panic.
        #[test]
        fn any_text_is_a_report_or_an_error(xml in noisy_text()) {
            check_outcome(xml.as_bytes(), parse(&xml))?;
        }

        /// A valid report with a few bytes inserted, deleted or changed is a report or an
        /// error, never a panic.
        #[test]
        fn corrupted_reports_are_reports_or_errors(
            cases in prop::collection::vec(written(), 0..6),
            edits in edits(),
        ) {
            let lines: Vec<String> = cases.iter().map(render).collect();
            let xml = corrupt(document(&lines).into_bytes(), &edits);
            check_outcome(&xml, parse_bytes(&xml))?;
        }

        /// Every case of a valid report reads back as written: names, outcome, time, output.
        #[test]
        fn valid_reports_read_back(cases in prop::collection::vec(written(), 0..8)) {
            let lines: Vec<String> = cases.iter().map(render).collect();
            let xml = document(&lines);
            let parsed = parse(&xml).map_err(|err| TestCaseError::fail(format!("{err}\n{xml}")))?;
            let expected: Vec<Case> = cases.iter().map(expected).collect();
            prop_assert_eq!(parsed.cases.len(), expected.len());
            for (read, case) in parsed.cases.iter().zip(&expected) {
                let close = match (read.duration, case.duration) {
                    (Some(read), Some(written)) => read.abs_diff(written) <= Duration::from_micros(1),
                    (read, written) => read == written,
                };
                prop_assert!(close, "{:?} vs {:?}", read.duration, case.duration);
                let read = Case { duration: case.duration, ..read.clone() };
                prop_assert_eq!(&read, case);
            }
        }

        /// A valid report with one bad line fails naming that line.
        #[test]
        fn one_bad_line_is_named(
            cases in prop::collection::vec(written(), 0..8),
            at in any::<Index>(),
            bad in bad_line(),
        ) {
            let mut lines: Vec<String> = cases.iter().map(render).collect();
            let at = at.index(lines.len() + 1);
            lines.insert(at, bad);
            let xml = document(&lines);
            match parse(&xml) {
                Ok(_) => prop_assert!(false, "parsed:\n{xml}"),
                Err(err) => prop_assert_eq!(err.line(), Some(at + 4), "{}\n{}", err, xml),
            }
        }
    }
}
