//! [`BuildState`]: the build's `state` key, parsed in one place.

use crate::queue::QueueError;

/// What the `state` key says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuildState {
    /// Nobody leads: nobody started yet, the leader's lock lapsed, or the state was lost.
    Absent,
    /// A leader fills `generation` under its setup lock.
    Setup {
        /// The generation being filled.
        generation: String,
        /// The leader's worker id.
        leader: String,
    },
    /// `generation` is the build's queue.
    Ready {
        /// The committed generation.
        generation: String,
    },
}

impl BuildState {
    /// Parses `setup:<gen>:<worker>`, `ready:<gen>`, or nothing (`""`).
    pub fn parse(value: &str) -> Result<Self, QueueError> {
        if value.is_empty() {
            return Ok(BuildState::Absent);
        }
        if let Some(generation) = value.strip_prefix("ready:") {
            return Ok(BuildState::Ready {
                generation: generation.to_owned(),
            });
        }
        // A generation is a UUID: the first colon after it ends it; the worker id may hold more.
        if let Some((generation, leader)) = value
            .strip_prefix("setup:")
            .and_then(|rest| rest.split_once(':'))
        {
            return Ok(BuildState::Setup {
                generation: generation.to_owned(),
                leader: leader.to_owned(),
            });
        }
        Err(QueueError::Protocol(format!(
            "the build's state is `{value}`, which this version does not know"
        )))
    }

    /// The setup value a leader of `generation` holds: `setup:<gen>:<worker>`.
    pub fn setup_value(generation: &str, worker: &str) -> String {
        format!("setup:{generation}:{worker}")
    }

    /// The ready value of `generation`: `ready:<gen>`.
    pub fn ready_value(generation: &str) -> String {
        format!("ready:{generation}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_parse_in_their_three_forms() {
        assert_eq!(BuildState::parse("").unwrap(), BuildState::Absent);
        assert_eq!(
            BuildState::parse("ready:g1").unwrap(),
            BuildState::Ready {
                generation: "g1".into()
            }
        );
        assert_eq!(
            BuildState::parse(&BuildState::setup_value("1b2c", "worker:3")).unwrap(),
            BuildState::Setup {
                generation: "1b2c".into(),
                leader: "worker:3".into()
            }
        );
        assert!(BuildState::parse("odd").is_err());
    }
}
