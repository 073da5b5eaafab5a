//! What each reactor kind's io_uring may do, kept beside the threads' system-call lists:
//! io_uring would otherwise do on a reactor's behalf what its allowlist forbids (open,
//! connect, unlink, send). The lists come from the devices each kind serves; a device that
//! asks its reactor for an op off the list gets -EACCES and its queue needs a reset.

use ringvisor_devices::virtio::block::VIRTIO_ID_BLOCK;
use ringvisor_devices::virtio::net::VIRTIO_ID_NET;
use ringvisor_devices::virtio::scsi::VIRTIO_ID_SCSI;
use ringvisor_io::{OpKind, RingPolicy};

use super::ThreadKind;

/// Which kind of reactor serves a virtio device of `device_type`: the I/O reactors serve
/// block, SCSI and network; the low-priority one the rest (console, balloon, input), which
/// must never take time from them. The lists below follow from this.
pub fn serving_reactor(device_type: u32) -> ThreadKind {
    match device_type {
        VIRTIO_ID_BLOCK | VIRTIO_ID_SCSI | VIRTIO_ID_NET => ThreadKind::HotReactor,
        _ => ThreadKind::LowPriorityReactor,
    }
}

/// The op kinds a reactor of `kind` submits; `None` for threads without a ring.
pub fn ring_ops(kind: ThreadKind) -> Option<&'static [OpKind]> {
    match kind {
        // virtio-blk and virtio-scsi: reads, writes, flushes, discard and write-zeroes
        // (fallocate), and the delay a SCSI task-management request waits with; a
        // virtio-blk disk on an NVMe namespace: its NVMe commands (driver commands, which
        // act only on the descriptors the ring is given); virtio-net: frames read from
        // and written to the TAP, and the delay of a TAP that is gone.
        ThreadKind::HotReactor => Some(&[
            OpKind::Read,
            OpKind::Write,
            OpKind::Flush,
            OpKind::Fallocate,
            OpKind::Delay,
            OpKind::UringCmd,
        ]),
        // virtio-console: its backends' reads and writes, accepting a socket client, polling
        // a FIFO, retry delays; the balloon's statistics timer (a delay); virtio-input's
        // evdev reads. QXL's worker only reads its doorbell, the reactor's own op.
        ThreadKind::LowPriorityReactor => Some(&[
            OpKind::Read,
            OpKind::Write,
            OpKind::Accept,
            OpKind::Poll,
            OpKind::Delay,
        ]),
        ThreadKind::Main
        | ThreadKind::Vcpu
        | ThreadKind::Api
        | ThreadKind::Display
        | ThreadKind::Signals
        | ThreadKind::Stdin => None,
    }
}

/// The ring policy of a reactor of `kind` (every op for a kind without a ring of its own).
pub fn ring_policy(kind: ThreadKind) -> RingPolicy {
    match ring_ops(kind) {
        Some(ops) => RingPolicy::new(ops),
        None => RingPolicy::new(&[]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_reactors_have_rings_and_neither_may_do_everything() {
        for kind in ThreadKind::ALL {
            let reactor = matches!(
                kind,
                ThreadKind::HotReactor | ThreadKind::LowPriorityReactor
            );
            assert_eq!(ring_ops(kind).is_some(), reactor, "{kind:?}");
        }
        let hot = ring_policy(ThreadKind::HotReactor);
        let low = ring_policy(ThreadKind::LowPriorityReactor);
        assert!(!hot.allows(OpKind::Accept) && !hot.allows(OpKind::Poll));
        assert!(!low.allows(OpKind::Flush) && !low.allows(OpKind::Fallocate));
        assert!(hot.allows(OpKind::UringCmd) && !low.allows(OpKind::UringCmd));
    }
}
