//! Memory the QXL device owns and the guest sees through a PCI BAR (the RAM and VRAM
//! BARs): an anonymous mapping the VMM also maps into the guest as a memory slot, so the
//! guest's accesses never leave the hypervisor.

use std::sync::atomic::{AtomicU32, Ordering};

use vm_memory::{
    Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion,
    MemoryRegionAddress, VolatileMemory,
};

#[derive(Debug, thiserror::Error)]
pub enum BarMemoryError {
    #[error("cannot map {size} bytes for a QXL BAR: {reason}")]
    Map { size: u64, reason: String },
}

/// One BAR's memory, addressed by offsets from the BAR's start.
pub struct BarMemory {
    mem: GuestMemoryMmap<()>,
    size: u64,
}

impl BarMemory {
    pub fn new(size: u64) -> Result<Self, BarMemoryError> {
        let map_error = |reason: String| BarMemoryError::Map { size, reason };
        let len = usize::try_from(size).map_err(|e| map_error(e.to_string()))?;
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), len)])
            .map_err(|e| map_error(e.to_string()))?;
        Ok(Self { mem, size })
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Where the mapping starts in this process, for the hypervisor's memory slot.
    pub fn host_address(&self) -> Option<*mut u8> {
        self.mem
            .iter()
            .next()?
            .get_host_address(MemoryRegionAddress(0))
            .ok()
    }

    /// Whether `[offset, offset + len)` lies inside the BAR.
    pub fn contains(&self, offset: u64, len: u64) -> bool {
        offset.checked_add(len).is_some_and(|end| end <= self.size)
    }

    pub fn read(&self, offset: u64, buf: &mut [u8]) -> bool {
        self.contains(offset, buf.len() as u64)
            && self.mem.read_slice(buf, GuestAddress(offset)).is_ok()
    }

    pub fn write(&self, offset: u64, buf: &[u8]) -> bool {
        self.contains(offset, buf.len() as u64)
            && self.mem.write_slice(buf, GuestAddress(offset)).is_ok()
    }

    pub fn read_u32(&self, offset: u64) -> Option<u32> {
        let mut bytes = [0u8; 4];
        self.read(offset, &mut bytes)
            .then(|| u32::from_le_bytes(bytes))
    }

    pub fn read_u64(&self, offset: u64) -> Option<u64> {
        let mut bytes = [0u8; 8];
        self.read(offset, &mut bytes)
            .then(|| u64::from_le_bytes(bytes))
    }

    pub fn write_u32(&self, offset: u64, value: u32) -> bool {
        self.write(offset, &value.to_le_bytes())
    }

    pub fn write_u64(&self, offset: u64, value: u64) -> bool {
        self.write(offset, &value.to_le_bytes())
    }

    /// Ring indices and the interrupt words are shared with guest vCPUs: read and write
    /// them as whole aligned words with ordering.
    pub fn load_u32(&self, offset: u64) -> Option<u32> {
        self.mem
            .load::<u32>(GuestAddress(offset), Ordering::Acquire)
            .ok()
    }

    pub fn store_u32(&self, offset: u64, value: u32) -> bool {
        self.mem
            .store(value, GuestAddress(offset), Ordering::Release)
            .is_ok()
    }

    /// Atomically ORs `bits` into the word at `offset` (the guest clears it with xchg);
    /// returns the previous value.
    pub fn fetch_or_u32(&self, offset: u64, bits: u32) -> Option<u32> {
        let region = self.mem.iter().next()?;
        let slice = region.as_volatile_slice().ok()?;
        let offset = usize::try_from(offset).ok()?;
        let word = slice.get_atomic_ref::<AtomicU32>(offset).ok()?;
        Some(word.fetch_or(bits, Ordering::AcqRel))
    }

    /// Zeroes the whole BAR (the machine's reset) by giving its pages back: a BAR the
    /// guest never drew into costs nothing, one it did shrinks back.
    pub fn clear(&self) -> std::io::Result<()> {
        let Some(host) = self.host_address() else {
            return Err(std::io::Error::other("the BAR has no mapping"));
        };
        // SAFETY: `host..host + size` is the whole private anonymous mapping this BarMemory
        // owns (vm-memory's `from_ranges`, whose length `new` checked fits a usize), alive
        // as long as `self`. MADV_DONTNEED leaves it mapped, reading as zeros; the guest's
        // memory slot over it sees the same pages.
        if unsafe { libc::madvise(host.cast(), self.size as usize, libc::MADV_DONTNEED) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accesses_stay_inside_the_bar() {
        let bar = BarMemory::new(8192).unwrap();
        assert!(bar.write_u32(8188, 7));
        assert_eq!(bar.read_u32(8188), Some(7));
        assert!(!bar.write_u32(8190, 7));
        assert_eq!(bar.read_u64(8188), None);
        assert_eq!(bar.read_u32(u64::MAX - 1), None);
        assert_eq!(bar.fetch_or_u32(4, 0b10), Some(0));
        assert_eq!(bar.fetch_or_u32(4, 0b01), Some(0b10));
        assert_eq!(bar.load_u32(4), Some(0b11));
        assert_eq!(bar.fetch_or_u32(8192, 1), None);
        assert!(bar.host_address().is_some());
    }

    #[test]
    fn clear_zeroes_the_whole_bar() {
        let bar = BarMemory::new(3 * 4096).unwrap();
        for offset in [0, 4096 + 12, 3 * 4096 - 4] {
            assert!(bar.write_u32(offset, 0xdead_beef));
        }
        bar.clear().unwrap();
        for offset in [0, 4096 + 12, 3 * 4096 - 4] {
            assert_eq!(bar.read_u32(offset), Some(0));
        }
        // Still mapped and writable afterwards.
        assert!(bar.write_u32(8, 5));
        assert_eq!(bar.read_u32(8), Some(5));
    }
}
