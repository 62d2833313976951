//! The Redis keyspace of a build: [`BuildKeys`] for build-wide keys, [`GenKeys`] for one
//! generation's.
//!
//! Every key of a build shares one hash tag, `{namespace:build}`, so every script's keys sit in
//! one Redis Cluster slot. Queue-operational keys live under `g:<generation>:`, so an abandoned
//! attempt at filling the queue can never be read by anyone.
//!
//! The namespace and the build id go into the tag escaped ([`tag_part`]): `%`, `:`, `{` and `}`
//! become `%25`, `%3A`, `%7B` and `%7D`. So the one `:` of a tag separates the namespace from
//! the build (`--namespace a --build b` and `--build a:b` never share a key), and a `}` in an
//! id can neither end the tag early (which would move the build's keys into another tag's slot)
//! nor make one build's keys another's. Ids without those characters keep their plain keys.

use std::borrow::Cow;

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
    /// Test -> the estimate in ms the leader ordered the queue by, for the longest tests with
    /// one, and the field `''` -> what any other test is taken to take: auto batches hold a
    /// bounded amount of estimated time. Written by the leader before its commit, only when it
    /// has estimates (hash).
    pub estimates: String,
}

impl BuildKeys {
    /// Keys of build `build` under `namespace` (empty for none).
    pub fn new(namespace: &str, build: &str) -> Self {
        let tag = if namespace.is_empty() {
            tag_part(build).into_owned()
        } else {
            format!("{}:{}", tag_part(namespace), tag_part(build))
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
            estimates: key("estimates"),
        }
    }
}

impl BuildKeys {
    /// The KEYS of every per-test script, in the order `lua/per_test.lua` names them.
    pub fn per_test(&self, generation: &GenKeys) -> [String; PER_TEST_KEYS] {
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
            generation.estimates.clone(),
        ]
    }
}

/// How many KEYS every per-test script takes.
pub const PER_TEST_KEYS: usize = 15;

impl GenKeys {
    /// Every key a generation may own, to delete when its leader abandons it.
    pub fn all(&self) -> [&str; 11] {
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
            &self.estimates,
        ]
    }
}

/// `id` as it goes into a hash tag: `%`, `:`, `{` and `}` escaped as in a URL, so that a
/// tag's parts are told apart by its `:` and the tag ends at its own `}` only.
pub fn tag_part(id: &str) -> Cow<'_, str> {
    if !id.contains(['%', ':', '{', '}']) {
        return Cow::Borrowed(id);
    }
    let mut escaped = String::with_capacity(id.len() + 8);
    for c in id.chars() {
        match c {
            '%' => escaped.push_str("%25"),
            ':' => escaped.push_str("%3A"),
            '{' => escaped.push_str("%7B"),
            '}' => escaped.push_str("%7D"),
            c => escaped.push(c),
        }
    }
    Cow::Owned(escaped)
}

/// The key prefix of a namespace's store that outlives builds (`timings`, `history`):
/// `ciq:{<store>:<namespace>}:`, the namespace escaped as in a build's tag.
pub fn store_prefix(store: &str, namespace: &str) -> String {
    format!("ciq:{{{store}:{}}}:", tag_part(namespace))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: `--namespace a --build b` and `--build a:b` had the same keys, so the second
    /// build met the first one's list (exit 6) or its verdict.
    #[test]
    fn different_namespaces_and_builds_never_share_a_key() {
        let pairs = [
            ("a", "b"),
            ("", "a:b"),
            ("a:b", "c"),
            ("a", "b:c"),
            ("", "a%3Ab"),
            ("a}", "b"),
            ("a", "}b"),
            ("", "a}:b"),
            ("", "a"),
            ("%", "b"),
            ("%25", "b"),
            ("{a", "b"),
        ];
        let states: Vec<String> = pairs
            .iter()
            .map(|(namespace, build)| BuildKeys::new(namespace, build).state())
            .collect();
        for (i, state) in states.iter().enumerate() {
            // Redis's tag ends at the first `}`: there, each build's own tag ends whole.
            let after_tag = state
                .strip_prefix("ciq:{")
                .and_then(|rest| rest.split_once('}'))
                .map(|(_, rest)| rest);
            assert_eq!(after_tag, Some(":state"), "{state}");
            for other in &states[i + 1..] {
                assert_ne!(state, other);
            }
        }
        let stores: Vec<String> = ["", "a", "a}", "a:b", "a%3Ab"]
            .iter()
            .map(|namespace| store_prefix("history", namespace))
            .collect();
        for (i, prefix) in stores.iter().enumerate() {
            assert_eq!(prefix.matches('}').count(), 1, "{prefix}");
            assert!(!stores[i + 1..].contains(prefix), "{prefix}");
        }
    }

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
