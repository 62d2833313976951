//! [`Scratch`]: a test's temporary directory: its test list, the fixture's run log, and the
//! environment every process of the test gets (the test virtualenv's `python3` first on PATH).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A scratch directory holding a test list, the run log and markers.
pub struct Scratch {
    pub dir: tempfile::TempDir,
    extra_env: Vec<(String, String)>,
}

impl Default for Scratch {
    fn default() -> Self {
        Self::new()
    }
}

impl Scratch {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("scratch dir"),
            extra_env: Vec::new(),
        }
    }

    /// Adds a variable to every process started from this scratch.
    pub fn set_env(&mut self, name: &str, value: &str) {
        self.extra_env.push((name.to_owned(), value.to_owned()));
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes a test list file and returns its path.
    pub fn tests(&self, ids: &[String]) -> PathBuf {
        let path = self.path("tests.txt");
        std::fs::write(&path, ids.join("\n") + "\n").expect("write tests");
        path
    }

    /// Writes an executable script `name` holding `text` and returns its path.
    pub fn script(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, text).expect("write script");
        let mut permissions = std::fs::metadata(&path).expect("script").permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o755);
        std::fs::set_permissions(&path, permissions).expect("make script executable");
        path
    }

    /// The fixture's log: one `worker test` line per run started, in order.
    pub fn runs(&self) -> Vec<(String, String)> {
        std::fs::read_to_string(self.path("runs.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(|line| {
                let (worker, test) = line.split_once(' ')?;
                Some((worker.to_owned(), test.to_owned()))
            })
            .collect()
    }

    /// Asserts that `expected` tests ran, each exactly once.
    pub fn assert_each_ran_once(&self, expected: usize) {
        let counts = self.run_counts();
        assert_eq!(counts.len(), expected, "every test ran: {counts:?}");
        let twice: Vec<_> = counts.iter().filter(|(_, n)| **n != 1).collect();
        assert!(twice.is_empty(), "tests run more than once: {twice:?}");
    }

    /// How often each test ran.
    pub fn run_counts(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for (_, test) in self.runs() {
            *counts.entry(test).or_insert(0) += 1;
        }
        counts
    }

    /// The order logs ciq kept in its own directory (under this scratch's cache), sorted.
    pub fn order_logs(&self) -> Vec<PathBuf> {
        let mut logs: Vec<PathBuf> = std::fs::read_dir(self.path("cache/ciq/order-logs"))
            .map(|entries| entries.flatten().map(|entry| entry.path()).collect())
            .unwrap_or_default();
        logs.sort();
        logs
    }

    /// Environment every ciq process of a test gets, so the fixture logs into this scratch.
    pub fn env(&self) -> Vec<(String, String)> {
        let mut env = self.extra_env.clone();
        env.extend([
            (
                "RECORD_TEST_DIR".to_owned(),
                self.dir.path().to_string_lossy().into_owned(),
            ),
            // What the test commands leave in a temporary directory goes with the scratch.
            (
                "TMPDIR".to_owned(),
                self.dir.path().to_string_lossy().into_owned(),
            ),
            // And what ciq keeps in its cache (order logs), never the user's own.
            (
                "XDG_CACHE_HOME".to_owned(),
                self.path("cache").to_string_lossy().into_owned(),
            ),
            ("PATH".to_owned(), test_path()),
            // Tests must not pick up the CI environment of the machine running them.
            ("BUILDKITE".to_owned(), String::new()),
            ("GITHUB_ACTIONS".to_owned(), String::new()),
            ("GITLAB_CI".to_owned(), String::new()),
            ("CIRCLECI".to_owned(), String::new()),
            ("JENKINS_URL".to_owned(), String::new()),
        ]);
        // Ruby finds ciq's gem where `scripts/test` installed it.
        env.extend(test_gem_home().map(|home| ("GEM_HOME".to_owned(), home)));
        env
    }
}

/// ciq's repository (this crate sits in its `testkit/`).
pub fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// The virtualenv `scripts/test` builds with pytest and ciq's plugin.
pub fn test_venv() -> PathBuf {
    repository().join("target/test-venv")
}

/// `PATH` for ciq processes: the test virtualenv first when it exists, so `python3` is the one
/// with pytest and the plugin even under a plain `cargo test`.
pub fn test_path() -> String {
    let path = std::env::var("PATH").unwrap_or_default();
    let venv = test_venv().join("bin");
    if venv.join("python3").exists() {
        format!("{}:{path}", venv.display())
    } else {
        path
    }
}

/// `GEM_HOME` for ciq processes: the one `scripts/test` installs ciq's Ruby gem into
/// (`target/ruby-gems`) when it exists, so `ruby` finds the gem even under a plain `cargo test`;
/// `None` leaves the caller's.
pub fn test_gem_home() -> Option<String> {
    let gems = repository().join("target/ruby-gems");
    gems.join("specifications")
        .exists()
        .then(|| gems.to_string_lossy().into_owned())
}

/// Fails, saying how to fix it, when `ruby` lacks ciq's gem, minitest or RSpec: a Ruby test
/// must never pass or skip because Ruby is missing.
pub fn require_ruby() {
    for framework in ["minitest", "rspec"] {
        let mut ruby = Command::new("ruby");
        if let Some(home) = test_gem_home() {
            ruby.env("GEM_HOME", home);
        }
        let found = ruby
            .args(["-rciq/preflight", "-e", "Ciq.preflight", "--", framework])
            .output()
            .is_ok_and(|out| out.status.success());
        assert!(
            found,
            "`ruby` with ciq's Ruby gem and {framework} is not installed: run `scripts/test`, which installs Ruby, minitest and RSpec and the gem into target/ruby-gems (the tests use it from then on)"
        );
    }
}

/// Fails, saying how to fix it, when `python3` has no pytest: a pytest test must never pass or
/// skip because pytest is missing.
pub fn require_pytest() {
    let found = Command::new("python3")
        .args(["-c", "import pytest, ciq_pytest"])
        .env("PATH", test_path())
        .status()
        .is_ok_and(|status| status.success());
    assert!(
        found,
        "pytest or ciq's pytest plugin is not installed for `python3`: run `scripts/test`, which installs them into target/test-venv (the tests use it from then on)"
    );
}

/// `n` ids with a prefix: `pass/0001`, ...
pub fn ids(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}/{i:04}")).collect()
}

/// Whether `worker` has started a run of `test`.
pub fn ran(scratch: &Scratch, worker: &str, test: &str) -> bool {
    scratch.runs().iter().any(|(w, t)| w == worker && t == test)
}
