//! The Redis scripts of the protocol, one module each. A module owns its script's KEYS and ARGV
//! (the call's fields), its reply type and how the reply is read, so callers never build a KEYS
//! list or match a status string. [`run`] sends one call.
//!
//! The Lua is under `lua/`: every script starts with `lib.lua`; the per-test scripts (RESERVE,
//! ACK, HEARTBEAT, RELEASE) also share `per_test.lua`, whose `open` and `close` keep the steps
//! that make a script safe to re-send and keep keys from leaking. `docs/queue-protocol.md` ends
//! with the checklist for adding a script.

#[macro_use]
mod macros;
pub(super) mod per_test;
mod reply;
mod step;

scripts! {
    abort::AbortBuild,
    ack::Acknowledge,
    commit::Commit,
    elect::Elect,
    heartbeat::Heartbeat,
    hello::Hello,
    keep::Keep,
    observe::Observe,
    progress::ReadProgress,
    release::Release,
    renew::Renew,
    reserve::Reserve,
    resign::Resign,
    retry::JobRetry,
    stage::Stage,
    status::ReadStatus,
    summarize::Summarize,
}

pub(super) use reply::stored_id;
pub(super) use step::run;
