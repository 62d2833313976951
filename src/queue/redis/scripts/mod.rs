//! The Redis scripts of the protocol, one module each. A module owns its script's KEYS and ARGV
//! (the call's fields), its reply type and how the reply is read, so callers never build a KEYS
//! list or match a status string. [`run`] sends one call.
//!
//! The Lua is under `lua/`: every script starts with `lib.lua`; the per-test scripts (RESERVE,
//! ACK, HEARTBEAT, RELEASE) also share `per_test.lua`, whose `open` and `close` keep the steps
//! that make a script safe to re-send and keep keys from leaking. `docs/queue-protocol.md` ends
//! with the checklist for adding a script.

/// A script's source: `lib.lua`, then the given files.
macro_rules! lua {
    ($($file:literal),+) => {
        concat!(include_str!("../lua/lib.lua"), $(include_str!(concat!("../lua/", $file))),+)
    };
}
/// `Step::script` for the module's `SOURCE`, hashed once.
macro_rules! hashed {
    () => {
        fn script() -> &'static redis::Script {
            static SCRIPT: std::sync::LazyLock<redis::Script> =
                std::sync::LazyLock::new(|| redis::Script::new(SOURCE));
            &SCRIPT
        }
    };
}

pub(super) mod abort;
pub(super) mod ack;
pub(super) mod commit;
pub(super) mod elect;
pub(super) mod heartbeat;
pub(super) mod hello;
pub(super) mod keep;
pub(super) mod observe;
pub(super) mod per_test;
pub(super) mod progress;
pub(super) mod release;
pub(super) mod renew;
pub(super) mod reserve;
pub(super) mod resign;
pub(super) mod retry;
pub(super) mod stage;
pub(super) mod summarize;

use redis::{Script, Value};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::queue::QueueError;
use crate::queue::redis::connection::RedisConn;

/// One call of one script.
pub(super) trait Step {
    /// The script's name, for messages.
    const NAME: &'static str;
    /// What the script's reply means.
    type Reply;
    /// The script, hashed once.
    fn script() -> &'static Script;
    /// Its KEYS, in the order its header gives.
    fn keys(&self) -> Vec<String>;
    /// Its ARGV, in the order its header gives.
    fn args(&self) -> Vec<String>;
    /// Reads the reply.
    fn reply(raw: Value) -> Result<Self::Reply, QueueError>;
}

/// Runs `step` (EVALSHA, loading the script on NOSCRIPT; retried on connection errors).
pub(super) async fn run<S: Step>(conn: &RedisConn, step: &S) -> Result<S::Reply, QueueError> {
    match conn.eval(S::script(), &step.keys(), &step.args()).await {
        Ok(raw) => S::reply(raw),
        // A command refused inside a script: name it from the script's own line.
        Err(QueueError::Permission {
            url,
            detail,
            script_line: Some((sha, line)),
        }) => Err(QueueError::Permission {
            detail: match command_at(&sha, line) {
                Some((script, command)) => {
                    format!("{detail}: {command} (in ciq's {script} script)")
                }
                None => detail,
            },
            url,
            script_line: None,
        }),
        Err(err) => Err(err),
    }
}

/// Every script's name and source, to name the command a script was running when Redis refused
/// it ([`command_at`]).
fn sources() -> [(&'static str, &'static str); 16] {
    [
        (abort::Abort::NAME, abort::SOURCE),
        (ack::Ack::NAME, ack::SOURCE),
        (commit::Commit::NAME, commit::SOURCE),
        (elect::Elect::NAME, elect::SOURCE),
        (heartbeat::Heartbeat::NAME, heartbeat::SOURCE),
        (hello::Hello::NAME, hello::SOURCE),
        (keep::Keep::NAME, keep::SOURCE),
        (observe::Observe::NAME, observe::SOURCE),
        (progress::Progress::NAME, progress::SOURCE),
        (release::Release::NAME, release::SOURCE),
        (renew::Renew::NAME, renew::SOURCE),
        (reserve::Reserve::NAME, reserve::SOURCE),
        (resign::Resign::NAME, resign::SOURCE),
        (retry::Retry::NAME, retry::SOURCE),
        (stage::Stage::NAME, stage::SOURCE),
        (summarize::Summarize::NAME, summarize::SOURCE),
    ]
}

/// The Redis command on line `line` of the script whose SHA-1 is `sha`, and the script's name:
/// Redis 7.0 says only "can't run this command" and where, when an ACL refuses a command
/// inside a script.
fn command_at(sha: &str, line: usize) -> Option<(&'static str, String)> {
    let (name, source) = sources()
        .into_iter()
        .find(|(_, source)| Script::new(source).get_hash() == sha)?;
    let text = source.lines().nth(line.checked_sub(1)?)?;
    let call = text.split("redis.call(").nth(1)?;
    let command: String = call
        .trim_start_matches(['\'', '"'])
        .chars()
        .take_while(|c| c.is_ascii_alphabetic())
        .collect();
    (!command.is_empty()).then_some((name, command))
}

/// A reply as text.
fn text(script: &str, raw: Value) -> Result<String, QueueError> {
    redis::from_redis_value(raw)
        .map_err(|err| QueueError::Protocol(format!("{script} replied something not text: {err}")))
}

/// A reply as an integer.
fn int(script: &str, raw: Value) -> Result<i64, QueueError> {
    redis::from_redis_value(raw).map_err(|err| {
        QueueError::Protocol(format!("{script} replied something not a number: {err}"))
    })
}

/// A JSON reply.
fn json<T: DeserializeOwned>(script: &str, raw: Value) -> Result<T, QueueError> {
    let reply = text(script, raw)?;
    serde_json::from_str(&reply)
        .map_err(|err| QueueError::Protocol(format!("{script} replied `{reply}`: {err}")))
}

/// Deserializes a Lua list, accepting `{}` (how cjson writes an empty table) for an empty one.
fn lua_list<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: DeserializeOwned,
{
    match serde_json::Value::deserialize(deserializer)? {
        serde_json::Value::Object(map) if map.is_empty() => Ok(Vec::new()),
        value => serde_json::from_value(value).map_err(serde::de::Error::custom),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_found_by_script_and_line() {
        let sha = hello::Hello::script().get_hash();
        let line = hello::SOURCE
            .lines()
            .position(|l| l.contains("redis.call('PEXPIRE'"))
            .unwrap()
            + 1;
        assert_eq!(command_at(sha, line), Some(("hello", "PEXPIRE".to_owned())));
        assert_eq!(command_at("nope", 1), None);
    }

    #[test]
    fn empty_lua_tables_are_empty_lists() {
        #[derive(Debug, Deserialize)]
        struct Listed {
            #[serde(deserialize_with = "lua_list")]
            items: Vec<(String, String)>,
        }
        let listed: Listed = json("t", Value::BulkString(br#"{"items":{}}"#.to_vec())).unwrap();
        assert!(listed.items.is_empty());
        let listed: Listed = json(
            "t",
            Value::BulkString(br#"{"items":[["a b","7"]]}"#.to_vec()),
        )
        .unwrap();
        assert_eq!(listed.items, [("a b".to_owned(), "7".to_owned())]);
        let err = json::<Listed>("reserve", Value::SimpleString("OK".into())).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("unexpected reply from Redis: reserve replied `OK`"),
            "{err}"
        );
    }
}
