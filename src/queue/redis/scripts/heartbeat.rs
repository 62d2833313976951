//! HEARTBEAT: keep held tests and the session alive (`lua/heartbeat.lua`).

use redis::Value;
use serde::Deserialize;

use super::per_test::Caller;
use super::reply::stored_id;
use super::reply::{json, lua_list};
use super::step::Step;
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

/// The reply as the script writes it.
#[derive(Deserialize)]
#[serde(tag = "status", rename_all = "lowercase")]
enum Raw {
    Ok {
        #[serde(default, deserialize_with = "lua_list")]
        lost: Vec<String>,
    },
    Stale,
    Lost {
        #[serde(default)]
        why: String,
    },
}

impl Step for Heartbeat<'_> {
    const NAME: &'static str = "heartbeat";
    type Reply = Beat;

    fn keys(&self) -> Vec<String> {
        self.caller.keys.to_vec()
    }

    fn args(&self) -> Vec<String> {
        self.caller.args_with(self.held)
    }

    fn reply(raw: Value) -> Result<Beat, QueueError> {
        Ok(match json(Self::NAME, raw)? {
            Raw::Ok { lost } => Beat::Lost(
                lost.iter()
                    .map(|id| stored_id(id))
                    .collect::<Result<_, _>>()?,
            ),
            Raw::Stale => Beat::Stale,
            Raw::Lost { why } => Beat::StateLost(why),
        })
    }
}
