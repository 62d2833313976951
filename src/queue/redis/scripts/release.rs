//! RELEASE: give held tests back at once and mark the session gone (`lua/release.lua`).

use redis::Value;

use super::per_test::Caller;
use super::reply::int;
use super::step::Step;
use crate::queue::{QueueError, Reserved};

pub(super) const SOURCE: &str = lua!("per_test.lua", "release.lua");

/// RELEASE of what the caller holds.
pub(in crate::queue::redis) struct Release<'a> {
    pub caller: Caller<'a>,
    pub held: &'a [Reserved],
}

impl Step for Release<'_> {
    const NAME: &'static str = "release";
    /// How many tests went back to the queue.
    type Reply = u64;

    fn keys(&self) -> Vec<String> {
        self.caller.keys.to_vec()
    }

    fn args(&self) -> Vec<String> {
        self.caller.args_with(self.held)
    }

    fn reply(raw: Value) -> Result<u64, QueueError> {
        let released = int(Self::NAME, raw)?;
        u64::try_from(released)
            .map_err(|_| QueueError::Protocol(format!("release answered {released}")))
    }
}
