//! The capacity driver (issue 13): how many tests per second one Redis, or a cluster, carries
//! for ciq, and so how many builds of a given size.
//!
//! Many builds of many workers run at once in this one process, each worker a [`RedisQueue`]
//! with its own connection driven as `ciq run` drives it (join, then acknowledge and reserve in
//! one call, heartbeats alongside, the same poll backoff), each build with its own build id and
//! its own report ([`supervise`]), every test a no-op acknowledged as passed at once. Real
//! `ciq` processes would not do: 800 of them on a small machine measure the machine, not Redis.
//!
//! For each configuration (builds x workers per build x batch size) it prints one row: the
//! sustained tests per second of all builds, the latency of a reservation call, and Redis's CPU
//! per test and its utilisation (CPU seconds per wall second: near 1.0 the single-threaded
//! shard is saturated), with the driver's own CPU, so a reader sees whether the client, not
//! Redis, was the bottleneck.
//!
//! ```sh
//! cargo run --release --example capacity -- --builds 1,10,50 --workers 16 --batch-size 1,8
//! ```
//!
//! Without `--url` it starts its own redis-server on a free loopback port and flushes it between
//! configurations; with `--url` it only adds keys under a fresh namespace (expiring after an
//! hour) and reads INFO. It only goes through ciq's queue, so any URL ciq accepts works,
//! a cluster's included; Redis CPU is then the sum over the nodes `--cpu-of` names.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use ciq::batching::{BatchSize, Batcher, Saves};
use ciq::ci::CiIds;
use ciq::config::args::{Cli, Command};
use ciq::config::{Mode, RunConfig, report_settings};
use ciq::discovery::TestSource;
use ciq::outcome::{Outcome, TestResult};
use ciq::queue::redis::supervisor::{Ending, ReportSettings, supervise};
use ciq::queue::redis::{RedisQueue, RedisSettings};
use ciq::queue::{Ack, Queue, QueueError, Recorded, Reservation, Reserved};
use ciq::test_id::{TestId, TestList};
use ciq_testkit::RedisServer;
use clap::Parser;
use nix::sys::resource::{UsageWho, getrusage};
use redis::AsyncConnectionConfig;
use redis::aio::MultiplexedConnection;
use tokio::task::JoinSet;

/// Measures how many no-op tests per second Redis carries for ciq as builds and workers grow.
#[derive(Debug, Parser)]
struct Args {
    /// Use this Redis (any URL `ciq run --queue` takes) instead of starting one. Nothing in it
    /// is flushed: the builds' keys go under a fresh namespace and expire after an hour.
    #[arg(long)]
    url: Option<String>,
    /// The Redis nodes whose CPU (INFO cpu) is summed, comma-separated, as `host:port` or URLs:
    /// every primary of a cluster [default: the one server]
    #[arg(long, value_delimiter = ',')]
    cpu_of: Vec<String>,
    /// How many concurrent builds, one configuration each, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,10,50")]
    builds: Vec<usize>,
    /// Workers per build.
    #[arg(long, default_value_t = 16)]
    workers: usize,
    /// Tests per build.
    #[arg(long, default_value_t = 5000)]
    tests: usize,
    /// Batch sizes (`ciq run --batch-size`), one configuration each, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,8")]
    batch_size: Vec<String>,
    /// Runs of each configuration, one row each (the machine's noise shows between them).
    #[arg(long, default_value_t = 1)]
    repeat: usize,
}

/// How long the builds' keys live in a Redis given by `--url`.
const KEY_TTL: &str = "1h";

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    ensure!(
        !args.builds.contains(&0) && args.workers > 0 && args.tests > 0,
        "--builds, --workers and --tests must be at least 1"
    );
    // `rediss://` runs on rustls, which needs one crypto provider for the process.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let own = match args.url {
        Some(_) => None,
        None => Some(RedisServer::start()),
    };
    let url = match (&args.url, &own) {
        (Some(url), _) => url.clone(),
        (None, Some(server)) => server.url(),
        (None, None) => bail!("no Redis to measure"),
    };
    let nodes = if args.cpu_of.is_empty() {
        vec![url.clone()]
    } else {
        args.cpu_of.clone()
    };
    let cpu = RedisCpu::connect(&nodes).await?;
    println!(
        "capacity: {} (Redis {}), CPU of {} node(s); {} tests per build, no-op; {} cores here, shared with Redis when it is local",
        if own.is_some() {
            "a redis-server of its own"
        } else {
            "the given Redis"
        },
        cpu.version().await?,
        nodes.len(),
        args.tests,
        std::thread::available_parallelism().map_or(1, |n| n.get()),
    );
    println!();
    println!(
        "| builds x workers | batch | tests | tests/s | p50 ms | p99 ms | Redis CPU µs/test | whole build µs/test | Redis CPU util | driver CPU (cores) | machine busy (cores) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for batch in &args.batch_size {
        for &builds in &args.builds {
            for _ in 0..args.repeat {
                if let Some(server) = &own {
                    // Our own server only: each configuration starts from an empty Redis.
                    let mut conn = connection(&server.client()).await?;
                    redis::cmd("FLUSHALL").query_async::<()>(&mut conn).await?;
                }
                let shape = Shape {
                    builds,
                    workers: args.workers,
                    tests: args.tests,
                };
                let row = measure(&url, batch, shape, &cpu).await?;
                println!("{row}");
            }
        }
    }
    Ok(())
}

/// One configuration's builds.
#[derive(Debug, Clone, Copy)]
struct Shape {
    builds: usize,
    workers: usize,
    tests: usize,
}

/// The settings `ciq run --queue URL --batch-size BATCH` and `ciq report --queue URL` would use
/// (their defaults, `CIQ_*` variables included), so the driver times what ciq does, not a copy
/// of its defaults.
fn settings(
    url: &str,
    namespace: &str,
    batch: &str,
) -> Result<(RedisSettings, BatchSize, Duration, ReportSettings)> {
    let common = ["--queue", url, "--namespace", namespace, "--build", "b"];
    let run = Cli::try_parse_from(["ciq", "run"].into_iter().chain(common).chain([
        "--worker",
        "w",
        "--redis-ttl",
        KEY_TTL,
        "--batch-size",
        batch,
        // Never run: the driver lists and runs the tests itself.
        "--list-command",
        "true",
        "--",
        "true",
    ]))?;
    let Command::Run(run) = run.command else {
        bail!("`ciq run` parsed as another command");
    };
    let config = RunConfig::new(*run, &CiIds::default())?;
    let Mode::Redis { settings, .. } = config.mode else {
        bail!("`ciq run --queue` gave a local configuration");
    };
    let report = Cli::try_parse_from(["ciq", "report"].into_iter().chain(common))?;
    let Command::Report(report) = report.command else {
        bail!("`ciq report` parsed as another command");
    };
    let report = report_settings(*report, &CiIds::default())?;
    Ok((
        *settings,
        config.worker.batch_size,
        config.test_timeout.overall(),
        report,
    ))
}

/// Runs `shape`'s builds at once, every worker joined before any takes a test, and measures
/// them.
async fn measure(url: &str, batch: &str, shape: Shape, cpu: &RedisCpu) -> Result<Row> {
    let namespace = format!("capacity-{}", uuid::Uuid::new_v4().simple());
    let (settings, batch_size, test_timeout, report) = settings(url, &namespace, batch)?;
    // Ids shaped like a real suite's (their length is part of every call).
    let ids: Vec<String> = (0..shape.tests)
        .map(|n| format!("tests/unit/module_{:03}_test.py::test_case_{n:05}", n / 50))
        .collect();
    let source = Arc::new(TestSource::List(TestList::parse(
        ids.join("\n").as_bytes(),
        "the capacity driver's list",
    )?));

    let whole_start = cpu.seconds().await?;
    // Each build's report, as CI starts it: before its workers, polling until the build ends.
    let mut reports = JoinSet::new();
    for build in 0..shape.builds {
        let report = ReportSettings {
            build: format!("b{build}"),
            ..report.clone()
        };
        reports.spawn(async move { supervise(&report, |_| {}).await });
    }
    let mut joining = JoinSet::new();
    for build in 0..shape.builds {
        for worker in 0..shape.workers {
            let settings = RedisSettings {
                build: format!("b{build}"),
                ..settings.clone()
            };
            let source = Arc::clone(&source);
            joining.spawn(async move {
                let queue = RedisQueue::connect(settings, format!("w{worker}")).await?;
                queue.join(&*source).await?;
                Ok::<_, QueueError>(queue)
            });
        }
    }
    let mut queues = Vec::new();
    while let Some(joined) = joining.join_next().await {
        queues.push(joined??);
    }

    let redis_before = cpu.seconds().await?;
    let driver_before = driver_cpu()?;
    let machine_before = machine_cpu();
    let go = Instant::now();
    let mut driving = JoinSet::new();
    for queue in queues {
        driving.spawn(drive(queue, batch_size, test_timeout));
    }
    let mut driven = Vec::new();
    while let Some(done) = driving.join_next().await {
        driven.push(done??);
    }
    let wall = go.elapsed();
    let redis_cpu = cpu.seconds().await? - redis_before;
    let driver_cpu = driver_cpu()? - driver_before;
    let machine_busy = machine_before.zip(machine_cpu()).map(|(before, after)| {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        after.0.saturating_sub(before.0) as f64 / after.1.saturating_sub(before.1).max(1) as f64
            * cores as f64
    });

    // What a worker does once the build is drained, as `ciq run` does: keep its tests' times,
    // leave, read the summary. Outside the timed run, inside the whole build's cost.
    let mut leaving = JoinSet::new();
    for worker in driven.iter_mut() {
        let (queue, measured) = (Arc::clone(&worker.queue), std::mem::take(&mut worker.ran));
        leaving.spawn(async move {
            queue.record_durations(&measured).await?;
            queue
                .release(&[], ciq::timeline::Leave::Drained, None)
                .await?;
            queue.summary().await.map(|_| ())
        });
    }
    while let Some(left) = leaving.join_next().await {
        left??;
    }
    let mut passed = 0;
    while let Some(reported) = reports.join_next().await {
        let (summary, ending) = reported??;
        ensure!(
            ending == Ending::Drained,
            "a build's report ended {ending:?}"
        );
        passed += summary.counts.get(&Outcome::Passed).copied().unwrap_or(0);
    }
    let whole_cpu = cpu.seconds().await? - whole_start;

    let tests = shape.builds * shape.tests;
    ensure!(
        passed == tests && driven.iter().map(|d| d.passed).sum::<usize>() == tests,
        "the reports counted {passed} passed tests of {tests}: the run does not count"
    );
    let first = driven.iter().filter_map(|d| d.first).min();
    let last = driven.iter().filter_map(|d| d.last).max();
    let (Some(first), Some(last)) = (first, last) else {
        bail!("no test was acknowledged");
    };
    let mut latencies: Vec<Duration> = driven.into_iter().flat_map(|d| d.latencies).collect();
    latencies.sort_unstable();
    Ok(Row {
        shape,
        batch: batch.to_owned(),
        tests_per_s: tests as f64 / last.duration_since(first).as_secs_f64(),
        p50: percentile(&latencies, 0.50),
        p99: percentile(&latencies, 0.99),
        redis_us_per_test: redis_cpu * 1e6 / tests as f64,
        whole_us_per_test: whole_cpu * 1e6 / tests as f64,
        redis_util: redis_cpu / wall.as_secs_f64(),
        driver_util: driver_cpu / wall.as_secs_f64(),
        machine_busy,
    })
}

/// What one worker did in the timed run.
struct Driven {
    queue: Arc<RedisQueue>,
    /// Each test it acknowledged, with its (no) time, for the store.
    ran: Vec<(TestId, Duration)>,
    /// Tests its acknowledgements recorded as passed.
    passed: usize,
    /// Every reserve call's and acknowledge-and-reserve call's time.
    latencies: Vec<Duration>,
    /// When its first reservation was sent.
    first: Option<Instant>,
    /// When its last acknowledgement was answered.
    last: Option<Instant>,
}

/// One worker as `ciq::worker` runs it, with a runner that passes every test at once:
/// reserve, then acknowledge and reserve in one call until the build is done, heartbeating what
/// it holds meanwhile, polling with the same backoff while the queue is empty but not done.
async fn drive(
    queue: RedisQueue,
    batch_size: BatchSize,
    test_timeout: Duration,
) -> Result<Driven, QueueError> {
    let queue = Arc::new(queue);
    let held = Mutex::new(Vec::new());
    let mut driven = Driven {
        queue: Arc::clone(&queue),
        ran: Vec::new(),
        passed: 0,
        latencies: Vec::new(),
        first: None,
        last: None,
    };
    tokio::select! {
        done = take_tests(&queue, batch_size, test_timeout, &held, &mut driven) => done?,
        err = heartbeats(&queue, &held) => return Err(err),
    }
    Ok(driven)
}

/// [`drive`]'s loop without the heartbeats: what it times is only the calls that reserve.
async fn take_tests(
    queue: &RedisQueue,
    batch_size: BatchSize,
    test_timeout: Duration,
    held: &Mutex<Vec<Reserved>>,
    driven: &mut Driven,
) -> Result<(), QueueError> {
    let mut batcher = Batcher::new(batch_size, Saves::Starts, test_timeout);
    let max_poll = queue.pacing().max_poll_interval;
    let mut poll = Duration::from_millis(10);
    let sent = Instant::now();
    driven.first = Some(sent);
    let mut next = queue.reserve(batcher.next()).await?;
    driven.latencies.push(sent.elapsed());
    loop {
        match next {
            Reservation::Tests(batch) => {
                poll = Duration::from_millis(10);
                held.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone_from(&batch);
                batcher.observe(Duration::ZERO, batch.iter().map(|_| Duration::ZERO), None);
                let acks: Vec<Ack> = batch
                    .into_iter()
                    .map(|reserved| Ack {
                        result: TestResult::new(
                            reserved.id.clone(),
                            Outcome::Passed,
                            Duration::ZERO,
                            String::new(),
                        ),
                        lease: reserved.lease,
                    })
                    .collect();
                driven.ran.extend(
                    acks.iter()
                        .map(|ack| (ack.result.id.clone(), Duration::ZERO)),
                );
                let sent = Instant::now();
                let reply = queue.ack(acks, batcher.next()).await?;
                let answered = Instant::now();
                driven.latencies.push(answered - sent);
                driven.last = Some(answered);
                driven.passed += reply
                    .recorded
                    .iter()
                    .filter(|(_, recorded)| *recorded == Recorded::Final(Outcome::Passed))
                    .count();
                held.lock().unwrap_or_else(PoisonError::into_inner).clear();
                next = reply.next;
            }
            Reservation::Empty => {
                tokio::time::sleep(poll).await;
                poll = (poll * 2).min(max_poll);
                let sent = Instant::now();
                next = queue.reserve(batcher.next()).await?;
                driven.latencies.push(sent.elapsed());
            }
            Reservation::Done => return Ok(()),
            Reservation::Stale => {
                queue.rejoin().await?;
                next = queue.reserve(batcher.next()).await?;
            }
        }
    }
}

/// A worker's heartbeats, as `ciq::worker` sends them: every interval, with what it holds.
async fn heartbeats(queue: &RedisQueue, held: &Mutex<Vec<Reserved>>) -> QueueError {
    let interval = queue.pacing().heartbeat_interval;
    loop {
        tokio::time::sleep(interval).await;
        let alive = held.lock().unwrap_or_else(PoisonError::into_inner).clone();
        if let Err(err) = queue.heartbeat(&alive).await {
            return err;
        }
    }
}

/// The `at` quantile of sorted `samples` (nearest rank).
fn percentile(samples: &[Duration], at: f64) -> Duration {
    let rank = (at * samples.len() as f64).ceil() as usize;
    samples
        .get(rank.saturating_sub(1))
        .copied()
        .unwrap_or_default()
}

/// This process's CPU time so far (user and system), in seconds.
fn driver_cpu() -> Result<f64> {
    let usage = getrusage(UsageWho::RUSAGE_SELF)?;
    let seconds = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    Ok(seconds(usage.user_time()) + seconds(usage.system_time()))
}

/// Redis's CPU, summed over the nodes that serve the builds.
struct RedisCpu {
    nodes: Vec<(String, MultiplexedConnection)>,
}

impl RedisCpu {
    async fn connect(nodes: &[String]) -> Result<Self> {
        let mut connected = Vec::new();
        for node in nodes {
            let url = if node.contains("://") {
                node.clone()
            } else {
                format!("redis://{node}")
            };
            let conn = async {
                connection(&redis::Client::open(url.as_str())?).await
            }
            .await
            .with_context(|| {
                format!(
                    "cannot read INFO from {node}; name the Redis nodes (for a cluster, every primary) with --cpu-of HOST:PORT,..."
                )
            })?;
            connected.push((node.clone(), conn));
        }
        Ok(Self { nodes: connected })
    }

    /// The first node's Redis version.
    async fn version(&self) -> Result<String> {
        let Some((node, conn)) = self.nodes.first() else {
            bail!("no Redis node to read");
        };
        let info: String = redis::cmd("INFO")
            .arg("server")
            .query_async(&mut conn.clone())
            .await?;
        field(&info, "redis_version").with_context(|| format!("{node} gave no redis_version"))
    }

    /// Seconds of CPU (user and system, main thread and background ones) the nodes used so
    /// far.
    async fn seconds(&self) -> Result<f64> {
        let mut total = 0.0;
        for (node, conn) in &self.nodes {
            let info: String = redis::cmd("INFO")
                .arg("cpu")
                .query_async(&mut conn.clone())
                .await?;
            for name in ["used_cpu_sys", "used_cpu_user"] {
                total += field(&info, name)
                    .and_then(|value| value.parse::<f64>().ok())
                    .with_context(|| format!("{node}'s INFO cpu has no {name}"))?;
            }
        }
        Ok(total)
    }
}

/// A connection for the driver's own commands: FLUSHALL of 250,000 tests' keys, and INFO on a
/// busy server, take longer than the client's default limit of half a second.
async fn connection(client: &redis::Client) -> redis::RedisResult<MultiplexedConnection> {
    let config = AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_secs(60)));
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
}

/// All processes' CPU time on this machine so far, busy and in all, in clock ticks (Linux's
/// /proc/stat): whatever else runs here takes CPU from Redis and the driver, and shows as the
/// machine being busier than the two of them.
fn machine_cpu() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let ticks: Vec<u64> = stat
        .lines()
        .next()?
        .strip_prefix("cpu ")?
        .split_whitespace()
        .map(|field| field.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal (guest time is counted in user).
    let all: u64 = ticks.iter().take(8).sum();
    let idle = ticks.get(3)? + ticks.get(4)?;
    Some((all - idle, all))
}

/// The value of `name` in an INFO reply.
fn field(info: &str, name: &str) -> Option<String> {
    info.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
        .map(|value| value.trim().to_owned())
}

/// One configuration's figures.
struct Row {
    shape: Shape,
    batch: String,
    tests_per_s: f64,
    p50: Duration,
    p99: Duration,
    redis_us_per_test: f64,
    whole_us_per_test: f64,
    redis_util: f64,
    driver_util: f64,
    /// Cores busy on this machine, whoever used them.
    machine_busy: Option<f64>,
}

impl std::fmt::Display for Row {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        write!(
            f,
            "| {} x {} | {} | {} | {:.0} | {:.2} | {:.2} | {:.1} | {:.1} | {:.2} | {:.2} | {} |",
            self.shape.builds,
            self.shape.workers,
            self.batch,
            self.shape.builds * self.shape.tests,
            self.tests_per_s,
            ms(self.p50),
            ms(self.p99),
            self.redis_us_per_test,
            self.whole_us_per_test,
            self.redis_util,
            self.driver_util,
            self.machine_busy
                .map_or_else(|| "-".to_owned(), |busy| format!("{busy:.2}")),
        )
    }
}
