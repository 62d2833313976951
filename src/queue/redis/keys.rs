//! The Redis keyspace of a build: [`BuildKeys`] for build-wide keys, [`GenKeys`] for one
//! generation's.
//!
//! Every key of a build shares one hash tag, `{namespace:build}`, so every script's keys sit in
//! one Redis Cluster slot. Queue-operational keys live under `g:<generation>:`, so an abandoned
//! attempt at filling the queue can never be read by anyone.

/// Build-wide keys: the election state and aggregates that outlive a generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildKeys {
    prefix: String,
}

/// One generation's keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenKeys {
    /// The generation id (a UUID).
    pub generation: String,
    /// Test ids waiting to run (list).
    pub queue: String,
    /// `<lease>:<test>` of each test being run, scored by its holder's last heartbeat in server
    /// time, and `''` at +inf, which keeps the key while nothing runs (sorted set).
    pub running: String,
    /// Tests with a final outcome (set).
    pub processed: String,
    /// Test id -> how often it was requeued (hash).
    pub requeues: String,
    /// Test id -> `<session>:<ms>` of its last requeue (hash).
    pub requeued_by: String,
    /// Total, requeue budgets, heartbeat timeout, list digest and counters, written at commit,
    /// and each session's last reply, so a re-sent request is answered, not applied twice (hash).
    pub meta: String,
    /// Tests whose final outcome is failed or errored (set).
    pub failed: String,
    /// Tests whose final outcome is flaky (set).
    pub flaky: String,
    /// Test -> its last run in ms, as its worker measured it; written when the worker ends
    /// (hash).
    pub durations: String,
    /// Test -> `<ms>:<usual ms>` of a run much longer than its recent ones, at most a few per
    /// worker; written when the worker ends (hash).
    pub slower: String,
}

impl BuildKeys {
    /// Keys of build `build` under `namespace` (empty for none).
    pub fn new(namespace: &str, build: &str) -> Self {
        let tag = if namespace.is_empty() {
            build.to_owned()
        } else {
            format!("{namespace}:{build}")
        };
        Self {
            prefix: format!("ciq:{{{tag}}}:"),
        }
    }

    fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// The election lock and build status: absent, `setup:<gen>:<worker>`, or `ready:<gen>`.
    pub fn state(&self) -> String {
        self.key("state")
    }

    /// Why the build was aborted for everyone, when it was (JSON).
    pub fn aborted(&self) -> String {
        self.key("aborted")
    }

    /// Worker session -> `<last seen ms>:<worker>`, or `left:<ms>:<worker>` (hash).
    pub fn workers(&self) -> String {
        self.key("workers")
    }

    /// Worker sessions that joined: the leader once it committed, a follower once its own
    /// list was found to be the build's. A live session not in it may still refuse to run with
    /// another list, which would make the build red, so the report's verdict waits for it (set).
    pub fn joined(&self) -> String {
        self.key("joined")
    }

    /// The earlier build whose failed tests this build re-runs (`--retry-of`), when it had none
    /// (its workers fill it with no test): the report says why the build has none (string).
    pub fn nothing_to_retry(&self) -> String {
        self.key("nothing-to-retry")
    }

    /// Worker session -> why it refused to run: its test list was not the build's (hash).
    pub fn mismatched(&self) -> String {
        self.key("mismatched")
    }

    /// Test id -> final outcome (hash).
    pub fn results(&self) -> String {
        self.key("results")
    }

    /// Test id -> detail of its last failing run (hash of JSON).
    pub fn failures(&self) -> String {
        self.key("failures")
    }

    /// Build-wide counters: taken over, discarded (hash).
    pub fn stats(&self) -> String {
        self.key("stats")
    }

    /// Keys of generation `generation`.
    pub fn generation(&self, generation: &str) -> GenKeys {
        let key = |name: &str| format!("{}g:{generation}:{name}", self.prefix);
        GenKeys {
            generation: generation.to_owned(),
            queue: key("queue"),
            running: key("running"),
            processed: key("processed"),
            requeues: key("requeues"),
            requeued_by: key("requeued-by"),
            meta: key("meta"),
            failed: key("failed"),
            flaky: key("flaky"),
            durations: key("durations"),
            slower: key("slower"),
        }
    }
}

impl BuildKeys {
    /// The KEYS of every per-test script, in the order `lua/per_test.lua` names them.
    pub fn per_test(&self, generation: &GenKeys) -> [String; 14] {
        [
            self.state(),
            self.workers(),
            self.results(),
            self.failures(),
            self.stats(),
            self.mismatched(),
            generation.queue.clone(),
            generation.running.clone(),
            generation.processed.clone(),
            generation.requeues.clone(),
            generation.requeued_by.clone(),
            generation.meta.clone(),
            generation.failed.clone(),
            generation.flaky.clone(),
        ]
    }
}

impl GenKeys {
    /// Every key a generation may own, to delete when its leader abandons it.
    pub fn all(&self) -> [&str; 10] {
        [
            &self.queue,
            &self.running,
            &self.processed,
            &self.requeues,
            &self.requeued_by,
            &self.meta,
            &self.failed,
            &self.flaky,
            &self.durations,
            &self.slower,
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_keys_share_one_hash_tag() {
        let build = BuildKeys::new("app", "1234");
        let generation = build.generation("g1");
        for key in generation.all() {
            assert!(key.starts_with("ciq:{app:1234}:"), "{key}");
        }
        assert_eq!(generation.queue, "ciq:{app:1234}:g:g1:queue");
        assert_eq!(BuildKeys::new("", "b").state(), "ciq:{b}:state");
    }
}
