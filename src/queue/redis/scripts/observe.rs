//! OBSERVE: the build's state and abort record, for waiting followers and stale workers
//! (`lua/observe.lua`).

use redis::Value;
use serde::Deserialize;

use super::abort::parse_abort;
use super::reply::json;
use super::step::Step;
use crate::queue::QueueError;
use crate::queue::error::Abort;
use crate::queue::redis::keys::BuildKeys;
use crate::queue::redis::state::BuildState;

pub(super) const SOURCE: &str = lua!("observe.lua");

/// OBSERVE; a stale worker names the meta key of the generation it followed.
pub(in crate::queue::redis) struct Observe<'a> {
    pub keys: &'a BuildKeys,
    pub previous_meta: Option<&'a str>,
}

/// What OBSERVE saw.
pub(in crate::queue::redis) struct Observed {
    pub state: BuildState,
    pub abort: Option<Abort>,
    /// Whether the previously followed generation's meta still exists: a replaced generation
    /// keeps its keys, a wiped Redis does not.
    pub previous_exists: bool,
}

#[derive(Deserialize)]
struct Raw {
    state: String,
    abort: String,
    #[serde(default)]
    previous: u8,
}

impl Step for Observe<'_> {
    const NAME: &'static str = "observe";
    type Reply = Observed;

    fn keys(&self) -> Vec<String> {
        let mut keys = vec![self.keys.state(), self.keys.aborted()];
        keys.extend(self.previous_meta.map(str::to_owned));
        keys
    }

    fn args(&self) -> Vec<String> {
        Vec::new()
    }

    fn reply(raw: Value) -> Result<Observed, QueueError> {
        let raw: Raw = json(Self::NAME, raw)?;
        Ok(Observed {
            state: BuildState::parse(&raw.state)?,
            abort: (!raw.abort.is_empty())
                .then(|| parse_abort(&raw.abort))
                .transpose()?,
            previous_exists: raw.previous == 1,
        })
    }
}
