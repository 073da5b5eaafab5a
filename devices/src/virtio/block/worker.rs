//! The device side of one virtio-blk request queue, driven by a reactor.

use std::fmt::Display;
use std::fs::File;
use std::sync::Arc;

use log::{debug, warn};
use ringvisor_io::{IoBatch, QueueFault, QueueWorker};
use virtio_bindings::virtio_blk::{VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_OK};
use virtio_bindings::virtio_ring::VRING_AVAIL_F_NO_INTERRUPT;
use virtio_queue::{Queue, QueueOwnedT, QueueT};
use vm_memory::{Bytes, GuestAddress};

use super::chain::{walk_chain, ChainLayout};
use super::request::{self, Disk, Outcome, RequestError, RequestKind};
use super::QUEUE_MAX_SIZE;
use crate::virtio::GuestMemory;

/// Per-queue counters. Requests are counted when popped, bytes when they complete.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BlockQueueStats {
    pub reads: u64,
    pub writes: u64,
    pub flushes: u64,
    pub discards: u64,
    pub write_zeroes: u64,
    pub get_ids: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
    /// Requests refused without host I/O: malformed chains, bad sectors, unsupported types.
    pub refused: u64,
    /// Of those, buffers O_DIRECT cannot use (not 512-byte aligned).
    pub unaligned_direct: u64,
    /// Host I/O that failed or transferred less than asked.
    pub io_errors: u64,
}

impl BlockQueueStats {
    fn count(&mut self, kind: RequestKind) {
        let counter = match kind {
            RequestKind::Read => &mut self.reads,
            RequestKind::Write => &mut self.writes,
            RequestKind::Flush => &mut self.flushes,
            RequestKind::Discard => &mut self.discards,
            RequestKind::WriteZeroes => &mut self.write_zeroes,
            RequestKind::GetId => &mut self.get_ids,
            RequestKind::Other => return,
        };
        *counter += 1;
    }
}

/// A request waiting for its host I/O.
#[derive(Debug, Clone, Copy)]
struct InFlight {
    head: u16,
    status: GuestAddress,
    kind: RequestKind,
    data_len: u32,
}

/// In-flight requests keyed by the tag handed to the reactor: a slot index, reused through
/// a free list so the hot path does not allocate once the queue has warmed up.
#[derive(Debug, Default)]
struct InFlightTable {
    slots: Vec<Option<InFlight>>,
    free: Vec<usize>,
    len: usize,
}

impl InFlightTable {
    fn insert(&mut self, request: InFlight) -> u64 {
        self.len += 1;
        let index = match self.free.pop() {
            Some(index) => index,
            None => {
                self.slots.push(None);
                self.slots.len() - 1
            }
        };
        if let Some(slot) = self.slots.get_mut(index) {
            *slot = Some(request);
        }
        index as u64
    }

    fn remove(&mut self, tag: u64) -> Option<InFlight> {
        let index = usize::try_from(tag).ok()?;
        let request = self.slots.get_mut(index)?.take()?;
        self.free.push(index);
        self.len -= 1;
        Some(request)
    }
}

/// Serves one request queue of a [`super::BlockDevice`].
pub struct BlockQueueWorker {
    index: u16,
    queue: Queue,
    mem: GuestMemory,
    // Keeps `disk.fd` open as long as any op of this queue may be in flight.
    _file: Arc<File>,
    disk: Disk,
    in_flight: InFlightTable,
    layout: ChainLayout,
    heads: Vec<u16>,
    used_added: bool,
    stats: BlockQueueStats,
}

impl BlockQueueWorker {
    pub(crate) fn new(
        index: u16,
        queue: Queue,
        mem: GuestMemory,
        file: Arc<File>,
        disk: Disk,
    ) -> Self {
        Self {
            index,
            queue,
            mem,
            _file: file,
            disk,
            in_flight: InFlightTable::default(),
            layout: ChainLayout::with_capacity(usize::from(QUEUE_MAX_SIZE)),
            heads: Vec::with_capacity(usize::from(QUEUE_MAX_SIZE)),
            used_added: false,
            stats: BlockQueueStats::default(),
        }
    }

    /// The queue's index in its device.
    pub fn index(&self) -> u16 {
        self.index
    }

    pub fn stats(&self) -> BlockQueueStats {
        self.stats
    }

    fn fault(&self, reason: impl Display) -> QueueFault {
        QueueFault {
            queue: self.index,
            reason: reason.to_string(),
        }
    }

    /// Turns the chain at `head` into ops in `batch`, or completes it at once.
    fn start_request(&mut self, head: u16, batch: &mut IoBatch) -> Result<(), QueueFault> {
        if head >= self.queue.size() {
            // The used ring cannot name such a head: the driver broke the ring.
            return Err(self.fault(format!("available ring names descriptor {head}")));
        }
        let table = GuestAddress(self.queue.desc_table());
        let outcome = match walk_chain(&self.mem, table, self.queue.size(), head, &mut self.layout)
        {
            Ok(()) => request::parse(&self.mem, &self.layout, &self.disk),
            Err(e) => request::malformed(&self.mem, &self.layout, e),
        };
        match outcome {
            Outcome::Submit {
                op,
                kind,
                status,
                data_len,
            } => {
                // Every outstanding chain holds at least one descriptor, so a driver can
                // never have more in flight than the queue size; one that reuses heads must
                // neither grow the table without bound nor have the reactor spin on it.
                if self.in_flight.len >= usize::from(self.queue.size()) {
                    return Err(self.fault("more chains in flight than the queue size"));
                }
                self.stats.count(kind);
                let tag = self.in_flight.insert(InFlight {
                    head,
                    status,
                    kind,
                    data_len,
                });
                batch.push(tag, op);
                Ok(())
            }
            Outcome::Complete {
                kind,
                status,
                code,
                used_len,
                error,
            } => {
                self.stats.count(kind);
                if let Some(e) = error {
                    debug!("virtio-blk queue {}: request refused: {e}", self.index);
                    self.stats.refused += 1;
                    if e == RequestError::UnalignedDirect {
                        self.stats.unaligned_direct += 1;
                    }
                }
                if let Some(status) = status {
                    self.write_status(status, code);
                }
                batch.note_completed();
                self.add_used(head, used_len)
            }
        }
    }

    fn write_status(&self, status: GuestAddress, code: u8) {
        // The parser checked the byte is in guest RAM, and RAM is never unmapped.
        if let Err(e) = self.mem.write_obj(code, status) {
            warn!(
                "virtio-blk queue {}: cannot write status at {:#x}: {e}",
                self.index, status.0
            );
        }
    }

    fn add_used(&mut self, head: u16, len: u32) -> Result<(), QueueFault> {
        self.queue
            .add_used(&self.mem, head, len)
            .map_err(|e| self.fault(format!("cannot add a used entry: {e}")))?;
        self.used_added = true;
        Ok(())
    }
}

impl QueueWorker for BlockQueueWorker {
    fn drain(&mut self, batch: &mut IoBatch) -> Result<usize, QueueFault> {
        self.heads.clear();
        match self.queue.iter(&self.mem) {
            Ok(chains) => self.heads.extend(chains.map(|chain| chain.head_index())),
            Err(e) => {
                return Err(QueueFault {
                    queue: self.index,
                    reason: e.to_string(),
                })
            }
        }
        let heads = std::mem::take(&mut self.heads);
        let result = heads
            .iter()
            .try_for_each(|&head| self.start_request(head, batch));
        let popped = heads.len();
        self.heads = heads;
        result.map(|()| popped)
    }

    fn complete(&mut self, tag: u64, result: i32) -> Result<(), QueueFault> {
        let Some(request) = self.in_flight.remove(tag) else {
            warn!(
                "virtio-blk queue {}: completion for unknown tag {tag}",
                self.index
            );
            return Ok(());
        };
        let transferred = u32::try_from(result).ok();
        let ok = match request.kind {
            // A short transfer is reported as an error rather than resubmitted: it only
            // happens when the image shrank under us or the host device failed part way.
            RequestKind::Read | RequestKind::Write => transferred == Some(request.data_len),
            _ => transferred.is_some(),
        };
        let used_len = if ok {
            match request.kind {
                RequestKind::Read => {
                    self.stats.bytes_read += u64::from(request.data_len);
                    request.data_len.saturating_add(1)
                }
                RequestKind::Write => {
                    self.stats.bytes_written += u64::from(request.data_len);
                    1
                }
                _ => 1,
            }
        } else {
            debug!(
                "virtio-blk queue {}: {:?} of {} bytes failed: {result}",
                self.index, request.kind, request.data_len
            );
            self.stats.io_errors += 1;
            1
        };
        let code = if ok {
            VIRTIO_BLK_S_OK
        } else {
            VIRTIO_BLK_S_IOERR
        };
        self.write_status(request.status, code as u8);
        self.add_used(request.head, used_len)
    }

    fn needs_interrupt(&mut self) -> Result<bool, QueueFault> {
        if !std::mem::take(&mut self.used_added) {
            return Ok(false);
        }
        let wanted = self
            .queue
            .needs_notification(&self.mem)
            .map_err(|e| self.fault(e))?;
        if !wanted || self.queue.event_idx_enabled() {
            return Ok(wanted);
        }
        // virtio-queue ignores VRING_AVAIL_F_NO_INTERRUPT (spec 2.7.7.2); needs_notification
        // already fenced the used-ring writes before this read.
        let flags: u16 = self
            .mem
            .read_obj(GuestAddress(self.queue.avail_ring()))
            .map_err(|e| self.fault(format!("cannot read the avail flags: {e}")))?;
        Ok(u16::from_le(flags) & VRING_AVAIL_F_NO_INTERRUPT as u16 == 0)
    }

    fn disable_notification(&mut self) -> Result<(), QueueFault> {
        self.queue
            .disable_notification(&self.mem)
            .map_err(|e| self.fault(e))
    }

    fn enable_notification(&mut self) -> Result<bool, QueueFault> {
        self.queue
            .enable_notification(&self.mem)
            .map_err(|e| self.fault(e))
    }

    fn in_flight(&self) -> usize {
        self.in_flight.len
    }

    fn has_available(&mut self) -> Result<bool, QueueFault> {
        let avail = self
            .queue
            .avail_idx(&self.mem, std::sync::atomic::Ordering::Acquire)
            .map_err(|e| self.fault(e))?;
        Ok(avail.0 != self.queue.next_avail())
    }
}
