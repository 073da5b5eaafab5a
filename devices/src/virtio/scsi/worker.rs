//! The device side of one virtio-scsi request queue, driven by a reactor.

use std::sync::Arc;

use log::{debug, warn};
use ringvisor_io::{IoBatch, IoOp, QueueFault, QueueWorker};
use virtio_queue::Queue;

use super::cdb::{self, Command};
use super::inquiry;
use super::lun::{LogicalUnit, BLOCK_SIZE};
use super::protocol::response;
use super::request::{Geometry, Header, Reply, ResponseAt};
use super::sense::Sense;
use super::target::{self, Action, Bounce, Lookup, Luns, Needs, OpKind};
use crate::virtio::chain::{iovecs, read_stream, ChainError, ChainLayout, MAX_CHAIN_DESCRIPTORS};
use crate::virtio::queue_ring::{forward_to_ring, InFlightTable, QueueRing};
use crate::virtio::GuestMemory;

/// Most data-out bytes copied out of guest memory for one command (parameter lists,
/// VERIFY comparison data).
const MAX_DATA_OUT_COPY: u32 = 1 << 20;

/// Per-queue counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ScsiQueueStats {
    pub commands: u64,
    pub reads: u64,
    pub writes: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
    /// Commands answered with CHECK CONDITION.
    pub check_conditions: u64,
    /// Requests answered with a virtio-level failure (bad target, broken chain, overrun).
    pub failed_requests: u64,
    /// Host I/O that failed or came back short.
    pub io_errors: u64,
}

/// A command waiting for its host I/O.
struct Pending {
    head: u16,
    response: ResponseAt,
    unit: Arc<LogicalUnit>,
    kind: OpKind,
    ops_left: usize,
    /// The first error result, or a short transfer.
    failed: Option<i32>,
    transferred: u64,
    expected: u64,
    /// Data-in bytes on success, and the residual to report.
    data_in: u32,
    residual: u32,
    /// Host buffer ops read into or write from; kept until the last op completes.
    bounce: Option<Bounce>,
    /// VERIFY: what the read-back must equal.
    compare: Option<Vec<u8>>,
}

/// Serves one request queue of a [`super::ScsiDevice`].
pub struct ScsiRequestWorker {
    ring: QueueRing,
    luns: Arc<Luns>,
    geometry: Geometry,
    in_flight: InFlightTable<Pending>,
    layout: ChainLayout,
    heads: Vec<u16>,
    /// A request was answered during this drain (no host I/O).
    finished_now: bool,
    stats: ScsiQueueStats,
}

impl ScsiRequestWorker {
    pub(crate) fn new(
        index: u16,
        queue: Queue,
        mem: GuestMemory,
        luns: Arc<Luns>,
        geometry: Geometry,
    ) -> Self {
        Self {
            ring: QueueRing::new(index, queue, mem),
            luns,
            geometry,
            in_flight: InFlightTable::default(),
            layout: ChainLayout::with_capacity(MAX_CHAIN_DESCRIPTORS),
            heads: Vec::with_capacity(MAX_CHAIN_DESCRIPTORS),
            finished_now: false,
            stats: ScsiQueueStats::default(),
        }
    }

    pub fn stats(&self) -> ScsiQueueStats {
        self.stats
    }

    fn data_in_len(&self) -> u64 {
        self.layout
            .writable_len()
            .saturating_sub(self.geometry.response_len())
    }

    fn data_out_len(&self) -> u64 {
        self.layout
            .readable_len()
            .saturating_sub(self.geometry.request_len())
    }

    /// Finishes a request now: writes the response and `data` (data-in), adds the used
    /// entry.
    fn finish(
        &mut self,
        head: u16,
        at: &ResponseAt,
        reply: Reply,
        data_in: u32,
    ) -> Result<(), QueueFault> {
        if reply.response != response::OK {
            self.stats.failed_requests += 1;
        } else if reply.sense.is_some() {
            self.stats.check_conditions += 1;
        }
        self.finished_now = true;
        if let Err(e) = at.write(self.ring.mem(), &reply) {
            warn!(
                "virtio-scsi queue {}: cannot write a response: {e}",
                self.ring.index()
            );
        }
        self.ring.add_used(head, at.len().saturating_add(data_in))
    }

    fn start_request(&mut self, head: u16, batch: &mut IoBatch) -> Result<(), QueueFault> {
        let mem = self.ring.mem().clone();
        let walked = self.ring.walk(head, &mut self.layout);
        let Some(at) = ResponseAt::find(&self.layout, self.geometry) else {
            // Nowhere to answer: the chain goes back empty.
            debug!(
                "virtio-scsi queue {}: request without room for a response",
                self.ring.index()
            );
            self.stats.failed_requests += 1;
            self.finished_now = true;
            return self.ring.add_used(head, 0);
        };
        let data_in_len = u32::try_from(self.data_in_len()).unwrap_or(u32::MAX);
        if let Err(e) = walked {
            debug!("virtio-scsi queue {}: {e}", self.ring.index());
            return self.finish(head, &at, Reply::response(response::FAILURE, 0), 0);
        }
        if self.layout.readable_len() < self.geometry.request_len() {
            return self.finish(head, &at, Reply::response(response::FAILURE, 0), 0);
        }
        let header = match Header::read(&mem, &self.layout, self.geometry) {
            Ok(header) => header,
            Err(_) => return self.finish(head, &at, Reply::response(response::FAILURE, 0), 0),
        };
        self.stats.commands += 1;
        let luns = Arc::clone(&self.luns);
        let lookup = match header.lun {
            Some(address) => luns.lookup(address),
            None => Lookup::NoTarget,
        };
        let unit = match lookup {
            Lookup::NoTarget => {
                let reply = Reply::response(response::BAD_TARGET, data_in_len);
                return self.finish(head, &at, reply, 0);
            }
            Lookup::NoLun(target) => {
                let (reply, data) = absent_lun(header.cdb(), target.keys().copied());
                return self.reply_with_data(head, &at, reply, &data);
            }
            Lookup::Unit(unit) => Arc::clone(unit),
        };
        let command = match cdb::decode(header.cdb()) {
            Ok(command) => command,
            Err(sense) => {
                return self.finish(head, &at, Reply::check(sense, data_in_len), 0);
            }
        };
        let data_out = match target::needs(&command) {
            Needs::Nothing => Vec::new(),
            Needs::DataOut(want) => {
                let n = u64::from(want.min(MAX_DATA_OUT_COPY)).min(self.data_out_len());
                let mut bytes = vec![0u8; n as usize];
                let skip = self.geometry.request_len();
                if read_stream(&mem, &self.layout.readable, skip, &mut bytes).is_err() {
                    return self.finish(head, &at, Reply::response(response::FAILURE, 0), 0);
                }
                bytes
            }
        };
        let opcode = header.cdb[0];
        let action = target::execute(&luns, &unit, opcode, &command, &data_out);
        self.run_action(head, at, unit, &command, action, batch)
    }

    fn reply_with_data(
        &mut self,
        head: u16,
        at: &ResponseAt,
        reply: Reply,
        data: &[u8],
    ) -> Result<(), QueueFault> {
        let room = self.data_in_len();
        let n = (data.len() as u64).min(room);
        let mem = self.ring.mem().clone();
        let skip = self.geometry.response_len();
        let written = match crate::virtio::chain::write_stream(
            &mem,
            &self.layout.writable,
            skip,
            &data[..n as usize],
        ) {
            Ok(()) => n as u32,
            Err(_) => return self.finish(head, at, Reply::response(response::FAILURE, 0), 0),
        };
        let residual = u32::try_from(room - n).unwrap_or(u32::MAX);
        let reply = Reply { residual, ..reply };
        self.finish(head, at, reply, written)
    }

    fn run_action(
        &mut self,
        head: u16,
        at: ResponseAt,
        unit: Arc<LogicalUnit>,
        command: &Command,
        action: Action,
        batch: &mut IoBatch,
    ) -> Result<(), QueueFault> {
        let data_in_len = self.data_in_len();
        let data_out_len = self.data_out_len();
        let residual = |n: u64| u32::try_from(n).unwrap_or(u32::MAX);
        let mut pending = Pending {
            head,
            response: at,
            unit: Arc::clone(&unit),
            kind: OpKind::Write,
            ops_left: 0,
            failed: None,
            transferred: 0,
            expected: 0,
            data_in: 0,
            residual: residual(data_in_len.max(data_out_len)),
            bounce: None,
            compare: None,
        };
        let mem = self.ring.mem().clone();
        let ops = match action {
            Action::Data(mut data) => {
                if let Some(alloc) = command.allocation_length() {
                    data.truncate(alloc as usize);
                }
                return self.reply_with_data(head, &at, Reply::good(0), &data);
            }
            Action::Check(sense) => {
                return self.finish(head, &at, Reply::check(sense, residual(data_in_len)), 0);
            }
            Action::Read { offset, len } | Action::Write { offset, len } => {
                let read = matches!(action, Action::Read { .. });
                let (segments, skip, room) = if read {
                    (
                        &self.layout.writable,
                        self.geometry.response_len(),
                        data_in_len,
                    )
                } else {
                    (
                        &self.layout.readable,
                        self.geometry.request_len(),
                        data_out_len,
                    )
                };
                if room < u64::from(len) {
                    let reply = Reply::response(response::OVERRUN, 0);
                    return self.finish(head, &at, reply, 0);
                }
                if len == 0 {
                    return self.finish(head, &at, Reply::good(residual(room)), 0);
                }
                let iovecs = match iovecs(&mem, segments, skip, u64::from(len), unit.direct) {
                    Ok(iovecs) => iovecs,
                    Err(ChainError::UnalignedDirect) => {
                        // O_DIRECT needs 512-byte aligned buffers; Linux always aligns.
                        let reply = Reply::check(Sense::INTERNAL_FAILURE, residual(room));
                        return self.finish(head, &at, reply, 0);
                    }
                    Err(_) => {
                        return self.finish(head, &at, Reply::response(response::FAILURE, 0), 0)
                    }
                };
                let fd = unit.fd();
                pending.expected = u64::from(len);
                pending.residual = residual(room - u64::from(len));
                if read {
                    self.stats.reads += 1;
                    pending.kind = OpKind::Read;
                    pending.data_in = len;
                    vec![IoOp::Read { fd, offset, iovecs }]
                } else {
                    self.stats.writes += 1;
                    vec![IoOp::Write { fd, offset, iovecs }]
                }
            }
            Action::Ops { ops, kind, bounce } => {
                pending.kind = kind;
                pending.bounce = bounce;
                pending.expected = ops
                    .iter()
                    .map(|op| match op {
                        IoOp::Write { iovecs, .. } | IoOp::Read { iovecs, .. } => {
                            iovecs.iter().map(|v| v.iov_len as u64).sum()
                        }
                        _ => 0,
                    })
                    .sum();
                ops
            }
            Action::Compare { offset, expected } => {
                let blocks = expected.len() / BLOCK_SIZE as usize;
                let mut bounce = Bounce::zeroed(blocks);
                let iovecs = vec![libc::iovec {
                    iov_base: bounce.as_mut_ptr().cast(),
                    iov_len: bounce.len(),
                }];
                pending.kind = OpKind::Read;
                pending.expected = bounce.len() as u64;
                pending.bounce = Some(bounce);
                pending.compare = Some(expected);
                vec![IoOp::Read {
                    fd: unit.fd(),
                    offset,
                    iovecs,
                }]
            }
        };
        if self.in_flight.len() >= usize::from(self.ring.size()) {
            return Err(self.ring.fault("more chains in flight than the queue size"));
        }
        pending.ops_left = ops.len();
        unit.start_io();
        let tag = self.in_flight.insert(pending);
        for op in ops {
            batch.push(tag, op);
        }
        Ok(())
    }
}

/// The answer for an address on an existing target where no logical unit is (SPC-4
/// 5.12, incorrect logical unit selection): INQUIRY says "no device here", REPORT LUNS lists the
/// target's units, REQUEST SENSE reports LOGICAL UNIT NOT SUPPORTED as data, everything
/// else is that CHECK CONDITION.
fn absent_lun(cdb_bytes: &[u8], luns: impl Iterator<Item = u32>) -> (Reply, Vec<u8>) {
    let check = (Reply::check(Sense::LUN_NOT_SUPPORTED, 0), Vec::new());
    let Ok(command) = cdb::decode(cdb_bytes) else {
        return check;
    };
    let mut data = match command {
        Command::Inquiry { evpd: false, .. } => inquiry::absent(),
        Command::ReportLuns { select, alloc } => match target::report_luns(select, alloc, luns) {
            Ok(Action::Data(data)) => data,
            Ok(_) => return check,
            Err(sense) => return (Reply::check(sense, 0), Vec::new()),
        },
        Command::RequestSense { .. } => Sense::LUN_NOT_SUPPORTED.fixed().to_vec(),
        _ => return check,
    };
    if let Some(alloc) = command.allocation_length() {
        data.truncate(alloc as usize);
    }
    (Reply::good(0), data)
}

impl QueueWorker for ScsiRequestWorker {
    forward_to_ring!();

    fn drain(&mut self, batch: &mut IoBatch) -> Result<usize, QueueFault> {
        let mut heads = std::mem::take(&mut self.heads);
        heads.clear();
        let popped = self.ring.pop_heads(&mut heads);
        let result = popped.and_then(|()| {
            heads
                .iter()
                .try_for_each(|&head| self.start_request(head, batch))
        });
        let count = heads.len();
        self.heads = heads;
        if std::mem::take(&mut self.finished_now) {
            batch.note_completed();
        }
        result.map(|()| count)
    }

    fn complete(&mut self, tag: u64, result: i32, _batch: &mut IoBatch) -> Result<(), QueueFault> {
        let Some(pending) = self.in_flight.get_mut(tag) else {
            warn!(
                "virtio-scsi queue {}: completion for unknown tag {tag}",
                self.ring.index()
            );
            return Ok(());
        };
        pending.ops_left = pending.ops_left.saturating_sub(1);
        match u64::try_from(result) {
            Ok(n) => pending.transferred += n,
            Err(_) => {
                pending.failed.get_or_insert(result);
            }
        }
        if pending.ops_left > 0 {
            return Ok(());
        }
        let Some(pending) = self.in_flight.remove(tag) else {
            return Ok(());
        };
        let failed = pending
            .failed
            .or((pending.transferred != pending.expected).then_some(-libc::EIO));
        let reply = match failed {
            Some(errno) => {
                debug!(
                    "virtio-scsi queue {}: {:?} I/O failed: {errno}",
                    self.ring.index(),
                    pending.kind
                );
                self.stats.io_errors += 1;
                Reply::check(error_sense(pending.kind, -errno), pending.residual)
            }
            None => match (&pending.compare, &pending.bounce) {
                (Some(expected), Some(bounce)) if bounce.as_bytes() != &expected[..] => {
                    Reply::check(Sense::MISCOMPARE, pending.residual)
                }
                _ => {
                    match pending.kind {
                        OpKind::Read => self.stats.bytes_read += u64::from(pending.data_in),
                        OpKind::Write => self.stats.bytes_written += pending.transferred,
                    }
                    Reply::good(pending.residual)
                }
            },
        };
        let data_in = if failed.is_none() { pending.data_in } else { 0 };
        let outcome = self.finish(pending.head, &pending.response, reply, data_in);
        // The reactor learns of this used entry from the completion itself; the flag is
        // for requests answered during a drain.
        self.finished_now = false;
        // The used entry is written: task management may now call the request done.
        pending.unit.end_io();
        outcome
    }

    fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    fn fixed_files(&self) -> Vec<std::os::fd::RawFd> {
        // The units (and their files) are fixed when the controller is built, and `luns`
        // keeps them for the worker's life.
        self.luns.units().map(|unit| unit.fd()).collect()
    }

    fn counters(&self) -> Vec<(&'static str, u64)> {
        let s = &self.stats;
        vec![
            ("commands", s.commands),
            ("reads", s.reads),
            ("writes", s.writes),
            ("bytes_read", s.bytes_read),
            ("bytes_written", s.bytes_written),
            ("check_conditions", s.check_conditions),
            ("failed_requests", s.failed_requests),
            ("io_errors", s.io_errors),
        ]
    }
}

/// The sense data for a failed host op (errno positive).
fn error_sense(kind: OpKind, errno: i32) -> Sense {
    match errno {
        libc::ENOSPC | libc::EDQUOT => Sense::SPACE_ALLOCATION_FAILED,
        libc::EIO | libc::ENODATA | libc::EILSEQ | libc::EBADMSG => match kind {
            OpKind::Read => Sense::READ_ERROR,
            OpKind::Write => Sense::WRITE_ERROR,
        },
        _ => Sense::INTERNAL_FAILURE,
    }
}

#[cfg(test)]
pub(crate) fn error_sense_for_test(kind: OpKind, errno: i32) -> Sense {
    error_sense(kind, errno)
}
