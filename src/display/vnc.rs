//! The VNC server: a listener thread (`vnc-listen`) that hands each connection to
//! threads of its own (`vnc-client`), so a slow or hostile client only ever stalls itself.
//! The protocol of one connection is in `vnc_session`.

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use log::{info, warn};

use super::vnc_session;
use super::{DisplaySource, InputSink};

/// Connections served at once; more are closed at accept, so a flood of connections
/// cannot exhaust threads.
pub const MAX_CLIENTS: usize = 16;

/// What the listener and every client thread share.
pub(super) struct ServerShared {
    pub source: Arc<dyn DisplaySource>,
    pub input: Option<Arc<dyn InputSink>>,
    pub stopping: AtomicBool,
    /// A handle on each client's socket, so `stop` can shut them and wake their threads.
    clients: Mutex<HashMap<u64, TcpStream>>,
}

impl ServerShared {
    fn clients(&self) -> MutexGuard<'_, HashMap<u64, TcpStream>> {
        self.clients.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }
}

/// A running VNC server; dropping it (or [`VncServer::stop`]) closes every connection
/// and joins its threads.
pub struct VncServer {
    local_addr: SocketAddr,
    shared: Arc<ServerShared>,
    listener: Arc<TcpListener>,
    thread: Option<JoinHandle<()>>,
}

impl VncServer {
    /// Binds `addr` and serves the screen of `source` there; key and pointer events go to
    /// `input` (dropped when None, for a view-only server).
    pub fn start(
        addr: SocketAddr,
        source: Arc<dyn DisplaySource>,
        input: Option<Arc<dyn InputSink>>,
    ) -> io::Result<VncServer> {
        let listener = Arc::new(TcpListener::bind(addr)?);
        let local_addr = listener.local_addr()?;
        let shared = Arc::new(ServerShared {
            source,
            input,
            stopping: AtomicBool::new(false),
            clients: Mutex::new(HashMap::new()),
        });
        let thread = std::thread::Builder::new()
            .name("vnc-listen".into())
            .spawn({
                let listener = Arc::clone(&listener);
                let shared = Arc::clone(&shared);
                move || {
                    // Its client threads inherit the filter.
                    crate::seccomp::confine(crate::seccomp::ThreadKind::Display);
                    accept_loop(&listener, &shared)
                }
            })?;
        info!("vnc: listening on {local_addr}");
        Ok(VncServer {
            local_addr,
            shared,
            listener,
            thread: Some(thread),
        })
    }

    /// The address bound (with the real port when 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// How many clients are connected now.
    pub fn client_count(&self) -> usize {
        self.shared.clients().len()
    }

    /// Closes the listener and every connection, and waits for their threads.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        self.shared.stopping.store(true, Ordering::Release);
        // SAFETY: shutdown(2) on the listening socket, which `self.listener` keeps open;
        // on Linux it makes the blocked accept return, ending the listener thread.
        let woken = unsafe { libc::shutdown(self.listener.as_raw_fd(), libc::SHUT_RDWR) } == 0;
        if !woken {
            // Elsewhere, a connection of our own wakes accept instead.
            let _ = TcpStream::connect_timeout(&wake_addr(self.local_addr), Duration::from_secs(1));
        }
        for stream in self.shared.clients().values() {
            let _ = stream.shutdown(Shutdown::Both);
        }
        if thread.join().is_err() {
            warn!("vnc: the listener thread panicked");
        }
        info!("vnc: stopped listening on {}", self.local_addr);
    }
}

impl Drop for VncServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Where to connect to reach a listener bound to `addr` (a wildcard means loopback).
fn wake_addr(addr: SocketAddr) -> SocketAddr {
    let mut target = addr;
    if addr.ip().is_unspecified() {
        target.set_ip(match addr {
            SocketAddr::V4(_) => Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => Ipv6Addr::LOCALHOST.into(),
        });
    }
    target
}

fn accept_loop(listener: &TcpListener, shared: &Arc<ServerShared>) {
    let mut workers: Vec<JoinHandle<()>> = Vec::new();
    let mut next_id = 0u64;
    for conn in listener.incoming() {
        if shared.is_stopping() {
            break;
        }
        let stream = match conn {
            Ok(stream) => stream,
            Err(e) => {
                // E.g. out of descriptors: pause rather than spin on the error.
                warn!("vnc: accept: {e}");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        let peer = match stream.peer_addr() {
            Ok(peer) => peer,
            Err(e) => {
                warn!("vnc: connection without a peer address: {e}");
                continue;
            }
        };
        // Threads that ended were already detached from the registry; forget them.
        workers.retain(|w| !w.is_finished());
        if workers.len() >= MAX_CLIENTS {
            warn!("vnc: {peer} refused: already {MAX_CLIENTS} clients");
            continue;
        }
        let handle = match stream.try_clone() {
            Ok(handle) => handle,
            Err(e) => {
                warn!("vnc: {peer}: {e}");
                continue;
            }
        };
        let id = next_id;
        next_id += 1;
        {
            // Checked under the lock `shutdown` takes to sweep the sockets, so a client
            // is either swept or never started.
            let mut clients = shared.clients();
            if shared.is_stopping() {
                break;
            }
            clients.insert(id, handle);
        }
        info!("vnc: {peer} connected");
        let spawned = std::thread::Builder::new()
            .name("vnc-client".into())
            .spawn({
                let shared = Arc::clone(shared);
                move || {
                    vnc_session::run(stream, peer, &shared);
                    shared.clients().remove(&id);
                }
            });
        match spawned {
            Ok(worker) => workers.push(worker),
            Err(e) => {
                warn!("vnc: {peer}: no thread: {e}");
                shared.clients().remove(&id);
            }
        }
    }
    for worker in workers {
        if worker.join().is_err() {
            warn!("vnc: a client thread panicked");
        }
    }
}
