//! Reads a build's [`Summary`] out of Redis, for workers that saw the queue drain and for the
//! report.

use std::collections::{BTreeMap, HashMap};

use crate::outcome::{FailureDetail, Outcome};
use crate::queue::QueueError;
use crate::queue::redis::connection::RedisConn;
use crate::queue::redis::keys::{BuildKeys, GenKeys};
use crate::report::Summary;
use crate::test_id::TestId;

type Raw = (
    Option<usize>,
    HashMap<String, String>,
    HashMap<String, String>,
    HashMap<String, u32>,
    Option<u64>,
    Vec<String>,
    Vec<String>,
);

/// The outcomes of generation `generation` of the build `keys` names, in one pipelined read.
pub async fn read(
    conn: &RedisConn,
    keys: &BuildKeys,
    generation: &GenKeys,
) -> Result<Summary, QueueError> {
    let mut pipe = redis::pipe();
    pipe.hget(&generation.meta, "total")
        .hgetall(keys.results())
        .hgetall(keys.failures())
        .hgetall(&generation.requeues)
        .hget(keys.stats(), "taken-over")
        .lrange(&generation.queue, 0, -1)
        .zrange(&generation.running, 0, -1);
    let (total, results, failures, requeues, taken_over, queued, running): Raw =
        conn.pipeline(&pipe).await?;
    let total = total.ok_or(QueueError::StateLost)?;
    let id = |raw: &str| {
        TestId::new(raw)
            .map_err(|err| QueueError::Protocol(format!("stored test id `{raw}` {err}")))
    };
    let mut summary = Summary {
        total,
        taken_over: taken_over.unwrap_or(0),
        ..Summary::default()
    };
    for (test, outcome) in &results {
        let outcome: Outcome = outcome
            .parse()
            .map_err(|err: crate::outcome::UnknownOutcome| QueueError::Protocol(err.to_string()))?;
        summary.outcomes.insert(id(test)?, outcome);
    }
    for (test, detail) in &failures {
        let detail: FailureDetail = serde_json::from_str(detail).map_err(|err| {
            QueueError::Protocol(format!("unreadable failure detail of `{test}`: {err}"))
        })?;
        summary.failures.insert(id(test)?, detail);
    }
    summary.requeues = requeues
        .iter()
        .map(|(test, n)| Ok((id(test)?, *n)))
        .collect::<Result<BTreeMap<_, _>, QueueError>>()?;
    summary.not_run = queued
        .iter()
        .chain(&running)
        .map(|test| id(test))
        .collect::<Result<_, _>>()?;
    Ok(summary)
}
