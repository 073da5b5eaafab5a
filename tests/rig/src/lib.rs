//! The device-path rig: ringvisor's virtio devices activated without KVM, their queues
//! served by the real io_uring reactors, driven by a synthetic guest driver in this
//! process ([`virtq_driver`]). The device-path tests, the device-path benchmark
//! (bench/devpath) and the seccomp and fault tests use it; the shipped binary does not.

pub mod devpath;
pub mod virtq_driver;
