//! virtio-scsi tests: a mock driver over guest memory, real temporary images, and ops
//! executed synchronously in place of the reactor.

use std::sync::Arc;

use ringvisor_io::{IoBatch, QueueWorker};
use virtio_bindings::virtio_ring::VRING_DESC_F_WRITE;
use vm_memory::{Bytes, GuestAddress};

use super::protocol::{response, DEFAULT_CDB_SIZE, DEFAULT_SENSE_SIZE};
use super::request::Geometry;
use super::{ScsiConfig, ScsiDevice, ScsiDiskConfig, ScsiRequestWorker};
use crate::virtio::test_util::{execute, MockDriver, TempDisk};
use crate::virtio::GuestMemory;

mod commands;
mod control;
mod device;
mod errors;

const QSIZE: u16 = 16;
const R: u16 = 0;
const W: u16 = VRING_DESC_F_WRITE as u16;
const REQ: u64 = 0x1_0000;
const RESP: u64 = 0x1_1000;
const USED: u64 = 0x1_3000;
const DATA_OUT: u64 = 0x2_0000;
const DATA_IN: u64 = 0x4_0000;
const GEOMETRY: Geometry = Geometry {
    cdb_size: DEFAULT_CDB_SIZE,
    sense_size: DEFAULT_SENSE_SIZE,
};
const REQ_LEN: u32 = 19 + DEFAULT_CDB_SIZE;
const RESP_LEN: u32 = 12 + DEFAULT_SENSE_SIZE;

fn guest_memory() -> GuestMemory {
    GuestMemory::from_ranges(&[(GuestAddress(0), 0x10_0000)]).unwrap()
}

/// `lun` field for target `t`, LUN `l` the way Linux writes it.
fn lun(t: u8, l: u16) -> [u8; 8] {
    [1, t, 0x40 | (l >> 8) as u8, l as u8, 0, 0, 0, 0]
}

/// Disks: (target, lun, blocks, read_only).
fn device(disks: &[(u16, u32, u64, bool)]) -> (ScsiDevice, Vec<TempDisk>) {
    let files: Vec<TempDisk> = disks.iter().map(|d| TempDisk::new(d.2 * 512)).collect();
    let config = ScsiConfig {
        queues: 1,
        disks: disks
            .iter()
            .zip(&files)
            .map(|(d, f)| ScsiDiskConfig {
                path: f.path.clone(),
                target: Some(d.0),
                lun: Some(d.1),
                read_only: d.3,
                direct: false,
                serial: None,
            })
            .collect(),
    };
    (ScsiDevice::new(config).unwrap(), files)
}

/// What came back for one command.
#[derive(Debug)]
struct Answer {
    used_len: u32,
    response: u8,
    status: u8,
    sense: Vec<u8>,
    residual: u32,
    data: Vec<u8>,
}

struct Harness<'a> {
    driver: MockDriver<'a>,
    worker: ScsiRequestWorker,
}

impl<'a> Harness<'a> {
    fn new(mem: &'a GuestMemory, device: &ScsiDevice) -> Self {
        let (driver, queue) = MockDriver::new(mem, QSIZE, USED, false);
        let worker =
            ScsiRequestWorker::new(2, queue, mem.clone(), Arc::clone(&device.luns), GEOMETRY);
        Self { driver, worker }
    }

    /// Drains, then runs every op (and every op a completion asks for) to the end.
    fn run(&mut self) -> usize {
        let mut batch = IoBatch::new();
        let popped = self.worker.drain(&mut batch).unwrap();
        let mut ops: Vec<_> = batch.drain().collect();
        while let Some((tag, op)) = ops.pop() {
            let mut more = IoBatch::new();
            self.worker.complete(tag, execute(op), &mut more).unwrap();
            ops.extend(more.drain());
        }
        assert_eq!(self.worker.in_flight(), 0);
        popped
    }

    /// Sends `cdb` to `lun` with `data_out`, `data_in` bytes of room; runs it.
    fn command(&mut self, lun: [u8; 8], cdb: &[u8], data_out: &[u8], data_in: u32) -> Answer {
        let mut req = vec![0u8; REQ_LEN as usize];
        req[..8].copy_from_slice(&lun);
        req[19..19 + cdb.len()].copy_from_slice(cdb);
        let mut chain = vec![(REQ, REQ_LEN, R)];
        if !data_out.is_empty() {
            self.driver
                .mem
                .write_slice(data_out, GuestAddress(DATA_OUT))
                .unwrap();
            chain.push((DATA_OUT, data_out.len() as u32, R));
        }
        chain.push((RESP, RESP_LEN, W));
        if data_in > 0 {
            chain.push((DATA_IN, data_in, W));
        }
        self.driver
            .mem
            .write_slice(&req, GuestAddress(REQ))
            .unwrap();
        self.raw(&chain, data_in)
    }

    /// Publishes `chain` (the request already in memory) and runs it.
    fn raw(&mut self, chain: &[(u64, u32, u16)], data_in: u32) -> Answer {
        let mem = self.driver.mem;
        mem.write_slice(&[0xee; RESP_LEN as usize], GuestAddress(RESP))
            .unwrap();
        mem.write_slice(&vec![0xee; data_in as usize], GuestAddress(DATA_IN))
            .unwrap();
        let head = self.driver.add(chain);
        assert_eq!(self.run(), 1);
        let (id, used_len) = self.driver.next_used();
        assert_eq!(id, u32::from(head));
        let mut resp = [0u8; RESP_LEN as usize];
        mem.read_slice(&mut resp, GuestAddress(RESP)).unwrap();
        let sense_len = u32::from_le_bytes(resp[0..4].try_into().unwrap()) as usize;
        let residual = u32::from_le_bytes(resp[4..8].try_into().unwrap());
        let written = used_len.saturating_sub(RESP_LEN) as usize;
        let mut data = vec![0u8; written];
        mem.read_slice(&mut data, GuestAddress(DATA_IN)).unwrap();
        Answer {
            used_len,
            response: resp[11],
            status: resp[10],
            sense: resp[12..12 + sense_len.min(96)].to_vec(),
            residual,
            data,
        }
    }
}

/// Fixed-format sense data with no field pointer.
fn sense(key: u8, asc: u8, ascq: u8) -> Vec<u8> {
    vec![
        0x70, 0, key, 0, 0, 0, 0, 10, 0, 0, 0, 0, asc, ascq, 0, 0, 0, 0,
    ]
}

/// INVALID FIELD IN CDB pointing at `byte` (bit `bit`).
fn invalid_cdb(byte: u16, bit: Option<u8>) -> Vec<u8> {
    let mut s = sense(5, 0x24, 0);
    s[15] = 0xc0 | bit.map_or(0, |b| 0x08 | b);
    s[16..18].copy_from_slice(&byte.to_be_bytes());
    s
}

fn cdb10(op: u8, lba: u32, blocks: u16) -> Vec<u8> {
    let mut c = vec![op, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    c[2..6].copy_from_slice(&lba.to_be_bytes());
    c[7..9].copy_from_slice(&blocks.to_be_bytes());
    c
}

fn cdb16(op: u8, lba: u64, blocks: u32) -> Vec<u8> {
    let mut c = vec![0u8; 16];
    c[0] = op;
    c[2..10].copy_from_slice(&lba.to_be_bytes());
    c[10..14].copy_from_slice(&blocks.to_be_bytes());
    c
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(13) ^ seed)
        .collect()
}

const GOOD: u8 = 0;
const CHECK: u8 = 2;
