//! ringvisor's I/O plane.
//!
//! Everything that turns host events into guest interrupts lives here: the eventfds that KVM
//! signals into the guest (irqfd) and, as the hot path grows, the per-core io_uring reactors.
//! Device models depend on this crate for the handles they signal; they never touch KVM.

mod irq;
pub mod reactor;
pub mod worker;

pub use irq::{IrqEvent, IrqEventError};
pub use reactor::{
    pin_current_thread, QueueStats, ReactorError, ReactorSet, ReactorStats, ThreadSetup,
};
pub use worker::{
    AttachedQueue, IoBatch, IoOp, QueueBinding, QueueFault, QueueHost, QueueHostError, QueueWorker,
};
