//! Child processes that cannot hang or flood ciq: [`run`] starts a command in its own process
//! group, captures its output within a bound, and kills the whole group on timeout or when the
//! caller gives up (the future is dropped on shutdown).
//!
//! Commands are never run through a shell: arguments are passed as they are.

use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::outcome::Outcome;

/// What to run.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Program and arguments.
    pub argv: Vec<String>,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// Kill the process group after this long.
    pub timeout: Option<Duration>,
    /// Working directory (ciq's own when `None`).
    pub cwd: Option<std::path::PathBuf>,
}

/// How to capture output.
#[derive(Debug, Clone, Copy)]
pub enum Capture {
    /// stdout and stderr interleaved into one bounded buffer (a test's output).
    Merged {
        /// Most bytes kept.
        limit: usize,
    },
    /// stdout whole (a list of ids), stderr bounded (for the error message).
    Stdout {
        /// Most bytes of stderr kept.
        stderr_limit: usize,
    },
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// It exited with this code.
    Code(i32),
    /// A signal killed it.
    Signal(i32),
    /// It ran past its timeout and its process group was killed.
    TimedOut(Duration),
}

impl Exit {
    /// Whether the process exited with code 0.
    pub fn success(self) -> bool {
        self == Exit::Code(0)
    }
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exit::Code(code) => write!(f, "exit code {code}"),
            Exit::Signal(signal) => write!(f, "killed by signal {signal}"),
            Exit::TimedOut(after) => {
                write!(f, "timed out after {}", crate::human::duration(*after))
            }
        }
    }
}

/// A finished process.
#[derive(Debug, Clone)]
pub struct Finished {
    /// How it ended.
    pub exit: Exit,
    /// Full stdout with [`Capture::Stdout`], empty otherwise.
    pub stdout: Vec<u8>,
    /// Merged output, or stderr, bounded.
    pub output: String,
    /// Wall time.
    pub duration: Duration,
}

impl Finished {
    /// The outcome of a test run judged by how it ended (0 passed, another code failed, a
    /// signal or a timeout errored), and its output with a `[ciq: ...]` line saying how.
    pub fn outcome(&self) -> (Outcome, String) {
        let (outcome, note) = match self.exit {
            Exit::Code(0) => (Outcome::Passed, None),
            Exit::Code(_) => (Outcome::Failed, None),
            Exit::Signal(_) => (Outcome::Errored, Some("crashed")),
            Exit::TimedOut(_) => (Outcome::Errored, Some("process group killed")),
        };
        let output = match note {
            Some(note) => format!("{}[ciq: {}; {note}]\n", self.output, self.exit),
            None => format!("{}[ciq: {}]\n", self.output, self.exit),
        };
        (outcome, output)
    }
}

/// A command that could not be started.
#[derive(Debug, Error)]
pub enum SpawnError {
    /// The program does not exist.
    #[error("command `{0}` not found")]
    NotFound(String),
    /// The program exists but cannot be executed.
    #[error("command `{0}` is not executable (permission denied)")]
    NotExecutable(String),
    /// The argument list is empty.
    #[error("no command given")]
    Empty,
    /// Any other failure to start.
    #[error("cannot start command `{program}`")]
    Other {
        /// The program.
        program: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// Runs `spec` to completion (or timeout), capturing output as `capture` says.
pub async fn run(spec: &Spec, capture: Capture) -> Result<Finished, SpawnError> {
    let (program, args) = spec.argv.split_first().ok_or(SpawnError::Empty)?;
    let mut command = crate::reaper::command(program, args);
    if let Some(cwd) = &spec.cwd {
        command.current_dir(cwd);
    }
    command
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let mut child = command
        .spawn()
        .map_err(|source| spawn_error(program, source))?;
    let group = GroupGuard::of(&child);
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let limit = match capture {
        Capture::Merged { limit } => limit,
        Capture::Stdout { stderr_limit } => stderr_limit,
    };
    let bounded = Arc::new(Mutex::new(Bounded::new(limit)));
    let stdout_task = tokio::spawn({
        let bounded = Arc::clone(&bounded);
        async move {
            match capture {
                Capture::Merged { .. } => {
                    drain_into(stdout, &bounded).await;
                    Vec::new()
                }
                Capture::Stdout { .. } => read_all(stdout).await,
            }
        }
    });
    let stderr_task = tokio::spawn({
        let bounded = Arc::clone(&bounded);
        async move { drain_into(stderr, &bounded).await }
    });

    let exit = match spec.timeout {
        Some(limit) => match tokio::time::timeout(limit, child.wait()).await {
            Ok(status) => exit_of(status),
            Err(_) => {
                group.kill();
                let _ = child.wait().await;
                Exit::TimedOut(limit)
            }
        },
        None => exit_of(child.wait().await),
    };
    // A grandchild that kept the pipes open (a daemon it started) must not keep ciq waiting:
    // give the readers a moment, then kill what is left of the group, which closes the pipes;
    // what was read by then is kept.
    let grace = Duration::from_secs(1);
    let readers = async {
        let stdout = stdout_task.await.unwrap_or_default();
        let _ = stderr_task.await;
        stdout
    };
    tokio::pin!(readers);
    let stdout = match tokio::time::timeout(grace, &mut readers).await {
        Ok(stdout) => stdout,
        Err(_) => {
            group.kill();
            tokio::time::timeout(grace, &mut readers)
                .await
                .unwrap_or_default()
        }
    };
    group.kill();
    let output = bounded
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .render();
    Ok(Finished {
        exit,
        stdout,
        output,
        duration: started.elapsed(),
    })
}

/// The [`SpawnError`] for `program` failing to start with `source`.
pub fn spawn_error(program: &str, source: std::io::Error) -> SpawnError {
    match source.kind() {
        std::io::ErrorKind::NotFound => SpawnError::NotFound(program.to_owned()),
        std::io::ErrorKind::PermissionDenied => SpawnError::NotExecutable(program.to_owned()),
        _ => SpawnError::Other {
            program: program.to_owned(),
            source,
        },
    }
}

/// How a waited-for child ended.
pub fn exit_of(status: std::io::Result<std::process::ExitStatus>) -> Exit {
    use std::os::unix::process::ExitStatusExt;
    match status {
        Ok(status) => match (status.code(), status.signal()) {
            (Some(code), _) => Exit::Code(code),
            (None, Some(signal)) => Exit::Signal(signal),
            (None, None) => Exit::Code(-1),
        },
        Err(_) => Exit::Code(-1),
    }
}

/// Kills the child's process group when dropped: a test abandoned on shutdown or timeout takes
/// its whole tree with it. The child must have been started with `process_group(0)`. While it
/// lives, the reaper knows the group, and kills it if ciq dies ([`crate::reaper`]).
pub struct GroupGuard(Option<i32>);

impl GroupGuard {
    /// Guards the process group led by `child`.
    pub fn of(child: &tokio::process::Child) -> Self {
        let pgid = child.id().and_then(|id| i32::try_from(id).ok());
        if let Some(pgid) = pgid {
            crate::reaper::watch(pgid);
        }
        Self(pgid)
    }

    /// Kills the whole group now.
    pub fn kill(&self) {
        if let Some(pgid) = self.0 {
            let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
        if let Some(pgid) = self.0 {
            crate::reaper::forget(pgid);
        }
    }
}

async fn read_all(reader: Option<impl AsyncRead + Unpin>) -> Vec<u8> {
    let mut bytes = Vec::new();
    if let Some(mut reader) = reader {
        let _ = reader.read_to_end(&mut bytes).await;
    }
    bytes
}

/// Reads `reader` to its end into `into`.
pub async fn drain_into(reader: Option<impl AsyncRead + Unpin>, into: &Mutex<Bounded>) {
    let Some(mut reader) = reader else { return };
    let mut chunk = vec![0u8; 8192];
    loop {
        match reader.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => into
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(&chunk[..n]),
        }
    }
}

/// `text` cut to `limit` bytes the way [`Bounded`] cuts a stream, for output that arrives whole
/// (a JUnit report's, a persistent framework's).
pub fn bounded(text: &str, limit: usize) -> String {
    if text.len() <= limit {
        return text.to_owned();
    }
    let mut kept = Bounded::new(limit);
    kept.push(text.as_bytes());
    kept.render()
}

/// Output kept within a bound: the first quarter and the last three quarters of the limit, so
/// both the start of a failure and its final lines survive a flood.
#[derive(Debug)]
pub struct Bounded {
    limit: usize,
    head: Vec<u8>,
    tail: std::collections::VecDeque<u8>,
    dropped: usize,
}

impl Bounded {
    /// An empty buffer keeping at most `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            head: Vec::new(),
            tail: std::collections::VecDeque::new(),
            dropped: 0,
        }
    }

    /// Appends bytes, dropping from the middle once over the limit.
    pub fn push(&mut self, mut bytes: &[u8]) {
        let head_limit = self.limit / 4;
        if self.head.len() < head_limit {
            let n = bytes.len().min(head_limit - self.head.len());
            self.head.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
        }
        let tail_limit = self.limit - head_limit;
        self.tail.extend(bytes);
        if self.tail.len() > tail_limit {
            let excess = self.tail.len() - tail_limit;
            self.tail.drain(..excess);
            self.dropped += excess;
        }
    }

    /// The kept output as text, with a note where bytes were cut.
    pub fn render(&self) -> String {
        let head = String::from_utf8_lossy(&self.head);
        let tail: Vec<u8> = self.tail.iter().copied().collect();
        let tail = String::from_utf8_lossy(&tail);
        if self.dropped == 0 {
            format!("{head}{tail}")
        } else {
            format!(
                "{head}\n[ciq: {} bytes of output cut here; {} kept]\n{tail}",
                self.dropped, self.limit
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_keeps_head_and_tail() {
        let mut out = Bounded::new(8);
        out.push(b"ab");
        out.push(b"0123456789xyz");
        let text = out.render();
        assert!(
            text.starts_with("ab\n[ciq: 7 bytes of output cut here; 8 kept]\n"),
            "{text}"
        );
        assert!(text.ends_with("\n789xyz"), "{text}");
    }

    #[test]
    fn bounded_is_exact_under_the_limit() {
        let mut out = Bounded::new(64);
        out.push(b"hello ");
        out.push(b"world");
        assert_eq!(out.render(), "hello world");
    }

    #[tokio::test]
    async fn timeout_kills_the_whole_group() {
        let spec = Spec {
            argv: vec![
                "sh".into(),
                "-c".into(),
                "sleep 30 & echo started; wait".into(),
            ],
            env: Vec::new(),
            timeout: Some(Duration::from_millis(300)),
            cwd: None,
        };
        let finished = run(&spec, Capture::Merged { limit: 1024 }).await.unwrap();
        assert_eq!(finished.exit, Exit::TimedOut(Duration::from_millis(300)));
        assert!(finished.output.contains("started"));
        assert!(finished.duration < Duration::from_secs(10));
    }

    /// Regression: a daemon left holding stdout made ciq drop a list command's whole output.
    #[tokio::test]
    async fn output_survives_a_grandchild_holding_the_pipe() {
        let spec = Spec {
            argv: vec![
                "sh".into(),
                "-c".into(),
                "echo first; echo second; sleep 30 &".into(),
            ],
            env: Vec::new(),
            timeout: Some(Duration::from_secs(20)),
            cwd: None,
        };
        let finished = run(&spec, Capture::Stdout { stderr_limit: 64 })
            .await
            .unwrap();
        assert_eq!(finished.exit, Exit::Code(0));
        assert_eq!(finished.stdout, b"first\nsecond\n");
        assert!(finished.duration < Duration::from_secs(10));
    }

    #[tokio::test]
    async fn missing_program_is_named() {
        let spec = Spec {
            argv: vec!["/nonexistent/ciq-test-cmd".into()],
            env: Vec::new(),
            timeout: None,
            cwd: None,
        };
        let err = run(&spec, Capture::Merged { limit: 10 }).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "command `/nonexistent/ciq-test-cmd` not found"
        );
    }
}
