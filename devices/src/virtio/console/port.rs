//! The data queues of one port. Bytes move between the host end and guest buffers with
//! one io_uring read or write at a time per direction, so they stay in order. Nothing is
//! dropped on the way: guest output waits in the guest's own transmit buffers (no used
//! entries: backpressure) while a named port has no host client, and host input waits in
//! the host's socket or pipe while the guest has no receive buffer or the port closed.
//! The console is the exception: a kernel writing to hvc0 spins until its buffer is
//! used, so console output with no client is counted and dropped, as on a real UART.

use std::collections::VecDeque;
use std::os::fd::{FromRawFd, OwnedFd};

use log::{debug, warn};
use ringvisor_io::{IoBatch, IoOp, QueueFault, QueueWorker};
use virtio_queue::Queue;

use super::backend::HostLink;
use super::hub::{lock, port_rx_queue, Nudge, SharedHub, NUDGE_TAG};
use crate::virtio::chain::{iovecs, ChainLayout, MAX_CHAIN_DESCRIPTORS};
use crate::virtio::queue_ring::{forward_to_ring, QueueRing};
use crate::virtio::GuestMemory;

const ACCEPT_TAG: u64 = 1;
const READ_TAG: u64 = 2;
const WRITE_TAG: u64 = 3;
const RETRY_TAG: u64 = 4;
/// A hangup watch on a client's connection: the tag adds the port's connection count, so
/// a watch on an earlier client is recognised as stale.
const HANGUP_TAG_BASE: u64 = 1 << 32;
/// Wait after a failed accept before trying again.
const ACCEPT_RETRY_NANOS: u64 = 1_000_000_000;
/// Stream reads and writes use the file position (`-1`): sockets, pipes and terminals
/// have none, and output files are opened O_APPEND.
const STREAM_OFFSET: u64 = u64::MAX;

/// What the receive side waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RxWait {
    Nothing,
    Accept,
    Read(u16),
    Retry,
}

/// Host to guest: fills the port's receive buffers from its host end.
pub struct PortRxWorker {
    port: u32,
    ring: QueueRing,
    hub: SharedHub,
    nudge: Nudge,
    layout: ChainLayout,
    buffers: VecDeque<u16>,
    waiting: RxWait,
    /// A hangup watch is under way: a client that leaves while the guest has no buffer
    /// posted (or the port closed) is noticed without a read.
    watching: bool,
    bad_chains: u64,
}

impl PortRxWorker {
    pub(crate) fn new(
        port: u32,
        queue: Queue,
        mem: GuestMemory,
        hub: SharedHub,
    ) -> std::io::Result<Self> {
        let index = port_rx_queue(port);
        let nudge = Nudge::register(&mut lock(&hub), index)?;
        Ok(Self {
            port,
            ring: QueueRing::new(index, queue, mem),
            hub,
            nudge,
            layout: ChainLayout::with_capacity(MAX_CHAIN_DESCRIPTORS),
            buffers: VecDeque::new(),
            waiting: RxWait::Nothing,
            watching: false,
            bad_chains: 0,
        })
    }

    /// Starts whatever the port can do next: accept a client, or read into the first
    /// receive buffer.
    fn pump(&mut self, batch: &mut IoBatch) -> Result<(), QueueFault> {
        if self.waiting != RxWait::Nothing {
            return Ok(());
        }
        let mut hub = lock(&self.hub);
        if matches!(
            hub.ports.get(self.port as usize).map(|p| &p.link),
            Some(HostLink::Socket { broken: true, .. })
        ) {
            hub.disconnect(self.port);
        }
        let Some(port) = hub.ports.get(self.port as usize) else {
            return Ok(());
        };
        if let Some(listener) = port.link.listener_fd() {
            batch.push(ACCEPT_TAG, IoOp::Accept { fd: listener });
            self.waiting = RxWait::Accept;
            return Ok(());
        }
        if let (HostLink::Socket { .. }, Some(fd), false) =
            (&port.link, port.link.input_fd(), self.watching)
        {
            let events = (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) as u32;
            batch.push(
                HANGUP_TAG_BASE + port.stats.connects,
                IoOp::Poll { fd, events },
            );
            self.watching = true;
        }
        let Some(fd) = port.link.input_fd().filter(|_| port.guest_open) else {
            return Ok(());
        };
        drop(hub);
        while let Some(&head) = self.buffers.front() {
            let buffer = self.ring.walk(head, &mut self.layout).and_then(|()| {
                iovecs(
                    self.ring.mem(),
                    &self.layout.writable,
                    0,
                    self.layout.writable_len(),
                    false,
                )
            });
            match buffer {
                Ok(iovecs) if !iovecs.is_empty() => {
                    batch.push(
                        READ_TAG,
                        IoOp::Read {
                            fd,
                            offset: STREAM_OFFSET,
                            iovecs,
                        },
                    );
                    self.waiting = RxWait::Read(head);
                    return Ok(());
                }
                _ => {
                    self.bad_chains += 1;
                    self.buffers.pop_front();
                    self.ring.add_used(head, 0)?;
                    batch.note_completed();
                }
            }
        }
        Ok(())
    }

    fn accepted(&mut self, result: i32, batch: &mut IoBatch) {
        if result >= 0 {
            // SAFETY: a successful accept returns a new descriptor that nothing else owns.
            let connection = unsafe { OwnedFd::from_raw_fd(result) };
            lock(&self.hub).connect(self.port, connection);
        } else {
            warn!(
                "console port {}: accept failed: {}",
                self.port,
                std::io::Error::from_raw_os_error(-result)
            );
            self.waiting = RxWait::Retry;
            batch.push(
                RETRY_TAG,
                IoOp::Delay {
                    nanos: ACCEPT_RETRY_NANOS,
                },
            );
        }
    }

    fn read_done(&mut self, head: u16, result: i32) -> Result<(), QueueFault> {
        if result > 0 {
            self.buffers.pop_front();
            self.ring.add_used(head, result as u32)?;
            lock(&self.hub).ports[self.port as usize]
                .stats
                .to_guest_bytes += result as u64;
            return Ok(());
        }
        if result == -libc::EINTR || result == -libc::EAGAIN {
            return Ok(());
        }
        // EOF or an error: the buffer stays for the next client.
        let mut hub = lock(&self.hub);
        let socket = matches!(hub.ports[self.port as usize].link, HostLink::Socket { .. });
        if socket {
            hub.disconnect(self.port);
        } else {
            if result < 0 {
                warn!(
                    "console port {}: reading host input failed: {}",
                    self.port,
                    std::io::Error::from_raw_os_error(-result)
                );
            }
            debug!("console port {}: host input ended", self.port);
            hub.end_input(self.port);
        }
        Ok(())
    }
}

impl QueueWorker for PortRxWorker {
    fn drain(&mut self, batch: &mut IoBatch) -> Result<usize, QueueFault> {
        self.nudge.arm(batch);
        let popped = self.ring.pop_heads_onto(&mut self.buffers)?;
        self.pump(batch)?;
        Ok(popped)
    }

    fn complete(&mut self, tag: u64, result: i32, batch: &mut IoBatch) -> Result<(), QueueFault> {
        if (HANGUP_TAG_BASE..NUDGE_TAG).contains(&tag) {
            self.watching = false;
            if result == -libc::ECANCELED {
                return Ok(());
            }
            let mut hub = lock(&self.hub);
            if result > 0 && hub.ports[self.port as usize].stats.connects == tag - HANGUP_TAG_BASE {
                hub.disconnect(self.port);
            }
            drop(hub);
            return self.pump(batch);
        }
        if result == -libc::ECANCELED {
            // The queue is being taken back; a cancelled read leaves its buffer unused.
            self.nudge.fired(result);
            self.waiting = RxWait::Nothing;
            return Ok(());
        }
        match (tag, self.waiting) {
            (NUDGE_TAG, _) => {
                self.nudge.fired(result);
                self.nudge.arm(batch);
            }
            (ACCEPT_TAG, RxWait::Accept) => {
                self.waiting = RxWait::Nothing;
                self.accepted(result, batch);
            }
            (READ_TAG, RxWait::Read(head)) => {
                self.waiting = RxWait::Nothing;
                self.read_done(head, result)?;
            }
            (RETRY_TAG, RxWait::Retry) => self.waiting = RxWait::Nothing,
            _ => {}
        }
        self.pump(batch)
    }

    fn in_flight(&self) -> usize {
        usize::from(matches!(self.waiting, RxWait::Read(_)))
    }

    fn counters(&self) -> Vec<(&'static str, u64)> {
        let hub = lock(&self.hub);
        let Some(port) = hub.ports.get(self.port as usize) else {
            return Vec::new();
        };
        vec![
            ("to_guest_bytes", port.stats.to_guest_bytes),
            ("host_connected", u64::from(port.link.connected())),
            ("connects", port.stats.connects),
            ("guest_open", u64::from(port.guest_open)),
            ("posted_buffers", self.buffers.len() as u64),
            ("bad_chains", self.bad_chains),
        ]
    }

    forward_to_ring!();
}

/// A guest buffer being written to the host.
#[derive(Debug, Clone, Copy)]
struct Outgoing {
    head: u16,
    done: u64,
}

/// Guest to host: writes the port's transmit buffers to its host end, in order.
pub struct PortTxWorker {
    port: u32,
    ring: QueueRing,
    hub: SharedHub,
    nudge: Nudge,
    layout: ChainLayout,
    pending: VecDeque<Outgoing>,
    heads: Vec<u16>,
    writing: bool,
    bad_chains: u64,
}

impl PortTxWorker {
    pub(crate) fn new(
        port: u32,
        queue: Queue,
        mem: GuestMemory,
        hub: SharedHub,
    ) -> std::io::Result<Self> {
        let index = port_rx_queue(port) + 1;
        let nudge = Nudge::register(&mut lock(&hub), index)?;
        Ok(Self {
            port,
            ring: QueueRing::new(index, queue, mem),
            hub,
            nudge,
            layout: ChainLayout::with_capacity(MAX_CHAIN_DESCRIPTORS),
            pending: VecDeque::new(),
            heads: Vec::new(),
            writing: false,
            bad_chains: 0,
        })
    }

    /// Writes the first waiting buffer, or lets it wait for a client; completes empty and
    /// broken chains, and the console's output when it has nowhere to go.
    fn pump(&mut self, batch: &mut IoBatch) -> Result<(), QueueFault> {
        while !self.writing {
            let Some(&Outgoing { head, done }) = self.pending.front() else {
                return Ok(());
            };
            let walked = self.ring.walk(head, &mut self.layout);
            let total = self.layout.readable_len();
            if walked.is_err() {
                self.bad_chains += 1;
                self.finish(batch)?;
                continue;
            }
            if done >= total {
                self.finish(batch)?;
                continue;
            }
            let mut hub = lock(&self.hub);
            let Some(port) = hub.ports.get_mut(self.port as usize) else {
                return Ok(());
            };
            match port.link.output_fd() {
                Some(fd) => {
                    drop(hub);
                    match iovecs(
                        self.ring.mem(),
                        &self.layout.readable,
                        done,
                        total - done,
                        false,
                    ) {
                        Ok(iovecs) => {
                            batch.push(
                                WRITE_TAG,
                                IoOp::Write {
                                    fd,
                                    offset: STREAM_OFFSET,
                                    iovecs,
                                },
                            );
                            self.writing = true;
                        }
                        Err(_) => {
                            self.bad_chains += 1;
                            self.finish(batch)?;
                        }
                    }
                }
                None if port.name.is_none() || matches!(port.link, HostLink::Fixed { .. }) => {
                    port.stats.dropped_bytes += total - done;
                    drop(hub);
                    self.finish(batch)?;
                }
                // A named port without a client: the buffers wait (backpressure).
                None => return Ok(()),
            }
        }
        Ok(())
    }

    /// Gives the first waiting buffer back to the guest.
    fn finish(&mut self, batch: &mut IoBatch) -> Result<(), QueueFault> {
        if let Some(Outgoing { head, .. }) = self.pending.pop_front() {
            self.ring.add_used(head, 0)?;
            batch.note_completed();
        }
        Ok(())
    }

    fn written(&mut self, result: i32) {
        self.writing = false;
        if result > 0 {
            if let Some(front) = self.pending.front_mut() {
                front.done += result as u64;
            }
            lock(&self.hub).ports[self.port as usize]
                .stats
                .from_guest_bytes += result as u64;
            return;
        }
        if result == -libc::EINTR || result == -libc::EAGAIN {
            return;
        }
        // A write that moved nothing is a failure too: retrying it would spin.
        let mut hub = lock(&self.hub);
        if matches!(hub.ports[self.port as usize].link, HostLink::Socket { .. }) {
            // The client went away: the buffer waits for the next one.
            hub.mark_broken(self.port);
        } else {
            warn!(
                "console port {}: host output failed, dropping what follows: {}",
                self.port,
                std::io::Error::from_raw_os_error(-result)
            );
            hub.end_output(self.port);
        }
    }
}

impl QueueWorker for PortTxWorker {
    fn drain(&mut self, batch: &mut IoBatch) -> Result<usize, QueueFault> {
        self.nudge.arm(batch);
        self.heads.clear();
        self.ring.pop_heads(&mut self.heads)?;
        self.pending
            .extend(self.heads.iter().map(|&head| Outgoing { head, done: 0 }));
        self.pump(batch)?;
        Ok(self.heads.len())
    }

    fn complete(&mut self, tag: u64, result: i32, batch: &mut IoBatch) -> Result<(), QueueFault> {
        if result == -libc::ECANCELED {
            self.nudge.fired(result);
            self.writing = false;
            return Ok(());
        }
        match tag {
            NUDGE_TAG => {
                self.nudge.fired(result);
                self.nudge.arm(batch);
            }
            WRITE_TAG => self.written(result),
            _ => {}
        }
        self.pump(batch)
    }

    fn in_flight(&self) -> usize {
        usize::from(self.writing)
    }

    fn counters(&self) -> Vec<(&'static str, u64)> {
        let hub = lock(&self.hub);
        let Some(port) = hub.ports.get(self.port as usize) else {
            return Vec::new();
        };
        vec![
            ("from_guest_bytes", port.stats.from_guest_bytes),
            ("dropped_bytes", port.stats.dropped_bytes),
            ("waiting_buffers", self.pending.len() as u64),
            ("bad_chains", self.bad_chains),
        ]
    }

    forward_to_ring!();
}
