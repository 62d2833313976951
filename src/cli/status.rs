//! `ciq status`: where a build stands, from any machine. On a terminal a few lines (redrawn
//! every second with `--watch`), in a log one line per call (with `--watch`, one every ten
//! seconds and on each change of phase), with `--json` a document for scripts
//! (`docs/status-json.md`).

use std::io::{IsTerminal, Write};
use std::time::Duration;

use serde::Serialize;
use tokio::time::{Instant, sleep};

use super::Failed;
use crate::ci;
use crate::config::args::StatusArgs;
use crate::config::status_settings;
use crate::exit_code::{self, ExitCode};
use crate::human::duration;
use crate::queue::redis::status::{
    Activity, Basis, BuildStatus, Eta, Phase, Watcher, WorkerStatus,
};
use crate::report::json::verdict_name;

/// How often `--watch` reads the build.
const EVERY: Duration = Duration::from_secs(1);
/// How often `--watch` prints a line in a log when the phase stays the same.
const LINE_EVERY: Duration = Duration::from_secs(10);
/// Held tests named per worker; the others are counted.
const TESTS_NAMED: usize = 3;
/// The version of the JSON document's shape.
const JSON_VERSION: u32 = 1;

/// How the status is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum View {
    /// A few lines, for a person at a terminal.
    Screen,
    /// One line, for a log.
    Line,
    /// A JSON document.
    Json,
}

pub async fn status(args: StatusArgs) -> Result<ExitCode, Failed> {
    let ids = ci::detect(|name| std::env::var(name).ok());
    let settings = status_settings(&args, &ids)?;
    let build = settings.build.clone();
    let context = |err| Failed::from(err).context(format!("status of build `{build}`"));
    let view = if args.json {
        View::Json
    } else if std::io::stdout().is_terminal() {
        View::Screen
    } else {
        View::Line
    };
    let show = |status: &BuildStatus| match view {
        View::Screen => screen(&settings.build, status),
        View::Line => format!("{}\n", line(&settings.build, status)),
        View::Json => format!(
            "{}\n",
            document(&settings.build, &settings.namespace, status)
        ),
    };
    let mut watcher = Watcher::open(&settings).await.map_err(context)?;
    if !args.watch {
        let status = watcher.read().await.map_err(context)?;
        emit(&show(&status));
        return Ok(ending(&settings.build, &status));
    }
    let started = Instant::now();
    let shutdown = crate::signal::shutdown();
    tokio::pin!(shutdown);
    let mut printed: Option<(Instant, std::mem::Discriminant<Phase>)> = None;
    loop {
        let status = watcher.read().await.map_err(context)?;
        let over = matches!(status.phase, Phase::Finished { .. })
            || (status.phase == Phase::Absent
                && started.elapsed() >= args.build.queue_init_timeout);
        let phase = std::mem::discriminant(&status.phase);
        let due = match (view, printed) {
            (View::Line, Some((at, was))) => over || was != phase || at.elapsed() >= LINE_EVERY,
            _ => true,
        };
        if due {
            // On a terminal, home and clear first: the whole picture again, as `watch` draws it.
            let clear = if view == View::Screen {
                "\x1b[H\x1b[2J"
            } else {
                ""
            };
            if !emit(&format!("{clear}{}", show(&status))) {
                // The reader went away (`| head -1`): nobody is left to show the build to.
                return Ok(ending(&settings.build, &status));
            }
            printed = Some((Instant::now(), phase));
        }
        if over {
            return Ok(ending(&settings.build, &status));
        }
        tokio::select! {
            () = sleep(EVERY) => {}
            signal = &mut shutdown => return Ok(ExitCode::Signal(signal)),
        }
    }
}

/// Writes `text` to stdout at once; false when it cannot be written (a closed pipe).
fn emit(text: &str) -> bool {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .is_ok()
}

/// The exit code of a status: a build underway is 0, a finished one exits with its verdict, one
/// Redis does not hold says so and exits as when no leader appeared.
fn ending(build: &str, status: &BuildStatus) -> ExitCode {
    match &status.phase {
        Phase::Finished { verdict } => exit_code::for_verdict(*verdict),
        Phase::Absent => {
            eprintln!(
                "ciq status: no build `{build}` in Redis: not started yet (no worker joined), a wrong --build or --namespace, or expired"
            );
            ExitCode::NoLeader
        }
        Phase::Electing | Phase::Filling { .. } | Phase::Running => ExitCode::Success,
    }
}

/// The status on one line, for a log.
fn line(build: &str, status: &BuildStatus) -> String {
    let joined = status
        .workers
        .iter()
        .filter(|w| w.activity != Activity::Left)
        .count();
    let head = format!("build `{build}`");
    match &status.phase {
        Phase::Absent => format!("{head}: not in Redis (not started yet, or expired)"),
        Phase::Electing => format!("{head}: electing a leader ({joined} worker(s) joined)"),
        Phase::Filling { leader } => {
            format!("{head}: leader `{leader}` is listing the tests and filling the queue")
        }
        Phase::Running => format!(
            "{head}: running: {} of {} tests done, {} left ({} queued, {} running), {} failed; {} worker(s) live; {}",
            status.done,
            status.total,
            status.left(),
            status.queued,
            status.running,
            status.failed(),
            status.live(),
            time_left(status)
        ),
        Phase::Finished { verdict } => format!(
            "{head}: finished, verdict {}: {} of {} tests done, {} failed, {} flaky, {} not run",
            verdict_name(*verdict),
            status.done,
            status.total,
            status.failed(),
            status.counts.get("flaky").copied().unwrap_or(0),
            status.left()
        ),
    }
}

/// What the time left is, or why it is not known.
fn time_left(status: &BuildStatus) -> String {
    match status.eta {
        Some(Eta {
            left,
            basis: Basis::History,
        }) => format!("about {} left", duration(left)),
        Some(Eta {
            left,
            basis: Basis::Pace,
        }) => format!("about {} left at this pace", duration(left)),
        None if status.live() == 0 => {
            "no live worker (the report calls the build incomplete once the heartbeat timeout passes)"
                .to_owned()
        }
        None => "time left unknown (no timing history; with --watch, from the pace once it shows)"
            .to_owned(),
    }
}

/// The status as a few lines, for a terminal: the line, each worker, the failures so far.
fn screen(build: &str, status: &BuildStatus) -> String {
    let mut out = format!("{}\n", line(build, status));
    let (left, present): (Vec<&WorkerStatus>, Vec<&WorkerStatus>) = status
        .workers
        .iter()
        .partition(|w| w.activity == Activity::Left);
    if !present.is_empty() {
        let width = present.iter().map(|w| w.worker.len()).max().unwrap_or(0);
        out.push_str(&format!(
            "workers ({} live, {} left):\n",
            status.live(),
            left.len()
        ));
        for worker in &present {
            out.push_str(&format!("  {:width$}  {}\n", worker.worker, doing(worker)));
        }
    }
    if !left.is_empty() {
        let names: Vec<&str> = left.iter().map(|w| w.worker.as_str()).collect();
        out.push_str(&format!("left: {}\n", names.join(", ")));
    }
    if !status.failing.is_empty() {
        out.push_str(&format!("failed so far ({}):\n", status.failed()));
        for (id, outcome) in &status.failing {
            out.push_str(&format!("  {} {id}\n", outcome.to_uppercase()));
        }
        let unnamed = status.failed().saturating_sub(status.failing.len() as u64);
        if unnamed > 0 {
            out.push_str(&format!("  ... and {unnamed} more\n"));
        }
    }
    out
}

/// What a worker does, for its line on the screen.
fn doing(worker: &WorkerStatus) -> String {
    let mut named: Vec<&str> = worker
        .tests
        .iter()
        .take(TESTS_NAMED)
        .map(|held| held.id.as_str())
        .collect();
    let more = worker.tests.len().saturating_sub(TESTS_NAMED);
    let more = (more > 0).then(|| format!("+{more} more"));
    named.extend(more.as_deref());
    let tests = match worker.tests.len() {
        1 => named.join(""),
        n => format!("{n} tests ({})", named.join(", ")),
    };
    match worker.activity {
        Activity::Idle => "idle".to_owned(),
        Activity::Left => "left".to_owned(),
        Activity::Silent if worker.tests.is_empty() => {
            format!("silent for {}", duration(worker.seen_ago))
        }
        Activity::Silent => format!(
            "silent for {}, holding {tests} (taken over once its heartbeat lapses)",
            duration(worker.seen_ago)
        ),
        Activity::Running => {
            let mut text = format!("running {tests}");
            if let Some(held_for) = worker.held_for {
                text.push_str(&format!(" for {}", duration(held_for)));
                if let Some(usual) = worker.usual {
                    text.push_str(&format!(" (usually {})", duration(usual)));
                    if held_for > usual * 2 && held_for > Duration::from_secs(1) {
                        text.push_str("  <- longer than usual");
                    }
                }
            }
            text
        }
    }
}

/// The JSON document (`docs/status-json.md`).
#[derive(Serialize)]
struct Document<'a> {
    version: u32,
    build: &'a str,
    namespace: &'a str,
    phase: &'static str,
    leader: Option<&'a str>,
    verdict: Option<&'static str>,
    counts: Counts,
    workers: Vec<Worker<'a>>,
    failing: Vec<Failing<'a>>,
    eta_ms: Option<u64>,
    eta_basis: Option<&'static str>,
}

#[derive(Serialize)]
struct Counts {
    total: u64,
    done: u64,
    not_run: u64,
    queued: u64,
    running: u64,
    passed: u64,
    failed: u64,
    errored: u64,
    flaky: u64,
    skipped: u64,
    requeued: u64,
    taken_over: u64,
}

#[derive(Serialize)]
struct Worker<'a> {
    worker: &'a str,
    session: &'a str,
    activity: &'static str,
    seen_ms_ago: u64,
    held_for_ms: Option<u64>,
    usual_ms: Option<u64>,
    tests: Vec<Test<'a>>,
}

#[derive(Serialize)]
struct Test<'a> {
    id: &'a str,
    usual_ms: Option<u64>,
}

#[derive(Serialize)]
struct Failing<'a> {
    id: &'a str,
    outcome: &'a str,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The status as one JSON document on one line.
fn document(build: &str, namespace: &str, status: &BuildStatus) -> String {
    let count = |name: &str| status.counts.get(name).copied().unwrap_or(0);
    let doc = Document {
        version: JSON_VERSION,
        build,
        namespace,
        phase: match status.phase {
            Phase::Absent => "absent",
            Phase::Electing => "electing",
            Phase::Filling { .. } => "filling",
            Phase::Running => "running",
            Phase::Finished { .. } => "finished",
        },
        leader: match &status.phase {
            Phase::Filling { leader } => Some(leader),
            _ => None,
        },
        verdict: match status.phase {
            Phase::Finished { verdict } => Some(verdict_name(verdict)),
            _ => None,
        },
        counts: Counts {
            total: status.total,
            done: status.done,
            not_run: status.left(),
            queued: status.queued,
            running: status.running,
            passed: count("passed"),
            failed: count("failed"),
            errored: count("errored"),
            flaky: count("flaky"),
            skipped: count("skipped"),
            requeued: status.requeued,
            taken_over: status.taken_over,
        },
        workers: status
            .workers
            .iter()
            .map(|w| Worker {
                worker: &w.worker,
                session: &w.session,
                activity: match w.activity {
                    Activity::Running => "running",
                    Activity::Idle => "idle",
                    Activity::Silent => "silent",
                    Activity::Left => "left",
                },
                seen_ms_ago: ms(w.seen_ago),
                held_for_ms: w.held_for.map(ms),
                usual_ms: w.usual.map(ms),
                tests: w
                    .tests
                    .iter()
                    .map(|t| Test {
                        id: &t.id,
                        usual_ms: t.usual.map(ms),
                    })
                    .collect(),
            })
            .collect(),
        failing: status
            .failing
            .iter()
            .map(|(id, outcome)| Failing { id, outcome })
            .collect(),
        eta_ms: status.eta.map(|eta| ms(eta.left)),
        eta_basis: status.eta.map(|eta| match eta.basis {
            Basis::History => "history",
            Basis::Pace => "pace",
        }),
    };
    serde_json::to_string(&doc).unwrap_or_else(|err| format!("{{\"error\":\"{err}\"}}"))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::queue::redis::status::Held;
    use crate::report::Verdict;

    fn worker(name: &str, activity: Activity, tests: &[&str]) -> WorkerStatus {
        WorkerStatus {
            worker: name.to_owned(),
            session: format!("{name}-session"),
            activity,
            seen_ago: Duration::from_secs(if activity == Activity::Silent { 20 } else { 0 }),
            tests: tests
                .iter()
                .map(|id| Held {
                    id: (*id).to_owned(),
                    usual: Some(Duration::from_millis(500)),
                })
                .collect(),
            held_for: (!tests.is_empty()).then_some(Duration::from_millis(3200)),
            usual: (!tests.is_empty()).then(|| Duration::from_millis(500) * tests.len() as u32),
        }
    }

    fn running() -> BuildStatus {
        let counts: BTreeMap<&'static str, u64> = [
            ("passed", 10),
            ("failed", 1),
            ("errored", 1),
            ("flaky", 0),
            ("skipped", 0),
        ]
        .into_iter()
        .collect();
        BuildStatus {
            phase: Phase::Running,
            total: 40,
            done: 12,
            queued: 20,
            running: 8,
            counts,
            requeued: 0,
            taken_over: 0,
            workers: vec![
                worker("w1", Activity::Running, &["a/slow"]),
                worker(
                    "w2",
                    Activity::Running,
                    &["b/1", "b/2", "b/3", "b/4", "b/5", "b/6", "b/7"],
                ),
                worker("w3", Activity::Idle, &[]),
                worker("w4", Activity::Silent, &["c/1"]),
                worker("w5", Activity::Left, &[]),
            ],
            failing: vec![
                ("x/broken".to_owned(), "failed".to_owned()),
                ("y/crash".to_owned(), "errored".to_owned()),
            ],
            eta: Some(Eta {
                left: Duration::from_secs(80),
                basis: Basis::History,
            }),
        }
    }

    #[test]
    fn a_terminal_shows_the_line_each_worker_and_the_failures() {
        assert_eq!(
            screen("b7", &running()),
            "build `b7`: running: 12 of 40 tests done, 28 left (20 queued, 8 running), 2 failed; 3 worker(s) live; about 1m 20s left
workers (3 live, 1 left):
  w1  running a/slow for 3.2s (usually 500ms)  <- longer than usual
  w2  running 7 tests (b/1, b/2, b/3, +4 more) for 3.2s (usually 3.5s)
  w3  idle
  w4  silent for 20s, holding c/1 (taken over once its heartbeat lapses)
left: w5
failed so far (2):
  FAILED x/broken
  ERRORED y/crash
"
        );
    }

    #[test]
    fn a_log_gets_one_line_per_phase() {
        let mut status = running();
        status.eta = None;
        assert!(line("b7", &status).ends_with(
            "time left unknown (no timing history; with --watch, from the pace once it shows)"
        ));
        status.eta = Some(Eta {
            left: Duration::from_secs(30),
            basis: Basis::Pace,
        });
        assert!(line("b7", &status).ends_with("about 30s left at this pace"));
        status.phase = Phase::Finished {
            verdict: Verdict::Failed,
        };
        status.queued = 0;
        status.running = 0;
        status.done = 40;
        assert_eq!(
            line("b7", &status),
            "build `b7`: finished, verdict failed: 40 of 40 tests done, 2 failed, 0 flaky, 0 not run"
        );
        assert_eq!(ending("b7", &status), ExitCode::TestsFailed);
        status.phase = Phase::Filling {
            leader: "w1".to_owned(),
        };
        assert_eq!(
            line("b7", &status),
            "build `b7`: leader `w1` is listing the tests and filling the queue"
        );
        assert_eq!(ending("b7", &status), ExitCode::Success);
    }

    #[test]
    fn the_document_counts_add_up() {
        let doc: serde_json::Value = serde_json::from_str(&document("b7", "", &running())).unwrap();
        let counts = &doc["counts"];
        assert_eq!(
            counts["done"].as_u64().unwrap() + counts["not_run"].as_u64().unwrap(),
            counts["total"].as_u64().unwrap()
        );
        assert_eq!(doc["eta_ms"], 80_000);
        assert_eq!(doc["eta_basis"], "history");
        assert_eq!(doc["workers"][1]["tests"].as_array().unwrap().len(), 7);
        assert_eq!(doc["workers"][3]["activity"], "silent");
    }
}
