//! [`OrderLog`]: the order in which each worker ran its tests, one `<worker>\t<test>` line per
//! test as its run starts, so `ciq bisect` can replay what ran before a failure in one process,
//! and a `# order: <order>` line for the order the build's tests were queued in (`--order`, a
//! random one with its seed).
//!
//! A test that fails only after some other test ran in the same process (a module global, a
//! file, an environment variable left behind) fails by the luck of the queue; the order it ran
//! in is the one thing needed to find the culprit, and a worker knows it only while it runs.
//!
//! Without `--order-log`, every run logs to a new file in a directory of ciq's own
//! ([`default_dir`]) and keeps it only when a run it logged failed (the only case `ciq bisect`
//! has a use for it), and that directory keeps its newest [`KEPT`] logs.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use thiserror::Error;

use crate::test_id::TestId;

/// How many order logs the default directory keeps, the newest: older ones are removed when a
/// run ends.
pub const KEPT: usize = 20;

/// What starts the line of the order the tests were queued in. No worker's line starts so:
/// it would hold a tab after the worker id.
const ORDER: &str = "# order: ";

/// An order log being written.
#[derive(Debug)]
pub struct OrderLog {
    path: PathBuf,
    file: Mutex<File>,
    /// Whether a failed write was warned about already.
    warned: AtomicBool,
    /// Whether a run logged here failed.
    failed: AtomicBool,
    /// Whether ciq chose the file: then it is kept only if a run failed.
    default: bool,
}

/// Why an order log cannot be written or read.
#[derive(Debug, Error)]
pub enum OrderLogError {
    /// The file cannot be created, written or read.
    #[error("order log `{}`", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A line is not `<worker>\t<test>`.
    #[error("order log `{}`, line {line}: not `<worker>\\t<test id>`", .path.display())]
    BadLine {
        /// The file.
        path: PathBuf,
        /// The line, from 1.
        line: usize,
    },
}

/// The directory of ciq's order logs: `$XDG_CACHE_HOME/ciq/order-logs`, else
/// `$HOME/.cache/ciq/order-logs`, else `ciq-order-logs-<uid>` in the temporary directory.
pub fn default_dir() -> PathBuf {
    let absolute = |name: &str| {
        std::env::var_os(name)
            .map(PathBuf::from)
            .filter(|path| path.is_absolute())
    };
    absolute("XDG_CACHE_HOME")
        .or_else(|| absolute("HOME").map(|home| home.join(".cache")))
        .map(|cache| cache.join("ciq").join("order-logs"))
        .unwrap_or_else(|| {
            std::env::temp_dir().join(format!("ciq-order-logs-{}", nix::unistd::getuid()))
        })
}

impl OrderLog {
    /// Creates (or empties) the log at `path`, which is kept whatever happens.
    pub fn create(path: &Path) -> Result<Self, OrderLogError> {
        let file = File::create(path).map_err(|source| OrderLogError::Io {
            path: path.to_owned(),
            source,
        })?;
        Ok(Self::new(path.to_owned(), file, false))
    }

    fn new(path: PathBuf, file: File, default: bool) -> Self {
        Self {
            path,
            file: Mutex::new(file),
            warned: AtomicBool::new(false),
            failed: AtomicBool::new(false),
            default,
        }
    }

    /// The default log: a new file in [`default_dir`], under a name nobody can guess (created
    /// only if it does not exist, in a directory only this user can write, so a link planted
    /// there is never followed). `None`, with a warning, when it cannot be created: the run
    /// goes on without a log.
    pub fn create_default() -> Option<Self> {
        let dir = default_dir();
        let path = dir.join(format!("ciq-order-{}.log", uuid::Uuid::new_v4().simple()));
        let created = std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .and_then(|()| own_directory(&dir))
            .and_then(|()| {
                std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&path)
            });
        match created {
            Ok(file) => Some(Self::new(path, file, true)),
            Err(err) => {
                crate::say!(
                    "ciq: warning: no order log (for ciq bisect): cannot create `{}`: {err} (name one with --order-log FILE)",
                    path.display()
                );
                None
            }
        }
    }

    /// Where the log is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Logs that `worker` starts running `ids`, in this order. A log that cannot be written is
    /// a warning once, never a failed build.
    pub fn record(&self, worker: &str, ids: &[TestId]) {
        let lines = lines(worker, ids);
        let mut file = self
            .file
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Err(err) = file.write_all(lines.as_bytes())
            && !self.warned.swap(true, Ordering::Relaxed)
        {
            crate::say!(
                "ciq: warning: cannot write the order log `{}`: {err}",
                self.path.display()
            );
        }
    }

    /// Writes the order the tests were queued in (`--order`, a random one with its seed) as a
    /// `# order: <order>` line, which [`before`] skips: the log says how to queue them so again.
    pub fn note_order(&self, order: &str) {
        let mut file = self
            .file
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Err(err) = writeln!(file, "{ORDER}{order}")
            && !self.warned.swap(true, Ordering::Relaxed)
        {
            crate::say!(
                "ciq: warning: cannot write the order log `{}`: {err}",
                self.path.display()
            );
        }
    }

    /// Notes that a run logged here failed or errored: the log is worth keeping.
    pub fn note_failure(&self) {
        self.failed.store(true, Ordering::Relaxed);
    }

    /// Ends the run's log: a default log without a failed run is removed, one with a failed
    /// run is kept and named, and the default directory keeps its newest [`KEPT`] logs.
    pub fn end(&self) {
        if !self.default {
            return;
        }
        if self.failed.load(Ordering::Relaxed) {
            crate::say!(
                "ciq: the order tests ran in is kept in `{}` for `ciq bisect --order-log {} --failing-test ID` (the newest {KEPT} such logs are kept)",
                self.path.display(),
                self.path.display()
            );
        } else {
            let _ = std::fs::remove_file(&self.path);
        }
        if let Some(dir) = self.path.parent() {
            prune(dir, KEPT);
        }
    }
}

/// Fails unless `dir` is a real directory (not a link) of this user that no one else can
/// write: in a shared temporary directory, someone else may have made it first.
fn own_directory(dir: &Path) -> std::io::Result<()> {
    let meta = std::fs::symlink_metadata(dir)?;
    let uid = nix::unistd::getuid().as_raw();
    if meta.is_dir() && meta.uid() == uid && meta.mode() & 0o022 == 0 {
        Ok(())
    } else {
        Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!(
                "`{}` is not a directory of this user that only it can write",
                dir.display()
            ),
        ))
    }
}

/// Removes all but the newest `keep` order logs of `dir`.
fn prune(dir: &Path, keep: usize) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut logs: Vec<(std::time::SystemTime, PathBuf)> = entries
        .flatten()
        .filter(|entry| {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            name.starts_with("ciq-order-") && name.ends_with(".log")
        })
        .filter_map(|entry| Some((entry.metadata().ok()?.modified().ok()?, entry.path())))
        .collect();
    logs.sort_by_key(|(modified, _)| std::cmp::Reverse(*modified));
    for (_, old) in logs.into_iter().skip(keep) {
        let _ = std::fs::remove_file(old);
    }
}

/// The log's lines saying that `worker` starts running `ids`.
fn lines(worker: &str, ids: &[TestId]) -> String {
    let mut lines = String::new();
    for id in ids {
        lines.push_str(worker);
        lines.push('\t');
        lines.push_str(id.as_str());
        lines.push('\n');
    }
    lines
}

/// The tests `worker` ran before the first run of `failing`, in order, read from the log at
/// `path`; `worker` defaults to the first worker that ran `failing`. `None` when the log holds
/// no run of `failing` (by that worker).
pub fn before(
    path: &Path,
    failing: &TestId,
    worker: Option<&str>,
) -> Result<Option<(String, Vec<TestId>)>, OrderLogError> {
    let bytes = std::fs::read(path).map_err(|source| OrderLogError::Io {
        path: path.to_owned(),
        source,
    })?;
    before_in(&bytes, path, failing, worker)
}

/// [`before`], over the log's `bytes` (read from `path`).
fn before_in(
    bytes: &[u8],
    path: &Path,
    failing: &TestId,
    worker: Option<&str>,
) -> Result<Option<(String, Vec<TestId>)>, OrderLogError> {
    let mut runs: Vec<(String, TestId)> = Vec::new();
    let lines: Vec<&[u8]> = crate::lines::strip_bom(bytes)
        .split(|&byte| byte == b'\n')
        .collect();
    for (index, line) in lines.iter().enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let parsed = std::str::from_utf8(line)
            .ok()
            .and_then(|line| line.split_once('\t'))
            .and_then(|(who, test)| Some((who.to_owned(), TestId::new(test).ok()?)));
        match parsed {
            Some(run) => runs.push(run),
            None if line.starts_with(ORDER.as_bytes()) && !line.contains(&b'\t') => {}
            // A worker killed while it wrote leaves its last line cut short, maybe inside a
            // character; a complete log ends with a newline, so its last "line" is empty.
            None if index + 1 == lines.len() => {}
            None => {
                return Err(OrderLogError::BadLine {
                    path: path.to_owned(),
                    line: index + 1,
                });
            }
        }
    }
    let Some(who) = worker.map(str::to_owned).or_else(|| {
        runs.iter()
            .find(|(_, test)| test == failing)
            .map(|(who, _)| who.clone())
    }) else {
        return Ok(None);
    };
    let mine: Vec<TestId> = runs
        .into_iter()
        .filter(|(w, _)| *w == who)
        .map(|(_, test)| test)
        .collect();
    Ok(mine
        .iter()
        .position(|test| test == failing)
        .map(|at| (who, mine[..at].to_vec())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tests_before_a_failure_are_its_workers_own() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("order.log");
        let log = OrderLog::create(&path).unwrap();
        let ids = |names: &[&str]| -> Vec<TestId> {
            names.iter().map(|n| TestId::new(*n).unwrap()).collect()
        };
        log.note_order("random --seed 7");
        log.record("w1", &ids(&["a", "b"]));
        log.record("w2", &ids(&["x", "t"]));
        log.record("w1", &ids(&["c", "t", "d"]));
        let t = TestId::new("t").unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with("# order: random --seed 7\nw1\ta\n"),
            "{text}"
        );
        // By default the first worker that ran it: w2.
        assert_eq!(
            before(&path, &t, None).unwrap(),
            Some(("w2".to_owned(), ids(&["x"])))
        );
        assert_eq!(
            before(&path, &t, Some("w1")).unwrap(),
            Some(("w1".to_owned(), ids(&["a", "b", "c"])))
        );
        assert_eq!(before(&path, &t, Some("w3")).unwrap(), None);
        std::fs::write(&path, "w1\ta\nno tab\nw1\tt\n").unwrap();
        let err = before(&path, &t, None).unwrap_err().to_string();
        assert!(err.contains("line 2"), "{err}");
        std::fs::write(&path, "w1\ta\nw1\tt\nw1\tcut sho").unwrap();
        assert_eq!(
            before(&path, &t, None).unwrap(),
            Some(("w1".to_owned(), ids(&["a"])))
        );
        // Regression: a last line cut inside a character made the whole log unreadable.
        std::fs::write(&path, b"w1\ta\nw1\tt\nw1\tcaf\xc3").unwrap();
        assert_eq!(
            before(&path, &t, None).unwrap(),
            Some(("w1".to_owned(), ids(&["a"])))
        );
        std::fs::write(&path, b"\xEF\xBB\xBFw1\ta\nw1\tt\n").unwrap();
        assert_eq!(
            before(&path, &t, None).unwrap(),
            Some(("w1".to_owned(), ids(&["a"])))
        );
        std::fs::write(&path, b"w1\ta\xff\nw1\tt\n").unwrap();
        let err = before(&path, &t, None).unwrap_err().to_string();
        assert!(err.contains("line 1"), "{err}");
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;
    use proptest::sample::Index;

    use super::*;
    use crate::property_testing::{config, distinct_test_ids, noisy_bytes};

    fn path() -> &'static Path {
        Path::new("order.log")
    }

    /// A line no worker writes: no tab, no test id after it, a NUL, bytes that are not UTF-8.
    fn bad_line() -> impl Strategy<Value = Vec<u8>> {
        prop::sample::select(vec![
            &b"no tab"[..],
            b"",
            b"w1\t",
            b"w1\t  ",
            b"w1\ta\0b",
            b"w\xff\tt",
        ])
        .prop_map(<[u8]>::to_vec)
    }

    /// A log of `runs` (worker, test), in order.
    fn render(runs: &[(String, TestId)]) -> Vec<u8> {
        runs.iter()
            .flat_map(|(worker, id)| lines(worker, std::slice::from_ref(id)).into_bytes())
            .collect()
    }

    /// Runs by up to three workers (any names without tabs or line breaks, not starting with a
    /// byte order mark) of distinct tests.
    fn runs() -> impl Strategy<Value = Vec<(String, TestId)>> {
        (
            prop::collection::vec("[^\\t\\n\\r\u{feff}][^\\t\\n\\r]{0,9}", 1..4),
            distinct_test_ids(1..12),
            prop::collection::vec((any::<Index>(), any::<Index>()), 1..16),
        )
            .prop_map(|(workers, ids, picks)| {
                picks
                    .iter()
                    .filter_map(|(worker, id)| {
                        Some((
                            worker.get(&workers).clone(),
                            TestId::new(id.get(&ids).as_str()).ok()?,
                        ))
                    })
                    .collect()
            })
    }

    proptest! {
        #![proptest_config(config())]

        /// Any bytes are a log (answering for any test) or an error naming a line that exists.
        #[test]
        fn any_bytes_are_a_log_or_an_error_naming_the_line(bytes in noisy_bytes()) {
            let lines = bytes.split(|&byte| byte == b'\n').count();
            let failing = TestId::new("t").map_err(|err| TestCaseError::fail(err.to_string()))?;
            match before_in(&bytes, path(), &failing, None) {
                Ok(_) => {}
                Err(OrderLogError::BadLine { line, .. }) => {
                    prop_assert!((1..lines).contains(&line), "line {line} of {lines}");
                }
                Err(err @ OrderLogError::Io { .. }) => prop_assert!(false, "{err}"),
            }
        }

        /// The tests a worker ran before a failing one read back from the log its run wrote,
        /// for the worker named or the first that ran it.
        #[test]
        fn the_tests_before_a_failure_read_back(
            runs in runs(),
            failing in any::<Index>(),
            named in any::<Option<Index>>(),
        ) {
            let failing = &failing.get(&runs).1;
            let worker = named.map(|named| named.get(&runs).0.clone());
            let read = before_in(&render(&runs), path(), failing, worker.as_deref())
                .map_err(|err| TestCaseError::fail(err.to_string()))?;
            let who = worker.unwrap_or_else(|| {
                runs.iter().find(|(_, id)| id == failing).map(|(who, _)| who.clone()).unwrap_or_default()
            });
            let mine: Vec<TestId> = runs.iter().filter(|(w, _)| *w == who).map(|(_, id)| id.clone()).collect();
            let expected = mine.iter().position(|id| id == failing).map(|at| (who, mine[..at].to_vec()));
            prop_assert_eq!(read, expected);
        }

        /// A log cut anywhere (a worker killed as it wrote, maybe inside a character) reads
        /// without error.
        #[test]
        fn a_log_cut_anywhere_reads(runs in runs(), cut in any::<Index>()) {
            let log = render(&runs);
            let cut = cut.index(log.len() + 1);
            let read = before_in(&log[..cut], path(), &runs[0].1, None);
            prop_assert!(read.is_ok(), "{read:?}");
        }

        /// One bad line before the end fails naming that line.
        #[test]
        fn one_bad_line_is_named(runs in runs(), at in any::<Index>(), bad in bad_line()) {
            let log = render(&runs);
            let mut lines: Vec<&[u8]> = log.split(|&byte| byte == b'\n').collect();
            // Before the empty "line" after the final newline: never the last.
            let at = at.index(lines.len());
            lines.insert(at, &bad);
            match before_in(&lines.join(&b'\n'), path(), &runs[0].1, None) {
                Err(OrderLogError::BadLine { line, .. }) => prop_assert_eq!(line, at + 1),
                other => prop_assert!(false, "{other:?}"),
            }
        }
    }
}
