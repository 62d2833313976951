//! [`Monitor`]: watches a build's running tests in Redis, from outside the workers, to check
//! that no test is taken over before its holder's heartbeat lapsed.
//!
//! Every few milliseconds it takes one atomic snapshot of the followed generation: each running
//! test with its lease and its score (the holder's last heartbeat, server time). A test that
//! stays in `running` while its lease changes hands was either requeued (its requeue count grew),
//! released (its holder left) or taken over; a take-over is only allowed once the old holder's
//! last heartbeat is a whole heartbeat timeout old, which the new holder's score, taken at the
//! take-over or later, must show.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use ciq::queue::redis::keys::BuildKeys;

/// One snapshot: KEYS[1] state, KEYS[2] workers, KEYS[3] running (`<lease>:<test>` entries),
/// KEYS[4] requeues; ARGV[1] the state the keys were chosen for. Nil when the state moved on.
const SNAPSHOT: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return false end
return cjson.encode({
  workers = redis.call('HGETALL', KEYS[2]),
  running = redis.call('ZRANGE', KEYS[3], 0, -1, 'WITHSCORES'),
  requeues = redis.call('HGETALL', KEYS[4]),
})
";

/// What the monitor saw.
#[derive(Debug, Default)]
pub struct Findings {
    /// Take-overs that came before the old holder's heartbeat had lapsed.
    pub early: Vec<String>,
    /// Take-overs seen.
    pub takeovers: usize,
    /// Every generation seen as ready.
    pub generations: BTreeSet<String>,
}

pub struct Monitor {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Findings>,
}

#[derive(Debug)]
struct Held {
    lease: String,
    score: i64,
    requeues: u64,
}

/// Opens a connection for the monitor; `None` while Redis cannot be reached.
type Connect = Box<dyn Fn() -> Option<Box<dyn redis::ConnectionLike>> + Send>;

impl Monitor {
    /// Watches `build` on the server at `url`.
    pub fn start(url: String, build: &str, timeout: Duration) -> Self {
        let client = redis::Client::open(url).expect("redis url");
        Self::spawn(
            Box::new(move || {
                let conn = client
                    .get_connection_with_timeout(Duration::from_secs(1))
                    .ok()?;
                Some(Box::new(conn) as Box<dyn redis::ConnectionLike>)
            }),
            build,
            timeout,
        )
    }

    /// Watches `build` on the cluster of `nodes`, following its slot as it moves.
    pub fn start_on_cluster(nodes: Vec<String>, build: &str, timeout: Duration) -> Self {
        let client = redis::cluster::ClusterClient::builder(nodes)
            .connection_timeout(Duration::from_secs(1))
            .response_timeout(Duration::from_secs(1))
            .build()
            .expect("cluster urls");
        Self::spawn(
            Box::new(move || {
                let conn = client.get_connection().ok()?;
                Some(Box::new(conn) as Box<dyn redis::ConnectionLike>)
            }),
            build,
            timeout,
        )
    }

    fn spawn(connect: Connect, build: &str, timeout: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let keys = BuildKeys::new("", build);
        let thread = std::thread::spawn({
            let stop = Arc::clone(&stop);
            move || watch(&connect, &keys, timeout.as_millis() as i64, &stop)
        });
        Self { stop, thread }
    }

    pub fn finish(self) -> Findings {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("the monitor thread")
    }
}

fn watch(connect: &Connect, keys: &BuildKeys, timeout_ms: i64, stop: &AtomicBool) -> Findings {
    let script = redis::Script::new(SNAPSHOT);
    let mut findings = Findings::default();
    let mut conn = None;
    let mut followed = String::new();
    let mut last: HashMap<String, Held> = HashMap::new();
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(10));
        if conn.is_none() {
            conn = connect();
        }
        let Some(c) = conn.as_deref_mut() else {
            continue;
        };
        let state: Option<String> = match redis::cmd("GET").arg(keys.state()).query(c) {
            Ok(state) => state,
            Err(_) => {
                conn = None;
                continue;
            }
        };
        let Some(generation) = state.as_deref().and_then(|s| s.strip_prefix("ready:")) else {
            continue;
        };
        if generation != followed {
            followed = generation.to_owned();
            findings.generations.insert(followed.clone());
            last.clear();
        }
        let gen_keys = keys.generation(generation);
        let snapshot: Option<String> = match script
            .key(keys.state())
            .key(keys.workers())
            .key(&gen_keys.running)
            .key(&gen_keys.requeues)
            .arg(state.as_deref().unwrap_or_default())
            .invoke(c)
        {
            Ok(snapshot) => snapshot,
            Err(_) => {
                conn = None;
                continue;
            }
        };
        let Some(snapshot) = snapshot else { continue };
        let snapshot: serde_json::Value = serde_json::from_str(&snapshot).expect("snapshot json");
        let workers = pairs(&snapshot["workers"]);
        let requeues = pairs(&snapshot["requeues"]);
        let mut now: HashMap<String, Held> = HashMap::new();
        for (entry, score) in pairs(&snapshot["running"]) {
            // `<lease>:<test>`; the '' entry keeps the set alive.
            let Some((lease, test)) = entry.split_once(':') else {
                continue;
            };
            let held = Held {
                lease: lease.to_owned(),
                score: score.parse::<f64>().unwrap_or(0.0) as i64,
                requeues: requeues.get(test).and_then(|n| n.parse().ok()).unwrap_or(0),
            };
            if let Some(before) = last.get(test).filter(|b| b.lease != held.lease) {
                // A lease starts with its session's first characters, then `.`; sessions are
                // the workers hash's fields, `left:<ms>:<worker>` once one left.
                let holder = before.lease.split('.').next().unwrap_or("");
                let released = workers.iter().any(|(session, seen)| {
                    !holder.is_empty() && session.starts_with(holder) && seen.starts_with("left:")
                });
                if held.requeues == before.requeues && !released {
                    findings.takeovers += 1;
                    if held.score < before.score + timeout_ms {
                        findings.early.push(format!(
                            "`{test}` taken over from lease {} (heartbeat at {}) by lease {} at {}: {} ms, under the {timeout_ms} ms timeout",
                            before.lease,
                            before.score,
                            held.lease,
                            held.score,
                            held.score - before.score
                        ));
                    }
                }
            }
            now.insert(test.to_owned(), held);
        }
        last = now;
    }
    findings
}

/// A flat Redis reply of field, value pairs (`{}` when empty, as cjson writes it).
fn pairs(value: &serde_json::Value) -> HashMap<String, String> {
    let items: Vec<String> = value
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    items
        .chunks_exact(2)
        .map(|pair| (pair[0].clone(), pair[1].clone()))
        .collect()
}
