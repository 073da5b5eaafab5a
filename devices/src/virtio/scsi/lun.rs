//! One logical unit: the backing file and the facts the SCSI target reports about it.

use std::fs::File;
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use super::protocol::LunAddress;

/// Logical block size exposed to the guest.
pub const BLOCK_SIZE: u32 = 512;
pub const BLOCK_SHIFT: u32 = 9;
/// Logical blocks per physical block, as a power of two: 4 KiB, the page and the usual
/// filesystem block, so the guest aligns its I/O to it.
pub const PHYSICAL_EXPONENT: u8 = 3;
/// Largest READ/WRITE transfer (MAXIMUM TRANSFER LENGTH, and config max_sectors).
pub const MAX_TRANSFER_BLOCKS: u32 = 0xffff;
/// Largest UNMAP: descriptors per command, blocks per command.
pub const MAX_UNMAP_DESCRIPTORS: u32 = 64;
pub const MAX_UNMAP_BLOCKS: u32 = 1 << 22;
/// Largest WRITE SAME (blocks); a non-zero pattern is written in ops of
/// [`WRITE_SAME_BLOCKS_PER_OP`] blocks.
pub const MAX_WRITE_SAME_BLOCKS: u32 = 1 << 16;
pub const WRITE_SAME_BLOCKS_PER_OP: u32 = 1024;
/// Largest VERIFY with BYTCHK (its data is compared through a host buffer).
pub const MAX_VERIFY_BLOCKS: u32 = 2048;

/// A logical unit's backing and identity.
#[derive(Debug)]
pub struct LogicalUnit {
    pub address: LunAddress,
    path: PathBuf,
    // Keeps `fd` open while any op of this unit may be in flight.
    file: File,
    /// Exposed size in logical blocks.
    pub blocks: u64,
    pub read_only: bool,
    /// Opened O_DIRECT: buffers must be 512-byte aligned.
    pub direct: bool,
    /// VPD 0x80 unit serial number (ASCII).
    pub serial: String,
    /// NAA locally-assigned designator (VPD 0x83), derived from the serial.
    pub naa: u64,
    /// Requests of this unit whose host I/O has not completed, on every request queue:
    /// task management waits for it to reach zero.
    in_flight: AtomicU32,
}

impl LogicalUnit {
    pub fn new(
        address: LunAddress,
        path: &Path,
        file: File,
        bytes: u64,
        read_only: bool,
        direct: bool,
        serial: String,
    ) -> Self {
        let naa = naa_locally_assigned(&serial);
        Self {
            address,
            path: path.to_owned(),
            file,
            blocks: bytes >> BLOCK_SHIFT,
            read_only,
            direct,
            serial,
            naa,
            in_flight: AtomicU32::new(0),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    /// Byte offset of `blocks` blocks at `lba`, or LBA OUT OF RANGE.
    pub fn range(&self, lba: u64, blocks: u64) -> Option<u64> {
        let end = lba.checked_add(blocks)?;
        (end <= self.blocks).then_some(lba << BLOCK_SHIFT)
    }

    pub fn start_io(&self) {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
    }

    /// Called after the request's used entry is written.
    pub fn end_io(&self) {
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }

    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Acquire)
    }
}

/// An NAA type 3 ("locally assigned", SPC-4 7.8.6.6.2) designator: 60 bits of FNV-1a
/// over the serial, so the same serial gives the same WWN on every boot.
fn naa_locally_assigned(serial: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in serial.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (3 << 60) | (hash & ((1 << 60) - 1))
}
