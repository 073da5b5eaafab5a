//! Balloon tests: a mock driver (virtio-queue's MockSplitQueue) over real anonymous guest
//! memory, so a released page really reads back as zeros.

use std::sync::Arc;
use std::time::Duration;

use ringvisor_io::{IoBatch, IoOp, QueueWorker};
use virtio_bindings::virtio_ring::VRING_DESC_F_WRITE;
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};

use super::discard::{Discarder, ReleaseHook};
use super::{BalloonConfig, BalloonDevice, BalloonPageWorker, BalloonStatsWorker, QueueRole};
use crate::virtio::test_util::{execute, MockDriver};
use crate::virtio::GuestMemory;

mod device;
mod pages;
mod stats;

const QSIZE: u16 = 16;
const R: u16 = 0;
const W: u16 = VRING_DESC_F_WRITE as u16;
const PAGE: u64 = 4096;
/// The used ring, away from where MockSplitQueue puts it (see MockDriver::new).
const USED: u64 = 0x3000;
/// Where the driver writes its PFN arrays and statistics.
const PFNS: u64 = 0x1_0000;
const STATS: u64 = 0x1_1000;
/// Regions A and B are adjacent; C follows a hole.
const REGION_B: u64 = 0x8_0000;
const HOLE: u64 = 0x10_0000;
const REGION_C: u64 = 0x20_0000;
const REGION_C_END: u64 = 0x24_0000;
/// Protected: two whole pages, and part of one page (so all of it).
const PROTECTED: u64 = 0x7_0000;
const PARTLY_PROTECTED: u64 = 0x6_0000;
const FILL: u8 = 0xab;

fn guest_memory() -> GuestMemory {
    GuestMemory::from_ranges(&[
        (GuestAddress(0), REGION_B as usize),
        (GuestAddress(REGION_B), (HOLE - REGION_B) as usize),
        (GuestAddress(REGION_C), (REGION_C_END - REGION_C) as usize),
    ])
    .unwrap()
}

fn config() -> BalloonConfig {
    BalloonConfig {
        initial_target_bytes: 0,
        deflate_on_oom: false,
        free_page_reporting: true,
        stats_interval: Duration::from_millis(1),
        protected: vec![
            (PROTECTED, PROTECTED + 2 * PAGE),
            (PARTLY_PROTECTED + 0x100, PARTLY_PROTECTED + 0x200),
        ],
    }
}

fn device() -> BalloonDevice {
    BalloonDevice::new(config()).unwrap()
}

/// A driver and the worker of one memory queue, built the way activation builds them.
fn page_worker<'a>(
    mem: &'a GuestMemory,
    dev: &BalloonDevice,
    role: QueueRole,
) -> (MockDriver<'a>, BalloonPageWorker) {
    let (driver, queue) = MockDriver::new(mem, QSIZE, USED, false);
    let discarder = Discarder::new(mem.clone(), Arc::clone(&dev.protected), None);
    let worker = BalloonPageWorker::new(0, role, queue, discarder, Arc::clone(&dev.shared));
    (driver, worker)
}

fn stats_worker<'a>(
    mem: &'a GuestMemory,
    dev: &BalloonDevice,
) -> (MockDriver<'a>, BalloonStatsWorker) {
    let (driver, queue) = MockDriver::new(mem, QSIZE, USED, false);
    let worker = BalloonStatsWorker::new(
        0,
        queue,
        mem.clone(),
        Arc::clone(&dev.shared),
        dev.stats_interval_nanos,
    );
    (driver, worker)
}

/// Drains `worker`: returns the chains popped, those completed on the spot and the ops.
fn drain(worker: &mut dyn QueueWorker) -> (usize, usize, Vec<(u64, IoOp)>) {
    let mut batch = IoBatch::new();
    let popped = worker.drain(&mut batch).unwrap();
    let completed = batch.take_completed();
    (popped, completed, batch.drain().collect())
}

fn fill(mem: &GuestMemory, addr: u64, len: u64, byte: u8) {
    mem.write_slice(&vec![byte; len as usize], GuestAddress(addr))
        .unwrap();
}

/// Whether every byte of `[addr, addr + len)` is `byte`.
fn all(mem: &GuestMemory, addr: u64, len: u64, byte: u8) -> bool {
    let mut buf = vec![0u8; len as usize];
    mem.read_slice(&mut buf, GuestAddress(addr)).unwrap();
    buf.iter().all(|&b| b == byte)
}

fn write_pfns(mem: &GuestMemory, pfns: &[u32]) -> u32 {
    let bytes: Vec<u8> = pfns.iter().flat_map(|p| p.to_le_bytes()).collect();
    mem.write_slice(&bytes, GuestAddress(PFNS)).unwrap();
    bytes.len() as u32
}
