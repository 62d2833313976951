//! [`RedisQueue`]: one worker's handle on a build's Redis queue, and its per-test protocol.
//!
//! Each call is one script: RESERVE, ACK (acknowledge and reserve the next tests in one round
//! trip), HEARTBEAT, RELEASE. Each request carries a sequence number, so a request re-sent after
//! a lost reply gets the first reply back instead of being applied twice.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::outcome::{FailureDetail, Outcome};
use crate::queue::redis::connection::RedisConn;
use crate::queue::redis::keys::{BuildKeys, GenKeys};
use crate::queue::redis::reply::{self, parse};
use crate::queue::redis::scripts::SCRIPTS;
use crate::queue::redis::summary::{self, stored_id};
use crate::queue::redis::{RedisSettings, millis};
use crate::queue::{Ack, AckReply, Pacing, Queue, QueueError, Recorded, Reservation, Reserved};
use crate::report::Summary;
use crate::test_id::TestId;

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
    /// The setup value and generation this worker leads while it fills the queue.
    pub(super) leading: Mutex<Option<(String, String)>>,
}

/// The generation a worker follows, with the KEYS its scripts take.
pub(super) struct Followed {
    generation: GenKeys,
    per_test: [String; 16],
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

    /// ARGV[1..5] of every per-test script; a fresh sequence number per request.
    fn base_args(&self, followed: &Followed) -> Vec<String> {
        vec![
            followed.generation.generation.clone(),
            self.worker.clone(),
            self.session.clone(),
            self.seq.fetch_add(1, Ordering::Relaxed).to_string(),
            millis(self.settings.key_ttl),
        ]
    }

    async fn reservation(&self, reply: &reply::Reservation) -> Result<Reservation, QueueError> {
        Ok(match reply.status.as_str() {
            "tests" => Reservation::Tests(
                reply
                    .tests
                    .iter()
                    .map(|(id, lease)| {
                        Ok(Reserved {
                            id: stored_id(id)?,
                            lease: *lease,
                        })
                    })
                    .collect::<Result<_, QueueError>>()?,
            ),
            "empty" => Reservation::Empty,
            "done" => Reservation::Done,
            "stale" => Reservation::Stale,
            "lost" => return Err(self.lost_keys(&reply.why).await),
            // Only an outdated copy of a request gets this, on a connection ciq already left.
            "superseded" => {
                return Err(QueueError::Protocol(
                    "Redis answered an outdated copy of a request".to_owned(),
                ));
            }
            other => {
                return Err(QueueError::Protocol(format!(
                    "unknown reservation status `{other}`"
                )));
            }
        })
    }

    async fn lost_keys(&self, why: &str) -> QueueError {
        self.state_lost(why).await
    }
}

fn lease_pairs(args: &mut Vec<String>, held: &[Reserved]) {
    for reserved in held {
        args.push(reserved.id.as_str().to_owned());
        args.push(reserved.lease.to_string());
    }
}

impl Queue for RedisQueue {
    async fn reserve(&self, max: usize) -> Result<Reservation, QueueError> {
        let followed = self.followed()?;
        let mut args = self.base_args(&followed);
        args.push(max.to_string());
        let reply: String = self
            .conn
            .eval(&SCRIPTS.reserve, &followed.per_test, &args)
            .await?;
        self.reservation(&parse("reserve", &reply)?).await
    }

    async fn ack(&self, acks: Vec<Ack>, max: usize) -> Result<AckReply, QueueError> {
        let followed = self.followed()?;
        let mut args = self.base_args(&followed);
        args.push(max.to_string());
        for ack in &acks {
            let result = &ack.result;
            args.push(result.id.as_str().to_owned());
            args.push(ack.lease.to_string());
            args.push(result.outcome.as_str().to_owned());
            args.push(if result.outcome.is_success() {
                String::new()
            } else {
                serde_json::to_string(&FailureDetail {
                    outcome: result.outcome,
                    worker: self.worker.clone(),
                    duration_ms: result.duration.as_millis() as u64,
                    output: result.output.clone(),
                })
                .map_err(|err| QueueError::Protocol(err.to_string()))?
            });
        }
        let reply: String = self
            .conn
            .eval(&SCRIPTS.ack, &followed.per_test, &args)
            .await?;
        let reply: reply::Reservation = parse("ack", &reply)?;
        let next = self.reservation(&reply).await?;
        let recorded = reply
            .recorded
            .iter()
            .map(|(id, status)| {
                let recorded = match status.as_str() {
                    "requeued" => Recorded::Requeued,
                    "discarded" => Recorded::Discarded,
                    "duplicate" => Recorded::Duplicate,
                    outcome => Recorded::Final(
                        outcome
                            .parse::<Outcome>()
                            .map_err(|err| QueueError::Protocol(err.to_string()))?,
                    ),
                };
                Ok((stored_id(id)?, recorded))
            })
            .collect::<Result<_, QueueError>>()?;
        Ok(AckReply { recorded, next })
    }

    async fn heartbeat(&self, held: &[Reserved]) -> Result<Vec<TestId>, QueueError> {
        let followed = self.followed()?;
        let mut args = self.base_args(&followed);
        lease_pairs(&mut args, held);
        let reply: String = self
            .conn
            .eval(&SCRIPTS.heartbeat, &followed.per_test, &args)
            .await?;
        let reply: reply::Heartbeat = parse("heartbeat", &reply)?;
        if reply.status == "lost" {
            return Err(self.lost_keys(&reply.why).await);
        }
        reply.lost.iter().map(|id| stored_id(id)).collect()
    }

    async fn release(&self, held: &[Reserved]) -> Result<(), QueueError> {
        let Ok(followed) = self.followed() else {
            return Ok(());
        };
        let mut args = self.base_args(&followed);
        lease_pairs(&mut args, held);
        let _released: i64 = self
            .conn
            .eval(&SCRIPTS.release, &followed.per_test, &args)
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

    async fn summary(&self) -> Result<Summary, QueueError> {
        let followed = self.followed()?;
        match summary::read(&self.conn, &self.keys, &followed.generation).await {
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
            max_poll_interval: (self.settings.heartbeat_interval / 2).clamp(
                std::time::Duration::from_millis(100),
                std::time::Duration::from_secs(2),
            ),
        }
    }
}
