//! How long tests take, and what ciq does with it: [`Scheduling`] orders a list longest first
//! by the estimates of earlier builds (the namespace's store in Redis, or [`Timings`] read from
//! a timing file a CI run kept), so the long tests start first and the short ones fill the gaps
//! at the end; [`Slower`] is a run much longer than its test's earlier ones.
//!
//! A timing file is ciq's own (`ciq run --timings-out`, `ciq report --timings-out`: one line per
//! test, `<milliseconds><TAB><test id>`, under a `# ciq timings v1` header, and a
//! `# failed<TAB><test id>` line per test that failed or was flaky, which older readers skip as a
//! comment) or a JUnit XML report of an earlier run, whose `time` attributes are read by test id
//! (and whose failures and errors are its failed tests). `--order failed-first` runs the tests a
//! local run's timing file names failed first.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, Read};
use std::path::{Path, PathBuf};
use std::time::Duration;

use thiserror::Error;

use crate::groups::Groups;
use crate::junit;
use crate::report::output_file::{self, OutputError};
use crate::test_id::TestId;

/// The first line of ciq's timing file.
const HEADER: &str = "# ciq timings v1";
/// What starts the line of a test that failed or was flaky in ciq's timing file: a comment to
/// a reader that does not know it.
const FAILED: &str = "# failed\t";

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
    /// The tests that failed or were flaky in the run the file is of.
    failed: HashSet<TestId>,
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

    /// The tests of the list that failed or were flaky in the run the file is of.
    pub fn failed(&self) -> &HashSet<TestId> {
        &self.failed
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
            if let Some(id) = text.strip_prefix(FAILED) {
                let id = TestId::new(id).map_err(|err| malformed(at, &format!("test id {err}")))?;
                if wanted.contains(id.as_str()) {
                    timings.failed.insert(id);
                }
                continue;
            }
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
        let failed = ids
            .iter()
            .filter(|id| {
                cases.find(id.as_str()).is_some_and(|case| {
                    matches!(
                        case.outcome,
                        crate::outcome::Outcome::Failed | crate::outcome::Outcome::Errored
                    )
                })
            })
            .cloned()
            .collect();
        Ok(Self {
            estimates,
            failed,
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

/// Which tests a queue hands out first (`--order`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    /// Longest estimated first: the long tests start first and the short ones fill the gaps at
    /// the end, the shortest build.
    #[default]
    LongestFirst,
    /// The tests that failed or were flaky in recent builds first, then longest first: a build
    /// broken by a known failure goes red at once (and `--max-failures` ends it).
    FailedFirst,
    /// Shuffled by `seed` from the sorted list, so the same seed gives the same order whatever
    /// the list's own order or the history: for hunting tests that depend on others' order.
    Random {
        /// The seed.
        seed: u64,
    },
}

impl Order {
    /// A seed for `--order random` without `--seed`: at most nine digits, short enough to type
    /// again.
    pub fn random_seed() -> u64 {
        uuid::Uuid::new_v4().as_u64_pair().0 % 1_000_000_000
    }
}

impl std::fmt::Display for Order {
    /// As given on the command line: `random --seed 42` repeats a random order.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Order::LongestFirst => f.write_str("longest-first"),
            Order::FailedFirst => f.write_str("failed-first"),
            Order::Random { seed } => write!(f, "random --seed {seed}"),
        }
    }
}

/// How a list is ordered before it is queued.
#[derive(Debug, Clone, Default)]
pub struct Scheduling {
    /// A timing file of an earlier run (`--timings`), for tests the store does not know.
    pub timings_file: Option<PathBuf>,
    /// Keep each unit's tests together: units are ordered longest first, their tests in list
    /// order.
    pub keep_together: Option<Unit>,
    /// Which tests go first.
    pub order: Order,
    /// Build-wide resource groups: which tests may not run at once beyond a limit.
    pub groups: Groups,
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

    /// `ids` in [`Scheduling::order`]'s order, by `stored` estimates filled in from the timing
    /// `file`; a test known to neither counts as the store's `rest`, else as the median of the
    /// known ones. Failed first puts first the tests that failed or were flaky in the `file`'s
    /// run or in the store's `recent` builds.
    pub fn order<'a>(
        &self,
        ids: &'a [TestId],
        stored: Stored,
        file: &Timings,
        recent: &HashSet<TestId>,
    ) -> Ordered<'a> {
        let mut estimates = stored.each;
        estimates.resize(ids.len(), None);
        for (estimate, id) in estimates.iter_mut().zip(ids) {
            if estimate.is_none() {
                *estimate = file.get(id);
            }
        }
        let mut known: Vec<Duration> = estimates.iter().flatten().copied().collect();
        let default = (!known.is_empty()).then(|| {
            let middle = known.len() / 2;
            stored
                .rest
                .unwrap_or_else(|| *known.select_nth_unstable(middle).1)
        });
        // Without any estimate every test is alike, and the list's own order is as good as any.
        let filled: Vec<Duration> = estimates
            .iter()
            .map(|estimate| estimate.or(default).unwrap_or_default())
            .collect();
        let unit = self.keep_together;
        let by = unit
            .map(|unit| format!(" by {}", unit.name))
            .unwrap_or_default();
        let history = default.map(|default| {
            format!(
                " ({} with an estimate from earlier runs, the others taken as {})",
                known.len(),
                crate::human::duration(default)
            )
        });
        let failed = |at: usize| file.failed.contains(&ids[at]) || recent.contains(&ids[at]);
        let failing = self.order == Order::FailedFirst && (0..ids.len()).any(failed);
        let order = match self.order {
            Order::FailedFirst if failing => {
                let (order, first) = failed_first(longest_first(ids, &filled, unit), failed);
                crate::say!(
                    "ciq: ordered {} tests failed first{by}: {first} that failed or were flaky in recent builds, then longest first{}",
                    ids.len(),
                    history
                        .as_deref()
                        .unwrap_or(" (no estimate from earlier runs)")
                );
                order
            }
            // Without a known failure, failed first is longest first.
            Order::LongestFirst | Order::FailedFirst => {
                if let Some(history) = &history {
                    crate::say!(
                        "ciq: ordered {} tests longest first{by}{history}",
                        ids.len()
                    );
                }
                longest_first(ids, &filled, unit).concat()
            }
            Order::Random { seed } => {
                crate::say!(
                    "ciq: ordered {} tests at random{by}, seed {seed} (`--order random --seed {seed}` repeats the order)",
                    ids.len()
                );
                shuffled(ids, unit, seed)
            }
        };
        Ordered {
            ids: order.iter().map(|&at| &ids[at]).collect(),
            known: if default.is_some() {
                order.iter().map(|&at| estimates[at]).collect()
            } else {
                Vec::new()
            },
            default,
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

/// Positions of `ids` in groups, longest first: each test alone, or with `unit` each unit's
/// tests (in list order), units by the sum of their tests' `estimates`. A sort that keeps ties
/// in list order: without estimates, the list's own order.
fn longest_first(ids: &[TestId], estimates: &[Duration], unit: Option<Unit>) -> Vec<Vec<usize>> {
    let mut groups: Vec<(Duration, Vec<usize>)> = match unit {
        Some(unit) => grouped(0..ids.len(), ids, unit)
            .into_iter()
            .map(|tests| {
                let total = tests
                    .iter()
                    .fold(Duration::ZERO, |sum, &at| sum.saturating_add(estimates[at]));
                (total, tests)
            })
            .collect(),
        None => (0..ids.len()).map(|at| (estimates[at], vec![at])).collect(),
    };
    groups.sort_by_key(|(total, _)| std::cmp::Reverse(*total));
    groups.into_iter().map(|(_, tests)| tests).collect()
}

/// The `positions` of `ids` grouped by `unit`, the groups in the order of their first test,
/// each group's tests in the order given.
fn grouped(positions: impl Iterator<Item = usize>, ids: &[TestId], unit: Unit) -> Vec<Vec<usize>> {
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    for at in positions {
        let group = *index.entry((unit.of)(ids[at].as_str())).or_insert_with(|| {
            groups.push(Vec::new());
            groups.len() - 1
        });
        groups[group].push(at);
    }
    groups
}

/// The `groups` (longest first) with those holding a `failed` test first, and a group's failed
/// tests first within it; otherwise in the order given. Also how many tests failed.
fn failed_first(groups: Vec<Vec<usize>>, failed: impl Fn(usize) -> bool) -> (Vec<usize>, usize) {
    let (mut first, rest): (Vec<Vec<usize>>, Vec<Vec<usize>>) = groups
        .into_iter()
        .partition(|tests| tests.iter().any(|&at| failed(at)));
    for tests in &mut first {
        tests.sort_by_key(|&at| !failed(at));
    }
    let count = first.iter().flatten().filter(|&&at| failed(at)).count();
    (first.into_iter().chain(rest).flatten().collect(), count)
}

/// Positions of `ids` shuffled by `seed`: sorted by id, grouped by `unit` (each test alone
/// without one), then the groups shuffled and each group's tests. Nothing but the set of ids and
/// the seed decides the order.
fn shuffled(ids: &[TestId], unit: Option<Unit>, seed: u64) -> Vec<usize> {
    let mut sorted: Vec<usize> = (0..ids.len()).collect();
    sorted.sort_by(|&a, &b| ids[a].cmp(&ids[b]));
    let mut groups = match unit {
        Some(unit) => grouped(sorted.into_iter(), ids, unit),
        None => sorted.into_iter().map(|at| vec![at]).collect(),
    };
    let mut random = SplitMix64(seed);
    random.shuffle(&mut groups);
    for tests in &mut groups {
        random.shuffle(tests);
    }
    groups.concat()
}

/// SplitMix64, a small generator whose sequence is fixed by its definition: a seed gives the
/// same order in every version of ciq and on every machine, which a library's generator does
/// not promise.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number below `n`, by multiplying (Lemire's method, without its rejection step: the
    /// bias is below n / 2^64).
    fn below(&mut self, n: usize) -> usize {
        let wide = u128::from(self.next()) * n as u128;
        usize::try_from(wide >> 64).unwrap_or(0)
    }

    /// Fisher-Yates.
    fn shuffle<T>(&mut self, items: &mut [T]) {
        for last in (1..items.len()).rev() {
            let other = self.below(last + 1);
            items.swap(last, other);
        }
    }
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
    failed: &[TestId],
) -> Result<(), OutputError> {
    output_file::write(path, render(durations, failed).as_bytes())
}

/// ciq's timing file of `durations`: the header, then `<milliseconds><TAB><test id>` lines,
/// then a `# failed<TAB><test id>` line per test of `failed`.
fn render(durations: impl IntoIterator<Item = (TestId, Duration)>, failed: &[TestId]) -> String {
    use std::fmt::Write as _;
    let mut text = format!("{HEADER}\n");
    for (id, duration) in durations {
        // Writing into a String cannot fail.
        let _ = writeln!(text, "{}\t{id}", duration.as_millis());
    }
    for id in failed {
        let _ = writeln!(text, "{FAILED}{id}");
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
            names(scheduling.order(&ids, stored, &Timings::default(), &HashSet::new())),
            ["long", "new", "mid", "short"]
        );
        let unknown = scheduling.order(
            &ids,
            Stored::default(),
            &Timings::default(),
            &HashSet::new(),
        );
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
            &HashSet::new(),
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
            names(scheduling.order(&ids, stored, &Timings::default(), &HashSet::new())),
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
            names(scheduling.order(&ids, stored, &Timings::default(), &HashSet::new())),
            [
                "b.py::C::fast",
                "b.py::C::slow",
                "a.py::t1",
                "a.py::t2",
                "c.py::new"
            ]
        );
    }

    /// Failed first: the failed tests (their modules, with a unit) go first, the failed tests
    /// first within their module, the rest longest first; no failure is longest first.
    #[test]
    fn failed_tests_and_their_modules_go_first() {
        let ids = vec![
            id("a.py::t1"),
            id("a.py::t2"),
            id("b.py::fast"),
            id("b.py::slow"),
            id("c.py::x"),
        ];
        let stored = || Stored {
            each: vec![ms(100), ms(300), ms(1), ms(2000), ms(5)],
            rest: None,
        };
        let failed: HashSet<TestId> = [id("a.py::t2"), id("c.py::x")].into_iter().collect();
        let plain = Scheduling {
            order: Order::FailedFirst,
            ..Scheduling::default()
        };
        assert_eq!(
            names(plain.order(&ids, stored(), &Timings::default(), &failed)),
            [
                "a.py::t2",
                "c.py::x",
                "b.py::slow",
                "a.py::t1",
                "b.py::fast"
            ]
        );
        let by_module = Scheduling {
            keep_together: Some(Unit {
                name: "module",
                of: |id| id.split("::").next().unwrap_or(id),
            }),
            ..plain.clone()
        };
        assert_eq!(
            names(by_module.order(&ids, stored(), &Timings::default(), &failed)),
            [
                "a.py::t2",
                "a.py::t1",
                "c.py::x",
                "b.py::fast",
                "b.py::slow"
            ]
        );
        // The timing file's failures count as the store's.
        let file = Timings {
            failed: [id("b.py::fast")].into_iter().collect(),
            ..Timings::default()
        };
        assert_eq!(
            names(plain.order(&ids, stored(), &file, &HashSet::new()))[0],
            "b.py::fast"
        );
        let longest = Scheduling::default();
        assert_eq!(
            names(plain.order(&ids, stored(), &Timings::default(), &HashSet::new())),
            names(longest.order(&ids, stored(), &Timings::default(), &HashSet::new()))
        );
    }

    /// Random: fixed by the seed and the set of ids alone (not the list's order, not the
    /// history), another seed another order, modules kept together.
    #[test]
    fn a_seed_fixes_a_random_order_and_modules_stay_together() {
        let ids: Vec<TestId> = (0..40)
            .map(|n| id(&format!("m{}.py::t{n:02}", n % 5)))
            .collect();
        let random = |seed| Scheduling {
            order: Order::Random { seed },
            ..Scheduling::default()
        };
        let none = || Stored::default();
        let seven = names(random(7).order(&ids, none(), &Timings::default(), &HashSet::new()));
        let mut reversed = ids.clone();
        reversed.reverse();
        let history = Stored {
            each: (0..40).map(|n| ms(n * 10)).collect(),
            rest: None,
        };
        assert_eq!(
            names(random(7).order(&reversed, history, &Timings::default(), &HashSet::new())),
            seven
        );
        assert_ne!(
            names(random(8).order(&ids, none(), &Timings::default(), &HashSet::new())),
            seven
        );
        let sorted: Vec<&str> = ids.iter().map(TestId::as_str).collect();
        assert_ne!(seven, sorted);
        let by_module = Scheduling {
            keep_together: Some(Unit {
                name: "module",
                of: |id| id.split("::").next().unwrap_or(id),
            }),
            ..random(7)
        };
        let order = names(by_module.order(&ids, none(), &Timings::default(), &HashSet::new()));
        let modules: Vec<&str> = order.iter().map(|t| &t[..5]).collect();
        let mut changes = modules.windows(2).filter(|w| w[0] != w[1]).count();
        changes += 1;
        assert_eq!(changes, 5, "each module's tests together: {order:?}");
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
            &[id("t")],
        )
        .unwrap();
        let read = Timings::read(&path, &[id("a b\tc"), id("t"), id("new")]).unwrap();
        assert_eq!(read.get(&id("a b\tc")), Some(Duration::from_millis(1500)));
        assert_eq!(
            read.failed(),
            &[id("t")].into_iter().collect::<HashSet<_>>()
        );
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
            // Every other test failed.
            let failed: Vec<TestId> = ids.iter().step_by(2).cloned().collect();
            let read = Timings::parse(render(durations.clone(), &failed).as_bytes(), path(), &ids, BOUNDS)
                .map_err(|err| TestCaseError::fail(err.to_string()))?;
            prop_assert_eq!(read.len(), durations.len());
            prop_assert_eq!(read.failed(), &failed.iter().cloned().collect::<HashSet<_>>());
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
            let text = render(durations, &[]);
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
