//! Tier 2: virtio-balloon through the real reactors, over real anonymous guest RAM: pages
//! the guest gives up (inflate, free page reporting) leave the process's resident set
//! (checked with mincore) and read back as zeros; the guest's statistics come back on
//! the reactor's timer.

use std::time::{Duration, Instant};

use ringvisor_devices::virtio::balloon::{BalloonConfig, BalloonDevice};
use ringvisor_rig::devpath::Rig;
use ringvisor_rig::virtq_driver::Buffer;
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend as _};

const QUEUE_SIZE: u16 = 64;
const INFLATE: usize = 0;
const STATS: usize = 2;
const REPORTING: usize = 3;
const PAGE: u64 = 4096;

/// How many of the `pages` host pages behind guest address `at` are resident.
fn resident_pages(rig: &Rig<BalloonDevice>, at: GuestAddress, pages: usize) -> usize {
    let host = rig.mem().get_host_address(at).unwrap();
    let mut vec = vec![0u8; pages];
    // SAFETY: `host` is page aligned (guest pages map to host pages one to one) and the
    // whole range is guest RAM, mapped for the life of the rig; `vec` has a byte per page.
    let rc = unsafe { libc::mincore(host.cast(), pages * PAGE as usize, vec.as_mut_ptr()) };
    assert_eq!(rc, 0, "mincore: {}", std::io::Error::last_os_error());
    vec.iter().filter(|&&b| b & 1 != 0).count()
}

fn counter(rig: &Rig<BalloonDevice>, queue: &str, name: &str) -> u64 {
    rig.stats()
        .iter()
        .flat_map(|r| r.queues.iter())
        .find(|q| q.name == queue)
        .and_then(|q| q.device.iter().find(|(n, _)| *n == name).map(|&(_, v)| v))
        .unwrap_or_else(|| panic!("no counter {name} on {queue}"))
}

#[test]
fn given_up_pages_leave_the_host_and_statistics_refresh() {
    let device = BalloonDevice::new(BalloonConfig {
        stats_interval: Duration::from_millis(50),
        ..BalloonConfig::default()
    })
    .unwrap();
    let handle = device.handle();
    let mut rig = Rig::with_device(device, "balloon", &[None], QUEUE_SIZE, None).unwrap();

    // 64 guest pages written by the guest (resident), then put in the balloon with a
    // page number past the end of RAM.
    let queue = rig.queue(INFLATE).unwrap();
    let pages = queue.alloc(64 * PAGE).unwrap();
    let fence = queue.alloc(PAGE).unwrap();
    rig.mem()
        .write_slice(&[0xab; 65 * PAGE as usize], pages)
        .unwrap();
    assert_eq!(resident_pages(&rig, pages, 65), 65);
    let mut pfns: Vec<u8> = (0..64u64)
        .flat_map(|i| ((pages.0 / PAGE + i) as u32).to_le_bytes())
        .collect();
    pfns.extend(u32::MAX.to_le_bytes());
    let queue = rig.queue(INFLATE).unwrap();
    queue.post_bytes(&pfns).unwrap();
    // A broken chain too: the device returns it and keeps going.
    queue
        .post_chain(&[Buffer::readable(GuestAddress(1 << 40), 64)])
        .unwrap();
    queue.kick().unwrap();
    rig.wait_used(INFLATE, 2).unwrap();
    assert_eq!(
        resident_pages(&rig, pages, 64),
        0,
        "inflated pages released"
    );
    assert_eq!(resident_pages(&rig, fence, 1), 1, "the next page is kept");
    let mut back = vec![0u8; 64 * PAGE as usize];
    rig.mem().read_slice(&mut back, pages).unwrap();
    assert!(back.iter().all(|&b| b == 0), "released pages read as zeros");
    let mut kept = [0u8; 16];
    rig.mem().read_slice(&mut kept, fence).unwrap();
    assert_eq!(kept, [0xab; 16]);
    assert_eq!(counter(&rig, "balloon/q0", "inflated_pages"), 65);
    assert_eq!(counter(&rig, "balloon/q0", "ignored_pages"), 1);
    assert_eq!(counter(&rig, "balloon/q0", "bad_chains"), 1);

    // Free page reporting: a device-writable buffer describes the free range.
    let queue = rig.queue(REPORTING).unwrap();
    let free = queue.alloc(32 * PAGE).unwrap();
    rig.mem()
        .write_slice(&[0xcd; 32 * PAGE as usize], free)
        .unwrap();
    let queue = rig.queue(REPORTING).unwrap();
    queue
        .post_chain(&[Buffer::writable(free, 32 * PAGE as u32)])
        .unwrap();
    queue.kick().unwrap();
    rig.wait_used(REPORTING, 1).unwrap();
    assert_eq!(resident_pages(&rig, free, 32), 0, "reported pages released");
    assert_eq!(handle.stats().reported_bytes, 32 * PAGE);

    // Statistics: free_memory (tag 4) and total_memory (tag 5); the buffer is held and
    // given back when the interval ran out, for the next report.
    let mut report = Vec::new();
    for (tag, value) in [(4u16, 123_456_789u64), (5, 987_654_321)] {
        report.extend(tag.to_le_bytes());
        report.extend(value.to_le_bytes());
    }
    let queue = rig.queue(STATS).unwrap();
    queue.post_bytes(&report).unwrap();
    queue.kick().unwrap();
    let started = Instant::now();
    rig.wait_used(STATS, 1).unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(40),
        "held for the interval"
    );
    let stats = handle.stats();
    assert!(stats.guest_stats.contains(&("free_memory", 123_456_789)));
    assert!(stats.guest_stats.contains(&("total_memory", 987_654_321)));
    assert!(rig.faults().is_empty(), "{:?}", rig.faults());
    rig.shutdown().unwrap();
}
