//! [`Estimates`]: the store of test durations that outlives builds, one per namespace, in the
//! same Redis: a smoothed estimate per test (an exponentially weighted mean of its runs) and its
//! last few runs.
//!
//! It has a hash tag of its own (`ciq:{timings:<namespace>}:estimates`, the namespace escaped
//! as in a build's tag): on Redis Cluster it never meets a build's keys in one script, so it is
//! read and written with plain pipelined commands, never inside the per-test scripts. The
//! leader reads it to order the queue; each worker folds the durations it measured into it when
//! it ends. It only holds estimates: losing it slows a build down, never changes a verdict.
//!
//! Beside it, a sorted set tracks the [`LONGEST`] longest estimates. The leader reads that
//! instead of a million entries (the difference between the first test starting a second after
//! the list is known and a fraction of one): the long tests are the ones whose place in the
//! queue matters, and every other test counts as the last fold's typical (median) test, at
//! most the shortest of them. While the store holds fewer tests than that, the set holds them
//! all.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::queue::QueueError;
use crate::queue::redis::connection::RedisConn;
use crate::test_id::TestId;
use crate::timings::{Slower, Stored};

/// Ids read or written per command.
const CHUNK: usize = 1000;
/// Commands of [`CHUNK`] ids sent in one round trip.
const CHUNKS_PER_TRIP: usize = 20;
/// Weight of the newest run in the smoothed estimate.
const ALPHA: f64 = 0.3;
/// Runs kept per test, newest last.
const SAMPLES: usize = 5;
/// How long the store lives without a build writing to it.
const TTL: Duration = Duration::from_secs(30 * 24 * 3600);
/// A test not run for this long, and not in the list being queued, leaves the store.
const FORGET_AFTER: Duration = Duration::from_secs(14 * 24 * 3600);
/// How often the store is swept of departed tests.
const SWEEP_EVERY: Duration = Duration::from_secs(24 * 3600);
/// How many of the longest estimates the sorted set tracks.
const LONGEST: usize = 10_000;

/// One test's entry: `<estimate ms>:<last run, unix s>:<ms>,<ms>,...`.
#[derive(Debug, Clone, PartialEq)]
struct Entry {
    estimate_ms: f64,
    seen_s: u64,
    samples: Vec<u64>,
}

impl Entry {
    fn parse(text: &str) -> Option<Self> {
        let mut parts = text.splitn(3, ':');
        let estimate_ms = parts.next()?.parse().ok()?;
        let seen_s = parts.next()?.parse().ok()?;
        let samples = parts
            .next()
            .unwrap_or("")
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().ok())
            .collect::<Option<Vec<u64>>>()?;
        Some(Self {
            estimate_ms,
            seen_s,
            samples,
        })
    }

    fn render(&self) -> String {
        let samples: Vec<String> = self.samples.iter().map(u64::to_string).collect();
        format!(
            "{:.0}:{}:{}",
            self.estimate_ms,
            self.seen_s,
            samples.join(",")
        )
    }

    /// This entry after one more run of `ms`, seen at `now_s`.
    fn fold(entry: Option<Self>, ms: u64, now_s: u64) -> Self {
        let mut entry = entry.unwrap_or(Self {
            estimate_ms: ms as f64,
            seen_s: now_s,
            samples: Vec::new(),
        });
        entry.estimate_ms = ALPHA * ms as f64 + (1.0 - ALPHA) * entry.estimate_ms;
        entry.seen_s = now_s;
        entry.samples.push(ms);
        if entry.samples.len() > SAMPLES {
            entry.samples.remove(0);
        }
        entry
    }
}

/// One test's estimate changed by a fold, for the sorted set of the longest: small, since a
/// fold may hold a million (milliseconds as `f32` are exact to the millisecond for hours).
struct Change {
    /// The estimate before, `NAN` for a test the store did not know.
    before: f32,
    after: f32,
    /// Where the test is among the fold's.
    at: u32,
}

/// The store of one namespace.
pub(super) struct Estimates<'a> {
    conn: &'a RedisConn,
    key: String,
    /// The sorted set of the longest estimates, scored in milliseconds.
    longest: String,
    /// The median estimate of the last fold, in milliseconds.
    typical: String,
    /// Set for a day when the store was last swept of departed tests.
    swept: String,
}

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

impl<'a> Estimates<'a> {
    /// The store of `namespace` (empty for none).
    pub(super) fn new(conn: &'a RedisConn, namespace: &str) -> Self {
        let prefix = crate::queue::redis::keys::store_prefix("timings", namespace);
        Self {
            conn,
            key: format!("{prefix}estimates"),
            longest: format!("{prefix}longest"),
            typical: format!("{prefix}typical"),
            swept: format!("{prefix}swept"),
        }
    }

    /// The store's entry of each of `ids`, as `parse` reads it: [`CHUNK`] ids per `HMGET`, a
    /// few of them per round trip, so a million ids cost tens of round trips.
    async fn read_each<T>(
        &self,
        ids: impl ExactSizeIterator<Item = &TestId>,
        parse: impl Fn(&str) -> Option<T>,
    ) -> Result<Vec<Option<T>>, QueueError> {
        let mut read = Vec::with_capacity(ids.len());
        let names: Vec<&str> = ids.map(TestId::as_str).collect();
        for chunks in names.chunks(CHUNK * CHUNKS_PER_TRIP) {
            let mut pipe = redis::pipe();
            for chunk in chunks.chunks(CHUNK) {
                pipe.cmd("HMGET").arg(&self.key).arg(chunk);
            }
            let raw: Vec<Vec<Option<String>>> = self.conn.pipeline(&pipe).await?;
            read.extend(raw.iter().flatten().map(|raw| parse(raw.as_deref()?)));
        }
        Ok(read)
    }

    /// What the store knows of `ids`, from the sorted set of the longest estimates.
    pub(super) async fn read(&self, ids: &[TestId]) -> Result<Stored, QueueError> {
        let mut pipe = redis::pipe();
        pipe.cmd("HLEN").arg(&self.key);
        pipe.cmd("ZCARD").arg(&self.longest);
        pipe.cmd("GET").arg(&self.typical);
        let (held, tracked, typical): (usize, usize, Option<f64>) =
            self.conn.pipeline(&pipe).await?;
        // Most builds of a fresh namespace, and every build without history, stop here.
        if held == 0 {
            return Ok(Stored::default());
        }
        if tracked < held.min(LONGEST) {
            // The set does not cover the store's longest (a store an older ciq wrote, or one
            // whose set lost members to a sweep): every entry, by id, until a fold fills it.
            // Only the estimate, the entry's first field: no samples kept for a million ids.
            let each = self
                .read_each(ids.iter(), |entry| {
                    let ms: f64 = entry.split(':').next()?.parse().ok()?;
                    Some(Duration::from_millis(ms.max(0.0) as u64))
                })
                .await?;
            return Ok(Stored { each, rest: None });
        }
        let longest: Vec<(String, f64)> = self
            .conn
            .query(
                redis::cmd("ZRANGE")
                    .arg(&self.longest)
                    .arg(0)
                    .arg(-1)
                    .arg("WITHSCORES"),
            )
            .await?;
        let millis = |ms: f64| Duration::from_millis(ms.max(0.0) as u64);
        // The store knows more tests than the set: the others take the last fold's typical
        // test, at most the set's shortest (module sums stay near their real size).
        // ZRANGE answers lowest score first.
        let shortest = longest.first().map(|(_, ms)| *ms);
        let rest = (held > tracked)
            .then(|| match (typical, shortest) {
                (Some(typical), Some(shortest)) => Some(typical.min(shortest)),
                (typical, shortest) => typical.or(shortest),
            })
            .flatten()
            .map(millis);
        let by_id: HashMap<&str, f64> = longest.iter().map(|(id, ms)| (id.as_str(), *ms)).collect();
        let each = ids
            .iter()
            .map(|id| by_id.get(id.as_str()).copied().map(millis))
            .collect();
        Ok(Stored { each, rest })
    }

    /// The slowest of the recent runs of each of `ids` that the store holds.
    pub(super) async fn slowest(
        &self,
        ids: &[TestId],
    ) -> Result<Vec<Option<Duration>>, QueueError> {
        self.read_each(ids.iter(), |entry| {
            let slowest = Entry::parse(entry)?.samples.into_iter().max()?;
            Some(Duration::from_millis(slowest))
        })
        .await
    }

    /// The usual duration of each of `ids` before the build that started at `since_s` (Unix
    /// seconds): the median of its recent runs, leaving out the newest when the entry was last
    /// written since (this build's own run, folded in by a worker that left).
    pub(super) async fn usual(
        &self,
        ids: &[TestId],
        since_s: u64,
    ) -> Result<Vec<Option<Duration>>, QueueError> {
        self.read_each(ids.iter(), |entry| {
            let mut entry = Entry::parse(entry)?;
            if entry.seen_s >= since_s {
                entry.samples.pop();
            }
            entry.samples.sort_unstable();
            let median = *entry.samples.get(entry.samples.len() / 2)?;
            Some(Duration::from_millis(median))
        })
        .await
    }

    /// Folds one run of each of `durations` into the store; returns the runs that took much
    /// longer than the test's recent ones ([`Slower::of`]).
    pub(super) async fn fold(
        &self,
        durations: &[(TestId, Duration)],
    ) -> Result<Vec<Slower>, QueueError> {
        let now = now_s();
        let entries = self
            .read_each(durations.iter().map(|(id, _)| id), Entry::parse)
            .await?;
        let mut slower = Vec::new();
        let mut fields = Vec::with_capacity(durations.len());
        let mut changes = Vec::with_capacity(durations.len());
        for ((id, took), entry) in durations.iter().zip(entries) {
            let usual = entry.as_ref().and_then(|entry| entry.samples.iter().max());
            slower.extend(usual.and_then(|ms| Slower::of(id, *took, Duration::from_millis(*ms))));
            let ms = u64::try_from(took.as_millis()).unwrap_or(u64::MAX);
            let before = entry.as_ref().map(|entry| entry.estimate_ms);
            let folded = Entry::fold(entry, ms, now);
            changes.push(Change {
                before: before.map_or(f32::NAN, |ms| ms as f32),
                after: folded.estimate_ms as f32,
                at: u32::try_from(fields.len()).unwrap_or(u32::MAX),
            });
            fields.push((id.as_str(), folded.render()));
        }
        for chunk in fields.chunks(CHUNK) {
            let _: i64 = self
                .conn
                .query(redis::cmd("HSET").arg(&self.key).arg(chunk))
                .await?;
        }
        self.track_longest(changes, |at| {
            fields.get(at as usize).map_or("", |field| field.0)
        })
        .await?;
        let ttl = u64::try_from(TTL.as_millis()).unwrap_or(u64::MAX);
        let mut pipe = redis::pipe();
        pipe.cmd("PEXPIRE").arg(&self.key).arg(ttl).ignore();
        pipe.cmd("PEXPIRE").arg(&self.longest).arg(ttl).ignore();
        let () = self.conn.pipeline(&pipe).await?;
        Ok(slower)
    }

    /// Keeps the sorted set of the [`LONGEST`] estimates up to date with `changes`, whose tests
    /// are named by `id`. Only this fold's longest can enter it; the others leave it if they may
    /// be in it (their estimate was above its shortest).
    async fn track_longest<'i>(
        &self,
        mut changes: Vec<Change>,
        id: impl Fn(u32) -> &'i str,
    ) -> Result<(), QueueError> {
        let mut pipe = redis::pipe();
        pipe.cmd("ZCARD").arg(&self.longest);
        pipe.cmd("ZRANGE")
            .arg(&self.longest)
            .arg(0)
            .arg(0)
            .arg("WITHSCORES");
        let (tracked, shortest): (usize, Vec<(String, f64)>) = self.conn.pipeline(&pipe).await?;
        let floor = shortest
            .first()
            .map(|(_, ms)| *ms as f32)
            .filter(|_| tracked >= LONGEST);
        let longest_first = |a: &Change, b: &Change| b.after.total_cmp(&a.after);
        // The fold's typical test, for the tests outside the set when it is read.
        let typical = (!changes.is_empty()).then(|| {
            let middle = changes.len() / 2;
            changes
                .select_nth_unstable_by(middle, longest_first)
                .1
                .after
        });
        if changes.len() > LONGEST {
            changes.select_nth_unstable_by(LONGEST, longest_first);
        }
        let (enter, others) = changes.split_at(changes.len().min(LONGEST));
        // All of them, even below the floor: a member whose estimate fell gets its new score,
        // and the trim below drops what is no longer among the longest.
        let entering: Vec<(f32, &str)> = enter
            .iter()
            .map(|change| (change.after.round(), id(change.at)))
            .collect();
        // Above the floor only: many tests may share the shortest estimate (a suite of alike
        // tests), and one left at it is the first to go. NAN (new to the store) is not above.
        let leaving: Vec<&str> = others
            .iter()
            .filter(|change| {
                tracked > 0
                    && !change.before.is_nan()
                    && floor.is_none_or(|floor| change.before > floor)
            })
            .map(|change| id(change.at))
            .collect();
        let mut pipe = redis::pipe();
        for chunk in entering.chunks(CHUNK) {
            pipe.cmd("ZADD").arg(&self.longest).arg(chunk).ignore();
        }
        for chunk in leaving.chunks(CHUNK) {
            pipe.cmd("ZREM").arg(&self.longest).arg(chunk).ignore();
        }
        pipe.cmd("ZREMRANGEBYRANK")
            .arg(&self.longest)
            .arg(0)
            .arg(-(LONGEST as i64) - 1)
            .ignore();
        if let Some(typical) = typical {
            pipe.cmd("SET")
                .arg(&self.typical)
                .arg(typical.round())
                .arg("PX")
                .arg(u64::try_from(TTL.as_millis()).unwrap_or(u64::MAX))
                .ignore();
        }
        self.conn.pipeline(&pipe).await
    }

    /// Drops the tests that are not in `suite` and were not run for [`FORGET_AFTER`], once the
    /// store holds noticeably more tests than the suite, at most once a day per namespace:
    /// test ids that left the suite leave the store in time, and the common case costs one
    /// HLEN (a store that stays big because other branches' tests are recent, one more SET).
    pub(super) async fn forget_gone(&self, suite: &[TestId]) -> Result<(), QueueError> {
        let held: usize = self.conn.query(redis::cmd("HLEN").arg(&self.key)).await?;
        if held <= suite.len() + suite.len() / 5 + 100 {
            return Ok(());
        }
        let due: Option<String> = self
            .conn
            .query(
                redis::cmd("SET")
                    .arg(&self.swept)
                    .arg(now_s())
                    .arg("NX")
                    .arg("EX")
                    .arg(SWEEP_EVERY.as_secs()),
            )
            .await?;
        if due.is_none() {
            return Ok(());
        }
        let keep: HashSet<&str> = suite.iter().map(TestId::as_str).collect();
        let stale_before = now_s().saturating_sub(FORGET_AFTER.as_secs());
        let mut cursor = 0u64;
        loop {
            let (next, page): (u64, HashMap<String, String>) = self
                .conn
                .query(
                    redis::cmd("HSCAN")
                        .arg(&self.key)
                        .arg(cursor)
                        .arg("COUNT")
                        .arg(CHUNK),
                )
                .await?;
            let gone: Vec<&String> = page
                .iter()
                .filter(|(id, entry)| {
                    !keep.contains(id.as_str())
                        && Entry::parse(entry).is_none_or(|entry| entry.seen_s < stale_before)
                })
                .map(|(id, _)| id)
                .collect();
            if !gone.is_empty() {
                let mut pipe = redis::pipe();
                pipe.cmd("HDEL").arg(&self.key).arg(&gone).ignore();
                pipe.cmd("ZREM").arg(&self.longest).arg(&gone).ignore();
                let () = self.conn.pipeline(&pipe).await?;
            }
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_smooth_runs_and_keep_the_last_few() {
        let mut entry = None;
        for ms in [100, 200, 300, 400, 500, 600] {
            entry = Some(Entry::fold(entry, ms, 7));
        }
        let entry = entry.unwrap();
        assert_eq!(entry.samples, [200, 300, 400, 500, 600]);
        assert!((300.0..600.0).contains(&entry.estimate_ms), "{entry:?}");
        assert_eq!(
            Entry::parse(&entry.render()).unwrap().samples,
            entry.samples
        );
        assert_eq!(
            Entry::parse("12:3:"),
            Some(Entry {
                estimate_ms: 12.0,
                seen_s: 3,
                samples: Vec::new()
            })
        );
        assert_eq!(Entry::parse("garbage"), None);
    }
}
