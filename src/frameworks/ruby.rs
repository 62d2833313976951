//! The Ruby adapters, minitest and RSpec, through ciq's Ruby gem (`integrations/ruby`): one Ruby
//! process per worker loads the suite once (a Rails boot included), lists the tests it loaded
//! and runs the ones it is sent, over the protocol of `docs/persistent-protocol.md`.
//!
//! There is no batch mode: a Ruby process per batch would boot the application again for every
//! batch, which is what `ciq run -- ruby ...` already does. A missing Ruby, gem or framework
//! stops the process before it is ready, and ciq says what to install (exit 2).

use clap::Args;

use super::Adapter;
use crate::discovery::ReadList;
use crate::listing::{ListRun, ListingError};
use crate::process::SpawnError;
use crate::runner::RunnerError;
use crate::runner::launch::Launch;
use crate::runner::persistent::Hints;
use crate::timings::Unit;

/// `ciq run minitest`, with the suite's arguments.
#[derive(Debug, Clone, Default, Args)]
pub struct Minitest {
    /// Arguments as `ruby -Itest` and `rails test` take them: `-I DIR`, `-r HELPER`, test files,
    /// directories and globs, minitest's options (`--seed`, `-n`, `-e`).
    #[arg(last = true, value_name = "MINITEST_ARGS")]
    pub args: Vec<String>,
}

impl Minitest {
    /// The subcommand's help line.
    pub const ABOUT: &str = "Ruby tests through minitest, with ciq's Ruby gem (integrations/ruby): one Ruby process per worker loads the test files once (`test/` when none is given) and runs the tests it is sent, ids `ClassName#test_name`; a test class's tests stay together";
}

/// `ciq run rspec`, with `rspec`'s own arguments.
#[derive(Debug, Clone, Default, Args)]
pub struct Rspec {
    /// Arguments for rspec: spec files and directories, `--tag`, `-e`, `--seed`; `.rspec` and
    /// `SPEC_OPTS` apply as they do to `rspec`.
    #[arg(last = true, value_name = "RSPEC_ARGS")]
    pub args: Vec<String>,
}

impl Rspec {
    /// The subcommand's help line.
    pub const ABOUT: &str = "Ruby specs through RSpec, with ciq's Ruby gem (integrations/ruby): one Ruby process per worker loads the specs once (`spec/` when none is given) and runs the examples it is sent, ids `<file> # <full description>`; a spec file's examples stay together";
}

/// What tells the two frameworks apart: the gem's file for each, and its classes.
struct Flavor {
    /// The framework's name, as messages say it.
    name: &'static str,
    /// The gem's library for it.
    library: &'static str,
    /// The class whose `serve` speaks the protocol.
    module: &'static str,
}

const MINITEST: Flavor = Flavor {
    name: "minitest",
    library: "ciq/minitest",
    module: "Ciq::Minitest",
};

const RSPEC: Flavor = Flavor {
    name: "rspec",
    library: "ciq/rspec",
    module: "Ciq::RSpec",
};

/// minitest keeps a test class's tests together: a class often builds what its tests share on
/// first use. The class is the id up to its first `#test_` (or `#bench_`), which leaves a
/// `Minitest::Spec` describe string holding a `#` whole; an id with neither, up to its last `#`.
const CLASS: Unit = Unit {
    name: "class",
    of: test_class,
};

/// RSpec keeps a spec file's examples together: its groups' `before(:context)` hooks run once
/// for the examples a worker takes from them in a row.
const SPEC_FILE: Unit = Unit {
    name: "spec file",
    of: |id| id.split_once(" # ").map_or(id, |(file, _)| file),
};

fn test_class(id: &str) -> &str {
    let method = ["#test_", "#bench_"]
        .iter()
        .filter_map(|marker| id.find(marker))
        .min()
        .or_else(|| id.rfind('#'));
    method.map_or(id, |at| &id[..at])
}

impl Adapter for Minitest {
    fn name(&self) -> &'static str {
        MINITEST.name
    }

    fn list_argv(&self) -> Vec<String> {
        list_argv(&MINITEST, &self.args)
    }

    fn read_list(&self) -> ReadList {
        read_listed
    }

    fn lists_in_process(&self) -> bool {
        true
    }

    fn unit(&self) -> Option<Unit> {
        Some(CLASS)
    }

    fn hints(&self) -> Hints {
        hints()
    }

    fn launch(&self) -> Result<Launch, RunnerError> {
        launch(&MINITEST, &self.args)
    }
}

impl Adapter for Rspec {
    fn name(&self) -> &'static str {
        RSPEC.name
    }

    fn list_argv(&self) -> Vec<String> {
        list_argv(&RSPEC, &self.args)
    }

    fn read_list(&self) -> ReadList {
        read_listed
    }

    fn lists_in_process(&self) -> bool {
        true
    }

    fn unit(&self) -> Option<Unit> {
        Some(SPEC_FILE)
    }

    fn hints(&self) -> Hints {
        hints()
    }

    fn launch(&self) -> Result<Launch, RunnerError> {
        launch(&RSPEC, &self.args)
    }
}

/// The command that starts Ruby: `CIQ_RUBY`, split as a shell would (`bundle exec ruby` for a
/// Bundler suite), or `ruby`.
fn ruby() -> Vec<String> {
    std::env::var("CIQ_RUBY")
        .ok()
        .and_then(|command| shlex::split(&command))
        .filter(|words| !words.is_empty())
        .unwrap_or_else(|| vec!["ruby".to_owned()])
}

/// `ruby` with `arguments` after it.
fn ruby_with(arguments: &[&str], args: &[String]) -> Vec<String> {
    let mut argv = ruby();
    argv.extend(arguments.iter().map(|arg| (*arg).to_owned()));
    argv.extend_from_slice(args);
    argv
}

/// The hint for a Ruby that could not start.
fn ruby_hint() -> String {
    format!(
        "(hint: ciq starts Ruby as `{}`; install Ruby with minitest or RSpec (Debian: apt-get install ruby ruby-minitest ruby-rspec), or set CIQ_RUBY to the command that starts it, e.g. `bundle exec ruby`)",
        crate::listing::shown(&ruby())
    )
}

/// The hint for a Ruby without ciq's gem.
const GEM_HINT: &str = "(hint: install ciq's Ruby gem for this Ruby: cd integrations/ruby && gem build ciq-ruby.gemspec && gem install --local ciq-ruby-*.gem; under Bundler, add `gem \"ciq-ruby\", path: \"<ciq>/integrations/ruby\"` to the Gemfile's test group)";

/// Whether Ruby's stderr says the gem is not installed: Ruby's own `LoadError` for one of the
/// gem's files, before any message.
fn gem_missing(stderr: &str) -> bool {
    stderr.contains("cannot load such file -- ciq/")
}

/// Why a Ruby process exited before it was ready, from its stderr: no gem, or no framework.
fn exited_early_hint(stderr: &str) -> Option<String> {
    if gem_missing(stderr) {
        Some(GEM_HINT.to_owned())
    } else if ["minitest", "rspec"]
        .iter()
        .any(|framework| stderr.contains(&format!("cannot load such file -- {framework}")))
    {
        Some(ruby_hint())
    } else {
        None
    }
}

fn hints() -> Hints {
    Hints {
        missing_program: Some(ruby_hint),
        exited_early: Some(exited_early_hint),
    }
}

/// One persistent process per worker. No pre-flight check before it: a Ruby start costs a
/// build a fraction of a second of wall time (most of a second on a busy machine), and the
/// process's own start says the same things, a missing Ruby through [`ruby_hint`], a missing
/// gem or framework through Ruby's `LoadError` before `ready`.
fn launch(flavor: &Flavor, args: &[String]) -> Result<Launch, RunnerError> {
    Ok(Launch::Persistent {
        argv: ruby_with(
            &[
                &format!("-r{}", flavor.library),
                "-e",
                &format!("{}.serve", flavor.module),
                "--",
            ],
            args,
        ),
        hints: hints(),
    })
}

/// A listing command, for where no persistent process lists (the gem's always does, so ciq
/// never runs it in practice): the gem loads the suite as its server would and prints the ids,
/// one per line, with whatever the suite prints while loading sent to stderr.
fn list_argv(flavor: &Flavor, args: &[String]) -> Vec<String> {
    let script = format!(
        "out = STDOUT.dup; STDOUT.reopen(STDERR); begin; ids = {}::Adapter.new(ARGV).ids; rescue Ciq::Fatal => e; abort(\"ciq: \" + e.message); end; out.puts(ids); out.flush; exit!(0)",
        flavor.module
    );
    ruby_with(
        &[&format!("-r{}", flavor.library), "-e", &script, "--"],
        args,
    )
}

/// Reads what the listing command did: the ids, one per line. A failure says what Ruby said,
/// with a hint when Ruby or the gem is missing.
fn read_listed(ran: Result<ListRun, ListingError>) -> Result<Vec<u8>, ListingError> {
    let listed = match ran {
        Err(ListingError::Spawn(SpawnError::NotFound(program))) => {
            return Err(ListingError::Missing {
                program,
                hint: ruby_hint(),
            });
        }
        listed => listed?,
    };
    let mut detail = Vec::new();
    if !listed.finished.exit.success() && gem_missing(&listed.finished.output) {
        detail = listed.said_with(GEM_HINT.to_owned());
    }
    listed.read(detail, parse_ids)
}

/// The gem's ids, one per line: each a line of UTF-8 text without control characters (the gem
/// escapes them); anything else is an error naming the line, never a test.
fn parse_ids(stdout: &[u8]) -> Result<Vec<u8>, String> {
    let body = stdout.strip_suffix(b"\n").unwrap_or(stdout);
    if body.is_empty() {
        return Ok(Vec::new());
    }
    let mut ids = Vec::new();
    for (at, line) in body.split(|&byte| byte == b'\n').enumerate() {
        let Ok(line) = std::str::from_utf8(line) else {
            return Err(format!("line {} is not valid UTF-8", at + 1));
        };
        if line.trim().is_empty() || line.contains(char::is_control) {
            return Err(format!(
                "line {} is not a test id: `{}` (does the suite print to stdout while it loads?)",
                at + 1,
                crate::lines::one_line(&crate::lines::clip(line))
            ));
        }
        ids.extend_from_slice(line.as_bytes());
        ids.push(b'\n');
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minitest_unit_is_the_test_class() {
        for (id, class) in [
            ("BasicTest#test_addition", "BasicTest"),
            (
                "Admin::UsersControllerTest#test_index",
                "Admin::UsersControllerTest",
            ),
            (
                "Array#push::when frozen#test_0001_raises",
                "Array#push::when frozen",
            ),
            ("Bench#bench_sort", "Bench"),
            ("Custom#check_it", "Custom"),
            ("NoMethod", "NoMethod"),
        ] {
            assert_eq!(test_class(id), class, "{id}");
        }
    }

    #[test]
    fn an_rspec_unit_is_the_spec_file() {
        assert_eq!(
            (SPEC_FILE.of)("./spec/a_spec.rb # User#valid? rejects # signs"),
            "./spec/a_spec.rb"
        );
    }

    #[test]
    fn ids_are_lines_and_nothing_else() {
        assert_eq!(
            parse_ids(b"A#test_a\nB # c d\n").unwrap(),
            b"A#test_a\nB # c d\n"
        );
        assert_eq!(parse_ids(b"").unwrap(), b"");
        assert_eq!(
            parse_ids(b"A#test_a\n\nB#test_b\n"),
            Err(
                "line 2 is not a test id: `` (does the suite print to stdout while it loads?)"
                    .to_owned()
            )
        );
        assert_eq!(
            parse_ids(b"A#test_\xff\n"),
            Err("line 1 is not valid UTF-8".to_owned())
        );
    }

    #[test]
    fn the_gem_missing_gets_its_hint() {
        let stderr = "<internal:/usr/lib/ruby/3.1.0/rubygems/core_ext/kernel_require.rb>:85:in `require': cannot load such file -- ciq/minitest (LoadError)";
        assert_eq!(exited_early_hint(stderr), Some(GEM_HINT.to_owned()));
        assert_eq!(exited_early_hint("SyntaxError"), None);
        let no_rspec =
            "kernel_require.rb:85:in `require': cannot load such file -- rspec/core (LoadError)";
        assert!(exited_early_hint(no_rspec).is_some_and(|hint| hint.contains("ruby-rspec")));
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;
    use proptest::sample::Index;

    use super::*;
    use crate::property_testing::{config, names_a_line, noisy_bytes, test_id};
    use crate::test_id::TestList;

    /// An id as the gem writes it: no control characters (it escapes them).
    fn id() -> impl Strategy<Value = String> {
        test_id()
            .prop_map(|id| id.replace(char::is_control, "?"))
            .prop_filter("blank", |id| !id.trim().is_empty())
    }

    proptest! {
        #![proptest_config(config())]

        /// Any output is ids, one line each, or an error naming a line that exists.
        #[test]
        fn any_output_is_ids_or_an_error_naming_the_line(stdout in noisy_bytes()) {
            let lines = stdout.split(|&byte| byte == b'\n').count();
            match parse_ids(&stdout) {
                Ok(ids) => {
                    let ids = String::from_utf8(ids).map_err(|err| TestCaseError::fail(err.to_string()))?;
                    for id in ids.lines() {
                        prop_assert!(!id.trim().is_empty() && !id.contains(char::is_control), "{id:?}");
                    }
                }
                Err(err) => names_a_line(&err, lines)?,
            }
        }

        /// Listed ids read back as the test list they were, in order.
        #[test]
        fn listed_ids_read_back(ids in prop::collection::vec(id(), 1..12)) {
            let stdout: String = ids.iter().map(|id| format!("{id}\n")).collect();
            let listed = parse_ids(stdout.as_bytes()).map_err(TestCaseError::fail)?;
            let list = TestList::parse(&listed, "minitest")
                .map_err(|err| TestCaseError::fail(err.to_string()))?;
            let mut expected = ids;
            let mut seen = std::collections::HashSet::new();
            expected.retain(|id| seen.insert(id.clone()));
            let read: Vec<&str> = list.ids.iter().map(|id| id.as_str()).collect();
            prop_assert_eq!(read, expected.iter().map(String::as_str).collect::<Vec<_>>());
        }

        /// One line that is not an id, among ids, is named.
        #[test]
        fn one_bad_line_is_named(
            ids in prop::collection::vec(id(), 0..12),
            at in any::<Index>(),
            bad in prop_oneof![Just(b"".to_vec()), Just(b"  ".to_vec()), Just(b"A#\x1b[0m".to_vec()), Just(b"B#\xff".to_vec())],
        ) {
            // A lone blank line is an empty listing, which the list itself refuses.
            prop_assume!(!ids.is_empty() || !bad.is_empty());
            let mut lines: Vec<Vec<u8>> = ids.iter().map(|id| id.as_bytes().to_vec()).collect();
            let at = at.index(lines.len() + 1);
            lines.insert(at, bad);
            let mut stdout = lines.join(&b'\n');
            stdout.push(b'\n');
            let err = parse_ids(&stdout).err().ok_or_else(|| TestCaseError::fail("parsed"))?;
            prop_assert!(err.starts_with(&format!("line {} is not ", at + 1)), "{err}");
        }
    }
}
