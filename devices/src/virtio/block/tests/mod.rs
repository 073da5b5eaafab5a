//! Request-level tests: a mock driver (virtio-queue's MockSplitQueue) over guest memory, a
//! real temporary image, and ops executed synchronously in place of the reactor.

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

impl TempDisk {
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

/// Two adjacent regions, so a buffer can straddle them.
pub(super) fn guest_memory() -> GuestMemory {
    GuestMemory::from_ranges(&[
        (GuestAddress(0), REGION_SPLIT as usize),
        (GuestAddress(REGION_SPLIT), REGION_SPLIT as usize),
    ])
    .unwrap()
}

use crate::virtio::test_util::{execute, MockDriver, TempDisk};

/// The driver side of one queue plus its worker.
struct Harness<'a> {
    driver: MockDriver<'a>,
    worker: BlockQueueWorker,
}

impl<'a> std::ops::Deref for Harness<'a> {
    type Target = MockDriver<'a>;
    fn deref(&self) -> &Self::Target {
        &self.driver
    }
}

impl std::ops::DerefMut for Harness<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.driver
    }
}

impl<'a> Harness<'a> {
    fn new(mem: &'a GuestMemory, device: &BlockDevice, event_idx: bool) -> Self {
        let (driver, queue) = MockDriver::new(mem, QSIZE, USED, event_idx);
        let worker = BlockQueueWorker::new(
            0,
            queue,
            mem.clone(),
            Arc::clone(&device.file),
            device.disk.clone(),
        );
        Self { driver, worker }
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
