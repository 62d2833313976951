//! ELECT: take the setup lock if nobody holds it, or learn who does (`lua/elect.lua`).

use redis::Value;
use serde::Deserialize;

use super::abort::parse_abort;
use super::reply::json;
use super::step::Step;
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
    pub session: &'a str,
    pub key_ttl_ms: String,
    /// Whether this worker saw the last leader's lock lapse before a commit (the timeline
    /// records a dead leader).
    pub after_lapse: bool,
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

/// The reply as the script writes it.
#[derive(Deserialize)]
#[serde(tag = "role", rename_all = "lowercase")]
enum Raw {
    Leader,
    Aborted { abort: String },
    Wait { state: String },
    Lost,
}

impl Step for Elect<'_> {
    const NAME: &'static str = "elect";
    type Reply = Elected;

    fn keys(&self) -> Vec<String> {
        vec![
            self.keys.state(),
            self.keys.aborted(),
            self.keys.results(),
            self.keys.mismatched(),
            self.keys.timeline(),
        ]
    }

    fn args(&self) -> Vec<String> {
        vec![
            self.generation.to_owned(),
            self.worker.to_owned(),
            self.lock_ttl_ms.clone(),
            self.session.to_owned(),
            self.key_ttl_ms.clone(),
            if self.after_lapse { "1" } else { "0" }.to_owned(),
        ]
    }

    fn reply(raw: Value) -> Result<Elected, QueueError> {
        Ok(match json(Self::NAME, raw)? {
            Raw::Leader => Elected::Leader,
            Raw::Aborted { abort } => Elected::Aborted(parse_abort(&abort)?),
            Raw::Wait { state } => Elected::Wait(BuildState::parse(&state)?),
            Raw::Lost => Elected::Lost,
        })
    }
}
