//! RESERVE: hand out up to k tests, each under a fresh lease (`lua/reserve.lua`).

use redis::Value;

use super::per_test::{Caller, Handed, Handout, want_arg};
use super::reply::json;
use super::step::Step;
use crate::queue::{QueueError, Want};

pub(super) const SOURCE: &str = lua!("per_test.lua", "handout.lua", "reserve.lua");

/// RESERVE of the tests `want` asks for.
pub(in crate::queue::redis) struct Reserve<'a> {
    pub caller: Caller<'a>,
    pub want: Want,
}

impl Step for Reserve<'_> {
    const NAME: &'static str = "reserve";
    type Reply = Handed;

    fn keys(&self) -> Vec<String> {
        self.caller.keys.to_vec()
    }

    fn args(&self) -> Vec<String> {
        let mut args = self.caller.args();
        args.push(want_arg(self.want));
        args
    }

    fn reply(raw: Value) -> Result<Handed, QueueError> {
        json::<Handout>(Self::NAME, raw)?.read()
    }
}
