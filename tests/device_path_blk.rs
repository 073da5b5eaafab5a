//! Tier 2: virtio-blk through the real reactors and io_uring on a real file, driven by a
//! synthetic guest driver (descriptors in guest memory, kicks on the queue's eventfd,
//! completions seen through the interrupt eventfd). No KVM, no vCPU.

use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ringvisor::memory::{self, GuestMemory};
use ringvisor::virtq_driver::{Buffer, SplitQueueDriver};
use ringvisor_devices::virtio::block::{BlockConfig, BlockDevice};
use ringvisor_devices::virtio::VirtioDevice;
use ringvisor_io::{AttachedQueue, IrqEvent, QueueBinding, QueueHost, ReactorSet};
use virtio_queue::{Queue, QueueT};
use vm_memory::{Address, Bytes, GuestAddress};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

const T_IN: u32 = 0;
const T_OUT: u32 = 1;
const T_FLUSH: u32 = 4;
const T_GET_ID: u32 = 8;
const T_DISCARD: u32 = 11;
const T_WRITE_ZEROES: u32 = 13;
const S_OK: u8 = 0;
const S_IOERR: u8 = 1;
const S_UNSUPP: u8 = 2;

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

/// One queue as the guest sees it: rings, a scratch area for headers, data and status,
/// the kick eventfd and the interrupt line.
struct GuestQueue {
    driver: SplitQueueDriver,
    kick: EventFd,
    interrupt: IrqEvent,
    scratch: GuestAddress,
    next_scratch: u64,
}

/// Per-queue scratch: 4 MiB starting at 16 MiB, one region per queue.
const SCRATCH_BASE: u64 = 16 << 20;
const SCRATCH_PER_QUEUE: u64 = 4 << 20;

impl GuestQueue {
    fn alloc(&mut self, len: u64) -> GuestAddress {
        let at = self.next_scratch.next_multiple_of(4096);
        assert!(at + len <= SCRATCH_PER_QUEUE, "scratch exhausted");
        self.next_scratch = at + len;
        GuestAddress(self.scratch.0 + at)
    }

    fn reset_scratch(&mut self) {
        self.next_scratch = 0;
    }
}

struct Rig {
    mem: GuestMemory,
    device: BlockDevice,
    reactors: Arc<ReactorSet>,
    queues: Vec<GuestQueue>,
    attached: Vec<AttachedQueue>,
}

impl Rig {
    fn new(config: BlockConfig, reactors: usize) -> Self {
        let queue_count = config.queues;
        let mem = memory::allocate(64 << 20).unwrap();
        let mut device = BlockDevice::new(config).unwrap();
        let reactors = Arc::new(ReactorSet::start(&vec![None; reactors]).unwrap());
        let mut device_queues = Vec::new();
        let mut queues = Vec::new();
        for index in 0..queue_count {
            let base = GuestAddress(0x1_0000 + u64::from(index) * 0x1_0000);
            let driver = SplitQueueDriver::new(mem.clone(), base, QUEUE_SIZE).unwrap();
            let mut queue = Queue::new(QUEUE_SIZE).unwrap();
            driver.configure(&mut queue);
            device_queues.push((index, queue));
            queues.push(GuestQueue {
                driver,
                kick: EventFd::new(EFD_NONBLOCK).unwrap(),
                interrupt: IrqEvent::new().unwrap(),
                scratch: GuestAddress(SCRATCH_BASE + u64::from(index) * SCRATCH_PER_QUEUE),
                next_scratch: 0,
            });
        }
        let features = device.offered_features();
        let workers = device
            .activate(mem.clone(), features, device_queues)
            .unwrap();
        let mut attached = Vec::new();
        for (index, worker) in workers {
            let queue = &queues[usize::from(index)];
            attached.push(
                reactors
                    .attach(QueueBinding {
                        name: format!("blk/q{index}"),
                        worker,
                        kick: queue.kick.try_clone().unwrap(),
                        interrupt: queue.interrupt.try_clone().unwrap(),
                        on_fault: Box::new(|fault| panic!("unexpected queue fault: {fault}")),
                    })
                    .unwrap(),
            );
        }
        Self {
            mem,
            device,
            reactors,
            queues,
            attached,
        }
    }

    /// Posts a request: header, then `data` buffers, then a 1-byte status. Returns the
    /// status address.
    fn post(&mut self, queue: usize, kind: u32, sector: u64, data: &[Buffer]) -> GuestAddress {
        let mem = self.mem.clone();
        let q = &mut self.queues[queue];
        let header = q.alloc(16);
        mem.write_obj(kind, header).unwrap();
        mem.write_obj(0u32, header.unchecked_add(4)).unwrap();
        mem.write_obj(sector, header.unchecked_add(8)).unwrap();
        let status = q.alloc(1);
        mem.write_obj(0xffu8, status).unwrap();
        let mut chain = vec![Buffer::readable(header, 16)];
        chain.extend_from_slice(data);
        chain.push(Buffer::writable(status, 1));
        q.driver.add_chain(&chain).unwrap();
        status
    }

    fn kick(&mut self, queue: usize) {
        let q = &mut self.queues[queue];
        // Like Linux with EVENT_IDX: interrupt me at the next used entry.
        q.driver.set_used_event(q.driver.last_used()).unwrap();
        q.driver.publish().unwrap();
        q.kick.write(1).unwrap();
    }

    /// Waits until `count` used entries came back on `queue`, sleeping on the interrupt
    /// like a guest driver (a completion without an interrupt would hang a real guest);
    /// returns them.
    fn wait_used(&mut self, queue: usize, count: usize) -> Vec<(u16, u32)> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut used = Vec::new();
        while used.len() < count {
            if Instant::now() >= deadline {
                let late = self.queues[queue].driver.take_used().unwrap();
                let stats = self.reactors.stats();
                panic!(
                    "queue {queue}: {} of {count} completions signalled; in the used ring \
                     without an interrupt: {late:?}; stats {:?}",
                    used.len(),
                    stats
                        .iter()
                        .flat_map(|r| r.queues.iter())
                        .map(|q| (q.requests, q.ops, q.irqs_sent, q.irqs_suppressed))
                        .collect::<Vec<_>>()
                );
            }
            if self.queues[queue].interrupt.take_pending() == 0 {
                std::thread::sleep(Duration::from_micros(200));
                continue;
            }
            let q = &mut self.queues[queue];
            used.extend(q.driver.take_used().unwrap());
            q.driver.set_used_event(q.driver.last_used()).unwrap();
            // Entries added between the last read and re-arming would not interrupt.
            used.extend(q.driver.take_used().unwrap());
        }
        used
    }

    /// Posts one request, kicks, waits for it and returns (status byte, used length).
    fn roundtrip(&mut self, queue: usize, kind: u32, sector: u64, data: &[Buffer]) -> (u8, u32) {
        let status = self.post(queue, kind, sector, data);
        self.kick(queue);
        let used = self.wait_used(queue, 1);
        self.queues[queue].reset_scratch();
        (self.mem.read_obj(status).unwrap(), used[0].1)
    }

    fn write_pattern(&mut self, queue: usize, sector: u64, bytes: &[u8]) -> (u8, u32) {
        let buf = self.queues[queue].alloc(bytes.len() as u64);
        self.mem.write_slice(bytes, buf).unwrap();
        self.roundtrip(
            queue,
            T_OUT,
            sector,
            &[Buffer::readable(buf, bytes.len() as u32)],
        )
    }

    fn read(&mut self, queue: usize, sector: u64, len: usize) -> (u8, Vec<u8>) {
        let buf = self.queues[queue].alloc(len as u64);
        let (status, used) =
            self.roundtrip(queue, T_IN, sector, &[Buffer::writable(buf, len as u32)]);
        if status == S_OK {
            assert_eq!(used as usize, len + 1, "a read reports data + status bytes");
        }
        let mut data = vec![0; len];
        self.mem.read_slice(&mut data, buf).unwrap();
        (status, data)
    }

    fn shutdown(mut self) {
        for attached in self.attached.drain(..) {
            self.reactors.detach(attached).unwrap();
        }
        self.device.reset();
    }
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
    let mut rig = Rig::new(config(&disk, 1), 1);

    // Split across three data descriptors: 4 KiB + 8 KiB + 4 KiB at sector 100.
    let data = pattern(7, 16 << 10);
    let bufs: Vec<Buffer> = [(0usize, 4096usize), (4096, 8192), (12288, 4096)]
        .iter()
        .map(|&(off, len)| {
            let at = rig.queues[0].alloc(len as u64);
            rig.mem.write_slice(&data[off..off + len], at).unwrap();
            Buffer::readable(at, len as u32)
        })
        .collect();
    assert_eq!(rig.roundtrip(0, T_OUT, 100, &bufs).0, S_OK);
    assert_eq!(
        disk.read_at(100 * 512, data.len()),
        data,
        "the file holds the data"
    );

    let (status, back) = rig.read(0, 100, data.len());
    assert_eq!((status, back == data), (S_OK, true));

    // FLUSH completes OK (fdatasync through io_uring).
    assert_eq!(rig.roundtrip(0, T_FLUSH, 0, &[]).0, S_OK);

    // GET_ID: the serial, zero padded to 20 bytes.
    let id = rig.queues[0].alloc(20);
    assert_eq!(
        rig.roundtrip(0, T_GET_ID, 0, &[Buffer::writable(id, 20)]).0,
        S_OK
    );
    let mut serial = [0u8; 20];
    rig.mem.read_slice(&mut serial, id).unwrap();
    assert_eq!(&serial[..14], b"rv-test-serial");
    assert!(serial[14..].iter().all(|&b| b == 0));
    rig.shutdown();
}

#[test]
fn discard_and_write_zeroes_clear_ranges() {
    let disk = TempDisk::new("discard", DISK_BYTES);
    let mut rig = Rig::new(config(&disk, 1), 1);
    let ones = vec![0xaau8; 64 << 10];
    assert_eq!(rig.write_pattern(0, 0, &ones).0, S_OK);

    let segment = |rig: &mut Rig, sector: u64, sectors: u32, unmap: bool| {
        let at = rig.queues[0].alloc(16);
        rig.mem.write_obj(sector, at).unwrap();
        rig.mem.write_obj(sectors, at.unchecked_add(8)).unwrap();
        rig.mem
            .write_obj(u32::from(unmap), at.unchecked_add(12))
            .unwrap();
        Buffer::readable(at, 16)
    };
    let seg = segment(&mut rig, 0, 16, false);
    assert_eq!(rig.roundtrip(0, T_DISCARD, 0, &[seg]).0, S_OK);
    let seg = segment(&mut rig, 64, 16, false);
    assert_eq!(rig.roundtrip(0, T_WRITE_ZEROES, 0, &[seg]).0, S_OK);

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
    rig.shutdown();
}

#[test]
fn read_only_disks_refuse_writes_and_keep_the_file() {
    let disk = TempDisk::new("ro", DISK_BYTES);
    std::fs::write(&disk.0, vec![0x5au8; DISK_BYTES as usize]).unwrap();
    let mut config = config(&disk, 1);
    config.read_only = true;
    let mut rig = Rig::new(config, 1);
    assert_ne!(
        rig.device.offered_features() & (1 << 5),
        0,
        "VIRTIO_BLK_F_RO offered"
    );

    assert_eq!(rig.write_pattern(0, 0, &[0u8; 4096]).0, S_IOERR);
    let (status, data) = rig.read(0, 0, 4096);
    assert_eq!(status, S_OK);
    assert!(data.iter().all(|&b| b == 0x5a));
    assert!(disk.read_at(0, 4096).iter().all(|&b| b == 0x5a));
    rig.shutdown();
}

#[test]
fn bad_requests_get_an_error_status_and_the_device_keeps_serving() {
    let disk = TempDisk::new("bad", DISK_BYTES);
    let mut rig = Rig::new(config(&disk, 1), 1);
    let last_sector = DISK_BYTES / 512;

    // Past the end, and straddling the end.
    assert_eq!(rig.read(0, last_sector, 512).0, S_IOERR);
    assert_eq!(rig.read(0, last_sector - 1, 1024).0, S_IOERR);
    assert_eq!(rig.read(0, u64::MAX, 512).0, S_IOERR);
    // Not a whole number of sectors.
    assert_eq!(rig.read(0, 0, 100).0, S_IOERR);
    // Unknown request type.
    assert_eq!(rig.roundtrip(0, 0xdead, 0, &[]).0, S_UNSUPP);
    // Data buffer outside guest RAM.
    let outside = Buffer::writable(GuestAddress(1 << 40), 512);
    assert_eq!(rig.roundtrip(0, T_IN, 0, &[outside]).0, S_IOERR);
    // Wrong direction: a read whose data buffer the device may not write.
    let at = rig.queues[0].alloc(512);
    assert_eq!(
        rig.roundtrip(0, T_IN, 0, &[Buffer::readable(at, 512)]).0,
        S_IOERR
    );

    // And the device still works.
    let data = pattern(3, 4096);
    assert_eq!(rig.write_pattern(0, 8, &data).0, S_OK);
    assert_eq!(rig.read(0, 8, 4096), (S_OK, data));
    rig.shutdown();
}

#[test]
fn four_queues_on_two_reactors_run_concurrently() {
    let disk = TempDisk::new("mq", DISK_BYTES);
    let mut rig = Rig::new(config(&disk, 4), 2);
    const PER_QUEUE: usize = 64;
    // Every queue writes its own 64 blocks of 4 KiB, all posted before any kick.
    for queue in 0..4 {
        for i in 0..PER_QUEUE {
            let sector = ((queue * PER_QUEUE + i) * 8) as u64;
            let data = pattern((queue * PER_QUEUE + i) as u8, 4096);
            let buf = rig.queues[queue].alloc(4096);
            rig.mem.write_slice(&data, buf).unwrap();
            rig.post(queue, T_OUT, sector, &[Buffer::readable(buf, 4096)]);
        }
    }
    for queue in 0..4 {
        rig.kick(queue);
    }
    for queue in 0..4 {
        assert_eq!(rig.wait_used(queue, PER_QUEUE).len(), PER_QUEUE);
        rig.queues[queue].reset_scratch();
    }
    for block in 0..4 * PER_QUEUE {
        assert_eq!(
            disk.read_at(block as u64 * 4096, 4096),
            pattern(block as u8, 4096),
            "block {block}"
        );
    }
    let stats = rig.reactors.stats();
    assert_eq!(stats.len(), 2);
    for reactor in &stats {
        assert_eq!(reactor.queues.len(), 2, "queues spread evenly");
        for queue in &reactor.queues {
            assert_eq!(queue.requests, PER_QUEUE as u64);
        }
    }
    rig.shutdown();
}
