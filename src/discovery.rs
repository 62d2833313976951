//! [`TestSource`]: where the leader gets the test list.
//!
//! A list given as a file is read and checked by every worker before it joins, so bad input
//! fails fast everywhere; a list command is run only by the elected leader, because discovery
//! can be slow (a build, a collection) and its output goes to the queue once.

use std::path::PathBuf;
use std::time::Duration;

use thiserror::Error;

use crate::process::{self, Capture, SpawnError, Spec};
use crate::runner::nextest::Listing;
use crate::runner::pytest;
use crate::test_id::{TestList, TestListError};

/// Where the test ids come from.
#[derive(Debug, Clone)]
pub enum TestSource {
    /// A list read up front (`--tests FILE`, or `-` for stdin).
    List(TestList),
    /// A command listing the tests, run by the leader.
    Command {
        /// The command.
        argv: Vec<String>,
        /// How to read its output.
        format: ListFormat,
    },
}

/// How a list command prints its tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListFormat {
    /// One id per line (`--list-command`).
    Lines,
    /// `pytest --collect-only --verbosity=-1`: node ids, a blank line, a summary.
    PytestCollect,
    /// `cargo nextest list --message-format json`.
    NextestJson,
}

/// Why the test list could not be produced.
#[derive(Debug, Error)]
pub enum DiscoveryError {
    /// The list file could not be read.
    #[error("cannot read test list `{path}`")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The list command could not start.
    #[error("cannot run the list command")]
    Spawn(#[source] SpawnError),
    /// The Python interpreter for pytest does not exist.
    #[error("cannot run pytest: `{0}` not found\n{hint}", hint = pytest::interpreter_hint())]
    NoInterpreter(String),
    /// The list command failed.
    #[error("list command `{command}` failed ({exit}){}", detail_suffix(.detail))]
    Failed {
        /// The command, as typed.
        command: String,
        /// How it ended.
        exit: process::Exit,
        /// The lines of its output that say why.
        detail: String,
    },
    /// The list command's output is not in the expected format.
    #[error("cannot read the output of list command `{command}`: {detail}")]
    Unreadable {
        /// The command.
        command: String,
        /// What is wrong.
        detail: String,
    },
    /// The list is malformed.
    #[error(transparent)]
    List(#[from] TestListError),
}

fn detail_suffix(detail: &str) -> String {
    if detail.is_empty() {
        String::new()
    } else {
        format!(": {detail}")
    }
}

impl TestSource {
    /// Reads `--tests` (`-` is stdin).
    pub fn read(path: &str) -> Result<Self, DiscoveryError> {
        let (bytes, name) = if path == "-" {
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut bytes).map_err(|source| {
                DiscoveryError::Read {
                    path: PathBuf::from("-"),
                    source,
                }
            })?;
            (bytes, "stdin".to_owned())
        } else {
            let bytes = std::fs::read(path).map_err(|source| DiscoveryError::Read {
                path: PathBuf::from(path),
                source,
            })?;
            (bytes, format!("`{path}`"))
        };
        Ok(TestSource::List(TestList::parse(&bytes, &name)?))
    }

    /// The test list: the one read up front, or the list command's output (killed after
    /// `timeout`).
    pub async fn discover(&self, timeout: Duration) -> Result<TestList, DiscoveryError> {
        match self {
            TestSource::List(list) => Ok(list.clone()),
            TestSource::Command { argv, format } => {
                let output = run_list_command(argv, *format, timeout).await?;
                let ids = match format {
                    ListFormat::Lines => output.stdout,
                    ListFormat::PytestCollect => {
                        pytest::parse_collected(&String::from_utf8_lossy(&output.stdout))
                            .map_err(|detail| output.unreadable(detail))?
                            .into_bytes()
                    }
                    ListFormat::NextestJson => Listing::parse(&output.stdout)
                        .map_err(|detail| output.unreadable(detail))?
                        .ids()
                        .join("\n")
                        .into_bytes(),
                };
                Ok(TestList::parse(
                    &ids,
                    &format!("list command `{}`", output.command),
                )?)
            }
        }
    }
}

/// What a list command printed, once it succeeded.
#[derive(Debug)]
pub struct ListOutput {
    /// The command, as typed.
    pub command: String,
    /// Its standard output.
    pub stdout: Vec<u8>,
}

impl ListOutput {
    /// The error for output that is not in the expected format.
    pub fn unreadable(&self, detail: String) -> DiscoveryError {
        DiscoveryError::Unreadable {
            command: self.command.clone(),
            detail,
        }
    }
}

/// Runs list command `argv` in `format`, killed after `timeout`. The leader lists through it,
/// and so does every nextest worker (to learn its binaries): a failure names the command and
/// the lines of its output that say why, with a hint when the tool is missing.
pub async fn run_list_command(
    argv: &[String],
    format: ListFormat,
    timeout: Duration,
) -> Result<ListOutput, DiscoveryError> {
    let spec = Spec {
        argv: argv.to_vec(),
        env: Vec::new(),
        timeout: Some(timeout),
        cwd: None,
    };
    let finished = process::run(
        &spec,
        Capture::Stdout {
            stderr_limit: 16 * 1024,
        },
    )
    .await
    .map_err(|err| match (format, err) {
        (ListFormat::PytestCollect, SpawnError::NotFound(program)) => {
            DiscoveryError::NoInterpreter(program)
        }
        (_, err) => DiscoveryError::Spawn(err),
    })?;
    let command =
        shlex::try_join(argv.iter().map(String::as_str)).unwrap_or_else(|_| argv.join(" "));
    if format == ListFormat::PytestCollect && finished.exit == process::Exit::Code(5) {
        return Err(TestListError::Empty {
            source_name: format!("list command `{command}`"),
        }
        .into());
    }
    if !finished.exit.success() {
        let mut lines = match format {
            ListFormat::PytestCollect => {
                pytest::collection_errors(&String::from_utf8_lossy(&finished.stdout))
            }
            _ => Vec::new(),
        };
        if lines.is_empty() {
            lines.extend(finished.output.trim().lines().last().map(str::to_owned));
        }
        if format == ListFormat::NextestJson && finished.output.contains("no such command") {
            lines.push("(hint: cargo install --locked cargo-nextest)".to_owned());
        }
        if format == ListFormat::PytestCollect && pytest::pytest_missing(&finished.output) {
            lines.push(pytest::interpreter_hint());
        }
        return Err(DiscoveryError::Failed {
            command,
            exit: finished.exit,
            detail: lines.join("; "),
        });
    }
    Ok(ListOutput {
        command,
        stdout: finished.stdout,
    })
}
