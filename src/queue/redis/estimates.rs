//! [`Estimates`]: the store of test durations that outlives builds, one per namespace, in the
//! same Redis: a smoothed estimate per test (an exponentially weighted mean of its runs) and its
//! last few runs.
//!
//! It has a hash tag of its own (`ciq:{timings:<namespace>}:estimates`): on Redis Cluster it
//! never meets a build's keys in one script, so it is read and written with plain pipelined
//! commands, never inside the per-test scripts. The leader reads it to order the queue; each
//! worker folds the durations it measured into it when it ends. It only holds estimates: losing
//! it slows a build down, never changes a verdict.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::queue::QueueError;
use crate::queue::redis::connection::RedisConn;
use crate::test_id::TestId;
use crate::timings::Slower;

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

/// The store of one namespace.
pub(super) struct Estimates<'a> {
    conn: &'a RedisConn,
    key: String,
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
        Self {
            conn,
            key: format!("ciq:{{timings:{namespace}}}:estimates"),
            swept: format!("ciq:{{timings:{namespace}}}:swept"),
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

    /// The store's estimate of each of `ids` (empty when it holds none).
    pub(super) async fn read(&self, ids: &[TestId]) -> Result<Vec<Option<Duration>>, QueueError> {
        // Most builds of a fresh namespace, and every build without history, stop here.
        let held: usize = self.conn.query(redis::cmd("HLEN").arg(&self.key)).await?;
        if held == 0 {
            return Ok(Vec::new());
        }
        // Only the estimate, the entry's first field: no samples kept for a million ids.
        self.read_each(ids.iter(), |entry| {
            let ms: f64 = entry.split(':').next()?.parse().ok()?;
            Some(Duration::from_millis(ms.max(0.0) as u64))
        })
        .await
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
        for ((id, took), entry) in durations.iter().zip(entries) {
            let usual = entry.as_ref().and_then(|entry| entry.samples.iter().max());
            slower.extend(usual.and_then(|ms| Slower::of(id, *took, Duration::from_millis(*ms))));
            let ms = u64::try_from(took.as_millis()).unwrap_or(u64::MAX);
            fields.push((id.as_str(), Entry::fold(entry, ms, now).render()));
        }
        for chunk in fields.chunks(CHUNK) {
            let _: i64 = self
                .conn
                .query(redis::cmd("HSET").arg(&self.key).arg(chunk))
                .await?;
        }
        let _: i64 = self
            .conn
            .query(
                redis::cmd("PEXPIRE")
                    .arg(&self.key)
                    .arg(u64::try_from(TTL.as_millis()).unwrap_or(u64::MAX)),
            )
            .await?;
        Ok(slower)
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
                let _: i64 = self
                    .conn
                    .query(redis::cmd("HDEL").arg(&self.key).arg(gone))
                    .await?;
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
