//! SUMMARIZE: a generation's verdict in one atomic read that does not grow with the suite, and that
//! refuses to count a build Redis lost part of (`lua/summarize.lua`).

use std::collections::BTreeMap;

use redis::Value;
use serde::Deserialize;

use super::reply::{json, lua_list, stored_id};
use super::step::Step;
use crate::outcome::{FailureDetail, Outcome};
use crate::queue::QueueError;
use crate::queue::redis::keys::BuildKeys;
use crate::report::Summary;
use crate::report::summary::{LISTED, Listed, NOT_RUN_LISTED};

pub(super) const SOURCE: &str = lua!("summarize.lua");

/// SUMMARIZE of `generation`.
pub(in crate::queue::redis) struct Summarize<'a> {
    pub keys: &'a BuildKeys,
    pub generation: &'a str,
}

#[derive(Deserialize)]
struct Raw {
    #[serde(default)]
    lost: Option<String>,
    #[serde(default)]
    total: usize,
    #[serde(default)]
    counts: BTreeMap<String, usize>,
    #[serde(default)]
    requeued: u64,
    #[serde(default)]
    taken_over: u64,
    #[serde(default, deserialize_with = "lua_list")]
    failed: Vec<(String, String, String, u32)>,
    #[serde(default, deserialize_with = "lua_list")]
    flaky: Vec<(String, String, String, u32)>,
    #[serde(default, deserialize_with = "lua_list")]
    not_run: Vec<String>,
    #[serde(default)]
    not_run_count: usize,
    #[serde(default, deserialize_with = "lua_list")]
    mismatches: Vec<String>,
    #[serde(default, deserialize_with = "lua_list")]
    stopped: Vec<String>,
}

impl Step for Summarize<'_> {
    const NAME: &'static str = "summarize";
    /// The summary, or [`QueueError::StateLost`] saying what did not add up.
    type Reply = Summary;

    fn keys(&self) -> Vec<String> {
        let generation = self.keys.generation(self.generation);
        vec![
            generation.meta,
            generation.queue,
            generation.running,
            generation.processed,
            self.keys.results(),
            self.keys.failures(),
            generation.requeues,
            self.keys.stats(),
            generation.failed,
            generation.flaky,
            self.keys.mismatched(),
        ]
    }

    fn args(&self) -> Vec<String> {
        vec![LISTED.to_string(), NOT_RUN_LISTED.to_string()]
    }

    fn reply(raw: Value) -> Result<Summary, QueueError> {
        let raw: Raw = json(Self::NAME, raw)?;
        if let Some(lost) = raw.lost {
            return Err(QueueError::StateLost(lost));
        }
        let mut counts = BTreeMap::new();
        for (name, n) in &raw.counts {
            counts.insert(outcome(name)?, *n);
        }
        Ok(Summary {
            total: raw.total,
            counts,
            failing: listed(raw.failed)?,
            flaky: listed(raw.flaky)?,
            requeued: raw.requeued,
            not_run: raw
                .not_run
                .iter()
                .map(|id| stored_id(id))
                .collect::<Result<_, _>>()?,
            not_run_count: raw.not_run_count,
            taken_over: raw.taken_over,
            mismatches: raw.mismatches,
            stopped: raw.stopped,
        })
    }
}

fn listed(raw: Vec<(String, String, String, u32)>) -> Result<Vec<Listed>, QueueError> {
    let mut listed = raw
        .into_iter()
        .map(|(id, outcome_name, detail, requeues)| {
            let detail = if detail.is_empty() {
                None
            } else {
                Some(
                    serde_json::from_str::<FailureDetail>(&detail).map_err(|err| {
                        QueueError::Protocol(format!("unreadable failure detail of `{id}`: {err}"))
                    })?,
                )
            };
            Ok(Listed {
                id: stored_id(&id)?,
                outcome: outcome(&outcome_name)?,
                detail,
                requeues,
            })
        })
        .collect::<Result<Vec<_>, QueueError>>()?;
    listed.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(listed)
}

fn outcome(name: &str) -> Result<Outcome, QueueError> {
    name.parse()
        .map_err(|err: crate::outcome::UnknownOutcome| QueueError::Protocol(err.to_string()))
}
