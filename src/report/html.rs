//! `ciq report --html FILE`: the build as one self-contained page, its template
//! (`html/template.html`) filled with one JSON document, the *data*, composed here from the
//! build's [`Timeline`], its [`Findings`] and the namespace's usual test times. The shape of the
//! data and the escaping are specified in `docs/report-html.md`, whose reference producer is
//! `scripts/report_sample.py`.
//!
//! Every fact the page shows is computed here (the verdict and counts from the same
//! [`Findings`] the text summary prints, so the two never disagree; the lower bound, idle
//! shares, tail and drift), and the page only lays them out. A build of more than
//! [`FULL_ATTEMPTS`] attempts is aggregated: quiet passes merge into runs, so a million-test
//! page stays a few megabytes.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use serde::Serialize;

use crate::outcome::{FailureDetail, Outcome};
use crate::report::Findings;
use crate::report::json::{Counts, verdict_name};
use crate::report::output_file::{self, OutputError};
use crate::report::summary::Listed;
use crate::timeline::{AttemptOutcome, ElectionResult, EventKind, Leave, LostPart, Timeline};

/// The page, with its one placeholder for the data.
const TEMPLATE: &str = include_str!("html/template.html");
/// What the data replaces in [`TEMPLATE`].
const PLACEHOLDER: &str = "/*CIQ_REPORT_DATA*/null";
/// The data's shape.
pub const VERSION: u32 = 1;
/// The most attempts drawn one by one; above, quiet passes merge into runs.
pub const FULL_ATTEMPTS: usize = 150_000;
/// The most bytes of test ids (as JSON) drawn one by one; above, the page is aggregated.
pub const FULL_ID_BYTES: usize = 8_000_000;
/// The most outputs of failing attempts the page holds.
const OUTPUTS_MAX: usize = 1_000;
/// The most bytes of output text the page holds.
const OUTPUTS_BYTES: usize = 4_000_000;
/// Entries of the tail, slowest and drifted tables.
const TOP: usize = 20;
/// A test drifted when it took this share longer than usual...
const DRIFT_SHARE: f64 = 0.25;
/// ... and at least this much longer.
const DRIFT_MS: u64 = 1_000;
/// The outcome codes' names, by code.
const OUTCOMES: [&str; 8] = [
    "passed", "failed", "errored", "skipped", "requeued", "lost", "hedged", "running",
];

/// What the page is made of.
#[derive(Debug, Clone, Copy)]
pub struct Build<'a> {
    /// The build id.
    pub build: &'a str,
    /// Its namespace (`""` for none).
    pub namespace: &'a str,
    /// What each worker did, and when.
    pub timeline: &'a Timeline,
    /// The facts of the text summary.
    pub findings: &'a Findings,
    /// Each test's usual duration in milliseconds (the namespace's timing history), for the
    /// slowest tests' drift.
    pub usual_ms: &'a HashMap<String, u64>,
    /// The heartbeat timeout, when known: why a take-over came when it did.
    pub heartbeat_timeout_ms: Option<u64>,
    /// The batch size: a count, `None` for `auto` or unknown.
    pub batch_size: Option<u64>,
    /// Whether the build is still running.
    pub running: bool,
    /// When the records were read (Unix milliseconds): the "now" of a running build.
    pub generated_at_ms: u64,
}

/// The data document (docs/report-html.md, "The data").
#[derive(Debug, Serialize)]
pub struct Data {
    format: &'static str,
    version: u32,
    build: String,
    namespace: String,
    started_at: String,
    generated_at: String,
    generated_ms: u64,
    running: bool,
    partial: Vec<Partial>,
    settings: Settings,
    summary: SummaryData,
    analysis: Option<Analysis>,
    workers: Vec<WorkerData>,
    tests: Vec<String>,
    outcomes: [&'static str; 8],
    detail: &'static str,
    aggregation: Option<Aggregation>,
    attempts: Attempts,
    runs: Option<Runs>,
    outputs: BTreeMap<String, String>,
    outputs_omitted: usize,
    histogram: Histogram,
    events: Vec<EventData>,
}

#[derive(Debug, Serialize)]
struct Partial {
    part: &'static str,
    detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    worker: Option<usize>,
    from_ms: Option<u64>,
    to_ms: Option<u64>,
}

#[derive(Debug, Serialize)]
struct Settings {
    heartbeat_timeout_ms: Option<u64>,
    batch_size: serde_json::Value,
}

#[derive(Debug, Serialize)]
struct SummaryData {
    verdict: &'static str,
    verdict_line: &'static str,
    counts: Counts,
    counts_line: String,
    failing: Vec<Failing>,
    failing_more: usize,
    quarantined: Vec<Failing>,
    ready_to_leave: Vec<String>,
    ready_after: usize,
    flaky: Vec<Flaky>,
    flaky_more: usize,
    not_run: Vec<String>,
    not_run_count: usize,
    stopped: Vec<String>,
    mismatches: Vec<String>,
    warnings: Vec<String>,
}

#[derive(Debug, Serialize)]
struct Failing {
    id: String,
    outcome: Outcome,
    worker: Option<String>,
    duration_ms: Option<u64>,
    requeues: u32,
    output: Option<String>,
    attempt: Option<usize>,
    often_flaky: Option<String>,
}

#[derive(Debug, Serialize)]
struct Flaky {
    id: String,
    worker: Option<String>,
    duration_ms: Option<u64>,
    requeues: u32,
    attempt: Option<usize>,
}

#[derive(Debug, Serialize)]
struct Analysis {
    makespan_ms: u64,
    test_time_ms: u64,
    workers: usize,
    average_bound_ms: u64,
    longest_ms: u64,
    longest_test: Option<String>,
    lower_bound_ms: u64,
    first_test_ms: Option<u64>,
    queue_empty_ms: Option<u64>,
    tail_ms: u64,
    tail_count: usize,
    tail: Vec<TailEntry>,
    idle: Vec<Idle>,
    slowest: Vec<Timed>,
    drifted: Vec<Timed>,
}

#[derive(Debug, Serialize)]
struct TailEntry {
    id: String,
    worker: usize,
    attempt: usize,
    start_ms: u64,
    end_ms: Option<u64>,
    ms: u64,
}

#[derive(Debug, Serialize)]
struct Idle {
    worker: usize,
    busy_ms: u64,
    idle_ms: u64,
    gone_ms: u64,
    idle_after_queue_empty_ms: u64,
    share: f64,
}

#[derive(Debug, Serialize)]
struct Timed {
    id: String,
    ms: u64,
    usual_ms: Option<u64>,
    drift: Option<f64>,
    attempt: usize,
}

#[derive(Debug, Serialize)]
struct WorkerData {
    id: String,
    host: Option<String>,
    leader: bool,
    joined_ms: u64,
    left_ms: Option<u64>,
    leave: Option<&'static str>,
    last_seen_ms: Option<u64>,
    attempts: usize,
}

#[derive(Debug, Serialize)]
struct Aggregation {
    attempts_total: usize,
    merge_gap_ms: u64,
    max_run_ms: u64,
}

#[derive(Debug, Default, Serialize)]
struct Attempts {
    test: Vec<usize>,
    worker: Vec<usize>,
    start: Vec<u64>,
    end: Vec<Option<u64>>,
    outcome: Vec<u8>,
    batch: Vec<u64>,
}

#[derive(Debug, Default, Serialize)]
struct Runs {
    worker: Vec<usize>,
    start: Vec<u64>,
    end: Vec<u64>,
    count: Vec<u64>,
    busy: Vec<u64>,
}

#[derive(Debug, Serialize)]
struct Histogram {
    bounds_ms: Vec<u64>,
    counts: Vec<u64>,
}

#[derive(Debug, Serialize)]
struct EventData {
    t: u64,
    worker: usize,
    #[serde(flatten)]
    kind: EventFields,
}

#[derive(Debug, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
enum EventFields {
    Election {
        result: &'static str,
        generation: String,
    },
    Listing {
        end: Option<u64>,
        count: Option<u64>,
    },
    Staging {
        end: Option<u64>,
        count: Option<u64>,
    },
    Commit {
        count: u64,
    },
    Join,
    Leave {
        how: &'static str,
    },
    Takeover {
        from: usize,
        test: usize,
        attempt: Option<usize>,
        next: Option<usize>,
    },
    Requeue {
        test: usize,
        attempt: Option<usize>,
    },
    Breaker {
        reason: String,
    },
}

/// How a worker left, in the data's words.
pub fn leave_name(leave: Leave) -> &'static str {
    match leave {
        Leave::Drained => "drained",
        Leave::Sigterm => "sigterm",
        Leave::Breaker => "breaker",
        Leave::MaxDuration => "max-duration",
        Leave::Failed => "failed",
        Leave::Silent => "silent",
    }
}

/// An attempt's outcome code (an index into the data's `outcomes`).
fn code(outcome: AttemptOutcome) -> u8 {
    match outcome {
        AttemptOutcome::Passed => 0,
        AttemptOutcome::Failed => 1,
        AttemptOutcome::Errored => 2,
        AttemptOutcome::Skipped => 3,
        AttemptOutcome::Requeued => 4,
        AttemptOutcome::Lost => 5,
        AttemptOutcome::Hedged => 6,
        AttemptOutcome::Running => 7,
    }
}

/// An attempt's outcome name.
pub fn outcome_name(outcome: AttemptOutcome) -> &'static str {
    OUTCOMES[usize::from(code(outcome))]
}

fn iso(unix_ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(unix_ms)).to_string()
}

/// The length of a union of spans.
fn union(mut spans: Vec<(u64, u64)>) -> u64 {
    spans.sort_unstable();
    let mut total = 0;
    let mut current: Option<(u64, u64)> = None;
    for (start, end) in spans {
        match &mut current {
            Some((_, cur_end)) if start <= *cur_end => *cur_end = (*cur_end).max(end),
            _ => {
                if let Some((s, e)) = current {
                    total += e - s;
                }
                current = Some((start, end));
            }
        }
    }
    total + current.map_or(0, |(s, e)| e - s)
}

/// `x` rounded to `places` decimals, as the page shows it.
fn round(x: f64, places: i32) -> f64 {
    let scale = 10f64.powi(places);
    (x * scale).round() / scale
}

/// The timeline in build time (`t = 0` at its origin), with each attempt's end as the facts
/// count it: a cut-off attempt ends at its take-over, else when its worker left or was last
/// seen; a running one at "now".
struct Resolved<'a> {
    timeline: &'a Timeline,
    now: u64,
    /// Each attempt's end, in build time.
    ends: Vec<u64>,
}

impl<'a> Resolved<'a> {
    fn new(timeline: &'a Timeline, generated_at_ms: u64) -> Self {
        let now = generated_at_ms.saturating_sub(timeline.origin_ms);
        let mut cut: HashMap<usize, u64> = HashMap::new();
        for event in &timeline.events {
            if let EventKind::Takeover {
                attempt: Some(attempt),
                ..
            } = event.kind
            {
                cut.entry(attempt).or_insert(event.at_ms);
            }
        }
        let ends = timeline
            .attempts
            .iter()
            .enumerate()
            .map(|(at, attempt)| {
                let end = match attempt.end_ms {
                    Some(end) => end,
                    None if attempt.outcome == AttemptOutcome::Running => generated_at_ms,
                    None => cut.get(&at).copied().unwrap_or_else(|| {
                        let lane = timeline.workers.get(attempt.worker);
                        lane.and_then(|lane| lane.left_ms.or(lane.last_seen_ms))
                            .unwrap_or(attempt.start_ms)
                    }),
                };
                end.max(attempt.start_ms).saturating_sub(timeline.origin_ms)
            })
            .collect();
        Self {
            timeline,
            now,
            ends,
        }
    }

    fn t(&self, unix_ms: u64) -> u64 {
        unix_ms.saturating_sub(self.timeline.origin_ms)
    }

    fn start(&self, at: usize) -> u64 {
        self.t(self.timeline.attempts[at].start_ms)
    }

    fn ended(&self, at: usize) -> Option<u64> {
        self.timeline.attempts[at].end_ms.map(|end| self.t(end))
    }

    fn took(&self, at: usize) -> u64 {
        self.ends[at] - self.start(at)
    }
}

/// The tests whose usual time the page can show: the [`TOP`] slowest and every test that ran
/// at least [`DRIFT_MS`] (no shorter one can have drifted). The producer reads only these from
/// the timing history, not one estimate per test of a million-test build.
pub fn needs_usual(timeline: &Timeline) -> Vec<&str> {
    let mut longest: HashMap<&str, u64> = HashMap::new();
    for attempt in &timeline.attempts {
        if let Some(end) = attempt.end_ms {
            let took = end.saturating_sub(attempt.start_ms);
            let entry = longest.entry(attempt.test.as_str()).or_insert(took);
            *entry = (*entry).max(took);
        }
    }
    let mut by_time: Vec<(&str, u64)> = longest.into_iter().collect();
    by_time.sort_by_key(|&(id, ms)| (std::cmp::Reverse(ms), id));
    by_time
        .iter()
        .enumerate()
        .filter(|&(rank, &(_, ms))| rank < TOP || ms >= DRIFT_MS)
        .map(|(_, &(id, _))| id)
        .collect()
}

/// Composes the page's data.
pub fn data(build: &Build<'_>) -> Data {
    let timeline = build.timeline;
    let resolved = Resolved::new(timeline, build.generated_at_ms);
    let attempts = &timeline.attempts;
    let makespan = if build.running {
        resolved.now
    } else {
        let left = timeline
            .workers
            .iter()
            .filter_map(|lane| lane.left_ms.map(|left| resolved.t(left)));
        resolved.ends.iter().copied().chain(left).max().unwrap_or(0)
    };
    let mut tests = Tests::default();
    let (summary, named_by_summary) = summary(build, &resolved);
    let analysis = (!attempts.is_empty()).then(|| analysis(build, &resolved, makespan));

    let mut named: HashSet<usize> = named_by_summary;
    for event in &timeline.events {
        match &event.kind {
            EventKind::Takeover { attempt, next, .. } => named.extend(attempt.iter().chain(next)),
            EventKind::Requeue { attempt, .. } => named.extend(attempt),
            _ => {}
        }
    }
    if let Some(analysis) = &analysis {
        let entries = analysis.slowest.iter().chain(&analysis.drifted);
        named.extend(entries.map(|timed| timed.attempt));
        named.extend(analysis.tail.iter().map(|entry| entry.attempt));
    }

    // Each id as a JSON string and its comma (escapes aside).
    let id_bytes: usize = attempts
        .iter()
        .map(|a| a.test.as_str())
        .collect::<HashSet<_>>()
        .iter()
        .map(|id| id.len() + 3)
        .sum();
    let aggregated = attempts.len() > FULL_ATTEMPTS || id_bytes > FULL_ID_BYTES;
    let quiet = |at: usize| {
        let attempt = &attempts[at];
        matches!(
            attempt.outcome,
            AttemptOutcome::Passed | AttemptOutcome::Skipped
        ) && attempt.end_ms.is_some()
            && !named.contains(&at)
    };
    let mut order: Vec<usize> = (0..attempts.len()).collect();
    // By start, equal starts in the timeline's order (a stable sort).
    order.sort_by_key(|&at| resolved.start(at));
    let merge_gap = (makespan / 10_000).max(1);
    let max_run = (makespan / 1_000).max(1);
    let mut runs = Runs::default();
    let kept: Vec<usize> = if aggregated {
        let mut current: Vec<Option<usize>> = vec![None; timeline.workers.len()];
        let mut kept = Vec::new();
        for &at in &order {
            let worker = attempts[at].worker;
            if worker >= current.len() {
                current.resize(worker + 1, None);
            }
            if !quiet(at) {
                current[worker] = None;
                kept.push(at);
                continue;
            }
            let (start, end) = (resolved.start(at), resolved.ends[at]);
            match current[worker] {
                Some(run)
                    if start <= runs.end[run] + merge_gap && end - runs.start[run] <= max_run =>
                {
                    runs.end[run] = runs.end[run].max(end);
                    runs.count[run] += 1;
                    runs.busy[run] += end - start;
                }
                _ => {
                    runs.worker.push(worker);
                    runs.start.push(start);
                    runs.end.push(end);
                    runs.count.push(1);
                    runs.busy.push(end - start);
                    current[worker] = Some(runs.worker.len() - 1);
                }
            }
        }
        kept
    } else {
        order
    };
    let mut index = vec![None; attempts.len()];
    for (new, &at) in kept.iter().enumerate() {
        index[at] = Some(new);
    }
    let renumber = |at: Option<usize>| at.and_then(|at| index.get(at).copied().flatten());

    let mut table = Attempts::default();
    for &at in &kept {
        let attempt = &attempts[at];
        table.test.push(tests.index(&attempt.test));
        table.worker.push(attempt.worker);
        table.start.push(resolved.start(at));
        table.end.push(resolved.ended(at));
        table.outcome.push(code(attempt.outcome));
        table.batch.push(attempt.batch);
    }
    let events = events(&resolved, &mut tests, &renumber);
    let mut summary = summary;
    for entry in summary.failing.iter_mut().chain(&mut summary.quarantined) {
        entry.attempt = renumber(entry.attempt);
    }
    for entry in &mut summary.flaky {
        entry.attempt = renumber(entry.attempt);
    }
    let analysis = analysis.map(|mut analysis| {
        for entry in analysis.slowest.iter_mut().chain(&mut analysis.drifted) {
            entry.attempt = renumber(Some(entry.attempt)).unwrap_or(entry.attempt);
        }
        for entry in &mut analysis.tail {
            entry.attempt = renumber(Some(entry.attempt)).unwrap_or(entry.attempt);
        }
        analysis
    });
    let (outputs, outputs_omitted) = outputs(build.findings, &summary);

    let mut per_worker = vec![0; timeline.workers.len()];
    for attempt in attempts {
        if let Some(count) = per_worker.get_mut(attempt.worker) {
            *count += 1;
        }
    }
    let workers = timeline
        .workers
        .iter()
        .zip(per_worker)
        .map(|(lane, attempts)| WorkerData {
            id: lane.worker.clone(),
            host: lane.host.clone(),
            leader: lane.leader,
            joined_ms: resolved.t(lane.joined_ms),
            left_ms: lane.left_ms.map(|left| resolved.t(left)),
            leave: lane.leave.map(leave_name),
            last_seen_ms: lane.last_seen_ms.map(|seen| resolved.t(seen)),
            attempts,
        })
        .collect();
    Data {
        format: "ciq-report-html",
        version: VERSION,
        build: build.build.to_owned(),
        namespace: build.namespace.to_owned(),
        started_at: iso(timeline.origin_ms),
        generated_at: iso(build.generated_at_ms),
        generated_ms: resolved.now,
        running: build.running,
        partial: timeline
            .lost
            .iter()
            .map(|lost| partial(&resolved, lost))
            .collect(),
        settings: Settings {
            heartbeat_timeout_ms: build.heartbeat_timeout_ms,
            batch_size: build
                .batch_size
                .map_or_else(|| "auto".into(), serde_json::Value::from),
        },
        summary,
        analysis,
        workers,
        tests: tests.ids,
        outcomes: OUTCOMES,
        detail: if aggregated { "aggregated" } else { "full" },
        aggregation: aggregated.then_some(Aggregation {
            attempts_total: attempts.len(),
            merge_gap_ms: merge_gap,
            max_run_ms: max_run,
        }),
        attempts: table,
        runs: aggregated.then_some(runs),
        outputs,
        outputs_omitted,
        histogram: histogram(&resolved),
        events,
    }
}

/// The string table of test ids.
#[derive(Default)]
struct Tests {
    ids: Vec<String>,
    at: HashMap<String, usize>,
}

impl Tests {
    fn index(&mut self, id: &str) -> usize {
        if let Some(&at) = self.at.get(id) {
            return at;
        }
        self.ids.push(id.to_owned());
        self.at.insert(id.to_owned(), self.ids.len() - 1);
        self.ids.len() - 1
    }
}

fn partial(resolved: &Resolved<'_>, lost: &LostPart) -> Partial {
    Partial {
        part: lost.part,
        detail: lost.detail.clone(),
        worker: lost.worker,
        from_ms: lost.from_ms.map(|t| resolved.t(t)),
        to_ms: lost.to_ms.map(|t| resolved.t(t)),
    }
}

/// The summary's facts, from the findings, with the attempts they name (timeline indices), and
/// the set of those attempts.
fn summary(build: &Build<'_>, resolved: &Resolved<'_>) -> (SummaryData, HashSet<usize>) {
    let findings = build.findings;
    let s = findings.summary();
    // The failing attempt each listed test names: its last failing (or, flaky, requeued) one.
    let listed: HashSet<&str> = s
        .failing
        .iter()
        .chain(&findings.quarantined)
        .chain(&s.flaky)
        .map(|listed| listed.id.as_str())
        .collect();
    let mut last_failing: HashMap<&str, usize> = HashMap::new();
    for (at, attempt) in resolved.timeline.attempts.iter().enumerate() {
        let failing = matches!(
            attempt.outcome,
            AttemptOutcome::Failed | AttemptOutcome::Errored | AttemptOutcome::Requeued
        );
        if failing && listed.contains(attempt.test.as_str()) {
            last_failing.insert(attempt.test.as_str(), at);
        }
    }
    let mut named = HashSet::new();
    let mut failing_entry = |listed: &Listed| {
        let attempt = last_failing.get(listed.id.as_str()).copied();
        named.extend(attempt);
        let detail = listed.detail.as_ref();
        Failing {
            id: listed.id.as_str().to_owned(),
            outcome: listed.outcome,
            worker: detail.map(|d| d.worker.clone()),
            duration_ms: detail.map(|d| d.duration_ms),
            requeues: listed.requeues,
            output: detail.map(plain),
            attempt,
            often_flaky: findings.history.flaky_elsewhere.get(&listed.id).cloned(),
        }
    };
    let failing: Vec<Failing> = s.failing.iter().map(&mut failing_entry).collect();
    let quarantined: Vec<Failing> = findings
        .quarantined
        .iter()
        .map(&mut failing_entry)
        .collect();
    let flaky: Vec<Flaky> = s
        .flaky
        .iter()
        .map(|listed| {
            let attempt = last_failing.get(listed.id.as_str()).copied();
            named.extend(attempt);
            Flaky {
                id: listed.id.as_str().to_owned(),
                worker: listed.detail.as_ref().map(|d| d.worker.clone()),
                duration_ms: listed.detail.as_ref().map(|d| d.duration_ms),
                requeues: listed.requeues,
                attempt,
            }
        })
        .collect();
    let mut warnings: Vec<String> = findings.quarantine_warning().into_iter().collect();
    if s.taken_over > 0 {
        warnings.push(format!(
            "{} test(s) were taken over from a worker that went silent{}",
            s.taken_over,
            build
                .heartbeat_timeout_ms
                .map(|ms| format!(
                    " (heartbeat timeout {})",
                    crate::human::duration(Duration::from_millis(ms))
                ))
                .unwrap_or_default()
        ));
    }
    let verdict = findings.verdict();
    let data = SummaryData {
        verdict: verdict_name(verdict),
        verdict_line: verdict.describe(),
        counts: Counts::of(s),
        counts_line: findings.counts_line(),
        failing,
        failing_more: findings.unnamed_failures(),
        quarantined,
        ready_to_leave: findings
            .history
            .ready_to_leave
            .iter()
            .map(|id| id.as_str().to_owned())
            .collect(),
        ready_after: findings.history.window,
        flaky_more: s.count(Outcome::Flaky).saturating_sub(flaky.len()),
        flaky,
        not_run: s.not_run.iter().map(|id| id.as_str().to_owned()).collect(),
        not_run_count: s.missing(),
        stopped: s.stopped.clone(),
        mismatches: s.mismatches.clone(),
        warnings,
    };
    (data, named)
}

/// A failure's output without its terminal escapes.
fn plain(detail: &FailureDetail) -> String {
    crate::ansi::strip(&detail.output).into_owned()
}

/// Why it took this long, in timeline indices.
fn analysis(build: &Build<'_>, resolved: &Resolved<'_>, makespan: u64) -> Analysis {
    let timeline = resolved.timeline;
    let attempts = &timeline.attempts;
    let ended: Vec<usize> = (0..attempts.len())
        .filter(|&at| attempts[at].end_ms.is_some())
        .collect();
    let test_time: u64 = ended.iter().map(|&at| resolved.took(at)).sum();
    let busy_workers = attempts
        .iter()
        .map(|a| a.worker)
        .collect::<HashSet<_>>()
        .len();
    let longest = ended
        .iter()
        .copied()
        .max_by_key(|&at| (resolved.took(at), std::cmp::Reverse(at)));
    let longest_ms = longest.map_or(0, |at| resolved.took(at));
    let average_bound = test_time / busy_workers.max(1) as u64;
    // The queue was first empty when the last test that had never run was handed out.
    let mut seen = HashSet::new();
    let queue_empty = attempts
        .iter()
        .enumerate()
        .filter(|(_, attempt)| seen.insert(attempt.test.as_str()))
        .map(|(at, _)| resolved.start(at))
        .max();
    let mut tail: Vec<usize> = match queue_empty {
        Some(empty) => (0..attempts.len())
            .filter(|&at| resolved.ends[at] > empty)
            .collect(),
        None => Vec::new(),
    };
    let empty = queue_empty.unwrap_or(0);
    tail.sort_by_key(|&at| {
        (
            std::cmp::Reverse(resolved.ends[at] - resolved.start(at).max(empty)),
            at,
        )
    });
    let tail_count = tail.len();
    let tail = tail
        .into_iter()
        .take(TOP)
        .map(|at| TailEntry {
            id: attempts[at].test.clone(),
            worker: attempts[at].worker,
            attempt: at,
            start_ms: resolved.start(at),
            end_ms: resolved.ended(at),
            ms: resolved.took(at),
        })
        .collect();
    // Each test's longest ended attempt (the later one of equals).
    let mut per_test: HashMap<&str, (u64, usize)> = HashMap::new();
    for &at in &ended {
        let took = resolved.took(at);
        let entry = per_test
            .entry(attempts[at].test.as_str())
            .or_insert((took, at));
        if took >= entry.0 {
            *entry = (took, at);
        }
    }
    let timed = |id: &str, ms: u64, attempt: usize| {
        let usual = build.usual_ms.get(id).copied();
        Timed {
            id: id.to_owned(),
            ms,
            usual_ms: usual,
            drift: usual
                .filter(|&usual| usual > 0)
                .map(|usual| round((ms as f64 - usual as f64) / usual as f64, 3)),
            attempt,
        }
    };
    let mut slowest: Vec<(&str, u64, usize)> = per_test
        .iter()
        .map(|(&id, &(ms, at))| (id, ms, at))
        .collect();
    slowest.sort_by_key(|&(id, ms, _)| (std::cmp::Reverse(ms), id));
    let mut drifted: Vec<(&str, u64, usize, u64)> = slowest
        .iter()
        .filter_map(|&(id, ms, at)| {
            let usual = *build.usual_ms.get(id)?;
            let grew = ms.checked_sub(usual)?;
            (usual > 0 && grew >= DRIFT_MS && grew as f64 / usual as f64 >= DRIFT_SHARE)
                .then_some((id, ms, at, grew))
        })
        .collect();
    drifted.sort_by_key(|&(id, _, _, grew)| (std::cmp::Reverse(grew), id));
    Analysis {
        makespan_ms: makespan,
        test_time_ms: test_time,
        workers: busy_workers,
        average_bound_ms: average_bound,
        longest_ms,
        longest_test: longest.map(|at| attempts[at].test.clone()),
        lower_bound_ms: average_bound.max(longest_ms),
        first_test_ms: (0..attempts.len()).map(|at| resolved.start(at)).min(),
        queue_empty_ms: queue_empty,
        tail_ms: queue_empty.map_or(0, |empty| makespan.saturating_sub(empty)),
        tail_count,
        tail,
        idle: idle(resolved, makespan, queue_empty),
        slowest: slowest
            .iter()
            .take(TOP)
            .map(|&(id, ms, at)| timed(id, ms, at))
            .collect(),
        drifted: drifted
            .iter()
            .take(TOP)
            .map(|&(id, ms, at, _)| timed(id, ms, at))
            .collect(),
    }
}

/// Each worker's time: busy holding a test, idle in the build holding none, gone before its
/// join and after it left (or its last heartbeat, when it went silent).
fn idle(resolved: &Resolved<'_>, makespan: u64, queue_empty: Option<u64>) -> Vec<Idle> {
    let timeline = resolved.timeline;
    let mut spans: Vec<Vec<(u64, u64)>> = vec![Vec::new(); timeline.workers.len()];
    for (at, attempt) in timeline.attempts.iter().enumerate() {
        if let Some(spans) = spans.get_mut(attempt.worker) {
            spans.push((resolved.start(at), resolved.ends[at]));
        }
    }
    timeline
        .workers
        .iter()
        .zip(spans)
        .enumerate()
        .map(|(worker, (lane, spans))| {
            let mut there = lane.left_ms.map_or(makespan, |left| resolved.t(left));
            if lane.leave == Some(Leave::Silent)
                && let Some(seen) = lane.last_seen_ms
            {
                there = resolved.t(seen);
            }
            let joined = resolved.t(lane.joined_ms);
            let spans: Vec<(u64, u64)> = spans
                .into_iter()
                .map(|(start, end)| (start, end.min(there)))
                .filter(|(start, end)| end > start)
                .collect();
            let busy = union(spans.clone());
            let gone = joined + makespan.saturating_sub(there);
            let idle_ms = makespan.saturating_sub(busy + gone);
            let after = queue_empty.map_or(0, |empty| {
                let window = there.min(makespan).saturating_sub(empty.max(joined));
                let busy_after = union(
                    spans
                        .iter()
                        .filter(|(_, end)| *end > empty)
                        .map(|&(start, end)| (start.max(empty), end))
                        .collect(),
                );
                window.saturating_sub(busy_after)
            });
            Idle {
                worker,
                busy_ms: busy,
                idle_ms,
                gone_ms: gone,
                idle_after_queue_empty_ms: after,
                share: if makespan == 0 {
                    0.0
                } else {
                    round(idle_ms as f64 / makespan as f64, 4)
                },
            }
        })
        .collect()
}

/// The durations of the attempts that ended, in 1-2-5 buckets.
fn histogram(resolved: &Resolved<'_>) -> Histogram {
    let took: Vec<u64> = (0..resolved.timeline.attempts.len())
        .filter(|&at| resolved.timeline.attempts[at].end_ms.is_some())
        .map(|at| resolved.took(at))
        .collect();
    let top = took.iter().copied().max().unwrap_or(1).max(1);
    let mut bounds = Vec::new();
    let mut decade: u64 = 1;
    while decade <= top {
        bounds.extend([decade, decade * 2, decade * 5]);
        decade = decade.saturating_mul(10);
    }
    let mut counts = vec![0; bounds.len() + 1];
    for ms in took {
        counts[bounds.partition_point(|&bound| bound <= ms)] += 1;
    }
    Histogram {
        bounds_ms: bounds,
        counts,
    }
}

fn events(
    resolved: &Resolved<'_>,
    tests: &mut Tests,
    renumber: &impl Fn(Option<usize>) -> Option<usize>,
) -> Vec<EventData> {
    let mut events: Vec<EventData> = resolved
        .timeline
        .events
        .iter()
        .map(|event| EventData {
            t: resolved.t(event.at_ms),
            worker: event.worker,
            kind: match &event.kind {
                EventKind::Election { result, generation } => EventFields::Election {
                    result: match result {
                        ElectionResult::Won => "won",
                        ElectionResult::Lost => "lost",
                        ElectionResult::LeaderDied => "leader-died",
                    },
                    generation: generation.clone(),
                },
                EventKind::Listing { end_ms, count } => EventFields::Listing {
                    end: end_ms.map(|end| resolved.t(end)),
                    count: *count,
                },
                EventKind::Staging { end_ms, count } => EventFields::Staging {
                    end: end_ms.map(|end| resolved.t(end)),
                    count: *count,
                },
                EventKind::Commit { count } => EventFields::Commit { count: *count },
                EventKind::Join => EventFields::Join,
                EventKind::Leave { how } => EventFields::Leave {
                    how: leave_name(*how),
                },
                EventKind::Takeover {
                    from,
                    test,
                    attempt,
                    next,
                } => EventFields::Takeover {
                    from: *from,
                    test: tests.index(test),
                    attempt: renumber(*attempt),
                    next: renumber(*next),
                },
                EventKind::Requeue { test, attempt } => EventFields::Requeue {
                    test: tests.index(test),
                    attempt: renumber(*attempt),
                },
                EventKind::Breaker { reason } => EventFields::Breaker {
                    reason: reason.clone(),
                },
            },
        })
        .collect();
    events.sort_by_key(|event| event.t);
    events
}

/// The outputs of the failing attempts the summary names, within the page's bounds.
fn outputs(findings: &Findings, summary: &SummaryData) -> (BTreeMap<String, String>, usize) {
    let s = findings.summary();
    let flaky_outputs = s
        .flaky
        .iter()
        .zip(&summary.flaky)
        .filter_map(|(listed, entry)| Some((entry.attempt?, plain(listed.detail.as_ref()?))));
    let failing_outputs = summary
        .failing
        .iter()
        .chain(&summary.quarantined)
        .filter_map(|entry| Some((entry.attempt?, entry.output.clone()?)));
    let mut all: Vec<(usize, String)> = failing_outputs.chain(flaky_outputs).collect();
    all.sort_by_key(|(at, _)| *at);
    all.dedup_by_key(|(at, _)| *at);
    let mut outputs = BTreeMap::new();
    let mut bytes = 0;
    let mut omitted = 0;
    for (at, text) in all {
        if outputs.len() >= OUTPUTS_MAX || bytes + text.len() > OUTPUTS_BYTES {
            omitted += 1;
            continue;
        }
        bytes += text.len();
        outputs.insert(at.to_string(), text);
    }
    (outputs, omitted)
}

/// `json` as it may stand inside a `<script>` element: `<`, `>`, `&` and the two line
/// separators as `\u` escapes, so an id or an output holding `</script>` or `<!--` can never
/// end or confuse the element. They only occur inside JSON strings, so the text is the same
/// JSON.
pub fn escape(json: &str) -> String {
    let mut escaped = String::with_capacity(json.len() + json.len() / 16);
    for c in json.chars() {
        match c {
            '<' => escaped.push_str("\\u003c"),
            '>' => escaped.push_str("\\u003e"),
            '&' => escaped.push_str("\\u0026"),
            '\u{2028}' => escaped.push_str("\\u2028"),
            '\u{2029}' => escaped.push_str("\\u2029"),
            c => escaped.push(c),
        }
    }
    escaped
}

/// The page: the template with the data in its placeholder.
pub fn page(data: &Data) -> Result<String, serde_json::Error> {
    let json = serde_json::to_string(data)?;
    Ok(TEMPLATE.replacen(PLACEHOLDER, &escape(&json), 1))
}

/// Writes the page of `build` to `path`, as every output is written (temporary name, rename);
/// its size in bytes.
pub fn write(path: &Path, build: &Build<'_>) -> Result<usize, OutputError> {
    let page = page(&data(build)).map_err(|err| OutputError::Write {
        path: path.to_owned(),
        source: err.into(),
    })?;
    output_file::write(path, page.as_bytes())?;
    Ok(page.len())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::{Value, json};

    use super::*;

    #[test]
    fn the_usual_times_read_are_the_slowest_and_those_that_could_drift() {
        let attempts = (0..30u64)
            .map(|n| Attempt {
                test: format!("t{n:02}"),
                worker: 0,
                start_ms: 0,
                end_ms: Some(if n == 29 { 1_500 } else { n * 10 }),
                outcome: AttemptOutcome::Passed,
                batch: n,
            })
            .collect();
        let timeline = Timeline {
            attempts,
            ..Timeline::default()
        };
        let needed = needs_usual(&timeline);
        assert_eq!(needed.len(), TOP);
        assert_eq!(needed[0], "t29");
        assert!(!needed.contains(&"t00"), "{needed:?}");
    }
    use crate::quarantine::Quarantine;
    use crate::report::Summary;
    use crate::test_id::TestId;
    use crate::timeline::{Attempt, Event, Lane};

    /// 2025-01-07T10:12:03.120Z, the doc example's `t = 0`.
    const ORIGIN: u64 = 1_736_244_723_120;

    fn attempt(
        test: &str,
        worker: usize,
        span: (u64, Option<u64>),
        outcome: AttemptOutcome,
        batch: u64,
    ) -> Attempt {
        Attempt {
            test: test.to_owned(),
            worker,
            start_ms: ORIGIN + span.0,
            end_ms: span.1.map(|end| ORIGIN + end),
            outcome,
            batch,
        }
    }

    fn event(t: u64, worker: usize, kind: EventKind) -> Event {
        Event {
            at_ms: ORIGIN + t,
            worker,
            kind,
        }
    }

    fn lane(worker: &str, host: &str, leader: bool, left: u64, leave: Leave, seen: u64) -> Lane {
        Lane {
            worker: worker.to_owned(),
            host: Some(host.to_owned()),
            leader,
            joined_ms: ORIGIN,
            left_ms: Some(ORIGIN + left),
            leave: Some(leave),
            last_seen_ms: Some(ORIGIN + seen),
        }
    }

    /// The build of docs/report-html.md's example: four tests on two workers, `ci-2` killed
    /// running `b`, which `ci-1` took over.
    fn example() -> (Timeline, Findings) {
        use AttemptOutcome::*;
        let math = "math/<div>";
        let timeline = Timeline {
            origin_ms: ORIGIN,
            workers: vec![
                lane("ci-1", "runner-1", true, 37_000, Leave::Drained, 37_000),
                lane("ci-2", "runner-2", false, 33_000, Leave::Silent, 3_000),
            ],
            attempts: vec![
                attempt("a", 0, (300, Some(1100)), Passed, 1),
                attempt(math, 1, (300, Some(1500)), Requeued, 2),
                attempt("c", 0, (1100, Some(1500)), Passed, 3),
                attempt("b", 1, (1500, None), Lost, 4),
                attempt(math, 0, (1500, Some(1800)), Failed, 5),
                attempt("b", 0, (33_000, Some(37_000)), Passed, 6),
            ],
            events: vec![
                event(
                    0,
                    0,
                    EventKind::Election {
                        result: ElectionResult::Won,
                        generation: "3f2a9c0e".into(),
                    },
                ),
                event(0, 0, EventKind::Join),
                event(0, 1, EventKind::Join),
                event(
                    5,
                    0,
                    EventKind::Listing {
                        end_ms: Some(ORIGIN + 250),
                        count: Some(4),
                    },
                ),
                event(
                    260,
                    0,
                    EventKind::Staging {
                        end_ms: Some(ORIGIN + 270),
                        count: Some(4),
                    },
                ),
                event(280, 0, EventKind::Commit { count: 4 }),
                event(
                    1500,
                    1,
                    EventKind::Requeue {
                        test: math.into(),
                        attempt: Some(1),
                    },
                ),
                event(
                    33_000,
                    0,
                    EventKind::Takeover {
                        from: 1,
                        test: "b".into(),
                        attempt: Some(3),
                        next: Some(5),
                    },
                ),
                event(33_000, 1, EventKind::Leave { how: Leave::Silent }),
                event(
                    37_000,
                    0,
                    EventKind::Leave {
                        how: Leave::Drained,
                    },
                ),
            ],
            lost: Vec::new(),
        };
        let summary = Summary {
            total: 4,
            counts: BTreeMap::from([(Outcome::Passed, 3), (Outcome::Failed, 1)]),
            failing: vec![Listed {
                id: TestId::new(math).unwrap(),
                outcome: Outcome::Failed,
                detail: Some(FailureDetail {
                    outcome: Outcome::Failed,
                    worker: "ci-1".into(),
                    duration_ms: 300,
                    output: "expected <1>, got <3>".into(),
                }),
                requeues: 1,
            }],
            requeued: 1,
            taken_over: 1,
            ..Summary::default()
        };
        let history = crate::report::HistoryMarks {
            window: 20,
            ..Default::default()
        };
        let findings = Findings::compose(summary, &Quarantine::default(), history, Vec::new());
        (timeline, findings)
    }

    fn data_of(timeline: &Timeline, findings: &Findings, usual: &HashMap<String, u64>) -> Value {
        let build = Build {
            build: "7421",
            namespace: "",
            timeline,
            findings,
            usual_ms: usual,
            heartbeat_timeout_ms: Some(30_000),
            batch_size: Some(1),
            running: false,
            generated_at_ms: ORIGIN + 37_000,
        };
        serde_json::to_value(data(&build)).unwrap()
    }

    /// The example of docs/report-html.md, as the document itself holds it.
    fn documented() -> Value {
        let doc = include_str!("../../docs/report-html.md");
        let start = doc.find("```json\n").unwrap() + "```json\n".len();
        let end = start + doc[start..].find("```").unwrap();
        serde_json::from_str(&doc[start..end]).unwrap()
    }

    /// `data` with test ids in place of indices into `tests`: the table's order is the
    /// producer's choice.
    fn by_id(mut data: Value) -> Value {
        let tests = data["tests"].take();
        let id = |index: &Value| tests[index.as_u64().unwrap() as usize].clone();
        let column: Vec<Value> = data["attempts"]["test"]
            .as_array()
            .unwrap()
            .iter()
            .map(id)
            .collect();
        data["attempts"]["test"] = Value::Array(column);
        for event in data["events"].as_array_mut().unwrap() {
            if !event["test"].is_null() {
                event["test"] = id(&event["test"]);
            }
        }
        data
    }

    #[test]
    fn the_documented_example_is_produced_fact_for_fact() {
        let (timeline, findings) = example();
        let usual = HashMap::from([("b".to_owned(), 3900)]);
        let mut ours = by_id(data_of(&timeline, &findings, &usual));
        let doc = by_id(documented());
        for field in [
            "format",
            "version",
            "build",
            "namespace",
            "started_at",
            "generated_at",
            "generated_ms",
            "running",
            "partial",
            "settings",
            "summary",
            "workers",
            "tests",
            "outcomes",
            "detail",
            "aggregation",
            "attempts",
            "runs",
            "outputs",
            "outputs_omitted",
            "events",
        ] {
            if field == "outputs" {
                // Only the final failure's output is known to the report (a requeued
                // attempt's output is not kept).
                assert_eq!(ours[field], json!({"4": "expected <1>, got <3>"}));
                continue;
            }
            assert_eq!(ours[field], doc[field], "{field}");
        }
        // The document lists the two slowest tests of four.
        let slowest = ours["analysis"]["slowest"].as_array_mut().unwrap();
        assert_eq!(slowest.len(), 4);
        slowest.truncate(2);
        assert_eq!(ours["analysis"], doc["analysis"]);
        // Every ended attempt is in the histogram: 300-1200 ms in [200, 500) .. [1000, 2000),
        // 4000 in [2000, 5000).
        let histogram = &ours["histogram"];
        let counts: Vec<u64> = serde_json::from_value(histogram["counts"].clone()).unwrap();
        assert_eq!(counts.iter().sum::<u64>(), 5);
        assert_eq!(histogram["bounds_ms"][0], 1);
    }

    #[test]
    fn drift_needs_a_quarter_and_a_second_more_than_usual() {
        let (timeline, findings) = example();
        // b took 4000: 3000 usually is +33% and +1 s; 3500 is +14%; a took 800: +700 ms only.
        let usual = HashMap::from([("b".to_owned(), 3000), ("a".to_owned(), 100)]);
        let data = data_of(&timeline, &findings, &usual);
        assert_eq!(
            data["analysis"]["drifted"],
            json!([{"id": "b", "ms": 4000, "usual_ms": 3000, "drift": 0.333, "attempt": 5}])
        );
        let usual = HashMap::from([("b".to_owned(), 3500)]);
        let data = data_of(&timeline, &findings, &usual);
        assert_eq!(data["analysis"]["drifted"], json!([]));
    }

    /// A build of `n` passing tests on two workers, one after the other with no gap, and one
    /// failure in the middle.
    fn big(n: usize) -> Timeline {
        let workers = vec![
            lane("w1", "h", true, 0, Leave::Drained, 0),
            lane("w2", "h", false, 0, Leave::Drained, 0),
        ];
        let mut attempts = Vec::with_capacity(n);
        for k in 0..n as u64 {
            let worker = (k % 2) as usize;
            let start = (k / 2) * 10;
            let outcome = if k == n as u64 / 2 {
                AttemptOutcome::Failed
            } else {
                AttemptOutcome::Passed
            };
            attempts.push(attempt(
                &format!("t{k}"),
                worker,
                (start, Some(start + 10)),
                outcome,
                k,
            ));
        }
        let end = ORIGIN + (n as u64 / 2) * 10 + 10;
        let mut workers = workers;
        for lane in &mut workers {
            lane.left_ms = Some(end);
            lane.last_seen_ms = Some(end);
        }
        Timeline {
            origin_ms: ORIGIN,
            workers,
            attempts,
            events: Vec::new(),
            lost: Vec::new(),
        }
    }

    fn no_findings() -> Findings {
        Findings::new(Summary::default(), &Quarantine::default())
    }

    #[test]
    fn at_most_the_threshold_every_attempt_is_drawn() {
        let data = data_of(&big(FULL_ATTEMPTS), &no_findings(), &HashMap::new());
        assert_eq!(data["detail"], "full");
        assert_eq!(data["runs"], Value::Null);
        assert_eq!(
            data["attempts"]["test"].as_array().unwrap().len(),
            FULL_ATTEMPTS
        );
        assert_eq!(data["tests"].as_array().unwrap().len(), FULL_ATTEMPTS);
    }

    #[test]
    fn above_the_threshold_quiet_passes_merge_into_runs_that_add_up() {
        let n = FULL_ATTEMPTS + 2;
        let data = data_of(&big(n), &no_findings(), &HashMap::new());
        assert_eq!(data["detail"], "aggregated");
        let makespan = (n as u64 / 2) * 10 + 10;
        assert_eq!(
            data["aggregation"],
            json!({"attempts_total": n, "merge_gap_ms": (makespan / 10_000).max(1), "max_run_ms": makespan / 1000})
        );
        let kept = data["attempts"]["outcome"].as_array().unwrap();
        // The failure, and the tail and slowest tables' attempts, stay single.
        assert!(kept.contains(&json!(1)));
        assert!(kept.len() <= 1 + 2 * TOP, "{}", kept.len());
        let runs = &data["runs"];
        let counts: Vec<u64> = serde_json::from_value(runs["count"].clone()).unwrap();
        let workers: Vec<usize> = serde_json::from_value(runs["worker"].clone()).unwrap();
        let starts: Vec<u64> = serde_json::from_value(runs["start"].clone()).unwrap();
        let ends: Vec<u64> = serde_json::from_value(runs["end"].clone()).unwrap();
        assert_eq!(counts.iter().sum::<u64>() as usize + kept.len(), n);
        // Per worker, its runs and kept attempts add up to its attempts.
        for (worker, entry) in data["workers"].as_array().unwrap().iter().enumerate() {
            let merged: u64 = workers
                .iter()
                .zip(&counts)
                .filter(|(w, _)| **w == worker)
                .map(|(_, c)| c)
                .sum();
            let single = data["attempts"]["worker"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|w| **w == json!(worker))
                .count();
            assert_eq!(entry["attempts"], json!(merged as usize + single));
        }
        // No run spans more than a thousandth of the build: about a thousand per lane.
        for (start, end) in starts.iter().zip(&ends) {
            assert!(end - start <= makespan / 1000, "{start}..{end}");
        }
        assert!(
            counts.len() <= 2 * 1000 + 2 * (1 + 2 * TOP),
            "{}",
            counts.len()
        );
        // The tests table holds only what the kept attempts name.
        assert_eq!(data["tests"].as_array().unwrap().len(), kept.len());
        let histogram: Vec<u64> =
            serde_json::from_value(data["histogram"]["counts"].clone()).unwrap();
        assert_eq!(
            histogram.iter().sum::<u64>() as usize,
            n,
            "over all attempts"
        );
    }

    #[test]
    fn a_gap_longer_than_the_merge_gap_ends_a_run() {
        let mut timeline = big(FULL_ATTEMPTS + 2);
        // Worker 0 idles for a tenth of the build in the middle.
        let pause = 100_000;
        for attempt in timeline.attempts.iter_mut().filter(|a| a.worker == 0) {
            if attempt.start_ms >= ORIGIN + 300_000 {
                attempt.start_ms += pause;
                attempt.end_ms = attempt.end_ms.map(|end| end + pause);
            }
        }
        let data = data_of(&timeline, &no_findings(), &HashMap::new());
        let runs = &data["runs"];
        let starts: Vec<u64> = serde_json::from_value(runs["start"].clone()).unwrap();
        let ends: Vec<u64> = serde_json::from_value(runs["end"].clone()).unwrap();
        let workers: Vec<usize> = serde_json::from_value(runs["worker"].clone()).unwrap();
        assert!(
            (0..starts.len()).any(|k| workers[k] == 0 && ends[k] == 300_000),
            "a run ends where the idle gap begins"
        );
        assert!(
            (0..starts.len())
                .all(|k| ends[k] <= 300_000 || starts[k] >= 400_000 || workers[k] != 0)
        );
    }

    /// Whatever ids and outputs hold, the page's data cannot end its element, and reads back
    /// the same.
    #[test]
    fn ids_and_outputs_are_escaped_and_read_back_unchanged() {
        let (mut timeline, mut findings) = example();
        let hostile = "x</script><script>alert(1)</script><!--&amp;\"'\u{2028}\u{2029}";
        timeline.attempts[0].test = hostile.to_owned();
        findings.summary.failing[0].detail.as_mut().unwrap().output = format!("</SCRIPT>{hostile}");
        let build = Build {
            build: "</script>",
            namespace: "&",
            timeline: &timeline,
            findings: &findings,
            usual_ms: &HashMap::new(),
            heartbeat_timeout_ms: None,
            batch_size: None,
            running: false,
            generated_at_ms: ORIGIN + 37_000,
        };
        let page = page(&data(&build)).unwrap();
        let open = "<script type=\"application/json\" id=\"ciq-data\">";
        let start = page.find(open).unwrap() + open.len();
        let end = start + page[start..].find("</script>").unwrap();
        let inside = &page[start..end];
        for bad in ["<", ">", "&", "\u{2028}", "\u{2029}"] {
            assert!(!inside.contains(bad), "{bad:?} in the data");
        }
        assert!(!page.contains(PLACEHOLDER));
        let back: Value = serde_json::from_str(inside).unwrap();
        assert!(back["tests"].as_array().unwrap().contains(&json!(hostile)));
        assert_eq!(back["build"], "</script>");
        assert_eq!(
            back["summary"]["failing"][0]["output"],
            format!("</SCRIPT>{hostile}")
        );
        assert_eq!(
            back["settings"],
            json!({"heartbeat_timeout_ms": null, "batch_size": "auto"})
        );
        // The rest of the template is as it was.
        assert_eq!(
            page.len() - inside.len(),
            TEMPLATE.len() - PLACEHOLDER.len()
        );
    }

    #[test]
    fn a_build_without_records_has_no_analysis_and_lost_parts_are_said() {
        let timeline = Timeline {
            origin_ms: ORIGIN,
            lost: vec![LostPart {
                part: "attempts",
                detail: "evicted".into(),
                worker: Some(0),
                from_ms: Some(ORIGIN + 5),
                to_ms: None,
            }],
            ..Timeline::default()
        };
        let data = data_of(&timeline, &no_findings(), &HashMap::new());
        assert_eq!(data["analysis"], Value::Null);
        assert_eq!(
            data["partial"],
            json!([{"part": "attempts", "detail": "evicted", "worker": 0, "from_ms": 5, "to_ms": null}])
        );
        assert_eq!(data["attempts"]["test"], json!([]));
    }
}
