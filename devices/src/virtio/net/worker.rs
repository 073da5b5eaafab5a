//! The device side of a virtio-net queue pair, driven by a reactor: transmitted chains
//! become writev SQEs on the pair's TAP file; frames from the TAP go into the guest's
//! receive buffers in order. Receiving waits with one io_uring read (armed on the TAP
//! until a frame arrives); when it completes, the frames queued behind it are taken at
//! once with plain reads on the non-blocking TAP, so a burst costs one reactor pass rather
//! than one pass per frame.

use std::collections::VecDeque;
use std::sync::Arc;

use log::{debug, warn};
use ringvisor_io::{IoBatch, IoOp, QueueFault, QueueWorker};
use virtio_queue::Queue;
use vm_memory::{Address, Bytes, GuestAddress};

use super::header::{check_tx, TxRules, ETH_HEADER_LEN};
use super::link::LinkState;
use super::tap::{Tap, TapSlot, VNET_HEADER_LEN};
use crate::virtio::chain::{iovecs, read_stream, ChainLayout, MAX_CHAIN_DESCRIPTORS};
use crate::virtio::queue_ring::{forward_to_ring, InFlightTable, QueueRing};
use crate::virtio::GuestMemory;

/// Per-queue counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct NetQueueStats {
    pub frames: u64,
    pub bytes: u64,
    /// Frames dropped: bad headers or chains, TAP refusals, receive buffers too small.
    pub drops: u64,
    /// Drains that found chains, and the chains they found (average batch size).
    pub batches: u64,
    pub chains: u64,
    /// 1 while the TAP interface is gone (deleted by an administrator).
    pub tap_gone: u64,
    /// Times the TAP was attached again after it came back.
    pub tap_reattached: u64,
}

impl NetQueueStats {
    pub(crate) fn named(&self) -> Vec<(&'static str, u64)> {
        vec![
            ("frames", self.frames),
            ("bytes", self.bytes),
            ("drops", self.drops),
            ("batches", self.batches),
            ("chains", self.chains),
            ("tap_gone", self.tap_gone),
            ("tap_reattached", self.tap_reattached),
        ]
    }
}

/// Errors a TAP descriptor returns once its interface was deleted (tun's EBADFD) or can
/// no longer pass traffic: reading again would fail again at once.
fn tap_is_gone(errno: i32) -> bool {
    matches!(
        errno,
        libc::EBADFD | libc::ENODEV | libc::ENXIO | libc::EIO | libc::EPIPE
    )
}

/// Pops every available chain into `heads`; counts the batch.
fn pop(
    ring: &mut QueueRing,
    heads: &mut Vec<u16>,
    stats: &mut NetQueueStats,
) -> Result<(), QueueFault> {
    heads.clear();
    ring.pop_heads(heads)?;
    if !heads.is_empty() {
        stats.batches += 1;
        stats.chains += heads.len() as u64;
    }
    Ok(())
}

/// Serves a transmit queue.
pub struct NetTxWorker {
    ring: QueueRing,
    slot: Arc<TapSlot>,
    /// The slot's TAP as of `generation`.
    tap: Arc<Tap>,
    generation: u64,
    link: Arc<LinkState>,
    rules: TxRules,
    layout: ChainLayout,
    heads: Vec<u16>,
    /// Heads of frames being written, with their length without the header.
    in_flight: InFlightTable<(u16, u32)>,
    dropped_now: bool,
    stats: NetQueueStats,
}

impl NetTxWorker {
    /// Public only for the fuzz targets (`fuzz/`); the VMM gets workers from `activate`.
    #[doc(hidden)]
    pub fn new(
        index: u16,
        queue: Queue,
        mem: GuestMemory,
        slot: Arc<TapSlot>,
        rules: TxRules,
        link: Arc<LinkState>,
    ) -> Self {
        Self {
            ring: QueueRing::new(index, queue, mem),
            tap: slot.get(),
            generation: slot.generation(),
            slot,
            link,
            rules,
            layout: ChainLayout::with_capacity(MAX_CHAIN_DESCRIPTORS),
            heads: Vec::with_capacity(MAX_CHAIN_DESCRIPTORS),
            in_flight: InFlightTable::default(),
            dropped_now: false,
            stats: NetQueueStats::default(),
        }
    }

    pub fn stats(&self) -> NetQueueStats {
        self.stats
    }

    fn drop_chain(&mut self, head: u16, why: impl std::fmt::Display) -> Result<(), QueueFault> {
        debug!(
            "virtio-net tx queue {}: frame dropped: {why}",
            self.ring.index()
        );
        self.stats.drops += 1;
        self.dropped_now = true;
        self.ring.add_used(head, 0)
    }

    fn start(&mut self, head: u16, batch: &mut IoBatch) -> Result<(), QueueFault> {
        let mem = self.ring.mem().clone();
        if let Err(e) = self.ring.walk(head, &mut self.layout) {
            return self.drop_chain(head, e);
        }
        if self.layout.writable_len() != 0 {
            return self.drop_chain(head, "device-writable buffers in a transmit chain");
        }
        let len = self.layout.readable_len();
        let mut header = [0u8; VNET_HEADER_LEN];
        if let Err(e) = read_stream(&mem, &self.layout.readable, 0, &mut header) {
            return self.drop_chain(head, e);
        }
        let Ok(frame_len) = usize::try_from(len) else {
            return self.drop_chain(head, "chain too long");
        };
        if let Err(e) = check_tx(&header, frame_len, &self.rules) {
            return self.drop_chain(head, e);
        }
        let iovecs = match iovecs(&mem, &self.layout.readable, 0, len, false) {
            Ok(iovecs) => iovecs,
            Err(e) => return self.drop_chain(head, e),
        };
        if self.in_flight.len() >= usize::from(self.ring.size()) {
            return Err(self.ring.fault("more chains in flight than the queue size"));
        }
        let payload = (frame_len - VNET_HEADER_LEN) as u32;
        let tag = self.in_flight.insert((head, payload));
        batch.push(
            tag,
            IoOp::Write {
                fd: self.tap.fd(),
                offset: 0,
                iovecs,
            },
        );
        Ok(())
    }
}

impl QueueWorker for NetTxWorker {
    forward_to_ring!();

    fn drain(&mut self, batch: &mut IoBatch) -> Result<usize, QueueFault> {
        if self.slot.generation() != self.generation {
            // The TAP was deleted and created again: frames go to the new one.
            self.tap = self.slot.get();
            self.generation = self.slot.generation();
            self.stats.tap_gone = 0;
        }
        let mut heads = std::mem::take(&mut self.heads);
        let result = pop(&mut self.ring, &mut heads, &mut self.stats)
            .and_then(|()| heads.iter().try_for_each(|&head| self.start(head, batch)));
        let count = heads.len();
        self.heads = heads;
        if std::mem::take(&mut self.dropped_now) {
            batch.note_completed();
        }
        result.map(|()| count)
    }

    fn complete(&mut self, tag: u64, result: i32, _batch: &mut IoBatch) -> Result<(), QueueFault> {
        let Some((head, payload)) = self.in_flight.remove(tag) else {
            return Ok(());
        };
        if result == -libc::ECANCELED {
            // The queue is being reset: the driver no longer waits for this chain.
            return Ok(());
        }
        if result == payload as i32 + VNET_HEADER_LEN as i32 {
            self.stats.frames += 1;
            self.stats.bytes += u64::from(payload);
        } else if result < 0 && tap_is_gone(-result) {
            if self.stats.tap_gone == 0 {
                warn!(
                    "virtio-net tx queue {}: TAP is gone ({}): the guest's frames are dropped",
                    self.ring.index(),
                    std::io::Error::from_raw_os_error(-result)
                );
            }
            self.stats.tap_gone = 1;
            self.stats.drops += 1;
            self.link.set_down();
        } else {
            debug!(
                "virtio-net tx queue {}: the TAP took {result} of {payload}",
                self.ring.index()
            );
            self.stats.drops += 1;
        }
        self.ring.add_used(head, 0)
    }

    fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    fn counters(&self) -> Vec<(&'static str, u64)> {
        self.stats.named()
    }
}

/// A receive buffer waiting for a frame.
struct RxBuffer {
    head: u16,
    iovecs: Vec<libc::iovec>,
    /// Bytes the buffer holds.
    len: u32,
    /// Where num_buffers goes if this buffer starts a frame: bytes 10-11 of its header.
    num_buffers: GuestAddress,
}

// SAFETY: the iovecs point into guest RAM, which lives as long as the process.
unsafe impl Send for RxBuffer {}

/// iovecs into guest RAM.
#[derive(Default)]
struct Iovecs(Vec<libc::iovec>);

// SAFETY: the iovecs point into guest RAM, which lives as long as the process.
unsafe impl Send for Iovecs {}

/// How received frames are laid into buffers (from the negotiated features).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RxMode {
    /// VIRTIO_NET_F_MRG_RXBUF: a frame may span several buffers (num_buffers says how
    /// many).
    pub mergeable: bool,
    /// GUEST_TSO4/6: frames up to 64 KiB come from the TAP.
    pub large: bool,
}

/// Serves a receive queue: one read at a time on the TAP, so frames land in order and a
/// queue whose guest posted no buffers reads nothing.
pub struct NetRxWorker {
    ring: QueueRing,
    slot: Arc<TapSlot>,
    tap: Arc<Tap>,
    /// TUN_F_* offloads the guest negotiated, for a TAP attached again.
    offload: libc::c_uint,
    /// A timer to look for the deleted TAP again is running.
    retry_armed: bool,
    link: Arc<LinkState>,
    mode: RxMode,
    layout: ChainLayout,
    heads: Vec<u16>,
    /// Buffers in the guest's order. While a read is in flight, the first `reading` of
    /// them are its target and nothing else takes them.
    waiting: VecDeque<RxBuffer>,
    /// How many of the front waiting buffers the read in flight spans, if one is.
    reading: Option<usize>,
    /// Scratch: the iovecs of the buffers one read spans.
    gathered: Iovecs,
    used_now: bool,
    stats: NetQueueStats,
}

/// Smallest receive buffer accepted: the header and an Ethernet header.
const MIN_RX_BUFFER: u64 = (VNET_HEADER_LEN + ETH_HEADER_LEN) as u64;
/// The largest frame the TAP hands over with GUEST_TSO, header included.
const MAX_RX_FRAME: u64 = (VNET_HEADER_LEN + super::header::MAX_GSO_FRAME) as u64;
/// Most frames one burst takes, so a flood cannot keep the reactor from its other queues.
const MAX_BURST: usize = 256;
/// The tag of the receive queue's one read in flight.
const READ_TAG: u64 = 0;
/// The tag of the timer that looks for a deleted TAP again.
const RETRY_TAG: u64 = 1;
/// How often a deleted TAP is looked for.
const RETRY_NANOS: u64 = 1_000_000_000;

impl NetRxWorker {
    /// Public only for the fuzz targets (`fuzz/`); the VMM gets workers from `activate`.
    #[doc(hidden)]
    pub fn new(
        index: u16,
        queue: Queue,
        mem: GuestMemory,
        slot: Arc<TapSlot>,
        mode: RxMode,
        offload: libc::c_uint,
        link: Arc<LinkState>,
    ) -> Self {
        Self {
            ring: QueueRing::new(index, queue, mem),
            tap: slot.get(),
            slot,
            offload,
            retry_armed: false,
            link,
            mode,
            layout: ChainLayout::with_capacity(MAX_CHAIN_DESCRIPTORS),
            heads: Vec::with_capacity(MAX_CHAIN_DESCRIPTORS),
            waiting: VecDeque::new(),
            reading: None,
            gathered: Iovecs::default(),
            used_now: false,
            stats: NetQueueStats::default(),
        }
    }

    pub fn stats(&self) -> NetQueueStats {
        self.stats
    }

    fn accept(&mut self, head: u16) -> Result<(), QueueFault> {
        let mem = self.ring.mem().clone();
        let walked = self.ring.walk(head, &mut self.layout);
        let len = self.layout.writable_len();
        let usable = walked.is_ok()
            && self.layout.readable_len() == 0
            && len >= MIN_RX_BUFFER
            && len <= u64::from(u32::MAX)
            && self.layout.writable[0].len >= VNET_HEADER_LEN as u32;
        let iovecs = if usable {
            iovecs(&mem, &self.layout.writable, 0, len, false).ok()
        } else {
            None
        };
        match iovecs {
            Some(iovecs) => {
                let first = self.layout.writable[0].addr;
                self.waiting.push_back(RxBuffer {
                    head,
                    iovecs,
                    len: len as u32,
                    num_buffers: first.unchecked_add(10),
                });
                Ok(())
            }
            None => {
                debug!(
                    "virtio-net rx queue {}: unusable receive chain {head}",
                    self.ring.index()
                );
                self.stats.drops += 1;
                self.used_now = true;
                self.ring.add_used(head, 0)
            }
        }
    }

    /// How many waiting buffers one read spans: one, or with mergeable buffers as many
    /// as the largest frame may need.
    fn span(&self) -> usize {
        if !self.mode.mergeable {
            return usize::from(!self.waiting.is_empty());
        }
        let want = if self.mode.large {
            MAX_RX_FRAME
        } else {
            MAX_RX_FRAME.min(65_536)
        };
        let mut total = 0u64;
        let mut count = 0;
        let mut iovecs = 0;
        for buffer in &self.waiting {
            if total >= want || iovecs + buffer.iovecs.len() > 1024 {
                break;
            }
            total += u64::from(buffer.len);
            iovecs += buffer.iovecs.len();
            count += 1;
        }
        count
    }

    /// The iovecs of the first `count` waiting buffers, in `self.gathered`.
    fn gather(&mut self, count: usize) {
        self.gathered.0.clear();
        for buffer in self.waiting.iter().take(count) {
            self.gathered.0.extend_from_slice(&buffer.iovecs);
        }
    }

    /// Hands the guest a frame of `n` bytes (header included) read into the front
    /// waiting buffers: as many of them as the frame filled leave the list, in order; the
    /// others stay where they are for the next frame.
    fn deliver(&mut self, n: usize) -> Result<(), QueueFault> {
        self.used_now = true;
        let mut left = n as u64;
        let mut used = 0usize;
        for buffer in &self.waiting {
            if left == 0 {
                break;
            }
            left = left.saturating_sub(u64::from(buffer.len));
            used += 1;
        }
        let used = used.max(1).min(self.waiting.len());
        let Some(first) = self.waiting.front() else {
            return Ok(());
        };
        let counted = self
            .ring
            .mem()
            .write_obj((used as u16).to_le(), first.num_buffers)
            .is_ok();
        if counted {
            self.stats.frames += 1;
            self.stats.bytes += (n - VNET_HEADER_LEN) as u64;
        } else {
            self.stats.drops += 1;
        }
        let mut left = if counted { n as u64 } else { 0 };
        for _ in 0..used {
            let Some(buffer) = self.waiting.pop_front() else {
                break;
            };
            let len = left.min(u64::from(buffer.len));
            left -= len;
            self.ring.add_used(buffer.head, len as u32)?;
        }
        Ok(())
    }

    /// Takes the frames already queued on the TAP, without waiting, while buffers last.
    fn read_burst(&mut self) -> Result<(), QueueFault> {
        if self.stats.tap_gone != 0 {
            return Ok(());
        }
        for _ in 0..MAX_BURST {
            let count = self.next_span()?;
            if count == 0 {
                return Ok(());
            }
            self.gather(count);
            // SAFETY: the iovecs point into guest RAM, mapped for the life of the process
            // and checked to lie inside it when the chains were accepted; the TAP file is
            // open (the worker holds it).
            let n = unsafe {
                libc::readv(
                    self.tap.fd(),
                    self.gathered.0.as_ptr(),
                    self.gathered.0.len() as libc::c_int,
                )
            };
            if n >= MIN_RX_BUFFER as isize {
                self.deliver(n as usize)?;
                continue;
            }
            let errno = std::io::Error::last_os_error().raw_os_error();
            match (n, errno) {
                (-1, Some(libc::EAGAIN)) => return Ok(()),
                // A frame larger than the buffers is lost; the buffers are kept.
                (-1, Some(libc::EFAULT | libc::EMSGSIZE)) => self.stats.drops += 1,
                (-1, Some(errno)) if tap_is_gone(errno) => {
                    self.lose_tap(errno);
                    return Ok(());
                }
                _ => {
                    debug!(
                        "virtio-net rx queue {}: TAP read: {n} {errno:?}",
                        self.ring.index()
                    );
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// The TAP went away: receiving stops until it is back, the guest's buffers stay
    /// posted (returning them empty would only have the guest post them again, in a
    /// loop), and a timer looks for the interface every second.
    fn lose_tap(&mut self, errno: i32) {
        if self.stats.tap_gone == 0 {
            warn!(
                "virtio-net rx queue {}: TAP {} is gone ({}): no more frames for the guest",
                self.ring.index(),
                self.tap.name(),
                std::io::Error::from_raw_os_error(errno)
            );
        }
        self.stats.tap_gone = 1;
        self.link.set_down();
    }

    /// The retry timer fired: attaches the TAP again if it exists now.
    fn retry_tap(&mut self, batch: &mut IoBatch) -> Result<(), QueueFault> {
        match self.slot.reattach(self.offload) {
            Ok(true) => {
                self.tap = self.slot.get();
                self.stats.tap_gone = 0;
                self.stats.tap_reattached += 1;
                log::info!(
                    "virtio-net rx queue {}: TAP {} is back",
                    self.ring.index(),
                    self.slot.name()
                );
                self.link.set_up();
                self.read_burst()?;
                self.read_next(batch)
            }
            Ok(false) => self.read_next(batch),
            Err(err) => {
                debug!("virtio-net rx queue {}: {err}", self.ring.index());
                self.read_next(batch)
            }
        }
    }

    /// Arms a read on the TAP for the oldest waiting buffers unless one is in flight
    /// (or, while the TAP is gone, the timer that looks for it).
    fn read_next(&mut self, batch: &mut IoBatch) -> Result<(), QueueFault> {
        if self.stats.tap_gone != 0 {
            if !self.retry_armed {
                self.retry_armed = true;
                batch.push(RETRY_TAG, IoOp::Delay { nanos: RETRY_NANOS });
            }
            return Ok(());
        }
        if self.reading.is_some() {
            return Ok(());
        }
        let count = self.next_span()?;
        if count == 0 {
            return Ok(());
        }
        self.gather(count);
        let op = IoOp::Read {
            fd: self.tap.fd(),
            offset: 0,
            iovecs: self.gathered.0.clone(),
        };
        self.reading = Some(count);
        batch.push(READ_TAG, op);
        Ok(())
    }

    /// Takes the buffers the guest posted since the last look.
    fn replenish(&mut self) -> Result<usize, QueueFault> {
        let mut heads = std::mem::take(&mut self.heads);
        let result = pop(&mut self.ring, &mut heads, &mut self.stats)
            .and_then(|()| heads.iter().try_for_each(|&head| self.accept(head)));
        let count = heads.len();
        self.heads = heads;
        result.map(|()| count)
    }

    /// The span of the next read, over every buffer posted so far. The guest is asked to
    /// kick only once the device holds no buffer (as QEMU does): its refills, one per
    /// receive poll, then cost it no VM exit, since the device looks at the ring itself
    /// before each read. When none is left, kicks go back on, and a buffer posted before
    /// they did is taken now.
    fn next_span(&mut self) -> Result<usize, QueueFault> {
        self.replenish()?;
        if self.waiting.is_empty() && self.ring.enable_notification()? {
            self.replenish()?;
        }
        Ok(self.span())
    }
}

impl QueueWorker for NetRxWorker {
    fn needs_interrupt(&mut self) -> Result<bool, QueueFault> {
        self.ring.needs_interrupt()
    }

    fn disable_notification(&mut self) -> Result<(), QueueFault> {
        self.ring.disable_notification()
    }

    /// Kicks stay off while the device holds buffers (see `next_span`).
    fn enable_notification(&mut self) -> Result<bool, QueueFault> {
        if self.waiting.is_empty() {
            self.ring.enable_notification()
        } else {
            Ok(false)
        }
    }

    fn has_available(&mut self) -> Result<bool, QueueFault> {
        self.ring.has_available()
    }

    fn drain(&mut self, batch: &mut IoBatch) -> Result<usize, QueueFault> {
        let result = self.replenish().and_then(|count| {
            if self.reading.is_none() {
                self.read_burst()?;
            }
            self.read_next(batch)?;
            Ok(count)
        });
        if std::mem::take(&mut self.used_now) {
            batch.note_completed();
        }
        result
    }

    fn complete(&mut self, tag: u64, result: i32, batch: &mut IoBatch) -> Result<(), QueueFault> {
        if tag == RETRY_TAG {
            self.retry_armed = false;
            if result == -libc::ECANCELED {
                return Ok(());
            }
            return self.retry_tap(batch);
        }
        if tag != READ_TAG {
            return Ok(());
        }
        let Some(count) = self.reading.take() else {
            return Ok(());
        };
        const CANCELED: i32 = -libc::ECANCELED;
        const FAULT: i32 = -libc::EFAULT;
        const MSGSIZE: i32 = -libc::EMSGSIZE;
        match result {
            CANCELED => return Ok(()),
            n if n >= MIN_RX_BUFFER as i32 => self.deliver(n as usize)?,
            // A frame larger than the buffers (EFAULT from tun) is lost; the buffers stay
            // for the next one.
            FAULT | MSGSIZE => self.stats.drops += 1,
            other if tap_is_gone(-other) => {
                self.lose_tap(-other);
                return self.read_next(batch);
            }
            other => {
                debug!(
                    "virtio-net rx queue {}: TAP read: {other}",
                    self.ring.index()
                );
                self.stats.drops += 1;
                for _ in 0..count {
                    if let Some(buffer) = self.waiting.pop_front() {
                        self.ring.add_used(buffer.head, 0)?;
                    }
                }
            }
        }
        self.read_burst()?;
        self.used_now = false;
        self.read_next(batch)
    }

    fn in_flight(&self) -> usize {
        usize::from(self.reading.is_some()) + usize::from(self.retry_armed)
    }

    fn counters(&self) -> Vec<(&'static str, u64)> {
        self.stats.named()
    }
}
