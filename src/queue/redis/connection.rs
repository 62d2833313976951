//! [`RedisConn`]: one multiplexed connection to Redis that survives drops, restarts and pauses.
//!
//! Every call is sent again with backoff on connection errors and timeouts, on a fresh
//! connection (a reconnect), until the outage has lasted `reconnect_for` (`--redis-timeout`); then the error ends the worker
//! as an infrastructure failure. An outage is one for every call of the process: it begins with
//! the first request that failed since Redis last answered, so calls made during it (a
//! heartbeat, then giving tests back) share one budget instead of each waiting it out again,
//! and every attempt is cut off where the budget ends. Sending again is safe because every script of
//! the protocol is safe to repeat after a lost reply (see `lua/`).
//!
//! The same connection speaks to a Redis Cluster: given a `redis+cluster://` (or
//! `rediss+cluster://`) URL, which may list several nodes (`redis+cluster://h1:p1,h2:p2/`), or
//! a plain URL of a node that says `cluster_enabled:1`, or one that answers MOVED, it becomes a
//! cluster connection seeded by those nodes, which follows MOVED and ASK and re-reads the slot
//! map after a failover. A connection starts from the first seed that answers, so listing
//! several nodes lets a process start while one of them is down. Every key of a build shares
//! one hash tag, so each script runs on the one primary that holds its build.

use std::future::Future;
use std::sync::PoisonError;
use std::time::Duration;

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{
    AsyncConnectionConfig, Cmd, ErrorKind, FromRedisValue, Pipeline, RedisError, RedisFuture,
    Script, ServerErrorKind, Value,
};
use tokio::sync::Mutex;
use tokio::time::{Instant, timeout_at};

use crate::queue::QueueError;

/// A self-healing connection to one Redis server or to a Redis Cluster.
pub struct RedisConn {
    client: redis::Client,
    /// The nodes a cluster client starts from, one URL each.
    seeds: Vec<String>,
    url: String,
    reconnect_for: Duration,
    timeout: Duration,
    config: AsyncConnectionConfig,
    slot: Mutex<Slot>,
    /// When the outage under way began: the start of the first request that failed since Redis
    /// last answered. Shared by every call, so `reconnect_for` bounds the outage, not each call.
    outage: std::sync::Mutex<Option<Instant>>,
}

#[derive(Default)]
struct Slot {
    epoch: u64,
    conn: Option<Link>,
    /// Set once the server is known to be a cluster node.
    cluster: Option<ClusterClient>,
}

/// The live connection: to one node, or to the cluster (which routes each command by its key's
/// slot and follows redirections itself).
#[derive(Clone)]
enum Link {
    Node(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Link {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Link::Node(conn) => conn.req_packed_command(cmd),
            Link::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Link::Node(conn) => conn.req_packed_commands(pipeline, offset, count),
            Link::Cluster(conn) => conn.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Link::Node(conn) => conn.get_db(),
            Link::Cluster(conn) => conn.get_db(),
        }
    }
}

/// Longest wait for one reply before the connection is presumed dead and replaced.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long one last attempt may take once an outage has used up its budget (a worker that gave
/// up still tries to give its tests back): long enough for a server that came back, short
/// enough that giving up stays prompt.
const LAST_ATTEMPT: Duration = Duration::from_millis(500);

impl RedisConn {
    /// Parses `url` and connects, reconnecting for up to `reconnect_for`.
    pub async fn open(url: &str, reconnect_for: Duration) -> Result<Self, QueueError> {
        let client = client(url)?;
        let shown = redact(url);
        // At least two attempts fit in the budget, so a connection that died silently is
        // replaced once before giving up.
        let timeout = RESPONSE_TIMEOUT.min((reconnect_for / 2).max(LAST_ATTEMPT));
        let conn = Self {
            client,
            seeds: cluster_seeds(url),
            url: shown,
            reconnect_for,
            timeout,
            config: AsyncConnectionConfig::new()
                .set_connection_timeout(Some(timeout))
                .set_response_timeout(Some(timeout)),
            slot: Mutex::new(Slot::default()),
            outage: std::sync::Mutex::new(None),
        };
        // A single node's answer to INFO (or its refusal) shows it is reachable and takes the
        // credentials; a cluster connection is made afresh, so it is checked with a PING.
        if is_cluster_url(url) || conn.node_says_cluster().await? {
            conn.become_cluster().await?;
            conn.reconnecting(
                |mut c| async move { redis::cmd("PING").query_async::<()>(&mut c).await },
            )
            .await?;
        }
        Ok(conn)
    }

    /// Whether the node the URL names runs in cluster mode (`INFO cluster`); a server that will
    /// not say (INFO refused) is taken as a single node until it answers MOVED.
    async fn node_says_cluster(&self) -> Result<bool, QueueError> {
        let info = self
            .reconnecting(|mut c| async move {
                redis::cmd("INFO")
                    .arg("cluster")
                    .query_async::<String>(&mut c)
                    .await
            })
            .await;
        match info {
            Ok(info) => Ok(info.lines().any(|line| line.trim() == "cluster_enabled:1")),
            Err(QueueError::Permission { .. }) => Ok(false),
            Err(err) => Err(err),
        }
    }

    /// Switches to a cluster connection seeded by the URL's nodes.
    async fn become_cluster(&self) -> Result<(), QueueError> {
        let invalid = |reason: String| QueueError::InvalidUrl {
            url: self.url.clone(),
            reason,
        };
        if self.client.get_connection_info().redis_settings().db() != 0 {
            return Err(invalid(ONLY_DB_0.to_owned()));
        }
        let cluster = ClusterClient::builder(self.seeds.iter().map(String::as_str))
            .connection_timeout(self.timeout)
            .response_timeout(self.timeout)
            .build()
            .map_err(|err| invalid(err.to_string()))?;
        let mut slot = self.slot.lock().await;
        slot.cluster = Some(cluster);
        slot.conn = None;
        Ok(())
    }

    /// Whether this is a cluster connection.
    pub async fn is_cluster(&self) -> bool {
        self.slot.lock().await.cluster.is_some()
    }

    /// The URL with its password hidden, for messages.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Runs `script` with `keys` and `args`, reconnecting on connection errors.
    pub async fn eval<T>(
        &self,
        script: &Script,
        keys: &[impl AsRef<str>],
        args: &[impl AsRef<str>],
    ) -> Result<T, QueueError>
    where
        T: FromRedisValue,
    {
        self.reconnecting(|mut conn| async move {
            let mut invocation = script.prepare_invoke();
            for key in keys {
                invocation.key(key.as_ref());
            }
            for arg in args {
                invocation.arg(arg.as_ref());
            }
            invocation.invoke_async(&mut conn).await
        })
        .await
    }

    /// Runs a plain command, reconnecting on connection errors.
    pub async fn query<T>(&self, cmd: &redis::Cmd) -> Result<T, QueueError>
    where
        T: FromRedisValue,
    {
        self.reconnecting(|mut conn| async move { cmd.query_async(&mut conn).await })
            .await
    }

    /// Runs a pipeline, reconnecting on connection errors.
    pub async fn pipeline<T>(&self, pipe: &redis::Pipeline) -> Result<T, QueueError>
    where
        T: FromRedisValue,
    {
        self.reconnecting(|mut conn| async move { pipe.query_async(&mut conn).await })
            .await
    }

    /// The server's version (`redis_version` of INFO), when it says; on a cluster, where every
    /// primary answers, the lowest of their versions.
    pub async fn server_version(&self) -> Option<String> {
        let version = |info: &str| {
            info.lines()
                .find_map(|line| line.strip_prefix("redis_version:"))
                .map(|version| version.trim().to_owned())
        };
        let info = redis::cmd("INFO").arg("server").clone();
        if self.is_cluster().await {
            let nodes: std::collections::HashMap<String, String> = self.query(&info).await.ok()?;
            return nodes
                .values()
                .filter_map(|info| version(info))
                .min_by_key(|v| version_key(v));
        }
        let info: String = self.query(&info).await.ok()?;
        version(&info)
    }

    /// The server's `maxmemory-policy` when it may evict ciq's keys (a memory limit is set and
    /// the policy is not `noeviction`); `None` when it cannot, or when the server will not say
    /// (managed Redis often refuses CONFIG).
    pub async fn eviction_policy(&self) -> Option<String> {
        let mut read = redis::pipe();
        read.cmd("CONFIG")
            .arg("GET")
            .arg("maxmemory")
            .cmd("CONFIG")
            .arg("GET")
            .arg("maxmemory-policy");
        let (limit, policy): (Vec<String>, Vec<String>) = self.pipeline(&read).await.ok()?;
        let limit: u64 = limit.get(1)?.parse().ok()?;
        let policy = policy.get(1)?;
        (limit > 0 && policy != "noeviction").then(|| policy.clone())
    }

    async fn connection(&self) -> Result<(u64, Link), RedisError> {
        let mut slot = self.slot.lock().await;
        if let Some(conn) = &slot.conn {
            return Ok((slot.epoch, conn.clone()));
        }
        let conn = match &slot.cluster {
            Some(cluster) => Link::Cluster(cluster.get_async_connection().await?),
            None => Link::Node(
                self.client
                    .get_multiplexed_async_connection_with_config(&self.config)
                    .await?,
            ),
        };
        slot.epoch += 1;
        slot.conn = Some(conn.clone());
        Ok((slot.epoch, conn))
    }

    async fn discard(&self, epoch: u64) {
        let mut slot = self.slot.lock().await;
        if slot.epoch == epoch {
            slot.conn = None;
        }
    }

    /// The outage under way, if any.
    fn lock_outage(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        self.outage.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How long the next attempt may take: a reply's timeout, cut at the end of the outage's
    /// budget (and [`LAST_ATTEMPT`] once it is spent).
    fn attempt_deadline(&self) -> Instant {
        let left = match *self.lock_outage() {
            Some(began) => self.reconnect_for.saturating_sub(began.elapsed()),
            None => self.reconnect_for,
        };
        Instant::now() + self.timeout.min(left.max(LAST_ATTEMPT))
    }

    /// Runs `op` on the live connection, reconnecting after a connection error or a timeout
    /// until the outage's budget is spent.
    async fn reconnecting<T, F, Fut>(&self, mut op: F) -> Result<T, QueueError>
    where
        F: FnMut(Link) -> Fut,
        Fut: Future<Output = Result<T, RedisError>>,
    {
        let mut delay = Duration::from_millis(50);
        loop {
            let attempt_began = Instant::now();
            let deadline = self.attempt_deadline();
            // The connection to replace after a failure: a node's. A cluster connection heals
            // itself (it reconnects to each node and re-reads the slot map from the nodes it
            // knows), and a new one could only start from the URL's nodes, which may be the
            // primary that just died.
            let (replace, result) = match timeout_at(deadline, self.connection()).await {
                Ok(Ok((epoch, conn))) => {
                    let replace = matches!(conn, Link::Node(_)).then_some(epoch);
                    let result = timeout_at(deadline, op(conn))
                        .await
                        .unwrap_or_else(|_| Err(no_reply(deadline - attempt_began)));
                    (replace, result)
                }
                Ok(Err(err)) => (None, Err(err)),
                Err(_) => (None, Err(no_reply(deadline - attempt_began))),
            };
            let err = match result {
                Ok(value) => {
                    if self.lock_outage().take().is_some() {
                        crate::say!("ciq: reconnected to Redis at `{}`", self.url);
                    }
                    return Ok(value);
                }
                Err(err) => err,
            };
            // A node of a cluster given by a plain URL: go through the cluster from now on.
            if is_redirection(&err) && !self.is_cluster().await {
                crate::say!(
                    "ciq: Redis at `{}` is a cluster node; following the cluster",
                    self.url
                );
                self.become_cluster().await?;
                continue;
            }
            if !calls_for_reconnect(&err) {
                return Err(self.refused(err));
            }
            if let Some(epoch) = replace {
                self.discard(epoch).await;
            }
            let (began, first) = {
                let mut outage = self.lock_outage();
                match *outage {
                    Some(began) => (began, false),
                    None => (*outage.insert(attempt_began), true),
                }
            };
            let left = self.reconnect_for.saturating_sub(began.elapsed());
            if left.is_zero() {
                return Err(QueueError::Unreachable {
                    url: self.url.clone(),
                    waited: began.elapsed(),
                    source: err,
                });
            }
            if first {
                crate::say!(
                    "ciq: Redis at `{}` is unavailable ({err}); retrying for up to {} more (--redis-timeout {} in all)",
                    self.url,
                    crate::human::duration(left),
                    crate::human::duration(self.reconnect_for)
                );
            }
            tokio::time::sleep(delay.min(left)).await;
            delay = (delay * 2).min(Duration::from_secs(1));
        }
    }

    /// The error for an answer that reconnecting cannot change.
    fn refused(&self, err: RedisError) -> QueueError {
        if let Some((detail, script_line)) = permission_denied(&err) {
            return QueueError::Permission {
                url: self.url.clone(),
                detail,
                script_line,
            };
        }
        if is_auth_error(&err) {
            return QueueError::Auth {
                url: self.url.clone(),
                source: err,
            };
        }
        if is_out_of_memory(&err) {
            return QueueError::OutOfMemory {
                url: self.url.clone(),
            };
        }
        if err.to_string().contains("cluster support disabled") {
            return QueueError::NotACluster {
                url: self.url.clone(),
            };
        }
        if err.to_string().contains("DB index is out of range") {
            return QueueError::InvalidUrl {
                url: self.url.clone(),
                reason: "the database number is out of range for this server".to_owned(),
            };
        }
        QueueError::Command(err)
    }
}

/// The error of an attempt that got no reply in time.
fn no_reply(waited: Duration) -> RedisError {
    RedisError::from(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("no reply within {}", crate::human::duration(waited)),
    ))
}

/// Checks that `url` is a Redis URL, without connecting: bad flags fail before anything else.
pub fn client(url: &str) -> Result<redis::Client, QueueError> {
    // `rediss://` runs on rustls, which needs one crypto provider chosen for the process.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let invalid = |reason: String| QueueError::InvalidUrl {
        url: redact(url),
        reason,
    };
    if ![
        "redis://",
        "rediss://",
        "unix://",
        "redis+unix://",
        "redis+cluster://",
        "rediss+cluster://",
    ]
    .iter()
    .any(|scheme| url.starts_with(scheme))
    {
        return Err(invalid(
            "the scheme must be redis://, rediss://, unix://, redis+cluster:// or rediss+cluster://"
                .to_owned(),
        ));
    }
    // Every seed of a cluster URL must parse, not only the one connected to first.
    let mut clients = cluster_seeds(url)
        .into_iter()
        .map(|seed| redis::Client::open(seed).map_err(|err| invalid(err.to_string())));
    let first = clients
        .next()
        .unwrap_or_else(|| Err(invalid("it names no node".to_owned())))?;
    clients.try_for_each(|client| client.map(drop))?;
    if is_cluster_url(url) && first.get_connection_info().redis_settings().db() != 0 {
        return Err(invalid(ONLY_DB_0.to_owned()));
    }
    Ok(first)
}

/// Why a cluster URL may not name a database.
const ONLY_DB_0: &str = "a Redis Cluster has only database 0: leave the number out or use /0";

/// Whether the URL asks for a cluster by its scheme.
fn is_cluster_url(url: &str) -> bool {
    url.starts_with("redis+cluster://") || url.starts_with("rediss+cluster://")
}

/// One URL per node a URL names: a `+cluster` URL may list several (`h1:p1,h2:p2`), each with
/// the URL's credentials and path, under the plain scheme; any other URL names one node.
fn cluster_seeds(url: &str) -> Vec<String> {
    let Some((scheme, rest)) = url.split_once("+cluster://") else {
        return vec![url.to_owned()];
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let (userinfo, hosts) = match authority.rsplit_once('@') {
        Some((userinfo, hosts)) => (format!("{userinfo}@"), hosts),
        None => (String::new(), authority),
    };
    hosts
        .split(',')
        .map(|host| format!("{scheme}://{userinfo}{host}{path}"))
        .collect()
}

/// A version's numbers, for comparing `6.2.14` with `7.0.15`.
fn version_key(version: &str) -> Vec<u32> {
    version
        .split('.')
        .map(|part| part.parse().unwrap_or(0))
        .collect()
}

/// A single node's answer that the key lives on another node of a cluster.
fn is_redirection(err: &RedisError) -> bool {
    matches!(
        err.kind(),
        ErrorKind::Server(ServerErrorKind::Moved | ServerErrorKind::Ask)
    )
}

fn is_auth_error(err: &RedisError) -> bool {
    err.kind() == ErrorKind::AuthenticationFailed
        || matches!(err.code(), Some("WRONGPASS" | "NOAUTH"))
}

/// Redis's own words when an ACL refused a command or key (NOPERM), from the command itself or
/// from inside a script, and where in which script (its SHA-1 and line): Redis 7.0 does not name
/// a command refused inside a script, so the script's line is read to name it
/// (`scripts::run`).
fn permission_denied(err: &RedisError) -> Option<(String, Option<(String, usize)>)> {
    if err.code() == Some("NOPERM") {
        let detail = format!("NOPERM {}", err.detail().unwrap_or_default());
        return Some((detail.trim().to_owned(), None));
    }
    let text = err.to_string();
    let at = ["NOPERM", "The user executing the script can't"]
        .iter()
        .find_map(|needle| text.find(needle))?;
    let (said, place) = text[at..]
        .split_once(" script: ")
        .unwrap_or((&text[at..], ""));
    let said = said.trim_end_matches([' ', '.', ',']);
    // `<sha>, on @user_script:<line>.`
    let place = place
        .split_once(", on @user_script:")
        .and_then(|(sha, line)| {
            let line = line.trim_end_matches('.').parse().ok()?;
            Some((sha.trim().to_owned(), line))
        });
    Some((format!("NOPERM {said}"), place))
}

/// Redis's refusal of a write once it reached `maxmemory` (with `noeviction`, or nothing left
/// to evict), from a command or from inside a script (Redis 6.2 words it `-OOM command not
/// allowed` inside the script's error).
fn is_out_of_memory(err: &RedisError) -> bool {
    err.code() == Some("OOM") || err.to_string().contains("OOM command not allowed")
}

fn calls_for_reconnect(err: &RedisError) -> bool {
    err.is_io_error()
        || err.is_timeout()
        || err.is_connection_dropped()
        || err.is_connection_refusal()
        || matches!(
            err.kind(),
            ErrorKind::Server(
                ServerErrorKind::BusyLoading
                    | ServerErrorKind::TryAgain
                    | ServerErrorKind::MasterDown
                    | ServerErrorKind::ClusterDown
            )
        )
}

/// `url` with any password replaced by `***`.
pub fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let rest = &url[scheme_end..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_owned();
    };
    let userinfo = &rest[..at];
    let user = userinfo.split_once(':').map_or("", |(user, _)| user);
    if !userinfo.contains(':') && !userinfo.is_empty() {
        // redis://PASSWORD@host is accepted by Redis clients too: hide it as well.
        return format!("{}***@{}", &url[..scheme_end], &rest[at + 1..]);
    }
    format!("{}{user}:***@{}", &url[..scheme_end], &rest[at + 1..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_hides_passwords_only() {
        assert_eq!(
            redact("redis://127.0.0.1:7000/2"),
            "redis://127.0.0.1:7000/2"
        );
        assert_eq!(redact("redis://:s3cret@host:1/0"), "redis://:***@host:1/0");
        assert_eq!(
            redact("rediss://ci:s3cret@host/0"),
            "rediss://ci:***@host/0"
        );
        assert_eq!(redact("redis://s3cret@host"), "redis://***@host");
        assert_eq!(
            redact("redis+cluster://ci:s3cret@h1:1,h2:2/0"),
            "redis+cluster://ci:***@h1:1,h2:2/0"
        );
    }

    #[test]
    fn a_cluster_url_names_each_seed_with_its_credentials() {
        assert_eq!(
            cluster_seeds("rediss+cluster://ci:pw@h1:7000,h2:7001/0"),
            ["rediss://ci:pw@h1:7000/0", "rediss://ci:pw@h2:7001/0"]
        );
        assert_eq!(
            cluster_seeds("redis+cluster://h1:7000"),
            ["redis://h1:7000"]
        );
        assert_eq!(cluster_seeds("redis://h:1/0"), ["redis://h:1/0"]);
    }
}
