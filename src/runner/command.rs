//! [`CommandRunner`]: runs the command after `--` once per batch, with the batch's test ids as
//! separate arguments.
//!
//! The ids go where the command has a `{}` argument, or at the end. No shell is involved, so ids
//! with spaces, quotes or `$` reach the command exactly as listed. Each run is offered a fresh
//! JUnit XML path (`{junit}` in an argument, and `CIQ_JUNIT_PATH`): when the command writes a
//! report there, each test gets its own outcome from it; otherwise the exit code decides for
//! the whole batch.

use std::path::Path;
use std::time::Duration;

use crate::junit::read::{self, Cases, JunitError};
use crate::outcome::{Outcome, TestResult};
use crate::process::{self, Capture, Exit, Finished, Spec};
use crate::runner::{Feed, Ran, Runner, RunnerError};
use crate::test_id::TestId;
use crate::time_limits;

/// The argument replaced by the batch's test ids.
pub const PLACEHOLDER: &str = "{}";

/// Replaced, inside any argument, by the path the JUnit report should be written to.
pub const JUNIT_PLACEHOLDER: &str = "{junit}";

/// The generic runner.
#[derive(Debug, Clone)]
pub struct CommandRunner {
    /// The command and its arguments, maybe with a [`PLACEHOLDER`].
    pub command: Vec<String>,
    /// Environment given to every run (build and worker ids).
    pub env: Vec<(String, String)>,
    /// Bound on the preflight check; a batch's own comes with it.
    pub timeout: Option<Duration>,
    /// Most bytes of output kept per batch.
    pub output_limit: usize,
    /// A command that must succeed before the worker takes tests (pytest: the interpreter has
    /// pytest), so a worker that cannot run any test errors none.
    pub preflight: Option<Preflight>,
}

/// A check a runner makes before its worker takes a test.
#[derive(Debug, Clone)]
pub struct Preflight {
    /// The command that must succeed.
    pub argv: Vec<String>,
    /// What to say when it does not, `(hint: ...)`.
    pub hint: String,
}

impl CommandRunner {
    /// The argv for `batch`, with `junit` as the report path.
    pub fn argv(&self, batch: &[TestId], junit: &Path) -> Vec<String> {
        let junit = junit.to_string_lossy();
        let command = self
            .command
            .iter()
            .map(|arg| arg.replace(JUNIT_PLACEHOLDER, &junit));
        let ids = batch.iter().map(|id| id.as_str().to_owned());
        match self.command.iter().position(|arg| arg == PLACEHOLDER) {
            Some(at) => {
                let mut argv: Vec<String> = command.collect();
                argv.splice(at..=at, ids);
                argv
            }
            None => command.chain(ids).collect(),
        }
    }

    fn wants_junit(&self) -> bool {
        self.command
            .iter()
            .any(|arg| arg.contains(JUNIT_PLACEHOLDER))
    }

    /// Per-test results of a finished batch, from its JUnit report when there is one.
    fn results(
        &self,
        batch: &[TestId],
        finished: &Finished,
        report: Option<Result<Cases, JunitError>>,
        junit: &Path,
    ) -> Vec<TestResult> {
        let (outcome, batch_output) = finished.outcome();
        // Without a report's own times, each test of the batch is taken to have had an equal
        // share of it: enough to size batches by, never remembered as the test's own time.
        let share = finished.duration / u32::try_from(batch.len()).unwrap_or(u32::MAX).max(1);
        let result = |id: &TestId, outcome, duration, output| {
            TestResult::new(id.clone(), outcome, duration, output)
        };
        // A share of the batch's time is the test's own only in a batch of one.
        let shared = |id: &TestId, outcome, output| {
            let result = result(id, outcome, share, output);
            if batch.len() > 1 {
                result.shared()
            } else {
                result
            }
        };
        match report {
            // A run that failed, crashed or timed out while its report says every test passed:
            // the report was written before the end went wrong (a crash in teardown, a kill
            // after the last test), so it cannot be the whole truth. An error of the batch.
            Some(Ok(cases))
                if !finished.exit.success()
                    && batch.iter().all(|id| {
                        cases
                            .find(id.as_str())
                            .is_some_and(|case| case.outcome.is_success())
                    }) =>
            {
                let output = format!(
                    "{batch_output}[ciq: {}, although its JUnit report says every test of the batch passed: an error of the batch]\n",
                    finished.exit
                );
                batch
                    .iter()
                    .map(|id| shared(id, Outcome::Errored, output.clone()))
                    .collect()
            }
            Some(Ok(cases)) => batch
                .iter()
                .map(|id| match cases.find(id.as_str()) {
                    Some(case) => {
                        let output = if case.output.trim().is_empty() {
                            batch_output.clone()
                        } else {
                            process::bounded(&case.output, self.output_limit)
                        };
                        match case.duration {
                            Some(duration) => result(id, case.outcome, duration, output),
                            // No time in the report: the test's share of the batch.
                            None => shared(id, case.outcome, output),
                        }
                    }
                    None => shared(
                        id,
                        Outcome::Errored,
                        format!(
                            "{batch_output}[ciq: this test is missing from the JUnit report]\n"
                        ),
                    ),
                })
                .collect(),
            Some(Err(err)) => batch
                .iter()
                .map(|id| {
                    let output = format!("{batch_output}[ciq: {err} in `{}`]\n", junit.display());
                    shared(id, Outcome::Errored, output)
                })
                .collect(),
            None => {
                let crashed = matches!(finished.exit, Exit::Signal(_) | Exit::TimedOut(_));
                let (outcome, output) = if self.wants_junit() && !crashed {
                    let missing = format!(
                        "{batch_output}[ciq: the command wrote no JUnit report to `{}`]\n",
                        junit.display()
                    );
                    (Outcome::Errored, missing)
                } else {
                    (outcome, batch_output)
                };
                batch
                    .iter()
                    .map(|id| shared(id, outcome, output.clone()))
                    .collect()
            }
        }
    }
}

/// Reads and removes the report at `path`; `None` when the command wrote none.
async fn take_report(path: &Path) -> Option<Result<Cases, JunitError>> {
    let bytes = tokio::fs::read(path).await.ok()?;
    let _ = tokio::fs::remove_file(path).await;
    Some(read::parse_bytes(&bytes))
}

impl Runner for CommandRunner {
    async fn prepare(&self) -> Result<(), RunnerError> {
        let Some(preflight) = &self.preflight else {
            return Ok(());
        };
        let spec = Spec {
            argv: preflight.argv.clone(),
            env: self.env.clone(),
            timeout: self.timeout,
            cwd: None,
        };
        let missing = |detail: String| RunnerError::Framework {
            command: preflight.argv.join(" "),
            detail: format!("{detail}\n{}", preflight.hint),
        };
        let finished = match process::run(&spec, Capture::Merged { limit: 4096 }).await {
            Ok(finished) => finished,
            Err(process::SpawnError::NotFound(program)) => {
                return Err(missing(format!("`{program}` not found")));
            }
            Err(err) => return Err(err.into()),
        };
        if finished.exit.success() {
            return Ok(());
        }
        let said = finished
            .output
            .trim()
            .lines()
            .last()
            .unwrap_or_default()
            .to_owned();
        Err(missing(format!("it ended with {}: {said}", finished.exit)))
    }

    async fn run(
        &self,
        batch: &[TestId],
        limits: &[Duration],
        _feed: &Feed,
    ) -> Result<Ran, RunnerError> {
        let junit =
            std::env::temp_dir().join(format!("ciq-junit-{}.xml", uuid::Uuid::new_v4().simple()));
        let mut env = self.env.clone();
        env.push((
            "CIQ_JUNIT_PATH".to_owned(),
            junit.to_string_lossy().into_owned(),
        ));
        let spec = Spec {
            argv: self.argv(batch, &junit),
            env,
            timeout: Some(time_limits::total(limits)),
            cwd: None,
        };
        let finished = process::run(
            &spec,
            Capture::Merged {
                limit: self.output_limit,
            },
        )
        .await?;
        let report = take_report(&junit).await;
        // A batch killed at its limit: the tests its report does not show finished may have
        // been held up by another, so their outcome is unknown.
        let cut_short = match finished.exit {
            Exit::TimedOut(_) => batch
                .iter()
                .filter(
                    |id| !matches!(&report, Some(Ok(cases)) if cases.find(id.as_str()).is_some()),
                )
                .cloned()
                .collect(),
            _ => Vec::new(),
        };
        Ok(Ran {
            results: self.results(batch, &finished, report, &junit),
            cut_short,
            ..Ran::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(ids: &[&str]) -> Vec<TestId> {
        ids.iter().map(|id| TestId::new(*id).unwrap()).collect()
    }

    impl CommandRunner {
        /// Runs `ids` in one batch whose limits add up to this runner's timeout.
        async fn run_ids(&self, ids: &[&str]) -> Result<Vec<TestResult>, RunnerError> {
            let tests = batch(ids);
            let each = self.timeout.unwrap_or(Duration::from_secs(20)) / ids.len() as u32;
            let ran = self
                .run(&tests, &vec![each; ids.len()], &Feed::none())
                .await?;
            Ok(ran.results)
        }
    }

    fn runner(command: &[&str]) -> CommandRunner {
        CommandRunner {
            command: command.iter().map(|s| (*s).to_owned()).collect(),
            env: Vec::new(),
            timeout: Some(Duration::from_secs(20)),
            output_limit: 64 * 1024,
            preflight: None,
        }
    }

    #[test]
    fn ids_go_at_the_placeholder_or_the_end() {
        let tests = batch(&["a b", "$HOME"]);
        let junit = Path::new("/tmp/r.xml");
        assert_eq!(
            runner(&["run", "-v"]).argv(&tests, junit),
            ["run", "-v", "a b", "$HOME"]
        );
        assert_eq!(
            runner(&["run", "{}", "--xml={junit}"]).argv(&tests, junit),
            ["run", "a b", "$HOME", "--xml=/tmp/r.xml"]
        );
    }

    /// A command writing JUnit gets per-test outcomes; a test missing from the report is an
    /// error, and a malformed report errors the batch instead of crashing.
    #[tokio::test]
    async fn junit_reports_give_per_test_outcomes() {
        let script = r#"printf '<testsuite><testcase name="a"/><testcase name="b"><failure message="nope">trace</failure></testcase></testsuite>' > "$CIQ_JUNIT_PATH"; exit 1"#;
        let results = runner(&["sh", "-c", script, "sh"])
            .run_ids(&["a", "b", "c"])
            .await
            .unwrap();
        let outcomes: Vec<_> = results.iter().map(|r| r.outcome).collect();
        assert_eq!(
            outcomes,
            [Outcome::Passed, Outcome::Failed, Outcome::Errored]
        );
        assert_eq!(results[1].output, "nope\ntrace\n");
        assert!(results[2].output.contains("missing from the JUnit report"));
        let broken = runner(&[
            "sh",
            "-c",
            "echo '<testsuite><testcase' > \"$CIQ_JUNIT_PATH\"",
            "sh",
        ]);
        let results = broken.run_ids(&["a"]).await.unwrap();
        assert_eq!(results[0].outcome, Outcome::Errored);
        assert!(
            results[0].output.contains("malformed JUnit XML"),
            "{}",
            results[0].output
        );
        let silent = runner(&["true", "--junit={junit}"]);
        let results = silent.run_ids(&["a"]).await.unwrap();
        assert_eq!(results[0].outcome, Outcome::Errored);
        assert!(
            results[0].output.contains("wrote no JUnit report"),
            "{}",
            results[0].output
        );
    }

    /// Regression: a command that wrote a JUnit report saying every test passed and then
    /// crashed, was killed, exited 1 or timed out was green.
    #[tokio::test]
    async fn a_passing_report_never_overrides_a_bad_end() {
        let report = r#"printf '<testsuite><testcase name="a"/><testcase name="b"/></testsuite>' > "$CIQ_JUNIT_PATH""#;
        for (end, said) in [
            ("kill -SEGV $$", "killed by signal 11"),
            ("kill -TERM $$", "killed by signal 15"),
            ("exit 1", "exit code 1"),
            ("sleep 30", "timed out after 300ms"),
        ] {
            let mut command = runner(&["sh", "-c", &format!("{report}; {end}"), "sh"]);
            command.timeout = Some(Duration::from_millis(300));
            let results = command.run_ids(&["a", "b"]).await.unwrap();
            for result in &results {
                assert_eq!(result.outcome, Outcome::Errored, "{end}: {result:?}");
                assert!(result.output.contains(said), "{end}: {}", result.output);
                assert!(
                    result.output.contains("an error of the batch"),
                    "{end}: {}",
                    result.output
                );
            }
        }
        // A failure in the report explains a non-zero exit: the report stands.
        let failing = r#"printf '<testsuite><testcase name="a"/><testcase name="b"><failure/></testcase></testsuite>' > "$CIQ_JUNIT_PATH"; exit 1"#;
        let results = runner(&["sh", "-c", failing, "sh"])
            .run_ids(&["a", "b"])
            .await
            .unwrap();
        let outcomes: Vec<_> = results.iter().map(|r| r.outcome).collect();
        assert_eq!(outcomes, [Outcome::Passed, Outcome::Failed]);
        // A crash after part of the batch: what the report does not show finished is errored.
        let partial = r#"printf '<testsuite><testcase name="a"/></testsuite>' > "$CIQ_JUNIT_PATH"; kill -KILL $$"#;
        let results = runner(&["sh", "-c", partial, "sh"])
            .run_ids(&["a", "b"])
            .await
            .unwrap();
        let outcomes: Vec<_> = results.iter().map(|r| r.outcome).collect();
        assert_eq!(outcomes, [Outcome::Passed, Outcome::Errored]);
    }

    #[tokio::test]
    async fn exit_code_decides_and_failures_keep_output() {
        let failing = runner(&["sh", "-c", "echo boom; exit 3", "sh"]);
        let results = failing.run_ids(&["t1", "t2"]).await.unwrap();
        assert_eq!(results.len(), 2);
        assert!(results.iter().all(|r| r.outcome == Outcome::Failed));
        assert_eq!(results[0].output, "boom\n[ciq: exit code 3]\n");
        let passing = runner(&["sh", "-c", "echo fine", "sh"]);
        let results = passing.run_ids(&["t1"]).await.unwrap();
        assert_eq!(results[0].outcome, Outcome::Passed);
        assert_eq!(results[0].output, "");
    }

    /// Without a report's own times, a batch's time is shared out over its tests, so a batch
    /// of short tests does not make each look as long as the batch.
    #[tokio::test]
    async fn a_batch_time_is_shared_out_and_a_report_times_each_test() {
        let results = runner(&["sh", "-c", "sleep 0.4", "sh"])
            .run_ids(&["a", "b", "c", "d"])
            .await
            .unwrap();
        for result in &results {
            assert!(
                (Duration::from_millis(100)..Duration::from_millis(400)).contains(&result.duration),
                "{result:?}"
            );
            assert!(result.shared, "a share is not remembered as the test's own");
        }
        let timed = r#"printf '<testsuite><testcase name="a" time="2.5"/><testcase name="b" time="0.01"/></testsuite>' > "$CIQ_JUNIT_PATH""#;
        let results = runner(&["sh", "-c", timed, "sh"])
            .run_ids(&["a", "b"])
            .await
            .unwrap();
        assert_eq!(results[0].duration, Duration::from_millis(2500));
        assert_eq!(results[1].duration, Duration::from_millis(10));
        assert!(results.iter().all(|result| !result.shared));
    }

    #[tokio::test]
    async fn timeout_is_an_error_not_a_failure() {
        let mut hanging = runner(&["sh", "-c", "sleep 30", "sh"]);
        hanging.timeout = Some(Duration::from_millis(200));
        let results = hanging.run_ids(&["t"]).await.unwrap();
        assert_eq!(results[0].outcome, Outcome::Errored);
        assert!(
            results[0].output.contains("timed out after 200ms"),
            "{}",
            results[0].output
        );
    }
}
