//! Pause points: named places in the election where a fault-injection test can freeze a real
//! `ciq` process, to kill or resume it in exactly that phase.
//!
//! With `CIQ_PAUSE_AT=<point>` in its environment, a process that reaches that point prints
//! `ciq: paused at <point>` and stops itself with SIGSTOP, the first time only; SIGCONT resumes
//! it, SIGKILL kills it there. Without the variable a pause point costs one environment lookup,
//! once. Points: `elected` (lock taken, nothing listed), `staging` (after the first of several
//! staging batches), `before-commit` (everything staged, not committed).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::sys::signal::{Signal, raise};

/// Stops the process here if `CIQ_PAUSE_AT` names `point`.
pub fn reached(point: &str) {
    static PAUSE_AT: OnceLock<Option<String>> = OnceLock::new();
    static PAUSED: AtomicBool = AtomicBool::new(false);
    let wanted = PAUSE_AT.get_or_init(|| std::env::var("CIQ_PAUSE_AT").ok());
    if wanted.as_deref() == Some(point) && !PAUSED.swap(true, Ordering::Relaxed) {
        eprintln!("ciq: paused at {point}");
        let _ = raise(Signal::SIGSTOP);
    }
}
