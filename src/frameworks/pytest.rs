//! The pytest adapter: how ciq lists pytest tests and the commands it runs them with.
//!
//! The leader lists node ids with `pytest --collect-only --verbosity=-1`. In batch mode each batch is one
//! `pytest` run on the batch's node ids, read back through `--junitxml` by the generic
//! [`CommandRunner`](crate::runner::command::CommandRunner). In persistent mode one pytest
//! process per worker, with the `ciq-pytest` plugin, runs tests in-process over the protocol of
//! `docs/persistent-protocol.md`.

use std::path::Path;

use clap::Args;

use super::Adapter;
use crate::discovery::ReadList;
use crate::listing::{ListRun, ListingError};
use crate::process::{Exit, SpawnError};
use crate::runner::RunnerError;
use crate::runner::command::Preflight;
use crate::runner::launch::Launch;
use crate::runner::persistent::Hints;
use crate::timings::Unit;

/// `ciq run pytest`, with pytest's own arguments.
#[derive(Debug, Clone, Default, Args)]
pub struct Pytest {
    /// Persistent mode, required: fail when the plugin is missing instead of falling back to
    /// batch mode (the plugin: pip install ./integrations/pytest).
    #[arg(long, env = "CIQ_PYTEST_PERSISTENT", conflicts_with = "batch")]
    pub persistent: bool,
    /// Batch mode even where the plugin is installed: a fresh pytest per batch.
    #[arg(long, env = "CIQ_PYTEST_BATCH")]
    pub batch: bool,
    /// Arguments for pytest: paths and options for collection; runs keep the options.
    #[arg(last = true, value_name = "PYTEST_ARGS")]
    pub args: Vec<String>,
}

impl Pytest {
    /// The subcommand's help line.
    pub const ABOUT: &str = "Python tests through pytest. Where ciq's pytest plugin is installed, one pytest process per worker collects the suite once and runs the tests it is sent (persistent mode); elsewhere the leader lists node ids (`pytest --collect-only`) and each batch is one pytest run read back through JUnit XML (batch mode)";
}

/// pytest keeps a module's tests together: the batches that take them share its fixtures.
const MODULE: Unit = Unit {
    name: "module",
    of: |id| id.split("::").next().unwrap_or(id),
};

impl Adapter for Pytest {
    fn name(&self) -> &'static str {
        "pytest"
    }

    fn list_argv(&self) -> Vec<String> {
        collect_argv(&self.args)
    }

    fn read_list(&self) -> ReadList {
        read_collected
    }

    fn lists_in_process(&self) -> bool {
        true
    }

    fn unit(&self) -> Option<Unit> {
        Some(MODULE)
    }

    fn hints(&self) -> Hints {
        Hints {
            missing_program: Some(interpreter_hint),
            exited_early: Some(exited_early_hint),
        }
    }

    /// Persistent where asked, or where the plugin is installed for the interpreter (found,
    /// not imported: importing pytest would cost a worker a fraction of a second); a batch
    /// command otherwise, which first checks that the interpreter has pytest.
    fn launch(&self) -> Result<Launch, RunnerError> {
        Ok(if self.persistent || (!self.batch && plugin_installed()) {
            Launch::Persistent {
                argv: persistent_argv(&self.args),
                hints: self.hints(),
            }
        } else {
            Launch::Command {
                argv: batch_command(&self.args),
                check: Some(preflight()),
            }
        })
    }
}

/// The interpreter ciq starts pytest with; `CIQ_PYTHON` overrides it (a virtualenv's python).
fn python() -> String {
    std::env::var("CIQ_PYTHON").unwrap_or_else(|_| "python3".to_owned())
}

/// The hint for a pytest that could not start: no interpreter, or no pytest in it.
fn interpreter_hint() -> String {
    format!(
        "(hint: ciq runs pytest as `{} -m pytest`; install pytest for that interpreter, or set CIQ_PYTHON to the one that has it, e.g. a virtualenv's bin/python)",
        python()
    )
}

/// Reads what the listing command (from [`collect_argv`]) did: the node ids, one per line (none
/// when pytest collected nothing). A failure names pytest's collection errors, with a hint
/// when the interpreter or pytest is missing.
fn read_collected(ran: Result<ListRun, ListingError>) -> Result<Vec<u8>, ListingError> {
    let listed = match ran {
        Err(ListingError::Spawn(SpawnError::NotFound(program))) => {
            return Err(ListingError::Missing {
                program,
                hint: interpreter_hint(),
            });
        }
        listed => listed?,
    };
    // pytest's "no tests collected": an empty list, which the list's own check refuses.
    if listed.finished.exit == Exit::Code(5) {
        return Ok(Vec::new());
    }
    let mut detail = Vec::new();
    if !listed.finished.exit.success() {
        detail = collection_errors(&String::from_utf8_lossy(&listed.finished.stdout));
        if pytest_missing(&listed.finished.output) {
            detail.extend(listed.said_with(interpreter_hint()));
        }
    }
    listed.read(detail, |stdout| {
        parse_collected(stdout).map(String::into_bytes)
    })
}

/// Why a persistent pytest exited before it was ready, from its stderr: no pytest in the
/// interpreter, or no ciq plugin where pytest runs.
fn exited_early_hint(stderr: &str) -> Option<String> {
    if pytest_missing(stderr) {
        Some(interpreter_hint())
    } else if stderr.contains("--ciq-persistent") || stderr.contains("plugin \"ciq\"") {
        Some(
            "(hint: install ciq's pytest plugin where pytest runs: pip install ./integrations/pytest)"
                .to_owned(),
        )
    } else {
        None
    }
}

/// Whether a failed pytest's output says pytest itself is missing from the interpreter.
fn pytest_missing(output: &str) -> bool {
    output.contains("No module named pytest") || output.contains("No module named 'pytest'")
}

/// Whether ciq's pytest plugin is installed for the interpreter ciq starts pytest with:
/// `ciq run pytest` then runs in persistent mode, which collects once per worker instead of
/// once per batch.
fn plugin_installed() -> bool {
    std::process::Command::new(python())
        .args([
            "-c",
            "import importlib.util, sys; sys.exit(importlib.util.find_spec('ciq_pytest') is None)",
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// The check a pytest batch runner makes before taking tests: a worker whose interpreter has
/// no pytest would error every test it took.
fn preflight() -> Preflight {
    Preflight {
        argv: vec![python(), "-c".to_owned(), "import pytest".to_owned()],
        hint: interpreter_hint(),
    }
}

fn pytest(extra: &[&str]) -> Vec<String> {
    let mut argv = vec![python(), "-m".to_owned(), "pytest".to_owned()];
    argv.extend(extra.iter().map(|s| (*s).to_owned()));
    argv
}

/// The listing command: node ids, one per line. The verbosity is set last, explicitly: a
/// project's `addopts = -q` or `-v` (or the user's own `-v`) would otherwise reshape what
/// `--collect-only` prints (file counts, a tree) and ciq would queue those lines as tests.
fn collect_argv(args: &[String]) -> Vec<String> {
    let mut argv = pytest(&["--collect-only", "-p", "no:cacheprovider"]);
    argv.extend_from_slice(args);
    argv.push("--verbosity=-1".to_owned());
    argv
}

/// Node ids from `pytest --collect-only --verbosity=-1` output: the lines before the first
/// blank one, each of which must be a node id (`path::name...`) in UTF-8; anything else is an
/// error naming the line, never a test (an id mangled into valid text would name no test).
fn parse_collected(stdout: &[u8]) -> Result<String, String> {
    let mut ids = String::new();
    for (at, line) in stdout.split(|&byte| byte == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Ok(line) = std::str::from_utf8(line) else {
            return Err(format!("line {} is not valid UTF-8", at + 1));
        };
        if line.trim().is_empty() {
            break;
        }
        if !is_node_id(line) {
            return Err(format!(
                "line {} is not a pytest node id: `{}` (do pytest's addopts or a plugin change what --collect-only prints?)",
                at + 1,
                crate::lines::one_line(&crate::lines::clip(line))
            ));
        }
        ids.push_str(line);
        ids.push('\n');
    }
    Ok(ids)
}

/// Whether `line` looks like a collected item's node id: a path, then `::` and a name, and no
/// control character but a tab (pytest escapes them in ids; a terminal's color codes are no
/// part of one).
fn is_node_id(line: &str) -> bool {
    !line.starts_with(char::is_whitespace)
        && !line.starts_with(['=', '<', '_'])
        && !line.contains(|c: char| c.is_control() && c != '\t')
        && line
            .split_once("::")
            .is_some_and(|(path, name)| !path.is_empty() && !name.is_empty())
}

/// The lines of a failed collection worth showing: pytest's `ERROR ...` and `E   ...` lines.
fn collection_errors(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .filter(|line| line.starts_with("ERROR ") || line.starts_with("E   "))
        .take(6)
        .map(str::to_owned)
        .collect()
}

/// The batch-mode command: pytest on the batch's node ids (`{}`), writing JUnit XML to
/// `{junit}`. Paths among `args` chose what the leader collected; they are left out here, or
/// pytest would run everything under them as well as the batch.
fn batch_command(args: &[String]) -> Vec<String> {
    let mut argv = pytest(&[
        "-p",
        "no:cacheprovider",
        "-o",
        "junit_logging=all",
        "-o",
        "junit_family=xunit1",
        "--junitxml={junit}",
    ]);
    argv.extend(options_only(args));
    argv.push(crate::runner::command::PLACEHOLDER.to_owned());
    argv
}

/// The persistent-mode command: one pytest that collects with all of `args`, then runs the
/// node ids ciq sends it.
fn persistent_argv(args: &[String]) -> Vec<String> {
    let mut argv = pytest(&["-p", "ciq", "--ciq-persistent", "-p", "no:cacheprovider"]);
    argv.extend_from_slice(args);
    argv
}

/// Options of pytest that take their value as the next argument (a path, an expression...).
const TAKES_VALUE: &[&str] = &[
    "-k",
    "-m",
    "-p",
    "-o",
    "-c",
    "-W",
    "-r",
    "-n",
    "--ignore",
    "--ignore-glob",
    "--deselect",
    "--rootdir",
    "--confcutdir",
    "--basetemp",
    "--maxfail",
    "--tb",
    "--durations",
    "--log-level",
    "--log-file",
    "--import-mode",
    "--capture",
    "--override-ini",
    "--junit-prefix",
    "--cov",
    "--cov-report",
];

/// `args` without positional test paths (files, directories, node ids), keeping the values of
/// options that take one.
fn options_only(args: &[String]) -> Vec<String> {
    let mut kept = Vec::new();
    let mut value_expected = false;
    for arg in args {
        if value_expected {
            kept.push(arg.clone());
            value_expected = false;
        } else if arg.starts_with('-') {
            value_expected = TAKES_VALUE.contains(&arg.as_str());
            kept.push(arg.clone());
        } else if !is_test_path(arg) {
            kept.push(arg.clone());
        }
    }
    kept
}

fn is_test_path(arg: &str) -> bool {
    let path = arg.split("::").next().unwrap_or(arg);
    Path::new(path).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collected_ids_stop_at_the_summary() {
        let out = "t.py::test_a\nt.py::TestC::test_b[x y]\n\n2 tests collected in 0.01s\n";
        assert_eq!(
            parse_collected(out.as_bytes()).unwrap(),
            "t.py::test_a\nt.py::TestC::test_b[x y]\n"
        );
    }

    /// Regression: with `addopts = -ra -q` pytest printed `test_triv_00.py: 100` per file, and
    /// with `-v` a session header and a tree; ciq queued those lines as tests and ran none.
    #[test]
    fn lines_that_are_not_node_ids_are_errors() {
        for (out, line) in [
            (
                "test_triv_00.py: 100\ntest_triv_01.py: 100\n",
                "test_triv_00.py: 100",
            ),
            (
                "============================= test session starts ====\n",
                "============================= test session starts ====",
            ),
            ("t.py::a\n  <Function test_a>\n", "  <Function test_a>"),
        ] {
            let err = parse_collected(out.as_bytes()).unwrap_err();
            assert!(err.contains(&format!("`{line}`")), "{err}");
        }
        // A colored line is no node id; a line that is not UTF-8 is named, never mangled.
        assert!(
            parse_collected(b"t.py::a\n\x1b[32mt.py::b\x1b[0m\n")
                .unwrap_err()
                .starts_with("line 2 is not a pytest node id: `\\u{1b}[32mt.py::b\\u{1b}[0m`")
        );
        assert_eq!(
            parse_collected(b"t.py::a\nt.py::\xff\n"),
            Err("line 2 is not valid UTF-8".to_owned())
        );
        assert!(
            collect_argv(&["-v".to_owned()])
                .ends_with(&["-v".to_owned(), "--verbosity=-1".to_owned()])
        );
    }

    #[test]
    fn batch_runs_drop_paths_but_keep_option_values() {
        let dir = env!("CARGO_MANIFEST_DIR");
        let args: Vec<String> = [dir, "-k", "fast", "--ignore", dir, "-x", "src/lib.rs::x"]
            .map(str::to_owned)
            .into();
        assert_eq!(options_only(&args), ["-k", "fast", "--ignore", dir, "-x"]);
    }

    #[test]
    fn collection_errors_are_picked_out() {
        let out = "==== ERRORS ====\n____ ERROR collecting t.py ____\nE   ModuleNotFoundError: No module named 'nope'\nERROR t.py\n";
        assert_eq!(
            collection_errors(out),
            [
                "E   ModuleNotFoundError: No module named 'nope'",
                "ERROR t.py"
            ]
        );
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;
    use proptest::sample::Index;

    use super::*;
    use crate::property_testing::{config, names_a_line, noisy_bytes, test_id};
    use crate::test_id::TestList;

    /// A node id's name: anything a test id may hold but control characters (pytest escapes
    /// them), tabs aside.
    fn name() -> impl Strategy<Value = String> {
        test_id().prop_map(|id| id.replace(|c: char| c.is_control() && c != '\t', "?"))
    }

    /// A node id: a path, `::`, then a name.
    fn node_id() -> impl Strategy<Value = String> {
        ("[a-z][a-z0-9_]{0,8}(/[a-z_]{1,8}){0,2}\\.py", name())
            .prop_map(|(path, name)| format!("{path}::{name}"))
    }

    /// A line before the summary that is not a node id.
    fn bad_line() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            Just(b"test_triv_00.py: 100".to_vec()),
            Just(b"============================= test session starts ====".to_vec()),
            Just(b"  <Function test_a>".to_vec()),
            Just(b"<Module t.py>".to_vec()),
            Just(b"_____ ERROR collecting t.py _____".to_vec()),
            Just(b"t.py::".to_vec()),
            Just(b"::test_a".to_vec()),
            Just(b"\x1b[32mt.py::test_a\x1b[0m".to_vec()),
            Just(b"t.py::test_\xff".to_vec()),
            "[a-zA-Z][a-zA-Z0-9 .:]{0,20}"
                .prop_filter("a node id", |line| !line.contains("::"))
                .prop_map(String::into_bytes),
        ]
    }

    /// What `pytest --collect-only --verbosity=-1` prints for `lines`, `\r\n`-ended if `crlf`.
    fn render(lines: &[Vec<u8>], crlf: bool) -> Vec<u8> {
        let ending: &[u8] = if crlf { b"\r\n" } else { b"\n" };
        let mut stdout = Vec::new();
        for line in lines {
            stdout.extend_from_slice(line);
            stdout.extend_from_slice(ending);
        }
        stdout.extend_from_slice(ending);
        stdout.extend_from_slice(format!("{} tests collected in 0.01s", lines.len()).as_bytes());
        stdout.extend_from_slice(ending);
        stdout
    }

    proptest! {
        #![proptest_config(config())]

        /// Any output is node ids or an error naming a line that exists, in one line of text.
        #[test]
        fn any_output_is_ids_or_an_error_naming_the_line(stdout in noisy_bytes()) {
            let lines = stdout.split(|&byte| byte == b'\n').count();
            match parse_collected(&stdout) {
                Ok(ids) => {
                    for id in ids.lines() {
                        prop_assert!(is_node_id(id), "{id:?}");
                    }
                }
                Err(err) => names_a_line(&err, lines)?,
            }
        }

        /// Collected node ids read back as the test list they were, in order.
        #[test]
        fn collected_ids_read_back(
            ids in prop::collection::vec(node_id(), 1..12),
            crlf in any::<bool>(),
        ) {
            let lines: Vec<Vec<u8>> = ids.iter().map(|id| id.as_bytes().to_vec()).collect();
            let listed = parse_collected(&render(&lines, crlf)).map_err(TestCaseError::fail)?;
            let list = TestList::parse(listed.as_bytes(), "pytest")
                .map_err(|err| TestCaseError::fail(err.to_string()))?;
            let mut expected = ids;
            let mut seen = std::collections::HashSet::new();
            expected.retain(|id| seen.insert(id.clone()));
            let read: Vec<&str> = list.ids.iter().map(|id| id.as_str()).collect();
            prop_assert_eq!(read, expected.iter().map(String::as_str).collect::<Vec<_>>());
        }

        /// One line that is not a node id, among node ids, is named.
        #[test]
        fn one_bad_line_is_named(
            ids in prop::collection::vec(node_id(), 0..12),
            at in any::<Index>(),
            bad in bad_line(),
            crlf in any::<bool>(),
        ) {
            let mut lines: Vec<Vec<u8>> = ids.iter().map(|id| id.as_bytes().to_vec()).collect();
            let at = at.index(lines.len() + 1);
            lines.insert(at, bad);
            let err = parse_collected(&render(&lines, crlf)).err();
            let err = err.ok_or_else(|| TestCaseError::fail("parsed"))?;
            prop_assert!(err.starts_with(&format!("line {} is not ", at + 1)), "{err}");
        }
    }
}
