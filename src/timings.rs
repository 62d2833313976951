//! How long tests take, and what ciq does with it: [`Scheduling`] orders a list longest first
//! by the estimates of earlier builds (the namespace's store in Redis, or [`Timings`] read from
//! a timing file a CI run kept), so the long tests start first and the short ones fill the gaps
//! at the end; [`Slower`] is a run much longer than its test's earlier ones.
//!
//! A timing file is ciq's own (`ciq run --timings-out`, `ciq report --timings-out`: one line per
//! test, `<milliseconds><TAB><test id>`, under a `# ciq timings v1` header) or a JUnit XML report
//! of an earlier run, whose `time` attributes are read by test id.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, Read};
use std::path::{Path, PathBuf};
use std::time::Duration;

use thiserror::Error;

use crate::junit;
use crate::report::output_file::{self, OutputError};
use crate::test_id::TestId;

/// The first line of ciq's timing file.
const HEADER: &str = "# ciq timings v1";

/// Most bytes of a timing file read: far above any real suite's (a million tests with long
/// ids take about 100 MiB). A file past it (or `/dev/zero`) is read this far, with a warning.
pub const MAX_BYTES: u64 = 256 * 1024 * 1024;
/// Most lines of ciq's timing file read: ten times a million-test suite's.
pub const MAX_LINES: usize = 10_000_000;

/// Why a timing file could not be used.
#[derive(Debug, Error)]
pub enum TimingsError {
    /// It could not be read.
    #[error("cannot read timing file `{path}`")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// It is not ciq's timing file.
    #[error("timing file `{path}`, line {line}: {reason}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// It is a JUnit report that cannot be read (the error names the line).
    #[error("timing file `{path}`")]
    Junit {
        /// The file.
        path: PathBuf,
        /// What is wrong, and where.
        #[source]
        source: junit::read::JunitError,
    },
    /// It is a JUnit report too big to read.
    #[error(
        "timing file `{path}` is a JUnit report over {} MiB, more than ciq reads",
        MAX_BYTES / 1024 / 1024
    )]
    JunitTooBig {
        /// The file.
        path: PathBuf,
    },
}

/// Durations of tests, from a timing file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Timings {
    estimates: HashMap<TestId, Duration>,
    /// Whether the file went on past [`MAX_BYTES`] or [`MAX_LINES`], unread.
    cut: bool,
}

/// How much of a timing file is read.
#[derive(Debug, Clone, Copy)]
struct Bounds {
    bytes: u64,
    lines: usize,
}

const BOUNDS: Bounds = Bounds {
    bytes: MAX_BYTES,
    lines: MAX_LINES,
};

/// The longest line of ciq's timing file: a duration, a tab and the longest test id.
const MAX_LINE: usize = crate::test_id::MAX_TEST_ID_BYTES + 32;

impl Timings {
    /// How many tests have one.
    pub fn len(&self) -> usize {
        self.estimates.len()
    }

    /// Whether none has one.
    pub fn is_empty(&self) -> bool {
        self.estimates.is_empty()
    }

    /// The duration of `id`, if the file has one.
    pub fn get(&self, id: &TestId) -> Option<Duration> {
        self.estimates.get(id).copied()
    }

    /// Every test's duration.
    pub fn into_map(self) -> HashMap<TestId, Duration> {
        self.estimates
    }

    /// Reads the durations of `ids` from a timing file: ciq's own, or JUnit XML (which names
    /// them in its own ways). Only the tests of `ids` are kept, and at most [`MAX_BYTES`] and
    /// [`MAX_LINES`] are read, so a huge file (or `/dev/zero`) costs no memory for what it
    /// holds beyond the suite.
    pub fn read(path: &Path, ids: &[TestId]) -> Result<Self, TimingsError> {
        let file = std::fs::File::open(path).map_err(|source| TimingsError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(
            std::io::BufReader::with_capacity(64 * 1024, file),
            path,
            ids,
            BOUNDS,
        )
    }

    /// Reads the timing file `reader` (from `path`) as [`Timings::read`] does, within `bounds`.
    fn parse(
        reader: impl BufRead,
        path: &Path,
        ids: &[TestId],
        bounds: Bounds,
    ) -> Result<Self, TimingsError> {
        let malformed = |line: usize, reason: &str| TimingsError::Malformed {
            path: path.to_owned(),
            line,
            reason: reason.to_owned(),
        };
        let io = |source| TimingsError::Io {
            path: path.to_owned(),
            source,
        };
        let wanted: HashSet<&str> = ids.iter().map(TestId::as_str).collect();
        // One byte past the bound tells a file that ends there from one that goes on.
        let mut reader = reader.take(bounds.bytes.saturating_add(1));
        let mut timings = Self::default();
        let mut line = Vec::new();
        let mut at = 0;
        let mut content = false;
        loop {
            line.clear();
            let limit = u64::try_from(MAX_LINE).unwrap_or(u64::MAX) + 2;
            if (&mut reader)
                .take(limit)
                .read_until(b'\n', &mut line)
                .map_err(io)?
                == 0
            {
                break;
            }
            at += 1;
            let bytes = if at == 1 {
                crate::lines::strip_bom(&line)
            } else {
                &line[..]
            };
            if !content && bytes.trim_ascii_start().starts_with(b"<") {
                // A JUnit report: one document, read whole (within the bound).
                let mut xml = b"\n".repeat(at - 1);
                xml.extend_from_slice(bytes);
                reader.read_to_end(&mut xml).map_err(io)?;
                if reader.limit() == 0 {
                    return Err(TimingsError::JunitTooBig {
                        path: path.to_owned(),
                    });
                }
                return Self::from_junit(&xml, path, ids);
            }
            if reader.limit() == 0 || at > bounds.lines {
                // A bound cut this line: it and the rest stay unread.
                timings.cut = true;
                break;
            }
            let text = std::str::from_utf8(bytes).map_err(|_| malformed(at, "not valid UTF-8"))?;
            let text = text.strip_suffix('\n').unwrap_or(text);
            if text.len() > MAX_LINE {
                return Err(malformed(
                    at,
                    &format!("longer than {MAX_LINE} bytes: not `<milliseconds><TAB><test id>`"),
                ));
            }
            let text = text.strip_suffix('\r').unwrap_or(text);
            if text.trim().is_empty() {
                continue;
            }
            content = true;
            if text.starts_with('#') {
                continue;
            }
            let (millis, id) = text
                .split_once('\t')
                .ok_or_else(|| malformed(at, "expected `<milliseconds><TAB><test id>`"))?;
            let millis: u64 = millis
                .trim()
                .parse()
                .map_err(|_| malformed(at, "the duration is not a whole number of milliseconds"))?;
            let id = TestId::new(id).map_err(|err| malformed(at, &format!("test id {err}")))?;
            if wanted.contains(id.as_str()) {
                timings.estimates.insert(id, Duration::from_millis(millis));
            }
        }
        Ok(timings)
    }

    fn from_junit(xml: &[u8], path: &Path, ids: &[TestId]) -> Result<Self, TimingsError> {
        let cases = junit::read::parse_bytes(xml).map_err(|source| TimingsError::Junit {
            path: path.to_owned(),
            source,
        })?;
        let estimates = ids
            .iter()
            .filter_map(|id| Some((id.clone(), cases.find(id.as_str())?.duration?)))
            .collect();
        Ok(Self {
            estimates,
            cut: false,
        })
    }
}

/// What the namespace's store knows of a list's tests.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stored {
    /// Its estimate of each test of the list, in order (empty when it knows none).
    pub each: Vec<Option<Duration>>,
    /// What the tests it gives no estimate for take at most, when it only gave the longest
    /// tests' (a big store, read by its longest only); otherwise they count as the median of
    /// the known ones.
    pub rest: Option<Duration>,
}

/// The unit whose tests a framework keeps together in the queue (pytest: the module), so the
/// batches that take them one after the other share what the framework sets up for it.
#[derive(Debug, Clone, Copy)]
pub struct Unit {
    /// What the unit is called, for a line of output (`module`).
    pub name: &'static str,
    /// The key of a test id's unit (pytest: the id up to its first `::`).
    pub of: fn(&str) -> &str,
}

/// How a list is ordered before it is queued.
#[derive(Debug, Clone, Default)]
pub struct Scheduling {
    /// A timing file of an earlier run (`--timings`), for tests the store does not know.
    pub timings_file: Option<PathBuf>,
    /// Keep each unit's tests together: units are ordered longest first, their tests in list
    /// order.
    pub keep_together: Option<Unit>,
}

impl Scheduling {
    /// The timing file's durations of `ids` (none without a file). A timing file that is
    /// missing or unreadable is a warning, never an error: estimates only make the build faster.
    pub fn read_file(&self, ids: &[TestId]) -> Timings {
        let Some(path) = &self.timings_file else {
            return Timings::default();
        };
        let timings = Timings::read(path, ids).unwrap_or_else(|err| {
            crate::say!(
                "ciq: warning: {}; tests are ordered without it",
                crate::human::error_chain(&err)
            );
            Timings::default()
        });
        if timings.cut {
            crate::say!(
                "ciq: warning: timing file `{}` goes on past {} MiB or {MAX_LINES} lines, the most ciq reads; the tests after that are ordered without it",
                path.display(),
                MAX_BYTES / 1024 / 1024
            );
        }
        timings
    }

    /// `ids` longest estimated first, by `stored` estimates filled in from the timing `file`;
    /// a test known to neither counts as the store's `rest`, else as the median of the known
    /// ones.
    pub fn order<'a>(&self, ids: &'a [TestId], stored: Stored, file: &Timings) -> Ordered<'a> {
        let mut estimates = stored.each;
        estimates.resize(ids.len(), None);
        for (estimate, id) in estimates.iter_mut().zip(ids) {
            if estimate.is_none() {
                *estimate = file.get(id);
            }
        }
        let mut known: Vec<Duration> = estimates.iter().flatten().copied().collect();
        if known.is_empty() {
            // Every test is alike: the list's own order is as good as any.
            return Ordered {
                ids: ids.iter().collect(),
                known: Vec::new(),
                default: None,
            };
        }
        let middle = known.len() / 2;
        let default = stored
            .rest
            .unwrap_or_else(|| *known.select_nth_unstable(middle).1);
        let filled: Vec<Duration> = estimates
            .iter()
            .map(|estimate| estimate.unwrap_or(default))
            .collect();
        let order = if let Some(unit) = self.keep_together {
            by_unit(ids, &filled, unit)
        } else {
            let mut order: Vec<usize> = (0..ids.len()).collect();
            order.sort_by_key(|&at| std::cmp::Reverse(filled[at]));
            order
        };
        crate::say!(
            "ciq: ordered {} tests longest first{} ({} with an estimate from earlier runs, the others taken as {})",
            ids.len(),
            self.keep_together
                .map(|unit| format!(" by {}", unit.name))
                .unwrap_or_default(),
            known.len(),
            crate::human::duration(default)
        );
        Ordered {
            ids: order.iter().map(|&at| &ids[at]).collect(),
            known: order.iter().map(|&at| estimates[at]).collect(),
            default: Some(default),
        }
    }
}

/// A test list in the order to queue it, with the estimates it was ordered by: auto batches
/// hold a bounded amount of estimated time.
#[derive(Debug, Clone, PartialEq)]
pub struct Ordered<'a> {
    /// The ids, longest estimated first.
    pub ids: Vec<&'a TestId>,
    /// The estimate from earlier runs of each id, in queue order (empty when none is known).
    pub known: Vec<Option<Duration>>,
    /// What a test without an estimate is taken to take; `None` without any history.
    pub default: Option<Duration>,
}

impl<'a> Ordered<'a> {
    /// The known estimates, longest first, at most `most` of them: a queue keeps those of its
    /// longest tests only, and every other test counts as the default.
    pub fn longest_known(&self, most: usize) -> Vec<(&'a TestId, Duration)> {
        let mut known: Vec<(&TestId, Duration)> = self
            .ids
            .iter()
            .zip(&self.known)
            .filter_map(|(id, estimate)| Some((*id, (*estimate)?)))
            .collect();
        known.sort_by_key(|(_, estimate)| std::cmp::Reverse(*estimate));
        known.truncate(most);
        known
    }
}

/// Positions of `ids` grouped by `unit`, units longest first by the sum of their tests'
/// `estimates`, each unit's tests in list order.
fn by_unit(ids: &[TestId], estimates: &[Duration], unit: Unit) -> Vec<usize> {
    let mut units: Vec<(Duration, Vec<usize>)> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    for (at, id) in ids.iter().enumerate() {
        let group = *index.entry((unit.of)(id.as_str())).or_insert_with(|| {
            units.push((Duration::ZERO, Vec::new()));
            units.len() - 1
        });
        units[group].0 = units[group].0.saturating_add(estimates[at]);
        units[group].1.push(at);
    }
    units.sort_by_key(|(total, _)| std::cmp::Reverse(*total));
    units.into_iter().flat_map(|(_, tests)| tests).collect()
}

/// A run that took much longer than the test's recent runs: worth a line in the report, as a
/// sign of a test (or a machine) going bad before it times out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slower {
    /// The test.
    pub id: TestId,
    /// This run.
    pub took: Duration,
    /// The slowest of its recent runs (or its time in the timing file).
    pub usual: Duration,
}

impl std::fmt::Display for Slower {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} took {} (its earlier runs: at most {})",
            self.id,
            crate::human::duration(self.took),
            crate::human::duration(self.usual)
        )
    }
}

impl Slower {
    /// The run of `id` that took `took`, if that is much longer than `usual`: three times as
    /// long, and a second longer at least (a 10 ms test taking 40 ms is noise).
    pub fn of(id: &TestId, took: Duration, usual: Duration) -> Option<Self> {
        let much =
            took >= usual.saturating_mul(3) && took >= usual.saturating_add(Duration::from_secs(1));
        much.then(|| Self {
            id: id.clone(),
            took,
            usual,
        })
    }
}

/// The `most` slowest of `slower` relative to their usual time, for a report's few lines.
pub fn worst(mut slower: Vec<Slower>, most: usize) -> Vec<Slower> {
    slower.sort_by(|a, b| {
        let ratio = |s: &Slower| s.took.as_secs_f64() / s.usual.as_secs_f64().max(1e-3);
        ratio(b).total_cmp(&ratio(a))
    });
    slower.truncate(most);
    slower
}

/// Writes ciq's timing file at `path`: one line per test of `durations`, as every output is
/// written ([`OutputFile`](output_file::OutputFile)): never half a file, and a failed write keeps the old one.
pub fn write(
    path: &Path,
    durations: impl IntoIterator<Item = (TestId, Duration)>,
) -> Result<(), OutputError> {
    output_file::write(path, render(durations).as_bytes())
}

/// ciq's timing file of `durations`: the header, then `<milliseconds><TAB><test id>` lines.
fn render(durations: impl IntoIterator<Item = (TestId, Duration)>) -> String {
    use std::fmt::Write as _;
    let mut text = format!("{HEADER}\n");
    for (id, duration) in durations {
        // Writing into a String cannot fail.
        let _ = writeln!(text, "{}\t{id}", duration.as_millis());
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(name: &str) -> TestId {
        TestId::new(name).unwrap()
    }

    fn ms(ms: u64) -> Option<Duration> {
        Some(Duration::from_millis(ms))
    }

    fn names(order: Ordered<'_>) -> Vec<&str> {
        order.ids.into_iter().map(TestId::as_str).collect()
    }

    #[test]
    fn the_longest_go_first_and_unknown_tests_take_the_median() {
        let ids = vec![id("short"), id("new"), id("long"), id("mid")];
        let scheduling = Scheduling::default();
        let each = vec![ms(10), None, ms(3000), ms(500)];
        let stored = Stored {
            each: each.clone(),
            rest: None,
        };
        assert_eq!(
            names(scheduling.order(&ids, stored, &Timings::default())),
            ["long", "new", "mid", "short"]
        );
        let unknown = scheduling.order(&ids, Stored::default(), &Timings::default());
        assert_eq!(
            unknown.ids,
            ids.iter().collect::<Vec<_>>(),
            "without estimates the list's order stands"
        );
        assert_eq!(unknown.default, None);
        let ordered = scheduling.order(
            &ids,
            Stored {
                each: each.clone(),
                rest: None,
            },
            &Timings::default(),
        );
        assert_eq!(ordered.default, ms(500), "the median of the known");
        assert_eq!(
            ordered.longest_known(2),
            [
                (&ids[2], Duration::from_millis(3000)),
                (&ids[3], Duration::from_millis(500))
            ]
        );
        // A store read by its longest tests only: the others take at most its shortest of those.
        let stored = Stored { each, rest: ms(1) };
        assert_eq!(
            names(scheduling.order(&ids, stored, &Timings::default())),
            ["long", "mid", "short", "new"]
        );
    }

    /// pytest: a module's tests stay together and in list order (its fixtures are shared by
    /// the batches that take them), modules longest first.
    #[test]
    fn modules_stay_together_longest_module_first() {
        let ids = vec![
            id("a.py::t1"),
            id("a.py::t2"),
            id("b.py::C::fast"),
            id("b.py::C::slow"),
            id("c.py::new"),
        ];
        let scheduling = Scheduling {
            keep_together: Some(Unit {
                name: "module",
                of: |id| id.split("::").next().unwrap_or(id),
            }),
            ..Scheduling::default()
        };
        let stored = Stored {
            each: vec![ms(100), ms(100), ms(1), ms(2000), None],
            rest: None,
        };
        assert_eq!(
            names(scheduling.order(&ids, stored, &Timings::default())),
            [
                "b.py::C::fast",
                "b.py::C::slow",
                "a.py::t1",
                "a.py::t2",
                "c.py::new"
            ]
        );
    }

    #[test]
    fn timing_files_round_trip_and_junit_is_read_by_test_id() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("timings.tsv");
        write(
            &path,
            [
                (id("a b\tc"), Duration::from_millis(1500)),
                (id("t"), Duration::from_millis(7)),
            ],
        )
        .unwrap();
        let read = Timings::read(&path, &[id("a b\tc"), id("t"), id("new")]).unwrap();
        assert_eq!(read.get(&id("a b\tc")), Some(Duration::from_millis(1500)));
        assert_eq!(read.len(), 2);
        // Only the tests of the list are kept.
        assert_eq!(Timings::read(&path, &[id("t")]).unwrap().len(), 1);
        let junit = dir.path().join("junit.xml");
        std::fs::write(
            &junit,
            r#"<testsuite><testcase classname="tests.test_x" name="test_a" time="0.25"/></testsuite>"#,
        )
        .unwrap();
        let read = Timings::read(&junit, &[id("tests/test_x.py::test_a"), id("gone")]).unwrap();
        assert_eq!(
            read.get(&id("tests/test_x.py::test_a")),
            Some(Duration::from_millis(250))
        );
        assert_eq!(read.len(), 1);
        std::fs::write(&path, "# ciq timings v1\nfast\tt\n").unwrap();
        let err = Timings::read(&path, &[]).unwrap_err().to_string();
        assert!(
            err.contains("line 2: the duration is not a whole number"),
            "{err}"
        );
        std::fs::write(&path, b"# ciq timings v1\n5\tok\n5\tbad\xff\n").unwrap();
        let err = Timings::read(&path, &[]).unwrap_err().to_string();
        assert!(err.ends_with("line 3: not valid UTF-8"), "{err}");
        // Regression: a JUnit file's error always said line 1.
        std::fs::write(
            &junit,
            "<testsuite>\n<testcase name=\"a\"/>\n<testcase/>\n</testsuite>",
        )
        .unwrap();
        let err = crate::human::error_chain(&Timings::read(&junit, &[]).unwrap_err());
        assert!(
            err.ends_with("junit.xml`: malformed JUnit XML, line 3: a <testcase> has no name"),
            "{err}"
        );
    }

    fn parse(bytes: &[u8], ids: &[TestId], bytes_read: u64, lines: usize) -> Timings {
        let bounds = Bounds {
            bytes: bytes_read,
            lines,
        };
        Timings::parse(bytes, Path::new("t.tsv"), ids, bounds).unwrap()
    }

    /// Regression: `--timings /dev/zero` read until memory ran out, and a huge file cost memory
    /// in proportion. What is read is bounded; what was read before the bound is kept.
    #[test]
    fn what_is_read_is_bounded() {
        let ids = [id("a"), id("b"), id("c")];
        let text = b"# ciq timings v1\n5\ta\n6\tb\n7\tc\n";
        let whole = parse(text, &ids, 1000, 1000);
        assert_eq!((whole.len(), whole.cut), (3, false));
        let lines = parse(text, &ids, 1000, 3);
        assert_eq!((lines.len(), lines.cut), (2, true));
        // Cut inside `7\tc`: that line is not read.
        let bytes = parse(text, &ids, text.len() as u64 - 2, 1000);
        assert_eq!((bytes.len(), bytes.cut), (2, true));
        assert!(!parse(text, &ids, text.len() as u64, 1000).cut);
        let zero = std::fs::File::open("/dev/zero").unwrap();
        let err = Timings::parse(
            std::io::BufReader::new(zero),
            Path::new("/dev/zero"),
            &ids,
            BOUNDS,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("line 1: longer than"), "{err}");
        let junit = b"<testsuite><testcase name=\"a\" time=\"1\"/></testsuite>";
        let err = Timings::parse(
            &junit[..],
            Path::new("j.xml"),
            &ids,
            Bounds {
                bytes: 20,
                lines: 9,
            },
        );
        assert!(
            matches!(err, Err(TimingsError::JunitTooBig { .. })),
            "{err:?}"
        );
    }

    #[test]
    fn a_byte_order_mark_is_not_read() {
        let ids = [id("a")];
        let ours = parse(
            b"\xEF\xBB\xBF# ciq timings v1\r\n5\ta\r\n",
            &ids,
            1000,
            1000,
        );
        assert_eq!(ours.get(&id("a")), Some(Duration::from_millis(5)));
        let junit = parse(
            b"\xEF\xBB\xBF\n<testsuite><testcase name=\"a\" time=\"1\"/></testsuite>",
            &ids,
            1000,
            1000,
        );
        assert_eq!(junit.get(&id("a")), Some(Duration::from_secs(1)));
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;
    use proptest::sample::Index;

    use super::*;
    use crate::property_testing::{config, distinct_test_ids, noisy_bytes};

    fn path() -> &'static Path {
        Path::new("timings.tsv")
    }

    /// A line of a timing file that is not a comment, blank, or `<milliseconds><TAB><test id>`.
    fn bad_line() -> impl Strategy<Value = Vec<u8>> {
        prop::sample::select(vec![
            &b"fast\tt"[..],
            b"12 t",
            b"12",
            b"12\t",
            b"12\t \t",
            b"-5\tt",
            b"1.5\tt",
            b"18446744073709551616\tt",
            b"12\ta\0b",
            b"12\ta\rb",
            b"12\tt\xff",
        ])
        .prop_map(<[u8]>::to_vec)
    }

    proptest! {
        #![proptest_config(config())]

        /// Any bytes are durations of valid ids or an error naming a line that exists.
        #[test]
        fn any_bytes_are_timings_or_an_error_naming_the_line(bytes in noisy_bytes()) {
            let lines = bytes.split(|&byte| byte == b'\n').count();
            match Timings::parse(&bytes[..], path(), &[], BOUNDS) {
                Ok(_) => {}
                Err(TimingsError::Malformed { line, .. }) => {
                    prop_assert!((1..=lines).contains(&line), "line {line} of {lines}");
                }
                Err(err @ TimingsError::Junit { .. }) => prop_assert!(bytes.trim_ascii_start().starts_with(b"<"), "{err}"),
                Err(err @ (TimingsError::Io { .. } | TimingsError::JunitTooBig { .. })) => prop_assert!(false, "{err}"),
            }
        }

        /// A timing file ciq wrote reads back as the durations it holds, in whole milliseconds.
        #[test]
        fn written_files_read_back(
            ids in distinct_test_ids(0..12),
            millis in prop::collection::vec(any::<u64>(), 12),
            nanos in prop::collection::vec(0..1_000_000u32, 12),
        ) {
            let durations: Vec<(TestId, Duration)> = ids
                .iter()
                .zip(millis.iter().zip(&nanos))
                .map(|(id, (&ms, &ns))| {
                    let id = TestId::new(id.as_str()).map_err(|err| TestCaseError::fail(err.to_string()))?;
                    Ok((id, Duration::from_millis(ms) + Duration::from_nanos(ns.into())))
                })
                .collect::<Result<_, TestCaseError>>()?;
            let ids: Vec<TestId> = durations.iter().map(|(id, _)| id.clone()).collect();
            let read = Timings::parse(render(durations.clone()).as_bytes(), path(), &ids, BOUNDS)
                .map_err(|err| TestCaseError::fail(err.to_string()))?;
            prop_assert_eq!(read.len(), durations.len());
            for (id, duration) in &durations {
                let whole = Duration::from_millis(duration.as_millis().try_into().unwrap_or(u64::MAX));
                prop_assert_eq!(read.get(id), Some(whole));
            }
        }

        /// A timing file with one bad line fails naming that line.
        #[test]
        fn one_bad_line_is_named(
            ids in distinct_test_ids(0..12),
            at in any::<Index>(),
            bad in bad_line(),
        ) {
            let durations = ids
                .iter()
                .filter_map(|id| Some((TestId::new(id.as_str()).ok()?, Duration::from_millis(7))));
            let text = render(durations);
            let mut lines: Vec<&[u8]> = text.as_bytes().split(|&byte| byte == b'\n').collect();
            // After the header, before the empty "line" after the final newline.
            let at = 1 + at.index(lines.len() - 1);
            lines.insert(at, &bad);
            match Timings::parse(&lines.join(&b'\n')[..], path(), &[], BOUNDS) {
                Err(TimingsError::Malformed { line, .. }) => prop_assert_eq!(line, at + 1),
                other => prop_assert!(false, "{other:?}"),
            }
        }
    }
}
