//! Typed views of the scripts' JSON replies.
//!
//! Scripts answer with `cjson.encode(...)`, which writes an empty Lua table as `{}`: lists are
//! read through [`lua_list`] so an empty one is an empty `Vec`.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};

use crate::queue::QueueError;

/// Parses a script's JSON reply.
pub fn parse<T: DeserializeOwned>(script: &str, reply: &str) -> Result<T, QueueError> {
    serde_json::from_str(reply)
        .map_err(|err| QueueError::Protocol(format!("{script} replied `{reply}`: {err}")))
}

/// Deserializes a Lua list, accepting `{}` for an empty one.
pub fn lua_list<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: DeserializeOwned,
{
    match serde_json::Value::deserialize(deserializer)? {
        serde_json::Value::Object(map) if map.is_empty() => Ok(Vec::new()),
        value => serde_json::from_value(value).map_err(serde::de::Error::custom),
    }
}

/// ELECT's reply.
#[derive(Debug, Deserialize)]
pub struct Elect {
    /// `leader`, `wait` or `aborted`.
    pub role: String,
    /// The state found, when waiting.
    #[serde(default)]
    pub state: String,
    /// The abort record, when aborted.
    #[serde(default)]
    pub abort: String,
}

/// ABORT's reply: the record in force, or the state that made the rule refuse.
#[derive(Debug, Deserialize)]
pub struct Abort {
    /// The abort record in force.
    #[serde(default)]
    pub abort: Option<String>,
}

/// OBSERVE's reply.
#[derive(Debug, Deserialize)]
pub struct Observe {
    /// The state value, empty when absent.
    pub state: String,
    /// The abort record, empty when none.
    pub abort: String,
    /// Whether the previously followed generation's meta still exists (1) or not (0).
    #[serde(default)]
    pub previous: u8,
}

/// RESERVE's and ACK's reply.
#[derive(Debug, Deserialize)]
pub struct Reservation {
    /// `tests`, `empty`, `done`, `stale`, `lost` or `superseded`.
    pub status: String,
    /// Test id and lease of each reserved test.
    #[serde(default, deserialize_with = "lua_list")]
    pub tests: Vec<(String, u64)>,
    /// Test id and what became of each acknowledged result.
    #[serde(default, deserialize_with = "lua_list")]
    pub recorded: Vec<(String, String)>,
    /// What did not add up, with `lost`.
    #[serde(default)]
    pub why: String,
}

/// HEARTBEAT's reply (a stale generation answers with no list: its next reserve will say so).
#[derive(Debug, Deserialize)]
pub struct Heartbeat {
    /// `ok`, `stale` or `lost`.
    pub status: String,
    /// Tests this worker no longer holds.
    #[serde(default, deserialize_with = "lua_list")]
    pub lost: Vec<String>,
    /// What did not add up, with `lost`.
    #[serde(default)]
    pub why: String,
}

/// PROGRESS's reply.
#[derive(Debug, Clone, Deserialize)]
pub struct Progress {
    /// The state value, empty when absent.
    pub state: String,
    /// The abort record, empty when none.
    pub abort: String,
    /// Tests in the generation, -1 before its commit.
    pub total: i64,
    /// Tests waiting.
    pub queued: u64,
    /// Tests being run.
    pub running: u64,
    /// Tests with an outcome.
    pub processed: u64,
    /// Workers seen within the heartbeat timeout.
    pub alive: u64,
    /// Workers ever seen in this build.
    pub registered: u64,
    /// The build's heartbeat timeout in ms (0 before a commit).
    #[serde(default)]
    pub timeout: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_lua_tables_are_empty_lists() {
        let reply: Reservation = parse("reserve", r#"{"status":"empty","tests":{}}"#).unwrap();
        assert!(reply.tests.is_empty());
        let reply: Reservation = parse(
            "ack",
            r#"{"status":"tests","tests":[["a b",7]],"recorded":[["x","passed"]]}"#,
        )
        .unwrap();
        assert_eq!(reply.tests, vec![("a b".to_owned(), 7)]);
        assert_eq!(reply.recorded, vec![("x".to_owned(), "passed".to_owned())]);
    }

    #[test]
    fn garbage_is_a_protocol_error() {
        let err = parse::<Reservation>("reserve", "OK").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("unexpected reply from Redis: reserve replied `OK`")
        );
    }
}
