//! Walking a split-ring descriptor chain and addressing its buffers.
//!
//! The chain is walked by hand rather than with virtio-queue's iterator: that iterator
//! silently stops on a loop, a bad index or an unreadable indirect table, and a request
//! cut short that way would look valid. Every value read here comes from the guest, so
//! nothing in this module may panic on it.

use virtio_queue::desc::{split::Descriptor, RawDescriptor};
use vm_memory::{Address, Bytes, GuestAddress, GuestMemoryBackend};

use crate::virtio::GuestMemory;

/// Bytes in one split-ring descriptor.
const DESCRIPTOR_LEN: u64 = 16;
/// The longest chain accepted: the largest queue any ringvisor device offers. A chain can
/// never legitimately be longer than its queue (spec 2.7.5.2), indirect or not.
pub(crate) const MAX_CHAIN_DESCRIPTORS: usize = 256;
/// Alignment O_DIRECT needs of every buffer address and length (512-byte logical blocks).
const DIRECT_ALIGN: u64 = 512;

/// Why a chain, or a buffer in it, cannot be used. Every value comes from the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ChainError {
    #[error("descriptor index {0} is outside its table")]
    DescriptorIndex(u16),
    #[error("descriptor at {0:#x} is not in guest memory")]
    DescriptorUnreadable(u64),
    #[error("indirect descriptor is not the only head of its chain, or its table is malformed")]
    BadIndirect,
    #[error("chain has more than {MAX_CHAIN_DESCRIPTORS} descriptors or loops")]
    ChainTooLong,
    #[error("device-readable descriptor after a device-writable one")]
    ReadableAfterWritable,
    #[error("a buffer is not in guest memory")]
    BufferOutOfRange,
    #[error("buffer not 512-byte aligned for O_DIRECT")]
    UnalignedDirect,
}

/// One guest-physical buffer of a chain, as the driver gave it (it may wrap around the
/// address space: such a buffer is never in guest memory and fails every access).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Segment {
    pub addr: GuestAddress,
    pub len: u32,
}

/// The descriptors of one chain split by direction, reused from chain to chain so the
/// hot path does not allocate.
#[derive(Debug, Default)]
pub(crate) struct ChainLayout {
    pub readable: Vec<Segment>,
    pub writable: Vec<Segment>,
    readable_len: u64,
    writable_len: u64,
}

impl ChainLayout {
    pub fn with_capacity(descriptors: usize) -> Self {
        Self {
            readable: Vec::with_capacity(descriptors),
            writable: Vec::with_capacity(descriptors),
            readable_len: 0,
            writable_len: 0,
        }
    }

    /// Bytes in the device-readable descriptors.
    pub fn readable_len(&self) -> u64 {
        self.readable_len
    }

    /// Bytes in the device-writable descriptors.
    pub fn writable_len(&self) -> u64 {
        self.writable_len
    }

    fn clear(&mut self) {
        self.readable.clear();
        self.writable.clear();
        self.readable_len = 0;
        self.writable_len = 0;
    }

    fn push(&mut self, segment: Segment, writable: bool) {
        // Sums of at most QUEUE_MAX_SIZE u32 lengths cannot overflow a u64.
        if writable {
            self.writable_len += u64::from(segment.len);
            self.writable.push(segment);
        } else {
            self.readable_len += u64::from(segment.len);
            self.readable.push(segment);
        }
    }

    /// The last byte of the device-writable part, when it is in RAM (virtio-blk's status).
    pub fn last_writable_byte(&self, mem: &GuestMemory) -> Option<GuestAddress> {
        let last = self.writable_len.checked_sub(1)?;
        let addr = pieces(&self.writable, last, 1).next()?.addr;
        mem.address_in_range(addr).then_some(addr)
    }
}

/// Reads the chain starting at descriptor `head` of the table at `table` (`queue_size`
/// entries) into `layout`. On error `layout` keeps what was read before it, so the caller
/// can still find a status byte to report the error in.
pub(crate) fn walk_chain(
    mem: &GuestMemory,
    table: GuestAddress,
    queue_size: u16,
    head: u16,
    layout: &mut ChainLayout,
) -> Result<(), ChainError> {
    layout.clear();
    let mut table = table;
    let mut table_len = queue_size;
    let mut index = head;
    let mut indirect = false;
    let mut seen = 0usize;
    loop {
        if index >= table_len {
            return Err(ChainError::DescriptorIndex(index));
        }
        seen += 1;
        // The length bound also ends any loop.
        if seen > MAX_CHAIN_DESCRIPTORS {
            return Err(ChainError::ChainTooLong);
        }
        let addr = table
            .checked_add(u64::from(index) * DESCRIPTOR_LEN)
            .ok_or(ChainError::DescriptorUnreadable(table.raw_value()))?;
        let desc: Descriptor = mem
            .read_obj::<RawDescriptor>(addr)
            .map_err(|_| ChainError::DescriptorUnreadable(addr.raw_value()))?
            .into();

        if desc.refers_to_indirect_table() {
            // Accepted only as the head of a chain, the one place Linux (and QEMU) use it;
            // spec 2.7.5.3.1 forbids INDIRECT together with NEXT, and nested tables.
            let entries = u64::from(desc.len()) / DESCRIPTOR_LEN;
            if indirect
                || seen != 1
                || desc.has_next()
                || desc.len() == 0
                || u64::from(desc.len()) & (DESCRIPTOR_LEN - 1) != 0
            {
                return Err(ChainError::BadIndirect);
            }
            table_len = u16::try_from(entries).map_err(|_| ChainError::BadIndirect)?;
            table = desc.addr();
            index = 0;
            indirect = true;
            seen = 0;
            continue;
        }

        let writable = desc.is_write_only();
        // Spec 2.7.4.2: every device-writable descriptor comes after the readable ones.
        if !writable && !layout.writable.is_empty() {
            return Err(ChainError::ReadableAfterWritable);
        }
        layout.push(
            Segment {
                addr: desc.addr(),
                len: desc.len(),
            },
            writable,
        );
        if !desc.has_next() {
            return Ok(());
        }
        index = desc.next();
    }
}

/// The parts of `segments`, seen as one byte stream, that cover `[skip, skip + len)`.
/// Yields less than `len` bytes when the stream is shorter.
pub(crate) fn pieces(
    segments: &[Segment],
    skip: u64,
    len: u64,
) -> impl Iterator<Item = Segment> + '_ {
    let mut skip = skip;
    let mut left = len;
    segments.iter().filter_map(move |seg| {
        let seg_len = u64::from(seg.len);
        if left == 0 || seg_len == 0 {
            return None;
        }
        if skip >= seg_len {
            skip -= seg_len;
            return None;
        }
        let take = (seg_len - skip).min(left);
        let start = seg.addr.checked_add(skip);
        skip = 0;
        left -= take;
        // A piece whose start wraps is left out; callers see the length come up short.
        // take <= seg.len, so it fits a u32.
        Some(Segment {
            addr: start?,
            len: u32::try_from(take).ok()?,
        })
    })
}

/// Copies `buf.len()` bytes at `skip` of the stream into `buf`.
pub(crate) fn read_stream(
    mem: &GuestMemory,
    segments: &[Segment],
    skip: u64,
    buf: &mut [u8],
) -> Result<(), ChainError> {
    let mut done = 0usize;
    for piece in pieces(segments, skip, buf.len() as u64) {
        let end = done + piece.len as usize;
        let dst = buf.get_mut(done..end).ok_or(ChainError::BufferOutOfRange)?;
        mem.read_slice(dst, piece.addr)
            .map_err(|_| ChainError::BufferOutOfRange)?;
        done = end;
    }
    if done == buf.len() {
        Ok(())
    } else {
        Err(ChainError::BufferOutOfRange)
    }
}

/// Copies `data` to `skip` of the stream; the stream must be long enough.
pub(crate) fn write_stream(
    mem: &GuestMemory,
    segments: &[Segment],
    skip: u64,
    data: &[u8],
) -> Result<(), ChainError> {
    let mut done = 0usize;
    for piece in pieces(segments, skip, data.len() as u64) {
        let end = done + piece.len as usize;
        let src = data.get(done..end).ok_or(ChainError::BufferOutOfRange)?;
        mem.write_slice(src, piece.addr)
            .map_err(|_| ChainError::BufferOutOfRange)?;
        done = end;
    }
    if done == data.len() {
        Ok(())
    } else {
        Err(ChainError::BufferOutOfRange)
    }
}

/// Host iovecs for `[skip, skip + len)` of the stream, pointing into guest RAM. A buffer
/// that crosses a memory-region boundary becomes one iovec per region.
pub(crate) fn iovecs(
    mem: &GuestMemory,
    segments: &[Segment],
    skip: u64,
    len: u64,
    direct: bool,
) -> Result<Vec<libc::iovec>, ChainError> {
    let mut out = Vec::with_capacity(segments.len());
    let mut total = 0u64;
    for piece in pieces(segments, skip, len) {
        for slice in GuestMemoryBackend::get_slices(mem, piece.addr, piece.len as usize) {
            let slice = slice.map_err(|_| ChainError::BufferOutOfRange)?;
            let base = slice.ptr_guard_mut().as_ptr();
            let slice_len = slice.len();
            if direct && ((base as usize as u64) | slice_len as u64) & (DIRECT_ALIGN - 1) != 0 {
                return Err(ChainError::UnalignedDirect);
            }
            out.push(libc::iovec {
                iov_base: base.cast(),
                iov_len: slice_len,
            });
            total += slice_len as u64;
        }
    }
    if total == len {
        Ok(out)
    } else {
        Err(ChainError::BufferOutOfRange)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use virtio_bindings::virtio_ring::{
        VRING_DESC_F_INDIRECT, VRING_DESC_F_NEXT, VRING_DESC_F_WRITE,
    };

    fn seg(addr: u64, len: u32) -> Segment {
        Segment {
            addr: GuestAddress(addr),
            len,
        }
    }

    #[test]
    fn pieces_split_a_stream() {
        let segs = [seg(0x1000, 10), seg(0x2000, 0), seg(0x3000, 6)];
        let got: Vec<_> = pieces(&segs, 8, 5).collect();
        assert_eq!(got, vec![seg(0x1008, 2), seg(0x3000, 3)]);
        assert_eq!(pieces(&segs, 16, 1).count(), 0);
        let last: Vec<_> = pieces(&segs, 15, 1).collect();
        assert_eq!(last, vec![seg(0x3005, 1)]);
        let wrapping = [seg(u64::MAX - 1, 8)];
        assert_eq!(pieces(&wrapping, 4, 1).count(), 0);
    }

    #[test]
    fn iovecs_split_at_region_boundaries() {
        let mem = GuestMemory::from_ranges(&[
            (GuestAddress(0), 0x10000),
            (GuestAddress(0x10000), 0x10000),
        ])
        .unwrap();
        let segs = [seg(0xf000, 0x2000)];
        let v = iovecs(&mem, &segs, 0, 0x2000, true).unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].iov_len + v[1].iov_len, 0x2000);
        assert_eq!(
            iovecs(&mem, &[seg(0x1f000, 0x2000)], 0, 0x2000, false).unwrap_err(),
            ChainError::BufferOutOfRange
        );
        assert_eq!(
            iovecs(&mem, &[seg(0x1001, 0x200)], 0, 0x200, true).unwrap_err(),
            ChainError::UnalignedDirect
        );
    }

    fn store(mem: &GuestMemory, table: u64, index: u64, desc: Descriptor) {
        mem.write_obj(RawDescriptor::from(desc), GuestAddress(table + 16 * index))
            .unwrap();
    }

    #[test]
    fn walk_finds_loops_and_bad_indices() {
        let mem = GuestMemory::from_ranges(&[(GuestAddress(0), 0x10000)]).unwrap();
        let next = VRING_DESC_F_NEXT as u16;
        let mut layout = ChainLayout::default();
        // 0 -> 1 -> 0: all readable, so only the length bound can stop it.
        store(&mem, 0, 0, Descriptor::new(0x1000, 16, next, 1));
        store(&mem, 0, 1, Descriptor::new(0x2000, 16, next, 0));
        assert_eq!(
            walk_chain(&mem, GuestAddress(0), 4, 0, &mut layout),
            Err(ChainError::ChainTooLong)
        );
        store(&mem, 0, 1, Descriptor::new(0x2000, 16, next, 4));
        assert_eq!(
            walk_chain(&mem, GuestAddress(0), 4, 0, &mut layout),
            Err(ChainError::DescriptorIndex(4))
        );
        // An indirect table of 2 entries, the second writable.
        store(
            &mem,
            0,
            2,
            Descriptor::new(0x3000, 32, VRING_DESC_F_INDIRECT as u16, 0),
        );
        store(&mem, 0x3000, 0, Descriptor::new(0x1000, 16, next, 1));
        store(
            &mem,
            0x3000,
            1,
            Descriptor::new(0x2000, 8, VRING_DESC_F_WRITE as u16, 0),
        );
        assert_eq!(walk_chain(&mem, GuestAddress(0), 4, 2, &mut layout), Ok(()));
        assert_eq!(layout.readable, vec![seg(0x1000, 16)]);
        assert_eq!(layout.writable, vec![seg(0x2000, 8)]);
        assert_eq!(layout.last_writable_byte(&mem), Some(GuestAddress(0x2007)));
        // A table whose length is not a whole number of descriptors.
        store(
            &mem,
            0,
            2,
            Descriptor::new(0x3000, 24, VRING_DESC_F_INDIRECT as u16, 0),
        );
        assert_eq!(
            walk_chain(&mem, GuestAddress(0), 4, 2, &mut layout),
            Err(ChainError::BadIndirect)
        );
        // A table outside guest memory.
        store(
            &mem,
            0,
            2,
            Descriptor::new(0x20000, 32, VRING_DESC_F_INDIRECT as u16, 0),
        );
        assert_eq!(
            walk_chain(&mem, GuestAddress(0), 4, 2, &mut layout),
            Err(ChainError::DescriptorUnreadable(0x20000))
        );
    }
}
