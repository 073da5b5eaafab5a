//! Guest RAM: allocation around the MMIO hole and the e820 map that describes it.

use vm_memory::{GuestAddress, GuestMemoryMmap};

use crate::layout::{EBDA_START, HIMEM_START, MMIO_HOLE_END, MMIO_HOLE_START};

/// Smallest guest the VMM agrees to build: below this a Linux kernel cannot decompress.
pub const MIN_MEMORY_BYTES: u64 = 32 << 20;

pub type GuestMemory = GuestMemoryMmap<()>;

#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    #[error("--memory must be at least {} MiB (got {got} bytes)", MIN_MEMORY_BYTES >> 20)]
    TooSmall { got: u64 },
    #[error("--memory must be a multiple of 4 KiB (got {0} bytes)")]
    Unaligned(u64),
    #[error("cannot allocate {size} bytes of guest memory: {source}")]
    Allocate {
        size: u64,
        #[source]
        source: vm_memory::mmap::FromRangesError,
    },
}

/// The RAM ranges for `size` bytes: all of it below the MMIO hole when it fits, the rest
/// continuing at 4 GiB.
pub fn ram_ranges(size: u64) -> Vec<(GuestAddress, u64)> {
    if size <= MMIO_HOLE_START {
        vec![(GuestAddress(0), size)]
    } else {
        vec![
            (GuestAddress(0), MMIO_HOLE_START),
            (GuestAddress(MMIO_HOLE_END), size - MMIO_HOLE_START),
        ]
    }
}

/// Allocates anonymous guest RAM of `size` bytes.
pub fn allocate(size: u64) -> Result<GuestMemory, MemoryError> {
    if size < MIN_MEMORY_BYTES {
        return Err(MemoryError::TooSmall { got: size });
    }
    if size % 4096 != 0 {
        return Err(MemoryError::Unaligned(size));
    }
    let ranges: Vec<(GuestAddress, usize)> = ram_ranges(size)
        .into_iter()
        .map(|(start, len)| (start, len as usize))
        .collect();
    GuestMemoryMmap::from_ranges(&ranges).map_err(|source| MemoryError::Allocate { size, source })
}

/// One entry of the BIOS e820 memory map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct E820Entry {
    pub addr: u64,
    pub size: u64,
    pub kind: E820Kind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum E820Kind {
    Ram = 1,
    Reserved = 2,
}

/// The e820 map for a guest of `size` bytes: conventional memory up to the EBDA, the EBDA and
/// BIOS area reserved, then RAM from 1 MiB, split around the MMIO hole.
pub fn e820_map(size: u64) -> Vec<E820Entry> {
    let mut map = vec![
        E820Entry {
            addr: 0,
            size: EBDA_START.0,
            kind: E820Kind::Ram,
        },
        E820Entry {
            addr: EBDA_START.0,
            size: HIMEM_START.0 - EBDA_START.0,
            kind: E820Kind::Reserved,
        },
    ];
    for (start, len) in ram_ranges(size) {
        let start = start.0.max(HIMEM_START.0);
        let end = if start >= MMIO_HOLE_END {
            start + len
        } else {
            len.min(MMIO_HOLE_START)
        };
        map.push(E820Entry {
            addr: start,
            size: end - start,
            kind: E820Kind::Ram,
        });
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ram_bytes(map: &[E820Entry]) -> u64 {
        map.iter()
            .filter(|e| e.kind == E820Kind::Ram)
            .map(|e| e.size)
            .sum()
    }

    #[test]
    fn small_guest_is_one_range_below_the_hole() {
        let size = 512 << 20;
        assert_eq!(ram_ranges(size), vec![(GuestAddress(0), size)]);
        let map = e820_map(size);
        assert_eq!(map.len(), 3);
        assert_eq!(map[2].addr, HIMEM_START.0);
        assert_eq!(map[2].addr + map[2].size, size);
        // Only the EBDA..1MiB window is not RAM.
        assert_eq!(ram_bytes(&map), size - (HIMEM_START.0 - EBDA_START.0));
    }

    #[test]
    fn large_guest_continues_above_4g() {
        let size = 6u64 << 30;
        let ranges = ram_ranges(size);
        assert_eq!(ranges.len(), 2);
        assert_eq!(ranges[1].0, GuestAddress(MMIO_HOLE_END));
        assert_eq!(ranges[0].1 + ranges[1].1, size);
        let map = e820_map(size);
        let high = map.last().unwrap();
        assert_eq!(high.addr, MMIO_HOLE_END);
        assert_eq!(
            high.addr + high.size,
            MMIO_HOLE_END + size - MMIO_HOLE_START
        );
        assert!(map
            .iter()
            .all(|e| e.addr + e.size <= MMIO_HOLE_START || e.addr >= MMIO_HOLE_END));
    }

    #[test]
    fn rejects_tiny_and_unaligned_sizes() {
        assert!(matches!(allocate(0), Err(MemoryError::TooSmall { .. })));
        assert!(matches!(
            allocate(MIN_MEMORY_BYTES + 1),
            Err(MemoryError::Unaligned(_))
        ));
        let mem = allocate(MIN_MEMORY_BYTES).unwrap();
        assert_eq!(vm_memory::GuestMemoryBackend::num_regions(&mem), 1);
    }
}
