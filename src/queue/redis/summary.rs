//! Reads a build's [`Summary`] out of Redis, for workers that saw the queue drain and for the
//! report: one SUMMARY script, whose reply is bounded whatever the suite's size and which
//! refuses to count a build Redis lost part of ([`QueueError::StateLost`]).

use serde::Deserialize;

use crate::outcome::{FailureDetail, Outcome};
use crate::queue::QueueError;
use crate::queue::redis::connection::RedisConn;
use crate::queue::redis::keys::{BuildKeys, GenKeys};
use crate::queue::redis::reply::{lua_list, parse};
use crate::queue::redis::scripts::SCRIPTS;
use crate::report::Summary;
use crate::report::summary::{LISTED, Listed, NOT_RUN_LISTED};
use crate::test_id::TestId;

#[derive(Deserialize)]
struct Reply {
    #[serde(default)]
    lost: Option<String>,
    #[serde(default)]
    total: usize,
    #[serde(default)]
    counts: std::collections::BTreeMap<String, usize>,
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
}

/// The summary of generation `generation` of the build `keys` names.
pub async fn read(
    conn: &RedisConn,
    keys: &BuildKeys,
    generation: &GenKeys,
) -> Result<Summary, QueueError> {
    let reply: String = conn
        .eval(
            &SCRIPTS.summary,
            &[
                &generation.meta,
                &generation.queue,
                &generation.running,
                &generation.processed,
                &keys.results(),
                &keys.failures(),
                &generation.requeues,
                &keys.stats(),
                &generation.failed,
                &generation.flaky,
                &keys.mismatched(),
            ],
            &[LISTED.to_string(), NOT_RUN_LISTED.to_string()],
        )
        .await?;
    let reply: Reply = parse("summary", &reply)?;
    if let Some(lost) = reply.lost {
        return Err(QueueError::StateLost(lost));
    }
    let mut counts = std::collections::BTreeMap::new();
    for (name, n) in &reply.counts {
        counts.insert(outcome(name)?, *n);
    }
    Ok(Summary {
        total: reply.total,
        counts,
        failing: listed(reply.failed)?,
        flaky: listed(reply.flaky)?,
        requeued: reply.requeued,
        not_run: reply
            .not_run
            .iter()
            .map(|id| stored_id(id))
            .collect::<Result<_, _>>()?,
        not_run_count: reply.not_run_count,
        taken_over: reply.taken_over,
        mismatches: reply.mismatches,
    })
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

/// A test id read back from Redis.
pub fn stored_id(id: &str) -> Result<TestId, QueueError> {
    TestId::new(id).map_err(|err| QueueError::Protocol(format!("stored test id `{id}` {err}")))
}
