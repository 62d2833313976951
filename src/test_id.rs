//! Validated test ids and test lists.
//!
//! A [`TestId`] is what the queue stores and what a runner receives as one argv element, so it
//! must survive both: no NUL, no line breaks, bounded length, valid UTF-8. Lists are read once,
//! checked line by line (errors name the line), and deduplicated with a warning.

use std::fmt;

use thiserror::Error;

/// Longest test id accepted, in bytes. Ids travel as Redis arguments and argv elements; an id
/// this long is almost surely a list-command printing something other than ids.
pub const MAX_TEST_ID_BYTES: usize = 4096;

/// One test's identity, checked to be safe as a queue entry and as an argv element.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TestId(String);

/// Why a single id is not a usable test id.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum InvalidTestId {
    /// The id is empty or only whitespace.
    #[error("is blank")]
    Blank,
    /// The id holds a NUL byte, which cannot be passed as an argv element.
    #[error("contains a NUL byte")]
    Nul,
    /// The id holds a line break, which would split it in a one-id-per-line list.
    #[error("contains a line break")]
    LineBreak,
    /// The id is longer than [`MAX_TEST_ID_BYTES`].
    #[error("is {0} bytes long, over the limit of {MAX_TEST_ID_BYTES}")]
    TooLong(usize),
}

impl TestId {
    /// Checks `id` and wraps it.
    pub fn new(id: impl Into<String>) -> Result<Self, InvalidTestId> {
        let id = id.into();
        if id.trim().is_empty() {
            return Err(InvalidTestId::Blank);
        }
        if id.contains('\0') {
            return Err(InvalidTestId::Nul);
        }
        if id.contains(['\n', '\r']) {
            return Err(InvalidTestId::LineBreak);
        }
        if id.len() > MAX_TEST_ID_BYTES {
            return Err(InvalidTestId::TooLong(id.len()));
        }
        Ok(Self(id))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is a grind's copy of a test (`<id>#grind-<k>`, `ciq run --grind N`), which
    /// is no test of its own: copies stay out of the stores that outlive a build.
    pub fn is_grind_copy(&self) -> bool {
        grind_base(&self.0).1.is_some()
    }
}

/// What separates a test's id from its copy number in a grind: copy `k` of `id` is
/// `<id>#grind-<k>`.
pub const GRIND_MARK: &str = "#grind-";

/// The test a grind copy runs, and its copy number; a plain id is its own test. It takes text,
/// not a [`TestId`], for ids read back from a store.
pub fn grind_base(id: &str) -> (&str, Option<u32>) {
    match id.rsplit_once(GRIND_MARK) {
        Some((test, k)) if !test.is_empty() => match k.parse() {
            Ok(k) => (test, Some(k)),
            Err(_) => (id, None),
        },
        _ => (id, None),
    }
}

impl fmt::Display for TestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a test list cannot be used.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum TestListError {
    /// The list holds no ids at all.
    #[error("test list from {source_name} is empty")]
    Empty {
        /// Where the list came from (a file name, `stdin`, a command).
        source_name: String,
    },
    /// The list is not valid UTF-8.
    #[error("test list from {source_name} is not valid UTF-8 (line {line})")]
    NotUtf8 {
        /// Where the list came from.
        source_name: String,
        /// 1-based line of the first invalid byte.
        line: usize,
    },
    /// One line is not a valid id.
    #[error("test list from {source_name}, line {line}: test id {reason}")]
    BadLine {
        /// Where the list came from.
        source_name: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        reason: InvalidTestId,
    },
}

/// A checked, deduplicated list of test ids, in the order first seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestList {
    /// The ids, each once.
    pub ids: Vec<TestId>,
    /// How many lines repeated an earlier id and were dropped.
    pub duplicates: usize,
    /// The first repeated id, to name in the warning.
    pub first_duplicate: Option<TestId>,
}

impl TestList {
    /// Parses one id per line. A final newline is fine; `\r\n` endings and a byte order mark are
    /// accepted; a blank line
    /// anywhere else is an error, because it usually means a list-command printed something
    /// that is not a test id.
    pub fn parse(bytes: &[u8], source_name: &str) -> Result<Self, TestListError> {
        let text = crate::lines::utf8(crate::lines::strip_bom(bytes)).map_err(|line| {
            TestListError::NotUtf8 {
                source_name: source_name.to_owned(),
                line,
            }
        })?;
        let body = text.strip_suffix('\n').unwrap_or(text);
        if body.is_empty() {
            return Err(TestListError::Empty {
                source_name: source_name.to_owned(),
            });
        }
        let mut seen = std::collections::HashSet::new();
        let mut list = TestList {
            ids: Vec::new(),
            duplicates: 0,
            first_duplicate: None,
        };
        for (index, line) in body.split('\n').enumerate() {
            let line = line.strip_suffix('\r').unwrap_or(line);
            let id = TestId::new(line).map_err(|reason| TestListError::BadLine {
                source_name: source_name.to_owned(),
                line: index + 1,
                reason,
            })?;
            if seen.insert(line) {
                list.ids.push(id);
            } else {
                list.duplicates += 1;
                list.first_duplicate.get_or_insert(id);
            }
        }
        Ok(list)
    }

    /// A digest of the set of ids, the same whatever their order: the leader stores its list's
    /// at commit, and a worker with a list of its own compares, so workers of one build (or two
    /// suites sharing a build id by mistake) cannot run different lists unnoticed.
    pub fn digest(&self) -> String {
        digest(self.ids.iter().map(TestId::as_str))
    }

    /// The warning to print when duplicates were dropped, if any were.
    pub fn duplicate_warning(&self) -> Option<String> {
        let first = self.first_duplicate.as_ref()?;
        Some(format!(
            "warning: dropped {} duplicate test id{} from the test list (first: `{first}`); each test runs once",
            self.duplicates,
            if self.duplicates == 1 { "" } else { "s" },
        ))
    }
}

/// The digest [`TestList::digest`] gives the set of `ids` (which must be distinct): SHA-256 of
/// the ids sorted by their bytes, one per line, in hex.
pub fn digest<'a>(ids: impl Iterator<Item = &'a str>) -> String {
    use sha2::Digest;
    let mut sorted: Vec<&str> = ids.collect();
    sorted.sort_unstable();
    let mut hasher = sha2::Sha256::new();
    for id in sorted {
        hasher.update(id.as_bytes());
        hasher.update(b"\n");
    }
    hasher
        .finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_ignores_order_but_not_content() -> Result<(), TestListError> {
        let a = parse(b"t1\nt2\nt3\n")?;
        assert_eq!(a.digest(), parse(b"t3\nt1\nt2\nt1\n")?.digest());
        assert_ne!(a.digest(), parse(b"t1\nt2\nx3\n")?.digest());
        assert_ne!(a.digest(), parse(b"t1\nt2\n")?.digest());
        assert_eq!(a.digest().len(), 64);
        Ok(())
    }

    fn parse(text: &[u8]) -> Result<TestList, TestListError> {
        TestList::parse(text, "`tests.txt`")
    }

    #[test]
    fn keeps_order_and_drops_duplicates() -> Result<(), TestListError> {
        let list = parse(b"b\na\nb\r\nc\na\n")?;
        let ids: Vec<_> = list.ids.iter().map(TestId::as_str).collect();
        assert_eq!(ids, ["b", "a", "c"]);
        assert_eq!(list.duplicates, 2);
        assert_eq!(
            list.duplicate_warning().as_deref(),
            Some(
                "warning: dropped 2 duplicate test ids from the test list (first: `b`); each test runs once"
            )
        );
        Ok(())
    }

    #[test]
    fn ids_keep_spaces_brackets_and_unicode() -> Result<(), TestListError> {
        let list = parse("t.py::test[a b-é]\n".as_bytes())?;
        assert_eq!(list.ids[0].as_str(), "t.py::test[a b-é]");
        Ok(())
    }

    #[test]
    fn a_byte_order_mark_is_not_part_of_the_first_id() -> Result<(), TestListError> {
        let list = parse(b"\xEF\xBB\xBFa\r\nb\r\n")?;
        let ids: Vec<_> = list.ids.iter().map(TestId::as_str).collect();
        assert_eq!(ids, ["a", "b"]);
        Ok(())
    }

    #[test]
    fn rejects_bad_lists_naming_the_line() {
        assert_eq!(
            parse(b"").unwrap_err().to_string(),
            "test list from `tests.txt` is empty"
        );
        assert_eq!(
            parse(b"a\n\nb\n").unwrap_err().to_string(),
            "test list from `tests.txt`, line 2: test id is blank"
        );
        assert_eq!(
            parse(b"a\nb\0c\n").unwrap_err().to_string(),
            "test list from `tests.txt`, line 2: test id contains a NUL byte"
        );
        assert_eq!(
            parse(b"a\nb\xffc\n").unwrap_err().to_string(),
            "test list from `tests.txt` is not valid UTF-8 (line 2)"
        );
        let long = "x".repeat(MAX_TEST_ID_BYTES + 1);
        assert_eq!(
            parse(long.as_bytes()).unwrap_err().to_string(),
            "test list from `tests.txt`, line 1: test id is 4097 bytes long, over the limit of 4096"
        );
    }

    #[test]
    fn single_ids_reject_line_breaks() {
        assert_eq!(TestId::new("a\nb"), Err(InvalidTestId::LineBreak));
        assert_eq!(TestId::new("a\rb"), Err(InvalidTestId::LineBreak));
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;
    use proptest::sample::Index;

    use super::*;
    use crate::property_testing::{config, distinct_test_ids, noisy_bytes, test_id};

    /// A line that no list may hold: blank, with a NUL, a carriage return or a byte that is not
    /// UTF-8 inside, or too long.
    fn bad_line() -> impl Strategy<Value = Vec<u8>> {
        let around = |middle: &'static [u8]| {
            (test_id(), test_id())
                .prop_map(move |(a, b)| [a.as_bytes(), middle, b.as_bytes()].concat())
        };
        prop_oneof![
            Just(Vec::new()),
            "[ \t\u{a0}]{1,4}".prop_map(String::into_bytes),
            around(b"\0"),
            around(b"\r"),
            around(b"\xff"),
            Just(vec![b'x'; MAX_TEST_ID_BYTES + 1]),
        ]
    }

    /// `lines` as a list file, each line ended by `\r\n` where `crlf` says so, else `\n`.
    fn render(lines: &[Vec<u8>], crlf: &[bool], final_newline: bool) -> Vec<u8> {
        let mut bytes = Vec::new();
        for (at, line) in lines.iter().enumerate() {
            bytes.extend_from_slice(line);
            if at + 1 < lines.len() || final_newline {
                let ending: &[u8] = if crlf.get(at).copied().unwrap_or(false) {
                    b"\r\n"
                } else {
                    b"\n"
                };
                bytes.extend_from_slice(ending);
            }
        }
        bytes
    }

    proptest! {
        #![proptest_config(config())]

        /// Whatever the bytes, a list of valid ids or an error naming a line that exists.
        #[test]
        fn any_bytes_give_a_list_or_an_error_naming_the_line(bytes in noisy_bytes()) {
            let lines = bytes.split(|&byte| byte == b'\n').count();
            match TestList::parse(&bytes, "`tests.txt`") {
                Ok(list) => {
                    prop_assert!(!list.ids.is_empty());
                    prop_assert!(list.ids.len() + list.duplicates <= lines);
                    for id in &list.ids {
                        prop_assert_eq!(TestId::new(id.as_str()), Ok(id.clone()));
                    }
                }
                Err(TestListError::Empty { .. }) => {
                    prop_assert!(bytes.is_empty() || bytes == b"\n");
                }
                Err(err @ (TestListError::NotUtf8 { line, .. } | TestListError::BadLine { line, .. })) => {
                    prop_assert!((1..=lines).contains(&line), "line {line} of {lines}");
                    let message = err.to_string();
                    prop_assert!(message.contains(&format!("line {line}")), "{message}");
                    prop_assert!(!message.contains(['\n', '\r']), "{message}");
                }
            }
        }

        /// A list of valid ids (repeats, `\r\n` endings, a final newline or none) reads back as
        /// its ids in first-seen order, repeats counted.
        #[test]
        fn valid_lists_read_back(
            ids in distinct_test_ids(1..12),
            picks in prop::collection::vec(any::<Index>(), 1..16),
            crlf in prop::collection::vec(any::<bool>(), 16),
            final_newline in any::<bool>(),
        ) {
            let lines: Vec<&String> = picks.iter().map(|pick| pick.get(&ids)).collect();
            let mut expected = Vec::new();
            let mut first_duplicate = None;
            for &line in &lines {
                if expected.contains(&line) {
                    first_duplicate.get_or_insert(line);
                } else {
                    expected.push(line);
                }
            }
            let bytes: Vec<Vec<u8>> = lines.iter().map(|line| line.as_bytes().to_vec()).collect();
            let list = TestList::parse(&render(&bytes, &crlf, final_newline), "`tests.txt`")
                .map_err(|err| TestCaseError::fail(err.to_string()))?;
            let ids: Vec<&str> = list.ids.iter().map(TestId::as_str).collect();
            let expected: Vec<&str> = expected.into_iter().map(String::as_str).collect();
            prop_assert_eq!(ids, expected);
            prop_assert_eq!(list.duplicates, lines.len() - list.ids.len());
            prop_assert_eq!(list.first_duplicate.as_ref().map(TestId::as_str), first_duplicate.map(String::as_str));
        }

        /// A valid list with one bad line inserted fails naming that line.
        #[test]
        fn one_bad_line_is_named(
            ids in distinct_test_ids(1..12),
            at in any::<Index>(),
            bad in bad_line(),
            crlf in prop::collection::vec(any::<bool>(), 13),
        ) {
            let mut lines: Vec<Vec<u8>> = ids.iter().map(|id| id.as_bytes().to_vec()).collect();
            let at = at.index(lines.len() + 1);
            lines.insert(at, bad);
            let err = TestList::parse(&render(&lines, &crlf, true), "`tests.txt`");
            let line = match &err {
                Err(TestListError::NotUtf8 { line, .. } | TestListError::BadLine { line, .. }) => *line,
                other => return Err(TestCaseError::fail(format!("{other:?}"))),
            };
            prop_assert_eq!(line, at + 1);
        }
    }
}
