//! [`TestSource`]: where the leader gets the test list.
//!
//! A list given as a file is read and checked by every worker before it joins, so bad input
//! fails fast everywhere; a list command is run only by the elected leader, because discovery
//! can be slow (a build, a collection) and its output goes to the queue once. What a framework's
//! listing command prints is read by its adapter ([`crate::frameworks`]), through the
//! [`ListReader`] it gives.

use std::borrow::Cow;
use std::path::PathBuf;
use std::time::Duration;

use thiserror::Error;

use crate::list_source::{ListFailure, ListSource};
use crate::listing::{self, ListRun, ListingError};
use crate::runner::RunnerError;
use crate::runner::persistent::PersistentRunner;
use crate::test_id::{TestList, TestListError};

/// Where the test ids come from.
#[derive(Debug, Clone)]
pub enum TestSource {
    /// A list read up front (`--tests FILE`, or `-` for stdin).
    List(TestList),
    /// A command listing the tests, run by the leader.
    Command {
        /// The command.
        argv: Vec<String>,
        /// How to read its output.
        format: ListFormat,
    },
}

/// How a list command prints its tests.
#[derive(Debug, Clone, Copy)]
pub enum ListFormat {
    /// One id per line (`--list-command`).
    Lines,
    /// A framework's own listing, read by its adapter.
    Framework(ListReader),
}

/// Reads what a framework's listing command did (ran to its end, or could not start) into its
/// test ids, one per line; a failure says why, with a hint where the framework knows one.
pub type ReadList = fn(Result<ListRun, ListingError>) -> Result<Vec<u8>, ListingError>;

/// How a framework's listing is read, and whether its persistent process lists the same suite.
#[derive(Debug, Clone, Copy)]
pub struct ListReader {
    /// The framework, as a message names it (`pytest's collection`).
    pub framework: &'static str,
    /// Reads the listing command's output.
    pub read: ReadList,
    /// The framework's persistent process lists the suite it collected to run it: the
    /// leader's stands for the listing command (one collection instead of two), and a
    /// follower's is checked against the build's list.
    pub in_process: bool,
}

/// Why the test list could not be produced.
#[derive(Debug, Error)]
pub enum DiscoveryError {
    /// The list file could not be read.
    #[error("cannot read test list `{path}`")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The list command gave no usable output.
    #[error(transparent)]
    Listing(#[from] ListingError),
    /// The list is malformed.
    #[error(transparent)]
    List(#[from] TestListError),
    /// The framework process that was to list its suite could not.
    #[error(transparent)]
    Framework(#[from] RunnerError),
}

impl TestSource {
    /// Reads `--tests` (`-` is stdin).
    pub fn read(path: &str) -> Result<Self, DiscoveryError> {
        let (bytes, name) = if path == "-" {
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut bytes).map_err(|source| {
                DiscoveryError::Read {
                    path: PathBuf::from("-"),
                    source,
                }
            })?;
            (bytes, "stdin".to_owned())
        } else {
            let bytes = std::fs::read(path).map_err(|source| DiscoveryError::Read {
                path: PathBuf::from(path),
                source,
            })?;
            (bytes, format!("`{path}`"))
        };
        Ok(TestSource::List(TestList::parse(&bytes, &name)?))
    }

    /// The test list: the one read up front, or the list command's output (killed after
    /// `timeout`), read by the framework it names.
    pub async fn discover(&self, timeout: Duration) -> Result<TestList, DiscoveryError> {
        let (argv, format) = match self {
            TestSource::List(list) => return Ok(list.clone()),
            TestSource::Command { argv, format } => (argv, format),
        };
        let ids = match format {
            ListFormat::Lines => listing::run(argv, timeout)
                .await?
                .stdout_or_failure(Vec::new())?,
            // A framework's workers in this process may read the same listing to run its
            // tests: it runs once ([`listing::run_once`]).
            ListFormat::Framework(reader) => (reader.read)(listing::run_once(argv, timeout).await)?,
        };
        let command = listing::shown(argv);
        Ok(TestList::parse(&ids, &format!("list command `{command}`"))?)
    }
}

impl ListSource for TestSource {
    async fn produce(&self, timeout: Duration) -> Result<Cow<'_, TestList>, ListFailure> {
        match self {
            TestSource::List(list) => Ok(Cow::Borrowed(list)),
            TestSource::Command { .. } => Ok(Cow::Owned(self.discover(timeout).await?)),
        }
    }

    fn held(&self) -> Option<&TestList> {
        match self {
            TestSource::List(list) => Some(list),
            TestSource::Command { .. } => None,
        }
    }

    async fn to_check(&self, _timeout: Duration) -> Option<Cow<'_, TestList>> {
        self.held().map(Cow::Borrowed)
    }
}

/// A suite listed by the persistent framework process that will run it, where its adapter says
/// the process lists ([`ListReader::in_process`]) and the process agrees: one collection instead
/// of two (a collection can take longer than the tests). Any other source, or a process that
/// does not list, is listed as [`TestSource::discover`] does.
pub struct FrameworkListing<'a> {
    /// Where the list comes from otherwise.
    pub source: &'a TestSource,
    /// The worker's framework process, when it is a persistent one.
    pub framework: Option<&'a PersistentRunner>,
}

impl FrameworkListing<'_> {
    /// The framework to ask for the list, and its name: only one that stands for its own
    /// listing command.
    fn lister(&self) -> Option<(&PersistentRunner, &'static str)> {
        let TestSource::Command {
            format: ListFormat::Framework(reader),
            ..
        } = self.source
        else {
            return None;
        };
        let framework = self.framework.filter(|_| reader.in_process)?;
        Some((framework, reader.framework))
    }

    /// The list `framework`'s process collected, if it lists.
    async fn collected(
        framework: &PersistentRunner,
        name: &str,
        timeout: Duration,
    ) -> Result<Option<TestList>, DiscoveryError> {
        let Some(ids) = framework.list(timeout).await? else {
            return Ok(None);
        };
        Ok(Some(TestList::parse(
            &ids,
            &format!("{name}'s collection"),
        )?))
    }

    /// Whether the framework lists the suite (so other workers' frameworks may start now).
    pub fn by_framework(&self) -> bool {
        self.lister().is_some()
    }

    /// The test list, within `timeout`.
    pub async fn discover(&self, timeout: Duration) -> Result<TestList, DiscoveryError> {
        if let Some((framework, name)) = self.lister()
            && let Some(list) = Self::collected(framework, name, timeout).await?
        {
            return Ok(list);
        }
        self.source.discover(timeout).await
    }
}

impl ListSource for FrameworkListing<'_> {
    async fn produce(&self, timeout: Duration) -> Result<Cow<'_, TestList>, ListFailure> {
        match self.source.held() {
            Some(list) => Ok(Cow::Borrowed(list)),
            None => Ok(Cow::Owned(self.discover(timeout).await?)),
        }
    }

    fn held(&self) -> Option<&TestList> {
        self.source.held()
    }

    async fn to_check(&self, timeout: Duration) -> Option<Cow<'_, TestList>> {
        if let Some(list) = self.source.held() {
            return Some(Cow::Borrowed(list));
        }
        let (framework, name) = self.lister()?;
        Self::collected(framework, name, timeout)
            .await
            .ok()?
            .map(Cow::Owned)
    }
}
