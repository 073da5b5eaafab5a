//! Tier 2: virtio-blk through the real reactors and io_uring on a real file, driven by a
//! synthetic guest driver (descriptors in guest memory, kicks on the queue's eventfd,
//! completions seen through the interrupt eventfd). No KVM, no vCPU.

use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use ringvisor_devices::virtio::block::BlockConfig;
use ringvisor_devices::virtio::VirtioDevice;
use ringvisor_io::{IowqLimits, ReactorFailure, ReactorOptions};
use ringvisor_rig::devpath::{
    BlockRig as Rig, Completion, VIRTIO_BLK_S_IOERR as S_IOERR, VIRTIO_BLK_S_OK as S_OK,
    VIRTIO_BLK_S_UNSUPP as S_UNSUPP, VIRTIO_BLK_T_DISCARD as T_DISCARD,
    VIRTIO_BLK_T_FLUSH as T_FLUSH, VIRTIO_BLK_T_GET_ID as T_GET_ID, VIRTIO_BLK_T_IN as T_IN,
    VIRTIO_BLK_T_OUT as T_OUT, VIRTIO_BLK_T_WRITE_ZEROES as T_WRITE_ZEROES,
};
use ringvisor_rig::virtq_driver::Buffer;
use vm_memory::{Address, Bytes, GuestAddress};

const QUEUE_SIZE: u16 = 256;
const DISK_BYTES: u64 = 8 << 20;

struct TempDisk(PathBuf);

impl TempDisk {
    fn new(name: &str, len: u64) -> Self {
        let path =
            std::env::temp_dir().join(format!("ringvisor-blk-{name}-{}.img", std::process::id()));
        let file = std::fs::File::create(&path).unwrap();
        file.set_len(len).unwrap();
        Self(path)
    }

    fn read_at(&self, offset: u64, len: usize) -> Vec<u8> {
        let mut data = vec![0; len];
        std::fs::File::open(&self.0)
            .unwrap()
            .read_exact_at(&mut data, offset)
            .unwrap();
        data
    }
}

impl Drop for TempDisk {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn rig(config: BlockConfig, reactors: usize) -> Rig {
    Rig::new(config, &vec![None; reactors], QUEUE_SIZE).unwrap()
}

/// Posts one request, kicks, waits for it: (status byte, used length).
fn roundtrip(rig: &mut Rig, queue: usize, kind: u32, sector: u64, data: &[Buffer]) -> (u8, u32) {
    let Completion { status, used_len } = rig.roundtrip(queue, kind, sector, data).unwrap();
    (status, used_len)
}

fn write_pattern(rig: &mut Rig, queue: usize, sector: u64, bytes: &[u8]) -> (u8, u32) {
    let Completion { status, used_len } = rig.write(queue, sector, bytes).unwrap();
    (status, used_len)
}

fn read(rig: &mut Rig, queue: usize, sector: u64, len: usize) -> (u8, Vec<u8>) {
    let (completion, data) = rig.read(queue, sector, len as u32).unwrap();
    if completion.status == S_OK {
        assert_eq!(
            completion.used_len as usize,
            len + 1,
            "a read reports data + status bytes"
        );
    }
    (completion.status, data)
}

fn alloc(rig: &mut Rig, queue: usize, len: u64) -> GuestAddress {
    rig.queue(queue).unwrap().alloc(len).unwrap()
}

fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn config(disk: &TempDisk, queues: u16) -> BlockConfig {
    BlockConfig {
        path: disk.0.clone(),
        read_only: false,
        direct: true,
        queues,
        serial: Some("rv-test-serial".into()),
    }
}

#[test]
fn data_written_is_read_back_and_lands_in_the_file() {
    let disk = TempDisk::new("rw", DISK_BYTES);
    let mut rig = rig(config(&disk, 1), 1);

    // Split across three data descriptors: 4 KiB + 8 KiB + 4 KiB at sector 100.
    let data = pattern(7, 16 << 10);
    let bufs: Vec<Buffer> = [(0usize, 4096usize), (4096, 8192), (12288, 4096)]
        .iter()
        .map(|&(off, len)| {
            let at = alloc(&mut rig, 0, len as u64);
            rig.mem().write_slice(&data[off..off + len], at).unwrap();
            Buffer::readable(at, len as u32)
        })
        .collect();
    assert_eq!(roundtrip(&mut rig, 0, T_OUT, 100, &bufs).0, S_OK);
    assert_eq!(
        disk.read_at(100 * 512, data.len()),
        data,
        "the file holds the data"
    );

    let (status, back) = read(&mut rig, 0, 100, data.len());
    assert_eq!((status, back == data), (S_OK, true));

    // FLUSH completes OK (fdatasync through io_uring).
    assert_eq!(roundtrip(&mut rig, 0, T_FLUSH, 0, &[]).0, S_OK);

    // GET_ID: the serial, zero padded to 20 bytes.
    let id = alloc(&mut rig, 0, 20);
    assert_eq!(
        roundtrip(&mut rig, 0, T_GET_ID, 0, &[Buffer::writable(id, 20)]).0,
        S_OK
    );
    let mut serial = [0u8; 20];
    rig.mem().read_slice(&mut serial, id).unwrap();
    assert_eq!(&serial[..14], b"rv-test-serial");
    assert!(serial[14..].iter().all(|&b| b == 0));
    rig.shutdown().unwrap();
}

#[test]
fn discard_and_write_zeroes_clear_ranges() {
    let disk = TempDisk::new("discard", DISK_BYTES);
    let mut rig = rig(config(&disk, 1), 1);
    let ones = vec![0xaau8; 64 << 10];
    assert_eq!(write_pattern(&mut rig, 0, 0, &ones).0, S_OK);

    let segment = |rig: &mut Rig, sector: u64, sectors: u32, unmap: bool| {
        let at = alloc(rig, 0, 16);
        rig.mem().write_obj(sector, at).unwrap();
        rig.mem().write_obj(sectors, at.unchecked_add(8)).unwrap();
        rig.mem()
            .write_obj(u32::from(unmap), at.unchecked_add(12))
            .unwrap();
        Buffer::readable(at, 16)
    };
    let seg = segment(&mut rig, 0, 16, false);
    assert_eq!(roundtrip(&mut rig, 0, T_DISCARD, 0, &[seg]).0, S_OK);
    let seg = segment(&mut rig, 64, 16, false);
    assert_eq!(roundtrip(&mut rig, 0, T_WRITE_ZEROES, 0, &[seg]).0, S_OK);

    let file = disk.read_at(0, 64 << 10);
    assert!(
        file[..8192].iter().all(|&b| b == 0),
        "discarded range reads zeros"
    );
    assert!(
        file[8192..32768].iter().all(|&b| b == 0xaa),
        "untouched range kept"
    );
    assert!(
        file[32768..40960].iter().all(|&b| b == 0),
        "zeroed range reads zeros"
    );
    assert!(file[40960..].iter().all(|&b| b == 0xaa));
    rig.shutdown().unwrap();
}

#[test]
fn read_only_disks_refuse_writes_and_keep_the_file() {
    let disk = TempDisk::new("ro", DISK_BYTES);
    std::fs::write(&disk.0, vec![0x5au8; DISK_BYTES as usize]).unwrap();
    let mut config = config(&disk, 1);
    config.read_only = true;
    let mut rig = rig(config, 1);
    assert_ne!(
        rig.device().offered_features() & (1 << 5),
        0,
        "VIRTIO_BLK_F_RO offered"
    );

    assert_eq!(write_pattern(&mut rig, 0, 0, &[0u8; 4096]).0, S_IOERR);
    let (status, data) = read(&mut rig, 0, 0, 4096);
    assert_eq!(status, S_OK);
    assert!(data.iter().all(|&b| b == 0x5a));
    assert!(disk.read_at(0, 4096).iter().all(|&b| b == 0x5a));
    rig.shutdown().unwrap();
}

#[test]
fn bad_requests_get_an_error_status_and_the_device_keeps_serving() {
    let disk = TempDisk::new("bad", DISK_BYTES);
    let mut rig = rig(config(&disk, 1), 1);
    let last_sector = DISK_BYTES / 512;

    // Past the end, and straddling the end.
    assert_eq!(read(&mut rig, 0, last_sector, 512).0, S_IOERR);
    assert_eq!(read(&mut rig, 0, last_sector - 1, 1024).0, S_IOERR);
    assert_eq!(read(&mut rig, 0, u64::MAX, 512).0, S_IOERR);
    // Not a whole number of sectors.
    assert_eq!(read(&mut rig, 0, 0, 100).0, S_IOERR);
    // Unknown request type.
    assert_eq!(roundtrip(&mut rig, 0, 0xdead, 0, &[]).0, S_UNSUPP);
    // Data buffer outside guest RAM.
    let outside = Buffer::writable(GuestAddress(1 << 40), 512);
    assert_eq!(roundtrip(&mut rig, 0, T_IN, 0, &[outside]).0, S_IOERR);
    // Wrong direction: a read whose data buffer the device may not write.
    let at = alloc(&mut rig, 0, 512);
    assert_eq!(
        roundtrip(&mut rig, 0, T_IN, 0, &[Buffer::readable(at, 512)]).0,
        S_IOERR
    );

    // And the device still works.
    let data = pattern(3, 4096);
    assert_eq!(write_pattern(&mut rig, 0, 8, &data).0, S_OK);
    assert_eq!(read(&mut rig, 0, 8, 4096), (S_OK, data));
    rig.shutdown().unwrap();
}

#[test]
fn a_failed_reactor_marks_its_queues_device_for_a_reset_and_the_other_serves_on() {
    use std::sync::{Arc, Mutex};
    let disk = TempDisk::new("reactor-fails", DISK_BYTES);
    let failures = Arc::new(Mutex::new(Vec::new()));
    let told = failures.clone();
    let options = ReactorOptions {
        on_failure: Some(Arc::new(move |failure| told.lock().unwrap().push(failure))),
        ..ReactorOptions::default()
    };
    let mut rig =
        Rig::with_reactor_options(config(&disk, 2), &[None, None], QUEUE_SIZE, &options).unwrap();
    let stats = rig.stats();
    let on_second: Vec<&str> = stats[1].queues.iter().map(|q| q.name.as_str()).collect();
    assert_eq!(on_second, ["blk/q1"]);
    assert_eq!(write_pattern(&mut rig, 1, 0, &pattern(1, 4096)).0, S_OK);

    rig.split_mut().1.fail_next_enter(1, libc::EBADF).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while failures.lock().unwrap().is_empty() {
        assert!(std::time::Instant::now() < deadline, "no failure reported");
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let failure = ReactorFailure {
        reactor: 1,
        errno: libc::EBADF,
    };
    assert_eq!(failures.lock().unwrap()[..], [failure]);
    // What the transport's on_fault turns into DEVICE_NEEDS_RESET: the queue of the
    // failed reactor, and only that one.
    let faults = rig.faults();
    assert_eq!(faults.len(), 1, "{faults:?}");
    assert!(
        faults[0].starts_with("blk/q1: reactor 1 failed: io_uring_enter returned Bad file"),
        "{}",
        faults[0]
    );
    assert_eq!(write_pattern(&mut rig, 0, 8, &pattern(2, 4096)).0, S_OK);
    assert_eq!(disk.read_at(4096, 4096), pattern(2, 4096));
    assert_eq!(disk.read_at(0, 4096), pattern(1, 4096));
}

#[test]
fn four_queues_on_two_reactors_run_concurrently() {
    let disk = TempDisk::new("mq", DISK_BYTES);
    let mut rig = rig(config(&disk, 4), 2);
    const PER_QUEUE: usize = 64;
    // Every queue writes its own 64 blocks of 4 KiB, all posted before any kick.
    for queue in 0..4 {
        for i in 0..PER_QUEUE {
            let sector = ((queue * PER_QUEUE + i) * 8) as u64;
            let data = pattern((queue * PER_QUEUE + i) as u8, 4096);
            let buf = alloc(&mut rig, queue, 4096);
            rig.mem().write_slice(&data, buf).unwrap();
            rig.post(queue, T_OUT, sector, &[Buffer::readable(buf, 4096)])
                .unwrap();
        }
    }
    for queue in 0..4 {
        rig.kick(queue).unwrap();
    }
    for queue in 0..4 {
        assert_eq!(rig.wait_used(queue, PER_QUEUE).unwrap().len(), PER_QUEUE);
        rig.queue(queue).unwrap().reset_scratch();
    }
    for block in 0..4 * PER_QUEUE {
        assert_eq!(
            disk.read_at(block as u64 * 4096, 4096),
            pattern(block as u8, 4096),
            "block {block}"
        );
    }
    let stats = rig.stats();
    assert_eq!(stats.len(), 2);
    for reactor in &stats {
        assert_eq!(reactor.queues.len(), 2, "queues spread evenly");
        // Both queues of a reactor share the disk's one descriptor, registered once.
        assert_eq!(reactor.fixed_files, 1, "reactor {}", reactor.reactor);
        for queue in &reactor.queues {
            assert_eq!(queue.requests, PER_QUEUE as u64);
            assert_eq!(
                queue.fixed_file_ops, queue.ops,
                "{}: every op names the registered file",
                queue.name
            );
        }
    }
    // The API's `histograms`: every op in submit→complete, every interrupt sent after a
    // completion in complete→irq, bucket by bucket.
    let histograms = ringvisor::api::histograms_json(&stats);
    let queues = histograms["queues"].as_array().unwrap();
    assert_eq!(queues.len(), 4);
    let total = |q: &serde_json::Value, key: &str| -> u64 {
        q[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b[1].as_u64().unwrap())
            .sum()
    };
    for (queue, stat) in queues
        .iter()
        .zip(stats.iter().flat_map(|r| r.queues.iter()))
    {
        assert_eq!(queue["name"], serde_json::json!(stat.name));
        assert_eq!(total(queue, "submit_to_complete_ns"), stat.ops);
        assert_eq!(
            total(queue, "kick_to_submit_ns"),
            stat.kick_to_submit_ns.len()
        );
        assert_eq!(total(queue, "complete_to_irq_ns"), stat.irqs_sent);
        assert!(stat.irqs_sent > 0);
    }
    // Taking the queues back empties the file tables: a reset device's descriptor is
    // not kept open by the rings.
    rig.detach_queues().unwrap();
    assert!(rig.stats().iter().all(|reactor| reactor.fixed_files == 0));
    rig.shutdown().unwrap();
}

#[test]
fn a_page_cache_disk_under_writes_and_flushes_stays_within_the_io_wq_cap() {
    const BLOCK: usize = 64 << 10;
    const WRITES: usize = 32;
    const ROUNDS: usize = 4;
    const CAP: u32 = 1;
    let disk = TempDisk::new("iowq", DISK_BYTES);
    let mut config = config(&disk, 2);
    config.direct = false;
    let options = ReactorOptions {
        iowq: Some(IowqLimits::uniform(std::num::NonZeroU32::new(CAP).unwrap())),
        ..ReactorOptions::default()
    };
    let mut rig = Rig::with_reactor_options(config, &[None], QUEUE_SIZE, &options).unwrap();
    let tid = rig.stats()[0].tid;
    // Other tests' rings have io-wq workers too: only the reactor's own are counted.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut most = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                most = most.max(ringvisor_test_support::iowq_workers_of(tid));
                std::thread::sleep(std::time::Duration::from_micros(100));
            }
            most
        })
    };
    let seed = |round: usize, block: usize| (round * 64 + block) as u8;
    for round in 0..ROUNDS {
        let mut statuses = Vec::new();
        // Both queues write their own blocks, a flush after every fourth write, all
        // posted before the kicks: the page cache and fdatasync hand work to io-wq.
        for queue in 0..2 {
            for i in 0..WRITES {
                let block = queue * WRITES + i;
                let data = pattern(seed(round, block), BLOCK);
                let buf = alloc(&mut rig, queue, BLOCK as u64);
                rig.mem().write_slice(&data, buf).unwrap();
                let sector = (block * BLOCK / 512) as u64;
                let readable = [Buffer::readable(buf, BLOCK as u32)];
                statuses.push((queue, rig.post(queue, T_OUT, sector, &readable).unwrap()));
                if i % 4 == 3 {
                    statuses.push((queue, rig.post(queue, T_FLUSH, 0, &[]).unwrap()));
                }
            }
        }
        for queue in 0..2 {
            rig.kick(queue).unwrap();
        }
        for queue in 0..2 {
            let want = statuses.iter().filter(|(q, _)| *q == queue).count();
            assert_eq!(rig.wait_used(queue, want).unwrap().len(), want);
        }
        for &(queue, status) in &statuses {
            assert_eq!(rig.queue(queue).unwrap().status(status).unwrap(), S_OK);
        }
        for queue in 0..2 {
            rig.queue(queue).unwrap().reset_scratch();
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let most = sampler.join().unwrap();
    assert_eq!(rig.stats()[0].iowq_limits, options.iowq);
    rig.shutdown().unwrap();
    assert!(
        most >= 1,
        "the flushes never reached io-wq: nothing was tested"
    );
    assert!(
        most <= CAP as usize,
        "{most} io-wq workers, over the cap of {CAP}"
    );
    for block in 0..2 * WRITES {
        assert_eq!(
            disk.read_at((block * BLOCK) as u64, BLOCK),
            pattern(seed(ROUNDS - 1, block), BLOCK),
            "block {block} holds the last round's data"
        );
    }
}

/// A loop device over a temporary file, detached on drop.
struct LoopDevice(PathBuf);

impl LoopDevice {
    /// Attaches `file`; `None` where this machine cannot (not root, no loop driver).
    fn attach(file: &std::path::Path) -> Option<Self> {
        let out = std::process::Command::new("losetup")
            .args(["--find", "--show"])
            .arg(file)
            .output()
            .ok()?;
        if !out.status.success() {
            return None;
        }
        let path = String::from_utf8(out.stdout).ok()?.trim().to_owned();
        Some(Self(PathBuf::from(path)))
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        let _ = std::process::Command::new("losetup")
            .arg("-d")
            .arg(&self.0)
            .status();
    }
}

#[test]
fn a_block_device_backs_a_disk() {
    let file = TempDisk::new("loop", DISK_BYTES);
    let Some(device) = LoopDevice::attach(&file.0) else {
        ringvisor_test_support::skip(
            "cannot attach a loop device here (needs root and the loop driver)",
        );
        return;
    };
    let mut config = config(&file, 1);
    config.path = device.0.clone();
    let mut rig = rig(config, 1);
    // Capacity comes from BLKGETSIZE64, not from the (zero) size of the device node.
    assert_eq!(rig.device().capacity_sectors(), DISK_BYTES / 512);

    let data = pattern(42, 64 << 10);
    assert_eq!(write_pattern(&mut rig, 0, 2048, &data).0, S_OK);
    assert_eq!(roundtrip(&mut rig, 0, T_FLUSH, 0, &[]).0, S_OK);
    assert_eq!(read(&mut rig, 0, 2048, data.len()), (S_OK, data.clone()));
    // Past the end of the device is refused like past the end of a file.
    assert_eq!(read(&mut rig, 0, DISK_BYTES / 512, 512).0, S_IOERR);
    rig.shutdown().unwrap();
    drop(device);
    assert_eq!(
        file.read_at(2048 * 512, data.len()),
        data,
        "the bytes reached the file"
    );
}
