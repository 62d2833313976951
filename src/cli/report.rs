//! `ciq report`: wait for the build, show progress, print the verdict (and put it on the CI's
//! page, [`ci_pages`]).
//!
//! On a terminal the progress is an indicatif bar; in a CI log (no terminal) it is a line when
//! the phase changes and one every ten seconds, so a stuck build is visible without flooding.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use super::Failed;
use crate::ci;
use crate::config::args::ReportArgs;
use crate::config::report_settings;
use crate::exit_code::{self, ExitCode};
use crate::grind;
use crate::junit::write::JunitReport;
use crate::quarantine::Quarantine;
use crate::queue::QueueError;
use crate::queue::redis::Retrying;
use crate::queue::redis::supervisor::{
    Ending, Measured, ReportSettings, Status, Supervisor, Until,
};
use crate::report::ci_pages;
use crate::report::html;
use crate::report::json::JsonReport;
use crate::report::output_file::{self, OutputError, Planned};
use crate::report::{Findings, HistoryMarks, Summary, TestRecord, Verdict};
use crate::test_id::TestId;
use crate::timeline::{AttemptOutcome, Timeline};
use crate::timings::Slower;

pub async fn report(args: ReportArgs) -> Result<ExitCode, Failed> {
    let ids = ci::detect(|name| std::env::var(name).ok());
    let outputs = Outputs {
        timings: args.timings_out.clone(),
        junit: args.junit.clone(),
        json: args.json.clone(),
        html: args.html.clone(),
        trace: args.trace.clone(),
    };
    let quarantine = args
        .quarantine
        .as_deref()
        .map(Quarantine::read)
        .transpose()?
        .unwrap_or_default();
    let grind = args.grind.then_some(GrindLimits {
        min_pass_rate: args.grind_min_pass_rate,
        max_p95: args.grind_max_p95,
    });
    let settings = report_settings(args, &ids)?;
    outputs.check()?;
    let supervisor = follow(settings).await?;
    let mut progress = Progress::new();
    let (summary, ending) = supervisor
        .supervise(|status| progress.show(status))
        .await
        .map_err(|err| for_build(err, &supervisor.settings().build))?;
    // A grind's copies are not builds of the suite, nor is a build of no test: the history
    // would count them as builds where every test kept quiet.
    let history = if grind.is_none() && !matches!(ending, Ending::NothingToRetry { .. }) {
        // A history that cannot be updated is a warning: it never changes a verdict.
        let marked = supervisor.history(&summary, &quarantine).await;
        marked.unwrap_or_else(|err| {
            crate::say!("ciq: warning: the namespace's flakiness history is not updated: {err}");
            HistoryMarks::default()
        })
    } else {
        HistoryMarks::default()
    };
    progress.finish();
    say_why_it_ended(&ending, supervisor.settings(), &summary);
    let joined = supervisor.joined(&ending, |workers, at_most| {
        crate::say!(
            "ciq report: waiting (at most {}) for {workers} worker(s) still comparing their test list with the build's: another list makes the build red",
            crate::human::duration(at_most)
        );
    });
    let Measured {
        mismatches,
        generation,
        slower,
        ..
    } = joined.await.unwrap_or_else(|err| {
        crate::say!(
            "ciq report: warning: cannot read what the workers recorded after the build: {err}"
        );
        Measured::default()
    });
    let findings = Findings::compose(summary, &quarantine, history, mismatches);
    match &grind {
        Some(limits) => grind_ending(&supervisor, &findings, &outputs, limits, generation).await,
        None => Ok(build_ending(&supervisor, &findings, &outputs, generation, slower).await),
    }
}

/// A queue error of the report, naming the build it followed.
fn for_build(err: QueueError, build: &str) -> Failed {
    Failed::from(err).context(format!("report for build `{build}`"))
}

/// The report's one connection to its build. The report of a job retry re-opens the finished
/// build's failed tests when it comes before the retried workers; a build aborted for everyone
/// is retried as a build of its own, which the report then follows.
async fn follow(settings: ReportSettings) -> Result<Supervisor, Failed> {
    let asked = settings.build.clone();
    let mut supervisor = Supervisor::open(settings)
        .await
        .map_err(|err| for_build(err, &asked))?;
    let reopened = supervisor
        .reopen_for_retry()
        .await
        .map_err(|err| for_build(err, &asked))?;
    match reopened {
        Some(Retrying::Reopened { round, tests }) if tests > 0 => crate::say!(
            "ciq report: retry `{round}` of build `{asked}`: its {tests} failed test(s) run again"
        ),
        Some(Retrying::Aborted { round, fresh }) => crate::say!(
            "ciq report: build `{asked}` was aborted, so retry `{round}` is build `{fresh}`"
        ),
        _ => {}
    }
    Ok(supervisor)
}

/// A build's ending: the verdict printed at once, then the outputs that still need the
/// workers' durations.
async fn build_ending(
    supervisor: &Supervisor,
    findings: &Findings,
    outputs: &Outputs,
    generation: Option<String>,
    slower: Vec<Slower>,
) -> ExitCode {
    let code = exit_code::for_verdict(findings.verdict());
    if !outputs.need_workers() {
        super::show_slower(slower);
    }
    publish(supervisor.settings(), findings, outputs).await;
    if let Some(generation) = &generation {
        say_random_order(
            supervisor.order(generation).await,
            &supervisor.settings().build,
        );
    }
    super::print_last(&findings.render());
    if outputs.need_workers()
        && let Some(measured) = measured(supervisor, outputs, &outputs.needing()).await
    {
        super::show_slower(measured.slower);
        match measured.generation.or(generation) {
            Some(generation) => {
                write_measured(
                    supervisor,
                    findings,
                    outputs,
                    measured.durations,
                    &generation,
                )
                .await;
            }
            None => crate::say!(
                "ciq report: warning: no timing file or JUnit or JSON report: the build's queue was never filled"
            ),
        }
    }
    code
}

/// Says the seed of a build its leader queued in a random order (the build's meta has it): the
/// report, like every worker, names the flags that repeat the order.
fn say_random_order(order: Result<Option<String>, QueueError>, build: &str) {
    match order {
        Ok(Some(order)) if order.starts_with("random") => crate::say!(
            "ciq report: build `{build}` ran its tests in a random order: `--order {order}` repeats it"
        ),
        Ok(_) => {}
        Err(err) => crate::say!("ciq report: warning: cannot read the build's order: {err}"),
    }
}

/// A grind's ending: its verdict is its pass rates and duration percentiles, so it waits for
/// the durations the workers write as they leave, then prints each test's grind and the one
/// verdict.
async fn grind_ending(
    supervisor: &Supervisor,
    findings: &Findings,
    outputs: &Outputs,
    limits: &GrindLimits,
    generation: Option<String>,
) -> Result<ExitCode, Failed> {
    let measured = measured(supervisor, outputs, "the grind's percentiles").await;
    let generation = measured
        .as_ref()
        .and_then(|m| m.generation.clone())
        .or(generation);
    let (verdict, line) = match &generation {
        Some(generation) => {
            let mut records = Vec::new();
            supervisor
                .each_recorded(generation, |page| {
                    records.extend(page);
                    Ok::<(), std::convert::Infallible>(())
                })
                .await?
                .unwrap_or_else(|never| match never {});
            grind_report(&records, limits, findings)
        }
        None => (
            Verdict::Incomplete,
            "grind verdict: incomplete (the build's queue was never filled)".to_owned(),
        ),
    };
    if let (Some(measured), Some(generation)) = (measured, &generation) {
        super::show_slower(measured.slower);
        write_measured(
            supervisor,
            findings,
            outputs,
            measured.durations,
            generation,
        )
        .await;
    }
    publish(supervisor.settings(), findings, outputs).await;
    super::print_last(&findings.render_ending(&line));
    Ok(exit_code::for_verdict(verdict))
}

/// Says why the report stopped waiting, when the queue did not simply drain.
fn say_why_it_ended(ending: &Ending, settings: &ReportSettings, summary: &Summary) {
    match ending {
        Ending::Drained => {}
        Ending::WorkersGone => crate::say!(
            "ciq: every worker left or went silent with {} test(s) still to run",
            summary.not_run_count
        ),
        Ending::TimedOut => crate::say!(
            "ciq: the report timeout ({}) passed with {} test(s) still to run",
            crate::human::duration(settings.report_timeout),
            summary.not_run_count
        ),
        Ending::NothingToRetry { of } => crate::say!(
            "ciq report: build `{}` re-runs the failed tests of build `{of}`, which had none: its workers had nothing to retry",
            settings.build
        ),
        Ending::Kept { tests, came } => crate::say!(
            "ciq report: {} retry `{}` of build `{}`: its {tests} re-opened test(s) keep the outcome they had before it",
            if *came {
                "the jobs left without re-running anything of"
            } else {
                "no retried job came (within a heartbeat timeout) to"
            },
            settings.retry_round.as_deref().unwrap_or_default(),
            settings.build
        ),
    }
}

/// The files the report writes, as given.
struct Outputs {
    timings: Option<PathBuf>,
    junit: Option<PathBuf>,
    json: Option<PathBuf>,
    html: Option<PathBuf>,
    trace: Option<PathBuf>,
}

impl Outputs {
    /// A path that cannot be written is found now, not after a build's worth of waiting.
    fn check(&self) -> Result<(), OutputError> {
        output_file::check(&Planned::given(&[
            ("--junit (CIQ_REPORT_JUNIT)", self.junit.as_deref()),
            ("--json (CIQ_REPORT_JSON)", self.json.as_deref()),
            ("--timings-out (CIQ_TIMINGS_OUT)", self.timings.as_deref()),
            ("--html (CIQ_REPORT_HTML)", self.html.as_deref()),
            ("--trace (CIQ_REPORT_TRACE)", self.trace.as_deref()),
        ]))
    }

    /// Whether an output needs what the workers write as they leave: the files hold the
    /// durations they measured, the pictures how each one left.
    fn need_workers(&self) -> bool {
        self.timings.is_some()
            || self.junit.is_some()
            || self.json.is_some()
            || self.html.is_some()
            || self.trace.is_some()
    }

    /// The outputs that need the workers' durations, for the line that says what the report
    /// waits for.
    fn needing(&self) -> String {
        let flags: Vec<&str> = [
            (&self.timings, "--timings-out"),
            (&self.junit, "--junit"),
            (&self.json, "--json"),
            (&self.html, "--html"),
            (&self.trace, "--trace"),
        ]
        .into_iter()
        .filter_map(|(path, flag)| path.as_ref().map(|_| flag))
        .collect();
        flags.join(", ")
    }
}

/// What the workers wrote once every live one left (at most a heartbeat timeout), saying first
/// what it waits for and why (`for_what`); `None`, after a warning, when it cannot be read.
async fn measured(supervisor: &Supervisor, outputs: &Outputs, for_what: &str) -> Option<Measured> {
    let left = supervisor
        .settle(Until::Left, outputs.timings.is_some(), |workers, at_most| {
            crate::say!(
                "ciq report: waiting (at most {}) for {workers} live worker(s) to leave and write the durations they measured, for {for_what}",
                crate::human::duration(at_most)
            );
        })
        .await;
    match left {
        Ok(measured) => Some(measured),
        Err(err) => {
            crate::say!(
                "ciq report: warning: cannot read what the workers measured{}: {err}",
                if outputs.need_workers() {
                    ", no timing file or JUnit or JSON report written"
                } else {
                    ""
                }
            );
            None
        }
    }
}

/// Writes the outputs asked for: the timing file from `durations`, the JUnit and JSON reports
/// from `generation`'s records.
async fn write_measured(
    supervisor: &Supervisor,
    findings: &Findings,
    outputs: &Outputs,
    durations: Vec<(TestId, Duration)>,
    generation: &str,
) {
    if let Some(path) = &outputs.timings {
        super::write_timings(
            path,
            durations,
            &super::local::failed_in(findings.summary()),
        );
    }
    if outputs.junit.is_some() || outputs.json.is_some() {
        write_outputs(supervisor, generation, findings, outputs).await;
    }
    if outputs.html.is_some() || outputs.trace.is_some() {
        write_pictures(supervisor, findings, outputs, generation).await;
    }
}

/// Writes the build's pictures (`--html`, `--trace`) from its timeline, the findings, and the
/// namespace's usual test times.
async fn write_pictures(
    supervisor: &Supervisor,
    findings: &Findings,
    outputs: &Outputs,
    generation: &str,
) {
    let timeline = supervisor.timeline().await.unwrap_or_else(|err| {
        crate::say!("ciq report: warning: the build's timeline cannot be read: {err}");
        Timeline::default()
    });
    // Without it the page only leaves out why a take-over came when it did.
    let heartbeat_timeout = supervisor
        .heartbeat_timeout_ms(generation)
        .await
        .ok()
        .flatten();
    let usual_ms = if outputs.html.is_some() && !timeline.attempts.is_empty() {
        supervisor
            .usual_ms(&html::needs_usual(&timeline), &timeline)
            .await
            .unwrap_or_else(|err| {
                crate::say!(
                    "ciq report: warning: the usual test times are not read (no drift shown): {err}"
                );
                HashMap::new()
            })
    } else {
        HashMap::new()
    };
    let settings = supervisor.settings();
    let build = html::Build {
        build: &settings.build,
        namespace: &settings.namespace,
        timeline: &timeline,
        findings,
        usual_ms: &usual_ms,
        heartbeat_timeout_ms: heartbeat_timeout,
        batch_size: None,
        // A report that stopped waiting (its timeout) draws what is still running.
        running: timeline
            .attempts
            .iter()
            .any(|a| a.outcome == AttemptOutcome::Running),
        generated_at_ms: super::now_ms(),
    };
    super::write_pictures(
        "ciq report",
        outputs.html.as_deref(),
        outputs.trace.as_deref(),
        &build,
    );
}

/// Puts the findings on the CI's page, naming the report's files for what a capped page leaves
/// out.
async fn publish(settings: &ReportSettings, findings: &Findings, outputs: &Outputs) {
    let files: Vec<&Path> = outputs
        .junit
        .iter()
        .chain(&outputs.json)
        .map(PathBuf::as_path)
        .collect();
    ci_pages::publish(
        findings,
        &settings.build,
        &settings.namespace,
        &files,
        |name| std::env::var(name).ok(),
    )
    .await;
}

/// The limits a grind's tests must keep (`ciq report --grind`).
struct GrindLimits {
    min_pass_rate: f64,
    max_p95: Option<Duration>,
}

/// Prints each test's grind (pass rate, duration percentiles, a failing run's output) and
/// returns the verdict and the line that says it: tests failed when one passed too rarely or
/// ran too long at p95; tests not run and a foreign list as for any build. The grind's is the
/// report's one verdict.
fn grind_report(
    records: &[TestRecord],
    limits: &GrindLimits,
    findings: &Findings,
) -> (Verdict, String) {
    let stats = grind::stats(records);
    let ms = |d: Option<Duration>| d.map_or("-".to_owned(), |d| format!("{}ms", d.as_millis()));
    let mut failing = Vec::new();
    println!("\nGRIND ({} tests):", stats.len());
    println!(
        "    {:>9} {:>9} {:>9} {:>9}  test",
        "passed", "p50", "p95", "max"
    );
    for test in &stats {
        let too_rare = test.pass_rate() < limits.min_pass_rate;
        let too_slow = limits
            .max_p95
            .is_some_and(|max| test.p95.is_some_and(|p95| p95 > max));
        println!(
            "    {:>9} {:>9} {:>9} {:>9}  {}{}",
            format!("{}/{}", test.passed, test.runs),
            ms(test.p50),
            ms(test.p95),
            ms(test.max),
            test.id,
            match (too_rare, too_slow) {
                (true, true) => "  <- passes too rarely, and too slow at p95",
                (true, false) => "  <- passes too rarely",
                (false, true) => "  <- too slow at p95",
                (false, false) => "",
            }
        );
        if let Some(failure) = test.failure.as_ref().filter(|_| test.passed < test.runs) {
            for line in failure.output.lines().take(10) {
                println!("        | {line}");
            }
        }
        if too_rare || too_slow {
            failing.push(test.id.clone());
        }
    }
    let verdict = findings.grind_verdict(!failing.is_empty());
    let line = match verdict {
        Verdict::Failed => format!(
            "grind verdict: failed ({} of {} tests below --grind-min-pass-rate {} or above --grind-max-p95)",
            failing.len(),
            stats.len(),
            limits.min_pass_rate
        ),
        Verdict::ListMismatch => format!("grind verdict: {}", verdict.describe()),
        Verdict::Incomplete => format!(
            "grind verdict: incomplete ({} run(s) never got an outcome)",
            findings.summary().missing()
        ),
        Verdict::Green => "grind verdict: green (every test kept the limits)".to_owned(),
    };
    (verdict, line)
}

/// The build's outputs (`--junit`, `--json`), read from the queue page by page in one pass. An
/// output that cannot be written is a warning: the verdict stands, and the log has every
/// failure.
async fn write_outputs(
    supervisor: &Supervisor,
    generation: &str,
    findings: &Findings,
    outputs: &Outputs,
) {
    let (junit_path, json_path) = (outputs.junit.as_deref(), outputs.json.as_deref());
    let settings = supervisor.settings();
    let written = async {
        let mut junit = junit_path
            .map(|path| JunitReport::create(path, &settings.build, findings.summary()))
            .transpose()?;
        let mut json = json_path
            .map(|path| JsonReport::create(path, &settings.build, &settings.namespace, findings))
            .transpose()?;
        supervisor
            .each_recorded(generation, |records| {
                if let Some(junit) = &mut junit {
                    junit.add(&records)?;
                }
                if let Some(json) = &mut json {
                    json.add(&records)?;
                }
                Ok::<_, OutputError>(())
            })
            .await??;
        let finished = [
            (junit.map(JunitReport::finish), "JUnit", junit_path),
            (json.map(JsonReport::finish), "JSON", json_path),
        ];
        for (report, kind, path) in finished {
            if let (Some(finished), Some(path)) = (report, path) {
                finished?;
                crate::say!(
                    "ciq report: wrote the {kind} report of {} tests to `{}`",
                    findings.summary().decided(),
                    path.display()
                );
            }
        }
        anyhow::Ok(())
    };
    // What was written of a report that failed half-way went with its writer.
    if let Err(err) = written.await {
        crate::say!("ciq report: warning: {err:#}");
    }
}

struct Progress {
    bar: Option<ProgressBar>,
    last: Option<Status>,
    printed: Instant,
}

impl Progress {
    fn new() -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(0);
            bar.set_style(
                ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {pos}/{len} ({elapsed})")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Self {
            bar,
            last: None,
            printed: Instant::now(),
        }
    }

    fn show(&mut self, status: &Status) {
        let line = match status {
            Status::WaitingForLeader => "waiting for a worker to be elected leader".to_owned(),
            Status::Filling { leader } => format!("leader `{leader}` is filling the queue"),
            Status::Running {
                total,
                processed,
                running,
                alive,
            } => {
                if let Some(bar) = &self.bar {
                    bar.set_length(*total);
                    bar.set_position(*processed);
                }
                format!(
                    "{processed}/{total} tests done, {running} running, {alive} worker(s) alive"
                )
            }
        };
        let phase_changed = self
            .last
            .as_ref()
            .is_none_or(|last| std::mem::discriminant(last) != std::mem::discriminant(status));
        match &self.bar {
            Some(bar) => bar.set_message(match status {
                Status::Running { .. } => "running".to_owned(),
                _ => line,
            }),
            None => {
                if phase_changed || self.printed.elapsed() >= Duration::from_secs(10) {
                    crate::say!("ciq report: {line}");
                    self.printed = Instant::now();
                }
            }
        }
        self.last = Some(status.clone());
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
