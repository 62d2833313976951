//! The seeded chaos runner: random fault schedules against real `ciq` workers, a real
//! redis-server and a real TCP fault proxy per worker, each checked against the invariants of
//! DESIGN (see `chaos/check.rs`). A schedule is a pure function of its seed, so a failure found
//! anywhere replays with `--seed S --schedules 1`.
//!
//! `cargo test --test chaos` runs [`DEFAULT_SEEDS`] (what CI runs);
//! `cargo test --release --test chaos -- --seed 1000 --schedules 200` runs 200 schedules from
//! seed 1000. One line per schedule, then exactly one line
//! `chaos: S schedules, L lost, D double-counted, V invariant violations`; the exit code is
//! non-zero when any of them is. A failing schedule keeps its scratch directory (the workers'
//! output and the run log) and says where; `--keep` keeps every schedule's. `--cover` prints, of
//! the seeds given, a few that between them draw everything (to choose [`DEFAULT_SEEDS`]).
//! `--jobs N` plays N schedules at once (a schedule mostly waits on its workers and timeouts, so
//! a long run goes N times faster on a small machine); lines then come in the order schedules
//! end. `--cluster` plays every schedule on a local Redis Cluster (three primaries with a
//! replica each), whose own faults (the build's slot moved, its primary failed over) take the
//! place of a dropped network and a restarted server.

#![expect(
    clippy::expect_used,
    reason = "a harness whose set-up fails should stop loudly"
)]

mod check;
mod monitor;
mod plan;
mod play;
mod rng;

use std::process::ExitCode;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use plan::Plan;

/// The seeds CI runs: together they draw every fault (`--cover` found them), with and without a
/// replacement worker, batches, a short `--redis-ttl`, and a leader killed and paused at both
/// pause points, plus two suites with failures; about a minute on two cores.
const DEFAULT_SEEDS: [u64; 6] = [7, 39, 42, 89, 184, 15];

fn main() -> ExitCode {
    let Some(Args {
        seeds,
        keep,
        cover,
        jobs,
        cluster,
    }) = parse(std::env::args().skip(1).collect())
    else {
        return ExitCode::SUCCESS;
    };
    if cover {
        println!(
            "chaos: seeds that draw everything: {:?}",
            plan::covering(&seeds)
        );
        return ExitCode::SUCCESS;
    }
    if seeds == DEFAULT_SEEDS && !cluster {
        let plans: Vec<Plan> = seeds.iter().map(|&seed| Plan::new(seed, false)).collect();
        let gaps = plan::coverage_gaps(&plans);
        if !gaps.is_empty() {
            println!(
                "chaos: the default seeds no longer draw: {}",
                gaps.join(", ")
            );
            return ExitCode::FAILURE;
        }
    }
    let totals = Mutex::new((0, 0, 0));
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..jobs.max(1) {
            scope.spawn(|| {
                while let Some(&seed) = seeds.get(next.fetch_add(1, Ordering::Relaxed)) {
                    // A harness that fails on one schedule fails that schedule, not the run.
                    let (lines, counts) = std::panic::catch_unwind(|| run_one(seed, keep, cluster))
                        .unwrap_or_else(|panic| {
                            let why = panic
                                .downcast_ref::<String>()
                                .cloned()
                                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                                .unwrap_or_default();
                            (
                                vec![format!("seed {seed}: the harness failed: {why}")],
                                (0, 0, 1),
                            )
                        });
                    let mut totals = totals.lock().expect("a schedule's thread panicked");
                    totals.0 += counts.0;
                    totals.1 += counts.1;
                    totals.2 += counts.2;
                    // Printed under the lock, so one schedule's lines stay together.
                    for line in lines {
                        println!("{line}");
                    }
                }
            });
        }
    });
    let (lost, double_counted, violations) =
        totals.into_inner().expect("a schedule's thread panicked");
    println!(
        "chaos: {} schedules, {lost} lost, {double_counted} double-counted, {violations} invariant violations",
        seeds.len()
    );
    if lost + double_counted + violations == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Plays and checks one schedule: its report lines, and its lost, double-counted and violation
/// counts.
fn run_one(seed: u64, keep: bool, cluster: bool) -> (Vec<String>, (usize, usize, usize)) {
    let plan = Plan::new(seed, cluster);
    let started = Instant::now();
    let played = play::play(&plan);
    let verdict = check::check(&plan, &played);
    let took = started.elapsed().as_secs_f64();
    let seen = format!(
        "{} take-over(s) seen, {} late result(s) discarded, {} generation(s) replaced",
        played.monitor.takeovers, played.discarded, played.replaced
    );
    let counts = (
        verdict.lost,
        verdict.double_counted,
        verdict.violations.len(),
    );
    let mut lines = Vec::new();
    if verdict.is_clean() {
        if keep {
            let kept = played.scratch.dir.keep();
            lines.push(format!(
                "{plan}: ok in {took:.1}s, {seen} (kept {})",
                kept.display()
            ));
        } else {
            lines.push(format!("{plan}: ok in {took:.1}s, {seen}"));
        }
    } else {
        let kept = played.scratch.dir.keep();
        lines.push(format!(
            "{plan}: FAILED in {took:.1}s, {seen}: {} lost, {} double-counted, {} violations (kept {})",
            verdict.lost,
            verdict.double_counted,
            verdict.violations.len(),
            kept.display()
        ));
        lines.extend(
            verdict
                .details
                .iter()
                .chain(&verdict.violations)
                .map(|line| format!("    {line}")),
        );
    }
    (lines, counts)
}

struct Args {
    seeds: Vec<u64>,
    /// Keep every schedule's scratch directory, not only the failing ones'.
    keep: bool,
    /// Print a few of the seeds that between them draw every fault, instead of running any.
    cover: bool,
    /// How many schedules play at once.
    jobs: usize,
    /// Play on a local Redis Cluster.
    cluster: bool,
}

/// `--seed S --schedules N` (either may be left out, else the defaults) and `--keep`. Other
/// flags `cargo test` passes to every test binary are ignored; a name filter that does not
/// match `chaos` runs nothing, as libtest would.
fn parse(args: Vec<String>) -> Option<Args> {
    let mut first = None;
    let mut count = None;
    let mut keep = false;
    let mut cover = false;
    let mut jobs = 1;
    let mut cluster = false;
    let mut filters = Vec::new();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) => (flag.to_owned(), Some(value.to_owned())),
            None => (arg.clone(), None),
        };
        let mut value = |name: &str| -> u64 {
            let value = inline.clone().or_else(|| args.next());
            value
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{name} takes a number"))
        };
        match flag.as_str() {
            "--seed" => first = Some(value("--seed")),
            "--schedules" => count = Some(value("--schedules")),
            "--jobs" => jobs = value("--jobs").try_into().unwrap_or(usize::MAX),
            "--keep" => keep = true,
            "--cluster" => cluster = true,
            "--cover" => cover = true,
            _ if arg.starts_with('-') => {}
            _ => filters.push(arg),
        }
    }
    if !filters.is_empty() && !filters.iter().any(|f| "chaos".contains(f.as_str())) {
        return None;
    }
    let seeds = match (first, count) {
        (None, None) => DEFAULT_SEEDS.to_vec(),
        (first, count) => {
            let first = first.unwrap_or(1);
            (first..first + count.unwrap_or(1)).collect()
        }
    };
    Some(Args {
        seeds,
        keep,
        cover,
        jobs,
        cluster,
    })
}
