//! [`TestSource`]: where the leader gets the test list.
//!
//! A list given as a file is read and checked by every worker before it joins, so bad input
//! fails fast everywhere; a list command is run only by the elected leader, because discovery
//! can be slow (a build, a collection) and its output goes to the queue once.

use std::path::PathBuf;
use std::time::Duration;

use thiserror::Error;

use std::borrow::Cow;

use crate::frameworks::{nextest, pytest};
use crate::list_source::{ListFailure, ListSource};
use crate::listing::{self, ListingError};
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListFormat {
    /// One id per line (`--list-command`).
    Lines,
    /// `pytest --collect-only --verbosity=-1`: node ids, a blank line, a summary.
    PytestCollect,
    /// `cargo nextest list --message-format json`.
    NextestJson,
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
            ListFormat::PytestCollect => pytest::list(argv, timeout).await?,
            ListFormat::NextestJson => nextest::list(argv, timeout)
                .await?
                .ids()
                .join("\n")
                .into_bytes(),
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

/// A pytest suite listed by the persistent pytest that will run it, when its plugin lists:
/// one collection instead of two (a collection can take longer than the tests). Any other
/// source, or a plugin that does not list, is listed as [`TestSource::discover`] does.
pub struct FrameworkListing<'a> {
    /// Where the list comes from otherwise.
    pub source: &'a TestSource,
    /// The worker's framework process, when it is a persistent one.
    pub framework: Option<&'a PersistentRunner>,
}

impl FrameworkListing<'_> {
    /// The framework to ask for the list: only one that stands for pytest's own listing.
    fn lister(&self) -> Option<&PersistentRunner> {
        let pytest_listing = matches!(
            self.source,
            TestSource::Command {
                format: ListFormat::PytestCollect,
                ..
            }
        );
        self.framework.filter(|_| pytest_listing)
    }

    /// Whether the framework lists the suite (so other workers' frameworks may start now).
    pub fn by_framework(&self) -> bool {
        self.lister().is_some()
    }

    /// The test list, within `timeout`.
    pub async fn discover(&self, timeout: Duration) -> Result<TestList, DiscoveryError> {
        if let Some(framework) = self.lister()
            && let Some(ids) = framework.list(timeout).await?
        {
            return Ok(TestList::parse(&ids, "pytest's collection")?);
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
        let ids = self.lister()?.list(timeout).await.ok()??;
        TestList::parse(&ids, "pytest's collection")
            .ok()
            .map(Cow::Owned)
    }
}
