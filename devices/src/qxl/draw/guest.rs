//! Reading guest structures: fixed-size records copied out whole, and QXLDataChunk chains
//! gathered under hard bounds so that a hostile chain costs little.

use std::collections::HashSet;

use super::layout::{CHUNK_DATA_SIZE, CHUNK_HEADER_SIZE, CHUNK_NEXT, RECT_BOTTOM};
use super::layout::{RECT_LEFT, RECT_RIGHT, RECT_TOP};
use super::{DrawError, QxlReader, Rect};

/// Chunks one chain may visit: far above what a driver splits an object into, low enough
/// that walking a hostile chain stays cheap.
pub const MAX_CHUNKS: usize = 4096;
/// Bytes a chain may hold beyond what its object needs (drivers may round allocations up).
/// The excess is never copied; the bound only stops a chain from claiming gigabytes.
pub const CHUNK_SLACK: u64 = 64 << 10;
/// Clip rectangles one drawable may carry: DRM passes at most 256 dirty rectangles, and
/// the clip region is built in time quadratic in this count.
pub const MAX_CLIP_RECTS: u32 = 1024;

/// `addr + offset`, an out-of-range error when it wraps.
pub fn offset(addr: u64, offset: u64) -> Result<u64, DrawError> {
    addr.checked_add(offset)
        .ok_or(DrawError::OutOfRange { addr, len: offset })
}

/// A vector of `len` zero bytes, or an error instead of an abort when memory is short.
pub fn zeroed<T: Clone + Default>(len: usize) -> Result<Vec<T>, DrawError> {
    let mut v = Vec::new();
    v.try_reserve_exact(len).map_err(|_| {
        DrawError::OutOfMemory((len as u64).saturating_mul(std::mem::size_of::<T>() as u64))
    })?;
    v.resize(len, T::default());
    Ok(v)
}

/// A packed structure copied out of guest memory. Accessors read little-endian fields by
/// byte offset; an offset past the copy reads as zero rather than panicking (offsets come
/// from `layout`, so that only happens on a programming error).
pub struct Fields(Vec<u8>);

impl Fields {
    pub fn read(reader: &dyn QxlReader, addr: u64, len: usize) -> Result<Self, DrawError> {
        let mut buf = vec![0u8; len];
        reader.read(addr, &mut buf)?;
        Ok(Self(buf))
    }

    pub fn from_vec(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    /// The fields from `at` on, as a record of their own (a union member).
    pub fn sub(&self, at: usize) -> Fields {
        Fields(self.0.get(at..).unwrap_or(&[]).to_vec())
    }

    fn array<const N: usize>(&self, at: usize) -> [u8; N] {
        at.checked_add(N)
            .and_then(|end| self.0.get(at..end))
            .and_then(|bytes| bytes.try_into().ok())
            .unwrap_or([0; N])
    }

    pub fn u8(&self, at: usize) -> u8 {
        self.0.get(at).copied().unwrap_or(0)
    }

    pub fn u16(&self, at: usize) -> u16 {
        u16::from_le_bytes(self.array(at))
    }

    pub fn i16(&self, at: usize) -> i16 {
        i16::from_le_bytes(self.array(at))
    }

    pub fn u32(&self, at: usize) -> u32 {
        u32::from_le_bytes(self.array(at))
    }

    pub fn i32(&self, at: usize) -> i32 {
        i32::from_le_bytes(self.array(at))
    }

    pub fn u64(&self, at: usize) -> u64 {
        u64::from_le_bytes(self.array(at))
    }

    /// A QXLRect (stored top, left, bottom, right).
    pub fn rect(&self, at: usize) -> Rect {
        let field = |off: usize| self.i32(at.saturating_add(off));
        Rect {
            left: field(RECT_LEFT),
            top: field(RECT_TOP),
            right: field(RECT_RIGHT),
            bottom: field(RECT_BOTTOM),
        }
    }
}

/// Gathers the first `need` bytes held by the QXLDataChunk chain starting at `first`.
///
/// The chain must end (a zero `next_chunk`) within [`MAX_CHUNKS`] chunks without visiting a
/// chunk twice, and hold at least `need` and at most `need` + [`CHUNK_SLACK`] bytes in all.
/// Objects may straddle chunk boundaries anywhere. The caller bounds `need`.
pub fn read_chunks(reader: &dyn QxlReader, first: u64, need: u64) -> Result<Vec<u8>, DrawError> {
    let limit = need.saturating_add(CHUNK_SLACK);
    let mut out: Vec<u8> = Vec::new();
    let mut seen = HashSet::new();
    let mut total: u64 = 0;
    let mut addr = first;
    loop {
        if seen.len() >= MAX_CHUNKS {
            return Err(DrawError::TooManyChunks);
        }
        if !seen.insert(addr) {
            return Err(DrawError::ChunkLoop(addr));
        }
        let header = Fields::read(reader, addr, CHUNK_HEADER_SIZE)?;
        let size = u64::from(header.u32(CHUNK_DATA_SIZE as usize));
        total = total.saturating_add(size);
        if total > limit {
            return Err(DrawError::ChunkTooLong { have: total, limit });
        }
        let take = size.min(need.saturating_sub(out.len() as u64));
        read_into(
            reader,
            offset(addr, CHUNK_HEADER_SIZE as u64)?,
            take,
            &mut out,
        )?;
        let next = header.u64(CHUNK_NEXT as usize);
        if next == 0 {
            break;
        }
        addr = next;
    }
    if (out.len() as u64) < need {
        return Err(DrawError::ChunkTooShort {
            have: out.len() as u64,
            need,
        });
    }
    Ok(out)
}

/// Reads `need` contiguous bytes at `addr` (a QXL_BITMAP_DIRECT bitmap).
pub fn read_direct(reader: &dyn QxlReader, addr: u64, need: u64) -> Result<Vec<u8>, DrawError> {
    let mut out = Vec::new();
    read_into(reader, addr, need, &mut out)?;
    Ok(out)
}

/// Appends `len` bytes read at `addr` to `out`, a piece at a time: memory grows only as
/// the guest's bytes turn out to exist, so a bogus length fails before it costs much.
fn read_into(
    reader: &dyn QxlReader,
    addr: u64,
    len: u64,
    out: &mut Vec<u8>,
) -> Result<(), DrawError> {
    const PIECE: u64 = 1 << 20;
    let mut done = 0;
    while done < len {
        let piece = (len - done).min(PIECE);
        let start = out.len();
        // `piece` is at most PIECE, so it fits in usize.
        let end = start
            .checked_add(piece as usize)
            .ok_or(DrawError::OutOfMemory(len))?;
        out.try_reserve(piece as usize)
            .map_err(|_| DrawError::OutOfMemory(len))?;
        out.resize(end, 0);
        if let Some(dst) = out.get_mut(start..) {
            reader.read(offset(addr, done)?, dst)?;
        }
        done += piece;
    }
    Ok(())
}
