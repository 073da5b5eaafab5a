//! The statistics queue: parsed, held, handed back when the refresh delay ends.

use super::*;

/// Writes `(tag, value)` entries at STATS; returns their length in bytes.
fn write_stats(mem: &GuestMemory, entries: &[(u16, u64)]) -> u32 {
    let bytes: Vec<u8> = entries
        .iter()
        .flat_map(|&(tag, value)| {
            let mut entry = tag.to_le_bytes().to_vec();
            entry.extend_from_slice(&value.to_le_bytes());
            entry
        })
        .collect();
    mem.write_slice(&bytes, GuestAddress(STATS)).unwrap();
    bytes.len() as u32
}

#[test]
fn stats_are_parsed_held_and_returned_after_the_delay() {
    let mem = guest_memory();
    let dev = device();
    let handle = dev.handle();
    let (mut driver, mut worker) = stats_worker(&mem, &dev);
    assert!(handle.stats().guest_stats.is_empty());

    let len = write_stats(
        &mem,
        &[
            (0, 11),
            (4, 400 << 20),
            (5, 1 << 30),
            (10, 3),
            (99, 7), // unknown: dropped
        ],
    );
    assert_eq!(len, 50);
    let head = driver.add(&[(STATS, len, R)]);
    let (popped, completed, mut ops) = drain(&mut worker);
    assert_eq!((popped, completed, ops.len()), (1, 0, 1));
    let (tag, op) = ops.remove(0);
    assert!(matches!(op, IoOp::Delay { nanos: 1_000_000 }));
    // Held: no used entry until the delay ends.
    assert_eq!(driver.pending_used(), 0);
    assert_eq!(worker.in_flight(), 1);
    let stats = handle.stats();
    assert_eq!(
        stats.guest_stats,
        vec![
            ("swap_in", 11),
            ("free_memory", 400 << 20),
            ("total_memory", 1 << 30),
            ("oom_kills", 3),
        ]
    );
    assert_eq!(stats.guest_stats_updates, 1);

    let mut batch = IoBatch::new();
    worker.complete(tag, execute(op), &mut batch).unwrap();
    assert!(batch.is_empty());
    assert_eq!(driver.next_used(), (u32::from(head), 0));
    assert_eq!(worker.in_flight(), 0);
    assert!(worker.needs_interrupt().unwrap());

    // The driver's next report replaces the last one whole.
    let len = write_stats(&mem, &[(6, 5 << 20), (7, 9)]);
    driver.add(&[(STATS, len, R)]);
    let (_, _, ops) = drain(&mut worker);
    assert_eq!(ops.len(), 1);
    let stats = handle.stats();
    assert_eq!(
        stats.guest_stats,
        vec![("available_memory", 5 << 20), ("disk_caches", 9)]
    );
    assert_eq!(stats.guest_stats_updates, 2);
    assert_eq!(worker.counters()[0], ("stats_updates", 2));
}

#[test]
fn a_second_buffer_returns_the_first() {
    let mem = guest_memory();
    let dev = device();
    let (mut driver, mut worker) = stats_worker(&mem, &dev);
    let len = write_stats(&mem, &[(0, 1)]);
    let first = driver.add(&[(STATS, len, R)]);
    let (_, _, ops) = drain(&mut worker);
    let (tag, _) = ops.into_iter().next().unwrap();
    let second = driver.add(&[(STATS, len, R)]);
    // The delay already running covers the new buffer too.
    assert_eq!(drain(&mut worker).1, 1);
    assert_eq!(driver.next_used(), (u32::from(first), 0));
    assert_eq!(worker.in_flight(), 1);
    worker.complete(tag, 0, &mut IoBatch::new()).unwrap();
    assert_eq!(driver.next_used(), (u32::from(second), 0));
    assert_eq!(worker.in_flight(), 0);
    // A stray completion changes nothing.
    worker.complete(tag, 0, &mut IoBatch::new()).unwrap();
    assert_eq!(driver.pending_used(), 0);

    // A delay cancelled by a detach (a reset) forgets the buffer without using it.
    driver.add(&[(STATS, len, R)]);
    let (_, _, ops) = drain(&mut worker);
    let (tag, _) = ops.into_iter().next().unwrap();
    assert_eq!(worker.in_flight(), 1);
    worker
        .complete(tag, -libc::ECANCELED, &mut IoBatch::new())
        .unwrap();
    assert_eq!(worker.in_flight(), 0);
    assert_eq!(driver.pending_used(), 0);
}

#[test]
fn zero_interval_keeps_the_first_report() {
    let mem = guest_memory();
    let dev = BalloonDevice::new(BalloonConfig {
        stats_interval: Duration::ZERO,
        ..config()
    })
    .unwrap();
    let (mut driver, mut worker) = stats_worker(&mem, &dev);
    let len = write_stats(&mem, &[(3, 42)]);
    driver.add(&[(STATS, len, R)]);
    assert_eq!(drain(&mut worker).1, 0);
    let (popped, completed, ops) = drain(&mut worker);
    assert_eq!((popped, completed, ops.len()), (0, 0, 0));
    assert_eq!(worker.in_flight(), 1);
    assert_eq!(driver.pending_used(), 0);
    assert_eq!(dev.handle().stats().guest_stats, vec![("minor_faults", 42)]);
}

#[test]
fn malformed_stats_buffers_are_returned_at_once() {
    let mem = guest_memory();
    let dev = device();
    let (mut driver, mut worker) = stats_worker(&mem, &dev);
    let len = write_stats(&mem, &[(0, 1)]);
    // Device-writable, and outside guest memory.
    for chain in [[(STATS, len, W)], [(HOLE, len, R)]] {
        let head = driver.add(&chain);
        let (popped, completed, ops) = drain(&mut worker);
        assert_eq!((popped, completed, ops.len()), (1, 1, 0));
        assert_eq!(driver.next_used(), (u32::from(head), 0));
    }
    // Shorter than one entry: an empty report, held like any other.
    driver.add(&[(STATS, 9, R)]);
    assert_eq!(drain(&mut worker).2.len(), 1);
    let stats = dev.handle().stats();
    assert_eq!(stats.bad_chains, 2);
    assert_eq!(stats.guest_stats_updates, 1);
    assert!(stats.guest_stats.is_empty());
    assert_eq!(worker.counters()[3], ("bad_chains", 2));
}
