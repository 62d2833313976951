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
    /// Test -> its resource group (`--group-map`), for the listed tests in a group; written by
    /// the leader before its commit, only when groups are used (hash). Each group's limit and
    /// held slots are meta fields ([`meta::GROUP_LIMIT`], [`meta::GROUP_HELD`]).
    pub groups: String,
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

    /// What each run of the build did and when: lines of text its scripts append
    /// (`src/timeline/record.rs` has the format), bounded, read back as a
    /// [`crate::timeline::Timeline`] (string).
    pub fn timeline(&self) -> String {
        self.key("timeline")
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
            groups: key("groups"),
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
            self.timeline(),
            generation.groups.clone(),
        ]
    }
}

/// How many KEYS every per-test script takes.
pub const PER_TEST_KEYS: usize = 17;

impl GenKeys {
    /// Every key a generation may own, to delete when its leader abandons it.
    pub fn all(&self) -> [&str; 12] {
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
            &self.groups,
        ]
    }
}

/// The fields of a generation's meta hash ([`GenKeys::meta`]), which the Lua scripts name alike
/// (a test finds each there); `docs/queue-protocol.md` says who writes each and when.
pub mod meta {
    use crate::outcome::Outcome;

    /// How many tests the generation holds (COMMIT).
    pub const TOTAL: &str = "total";
    /// How often one test may be requeued (COMMIT): the leader's budget, not each worker's.
    pub const MAX_REQUEUES: &str = "max-requeues";
    /// How many requeues the build may spend (COMMIT; a job retry adds its re-opened tests).
    pub const REQUEUE_LIMIT: &str = "requeue-limit";
    /// The build's heartbeat timeout in ms (COMMIT): the leader's, not each worker's.
    pub const HEARTBEAT_TIMEOUT_MS: &str = "heartbeat-timeout-ms";
    /// The digest of the committed list, which a follower's own list must match (COMMIT).
    pub const LIST_DIGEST: &str = "list-digest";
    /// The order the leader queued the tests in, as `--order` names it (COMMIT): every worker
    /// and the report say the build's, a random order with its seed.
    pub const ORDER: &str = "order";
    /// `1` when no test of the build had an outcome at the commit (COMMIT).
    pub const FRESH: &str = "fresh";
    /// `1` when the generation has resource groups (COMMIT): only then do the per-test
    /// scripts look tests up in `g:<gen>:groups`.
    pub const GROUPS: &str = "groups";
    /// The prefix of a group's limit, `group-limit:<group>` (COMMIT).
    pub const GROUP_LIMIT: &str = "group-limit:";
    /// The prefix of how many running entries hold a slot of a group, `group-held:<group>`:
    /// one more with each grouped hand-out, one fewer with each removal of its running entry.
    pub const GROUP_HELD: &str = "group-held:";
    /// How many requeues the build spent.
    pub const REQUEUED: &str = "requeued";
    /// When every key's TTL was last refreshed (server ms).
    pub const REFRESHED_AT: &str = "refreshed-at";
    /// When running tests were last scanned for a lapsed heartbeat (server ms).
    pub const SCANNED_AT: &str = "scanned-at";
    /// The letters of the keys that have their TTL in this generation ([`super::MADE`]).
    pub const MADE: &str = "made";
    /// Live sessions, as last counted for auto batches.
    pub const LIVE: &str = "live";
    /// When [`LIVE`] was counted (server ms).
    pub const LIVE_AT: &str = "live-at";
    /// The prefix of each final outcome's count but `passed`'s: `n:<outcome>`.
    pub const COUNT: &str = "n:";
    /// The prefix of a session's last answered request: `seq:<session>`.
    pub const SEQ: &str = "seq:";
    /// The prefix of a session's last reply: `reply:<session>`.
    pub const REPLY: &str = "reply:";
    /// The prefix of a job retry round's fields: `retry:<round>` (when it re-opened the failed
    /// tests), `retry:<round>:tests` (how many), `retry:<round>:kept` (when KEEP gave them back).
    pub const JOB_RETRY: &str = "retry:";

    /// The field that counts the tests whose final outcome is `outcome`.
    pub fn count(outcome: Outcome) -> String {
        format!("{COUNT}{outcome}")
    }
}

/// The fields of the build's `stats` hash ([`BuildKeys::stats`]).
pub mod stats {
    /// How many tests were taken over from a worker whose heartbeat lapsed.
    pub const TAKEN_OVER: &str = "taken-over";
    /// How many results came under a lease no longer current, and changed nothing.
    pub const DISCARDED: &str = "discarded";
    /// The prefix of why a worker stopped taking tests: `stopped:<session>`.
    pub const STOPPED: &str = "stopped:";

    /// The field that says why session `session` stopped taking tests.
    pub fn stopped(session: &str) -> String {
        format!("{STOPPED}{session}")
    }
}

/// The values of the `workers` hash ([`BuildKeys::workers`]): `<last seen ms>:<worker>` for a
/// session heard from, `left:<ms>:<worker>` for one that left.
pub mod workers {
    /// The prefix of a session that left.
    pub const LEFT: &str = "left:";

    /// The value of a session of `worker` that left at `at_ms` (0: before it was ever seen).
    pub fn left(at_ms: u64, worker: &str) -> String {
        format!("{LEFT}{at_ms}:{worker}")
    }
}

/// The letter each key that is never emptied adds to meta's `made` ([`meta::MADE`]) when a
/// per-test script first writes it in the generation and gives it its TTL (`per_test.lua`'s
/// `wrote`): made again later, it keeps that TTL. `docs/queue-protocol.md` has the same table.
pub const MADE: [(char, &str); 9] = [
    ('b', "g:<gen>:requeued-by"),
    ('f', "failures"),
    ('p', "g:<gen>:processed"),
    ('q', "g:<gen>:requeues"),
    ('r', "results"),
    ('s', "stats"),
    ('t', "timeline"),
    ('x', "g:<gen>:failed"),
    ('y', "g:<gen>:flaky"),
];

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

    /// Every Lua script, by file name.
    fn lua_sources() -> Vec<(String, String)> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/queue/redis/lua");
        let mut sources: Vec<(String, String)> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|entry| {
                let path = entry.unwrap().path();
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                (name, std::fs::read_to_string(&path).unwrap())
            })
            .filter(|(name, _)| name.ends_with(".lua"))
            .collect();
        sources.sort();
        sources
    }

    /// The name a key goes by in the Lua: its last part, `-` as `_`.
    fn lua_name(key: &str) -> String {
        key.rsplit(':').next().unwrap().replace('-', "_")
    }

    /// `per_test.lua` names its KEYS twice (the header and the `K` table), and `per_test` builds
    /// them: the three must agree, key by key, or a script reads one key for another.
    #[test]
    fn per_test_keys_are_in_per_test_lua_order() {
        let build = BuildKeys::new("ns", "b");
        let ours: Vec<String> = build
            .per_test(&build.generation("g"))
            .iter()
            .map(|key| lua_name(key))
            .collect();
        let lua = include_str!("lua/per_test.lua");
        let header: Vec<String> = lua
            .lines()
            .take_while(|line| line.starts_with("--"))
            .flat_map(|line| line.split("KEYS[").skip(1))
            .map(|entry| {
                let (n, name) = entry.split_once(']').unwrap();
                let name = name.split_whitespace().next().unwrap();
                (n.parse::<usize>().unwrap(), name.replace('-', "_"))
            })
            .enumerate()
            .map(|(i, (n, name))| {
                assert_eq!(n, i + 1, "per_test.lua's header skips a key before {name}");
                name
            })
            .collect();
        assert_eq!(header, ours, "per_test.lua's header");
        let table = lua
            .split("local K = {")
            .nth(1)
            .unwrap()
            .split('}')
            .next()
            .unwrap();
        let mut k: Vec<(usize, String)> = table
            .split(',')
            .filter_map(|entry| entry.split_once("= KEYS["))
            .map(|(name, n)| {
                let n = n.trim().trim_end_matches(']').parse().unwrap();
                (n, name.trim().to_owned())
            })
            .collect();
        k.sort();
        let positions: Vec<usize> = k.iter().map(|(n, _)| *n).collect();
        assert_eq!(positions, (1..=PER_TEST_KEYS).collect::<Vec<_>>());
        let names: Vec<String> = k.into_iter().map(|(_, name)| name).collect();
        assert_eq!(names, ours, "per_test.lua's K table");
    }

    /// Every `wrote(K.key, 'letter')` (and the letter a script picks for a key before it calls
    /// `wrote`) marks its key with the letter [`MADE`] gives it, and the protocol's table says
    /// the same: a letter two keys shared would leave one without its TTL.
    #[test]
    fn made_letters_are_the_table() {
        let letters: Vec<char> = MADE.iter().map(|(letter, _)| *letter).collect();
        let mut unique = letters.clone();
        unique.dedup();
        assert_eq!(unique, letters, "letters sorted and unique");
        let table: Vec<(char, String)> = MADE
            .iter()
            .map(|(letter, key)| (*letter, lua_name(key)))
            .collect();
        let mut used = Vec::new();
        for (file, source) in lua_sources() {
            // `wrote(K.key, 'l')`, and `set, letter = K.key, 'l'` before a `wrote(set, letter)`.
            for call in ["wrote(K.", "letter = K."] {
                for marked in source.split(call).skip(1) {
                    let (key, rest) = marked.split_once(',').unwrap();
                    let letter = rest.trim_start().strip_prefix('\'').unwrap();
                    let (letter, _) = letter.split_once('\'').unwrap();
                    let letter: Vec<char> = letter.chars().collect();
                    assert_eq!(letter.len(), 1, "{file}: K.{key} marked {letter:?}");
                    assert!(
                        table.contains(&(letter[0], key.to_owned())),
                        "{file}: K.{key} is marked `{}`, not the letter MADE gives it",
                        letter[0]
                    );
                    used.push(letter[0]);
                }
            }
        }
        for letter in &letters {
            assert!(used.contains(letter), "no script marks `{letter}`");
        }
        // RETRY takes the letters of the keys it empties out of `made`; KEEP, which makes them
        // again, puts them back: the same keys, by the table's letters.
        let retry = include_str!("lua/retry.lua");
        let emptied: Vec<char> = retry
            .split("string.gsub(m[4] or '', '[")
            .nth(1)
            .and_then(|rest| rest.split_once(']'))
            .unwrap()
            .0
            .chars()
            .collect();
        let keep = include_str!("lua/keep.lua");
        let remade: Vec<(char, String)> = keep
            .split("for letter, key in pairs({")
            .nth(1)
            .and_then(|rest| rest.split_once('}'))
            .unwrap()
            .0
            .split(',')
            .map(|pair| {
                let (letter, key) = pair.split_once('=').unwrap();
                (letter.trim().chars().next().unwrap(), key.trim().to_owned())
            })
            .collect();
        assert_eq!(
            remade.iter().map(|(letter, _)| *letter).collect::<Vec<_>>(),
            emptied
        );
        for pair in &remade {
            assert!(table.contains(pair), "keep.lua marks {pair:?}");
        }
        let doc = include_str!("../../../docs/queue-protocol.md");
        for (letter, key) in MADE {
            assert!(
                doc.contains(&format!("| `{letter}` | `{key}` |")),
                "docs/queue-protocol.md lacks the row of `{letter}`"
            );
        }
    }

    /// The field names Rust reads and writes are the ones the scripts use, and the protocol
    /// names them.
    #[test]
    fn hash_fields_are_the_scripts_and_the_docs() {
        let lua: String = lua_sources()
            .into_iter()
            .map(|(_, source)| source)
            .collect();
        let doc = include_str!("../../../docs/queue-protocol.md");
        let fields = [
            meta::TOTAL,
            meta::MAX_REQUEUES,
            meta::REQUEUE_LIMIT,
            meta::HEARTBEAT_TIMEOUT_MS,
            meta::LIST_DIGEST,
            meta::ORDER,
            meta::FRESH,
            meta::GROUPS,
            meta::GROUP_LIMIT,
            meta::GROUP_HELD,
            meta::REQUEUED,
            meta::REFRESHED_AT,
            meta::SCANNED_AT,
            meta::MADE,
            meta::LIVE,
            meta::LIVE_AT,
            meta::COUNT,
            meta::SEQ,
            meta::REPLY,
            meta::JOB_RETRY,
            stats::TAKEN_OVER,
            stats::DISCARDED,
            stats::STOPPED,
            workers::LEFT,
        ];
        for field in fields {
            assert!(
                lua.contains(&format!("'{field}'")),
                "no script names `{field}`"
            );
            assert!(
                doc.contains(&format!("`{field}")),
                "the protocol lacks `{field}`"
            );
        }
        assert_eq!(meta::count(crate::outcome::Outcome::Failed), "n:failed");
        assert_eq!(stats::stopped("s1"), "stopped:s1");
        assert_eq!(workers::left(0, "w"), "left:0:w");
    }
}
