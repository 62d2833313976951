//! [`check`]: the invariants of DESIGN, checked on what one schedule left behind.
//!
//! 1. Every listed test has exactly one final outcome: none lost (each is in `results`), none
//!    counted twice (no two final lines for one test across the workers, the report's counts add
//!    up to the list).
//! 2. At most one generation committed (plus those the harness made itself), and no generation
//!    that was never committed was served from.
//! 3. No take-over before the holder's heartbeat lapsed (the monitor's observation), and a
//!    worker nothing happened to never loses a test.
//! 4. The verdict, the outcomes and the exit codes match the suite's known answer (red, exit 6,
//!    once a worker with another list was recorded; that worker runs nothing).
//! 5. Every process ended by itself.
//!
//! A cluster's failover loses the writes its replica had not received, so after one the
//! build may roll back: a test a worker reported may run again (its first outcome was lost),
//! a commit may be lost and the build elected again (and a worker still on the first
//! generation write what it measured there), a heartbeat lost so a take-over comes early. What must still hold: the build never ends green with a test lost or counted
//! twice in Redis, and it ends either with its verdict or with the infrastructure code (5).

use std::collections::BTreeMap;

use ciq::exit_code::ExitCode;
use ciq_testkit::{terminated, test_lines};

use crate::plan::{Fault, Kind, Plan};
use crate::play::{Ended, Fate, Played};

/// Exit code of a worker with another list, and of every process that saw one recorded.
const LIST_MISMATCH: i32 = ExitCode::ListMismatch.code();
/// Exit code of a process that stopped on Redis's account.
const INFRASTRUCTURE: i32 = ExitCode::Infrastructure.code();

/// The exit code of the suite's verdict: green, or its failing tests.
fn suite_code(plan: &Plan) -> i32 {
    if plan.expect_green() {
        ExitCode::Success.code()
    } else {
        ExitCode::TestsFailed.code()
    }
}

/// What one schedule broke.
#[derive(Debug, Default)]
pub struct Verdict {
    pub lost: usize,
    pub double_counted: usize,
    pub violations: Vec<String>,
    /// Which tests were lost or counted twice, to print with the counts.
    pub details: Vec<String>,
}

impl Verdict {
    pub fn is_clean(&self) -> bool {
        self.lost == 0 && self.double_counted == 0 && self.violations.is_empty()
    }
}

pub fn check(plan: &Plan, played: &Played) -> Verdict {
    let mut verdict = Verdict::default();
    let known: BTreeMap<&str, Kind> = plan.tests.iter().map(|t| (t.id.as_str(), t.kind)).collect();
    let lossy = plan.faults.iter().any(|t| t.fault == Fault::Failover);
    // After a lossy failover the report may stop on Redis's account instead of giving a
    // verdict; then only what Redis holds is checked.
    let report_gave_up = lossy && played.report.output.code == Some(INFRASTRUCTURE);

    let mut lost = Vec::new();
    for (id, kind) in &known {
        match played.results.get(*id).map(String::as_str) {
            None => lost.push(*id),
            Some(outcome) => {
                let expected: &[&str] = match kind {
                    Kind::Pass => &["passed"],
                    Kind::Fail => &["failed"],
                    Kind::Flaky => &["flaky", "passed"],
                };
                if !expected.contains(&outcome) {
                    verdict
                        .violations
                        .push(format!("`{id}` ended {outcome}, expected {expected:?}"));
                }
            }
        }
    }
    if report_gave_up {
        lost.clear();
    }
    verdict.lost = lost.len();
    if !lost.is_empty() {
        verdict.details.push(format!("lost: {lost:?}"));
    }
    let unknown: Vec<_> = played
        .results
        .keys()
        .filter(|id| !known.contains_key(id.as_str()))
        .collect();
    if !unknown.is_empty() {
        verdict.double_counted += unknown.len();
        verdict
            .details
            .push(format!("outcomes of tests never listed: {unknown:?}"));
    }

    let mut finals: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for worker in &played.workers {
        for line in test_lines(&worker.output.stderr) {
            if line.is_final() {
                finals
                    .entry(line.test)
                    .or_default()
                    .push(format!("{} by {}", line.status, line.worker));
            }
        }
    }
    for (test, lines) in &finals {
        // A pass after a failure turns it into flaky: a change of outcome, not a second one.
        let changed_to_flaky = lines.len() == 2
            && (lines[0].starts_with("FAIL") || lines[0].starts_with("ERROR"))
            && lines[1].starts_with("FLAKY");
        // After a lossy failover a reported outcome may be lost and the test run again.
        if lines.len() > 1 && !changed_to_flaky && !lossy {
            verdict.double_counted += 1;
            verdict
                .details
                .push(format!("`{test}` has final lines {lines:?}"));
        }
    }

    let mut expected_code = suite_code(plan);
    let mut expected_verdict = if plan.expect_green() {
        "verdict: green"
    } else {
        "verdict: failed"
    };
    let report = &played.report;
    // A worker with another list turns the verdict red from the moment it is recorded: a
    // process that ended before that keeps the suite's own verdict.
    let mismatch_recorded = report
        .output
        .stdout
        .contains("WORKERS WITH ANOTHER TEST LIST");
    if mismatch_recorded {
        expected_code = LIST_MISMATCH;
        expected_verdict = "verdict: failed (a worker had another test list)";
    }
    let foreign = plan.faults.iter().any(|t| t.fault == Fault::ForeignList);
    let suite_code = suite_code(plan);
    if report_gave_up {
        // Checked below: the processes ended, and Redis holds no outcome twice.
    } else if report.output.code != Some(expected_code) {
        verdict.violations.push(format!(
            "report exited {:?}, expected {expected_code}\n{}",
            report.output.code,
            indent(&report.output.both())
        ));
    }
    if !report_gave_up && !report.output.stdout.contains(expected_verdict) {
        verdict
            .violations
            .push(format!("report did not say `{expected_verdict}`"));
    }
    match counted(&report.output.stdout) {
        _ if report_gave_up => {}
        Some((total, counted)) if total == known.len() && counted == total => {}
        Some((total, counted)) => {
            verdict.double_counted += counted.saturating_sub(known.len());
            verdict.violations.push(format!(
                "report counts {counted} outcomes of {total} tests; the list has {}",
                known.len()
            ));
        }
        None => verdict
            .violations
            .push("report printed no counts line".to_owned()),
    }

    for ended in played.workers.iter().chain([report]) {
        if !ended.ended {
            verdict.violations.push(format!(
                "{} did not end within the bound\n{}",
                ended.name,
                indent(&ended.output.both())
            ));
        }
    }
    let ran: Vec<String> = played
        .scratch
        .runs()
        .into_iter()
        .filter(|(worker, _)| worker == "foreign")
        .map(|(_, test)| test)
        .collect();
    if !ran.is_empty() {
        verdict
            .violations
            .push(format!("the worker with another list ran {ran:?}"));
    }
    for worker in &played.workers {
        let code = worker.output.code;
        let verdict_code = code == Some(suite_code) || (foreign && code == Some(LIST_MISMATCH));
        let allowed = match worker.fate {
            Fate::Survives => verdict_code || (lossy && code == Some(INFRASTRUCTURE)),
            Fate::Terminated => code.is_none() || code == terminated() || verdict_code,
            Fate::Killed => true,
            Fate::Foreign => code == Some(LIST_MISMATCH) || (lossy && code == Some(INFRASTRUCTURE)),
        };
        if !allowed {
            verdict.violations.push(format!(
                "{} ({:?}) exited {code:?}, expected {expected_code}\n{}",
                worker.name,
                worker.fate,
                indent(&worker.output.both())
            ));
        }
        if !worker.targeted && !played.global_fault && lost_a_test(worker) {
            verdict.violations.push(format!(
                "{} was never paused or cut off, yet lost a test\n{}",
                worker.name,
                indent(&worker.output.stderr)
            ));
        }
    }

    let expected_generations = 1 + played.replaced;
    // With a short --redis-ttl, a replaced generation nobody works on any more expires, as an
    // abandoned one must: then fewer are left, never more.
    let generations_ok = match plan.redis_ttl {
        Some(_) => (1..=expected_generations).contains(&played.committed),
        None => played.committed == expected_generations,
    };
    if !generations_ok && !lossy {
        verdict.violations.push(format!(
            "{} generations committed, expected {expected_generations}",
            played.committed
        ));
    }
    if !played.served_uncommitted.is_empty() && !lossy {
        verdict.violations.push(format!(
            "generations served without a commit: {:?}",
            played.served_uncommitted
        ));
    }
    if played.monitor.generations.len() > expected_generations && !lossy {
        verdict.violations.push(format!(
            "the build followed {:?}",
            played.monitor.generations
        ));
    }
    for early in played.monitor.early.iter().filter(|_| !lossy) {
        verdict.violations.push(format!("early take-over: {early}"));
    }
    verdict
}

/// The total and the sum of the outcome counts in a summary's counts line
/// (`20 tests: 18 passed, 1 flaky, 1 failed; 2 requeued`).
fn counted(stdout: &str) -> Option<(usize, usize)> {
    let line = stdout.lines().find(|l| l.contains(" tests: "))?;
    let (total, counts) = line.split_once(" tests: ")?;
    let counts = counts.split(';').next()?;
    let sum = counts
        .split(", ")
        .filter(|part| !part.ends_with("not run"))
        .filter_map(|part| part.split_whitespace().next()?.parse::<usize>().ok())
        .sum();
    Some((total.parse().ok()?, sum))
}

fn lost_a_test(worker: &Ended) -> bool {
    let stderr = &worker.output.stderr;
    stderr.contains(" lost test `") || test_lines(stderr).iter().any(|l| l.status == "LOST")
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|line| format!("        {line}"))
        .collect::<Vec<_>>()
        .join("\n")
}
