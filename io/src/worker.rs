//! The contract between a reactor and the device logic of one virtqueue.
//!
//! A device turns descriptor chains into [`IoOp`]s; the reactor turns those into io_uring
//! submissions and hands each result back. Device code therefore never sees io_uring, and
//! a test can drive a worker with no reactor at all.

use std::os::fd::RawFd;

/// One host I/O a request needs. Buffers are iovecs that point straight into guest RAM
/// (zero copy): guest RAM stays mapped for the life of the process, so a pointer taken when
/// the chain was parsed stays valid until the op completes.
#[derive(Debug)]
pub enum IoOp {
    /// preadv2 of `iovecs` from `fd` at `offset`.
    Read {
        fd: RawFd,
        offset: u64,
        iovecs: Vec<libc::iovec>,
    },
    /// pwritev2 of `iovecs` to `fd` at `offset`.
    Write {
        fd: RawFd,
        offset: u64,
        iovecs: Vec<libc::iovec>,
    },
    /// fdatasync of `fd`: completes once everything written before it is durable.
    Flush { fd: RawFd },
    /// fallocate(`fd`, `mode`, `offset`, `len`): punch holes (discard) or zero ranges.
    Fallocate {
        fd: RawFd,
        mode: i32,
        offset: u64,
        len: u64,
    },
}

// SAFETY: the iovec pointers refer to guest RAM, which is shared with the guest anyway and
// lives as long as the process; an op only moves between the threads of that process.
unsafe impl Send for IoOp {}

/// What a worker hands its reactor while draining a queue: ops tagged with a value the
/// worker chooses and gets back in [`QueueWorker::complete`].
#[derive(Debug, Default)]
pub struct IoBatch {
    ops: Vec<(u64, IoOp)>,
}

impl IoBatch {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, tag: u64, op: IoOp) {
        self.ops.push((tag, op));
    }

    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    pub fn drain(&mut self) -> std::vec::Drain<'_, (u64, IoOp)> {
        self.ops.drain(..)
    }
}

/// The ring state is beyond repair (the avail index jumped past the queue size, the rings
/// are outside guest RAM): the device must be marked DEVICE_NEEDS_RESET.
#[derive(Debug, thiserror::Error)]
#[error("virtqueue {queue} is broken: {reason}")]
pub struct QueueFault {
    pub queue: u16,
    pub reason: String,
}

/// Device logic for one virtqueue, driven by the reactor that owns the queue.
pub trait QueueWorker: Send {
    /// Pops every available chain. Each becomes ops in `batch` (their tags are the worker's
    /// own) or, when it needs no host I/O or is malformed, is completed at once (status
    /// written, used entry added). Returns how many chains were popped.
    fn drain(&mut self, batch: &mut IoBatch) -> Result<usize, QueueFault>;

    /// The op tagged `tag` finished with `result` (bytes transferred, or -errno).
    fn complete(&mut self, tag: u64, result: i32) -> Result<(), QueueFault>;

    /// Whether the guest wants an interrupt for the used entries added so far (EVENT_IDX
    /// or VRING_AVAIL_F_NO_INTERRUPT honoured); resets the "added" state.
    fn needs_interrupt(&mut self) -> Result<bool, QueueFault>;

    /// Turns guest notifications off while the reactor drains the queue.
    fn disable_notification(&mut self) -> Result<(), QueueFault>;

    /// Turns them back on; returns true when chains arrived meanwhile and the reactor must
    /// drain again before sleeping.
    fn enable_notification(&mut self) -> Result<bool, QueueFault>;

    /// How many popped chains still wait for a completion.
    fn in_flight(&self) -> usize;
}
