//! Running a list command: a command that prints a suite's tests, run by the elected leader
//! (and by nextest workers, to learn their binaries: once per process, [`run_once`]), bounded
//! by a timeout, its stdout kept whole and its stderr bounded. What the output means is the
//! framework's business ([`crate::frameworks`]); this module only runs the command and words
//! its failures.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use thiserror::Error;
use tokio::sync::OnceCell;

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

/// How bash reports a pipeline whose step died of SIGPIPE under `pipefail` (128 + 13): a step
/// that wrote on after the next one stopped reading, as `seq 100000 | head -5` does.
const SIGPIPE_UNDER_PIPEFAIL: i32 = 141;

/// What to do about [`SIGPIPE_UNDER_PIPEFAIL`].
const SIGPIPE_HINT: &str = "(hint: exit code 141 is SIGPIPE under `pipefail`: a step of the pipeline wrote on after the next one stopped reading, as `head` does; read the whole output instead, e.g. `sed -n 1,5p` for `head -5`, or let the writer stop early without failing, e.g. `{ seq 100000 || true; } | head -5`)";

/// A list command that ran to its end (successfully or not).
#[derive(Debug, Clone)]
pub struct ListRun {
    /// The command, as typed.
    pub command: String,
    /// How it ended and what it printed.
    pub finished: Finished,
}

impl ListRun {
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
        if self.finished.exit == Exit::Code(SIGPIPE_UNDER_PIPEFAIL) {
            detail.push(SIGPIPE_HINT.to_owned());
        }
        Err(ListingError::Failed {
            command: self.command,
            exit: self.finished.exit,
            detail: detail.join("; "),
        })
    }

    /// Its standard output read by `parse` when it succeeded; otherwise the failure, with
    /// `detail` lines as [`ListRun::stdout_or_failure`] gives them. Output `parse` refuses is
    /// unreadable, naming the command.
    pub fn read<T>(
        self,
        detail: Vec<String>,
        parse: impl FnOnce(&[u8]) -> Result<T, String>,
    ) -> Result<T, ListingError> {
        let command = self.command.clone();
        let stdout = self.stdout_or_failure(detail)?;
        parse(&stdout).map_err(|detail| ListingError::Unreadable { command, detail })
    }

    /// The last line of what it said on stderr, then `hint`: the detail of a failure whose
    /// cause ciq recognised.
    pub fn said_with(&self, hint: String) -> Vec<String> {
        let mut detail: Vec<String> = self
            .finished
            .output
            .trim()
            .lines()
            .last()
            .map(str::to_owned)
            .into_iter()
            .collect();
        detail.push(hint);
        detail
    }
}

/// The argv of a list command the user wrote as shell text: `bash -o pipefail -c command`
/// where there is a bash, so a pipeline whose first step fails (a collection error piped into
/// `grep`) fails the listing instead of queueing part of the suite; `sh -c command` elsewhere.
pub fn shell(command: &str) -> Vec<String> {
    let shell: &[&str] = if which::which("bash").is_ok() {
        &["bash", "-o", "pipefail", "-c"]
    } else {
        &["sh", "-c"]
    };
    shell
        .iter()
        .map(|word| (*word).to_owned())
        .chain([command.to_owned()])
        .collect()
}

/// List command `argv` as the user would write it: the text given to the shell, or its words
/// quoted as a shell would need them.
pub fn shown(argv: &[String]) -> String {
    match argv {
        [sh, dash_c, text] if sh == "sh" && dash_c == "-c" => text.clone(),
        [bash, dash_o, pipefail, dash_c, text]
            if bash == "bash" && dash_o == "-o" && pipefail == "pipefail" && dash_c == "-c" =>
        {
            text.clone()
        }
        _ => shlex::try_join(argv.iter().map(String::as_str)).unwrap_or_else(|_| argv.join(" ")),
    }
}

/// Runs list command `argv`, killed after `timeout`.
pub async fn run(argv: &[String], timeout: Duration) -> Result<ListRun, ListingError> {
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
    Ok(ListRun {
        command: shown(argv),
        finished,
    })
}

/// The list commands this process ran with [`run_once`], by argv.
type Runs = Mutex<HashMap<Vec<String>, Arc<OnceCell<ListRun>>>>;

static RUNS: LazyLock<Runs> = LazyLock::new(Runs::default);

/// Runs list command `argv` once in this process: later calls with the same argv, and calls
/// while it runs, get what the first one printed. A framework whose workers list to learn how
/// to run their tests (nextest: `cargo nextest list` runs every test binary, seconds on a
/// large workspace) then lists once per ciq process, not once for the leader and again for
/// each of its workers. A command that could not start is tried again by the next call.
pub async fn run_once(argv: &[String], timeout: Duration) -> Result<ListRun, ListingError> {
    let cell = {
        let mut runs = RUNS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(runs.entry(argv.to_vec()).or_default())
    };
    cell.get_or_try_init(|| run(argv, timeout)).await.cloned()
}
