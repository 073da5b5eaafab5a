//! ringvisor's device models.
//!
//! Each device is plain logic over its registers, queues and guest memory: it never knows KVM,
//! never owns a thread, and is tested on its own. The VMM binds devices to buses and the I/O
//! plane (`ringvisor-io`) binds their interrupts and queue kicks.

pub mod legacy;
pub mod nvme;
pub mod qxl;
pub mod virtio;
