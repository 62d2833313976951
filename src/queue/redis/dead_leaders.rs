//! Counting the leaders that died before filling the queue, for the election budget that both
//! waiting workers and the report enforce.

use crate::queue::QueueError;

/// Leaders seen to die by one watcher: a lock that lapsed (state absent), or one replaced by
/// another worker's setup between two looks (it lapsed unseen).
#[derive(Debug, Default)]
pub(super) struct DeadLeaders {
    dead: u32,
    last_setup: Option<String>,
}

impl DeadLeaders {
    /// Records a leader filling `generation`; true when it replaced another leader's.
    pub(super) fn saw_setup(&mut self, generation: &str) -> bool {
        let replaced = self
            .last_setup
            .as_deref()
            .is_some_and(|last| last != generation);
        if replaced {
            self.dead += 1;
        }
        self.last_setup = Some(generation.to_owned());
        replaced
    }

    /// Whether a leader's setup was seen and has not lapsed since.
    pub(super) fn watching(&self) -> bool {
        self.last_setup.is_some()
    }

    /// The setup lock lapsed: the leader holding it died.
    pub(super) fn lapsed(&mut self) {
        self.dead += 1;
        self.last_setup = None;
    }

    /// Forgets the setup last seen without counting a death: it was this worker's own lock,
    /// taken over by a leader it has not seen yet.
    pub(super) fn forget_setup(&mut self) {
        self.last_setup = None;
    }

    /// How many died so far.
    pub(super) fn count(&self) -> u32 {
        self.dead
    }

    /// The "lost leader" error once `budget` leaders have died.
    pub(super) fn over(&self, budget: u32) -> Option<QueueError> {
        (self.dead >= budget).then_some(QueueError::LostLeader {
            attempts: self.dead,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_setup_replaced_unseen_or_lapsed_is_a_death() {
        let mut leaders = DeadLeaders::default();
        assert!(!leaders.saw_setup("g1"));
        assert!(!leaders.saw_setup("g1"), "the same lock, renewed");
        assert!(leaders.saw_setup("g2"));
        leaders.lapsed();
        assert!(!leaders.watching());
        assert!(!leaders.saw_setup("g3"), "first seen after a lapse");
        assert_eq!(leaders.count(), 2);
        assert!(leaders.over(3).is_none());
        leaders.lapsed();
        assert!(matches!(
            leaders.over(3),
            Some(QueueError::LostLeader { attempts: 3 })
        ));
    }
}
