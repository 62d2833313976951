//! PROGRESS: everything the report polls, in one round trip (`lua/progress.lua`).

use redis::Value;
use serde::Deserialize;

use super::abort::parse_abort;
use super::reply::json;
use super::step::Step;
use crate::queue::QueueError;
use crate::queue::error::Abort;
use crate::queue::redis::keys::BuildKeys;
use crate::queue::redis::state::BuildState;

pub(super) const SOURCE: &str = lua!("progress.lua");

/// PROGRESS of the build, and of `generation` once the report follows one.
pub(in crate::queue::redis) struct ReadProgress<'a> {
    pub keys: &'a BuildKeys,
    pub generation: Option<&'a str>,
    /// The retry round the report follows: only the sessions of that round count.
    pub round: Option<&'a str>,
}

/// What the report sees.
#[derive(Debug, Clone)]
pub(in crate::queue::redis) struct Seen {
    pub state: BuildState,
    pub abort: Option<Abort>,
    /// Tests in the followed generation; `None` before its commit, or once its meta is lost.
    pub total: Option<u64>,
    pub queued: u64,
    pub running: u64,
    pub processed: u64,
    /// Worker sessions heard from within the heartbeat timeout that did not leave.
    pub alive: u64,
    /// Worker sessions ever seen in this build (in the followed retry round).
    pub registered: u64,
    /// Of those, the sessions that said they left.
    pub left: u64,
    /// Live sessions still comparing their test list with the build's.
    pub joining: u64,
    /// The build's heartbeat timeout in ms (0 before a commit).
    pub timeout_ms: u64,
    /// The earlier build this one re-ran the failures of, when it had none (`--retry-of`).
    pub nothing_to_retry: Option<String>,
    /// The state is absent while the build's results remain: it was lost.
    pub existed: bool,
}

#[derive(Deserialize)]
struct Raw {
    state: String,
    abort: String,
    total: i64,
    queued: u64,
    running: u64,
    processed: u64,
    alive: u64,
    registered: u64,
    left: u64,
    joining: u64,
    #[serde(default)]
    timeout: u64,
    nothing_to_retry: String,
    #[serde(default)]
    existed: u8,
}

impl Step for ReadProgress<'_> {
    const NAME: &'static str = "progress";
    type Reply = Seen;

    fn keys(&self) -> Vec<String> {
        let generation = self.keys.generation(self.generation.unwrap_or(""));
        vec![
            self.keys.state(),
            self.keys.aborted(),
            self.keys.workers(),
            generation.meta,
            generation.queue,
            generation.running,
            generation.processed,
            self.keys.joined(),
            self.keys.nothing_to_retry(),
            self.keys.results(),
            self.keys.mismatched(),
        ]
    }

    fn args(&self) -> Vec<String> {
        vec![self.round.unwrap_or_default().to_owned()]
    }

    fn reply(raw: Value) -> Result<Seen, QueueError> {
        let raw: Raw = json(Self::NAME, raw)?;
        Ok(Seen {
            state: BuildState::parse(&raw.state)?,
            abort: (!raw.abort.is_empty())
                .then(|| parse_abort(&raw.abort))
                .transpose()?,
            total: u64::try_from(raw.total).ok(),
            queued: raw.queued,
            running: raw.running,
            processed: raw.processed,
            alive: raw.alive,
            registered: raw.registered,
            left: raw.left,
            joining: raw.joining,
            timeout_ms: raw.timeout,
            nothing_to_retry: (!raw.nothing_to_retry.is_empty()).then_some(raw.nothing_to_retry),
            existed: raw.existed == 1,
        })
    }
}
