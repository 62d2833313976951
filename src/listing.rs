//! Running a list command: a command that prints a suite's tests, run by the elected leader
//! (and by nextest workers, to learn their binaries), bounded by a timeout, its stdout kept
//! whole and its stderr bounded. What the output means is the framework's business
//! ([`crate::frameworks`]); this module only runs the command and words its failures.

use std::time::Duration;

use thiserror::Error;

use crate::process::{self, Capture, Exit, Finished, SpawnError, Spec};

/// Why a list command gave no usable output.
#[derive(Debug, Error)]
pub enum ListingError {
    /// The command could not start.
    #[error("cannot run the list command")]
    Spawn(#[source] SpawnError),
    /// The command's program does not exist, and there is a hint for it.
    #[error("cannot run `{program}`: not found\n{hint}")]
    Missing {
        /// The program.
        program: String,
        /// What to do about it, `(hint: ...)`.
        hint: String,
    },
    /// The command failed.
    #[error("list command `{command}` failed ({exit}){}", detail_suffix(.detail))]
    Failed {
        /// The command, as typed.
        command: String,
        /// How it ended.
        exit: Exit,
        /// The lines of its output that say why.
        detail: String,
    },
    /// The command's output is not in the expected format.
    #[error("cannot read the output of list command `{command}`: {detail}")]
    Unreadable {
        /// The command.
        command: String,
        /// What is wrong.
        detail: String,
    },
}

fn detail_suffix(detail: &str) -> String {
    if detail.is_empty() {
        String::new()
    } else {
        format!(": {detail}")
    }
}

/// A list command that ran to its end (successfully or not).
#[derive(Debug)]
pub struct Listed {
    /// The command, as typed.
    pub command: String,
    /// How it ended and what it printed.
    pub finished: Finished,
}

impl Listed {
    /// Its standard output when it succeeded; otherwise the failure, with `detail` lines (the
    /// last line of its stderr when there are none).
    pub fn stdout_or_failure(self, mut detail: Vec<String>) -> Result<Vec<u8>, ListingError> {
        if self.finished.exit.success() {
            return Ok(self.finished.stdout);
        }
        if detail.is_empty() {
            detail.extend(
                self.finished
                    .output
                    .trim()
                    .lines()
                    .last()
                    .map(str::to_owned),
            );
        }
        Err(ListingError::Failed {
            command: self.command,
            exit: self.finished.exit,
            detail: detail.join("; "),
        })
    }

    /// The error for output that is not in the expected format.
    pub fn unreadable(&self, detail: String) -> ListingError {
        ListingError::Unreadable {
            command: self.command.clone(),
            detail,
        }
    }
}

/// Runs list command `argv`, killed after `timeout`.
pub async fn run(argv: &[String], timeout: Duration) -> Result<Listed, ListingError> {
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
    .map_err(ListingError::Spawn)?;
    let command =
        shlex::try_join(argv.iter().map(String::as_str)).unwrap_or_else(|_| argv.join(" "));
    Ok(Listed { command, finished })
}
