//! The election: which worker fills the queue, and how the others wait for it.
//!
//! The leader holds `setup:<gen>:<worker>` with a short TTL and renews it with compare-and-set
//! while it discovers, stages and commits; the commit turns it into `ready:<gen>` only if the
//! lock is still its own. A lock that lapses means the leader died: waiting workers elect again,
//! up to a budget. A leader that finds its lock gone drops its staging and follows the winner.
//! So at most one generation is ever committed, and nobody reads one that was not.

use std::collections::HashSet;
use std::sync::PoisonError;
use std::time::Duration;

use tokio::time::{Instant, sleep};

use crate::list_source::ListSource;
use crate::queue::error::{Abort, AbortKind};
use crate::queue::redis::connection::RedisConn;
use crate::queue::redis::dead_leaders::DeadLeaders;
use crate::queue::redis::estimates::Estimates;
use crate::queue::redis::history::{self, History};
use crate::queue::redis::keys::{BuildKeys, meta};
use crate::queue::redis::redis_queue::RedisQueue;
use crate::queue::redis::scripts::abort::{self, Rule};
use crate::queue::redis::scripts::commit::{Commit, Committed};
use crate::queue::redis::scripts::elect::{Elect, Elected};
use crate::queue::redis::scripts::hello::Hello;
use crate::queue::redis::scripts::observe::{Observe, Observed};
use crate::queue::redis::scripts::renew::{Renew, Renewed};
use crate::queue::redis::scripts::resign::Resign;
use crate::queue::redis::scripts::stage::{Stage, Staged};
use crate::queue::redis::scripts::{self};
use crate::queue::redis::settings::millis;
use crate::queue::redis::state::BuildState;
use crate::queue::{Queue, QueueError};
use crate::test_id::TestId;
use crate::timeline::Leave;
use crate::timings::{Order, Ordered, Stored};

/// How a worker joined the build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Joined {
    /// The generation it follows.
    pub generation: String,
    /// Whether it filled the queue itself.
    pub led: bool,
}

/// Most ids staged in one script call, and most bytes: a batch stays well inside Lua's stack
/// and Redis's argument limits, and a lost reply re-sends little.
const STAGE_BATCH_IDS: usize = 1000;
const STAGE_BATCH_BYTES: usize = 1 << 20;
/// The longest pause between looks at a build whose leader fills the queue: every worker takes
/// its first test within this long of the commit.
const READY_POLL: Duration = Duration::from_millis(250);
/// Most tests whose own estimate a generation keeps for auto batches: the longest, whose
/// place in a batch matters; every other test counts as the default.
const ESTIMATED: usize = 10_000;

/// Why a build whose `state` is absent while its results remain is lost.
pub(super) const STATE_GONE_RESULTS_LEFT: &str = "its state key is gone while its results remain";

enum Led {
    Committed,
    LostLock,
}

impl RedisQueue {
    /// Joins the build: elects a leader (maybe this worker, which then fills the queue from
    /// `source`) and follows the committed generation.
    pub async fn join(&self, source: &impl ListSource) -> Result<Joined, QueueError> {
        self.hello().await?;
        let joined = self.elect(source).await?;
        if !joined.led {
            let timeout = self.settings.queue_init_timeout;
            let list = match self.alive_while(source.to_check(timeout)).await? {
                Some(list) => Some(list),
                // A worker that finds its build finished would take the build's verdict for
                // its own without running anything: it lists its suite first (the only time a
                // follower runs a list command), so a build id given to another suite, or
                // reused after the suite changed, is found out.
                None if self.finished(&joined.generation).await? => Some(
                    self.alive_while(source.produce(timeout))
                        .await?
                        .map_err(|err| QueueError::LateListing {
                            worker: self.worker.clone(),
                            build: self.settings.build.clone(),
                            detail: crate::human::error_chain(err.as_ref()),
                        })?,
                ),
                None => None,
            };
            if let Some(list) = list {
                self.check_list(&joined.generation, &list).await?;
            }
        }
        self.record_joined().await?;
        Ok(joined)
    }

    /// Records that this session's list is the build's: the report's verdict no longer waits
    /// for it, even if it dies without a word.
    async fn record_joined(&self) -> Result<(), QueueError> {
        let key = self.keys.joined();
        let mut write = redis::pipe();
        write
            .atomic()
            .sadd(&key, &self.session)
            .ignore()
            .pexpire(
                &key,
                i64::try_from(self.settings.key_ttl.as_millis()).unwrap_or(i64::MAX),
            )
            .ignore();
        self.conn.pipeline(&write).await
    }

    /// Runs `work` (a follower's own listing, which may take as long as a collection) while
    /// heartbeats say this worker is alive, as they do while it prepares to run tests: the
    /// report must neither count it gone nor stop waiting for what it may record.
    async fn alive_while<T>(&self, work: impl Future<Output = T>) -> Result<T, QueueError> {
        let mut work = std::pin::pin!(work);
        loop {
            tokio::select! {
                done = &mut work => return Ok(done),
                () = sleep(self.settings.heartbeat_interval) => {
                    Queue::heartbeat(self, &[]).await?;
                }
            }
        }
    }

    /// Whether every test of generation `generation` has its outcome.
    async fn finished(&self, generation: &str) -> Result<bool, QueueError> {
        let keys = self.keys.generation(generation);
        let mut read = redis::pipe();
        read.atomic()
            .hget(&keys.meta, meta::TOTAL)
            .scard(&keys.processed);
        let (total, processed): (Option<u64>, u64) = self.conn.pipeline(&read).await?;
        Ok(total == Some(processed))
    }

    /// Announces this worker's session, and warns when another live process already uses its
    /// worker id (each still counts on its own, but their lines and names get mixed up).
    async fn hello(&self) -> Result<(), QueueError> {
        if let Some(version) = self.conn.server_version().await
            && !supported(&version)
        {
            return Err(QueueError::OldRedis {
                url: self.conn.url().to_owned(),
                version,
            });
        }
        if let Some(policy) = self.conn.eviction_policy().await {
            crate::say!(
                "ciq: warning: Redis at `{}` has a memory limit and maxmemory-policy `{policy}`: under memory pressure it may evict this build's keys, and the build then ends with an infrastructure error (set maxmemory-policy noeviction)",
                self.conn.url()
            );
        }
        let hello = Hello {
            keys: &self.keys,
            session: &self.session,
            worker: &self.worker,
            key_ttl_ms: millis(self.settings.key_ttl),
            heartbeat_timeout_ms: millis(self.settings.heartbeat_timeout),
        };
        let twins = scripts::run(&self.conn, &hello).await?;
        if twins > 0 {
            crate::say!(
                "ciq: warning: {twins} other live process(es) of build `{}` also call themselves worker `{}`; each counts on its own, but give every CI machine its own --worker (on a GitHub Actions matrix: --worker ${{{{ strategy.job-index }}}})",
                self.settings.build,
                self.worker
            );
        }
        Ok(())
    }

    async fn elect(&self, source: &impl ListSource) -> Result<Joined, QueueError> {
        let mut deaths = DeadLeaders::default();
        let mut after_lapse = false;
        loop {
            let generation = uuid::Uuid::new_v4().to_string();
            let elect = Elect {
                keys: &self.keys,
                generation: &generation,
                worker: &self.worker,
                lock_ttl_ms: millis(self.settings.lock_ttl),
                session: &self.session,
                key_ttl_ms: millis(self.settings.key_ttl),
                after_lapse,
            };
            match scripts::run(&self.conn, &elect).await? {
                Elected::Leader => match self.lead(&generation, source).await? {
                    Led::Committed => return Ok(self.joined(generation, true)),
                    Led::LostLock => {
                        crate::say!(
                            "ciq: worker `{}` lost the setup lock (paused, partitioned or too slow); dropped its staging and follows the new leader",
                            self.worker
                        );
                        deaths.forget_setup();
                    }
                },
                Elected::Aborted(abort) => return Err(QueueError::Aborted(abort)),
                // Regression: a finished build that lost only its state was started again by
                // a late worker, as a new generation.
                Elected::Lost => return Err(self.state_lost(STATE_GONE_RESULTS_LEFT).await),
                Elected::Wait(BuildState::Ready { generation }) => {
                    return Ok(self.joined(generation, false));
                }
                Elected::Wait(BuildState::Setup { generation, leader }) => {
                    if deaths.saw_setup(&generation) {
                        self.check_budget(&deaths).await?;
                    }
                    crate::say!(
                        "ciq: worker `{}` waits for leader `{leader}` to fill the queue",
                        self.worker
                    );
                }
                // ELECT takes an absent lock itself: this only follows a lock lapsing between
                // its two reads, and the wait below sees the new state.
                Elected::Wait(BuildState::Absent) => {}
            }
            if let Some(generation) = self.wait_for_ready(&mut deaths).await? {
                return Ok(self.joined(generation, false));
            }
            after_lapse = true;
            crate::say!(
                "ciq: the leader died before filling the queue; electing a new one ({} of {} leaders dead)",
                deaths.count(),
                self.settings.max_election_attempts
            );
        }
    }

    fn joined(&self, generation: String, led: bool) -> Joined {
        self.follow(&generation);
        Joined { generation, led }
    }

    /// Waits while a leader holds the setup lock; returns the ready generation, or `None` when
    /// the lock lapsed and a new election is due.
    async fn wait_for_ready(&self, deaths: &mut DeadLeaders) -> Result<Option<String>, QueueError> {
        let mut delay = Duration::from_millis(20);
        loop {
            let observed = self.observe(None).await?;
            if let Some(abort) = observed.abort {
                return Err(QueueError::Aborted(abort));
            }
            match observed.state {
                BuildState::Absent => {
                    deaths.lapsed();
                    self.check_budget(deaths).await?;
                    return Ok(None);
                }
                BuildState::Ready { generation } => return Ok(Some(generation)),
                BuildState::Setup { generation, leader } => {
                    if deaths.saw_setup(&generation) {
                        self.check_budget(deaths).await?;
                        crate::say!(
                            "ciq: worker `{}` waits for new leader `{leader}`",
                            self.worker
                        );
                    }
                }
            }
            sleep(delay).await;
            delay = (delay * 2).min(self.settings.lock_ttl / 4).min(READY_POLL);
        }
    }

    /// Fails with "lost leader", for everyone, once the election budget is spent.
    async fn check_budget(&self, deaths: &DeadLeaders) -> Result<(), QueueError> {
        let Some(err) = deaths.over(self.settings.max_election_attempts) else {
            return Ok(());
        };
        // Refused when a leader committed meanwhile: the wait then finds the build ready.
        match self
            .abort(AbortKind::LostLeader, &err.to_string(), Rule::Unready)
            .await?
        {
            Some(_) => Err(err),
            None => Ok(()),
        }
    }

    /// The generation `state` names as ready, for a worker that was told its own is stale. Any
    /// other state means the build's state was lost: such a worker never elects again, and
    /// aborts the build for everyone, so the report and the other workers end with the same
    /// infrastructure error even if they never saw the build ready.
    /// `previous_meta` is the meta key of the generation the worker followed: after a real
    /// replacement it is still there; after Redis lost the build (and a late worker elected a
    /// fresh generation) it is gone, and following the fresh one would run the suite again and
    /// could call the build green.
    pub(super) async fn current_ready_generation(
        &self,
        previous_meta: &str,
    ) -> Result<String, QueueError> {
        let observed = self.observe(Some(previous_meta)).await?;
        if let Some(abort) = observed.abort {
            return Err(QueueError::Aborted(abort));
        }
        let reason = match observed.state {
            BuildState::Ready { generation } if observed.previous_exists => return Ok(generation),
            BuildState::Absent => "its state key is gone",
            _ => "a new election started after its state was gone",
        };
        Err(self.state_lost(reason).await)
    }

    /// Ends the build for everyone as lost (best effort: Redis may be gone) and returns the
    /// error this worker ends with. The abort record also stops a worker that joins later from
    /// starting the build again in a Redis that forgot it.
    pub(super) async fn state_lost(&self, reason: &str) -> QueueError {
        let err = QueueError::StateLost(reason.to_owned());
        match self
            .abort(AbortKind::StateLost, &err.to_string(), Rule::Always)
            .await
        {
            Ok(Some(QueueError::Aborted(abort))) if abort.kind != AbortKind::StateLost => {
                QueueError::Aborted(abort)
            }
            _ => err,
        }
    }

    async fn observe(&self, previous_meta: Option<&str>) -> Result<Observed, QueueError> {
        let observe = Observe {
            keys: &self.keys,
            previous_meta,
        };
        scripts::run(&self.conn, &observe).await
    }

    /// Leads `generation`: discovers, stages and commits while a background task renews the
    /// lock. Any sign of a lost lock stops the work and drops the staged keys.
    async fn lead(&self, generation: &str, source: &impl ListSource) -> Result<Led, QueueError> {
        crate::say!(
            "ciq: worker `{}` is the leader of build `{}` (generation {generation}); listing tests",
            self.worker,
            self.settings.build
        );
        let setup = BuildState::setup_value(generation, &self.worker);
        let ready = BuildState::ready_value(generation);
        self.set_leading(Some((setup.clone(), generation.to_owned())));
        let led = tokio::select! {
            led = self.discover_stage_commit(generation, &setup, &ready, source) => led,
            renewal = self.renew_until_lost(generation, &setup, &ready) => {
                renewal.map(|()| Led::LostLock)
            }
        };
        self.set_leading(None);
        if matches!(led, Ok(Led::LostLock)) {
            let keys = self.keys.generation(generation);
            let mut del = redis::cmd("DEL");
            for key in keys.all() {
                del.arg(key);
            }
            let _deleted: i64 = self.conn.query(&del).await?;
        }
        led
    }

    fn set_leading(&self, leading: Option<(String, String)>) {
        *self.leading.lock().unwrap_or_else(PoisonError::into_inner) = leading;
    }

    /// Leaves the build before joining it (stopped, or failed, while it waited, listed or
    /// staged): its session says it left, as a worker that ends does, so the report need not
    /// wait out its heartbeat timeout; and a setup lock it holds is given up, so the others
    /// elect a new leader at once instead of after the lock's TTL.
    pub async fn resign(&self, how: Leave) -> Result<(), QueueError> {
        let leading = self
            .leading
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let resign = Resign {
            keys: &self.keys,
            session: &self.session,
            worker: &self.worker,
            leading: leading
                .as_ref()
                .map(|(setup, generation)| (generation.as_str(), setup.as_str())),
            how,
        };
        if scripts::run(&self.conn, &resign).await? {
            crate::say!(
                "ciq: worker `{}` gave up leading build `{}`; another worker takes over",
                self.worker,
                self.settings.build
            );
        }
        Ok(())
    }

    /// Renews the lock every third of its TTL; returns once the lock is found to be someone
    /// else's. An error (Redis unreachable past the reconnect budget) is not a lost lock: the
    /// commit may have landed, so the generation is not dropped.
    async fn renew_until_lost(
        &self,
        generation: &str,
        setup: &str,
        ready: &str,
    ) -> Result<(), QueueError> {
        let renew = Renew {
            keys: &self.keys,
            generation,
            setup,
            ready,
            lock_ttl_ms: millis(self.settings.lock_ttl),
            key_ttl_ms: millis(self.settings.key_ttl),
        };
        loop {
            sleep(self.settings.lock_ttl / 3).await;
            if scripts::run(&self.conn, &renew).await? == Renewed::Lost {
                return Ok(());
            }
        }
    }

    async fn discover_stage_commit(
        &self,
        generation: &str,
        setup: &str,
        ready: &str,
        source: &impl ListSource,
    ) -> Result<Led, QueueError> {
        let started = Instant::now();
        crate::pause_point::reached("elected");
        let list = match source.produce(self.settings.queue_init_timeout).await {
            Ok(list) => list,
            Err(err) => {
                let message = crate::human::error_chain(err.as_ref());
                return match self
                    .abort(AbortKind::BadInput, &message, Rule::Leader(setup))
                    .await?
                {
                    Some(err) => Err(err),
                    None => Ok(Led::LostLock),
                };
            }
        };
        if let Some(warning) = list.duplicate_warning() {
            crate::say!("ciq: {warning}");
        }
        let order = self.order(&list.ids).await;
        self.stage_estimates(generation, &order).await?;
        self.stage_groups(generation, &list.ids).await?;
        let mut staged = 0usize;
        for batch in batches(&order.ids) {
            if staged > 0 {
                crate::pause_point::reached("staging");
            }
            let stage = Stage {
                keys: &self.keys,
                generation,
                setup,
                position: staged,
                batch,
                lock_ttl_ms: millis(self.settings.lock_ttl),
                key_ttl_ms: millis(self.settings.key_ttl),
                session: &self.session,
                listed: order.ids.len(),
            };
            match scripts::run(&self.conn, &stage).await? {
                Staged::LostLock => return Ok(Led::LostLock),
                Staged::Length(n) if n == staged + batch.len() => staged = n,
                other => {
                    return Err(QueueError::Protocol(format!(
                        "staging at position {staged} answered {other:?}"
                    )));
                }
            }
        }
        let total = list.ids.len();
        crate::pause_point::reached("before-commit");
        let commit = Commit {
            keys: &self.keys,
            generation,
            setup,
            ready,
            key_ttl_ms: millis(self.settings.key_ttl),
            total,
            max_requeues: self.settings.budget.max_requeues,
            requeue_limit: self.settings.budget.build_limit(total),
            heartbeat_timeout_ms: millis(self.settings.heartbeat_timeout),
            digest: list.digest(),
            order: self.settings.scheduling.order.to_string(),
            session: &self.session,
            groups: &self.settings.scheduling.groups.limits,
        };
        match scripts::run(&self.conn, &commit).await? {
            Committed::Yes => {
                crate::say!(
                    "ciq: worker `{}` queued {total} tests in {:.2}s",
                    self.worker,
                    started.elapsed().as_secs_f64()
                );
                self.forget_gone(&list.ids).await;
                Ok(Led::Committed)
            }
            Committed::LostLock => Ok(Led::LostLock),
            Committed::Miscounted => Err(QueueError::Protocol(format!(
                "the commit found the staged queue short of {total} tests"
            ))),
        }
    }

    /// `ids` in the order to queue them: longest estimated first, by the namespace's store and
    /// the timing file. The store only makes the build faster, so a store that cannot be read
    /// is a warning.
    async fn order<'a>(&self, ids: &'a [TestId]) -> Ordered<'a> {
        let store = Estimates::new(&self.conn, &self.settings.namespace);
        let stored = store.read(ids).await.unwrap_or_else(|err| {
            crate::say!(
                "ciq: warning: cannot read earlier builds' durations, tests are ordered without them: {err}"
            );
            Stored::default()
        });
        let file = self.settings.scheduling.read_file(ids);
        let recent = if self.settings.scheduling.order == Order::FailedFirst {
            History::new(&self.conn, &self.settings.namespace)
                .recent(history::RECENT)
                .await
                .unwrap_or_else(|err| {
                    crate::say!(
                        "ciq: warning: cannot read earlier builds' failures, tests are ordered without them: {err}"
                    );
                    HashSet::new()
                })
        } else {
            HashSet::new()
        };
        self.settings.scheduling.order(ids, stored, &file, &recent)
    }

    /// Writes the estimates the queue is ordered by into the generation (`GenKeys::estimates`),
    /// for auto batches: those of its [`ESTIMATED`] longest tests with one, and the default for
    /// every other test. Nothing without history. Nobody reads the generation before the commit,
    /// and a leader that loses its lock deletes it with the rest.
    async fn stage_estimates(
        &self,
        generation: &str,
        order: &Ordered<'_>,
    ) -> Result<(), QueueError> {
        let Some(default) = order.default else {
            return Ok(());
        };
        let key = self.keys.generation(generation).estimates;
        let known = order.longest_known(ESTIMATED);
        let mut fields = vec![(String::new(), millis(default))];
        fields.extend(
            known
                .iter()
                .map(|(id, estimate)| (id.as_str().to_owned(), millis(*estimate))),
        );
        for chunk in fields.chunks(STAGE_BATCH_IDS) {
            let mut write = redis::pipe();
            write
                .hset_multiple(&key, chunk)
                .ignore()
                .pexpire(
                    &key,
                    i64::try_from(self.settings.key_ttl.as_millis()).unwrap_or(i64::MAX),
                )
                .ignore();
            self.conn.pipeline::<()>(&write).await?;
        }
        Ok(())
    }

    /// Writes each listed test's resource group into the generation (`GenKeys::groups`), which
    /// the hand-out reads to keep each group within its limit. Nothing without groups.
    async fn stage_groups(&self, generation: &str, ids: &[TestId]) -> Result<(), QueueError> {
        let groups = &self.settings.scheduling.groups;
        if groups.is_empty() {
            return Ok(());
        }
        let key = self.keys.generation(generation).groups;
        let fields: Vec<(&str, &str)> = ids
            .iter()
            .filter_map(|id| Some((id.as_str(), groups.group_of(id)?)))
            .collect();
        for chunk in fields.chunks(STAGE_BATCH_IDS) {
            let mut write = redis::pipe();
            write
                .hset_multiple(&key, chunk)
                .ignore()
                .pexpire(
                    &key,
                    i64::try_from(self.settings.key_ttl.as_millis()).unwrap_or(i64::MAX),
                )
                .ignore();
            self.conn.pipeline::<()>(&write).await?;
        }
        Ok(())
    }

    /// Drops from the store the tests that left the suite long ago: after the commit, off the
    /// path to the first test, and only a warning when it fails.
    async fn forget_gone(&self, ids: &[TestId]) {
        let store = Estimates::new(&self.conn, &self.settings.namespace);
        if let Err(err) = store.forget_gone(ids).await {
            crate::say!("ciq: warning: cannot drop departed tests' durations: {err}");
        }
    }

    /// Aborts the build for every worker and the report, under `rule`; returns the error this
    /// worker ends with (the first abort recorded wins), or `None` when the rule refused.
    pub(super) async fn abort(
        &self,
        kind: AbortKind,
        message: &str,
        rule: Rule<'_>,
    ) -> Result<Option<QueueError>, QueueError> {
        let record = Abort {
            kind,
            worker: self.worker.clone(),
            message: message.to_owned(),
        };
        write_abort(&self.conn, &self.keys, self.settings.key_ttl, &record, rule).await
    }
}

/// Writes `record` for build `keys` under `rule` (see `lua/abort.lua`); returns the error of
/// the abort in force, or `None` when the rule refused.
pub(super) async fn write_abort(
    conn: &RedisConn,
    keys: &BuildKeys,
    ttl: Duration,
    record: &Abort,
    rule: Rule<'_>,
) -> Result<Option<QueueError>, QueueError> {
    let abort = abort::AbortBuild {
        keys,
        record,
        ttl_ms: millis(ttl),
        rule,
    };
    Ok(scripts::run(conn, &abort).await?.map(QueueError::Aborted))
}

/// Whether Redis `version` (`major.minor.patch`) is 6.2 or later; an unreadable one is given
/// the benefit of the doubt (a fork that numbers differently).
fn supported(version: &str) -> bool {
    let mut parts = version.split('.').map(|part| part.parse::<u32>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(major), Some(minor)) => (major, minor) >= (6, 2),
        _ => true,
    }
}

fn batches<'a>(ids: &'a [&'a TestId]) -> impl Iterator<Item = &'a [&'a TestId]> {
    let mut rest = ids;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut bytes = 0;
        let mut end = 0;
        while end < rest.len() && end < STAGE_BATCH_IDS {
            bytes += rest[end].as_str().len();
            if end > 0 && bytes > STAGE_BATCH_BYTES {
                break;
            }
            end += 1;
        }
        let (batch, tail) = rest.split_at(end);
        rest = tail;
        Some(batch)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_6_2_or_later_is_supported() {
        assert!(supported("7.0.15"));
        assert!(supported("6.2.0"));
        assert!(!supported("6.0.16"));
        assert!(!supported("5.0.7"));
        assert!(supported("unknown"));
    }

    #[test]
    fn batches_are_bounded_by_count_and_bytes() {
        let small: Vec<TestId> = (0..2500)
            .map(|i| TestId::new(format!("t{i}")).unwrap())
            .collect();
        let small: Vec<&TestId> = small.iter().collect();
        let sizes: Vec<usize> = batches(&small).map(<[&TestId]>::len).collect();
        assert_eq!(sizes, [1000, 1000, 500]);
        let big: Vec<TestId> = (0..600)
            .map(|i| TestId::new(format!("{i:04}{}", "x".repeat(4000))).unwrap())
            .collect();
        let big: Vec<&TestId> = big.iter().collect();
        let sizes: Vec<usize> = batches(&big).map(<[&TestId]>::len).collect();
        assert_eq!(sizes.iter().sum::<usize>(), 600);
        assert!(
            sizes.iter().all(|&n| n * 4004 <= STAGE_BATCH_BYTES + 4004),
            "{sizes:?}"
        );
    }
}
