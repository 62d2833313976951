//! [`RedisQueue`]: one worker's handle on a build's Redis queue, and its per-test protocol.
//!
//! Each call is one script: RESERVE, ACK (acknowledge and reserve the next tests in one round
//! trip), HEARTBEAT, RELEASE. Each request carries a sequence number, so a request re-sent after
//! a lost reply gets the first reply back instead of being applied twice.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use crate::outcome::Outcome;
use crate::queue::redis::connection::RedisConn;
use crate::queue::redis::estimates::Estimates;
use crate::queue::redis::keys::{BuildKeys, GenKeys, PER_TEST_KEYS, meta, stats};
use crate::queue::redis::scripts::heartbeat::{Beat, Heartbeat};
use crate::queue::redis::scripts::per_test::{Caller, Handed};
use crate::queue::redis::scripts::{self, ack, release::Release, reserve::Reserve, summarize};
use crate::queue::redis::settings::RedisSettings;
use crate::queue::redis::settings::millis;
use crate::queue::{Ack, AckReply, Pacing, Queue, QueueError, Reservation, Reserved, Want};
use crate::report::Summary;
use crate::test_id::TestId;
use crate::timeline::Leave;
use crate::timings;

/// Most runs much longer than usual that one worker records for the report.
const SLOWER_PER_WORKER: usize = 20;

/// One worker's connection to a build.
pub struct RedisQueue {
    pub(super) conn: RedisConn,
    pub(super) keys: BuildKeys,
    pub(super) settings: RedisSettings,
    pub(super) worker: String,
    /// This process's id in the build: liveness, leaving and cached replies are per session,
    /// so processes that share a worker id never speak for each other.
    pub(super) session: String,
    seq: AtomicU64,
    current: Mutex<Option<Arc<Followed>>>,
    /// When this session's liveness was last recorded by a per-test call.
    seen_at: Mutex<Option<Instant>>,
    /// The setup value and generation this worker leads while it fills the queue.
    pub(super) leading: Mutex<Option<(String, String)>>,
}

/// The generation a worker follows, with the KEYS its scripts take.
pub(super) struct Followed {
    generation: GenKeys,
    per_test: [String; PER_TEST_KEYS],
}

impl RedisQueue {
    /// Connects worker `worker` to the build `settings` names. Nothing is written until
    /// [`RedisQueue::join`].
    pub async fn connect(settings: RedisSettings, worker: String) -> Result<Self, QueueError> {
        let conn = RedisConn::open(&settings.url, settings.redis_timeout).await?;
        Ok(Self {
            conn,
            keys: BuildKeys::new(&settings.namespace, &settings.build),
            settings,
            worker,
            session: uuid::Uuid::new_v4().simple().to_string(),
            seq: AtomicU64::new(0),
            current: Mutex::new(None),
            seen_at: Mutex::new(None),
            leading: Mutex::new(None),
        })
    }

    /// Starts following `generation`.
    pub(super) fn follow(&self, generation: &str) {
        let generation = self.keys.generation(generation);
        let per_test = self.keys.per_test(&generation);
        *self.current.lock().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(Followed {
            generation,
            per_test,
        }));
    }

    fn followed(&self) -> Result<Arc<Followed>, QueueError> {
        self.current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or_else(|| QueueError::Protocol("the worker has not joined a build".to_owned()))
    }

    /// The caller of a per-test script: a fresh sequence number per request, and liveness
    /// recorded at most every half heartbeat interval (heartbeats record it too), so a busy
    /// worker does not write it on every call.
    fn caller<'a>(&'a self, followed: &'a Followed) -> Caller<'a> {
        let seen = {
            let mut seen_at = self.seen_at.lock().unwrap_or_else(PoisonError::into_inner);
            let due = seen_at.is_none_or(|at| at.elapsed() >= self.settings.heartbeat_interval / 2);
            if due {
                *seen_at = Some(Instant::now());
            }
            due
        };
        Caller {
            keys: &followed.per_test,
            generation: &followed.generation.generation,
            worker: &self.worker,
            session: &self.session,
            seq: self.seq.fetch_add(1, Ordering::Relaxed),
            key_ttl_ms: millis(self.settings.key_ttl),
            seen,
        }
    }

    /// The order the build's leader queued its tests in (`--order`, a random one with its
    /// seed), once joined: `None` from a leader older than the field.
    pub async fn build_order(&self) -> Result<Option<String>, QueueError> {
        let followed = self.followed()?;
        self.conn
            .query(
                redis::cmd("HGET")
                    .arg(&followed.generation.meta)
                    .arg(meta::ORDER),
            )
            .await
    }

    async fn handed(&self, handed: Handed) -> Result<Reservation, QueueError> {
        match handed {
            Handed::Reservation(reservation) => Ok(reservation),
            Handed::Lost(why) => Err(self.state_lost(&why).await),
        }
    }
}

impl Queue for RedisQueue {
    async fn reserve(&self, want: Want) -> Result<Reservation, QueueError> {
        let followed = self.followed()?;
        let caller = self.caller(&followed);
        let handed = scripts::run(&self.conn, &Reserve { caller, want }).await?;
        self.handed(handed).await
    }

    async fn ack(&self, acks: Vec<Ack>, want: Want) -> Result<AckReply, QueueError> {
        let followed = self.followed()?;
        let caller = self.caller(&followed);
        let acked = scripts::run(
            &self.conn,
            &ack::Acknowledge {
                caller,
                want,
                results: &acks,
            },
        )
        .await?;
        Ok(AckReply {
            recorded: acked.recorded,
            next: self.handed(acked.next).await?,
        })
    }

    async fn heartbeat(&self, held: &[Reserved]) -> Result<Vec<TestId>, QueueError> {
        let followed = self.followed()?;
        let caller = self.caller(&followed);
        match scripts::run(&self.conn, &Heartbeat { caller, held }).await? {
            Beat::Lost(lost) => Ok(lost),
            // The next reservation says so, and the worker rejoins.
            Beat::Stale => Ok(Vec::new()),
            Beat::StateLost(why) => Err(self.state_lost(&why).await),
        }
    }

    async fn release(
        &self,
        held: &[Reserved],
        how: Leave,
        why: Option<&str>,
    ) -> Result<(), QueueError> {
        let Ok(followed) = self.followed() else {
            return Ok(());
        };
        let caller = self.caller(&followed);
        scripts::run(
            &self.conn,
            &Release {
                caller,
                held,
                how,
                why,
            },
        )
        .await?;
        Ok(())
    }

    async fn rejoin(&self) -> Result<(), QueueError> {
        let previous = self.followed()?;
        let generation = self
            .current_ready_generation(&previous.generation.meta)
            .await?;
        crate::say!(
            "ciq: worker `{}`: the build moved to generation {generation}; rejoining it",
            self.worker
        );
        self.follow(&generation);
        Ok(())
    }

    async fn slowest_runs(&self, ids: &[TestId]) -> Vec<Option<Duration>> {
        Estimates::new(&self.conn, &self.settings.namespace)
            .slowest(ids)
            .await
            .unwrap_or_else(|err| {
                crate::say!(
                    "ciq: warning: cannot read earlier runs' durations, tests get the limit of a test without history: {err}"
                );
                Vec::new()
            })
    }

    async fn failures(&self) -> Result<usize, QueueError> {
        let followed = self.followed()?;
        let counts: Vec<Option<usize>> = self
            .conn
            .query(
                redis::cmd("HMGET")
                    .arg(&followed.generation.meta)
                    .arg(meta::count(Outcome::Failed))
                    .arg(meta::count(Outcome::Errored)),
            )
            .await?;
        Ok(counts.into_iter().flatten().sum())
    }

    async fn record_stop(&self, why: &str) -> Result<(), QueueError> {
        let stats = self.keys.stats();
        let mut write = redis::pipe();
        write
            .atomic()
            .hset(
                &stats,
                stats::stopped(&self.session),
                format!("worker `{}`: {why}", self.worker_id()),
            )
            .ignore()
            .pexpire(
                &stats,
                i64::try_from(self.settings.key_ttl.as_millis()).unwrap_or(i64::MAX),
            )
            .ignore();
        self.conn.pipeline(&write).await
    }

    async fn record_durations(&self, durations: &[(TestId, Duration)]) -> Result<(), QueueError> {
        let followed = self.followed()?;
        let ttl = i64::try_from(self.settings.key_ttl.as_millis()).unwrap_or(i64::MAX);
        // A grind's copies stay out of the store: the next grind would order them by duration
        // instead of copy by copy, and each would be an estimate of its own.
        let own: Vec<(TestId, Duration)> = durations
            .iter()
            .filter(|(id, _)| !id.is_grind_copy())
            .cloned()
            .collect();
        let folded = Estimates::new(&self.conn, &self.settings.namespace)
            .fold(&own)
            .await;
        let key = &followed.generation.durations;
        for chunk in durations.chunks(1000) {
            let mut write = redis::pipe();
            write.atomic().cmd("HSET").arg(key);
            for (id, duration) in chunk {
                write.arg(id.as_str()).arg(duration.as_millis().to_string());
            }
            write.ignore().pexpire(key, ttl).ignore();
            let () = self.conn.pipeline(&write).await?;
        }
        let slower = timings::worst(folded?, SLOWER_PER_WORKER);
        if !slower.is_empty() {
            let key = &followed.generation.slower;
            let mut write = redis::pipe();
            write.atomic().cmd("HSET").arg(key);
            for run in &slower {
                write.arg(run.id.as_str()).arg(format!(
                    "{}:{}",
                    run.took.as_millis(),
                    run.usual.as_millis()
                ));
            }
            write.ignore().pexpire(key, ttl).ignore();
            let () = self.conn.pipeline(&write).await?;
        }
        Ok(())
    }

    async fn summary(&self) -> Result<Summary, QueueError> {
        let followed = self.followed()?;
        let read = scripts::run(
            &self.conn,
            &summarize::Summarize {
                keys: &self.keys,
                generation: &followed.generation.generation,
            },
        )
        .await;
        match read {
            Err(QueueError::StateLost(reason)) => Err(self.state_lost(&reason).await),
            read => read,
        }
    }

    fn worker_id(&self) -> &str {
        &self.worker
    }

    fn pacing(&self) -> Pacing {
        Pacing {
            heartbeat_interval: self.settings.heartbeat_interval,
            max_poll_interval: (self.settings.heartbeat_interval / 2)
                .clamp(Duration::from_millis(100), Duration::from_secs(2)),
        }
    }
}
