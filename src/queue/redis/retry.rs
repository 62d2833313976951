//! Job retries: a CI job retried after its build ended re-runs the build's failed tests
//! ([`RedisQueue::retry`]); a new build can take an earlier build's failed tests as its list
//! ([`RedisQueue::failed_of`]).

use crate::queue::QueueError;
use crate::queue::redis::keys::BuildKeys;
use crate::queue::redis::scripts::retry::{Retried, Retry};
use crate::queue::redis::scripts::{self, observe::Observe};
use crate::queue::redis::state::BuildState;
use crate::queue::redis::{RedisQueue, millis};
use crate::test_id::{TestList, TestListError};

/// Which retry a retried job belongs to: every job of one round shares one re-run of the
/// failed tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetryRound {
    /// Named by the CI (its attempt or retry count) or by `--retry=ROUND`.
    Named(String),
    /// Unnamed (GitLab): the job is a retry when its worker id already took part in the
    /// finished build, and its n-th retry is round n.
    Rejoined,
}

/// What a retried job found before it joins the build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Retrying {
    /// The build is not finished, never started, or this job is not a retry: it joins the
    /// build like any worker.
    Join,
    /// The build finished with no failed test: there is nothing to run.
    Nothing {
        /// The round.
        round: String,
    },
    /// The build's failed tests are queued again; `tests` of them by this job (0 when another
    /// job of the round did it).
    Reopened {
        /// The round.
        round: String,
        /// How many tests this job queued again.
        tests: u64,
    },
}

/// Why an earlier build's failed tests cannot be read (`--retry-of`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailedOf {
    /// The failed tests, sorted; `None` when nothing failed.
    Tests(Option<TestList>),
    /// The build is unknown to this Redis (never run here, or its keys expired).
    Unknown,
    /// The build has not finished.
    Unfinished,
}

impl RedisQueue {
    /// Before joining, a retried job re-opens the build's failed tests once per `round` (the
    /// other jobs of the round find them re-opened). Passed tests are never run again.
    pub async fn retry(&self, round: &RetryRound) -> Result<Retrying, QueueError> {
        loop {
            let observed = scripts::run(
                &self.conn,
                &Observe {
                    keys: &self.keys,
                    previous_meta: None,
                },
            )
            .await?;
            let generation = match observed.state {
                BuildState::Ready { generation } if observed.abort.is_none() => generation,
                _ => return Ok(Retrying::Join),
            };
            let genkeys = self.keys.generation(&generation);
            let retry = Retry {
                keys: &self.keys.per_test(&genkeys),
                generation: &generation,
                worker: &self.worker,
                session: &self.session,
                round: match round {
                    RetryRound::Named(name) => Some(name),
                    RetryRound::Rejoined => None,
                },
                key_ttl_ms: millis(self.settings.key_ttl),
            };
            return Ok(match scripts::run(&self.conn, &retry).await? {
                Retried::Stale => continue,
                Retried::First | Retried::Running => Retrying::Join,
                Retried::Nothing { round } => Retrying::Nothing { round },
                Retried::Again { round } => Retrying::Reopened { round, tests: 0 },
                Retried::Retrying { round, tests } => Retrying::Reopened { round, tests },
            });
        }
    }

    /// The failed tests of finished build `build` (same namespace): the test list of a build
    /// that re-runs them (CircleCI's "rerun failed tests" starts a new workflow). The two
    /// builds live in different slots of a cluster, so this is plain reads, not a script.
    pub async fn failed_of(&self, build: &str) -> Result<FailedOf, QueueError> {
        let keys = BuildKeys::new(&self.settings.namespace, build);
        let observed = scripts::run(
            &self.conn,
            &Observe {
                keys: &keys,
                previous_meta: None,
            },
        )
        .await?;
        if let Some(abort) = observed.abort {
            return Err(QueueError::Aborted(abort));
        }
        let generation = match observed.state {
            BuildState::Absent => return Ok(FailedOf::Unknown),
            BuildState::Setup { .. } => return Ok(FailedOf::Unfinished),
            BuildState::Ready { generation } => keys.generation(&generation),
        };
        let (queued, running, mut failed): (u64, u64, Vec<String>) = self
            .conn
            .pipeline(
                redis::pipe()
                    .llen(&generation.queue)
                    .zcard(&generation.running)
                    .smembers(&generation.failed),
            )
            .await?;
        if queued > 0 || running > 1 {
            return Ok(FailedOf::Unfinished);
        }
        if failed.is_empty() {
            return Ok(FailedOf::Tests(None));
        }
        failed.sort();
        let list = TestList::parse(failed.join("\n").as_bytes(), &format!("build `{build}`"))
            .map_err(|err: TestListError| QueueError::Protocol(err.to_string()))?;
        Ok(FailedOf::Tests(Some(list)))
    }
}
