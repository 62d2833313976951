//! RELEASE: give held tests back at once and mark the session gone (`lua/release.lua`).

use redis::Value;

use super::per_test::Caller;
use super::reply::int;
use super::step::Step;
use crate::queue::{QueueError, Reserved};
use crate::timeline::Leave;
use crate::timeline::record::{leave_letter, one_line};

pub(super) const SOURCE: &str = lua!("per_test.lua", "release.lua");

/// RELEASE of what the caller holds.
pub(in crate::queue::redis) struct Release<'a> {
    pub caller: Caller<'a>,
    pub held: &'a [Reserved],
    /// How the worker leaves.
    pub how: Leave,
    /// Why a breaker stopped it, when one did.
    pub why: Option<&'a str>,
}

impl Step for Release<'_> {
    const NAME: &'static str = "release";
    /// How many tests went back to the queue.
    type Reply = u64;

    fn keys(&self) -> Vec<String> {
        self.caller.keys.to_vec()
    }

    fn args(&self) -> Vec<String> {
        let mut args = self.caller.args();
        args.push(leave_letter(self.how).to_string());
        args.push(self.why.map(one_line).unwrap_or_default());
        for reserved in self.held {
            args.push(reserved.id.as_str().to_owned());
            args.push(reserved.lease.0.clone());
        }
        args
    }

    fn reply(raw: Value) -> Result<u64, QueueError> {
        let released = int(Self::NAME, raw)?;
        u64::try_from(released)
            .map_err(|_| QueueError::Protocol(format!("release answered {released}")))
    }
}
