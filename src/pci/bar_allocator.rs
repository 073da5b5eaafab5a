//! Firmware's job for BARs: give each one an address in the 32-bit MMIO hole at creation.
//!
//! Linux keeps the addresses it finds in BARs with decoding enabled when they lie inside
//! the host bridge's windows (the DSDT's `_CRS`), so the VMM assigns them once and the
//! guest never has to.

use crate::layout::{PCI_MMIO_END, PCI_MMIO_START};

/// Bump allocator over `[start, end)`, naturally aligning every BAR to its size.
#[derive(Debug, Clone)]
pub struct BarAllocator {
    next: u64,
    end: u64,
}

impl Default for BarAllocator {
    /// The hole from 0xC000_0000 up to the ECAM: everything above (ECAM, IOAPIC, local
    /// APIC, KVM's TSS pages) is not for BARs. The ACPI tables describe the same window.
    fn default() -> Self {
        Self::new(PCI_MMIO_START, PCI_MMIO_END)
    }
}

impl BarAllocator {
    pub fn new(start: u64, end: u64) -> Self {
        Self { next: start, end }
    }

    /// Reserves `size` bytes (a power of two) aligned to `size`; None when the hole is full.
    pub fn allocate(&mut self, size: u64) -> Option<u64> {
        if !size.is_power_of_two() {
            return None;
        }
        let base = self.next.checked_next_multiple_of(size)?;
        let end = base.checked_add(size)?;
        if end > self.end {
            return None;
        }
        self.next = end;
        Some(base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocates_aligned_from_the_hole_and_stops_below_the_ioapic() {
        let mut bars = BarAllocator::default();
        assert_eq!(bars.allocate(0x1_0000), Some(0xc000_0000));
        assert_eq!(bars.allocate(0x1000), Some(0xc001_0000));
        assert_eq!(bars.allocate(0x1_0000), Some(0xc002_0000));
        assert_eq!(bars.allocate(0x3000), None);
        assert_eq!(bars.allocate(0x4000_0000), None, "would cross the ECAM");
        let mut small = BarAllocator::new(0x1000, 0x3000);
        assert_eq!(small.allocate(0x1000), Some(0x1000));
        assert_eq!(small.allocate(0x1000), Some(0x2000));
        assert_eq!(small.allocate(0x1000), None);
    }
}
