//! The device as the transport sees it: configuration space, features, opening, activation.

use virtio_queue::mock::MockSplitQueue;
use vm_memory::GuestAddress;

use super::super::*;
use super::{guest_memory, TempDisk, QSIZE};

/// The activation error; the workers of a success are not Debug.
fn activate_err(
    dev: &mut BlockDevice,
    mem: &GuestMemory,
    queues: Vec<(u16, Queue)>,
) -> ActivateError {
    match dev.activate(mem.clone(), dev.offered_features(), queues) {
        Ok(_) => panic!("activation should fail"),
        Err(e) => e,
    }
}

fn config_u32(dev: &BlockDevice, offset: u64) -> u32 {
    let mut b = [0u8; 4];
    dev.read_config(offset, &mut b);
    u32::from_le_bytes(b)
}

#[test]
fn config_space_layout() {
    let disk = TempDisk::new(1 << 20);
    let dev = BlockDevice::new(BlockConfig {
        queues: 4,
        ..disk.config()
    })
    .unwrap();
    assert_eq!(dev.device_type(), 2);
    assert_eq!(dev.queue_max_sizes(), vec![256; 4]);

    let mut capacity = [0u8; 8];
    dev.read_config(0, &mut capacity);
    assert_eq!(u64::from_le_bytes(capacity), 2048);
    assert_eq!(config_u32(&dev, 8), SIZE_MAX);
    assert_eq!(config_u32(&dev, 12), 254);
    assert_eq!(config_u32(&dev, 20), 512);
    let mut topology = [0xffu8; 8];
    dev.read_config(24, &mut topology);
    assert_eq!(topology, [0, 0, 1, 0, 0, 0, 0, 0]);
    let mut num_queues = [0u8; 2];
    dev.read_config(34, &mut num_queues);
    assert_eq!(u16::from_le_bytes(num_queues), 4);
    assert_eq!(config_u32(&dev, 36), MAX_DISCARD_SECTORS);
    assert_eq!(config_u32(&dev, 40), 1);
    assert_eq!(config_u32(&dev, 44), 1);
    assert_eq!(config_u32(&dev, 48), MAX_WRITE_ZEROES_SECTORS);
    assert_eq!(config_u32(&dev, 52), 1);
    assert_eq!(config_u32(&dev, 56), 1);

    // Past the end reads zeros, including a read straddling the end and a huge offset.
    assert_eq!(config_u32(&dev, 58), 0);
    assert_eq!(config_u32(&dev, 4096), 0);
    assert_eq!(config_u32(&dev, u64::MAX - 1), 0);
    // Writes are ignored.
    let mut dev = dev;
    dev.write_config(0, &[0xff; 8]);
    dev.read_config(0, &mut capacity);
    assert_eq!(u64::from_le_bytes(capacity), 2048);
}

#[test]
fn features_follow_the_configuration() {
    let bit = |b: u32| 1u64 << b;
    let disk = TempDisk::new(4096);
    let rw = BlockDevice::new(disk.config()).unwrap().offered_features();
    for f in [
        VIRTIO_F_VERSION_1,
        VIRTIO_F_RING_INDIRECT_DESC,
        VIRTIO_F_RING_EVENT_IDX,
        bit(VIRTIO_BLK_F_SEG_MAX),
        bit(VIRTIO_BLK_F_SIZE_MAX),
        bit(VIRTIO_BLK_F_BLK_SIZE),
        bit(VIRTIO_BLK_F_FLUSH),
        bit(VIRTIO_BLK_F_TOPOLOGY),
        bit(VIRTIO_BLK_F_DISCARD),
        bit(VIRTIO_BLK_F_WRITE_ZEROES),
    ] {
        assert_ne!(rw & f, 0, "{f:#x}");
    }
    assert_eq!(rw & (bit(VIRTIO_BLK_F_RO) | bit(VIRTIO_BLK_F_MQ)), 0);

    let ro = BlockDevice::new(BlockConfig {
        read_only: true,
        queues: 2,
        ..disk.config()
    })
    .unwrap()
    .offered_features();
    assert_ne!(ro & bit(VIRTIO_BLK_F_RO), 0);
    assert_ne!(ro & bit(VIRTIO_BLK_F_MQ), 0);
    assert_eq!(
        ro & (bit(VIRTIO_BLK_F_DISCARD) | bit(VIRTIO_BLK_F_WRITE_ZEROES)),
        0
    );
}

#[test]
fn opening_reports_bad_disks() {
    let disk = TempDisk::new(4096 + 100);
    let dev = BlockDevice::new(disk.config()).unwrap();
    assert_eq!(dev.capacity_sectors(), 8, "the partial sector is hidden");
    assert!(!dev.read_only() && !dev.direct());
    assert_eq!(dev.path(), disk.path.as_path());

    let empty = TempDisk::new(100);
    let err = BlockDevice::new(empty.config()).unwrap_err();
    assert!(matches!(err, BlockError::TooSmall { bytes: 100, .. }));

    let missing = BlockConfig {
        path: disk.path.with_extension("missing"),
        ..disk.config()
    };
    let err = BlockDevice::new(missing).unwrap_err();
    assert!(err.to_string().contains("missing"), "{err}");

    let dir = BlockConfig {
        path: std::env::temp_dir(),
        read_only: true,
        ..disk.config()
    };
    assert!(matches!(
        BlockDevice::new(dir).unwrap_err(),
        BlockError::Backing(BackingError::NotADisk { .. })
    ));

    for queues in [0, MAX_QUEUES + 1] {
        let c = BlockConfig {
            queues,
            ..disk.config()
        };
        assert!(matches!(
            BlockDevice::new(c).unwrap_err(),
            BlockError::QueueCount { .. }
        ));
    }
    let c = BlockConfig {
        serial: Some("x".repeat(21)),
        ..disk.config()
    };
    assert!(matches!(
        BlockDevice::new(c).unwrap_err(),
        BlockError::SerialTooLong { .. }
    ));
    let c = BlockConfig {
        serial: Some("y".repeat(20)),
        ..disk.config()
    };
    assert!(BlockDevice::new(c).is_ok());
}

#[test]
fn activate_checks_queues() {
    let disk = TempDisk::new(4096);
    let mut dev = BlockDevice::new(BlockConfig {
        queues: 2,
        ..disk.config()
    })
    .unwrap();
    let mem = guest_memory();
    let vq0 = MockSplitQueue::new(&mem, QSIZE);
    let vq1 = MockSplitQueue::create(&mem, GuestAddress(0x4000), QSIZE);
    let queue = |vq: &MockSplitQueue<GuestMemory>| -> Queue { vq.create_queue().unwrap() };
    let features = dev.offered_features();

    let err = activate_err(&mut dev, &mem, vec![]);
    assert!(matches!(err, ActivateError::QueueCount { got: 0, want: 2 }));
    let three = vec![(0, queue(&vq0)), (1, queue(&vq1)), (1, queue(&vq1))];
    let err = activate_err(&mut dev, &mem, three);
    assert!(matches!(err, ActivateError::QueueCount { got: 3, want: 2 }));
    let twice = vec![(1, queue(&vq1)), (1, queue(&vq1))];
    let err = activate_err(&mut dev, &mem, twice);
    assert!(matches!(err, ActivateError::InvalidQueue(1)));
    let err = activate_err(&mut dev, &mem, vec![(2, queue(&vq0))]);
    assert!(matches!(err, ActivateError::InvalidQueue(2)));
    let mut not_ready = queue(&vq0);
    not_ready.set_ready(false);
    let err = activate_err(&mut dev, &mem, vec![(0, not_ready)]);
    assert!(matches!(err, ActivateError::InvalidQueue(0)));
    assert!(!dev.is_activated());

    // The guest may use fewer queues than offered (one per vCPU).
    let workers = dev
        .activate(mem.clone(), features, vec![(1, queue(&vq1))])
        .unwrap();
    assert_eq!(workers.len(), 1);
    assert_eq!(workers[0].0, 1);
    assert_eq!(workers[0].1.in_flight(), 0);
    assert!(dev.is_activated());
    dev.reset();
    assert!(!dev.is_activated());
    let both = vec![(0, queue(&vq0)), (1, queue(&vq1))];
    assert_eq!(dev.activate(mem, features, both).unwrap().len(), 2);
}
