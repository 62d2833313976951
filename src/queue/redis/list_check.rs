//! Checking that a follower's own test list is the one its build was filled with.
//!
//! Workers of one build normally share one list. When they do not (a stale checkout, a list
//! generated per machine, two suites given one build id without `--namespace`), a follower would
//! run the leader's tests with its own command and its own tests would never run, while the
//! build went green. The leader stores a digest of its list's set at commit; a follower with a
//! list compares at once, and only on a mismatch reads the build's ids to say how they differ.

use std::collections::HashSet;

use crate::queue::QueueError;
use crate::queue::redis::keys::{meta, workers};
use crate::queue::redis::redis_queue::RedisQueue;
use crate::queue::redis::scripts::stored_id;
use crate::test_id::TestList;

impl RedisQueue {
    /// Fails with [`QueueError::ListMismatch`], recorded for the report and the other workers,
    /// when `list` is not the set of tests generation `generation` was filled with.
    pub(super) async fn check_list(
        &self,
        generation: &str,
        list: &TestList,
    ) -> Result<(), QueueError> {
        let keys = self.keys.generation(generation);
        let (total, committed): (Option<String>, Option<String>) = self
            .conn
            .query(
                redis::cmd("HMGET")
                    .arg(&keys.meta)
                    .arg(meta::TOTAL)
                    .arg(meta::LIST_DIGEST),
            )
            .await?;
        // No meta at all is lost state, which the first reservation reports; a meta without a
        // digest cannot vouch for the list, and is refused like another list.
        if total.is_none() || committed.as_deref() == Some(list.digest().as_str()) {
            return Ok(());
        }
        let mut read = redis::pipe();
        read.atomic()
            .lrange(&keys.queue, 0, -1)
            .zrange(&keys.running, 0, -1)
            .smembers(&keys.processed);
        let (queued, running, processed): (Vec<String>, Vec<String>, Vec<String>) =
            self.conn.pipeline(&read).await?;
        // Running entries are `<lease>:<test>`, and one is '' (it keeps the set alive).
        let running = running
            .iter()
            .filter_map(|entry| entry.split_once(':').map(|(_, test)| test));
        let build: HashSet<&str> = queued
            .iter()
            .chain(&processed)
            .map(String::as_str)
            .chain(running)
            .collect();
        let ours: HashSet<&str> = list.ids.iter().map(|id| id.as_str()).collect();
        let only_ours = ours.difference(&build).count();
        let only_build = build.difference(&ours).count();
        if only_ours == 0 && only_build == 0 {
            return Ok(());
        }
        let example = ours
            .difference(&build)
            .min()
            .or_else(|| build.difference(&ours).min())
            .map(|id| stored_id(id).map(|id| format!("; e.g. `{id}`")))
            .transpose()?
            .unwrap_or_default();
        let detail = format!(
            "{only_ours} of its {} ids are not in the build's list of {}, and {only_build} of the build's are not in its list{example}",
            ours.len(),
            build.len()
        );
        let line = format!("worker `{}`: {detail}", self.worker);
        let mut record = redis::pipe();
        record
            .atomic()
            .hset(self.keys.mismatched(), &self.session, &line)
            .ignore()
            .pexpire(
                self.keys.mismatched(),
                i64::try_from(self.settings.key_ttl.as_millis()).unwrap_or(i64::MAX),
            )
            .ignore()
            .hset(
                self.keys.workers(),
                &self.session,
                workers::left(0, &self.worker),
            )
            .ignore();
        let () = self.conn.pipeline(&record).await?;
        Err(QueueError::ListMismatch {
            worker: self.worker.clone(),
            build: self.settings.build.clone(),
            detail,
        })
    }
}
