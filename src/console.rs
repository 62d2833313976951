//! What ciq tells people while it works, written by a thread of its own.
//!
//! A CI log pipe that nobody reads for a while (a stalled log shipper, a `| (sleep 20; cat)`)
//! blocks whoever writes to it. If the worker loop wrote its per-test lines itself, a stalled
//! pipe would stop its heartbeats and acknowledgements too, and its tests would be taken over as
//! lost. [`say`] only queues the line; the writer thread blocks on the pipe instead. When more
//! than [`BACKLOG`] lines wait, new ones are dropped and counted, and the count is printed when
//! the pipe moves again.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Duration;

/// Most lines held while the pipe is stalled.
pub const BACKLOG: usize = 20_000;

enum Message {
    Line(String),
    Flush(mpsc::Sender<()>),
}

struct Writer {
    sender: Mutex<Option<SyncSender<Message>>>,
    dropped: AtomicU64,
}

fn writer() -> &'static Writer {
    static WRITER: OnceLock<Writer> = OnceLock::new();
    WRITER.get_or_init(|| {
        let (sender, receiver) = mpsc::sync_channel(BACKLOG);
        let spawned = std::thread::Builder::new()
            .name("ciq-console".to_owned())
            .spawn(move || write_lines(receiver));
        Writer {
            // Without the thread, lines are written directly (see `say`).
            sender: Mutex::new(spawned.ok().map(|_| sender)),
            dropped: AtomicU64::new(0),
        }
    })
}

fn write_lines(receiver: Receiver<Message>) {
    let mut stderr = std::io::stderr();
    while let Ok(message) = receiver.recv() {
        let dropped = writer().dropped.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            let _ = writeln!(
                stderr,
                "ciq: {dropped} line(s) of output dropped: the log pipe was not read"
            );
        }
        match message {
            Message::Line(line) => {
                let _ = writeln!(stderr, "{line}");
            }
            Message::Flush(done) => {
                let _ = stderr.flush();
                let _ = done.send(());
            }
        }
    }
}

/// Queues `line` for stderr without ever blocking on the pipe.
pub fn say(line: String) {
    let writer = writer();
    let sender = writer
        .sender
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let Some(sender) = sender else {
        eprintln!("{line}");
        return;
    };
    match sender.try_send(Message::Line(line)) {
        Ok(()) => {}
        Err(TrySendError::Full(_)) => {
            writer.dropped.fetch_add(1, Ordering::Relaxed);
        }
        Err(TrySendError::Disconnected(Message::Line(line))) => eprintln!("{line}"),
        Err(TrySendError::Disconnected(_)) => {}
    }
}

/// Waits up to `within` for the queued lines to be written, so they come before what is
/// printed last (the summary, an error) and are not lost at exit.
pub fn flush(within: Duration) {
    let sender = writer()
        .sender
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let Some(sender) = sender else { return };
    let (done, written) = mpsc::channel();
    let deadline = std::time::Instant::now() + within;
    let mut message = Message::Flush(done);
    loop {
        match sender.try_send(message) {
            Ok(()) => break,
            Err(TrySendError::Full(back)) if std::time::Instant::now() < deadline => {
                message = back;
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(_) => return,
        }
    }
    let left = deadline.saturating_duration_since(std::time::Instant::now());
    let _ = written.recv_timeout(left);
}

/// Like `eprintln!`, through [`say`]: never blocks on a stalled pipe.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::console::say(format!($($arg)*))
    };
}
