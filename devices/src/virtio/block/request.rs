//! Turning one virtio-blk descriptor chain into the host I/O it asks for (virtio 1.2,
//! section 5.2.6). Every value read here comes from the guest, so nothing in this module
//! may panic on it.

use std::os::fd::RawFd;

use ringvisor_io::IoOp;
use virtio_bindings::virtio_blk::{
    VIRTIO_BLK_ID_BYTES, VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_OK, VIRTIO_BLK_S_UNSUPP,
    VIRTIO_BLK_T_DISCARD, VIRTIO_BLK_T_FLUSH, VIRTIO_BLK_T_GET_ID, VIRTIO_BLK_T_IN,
    VIRTIO_BLK_T_OUT, VIRTIO_BLK_T_WRITE_ZEROES, VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP,
};
use vm_memory::GuestAddress;

use super::{MAX_DISCARD_SECTORS, MAX_WRITE_ZEROES_SECTORS, SECTOR_SHIFT};
use crate::nvme::{command as nvme, Namespace};
use crate::virtio::chain::{iovecs, read_stream, write_stream, ChainError, ChainLayout};
use crate::virtio::GuestMemory;

/// `struct virtio_blk_outhdr`: type, reserved (ioprio), sector.
const HEADER_LEN: u64 = 16;
/// `struct virtio_blk_discard_write_zeroes`: sector, num_sectors, flags.
const DISCARD_SEGMENT_LEN: u64 = 16;

/// The most one Linux read/write moves (MAX_RW_COUNT); a longer request would come back
/// short, so it is refused up front. Linux guests stay far below (SEG_MAX * SIZE_MAX).
const MAX_TRANSFER: u64 = 0x7fff_f000;

pub(super) const STATUS_OK: u8 = VIRTIO_BLK_S_OK as u8;
pub(super) const STATUS_IOERR: u8 = VIRTIO_BLK_S_IOERR as u8;
pub(super) const STATUS_UNSUPP: u8 = VIRTIO_BLK_S_UNSUPP as u8;

/// What the request parser needs to know about the disk behind the queue.
#[derive(Debug, Clone)]
pub(crate) struct Disk {
    pub fd: RawFd,
    /// Exposed size in 512-byte sectors.
    pub capacity: u64,
    pub read_only: bool,
    /// The file was opened with O_DIRECT: buffers must be sector aligned.
    pub direct: bool,
    /// GET_ID answer: the serial, NUL padded.
    pub id: [u8; VIRTIO_BLK_ID_BYTES as usize],
    /// `fd` is an NVMe namespace's generic device: requests become NVMe commands, on
    /// whole logical blocks.
    pub nvme: Option<Namespace>,
}

/// Why a chain or request is refused. Only logged (at debug level) and counted: the guest
/// learns the status byte, nothing more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum RequestError {
    #[error(transparent)]
    Chain(#[from] ChainError),
    #[error("no device-writable byte for the status, or it is not in guest memory")]
    NoStatus,
    #[error("request header shorter than 16 bytes")]
    HeaderTooShort,
    #[error("buffers go the wrong direction for the request type")]
    WrongDirection,
    #[error("data length {0} is not a multiple of 512")]
    UnalignedLength(u64),
    #[error("transfer of {0} bytes is larger than one host read/write")]
    TooLarge(u64),
    #[error("sectors {sector}+{count} are past the end of the disk")]
    OutOfBounds { sector: u64, count: u64 },
    #[error("the disk is read-only")]
    ReadOnly,
    #[error("unsupported request type {0}")]
    UnsupportedType(u32),
    #[error("discard/write-zeroes with {0} bytes of segments")]
    BadSegments(u64),
    #[error("discard/write-zeroes with more than one segment")]
    TooManySegments,
    #[error("discard/write-zeroes flags {0:#x} not supported")]
    UnsupportedFlags(u32),
    #[error("byte range {offset}+{len} is not on whole {block}-byte blocks")]
    UnalignedBlock { offset: u64, len: u64, block: u32 },
}

impl RequestError {
    /// The status a request refused for this reason completes with.
    fn status(self) -> u8 {
        match self {
            Self::UnsupportedType(_) | Self::TooManySegments | Self::UnsupportedFlags(_) => {
                STATUS_UNSUPP
            }
            _ => STATUS_IOERR,
        }
    }
}

/// The request types, for the per-queue counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RequestKind {
    Read,
    Write,
    Flush,
    GetId,
    Discard,
    WriteZeroes,
    /// Refused before its type was known or because of it.
    Other,
}

/// A parsed chain.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// The request needs `op`, and `more` with it (the commands a passthrough request is
    /// split into); once all complete, the status goes to `status` and the used entry
    /// reports `data_len` bytes plus the status byte for reads, just the status byte
    /// otherwise.
    Submit {
        op: IoOp,
        more: Vec<IoOp>,
        kind: RequestKind,
        status: GuestAddress,
        data_len: u32,
    },
    /// The request is finished without host I/O (GET_ID, empty transfers, refusals).
    /// `status: None`: there is nowhere to report; the chain goes back with used length 0.
    Complete {
        kind: RequestKind,
        status: Option<GuestAddress>,
        code: u8,
        used_len: u32,
        error: Option<RequestError>,
    },
}

impl Outcome {
    fn refused(kind: RequestKind, status: Option<GuestAddress>, error: RequestError) -> Self {
        Outcome::Complete {
            kind,
            status,
            code: error.status(),
            used_len: u32::from(status.is_some()),
            error: Some(error),
        }
    }

    fn ok(kind: RequestKind, status: GuestAddress, used_len: u32) -> Self {
        Outcome::Complete {
            kind,
            status: Some(status),
            code: STATUS_OK,
            used_len,
            error: None,
        }
    }
}

/// What a chain whose walk failed turns into: IOERR in its status byte when there is one.
pub(crate) fn malformed(mem: &GuestMemory, layout: &ChainLayout, error: ChainError) -> Outcome {
    Outcome::refused(
        RequestKind::Other,
        layout.last_writable_byte(mem),
        error.into(),
    )
}

/// Parses the request held in `layout` (a chain walked without error).
pub(crate) fn parse(mem: &GuestMemory, layout: &ChainLayout, disk: &Disk) -> Outcome {
    let Some(status) = layout.last_writable_byte(mem) else {
        return Outcome::refused(RequestKind::Other, None, RequestError::NoStatus);
    };
    let refuse = |kind, error| Outcome::refused(kind, Some(status), error);

    let mut header = [0u8; HEADER_LEN as usize];
    if layout.readable_len() < HEADER_LEN {
        return refuse(RequestKind::Other, RequestError::HeaderTooShort);
    }
    if let Err(e) = read_stream(mem, &layout.readable, 0, &mut header) {
        return refuse(RequestKind::Other, e.into());
    }
    let (request_type, sector) = split_header(&header);

    match parse_typed(mem, layout, disk, request_type, sector, status) {
        Ok(outcome) => outcome,
        Err((kind, e)) => refuse(kind, e),
    }
}

fn split_header(header: &[u8; HEADER_LEN as usize]) -> (u32, u64) {
    let [t0, t1, t2, t3, _, _, _, _, s @ ..] = *header;
    (u32::from_le_bytes([t0, t1, t2, t3]), u64::from_le_bytes(s))
}

type Refusal = (RequestKind, RequestError);

fn parse_typed(
    mem: &GuestMemory,
    layout: &ChainLayout,
    disk: &Disk,
    request_type: u32,
    sector: u64,
    status: GuestAddress,
) -> Result<Outcome, Refusal> {
    // The caller found a status byte and a whole header.
    let writable_data = layout.writable_len().saturating_sub(1);
    match request_type {
        VIRTIO_BLK_T_IN => parse_transfer(mem, layout, disk, RequestKind::Read, sector, status),
        VIRTIO_BLK_T_OUT => {
            if disk.read_only {
                return Err((RequestKind::Write, RequestError::ReadOnly));
            }
            parse_transfer(mem, layout, disk, RequestKind::Write, sector, status)
        }
        VIRTIO_BLK_T_FLUSH => {
            // Nothing can be dirty on a read-only disk.
            if disk.read_only {
                return Ok(Outcome::ok(RequestKind::Flush, status, 1));
            }
            let op = match &disk.nvme {
                Some(ns) => nvme::flush(ns, disk.fd),
                None => IoOp::Flush { fd: disk.fd },
            };
            Ok(Outcome::Submit {
                op,
                more: Vec::new(),
                kind: RequestKind::Flush,
                status,
                data_len: 0,
            })
        }
        VIRTIO_BLK_T_GET_ID => {
            let kind = RequestKind::GetId;
            // A buffer shorter than 20 bytes gets the start of the ID.
            let len = writable_data.min(u64::from(VIRTIO_BLK_ID_BYTES));
            let id = disk.id.get(..len as usize).unwrap_or(&disk.id);
            write_stream(mem, &layout.writable, 0, id).map_err(|e| (kind, e.into()))?;
            Ok(Outcome::ok(kind, status, id.len() as u32 + 1))
        }
        VIRTIO_BLK_T_DISCARD | VIRTIO_BLK_T_WRITE_ZEROES => parse_discard(
            mem,
            layout,
            disk,
            request_type == VIRTIO_BLK_T_DISCARD,
            status,
        ),
        other => Err((RequestKind::Other, RequestError::UnsupportedType(other))),
    }
}

/// IN (`kind` Read: data in the writable buffers) or OUT (Write: data in the readable
/// buffers after the header) as one zero-copy op over guest RAM.
fn parse_transfer(
    mem: &GuestMemory,
    layout: &ChainLayout,
    disk: &Disk,
    kind: RequestKind,
    sector: u64,
    status: GuestAddress,
) -> Result<Outcome, Refusal> {
    let fail = |e| (kind, e);
    let writable_data = layout.writable_len().saturating_sub(1);
    let readable_data = layout.readable_len().saturating_sub(HEADER_LEN);
    let reads = kind == RequestKind::Read;
    // The data buffers, where they start, and the bytes in the other direction (must be 0).
    let (segments, skip, data, wrong_way) = if reads {
        (&layout.writable, 0, writable_data, readable_data)
    } else {
        (&layout.readable, HEADER_LEN, readable_data, writable_data)
    };
    if wrong_way != 0 {
        return Err(fail(RequestError::WrongDirection));
    }
    let offset = check_transfer(disk, sector, data).map_err(fail)?;
    let data_len = u32::try_from(data).map_err(|_| fail(RequestError::TooLarge(data)))?;
    if data_len == 0 {
        return Ok(Outcome::ok(kind, status, 1));
    }
    let iovecs = iovecs(mem, segments, skip, data, disk.direct).map_err(|e| fail(e.into()))?;
    let fd = disk.fd;
    let (op, more) = match &disk.nvme {
        Some(ns) => {
            check_blocks(ns, offset, data).map_err(fail)?;
            match first_and_rest(nvme::transfer(ns, fd, !reads, offset, &iovecs)) {
                Some(ops) => ops,
                None => return Ok(Outcome::ok(kind, status, 1)),
            }
        }
        None if reads => (IoOp::Read { fd, offset, iovecs }, Vec::new()),
        None => (IoOp::Write { fd, offset, iovecs }, Vec::new()),
    };
    Ok(Outcome::Submit {
        op,
        more,
        kind,
        status,
        data_len,
    })
}

/// Checks a read/write of `len` bytes at `sector`; returns its byte offset.
fn check_transfer(disk: &Disk, sector: u64, len: u64) -> Result<u64, RequestError> {
    if len & ((1 << SECTOR_SHIFT) - 1) != 0 {
        return Err(RequestError::UnalignedLength(len));
    }
    if len > MAX_TRANSFER {
        return Err(RequestError::TooLarge(len));
    }
    check_range(disk, sector, len >> SECTOR_SHIFT)
}

/// Checks that a passthrough request covers whole logical blocks of its namespace.
fn check_blocks(ns: &Namespace, offset: u64, len: u64) -> Result<(), RequestError> {
    let mask = u64::from(ns.block_size()) - 1;
    if (offset | len) & mask != 0 {
        return Err(RequestError::UnalignedBlock {
            offset,
            len,
            block: ns.block_size(),
        });
    }
    Ok(())
}

/// The first op of a list and the rest; `None` for an empty list.
fn first_and_rest(ops: Vec<IoOp>) -> Option<(IoOp, Vec<IoOp>)> {
    let mut ops = ops.into_iter();
    let first = ops.next()?;
    Some((first, ops.collect()))
}

/// Checks that `count` sectors at `sector` lie on the disk; returns the byte offset.
fn check_range(disk: &Disk, sector: u64, count: u64) -> Result<u64, RequestError> {
    let out_of_bounds = RequestError::OutOfBounds { sector, count };
    let end = sector.checked_add(count).ok_or(out_of_bounds)?;
    if end > disk.capacity {
        return Err(out_of_bounds);
    }
    // capacity came from a byte size, so sector << 9 fits in a u64.
    Ok(sector << SECTOR_SHIFT)
}

fn parse_discard(
    mem: &GuestMemory,
    layout: &ChainLayout,
    disk: &Disk,
    discard: bool,
    status: GuestAddress,
) -> Result<Outcome, Refusal> {
    let kind = if discard {
        RequestKind::Discard
    } else {
        RequestKind::WriteZeroes
    };
    let fail = |e| (kind, e);
    if disk.read_only {
        return Err(fail(RequestError::ReadOnly));
    }
    if layout.writable_len() != 1 {
        return Err(fail(RequestError::WrongDirection));
    }
    let segments_len = layout.readable_len().saturating_sub(HEADER_LEN);
    if segments_len == 0 || segments_len & (DISCARD_SEGMENT_LEN - 1) != 0 {
        return Err(fail(RequestError::BadSegments(segments_len)));
    }
    // max_discard_seg and max_write_zeroes_seg are 1, as in QEMU: fallocate takes one range.
    if segments_len > DISCARD_SEGMENT_LEN {
        return Err(fail(RequestError::TooManySegments));
    }
    let mut raw = [0u8; DISCARD_SEGMENT_LEN as usize];
    read_stream(mem, &layout.readable, HEADER_LEN, &mut raw).map_err(|e| fail(e.into()))?;
    let [s @ .., n0, n1, n2, n3, f0, f1, f2, f3] = raw;
    let sector = u64::from_le_bytes(s);
    let count = u64::from(u32::from_le_bytes([n0, n1, n2, n3]));
    let flags = u32::from_le_bytes([f0, f1, f2, f3]);

    // Spec 5.2.6.2: unknown flags, and UNMAP on a discard, are UNSUPP.
    let unmap = flags & VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP != 0;
    if flags & !VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP != 0 || (discard && unmap) {
        return Err(fail(RequestError::UnsupportedFlags(flags)));
    }
    let max = if discard {
        MAX_DISCARD_SECTORS
    } else {
        MAX_WRITE_ZEROES_SECTORS
    };
    if count > u64::from(max) {
        return Err(fail(RequestError::OutOfBounds { sector, count }));
    }
    let offset = check_range(disk, sector, count).map_err(fail)?;
    if count == 0 {
        return Ok(Outcome::ok(kind, status, 1));
    }
    let len = count << SECTOR_SHIFT;
    if let Some(ns) = &disk.nvme {
        check_blocks(ns, offset, len).map_err(fail)?;
        let (op, more) = if discard {
            (nvme::discard(ns, disk.fd, offset, len), Vec::new())
        } else {
            match first_and_rest(nvme::write_zeroes(ns, disk.fd, offset, len, unmap)) {
                Some(ops) => ops,
                None => return Ok(Outcome::ok(kind, status, 1)),
            }
        };
        return Ok(Outcome::Submit {
            op,
            more,
            kind,
            status,
            data_len: 0,
        });
    }
    // A punched hole reads back as zeros, so it serves write-zeroes with UNMAP too
    // (write_zeroes_may_unmap = 1). KEEP_SIZE: the disk never shrinks or grows.
    let mode = if discard || unmap {
        libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE
    } else {
        libc::FALLOC_FL_ZERO_RANGE | libc::FALLOC_FL_KEEP_SIZE
    };
    Ok(Outcome::Submit {
        op: IoOp::Fallocate {
            fd: disk.fd,
            mode,
            offset,
            len,
        },
        more: Vec::new(),
        kind,
        status,
        data_len: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_fields_are_little_endian() {
        let mut h = [0u8; 16];
        h[0] = 8;
        h[8..].copy_from_slice(&0x0102_0304_0506_0708u64.to_le_bytes());
        assert_eq!(split_header(&h), (8, 0x0102_0304_0506_0708));
    }

    #[test]
    fn range_checks_do_not_overflow() {
        let disk = Disk {
            fd: -1,
            capacity: 8,
            read_only: false,
            direct: false,
            id: [0; 20],
            nvme: None,
        };
        assert_eq!(check_range(&disk, 7, 1), Ok(7 << 9));
        assert!(check_range(&disk, 8, 1).is_err());
        assert!(check_range(&disk, u64::MAX, 2).is_err());
        assert!(check_transfer(&disk, 0, 511).is_err());
        let huge = Disk {
            capacity: u64::MAX >> 9,
            ..disk
        };
        assert_eq!(
            check_transfer(&huge, 0, 1 << 31),
            Err(RequestError::TooLarge(1 << 31))
        );
    }
}
