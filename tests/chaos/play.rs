//! [`play`]: runs one [`Plan`] with real processes (a persistent redis-server and one fault proxy
//! per worker, or a local Redis Cluster; `ciq run` workers and a `ciq report`) and collects what
//! happened.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ciq::queue::redis::keys::BuildKeys;
use nix::sys::signal::Signal;

use crate::monitor::{Findings, Monitor};
use crate::plan::{Fault, HEARTBEAT_INTERVAL, HEARTBEAT_TIMEOUT, LOCK_TTL, Plan, Start};
use ciq_testkit::{
    FaultProxy, Output, Proc, RedisCluster, RedisServer, Scratch, TestRedis, record_test,
    report_args, results,
};

/// How long every process together may take to end once the faults are injected.
const END_WITHIN: Duration = Duration::from_secs(120);

/// What a worker process went through, which decides how it may end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Only paused, cut off or disturbed: it must finish with the build's verdict.
    Survives,
    /// SIGTERM: 143, or killed by the signal before its handler was installed, or the
    /// verdict when it had already finished.
    Terminated,
    /// SIGKILL: anything.
    Killed,
    /// Joined with another test list: 6, having run nothing.
    Foreign,
}

pub struct Ended {
    pub name: String,
    pub fate: Fate,
    /// Whether it was ever targeted by a fault of its own.
    pub targeted: bool,
    pub output: Output,
    /// It ended by itself within the bound.
    pub ended: bool,
}

pub struct Played {
    pub workers: Vec<Ended>,
    pub report: Ended,
    pub results: BTreeMap<String, String>,
    /// Generations with a committed `meta`.
    pub committed: usize,
    /// Generations that were never committed yet hold more than their staged queue: served.
    pub served_uncommitted: Vec<String>,
    /// Generations the harness made the build's itself.
    pub replaced: usize,
    /// Late results discarded under a lost lease (the build's `stats`).
    pub discarded: u64,
    /// Whether a fault hit every worker at once (a dropped network or a Redis restart).
    pub global_fault: bool,
    pub monitor: Findings,
    pub scratch: Scratch,
}

/// Where the build's keys live.
enum Backend {
    /// One persistent server, reached through a fault proxy per worker.
    Node(RedisServer),
    /// A cluster, reached directly: a cluster client talks to every primary.
    Cluster(RedisCluster),
}

impl TestRedis for Backend {
    fn queue_url(&self) -> String {
        match self {
            Backend::Node(server) => server.queue_url(),
            Backend::Cluster(cluster) => cluster.queue_url(),
        }
    }

    fn conn_for(&self, key: &str) -> Box<dyn redis::ConnectionLike> {
        match self {
            Backend::Node(server) => server.conn_for(key),
            Backend::Cluster(cluster) => cluster.conn_for(key),
        }
    }
}

struct Slot {
    /// The process's name in the output.
    name: String,
    /// Its worker id (a twin shares another slot's).
    worker: String,
    /// The worker's own way to Redis, on a single server.
    proxy: Option<FaultProxy>,
    proc: Option<Proc>,
    fate: Fate,
    targeted: bool,
}

/// Every event of a plan, in time order.
enum Event {
    Fault(Fault),
    Resume(usize),
    Spawn(usize),
    Cont(usize),
    ResumeLeader,
}

pub fn play(plan: &Plan) -> Played {
    let mut server = if plan.cluster {
        Backend::Cluster(RedisCluster::start(1))
    } else {
        Backend::Node(RedisServer::start_persistent())
    };
    let scratch = Scratch::new();
    let build = format!("chaos-{}", plan.seed);
    let ids: Vec<String> = plan.tests.iter().map(|t| t.id.clone()).collect();
    let list = scratch.tests(&ids);
    let monitor = match &server {
        Backend::Node(node) => Monitor::start(node.url(), &build, HEARTBEAT_TIMEOUT),
        Backend::Cluster(cluster) => {
            Monitor::start_on_cluster(cluster.node_urls(), &build, HEARTBEAT_TIMEOUT)
        }
    };
    let report = Proc::spawn("report", &scratch, &report_args(&server, &build));
    let foreign_list = scratch.path("foreign.txt");
    let mut foreign_ids: Vec<String> = ids[1..].to_vec();
    foreign_ids.extend(["pass/foreign-1".to_owned(), "pass/foreign-2".to_owned()]);
    std::fs::write(&foreign_list, foreign_ids.join("\n") + "\n").expect("foreign list");
    let cluster_url = server.queue_url();
    let args = |name: &str, proxy: Option<&FaultProxy>, list: &std::path::Path| -> Vec<String> {
        let mut args: Vec<String> = [
            "run",
            "--queue",
            &proxy.map_or_else(|| cluster_url.clone(), FaultProxy::url),
            "--build",
            &build,
            "--worker",
            name,
            "--tests",
            &list.to_string_lossy(),
            "--batch-size",
            &plan.batch_size.to_string(),
            "--heartbeat-interval",
            &format!("{}ms", HEARTBEAT_INTERVAL.as_millis()),
            "--heartbeat-timeout",
            &format!("{}ms", HEARTBEAT_TIMEOUT.as_millis()),
            "--lock-ttl",
            &format!("{}ms", LOCK_TTL.as_millis()),
            "--max-requeues",
            "1",
            "--requeue-tolerance",
            "1",
            "--redis-timeout",
            "30s",
            "--queue-init-timeout",
            "60s",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        if let Some(ttl) = plan.redis_ttl {
            args.extend(["--redis-ttl".to_owned(), format!("{}ms", ttl.as_millis())]);
        }
        args.extend(["--".to_owned(), record_test()]);
        args
    };
    let port = match &server {
        Backend::Node(node) => Some(node.port),
        Backend::Cluster(_) => None,
    };
    let slot = |name: String, worker: String, fate: Fate| Slot {
        name,
        worker,
        proxy: port.map(FaultProxy::start),
        proc: None,
        fate,
        targeted: false,
    };
    let mut slots: Vec<Slot> = (0..plan.workers)
        .map(|n| slot(format!("w{n}"), format!("w{n}"), Fate::Survives))
        .collect();
    let spawn = |slot: &mut Slot, env: &[(&str, &str)]| {
        let list = if slot.fate == Fate::Foreign {
            &foreign_list
        } else {
            &list
        };
        let args = args(&slot.worker, slot.proxy.as_ref(), list);
        slot.proc = Some(Proc::spawn_with_env(&slot.name, &scratch, &args, env));
    };
    let mut events: Vec<(Duration, Event)> = Vec::new();
    match plan.start {
        Start::Together => {}
        Start::LeaderKilledAt(point) | Start::LeaderPausedAt(point, _) => {
            spawn(&mut slots[0], &[("CIQ_PAUSE_AT", point)]);
            slots[0].targeted = true;
            let leader = slots[0].proc.as_ref().expect("leader");
            leader.wait_for_stderr(&format!("paused at {point}"), Duration::from_secs(60));
        }
    }
    for slot in slots.iter_mut().filter(|s| s.proc.is_none()) {
        spawn(slot, &[]);
    }
    match plan.start {
        Start::Together => {}
        Start::LeaderKilledAt(_) => {
            slots[0].fate = Fate::Killed;
            signal(&slots[0], Signal::SIGKILL);
        }
        Start::LeaderPausedAt(_, resume) => events.push((resume, Event::ResumeLeader)),
    }
    for timed in &plan.faults {
        events.push((timed.at, Event::Fault(timed.fault)));
        match timed.fault {
            Fault::Kill {
                worker,
                replace_after: Some(after),
            } => events.push((timed.at + after, Event::Spawn(worker))),
            Fault::Stop { worker, pause } => events.push((timed.at + pause, Event::Cont(worker))),
            Fault::Blackhole { worker, pause } => {
                events.push((timed.at + pause, Event::Resume(worker)));
            }
            _ => {}
        }
    }
    events.sort_by_key(|(at, _)| *at);
    let started = Instant::now();
    let mut replaced = 0;
    for (at, event) in events {
        std::thread::sleep(at.saturating_sub(started.elapsed()));
        match event {
            Event::Fault(fault) => {
                if let Some(worker) = fault.worker() {
                    slots[worker].targeted = true;
                }
                match fault {
                    Fault::Kill { worker, .. } => {
                        slots[worker].fate = Fate::Killed;
                        signal(&slots[worker], Signal::SIGKILL);
                    }
                    Fault::Stop { worker, .. } => signal(&slots[worker], Signal::SIGSTOP),
                    Fault::Term { worker } => {
                        slots[worker].fate = Fate::Terminated;
                        signal(&slots[worker], Signal::SIGTERM);
                    }
                    Fault::Blackhole { worker, .. } => {
                        if let Some(proxy) = &slots[worker].proxy {
                            proxy.blackhole();
                        }
                    }
                    Fault::DropAll => {
                        for proxy in slots.iter().filter_map(|slot| slot.proxy.as_ref()) {
                            proxy.drop_connections();
                        }
                    }
                    Fault::RestartRedis => {
                        if let Backend::Node(node) = &mut server {
                            node.restart();
                        }
                    }
                    Fault::MoveSlot => {
                        if let Backend::Cluster(cluster) = &server {
                            let slot = cluster.slot_of(&BuildKeys::new("", &build).state());
                            let to = cluster.other_primary(slot);
                            cluster.migrate_slot(slot, to, Duration::from_millis(20));
                        }
                    }
                    Fault::Failover => {
                        if let Backend::Cluster(cluster) = &mut server {
                            let slot = cluster.slot_of(&BuildKeys::new("", &build).state());
                            let primary = cluster.owner(slot);
                            cluster.kill(primary);
                            // The harness reads the build's keys again only once a replica
                            // holds the slot.
                            cluster.wait_failed_over(slot, primary);
                        }
                    }
                    Fault::ReplaceGeneration => {
                        if replace_generation(&server, &build, &ids, replaced) {
                            replaced += 1;
                        }
                    }
                    Fault::ForeignList => {
                        // Once the build is ready: before, the foreign worker could lead.
                        let ready = Instant::now() + Duration::from_secs(60);
                        while ciq_testkit::ready_generation(&server, &build).is_none()
                            && Instant::now() < ready
                        {
                            std::thread::sleep(Duration::from_millis(20));
                        }
                        let mut foreign =
                            slot("foreign".to_owned(), "foreign".to_owned(), Fate::Foreign);
                        spawn(&mut foreign, &[]);
                        slots.push(foreign);
                    }
                    Fault::Twin { worker } => {
                        let id = slots[worker].worker.clone();
                        // Named by its slot: two twins of one worker keep separate outputs.
                        let name = format!("{id}-twin{}", slots.len());
                        let mut twin = slot(name, id, Fate::Survives);
                        spawn(&mut twin, &[]);
                        slots.push(twin);
                    }
                }
            }
            Event::Resume(worker) => {
                if let Some(proxy) = &slots[worker].proxy {
                    proxy.resume();
                }
            }
            Event::Cont(worker) => signal(&slots[worker], Signal::SIGCONT),
            Event::ResumeLeader => signal(&slots[0], Signal::SIGCONT),
            Event::Spawn(worker) => {
                let name = format!("{}r", slots[worker].name);
                let mut replacement = slot(name.clone(), name, Fate::Survives);
                spawn(&mut replacement, &[]);
                slots.push(replacement);
            }
        }
    }
    let deadline = Instant::now() + END_WITHIN;
    let end = |proc: Proc, fate: Fate, targeted: bool| {
        let name = proc.name.clone();
        let (output, ended) = proc.wait_or_kill(deadline.saturating_duration_since(Instant::now()));
        Ended {
            name,
            fate,
            targeted,
            output,
            ended,
        }
    };
    let workers: Vec<Ended> = slots
        .iter_mut()
        .filter_map(|slot| {
            let proc = slot.proc.take()?;
            Some(end(proc, slot.fate, slot.targeted))
        })
        .collect();
    let report = end(report, Fate::Survives, false);
    let monitor = monitor.finish();
    let keys = BuildKeys::new("", &build);
    let (committed, served_uncommitted) = generations(&server, &keys);
    let discarded: Option<u64> = redis::cmd("HGET")
        .arg(keys.stats())
        .arg("discarded")
        .query(&mut *server.conn_for(&keys.state()))
        .expect("HGET stats");
    Played {
        workers,
        report,
        results: results(&server, &build),
        committed,
        served_uncommitted,
        replaced,
        discarded: discarded.unwrap_or(0),
        global_fault: plan.faults.iter().any(|t| t.fault.is_global()),
        monitor,
        scratch,
    }
}

fn signal(slot: &Slot, signal: Signal) {
    if let Some(proc) = &slot.proc {
        proc.signal(signal);
    }
}

/// Replaces the build's generation with the same tests (see the support code), once ready.
fn replace_generation(server: &impl TestRedis, build: &str, ids: &[String], n: usize) -> bool {
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    ciq_testkit::replace_generation(server, build, &format!("replacement-{n}"), &ids)
}

/// Committed generations (those with a `meta`), and those never committed that hold anything
/// beyond a staged queue: a generation nobody should ever have read.
fn generations(server: &impl TestRedis, keys: &BuildKeys) -> (usize, Vec<String>) {
    let prefix = keys.generation("").queue.replace(":queue", "");
    let found: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query(&mut *server.conn_for(&keys.state()))
        .expect("KEYS");
    let mut by_generation: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for key in found {
        if let Some((generation, name)) = key[prefix.len()..].rsplit_once(':') {
            by_generation
                .entry(generation.to_owned())
                .or_default()
                .push(name.to_owned());
        }
    }
    let committed = by_generation
        .values()
        .filter(|names| names.iter().any(|n| n == "meta"))
        .count();
    let served = by_generation
        .iter()
        .filter(|(_, names)| names.iter().all(|n| n != "meta"))
        .filter(|(_, names)| names.iter().any(|n| n != "queue"))
        .map(|(generation, names)| format!("{generation}: {names:?}"))
        .collect();
    (committed, served)
}
