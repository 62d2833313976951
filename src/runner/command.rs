//! [`CommandRunner`]: runs the command after `--` once per batch, with the batch's test ids as
//! separate arguments, and takes the exit code as every test's outcome.
//!
//! The ids go where the command has a `{}` argument, or at the end. No shell is involved, so ids
//! with spaces, quotes or `$` reach the command exactly as listed.

use std::time::Duration;

use crate::outcome::{Outcome, TestResult};
use crate::process::{self, Capture, Exit, Spec};
use crate::queue::Reserved;
use crate::runner::{Runner, RunnerError};

/// The argument replaced by the batch's test ids.
pub const PLACEHOLDER: &str = "{}";

/// The generic runner.
#[derive(Debug, Clone)]
pub struct CommandRunner {
    /// The command and its arguments, maybe with a [`PLACEHOLDER`].
    pub command: Vec<String>,
    /// Environment given to every run (build and worker ids).
    pub env: Vec<(String, String)>,
    /// Per-batch timeout.
    pub timeout: Option<Duration>,
    /// Most bytes of output kept per batch.
    pub output_limit: usize,
}

impl CommandRunner {
    /// The argv for `batch`.
    pub fn argv(&self, batch: &[Reserved]) -> Vec<String> {
        let ids = batch.iter().map(|r| r.id.as_str().to_owned());
        match self.command.iter().position(|arg| arg == PLACEHOLDER) {
            Some(at) => {
                let mut argv = self.command[..at].to_vec();
                argv.extend(ids);
                argv.extend_from_slice(&self.command[at + 1..]);
                argv
            }
            None => self.command.iter().cloned().chain(ids).collect(),
        }
    }
}

impl Runner for CommandRunner {
    async fn run(&self, batch: &[Reserved]) -> Result<Vec<TestResult>, RunnerError> {
        let spec = Spec {
            argv: self.argv(batch),
            env: self.env.clone(),
            timeout: self.timeout,
        };
        let finished = process::run(
            &spec,
            Capture::Merged {
                limit: self.output_limit,
            },
        )
        .await?;
        let (outcome, note) = match finished.exit {
            Exit::Code(0) => (Outcome::Passed, None),
            Exit::Code(_) => (Outcome::Failed, None),
            Exit::Signal(_) => (Outcome::Errored, Some("crashed")),
            Exit::TimedOut(_) => (Outcome::Errored, Some("process group killed")),
        };
        let output = match (outcome, note) {
            (Outcome::Passed, _) => String::new(),
            (_, Some(note)) => format!("{}[ciq: {}; {note}]\n", finished.output, finished.exit),
            (_, None) => format!("{}[ciq: {}]\n", finished.output, finished.exit),
        };
        Ok(batch
            .iter()
            .map(|reserved| TestResult {
                id: reserved.id.clone(),
                outcome,
                duration: finished.duration,
                output: output.clone(),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_id::TestId;

    fn batch(ids: &[&str]) -> Vec<Reserved> {
        ids.iter()
            .map(|id| Reserved {
                id: TestId::new(*id).unwrap(),
                lease: 1,
            })
            .collect()
    }

    fn runner(command: &[&str]) -> CommandRunner {
        CommandRunner {
            command: command.iter().map(|s| (*s).to_owned()).collect(),
            env: Vec::new(),
            timeout: Some(Duration::from_secs(20)),
            output_limit: 64 * 1024,
        }
    }

    #[test]
    fn ids_go_at_the_placeholder_or_the_end() {
        let tests = batch(&["a b", "$HOME"]);
        assert_eq!(
            runner(&["run", "-v"]).argv(&tests),
            ["run", "-v", "a b", "$HOME"]
        );
        assert_eq!(
            runner(&["run", "{}", "--fast"]).argv(&tests),
            ["run", "a b", "$HOME", "--fast"]
        );
    }

    #[tokio::test]
    async fn exit_code_decides_and_failures_keep_output() {
        let failing = runner(&["sh", "-c", "echo boom; exit 3", "sh"]);
        let results = failing.run(&batch(&["t1", "t2"])).await.unwrap();
        assert_eq!(results.len(), 2);
        assert!(results.iter().all(|r| r.outcome == Outcome::Failed));
        assert_eq!(results[0].output, "boom\n[ciq: exit code 3]\n");
        let passing = runner(&["sh", "-c", "echo fine", "sh"]);
        let results = passing.run(&batch(&["t1"])).await.unwrap();
        assert_eq!(results[0].outcome, Outcome::Passed);
        assert_eq!(results[0].output, "");
    }

    #[tokio::test]
    async fn timeout_is_an_error_not_a_failure() {
        let mut hanging = runner(&["sh", "-c", "sleep 30", "sh"]);
        hanging.timeout = Some(Duration::from_millis(200));
        let results = hanging.run(&batch(&["t"])).await.unwrap();
        assert_eq!(results[0].outcome, Outcome::Errored);
        assert!(
            results[0].output.contains("timed out after 200ms"),
            "{}",
            results[0].output
        );
    }
}
