//! The two queues of a virtio-input device (virtio 1.2, 5.8.6).
//!
//! eventq: the driver posts device-writable buffers; each takes one event. Buffers wait in
//! the worker until the host produces input, and input waits in the shared queue until
//! the driver posts buffers. The host wakes the worker through an eventfd the worker
//! keeps a read of under way in its reactor, so no thread of the device's own ever runs.
//!
//! statusq: the driver sends events the other way (LED changes); each buffer is read and
//! returned at once.

use std::collections::VecDeque;
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use log::{debug, warn};
use ringvisor_io::{IoBatch, IoOp, QueueFault, QueueWorker};
use virtio_queue::Queue;
use vm_memory::GuestMemoryBackend;

use super::evdev::EV_LED;
use super::handle::{Counters, InputEvent, Shared, EVENT_LEN};
use super::QUEUE_MAX_SIZE;
use crate::virtio::chain::{
    pieces, read_stream, write_stream, ChainError, ChainLayout, MAX_CHAIN_DESCRIPTORS,
};
use crate::virtio::queue_ring::{forward_to_ring, serve_popped, QueueRing};
use crate::virtio::GuestMemory;

/// Tag of the wake-up read of the event queue's worker.
pub(crate) const WAKE_TAG: u64 = 1;
/// Reads of the eventfd use the file position (`-1`): an eventfd has none to give.
const STREAM_OFFSET: u64 = u64::MAX;
/// Events one status buffer may carry: Linux sends one per buffer, the bound keeps a
/// hostile buffer from holding the reactor.
const MAX_STATUS_EVENTS: usize = 64;
const MAX_STATUS_BYTES: u64 = (MAX_STATUS_EVENTS * EVENT_LEN) as u64;

/// Why a buffer is returned unused. Every value comes from the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
enum BadChain {
    #[error(transparent)]
    Chain(#[from] ChainError),
    #[error("an event buffer must be device-writable only")]
    NotWritable,
    #[error("an event buffer of {0} bytes cannot hold an event")]
    TooShort(u64),
    #[error("a status buffer must be device-readable only")]
    NotReadable,
    #[error("a status buffer of {0} bytes is not a whole number of events")]
    Partial(u64),
    #[error("a status buffer of {0} bytes is more than {MAX_STATUS_EVENTS} events")]
    TooLong(u64),
}

/// The event queue worker's read of the wake-up eventfd.
struct WakeRead {
    /// Where the read puts the counter; boxed so it stays put while the worker moves.
    counter: Box<u64>,
    armed: bool,
}

/// Host to guest: writes queued input events into the buffers the driver posted.
pub struct InputEventWorker {
    ring: QueueRing,
    shared: Arc<Shared>,
    wake: WakeRead,
    layout: ChainLayout,
    /// Posted buffers, checked, waiting for events, oldest first.
    buffers: VecDeque<u16>,
    heads: Vec<u16>,
}

impl InputEventWorker {
    pub(super) fn new(index: u16, queue: Queue, mem: GuestMemory, shared: Arc<Shared>) -> Self {
        Self {
            ring: QueueRing::new(index, queue, mem),
            shared,
            wake: WakeRead {
                counter: Box::new(0),
                armed: false,
            },
            layout: ChainLayout::with_capacity(MAX_CHAIN_DESCRIPTORS),
            buffers: VecDeque::with_capacity(usize::from(QUEUE_MAX_SIZE)),
            heads: Vec::with_capacity(usize::from(QUEUE_MAX_SIZE)),
        }
    }

    /// Keeps one read of the wake-up eventfd under way.
    fn arm(&mut self, batch: &mut IoBatch) {
        if self.wake.armed {
            return;
        }
        self.wake.armed = true;
        let iovec = libc::iovec {
            iov_base: (&mut *self.wake.counter as *mut u64).cast(),
            iov_len: std::mem::size_of::<u64>(),
        };
        batch.push(
            WAKE_TAG,
            IoOp::Read {
                fd: self.shared.wake.as_raw_fd(),
                offset: STREAM_OFFSET,
                iovecs: vec![iovec],
            },
        );
    }

    /// Whether the chain at `head` can take an event: device-writable only, with its
    /// first 8 bytes in guest memory. Leaves the chain in `self.layout`.
    fn check(&mut self, head: u16) -> Result<(), BadChain> {
        self.ring.walk(head, &mut self.layout)?;
        if !self.layout.readable.is_empty() {
            return Err(BadChain::NotWritable);
        }
        let len = self.layout.writable_len();
        if len < EVENT_LEN as u64 {
            return Err(BadChain::TooShort(len));
        }
        let mem = self.ring.mem();
        let mut covered = 0u64;
        for piece in pieces(&self.layout.writable, 0, EVENT_LEN as u64) {
            if !GuestMemoryBackend::check_range(mem, piece.addr, piece.len as usize) {
                return Err(ChainError::BufferOutOfRange.into());
            }
            covered += u64::from(piece.len);
        }
        if covered == EVENT_LEN as u64 {
            Ok(())
        } else {
            Err(ChainError::BufferOutOfRange.into())
        }
    }

    /// Returns a buffer unused and counts it.
    fn refuse(&mut self, head: u16, why: BadChain, batch: &mut IoBatch) -> Result<(), QueueFault> {
        debug!("virtio-input eventq: buffer {head} refused: {why}");
        Counters::add(&self.shared.counters.event_bad_chains, 1);
        batch.note_completed();
        self.ring.add_used(head, 0)
    }

    /// Pops the posted buffers; the usable ones join `self.buffers`, the others go back
    /// at once (a driver waiting for them should not wait for input).
    fn take_buffers(&mut self, batch: &mut IoBatch) -> Result<usize, QueueFault> {
        let mut heads = std::mem::take(&mut self.heads);
        heads.clear();
        let mut result = self.ring.pop_heads(&mut heads);
        if result.is_ok() {
            for &head in &heads {
                match self.check(head) {
                    Ok(()) => self.buffers.push_back(head),
                    Err(why) => {
                        result = self.refuse(head, why, batch);
                        if result.is_err() {
                            break;
                        }
                    }
                }
            }
        }
        let popped = heads.len();
        self.heads = heads;
        result.map(|()| popped)
    }

    /// Moves queued events into posted buffers, one event per buffer (what Linux reads
    /// of each), in order.
    fn deliver(&mut self, batch: &mut IoBatch) -> Result<(), QueueFault> {
        if self.buffers.is_empty() {
            return Ok(());
        }
        let shared = Arc::clone(&self.shared);
        let mut pending = shared.pending();
        while let (Some(&head), Some(&event)) = (self.buffers.front(), pending.events.front()) {
            self.buffers.pop_front();
            // Checked when popped; walked again because the guest owns the descriptor
            // table and a buggy one may have rewritten it since.
            let written = self.check(head).and_then(|()| {
                write_stream(self.ring.mem(), &self.layout.writable, 0, &event.to_bytes())
                    .map_err(BadChain::from)
            });
            match written {
                Ok(()) => {
                    pending.events.pop_front();
                    Counters::add(&shared.counters.delivered, 1);
                    batch.note_completed();
                    self.ring.add_used(head, EVENT_LEN as u32)?;
                }
                // The event stays for the next buffer.
                Err(why) => self.refuse(head, why, batch)?,
            }
        }
        Ok(())
    }
}

impl QueueWorker for InputEventWorker {
    forward_to_ring!();

    fn drain(&mut self, batch: &mut IoBatch) -> Result<usize, QueueFault> {
        self.arm(batch);
        let popped = self.take_buffers(batch)?;
        self.deliver(batch)?;
        Ok(popped)
    }

    fn complete(&mut self, tag: u64, result: i32, batch: &mut IoBatch) -> Result<(), QueueFault> {
        if tag != WAKE_TAG {
            warn!("virtio-input eventq: completion for unknown tag {tag}");
            return Ok(());
        }
        self.wake.armed = false;
        if result == -libc::ECANCELED {
            // The queue is being taken back.
            return Ok(());
        }
        if result < 0 && result != -libc::EINTR && result != -libc::EAGAIN {
            // Re-reading a broken eventfd would spin; events still go out whenever the
            // guest kicks the queue.
            warn!(
                "virtio-input eventq: reading the wake-up eventfd failed: {}",
                std::io::Error::from_raw_os_error(-result)
            );
            return self.deliver(batch);
        }
        // Cleared before the queue is looked at: an event queued after this point
        // writes the eventfd again, one queued before it is delivered now.
        self.shared.wake_pending.store(false, Ordering::SeqCst);
        self.arm(batch);
        self.deliver(batch)
    }

    fn in_flight(&self) -> usize {
        // Buffers held for input wait for no host I/O.
        0
    }

    fn counters(&self) -> Vec<(&'static str, u64)> {
        let c = &self.shared.counters;
        vec![
            ("events_delivered", Counters::get(&c.delivered)),
            ("events_dropped", Counters::get(&c.dropped)),
            ("events_pending", self.shared.pending().events.len() as u64),
            ("events_ignored", Counters::get(&c.ignored)),
            ("posted_buffers", self.buffers.len() as u64),
            ("bad_chains", Counters::get(&c.event_bad_chains)),
        ]
    }
}

/// Guest to host: LED changes and the like, applied and returned at once.
pub struct InputStatusWorker {
    ring: QueueRing,
    shared: Arc<Shared>,
    layout: ChainLayout,
    heads: Vec<u16>,
    bytes: Vec<u8>,
}

impl InputStatusWorker {
    pub(super) fn new(index: u16, queue: Queue, mem: GuestMemory, shared: Arc<Shared>) -> Self {
        Self {
            ring: QueueRing::new(index, queue, mem),
            shared,
            layout: ChainLayout::with_capacity(MAX_CHAIN_DESCRIPTORS),
            heads: Vec::with_capacity(usize::from(QUEUE_MAX_SIZE)),
            bytes: vec![0; MAX_STATUS_EVENTS * EVENT_LEN],
        }
    }

    fn serve(&mut self, head: u16, batch: &mut IoBatch) -> Result<(), QueueFault> {
        if let Err(why) = self.read_events(head) {
            debug!("virtio-input statusq: buffer {head} refused: {why}");
            Counters::add(&self.shared.counters.status_bad_chains, 1);
        }
        batch.note_completed();
        // Nothing is written into a status buffer.
        self.ring.add_used(head, 0)
    }

    /// Reads and applies the events of one buffer; a malformed buffer applies none.
    fn read_events(&mut self, head: u16) -> Result<(), BadChain> {
        self.ring.walk(head, &mut self.layout)?;
        if !self.layout.writable.is_empty() {
            return Err(BadChain::NotReadable);
        }
        let len = self.layout.readable_len();
        if len > MAX_STATUS_BYTES {
            return Err(BadChain::TooLong(len));
        }
        let whole_events = len / EVENT_LEN as u64;
        if whole_events == 0 || whole_events * EVENT_LEN as u64 != len {
            return Err(BadChain::Partial(len));
        }
        // len <= MAX_STATUS_BYTES, the length of `bytes`.
        let bytes = &mut self.bytes[..len as usize];
        read_stream(self.ring.mem(), &self.layout.readable, 0, bytes)?;
        for chunk in bytes.chunks_exact(EVENT_LEN) {
            let mut raw = [0u8; EVENT_LEN];
            raw.copy_from_slice(chunk);
            apply_status(&self.shared, InputEvent::from_bytes(raw));
        }
        Ok(())
    }
}

/// Acts on one event from the driver: LEDs the device has are recorded, anything else
/// (a guest setting its key repeat rate) is only counted.
fn apply_status(shared: &Shared, event: InputEvent) {
    Counters::add(&shared.counters.status_events, 1);
    let led_bit = 1u16.checked_shl(u32::from(event.code));
    if let (EV_LED, true, Some(bit)) = (
        event.kind,
        shared.caps.supports(EV_LED, event.code),
        led_bit,
    ) {
        if event.value != 0 {
            shared.leds.fetch_or(bit, Ordering::Relaxed);
        } else {
            shared.leds.fetch_and(!bit, Ordering::Relaxed);
        }
    } else {
        debug!(
            "virtio-input statusq: ignored event type {:#x} code {:#x} value {}",
            event.kind, event.code, event.value
        );
    }
}

impl QueueWorker for InputStatusWorker {
    forward_to_ring!();

    fn drain(&mut self, batch: &mut IoBatch) -> Result<usize, QueueFault> {
        serve_popped(
            self,
            |w| (&mut w.ring, &mut w.heads),
            |w, head| w.serve(head, batch),
        )
    }

    fn complete(&mut self, tag: u64, _result: i32, _batch: &mut IoBatch) -> Result<(), QueueFault> {
        warn!("virtio-input statusq: completion for tag {tag}, but no op was submitted");
        Ok(())
    }

    fn in_flight(&self) -> usize {
        0
    }

    fn counters(&self) -> Vec<(&'static str, u64)> {
        let c = &self.shared.counters;
        vec![
            ("status_events", Counters::get(&c.status_events)),
            ("leds", u64::from(self.shared.leds.load(Ordering::Relaxed))),
            ("bad_chains", Counters::get(&c.status_bad_chains)),
        ]
    }
}
