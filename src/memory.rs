//! Guest RAM: allocation around the MMIO hole and the e820 map that describes it.

use log::debug;
use vm_memory::mmap::MmapRegionBuilder;
use vm_memory::{
    GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion, GuestRegionMmap,
};

use crate::layout::{
    EBDA_START, HIMEM_START, MMIO_HOLE_END, MMIO_HOLE_START, PCI_ECAM_SIZE, PCI_ECAM_START,
};

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
    #[error("--memory hugepages=on: {size} bytes is not a multiple of the {page} huge page size")]
    HugePageMultiple { size: u64, page: HugePageSize },
    #[error(
        "--memory hugepages=on: {need} huge pages of {page} are needed, the pool has {free} \
         free ({total} in all); reserve more with `{}`",
        page.reserve_hint(*need + *total - *free)
    )]
    HugePagePool {
        page: HugePageSize,
        need: u64,
        free: u64,
        total: u64,
    },
    #[error("cannot fault guest memory back in after clearing it: {0}")]
    Refault(#[source] std::io::Error),
}

/// The huge page sizes guest RAM can come from (x86_64).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HugePageSize {
    TwoMiB,
    OneGiB,
}

impl HugePageSize {
    pub fn bytes(self) -> u64 {
        match self {
            Self::TwoMiB => 2 << 20,
            Self::OneGiB => 1 << 30,
        }
    }

    /// The pool's directory under /sys/kernel/mm/hugepages.
    fn sysfs_dir(self) -> String {
        format!(
            "/sys/kernel/mm/hugepages/hugepages-{}kB",
            self.bytes() >> 10
        )
    }

    /// The command that sizes the pool to `pages`.
    fn reserve_hint(self, pages: u64) -> String {
        match self {
            Self::TwoMiB => format!("sysctl vm.nr_hugepages={pages}"),
            Self::OneGiB => format!("echo {pages} > {}/nr_hugepages", self.sysfs_dir()),
        }
    }

    /// (free, total) pages of the host's pool; (0, 0) when the host has no such pool.
    fn pool(self) -> (u64, u64) {
        let read = |name: &str| {
            std::fs::read_to_string(format!("{}/{name}", self.sysfs_dir()))
                .ok()
                .and_then(|text| text.trim().parse().ok())
                .unwrap_or(0)
        };
        (read("free_hugepages"), read("nr_hugepages"))
    }
}

impl std::fmt::Display for HugePageSize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::TwoMiB => "2 MiB",
            Self::OneGiB => "1 GiB",
        })
    }
}

/// How guest RAM is backed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryOptions {
    /// From the host's hugetlb pool (MAP_HUGETLB) instead of small pages with
    /// transparent huge pages advised.
    pub hugepages: Option<HugePageSize>,
    /// Touch every page up front (MAP_POPULATE): no page faults while the guest runs.
    pub prefault: bool,
    /// A shared mapping (MAP_SHARED), for a later vhost-user backend to map.
    pub shared: bool,
}

impl MemoryOptions {
    fn mmap_flags(&self) -> i32 {
        let mut flags = libc::MAP_ANONYMOUS;
        flags |= if self.shared {
            libc::MAP_SHARED
        } else {
            libc::MAP_PRIVATE
        };
        match self.hugepages {
            // A hugetlb mapping reserves its pages at mmap time (without MAP_NORESERVE),
            // so a short pool is an error now rather than a SIGBUS in the guest later.
            Some(page) => {
                flags |= libc::MAP_HUGETLB
                    | ((page.bytes().trailing_zeros() as i32) << libc::MAP_HUGE_SHIFT)
            }
            None => flags |= libc::MAP_NORESERVE,
        }
        if self.prefault {
            flags |= libc::MAP_POPULATE;
        }
        flags
    }
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

/// Allocates anonymous guest RAM of `size` bytes from small pages, transparent huge pages
/// advised.
pub fn allocate(size: u64) -> Result<GuestMemory, MemoryError> {
    allocate_with(size, &MemoryOptions::default())
}

/// Checks what [`allocate_with`] needs of the host before anything is mapped: sizes, and
/// the hugetlb pool.
pub fn check(size: u64, options: &MemoryOptions) -> Result<(), MemoryError> {
    if size < MIN_MEMORY_BYTES {
        return Err(MemoryError::TooSmall { got: size });
    }
    if size % 4096 != 0 {
        return Err(MemoryError::Unaligned(size));
    }
    if let Some(page) = options.hugepages {
        if size % page.bytes() != 0 {
            return Err(MemoryError::HugePageMultiple { size, page });
        }
        let need = size / page.bytes();
        let (free, total) = page.pool();
        if free < need {
            return Err(MemoryError::HugePagePool {
                page,
                need,
                free,
                total,
            });
        }
    }
    Ok(())
}

/// Allocates anonymous guest RAM of `size` bytes as `options` say.
///
/// The mappings stay until the process exits (one VM per process): device threads hold
/// clones of the memory map, and unmapping under them could never be made safe.
pub fn allocate_with(size: u64, options: &MemoryOptions) -> Result<GuestMemory, MemoryError> {
    check(size, options)?;
    let flags = options.mmap_flags();
    let mut regions = Vec::new();
    for (start, len) in ram_ranges(size) {
        let len = len as usize;
        let host = map_aligned_anonymous(len, flags).map_err(|source| match options.hugepages {
            // The pool shrank since the check (another process took pages).
            Some(page) if source.raw_os_error() == Some(libc::ENOMEM) => {
                let (free, total) = page.pool();
                MemoryError::HugePagePool {
                    page,
                    need: size / page.bytes(),
                    free,
                    total,
                }
            }
            _ => MemoryError::Map { size, source },
        })?;
        if options.hugepages.is_none() {
            advise_transparent_hugepages(host, len);
        }
        // SAFETY: `host..host + len` is an anonymous read/write mapping made above, never
        // unmapped, and not used by anything else.
        let region = unsafe { MmapRegionBuilder::new(len).with_raw_mmap_pointer(host) }
            .with_mmap_prot(libc::PROT_READ | libc::PROT_WRITE)
            .with_mmap_flags(flags)
            .build()
            .map_err(|source| MemoryError::Region { size, source })?;
        let region = GuestRegionMmap::new(region, start).ok_or(MemoryError::Overflow { size })?;
        regions.push(region);
    }
    GuestMemoryMmap::from_regions(regions).map_err(|source| MemoryError::Layout { size, source })
}

/// The host mappings of guest RAM as the reactors' registered buffers, when `options`
/// has the RAM resident or reserved anyway (prefault, or huge pages, which the hugetlb
/// pool set aside at mmap time); `None` otherwise, since registering pins, and so faults
/// in, every page.
pub fn registered_ram(
    mem: &GuestMemory,
    options: &MemoryOptions,
) -> Option<ringvisor_io::RegisteredRam> {
    if !options.prefault && options.hugepages.is_none() {
        return None;
    }
    let mappings: Vec<(*mut u8, usize)> = mem
        .iter()
        .map(|region| (region.as_ptr(), region.len() as usize))
        .collect();
    // SAFETY: guest RAM is read/write memory mapped by `allocate_with`, unmapped only when
    // the last clone of `mem` goes; the machine and the device-path rig stop their
    // reactors before that. Meanwhile only the guest and its devices' I/O use the pages,
    // and whoever drops pages asks the reactors to let go first (`ReactorSet::forget_ram`).
    Some(unsafe { ringvisor_io::RegisteredRam::new(&mappings) })
}

/// Zeroes all guest RAM (a reboot: the next kernel finds nothing of the last one) by
/// handing its pages back to the host: MADV_DONTNEED on a private mapping (the next touch
/// maps a zero page), MADV_REMOVE on a shared one (whose pages would otherwise live on in
/// the shared memory object). Where the kernel refuses (hugetlb before Linux 5.18), the
/// pages are written with zeros. Prefaulted RAM is faulted in again.
pub fn clear(mem: &GuestMemory, options: &MemoryOptions) -> Result<(), MemoryError> {
    let advice = if options.shared {
        libc::MADV_REMOVE
    } else {
        libc::MADV_DONTNEED
    };
    for region in mem.iter() {
        let Ok(host) = region.get_host_address(vm_memory::MemoryRegionAddress(0)) else {
            continue;
        };
        let len = region.len() as usize;
        // SAFETY: `host..host + len` is one whole mapping made by `allocate_with` and never
        // unmapped; the vCPUs are stopped and no device has a request in flight, so
        // nothing reads or writes guest RAM while its pages are dropped.
        if unsafe { libc::madvise(host.cast(), len, advice) } != 0 {
            debug!(
                "madvise on guest RAM refused ({}); writing zeros",
                std::io::Error::last_os_error()
            );
            // SAFETY: as above; the range is read/write memory of this process.
            unsafe { std::ptr::write_bytes(host, 0, len) };
        }
        if options.prefault {
            populate(host, len).map_err(MemoryError::Refault)?;
        }
    }
    Ok(())
}

/// Maps `len` bytes of anonymous memory (`flags`) at a `RAM_ALIGNMENT`-aligned address.
fn map_aligned_anonymous(len: usize, flags: i32) -> std::io::Result<*mut u8> {
    if flags & libc::MAP_HUGETLB != 0 {
        // Huge page mappings come aligned to their page size; no trimming (and the
        // reservation would have to be in huge pages too).
        // SAFETY: a fresh anonymous mapping chosen by the kernel (no MAP_FIXED).
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        return Ok(base.cast());
    }
    // Reserve without populating; the kept part is populated below when asked.
    let reserve = len + RAM_ALIGNMENT;
    // SAFETY: a fresh anonymous mapping chosen by the kernel (no MAP_FIXED): it cannot
    // alias anything the process already uses.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            reserve,
            libc::PROT_READ | libc::PROT_WRITE,
            (flags & !libc::MAP_POPULATE) | libc::MAP_NORESERVE,
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
    if flags & libc::MAP_POPULATE != 0 {
        populate(aligned as *mut u8, len)?;
    }
    Ok(aligned as *mut u8)
}

/// Faults in every page of `host..host + len` now (what MAP_POPULATE does at mmap time),
/// with transparent huge pages advised first so that they are what gets faulted in.
fn populate(host: *mut u8, len: usize) -> std::io::Result<()> {
    advise_transparent_hugepages(host, len);
    // SAFETY: `host..host + len` is a live read/write mapping made by the caller;
    // MADV_POPULATE_WRITE only faults its pages in.
    if unsafe { libc::madvise(host.cast(), len, libc::MADV_POPULATE_WRITE) } == 0 {
        return Ok(());
    }
    // Kernels before 5.14: touch one byte per page (a zero write leaves the contents).
    for offset in (0..len).step_by(4096) {
        // SAFETY: `offset < len`, inside the mapping; the guest has not started.
        unsafe { host.add(offset).write_volatile(0) };
    }
    Ok(())
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
    // The PCI Express configuration window: reserved, as Linux wants it before it trusts
    // the MCFG table.
    map.push(E820Entry {
        addr: PCI_ECAM_START,
        size: PCI_ECAM_SIZE,
        kind: E820Kind::Reserved,
    });
    map.sort_by_key(|entry| entry.addr);
    map
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::{Bytes, GuestMemoryBackend};

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
        assert_eq!(map.len(), 4);
        assert_eq!(map[2].addr, HIMEM_START.0);
        assert_eq!(map[2].addr + map[2].size, size);
        assert_eq!(
            (map[3].addr, map[3].size, map[3].kind),
            (PCI_ECAM_START, PCI_ECAM_SIZE, E820Kind::Reserved),
            "the ECAM is reserved"
        );
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
            .filter(|e| e.kind == E820Kind::Ram)
            .all(|e| e.addr + e.size <= MMIO_HOLE_START || e.addr >= MMIO_HOLE_END));
        assert!(map.windows(2).all(|w| w[0].addr + w[0].size <= w[1].addr));
    }

    #[test]
    fn ram_is_huge_page_aligned_in_the_host() {
        let mem = allocate(MIN_MEMORY_BYTES).unwrap();
        let host = mem.get_host_address(GuestAddress(0)).unwrap() as usize;
        assert_eq!(host % RAM_ALIGNMENT, 0);
        assert_eq!(mem.last_addr(), GuestAddress(MIN_MEMORY_BYTES - 1));
    }

    fn resident_pages(mem: &GuestMemory, bytes: usize) -> usize {
        let host = mem.get_host_address(GuestAddress(0)).unwrap();
        let mut vec = vec![0u8; bytes / 4096];
        // SAFETY: guest RAM starts page aligned at `host` and is at least `bytes` long.
        assert_eq!(
            unsafe { libc::mincore(host.cast(), bytes, vec.as_mut_ptr()) },
            0
        );
        vec.iter().filter(|&&b| b & 1 != 0).count()
    }

    #[test]
    fn prefaulted_ram_is_resident_from_the_start() {
        let size = MIN_MEMORY_BYTES as usize;
        let lazy = allocate(MIN_MEMORY_BYTES).unwrap();
        assert!(
            resident_pages(&lazy, size) < size / 4096 / 2,
            "not faulted in yet"
        );
        let options = MemoryOptions {
            prefault: true,
            ..MemoryOptions::default()
        };
        let eager = allocate_with(MIN_MEMORY_BYTES, &options).unwrap();
        assert_eq!(resident_pages(&eager, size), size / 4096);
    }

    #[test]
    fn clear_zeroes_every_region_and_gives_the_pages_back() {
        let size = MIN_MEMORY_BYTES as usize;
        for options in [
            MemoryOptions::default(),
            MemoryOptions {
                shared: true,
                ..MemoryOptions::default()
            },
            MemoryOptions {
                prefault: true,
                ..MemoryOptions::default()
            },
        ] {
            let mem = allocate_with(MIN_MEMORY_BYTES, &options).unwrap();
            let last = GuestAddress(MIN_MEMORY_BYTES - 8);
            for addr in [GuestAddress(0), GuestAddress(0x10_0000), last] {
                mem.write_obj(0xdead_beef_u64, addr).unwrap();
            }
            clear(&mem, &options).unwrap();
            for addr in [GuestAddress(0), GuestAddress(0x10_0000), last] {
                assert_eq!(
                    mem.read_obj::<u64>(addr).unwrap(),
                    0,
                    "{options:?} {addr:?}"
                );
            }
            let resident = resident_pages(&mem, size);
            if options.prefault {
                assert_eq!(resident, size / 4096, "faulted back in");
            } else {
                // Reading three words back faulted in at most three (huge) pages.
                assert!(
                    resident <= 3 * 512,
                    "{options:?}: {resident} pages resident"
                );
            }
        }
    }

    #[test]
    fn shared_ram_is_a_shared_mapping() {
        let options = MemoryOptions {
            shared: true,
            ..MemoryOptions::default()
        };
        let mem = allocate_with(MIN_MEMORY_BYTES, &options).unwrap();
        let region = mem.find_region(GuestAddress(0)).unwrap();
        assert_eq!(region.flags() & libc::MAP_SHARED, libc::MAP_SHARED);
        mem.write_obj(0x1234_5678u32, GuestAddress(0x1000)).unwrap();
        assert_eq!(
            mem.read_obj::<u32>(GuestAddress(0x1000)).unwrap(),
            0x1234_5678
        );
    }

    #[test]
    fn huge_pages_need_a_whole_number_of_pages_and_a_big_enough_pool() {
        let two = MemoryOptions {
            hugepages: Some(HugePageSize::TwoMiB),
            ..MemoryOptions::default()
        };
        assert!(matches!(
            check(MIN_MEMORY_BYTES + 4096, &two),
            Err(MemoryError::HugePageMultiple { .. })
        ));
        // No host keeps half a million 2 MiB pages free.
        let err = allocate_with(1 << 40, &two).unwrap_err();
        assert!(matches!(
            err,
            MemoryError::HugePagePool { need: 524_288, .. }
        ));
        assert!(err.to_string().contains("sysctl vm.nr_hugepages="), "{err}");
        let one = MemoryOptions {
            hugepages: Some(HugePageSize::OneGiB),
            ..MemoryOptions::default()
        };
        let err = check(1 << 40, &one).unwrap_err().to_string();
        assert!(err.contains("hugepages-1048576kB/nr_hugepages"), "{err}");
    }

    #[test]
    fn huge_page_ram_comes_from_the_pool_when_it_has_pages() {
        let page = HugePageSize::TwoMiB;
        let need = MIN_MEMORY_BYTES / page.bytes();
        let (free, _) = page.pool();
        if free < need {
            // .ci/run reserves the pool (and the lab boots a guest from one, tests/lab_boot.rs).
            ringvisor_test_support::skip(format!(
                "the host's 2 MiB hugetlb pool has {free} free pages, {need} needed"
            ));
            return;
        }
        let options = MemoryOptions {
            hugepages: Some(page),
            prefault: true,
            shared: false,
        };
        let mem = allocate_with(MIN_MEMORY_BYTES, &options).unwrap();
        assert_eq!(page.pool().0, free - need, "prefaulted from the pool");
        let host = mem.get_host_address(GuestAddress(0)).unwrap() as u64;
        assert_eq!(host % page.bytes(), 0);
        mem.write_obj(7u64, GuestAddress(MIN_MEMORY_BYTES - 8))
            .unwrap();
        drop(mem);
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
