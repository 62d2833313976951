//! The guard: a small process between ciq and each test command, so a worker's tests die with it.
//!
//! ciq starts every test command in a process group of its own and kills that group on a
//! timeout or a shutdown. A worker that is SIGKILLed (an OOM kill, a CI agent torn down) cannot
//! do that, and its tests would run on as orphans, holding ports and files. Linux's
//! parent-death signal only reaches a direct child, and a test command is often a shell whose
//! test is a grandchild. So ciq starts `ciq __guard PARENT PROGRAM ARGS...` as the group's
//! leader: the guard asks for SIGTERM when ciq dies, runs the command in the same group, and on
//! that signal kills the whole group. Otherwise it waits for the command and ends the same way
//! (the same exit code, or the same signal), so ciq sees exactly what the command did.
//!
//! Off Linux, and in ciq's own library tests (where the running binary is not ciq), commands
//! are started directly.
//!
//! The parent-death signal follows the thread that started the guard: ciq starts commands from
//! its runtime's worker threads, which live as long as ciq. Starting one from a thread that
//! ends earlier (tokio's `spawn_blocking` pool) would kill the command when that thread ends.

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::OnceLock;

/// The hidden first argument that makes the ciq binary a guard.
pub const SUBCOMMAND: &str = "__guard";

static GUARD: OnceLock<PathBuf> = OnceLock::new();

/// Starts test commands under the guard, `exe` being the ciq binary.
pub fn enable(exe: PathBuf) {
    if cfg!(target_os = "linux") {
        let _ = GUARD.set(exe);
    }
}

/// A command running `program` with `args` in a new process group (so it can be killed whole),
/// under the guard when it is enabled.
pub fn command(program: &str, args: &[String]) -> tokio::process::Command {
    let mut command = match GUARD.get() {
        Some(exe) => {
            let mut command = tokio::process::Command::new(exe);
            command
                .arg(SUBCOMMAND)
                .arg(std::process::id().to_string())
                .arg(program);
            command
        }
        None => tokio::process::Command::new(program),
    };
    command.args(args).process_group(0);
    command
}

/// Runs the guard (`args`: parent pid, program, its arguments); returns the exit code when it
/// did not end by the command's signal.
#[cfg(target_os = "linux")]
pub fn main(args: Vec<OsString>) -> i32 {
    use nix::sys::signal::{Signal, killpg};
    use nix::unistd::{getpgrp, getppid};
    use signal_hook::consts::{SIGCHLD, SIGHUP, SIGINT, SIGTERM};
    use std::os::unix::process::ExitStatusExt;

    let mut args = args.into_iter();
    let parent = args.next().and_then(|p| p.to_str()?.parse::<i32>().ok());
    let Some(program) = args.next() else {
        eprintln!("ciq {SUBCOMMAND}: no command");
        return 2;
    };
    // Handlers, not a blocked mask: the command inherits a process's mask but not its handlers,
    // and must start with every signal deliverable. Installed before anything can send them.
    let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP, SIGCHLD])
    else {
        return 1;
    };
    if nix::sys::prctl::set_pdeathsig(Signal::SIGTERM).is_err()
        || parent != Some(getppid().as_raw())
    {
        // ciq died before the guard could watch it (or cannot be watched): run nothing.
        return 1;
    }
    let mut child = match std::process::Command::new(&program).args(args).spawn() {
        Ok(child) => child,
        Err(err) => {
            eprintln!("ciq: cannot start `{}`: {err}", program.to_string_lossy());
            return if err.kind() == std::io::ErrorKind::NotFound {
                127
            } else {
                126
            };
        }
    };
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                if let Some(code) = status.code() {
                    return code;
                }
                if let Some(signal) = status.signal() {
                    // Ends the guard by the same signal (its default action), so ciq sees a
                    // crash as a crash; without a core dump of its own beside the command's.
                    let _ = nix::sys::resource::setrlimit(
                        nix::sys::resource::Resource::RLIMIT_CORE,
                        0,
                        0,
                    );
                    let _ = signal_hook::low_level::emulate_default_handler(signal);
                    return 128 + signal;
                }
                return 1;
            }
            Ok(None) => {}
            Err(_) => return 1,
        }
        for signal in signals.wait() {
            if signal != SIGCHLD {
                // ciq died (or the guard was told to stop): the whole group goes, guard
                // included.
                let _ = killpg(getpgrp(), Signal::SIGKILL);
                return 137;
            }
        }
    }
}

/// Off Linux there is no parent-death signal: the guard is never enabled.
#[cfg(not(target_os = "linux"))]
pub fn main(_args: Vec<OsString>) -> i32 {
    eprintln!("ciq {SUBCOMMAND}: only on Linux");
    2
}
