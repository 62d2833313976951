//! Framework adapters: for each test framework ciq knows, its arguments, how it lists tests and
//! what its listing means, how its tests run, how big its batches are and which of its tests
//! stay together. Nothing above this module names a framework: the command line, the
//! configuration, discovery and the worker ask the [`Adapter`] of the [`Framework`] chosen.
//!
//! A trait, not one enum matched everywhere: each framework is a file of its own that implements
//! [`Adapter`], and the `frameworks!` macro registers it with one line, so adding a framework touches
//! no other file (`docs/adding-a-framework.md`). The adapters build on the list-command runner
//! ([`crate::listing`]), the generic runners ([`crate::runner`]) and the read side of
//! [`crate::discovery`].

pub mod nextest;
pub mod pytest;
pub mod ruby;

use crate::batching::{BatchSize, Saves};
use crate::discovery::{ListFormat, ListReader, ReadList};
use crate::runner::RunnerError;
use crate::runner::launch::Launch;
use crate::runner::persistent::Hints;
use crate::timings::Unit;

/// What ciq needs of a test framework. Every method but the listing and the launch has the
/// answer most frameworks want as its default.
pub trait Adapter: std::fmt::Debug + Send + Sync {
    /// Its name, as `ciq run` spells its subcommand and messages name it.
    fn name(&self) -> &'static str;

    /// The command that lists the suite. Only the elected leader runs it, unless the framework's
    /// persistent process lists ([`Adapter::lists_in_process`]).
    fn list_argv(&self) -> Vec<String>;

    /// How the listing command's output (or its failure to start) is read.
    fn read_list(&self) -> ReadList;

    /// Whether the framework's persistent process lists the suite it collected to run it: the
    /// leader's then stands for the listing command, and a follower's is checked against the
    /// build's list, so a worker with another suite makes the build red.
    fn lists_in_process(&self) -> bool {
        false
    }

    /// What a batch saves: a start (a process, a collection) by default.
    fn saves(&self) -> Saves {
        Saves::Starts
    }

    /// Tests per batch when `--batch-size` is not given; `distributed` when the workers share
    /// a Redis queue (a batch then also saves round trips to it).
    fn batch_size(&self, distributed: bool) -> BatchSize {
        let _ = distributed;
        BatchSize::Auto
    }

    /// The unit whose tests stay together in the queue, when batches of its tests share what
    /// the framework sets up for it.
    fn unit(&self) -> Option<Unit> {
        None
    }

    /// What to say when a process of this framework will not start. A command started by hand
    /// with `--persistent` gets every framework's hints for a process that exited early.
    fn hints(&self) -> Hints {
        Hints::default()
    }

    /// The pre-flight checks, and how the tests run as they found them; a check that fails
    /// ends the run (exit 2) with its hint. It may start the framework's interpreter, so it
    /// runs once per ciq process, when the tests are about to run, never while the command
    /// line is checked.
    fn launch(&self) -> Result<Launch, RunnerError>;
}

/// Registers the frameworks: one line each, `Variant(module::Adapter)`, the variant's name
/// being the subcommand's (lowercased) and the adapter a `clap::Args` struct with an `ABOUT`
/// constant (its help line) and a `Default` (the arguments ciq assumes when it asks every
/// framework for its hints).
macro_rules! frameworks {
    ($($variant:ident($adapter:ty)),+ $(,)?) => {
        /// A test framework that ciq lists and runs itself, instead of a command after `--`:
        /// one subcommand of `ciq run` each, with the framework's own arguments.
        #[derive(Debug, Clone, clap::Subcommand)]
        pub enum Framework {
            $(
                #[doc = concat!("`ciq run ", stringify!($variant), "`.")]
                #[command(about = <$adapter>::ABOUT)]
                $variant($adapter),
            )+
        }

        impl Framework {
            /// The adapter of the framework chosen.
            pub fn adapter(&self) -> &dyn Adapter {
                match self {
                    $(Framework::$variant(adapter) => adapter,)+
                }
            }

            /// Every framework, with default arguments.
            fn every() -> Vec<Framework> {
                vec![$(Framework::$variant(<$adapter>::default()),)+]
            }
        }
    };
}

frameworks! {
    Nextest(nextest::Nextest),
    Pytest(pytest::Pytest),
    Minitest(ruby::Minitest),
    Rspec(ruby::Rspec),
}

impl Framework {
    /// The frameworks' names, for a message: `nextest, pytest`.
    pub fn names() -> String {
        let names: Vec<&str> = Self::every()
            .iter()
            .map(|framework| framework.adapter().name())
            .collect();
        names.join(", ")
    }
}

/// Why a process some framework knows exited before it was ready, from its stderr: the hints
/// of a framework command started by hand (`ciq run --persistent -- python -m pytest ...`).
fn any_exited_early_hint(stderr: &str) -> Option<String> {
    Framework::every()
        .iter()
        .find_map(|framework| (framework.adapter().hints().exited_early?)(stderr))
}

/// How tests are run: a command after `--`, or a framework.
#[derive(Debug, Clone)]
pub enum RunnerSpec {
    /// The generic runner, with this command.
    Command(Vec<String>),
    /// A command speaking the persistent protocol.
    Persistent(Vec<String>),
    /// A framework's adapter.
    Framework(Framework),
}

impl RunnerSpec {
    /// The framework's listing command and how to read it; `None` for a command, whose tests
    /// must be listed by `--tests` or `--list-command`.
    pub fn listing(&self) -> Option<(Vec<String>, ListFormat)> {
        let RunnerSpec::Framework(framework) = self else {
            return None;
        };
        let adapter = framework.adapter();
        let reader = ListReader {
            framework: adapter.name(),
            read: adapter.read_list(),
            in_process: adapter.lists_in_process(),
        };
        Some((adapter.list_argv(), ListFormat::Framework(reader)))
    }

    /// What a batch saves.
    pub fn saves(&self) -> Saves {
        match self {
            RunnerSpec::Command(_) | RunnerSpec::Persistent(_) => Saves::Starts,
            RunnerSpec::Framework(framework) => framework.adapter().saves(),
        }
    }

    /// Tests per batch when `--batch-size` is not given: one for a command, which may take one
    /// id only; any number for the persistent protocol.
    pub fn batch_size(&self, distributed: bool) -> BatchSize {
        match self {
            RunnerSpec::Command(_) => BatchSize::Fixed(1),
            RunnerSpec::Persistent(_) => BatchSize::Auto,
            RunnerSpec::Framework(framework) => framework.adapter().batch_size(distributed),
        }
    }

    /// The unit whose tests stay together in the queue, if any.
    pub fn unit(&self) -> Option<Unit> {
        match self {
            RunnerSpec::Command(_) | RunnerSpec::Persistent(_) => None,
            RunnerSpec::Framework(framework) => framework.adapter().unit(),
        }
    }

    /// How the tests run, after the framework's pre-flight checks.
    pub fn launch(&self) -> Result<Launch, RunnerError> {
        match self {
            RunnerSpec::Command(argv) => Ok(Launch::Command {
                argv: argv.clone(),
                check: None,
            }),
            RunnerSpec::Persistent(argv) => Ok(Launch::Persistent {
                argv: argv.clone(),
                hints: Hints {
                    missing_program: None,
                    exited_early: Some(any_exited_early_hint),
                },
            }),
            RunnerSpec::Framework(framework) => framework.adapter().launch(),
        }
    }
}
