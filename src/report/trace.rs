//! `ciq report --trace FILE`: the build's [`Timeline`] in the Trace Event Format, which
//! Perfetto (ui.perfetto.dev) and `chrome://tracing` open: a process per worker, a slice per
//! attempt, instant events for the rest. It is the same timeline as the HTML page, for people
//! who already read traces there (nextest's traces cover one machine; this covers the build).
//!
//! Times are microseconds from the build's start (`t = 0`, its first election).

use std::path::Path;

use serde::Serialize;
use serde_json::{Value, json};

use crate::report::html::{leave_name, outcome_name};
use crate::report::output_file::{self, OutputError};
use crate::timeline::{AttemptOutcome, ElectionResult, EventKind, Timeline};

/// The thread of a worker's process its tests run on.
const TESTS: u32 = 1;
/// The thread of a worker's process its build events (election, listing, ...) go on.
const BUILD: u32 = 0;

/// The trace document.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Trace {
    trace_events: Vec<Value>,
    display_time_unit: &'static str,
}

/// The trace of `timeline`, as of `now_ms` (Unix milliseconds): a cut-off attempt's slice ends
/// at its take-over, else when its worker left or was last seen (as the HTML page draws it); a
/// running one at `now_ms`.
pub fn trace(timeline: &Timeline, now_ms: u64) -> Trace {
    let us = |unix_ms: u64| unix_ms.saturating_sub(timeline.origin_ms) * 1000;
    let pid = |worker: usize| worker + 1;
    let mut events = Vec::new();
    for (worker, lane) in timeline.workers.iter().enumerate() {
        let name = match &lane.host {
            Some(host) => format!("{} ({host})", lane.worker),
            None => lane.worker.clone(),
        };
        events.push(
            json!({"ph": "M", "name": "process_name", "pid": pid(worker), "tid": 0,
                           "args": {"name": name}}),
        );
        events.push(
            json!({"ph": "M", "name": "process_sort_index", "pid": pid(worker),
                           "tid": 0, "args": {"sort_index": worker}}),
        );
        for (tid, thread) in [(BUILD, "build"), (TESTS, "tests")] {
            events.push(json!({"ph": "M", "name": "thread_name", "pid": pid(worker),
                               "tid": tid, "args": {"name": thread}}));
        }
    }
    let mut cut = std::collections::HashMap::new();
    for event in &timeline.events {
        if let EventKind::Takeover {
            attempt: Some(attempt),
            ..
        } = event.kind
        {
            cut.entry(attempt).or_insert(event.at_ms);
        }
    }
    for (at, attempt) in timeline.attempts.iter().enumerate() {
        let lane = timeline.workers.get(attempt.worker);
        let end = match attempt.end_ms {
            Some(end) => end,
            None if attempt.outcome == AttemptOutcome::Running => now_ms,
            None => cut.get(&at).copied().unwrap_or_else(|| {
                lane.and_then(|lane| lane.left_ms.or(lane.last_seen_ms))
                    .unwrap_or(attempt.start_ms)
            }),
        }
        .max(attempt.start_ms);
        events.push(json!({
            "ph": "X", "name": attempt.test, "cat": outcome_name(attempt.outcome),
            "pid": pid(attempt.worker), "tid": TESTS,
            "ts": us(attempt.start_ms), "dur": us(end) - us(attempt.start_ms),
            "args": {"id": attempt.test, "outcome": outcome_name(attempt.outcome),
                     "batch": attempt.batch, "attempt": at,
                     "cut_off": attempt.end_ms.is_none()},
        }));
    }
    for event in &timeline.events {
        let (name, args) = match &event.kind {
            EventKind::Listing { end_ms, count } | EventKind::Staging { end_ms, count } => {
                let name = if matches!(event.kind, EventKind::Listing { .. }) {
                    "listing"
                } else {
                    "staging"
                };
                let end = end_ms.unwrap_or(event.at_ms).max(event.at_ms);
                events.push(json!({
                    "ph": "X", "name": name, "cat": "build", "pid": pid(event.worker),
                    "tid": BUILD, "ts": us(event.at_ms), "dur": us(end) - us(event.at_ms),
                    "args": {"count": count, "finished": end_ms.is_some()},
                }));
                continue;
            }
            EventKind::Election { result, generation } => (
                "election",
                json!({"result": match result {
                    ElectionResult::Won => "won",
                    ElectionResult::Lost => "lost",
                    ElectionResult::LeaderDied => "leader-died",
                }, "generation": generation}),
            ),
            EventKind::Commit { count } => ("commit", json!({ "count": count })),
            EventKind::Join => ("join", json!({})),
            EventKind::Leave { how } => ("leave", json!({ "how": leave_name(*how) })),
            EventKind::Takeover {
                from,
                test,
                attempt,
                next,
            } => (
                "takeover",
                json!({"from": timeline.workers.get(*from).map(|lane| &lane.worker),
                       "test": test, "attempt": attempt, "next": next}),
            ),
            EventKind::Requeue { test, attempt } => {
                ("requeue", json!({"test": test, "attempt": attempt}))
            }
            EventKind::Breaker { reason } => ("breaker", json!({ "reason": reason })),
        };
        events.push(json!({
            "ph": "i", "s": "p", "name": name, "cat": "build", "pid": pid(event.worker),
            "tid": BUILD, "ts": us(event.at_ms), "args": args,
        }));
    }
    Trace {
        trace_events: events,
        display_time_unit: "ms",
    }
}

/// Writes the trace of `timeline` to `path`, as every output is written.
pub fn write(path: &Path, timeline: &Timeline, now_ms: u64) -> Result<(), OutputError> {
    let bytes = serde_json::to_vec(&trace(timeline, now_ms)).map_err(|err| OutputError::Write {
        path: path.to_owned(),
        source: err.into(),
    })?;
    output_file::write(path, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timeline::{Attempt, Event, Lane, Leave};

    #[test]
    fn a_process_per_worker_and_a_slice_per_attempt() {
        let lane = |worker: &str| Lane {
            worker: worker.into(),
            host: Some("runner".into()),
            leader: worker == "w1",
            joined_ms: 1000,
            left_ms: Some(9000),
            leave: Some(Leave::Drained),
            last_seen_ms: Some(5000),
        };
        let attempt = |test: &str, worker, end, outcome| Attempt {
            test: test.into(),
            worker,
            start_ms: 2000,
            end_ms: end,
            outcome,
            batch: 7,
        };
        let timeline = Timeline {
            origin_ms: 1000,
            workers: vec![lane("w1"), lane("w2")],
            attempts: vec![
                attempt("a", 0, Some(2500), AttemptOutcome::Passed),
                attempt("</script>", 1, None, AttemptOutcome::Lost),
                attempt("c", 0, Some(4000), AttemptOutcome::Failed),
            ],
            events: vec![
                Event {
                    at_ms: 1000,
                    worker: 0,
                    kind: EventKind::Listing {
                        end_ms: Some(1500),
                        count: Some(3),
                    },
                },
                Event {
                    at_ms: 6000,
                    worker: 0,
                    kind: EventKind::Takeover {
                        from: 1,
                        test: "</script>".into(),
                        attempt: Some(1),
                        next: None,
                    },
                },
            ],
            lost: Vec::new(),
        };
        let text = serde_json::to_string(&trace(&timeline, 9000)).unwrap();
        let parsed: Value = serde_json::from_str(&text).unwrap();
        let events = parsed["traceEvents"].as_array().unwrap();
        let names: Vec<&Value> = events
            .iter()
            .filter(|e| e["name"] == "process_name")
            .map(|e| &e["args"]["name"])
            .collect();
        assert_eq!(names, [&json!("w1 (runner)"), &json!("w2 (runner)")]);
        let slices: Vec<&Value> = events
            .iter()
            .filter(|e| e["ph"] == "X" && e["tid"] == TESTS)
            .collect();
        assert_eq!(slices.len(), 3, "one slice per attempt");
        assert_eq!(
            slices[0]["args"],
            json!({"id": "a", "outcome": "passed", "batch": 7, "attempt": 0, "cut_off": false})
        );
        assert_eq!(
            (&slices[0]["ts"], &slices[0]["dur"]),
            (&json!(1_000_000), &json!(500_000))
        );
        // The cut-off attempt ends at its take-over.
        assert_eq!(slices[1]["dur"], json!(4_000_000));
        assert_eq!(slices[1]["pid"], json!(2));
        let instants: Vec<&Value> = events.iter().filter(|e| e["ph"] == "i").collect();
        assert_eq!(instants.len(), 1);
        assert_eq!(instants[0]["args"]["from"], "w2");
        assert!(
            events
                .iter()
                .any(|e| e["name"] == "listing" && e["dur"] == 500_000)
        );
    }
}
