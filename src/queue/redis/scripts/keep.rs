//! KEEP: the report of a retry round that re-ran none of its re-opened tests gives them back
//! their earlier outcome (`lua/keep.lua`).

use redis::Value;
use serde::Deserialize;

use super::reply::json;
use super::step::Step;
use crate::queue::QueueError;
use crate::queue::redis::keys::PER_TEST_KEYS;

pub(super) const SOURCE: &str = lua!("keep.lua");

/// KEEP of retry round `round` of `generation`.
pub(in crate::queue::redis) struct Keep<'a> {
    pub keys: &'a [String; PER_TEST_KEYS],
    pub generation: &'a str,
    pub round: &'a str,
}

/// What KEEP did.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub(in crate::queue::redis) enum Keeping {
    /// The build moved to another generation since it was read.
    Stale,
    /// The round re-opened nothing, or something of it ran: nothing to give back.
    Ran,
    /// Test `why` has no earlier failure to give back: Redis lost part of the build.
    Unknown { why: String },
    /// `tests` tests have their earlier outcome again.
    Kept { tests: u64 },
}

impl Step for Keep<'_> {
    const NAME: &'static str = "keep";
    type Reply = Keeping;

    fn keys(&self) -> Vec<String> {
        self.keys.to_vec()
    }

    fn args(&self) -> Vec<String> {
        vec![self.generation.to_owned(), self.round.to_owned()]
    }

    fn reply(raw: Value) -> Result<Keeping, QueueError> {
        json(Self::NAME, raw)
    }
}
