//! [`parse`]: a build's records ([`super::record`]) resolved into a [`Timeline`]: lanes,
//! attempts laid out within their batches, and the events that point at them.

use std::collections::HashMap;

use super::record::{self, Acked, Entry, Record};
use super::{
    Attempt, AttemptOutcome, ElectionResult, Event, EventKind, Lane, Leave, LostPart, Timeline,
};

/// A reserved test, before it is laid out.
struct Draft {
    test: String,
    session: usize,
    batch: u64,
    index: u64,
    reserved_ms: u64,
    ack: Option<(u64, Acked)>,
    /// When and by which session's scan it was taken over.
    taken: Option<(u64, usize)>,
}

/// A session as the records name it.
struct Session {
    short: String,
    worker: Option<String>,
    first_ms: u64,
    joined_ms: Option<u64>,
    left: Option<(u64, Leave)>,
}

/// Resolves a build's records into its [`Timeline`]. Within a batch (one reservation) the
/// attempts are laid one after another from the reservation to the last acknowledgement, each
/// by the duration its worker measured, scaled to that span (equal shares when none was
/// measured). An attempt never acknowledged starts where the batch's acknowledged ones end
/// and has no end: [`AttemptOutcome::Lost`] when its worker left or was taken over,
/// [`AttemptOutcome::Running`] otherwise. Unreadable records and records past the bound become
/// [`LostPart`]s.
pub fn parse(bytes: &[u8]) -> Timeline {
    let (mut entries, mut lost) = record::read(bytes);
    let mut capped = false;
    if let Some(at_cap) = entries
        .iter()
        .position(|entry| entry.record == Record::Capped)
    {
        let at = entries[at_cap].at_ms;
        lost.push(LostPart {
            part: "attempts",
            detail: format!(
                "the build's records reached their bound ({} MiB); runs and events after it were not recorded",
                record::CAP / (1024 * 1024)
            ),
            worker: None,
            from_ms: Some(at),
            to_ms: None,
        });
        entries.truncate(at_cap);
        capped = true;
    }
    Builder::default().build(&entries, lost, capped)
}

#[derive(Default)]
struct Builder {
    sessions: Vec<Session>,
    by_short: HashMap<String, usize>,
}

impl Builder {
    fn session(&mut self, short: &str, at_ms: u64) -> usize {
        if let Some(&at) = self.by_short.get(short) {
            return at;
        }
        self.sessions.push(Session {
            short: short.to_owned(),
            worker: None,
            first_ms: at_ms,
            joined_ms: None,
            left: None,
        });
        self.by_short
            .insert(short.to_owned(), self.sessions.len() - 1);
        self.sessions.len() - 1
    }

    fn build(mut self, entries: &[Entry], mut lost: Vec<LostPart>, capped: bool) -> Timeline {
        let mut drafts: Vec<Draft> = Vec::new();
        let mut leases: HashMap<String, usize> = HashMap::new();
        let mut batch = 0u64;
        let mut unmatched = 0u64;
        let mut leader = None;
        for entry in entries {
            let session = self.session(&entry.session, entry.at_ms);
            match &entry.record {
                Record::Join { worker } => {
                    let s = &mut self.sessions[session];
                    s.worker.get_or_insert_with(|| worker.clone());
                    s.joined_ms.get_or_insert(entry.at_ms);
                }
                Record::Commit { .. } => leader = Some(session),
                Record::Leave { how } => {
                    self.sessions[session]
                        .left
                        .get_or_insert((entry.at_ms, *how));
                }
                Record::Reserve { seq, tests } => {
                    batch += 1;
                    for (i, test) in tests.iter().enumerate() {
                        let index = i as u64 + 1;
                        leases.insert(format!("{}.{seq}.{index}", entry.session), drafts.len());
                        drafts.push(Draft {
                            test: test.clone(),
                            session,
                            batch,
                            index,
                            reserved_ms: entry.at_ms,
                            ack: None,
                            taken: None,
                        });
                    }
                }
                Record::Ack { items } => {
                    for item in items {
                        let lease = format!("{}.{}.{}", entry.session, item.seq, item.index);
                        match leases.get(&lease) {
                            Some(&at) => drafts[at].ack = Some((entry.at_ms, *item)),
                            None => unmatched += 1,
                        }
                    }
                }
                Record::Takeover { leases: taken } => {
                    for lease in taken {
                        if let Some(&at) = leases.get(lease) {
                            drafts[at].taken.get_or_insert((entry.at_ms, session));
                        }
                    }
                }
                _ => {}
            }
        }
        if unmatched > 0 {
            lost.push(LostPart {
                part: "attempts",
                detail: format!(
                    "{unmatched} result(s) name a reservation the records lack; those runs are not drawn"
                ),
                worker: None,
                from_ms: None,
                to_ms: None,
            });
        }
        // A worker whose tests were taken over, and that never said it left, fell silent.
        for draft in &drafts {
            if let Some((at, _)) = draft.taken
                && draft.ack.is_none()
            {
                let s = &mut self.sessions[draft.session];
                if s.left.is_none() {
                    s.left = Some((at, Leave::Silent));
                }
            }
        }
        // Past the bound, what was never acknowledged may have been: it is not drawn.
        if capped {
            drafts.retain(|draft| draft.ack.is_some() || draft.taken.is_some());
        }
        let lanes = self.lane_order(leader);
        let lane_of = |session: usize| lanes[session];
        let placed = place(&drafts, &self.sessions);
        let mut order: Vec<usize> = (0..drafts.len()).collect();
        order.sort_by_key(|&i| (placed[i].0, i));
        let mut attempt_at = vec![0usize; drafts.len()];
        for (n, &i) in order.iter().enumerate() {
            attempt_at[i] = n;
        }
        let attempts: Vec<Attempt> = order
            .iter()
            .map(|&i| Attempt {
                test: drafts[i].test.clone(),
                worker: lane_of(drafts[i].session),
                start_ms: placed[i].0,
                end_ms: placed[i].1,
                outcome: placed[i].2,
                batch: drafts[i].batch,
            })
            .collect();
        let mut events = Vec::new();
        self.events(entries, &lane_of, &mut events);
        for (i, draft) in drafts.iter().enumerate() {
            let attempt = attempt_at[i];
            if attempts[attempt].outcome == AttemptOutcome::Requeued {
                events.push(Event {
                    at_ms: attempts[attempt].end_ms.unwrap_or(draft.reserved_ms),
                    worker: lane_of(draft.session),
                    kind: EventKind::Requeue {
                        test: draft.test.clone(),
                        attempt: Some(attempt),
                    },
                });
            }
            let Some((at, scanner)) = draft.taken else {
                continue;
            };
            if draft.ack.is_some() {
                continue;
            }
            let next = attempts
                .iter()
                .enumerate()
                .find(|(_, a)| a.test == draft.test && a.start_ms >= at && a.batch > draft.batch)
                .map(|(n, _)| n);
            events.push(Event {
                at_ms: at,
                worker: next.map_or(lane_of(scanner), |n| attempts[n].worker),
                kind: EventKind::Takeover {
                    from: lane_of(draft.session),
                    test: draft.test.clone(),
                    attempt: Some(attempt),
                    next,
                },
            });
        }
        events.sort_by_key(|event| event.at_ms);
        let mut workers: Vec<Option<Lane>> = vec![None; self.sessions.len()];
        for (session, s) in self.sessions.iter().enumerate() {
            workers[lane_of(session)] = Some(Lane {
                worker: s.worker.clone().unwrap_or_else(|| s.short.clone()),
                host: None,
                leader: Some(session) == leader,
                joined_ms: s.joined_ms.unwrap_or(s.first_ms),
                left_ms: s.left.map(|(at, _)| at),
                leave: s.left.map(|(_, how)| how),
                last_seen_ms: None,
            });
        }
        Timeline {
            origin_ms: entries.iter().map(|e| e.at_ms).min().unwrap_or(0),
            workers: workers.into_iter().flatten().collect(),
            attempts,
            events,
            lost,
        }
    }

    /// Each session's lane: the committing leader's first, then by join time.
    fn lane_order(&self, leader: Option<usize>) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.sessions.len()).collect();
        order.sort_by_key(|&s| {
            let joined = self.sessions[s]
                .joined_ms
                .unwrap_or(self.sessions[s].first_ms);
            (Some(s) != leader, joined, s)
        });
        let mut lanes = vec![0; order.len()];
        for (lane, &session) in order.iter().enumerate() {
            lanes[session] = lane;
        }
        lanes
    }

    fn events(&self, entries: &[Entry], lane_of: &dyn Fn(usize) -> usize, out: &mut Vec<Event>) {
        for (n, entry) in entries.iter().enumerate() {
            let session = self.by_short[&entry.session];
            let later = || {
                entries[n + 1..]
                    .iter()
                    .filter(|e| e.session == entry.session)
            };
            let kind = match &entry.record {
                Record::Join { .. } => EventKind::Join,
                Record::Won { generation } => {
                    out.push(Event {
                        at_ms: entry.at_ms,
                        worker: lane_of(session),
                        kind: EventKind::Election {
                            result: ElectionResult::Won,
                            generation: generation.clone(),
                        },
                    });
                    let end = later().find_map(|e| match e.record {
                        Record::Staging { count } | Record::Commit { count } => {
                            Some((e.at_ms, count))
                        }
                        Record::Won { .. } => Some((u64::MAX, 0)),
                        _ => None,
                    });
                    let end = end.filter(|(at, _)| *at != u64::MAX);
                    EventKind::Listing {
                        end_ms: end.map(|(at, _)| at),
                        count: end.map(|(_, count)| count),
                    }
                }
                Record::Lost { generation } => EventKind::Election {
                    result: ElectionResult::Lost,
                    generation: generation.clone(),
                },
                Record::LeaderDied => EventKind::Election {
                    result: ElectionResult::LeaderDied,
                    generation: String::new(),
                },
                Record::Staging { count } => EventKind::Staging {
                    end_ms: later().find_map(|e| match e.record {
                        Record::Commit { .. } => Some(e.at_ms),
                        _ => None,
                    }),
                    count: Some(*count),
                },
                Record::Commit { count } => EventKind::Commit { count: *count },
                Record::Leave { how } => EventKind::Leave { how: *how },
                Record::Breaker { reason } => EventKind::Breaker {
                    reason: reason.clone(),
                },
                Record::Reserve { .. }
                | Record::Ack { .. }
                | Record::Takeover { .. }
                | Record::Capped => continue,
            };
            out.push(Event {
                at_ms: entry.at_ms,
                worker: lane_of(session),
                kind,
            });
        }
        for (session, s) in self.sessions.iter().enumerate() {
            if let Some((at, Leave::Silent)) = s.left {
                out.push(Event {
                    at_ms: at,
                    worker: lane_of(session),
                    kind: EventKind::Leave { how: Leave::Silent },
                });
            }
        }
    }
}

/// Each draft's start, end and outcome, laid out within its batch.
fn place(drafts: &[Draft], sessions: &[Session]) -> Vec<(u64, Option<u64>, AttemptOutcome)> {
    let mut placed = vec![(0, None, AttemptOutcome::Running); drafts.len()];
    let mut batches: HashMap<u64, Vec<usize>> = HashMap::new();
    for (i, draft) in drafts.iter().enumerate() {
        batches.entry(draft.batch).or_default().push(i);
    }
    for members in batches.values_mut() {
        members.sort_by_key(|&i| drafts[i].index);
        let start = drafts[members[0]].reserved_ms;
        let acked: Vec<usize> = members
            .iter()
            .copied()
            .filter(|&i| drafts[i].ack.is_some())
            .collect();
        let end = acked
            .iter()
            .filter_map(|&i| drafts[i].ack.map(|(at, _)| at))
            .max()
            .unwrap_or(start)
            .max(start);
        let span = end - start;
        let measured: u64 = acked
            .iter()
            .filter_map(|&i| drafts[i].ack.map(|(_, a)| a.duration_ms))
            .sum();
        let mut cursor = start;
        for (n, &i) in acked.iter().enumerate() {
            let Some((acked_at, item)) = drafts[i].ack else {
                continue;
            };
            let length = if n + 1 == acked.len() {
                end - cursor
            } else if measured > 0 {
                u64::try_from(
                    u128::from(item.duration_ms) * u128::from(span) / u128::from(measured),
                )
                .unwrap_or(span)
            } else {
                span / acked.len() as u64
            };
            let stop = (cursor + length).min(end).min(acked_at.max(cursor));
            placed[i] = (cursor, Some(stop), outcome(item.letter));
            cursor = stop;
        }
        for &i in members.iter().filter(|&&i| drafts[i].ack.is_none()) {
            let gone = drafts[i].taken.is_some() || sessions[drafts[i].session].left.is_some();
            let outcome = if gone {
                AttemptOutcome::Lost
            } else {
                AttemptOutcome::Running
            };
            placed[i] = (cursor, None, outcome);
        }
    }
    placed
}

/// An attempt's outcome by its letter; an upper-case letter's run ended so, uncounted.
fn outcome(letter: u8) -> AttemptOutcome {
    match letter.to_ascii_lowercase() {
        b'p' => AttemptOutcome::Passed,
        b'f' => AttemptOutcome::Failed,
        b's' => AttemptOutcome::Skipped,
        b'q' => AttemptOutcome::Requeued,
        _ => AttemptOutcome::Errored,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timeline(text: &str) -> Timeline {
        parse(text.as_bytes())
    }

    /// A batch is laid out by its measured durations scaled to its span; the leader's lane
    /// comes first; listing, staging and commit are the leader's events.
    #[test]
    fn batches_are_laid_out_by_measured_durations() {
        let t = timeline(concat!(
            "@0.100000 bbb\nJ second\n",
            "@0.90000 aaa\nJ first\nW g1\n",
            "@0.110000 bbb\nL g1\n",
            "@0.150000 aaa\nS 3\n@0.160000 aaa\nC 3\n",
            "@0.200000 aaa\nR 1\n t1\n t2\n",
            "@0.200000 bbb\nR 1\n t3\n",
            "@0.300000 aaa\nA 1.1p10 1.2f30\n",
            "@0.260000 bbb\nA 1.1s7\nX d\n",
        ));
        assert!(t.lost.is_empty(), "{:?}", t.lost);
        assert_eq!(t.origin_ms, 90);
        let names: Vec<&str> = t.workers.iter().map(|l| l.worker.as_str()).collect();
        assert_eq!(names, ["first", "second"]);
        assert!(t.workers[0].leader);
        assert_eq!(t.workers[1].leave, Some(Leave::Drained));
        let laid: Vec<(&str, usize, u64, Option<u64>, AttemptOutcome)> = t
            .attempts
            .iter()
            .map(|a| (a.test.as_str(), a.worker, a.start_ms, a.end_ms, a.outcome))
            .collect();
        assert_eq!(
            laid,
            [
                ("t1", 0, 200, Some(225), AttemptOutcome::Passed),
                ("t3", 1, 200, Some(260), AttemptOutcome::Skipped),
                ("t2", 0, 225, Some(300), AttemptOutcome::Failed),
            ]
        );
        assert!(t.events.iter().any(|e| e.kind
            == EventKind::Listing {
                end_ms: Some(150),
                count: Some(3)
            }));
        assert!(t.events.iter().any(|e| e.kind
            == EventKind::Staging {
                end_ms: Some(160),
                count: Some(3)
            }));
        assert!(
            t.events
                .iter()
                .any(|e| e.kind == EventKind::Commit { count: 3 })
        );
    }

    /// A silent worker's unacknowledged batch is lost from its reservation, its take-over
    /// names the cut attempt and the taker's; an unacknowledged batch of a live worker runs.
    #[test]
    fn a_taken_over_batch_is_lost_and_its_takeover_points_at_both_attempts() {
        let t = timeline(concat!(
            "@0.0 aaa\nJ a\n@0.0 bbb\nJ b\n",
            "@0.10000 aaa\nR 1\n x\n",
            "@0.10000 bbb\nR 1\n y\n",
            "@0.50000 bbb\nT aaa.1.1\nA 1.1q5\nR 2\n x\n",
            "@0.60000 bbb\nA 2.1p3\nR 3\n y\n",
        ));
        let x: Vec<&Attempt> = t.attempts.iter().filter(|a| a.test == "x").collect();
        assert_eq!(x[0].outcome, AttemptOutcome::Lost);
        assert_eq!((x[0].start_ms, x[0].end_ms), (10, None));
        assert_eq!(x[1].outcome, AttemptOutcome::Passed);
        assert_eq!(t.workers[0].leave, Some(Leave::Silent));
        assert_eq!(t.workers[0].left_ms, Some(50));
        let takeover = t
            .events
            .iter()
            .find_map(|e| match &e.kind {
                EventKind::Takeover {
                    from,
                    attempt,
                    next,
                    ..
                } => Some((e.worker, *from, *attempt, *next)),
                _ => None,
            })
            .unwrap();
        let cut = t.attempts.iter().position(|a| a.test == "x").unwrap();
        let retaken = t.attempts.iter().rposition(|a| a.test == "x").unwrap();
        assert_eq!(takeover, (1, 0, Some(cut), Some(retaken)));
        assert!(t.events.iter().any(|e| matches!(
            e.kind,
            EventKind::Requeue {
                attempt: Some(_),
                ..
            }
        )));
        let last = t.attempts.last().unwrap();
        assert_eq!(
            (last.test.as_str(), last.outcome),
            ("y", AttemptOutcome::Running)
        );
    }

    #[test]
    fn records_past_the_bound_are_a_lost_part() {
        let t = timeline(
            "@0.0 a\nJ a\nR 1\n x\n y\n@0.5000 a\nA 1.1p1\n@0.6000 a\n!\n@0.7000 a\nA 1.2p1\n",
        );
        assert_eq!(t.lost.len(), 1);
        assert_eq!(t.lost[0].from_ms, Some(6));
        assert_eq!(t.attempts.len(), 1);
    }

    #[test]
    fn any_bytes_give_a_timeline() {
        let mut seed = 7u64;
        for len in 0..400 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                    b"@0.123000 aRAXT.pq\n!Jx"[(seed >> 33) as usize % 18]
                })
                .collect();
            let _ = parse(&bytes);
        }
    }
}
