//! The reaper: one small process beside each ciq process, so ciq's test commands die with it.
//!
//! ciq starts every test command in a process group of its own and kills that group on a
//! timeout or a shutdown. A ciq that is SIGKILLed (an OOM kill, a CI agent torn down) cannot,
//! and its tests would run on as orphans, holding ports and files. So ciq starts one reaper,
//! `ciq __reaper TOKEN`, once, in a process group of its own (a kill of ciq's group leaves it
//! standing), reading a pipe whose other end only ciq holds, and tells it each test's group as
//! it starts (`+PGID`) and once it is killed (`-PGID`). When ciq dies the kernel closes the
//! pipe: the reaper kills every group it was told of, then every process whose environment holds
//! `CIQ_REAPER=TOKEN`, which ciq gives each command: one started just before ciq died, and a
//! grandchild that left its group, go too. It does the same when ciq ends normally, so no
//! test's process outlives ciq either way.
//!
//! A guard process per command did this before: the 10 MB ciq binary started again for every
//! test, which was more than half of all CPU for short tests.
//!
//! Off Linux, and in ciq's own library tests (where the running binary is not ciq), there is
//! no reaper: commands run in their own process groups, killed by ciq alone.

use std::collections::HashSet;
use std::ffi::OsString;
use std::io::{BufRead, Write};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{ChildStdin, Stdio};
use std::sync::{Mutex, OnceLock, PoisonError};

/// The hidden first argument that makes the ciq binary a reaper.
pub const SUBCOMMAND: &str = "__reaper";

/// The variable that marks a command (and everything it starts) as this ciq's.
const MARK: &str = "CIQ_REAPER";

/// How often the reaper looks again for marked processes, which may still be forking.
const SWEEPS: usize = 10;

static EXE: OnceLock<PathBuf> = OnceLock::new();
static REAPER: OnceLock<Option<Reaper>> = OnceLock::new();

/// The running reaper: its token and the pipe it reads.
struct Reaper {
    token: String,
    pipe: Mutex<Option<ChildStdin>>,
}

/// Lets ciq start a reaper, `exe` being the ciq binary; it starts with the first command.
pub fn enable(exe: PathBuf) {
    if cfg!(target_os = "linux") {
        let _ = EXE.set(exe);
    }
}

fn reaper() -> Option<&'static Reaper> {
    REAPER.get_or_init(|| start(EXE.get()?)).as_ref()
}

fn start(exe: &PathBuf) -> Option<Reaper> {
    let token = uuid::Uuid::new_v4().simple().to_string();
    let started = std::process::Command::new(exe)
        .arg(SUBCOMMAND)
        .arg(&token)
        // A ciq run by another ciq carries that one's mark: its reaper must outlive it.
        .env_remove(MARK)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .process_group(0)
        .spawn();
    match started {
        Ok(mut child) => Some(Reaper {
            token,
            pipe: Mutex::new(child.stdin.take()),
        }),
        Err(err) => {
            crate::say!(
                "ciq: warning: cannot start the process that stops tests if ciq is killed ({err}): a SIGKILLed ciq would leave its tests running"
            );
            None
        }
    }
}

/// A command running `program` with `args` in a new process group (so it can be killed whole),
/// marked as this ciq's for the reaper.
pub fn command(program: &str, args: &[String]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(program);
    command.args(args).process_group(0);
    if let Some(reaper) = reaper() {
        command.env(MARK, &reaper.token);
    }
    command
}

/// Tells the reaper that process group `pgid` holds a test command.
pub fn watch(pgid: i32) {
    tell('+', pgid);
}

/// Tells the reaper that process group `pgid` was killed: its id may be reused.
pub fn forget(pgid: i32) {
    tell('-', pgid);
}

fn tell(sign: char, pgid: i32) {
    let Some(reaper) = REAPER.get().and_then(Option::as_ref) else {
        return;
    };
    let mut pipe = reaper.pipe.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(writer) = pipe.as_mut()
        && writer
            .write_all(format!("{sign}{pgid}\n").as_bytes())
            .is_err()
    {
        *pipe = None;
        crate::say!(
            "ciq: warning: the process that stops tests if ciq is killed has ended: a SIGKILLed ciq would leave its tests running"
        );
    }
}

/// Runs the reaper (`args`: its token) until ciq's end of its input closes; returns its exit
/// code.
#[cfg(target_os = "linux")]
pub fn main(args: Vec<OsString>) -> i32 {
    use nix::sys::signal::{Signal, killpg};
    use nix::unistd::Pid;

    let Some(token) = args.first().and_then(|token| token.to_str()) else {
        eprintln!("ciq {SUBCOMMAND}: no token");
        return 2;
    };
    let mut groups = HashSet::new();
    for line in std::io::stdin().lock().split(b'\n') {
        let Ok(line) = line else {
            break;
        };
        let Some((sign, pgid)) = line.split_first() else {
            continue;
        };
        let Some(pgid) = std::str::from_utf8(pgid)
            .ok()
            .and_then(|pgid| pgid.parse::<i32>().ok())
            .filter(|pgid| *pgid > 1)
        else {
            continue;
        };
        match sign {
            b'+' => groups.insert(pgid),
            b'-' => groups.remove(&pgid),
            _ => false,
        };
    }
    for pgid in groups {
        let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
    }
    let mark = format!("{MARK}={token}");
    for _ in 0..SWEEPS {
        if kill_marked(mark.as_bytes()) == 0 {
            break;
        }
    }
    0
}

/// Kills every process whose environment holds `mark` (its children, which inherit the mark,
/// are found by the next sweep); returns how many it found.
#[cfg(target_os = "linux")]
fn kill_marked(mark: &[u8]) -> usize {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;

    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let mut found = 0;
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        if environ.split(|byte| *byte == 0).any(|var| var == mark) {
            found += 1;
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
    found
}

/// Off Linux there is no reaper.
#[cfg(not(target_os = "linux"))]
pub fn main(_args: Vec<OsString>) -> i32 {
    eprintln!("ciq {SUBCOMMAND}: only on Linux");
    2
}
