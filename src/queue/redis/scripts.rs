//! The Lua scripts of the Redis queue, embedded at compile time.
//!
//! Each script is one atomic step of the protocol; its header comment in `lua/` states the
//! invariant it keeps and the KEYS/ARGV it takes. The per-test scripts share `lua/prelude.lua`.
//! redis-rs sends them with EVALSHA and loads them again on NOSCRIPT (a restarted Redis).

use std::sync::LazyLock;

use redis::Script;

macro_rules! per_test {
    ($file:literal) => {
        concat!(include_str!("lua/prelude.lua"), include_str!($file))
    };
}

/// All scripts, hashed once.
pub struct Scripts {
    /// Take the setup lock or learn who holds it.
    pub elect: Script,
    /// Read state and abort marker.
    pub observe: Script,
    /// Extend the setup lock (compare-and-set).
    pub renew: Script,
    /// Append a batch of ids to a generation's queue.
    pub stage: Script,
    /// Make a generation the build's queue (compare-and-set).
    pub commit: Script,
    /// Abort the build for everyone.
    pub abort: Script,
    /// Hand out tests.
    pub reserve: Script,
    /// Record results and hand out the next tests.
    pub ack: Script,
    /// Keep held tests alive.
    pub heartbeat: Script,
    /// Give held tests back.
    pub release: Script,
    /// Everything the report polls.
    pub progress: Script,
    /// A leader stopped before committing gives its lock up.
    pub resign: Script,
    /// A worker session announces itself.
    pub hello: Script,
    /// A generation's counts and failures, checked whole.
    pub summary: Script,
}

/// The scripts, shared by every connection of the process.
pub static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| Scripts {
    elect: Script::new(include_str!("lua/elect.lua")),
    observe: Script::new(include_str!("lua/observe.lua")),
    renew: Script::new(include_str!("lua/renew.lua")),
    stage: Script::new(include_str!("lua/stage.lua")),
    commit: Script::new(include_str!("lua/commit.lua")),
    abort: Script::new(include_str!("lua/abort.lua")),
    reserve: Script::new(per_test!("lua/reserve.lua")),
    ack: Script::new(per_test!("lua/ack.lua")),
    heartbeat: Script::new(per_test!("lua/heartbeat.lua")),
    release: Script::new(per_test!("lua/release.lua")),
    progress: Script::new(include_str!("lua/progress.lua")),
    resign: Script::new(include_str!("lua/resign.lua")),
    hello: Script::new(include_str!("lua/hello.lua")),
    summary: Script::new(include_str!("lua/summary.lua")),
});
