//! SIGINT and SIGTERM as a future, so the worker loop can stop its test, give its leases back
//! and exit with a documented code instead of dying mid-protocol.

use tokio::signal::unix::{SignalKind, signal};

/// Resolves to the signal number when SIGINT or SIGTERM arrives. If the handlers cannot be
/// installed it never resolves, and the default action (exit) applies.
pub async fn shutdown() -> i32 {
    let (Ok(mut interrupt), Ok(mut terminate)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = interrupt.recv() => libc_signal::SIGINT,
        _ = terminate.recv() => libc_signal::SIGTERM,
    }
}

mod libc_signal {
    pub const SIGINT: i32 = nix::sys::signal::Signal::SIGINT as i32;
    pub const SIGTERM: i32 = nix::sys::signal::Signal::SIGTERM as i32;
}
