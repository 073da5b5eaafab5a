//! Request-level tests: a mock driver (virtio-queue's MockSplitQueue) over guest memory, a
//! real temporary image, and ops executed synchronously in place of the reactor.

use std::fs::{self, File};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use ringvisor_io::{IoBatch, QueueWorker};
use virtio_bindings::virtio_blk::{
    VIRTIO_BLK_T_DISCARD, VIRTIO_BLK_T_FLUSH, VIRTIO_BLK_T_GET_ID, VIRTIO_BLK_T_IN,
    VIRTIO_BLK_T_OUT, VIRTIO_BLK_T_WRITE_ZEROES, VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP,
};
use virtio_bindings::virtio_ring::{
    VRING_AVAIL_F_NO_INTERRUPT, VRING_DESC_F_INDIRECT, VRING_DESC_F_NEXT, VRING_DESC_F_WRITE,
};
use virtio_queue::desc::{split::Descriptor, RawDescriptor};
use virtio_queue::mock::MockSplitQueue;
use virtio_queue::{Queue, QueueT};
use vm_memory::{Address, Bytes, GuestAddress};

use super::{BlockConfig, BlockDevice, BlockQueueStats, BlockQueueWorker};

mod device;
mod errors;
mod requests;
use crate::virtio::GuestMemory;

pub(super) const QSIZE: u16 = 16;
const R: u16 = 0;
const W: u16 = VRING_DESC_F_WRITE as u16;
const HDR: u64 = 0x1_0000;
const STATUS: u64 = 0x1_1000;
const TABLE: u64 = 0x1_2000;
/// The used ring, away from where MockSplitQueue puts it: the mock sizes the avail ring in
/// entries rather than bytes, so its used ring overlaps the avail ring's used_event field.
const USED: u64 = 0x1_3000;
const DATA: u64 = 0x2_0000;
/// The boundary between the two guest memory regions.
const REGION_SPLIT: u64 = 0x8_0000;
/// An address in no region.
const HOLE: u64 = 0x20_0000;
use super::request::{STATUS_IOERR as IOERR, STATUS_OK as OK, STATUS_UNSUPP as UNSUPP};
const UNTOUCHED: u8 = 0xee;

/// A sparse image in the temp directory, removed on drop.
pub(super) struct TempDisk {
    pub path: PathBuf,
}

impl TempDisk {
    pub fn new(bytes: u64) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "ringvisor-blk-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        File::create(&path).unwrap().set_len(bytes).unwrap();
        Self { path }
    }

    pub fn filled(bytes: usize, byte: u8) -> Self {
        let disk = Self::new(0);
        fs::write(&disk.path, vec![byte; bytes]).unwrap();
        disk
    }

    pub fn contents(&self) -> Vec<u8> {
        fs::read(&self.path).unwrap()
    }

    pub fn config(&self) -> BlockConfig {
        BlockConfig {
            path: self.path.clone(),
            read_only: false,
            direct: false,
            queues: 1,
            serial: None,
        }
    }
}

impl Drop for TempDisk {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// Two adjacent regions, so a buffer can straddle them.
pub(super) fn guest_memory() -> GuestMemory {
    GuestMemory::from_ranges(&[
        (GuestAddress(0), REGION_SPLIT as usize),
        (GuestAddress(REGION_SPLIT), REGION_SPLIT as usize),
    ])
    .unwrap()
}

use crate::virtio::test_util::execute;

/// The driver side of one queue plus its worker.
struct Harness<'a> {
    mem: &'a GuestMemory,
    vq: MockSplitQueue<'a, GuestMemory>,
    worker: BlockQueueWorker,
    next_desc: u16,
    avail: u16,
    used: u16,
}

impl<'a> Harness<'a> {
    fn new(mem: &'a GuestMemory, device: &BlockDevice, event_idx: bool) -> Self {
        let vq = MockSplitQueue::new(mem, QSIZE);
        let mut queue: Queue = vq.create_queue().unwrap();
        queue.set_used_ring_address(Some(USED as u32), Some(0));
        queue.set_event_idx(event_idx);
        let worker = BlockQueueWorker::new(
            0,
            queue,
            mem.clone(),
            Arc::clone(&device.file),
            device.disk.clone(),
        );
        Self {
            mem,
            vq,
            worker,
            next_desc: 0,
            avail: 0,
            used: 0,
        }
    }

    fn store(&self, index: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let desc = Descriptor::new(addr, len, flags, next);
        self.vq
            .desc_table()
            .store(index, RawDescriptor::from(desc))
            .unwrap();
    }

    /// Publishes a chain of (addr, len, flags) linked in order; returns its head.
    fn add(&mut self, descs: &[(u64, u32, u16)]) -> u16 {
        let n = descs.len() as u16;
        if self.next_desc + n > QSIZE {
            self.next_desc = 0;
        }
        let head = self.next_desc;
        for (i, &(addr, len, flags)) in descs.iter().enumerate() {
            let index = head + i as u16;
            if i as u16 + 1 == n {
                self.store(index, addr, len, flags, 0);
            } else {
                self.store(
                    index,
                    addr,
                    len,
                    flags | VRING_DESC_F_NEXT as u16,
                    index + 1,
                );
            }
        }
        self.next_desc += n;
        self.publish(head);
        head
    }

    fn publish(&mut self, head: u16) {
        let slot = usize::from(self.avail % QSIZE);
        self.vq.avail().ring().ref_at(slot).unwrap().store(head);
        self.avail = self.avail.wrapping_add(1);
        self.vq.avail().idx().store(self.avail);
    }

    /// Drains the queue and completes every op; returns the number of chains popped.
    fn run(&mut self) -> usize {
        let mut batch = IoBatch::new();
        let popped = self.worker.drain(&mut batch).unwrap();
        let ops: Vec<_> = batch.drain().collect();
        for (tag, op) in ops {
            let result = execute(op);
            self.worker
                .complete(tag, result, &mut IoBatch::new())
                .unwrap();
        }
        assert_eq!(self.worker.in_flight(), 0);
        popped
    }

    /// The next used entry: (head, len).
    fn next_used(&mut self) -> (u32, u32) {
        let idx: u16 = self.mem.read_obj(GuestAddress(USED + 2)).unwrap();
        assert_eq!(idx, self.used.wrapping_add(1));
        let elem = USED + 4 + 8 * u64::from(self.used % QSIZE);
        let id: u32 = self.mem.read_obj(GuestAddress(elem)).unwrap();
        let len: u32 = self.mem.read_obj(GuestAddress(elem + 4)).unwrap();
        self.used = self.used.wrapping_add(1);
        (id, len)
    }

    /// Runs one published chain; returns (status byte, used len).
    fn complete_one(&mut self, head: u16) -> (u8, u32) {
        assert_eq!(self.run(), 1);
        let (id, len) = self.next_used();
        assert_eq!(id, u32::from(head));
        (self.mem.read_obj::<u8>(GuestAddress(STATUS)).unwrap(), len)
    }

    /// Writes a header at HDR, resets the status byte, publishes header + `data` + status.
    fn request(&mut self, kind: u32, sector: u64, data: &[(u64, u32, u16)]) -> (u8, u32) {
        write_header(self.mem, HDR, kind, sector);
        let mut chain = vec![(HDR, 16, R)];
        chain.extend_from_slice(data);
        chain.push((STATUS, 1, W));
        self.raw_request(&chain)
    }

    fn raw_request(&mut self, chain: &[(u64, u32, u16)]) -> (u8, u32) {
        self.mem.write_obj(UNTOUCHED, GuestAddress(STATUS)).unwrap();
        let head = self.add(chain);
        self.complete_one(head)
    }

    fn stats(&self) -> BlockQueueStats {
        self.worker.stats()
    }
}

fn write_header(mem: &GuestMemory, addr: u64, kind: u32, sector: u64) {
    let mut h = [0u8; 16];
    h[..4].copy_from_slice(&kind.to_le_bytes());
    h[8..].copy_from_slice(&sector.to_le_bytes());
    mem.write_slice(&h, GuestAddress(addr)).unwrap();
}

/// A discard/write-zeroes segment right after the header.
fn write_segment(mem: &GuestMemory, addr: u64, sector: u64, count: u32, flags: u32) {
    let mut s = [0u8; 16];
    s[..8].copy_from_slice(&sector.to_le_bytes());
    s[8..12].copy_from_slice(&count.to_le_bytes());
    s[12..].copy_from_slice(&flags.to_le_bytes());
    mem.write_slice(&s, GuestAddress(addr)).unwrap();
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(7) ^ seed).collect()
}

fn read_mem(mem: &GuestMemory, addr: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    mem.read_slice(&mut buf, GuestAddress(addr)).unwrap();
    buf
}

fn open(disk: &TempDisk, read_only: bool) -> BlockDevice {
    BlockDevice::new(BlockConfig {
        read_only,
        ..disk.config()
    })
    .unwrap()
}
