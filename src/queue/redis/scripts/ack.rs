//! ACK: record results and reserve the next tests in one round trip (`lua/ack.lua`).

use redis::Value;
use serde::Deserialize;

use super::per_test::{Caller, Handed, Handout, want_arg};
use super::summarize::stored_id;
use super::{Step, json, lua_list};
use crate::outcome::{FailureDetail, Outcome};
use crate::queue::{QueueError, Recorded, Want};
use crate::test_id::TestId;

pub(super) const SOURCE: &str = lua!("per_test.lua", "handout.lua", "ack.lua");

/// ACK of `results` (run by `caller.worker`), then RESERVE of what `want` asks for.
pub(in crate::queue::redis) struct Ack<'a> {
    pub caller: Caller<'a>,
    pub want: Want,
    pub results: &'a [crate::queue::Ack],
}

/// What ACK did.
pub(in crate::queue::redis) struct Acked {
    /// What became of each result, in order.
    pub recorded: Vec<(TestId, Recorded)>,
    /// The next hand-out.
    pub next: Handed,
}

#[derive(Deserialize)]
struct Raw {
    #[serde(flatten)]
    handout: Handout,
    #[serde(default, deserialize_with = "lua_list")]
    recorded: Vec<(String, String)>,
}

impl Step for Ack<'_> {
    const NAME: &'static str = "ack";
    type Reply = Acked;

    hashed!();

    fn keys(&self) -> Vec<String> {
        self.caller.keys.to_vec()
    }

    fn args(&self) -> Vec<String> {
        let mut args = self.caller.args();
        args.push(want_arg(self.want));
        for ack in self.results {
            let result = &ack.result;
            args.push(result.id.as_str().to_owned());
            args.push(ack.lease.0.clone());
            args.push(result.outcome.as_str().to_owned());
            args.push(if result.outcome.is_success() {
                String::new()
            } else {
                // A detail always serializes: strings, numbers and a unit enum.
                serde_json::to_string(&FailureDetail {
                    outcome: result.outcome,
                    worker: self.caller.worker.to_owned(),
                    duration_ms: u64::try_from(result.duration.as_millis()).unwrap_or(u64::MAX),
                    output: result.output.clone(),
                })
                .unwrap_or_default()
            });
        }
        args
    }

    fn reply(raw: Value) -> Result<Acked, QueueError> {
        let raw: Raw = json(Self::NAME, raw)?;
        let recorded = raw
            .recorded
            .iter()
            .map(|(id, status)| {
                let recorded = match status.as_str() {
                    "requeued" => Recorded::Requeued,
                    "discarded" => Recorded::Discarded,
                    "duplicate" => Recorded::Duplicate,
                    outcome => Recorded::Final(
                        outcome
                            .parse::<Outcome>()
                            .map_err(|err| QueueError::Protocol(err.to_string()))?,
                    ),
                };
                Ok((stored_id(id)?, recorded))
            })
            .collect::<Result<_, QueueError>>()?;
        Ok(Acked {
            recorded,
            next: raw.handout.read()?,
        })
    }
}
