//! Giving guest memory back to the host: the one checked release path that inflation and
//! free page reporting share.
//!
//! Every range comes from the guest. Only the parts inside guest RAM and outside every
//! protected range are released, and only from private anonymous mappings, where
//! MADV_DONTNEED frees the host pages and the guest's next touch reads zeros.

use std::sync::Arc;

use log::warn;
use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryRegion};

use crate::virtio::GuestMemory;

/// The balloon's unit: page frame numbers and `num_pages` count 4 KiB pages whatever the
/// guest's own page size.
pub const BALLOON_PAGE_SIZE: u64 = 4096;

/// What became of a range.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Discarded {
    /// Bytes released to the host.
    pub released: u64,
    /// Bytes left alone: outside RAM, protected, or not whole host pages.
    pub ignored: u64,
}

impl std::ops::AddAssign for Discarded {
    fn add_assign(&mut self, more: Self) {
        self.released += more.released;
        self.ignored += more.ignored;
    }
}

impl Discarded {
    /// Ignored bytes as balloon pages, a partial page counting whole.
    pub fn ignored_pages(&self) -> u64 {
        self.ignored.div_ceil(BALLOON_PAGE_SIZE)
    }
}

/// Told the host range (address, length) of guest RAM just before its pages are
/// released; returns once nothing holds them pinned (the reactors' registered buffers,
/// see `ringvisor_io::ReactorSet::forget_ram`).
#[derive(Clone)]
pub struct ReleaseHook(Arc<dyn Fn(usize, usize) + Send + Sync>);

impl ReleaseHook {
    pub fn new(hook: impl Fn(usize, usize) + Send + Sync + 'static) -> Self {
        Self(Arc::new(hook))
    }
}

impl std::fmt::Debug for ReleaseHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReleaseHook")
    }
}

/// Releases guest-physical ranges to the host, within guest RAM and outside the ranges
/// the VMM keeps.
#[derive(Debug)]
pub(crate) struct Discarder {
    mem: GuestMemory,
    /// `[start, end)`, widened to balloon pages.
    protected: Arc<[(u64, u64)]>,
    host_page: u64,
    before_release: Option<ReleaseHook>,
}

impl Discarder {
    pub fn new(
        mem: GuestMemory,
        protected: Arc<[(u64, u64)]>,
        before_release: Option<ReleaseHook>,
    ) -> Self {
        // SAFETY: sysconf reads a process constant; it has no memory-safety preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        // A host page smaller than the balloon's (none exists) still works as 4 KiB.
        let host_page = u64::try_from(page)
            .ok()
            .filter(|p| p.is_power_of_two())
            .unwrap_or(BALLOON_PAGE_SIZE);
        Self {
            mem,
            protected,
            host_page,
            before_release,
        }
    }

    pub fn mem(&self) -> &GuestMemory {
        &self.mem
    }

    /// Releases what may be released of `[start, start + len)`.
    pub fn discard(&self, start: u64, len: u64) -> Discarded {
        let mut done = Discarded::default();
        let Some(end) = start.checked_add(len) else {
            done.ignored = len;
            return done;
        };
        let mut cursor = start;
        // Each step moves the cursor forward to a region, protected-range or range end.
        while cursor < end {
            if let Some(&(_, p_end)) = self
                .protected
                .iter()
                .find(|&&(s, e)| s <= cursor && cursor < e)
            {
                let next = p_end.min(end);
                done.ignored += next - cursor;
                cursor = next;
                continue;
            }
            let Some(region) = self.mem.find_region(GuestAddress(cursor)) else {
                let next = self
                    .mem
                    .iter()
                    .map(|r| r.start_addr().0)
                    .filter(|&s| s > cursor)
                    .min()
                    .unwrap_or(end)
                    .min(end);
                done.ignored += next - cursor;
                cursor = next;
                continue;
            };
            let next_protected = self
                .protected
                .iter()
                .map(|&(s, _)| s)
                .filter(|&s| s > cursor)
                .min()
                .unwrap_or(end);
            let next = end
                .min(region.last_addr().0.saturating_add(1))
                .min(next_protected);
            let released = self.release(region, cursor, next - cursor);
            done.released += released;
            done.ignored += next - cursor - released;
            cursor = next;
        }
        done
    }

    /// Releases the whole host pages of `[start, start + len)`, which lies inside
    /// `region`; returns the bytes released.
    fn release(&self, region: &vm_memory::GuestRegionMmap<()>, start: u64, len: u64) -> u64 {
        let anonymous_private = libc::MAP_ANONYMOUS | libc::MAP_PRIVATE;
        if region.flags() & anonymous_private != anonymous_private
            || region.flags() & libc::MAP_HUGETLB != 0
        {
            // A file-backed region would read back the file, a shared one would keep
            // its pages: neither is what the guest expects of a released page. Huge
            // pages are released only whole, never 4 KiB at a time.
            return 0;
        }
        // The caller keeps the range inside the region; checked again because the
        // madvise below must never leave the mapping.
        let Some(offset) = region.to_region_addr(GuestAddress(start)).map(|a| a.0) else {
            return 0;
        };
        if offset.checked_add(len).is_none_or(|e| e > region.len()) {
            return 0;
        }
        // The mapping itself lies inside the address space: these sums cannot wrap.
        let host_start = region.as_ptr() as u64 + offset;
        let host_end = host_start + len;
        // MADV_DONTNEED rounds the length up to a host page: trim to whole host pages so
        // it can never reach a neighbour the guest still uses.
        let first = host_start.next_multiple_of(self.host_page);
        let last = host_end & !(self.host_page - 1);
        if last <= first {
            return 0;
        }
        let bytes = last - first;
        // A pinned page would outlive the release: the guest's next touch would map a
        // fresh page while fixed-buffer I/O still went to the old one.
        if let Some(hook) = &self.before_release {
            (hook.0)(first as usize, bytes as usize);
        }
        // SAFETY: `[first, last)` lies inside `[host_start, host_end)`, which lies inside
        // the region's host mapping (its offset and length are checked above against the
        // region's size), a private anonymous mapping that guest RAM keeps for the life
        // of the process. MADV_DONTNEED only drops the pages' contents
        // (they read back as zeros); the guest gave them up, and host code reaches guest
        // RAM only through volatile accesses and I/O, never through Rust references, so
        // no host invariant depends on their contents.
        let rc = unsafe {
            libc::madvise(
                first as usize as *mut libc::c_void,
                bytes as usize,
                libc::MADV_DONTNEED,
            )
        };
        if rc != 0 {
            warn!(
                "balloon: madvise(MADV_DONTNEED) of {bytes} bytes at guest {start:#x} failed: {}",
                std::io::Error::last_os_error()
            );
            return 0;
        }
        bytes
    }
}
