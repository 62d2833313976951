//! HEARTBEAT: keep held tests and the session alive (`lua/heartbeat.lua`).

use redis::Value;
use serde::Deserialize;

use super::per_test::Caller;
use super::summarize::stored_id;
use super::{Step, json, lua_list};
use crate::queue::{QueueError, Reserved};
use crate::test_id::TestId;

pub(super) const SOURCE: &str = lua!("per_test.lua", "heartbeat.lua");

/// HEARTBEAT of what the caller holds.
pub(in crate::queue::redis) struct Heartbeat<'a> {
    pub caller: Caller<'a>,
    pub held: &'a [Reserved],
}

/// What a heartbeat found.
pub(in crate::queue::redis) enum Beat {
    /// These held tests were taken over (the others are refreshed).
    Lost(Vec<TestId>),
    /// The worker's generation is no longer the build's: its next reservation says so.
    Stale,
    /// Redis lost part of the build: what did not add up.
    StateLost(String),
}

#[derive(Deserialize)]
struct Raw {
    status: String,
    #[serde(default, deserialize_with = "lua_list")]
    lost: Vec<String>,
    #[serde(default)]
    why: String,
}

impl Step for Heartbeat<'_> {
    const NAME: &'static str = "heartbeat";
    type Reply = Beat;

    hashed!();

    fn keys(&self) -> Vec<String> {
        self.caller.keys.to_vec()
    }

    fn args(&self) -> Vec<String> {
        self.caller.args_with(self.held)
    }

    fn reply(raw: Value) -> Result<Beat, QueueError> {
        let raw: Raw = json(Self::NAME, raw)?;
        match raw.status.as_str() {
            "ok" => Ok(Beat::Lost(
                raw.lost
                    .iter()
                    .map(|id| stored_id(id))
                    .collect::<Result<_, _>>()?,
            )),
            "stale" => Ok(Beat::Stale),
            "lost" => Ok(Beat::StateLost(raw.why)),
            other => Err(QueueError::Protocol(format!(
                "unknown heartbeat status `{other}`"
            ))),
        }
    }
}
