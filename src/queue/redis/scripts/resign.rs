//! RESIGN: a leader stopped before committing gives its lock and staging up
//! (`lua/resign.lua`).

use redis::Value;

use super::{Step, int};
use crate::queue::QueueError;
use crate::queue::redis::keys::BuildKeys;

pub(super) const SOURCE: &str = lua!("resign.lua");

/// RESIGN of the lock `setup` over `generation`.
pub(in crate::queue::redis) struct Resign<'a> {
    pub keys: &'a BuildKeys,
    pub generation: &'a str,
    pub setup: &'a str,
}

impl Step for Resign<'_> {
    const NAME: &'static str = "resign";
    /// Whether the lock was this leader's and is gone now.
    type Reply = bool;

    hashed!();

    fn keys(&self) -> Vec<String> {
        let mut keys = vec![self.keys.state()];
        keys.extend(
            self.keys
                .generation(self.generation)
                .all()
                .into_iter()
                .map(str::to_owned),
        );
        keys
    }

    fn args(&self) -> Vec<String> {
        vec![self.setup.to_owned()]
    }

    fn reply(raw: Value) -> Result<bool, QueueError> {
        Ok(int(Self::NAME, raw)? == 1)
    }
}
