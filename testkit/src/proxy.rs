//! [`FaultProxy`]: a real TCP proxy between one worker and Redis, so a test can break that
//! worker's network without touching the others: drop every current connection at once, or
//! blackhole the traffic (connections are accepted, bytes are held, nothing is forwarded) and
//! later resume, delivering what was held as a slow network would.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

/// A proxy on a free loopback port in front of `127.0.0.1:<upstream>`.
pub struct FaultProxy {
    pub port: u16,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

struct Shared {
    upstream: SocketAddr,
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Default)]
struct State {
    /// Blackholed: pumps hold what they read instead of forwarding it.
    holding: bool,
    /// The proxy is being dropped.
    closed: bool,
    next_link: u64,
    links: HashMap<u64, Link>,
}

/// One proxied connection: its client side and its upstream side.
struct Link {
    sides: [TcpStream; 2],
    /// Directions still copying; the link is forgotten when both have ended.
    pumps: u8,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Closes one link both ways; its pumps end on their next read or write.
    fn close(&self, link: u64) {
        if let Some(link) = self.lock().links.remove(&link) {
            for side in link.sides {
                let _ = side.shutdown(Shutdown::Both);
            }
        }
        self.changed.notify_all();
    }

    /// One direction of `link` reached its end of stream.
    fn pump_done(&self, link: u64) {
        let mut state = self.lock();
        if let Some(entry) = state.links.get_mut(&link) {
            entry.pumps -= 1;
            if entry.pumps == 0 {
                state.links.remove(&link);
            }
        }
    }
}

impl FaultProxy {
    /// Starts forwarding to the Redis on `upstream` (same host, loopback).
    pub fn start(upstream: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let shared = Arc::new(Shared {
            upstream: SocketAddr::from(([127, 0, 0, 1], upstream)),
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
        });
        let acceptor = std::thread::spawn({
            let shared = Arc::clone(&shared);
            move || accept(&listener, &shared)
        });
        Self {
            port,
            shared,
            acceptor: Some(acceptor),
        }
    }

    /// `redis://127.0.0.1:PORT/0` through this proxy.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Closes every current connection at once (both sides, as a reset network would); new
    /// connections are accepted as before. Returns how many were open.
    pub fn drop_connections(&self) -> usize {
        let links: Vec<u64> = self.shared.lock().links.keys().copied().collect();
        for &link in &links {
            self.shared.close(link);
        }
        links.len()
    }

    /// Stops forwarding: connections stay open and new ones are accepted, but every byte is
    /// held until [`FaultProxy::resume`].
    pub fn blackhole(&self) {
        self.shared.lock().holding = true;
    }

    /// Forwards again, held bytes first.
    pub fn resume(&self) {
        self.shared.lock().holding = false;
        self.shared.changed.notify_all();
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.resume();
        self.drop_connections();
        // Wake the acceptor, which sees `closed` and ends.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

fn accept(listener: &TcpListener, shared: &Arc<Shared>) {
    for client in listener.incoming() {
        if shared.lock().closed {
            return;
        }
        let Ok(client) = client else { continue };
        // Redis down (restarting): the client sees its connection closed, as it would directly.
        let Ok(server) = TcpStream::connect(shared.upstream) else {
            continue;
        };
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        let (Ok(client_side), Ok(server_side)) = (client.try_clone(), server.try_clone()) else {
            continue;
        };
        let link = {
            let mut state = shared.lock();
            state.next_link += 1;
            let link = state.next_link;
            state.links.insert(
                link,
                Link {
                    sides: [client_side, server_side],
                    pumps: 2,
                },
            );
            link
        };
        for (from, to) in [(&client, &server), (&server, &client)] {
            let (Ok(from), Ok(to)) = (from.try_clone(), to.try_clone()) else {
                shared.close(link);
                break;
            };
            let shared = Arc::clone(shared);
            std::thread::spawn(move || pump(link, from, to, &shared));
        }
    }
}

/// Copies one direction of a link, holding each chunk while the proxy is blackholed. An end of
/// stream is passed on as a half-close, so bytes still held for the other direction (a reply,
/// or a request its client gave up on) are delivered as a real network would.
fn pump(link: u64, mut from: TcpStream, mut to: TcpStream, shared: &Shared) {
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut chunk) {
            Ok(0) => {
                let _ = to.shutdown(Shutdown::Write);
                shared.pump_done(link);
                return;
            }
            Ok(n) => n,
            Err(_) => break,
        };
        {
            let mut state = shared.lock();
            while state.holding && state.links.contains_key(&link) {
                state = shared
                    .changed
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            if !state.links.contains_key(&link) {
                return;
            }
        }
        if to.write_all(&chunk[..n]).is_err() {
            break;
        }
    }
    shared.close(link);
}
