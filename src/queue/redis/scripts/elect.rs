//! ELECT: take the setup lock if nobody holds it, or learn who does (`lua/elect.lua`).

use redis::Value;
use serde::Deserialize;

use super::{Step, abort::parse_abort, json};
use crate::queue::QueueError;
use crate::queue::error::Abort;
use crate::queue::redis::keys::BuildKeys;
use crate::queue::redis::state::BuildState;

pub(super) const SOURCE: &str = lua!("elect.lua");

/// ELECT for `worker`, which would lead `generation`.
pub(in crate::queue::redis) struct Elect<'a> {
    pub keys: &'a BuildKeys,
    pub generation: &'a str,
    pub worker: &'a str,
    pub lock_ttl_ms: String,
}

/// What the election found.
pub(in crate::queue::redis) enum Elected {
    /// This worker holds the setup lock.
    Leader,
    /// The build was aborted for everyone.
    Aborted(Abort),
    /// Someone else leads, or led: the build's state.
    Wait(BuildState),
    /// The build's state is gone while its results remain: it was ready once.
    Lost,
}

#[derive(Deserialize)]
struct Raw {
    role: String,
    #[serde(default)]
    state: String,
    #[serde(default)]
    abort: String,
}

impl Step for Elect<'_> {
    const NAME: &'static str = "elect";
    type Reply = Elected;

    hashed!();

    fn keys(&self) -> Vec<String> {
        vec![
            self.keys.state(),
            self.keys.aborted(),
            self.keys.results(),
            self.keys.mismatched(),
        ]
    }

    fn args(&self) -> Vec<String> {
        vec![
            self.generation.to_owned(),
            self.worker.to_owned(),
            self.lock_ttl_ms.clone(),
        ]
    }

    fn reply(raw: Value) -> Result<Elected, QueueError> {
        let raw: Raw = json(Self::NAME, raw)?;
        match raw.role.as_str() {
            "leader" => Ok(Elected::Leader),
            "aborted" => Ok(Elected::Aborted(parse_abort(&raw.abort)?)),
            "wait" => Ok(Elected::Wait(BuildState::parse(&raw.state)?)),
            "lost" => Ok(Elected::Lost),
            other => Err(QueueError::Protocol(format!(
                "unknown election role `{other}`"
            ))),
        }
    }
}
