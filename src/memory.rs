//! Guest RAM: allocation around the MMIO hole and the e820 map that describes it.

use log::debug;
use vm_memory::mmap::MmapRegionBuilder;
use vm_memory::{GuestAddress, GuestMemoryMmap, GuestRegionMmap};

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
    #[error("cannot map {size} bytes of guest memory: {source}")]
    Map {
        size: u64,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot describe {size} bytes of guest memory: {source}")]
    Region {
        size: u64,
        #[source]
        source: vm_memory::mmap::MmapRegionError,
    },
    #[error("guest memory of {size} bytes overflows the guest-physical address space")]
    Overflow { size: u64 },
    #[error("cannot lay out {size} bytes of guest memory: {source}")]
    Layout {
        size: u64,
        #[source]
        source: vm_memory::GuestRegionCollectionError,
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

/// Guest-physical and host-virtual addresses of RAM share this alignment, so that KVM can
/// back the guest with 2 MiB pages (it needs `gpa % 2M == hva % 2M`) once the host has
/// transparent huge pages there.
const RAM_ALIGNMENT: usize = 2 << 20;

/// Allocates anonymous guest RAM of `size` bytes.
///
/// The mappings stay until the process exits (one VM per process): device threads hold
/// clones of the memory map, and unmapping under them could never be made safe.
pub fn allocate(size: u64) -> Result<GuestMemory, MemoryError> {
    if size < MIN_MEMORY_BYTES {
        return Err(MemoryError::TooSmall { got: size });
    }
    if size % 4096 != 0 {
        return Err(MemoryError::Unaligned(size));
    }
    let mut regions = Vec::new();
    for (start, len) in ram_ranges(size) {
        let len = len as usize;
        let host =
            map_aligned_anonymous(len).map_err(|source| MemoryError::Map { size, source })?;
        advise_transparent_hugepages(host, len);
        // SAFETY: `host..host + len` is a private anonymous read/write mapping made above,
        // never unmapped, and not used by anything else.
        let region = unsafe { MmapRegionBuilder::new(len).with_raw_mmap_pointer(host) }
            .with_mmap_prot(libc::PROT_READ | libc::PROT_WRITE)
            .with_mmap_flags(libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE)
            .build()
            .map_err(|source| MemoryError::Region { size, source })?;
        let region = GuestRegionMmap::new(region, start).ok_or(MemoryError::Overflow { size })?;
        regions.push(region);
    }
    GuestMemoryMmap::from_regions(regions).map_err(|source| MemoryError::Layout { size, source })
}

/// Maps `len` bytes of private anonymous memory at a `RAM_ALIGNMENT`-aligned address.
fn map_aligned_anonymous(len: usize) -> std::io::Result<*mut u8> {
    let reserve = len + RAM_ALIGNMENT;
    // SAFETY: a fresh anonymous mapping chosen by the kernel (no MAP_FIXED): it cannot
    // alias anything the process already uses.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            reserve,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if base == libc::MAP_FAILED {
        return Err(std::io::Error::last_os_error());
    }
    let base = base as usize;
    let aligned = base.next_multiple_of(RAM_ALIGNMENT);
    let head = aligned - base;
    let tail = reserve - head - len;
    // SAFETY: both ranges lie inside the reservation just made and outside the aligned
    // `len` bytes that are kept; nothing refers to them.
    unsafe {
        if head > 0 {
            libc::munmap(base as *mut libc::c_void, head);
        }
        if tail > 0 {
            libc::munmap((aligned + len) as *mut libc::c_void, tail);
        }
    }
    Ok(aligned as *mut u8)
}

/// Asks for transparent huge pages on guest RAM: one 2 MiB page instead of 512 small ones
/// means fewer host page faults and far fewer nested-paging entries for the guest to walk.
/// Advice only: a host with THP disabled keeps working with small pages.
fn advise_transparent_hugepages(host: *mut u8, len: usize) {
    // SAFETY: `host..host + len` is one live anonymous mapping made by `allocate`;
    // MADV_HUGEPAGE changes no contents and no protection, only the paging policy.
    let rc = unsafe { libc::madvise(host.cast(), len, libc::MADV_HUGEPAGE) };
    if rc != 0 {
        debug!(
            "madvise(MADV_HUGEPAGE) on guest RAM failed: {}",
            std::io::Error::last_os_error()
        );
    }
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
    use vm_memory::GuestMemoryBackend;

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
    fn ram_is_huge_page_aligned_in_the_host() {
        let mem = allocate(MIN_MEMORY_BYTES).unwrap();
        let host = mem.get_host_address(GuestAddress(0)).unwrap() as usize;
        assert_eq!(host % RAM_ALIGNMENT, 0);
        assert_eq!(mem.last_addr(), GuestAddress(MIN_MEMORY_BYTES - 1));
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
