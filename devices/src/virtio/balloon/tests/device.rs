//! Features, configuration space, activation and the control handle.

use super::*;
use crate::virtio::balloon::{
    BalloonError, VIRTIO_BALLOON_F_DEFLATE_ON_OOM, VIRTIO_BALLOON_F_REPORTING,
    VIRTIO_BALLOON_F_STATS_VQ,
};
use crate::virtio::{
    ActivateError, VirtioDevice, VIRTIO_F_RING_EVENT_IDX, VIRTIO_F_RING_INDIRECT_DESC,
    VIRTIO_F_VERSION_1,
};
use virtio_queue::mock::MockSplitQueue;
use virtio_queue::{Queue, QueueT};

const STATS_VQ: u64 = 1 << VIRTIO_BALLOON_F_STATS_VQ;
const REPORTING: u64 = 1 << VIRTIO_BALLOON_F_REPORTING;

fn read_u32(dev: &BalloonDevice, offset: u64) -> u32 {
    let mut data = [0u8; 4];
    dev.read_config(offset, &mut data);
    u32::from_le_bytes(data)
}

#[test]
fn features_and_identity() {
    let dev = device();
    assert_eq!(dev.device_type(), 5);
    assert_eq!(dev.queue_max_sizes(), vec![128; 4]);
    let base =
        VIRTIO_F_VERSION_1 | VIRTIO_F_RING_INDIRECT_DESC | VIRTIO_F_RING_EVENT_IDX | STATS_VQ;
    assert_eq!(dev.offered_features(), base | REPORTING);
    let oom = BalloonDevice::new(BalloonConfig {
        deflate_on_oom: true,
        ..config()
    })
    .unwrap();
    assert_eq!(
        oom.offered_features(),
        base | REPORTING | 1 << VIRTIO_BALLOON_F_DEFLATE_ON_OOM
    );
    let quiet = BalloonDevice::new(BalloonConfig {
        free_page_reporting: false,
        ..config()
    })
    .unwrap();
    assert_eq!(quiet.offered_features(), base);
}

#[test]
fn config_space_reads_and_writes() {
    let mut dev = BalloonDevice::new(BalloonConfig {
        initial_target_bytes: (10 << 20) + 1,
        ..config()
    })
    .unwrap();
    let handle = dev.handle();
    assert_eq!(read_u32(&dev, 0), 2561);
    assert_eq!(read_u32(&dev, 4), 0);
    let mut tail = [0xffu8; 8];
    dev.read_config(12, &mut tail);
    assert_eq!(tail, [0; 8]);

    // The driver reports what it holds.
    dev.write_config(4, &2000u32.to_le_bytes());
    assert_eq!(read_u32(&dev, 4), 2000);
    assert_eq!(handle.stats().actual_pages, 2000);
    // One byte at a time works too.
    dev.write_config(5, &[0x01]);
    assert_eq!(read_u32(&dev, 4), 2000 - (2000 & 0xff00) + 0x100);
    // num_pages and free_page_hint_cmd_id are the device's.
    dev.write_config(0, &7u32.to_le_bytes());
    dev.write_config(8, &7u32.to_le_bytes());
    assert_eq!(read_u32(&dev, 0), 2561);
    assert_eq!(read_u32(&dev, 8), 0);
    // A write straddling num_pages and actual keeps only actual's bytes.
    dev.write_config(2, &[9, 9, 0x34, 0x12]);
    assert_eq!(read_u32(&dev, 0), 2561);
    assert_eq!(read_u32(&dev, 4) & 0xffff, 0x1234);
    dev.write_config(12, &0xaaaa_aaaau32.to_le_bytes());
    assert_eq!(read_u32(&dev, 12), 0xaaaa_aaaa);
    dev.write_config(u64::MAX, &[1, 2, 3]);
    assert_eq!(read_u32(&dev, 12), 0xaaaa_aaaa);

    assert!(handle.set_target_bytes(1 << 20).unwrap());
    assert_eq!(read_u32(&dev, 0), 256);

    dev.reset();
    assert_eq!(read_u32(&dev, 0), 256);
    assert_eq!(read_u32(&dev, 4), 0);
    assert_eq!(read_u32(&dev, 12), 0);
    assert_eq!(handle.stats().actual_pages, 0);
}

#[test]
fn handle_target_semantics() {
    let dev = device();
    let handle = dev.handle();
    let other = handle.clone();
    assert_eq!(handle.target_pages(), 0);
    assert!(!handle.set_target_bytes(0).unwrap());
    assert!(handle.set_target_bytes(1).unwrap());
    assert_eq!(other.target_pages(), 1);
    assert!(!other.set_target_bytes(PAGE).unwrap());
    assert!(other.set_target_bytes(PAGE + 1).unwrap());
    assert_eq!(handle.target_pages(), 2);
    let max = u64::from(u32::MAX) * PAGE;
    assert!(handle.set_target_bytes(max).unwrap());
    assert_eq!(handle.target_pages(), u32::MAX);
    assert_eq!(
        handle.set_target_bytes(max + 1),
        Err(BalloonError::TargetTooLarge { bytes: max + 1 })
    );
    assert!(handle.set_target_bytes(u64::MAX).is_err());
    // A refused target leaves the last one.
    assert_eq!(handle.target_pages(), u32::MAX);
    assert_eq!(handle.stats().target_pages, u32::MAX);
}

#[test]
fn bad_configurations_are_refused() {
    let bad = |initial_target_bytes, protected| {
        BalloonDevice::new(BalloonConfig {
            initial_target_bytes,
            protected,
            ..config()
        })
        .unwrap_err()
    };
    assert_eq!(
        bad(u64::MAX, vec![]),
        BalloonError::TargetTooLarge { bytes: u64::MAX }
    );
    assert_eq!(
        bad(0, vec![(5, 5)]),
        BalloonError::BadProtectedRange { start: 5, end: 5 }
    );
    assert_eq!(
        bad(0, vec![(0, u64::MAX)]),
        BalloonError::BadProtectedRange {
            start: 0,
            end: u64::MAX
        }
    );
}

/// A valid queue at `addr` nobody drives.
fn idle_queue(mem: &GuestMemory, addr: u64) -> Queue {
    MockSplitQueue::create(mem, GuestAddress(addr), QSIZE)
        .create_queue()
        .unwrap()
}

fn first_counter_names(workers: &crate::virtio::QueueWorkers) -> Vec<(u16, &'static str)> {
    workers
        .iter()
        .map(|(index, worker)| (*index, worker.counters()[0].0))
        .collect()
}

#[test]
fn queue_indices_follow_the_acked_features() {
    let mem = guest_memory();
    let mut dev = device();
    let queues = |n: u64| -> Vec<(u16, Queue)> {
        (0..n)
            .map(|i| (i as u16, idle_queue(&mem, 0x4000 + i * 0x1000)))
            .collect()
    };

    let all = dev
        .activate(mem.clone(), STATS_VQ | REPORTING, queues(4))
        .unwrap();
    assert_eq!(
        first_counter_names(&all),
        vec![
            (0, "inflated_pages"),
            (1, "deflated_pages"),
            (2, "stats_updates"),
            (3, "reported_bytes"),
        ]
    );
    assert!(dev.is_activated());
    dev.reset();
    assert!(!dev.is_activated());

    let no_stats = dev.activate(mem.clone(), REPORTING, queues(3)).unwrap();
    assert_eq!(
        first_counter_names(&no_stats),
        vec![
            (0, "inflated_pages"),
            (1, "deflated_pages"),
            (2, "reported_bytes"),
        ]
    );
    dev.reset();
    let stats_only = dev.activate(mem.clone(), STATS_VQ, queues(3)).unwrap();
    assert_eq!(first_counter_names(&stats_only)[2], (2, "stats_updates"));
    dev.reset();
    assert_eq!(dev.activate(mem.clone(), 0, queues(2)).unwrap().len(), 2);
    dev.reset();

    let err = |dev: &mut BalloonDevice, features, queues| {
        dev.activate(mem.clone(), features, queues).err().unwrap()
    };
    // STATS_VQ acked but its queue not set up.
    let e = err(&mut dev, STATS_VQ | REPORTING, queues(3));
    assert!(matches!(e, ActivateError::QueueCount { got: 3, want: 4 }));
    // Index 3 without STATS_VQ is no queue of the device.
    let mut skipping = queues(2);
    skipping.push((3, idle_queue(&mem, 0x7000)));
    let e = err(&mut dev, REPORTING, skipping);
    assert!(matches!(e, ActivateError::InvalidQueue(3)));
    let twice = vec![(0, idle_queue(&mem, 0x4000)), (0, idle_queue(&mem, 0x5000))];
    assert!(matches!(
        err(&mut dev, 0, twice),
        ActivateError::InvalidQueue(0)
    ));
    let mut not_ready = queues(2);
    not_ready[1].1.set_ready(false);
    assert!(matches!(
        err(&mut dev, 0, not_ready),
        ActivateError::InvalidQueue(1)
    ));
    assert!(!dev.is_activated());
}

#[test]
fn reporting_queue_is_index_2_without_stats() {
    let mem = guest_memory();
    let mut dev = device();
    let (mut driver, queue) = MockDriver::new(&mem, QSIZE, USED, false);
    let queues = vec![
        (0, idle_queue(&mem, 0x5000)),
        (1, idle_queue(&mem, 0x6000)),
        (2, queue),
    ];
    let mut workers = dev.activate(mem.clone(), REPORTING, queues).unwrap();
    fill(&mem, 0x4_0000, PAGE, FILL);
    let head = driver.add(&[(0x4_0000, PAGE as u32, W)]);
    let (index, worker) = &mut workers[2];
    assert_eq!(*index, 2);
    assert_eq!(drain(worker.as_mut()).0, 1);
    assert_eq!(driver.next_used(), (u32::from(head), 0));
    assert!(all(&mem, 0x4_0000, PAGE, 0));
    assert_eq!(dev.handle().stats().reported_bytes, PAGE);
}

#[test]
fn the_handle_goes_to_any_thread() {
    fn send_sync<T: Send + Sync + Clone + 'static>(_: &T) {}
    let dev = device();
    let handle = dev.handle();
    send_sync(&handle);
    let remote = std::thread::spawn(move || handle.set_target_bytes(8 * PAGE).unwrap());
    assert!(remote.join().unwrap());
    assert_eq!(dev.handle().target_pages(), 8);
}
