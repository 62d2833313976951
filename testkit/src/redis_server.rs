//! [`RedisServer`]: a real `redis-server` on a free loopback port, owned by one test.
//!
//! Tests never touch a shared Redis: each starts its own server in a temporary directory, and
//! may stop, pause or restart it to inject a fault. The server dies with the test.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A redis-server process started for one test.
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
    persistent: bool,
    password: Option<String>,
}

/// A free loopback port (the OS picks one; it is released just before use).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local addr").port()
}

impl RedisServer {
    /// A server that keeps nothing on disk.
    pub fn start() -> Self {
        Self::start_inner(false, None)
    }

    /// A server with `appendonly yes`, whose data survives [`RedisServer::restart`].
    pub fn start_persistent() -> Self {
        Self::start_inner(true, None)
    }

    /// A server that requires `password`; [`RedisServer::url`] carries it.
    pub fn start_with_password(password: &str) -> Self {
        Self::start_inner(false, Some(password.to_owned()))
    }

    fn start_inner(persistent: bool, password: Option<String>) -> Self {
        let dir = tempfile::tempdir().expect("temp dir for redis");
        let mut server = Self {
            port: free_port(),
            child: None,
            dir,
            persistent,
            password,
        };
        // The port was free a moment ago; another test may have taken it since: try another.
        for _ in 0..5 {
            if server.spawn() {
                return server;
            }
            server.port = free_port();
        }
        panic!("redis-server would not start on any of 5 free ports");
    }

    /// Starts the server on its port; false when it exited at once (the port was taken).
    fn spawn(&mut self) -> bool {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", if self.persistent { "yes" } else { "no" }])
            .args(["--appendfsync", "always"])
            .args(
                self.password
                    .iter()
                    .flat_map(|p| ["--requirepass", p.as_str()]),
            )
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (apt-get install redis-server)");
        self.child = Some(child);
        self.wait_ready()
    }

    /// Waits until this test's own server answers (its pid, not whatever holds the port) and has
    /// loaded its data (a restart reads its append-only file, answering LOADING meanwhile);
    /// false when it exited (its port was taken), so that nothing ever talks to another test's
    /// server on that port.
    fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let Some(child) = self.child.as_mut() else {
                return false;
            };
            if !matches!(child.try_wait(), Ok(None)) {
                self.child = None;
                return false;
            }
            let ours = format!("process_id:{}", child.id());
            // INFO's default sections hold both the server's pid and `loading`.
            let info = self
                .client()
                .get_connection()
                .and_then(|mut c| redis::cmd("INFO").query::<String>(&mut c));
            let has = |info: &str, wanted: &str| info.lines().any(|line| line.trim() == wanted);
            if info.is_ok_and(|info| has(&info, &ours) && has(&info, "loading:0")) {
                return true;
            }
            assert!(
                Instant::now() < deadline,
                "redis-server on port {} did not start",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `redis://127.0.0.1:PORT/0`.
    pub fn url(&self) -> String {
        match &self.password {
            Some(password) => format!("redis://:{password}@127.0.0.1:{}/0", self.port),
            None => format!("redis://127.0.0.1:{}/0", self.port),
        }
    }

    /// A client of this server.
    pub fn client(&self) -> redis::Client {
        redis::Client::open(self.url()).expect("valid url")
    }

    /// A blocking connection, for inspecting and editing state.
    pub fn conn(&self) -> redis::Connection {
        self.client()
            .get_connection()
            .expect("connect to test redis")
    }

    /// Stops the server at once (SIGKILL: nothing flushed beyond what appendfsync wrote).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Pauses the server (SIGSTOP): its connections stay open and nothing answers, as with a
    /// hung host. [`RedisServer::resume`] wakes it; a paused server is still killed on drop.
    pub fn pause(&self) {
        self.signal(nix::sys::signal::Signal::SIGSTOP);
    }

    /// Wakes a paused server (SIGCONT).
    pub fn resume(&self) {
        self.signal(nix::sys::signal::Signal::SIGCONT);
    }

    fn signal(&self, signal: nix::sys::signal::Signal) {
        let child = self.child.as_ref().expect("the server runs");
        let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("a pid"));
        nix::sys::signal::kill(pid, signal).expect("signal redis-server");
    }

    /// Kills the server and starts it again on the same port and directory: with persistence
    /// the data comes back, without it everything is gone.
    pub fn restart(&mut self) {
        self.kill();
        assert!(
            self.spawn(),
            "redis-server could not restart on port {}: taken meanwhile",
            self.port
        );
    }

    /// Calls per command from INFO commandstats.
    pub fn command_stats(&self) -> Vec<(String, u64)> {
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query(&mut self.conn())
            .expect("INFO commandstats");
        info.lines()
            .filter_map(|line| {
                let (name, rest) = line.strip_prefix("cmdstat_")?.split_once(':')?;
                let calls = rest
                    .strip_prefix("calls=")?
                    .split(',')
                    .next()?
                    .parse()
                    .ok()?;
                Some((name.to_owned(), calls))
            })
            .collect()
    }
}

/// Where a test's `--queue` points: one server, or a cluster.
pub trait QueueUrl {
    /// The URL ciq is given.
    fn queue_url(&self) -> String;
}

impl QueueUrl for RedisServer {
    fn queue_url(&self) -> String {
        self.url()
    }
}

/// A test's Redis, one server or a cluster: the URL ciq is given, and connections for reading
/// and editing a build's keys.
pub trait TestRedis {
    /// The URL ciq is given.
    fn queue_url(&self) -> String;
    /// A plain connection to the node holding `key` (a transaction works on it).
    fn conn_for(&self, key: &str) -> Box<dyn redis::ConnectionLike>;
}

impl TestRedis for RedisServer {
    fn queue_url(&self) -> String {
        self.url()
    }

    fn conn_for(&self, _key: &str) -> Box<dyn redis::ConnectionLike> {
        Box::new(self.conn())
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
