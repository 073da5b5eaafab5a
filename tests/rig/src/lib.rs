//! The device-path rig: ringvisor's virtio devices activated without KVM, their queues
//! served by the real io_uring reactors, driven by a synthetic guest driver in this
//! process ([`virtq_driver`]). The device-path tests, the device-path benchmark
//! (bench/devpath) and the seccomp and fault tests use it; the shipped binary does not.
//! Also the VNC client that checks ringvisor's VNC server ([`rfb_client`], and the
//! `vnc-grab` tool the nested lab runs in L1).

pub mod devpath;
pub mod rfb_client;
pub mod virtq_driver;
