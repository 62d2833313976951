//! Job retries: a CI job retried after its build ended re-runs the build's failed tests
//! ([`RedisQueue::retry`]); a new build can take an earlier build's failed tests as its list
//! ([`RedisQueue::failed_of`]).

use crate::ci::RetryRound;
use crate::outcome::Outcome;
use crate::queue::QueueError;
use crate::queue::redis::connection::RedisConn;
use crate::queue::redis::keys::{BuildKeys, meta};
use crate::queue::redis::redis_queue::RedisQueue;
use crate::queue::redis::scripts::retry::{JobRetry, Retried};
use crate::queue::redis::scripts::{self, observe::Observe};
use crate::queue::redis::settings::millis;
use crate::queue::redis::state::BuildState;
use crate::test_id::{TestList, TestListError};

/// What a retried job found before it joins the build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Retrying {
    /// The build is not finished, never started, or this job is not a retry: it joins the
    /// build like any worker.
    Join,
    /// The build finished with no failed test: there is nothing to run, and joining it gives
    /// its verdict (green, or red for another reason than a failure).
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
    /// The build was aborted for everyone (a failed listing, lost state, a spent election
    /// budget): a named retry runs the whole suite as the fresh build `fresh` instead.
    Aborted {
        /// The round.
        round: String,
        /// The build id the retry's jobs and report share.
        fresh: String,
    },
}

/// An earlier build's failed tests (`--retry-of`), or why they cannot be known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailedOf {
    /// The failed tests, sorted; `None` when nothing failed.
    Tests(Option<TestList>),
    /// The build is unknown to this Redis (never run here, or its keys expired).
    Unknown,
    /// The build did not end with every test decided and counted: re-running its failures
    /// alone could call a build green whose other tests never ran.
    Unusable(String),
}

impl RedisQueue {
    /// Before joining, a retried job re-opens the build's failed tests once per `round` (the
    /// other jobs of the round find them re-opened). Passed tests are never run again.
    pub async fn retry(&self, round: &RetryRound) -> Result<Retrying, QueueError> {
        let by = By {
            build: &self.settings.build,
            worker: &self.worker,
            session: &self.session,
            key_ttl_ms: Some(millis(self.settings.key_ttl)),
        };
        match reopen(&self.conn, &self.keys, &by, round).await {
            Err(QueueError::StateLost(why)) => Err(self.state_lost(&why).await),
            reopened => reopened,
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
            return Ok(FailedOf::Unusable(format!(
                "it was aborted by worker `{}`: {}",
                abort.worker, abort.message
            )));
        }
        let generation = match observed.state {
            BuildState::Absent => return Ok(FailedOf::Unknown),
            BuildState::Setup { .. } => {
                return Ok(FailedOf::Unusable(
                    "its queue is still being filled".to_owned(),
                ));
            }
            BuildState::Ready { generation } => keys.generation(&generation),
        };
        type Read = (
            (Option<u64>, Option<u64>, Option<u64>),
            u64,
            u64,
            u64,
            u64,
            Vec<String>,
        );
        let ((total, failed_count, errored), queued, running, processed, mismatched, mut failed): Read =
            self.conn
                .pipeline(
                    redis::pipe()
                        .cmd("HMGET")
                        .arg(&generation.meta)
                        .arg(&[
                            meta::TOTAL.to_owned(),
                            meta::count(Outcome::Failed),
                            meta::count(Outcome::Errored),
                        ])
                        .llen(&generation.queue)
                        .zcard(&generation.running)
                        .scard(&generation.processed)
                        .hlen(keys.mismatched())
                        .smembers(&generation.failed),
                )
                .await?;
        let Some(total) = total else {
            return Ok(FailedOf::Unusable(
                "its metadata is gone from Redis".to_owned(),
            ));
        };
        if queued > 0 || running != 1 || processed != total {
            return Ok(FailedOf::Unusable(format!(
                "only {processed} of its {total} tests have an outcome (still running, stopped early, or part of it lost)"
            )));
        }
        if failed.len() as u64 != failed_count.unwrap_or(0) + errored.unwrap_or(0) {
            return Ok(FailedOf::Unusable(
                "its failing tests do not match their counts (Redis lost part of it)".to_owned(),
            ));
        }
        if mismatched > 0 {
            return Ok(FailedOf::Unusable(
                "a worker with another test list ran nothing (exit 6): that is no failure to re-run"
                    .to_owned(),
            ));
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

impl RedisQueue {
    /// Records that this build re-runs the failed tests of `earlier`, which had none, so that
    /// its report can say why the build has no test.
    pub async fn record_nothing_to_retry(&self, earlier: &str) -> Result<(), QueueError> {
        let ttl = u64::try_from(self.settings.key_ttl.as_millis()).unwrap_or(u64::MAX);
        self.conn
            .query(
                redis::cmd("SET")
                    .arg(self.keys.nothing_to_retry())
                    .arg(earlier)
                    .arg("PX")
                    .arg(ttl.max(1)),
            )
            .await
    }
}

/// Who runs RETRY: a worker's session, or the report.
struct By<'a> {
    build: &'a str,
    worker: &'a str,
    session: &'a str,
    /// The TTL the keys get; `None` leaves theirs (the report does not know the workers').
    key_ttl_ms: Option<String>,
}

/// The report of a retried job re-opens the failed tests itself when it comes first: otherwise it
/// could read the finished build before any retried worker did, and give its old verdict.
/// Only a named round: the report has no worker id of its own to tell a GitLab retry by.
pub(super) async fn reopen_for_report(
    conn: &RedisConn,
    keys: &BuildKeys,
    build: &str,
    round: &str,
) -> Result<Retrying, QueueError> {
    let by = By {
        build,
        worker: "report",
        session: "report",
        key_ttl_ms: None,
    };
    reopen(conn, keys, &by, &RetryRound::Named(round.to_owned())).await
}

async fn reopen(
    conn: &RedisConn,
    keys: &BuildKeys,
    by: &By<'_>,
    round: &RetryRound,
) -> Result<Retrying, QueueError> {
    loop {
        let observed = scripts::run(
            conn,
            &Observe {
                keys,
                previous_meta: None,
            },
        )
        .await?;
        if observed.abort.is_some()
            && let RetryRound::Named(round) = round
        {
            return Ok(Retrying::Aborted {
                round: round.clone(),
                fresh: format!("{}-retry-{round}", by.build),
            });
        }
        let generation = match observed.state {
            BuildState::Ready { generation } if observed.abort.is_none() => generation,
            _ => return Ok(Retrying::Join),
        };
        let retry = JobRetry {
            keys: &keys.per_test(&keys.generation(&generation)),
            generation: &generation,
            worker: by.worker,
            session: by.session,
            round: match round {
                RetryRound::Named(name) => Some(name),
                RetryRound::Rejoined => None,
            },
            key_ttl_ms: by.key_ttl_ms.clone(),
        };
        return match scripts::run(conn, &retry).await? {
            Retried::Stale => continue,
            Retried::First | Retried::Running => Ok(Retrying::Join),
            Retried::Nothing { round } => Ok(Retrying::Nothing { round }),
            Retried::Again { round } => Ok(Retrying::Reopened { round, tests: 0 }),
            Retried::Retrying { round, tests } => Ok(Retrying::Reopened { round, tests }),
            Retried::Lost { why } => Err(QueueError::StateLost(why)),
        };
    }
}
