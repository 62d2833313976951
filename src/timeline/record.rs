//! The record format a build's timeline is kept in: lines of text the Redis scripts append
//! (`lua/per_test.lua`'s `record`, and the election's scripts) and the local queue writes
//! alike, read back here into [`Entry`]s. `docs/queue-protocol.md` ("Timeline") documents it.
//!
//! A call appends one chunk: a header `@<s>.<µs> <session>` (server time as TIME gives it, the
//! microseconds not zero-padded; the session's first 12 characters: a lease's prefix), then its
//! records, one a line:
//!
//! | record | meaning |
//! |---|---|
//! | `J <worker>` | the session joined (HELLO) as worker `<worker>` |
//! | `W <generation>` | it won the election of `<generation>`; its listing starts |
//! | `L <generation>` | it lost the election: `<generation>` leads or is ready |
//! | `D` | the leader's lock lapsed before a commit; a new election follows |
//! | `S <count>` | its listing ended with `<count>` tests; staging starts |
//! | `C <count>` | it committed `<count>` tests: the queue is open |
//! | `R <seq>` | it reserved tests under leases `<session>.<seq>.1..n`: the next lines that start with a space, each a space and an id |
//! | `A <seq>.<i><o><ms> ...` | it acknowledged lease `<session>.<seq>.<i>`: outcome letter `<o>`, measured `<ms>` |
//! | `T <lease> ...` | its scan took these leases' tests over (their holder fell silent) |
//! | `X <how>` | it left: `d` drained, `t` SIGTERM, `b` breaker, `m` max-duration, `f` failed |
//! | `B <reason>` | a breaker stopped it |
//! | `!` | the records reached their bound: nothing later was kept |
//!
//! Outcome letters: `p` passed, `f` failed, `e` errored, `s` skipped, `q` failed and requeued;
//! upper case when the lease was no longer the worker's (taken over meanwhile: not counted).

use crate::outcome::Outcome;
use crate::timeline::{Leave, LostPart};

/// The bound on a build's records in bytes (`TIMELINE_CAP` in `lua/lib.lua`): about 128 bytes
/// for each of a million tests, ids included. A call that finds the records past it adds `!`
/// and nothing more is kept.
pub const CAP: u64 = 128 * 1024 * 1024;

/// One record, with the time and session of the chunk it came in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Server time in ms.
    pub at_ms: u64,
    /// The session's short id.
    pub session: String,
    /// What happened.
    pub record: Record,
}

/// The records of the format (see the module's table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// `J`.
    Join { worker: String },
    /// `W`.
    Won { generation: String },
    /// `L`.
    Lost { generation: String },
    /// `D`.
    LeaderDied,
    /// `S`.
    Staging { count: u64 },
    /// `C`.
    Commit { count: u64 },
    /// `R` and its ids.
    Reserve { seq: u64, tests: Vec<String> },
    /// `A`.
    Ack { items: Vec<Acked> },
    /// `T`.
    Takeover { leases: Vec<String> },
    /// `X`.
    Leave { how: Leave },
    /// `B`.
    Breaker { reason: String },
    /// `!`.
    Capped,
}

/// One acknowledged lease of an `A` record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Acked {
    /// The reservation's sequence number.
    pub seq: u64,
    /// The position in that reservation, from 1.
    pub index: u64,
    /// The outcome letter.
    pub letter: u8,
    /// What the worker measured, in ms.
    pub duration_ms: u64,
}

/// The letter of a run's outcome in an `A` record (a flaky run passed).
pub fn outcome_letter(outcome: Outcome) -> char {
    match outcome {
        Outcome::Passed | Outcome::Flaky => 'p',
        Outcome::Failed => 'f',
        Outcome::Errored => 'e',
        Outcome::Skipped => 's',
    }
}

/// The header of a chunk at `at` (`@<s>.<µs> <session>`, as the scripts write TIME's two parts).
pub fn header(at: std::time::Duration, session: &str) -> String {
    format!("@{}.{} {session}\n", at.as_secs(), at.subsec_micros())
}

/// The letter of a way of leaving (`X`).
pub fn leave_letter(how: Leave) -> char {
    match how {
        Leave::Drained => 'd',
        Leave::Sigterm => 't',
        Leave::Breaker => 'b',
        Leave::MaxDuration => 'm',
        Leave::Failed => 'f',
        Leave::Silent => 's',
    }
}

fn leave_of(letter: &str) -> Option<Leave> {
    Some(match letter {
        "d" => Leave::Drained,
        "t" => Leave::Sigterm,
        "b" => Leave::Breaker,
        "m" => Leave::MaxDuration,
        "f" => Leave::Failed,
        "s" => Leave::Silent,
        _ => return None,
    })
}

/// `text` as one record line: line breaks would start a record of their own.
pub fn one_line(text: &str) -> String {
    text.replace(['\n', '\r'], " ")
}

/// Reads `bytes` into entries. Whatever cannot be read (a truncated chunk, garbage, a record
/// before any header) becomes a [`LostPart`] saying where, and reading goes on at the next
/// line: never a panic, never a made-up record.
pub fn read(bytes: &[u8]) -> (Vec<Entry>, Vec<LostPart>) {
    let mut entries = Vec::new();
    let mut lost = Vec::new();
    let mut header: Option<(u64, String)> = None;
    let mut unreadable = 0u64;
    let mut first_unreadable: Option<u64> = None;
    let complete = bytes.ends_with(b"\n") || bytes.is_empty();
    let mut lines: Vec<&[u8]> = bytes.split(|b| *b == b'\n').collect();
    // The text after the last line break is a line cut short (or nothing).
    let tail = lines.pop().unwrap_or_default();
    let mut at = 0;
    while at < lines.len() {
        let line = String::from_utf8_lossy(lines[at]);
        at += 1;
        if let Some(rest) = line.strip_prefix('@') {
            header = parse_header(rest);
            if header.is_none() {
                unreadable += 1;
            }
            continue;
        }
        let Some((at_ms, session)) = header.clone() else {
            unreadable += 1;
            continue;
        };
        let record = match parse_record(&line) {
            Some(Record::Reserve { seq, tests: _ }) => {
                let mut tests = Vec::new();
                while let Some(id) = lines.get(at).and_then(|line| line.strip_prefix(b" ")) {
                    tests.push(String::from_utf8_lossy(id).into_owned());
                    at += 1;
                }
                Record::Reserve { seq, tests }
            }
            Some(record) => record,
            None => {
                unreadable += 1;
                first_unreadable.get_or_insert(at_ms);
                continue;
            }
        };
        entries.push(Entry {
            at_ms,
            session,
            record,
        });
    }
    if !complete && !tail.is_empty() {
        unreadable += 1;
    }
    if unreadable > 0 {
        lost.push(LostPart {
            part: "attempts",
            detail: format!(
                "{unreadable} line(s) of the build's records could not be read (cut short or damaged); the runs and events they held are missing"
            ),
            worker: None,
            from_ms: first_unreadable,
            to_ms: None,
        });
    }
    (entries, lost)
}

fn parse_header(rest: &str) -> Option<(u64, String)> {
    let (time, session) = rest.split_once(' ')?;
    if session.is_empty() || session.contains(' ') {
        return None;
    }
    let (seconds, micros) = time.split_once('.')?;
    let seconds: u64 = seconds.parse().ok()?;
    let micros: u64 = micros.parse().ok()?;
    let ms = seconds.checked_mul(1000)?.checked_add(micros / 1000)?;
    Some((ms, session.to_owned()))
}

fn parse_record(line: &str) -> Option<Record> {
    let (kind, rest) = line.split_once(' ').unwrap_or((line, ""));
    Some(match kind {
        "J" => Record::Join {
            worker: rest.to_owned(),
        },
        "W" => Record::Won {
            generation: rest.to_owned(),
        },
        "L" => Record::Lost {
            generation: rest.to_owned(),
        },
        "D" => Record::LeaderDied,
        "S" => Record::Staging {
            count: rest.parse().ok()?,
        },
        "C" => Record::Commit {
            count: rest.parse().ok()?,
        },
        "R" => Record::Reserve {
            seq: rest.parse().ok()?,
            tests: Vec::new(),
        },
        "A" => Record::Ack {
            items: rest
                .split(' ')
                .map(parse_acked)
                .collect::<Option<Vec<_>>>()?,
        },
        "T" => Record::Takeover {
            leases: rest
                .split(' ')
                .filter(|lease| !lease.is_empty())
                .map(str::to_owned)
                .collect(),
        },
        "X" => Record::Leave {
            how: leave_of(rest)?,
        },
        "B" => Record::Breaker {
            reason: rest.to_owned(),
        },
        "!" => Record::Capped,
        _ => return None,
    })
}

/// `<seq>.<i><letter><ms>`.
fn parse_acked(item: &str) -> Option<Acked> {
    let (seq, rest) = item.split_once('.')?;
    let letter_at = rest.find(|c: char| c.is_ascii_alphabetic())?;
    let (index, rest) = rest.split_at(letter_at);
    let letter = *rest.as_bytes().first()?;
    Some(Acked {
        seq: seq.parse().ok()?,
        index: index.parse().ok()?,
        letter,
        duration_ms: rest.get(1..)?.parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunk_reads_back_record_by_record() {
        let text = "@0.1000000 abc\nJ w 1\nR 3\n t one\n t two\n@0.1010000 abc\nA 3.1p4 3.2q5\nT def.1.1 def.2.1\nX d\n";
        let (entries, lost) = read(text.as_bytes());
        assert!(lost.is_empty(), "{lost:?}");
        let records: Vec<&Record> = entries.iter().map(|e| &e.record).collect();
        assert_eq!(
            records,
            [
                &Record::Join {
                    worker: "w 1".into()
                },
                &Record::Reserve {
                    seq: 3,
                    tests: vec!["t one".into(), "t two".into()]
                },
                &Record::Ack {
                    items: vec![
                        Acked {
                            seq: 3,
                            index: 1,
                            letter: b'p',
                            duration_ms: 4
                        },
                        Acked {
                            seq: 3,
                            index: 2,
                            letter: b'q',
                            duration_ms: 5
                        }
                    ]
                },
                &Record::Takeover {
                    leases: vec!["def.1.1".into(), "def.2.1".into()]
                },
                &Record::Leave {
                    how: Leave::Drained
                },
            ]
        );
        assert_eq!(entries[2].at_ms, 1010);
    }

    #[test]
    fn garbage_and_cut_chunks_are_lost_parts_never_panics() {
        let inputs: [&[u8]; 8] = [
            b"R 1\n x\n",
            b"@nope s\nJ w\n",
            b"@0.1000 s\nR 1\n a\n b",
            b"@0.1000 s\nA 1.1p\n",
            b"@0.1000 s\nZ what\n",
            b"@0.1000 s\nJ w\nX",
            b"\xff\xfe\n@\n@ \n",
            b"@0.1000 s\nA .p1 1.xp 1.1\n",
        ];
        for input in inputs {
            let (_, lost) = read(input);
            assert_eq!(lost.len(), 1, "{:?}", String::from_utf8_lossy(input));
        }
        let (entries, lost) = read(b"");
        assert!(entries.is_empty() && lost.is_empty());
    }
}
