//! RESIGN: a worker stopped before it joined says it left, and a leader that did not commit
//! gives its lock and staging up (`lua/resign.lua`).

use redis::Value;

use super::reply::int;
use super::step::Step;
use crate::queue::QueueError;
use crate::queue::redis::keys::BuildKeys;
use crate::timeline::Leave;
use crate::timeline::record::leave_letter;

pub(super) const SOURCE: &str = lua!("resign.lua");

/// RESIGN of session `session`, and of the lock `setup` over `generation` when it leads one.
pub(in crate::queue::redis) struct Resign<'a> {
    pub keys: &'a BuildKeys,
    pub session: &'a str,
    pub worker: &'a str,
    /// The generation it fills and its setup value, when it leads.
    pub leading: Option<(&'a str, &'a str)>,
    /// How it leaves: SIGTERM or failed.
    pub how: Leave,
}

impl Step for Resign<'_> {
    const NAME: &'static str = "resign";
    /// Whether the lock was this leader's and is gone now.
    type Reply = bool;

    fn keys(&self) -> Vec<String> {
        let mut keys = vec![
            self.keys.state(),
            self.keys.workers(),
            self.keys.timeline(),
        ];
        if let Some((generation, _)) = self.leading {
            keys.extend(
                self.keys
                    .generation(generation)
                    .all()
                    .into_iter()
                    .map(str::to_owned),
            );
        }
        keys
    }

    fn args(&self) -> Vec<String> {
        vec![
            self.leading
                .map(|(_, setup)| setup.to_owned())
                .unwrap_or_default(),
            self.session.to_owned(),
            self.worker.to_owned(),
            leave_letter(self.how).to_string(),
        ]
    }

    fn reply(raw: Value) -> Result<bool, QueueError> {
        Ok(int(Self::NAME, raw)? == 1)
    }
}
