//! STAGE: append one batch of ids to a generation's queue while the lock is the leader's
//! (`lua/stage.lua`).

use redis::Value;

use super::reply::int;
use super::step::Step;
use crate::queue::QueueError;
use crate::queue::redis::keys::BuildKeys;
use crate::test_id::TestId;

pub(super) const SOURCE: &str = lua!("stage.lua");

/// STAGE of `batch` at `position` of `generation`'s queue.
pub(in crate::queue::redis) struct Stage<'a> {
    pub keys: &'a BuildKeys,
    pub generation: &'a str,
    pub setup: &'a str,
    pub position: usize,
    pub batch: &'a [&'a TestId],
    pub lock_ttl_ms: String,
    pub key_ttl_ms: String,
    pub session: &'a str,
    /// How many tests the leader listed.
    pub listed: usize,
}

/// What staging did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::queue::redis) enum Staged {
    /// The queue's length after the batch (a re-sent batch is recognised, not pushed twice).
    Length(usize),
    /// The lock is no longer this leader's.
    LostLock,
    /// The queue is not where the batch says it starts: a batch went missing (a bug).
    Misplaced,
}

impl Step for Stage<'_> {
    const NAME: &'static str = "stage";
    type Reply = Staged;

    fn keys(&self) -> Vec<String> {
        vec![
            self.keys.state(),
            self.keys.generation(self.generation).queue,
            self.keys.timeline(),
        ]
    }

    fn args(&self) -> Vec<String> {
        let mut args = vec![
            self.setup.to_owned(),
            self.position.to_string(),
            self.lock_ttl_ms.clone(),
            self.key_ttl_ms.clone(),
            self.session.to_owned(),
            self.listed.to_string(),
        ];
        args.extend(self.batch.iter().map(|id| id.as_str().to_owned()));
        args
    }

    fn reply(raw: Value) -> Result<Staged, QueueError> {
        Ok(match int(Self::NAME, raw)? {
            -1 => Staged::LostLock,
            -2 => Staged::Misplaced,
            n => Staged::Length(
                usize::try_from(n)
                    .map_err(|_| QueueError::Protocol(format!("stage answered {n}")))?,
            ),
        })
    }
}
