//! Inflation, deflation and free page reporting: what is released, what is refused.

use super::*;
use virtio_bindings::virtio_ring::VRING_DESC_F_NEXT;

/// Publishes `pfns` as one inflate/deflate buffer and serves it; checks the chain was
/// completed on the spot with a used length of 0.
fn send_pfns(driver: &mut MockDriver, worker: &mut BalloonPageWorker, pfns: &[u32]) {
    let len = write_pfns(driver.mem, pfns);
    let head = driver.add(&[(PFNS, len, R)]);
    assert_eq!(drain_parts(worker), (1, 1, 0));
    assert_eq!(driver.next_used(), (u32::from(head), 0));
}

/// `drain`'s answer with the number of ops, which a memory queue never submits.
fn drain_parts(worker: &mut BalloonPageWorker) -> (usize, usize, usize) {
    let (popped, completed, ops) = drain(worker);
    (popped, completed, ops.len())
}

#[test]
fn inflate_releases_exactly_the_pages() {
    let mem = guest_memory();
    let dev = device();
    let (mut driver, mut worker) = page_worker(&mem, &dev, QueueRole::Inflate);
    fill(&mem, 0x3_f000, 6 * PAGE, FILL);
    // Across the boundary of the two adjacent regions, and in the region after the hole.
    fill(&mem, REGION_B - 2 * PAGE, 4 * PAGE, FILL);
    fill(&mem, REGION_C, 2 * PAGE, FILL);

    let len = write_pfns(&mem, &[0x42, 0x40, 0x43, 0x41, 0x41, 0x7f, 0x80, 0x200]);
    let head = driver.add(&[(PFNS, len, R)]);
    assert_eq!(drain_parts(&mut worker), (1, 1, 0));
    assert_eq!(driver.next_used(), (u32::from(head), 0));

    assert!(all(&mem, 0x4_0000, 4 * PAGE, 0));
    assert!(all(&mem, 0x3_f000, PAGE, FILL));
    assert!(all(&mem, 0x4_4000, PAGE, FILL));
    assert!(all(&mem, REGION_B - PAGE, 2 * PAGE, 0));
    assert!(all(&mem, REGION_B - 2 * PAGE, PAGE, FILL));
    assert!(all(&mem, REGION_B + PAGE, PAGE, FILL));
    assert!(all(&mem, REGION_C, PAGE, 0));
    assert!(all(&mem, REGION_C + PAGE, PAGE, FILL));

    let stats = dev.handle().stats();
    assert_eq!(stats.inflated_pages, 8);
    assert_eq!(stats.ignored_pages, 0);
    assert_eq!(stats.bad_chains, 0);
    assert_eq!(worker.counters()[0], ("inflated_pages", 8));
    // The guest may touch a released page again: it reads zeros and keeps what it writes.
    fill(&mem, 0x4_0000, PAGE, 0x11);
    assert!(all(&mem, 0x4_0000, PAGE, 0x11));
}

#[test]
fn the_release_hook_hears_each_host_range_while_its_pages_still_hold_data() {
    let mem = guest_memory();
    let dev = device();
    fill(&mem, 0x4_0000, 3 * PAGE, FILL);
    // What the hook saw: each range, and whether its pages still held the guest's data.
    let heard = Arc::new(std::sync::Mutex::new(Vec::new()));
    let hook = {
        let heard = Arc::clone(&heard);
        ReleaseHook::new(move |addr, len| {
            // SAFETY: the hook gets a range of the test's guest RAM mapping, alive here.
            let data = unsafe { std::slice::from_raw_parts(addr as *const u8, len) };
            let intact = data.iter().all(|&b| b == FILL);
            heard.lock().unwrap().push((addr, len, intact));
        })
    };
    let (mut driver, queue) = MockDriver::new(&mem, QSIZE, USED, false);
    let discarder = Discarder::new(mem.clone(), Arc::clone(&dev.protected), Some(hook));
    let mut worker = BalloonPageWorker::new(
        0,
        QueueRole::Inflate,
        queue,
        discarder,
        Arc::clone(&dev.shared),
    );
    send_pfns(&mut driver, &mut worker, &[0x40, 0x41, 0x42]);
    let host = mem.get_host_address(GuestAddress(0x4_0000)).unwrap() as usize;
    let heard = heard.lock().unwrap().clone();
    let total: usize = heard.iter().map(|&(_, len, _)| len).sum();
    assert_eq!(total, 3 * PAGE as usize, "{heard:?}");
    assert!(
        heard.iter().all(|&(addr, len, intact)| intact
            && addr >= host
            && addr + len <= host + 3 * PAGE as usize),
        "every range inside the pages, heard before they were dropped: {heard:?}"
    );
    assert!(all(&mem, 0x4_0000, 3 * PAGE, 0), "then released");
}

#[test]
fn pfns_outside_ram_or_protected_are_ignored() {
    let mem = guest_memory();
    let dev = device();
    let (mut driver, mut worker) = page_worker(&mem, &dev, QueueRole::Inflate);
    fill(&mem, PARTLY_PROTECTED, PAGE, FILL);
    fill(&mem, PROTECTED - PAGE, 4 * PAGE, FILL);
    fill(&mem, 0x5_0000, PAGE, FILL);

    let hole = (HOLE / PAGE) as u32;
    let beyond = (REGION_C_END / PAGE) as u32;
    let protected = (PROTECTED / PAGE) as u32;
    let partly = (PARTLY_PROTECTED / PAGE) as u32;
    let pfns = [
        protected - 1, // released
        protected,
        protected + 1,
        protected + 2, // released
        partly,
        hole,
        hole + 1,
        beyond,
        u32::MAX,
        0x50, // released
    ];
    send_pfns(&mut driver, &mut worker, &pfns);

    assert!(all(&mem, PROTECTED - PAGE, PAGE, 0));
    assert!(all(&mem, PROTECTED, 2 * PAGE, FILL));
    assert!(all(&mem, PROTECTED + 2 * PAGE, PAGE, 0));
    assert!(all(&mem, PARTLY_PROTECTED, PAGE, FILL));
    assert!(all(&mem, 0x5_0000, PAGE, 0));
    let stats = dev.handle().stats();
    assert_eq!(stats.inflated_pages, 10);
    assert_eq!(stats.ignored_pages, 7);
    assert_eq!(stats.bad_chains, 0);
}

#[test]
fn deflate_counts_and_touches_nothing() {
    let mem = guest_memory();
    let dev = device();
    let (mut driver, mut worker) = page_worker(&mem, &dev, QueueRole::Deflate);
    fill(&mem, 0x4_0000, 2 * PAGE, FILL);
    send_pfns(&mut driver, &mut worker, &[0x40, 0x41, u32::MAX]);
    assert!(all(&mem, 0x4_0000, 2 * PAGE, FILL));
    let stats = dev.handle().stats();
    assert_eq!(stats.deflated_pages, 3);
    assert_eq!(stats.inflated_pages, 0);
    assert_eq!(stats.ignored_pages, 0);
    assert_eq!(worker.counters()[0], ("deflated_pages", 3));
}

#[test]
fn broken_chains_are_completed_and_counted() {
    let mem = guest_memory();
    let dev = device();
    let (mut driver, mut worker) = page_worker(&mem, &dev, QueueRole::Inflate);
    fill(&mem, 0x4_0000, PAGE, FILL);
    write_pfns(&mem, &[0x40]);
    let next = VRING_DESC_F_NEXT as u16;

    // A buffer outside guest memory.
    let head = driver.add(&[(HOLE + 0x1000, 8, R)]);
    assert_eq!(drain_parts(&mut worker), (1, 1, 0));
    assert_eq!(driver.next_used(), (u32::from(head), 0));
    // A loop: 10 -> 11 -> 10.
    driver.store(10, PFNS, 4, next, 11);
    driver.store(11, PFNS, 4, next, 10);
    driver.publish(10);
    assert_eq!(drain_parts(&mut worker), (1, 1, 0));
    assert_eq!(driver.next_used(), (10, 0));
    // A next index past the table.
    driver.store(12, PFNS, 4, next, QSIZE + 3);
    driver.publish(12);
    assert_eq!(drain_parts(&mut worker), (1, 1, 0));
    assert_eq!(driver.next_used(), (12, 0));
    // A device-writable buffer in an inflate chain.
    let head = driver.add(&[(PFNS, 4, R), (0x5_0000, 8, W)]);
    assert_eq!(drain_parts(&mut worker), (1, 1, 0));
    assert_eq!(driver.next_used(), (u32::from(head), 0));
    // Far more PFNs than any driver sends.
    let head = driver.add(&[(0, 2 << 20, R)]);
    assert_eq!(drain_parts(&mut worker), (1, 1, 0));
    assert_eq!(driver.next_used(), (u32::from(head), 0));

    assert!(all(&mem, 0x4_0000, PAGE, FILL));
    let stats = dev.handle().stats();
    assert_eq!(stats.bad_chains, 5);
    assert_eq!(stats.inflated_pages, 0);

    // The queue still works.
    send_pfns(&mut driver, &mut worker, &[0x40]);
    assert!(all(&mem, 0x4_0000, PAGE, 0));
    assert_eq!(dev.handle().stats().inflated_pages, 1);
    assert_eq!(worker.counters()[1], ("chains", 6));
    assert_eq!(worker.counters()[3], ("bad_chains", 5));
}

#[test]
fn pfns_split_across_descriptors_and_batches() {
    let mem = guest_memory();
    let dev = device();
    let (mut driver, mut worker) = page_worker(&mem, &dev, QueueRole::Inflate);
    // 300 PFNs (more than one read batch) naming 100 pages of region B three times, the
    // array in two buffers split inside an entry, plus a trailing partial entry.
    let pfns: Vec<u32> = (0..300).map(|i| 0x80 + i % 100).collect();
    fill(&mem, REGION_B, 101 * PAGE, FILL);
    let len = write_pfns(&mem, &pfns);
    let head = driver.add(&[(PFNS, 1001, R), (PFNS + 1001, len - 1001 + 2, R)]);
    assert_eq!(drain_parts(&mut worker), (1, 1, 0));
    assert_eq!(driver.next_used(), (u32::from(head), 0));
    assert!(all(&mem, REGION_B, 100 * PAGE, 0));
    assert!(all(&mem, REGION_B + 100 * PAGE, PAGE, FILL));
    let stats = dev.handle().stats();
    assert_eq!(stats.inflated_pages, 300);
    assert_eq!(stats.ignored_pages, 0);
}

#[test]
fn free_page_reports_are_released() {
    let mem = guest_memory();
    let dev = device();
    let (mut driver, mut worker) = page_worker(&mem, &dev, QueueRole::Reporting);
    fill(&mem, 0x4_0000, 4 * PAGE, FILL);
    fill(&mem, REGION_C, 2 * PAGE, FILL);
    fill(&mem, PROTECTED, PAGE, FILL);

    let head = driver.add(&[
        (0x4_1000, 2 * PAGE as u32, W),
        (REGION_C, PAGE as u32, W),
        (PROTECTED, PAGE as u32, W),
        (HOLE, PAGE as u32, W),
        (u64::MAX - 0xfff, PAGE as u32, W),
    ]);
    assert_eq!(drain_parts(&mut worker), (1, 1, 0));
    assert_eq!(driver.next_used(), (u32::from(head), 0));
    assert!(all(&mem, 0x4_0000, PAGE, FILL));
    assert!(all(&mem, 0x4_1000, 2 * PAGE, 0));
    assert!(all(&mem, 0x4_3000, PAGE, FILL));
    assert!(all(&mem, REGION_C, PAGE, 0));
    assert!(all(&mem, REGION_C + PAGE, PAGE, FILL));
    assert!(all(&mem, PROTECTED, PAGE, FILL));
    let stats = dev.handle().stats();
    assert_eq!(stats.reported_bytes, 6 * PAGE);
    assert_eq!(stats.ignored_pages, 3);

    // Not whole host pages: the partial pages at both ends stay.
    fill(&mem, 0x4_0000, 4 * PAGE, FILL);
    let head = driver.add(&[(0x4_0800, 2 * PAGE as u32, W)]);
    assert_eq!(drain_parts(&mut worker), (1, 1, 0));
    assert_eq!(driver.next_used(), (u32::from(head), 0));
    assert!(all(&mem, 0x4_0000, 0x1000, FILL));
    assert!(all(&mem, 0x4_1000, 0x1000, 0));
    assert!(all(&mem, 0x4_2000, 0x2000, FILL));

    // A device-readable buffer is no report.
    let head = driver.add(&[(0x4_0000, PAGE as u32, R)]);
    assert_eq!(drain_parts(&mut worker), (1, 1, 0));
    assert_eq!(driver.next_used(), (u32::from(head), 0));
    assert!(all(&mem, 0x4_0000, PAGE, FILL));
    let stats = dev.handle().stats();
    assert_eq!(stats.bad_chains, 1);
    assert_eq!(stats.reported_bytes, 8 * PAGE);
    assert_eq!(worker.counters()[0], ("reported_bytes", 8 * PAGE));
}
