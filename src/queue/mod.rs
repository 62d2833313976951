//! The [`Queue`] trait every backend implements, and the values that cross it.
//!
//! A worker holds one queue handle: the in-memory [`local`] queue for `-j N` on one machine, or
//! the [`redis`] queue shared by a build's workers. The worker loop in [`crate::worker`] only
//! sees this trait, so both backends run the same loop with the same semantics.

mod api;
pub mod budget;
pub mod error;
pub mod local;
pub mod redis;
mod want;

pub use api::{Ack, AckReply, Lease, Pacing, Queue, Recorded, Reservation, Reserved};
pub use error::QueueError;
pub use want::{SHARE_PER_WORKER, Timed, Want};
