//! `ciq report`: wait for the build, show progress, print the verdict (and put it on the CI's
//! page, [`ci_pages`]).
//!
//! On a terminal the progress is an indicatif bar; in a CI log (no terminal) it is a line when
//! the phase changes and one every ten seconds, so a stuck build is visible without flooding.

use std::io::IsTerminal;
use std::path::Path;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use super::Failed;
use crate::config::args::ReportArgs;
use crate::config::{ci, report_settings};
use crate::exit_code;
use crate::grind;
use crate::quarantine::Quarantine;
use crate::queue::QueueError;
use crate::queue::redis::connection::RedisConn;
use crate::queue::redis::history::{self, History};
use crate::queue::redis::supervisor::{
    Ending, ReportSettings, Status, each_recorded, measured, supervise,
};
use crate::queue::redis::{RetryRound, Retrying, reopen_for_report};
use crate::report::Summary;
use crate::report::ci_pages;
use crate::report::json::JsonReport;
use crate::report::junit::JunitReport;
use crate::report::output_file::{self, OutputError, Planned};

pub async fn report(args: ReportArgs) -> Result<i32, Failed> {
    let ids = ci::detect(|name| std::env::var(name).ok());
    let timings_out = args.timings_out.clone();
    let junit_out = args.junit.clone();
    let json_out = args.json.clone();
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
    let round = match (&args.retry, &ids.retry) {
        (Some(round), _) | (None, Some(RetryRound::Named(round))) => Some(round.clone()),
        _ => None,
    };
    let mut settings = report_settings(args, &ids)?;
    // A path that cannot be written is found now, not after a build's worth of waiting.
    let outputs: Vec<Planned<'_>> = [
        ("--junit (CIQ_REPORT_JUNIT)", &junit_out),
        ("--json (CIQ_REPORT_JSON)", &json_out),
        ("--timings-out (CIQ_TIMINGS_OUT)", &timings_out),
    ]
    .into_iter()
    .filter_map(|(flag, path)| {
        Some(Planned {
            flag,
            path: path.as_deref()?,
        })
    })
    .collect();
    output_file::check(&outputs)?;
    if let Some(round) = &round {
        let reopened = reopen_for_report(&settings, round).await.map_err(|err| {
            Failed::from(err).context(format!("report for build `{}`", settings.build))
        })?;
        match reopened {
            Retrying::Reopened { tests, .. } if tests > 0 => crate::say!(
                "ciq report: retry `{round}` of build `{}`: its {tests} failed test(s) run again",
                settings.build
            ),
            Retrying::Aborted { fresh, .. } => {
                crate::say!(
                    "ciq report: build `{}` was aborted, so retry `{round}` is build `{fresh}`",
                    settings.build
                );
                settings.build = fresh;
            }
            _ => {}
        }
    }
    let mut progress = Progress::new();
    let (mut summary, ending) = supervise(&settings, |status| progress.show(status))
        .await
        .map_err(|err| {
            Failed::from(err).context(format!("report for build `{}`", settings.build))
        })?;
    summary.quarantine(&quarantine);
    // A grind's copies are not builds of the suite: its history would count them as tests.
    if grind.is_none()
        && let Err(err) = with_history(&settings, &mut summary, &quarantine).await
    {
        crate::say!("ciq: warning: the namespace's flakiness history is not updated: {err}");
    }
    progress.finish();
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
    }
    // Workers write what they measured as they leave; a report that timed out does not wait
    // for them unless it must write their durations.
    let outputs = junit_out.is_some() || json_out.is_some();
    let mut grind_code = None;
    if ending != Ending::TimedOut || timings_out.is_some() || outputs || grind.is_some() {
        match measured(&settings, timings_out.is_some()).await {
            Ok(measured) => {
                for line in measured.mismatches {
                    if !summary.mismatches.contains(&line) {
                        summary.mismatches.push(line);
                    }
                }
                super::show_slower(measured.slower);
                if let Some(path) = &timings_out {
                    super::write_timings(path, measured.durations);
                }
                if let (Some(limits), Some(generation)) = (&grind, &measured.generation) {
                    grind_code = Some(grind_report(&settings, generation, limits, &summary).await?);
                }
                match (outputs, &measured.generation) {
                    (true, Some(generation)) => {
                        write_outputs(
                            &settings,
                            generation,
                            &summary,
                            junit_out.as_deref(),
                            json_out.as_deref(),
                        )
                        .await;
                    }
                    (true, None) => crate::say!(
                        "ciq report: warning: no JUnit or JSON report: the build's queue was never filled"
                    ),
                    (false, _) => {}
                }
            }
            Err(err) => crate::say!(
                "ciq report: warning: cannot read what the workers measured{}: {err}",
                if timings_out.is_some() || outputs {
                    ", no timing file or JUnit or JSON report written"
                } else {
                    ""
                }
            ),
        }
    }
    let files: Vec<&Path> = junit_out
        .iter()
        .chain(&json_out)
        .map(|p| p.as_path())
        .collect();
    ci_pages::publish(
        &summary,
        &settings.build,
        &settings.namespace,
        &files,
        |name| std::env::var(name).ok(),
    )
    .await;
    super::print_last(&summary.render());
    Ok(grind_code.unwrap_or_else(|| exit_code::for_verdict(summary.verdict())))
}

/// The limits a grind's tests must keep (`ciq report --grind`).
struct GrindLimits {
    min_pass_rate: f64,
    max_p95: Option<Duration>,
}

/// Prints each test's grind (pass rate, duration percentiles, a failing run's output) and
/// returns the exit code: tests failed when one passed too rarely or ran too long at p95, else
/// the build's own verdict for what it cannot forgive (tests not run, a foreign list).
async fn grind_report(
    settings: &ReportSettings,
    generation: &str,
    limits: &GrindLimits,
    summary: &Summary,
) -> Result<i32, Failed> {
    let mut records = Vec::new();
    each_recorded(settings, generation, |page| {
        records.extend(page);
        Ok::<(), std::convert::Infallible>(())
    })
    .await?
    .unwrap_or_else(|never| match never {});
    let stats = grind::stats(&records);
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
    Ok(if !failing.is_empty() {
        println!(
            "grind verdict: failed ({} of {} tests below --grind-min-pass-rate {} or above --grind-max-p95)",
            failing.len(),
            stats.len(),
            limits.min_pass_rate
        );
        exit_code::TESTS_FAILED
    } else if !summary.mismatches.is_empty() {
        exit_code::LIST_MISMATCH
    } else if summary.missing() > 0 {
        println!(
            "grind verdict: incomplete ({} run(s) never got an outcome)",
            summary.missing()
        );
        exit_code::TESTS_NOT_RUN
    } else {
        println!("grind verdict: green (every test kept the limits)");
        exit_code::SUCCESS
    })
}

/// The build's outputs (`--junit`, `--json`), read from the queue page by page in one pass. An
/// output that cannot be written is a warning: the verdict stands, and the log has every
/// failure.
async fn write_outputs(
    settings: &ReportSettings,
    generation: &str,
    summary: &Summary,
    junit_path: Option<&Path>,
    json_path: Option<&Path>,
) {
    let written = async {
        let mut junit = junit_path
            .map(|path| JunitReport::create(path, &settings.build, summary))
            .transpose()?;
        let mut json = json_path
            .map(|path| JsonReport::create(path, &settings.build, &settings.namespace, summary))
            .transpose()?;
        each_recorded(settings, generation, |records| {
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
                    summary.decided(),
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

/// Records the build in its namespace's flakiness history, then marks the failures of tests
/// that were flaky in other recent builds and names the quarantined tests that stopped failing.
async fn with_history(
    settings: &ReportSettings,
    summary: &mut Summary,
    quarantine: &Quarantine,
) -> Result<(), QueueError> {
    let conn = RedisConn::open(&settings.url, settings.redis_timeout).await?;
    let history = History::new(&conn, &settings.namespace);
    history.record(&settings.build, summary).await?;
    let builds = history.builds().await?;
    let all = history.all().await?;
    summary.marks = history::marks(
        &builds,
        &all,
        &settings.build,
        summary.failing.iter().map(|listed| &listed.id),
    );
    summary.ready_to_leave = history::quiet(&builds, &all, quarantine.ids());
    summary.ready_after = history::QUIET_BUILDS;
    Ok(())
}
