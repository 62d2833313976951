//! The command-line edge: parse, run a subcommand, print errors on one line with their hints,
//! and turn the outcome into an exit code (see [`crate::exit_code`]).

mod bisect;
mod flaky;
mod local;
mod report;
mod run;
mod status;

use std::path::Path;
use std::time::Duration;

use clap::Parser;

use crate::config::args::{Cli, Command};
use crate::exit_code::{self, ExitCode};
use crate::test_id::TestId;
use crate::timings::{self, Slower};

/// How long ciq waits at exit for its queued lines to reach a slow log pipe.
const FLUSH_WITHIN: Duration = Duration::from_secs(30);

/// Runs ciq with the process's arguments and returns its exit code.
pub fn main() -> std::process::ExitCode {
    let mut args = std::env::args_os();
    if args
        .nth(1)
        .is_some_and(|first| first == crate::reaper::SUBCOMMAND)
    {
        return exit(crate::reaper::main(args.collect()));
    }
    if let Ok(exe) = std::env::current_exe() {
        crate::reaper::enable(exe);
    }
    let cli = Cli::parse();
    let code = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(async {
            match cli.command {
                Command::Run(args) => run::run(*args).await,
                Command::Report(args) => report::report(*args).await,
                Command::Status(args) => status::status(*args).await,
                Command::Flaky(args) => flaky::flaky(args).await,
                Command::Bisect(args) => bisect::bisect(*args).await,
            }
        }),
        Err(err) => Err(Failed::from(crate::error::Error::Runtime(err))),
    };
    crate::console::flush(FLUSH_WITHIN);
    let code = code.unwrap_or_else(|failed| {
        eprintln!("{}", render_error(&failed.error));
        failed.code
    });
    exit(code.code())
}

/// An error that ends a command: its exit code, decided from its type before any context was
/// added ([`exit_code::for_error`], an exhaustive match), and the error to print.
pub(crate) struct Failed {
    code: ExitCode,
    error: anyhow::Error,
}

impl<E: Into<crate::error::Error>> From<E> for Failed {
    fn from(err: E) -> Self {
        let err = err.into();
        Self {
            code: exit_code::for_error(&err),
            error: anyhow::Error::new(err),
        }
    }
}

impl Failed {
    /// The same failure, its message prefixed by `context`.
    pub(crate) fn context(self, context: String) -> Self {
        Self {
            code: self.code,
            error: self.error.context(context),
        }
    }
}

fn exit(code: i32) -> std::process::ExitCode {
    std::process::ExitCode::from(u8::try_from(code).unwrap_or(u8::MAX))
}

/// Prints what a run ends with (its summary) on stdout, after the lines still queued for
/// stderr, so a log that merges both reads in order.
fn print_last(text: &str) {
    crate::console::flush(FLUSH_WITHIN);
    print!("{text}");
}

/// Says a signal stopped `worker`, and gives its exit code.
fn interrupted(signal: i32, worker: &str) -> ExitCode {
    crate::say!("ciq: worker `{worker}` stopped by signal {signal}");
    ExitCode::Signal(signal)
}

/// Most runs much longer than usual the report names.
const SLOWER_SHOWN: usize = 10;

/// Names the runs that took much longer than their test's recent ones.
fn show_slower(slower: Vec<Slower>) {
    let count = slower.len();
    for run in timings::worst(slower, SLOWER_SHOWN) {
        crate::say!("ciq: ran much longer than usual: {run}");
    }
    if count > SLOWER_SHOWN {
        crate::say!(
            "ciq: ... and {} more runs much longer than usual",
            count - SLOWER_SHOWN
        );
    }
}

/// Writes the durations measured (and the tests that `failed` or were flaky) to the timing
/// file `path`; none keeps the file as it was (the
/// history it held is better than nothing). A failure here is a warning: the verdict stands.
fn write_timings(path: &Path, durations: Vec<(TestId, Duration)>, failed: &[TestId]) {
    let count = durations.len();
    if count == 0 {
        crate::say!(
            "ciq: no durations measured; nothing written to `{}`",
            path.display()
        );
        return;
    }
    match timings::write(path, durations, failed) {
        Ok(()) => crate::say!(
            "ciq: wrote the durations of {count} tests to `{}`",
            path.display()
        ),
        Err(err) => crate::say!("ciq: warning: {}", crate::human::error_chain(&err)),
    }
}

/// Writes the build's pictures asked for (`--html`, `--trace`) and says where; one that cannot
/// be written is a warning: the verdict stands, and the log has every failure. `who` starts the
/// lines (`ciq`, `ciq report`).
fn write_pictures(
    who: &str,
    html: Option<&Path>,
    trace: Option<&Path>,
    build: &crate::report::html::Build<'_>,
) {
    let attempts = build.timeline.attempts.len();
    if let Some(path) = html {
        let started = std::time::Instant::now();
        match crate::report::html::write(path, build) {
            Ok(bytes) => crate::say!(
                "{who}: wrote the HTML report ({attempts} attempts on {} workers, {:.1} MB, in {}) to `{}`",
                build.timeline.workers.len(),
                bytes as f64 / 1e6,
                crate::human::duration(started.elapsed()),
                path.display()
            ),
            Err(err) => crate::say!("{who}: warning: {}", crate::human::error_chain(&err)),
        }
    }
    if let Some(path) = trace {
        match crate::report::trace::write(path, build.timeline, build.generated_at_ms) {
            Ok(()) => crate::say!(
                "{who}: wrote the trace ({attempts} attempts) to `{}` (open it in ui.perfetto.dev)",
                path.display()
            ),
            Err(err) => crate::say!("{who}: warning: {}", crate::human::error_chain(&err)),
        }
    }
}

/// The time now in Unix milliseconds, the clock the timeline's records keep.
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        })
}

/// `error: outer: inner: root`, then each `(hint: ...)` of the chain on its own line.
fn render_error(err: &anyhow::Error) -> String {
    let mut causes = Vec::new();
    let mut hints = Vec::new();
    for cause in err.chain() {
        let text = cause.to_string();
        let (message, hint) = match text.split_once("\n(hint: ") {
            Some((message, hint)) => (message.to_owned(), Some(format!("(hint: {hint}"))),
            None => (text, None),
        };
        if !causes
            .last()
            .is_some_and(|last: &String| last.ends_with(&message))
        {
            causes.push(message);
        }
        hints.extend(hint);
    }
    let mut rendered = format!("error: {}", causes.join(": "));
    for hint in hints {
        rendered.push('\n');
        rendered.push_str(&hint);
    }
    rendered
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::QueueError;

    #[test]
    fn hints_go_after_the_whole_chain() {
        let err = anyhow::Error::new(QueueError::NoLeader {
            waited: std::time::Duration::from_secs(2),
        })
        .context("report for build `b`");
        assert_eq!(
            render_error(&err),
            "error: report for build `b`: no leader elected: no worker filled the queue within 2s\n(hint: check that workers started and can reach Redis; raise --queue-init-timeout)"
        );
    }
}
