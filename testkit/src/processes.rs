//! Real `ciq` processes: [`ciq`] finds the binary under test, [`Proc`] runs one with its output
//! in files (a pipe could fill up and block it), waits for it and signals it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use ciq::exit_code::ExitCode;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::scratch::{Scratch, repository};

/// The `ciq` binary under test: Cargo builds it beside the test binaries, one directory up
/// from them (`target/<profile>/deps/<test>` and `target/<profile>/ciq`).
pub fn ciq() -> Command {
    Command::new(ciq_binary())
}

fn ciq_binary() -> PathBuf {
    let test = std::env::current_exe().expect("the test's own path");
    let binary = test
        .parent()
        .and_then(|deps| deps.parent())
        .map(|profile| profile.join("ciq"))
        .expect("a test binary lives in target/<profile>/deps");
    assert!(
        binary.exists(),
        "no ciq binary at {}: run the tests with cargo, which builds it",
        binary.display()
    );
    binary
}

/// The fixture test command (see `tests/fixtures/record-test`).
pub fn record_test() -> String {
    repository()
        .join("tests/fixtures/record-test")
        .to_string_lossy()
        .into_owned()
}

/// A ciq process whose output goes to files (a pipe could fill up and block it).
pub struct Proc {
    pub name: String,
    child: Child,
    out: PathBuf,
    err: PathBuf,
}

/// A finished process.
#[derive(Debug)]
pub struct Output {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// Both streams, for assertion messages.
    pub fn both(&self) -> String {
        format!("--- stdout\n{}\n--- stderr\n{}", self.stdout, self.stderr)
    }
}

impl Proc {
    /// Starts `args` of `ciq` with the scratch's environment.
    pub fn spawn(name: &str, scratch: &Scratch, args: &[String]) -> Self {
        Self::spawn_with_env(name, scratch, args, &[])
    }

    /// Like [`Proc::spawn`], with extra variables for this process only.
    pub fn spawn_with_env(
        name: &str,
        scratch: &Scratch,
        args: &[String],
        env: &[(&str, &str)],
    ) -> Self {
        Self::spawn_in(name, scratch, args, env, Path::new("."))
    }

    /// Like [`Proc::spawn_with_env`], in the working directory `cwd`.
    pub fn spawn_in(
        name: &str,
        scratch: &Scratch,
        args: &[String],
        env: &[(&str, &str)],
        cwd: &Path,
    ) -> Self {
        let out = scratch.path(&format!("{name}.stdout"));
        let err = scratch.path(&format!("{name}.stderr"));
        let mut command = ciq();
        // A test's ciq must not inherit the CIQ_* settings of a ciq running this suite.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("CIQ_") {
                command.env_remove(name);
            }
        }
        let child = command
            .current_dir(cwd)
            .args(args)
            .envs(scratch.env())
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).expect("stdout file"))
            .stderr(std::fs::File::create(&err).expect("stderr file"))
            .spawn()
            .expect("spawn ciq");
        Self {
            name: name.to_owned(),
            child,
            out,
            err,
        }
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    pub fn signal(&self, signal: Signal) {
        let _ = kill(self.pid(), signal);
    }

    /// What it printed to stderr so far.
    pub fn stderr_so_far(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }

    /// Waits until stderr contains `needle`.
    pub fn wait_for_stderr(&self, needle: &str, within: Duration) {
        let deadline = Instant::now() + within;
        while !self.stderr_so_far().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "{} never printed `{needle}`; stderr:\n{}",
                self.name,
                self.stderr_so_far()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the process to end (killing it after `within`).
    pub fn wait(self, within: Duration) -> Output {
        let name = self.name.clone();
        let (output, ended) = self.wait_or_kill(within);
        assert!(
            ended,
            "{name} did not finish within {within:?}\n{}",
            output.both()
        );
        output
    }

    /// Waits for the process to end; after `within` kills it. Returns what it printed and
    /// whether it ended by itself.
    pub fn wait_or_kill(mut self, within: Duration) -> (Output, bool) {
        let deadline = Instant::now() + within;
        let status: Option<ExitStatus> = loop {
            match self.child.try_wait().expect("try_wait") {
                Some(status) => break Some(status),
                None if Instant::now() >= deadline => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break None;
                }
                None => std::thread::sleep(Duration::from_millis(20)),
            }
        };
        let output = Output {
            code: status.and_then(|s| s.code()),
            stdout: std::fs::read_to_string(&self.out).unwrap_or_default(),
            stderr: std::fs::read_to_string(&self.err).unwrap_or_default(),
        };
        (output, status.is_some())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What [`Output::code`] holds for a ciq that a SIGTERM stopped (143): it gave its tests back
/// and exited with the signal's code.
pub fn terminated() -> Option<i32> {
    Some(ExitCode::Signal(Signal::SIGTERM as i32).code())
}

/// Waits until `condition` holds.
pub fn wait_until(what: &str, within: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
