//! [`Liveness`]: when the report may call every worker of a build gone, from what each poll
//! saw of their sessions and how promptly Redis answered it.

use std::time::Duration;

use tokio::time::Instant;

use crate::queue::redis::scripts::progress::Seen;

/// When the report may call every worker of the build gone.
///
/// A worker that said it left is gone at once. One that went silent without a word (killed,
/// partitioned) is gone once its last heartbeat, in Redis's time, is older than the heartbeat
/// timeout, and the report itself watched the build for a whole timeout with Redis answering:
/// right after Redis was unreachable (a restart, a cluster's failover) every worker's last
/// heartbeat is old until they reconnect, which is not their death, and workers may take a while
/// after the commit to be heard (a build, a framework's start).
#[derive(Debug, Default)]
pub(super) struct Liveness {
    /// Since when the report watched the generation with Redis answering promptly.
    watched_since: Option<Instant>,
    /// Whether a worker (of the round) was ever registered.
    came: bool,
}

impl Liveness {
    /// Whether every worker is gone, after a poll that took `took` and saw `seen`, at `now`.
    pub(super) fn gone(&mut self, now: Instant, took: Duration, seen: &Seen) -> bool {
        let timeout = Duration::from_millis(seen.timeout_ms);
        self.came |= seen.registered > 0;
        // A slow answer may be Redis coming back: the workers' silence may be its, not theirs.
        if took >= timeout / 4 {
            self.watched_since = None;
        }
        let watched_since = *self.watched_since.get_or_insert(now);
        if seen.alive > 0 {
            return false;
        }
        if seen.registered > 0 && seen.left == seen.registered {
            return true;
        }
        now.duration_since(watched_since) >= timeout
    }

    /// Whether a worker (of the round) was seen.
    pub(super) fn came(&self) -> bool {
        self.came
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::redis::state::BuildState;

    /// A poll of a build with a 30 s heartbeat timeout.
    fn seen(registered: u64, left: u64, alive: u64) -> Seen {
        Seen {
            state: BuildState::Ready {
                generation: "g".to_owned(),
            },
            abort: None,
            total: Some(10),
            queued: 5,
            running: 0,
            processed: 5,
            alive,
            registered,
            left,
            joining: 0,
            timeout_ms: 30_000,
            nothing_to_retry: None,
            existed: false,
        }
    }

    const PROMPT: Duration = Duration::from_millis(2);

    #[test]
    fn workers_that_said_they_left_are_gone_at_once() {
        let now = Instant::now();
        assert!(Liveness::default().gone(now, PROMPT, &seen(3, 3, 0)));
        // One of them went silent without a word: it may be Redis's silence, not its death.
        assert!(!Liveness::default().gone(now, PROMPT, &seen(3, 2, 0)));
        assert!(!Liveness::default().gone(now, PROMPT, &seen(3, 2, 1)));
    }

    /// Regression: a report started just before its dead workers' heartbeats lapsed waited
    /// for them to lapse, then a whole heartbeat timeout more.
    #[test]
    fn silent_workers_are_gone_once_the_report_watched_them_a_heartbeat_timeout() {
        let start = Instant::now();
        let mut liveness = Liveness::default();
        // Their last heartbeats lapse 25 s into the report's watch.
        assert!(!liveness.gone(start, PROMPT, &seen(2, 0, 2)));
        let lapsed = start + Duration::from_secs(25);
        assert!(!liveness.gone(lapsed, PROMPT, &seen(2, 0, 0)));
        assert!(liveness.gone(start + Duration::from_secs(30), PROMPT, &seen(2, 0, 0)));
    }

    /// Right after Redis was unreachable every worker's heartbeat is old until they reconnect:
    /// a slow answer starts the watch over.
    #[test]
    fn a_slow_answer_starts_the_watch_over() {
        let start = Instant::now();
        let mut liveness = Liveness::default();
        assert!(!liveness.gone(start, PROMPT, &seen(2, 0, 2)));
        let back = start + Duration::from_secs(40);
        assert!(!liveness.gone(back, Duration::from_secs(20), &seen(2, 0, 0)));
        assert!(!liveness.gone(back + Duration::from_secs(29), PROMPT, &seen(2, 0, 0)));
        assert!(liveness.gone(back + Duration::from_secs(30), PROMPT, &seen(2, 0, 0)));
    }

    /// A retry round nobody came to is given up a heartbeat timeout after the report started
    /// watching, and says nobody came.
    #[test]
    fn a_round_nobody_came_to_is_given_up_after_a_heartbeat_timeout() {
        let start = Instant::now();
        let mut liveness = Liveness::default();
        assert!(!liveness.gone(start, PROMPT, &seen(0, 0, 0)));
        assert!(liveness.gone(start + Duration::from_secs(30), PROMPT, &seen(0, 0, 0)));
        assert!(!liveness.came());
    }
}
