//! [`History`]: which tests failed or were flaky in a namespace's recent builds, so that a team
//! can see its flakiest tests (`ciq flaky`), a failure of a test that is often flaky is marked,
//! and a quarantined test that stopped failing is pointed out.
//!
//! Like the durations store it has a hash tag of its own (`ciq:{history:<namespace>}:...`, the
//! namespace escaped as in a build's tag) and is written once per build, by `ciq report`, with plain commands, never inside the per-test
//! scripts. It holds the builds (a sorted set, by the Redis time they were first recorded, in
//! microseconds, the
//! last [`WINDOW`] of them), one hash field per test and build that failed or was flaky
//! (`<test>\n<build>` -> `f` failed or errored, `y` flaky), and per build the set of its
//! fields' tests, so a build recorded again (the report of a job retry) replaces exactly its own
//! fields, and a build leaving the window takes its fields along. Reports of different builds
//! never write the same field. A green test costs nothing. Losing it all loses marks, never
//! changes a verdict.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use crate::queue::QueueError;
use crate::queue::redis::connection::RedisConn;
use crate::report::Summary;
use crate::test_id::TestId;

/// How many recent builds the history covers.
pub const WINDOW: usize = 50;
/// How long the history lives without a build recording into it.
const TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// What happened to one test in one build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// Its final outcome was failed or errored.
    Failed,
    /// It failed, then passed on a requeue.
    Flaky,
}

impl Event {
    fn tag(self) -> &'static str {
        match self {
            Event::Failed => "f",
            Event::Flaky => "y",
        }
    }
}

/// One test's record over the recent builds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestHistory {
    /// The test.
    pub id: String,
    /// Builds in which it was flaky.
    pub flaky: usize,
    /// Builds in which it failed.
    pub failed: usize,
    /// The most recent build in which it failed or was flaky.
    pub last_seen: String,
}

/// Each test with an event, and its events (build, what happened).
pub type Events = HashMap<String, Vec<(String, Event)>>;

/// A namespace's history.
pub struct History<'a> {
    conn: &'a RedisConn,
    prefix: String,
    builds: String,
    events: String,
}

impl<'a> History<'a> {
    /// The history of `namespace` (empty for none).
    pub fn new(conn: &'a RedisConn, namespace: &str) -> Self {
        let prefix = crate::queue::redis::keys::store_prefix("history", namespace);
        Self {
            conn,
            builds: format!("{prefix}builds"),
            events: format!("{prefix}events"),
            prefix,
        }
    }

    /// The set of the tests `build` has fields for.
    fn build_tests(&self, build: &str) -> String {
        format!("{}build:{build}", self.prefix)
    }

    /// Records `build`'s failing and flaky tests (those `summary` names), replacing what it
    /// recorded before, and forgets the builds that left the window.
    pub async fn record(&self, build: &str, summary: &Summary) -> Result<(), QueueError> {
        let mut happened: BTreeMap<&str, Event> = BTreeMap::new();
        for listed in &summary.failing {
            happened.insert(listed.id.as_str(), Event::Failed);
        }
        for listed in &summary.flaky {
            happened.insert(listed.id.as_str(), Event::Flaky);
        }
        let ttl = i64::try_from(TTL.as_millis()).unwrap_or(i64::MAX);
        let (time, before): ((String, String), Vec<String>) = self
            .conn
            .pipeline(redis::pipe().cmd("TIME").smembers(self.build_tests(build)))
            .await?;
        // Microseconds: two builds recorded within one millisecond still keep their order.
        let now_us =
            time.0.parse::<u128>().unwrap_or(0) * 1_000_000 + time.1.parse::<u128>().unwrap_or(0);
        let window = isize::try_from(WINDOW).unwrap_or(isize::MAX);
        let (dropped,): (Vec<String>,) = self
            .conn
            .pipeline(
                redis::pipe()
                    .cmd("ZADD")
                    .arg(&self.builds)
                    .arg("NX")
                    .arg(now_us.to_string())
                    .arg(build)
                    .ignore()
                    .zrange(&self.builds, 0, -window - 1),
            )
            .await?;
        let mut write = redis::pipe();
        write.atomic();
        for gone in &dropped {
            let tests: Vec<String> = self
                .conn
                .query(redis::cmd("SMEMBERS").arg(self.build_tests(gone)))
                .await?;
            for test in tests {
                write.hdel(&self.events, field(&test, gone)).ignore();
            }
            write.del(self.build_tests(gone)).ignore();
            write.zrem(&self.builds, gone).ignore();
        }
        for test in before.iter().filter(|t| !happened.contains_key(t.as_str())) {
            write.hdel(&self.events, field(test, build)).ignore();
        }
        write.del(self.build_tests(build)).ignore();
        if !happened.is_empty() {
            let tests = self.build_tests(build);
            for (test, event) in &happened {
                write
                    .hset(&self.events, field(test, build), event.tag())
                    .ignore();
                write.sadd(&tests, *test).ignore();
            }
            write.pexpire(&tests, ttl).ignore();
        }
        write.pexpire(&self.events, ttl).ignore();
        write.pexpire(&self.builds, ttl).ignore();
        self.conn.pipeline(&write).await
    }

    /// The recent builds, oldest first.
    pub async fn builds(&self) -> Result<Vec<String>, QueueError> {
        self.conn
            .query(redis::cmd("ZRANGE").arg(&self.builds).arg(0).arg(-1))
            .await
    }

    /// Every test with an event, and its events.
    pub async fn all(&self) -> Result<Events, QueueError> {
        let raw: HashMap<String, String> = self
            .conn
            .query(redis::cmd("HGETALL").arg(&self.events))
            .await?;
        let mut events = Events::new();
        for (key, tag) in raw {
            let Some((test, build)) = key.split_once('\n') else {
                continue;
            };
            let event = match tag.as_str() {
                "f" => Event::Failed,
                "y" => Event::Flaky,
                _ => continue,
            };
            events
                .entry(test.to_owned())
                .or_default()
                .push((build.to_owned(), event));
        }
        Ok(events)
    }

    /// Each test's record over the recent builds, the flakiest first (then the most failing).
    pub async fn ranked(&self) -> Result<(usize, Vec<TestHistory>), QueueError> {
        let builds = self.builds().await?;
        let order: HashMap<&str, usize> = builds
            .iter()
            .enumerate()
            .map(|(at, b)| (b.as_str(), at))
            .collect();
        let mut ranked: Vec<TestHistory> = self
            .all()
            .await?
            .into_iter()
            .filter_map(|(id, events)| {
                let events: Vec<&(String, Event)> = events
                    .iter()
                    .filter(|(b, _)| order.contains_key(b.as_str()))
                    .collect();
                let last = events.iter().max_by_key(|(b, _)| order[b.as_str()])?;
                Some(TestHistory {
                    flaky: events.iter().filter(|(_, e)| *e == Event::Flaky).count(),
                    failed: events.iter().filter(|(_, e)| *e == Event::Failed).count(),
                    last_seen: last.0.clone(),
                    id,
                })
            })
            .collect();
        ranked.sort_by(|a, b| (b.flaky, b.failed, &a.id).cmp(&(a.flaky, a.failed, &b.id)));
        Ok((builds.len(), ranked))
    }
}

/// The events hash's field of `test` in `build`: test ids hold no line break.
fn field(test: &str, build: &str) -> String {
    format!("{test}\n{build}")
}

/// How many of the most recent builds `--order failed-first` looks at: a test that failed or
/// was flaky in one of them goes first.
pub const RECENT: usize = 10;

impl History<'_> {
    /// The tests that failed or were flaky in the namespace's `most` most recent builds.
    pub async fn recent(&self, most: usize) -> Result<HashSet<TestId>, QueueError> {
        let builds = self.builds().await?;
        let recent = &builds[builds.len().saturating_sub(most)..];
        Ok(self
            .all()
            .await?
            .into_iter()
            .filter(|(_, events)| events.iter().any(|(build, _)| recent.contains(build)))
            .filter_map(|(test, _)| TestId::new(test).ok())
            .collect())
    }
}

/// How many recent builds without a failure make a quarantined test ready to leave.
pub const QUIET_BUILDS: usize = 10;

/// Marks `failing` tests that were flaky in other recent builds than `build`, e.g. `flaky in 3
/// of the last 12 builds`.
pub fn marks<'t>(
    builds: &[String],
    all: &Events,
    build: &str,
    failing: impl Iterator<Item = &'t TestId>,
) -> BTreeMap<TestId, String> {
    failing
        .filter_map(|id| {
            let flaky = all
                .get(id.as_str())?
                .iter()
                .filter(|(b, e)| *e == Event::Flaky && b != build && builds.contains(b))
                .count();
            (flaky > 0).then(|| {
                (
                    id.clone(),
                    format!("flaky in {flaky} of the last {} builds", builds.len()),
                )
            })
        })
        .collect()
}

/// The `ids` with no failure and no flake in the last [`QUIET_BUILDS`] builds; none while the
/// history holds fewer builds. (The history cannot tell a test that passed from one that did
/// not run: one deselected for that long looks quiet too.)
pub fn quiet<'t>(
    builds: &[String],
    all: &Events,
    ids: impl Iterator<Item = &'t TestId>,
) -> Vec<TestId> {
    let Some(recent) = builds
        .len()
        .checked_sub(QUIET_BUILDS)
        .map(|from| &builds[from..])
    else {
        return Vec::new();
    };
    ids.filter(|id| {
        all.get(id.as_str())
            .is_none_or(|events| !events.iter().any(|(b, _)| recent.contains(b)))
    })
    .cloned()
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_count_other_builds_and_quiet_needs_enough_builds() {
        let builds: Vec<String> = (1..=12).map(|n| format!("b{n}")).collect();
        let id = |s: &str| TestId::new(s).unwrap();
        let mut all = HashMap::new();
        all.insert(
            "net".to_owned(),
            vec![
                ("b1".to_owned(), Event::Flaky),
                ("b5".to_owned(), Event::Flaky),
                ("b12".to_owned(), Event::Flaky),
                ("gone".to_owned(), Event::Flaky),
            ],
        );
        all.insert("disk".to_owned(), vec![("b2".to_owned(), Event::Failed)]);
        let failing = [id("net"), id("disk")];
        let marks = marks(&builds, &all, "b12", failing.iter());
        assert_eq!(
            marks.into_iter().collect::<Vec<_>>(),
            [(id("net"), "flaky in 2 of the last 12 builds".to_owned())]
        );
        let quarantined = [id("net"), id("disk"), id("never")];
        // disk last failed in b2, before the last 10 builds; net was flaky in b5.
        assert_eq!(
            quiet(&builds, &all, quarantined.iter()),
            [id("disk"), id("never")]
        );
        assert!(quiet(&builds[..9], &all, quarantined.iter()).is_empty());
    }
}
