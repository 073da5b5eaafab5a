//! The controller: addresses, configuration space and activation.

use std::path::PathBuf;

use virtio_queue::{Queue, QueueT};

use super::*;
use crate::virtio::scsi::{assign_addresses, protocol::LunAddress, ScsiError};
use crate::virtio::VirtioDevice;

fn disk(target: Option<u16>, lun: Option<u32>) -> ScsiDiskConfig {
    ScsiDiskConfig {
        path: PathBuf::from("/nonexistent"),
        target,
        lun,
        read_only: false,
        direct: false,
        serial: None,
    }
}

#[test]
fn addresses_are_assigned_around_explicit_ones() {
    let got = assign_addresses(&[
        disk(None, None),
        disk(Some(0), Some(0)),
        disk(Some(5), None),
        disk(None, Some(2)),
        disk(None, None),
    ])
    .unwrap();
    let a = |target, lun| LunAddress { target, lun };
    assert_eq!(got, vec![a(1, 0), a(0, 0), a(5, 0), a(0, 2), a(2, 0)]);
    // 300 disks: every target's LUN 0, then LUN 1s.
    let many = assign_addresses(&vec![disk(None, None); 300]).unwrap();
    assert_eq!(many[255], a(255, 0));
    assert_eq!(many[299], a(43, 1));
    assert!(matches!(
        assign_addresses(&[disk(Some(1), Some(1)), disk(Some(1), Some(1))]),
        Err(ScsiError::Duplicate {
            target: 1,
            lun: 1,
            ..
        })
    ));
    assert!(matches!(
        assign_addresses(&[disk(Some(256), None)]),
        Err(ScsiError::TargetRange { .. })
    ));
    assert!(matches!(
        assign_addresses(&[disk(None, Some(16384))]),
        Err(ScsiError::LunRange { .. })
    ));
}

#[test]
fn config_space_and_writable_sizes() {
    let (mut dev, _files) = device(&[(0, 0, 8, false)]);
    let mut c = [0u8; 36];
    dev.read_config(0, &mut c);
    let word = |c: &[u8], at: usize| u32::from_le_bytes(c[at..at + 4].try_into().unwrap());
    assert_eq!(word(&c, 0), 1);
    assert_eq!(word(&c, 4), 254);
    assert_eq!(word(&c, 8), 0xffff);
    assert_eq!(word(&c, 16), 16);
    assert_eq!((word(&c, 20), word(&c, 24)), (96, 32));
    assert_eq!(&c[28..32], &[0, 0, 255, 0]);
    assert_eq!(word(&c, 32), 16383);
    dev.write_config(24, &64u32.to_le_bytes());
    dev.write_config(20, &300u32.to_le_bytes()); // too large: ignored
    dev.write_config(8, &1u32.to_le_bytes()); // read-only field
    dev.read_config(0, &mut c);
    assert_eq!((word(&c, 8), word(&c, 20), word(&c, 24)), (0xffff, 96, 64));
    assert_eq!(dev.geometry().request_len(), 19 + 64);
    dev.reset();
    assert_eq!(dev.geometry().cdb_size, 32);
    assert_eq!(dev.device_type(), 8);
    assert_eq!(dev.queue_max_sizes().len(), 3);
}

#[test]
fn activation_needs_control_event_and_a_request_queue() {
    let mem = guest_memory();
    let (mut dev, _files) = device(&[(0, 0, 8, false)]);
    let queue = |base: u64| {
        let mut q = Queue::new(16).unwrap();
        q.set_desc_table_address(Some(base as u32), Some(0));
        q.set_avail_ring_address(Some(base as u32 + 0x1000), Some(0));
        q.set_used_ring_address(Some(base as u32 + 0x2000), Some(0));
        q.set_ready(true);
        q
    };
    let features = dev.offered_features();
    let err = dev.activate(
        mem.clone(),
        features,
        vec![(0, queue(0x10000)), (1, queue(0x20000))],
    );
    assert!(err.is_err());
    let workers = dev
        .activate(
            mem.clone(),
            features,
            vec![
                (0, queue(0x10000)),
                (1, queue(0x20000)),
                (2, queue(0x30000)),
            ],
        )
        .unwrap();
    assert_eq!(workers.len(), 3);
    assert!(dev.is_activated());
}

#[test]
fn bad_disks_are_refused() {
    let err = ScsiDevice::new(ScsiConfig {
        queues: 1,
        disks: vec![disk(None, None)],
    })
    .unwrap_err();
    assert!(err.to_string().contains("/nonexistent"), "{err}");
    let tiny = TempDisk::new(100);
    let err = ScsiDevice::new(ScsiConfig {
        queues: 1,
        disks: vec![ScsiDiskConfig {
            path: tiny.path.clone(),
            ..disk(None, None)
        }],
    })
    .unwrap_err();
    assert!(matches!(err, ScsiError::TooSmall { bytes: 100, .. }));
    assert!(matches!(
        ScsiDevice::new(ScsiConfig {
            queues: 0,
            disks: vec![]
        }),
        Err(ScsiError::QueueCount { .. })
    ));
}
