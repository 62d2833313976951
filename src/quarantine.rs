//! [`Quarantine`]: tests whose failures do not make the build red (`--quarantine FILE`).
//!
//! A team that knows a test is flaky or broken, and will fix it later, keeps it running and
//! reported (its failures stay visible, under their own heading) without holding every build
//! red meanwhile.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use thiserror::Error;

use crate::list_source::{ListFailure, ListSource};
use crate::test_id::{InvalidTestId, TestId, TestList};

/// The quarantined test ids.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Quarantine {
    ids: BTreeSet<TestId>,
}

/// Why a quarantine file cannot be used.
#[derive(Debug, Error)]
pub enum QuarantineError {
    /// The file cannot be read.
    #[error("cannot read the quarantine file `{}`", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not UTF-8 text.
    #[error("quarantine file `{}` is not valid UTF-8 (line {line})", .path.display())]
    NotUtf8 {
        /// The file.
        path: PathBuf,
        /// The line of its first byte that is not UTF-8, from 1.
        line: usize,
    },
    /// A line is not a test id.
    #[error("quarantine file `{}`, line {line}: {reason}", .path.display())]
    BadLine {
        /// The file.
        path: PathBuf,
        /// The line, from 1.
        line: usize,
        /// What is wrong with it.
        reason: InvalidTestId,
    },
}

impl Quarantine {
    /// Reads one test id per line; blank lines and lines starting with `#` are skipped (test ids
    /// may hold a `#`, so a comment takes a whole line).
    pub fn read(path: &Path) -> Result<Self, QuarantineError> {
        let bytes = std::fs::read(path).map_err(|source| QuarantineError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&bytes, path)
    }

    /// Reads the quarantine file `bytes` (from `path`) as [`Quarantine::read`] does.
    fn parse(bytes: &[u8], path: &Path) -> Result<Self, QuarantineError> {
        let text = crate::lines::utf8(crate::lines::strip_bom(bytes)).map_err(|line| {
            QuarantineError::NotUtf8 {
                path: path.to_owned(),
                line,
            }
        })?;
        let mut ids = BTreeSet::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let id = TestId::new(line).map_err(|reason| QuarantineError::BadLine {
                path: path.to_owned(),
                line: index + 1,
                reason,
            })?;
            ids.insert(id);
        }
        Ok(Self { ids })
    }

    /// The quarantined ids, sorted.
    pub fn ids(&self) -> impl Iterator<Item = &TestId> {
        self.ids.iter()
    }

    /// Whether `id` is quarantined.
    pub fn contains(&self, id: &TestId) -> bool {
        self.ids.contains(id)
    }

    /// The quarantined ids that are not in `listed`: a renamed or deleted test, whose
    /// quarantine no longer shelters anything.
    pub fn unknown(&self, listed: &[TestId]) -> Vec<&TestId> {
        let listed: BTreeSet<&TestId> = listed.iter().collect();
        self.ids.iter().filter(|id| !listed.contains(id)).collect()
    }

    /// Warns about [`Quarantine::unknown`] ids, a few by name.
    pub fn warn_unknown(&self, listed: &[TestId]) {
        let unknown = self.unknown(listed);
        if unknown.is_empty() {
            return;
        }
        let named: Vec<&str> = unknown.iter().take(5).map(|id| id.as_str()).collect();
        crate::say!(
            "ciq: warning: {} quarantined test(s) are not in the test list (renamed or deleted?): {}{}",
            unknown.len(),
            named.join(", "),
            if unknown.len() > named.len() {
                ", ..."
            } else {
                ""
            }
        );
    }
}

/// A list source that warns about the quarantined ids its list lacks, where the list is
/// produced (the leader's listing; a held list was checked when it was read).
pub struct Checked<'a, S> {
    /// The source.
    pub inner: &'a S,
    /// The quarantine to check.
    pub quarantine: &'a Quarantine,
}

impl<S: ListSource> ListSource for Checked<'_, S> {
    async fn produce(&self, timeout: Duration) -> Result<Cow<'_, TestList>, ListFailure> {
        let list = self.inner.produce(timeout).await?;
        if self.inner.held().is_none() {
            self.quarantine.warn_unknown(&list.ids);
        }
        Ok(list)
    }

    fn held(&self) -> Option<&TestList> {
        self.inner.held()
    }

    async fn to_check(&self, timeout: Duration) -> Option<Cow<'_, TestList>> {
        self.inner.to_check(timeout).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_and_blank_lines_are_skipped_and_bad_lines_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("quarantine.txt");
        std::fs::write(
            &path,
            "# flaky since March\n\nnet/retry\n  db/slow[a#b]  \n",
        )
        .unwrap();
        let quarantine = Quarantine::read(&path).unwrap();
        assert!(quarantine.contains(&TestId::new("net/retry").unwrap()));
        assert!(quarantine.contains(&TestId::new("db/slow[a#b]").unwrap()));
        let listed = [TestId::new("net/retry").unwrap()];
        assert_eq!(
            quarantine.unknown(&listed),
            [&TestId::new("db/slow[a#b]").unwrap()]
        );
        std::fs::write(&path, "ok\nbad\0id\n").unwrap();
        let err = Quarantine::read(&path).unwrap_err().to_string();
        assert!(err.contains("line 2"), "{err}");
        std::fs::write(&path, b"ok\n# \xff\n").unwrap();
        let err = Quarantine::read(&path).unwrap_err().to_string();
        assert!(err.ends_with("is not valid UTF-8 (line 2)"), "{err}");
        let err = Quarantine::read(&dir.path().join("none")).unwrap_err();
        assert!(err.to_string().contains("cannot read the quarantine file"));
    }

    /// Regression: a file saved with a byte order mark kept it in its first id, which then
    /// matched no test.
    #[test]
    fn a_byte_order_mark_is_not_part_of_the_first_id() {
        let read = Quarantine::parse(b"\xEF\xBB\xBFnet/retry\n", Path::new("q.txt")).unwrap();
        assert!(read.contains(&TestId::new("net/retry").unwrap()));
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;
    use proptest::sample::Index;

    use super::*;
    use crate::property_testing::{config, distinct_test_ids, noisy_bytes};

    fn path() -> &'static Path {
        Path::new("quarantine.txt")
    }

    /// A line that is not a comment, blank, or a test id.
    fn bad_line() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            Just(b"a\0b".to_vec()),
            Just(b"a\rb".to_vec()),
            Just(b"net/\xffretry".to_vec()),
            Just(vec![b'x'; crate::test_id::MAX_TEST_ID_BYTES + 1]),
        ]
    }

    proptest! {
        #![proptest_config(config())]

        /// Any bytes are a quarantine or an error naming a line that exists.
        #[test]
        fn any_bytes_are_a_quarantine_or_an_error_naming_the_line(bytes in noisy_bytes()) {
            let lines = bytes.split(|&byte| byte == b'\n').count();
            match Quarantine::parse(&bytes, path()) {
                Ok(_) => {}
                Err(QuarantineError::NotUtf8 { line, .. } | QuarantineError::BadLine { line, .. }) => {
                    prop_assert!((1..=lines).contains(&line), "line {line} of {lines}");
                }
                Err(err @ QuarantineError::Read { .. }) => prop_assert!(false, "{err}"),
            }
        }

        /// Ids among comments and blank lines read back as the quarantine.
        #[test]
        fn ids_among_comments_read_back(
            ids in distinct_test_ids(0..12),
            comments in prop::collection::vec(prop_oneof![Just(String::new()), "[ \t]{0,3}#[^\\n]{0,20}"], 12),
            crlf in any::<bool>(),
        ) {
            // A quarantined id is trimmed, and may not start with `#`.
            let ids: Vec<String> = ids
                .iter()
                .map(|id| id.trim().to_owned())
                .filter(|id| !id.starts_with('#'))
                .collect();
            let ending = if crlf { "\r\n" } else { "\n" };
            let mut text = String::new();
            for (id, comment) in ids.iter().zip(&comments) {
                text.push_str(&format!("{comment}{ending}  {id}\t{ending}"));
            }
            let quarantine = Quarantine::parse(text.as_bytes(), path())
                .map_err(|err| TestCaseError::fail(err.to_string()))?;
            // Sorted, each once: trimming may have made two ids one.
            let expected: Vec<&str> = ids.iter().map(String::as_str).collect::<BTreeSet<_>>().into_iter().collect();
            let read: Vec<&str> = quarantine.ids().map(TestId::as_str).collect();
            prop_assert_eq!(read, expected);
        }

        /// One bad line among ids fails naming that line.
        #[test]
        fn one_bad_line_is_named(
            ids in distinct_test_ids(0..12),
            at in any::<Index>(),
            bad in bad_line(),
        ) {
            let mut lines: Vec<&[u8]> = ids.iter().map(|id| id.as_bytes()).collect();
            let at = at.index(lines.len() + 1);
            lines.insert(at, &bad);
            match Quarantine::parse(&lines.join(&b'\n'), path()) {
                Err(QuarantineError::NotUtf8 { line, .. } | QuarantineError::BadLine { line, .. }) => {
                    prop_assert_eq!(line, at + 1);
                }
                other => prop_assert!(false, "{other:?}"),
            }
        }
    }
}
