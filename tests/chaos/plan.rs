//! [`Plan`]: one chaos schedule drawn from a seed: the workers, a suite whose answer is known,
//! how the election starts, and the faults to inject at which moments.

use std::fmt;
use std::time::Duration;

use crate::rng::Rng;

/// Heartbeat timings of every chaos build: a worker silent for `HEARTBEAT_TIMEOUT` loses its
/// tests; faults shorter than that must cost nothing.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_millis(200);
pub const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(2);
pub const LOCK_TTL: Duration = Duration::from_secs(1);

/// How a test of the suite behaves, so its final outcome is known in advance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Always passes: `passed`.
    Pass,
    /// Always fails: `failed`, after one retry.
    Fail,
    /// Fails its first run only: `flaky`, or `passed` when the failing run's result was lost to
    /// a fault (its worker died before acknowledging it).
    Flaky,
}

#[derive(Debug, Clone)]
pub struct TestSpec {
    pub id: String,
    pub kind: Kind,
}

/// How the election goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Every worker starts at once.
    Together,
    /// Worker 0 starts alone, is elected, stops at the pause point and is SIGKILLed there
    /// once the others started.
    LeaderKilledAt(&'static str),
    /// Like `LeaderKilledAt`, but the leader is resumed (SIGCONT) after `resume`: past its
    /// lock TTL, so it must find its lock lost and follow the generation others committed.
    LeaderPausedAt(&'static str, Duration),
}

/// A fault on one worker slot, or on the whole build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// SIGKILL; a replacement worker (a fresh id, as a CI retry would start) may follow.
    Kill {
        worker: usize,
        replace_after: Option<Duration>,
    },
    /// SIGSTOP, then SIGCONT after `pause` (its test keeps running meanwhile).
    Stop { worker: usize, pause: Duration },
    /// SIGTERM: the worker gives its tests back and exits 143.
    Term { worker: usize },
    /// The worker's proxy holds all traffic for `pause`, then delivers it.
    Blackhole { worker: usize, pause: Duration },
    /// Every worker's proxy drops all its connections at once.
    DropAll,
    /// Redis killed and restarted from its append-only file.
    RestartRedis,
    /// The harness stages a new generation with the same tests and makes it the build's.
    ReplaceGeneration,
    /// Once the build is ready, a worker joins with another test list (one test dropped, two
    /// added): it must run nothing and exit 6, and the build's verdict turns red.
    ForeignList,
    /// A second process joins under the worker id of slot `worker` (a CI matrix's shared
    /// default id): both must live and leave on their own.
    Twin { worker: usize },
    /// On a cluster: the build's slot moves to another primary, key by key, while the build
    /// runs (clients meet ASK, TRYAGAIN, then MOVED).
    MoveSlot,
    /// On a cluster: the build's primary is killed and its replica takes over; writes the
    /// replica had not received are lost.
    Failover,
}

impl Fault {
    /// The worker slot the fault targets, if it targets one.
    pub fn worker(self) -> Option<usize> {
        match self {
            Fault::Kill { worker, .. }
            | Fault::Stop { worker, .. }
            | Fault::Term { worker }
            | Fault::Blackhole { worker, .. } => Some(worker),
            Fault::DropAll
            | Fault::RestartRedis
            | Fault::ReplaceGeneration
            | Fault::ForeignList
            | Fault::Twin { .. }
            | Fault::MoveSlot
            | Fault::Failover => None,
        }
    }

    /// Whether the fault silences every worker at once (a dropped network, a Redis restart).
    /// After one, a worker no fault targeted is no longer required to keep every test it
    /// reserved; the monitor's timing check still applies.
    pub fn is_global(self) -> bool {
        matches!(
            self,
            Fault::DropAll | Fault::RestartRedis | Fault::MoveSlot | Fault::Failover
        )
    }
}

/// A fault and when to inject it, from the moment every worker was started.
#[derive(Debug, Clone, Copy)]
pub struct Timed {
    pub at: Duration,
    pub fault: Fault,
}

/// One schedule.
#[derive(Debug, Clone)]
pub struct Plan {
    pub seed: u64,
    /// Worker slots; the last one is the anchor, never targeted, so the build can always finish.
    pub workers: usize,
    pub batch_size: usize,
    pub tests: Vec<TestSpec>,
    pub start: Start,
    pub faults: Vec<Timed>,
    /// A `--redis-ttl` shorter than the build, which a working build must outlive.
    pub redis_ttl: Option<Duration>,
    /// Played on a local Redis Cluster (three primaries with a replica each) instead of one
    /// server: no fault proxies (a cluster client talks to every primary), and the cluster's
    /// own faults instead of a dropped network or a restart.
    pub cluster: bool,
}

const POINTS: [&str; 2] = ["elected", "before-commit"];

/// The longest a slot's move or a failover keeps every script of the build waiting, with room
/// for a loaded machine.
const CLUSTER_STALL: Duration = Duration::from_secs(4);

/// What a set of schedules must draw between them to call itself complete (CI's default
/// seeds): every fault, a killed worker with and without a replacement, batches, and a leader
/// killed and paused at each pause point. Returns what `plans` leave out.
pub fn coverage_gaps(plans: &[Plan]) -> Vec<String> {
    let mut seen = std::collections::BTreeSet::new();
    for plan in plans {
        if plan.batch_size > 1 {
            seen.insert("batches".to_owned());
        }
        if plan.redis_ttl.is_some() {
            seen.insert("short redis ttl".to_owned());
        }
        match plan.start {
            Start::Together => {}
            Start::LeaderKilledAt(point) => {
                seen.insert(format!("leader killed at {point}"));
            }
            Start::LeaderPausedAt(point, _) => {
                seen.insert(format!("leader paused at {point}"));
            }
        }
        for timed in &plan.faults {
            seen.insert(
                match timed.fault {
                    Fault::Kill {
                        replace_after: Some(_),
                        ..
                    } => "kill, replaced",
                    Fault::Kill { .. } => "kill",
                    Fault::Stop { .. } => "stop",
                    Fault::Term { .. } => "term",
                    Fault::Blackhole { .. } => "blackhole",
                    Fault::DropAll => "drop all",
                    Fault::RestartRedis => "restart redis",
                    Fault::ReplaceGeneration => "replace generation",
                    Fault::ForeignList => "foreign list",
                    Fault::Twin { .. } => "twin",
                    Fault::MoveSlot => "move slot",
                    Fault::Failover => "failover",
                }
                .to_owned(),
            );
        }
    }
    let mut wanted: Vec<String> = [
        "batches",
        "kill, replaced",
        "kill",
        "stop",
        "term",
        "blackhole",
        "drop all",
        "restart redis",
        "replace generation",
        "foreign list",
        "twin",
        "short redis ttl",
    ]
    .map(str::to_owned)
    .into();
    for point in POINTS {
        wanted.push(format!("leader killed at {point}"));
        wanted.push(format!("leader paused at {point}"));
    }
    wanted.retain(|what| !seen.contains(what));
    wanted
}

/// A few of `seeds` that between them leave no coverage gap, short schedules first, chosen
/// greedily; empty when `seeds` cannot cover everything.
pub fn covering(seeds: &[u64]) -> Vec<u64> {
    let mut plans: Vec<Plan> = seeds.iter().map(|&seed| Plan::new(seed, false)).collect();
    plans.sort_by_key(|plan| plan.tests.len() + 4 * plan.faults.len());
    let mut chosen: Vec<Plan> = Vec::new();
    let mut gaps = coverage_gaps(&chosen).len();
    while gaps > 0 {
        let best = plans
            .iter()
            .enumerate()
            .map(|(at, plan)| {
                let mut with = chosen.clone();
                with.push(plan.clone());
                (coverage_gaps(&with).len(), at)
            })
            .min();
        match best {
            Some((left, at)) if left < gaps => {
                chosen.push(plans.remove(at));
                gaps = left;
            }
            _ => return Vec::new(),
        }
    }
    let mut seeds: Vec<u64> = chosen.iter().map(|plan| plan.seed).collect();
    seeds.sort_unstable();
    seeds
}

impl Plan {
    /// The schedule of `seed`, on one server or on a cluster.
    pub fn new(seed: u64, cluster: bool) -> Self {
        let mut rng = Rng::new(seed);
        let workers = rng.range(2, 4) as usize;
        let batch_size = [1, 1, 2, 3][rng.range(0, 3) as usize];
        let with_failures = rng.chance(50);
        // The command's exit code is its whole batch's outcome: a passing test batched with a
        // failing one fails too. Only single-test batches have a per-test known answer.
        let only_passes = batch_size > 1;
        let tests: Vec<TestSpec> = (0..rng.range(6, 24))
            .map(|n| {
                let kind = match rng.range(1, 100) {
                    _ if only_passes => Kind::Pass,
                    r if with_failures && r <= 12 => Kind::Fail,
                    r if r >= 80 => Kind::Flaky,
                    _ => Kind::Pass,
                };
                let ms = if rng.chance(10) {
                    rng.range(2000, 3000)
                } else {
                    rng.range(10, 500)
                };
                let prefix = match kind {
                    Kind::Pass => "pass",
                    Kind::Fail => "fail",
                    Kind::Flaky => "flaky",
                };
                TestSpec {
                    id: format!("{prefix}/{n:02}@{ms}"),
                    kind,
                }
            })
            .collect();
        let start = match rng.range(1, 10) {
            1 | 2 => Start::LeaderKilledAt(POINTS[rng.range(0, 1) as usize]),
            3 | 4 => {
                let resume = rng.range(LOCK_TTL.as_millis() as u64 * 3 / 2, 4000);
                Start::LeaderPausedAt(
                    POINTS[rng.range(0, 1) as usize],
                    Duration::from_millis(resume),
                )
            }
            _ => Start::Together,
        };
        let total_ms: u64 = tests.iter().map(|t| duration_ms(&t.id)).sum();
        let span = total_ms / workers as u64 + 500;
        let mut free_at: Vec<Option<u64>> = (0..workers).map(|_| Some(0)).collect();
        free_at[workers - 1] = None;
        match start {
            Start::LeaderKilledAt(_) => free_at[0] = None,
            Start::LeaderPausedAt(_, resume) => free_at[0] = Some(resume.as_millis() as u64),
            Start::Together => {}
        }
        // A replaced generation nobody works on expires under a short TTL, and a worker cut off
        // from the replacement for longer then rightly finds the build lost: not drawn together.
        let short_ttl = rng.chance(25);
        let mut times: Vec<u64> = (0..rng.range(1, 4)).map(|_| rng.range(0, span)).collect();
        times.sort_unstable();
        let mut replaced = false;
        let mut foreign = false;
        let mut failed_over = false;
        let faults: Vec<Timed> = times
            .into_iter()
            .map(|at| {
                let free: Vec<usize> = (0..workers)
                    .filter(|&w| free_at[w].is_some_and(|t| t <= at))
                    .collect();
                // Kill, Stop, Term, Blackhole, DropAll, RestartRedis, ReplaceGeneration,
                // ForeignList, Twin, MoveSlot, Failover.
                let mut weights = [15, 20, 10, 20, 15, 10, 10, 6, 8, 0, 0];
                if cluster {
                    // A cluster has one replica per primary to fail over to.
                    weights[3..6].fill(0);
                    weights[9] = 20;
                    weights[10] = if failed_over { 0 } else { 15 };
                }
                if free.is_empty() {
                    weights[..4].fill(0);
                }
                if replaced || short_ttl {
                    weights[6] = 0;
                }
                if foreign {
                    weights[7] = 0;
                }
                let kind = rng.weighted(&weights);
                let worker = if free.is_empty() {
                    0
                } else {
                    free[rng.range(0, free.len() as u64 - 1) as usize]
                };
                let fault = match kind {
                    0 => Fault::Kill {
                        worker,
                        replace_after: rng
                            .chance(50)
                            .then(|| Duration::from_millis(rng.range(300, 1500))),
                    },
                    1 => Fault::Stop {
                        worker,
                        pause: Duration::from_millis(rng.range(300, 5000)),
                    },
                    2 => Fault::Term { worker },
                    3 => Fault::Blackhole {
                        worker,
                        pause: Duration::from_millis(rng.range(300, 7000)),
                    },
                    4 => Fault::DropAll,
                    5 => Fault::RestartRedis,
                    6 => {
                        replaced = true;
                        Fault::ReplaceGeneration
                    }
                    7 => {
                        foreign = true;
                        Fault::ForeignList
                    }
                    9 => Fault::MoveSlot,
                    10 => {
                        failed_over = true;
                        Fault::Failover
                    }
                    _ => Fault::Twin {
                        worker: rng.range(0, workers as u64 - 1) as usize,
                    },
                };
                if let Some(worker) = fault.worker() {
                    free_at[worker] = match fault {
                        Fault::Stop { pause, .. } | Fault::Blackhole { pause, .. } => {
                            Some(at + pause.as_millis() as u64 + 200)
                        }
                        _ => None,
                    };
                }
                Timed {
                    at: Duration::from_millis(at),
                    fault,
                }
            })
            .collect();
        // Longer than any worker is cut off, paused or replaced: a worker that reaches Redis
        // only after a finished build's keys expired would rightly start it again.
        let redis_ttl = short_ttl.then(|| {
            let longest = faults
                .iter()
                .map(|timed: &Timed| match timed.fault {
                    Fault::Stop { pause, .. } | Fault::Blackhole { pause, .. } => pause,
                    Fault::Kill {
                        replace_after: Some(after),
                        ..
                    } => after,
                    // No script runs while a slot moves (TRYAGAIN) or a primary fails over,
                    // so no key's TTL is refreshed: a TTL shorter than that rightly loses the
                    // build.
                    Fault::MoveSlot | Fault::Failover => CLUSTER_STALL,
                    _ => Duration::ZERO,
                })
                .chain(match start {
                    Start::LeaderPausedAt(_, resume) => Some(resume),
                    _ => None,
                })
                .max()
                .unwrap_or_default();
            longest + Duration::from_millis(rng.range(1000, 2500))
        });
        Self {
            seed,
            workers,
            batch_size,
            tests,
            start,
            faults,
            redis_ttl,
            cluster,
        }
    }

    /// Tests of `kind` in the suite.
    pub fn count(&self, kind: Kind) -> usize {
        self.tests.iter().filter(|t| t.kind == kind).count()
    }

    /// The build's known answer: failed when any test always fails.
    pub fn expect_green(&self) -> bool {
        self.count(Kind::Fail) == 0
    }
}

/// The sleep an id asks the fixture for (`pass/07@250`: 250 ms).
fn duration_ms(id: &str) -> u64 {
    id.rsplit_once('@')
        .and_then(|(_, ms)| ms.parse().ok())
        .unwrap_or(0)
}

fn secs(duration: Duration) -> String {
    format!("{:.1}s", duration.as_secs_f64())
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "seed {}: {} workers, {} tests ({} fail, {} flaky), batch {}",
            self.seed,
            self.workers,
            self.tests.len(),
            self.count(Kind::Fail),
            self.count(Kind::Flaky),
            self.batch_size
        )?;
        if self.cluster {
            write!(f, ", on a cluster")?;
        }
        if let Some(ttl) = self.redis_ttl {
            write!(f, ", redis ttl {}", secs(ttl))?;
        }
        match self.start {
            Start::Together => {}
            Start::LeaderKilledAt(point) => write!(f, ", leader killed at {point}")?,
            Start::LeaderPausedAt(point, resume) => {
                write!(f, ", leader paused at {point} for {}", secs(resume))?;
            }
        }
        for timed in &self.faults {
            let at = secs(timed.at);
            match timed.fault {
                Fault::Kill {
                    worker,
                    replace_after,
                } => {
                    write!(f, "; kill w{worker} at {at}")?;
                    if let Some(after) = replace_after {
                        write!(f, " (replaced after {})", secs(after))?;
                    }
                }
                Fault::Stop { worker, pause } => {
                    write!(f, "; stop w{worker} at {at} for {}", secs(pause))?;
                }
                Fault::Term { worker } => write!(f, "; sigterm w{worker} at {at}")?,
                Fault::Blackhole { worker, pause } => {
                    write!(f, "; blackhole w{worker} at {at} for {}", secs(pause))?;
                }
                Fault::DropAll => write!(f, "; drop all connections at {at}")?,
                Fault::RestartRedis => write!(f, "; restart redis at {at}")?,
                Fault::ReplaceGeneration => write!(f, "; replace the generation at {at}")?,
                Fault::ForeignList => write!(f, "; a worker with another list at {at}")?,
                Fault::Twin { worker } => write!(f, "; a twin of w{worker} at {at}")?,
                Fault::MoveSlot => write!(f, "; move the build's slot at {at}")?,
                Fault::Failover => write!(f, "; fail the build's primary over at {at}")?,
            }
        }
        Ok(())
    }
}
