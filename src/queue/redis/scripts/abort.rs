//! ABORT: end the build for every worker and the report, under a rule (`lua/abort.lua`).

use redis::Value;
use serde::Deserialize;

use super::reply::json;
use super::step::Step;
use crate::queue::QueueError;
use crate::queue::error::Abort as Record;
use crate::queue::redis::keys::BuildKeys;

pub(super) const SOURCE: &str = lua!("abort.lua");

/// When an abort may be written.
#[derive(Debug, Clone, Copy)]
pub(in crate::queue::redis) enum Rule<'a> {
    /// Only while the caller still holds this setup value (a leader that cannot list).
    Leader(&'a str),
    /// Only while no generation is ready (an election budget spent).
    Unready,
    /// Always, dropping the state: the build was lost.
    Always,
}

/// ABORT with `record`.
pub(in crate::queue::redis) struct AbortBuild<'a> {
    pub keys: &'a BuildKeys,
    pub record: &'a Record,
    pub ttl_ms: String,
    pub rule: Rule<'a>,
}

#[derive(Deserialize)]
struct Raw {
    #[serde(default)]
    abort: Option<String>,
}

impl Step for AbortBuild<'_> {
    const NAME: &'static str = "abort";
    /// The abort in force (the first one written wins), or `None` when the rule refused.
    type Reply = Option<Record>;

    fn keys(&self) -> Vec<String> {
        vec![self.keys.state(), self.keys.aborted()]
    }

    fn args(&self) -> Vec<String> {
        let (setup, rule) = match self.rule {
            Rule::Leader(setup) => (setup, "leader"),
            Rule::Unready => ("", "unready"),
            Rule::Always => ("", "always"),
        };
        // A record always serializes: its fields are strings and a unit enum.
        let record = serde_json::to_string(self.record).unwrap_or_default();
        vec![
            record,
            self.ttl_ms.clone(),
            setup.to_owned(),
            rule.to_owned(),
        ]
    }

    fn reply(raw: Value) -> Result<Option<Record>, QueueError> {
        let raw: Raw = json(Self::NAME, raw)?;
        raw.abort.as_deref().map(parse_abort).transpose()
    }
}

/// A stored abort record.
pub(in crate::queue::redis) fn parse_abort(record: &str) -> Result<Record, QueueError> {
    serde_json::from_str(record)
        .map_err(|err| QueueError::Protocol(format!("unreadable abort record `{record}`: {err}")))
}
