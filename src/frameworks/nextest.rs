//! The nextest adapter: tests listed by `cargo nextest list --message-format json`, each run
//! by executing its test binary directly, as nextest itself does (one process per test).
//!
//! The leader's listing fills the queue with ids `<binary-id> <test name>`; every worker lists
//! too (building the workspace as needed) to learn where each binary is and how to run it. A
//! test nextest would skip as ignored is queued and reported as skipped without running.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use serde::Deserialize;
use tokio::sync::OnceCell;

use super::Adapter;
use crate::batching::{BatchSize, Saves};
use crate::discovery::ReadList;
use crate::listing::{self, ListRun, ListingError};
use crate::outcome::{Outcome, TestResult};
use crate::process::{self, Capture, Spec};
use crate::runner::launch::{DynRunner, Launch, Setup};
use crate::runner::{Feed, Ran, Runner, RunnerError};
use crate::test_id::TestId;

/// `ciq run nextest`, with the arguments for `cargo nextest list`.
#[derive(Debug, Clone, Default, Args)]
pub struct Nextest {
    /// Arguments for `cargo nextest list`: filters (-E), --workspace, features...
    #[arg(last = true, value_name = "NEXTEST_ARGS")]
    pub args: Vec<String>,
}

impl Nextest {
    /// The subcommand's help line.
    pub const ABOUT: &str = "Rust tests through cargo-nextest: the leader lists them (`cargo nextest list`), every worker builds and runs each test's binary directly, one process per test";
}

impl Adapter for Nextest {
    fn name(&self) -> &'static str {
        "nextest"
    }

    fn list_argv(&self) -> Vec<String> {
        list_argv(&self.args)
    }

    fn read_list(&self) -> ReadList {
        |ran| Ok(read(ran?)?.ids().join("\n").into_bytes())
    }

    /// Every test is its own process: a batch saves only round trips to the queue.
    fn saves(&self) -> Saves {
        Saves::RoundTrips
    }

    /// Round trips cost nothing in local mode.
    fn batch_size(&self, distributed: bool) -> BatchSize {
        if distributed {
            BatchSize::Auto
        } else {
            BatchSize::Fixed(1)
        }
    }

    fn launch(&self) -> Result<Launch, RunnerError> {
        let args = self.args.clone();
        Ok(Launch::Own(Arc::new(move |setup: &Setup, env| {
            let runner =
                NextestRunner::new(args.clone(), env, setup.list_timeout, setup.output_limit);
            Box::new(runner) as Box<dyn DynRunner>
        })))
    }
}

/// The listing command for `args` (nextest's own filters, `--workspace`, features...).
fn list_argv(args: &[String]) -> Vec<String> {
    let mut argv: Vec<String> = ["cargo", "nextest", "list", "--message-format", "json"]
        .map(str::to_owned)
        .into();
    argv.extend_from_slice(args);
    argv
}

/// Runs the listing command `argv` (from [`list_argv`]) and parses what it prints.
async fn list(argv: &[String], timeout: Duration) -> Result<Listing, ListingError> {
    read(listing::run_once(argv, timeout).await?)
}

/// Parses what the listing command printed; a failure names the lines that say why, with a
/// hint when cargo-nextest is missing.
fn read(listed: ListRun) -> Result<Listing, ListingError> {
    let mut detail = Vec::new();
    if !listed.finished.exit.success() && listed.finished.output.contains("no such command") {
        detail = listed.said_with("(hint: cargo install --locked cargo-nextest)".to_owned());
    }
    listed.read(detail, Listing::parse)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct TestListJson {
    rust_build_meta: BuildMeta,
    rust_suites: BTreeMap<String, Suite>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct BuildMeta {
    target_directory: PathBuf,
    #[serde(default)]
    base_output_directories: Vec<String>,
    #[serde(default)]
    non_test_binaries: BTreeMap<String, Vec<NonTestBinary>>,
    #[serde(default)]
    linked_paths: Vec<PathBuf>,
    #[serde(default)]
    platforms: Option<Platforms>,
}

#[derive(Debug, Deserialize)]
struct NonTestBinary {
    name: String,
    kind: String,
    path: PathBuf,
}

#[derive(Debug, Deserialize)]
struct Platforms {
    host: HostPlatform,
}

#[derive(Debug, Deserialize)]
struct HostPlatform {
    libdir: Libdir,
}

#[derive(Debug, Deserialize)]
struct Libdir {
    path: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Suite {
    binary_id: String,
    binary_path: PathBuf,
    cwd: PathBuf,
    package_id: String,
    #[serde(default)]
    package_name: Option<String>,
    testcases: BTreeMap<String, TestCase>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct TestCase {
    filter_match: FilterMatch,
}

#[derive(Debug, Deserialize)]
struct FilterMatch {
    status: String,
    #[serde(default)]
    reason: Option<String>,
}

/// Where one listed test lives and how to run it.
#[derive(Debug, Clone)]
struct Located {
    binary: PathBuf,
    cwd: PathBuf,
    name: String,
    ignored: bool,
    env: Arc<Vec<(String, String)>>,
}

/// A parsed nextest listing.
#[derive(Debug, Default)]
pub struct Listing {
    ids: Vec<String>,
    tests: HashMap<String, Located>,
}

impl Listing {
    /// Parses `cargo nextest list --message-format json` output. Every test's id must be a
    /// valid test id: JSON can spell a line break inside a name, which would split the id in
    /// two in the one-per-line test list.
    pub fn parse(json: &[u8]) -> Result<Self, String> {
        let list: TestListJson = serde_json::from_slice(json)
            .map_err(|err| format!("unreadable `cargo nextest list` JSON: {err}"))?;
        let meta = &list.rust_build_meta;
        let dylib_path = dylib_path(meta);
        let mut listing = Listing::default();
        for suite in list.rust_suites.values() {
            let env = Arc::new(suite_env(meta, suite, &dylib_path));
            for (name, case) in &suite.testcases {
                let ignored = match (case.filter_match.status.as_str(), &case.filter_match.reason) {
                    ("matches", _) => false,
                    ("mismatch", Some(reason)) if reason == "ignored" => true,
                    _ => continue,
                };
                let id = format!("{} {name}", suite.binary_id);
                if let Err(reason) = TestId::new(id.as_str()) {
                    return Err(format!(
                        "`cargo nextest list` lists test {:?}, whose id {reason}",
                        crate::lines::clip(&id)
                    ));
                }
                listing.ids.push(id.clone());
                listing.tests.insert(
                    id,
                    Located {
                        binary: suite.binary_path.clone(),
                        cwd: suite.cwd.clone(),
                        name: name.clone(),
                        ignored,
                        env: Arc::clone(&env),
                    },
                );
            }
        }
        Ok(listing)
    }

    /// The test ids, `<binary-id> <test name>`, in listing order.
    pub fn ids(&self) -> &[String] {
        &self.ids
    }
}

/// Library directories a test binary may need at run time (dylib dependencies, the toolchain's
/// libstd for proc-macro-heavy crates), as nextest sets them.
fn dylib_path(meta: &BuildMeta) -> String {
    let mut dirs: Vec<PathBuf> = Vec::new();
    for base in &meta.base_output_directories {
        let base = meta.target_directory.join(base);
        dirs.push(base.join("deps"));
        dirs.push(base);
    }
    dirs.extend(
        meta.linked_paths
            .iter()
            .map(|path| meta.target_directory.join(path)),
    );
    if let Some(libdir) = meta
        .platforms
        .as_ref()
        .and_then(|p| p.host.libdir.path.clone())
    {
        dirs.push(libdir);
    }
    let mut joined: Vec<String> = dirs
        .iter()
        .map(|d| d.to_string_lossy().into_owned())
        .collect();
    if let Ok(existing) = std::env::var("LD_LIBRARY_PATH") {
        joined.push(existing);
    }
    joined.join(":")
}

/// The environment nextest gives a test of `suite`: the Cargo package variables a test may read
/// at run time, nextest's markers, the paths of the package's binaries and of its libraries.
fn suite_env(meta: &BuildMeta, suite: &Suite, dylib_path: &str) -> Vec<(String, String)> {
    let (name, version) = package_name_version(&suite.package_id);
    let name = suite.package_name.clone().unwrap_or(name);
    let mut env = vec![
        ("NEXTEST".to_owned(), "1".to_owned()),
        (
            "NEXTEST_EXECUTION_MODE".to_owned(),
            "process-per-test".to_owned(),
        ),
        (
            "CARGO".to_owned(),
            std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()),
        ),
        (
            "CARGO_MANIFEST_DIR".to_owned(),
            suite.cwd.to_string_lossy().into_owned(),
        ),
        ("CARGO_PKG_NAME".to_owned(), name),
        ("CARGO_PKG_VERSION".to_owned(), version.clone()),
        ("LD_LIBRARY_PATH".to_owned(), dylib_path.to_owned()),
    ];
    let mut parts = version.splitn(2, '-');
    let numbers: Vec<&str> = parts.next().unwrap_or("").split('.').collect();
    for (at, key) in ["MAJOR", "MINOR", "PATCH"].iter().enumerate() {
        env.push((
            format!("CARGO_PKG_VERSION_{key}"),
            numbers.get(at).copied().unwrap_or("0").to_owned(),
        ));
    }
    env.push((
        "CARGO_PKG_VERSION_PRE".to_owned(),
        parts.next().unwrap_or("").to_owned(),
    ));
    for binary in meta
        .non_test_binaries
        .get(&suite.package_id)
        .into_iter()
        .flatten()
    {
        if binary.kind == "bin-exe" {
            env.push((
                format!("NEXTEST_BIN_EXE_{}", binary.name),
                meta.target_directory
                    .join(&binary.path)
                    .to_string_lossy()
                    .into_owned(),
            ));
        }
    }
    env
}

/// Name and version from a package id such as `path+file:///w/app#app@0.1.0` or
/// `path+file:///w/app#0.1.0` (where the name is the directory's).
fn package_name_version(package_id: &str) -> (String, String) {
    let (path, fragment) = package_id.rsplit_once('#').unwrap_or((package_id, ""));
    match fragment.split_once('@') {
        Some((name, version)) => (name.to_owned(), version.to_owned()),
        None => (
            path.rsplit('/').next().unwrap_or("").to_owned(),
            fragment.to_owned(),
        ),
    }
}

/// Runs listed tests one process each.
#[derive(Debug)]
pub struct NextestRunner {
    args: Vec<String>,
    env: Vec<(String, String)>,
    list_timeout: Duration,
    output_limit: usize,
    listing: OnceCell<Listing>,
}

impl NextestRunner {
    /// A runner listing with nextest `args` (building as needed, within `list_timeout`); `env`
    /// goes to every test on top of nextest's.
    pub fn new(
        args: Vec<String>,
        env: Vec<(String, String)>,
        list_timeout: Duration,
        output_limit: usize,
    ) -> Self {
        Self {
            args,
            env,
            list_timeout,
            output_limit,
            listing: OnceCell::new(),
        }
    }

    async fn listing(&self) -> Result<&Listing, RunnerError> {
        self.listing
            .get_or_try_init(|| async {
                list(&list_argv(&self.args), self.list_timeout)
                    .await
                    .map_err(RunnerError::Listing)
            })
            .await
    }

    async fn run_one(
        &self,
        id: &TestId,
        listing: &Listing,
        limit: Duration,
    ) -> Result<TestResult, RunnerError> {
        let result =
            |outcome, duration, output| TestResult::new(id.clone(), outcome, duration, output);
        let Some(test) = listing.tests.get(id.as_str()) else {
            return Ok(result(
                Outcome::Errored,
                Duration::ZERO,
                "[ciq: this test is not in this worker's `cargo nextest list`; do all workers build the same commit?]\n".to_owned(),
            ));
        };
        if test.ignored {
            return Ok(result(Outcome::Skipped, Duration::ZERO, String::new()));
        }
        let mut env = test.env.as_ref().clone();
        env.extend(self.env.iter().cloned());
        let spec = Spec {
            argv: vec![
                test.binary.to_string_lossy().into_owned(),
                test.name.clone(),
                "--exact".to_owned(),
                "--nocapture".to_owned(),
            ],
            env,
            timeout: Some(limit),
            cwd: Some(test.cwd.clone()),
        };
        let finished = process::run(
            &spec,
            Capture::Merged {
                limit: self.output_limit,
            },
        )
        .await?;
        let (outcome, output) = match finished.outcome() {
            // libtest exits 0 when `--exact` matches nothing: never a pass.
            (Outcome::Passed, output) if finished.output.contains("running 0 tests") => (
                Outcome::Errored,
                format!("{output}[ciq: the test binary ran no test by this name]\n"),
            ),
            judged => judged,
        };
        Ok(result(outcome, finished.duration, output))
    }
}

impl Runner for NextestRunner {
    async fn prepare(&self) -> Result<(), RunnerError> {
        self.listing().await.map(|_| ())
    }

    async fn run(
        &self,
        batch: &[TestId],
        limits: &[Duration],
        feed: &Feed,
    ) -> Result<Ran, RunnerError> {
        let listing = self.listing().await?;
        let mut results = Vec::with_capacity(batch.len());
        for (id, limit) in batch.iter().zip(limits) {
            let result = self.run_one(id, listing, *limit).await?;
            feed.result(&result);
            results.push(result);
        }
        Ok(results.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LISTING: &str = r#"{
      "rust-build-meta": {
        "target-directory": "/w/target", "base-output-directories": ["debug"],
        "non-test-binaries": {"path+file:///w/app#app@1.2.3-beta.1": [
          {"name": "app", "kind": "bin-exe", "path": "debug/app"}]},
        "linked-paths": [], "platforms": {"host": {"libdir": {"status": "available", "path": "/rust/lib"}}}
      },
      "test-count": 3,
      "rust-suites": {
        "app": {"binary-id": "app", "binary-path": "/w/target/debug/deps/app-1", "cwd": "/w/app",
          "package-id": "path+file:///w/app#app@1.2.3-beta.1", "kind": "lib",
          "testcases": {
            "tests::ok": {"ignored": false, "filter-match": {"status": "matches"}},
            "tests::slow": {"ignored": true, "filter-match": {"status": "mismatch", "reason": "ignored"}},
            "tests::other": {"ignored": false, "filter-match": {"status": "mismatch", "reason": "expression"}}
          }}
      }
    }"#;

    #[test]
    fn listing_keeps_matching_and_ignored_tests() {
        let listing = Listing::parse(LISTING.as_bytes()).unwrap();
        assert_eq!(listing.ids(), ["app tests::ok", "app tests::slow"]);
        let ignored = &listing.tests["app tests::slow"];
        assert!(ignored.ignored);
        let env: HashMap<_, _> = ignored.env.iter().cloned().collect();
        assert_eq!(env["CARGO_PKG_NAME"], "app");
        assert_eq!(env["CARGO_PKG_VERSION_MINOR"], "2");
        assert_eq!(env["CARGO_PKG_VERSION_PRE"], "beta.1");
        assert_eq!(env["CARGO_MANIFEST_DIR"], "/w/app");
        assert_eq!(env["NEXTEST_BIN_EXE_app"], "/w/target/debug/app");
        assert!(
            env["LD_LIBRARY_PATH"].starts_with("/w/target/debug/deps:/w/target/debug:/rust/lib")
        );
    }

    #[test]
    fn garbage_listing_is_an_error() {
        assert!(
            Listing::parse(b"Compiling app")
                .unwrap_err()
                .contains("unreadable")
        );
    }

    /// Regression: a name JSON spells with a line break became two ids of the test list.
    #[test]
    fn names_that_are_no_test_ids_are_refused() {
        let listing = LISTING.replace("tests::ok", "tests::ok\\nforged");
        assert_eq!(
            Listing::parse(listing.as_bytes()).unwrap_err(),
            r#"`cargo nextest list` lists test "app tests::ok\nforged", whose id contains a line break"#
        );
    }

    #[test]
    fn package_ids_in_both_forms() {
        assert_eq!(
            package_name_version("path+file:///w/app#0.1.0"),
            ("app".into(), "0.1.0".into())
        );
        assert_eq!(
            package_name_version(
                "registry+https://github.com/rust-lang/crates.io-index#serde@1.0.1"
            ),
            ("serde".into(), "1.0.1".into())
        );
    }
}

#[cfg(test)]
mod properties {
    use std::collections::BTreeMap;

    use proptest::prelude::*;
    use proptest::sample::Index;
    use serde_json::{Value, json};

    use super::*;
    use crate::property_testing::{config, corrupt, edits, noisy_bytes, test_id};

    /// What nextest says of a listed test.
    #[derive(Debug, Clone, Copy)]
    enum Status {
        Matches,
        Ignored,
        /// Filtered out by the user's filter: not listed.
        Filtered,
    }

    /// Test binaries, each with its tests' names and statuses.
    type Suites = BTreeMap<String, BTreeMap<String, Status>>;

    fn suites() -> impl Strategy<Value = Suites> {
        let status = prop::sample::select(vec![Status::Matches, Status::Ignored, Status::Filtered]);
        prop::collection::btree_map(
            "[a-z_][a-z0-9_-]{0,8}(::[a-z_/-]{1,8})?",
            prop::collection::btree_map(test_id(), status, 0..6),
            0..5,
        )
    }

    /// What `cargo nextest list --message-format json` prints for `suites`.
    fn render(suites: &Suites) -> Value {
        let rust_suites: serde_json::Map<String, Value> = suites
            .iter()
            .map(|(binary, tests)| {
                let testcases: serde_json::Map<String, Value> = tests
                    .iter()
                    .map(|(name, status)| {
                        let filter_match = match status {
                            Status::Matches => json!({"status": "matches"}),
                            Status::Ignored => json!({"status": "mismatch", "reason": "ignored"}),
                            Status::Filtered => {
                                json!({"status": "mismatch", "reason": "expression"})
                            }
                        };
                        let ignored = matches!(status, Status::Ignored);
                        (
                            name.clone(),
                            json!({"ignored": ignored, "filter-match": filter_match}),
                        )
                    })
                    .collect();
                let suite = json!({
                    "binary-id": binary,
                    "binary-path": format!("/w/target/debug/deps/{binary}-0"),
                    "cwd": "/w/app",
                    "package-id": "path+file:///w/app#app@0.1.0",
                    "kind": "lib",
                    "testcases": testcases,
                });
                (binary.clone(), suite)
            })
            .collect();
        json!({
            "rust-build-meta": {
                "target-directory": "/w/target",
                "base-output-directories": ["debug"],
                "non-test-binaries": {},
                "linked-paths": [],
            },
            "test-count": 0,
            "rust-suites": rust_suites,
        })
    }

    /// Whatever `json` is, a listing of valid ids or one line of error.
    fn check_outcome(json: &[u8]) -> Result<(), TestCaseError> {
        match Listing::parse(json) {
            Ok(listing) => {
                for id in listing.ids() {
                    prop_assert!(TestId::new(id.as_str()).is_ok(), "{id:?}");
                }
            }
            Err(err) => {
                prop_assert!(!err.contains(['\n', '\r']), "{err}");
                if err.starts_with("unreadable") {
                    prop_assert!(err.contains(" at line "), "{err}");
                }
            }
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(config())]

        /// Any bytes are a listing or an error, never a panic.
        #[test]
        fn any_bytes_are_a_listing_or_an_error(json in noisy_bytes()) {
            check_outcome(&json)?;
        }

        /// A valid listing with a few bytes inserted, deleted or changed is a listing or an
        /// error, never a panic.
        #[test]
        fn corrupted_listings_are_listings_or_errors(suites in suites(), edits in edits(), pretty in any::<bool>()) {
            let value = render(&suites);
            let json = if pretty { serde_json::to_vec_pretty(&value) } else { serde_json::to_vec(&value) };
            let json = json.map_err(|err| TestCaseError::fail(err.to_string()))?;
            check_outcome(&corrupt(json, &edits))?;
        }

        /// A listing reads back as `<binary-id> <test name>` ids, binaries and names in order,
        /// the tests nextest would skip as ignored kept as ignored, filtered ones left out.
        #[test]
        fn listings_read_back(suites in suites()) {
            let json = render(&suites).to_string();
            let listing = Listing::parse(json.as_bytes()).map_err(TestCaseError::fail)?;
            let mut expected = Vec::new();
            for (binary, tests) in &suites {
                for (name, status) in tests {
                    let id = format!("{binary} {name}");
                    match status {
                        Status::Matches | Status::Ignored => {
                            prop_assert_eq!(listing.tests[&id].ignored, matches!(status, Status::Ignored));
                            prop_assert_eq!(&listing.tests[&id].name, name);
                            expected.push(id);
                        }
                        Status::Filtered => prop_assert!(!listing.tests.contains_key(&id)),
                    }
                }
            }
            prop_assert_eq!(listing.ids(), expected.as_slice());
        }

        /// A test name JSON spells with a line break or a NUL is refused, never split into two
        /// ids of the test list.
        #[test]
        fn names_that_are_no_test_ids_are_refused(
            suites in suites(),
            a in test_id(),
            b in test_id(),
            separator in prop::sample::select(vec!["\n", "\r", "\r\n", "\0"]),
        ) {
            let mut suites = suites;
            let name = format!("{a}{separator}{b}");
            suites.entry("app".to_owned()).or_default().insert(name.clone(), Status::Matches);
            let err = Listing::parse(render(&suites).to_string().as_bytes());
            let err = err.err().ok_or_else(|| TestCaseError::fail("parsed"))?;
            prop_assert!(err.contains(&format!("{:?}", crate::lines::clip(&format!("app {name}")))), "{err}");
        }

        /// Pretty JSON with a stray character at the start of one line fails naming that line.
        #[test]
        fn a_broken_line_is_named(suites in suites(), at in any::<Index>()) {
            let json = serde_json::to_string_pretty(&render(&suites))
                .map_err(|err| TestCaseError::fail(err.to_string()))?;
            let mut lines: Vec<String> = json.lines().map(str::to_owned).collect();
            let at = at.index(lines.len());
            lines[at].insert(0, '@');
            let err = Listing::parse(lines.join("\n").as_bytes());
            let err = err.err().ok_or_else(|| TestCaseError::fail("parsed"))?;
            prop_assert!(err.contains(&format!("at line {} column 1", at + 1)), "{err}");
        }
    }
}
