//! virtio-net tests without a TAP: configuration and the control queue's commands. The
//! data path runs against a real TAP in tests/device_path_net.rs.

use super::ctrl::{CLASS_MAC, CLASS_MQ, CLASS_RX, ERR, MAC_TABLE_SET, MQ_VQ_PAIRS_SET, OK};
use super::*;

#[test]
fn default_macs_are_local_unicast_and_stable() {
    let a = default_mac("tap0");
    assert_eq!(a[0] & 0x03, 0x02, "locally administered, unicast");
    assert_eq!(a, default_mac("tap0"));
    assert_ne!(a, default_mac("tap1"));
}

#[test]
fn control_commands_are_checked() {
    let mem =
        crate::virtio::GuestMemory::from_ranges(&[(vm_memory::GuestAddress(0), 0x10000)]).unwrap();
    let queue = Queue::new(16).unwrap();
    let mut ctrl = NetControlWorker::new(2, queue, mem, Vec::new(), true);
    let mut table = vec![CLASS_MAC, MAC_TABLE_SET];
    table.extend(1u32.to_le_bytes());
    table.extend([2, 0, 0, 0, 0, 1]);
    table.extend(0u32.to_le_bytes());
    assert_eq!(ctrl.run_for_test(&table), OK);
    table.push(0);
    assert_eq!(ctrl.run_for_test(&table), ERR, "trailing bytes");
    assert_eq!(
        ctrl.run_for_test(&[CLASS_MAC, MAC_TABLE_SET, 9, 0, 0, 0]),
        ERR
    );
    assert_eq!(ctrl.run_for_test(&[CLASS_RX, 0, 1]), OK);
    assert_eq!(
        ctrl.run_for_test(&[CLASS_RX, 2, 1]),
        ERR,
        "ALLUNI needs CTRL_RX_EXTRA"
    );
    // No TAP queues behind this worker: any pair count is out of range.
    assert_eq!(ctrl.run_for_test(&[CLASS_MQ, MQ_VQ_PAIRS_SET, 1, 0]), ERR);
    assert_eq!(ctrl.run_for_test(&[CLASS_MQ, MQ_VQ_PAIRS_SET, 0, 0]), ERR);
    assert_eq!(ctrl.run_for_test(&[3, 0]), ERR, "ANNOUNCE not offered");
    assert_eq!(ctrl.run_for_test(&[]), ERR);
}
