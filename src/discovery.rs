//! [`TestSource`]: where the leader gets the test list.
//!
//! A list given as a file is read and checked by every worker before it joins, so bad input
//! fails fast everywhere; a list command is run only by the elected leader, because discovery
//! can be slow (a build, a collection) and its output goes to the queue once.

use std::path::PathBuf;
use std::time::Duration;

use thiserror::Error;

use crate::process::{self, Capture, SpawnError, Spec};
use crate::test_id::{TestList, TestListError};

/// Where the test ids come from.
#[derive(Debug, Clone)]
pub enum TestSource {
    /// A list read up front (`--tests FILE`, or `-` for stdin).
    List(TestList),
    /// A command printing one id per line (`--list-command`), run by the leader.
    Command(Vec<String>),
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
    /// The list command failed.
    #[error("list command `{command}` failed ({exit}){}", stderr_suffix(.stderr))]
    Failed {
        /// The command, as typed.
        command: String,
        /// How it ended.
        exit: process::Exit,
        /// The end of its stderr.
        stderr: String,
    },
    /// The list is malformed.
    #[error(transparent)]
    List(#[from] TestListError),
}

fn stderr_suffix(stderr: &str) -> String {
    let last = stderr.trim().lines().last().unwrap_or("");
    if last.is_empty() {
        String::new()
    } else {
        format!(": {last}")
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
            TestSource::Command(argv) => {
                let spec = Spec {
                    argv: argv.clone(),
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
                .map_err(DiscoveryError::Spawn)?;
                let command = shlex::try_join(argv.iter().map(String::as_str))
                    .unwrap_or_else(|_| argv.join(" "));
                if !finished.exit.success() {
                    return Err(DiscoveryError::Failed {
                        command,
                        exit: finished.exit,
                        stderr: finished.output,
                    });
                }
                Ok(TestList::parse(
                    &finished.stdout,
                    &format!("list command `{command}`"),
                )?)
            }
        }
    }
}
