//! How the scripts' replies are read: as text, a number, JSON, and the pieces JSON replies
//! share (a Lua list that may be empty, a test id read back).

use serde::Deserialize;
use serde::de::DeserializeOwned;

use redis::Value;

use crate::queue::QueueError;
use crate::test_id::TestId;

/// A reply as text.
fn text(script: &str, raw: Value) -> Result<String, QueueError> {
    redis::from_redis_value(raw)
        .map_err(|err| QueueError::Protocol(format!("{script} replied something not text: {err}")))
}

/// A reply as an integer.
pub(super) fn int(script: &str, raw: Value) -> Result<i64, QueueError> {
    redis::from_redis_value(raw).map_err(|err| {
        QueueError::Protocol(format!("{script} replied something not a number: {err}"))
    })
}

/// A JSON reply.
pub(super) fn json<T: DeserializeOwned>(script: &str, raw: Value) -> Result<T, QueueError> {
    let reply = text(script, raw)?;
    serde_json::from_str(&reply)
        .map_err(|err| QueueError::Protocol(format!("{script} replied `{reply}`: {err}")))
}

/// Deserializes a Lua list, accepting `{}` (how cjson writes an empty table) for an empty one.
pub(super) fn lua_list<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: DeserializeOwned,
{
    match serde_json::Value::deserialize(deserializer)? {
        serde_json::Value::Object(map) if map.is_empty() => Ok(Vec::new()),
        value => serde_json::from_value(value).map_err(serde::de::Error::custom),
    }
}

/// A test id read back from Redis.
pub(in crate::queue::redis) fn stored_id(id: &str) -> Result<TestId, QueueError> {
    TestId::new(id).map_err(|err| QueueError::Protocol(format!("stored test id `{id}` {err}")))
}

#[cfg(test)]
mod tests {
    use super::*;

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
