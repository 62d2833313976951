//! Reading a build's timeline back from Redis: [`RedisQueue::timeline`] for a worker's side,
//! [`crate::queue::redis::supervisor::Supervisor::timeline`] for the report's.

use crate::queue::QueueError;
use crate::queue::redis::RedisQueue;
use crate::queue::redis::connection::RedisConn;
use crate::queue::redis::keys::BuildKeys;
use crate::timeline::{self, Timeline};

/// Bytes read per `GETRANGE`: a million-test build's records (over 100 MB) come in pieces, so
/// no single reply holds Redis (or the connection) for long.
const PIECE: usize = 1 << 20;

impl RedisQueue {
    /// The timeline of this worker's build, as far as it was recorded.
    pub async fn timeline(&self) -> Result<Timeline, QueueError> {
        read_timeline(&self.conn, &self.keys).await
    }
}

/// Reads the records piece by piece. The scripts append whole chunks atomically, so a piece
/// shorter than asked for ends where the records ended at that moment, at a chunk's end.
pub(super) async fn read_timeline(
    conn: &RedisConn,
    keys: &BuildKeys,
) -> Result<Timeline, QueueError> {
    let key = keys.timeline();
    let mut bytes: Vec<u8> = Vec::new();
    loop {
        let start = bytes.len();
        let piece: Vec<u8> = conn
            .query(
                redis::cmd("GETRANGE")
                    .arg(&key)
                    .arg(start)
                    .arg(start + PIECE - 1),
            )
            .await?;
        let short = piece.len() < PIECE;
        bytes.extend(piece);
        if short {
            break;
        }
    }
    Ok(timeline::parse(&bytes))
}
