//! STATUS: where a build stands, for `ciq status`, in one read-only round trip whose size does
//! not grow with the suite (`lua/status.lua`).

use std::collections::BTreeMap;

use redis::Value;
use serde::Deserialize;

use super::abort::parse_abort;
use super::reply::{json, lua_list};
use super::step::Step;
use crate::queue::QueueError;
use crate::queue::error::Abort;
use crate::queue::redis::keys::BuildKeys;
use crate::queue::redis::state::BuildState;

pub(super) const SOURCE: &str = lua!("status.lua");

/// STATUS of the build, and of `generation` once one is known.
pub(in crate::queue::redis) struct ReadStatus<'a> {
    pub keys: &'a BuildKeys,
    pub generation: Option<&'a str>,
    /// How many failing tests to name.
    pub failing: usize,
    /// How many running entries to return.
    pub held: usize,
}

/// What STATUS read.
#[derive(Debug, Clone)]
pub(in crate::queue::redis) struct Read {
    /// Redis's clock, in ms: every time of the build is in it.
    pub now_ms: u64,
    pub state: BuildState,
    pub abort: Option<Abort>,
    /// Tests in the generation; `None` before its commit, or once its meta is lost.
    pub total: Option<u64>,
    pub timeout_ms: u64,
    pub requeued: u64,
    pub taken_over: u64,
    /// Final outcomes counted, but passes.
    pub counts: BTreeMap<String, u64>,
    pub queued: u64,
    pub processed: u64,
    pub running: u64,
    /// The workers hash: session -> `<last seen ms>:<worker>` or `left:<ms>:<worker>`.
    pub workers: Vec<(String, String)>,
    /// Running entries: `<lease>:<test>`, its holder's last heartbeat (ms), and the test's
    /// estimate in ms (negative: none).
    pub held: Vec<(String, u64, i64)>,
    /// What a test without an estimate is taken to take, in ms (negative: no history).
    pub default_ms: i64,
    /// Failing tests and their outcome.
    pub failing: Vec<(String, String)>,
    /// The state is absent while the build's results remain: it was lost, or it expired.
    pub existed: bool,
}

#[derive(Deserialize)]
struct Raw {
    now: u64,
    state: String,
    abort: String,
    total: i64,
    timeout: u64,
    requeued: u64,
    taken_over: u64,
    #[serde(default)]
    counts: BTreeMap<String, u64>,
    queued: u64,
    processed: u64,
    running: u64,
    #[serde(deserialize_with = "lua_list")]
    workers: Vec<(String, String)>,
    #[serde(deserialize_with = "lua_list")]
    held: Vec<(String, u64, i64)>,
    default: i64,
    #[serde(deserialize_with = "lua_list")]
    failing: Vec<(String, String)>,
    existed: u8,
}

impl Step for ReadStatus<'_> {
    const NAME: &'static str = "status";
    type Reply = Read;

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
            generation.failed,
            generation.estimates,
            self.keys.results(),
            self.keys.stats(),
        ]
    }

    fn args(&self) -> Vec<String> {
        vec![self.failing.to_string(), self.held.to_string()]
    }

    fn reply(raw: Value) -> Result<Read, QueueError> {
        let raw: Raw = json(Self::NAME, raw)?;
        Ok(Read {
            now_ms: raw.now,
            state: BuildState::parse(&raw.state)?,
            abort: (!raw.abort.is_empty())
                .then(|| parse_abort(&raw.abort))
                .transpose()?,
            total: u64::try_from(raw.total).ok(),
            timeout_ms: raw.timeout,
            requeued: raw.requeued,
            taken_over: raw.taken_over,
            counts: raw.counts,
            queued: raw.queued,
            processed: raw.processed,
            running: raw.running,
            workers: raw.workers,
            held: raw.held,
            default_ms: raw.default,
            failing: raw.failing,
            existed: raw.existed == 1,
        })
    }
}
