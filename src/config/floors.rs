//! The shortest value each timing flag of the queue takes, and why: a shorter one cannot work
//! (`--lock-ttl 1ms` lapsed before its leader could stage anything, and the build ended with
//! "lost leader"), so it is refused at the start as bad input, naming the floor.
//!
//! [`at_least`] is the flags' parser; the floors that depend on another flag
//! (`--heartbeat-interval` against `--heartbeat-timeout` and `--redis-ttl`) are checked with the
//! rest of the configuration.

use std::time::Duration;

use crate::human::{duration, parse_duration};

/// `--lock-ttl`: the leader renews its lock every third of it, and a renewal is one round trip
/// on a machine that may be busy listing the suite.
pub const LOCK_TTL: Duration = Duration::from_millis(500);
/// `--heartbeat-interval`: each worker heartbeats once per interval, a Redis call each.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_millis(100);
/// `--heartbeat-timeout`: a worker whose heartbeat is this late loses its tests; a round trip
/// and a busy machine's pause must fit in it, several times.
pub const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(1);
/// `--redis-ttl`: a build's keys must outlive the gaps between the calls that refresh them.
pub const REDIS_TTL: Duration = Duration::from_secs(1);
/// `--redis-timeout`: at least one reply must fit in it.
pub const REDIS_TIMEOUT: Duration = Duration::from_secs(1);
/// `--queue-init-timeout` and `--report-timeout`: a leader must have time to list and commit,
/// a report to read the build.
pub const WAIT: Duration = Duration::from_secs(1);

/// A duration flag's parser ([`parse_duration`]) that refuses values under `floor`, saying why.
pub fn at_least(
    floor: Duration,
    why: &'static str,
) -> impl Fn(&str) -> Result<Duration, String> + Clone + Send + Sync + 'static {
    move |text| {
        let parsed = parse_duration(text)?;
        if parsed < floor {
            return Err(format!("must be at least {} ({why})", duration(floor)));
        }
        Ok(parsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_under_the_floor_are_refused_naming_it() {
        let parse = at_least(LOCK_TTL, "renewed every third of it");
        assert_eq!(parse("500ms"), Ok(LOCK_TTL));
        assert_eq!(parse("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(
            parse("1ms"),
            Err("must be at least 500ms (renewed every third of it)".to_owned())
        );
        assert!(parse("soon").is_err());
    }
}
