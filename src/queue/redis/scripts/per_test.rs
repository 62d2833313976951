//! What the per-test scripts (RESERVE, ACK, HEARTBEAT, RELEASE) share: their KEYS, the first
//! ARGV every one of them takes, and how a hand-out of tests is read (`lua/per_test.lua`).

use serde::Deserialize;

use super::reply::lua_list;
use super::reply::stored_id;
use crate::queue::redis::keys::PER_TEST_KEYS;
use crate::queue::{Lease, QueueError, Reservation, Reserved, Want};

/// Who calls, in which generation, with which request: ARGV[1..6] of every per-test script.
pub(in crate::queue::redis) struct Caller<'a> {
    pub keys: &'a [String; PER_TEST_KEYS],
    pub generation: &'a str,
    pub worker: &'a str,
    /// This process's id in the build.
    pub session: &'a str,
    /// A fresh number per request: a re-sent request (same number) gets the first reply.
    pub seq: u64,
    pub key_ttl_ms: String,
    /// Whether the session's liveness is due to be recorded.
    pub seen: bool,
}

impl Caller<'_> {
    /// ARGV[1..6].
    pub(super) fn args(&self) -> Vec<String> {
        vec![
            self.generation.to_owned(),
            self.worker.to_owned(),
            self.session.to_owned(),
            self.seq.to_string(),
            self.key_ttl_ms.clone(),
            if self.seen { "1" } else { "0" }.to_owned(),
        ]
    }

    /// ARGV[1..6], then test id and lease of each of `held` (HEARTBEAT, RELEASE).
    pub(super) fn args_with(&self, held: &[Reserved]) -> Vec<String> {
        let mut args = self.args();
        for reserved in held {
            args.push(reserved.id.as_str().to_owned());
            args.push(reserved.lease.0.clone());
        }
        args
    }
}

/// How RESERVE and ACK are told what a worker wants: `max`, or `max:budget:typical:floor` (ms;
/// a typical of 0 for none) for an auto batch (see `lua/handout.lua`'s `wanted`).
pub(super) fn want_arg(want: Want) -> String {
    match want.timed {
        Some(timed) => format!(
            "{}:{}:{}:{}",
            want.max,
            timed.budget.as_millis(),
            // A typical test under a millisecond counts as one: 0 means none.
            timed
                .typical
                .map_or(0, |typical| typical.as_millis().max(1)),
            timed.floor.as_millis()
        ),
        None => want.max.to_string(),
    }
}

/// RESERVE's and ACK's hand-out, as the scripts write it.
#[derive(Deserialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub(super) enum Handout {
    /// Tests and their leases.
    Tests {
        #[serde(default, deserialize_with = "lua_list")]
        tests: Vec<(String, String)>,
    },
    Empty,
    Done,
    Stale,
    Lost {
        #[serde(default)]
        why: String,
    },
    /// The reply to an outdated copy of a request (see `per_test.lua`'s `cached_reply`).
    Superseded,
}

/// What a reservation came to, for the queue.
pub(in crate::queue::redis) enum Handed {
    /// A reservation to pass on.
    Reservation(Reservation),
    /// Redis lost part of the build: what did not add up.
    Lost(String),
}

impl Handout {
    pub(super) fn read(self) -> Result<Handed, QueueError> {
        let reservation = match self {
            Handout::Tests { tests } => Reservation::Tests(
                tests
                    .into_iter()
                    .map(|(id, lease)| {
                        Ok(Reserved {
                            id: stored_id(&id)?,
                            lease: Lease(lease),
                        })
                    })
                    .collect::<Result<_, QueueError>>()?,
            ),
            Handout::Empty => Reservation::Empty,
            Handout::Done => Reservation::Done,
            Handout::Stale => Reservation::Stale,
            Handout::Lost { why } => return Ok(Handed::Lost(why)),
            // Only an outdated copy of a request gets this, on a connection ciq already left.
            Handout::Superseded => {
                return Err(QueueError::Protocol(
                    "Redis answered an outdated copy of a request".to_owned(),
                ));
            }
        };
        Ok(Handed::Reservation(reservation))
    }
}
