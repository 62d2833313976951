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

/// Every script's name and source.
const SOURCES: [(&str, &str); 14] = [
    ("elect", include_str!("lua/elect.lua")),
    ("observe", include_str!("lua/observe.lua")),
    ("renew", include_str!("lua/renew.lua")),
    ("stage", include_str!("lua/stage.lua")),
    ("commit", include_str!("lua/commit.lua")),
    ("abort", include_str!("lua/abort.lua")),
    ("reserve", per_test!("lua/reserve.lua")),
    ("ack", per_test!("lua/ack.lua")),
    ("heartbeat", per_test!("lua/heartbeat.lua")),
    ("release", per_test!("lua/release.lua")),
    ("progress", include_str!("lua/progress.lua")),
    ("resign", include_str!("lua/resign.lua")),
    ("hello", include_str!("lua/hello.lua")),
    ("summary", include_str!("lua/summary.lua")),
];

fn script(name: &str) -> Script {
    let source = SOURCES
        .iter()
        .find(|(n, _)| *n == name)
        .map_or("", |(_, source)| source);
    Script::new(source)
}

/// The scripts, shared by every connection of the process.
pub static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| Scripts {
    elect: script("elect"),
    observe: script("observe"),
    renew: script("renew"),
    stage: script("stage"),
    commit: script("commit"),
    abort: script("abort"),
    reserve: script("reserve"),
    ack: script("ack"),
    heartbeat: script("heartbeat"),
    release: script("release"),
    progress: script("progress"),
    resign: script("resign"),
    hello: script("hello"),
    summary: script("summary"),
});

/// The Redis command on line `line` of the script whose SHA-1 is `sha`, and the script's name:
/// Redis 7.0 says only "can't run this command" and where, when an ACL refuses a command
/// inside a script.
pub fn command_at(sha: &str, line: usize) -> Option<(&'static str, String)> {
    let (name, source) = SOURCES
        .iter()
        .find(|(_, source)| Script::new(source).get_hash() == sha)?;
    let text = source.lines().nth(line.checked_sub(1)?)?;
    let call = text.split("redis.call(").nth(1)?;
    let command = call.trim_start_matches(['\'', '"']);
    let command: String = command
        .chars()
        .take_while(|c| c.is_ascii_alphabetic())
        .collect();
    (!command.is_empty()).then_some((*name, command))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_found_by_script_and_line() {
        let sha = SCRIPTS.hello.get_hash();
        let line = include_str!("lua/hello.lua")
            .lines()
            .position(|l| l.contains("redis.call('PEXPIRE'"))
            .unwrap()
            + 1;
        assert_eq!(command_at(sha, line), Some(("hello", "PEXPIRE".to_owned())));
        assert_eq!(command_at("nope", 1), None);
    }
}
