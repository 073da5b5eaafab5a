//! INQUIRY data (SPC-4 6.6) and the vital product data pages (SPC-4 7.8, SBC-3 6.6).

use super::lun::{
    LogicalUnit, MAX_TRANSFER_BLOCKS, MAX_UNMAP_BLOCKS, MAX_UNMAP_DESCRIPTORS,
    MAX_WRITE_SAME_BLOCKS, PHYSICAL_EXPONENT,
};
use super::sense::Sense;

pub const VENDOR: &[u8; 8] = b"RINGVSR ";
pub const PRODUCT: &[u8; 16] = b"VIRTUAL DISK    ";
pub const REVISION: &[u8; 4] = b"0001";

/// Peripheral device type of a direct-access block device.
const TYPE_DISK: u8 = 0x00;
/// Peripheral qualifier 011b with type 1Fh: no logical unit at this address.
const NO_LUN: u8 = 0x7f;

/// VPD pages, in the order page 0x00 lists them.
const VPD_PAGES: [u8; 6] = [0x00, 0x80, 0x83, 0xb0, 0xb1, 0xb2];

fn standard(peripheral: u8) -> Vec<u8> {
    let mut d = vec![0u8; 74];
    d[0] = peripheral;
    d[2] = 0x06; // SPC-4
    d[3] = 0x12; // HISUP, response data format 2
    d[4] = (d.len() - 5) as u8;
    d[7] = 0x02; // CMDQUE
    d[8..16].copy_from_slice(VENDOR);
    d[16..32].copy_from_slice(PRODUCT);
    d[32..36].copy_from_slice(REVISION);
    // Version descriptors: SAM-5, SPC-4, SBC-3.
    for (i, v) in [0x00a0u16, 0x0460, 0x04c0].iter().enumerate() {
        d[58 + 2 * i..60 + 2 * i].copy_from_slice(&v.to_be_bytes());
    }
    d
}

/// Standard INQUIRY data for an address with no logical unit behind it on a target that
/// exists (the initiator then asks REPORT LUNS).
pub fn absent() -> Vec<u8> {
    standard(NO_LUN)
}

/// INQUIRY for a present unit: standard data, or the VPD page `page` when `evpd`.
pub fn inquiry(lu: &LogicalUnit, evpd: bool, page: u8) -> Result<Vec<u8>, Sense> {
    if !evpd {
        return Ok(standard(TYPE_DISK));
    }
    let body = match page {
        0x00 => VPD_PAGES.to_vec(),
        0x80 => lu.serial.as_bytes().to_vec(),
        0x83 => identification(lu),
        0xb0 => block_limits(),
        0xb1 => characteristics(),
        0xb2 => provisioning(lu),
        _ => return Err(Sense::invalid_cdb(2, None)),
    };
    let mut d = vec![TYPE_DISK, page];
    d.extend_from_slice(&(body.len() as u16).to_be_bytes());
    d.extend_from_slice(&body);
    Ok(d)
}

/// Device identification: an NAA locally-assigned designator and a T10 vendor ID one, both
/// of the unit. Linux builds its `wwid` from the T10 one (it skips locally assigned NAA,
/// and the other NAA formats need an IEEE OUI).
fn identification(lu: &LogicalUnit) -> Vec<u8> {
    let mut d = Vec::new();
    // Binary code set, association LU, type NAA, 8 bytes.
    d.extend_from_slice(&[0x01, 0x03, 0x00, 0x08]);
    d.extend_from_slice(&lu.naa.to_be_bytes());
    // ASCII code set, association LU, type T10 vendor ID.
    let mut t10 = VENDOR.to_vec();
    t10.extend_from_slice(lu.serial.as_bytes());
    d.extend_from_slice(&[0x02, 0x01, 0x00, t10.len().min(255) as u8]);
    t10.truncate(255);
    d.extend_from_slice(&t10);
    d
}

/// Block limits (page length 0x3c).
fn block_limits() -> Vec<u8> {
    let mut d = vec![0u8; 0x3c];
    let mut put = |at: usize, bytes: &[u8]| d[at - 4..at - 4 + bytes.len()].copy_from_slice(bytes);
    put(4, &[0x01]); // WSNZ: a WRITE SAME of zero blocks is refused
    put(6, &(1u16 << PHYSICAL_EXPONENT).to_be_bytes()); // optimal granularity
    put(8, &MAX_TRANSFER_BLOCKS.to_be_bytes());
    put(12, &MAX_TRANSFER_BLOCKS.to_be_bytes());
    put(20, &MAX_UNMAP_BLOCKS.to_be_bytes());
    put(24, &MAX_UNMAP_DESCRIPTORS.to_be_bytes());
    put(28, &(1u32 << PHYSICAL_EXPONENT).to_be_bytes()); // optimal unmap granularity
    put(32, &0x8000_0000u32.to_be_bytes()); // UGAVALID, alignment 0
    put(36, &u64::from(MAX_WRITE_SAME_BLOCKS).to_be_bytes());
    d
}

/// Block device characteristics: non-rotating medium.
fn characteristics() -> Vec<u8> {
    let mut d = vec![0u8; 0x3c];
    d[0..2].copy_from_slice(&1u16.to_be_bytes());
    d
}

/// Logical block provisioning: thin (sparse files), UNMAP and WRITE SAME with UNMAP
/// supported on writable units, unmapped blocks read as zeros (LBPRZ).
fn provisioning(lu: &LogicalUnit) -> Vec<u8> {
    if lu.read_only {
        return vec![0, 0, 0, 0];
    }
    vec![0, 0xe0 | 0x04, 0x02, 0]
}
