//! [`PersistentRunner`]: one framework process per worker, kept alive and fed test ids over
//! stdin/stdout in JSON lines (protocol version 1, `docs/persistent-protocol.md`).
//!
//! Heavy frameworks boot once per worker instead of once per test. A process that dies mid-test
//! errors that test with its stderr, and is started again for the next one; a test that runs
//! past the timeout has the process group killed, the same way.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Split};
use tokio::process::{Child, ChildStdin, ChildStdout};
use tokio::sync::Mutex as AsyncMutex;

use crate::lines::clip;
use crate::outcome::{Outcome, TestResult, reported_duration};
use crate::process::{Bounded, GroupGuard, SpawnError, drain_into, exit_of, spawn_error};
use crate::runner::stray::Stray;
use crate::runner::{Feed, Ran, Runner, RunnerError};
use crate::test_id::TestId;

/// The protocol version this ciq speaks.
pub const PROTOCOL_VERSION: u32 = 1;

/// How long a framework has to finish its teardown after `shutdown`.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum Request<'a> {
    Run {
        id: &'a str,
        /// The id sent next in this batch, so the framework may keep what both tests share.
        #[serde(skip_serializing_if = "Option::is_none")]
        next: Option<&'a str>,
        /// The next test is not known yet: the framework may keep what a likely next test
        /// would share, and say so (`kept`); ciq then holds the result until the next `run`
        /// or `settle` says whether tearing it down went well.
        #[serde(skip_serializing_if = "is_false")]
        keep: bool,
    },
    /// Asks for the collected ids, when the framework said at `ready` that it lists.
    List,
    /// No test follows for now: tear down what the last test kept.
    Settle,
    Shutdown,
}

fn is_false(flag: &bool) -> bool {
    !flag
}

#[derive(Debug, Deserialize)]
struct Message {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    protocol: Option<u32>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    outcome: Option<String>,
    #[serde(default)]
    duration: Option<f64>,
    #[serde(default)]
    output: Option<String>,
    /// With `ready`: whether the framework answers `list`.
    #[serde(default)]
    lists: bool,
    /// With `list`: the collected ids, in collection order.
    #[serde(default)]
    ids: Option<Vec<String>>,
    /// With `result`: the framework kept some of what this test set up.
    #[serde(default)]
    kept: bool,
    /// With `result` or `settled`: tearing down what the kept test set up failed.
    #[serde(default)]
    previous: Option<Previous>,
}

/// What failed a kept test after its result: the teardown of what it kept.
#[derive(Debug, Deserialize)]
struct Previous {
    #[serde(default)]
    output: Option<String>,
}

/// One `run` answered.
struct Answer {
    result: TestResult,
    /// The framework kept some of what the test set up for a test that may follow.
    kept: bool,
    /// How tearing down what the previous test kept failed, if it did.
    previous: Option<Previous>,
    /// A second `result` for the test answered before this one, read while waiting for this
    /// one's: that test's run wrote it, and this test ran again in a new process.
    stray: Option<Stray>,
}

impl From<TestResult> for Answer {
    fn from(result: TestResult) -> Self {
        Answer {
            result,
            kept: false,
            previous: None,
            stray: None,
        }
    }
}

/// How one attempt at a `run` went.
enum Attempt {
    Answered(Answer),
    /// The process sent a second `result` for the test before; it was killed.
    Stray(Stray),
}

/// The last result of a batch, held until the framework's next answer (or `settle`).
struct Held {
    result: TestResult,
    /// The framework kept what the test set up: `settle` asks it to tear that down.
    kept: bool,
}

/// What a framework adapter adds to the runner's errors when its process will not start.
#[derive(Debug, Clone, Copy, Default)]
pub struct Hints {
    /// For a program that does not exist, `(hint: ...)`.
    pub missing_program: Option<fn() -> String>,
    /// For a process that exited before it was ready, from its stderr.
    pub exited_early: Option<fn(&str) -> Option<String>>,
}

/// A runner speaking the persistent protocol with a framework process.
pub struct PersistentRunner {
    hints: Hints,
    argv: Vec<String>,
    env: Vec<(String, String)>,
    timeout: Option<Duration>,
    output_limit: usize,
    session: AsyncMutex<Option<Session>>,
    /// The result of a batch's last test: final once the framework's next answer shows its
    /// run is over (no second `result` for it came first) or `settle` says how tearing down
    /// what it kept went. Used under `session`'s lock.
    provisional: Mutex<Option<Held>>,
}

struct Session {
    child: Child,
    stdin: ChildStdin,
    /// Its stdout, line by line, as bytes: a line that is not UTF-8 breaks the protocol; it
    /// does not end the stream.
    stdout: Split<BufReader<ChildStdout>>,
    /// How many lines it wrote to stdout, to name the one that breaks the protocol.
    lines_read: usize,
    /// The test it answered last: a second `result` for it, read later, is a line that
    /// test's run wrote.
    answered: Option<TestId>,
    stderr: Arc<Mutex<Bounded>>,
    /// Copies the process's stderr into `stderr` until the pipe closes.
    stderr_task: tokio::task::JoinHandle<()>,
    group: GroupGuard,
    /// Whether the framework answers `list`.
    lists: bool,
}

/// What waiting for a message produced.
enum Received {
    Message(Message),
    /// A line that is not a protocol message: the framework broke the protocol.
    Garbage(Garbage),
    /// The process closed stdout (it died or exited).
    Closed,
    TimedOut,
}

impl PersistentRunner {
    /// A runner starting `argv` (with `env`) when the first test arrives.
    pub fn new(
        argv: Vec<String>,
        env: Vec<(String, String)>,
        timeout: Option<Duration>,
        output_limit: usize,
        hints: Hints,
    ) -> Self {
        Self {
            argv,
            env,
            timeout,
            output_limit,
            hints,
            session: AsyncMutex::new(None),
            provisional: Mutex::new(None),
        }
    }

    fn command_line(&self) -> String {
        self.argv.join(" ")
    }

    fn provisional(&self) -> std::sync::MutexGuard<'_, Option<Held>> {
        self.provisional
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn framework_error(&self, detail: String) -> RunnerError {
        RunnerError::Framework {
            command: self.command_line(),
            detail,
        }
    }

    async fn start(&self) -> Result<Session, RunnerError> {
        let (program, args) = self
            .argv
            .split_first()
            .ok_or(RunnerError::Spawn(crate::process::SpawnError::Empty))?;
        let mut child = crate::reaper::command(program, args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("CIQ_PROTOCOL", PROTOCOL_VERSION.to_string())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(|source| spawn_error(program, source))
            .map_err(|err| match (err, self.hints.missing_program) {
                (SpawnError::NotFound(program), Some(hint)) => {
                    self.framework_error(format!("`{program}`: not found\n{}", hint()))
                }
                (err, _) => RunnerError::Spawn(err),
            })?;
        let group = GroupGuard::of(&child);
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(self.framework_error("its pipes could not be opened".to_owned()));
        };
        let stderr = Arc::new(Mutex::new(Bounded::new(self.output_limit)));
        let stderr_task = tokio::spawn({
            let pipe = child.stderr.take();
            let stderr = Arc::clone(&stderr);
            async move { drain_into(pipe, &stderr).await }
        });
        let mut session = Session {
            child,
            stdin,
            stdout: BufReader::new(stdout).split(b'\n'),
            lines_read: 0,
            answered: None,
            stderr,
            stderr_task,
            group,
            lists: false,
        };
        let deadline = deadline_after(self.timeout);
        loop {
            match session.receive(deadline).await {
                Received::Message(message) if message.kind == "ready" => {
                    let version = message.protocol.unwrap_or(0);
                    if version != PROTOCOL_VERSION {
                        return Err(self.framework_error(format!(
                            "it speaks protocol version {version}; this ciq speaks {PROTOCOL_VERSION}"
                        )));
                    }
                    session.lists = message.lists;
                    return Ok(session);
                }
                Received::Message(message) if message.kind == "fatal" => {
                    // The framework exits after a fatal; its stderr may hold the reason the
                    // message only points to (pytest's "its stderr says why").
                    let mut detail = message.message.unwrap_or_default();
                    session.ended().await;
                    let stderr = session.stderr_tail();
                    if !stderr.trim().is_empty() {
                        detail.push_str(&format!("\n(its stderr: {})", key_line(&stderr)));
                    }
                    return Err(self.framework_error(detail));
                }
                Received::Message(_) => {}
                Received::Garbage(garbage) => {
                    return Err(self.framework_error(format!(
                        "it broke the protocol before it was ready: {garbage}"
                    )));
                }
                Received::Closed => {
                    let status = session.ended().await;
                    let stderr = session.stderr_tail();
                    let mut detail = format!(
                        "it exited before it was ready ({status}): {}",
                        key_line(&stderr)
                    );
                    if let Some(hint) = self.hints.exited_early.and_then(|hint| hint(&stderr)) {
                        detail.push('\n');
                        detail.push_str(&hint);
                    }
                    return Err(self.framework_error(detail));
                }
                Received::TimedOut => {
                    return Err(
                        self.framework_error("it was not ready within the test timeout".to_owned())
                    );
                }
            }
        }
    }

    /// Runs one test in `session`; `None` for the session means it must be restarted. A second
    /// `result` for the test before, read on the way, ends the process (that test's run broke
    /// the protocol, not this one's): this test then runs again in a new one.
    async fn run_one(
        &self,
        session: &mut Option<Session>,
        id: &TestId,
        next: Option<&TestId>,
        limit: Duration,
    ) -> Result<Answer, RunnerError> {
        let mut stray = None;
        // At most twice: a new process has answered no test, so it sends no stray result.
        loop {
            match self.attempt(session, id, next, limit).await? {
                Attempt::Answered(answer) => return Ok(Answer { stray, ..answer }),
                Attempt::Stray(found) => stray = Some(found),
            }
        }
    }

    /// One attempt at running a test in `session`.
    async fn attempt(
        &self,
        session: &mut Option<Session>,
        id: &TestId,
        next: Option<&TestId>,
        limit: Duration,
    ) -> Result<Attempt, RunnerError> {
        let live = match session {
            Some(live) => live,
            None => session.insert(self.start().await?),
        };
        let started = Instant::now();
        let errored = |output: String| {
            TestResult::new(id.clone(), Outcome::Errored, started.elapsed(), output)
        };
        *live.stderr.lock().unwrap_or_else(PoisonError::into_inner) =
            Bounded::new(self.output_limit);
        let request = Request::Run {
            id: id.as_str(),
            next: next.map(TestId::as_str),
            keep: next.is_none(),
        };
        if live.send(&request).await.is_err() {
            let status = live.ended().await;
            let output = format!(
                "{}[ciq: the framework process died ({status})]\n",
                live.stderr_tail()
            );
            *session = None;
            return Ok(Attempt::Answered(errored(output).into()));
        }
        let deadline = deadline_after(Some(limit));
        let broken = loop {
            match live.receive(deadline).await {
                Received::Message(mut message) if message.kind == "result" => {
                    if message.id.as_deref() != Some(id.as_str()) {
                        let before = live.answered.take();
                        if let Some(before) =
                            before.filter(|before| message.id.as_deref() == Some(before.as_str()))
                        {
                            live.group.kill();
                            let line = live.lines_read;
                            *session = None;
                            return Ok(Attempt::Stray(Stray { id: before, line }));
                        }
                        break format!("a result for another test, {}", quoted(message.id));
                    }
                    let (kept, previous) = (message.kept, message.previous.take());
                    match result_of(id, message, started, self.output_limit) {
                        Ok(result) => {
                            live.answered = Some(id.clone());
                            return Ok(Attempt::Answered(Answer {
                                result,
                                kept,
                                previous,
                                stray: None,
                            }));
                        }
                        Err(outcome) => break format!("an unknown outcome, {}", quoted(outcome)),
                    }
                }
                Received::Message(_) => {}
                Received::Garbage(garbage) => break garbage.to_string(),
                Received::Closed => {
                    let status = live.ended().await;
                    let output = format!(
                        "{}[ciq: the framework process died running this test ({status}); restarting it]\n",
                        live.stderr_tail()
                    );
                    *session = None;
                    return Ok(Attempt::Answered(errored(output).into()));
                }
                Received::TimedOut => {
                    live.group.kill();
                    let output = format!(
                        "{}[ciq: timed out after {}; process group killed, restarting it]\n",
                        live.stderr_tail(),
                        crate::human::duration(limit)
                    );
                    *session = None;
                    return Ok(Attempt::Answered(errored(output).into()));
                }
            }
        };
        live.group.kill();
        let output = format!(
            "{}[ciq: the framework broke the protocol ({broken}); process group killed, restarting it]\n",
            live.stderr_tail()
        );
        *session = None;
        Ok(Attempt::Answered(errored(output).into()))
    }

    /// Asks the framework to tear down what the provisional test kept; its final result. One
    /// that kept nothing is final as it is.
    async fn settle_in(&self, session: &mut Option<Session>, held: Held) -> TestResult {
        let Held {
            result: kept,
            kept: true,
        } = held
        else {
            return held.result;
        };
        let Some(live) = session else {
            return kept; // the process is gone, and what it kept with it
        };
        let broken = if live.send(&Request::Settle).await.is_err() {
            format!("the framework process died ({})", live.ended().await)
        } else {
            let deadline = deadline_after(self.timeout);
            loop {
                match live.receive(deadline).await {
                    Received::Message(message) if message.kind == "settled" => {
                        return amended(kept, message.previous, self.output_limit);
                    }
                    // No test runs: a `result` now is a second one for the held test, or one
                    // for a test never sent.
                    Received::Message(message) if message.kind == "result" => {
                        live.group.kill();
                        break if message.id.as_deref() == Some(kept.id.as_str()) {
                            format!(
                                "the framework broke the protocol (another `result` for this test, line {} of its stdout)",
                                live.lines_read
                            )
                        } else {
                            format!(
                                "the framework broke the protocol (a result for another test, {})",
                                quoted(message.id)
                            )
                        };
                    }
                    Received::Message(_) => {}
                    Received::Garbage(garbage) => {
                        live.group.kill();
                        break format!("the framework broke the protocol ({garbage})");
                    }
                    Received::Closed => {
                        break format!("the framework process died ({})", live.ended().await);
                    }
                    Received::TimedOut => {
                        live.group.kill();
                        break "the framework timed out".to_owned();
                    }
                }
            }
        };
        let output = format!(
            "{}[ciq: {broken} tearing down what this test set up]\n",
            live.stderr_tail()
        );
        *session = None;
        amended(
            kept,
            Some(Previous {
                output: Some(output),
            }),
            self.output_limit,
        )
    }

    /// The ids the framework collected, one per line, from the process that will run them
    /// (started now, within `timeout`): a framework that collects once for both saves a
    /// collection per build. `None` when the framework does not list (an older plugin).
    pub async fn list(&self, timeout: Duration) -> Result<Option<Vec<u8>>, RunnerError> {
        let listed = tokio::time::timeout(timeout, async {
            let mut guard = self.session.lock().await;
            let session = match guard.as_mut() {
                Some(session) => session,
                None => guard.insert(self.start().await?),
            };
            if !session.lists {
                return Ok(None);
            }
            let listed = session.list().await;
            if listed.is_err() {
                session.group.kill();
                *guard = None;
            }
            listed
                .map(Some)
                .map_err(|detail| self.framework_error(detail))
        })
        .await;
        listed.unwrap_or_else(|_| {
            Err(self.framework_error(format!(
                "it did not list its tests within {}",
                crate::human::duration(timeout)
            )))
        })
    }
}

/// What line `number` of a framework's stdout says: a message, nothing (a blank line), or that
/// the framework broke the protocol (a line that is not UTF-8 JSON of a message; an array
/// is not one, though serde would read one as a message's fields in order).
fn read_line(line: &[u8], number: usize) -> Result<Option<Message>, Garbage> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let text = std::str::from_utf8(line).map(str::trim);
    if text.is_ok_and(str::is_empty) {
        return Ok(None);
    }
    text.ok()
        .filter(|text| text.starts_with('{'))
        .and_then(|text| serde_json::from_str::<Message>(text).ok())
        .map(Some)
        .ok_or_else(|| Garbage {
            line: number,
            text: String::from_utf8_lossy(line).into_owned(),
        })
}

/// A line of a framework's stdout that is not a protocol message.
#[derive(Debug)]
struct Garbage {
    /// Its number, from 1.
    line: usize,
    /// What it says.
    text: String,
}

impl std::fmt::Display for Garbage {
    /// Its number, and the line quoted (clipped, its control characters escaped so the
    /// message stays one plain line, whatever the framework printed).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "line {} of its stdout is `{}`",
            self.line,
            crate::lines::one_line(&clip(&self.text))
        )
    }
}

/// A field of a message, quoted, for an error: `"x"`, or `none` when it is missing.
fn quoted(field: Option<String>) -> String {
    field.map_or_else(|| "none".to_owned(), |field| format!("{:?}", clip(&field)))
}

/// The line of a framework's stderr that most likely says why it stopped: the last one
/// mentioning an error (a traceback's last line, a usage error), else the last one.
fn key_line(stderr: &str) -> &str {
    let lines = || stderr.lines().map(str::trim).filter(|l| !l.is_empty());
    lines()
        .rfind(|line| line.to_lowercase().contains("error"))
        .or_else(|| lines().next_back())
        .unwrap_or("no output")
}

/// `timeout` from now, or no deadline for none (or one too far to represent).
fn deadline_after(timeout: Option<Duration>) -> Option<tokio::time::Instant> {
    timeout.and_then(|t| tokio::time::Instant::now().checked_add(t))
}

/// A kept test's result once tearing down what it kept failed (`previous`): errored, unless it
/// failed on its own, with what the teardown said after its own output.
fn amended(mut result: TestResult, previous: Option<Previous>, limit: usize) -> TestResult {
    let Some(previous) = previous else {
        return result;
    };
    if result.outcome != Outcome::Failed {
        result.outcome = Outcome::Errored;
    }
    result.output.push_str(&previous.output.unwrap_or_default());
    result.output = crate::process::bounded(&result.output, limit);
    result
}

/// The test result a `result` message gives, or the unknown outcome it named.
fn result_of(
    id: &TestId,
    message: Message,
    started: Instant,
    limit: usize,
) -> Result<TestResult, Option<String>> {
    let duration = message
        .duration
        .and_then(reported_duration)
        .unwrap_or_else(|| started.elapsed());
    let outcome = match message.outcome.as_deref() {
        Some("passed") => Outcome::Passed,
        Some("failed") => Outcome::Failed,
        Some("skipped") => Outcome::Skipped,
        Some("errored") => Outcome::Errored,
        _ => return Err(message.outcome),
    };
    let output = crate::process::bounded(&message.output.unwrap_or_default(), limit);
    Ok(TestResult::new(id.clone(), outcome, duration, output))
}

impl Session {
    /// Asks the framework for its ids: one per line, or why it could not give them.
    async fn list(&mut self) -> Result<Vec<u8>, String> {
        if self.send(&Request::List).await.is_err() {
            return Err(format!(
                "it died before listing its tests ({})",
                self.ended().await
            ));
        }
        loop {
            match self.receive(None).await {
                Received::Message(message) if message.kind == "list" => {
                    let ids = message.ids.ok_or("it answered `list` without `ids`")?;
                    let mut listed = Vec::new();
                    for id in ids {
                        listed.extend_from_slice(id.as_bytes());
                        listed.push(b'\n');
                    }
                    return Ok(listed);
                }
                Received::Message(_) => {}
                Received::Garbage(garbage) => {
                    return Err(format!("it broke the protocol while listing: {garbage}"));
                }
                Received::Closed | Received::TimedOut => {
                    let status = self.ended().await;
                    return Err(format!(
                        "it exited while listing its tests ({status}): {}",
                        key_line(&self.stderr_tail())
                    ));
                }
            }
        }
    }

    async fn send(&mut self, request: &Request<'_>) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(request).map_err(std::io::Error::other)?;
        line.push(b'\n');
        self.stdin.write_all(&line).await?;
        self.stdin.flush().await
    }

    /// The next protocol message, waiting until `deadline` at most: one deadline per test, so
    /// messages the runner ignores cannot keep a hung test alive.
    async fn receive(&mut self, deadline: Option<tokio::time::Instant>) -> Received {
        loop {
            let line = match deadline {
                Some(deadline) => {
                    match tokio::time::timeout_at(deadline, self.stdout.next_segment()).await {
                        Ok(line) => line,
                        Err(_) => return Received::TimedOut,
                    }
                }
                None => self.stdout.next_segment().await,
            };
            match line {
                Ok(Some(line)) => {
                    self.lines_read += 1;
                    match read_line(&line, self.lines_read) {
                        Ok(Some(message)) => return Received::Message(message),
                        Ok(None) => {}
                        Err(garbage) => return Received::Garbage(garbage),
                    }
                }
                Ok(None) | Err(_) => return Received::Closed,
            }
        }
    }

    /// The exit status of a process that closed its stdout (killing it if it lingers), once
    /// its last words on stderr are read.
    async fn ended(&mut self) -> String {
        let status = match tokio::time::timeout(Duration::from_secs(2), self.child.wait()).await {
            Ok(status) => exit_of(status).to_string(),
            Err(_) => {
                self.group.kill();
                "closed its output and was killed".to_owned()
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(1), &mut self.stderr_task).await;
        status
    }

    fn stderr_tail(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .render()
    }
}

impl Runner for PersistentRunner {
    async fn prepare(&self) -> Result<(), RunnerError> {
        let mut session = self.session.lock().await;
        if session.is_none() {
            *session = Some(self.start().await?);
        }
        Ok(())
    }

    async fn run(
        &self,
        batch: &[TestId],
        limits: &[Duration],
        feed: &Feed,
    ) -> Result<Ran, RunnerError> {
        let mut session = self.session.lock().await;
        let mut provisional = self.provisional().take();
        let mut ran = Ran::from(Vec::with_capacity(batch.len()));
        for (at, (id, limit)) in batch.iter().zip(limits).enumerate() {
            let next = batch.get(at + 1);
            let mut answer = self.run_one(&mut session, id, next, *limit).await?;
            if let Some(stray) = answer.stray.take() {
                let held = provisional.as_mut().map(|held| &mut held.result);
                stray.blame(&mut ran.results, held, id, self.output_limit);
            }
            // A second `result` a run wrote comes before the next test's answer: the tests
            // answered before this one are final now.
            if let Some(before) = ran.results.last() {
                feed.result(before);
            }
            if let Some(held) = provisional.take() {
                let settled = amended(held.result, answer.previous, self.output_limit);
                feed.settled(&settled);
                ran.settled = Some(settled);
            }
            // Held, kept or not, until the framework answers again: a second `result` its run
            // wrote may still be on the way.
            if next.is_none() && session.is_some() {
                ran.provisional = Some(id.clone());
                *self.provisional() = Some(Held {
                    result: answer.result.clone(),
                    kept: answer.kept,
                });
            }
            ran.results.push(answer.result);
        }
        if let Some(held) = provisional {
            ran.settled = Some(self.settle_in(&mut session, held).await);
        }
        Ok(ran)
    }

    async fn settle(&self) -> Option<TestResult> {
        let mut session = self.session.lock().await;
        let kept = self.provisional().take()?;
        Some(self.settle_in(&mut session, kept).await)
    }

    async fn shutdown(&self) {
        let Some(mut session) = self.session.lock().await.take() else {
            return;
        };
        let _ = session.send(&Request::Shutdown).await;
        drop(session.stdin);
        match tokio::time::timeout(SHUTDOWN_GRACE, session.child.wait()).await {
            Ok(status) => {
                let exit = exit_of(status);
                if !exit.success() {
                    let _ = tokio::time::timeout(SHUTDOWN_GRACE, session.stderr_task).await;
                    let stderr = session
                        .stderr
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .render();
                    crate::say!(
                        "ciq: warning: the test framework ended its session with {exit} (results already sent stand): {}",
                        key_line(&stderr)
                    );
                }
            }
            Err(_) => {
                crate::say!(
                    "ciq: warning: the test framework did not finish within {} of shutdown; killed it",
                    crate::human::duration(SHUTDOWN_GRACE)
                );
                session.group.kill();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: a line that was not UTF-8 ended the stream as if the framework had died (ciq
    /// waited for it to exit, then killed it); it is a protocol error naming the line.
    #[tokio::test]
    async fn a_line_that_is_not_utf8_breaks_the_protocol_naming_its_line() {
        let script = r#"printf '{"type":"ready","protocol":1}\n\n'; read request; printf 'said \377\033[31m\n'; sleep 30"#;
        let runner = PersistentRunner::new(
            ["sh", "-c", script].map(str::to_owned).into(),
            Vec::new(),
            Some(Duration::from_secs(20)),
            4096,
            Hints::default(),
        );
        let id = TestId::new("t").unwrap();
        let started = Instant::now();
        let ran = runner
            .run(&[id], &[Duration::from_secs(20)], &Feed::none())
            .await
            .unwrap();
        runner.shutdown().await;
        let result = &ran.results[0];
        assert_eq!(result.outcome, Outcome::Errored);
        assert!(
            result.output.contains(
                "[ciq: the framework broke the protocol (line 3 of its stdout is `said \u{fffd}\\u{1b}[31m`); process group killed, restarting it]"
            ),
            "{}",
            result.output
        );
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }

    /// A framework that sends, before each answer, a second `result` for the test it answered
    /// before: each is charged to the test whose run wrote it while ciq still holds that
    /// result (earlier in the batch, or held from the batch before); the test waited for runs
    /// again in a new process. One already handed back (settled) stands.
    #[tokio::test]
    async fn a_second_result_is_charged_to_the_test_that_wrote_it() {
        let script = r#"printf '{"type":"ready","protocol":1}\n'
last=''
while read request; do
  case "$request" in *'"type":"run"'*) ;; *) continue ;; esac
  id=$(printf %s "$request" | sed 's/.*"id":"\([^"]*\)".*/\1/')
  if [ -n "$last" ]; then printf '{"type":"result","id":"%s","outcome":"passed"}\n' "$last"; fi
  printf '{"type":"result","id":"%s","outcome":"passed"}\n' "$id"
  last=$id
done"#;
        let runner = PersistentRunner::new(
            ["sh", "-c", script].map(str::to_owned).into(),
            Vec::new(),
            Some(Duration::from_secs(20)),
            4096,
            Hints::default(),
        );
        let ids = |names: &[&str]| -> Vec<TestId> {
            names
                .iter()
                .map(|name| TestId::new(*name).unwrap())
                .collect()
        };
        let limits = [Duration::from_secs(20); 2];
        let outcomes = |results: &[TestResult]| -> Vec<(String, Outcome)> {
            results
                .iter()
                .map(|r| (r.id.to_string(), r.outcome))
                .collect()
        };
        let ran = runner
            .run(&ids(&["a"]), &limits[..1], &Feed::none())
            .await
            .unwrap();
        assert_eq!(ran.provisional, Some(TestId::new("a").unwrap()));
        let a = runner.settle().await.unwrap();
        assert_eq!(a.outcome, Outcome::Passed, "handed back, it stands");
        let ran = runner
            .run(&ids(&["b"]), &limits[..1], &Feed::none())
            .await
            .unwrap();
        assert_eq!(outcomes(&ran.results), [("b".to_owned(), Outcome::Passed)]);
        assert!(ran.settled.is_none());
        let ran = runner
            .run(&ids(&["c", "d"]), &limits, &Feed::none())
            .await
            .unwrap();
        runner.shutdown().await;
        let b = ran.settled.unwrap();
        assert_eq!(b.outcome, Outcome::Errored);
        assert!(
            b.output.contains("after this test's result the framework sent another `result` for it (line 3 of its stdout)"),
            "{}",
            b.output
        );
        assert_eq!(
            outcomes(&ran.results),
            [
                ("c".to_owned(), Outcome::Errored),
                ("d".to_owned(), Outcome::Passed)
            ]
        );
    }

    /// A line is a message only as a JSON object (serde alone would read an array as a
    /// message's fields in order).
    #[test]
    fn only_json_objects_are_messages() {
        let garbage = |line: &[u8]| read_line(line, 4).err().map(|garbage| garbage.to_string());
        assert_eq!(
            garbage(br#"["result","t"]"#).as_deref(),
            Some(r#"line 4 of its stdout is `["result","t"]`"#)
        );
        assert_eq!(garbage(b"  \r"), None);
        assert_eq!(garbage(br#" {"type":"ready","protocol":1} "#), None);
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;
    use proptest::sample::Index;

    use super::*;
    use crate::property_testing::{config, noisy_bytes, test_id};

    /// A protocol message as a framework may write it, and the fields ciq should read from it.
    #[derive(Debug, Clone)]
    struct Written {
        kind: String,
        id: Option<String>,
        outcome: Option<String>,
        duration: Option<f64>,
        output: Option<String>,
        ids: Option<Vec<String>>,
        kept: bool,
        /// A field ciq does not know, which it ignores.
        unknown: Option<(String, String)>,
    }

    fn written() -> impl Strategy<Value = Written> {
        let kind = prop_oneof![
            prop::sample::select(vec!["ready", "fatal", "list", "result", "settled"])
                .prop_map(str::to_owned),
            "[a-z_]{1,10}",
        ];
        let outcome = prop_oneof![
            prop::sample::select(vec!["passed", "failed", "skipped", "errored"])
                .prop_map(str::to_owned),
            any::<String>(),
        ];
        (
            kind,
            prop::option::of(test_id()),
            prop::option::of(outcome),
            prop::option::of(0.0..1e6f64),
            prop::option::of(any::<String>()),
            prop::option::of(prop::collection::vec(test_id(), 0..5)),
            any::<bool>(),
            prop::option::of(("x_[a-z]{0,8}", any::<String>())),
        )
            .prop_map(
                |(kind, id, outcome, duration, output, ids, kept, unknown)| Written {
                    kind,
                    id,
                    outcome,
                    duration,
                    output,
                    ids,
                    kept,
                    unknown,
                },
            )
    }

    /// `message` as one line of JSON, without its `\n`.
    fn render(message: &Written) -> Vec<u8> {
        let mut object = serde_json::Map::new();
        object.insert("type".to_owned(), message.kind.clone().into());
        let mut optional = |key: &str, value: Option<serde_json::Value>| {
            if let Some(value) = value {
                object.insert(key.to_owned(), value);
            }
        };
        optional("id", message.id.clone().map(Into::into));
        optional("outcome", message.outcome.clone().map(Into::into));
        optional("duration", message.duration.map(Into::into));
        optional("output", message.output.clone().map(Into::into));
        optional("ids", message.ids.clone().map(Into::into));
        optional("kept", message.kept.then_some(true.into()));
        if let Some((key, value)) = &message.unknown {
            object.insert(key.clone(), value.clone().into());
        }
        serde_json::Value::Object(object).to_string().into_bytes()
    }

    /// A line that is not a protocol message: text, cut or mistyped JSON, a JSON value that is
    /// not an object, bytes that are not UTF-8, a terminal's color codes.
    fn garbage() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            "[a-zA-Z][a-zA-Z .:]{0,30}".prop_map(String::into_bytes),
            written().prop_map(|message| {
                let mut line = render(&message);
                line.pop();
                line
            }),
            Just(b"{\"type\":1}".to_vec()),
            Just(b"{\"type\":\"result\",\"duration\":\"fast\"}".to_vec()),
            Just(b"{\"id\":\"t\"}".to_vec()),
            Just(b"[\"result\"]".to_vec()),
            Just(b"\"ready\"".to_vec()),
            Just(b"{\"type\":\"ready\"} trailing".to_vec()),
            Just(b"{\"type\":\"ready\",\"x\":\"\xff\"}".to_vec()),
            Just(b"\x1b[32mPASSED\x1b[0m".to_vec()),
        ]
    }

    proptest! {
        #![proptest_config(config())]

        /// Any line is a message, nothing (a blank line), or garbage naming its number in one
        /// line of text; never a panic.
        #[test]
        fn any_line_is_a_message_nothing_or_garbage_naming_it(
            bytes in noisy_bytes(),
            number in 1..100_000usize,
        ) {
            let line: Vec<u8> = bytes.into_iter().filter(|&byte| byte != b'\n').collect();
            if let Err(garbage) = read_line(&line, number) {
                prop_assert_eq!(garbage.line, number);
                let message = garbage.to_string();
                prop_assert!(message.starts_with(&format!("line {number} of its stdout is `")), "{message}");
                prop_assert!(!message.chars().any(char::is_control), "{message}");
            }
        }

        /// A framework's message reads back with the fields it wrote, whatever their text, a
        /// `\r` before the `\n` or fields ciq does not know.
        #[test]
        fn messages_read_back(message in written(), crlf in any::<bool>()) {
            let mut line = render(&message);
            if crlf {
                line.push(b'\r');
            }
            let read = read_line(&line, 1)
                .map_err(|garbage| TestCaseError::fail(garbage.to_string()))?
                .ok_or_else(|| TestCaseError::fail("blank"))?;
            prop_assert_eq!(&read.kind, &message.kind);
            prop_assert_eq!(&read.id, &message.id);
            prop_assert_eq!(&read.outcome, &message.outcome);
            prop_assert_eq!(&read.output, &message.output);
            prop_assert_eq!(&read.ids, &message.ids);
            prop_assert_eq!(read.kept, message.kept);
            match (read.duration, message.duration) {
                (Some(read), Some(written)) => prop_assert!((read - written).abs() <= written * 1e-12),
                (read, written) => prop_assert_eq!(read, written),
            }
        }

        /// In a stream of messages and blank lines, the one line that is not a message is
        /// garbage, named by its number.
        #[test]
        fn the_line_breaking_the_protocol_is_named(
            messages in prop::collection::vec(prop_oneof![
                written().prop_map(|message| render(&message)),
                "[ \t]{0,3}".prop_map(String::into_bytes),
            ], 0..12),
            at in any::<Index>(),
            bad in garbage(),
        ) {
            let mut lines = messages;
            let at = at.index(lines.len() + 1);
            lines.insert(at, bad);
            let first_garbage = lines
                .iter()
                .enumerate()
                .find_map(|(index, line)| read_line(line, index + 1).err());
            let garbage = first_garbage.ok_or_else(|| TestCaseError::fail("no garbage"))?;
            prop_assert_eq!(garbage.line, at + 1);
            let message = garbage.to_string();
            prop_assert!(message.starts_with(&format!("line {} of its stdout is `", at + 1)), "{message}");
        }
    }
}
