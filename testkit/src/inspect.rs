//! Reading and editing a build's keys on a test's own Redis (one server or a cluster): results,
//! state, generations, and the faults a test injects there (a lost build, a replaced
//! generation).

use std::collections::BTreeMap;

use ciq::queue::redis::keys::BuildKeys;

use crate::redis_server::TestRedis;

/// The outcome of every test, from the build-wide results hash.
pub fn results(server: &impl TestRedis, build: &str) -> BTreeMap<String, String> {
    let keys = BuildKeys::new("", build);
    redis::cmd("HGETALL")
        .arg(keys.results())
        .query(&mut *server.conn_for(&keys.state()))
        .expect("HGETALL results")
}

/// The build's state value.
pub fn state(server: &impl TestRedis, build: &str) -> Option<String> {
    let keys = BuildKeys::new("", build);
    redis::cmd("GET")
        .arg(keys.state())
        .query(&mut *server.conn_for(&keys.state()))
        .expect("GET state")
}

/// Deletes every key of `build`, as a Redis that lost its data would. The pattern follows the
/// keyspace's `ciq:{build}:` prefix; a mismatch deletes nothing and the caller's assertions fail.
pub fn lose_build(server: &impl TestRedis, build: &str) {
    let mut conn = server.conn_for(&BuildKeys::new("", build).state());
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("ciq:{{{build}}}:*"))
        .query(&mut *conn)
        .expect("KEYS");
    assert!(!keys.is_empty(), "build `{build}` has no keys to lose");
    redis::cmd("DEL")
        .arg(&keys)
        .exec(&mut *conn)
        .expect("DEL build keys");
}

/// Every key of generation `generation` of `build` still in Redis, whatever its name.
pub fn generation_keys(server: &impl TestRedis, build: &str, generation: &str) -> Vec<String> {
    let queue = BuildKeys::new("", build).generation(generation).queue;
    let prefix = queue.rsplit_once(':').map_or("", |(prefix, _)| prefix);
    redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query(&mut *server.conn_for(&queue))
        .expect("KEYS")
}

/// The generation a leader is filling, from the build's `setup:<gen>:<worker>` lock, if any.
pub fn setup_generation(server: &impl TestRedis, build: &str) -> Option<String> {
    let state = state(server, build)?;
    let (generation, _worker) = state.strip_prefix("setup:")?.split_once(':')?;
    Some(generation.to_owned())
}

/// The generation the build's state names as ready, if any.
pub fn ready_generation(server: &impl TestRedis, build: &str) -> Option<String> {
    state(server, build).and_then(|s| s.strip_prefix("ready:").map(str::to_owned))
}

/// Stages a new generation `name` holding `ids`, with the current generation's settings, and
/// makes it the build's, as an operator re-filling the queue of a running build would. False
/// when the build has no ready generation yet, or has finished it (every test processed): a
/// queue re-filled after the workers left would rightly end the build incomplete. The check and
/// the replacement are one transaction (WATCH), so an acknowledgement that finishes the build
/// meanwhile cancels the replacement.
pub fn replace_generation(server: &impl TestRedis, build: &str, name: &str, ids: &[&str]) -> bool {
    let Some(current) = ready_generation(server, build) else {
        return false;
    };
    let keys = BuildKeys::new("", build);
    let old = keys.generation(&current);
    let new = keys.generation(name);
    let mut conn = server.conn_for(&keys.state());
    let _: () = redis::cmd("WATCH")
        .arg(keys.state())
        .arg(&old.processed)
        .query(&mut *conn)
        .expect("WATCH");
    let settings: Vec<Option<String>> = redis::cmd("HMGET")
        .arg(&old.meta)
        .arg(&[
            "max-requeues",
            "requeue-limit",
            "heartbeat-timeout-ms",
            "total",
        ])
        .query(&mut *conn)
        .expect("HMGET meta");
    let processed: usize = redis::cmd("SCARD")
        .arg(&old.processed)
        .query(&mut *conn)
        .expect("SCARD processed");
    let total: Option<usize> = settings[3].as_deref().and_then(|t| t.parse().ok());
    if total.is_none_or(|total| processed >= total) {
        let _: () = redis::cmd("UNWATCH").query(&mut *conn).expect("UNWATCH");
        return false;
    }
    let setting = |at: usize, default: &str| settings[at].clone().unwrap_or(default.to_owned());
    let mut replace = redis::pipe();
    replace
        .atomic()
        .cmd("RPUSH")
        .arg(&new.queue)
        .arg(ids)
        .cmd("HSET")
        .arg(&new.meta)
        .arg("total")
        .arg(ids.len())
        .arg("max-requeues")
        .arg(setting(0, "1"))
        .arg("requeue-limit")
        .arg(setting(1, "1"))
        .arg("heartbeat-timeout-ms")
        .arg(setting(2, "2000"))
        .arg("requeued")
        .arg(0)
        .arg("leases")
        .arg(0)
        .arg("list-digest")
        .arg(ciq::test_id::digest(ids.iter().copied()))
        .cmd("ZADD")
        .arg(&new.running)
        .arg("+inf")
        .arg("")
        .cmd("SET")
        .arg(keys.state())
        .arg(format!("ready:{name}"));
    // EXEC answers nil when a watched key changed: the build moved on, nothing was written.
    let done: Option<redis::Value> = replace.query(&mut *conn).expect("MULTI/EXEC");
    done.is_some()
}
