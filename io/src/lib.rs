//! ringvisor's I/O plane.
//!
//! Everything that turns host events into guest interrupts lives here: the eventfds that KVM
//! signals into the guest (irqfd) and, as the hot path grows, the per-core io_uring reactors.
//! Device models depend on this crate for the handles they signal; they never touch KVM.

mod irq;
mod probe;
pub mod reactor;
pub mod worker;

pub use irq::{IrqEvent, IrqEventError};
pub use probe::{diagnose, probe, HostGate, IoUringUnavailable};
#[cfg(feature = "test-hooks")]
pub use reactor::ForbiddenOp;
pub use reactor::{
    iowq_workers, pin_current_thread, FailureHook, IowqLimits, IowqWorker, OpKind, QueueStats,
    ReactorError, ReactorFailure, ReactorOptions, ReactorSet, ReactorStats, RegisteredRam,
    RingPolicy, ThreadSetup, RAM_PIECE_MAX,
};
pub use worker::{
    AttachedQueue, IoBatch, IoOp, QueueBinding, QueueFault, QueueHost, QueueHostError, QueueWorker,
    UringCommand,
};
