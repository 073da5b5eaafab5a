//! The device side of one virtio-blk request queue, driven by a reactor.

use std::fs::File;
use std::sync::Arc;

use log::{debug, warn};
use ringvisor_io::{IoBatch, QueueFault, QueueWorker};
use virtio_queue::Queue;
use vm_memory::{Bytes, GuestAddress};

use super::request::{
    self, Disk, Outcome, RequestError, RequestKind, STATUS_IOERR, STATUS_OK, STATUS_UNSUPP,
};
use super::QUEUE_MAX_SIZE;
use crate::nvme::command as nvme;
use crate::virtio::chain::{ChainError, ChainLayout};
use crate::virtio::queue_ring::{forward_to_ring, InFlightTable, QueueRing};
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
    /// NVMe commands a passthrough disk's requests became (a request larger than the
    /// controller's transfer limit is several).
    pub nvme_commands: u64,
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
    /// Ops still in flight (a passthrough request may be several commands).
    ops_left: usize,
    /// The status of the first op that failed.
    failure: Option<u8>,
}

/// Serves one request queue of a [`super::BlockDevice`].
pub struct BlockQueueWorker {
    ring: QueueRing,
    // Keeps `disk.fd` open as long as any op of this queue may be in flight.
    _file: Arc<File>,
    disk: Disk,
    in_flight: InFlightTable<InFlight>,
    layout: ChainLayout,
    heads: Vec<u16>,
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
            ring: QueueRing::new(index, queue, mem),
            _file: file,
            disk,
            in_flight: InFlightTable::default(),
            layout: ChainLayout::with_capacity(usize::from(QUEUE_MAX_SIZE)),
            heads: Vec::with_capacity(usize::from(QUEUE_MAX_SIZE)),
            stats: BlockQueueStats::default(),
        }
    }

    /// The queue's index in its device.
    pub fn index(&self) -> u16 {
        self.ring.index()
    }

    pub fn stats(&self) -> BlockQueueStats {
        self.stats
    }

    /// Turns the chain at `head` into ops in `batch`, or completes it at once.
    fn start_request(&mut self, head: u16, batch: &mut IoBatch) -> Result<(), QueueFault> {
        let mem = self.ring.mem();
        let outcome = match self.ring.walk(head, &mut self.layout) {
            Ok(()) => request::parse(mem, &self.layout, &self.disk),
            Err(e) => request::malformed(mem, &self.layout, e),
        };
        match outcome {
            Outcome::Submit {
                op,
                more,
                kind,
                status,
                data_len,
            } => {
                // Every outstanding chain holds at least one descriptor, so a driver can
                // never have more in flight than the queue size; one that reuses heads must
                // neither grow the table without bound nor have the reactor spin on it.
                if self.in_flight.len() >= usize::from(self.ring.size()) {
                    return Err(self.ring.fault("more chains in flight than the queue size"));
                }
                self.stats.count(kind);
                if self.disk.nvme.is_some() {
                    self.stats.nvme_commands += 1 + more.len() as u64;
                }
                let tag = self.in_flight.insert(InFlight {
                    head,
                    status,
                    kind,
                    data_len,
                    ops_left: 1 + more.len(),
                    failure: None,
                });
                batch.push(tag, op);
                for op in more {
                    batch.push(tag, op);
                }
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
                    debug!("virtio-blk queue {}: request refused: {e}", self.index());
                    self.stats.refused += 1;
                    if e == RequestError::Chain(ChainError::UnalignedDirect) {
                        self.stats.unaligned_direct += 1;
                    }
                }
                if let Some(status) = status {
                    self.write_status(status, code);
                }
                batch.note_completed();
                self.ring.add_used(head, used_len)
            }
        }
    }

    /// The status an op's `result` gives its request, `None` when it succeeded.
    fn op_failure(&self, tag: u64, result: i32) -> Option<u8> {
        if self.disk.nvme.is_some() {
            return match nvme::completion(result) {
                nvme::Completion::Ok => None,
                nvme::Completion::Unsupported => Some(STATUS_UNSUPP),
                nvme::Completion::Failed => Some(STATUS_IOERR),
            };
        }
        let transferred = u32::try_from(result).ok();
        let ok = match self.in_flight.get(tag) {
            // A short transfer is reported as an error rather than resubmitted: it only
            // happens when the image shrank under us or the host device failed part way.
            Some(request) if matches!(request.kind, RequestKind::Read | RequestKind::Write) => {
                transferred == Some(request.data_len)
            }
            _ => transferred.is_some(),
        };
        (!ok).then_some(STATUS_IOERR)
    }

    fn write_status(&self, status: GuestAddress, code: u8) {
        // The parser checked the byte is in guest RAM, and RAM is never unmapped.
        if let Err(e) = self.ring.mem().write_obj(code, status) {
            warn!(
                "virtio-blk queue {}: cannot write status at {:#x}: {e}",
                self.index(),
                status.0
            );
        }
    }
}

impl QueueWorker for BlockQueueWorker {
    forward_to_ring!();

    fn drain(&mut self, batch: &mut IoBatch) -> Result<usize, QueueFault> {
        self.heads.clear();
        self.ring.pop_heads(&mut self.heads)?;
        let heads = std::mem::take(&mut self.heads);
        let result = heads
            .iter()
            .try_for_each(|&head| self.start_request(head, batch));
        let popped = heads.len();
        self.heads = heads;
        result.map(|()| popped)
    }

    fn complete(&mut self, tag: u64, result: i32, _batch: &mut IoBatch) -> Result<(), QueueFault> {
        let failure = self.op_failure(tag, result);
        let index = self.index();
        let Some(request) = self.in_flight.get_mut(tag) else {
            warn!("virtio-blk queue {index}: completion for unknown tag {tag}");
            return Ok(());
        };
        if let Some(code) = failure {
            debug!(
                "virtio-blk queue {index}: {:?} of {} bytes failed: {result}",
                request.kind, request.data_len
            );
            request.failure.get_or_insert(code);
        }
        request.ops_left = request.ops_left.saturating_sub(1);
        if request.ops_left > 0 {
            return Ok(());
        }
        let Some(request) = self.in_flight.remove(tag) else {
            return Ok(());
        };
        let used_len = match (request.failure, request.kind) {
            (Some(_), _) => {
                self.stats.io_errors += 1;
                1
            }
            (None, RequestKind::Read) => {
                self.stats.bytes_read += u64::from(request.data_len);
                request.data_len.saturating_add(1)
            }
            (None, RequestKind::Write) => {
                self.stats.bytes_written += u64::from(request.data_len);
                1
            }
            (None, _) => 1,
        };
        self.write_status(request.status, request.failure.unwrap_or(STATUS_OK));
        self.ring.add_used(request.head, used_len)
    }

    fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    fn fixed_files(&self) -> Vec<std::os::fd::RawFd> {
        // `_file` keeps the descriptor open for the worker's life.
        vec![self.disk.fd]
    }

    fn counters(&self) -> Vec<(&'static str, u64)> {
        let s = &self.stats;
        vec![
            ("reads", s.reads),
            ("writes", s.writes),
            ("flushes", s.flushes),
            ("discards", s.discards),
            ("write_zeroes", s.write_zeroes),
            ("bytes_read", s.bytes_read),
            ("bytes_written", s.bytes_written),
            ("refused", s.refused),
            ("io_errors", s.io_errors),
            ("nvme_commands", s.nvme_commands),
        ]
    }
}
