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
    /// Completes (with result 0) after `nanos` nanoseconds: a worker that must wait for
    /// something outside its queue (another queue's requests to finish) checks again then.
    Delay { nanos: u64 },
    /// accept4 on the listening socket `fd` (close-on-exec); the result is the new
    /// connection's fd, which the worker then owns.
    Accept { fd: RawFd },
    /// Waits until `fd` reports one of the poll(2) `events` (or an error or hangup);
    /// the result is the events that occurred.
    Poll { fd: RawFd, events: u32 },
    /// A command for the driver behind `fd` (IORING_OP_URING_CMD in a 128-byte SQE, such
    /// as an NVMe I/O command on a namespace's generic character device); the result is
    /// the driver's. Only a reactor built with wide entries
    /// ([`ReactorOptions::wide_entries`](crate::ReactorOptions)) carries it; any other
    /// completes it with -EOPNOTSUPP.
    UringCmd {
        fd: RawFd,
        command: Box<UringCommand>,
    },
}

/// What a [`IoOp::UringCmd`] hands the driver: its command code and the command itself,
/// which may point into `iovecs` or `data`. Both are heap memory owned by the op, so those
/// addresses stay valid while the op is in flight however the op itself is moved.
#[derive(Debug)]
pub struct UringCommand {
    /// The driver's command code (the SQE's `cmd_op`), e.g. NVME_URING_CMD_IO.
    pub cmd_op: u32,
    /// The driver's command structure, in the SQE's 80-byte command area.
    pub bytes: [u8; 80],
    /// Guest buffers a vectored command names.
    pub iovecs: Vec<libc::iovec>,
    /// A buffer the command reads or writes that is not guest RAM (an NVMe range list).
    pub data: Vec<u8>,
    /// The one guest buffer a plain (not vectored) command names by address: where it
    /// lies in registered guest RAM and the kernel can take it (Linux 6.1+), the reactor
    /// submits the command with that buffer's index (IORING_URING_CMD_FIXED) and the
    /// driver skips pinning its pages.
    pub fixed_buffer: Option<libc::iovec>,
}

// SAFETY: the iovec pointers refer to guest RAM, which is shared with the guest anyway and
// lives as long as the process; an op only moves between the threads of that process.
unsafe impl Send for IoOp {}

/// What a worker hands its reactor while draining a queue: ops tagged with a value the
/// worker chooses and gets back in [`QueueWorker::complete`].
#[derive(Debug, Default)]
pub struct IoBatch {
    ops: Vec<(u64, IoOp)>,
    /// Chains the worker completed during the drain, with no host I/O.
    completed_now: usize,
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

    /// The worker completed a chain on the spot (its used entry is written): the reactor
    /// then owes the guest an interrupt decision even though no op was submitted.
    pub fn note_completed(&mut self) {
        self.completed_now += 1;
    }

    /// Returns and resets the count of [`note_completed`](Self::note_completed) calls.
    pub fn take_completed(&mut self) -> usize {
        std::mem::take(&mut self.completed_now)
    }
}

/// The queue cannot be served any more: the device must be marked DEVICE_NEEDS_RESET.
#[derive(Debug, thiserror::Error)]
pub enum QueueFault {
    /// The ring state is beyond repair (the avail index jumped past the queue size, the
    /// rings are outside guest RAM).
    #[error("virtqueue {queue} is broken: {reason}")]
    Broken { queue: u16, reason: String },
    /// The reactor's ring refused an op its policy does not list (-EACCES): the device
    /// asked for host I/O its reactor kind was never meant to do.
    #[error("the reactor's io_uring refused a {kind:?} op, which its ring policy does not allow")]
    OpRefused { kind: crate::reactor::OpKind },
    /// io_uring_enter failed on the queue's reactor with an error that is not transient: the
    /// reactor serves none of its queues any more.
    #[error(
        "reactor {reactor} failed: io_uring_enter returned {}",
        std::io::Error::from_raw_os_error(*errno)
    )]
    ReactorFailed { reactor: usize, errno: i32 },
}

/// Device logic for one virtqueue, driven by the reactor that owns the queue.
pub trait QueueWorker: Send {
    /// Pops every available chain. Each becomes ops in `batch` (their tags are the worker's
    /// own) or, when it needs no host I/O or is malformed, is completed at once (status
    /// written, used entry added, [`IoBatch::note_completed`] called). Returns how many
    /// chains were popped.
    fn drain(&mut self, batch: &mut IoBatch) -> Result<usize, QueueFault>;

    /// The op tagged `tag` finished with `result` (bytes transferred, or -errno). A request
    /// that needs more host I/O after this one puts it in `batch`, as `drain` does.
    fn complete(&mut self, tag: u64, result: i32, batch: &mut IoBatch) -> Result<(), QueueFault>;

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

    /// Whether the guest has posted chains not popped yet; a polling reactor checks this
    /// with notifications off instead of waiting for a kick.
    fn has_available(&mut self) -> Result<bool, QueueFault>;

    /// The device's counters for this queue, by name, for the stats call (read on the
    /// control path only).
    fn counters(&self) -> Vec<(&'static str, u64)> {
        Vec::new()
    }

    /// Descriptors this worker's ops use that stay open, under the same number, as long
    /// as the queue is attached (a disk's file): the reactor registers them with its ring
    /// and ops on them name a table slot. One that may be replaced while attached (a TAP
    /// that is reattached, a console connection) must not be listed: its number could
    /// come back for another file while the table still holds the old one.
    fn fixed_files(&self) -> Vec<std::os::fd::RawFd> {
        Vec::new()
    }
}

/// Everything a reactor needs to serve one queue.
pub struct QueueBinding {
    /// Name for logs and stats, e.g. "blk0/q1".
    pub name: String,
    pub worker: Box<dyn QueueWorker>,
    /// Written by KVM (ioeventfd) when the guest notifies the queue.
    pub kick: vmm_sys_util::eventfd::EventFd,
    /// The queue's interrupt (the irqfd of its MSI-X vector).
    pub interrupt: crate::IrqEvent,
    /// Called on the reactor thread when the worker reports a [`QueueFault`]; the
    /// transport sets DEVICE_NEEDS_RESET and raises a configuration-change interrupt.
    /// The reactor stops serving the queue after calling it.
    pub on_fault: Box<dyn Fn(&QueueFault) + Send>,
}

/// Handle of an attached queue, to take it back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AttachedQueue {
    pub reactor: usize,
    pub key: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum QueueHostError {
    #[error("reactor {0} is gone")]
    ReactorGone(usize),
    #[error("reactor cannot watch the queue: {0}")]
    Setup(#[source] std::io::Error),
}

/// Where the transport puts queues once the driver is ready (the reactor set), and takes
/// them back on reset.
pub trait QueueHost: Send + Sync {
    /// Hands the queue to a reactor, which starts serving it at once.
    fn attach(&self, binding: QueueBinding) -> Result<AttachedQueue, QueueHostError>;

    /// Hands the queue to the reactor that serves `beside` (queues that work together,
    /// like a NIC's receive and transmit queues, share one reactor).
    fn attach_beside(
        &self,
        binding: QueueBinding,
        beside: AttachedQueue,
    ) -> Result<AttachedQueue, QueueHostError> {
        let _ = beside;
        self.attach(binding)
    }

    /// Takes the queue back: returns once no request of it is in flight any more (every
    /// pending op completed and its used entry written), so its rings can be reused.
    fn detach(&self, queue: AttachedQueue) -> Result<(), QueueHostError>;
}
