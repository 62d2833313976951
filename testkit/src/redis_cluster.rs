//! [`RedisCluster`]: a real Redis Cluster of local `redis-server` processes, owned by one test.
//!
//! Three primaries (and a replica each when asked) on free loopback ports, joined with
//! `redis-cli --cluster create`; a test may move a slot to another primary while a build runs,
//! or kill a primary so that its replica takes over.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::redis_server::{TestRedis, free_port};

/// How long a node may be silent before the others count it failed; short, so that a failover
/// takes a few seconds.
const NODE_TIMEOUT_MS: u32 = 1000;

/// One `redis-server --cluster-enabled yes`.
struct Node {
    port: u16,
    /// Its TLS port, on a cluster that serves TLS beside plain TCP.
    tls_port: Option<u16>,
    child: Option<Child>,
}

/// A local Redis Cluster started for one test; its nodes die with it.
pub struct RedisCluster {
    nodes: Vec<Node>,
    _dir: tempfile::TempDir,
}

/// A free port, other than `taken`, whose cluster bus port (port + 10000) is free too, both
/// below the range the OS hands out for outgoing connections (32768 and up), where a busy
/// machine's client sockets would take a bus port between the check and the node's start.
fn free_cluster_port(taken: &[u16]) -> u16 {
    loop {
        // The OS's pick, folded into 20000..22767: a different start for each call.
        let port = 20_000 + free_port() % 2_768;
        let free = |port: u16| TcpListener::bind(("127.0.0.1", port)).is_ok();
        if !taken.contains(&port) && free(port) && free(port + 10_000) {
            return port;
        }
    }
}

impl RedisCluster {
    /// Three primaries, each with `replicas` replicas.
    pub fn start(replicas: usize) -> Self {
        Self::start_with(replicas, None)
    }

    /// Three primaries that also serve TLS, on ports of their own, with the certificate
    /// `server.crt` (key `server.key`, CA `ca.crt`) of directory `certs`; the cluster's own
    /// traffic is TLS too. A TLS client is told the TLS ports ([`RedisCluster::tls_url`]); the
    /// harness keeps to plain TCP.
    pub fn start_tls(certs: &Path) -> Self {
        Self::start_with(0, Some(certs))
    }

    fn start_with(replicas: usize, certs: Option<&Path>) -> Self {
        for _ in 0..3 {
            if let Some(cluster) = Self::try_start(replicas, certs) {
                return cluster;
            }
        }
        panic!("a local Redis Cluster would not start three times in a row");
    }

    fn try_start(replicas: usize, certs: Option<&Path>) -> Option<Self> {
        let dir = tempfile::tempdir().expect("temp dir for the cluster");
        let mut nodes: Vec<Node> = Vec::new();
        for _ in 0..3 * (1 + replicas) {
            let mut taken: Vec<u16> = nodes.iter().map(|n| n.port).collect();
            taken.extend(nodes.iter().filter_map(|n| n.tls_port));
            let port = free_cluster_port(&taken);
            taken.push(port);
            let tls_port = certs.map(|_| free_cluster_port(&taken));
            let tls_args: Vec<String> = match (certs, tls_port) {
                (Some(certs), Some(tls_port)) => {
                    let file = |name: &str| certs.join(name).to_string_lossy().into_owned();
                    vec![
                        "--tls-port".to_owned(),
                        tls_port.to_string(),
                        "--tls-cert-file".to_owned(),
                        file("server.crt"),
                        "--tls-key-file".to_owned(),
                        file("server.key"),
                        "--tls-ca-cert-file".to_owned(),
                        file("ca.crt"),
                        "--tls-auth-clients".to_owned(),
                        "no".to_owned(),
                        "--tls-cluster".to_owned(),
                        "yes".to_owned(),
                        "--tls-replication".to_owned(),
                        "yes".to_owned(),
                    ]
                }
                _ => Vec::new(),
            };
            let node_dir = dir.path().join(port.to_string());
            std::fs::create_dir(&node_dir).expect("a node's directory");
            let child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--cluster-enabled", "yes"])
                .args(["--cluster-node-timeout", &NODE_TIMEOUT_MS.to_string()])
                .args(["--save", "", "--appendonly", "no"])
                // A replica syncs at once (the default waits 5 s for others to share the
                // transfer), so one is ready to take over within the test.
                .args(["--repl-diskless-sync-delay", "0"])
                .args(&tls_args)
                .arg("--dir")
                .arg(&node_dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server must be installed (apt-get install redis-server)");
            nodes.push(Node {
                port,
                tls_port,
                child: Some(child),
            });
        }
        let mut cluster = Self { nodes, _dir: dir };
        for i in 0..cluster.nodes.len() {
            if !cluster.wait_answers(i) {
                return None;
            }
        }
        let created = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(
                cluster
                    .nodes
                    .iter()
                    .map(|n| format!("127.0.0.1:{}", n.port)),
            )
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("redis-cli must be installed with redis-server");
        if !created.success() || !cluster.all_running() {
            return None;
        }
        cluster.wait_healthy();
        cluster.wait_replicas_synced();
        Some(cluster)
    }

    /// Whether every node started is still running.
    fn all_running(&mut self) -> bool {
        self.nodes.iter_mut().all(|node| {
            node.child
                .as_mut()
                .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
        })
    }

    /// Waits until node `i` answers PING; false when it exited (its port was taken).
    fn wait_answers(&mut self, i: usize) -> bool {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(child) = self.nodes[i].child.as_mut()
                && !matches!(child.try_wait(), Ok(None))
            {
                return false;
            }
            let ping = self
                .node_conn(self.nodes[i].port)
                .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c));
            if ping.is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Waits until every live node says the cluster is ok and agrees on which primary holds
    /// every slot.
    pub fn wait_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let live: Vec<u16> = self
                .nodes
                .iter()
                .filter(|n| n.child.is_some())
                .map(|n| n.port)
                .collect();
            let ok = live.iter().all(|&port| {
                self.node_conn(port)
                    .and_then(|mut c| redis::cmd("CLUSTER").arg("INFO").query::<String>(&mut c))
                    .is_ok_and(|info| info.contains("cluster_state:ok"))
            });
            let owners: Vec<Option<u16>> = live.iter().map(|&p| self.owner_seen_by(p, 0)).collect();
            if ok && owners.windows(2).all(|w| w[0] == w[1]) && owners[0].is_some() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the local cluster did not become healthy: {}",
                self.describe(&live)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until every replica has its primary's data: a replica that never synced will not
    /// take over.
    fn wait_replicas_synced(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        for node in &self.nodes {
            loop {
                let info = self.node_conn(node.port).and_then(|mut c| {
                    redis::cmd("INFO")
                        .arg("replication")
                        .query::<String>(&mut c)
                });
                let synced = info.is_ok_and(|info| {
                    info.contains("role:master") || info.contains("master_link_status:up")
                });
                if synced {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "replica {} did not sync",
                    node.port
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// What each of `ports` says of the cluster, for a failure message.
    fn describe(&self, ports: &[u16]) -> String {
        ports
            .iter()
            .map(|&port| {
                let nodes = self
                    .node_conn(port)
                    .and_then(|mut c| redis::cmd("CLUSTER").arg("NODES").query::<String>(&mut c));
                format!("\n{port} sees: {nodes:?}")
            })
            .collect()
    }

    /// A `redis+cluster://` URL listing every node as a seed, as a CI configuration would, so a
    /// process starting while one node is down still finds the cluster.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        format!("redis+cluster://{}", hosts.join(","))
    }

    /// A `rediss+cluster://` URL listing every node's TLS port, on a cluster started with
    /// [`RedisCluster::start_tls`].
    pub fn tls_url(&self) -> String {
        let hosts: Vec<String> = self
            .nodes
            .iter()
            .filter_map(|n| n.tls_port)
            .map(|port| format!("127.0.0.1:{port}"))
            .collect();
        format!("rediss+cluster://{}", hosts.join(","))
    }

    /// The `redis://` URL of every live node.
    pub fn node_urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|n| n.child.is_some())
            .map(|n| format!("redis://127.0.0.1:{}", n.port))
            .collect()
    }

    /// A plain `redis://` URL of one primary, for ciq to find out it is a cluster.
    pub fn plain_url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.nodes[0].port)
    }

    fn node_conn(&self, port: u16) -> redis::RedisResult<redis::Connection> {
        redis::Client::open(format!("redis://127.0.0.1:{port}/0"))?
            .get_connection_with_timeout(Duration::from_secs(2))
    }

    /// A connection that follows the cluster, for inspecting state.
    pub fn conn(&self) -> redis::cluster::ClusterConnection {
        redis::cluster::ClusterClient::new(self.node_urls())
            .expect("cluster client")
            .get_connection()
            .expect("connect to the local cluster")
    }

    /// Runs `cmd` on every live node (ACL users, for one, are each node's own).
    pub fn on_every_node(&self, cmd: &redis::Cmd) {
        for node in self.nodes.iter().filter(|n| n.child.is_some()) {
            let mut conn = self.node_conn(node.port).expect("a live node");
            cmd.exec(&mut conn)
                .unwrap_or_else(|err| panic!("{cmd:?} on {}: {err}", node.port));
        }
    }

    /// The slot of `key`.
    pub fn slot_of(&self, key: &str) -> u16 {
        let mut conn = self.node_conn(self.live_port()).expect("a live node");
        redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query(&mut conn)
            .expect("CLUSTER KEYSLOT")
    }

    fn live_port(&self) -> u16 {
        self.nodes
            .iter()
            .find(|n| n.child.is_some())
            .map(|n| n.port)
            .expect("a live node")
    }

    /// The port of the primary that node `seen_by` says holds `slot`.
    fn owner_seen_by(&self, seen_by: u16, slot: u16) -> Option<u16> {
        let mut conn = self.node_conn(seen_by).ok()?;
        let ranges: Vec<redis::Value> = redis::cmd("CLUSTER").arg("SLOTS").query(&mut conn).ok()?;
        ranges.iter().find_map(|range| {
            let redis::Value::Array(fields) = range else {
                return None;
            };
            let start: u16 = redis::from_redis_value_ref(fields.first()?).ok()?;
            let end: u16 = redis::from_redis_value_ref(fields.get(1)?).ok()?;
            let redis::Value::Array(primary) = fields.get(2)? else {
                return None;
            };
            let port: u16 = redis::from_redis_value_ref(primary.get(1)?).ok()?;
            (start..=end).contains(&slot).then_some(port)
        })
    }

    /// The port of the primary holding `slot`.
    pub fn owner(&self, slot: u16) -> u16 {
        self.owner_seen_by(self.live_port(), slot)
            .expect("a primary holds every slot")
    }

    /// Another primary than the one holding `slot`.
    pub fn other_primary(&self, slot: u16) -> u16 {
        let owner = self.owner(slot);
        let primaries: Vec<u16> = (0..16384u16)
            .step_by(1000)
            .filter_map(|s| self.owner_seen_by(owner, s))
            .collect();
        primaries
            .into_iter()
            .find(|&p| p != owner)
            .expect("three primaries")
    }

    fn node_id(&self, port: u16) -> String {
        let mut conn = self.node_conn(port).expect("a live node");
        redis::cmd("CLUSTER")
            .arg("MYID")
            .query(&mut conn)
            .expect("CLUSTER MYID")
    }

    /// Moves `slot` to the primary on port `to` the way `redis-cli --cluster reshard` does
    /// (IMPORTING, MIGRATING, MIGRATE key by key, then the new owner), pausing `pause` between
    /// keys so that clients meet ASK redirections and TRYAGAIN while it is under way.
    pub fn migrate_slot(&self, slot: u16, to: u16, pause: Duration) {
        let from = self.owner(slot);
        let (from_id, to_id) = (self.node_id(from), self.node_id(to));
        let mut source = self.node_conn(from).expect("the slot's primary");
        let mut target = self.node_conn(to).expect("the new primary");
        let setslot = |conn: &mut redis::Connection, state: &str, id: &str| {
            redis::cmd("CLUSTER")
                .arg("SETSLOT")
                .arg(slot)
                .arg(state)
                .arg(id)
                .query::<()>(conn)
                .unwrap_or_else(|err| panic!("CLUSTER SETSLOT {slot} {state}: {err}"));
        };
        setslot(&mut target, "IMPORTING", &from_id);
        setslot(&mut source, "MIGRATING", &to_id);
        loop {
            let keys: Vec<String> = redis::cmd("CLUSTER")
                .arg("GETKEYSINSLOT")
                .arg(slot)
                .arg(1)
                .query(&mut source)
                .expect("CLUSTER GETKEYSINSLOT");
            let Some(key) = keys.first() else { break };
            redis::cmd("MIGRATE")
                .arg("127.0.0.1")
                .arg(to)
                .arg(key)
                .arg(0)
                .arg(5000)
                .query::<()>(&mut source)
                .unwrap_or_else(|err| panic!("MIGRATE {key}: {err}"));
            std::thread::sleep(pause);
        }
        setslot(&mut target, "NODE", &to_id);
        setslot(&mut source, "NODE", &to_id);
        for node in self.nodes.iter().filter(|n| n.child.is_some()) {
            if node.port != from && node.port != to {
                let mut conn = self.node_conn(node.port).expect("a live node");
                let _ = redis::cmd("CLUSTER")
                    .arg("SETSLOT")
                    .arg(slot)
                    .arg("NODE")
                    .arg(&to_id)
                    .query::<()>(&mut conn);
            }
        }
    }

    /// Waits until a replica holds `slot` in place of the killed primary on port `old`, and the
    /// cluster is healthy again.
    pub fn wait_failed_over(&self, slot: u16, old: u16) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            self.wait_healthy();
            if self.owner(slot) != old {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no replica took slot {slot} over"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the primary on port `port` at once (SIGKILL: what its replica had not received is
    /// lost).
    pub fn kill(&mut self, port: u16) {
        if let Some(node) = self.nodes.iter_mut().find(|n| n.port == port)
            && let Some(mut child) = node.child.take()
        {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl TestRedis for RedisCluster {
    fn queue_url(&self) -> String {
        self.url()
    }

    /// Retried for a while: right after a failover a node may still name the dead primary.
    fn conn_for(&self, key: &str) -> Box<dyn redis::ConnectionLike> {
        let slot = self.slot_of(key);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            // Every live node's view, the most common first: one may still name a dead primary.
            let views: Vec<u16> = self
                .nodes
                .iter()
                .filter(|n| n.child.is_some())
                .filter_map(|n| self.owner_seen_by(n.port, slot))
                .collect();
            let mut named = views.clone();
            named.sort_unstable();
            named.dedup();
            named
                .sort_by_key(|port| std::cmp::Reverse(views.iter().filter(|v| *v == port).count()));
            if let Some(conn) = named.iter().find_map(|&port| self.node_conn(port).ok()) {
                return Box::new(conn);
            }
            assert!(
                Instant::now() < deadline,
                "no primary of slot {slot} answers (named: {named:?})"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}
