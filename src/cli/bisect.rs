//! `ciq bisect`: finds which of the tests that ran before a failing test, in one worker's
//! process, make it fail.
//!
//! It replays the worker's order (from its order log) with a fresh runner per trial: the tests
//! before, then the failing test, in one process for the persistent runners and nextest's
//! batches, one command per batch otherwise. It first checks the failure reproduces after all
//! of them and not alone, then narrows the set by halves and complements (delta debugging), so
//! it also finds two tests that only break the failing one together. A test that fails at
//! random leads the narrowing anywhere, so a culprit is named only once it is confirmed
//! ([`CONFIRMATIONS`]); otherwise the failure looks flaky.

use std::path::Path;

use super::Failed;
use crate::batching::BatchSize;
use crate::ci::CiIds;
use crate::config::args::BisectArgs;
use crate::config::{ConfigError, RunConfig};
use crate::exit_code::ExitCode;
use crate::order_log;
use crate::outcome::Outcome;
use crate::report::output_file;
use crate::runner::launch::Launch;
use crate::runner::{Feed, Runner};
use crate::test_id::TestId;

/// How many runs confirm a culprit: the culprit(s) then the failing test must fail this many
/// runs in a row, and the failing test alone pass as many. A test failing at random (at a
/// rate p) gets through the two first checks and these with a chance of p^4 (1-p)^4, at most
/// 1 in 256 (p = 1/2); a real order dependency always does.
pub const CONFIRMATIONS: usize = 3;

pub async fn bisect(args: BisectArgs) -> Result<ExitCode, Failed> {
    let BisectArgs {
        failing_test,
        mut run,
    } = args;
    let failing = TestId::new(&failing_test)
        .map_err(|reason| ConfigError::BadFailingTest(reason.to_string()))?;
    let log = run.order_log.clone().ok_or(ConfigError::NoOrderLog)?;
    // Bisect replays locally, whatever queue the job's environment names (CIQ_QUEUE).
    run.queue = None;
    let Some((worker, before)) = order_log::before(&log, &failing, run.worker.as_deref())? else {
        return Err(ConfigError::NeverRan {
            test: failing.to_string(),
            log,
            worker: run.worker,
        }
        .into());
    };
    // The runner's configuration is `ciq run`'s. Its list would need `--tests` for a plain
    // command; the replay's tests come from the order log, so that names it (kept, not read).
    run.tests = Some(log.clone());
    run.list_command = None;
    run.jobs = Some(1);
    let config = RunConfig::new(run, &CiIds::default())?;
    // The framework's pre-flight checks, once for every trial.
    let trial = Trial {
        launch: config.runner.launch()?,
        config: &config,
    };
    crate::say!(
        "ciq bisect: `{failing}` ran after {} test(s) on worker `{worker}`; replaying them",
        before.len()
    );
    let mut trials = 0;
    if !fails(&trial, &before, &failing, &mut trials).await? {
        crate::say!(
            "ciq bisect: does not reproduce: `{failing}` passed after the {} test(s) that ran before it",
            before.len()
        );
        return Ok(ExitCode::NotReproduced);
    }
    if fails(&trial, &[], &failing, &mut trials).await? {
        crate::say!(
            "ciq bisect: does not reproduce as an order dependency: `{failing}` fails when run alone"
        );
        return Ok(ExitCode::NotReproduced);
    }
    let culprits = narrow(&trial, before, &failing, &mut trials).await?;
    let mut failed_after = 0;
    for _ in 0..CONFIRMATIONS {
        failed_after += usize::from(fails(&trial, &culprits, &failing, &mut trials).await?);
    }
    let mut failed_alone = 0;
    for _ in 0..CONFIRMATIONS {
        failed_alone += usize::from(fails(&trial, &[], &failing, &mut trials).await?);
    }
    if failed_after < CONFIRMATIONS || failed_alone > 0 {
        let suspects = match culprits.as_slice() {
            [culprit] => format!("`{culprit}`"),
            _ => format!("the {} tests it narrowed to", culprits.len()),
        };
        crate::say!(
            "ciq bisect: `{failing}` looks flaky, not order-dependent: after {suspects} it failed {failed_after} of {CONFIRMATIONS} runs, and alone {failed_alone} of {CONFIRMATIONS} ({trials} trials); no test is named\n(hint: `ciq run --grind 20` on it says how often it fails)"
        );
        return Ok(ExitCode::BisectFlaky);
    }
    let minimal = log.with_extension("bisect.log");
    let lines: String = culprits
        .iter()
        .chain([&failing])
        .map(|id| format!("{worker}\t{id}\n"))
        .collect();
    if let Err(err) = output_file::write(&minimal, lines.as_bytes()) {
        crate::say!("ciq bisect: {}", crate::human::error_chain(&err));
    }
    println!(
        "ciq bisect: `{failing}` fails after {} (found in {trials} trials; confirmed: it failed {CONFIRMATIONS} runs of {CONFIRMATIONS} after {}, and passed {CONFIRMATIONS} of {CONFIRMATIONS} alone):",
        if culprits.len() == 1 {
            "this test"
        } else {
            "these tests, run in this order"
        },
        if culprits.len() == 1 { "it" } else { "them" }
    );
    for culprit in &culprits {
        println!("    {culprit}");
    }
    println!("to reproduce:\n    {}", reproduce(&log, &minimal));
    Ok(ExitCode::Success)
}

/// Delta debugging: the smallest subsequence of `tests` (in their order) after which `failing`
/// still fails, found by trying chunks, then their complements, at finer and finer grain.
async fn narrow(
    trial: &Trial<'_>,
    mut tests: Vec<TestId>,
    failing: &TestId,
    trials: &mut usize,
) -> Result<Vec<TestId>, Failed> {
    let mut parts = 2;
    while tests.len() >= 2 {
        let size = tests.len().div_ceil(parts);
        let chunks: Vec<Vec<TestId>> = tests.chunks(size).map(<[TestId]>::to_vec).collect();
        let mut narrowed = None;
        for chunk in &chunks {
            if fails(trial, chunk, failing, trials).await? {
                narrowed = Some((chunk.clone(), 2));
                break;
            }
        }
        if narrowed.is_none() && chunks.len() > 2 {
            for skip in 0..chunks.len() {
                let rest: Vec<TestId> = chunks
                    .iter()
                    .enumerate()
                    .filter(|(at, _)| *at != skip)
                    .flat_map(|(_, chunk)| chunk.iter().cloned())
                    .collect();
                if fails(trial, &rest, failing, trials).await? {
                    narrowed = Some((rest, (parts - 1).max(2)));
                    break;
                }
            }
        }
        match narrowed {
            Some((smaller, next)) => {
                tests = smaller;
                parts = next;
            }
            None if parts >= tests.len() => break,
            None => parts = (parts * 2).min(tests.len()),
        }
    }
    Ok(tests)
}

/// What every trial runs its tests with.
struct Trial<'a> {
    config: &'a RunConfig,
    launch: Launch,
}

/// Whether `failing` fails when run after `before` by a fresh runner.
async fn fails(
    trial: &Trial<'_>,
    before: &[TestId],
    failing: &TestId,
    trials: &mut usize,
) -> Result<bool, Failed> {
    *trials += 1;
    let config = trial.config;
    let runner = trial.launch.runner(&config.runner_setup(), "bisect");
    runner.prepare().await?;
    let ids: Vec<TestId> = before.iter().chain([failing]).cloned().collect();
    let batch = match config.worker.batch_size {
        BatchSize::Fixed(n) => n.max(1),
        BatchSize::Auto => ids.len(),
    };
    let limit = config.test_timeout.overall();
    let mut outcome = None;
    for chunk in ids.chunks(batch) {
        let ran = runner
            .run(chunk, &vec![limit; chunk.len()], &Feed::none())
            .await?;
        let settled = ran.settled.into_iter();
        for result in ran.results.into_iter().chain(settled) {
            if result.id == *failing {
                outcome = Some(result.outcome);
            }
        }
    }
    if let Some(settled) = runner.settle().await
        && settled.id == *failing
    {
        outcome = Some(settled.outcome);
    }
    runner.shutdown().await;
    Ok(matches!(outcome, Some(Outcome::Failed | Outcome::Errored)))
}

/// This command line, reading `minimal` instead of `log` (named on the command line, or by
/// `CIQ_ORDER_LOG`, which the printed command then overrides).
fn reproduce(log: &Path, minimal: &Path) -> String {
    let log = log.to_string_lossy();
    let minimal = minimal.to_string_lossy();
    let mut named = false;
    let mut words: Vec<String> = std::env::args()
        .map(|arg| {
            if arg == log {
                named = true;
                minimal.clone().into_owned()
            } else if arg == format!("--order-log={log}") {
                named = true;
                format!("--order-log={minimal}")
            } else {
                arg
            }
        })
        .collect();
    if !named {
        let at = words
            .iter()
            .position(|w| w == "bisect")
            .map_or(words.len(), |at| at + 1);
        words.splice(at..at, ["--order-log".to_owned(), minimal.into_owned()]);
    }
    words
        .iter()
        .map(|w| shell_word(w))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `arg` quoted for a POSIX shell when it needs to be.
fn shell_word(arg: &str) -> String {
    if !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:@%+,".contains(c))
    {
        arg.to_owned()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}
