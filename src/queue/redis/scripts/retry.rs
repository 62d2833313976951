//! RETRY: a job retry (the CI retried a job after its build ended) re-opens the build's failed
//! tests (`lua/retry.lua`).

use redis::Value;
use serde::Deserialize;

use super::reply::json;
use super::step::Step;
use crate::queue::QueueError;
use crate::queue::redis::keys::PER_TEST_KEYS;

pub(super) const SOURCE: &str = lua!("retry.lua");

/// RETRY of round `round` (`None`: the job is a retry when its worker id already took part).
pub(in crate::queue::redis) struct JobRetry<'a> {
    pub keys: &'a [String; PER_TEST_KEYS],
    pub generation: &'a str,
    pub worker: &'a str,
    pub session: &'a str,
    pub round: Option<&'a str>,
    /// `None`: the keys keep their TTL.
    pub key_ttl_ms: Option<String>,
}

/// What RETRY did.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub(in crate::queue::redis) enum Retried {
    /// The build moved to another generation since it was read: read it again.
    Stale,
    /// No earlier session of this worker id: not a retried job.
    First,
    /// The generation is not finished: the job joins it as any worker.
    Running,
    /// Another job of the round already re-opened the failed tests.
    Again { round: String },
    /// Nothing failed.
    Nothing { round: String },
    /// `tests` failed tests are queued again.
    Retrying { round: String, tests: u64 },
    /// The failing tests do not match their counters: Redis lost part of the build.
    Lost { why: String },
}

impl Step for JobRetry<'_> {
    const NAME: &'static str = "retry";
    type Reply = Retried;

    fn keys(&self) -> Vec<String> {
        self.keys.to_vec()
    }

    fn args(&self) -> Vec<String> {
        vec![
            self.generation.to_owned(),
            self.worker.to_owned(),
            self.session.to_owned(),
            self.round.unwrap_or_default().to_owned(),
            self.key_ttl_ms.clone().unwrap_or_default(),
        ]
    }

    fn reply(raw: Value) -> Result<Retried, QueueError> {
        json(Self::NAME, raw)
    }
}
