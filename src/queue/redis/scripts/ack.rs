//! ACK: record results and reserve the next tests in one round trip (`lua/ack.lua`).

use redis::Value;
use serde::Deserialize;

use super::per_test::{Caller, Handed, Handout, want_arg};
use super::reply::stored_id;
use super::reply::{json, lua_list};
use super::step::Step;
use crate::outcome::{FailureDetail, Outcome};
use crate::timeline::record::outcome_letter;
use crate::queue::{QueueError, Recorded, Want};
use crate::test_id::TestId;

pub(super) const SOURCE: &str = lua!("per_test.lua", "handout.lua", "ack.lua");

/// ACK of `results` (run by `caller.worker`), then RESERVE of what `want` asks for.
pub(in crate::queue::redis) struct Acknowledge<'a> {
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
    recorded: Vec<(String, RecordedAs)>,
}

/// What became of one result, as the script writes it: a final outcome by its name.
#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum RecordedAs {
    Requeued,
    Discarded,
    Duplicate,
    #[serde(untagged)]
    Final(Outcome),
}

impl Step for Acknowledge<'_> {
    const NAME: &'static str = "ack";
    type Reply = Acked;

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
            args.push(acked_item(&ack.lease.0, result.outcome, result.duration));
        }
        args
    }

    fn reply(raw: Value) -> Result<Acked, QueueError> {
        let raw: Raw = json(Self::NAME, raw)?;
        let recorded = raw
            .recorded
            .into_iter()
            .map(|(id, status)| {
                let recorded = match status {
                    RecordedAs::Requeued => Recorded::Requeued,
                    RecordedAs::Discarded => Recorded::Discarded,
                    RecordedAs::Duplicate => Recorded::Duplicate,
                    RecordedAs::Final(outcome) => Recorded::Final(outcome),
                };
                Ok((stored_id(&id)?, recorded))
            })
            .collect::<Result<_, QueueError>>()?;
        Ok(Acked {
            recorded,
            next: raw.handout.read()?,
        })
    }
}

/// A result's item of the timeline's `A` record, `<seq>.<i><letter><ms>`: the lease's position
/// (a lease is `<session>.<seq>.<i>.<hand-out ms>`: the part between the session's prefix and
/// the hand-out time), the outcome's letter and the duration the worker measured.
fn acked_item(lease: &str, outcome: Outcome, took: std::time::Duration) -> String {
    let mut parts = lease.split('.').skip(1);
    let position = match (parts.next(), parts.next()) {
        (Some(seq), Some(index)) => format!("{seq}.{index}"),
        _ => "0.0".to_owned(),
    };
    format!("{position}{}{}", outcome_letter(outcome), took.as_millis())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::Reservation;

    #[test]
    fn an_acked_item_names_the_lease_without_its_hand_out_time() {
        let took = std::time::Duration::from_millis(12);
        assert_eq!(
            acked_item("abcdef123456.7.3.1796687779485", Outcome::Passed, took),
            "7.3p12"
        );
        assert_eq!(acked_item("abcdef123456.7.3", Outcome::Failed, took), "7.3f12");
        assert_eq!(acked_item("garbage", Outcome::Passed, took), "0.0p12");
    }

    fn reply(json: &str) -> Result<Acked, QueueError> {
        Acknowledge::reply(Value::BulkString(json.as_bytes().to_vec()))
    }

    /// The reply's statuses are read by their tags: the hand-out's, and each result's, whose
    /// final outcome goes by its own name.
    #[test]
    fn statuses_are_read_by_their_tags() {
        let acked = reply(
            r#"{"status":"tests","tests":[["t3","s.1.1"]],"recorded":[["t1","flaky"],["t2","requeued"],["t4","duplicate"]]}"#,
        )
        .unwrap();
        let recorded: Vec<(&str, Recorded)> = acked
            .recorded
            .iter()
            .map(|(id, recorded)| (id.as_str(), *recorded))
            .collect();
        assert_eq!(
            recorded,
            [
                ("t1", Recorded::Final(Outcome::Flaky)),
                ("t2", Recorded::Requeued),
                ("t4", Recorded::Duplicate),
            ]
        );
        let Handed::Reservation(Reservation::Tests(tests)) = acked.next else {
            panic!("not a hand-out of tests");
        };
        assert_eq!(tests[0].id.as_str(), "t3");
        assert!(matches!(
            reply(r#"{"status":"done","recorded":{}}"#).unwrap().next,
            Handed::Reservation(Reservation::Done)
        ));
        for unknown in [
            r#"{"status":"later","recorded":{}}"#,
            r#"{"status":"done","recorded":[["t1","maybe"]]}"#,
        ] {
            let err = reply(unknown).err().unwrap();
            assert!(
                err.to_string().contains("ack replied"),
                "{unknown}: {err}"
            );
        }
    }
}
