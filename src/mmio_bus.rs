//! Memory-mapped I/O dispatch: which device answers which guest-physical range.
//!
//! Only accesses KVM cannot handle itself reach this bus (PCI BAR registers, device
//! configuration): queue kicks land on ioeventfds and never exit to userspace. Ranges can
//! move while the guest runs, because a guest write to a BAR relocates its device.
//!
//! Locking: the range map sits behind one `RwLock`, each device behind its own `Mutex`.
//! A vCPU looks the device up under the read lock and drops it before locking the device,
//! so a device may remap itself (from a PCI config write, holding its own lock) without a
//! lock-order cycle.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// A device that answers MMIO accesses at offsets relative to its range's base.
pub trait MmioDevice: Send {
    /// Reads `data.len()` bytes at `offset`; offsets it does not decode read as 0.
    fn mmio_read(&mut self, offset: u64, data: &mut [u8]);
    /// Writes `data` at `offset`; offsets it does not decode ignore the write.
    fn mmio_write(&mut self, offset: u64, data: &[u8]);
}

/// A device's handle on the bus, valid whether or not the device is mapped right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MmioRegionId(usize);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MmioBusError {
    #[error("MMIO range {base:#x}+{len:#x} overlaps the range at {other:#x}")]
    Overlap { base: u64, len: u64, other: u64 },
    #[error("MMIO range {base:#x}+{len:#x} is empty or wraps past the end of the address space")]
    BadRange { base: u64, len: u64 },
    #[error("no device was registered as MMIO region {0}")]
    UnknownRegion(usize),
}

type SharedDevice = Arc<Mutex<dyn MmioDevice>>;

#[derive(Default)]
struct Ranges {
    devices: Vec<SharedDevice>,
    /// base → (length, region); ranges never overlap.
    by_base: BTreeMap<u64, (u64, MmioRegionId)>,
    /// region → base, for regions currently mapped.
    placed: BTreeMap<usize, u64>,
}

impl Ranges {
    fn lookup(&self, addr: u64) -> Option<(u64, &SharedDevice)> {
        let (&base, &(len, id)) = self.by_base.range(..=addr).next_back()?;
        let offset = addr - base;
        (offset < len).then(|| (offset, &self.devices[id.0]))
    }

    fn overlapping(&self, base: u64, end: u64) -> Option<u64> {
        if let Some((&other, &(len, _))) = self.by_base.range(..=base).next_back() {
            if other + len > base {
                return Some(other);
            }
        }
        self.by_base
            .range(base..end)
            .next()
            .map(|(&other, _)| other)
    }

    fn unmap(&mut self, id: MmioRegionId) {
        if let Some(base) = self.placed.remove(&id.0) {
            self.by_base.remove(&base);
        }
    }
}

/// The guest-physical MMIO space outside RAM.
#[derive(Default)]
pub struct MmioBus {
    ranges: RwLock<Ranges>,
}

/// A poisoned lock only means another vCPU thread died mid-access; the state is still the
/// best we have, so keep serving it.
fn lock(device: &SharedDevice) -> MutexGuard<'_, dyn MmioDevice + 'static> {
    device
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl MmioBus {
    pub fn new() -> Self {
        Self::default()
    }

    fn read_ranges(&self) -> RwLockReadGuard<'_, Ranges> {
        self.ranges
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write_ranges(&self) -> RwLockWriteGuard<'_, Ranges> {
        self.ranges
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Adds a device to the bus without mapping it anywhere yet.
    pub fn register(&self, device: SharedDevice) -> MmioRegionId {
        let mut ranges = self.write_ranges();
        ranges.devices.push(device);
        MmioRegionId(ranges.devices.len() - 1)
    }

    /// Maps `id` at `base..base+len`, moving it if it was mapped elsewhere. On error the
    /// region is left unmapped: a guest that programs overlapping BARs loses the device,
    /// as on real hardware.
    pub fn map(&self, id: MmioRegionId, base: u64, len: u64) -> Result<(), MmioBusError> {
        let mut ranges = self.write_ranges();
        if id.0 >= ranges.devices.len() {
            return Err(MmioBusError::UnknownRegion(id.0));
        }
        ranges.unmap(id);
        let end = base
            .checked_add(len)
            .filter(|_| len > 0)
            .ok_or(MmioBusError::BadRange { base, len })?;
        if let Some(other) = ranges.overlapping(base, end) {
            return Err(MmioBusError::Overlap { base, len, other });
        }
        ranges.by_base.insert(base, (len, id));
        ranges.placed.insert(id.0, base);
        Ok(())
    }

    /// Removes `id`'s range (memory decoding turned off); the device stays registered.
    pub fn unmap(&self, id: MmioRegionId) {
        self.write_ranges().unmap(id);
    }

    /// Where `id` is mapped now, if anywhere.
    pub fn base_of(&self, id: MmioRegionId) -> Option<u64> {
        self.read_ranges().placed.get(&id.0).copied()
    }

    fn device_at(&self, addr: u64) -> Option<(u64, SharedDevice)> {
        let ranges = self.read_ranges();
        ranges
            .lookup(addr)
            .map(|(offset, device)| (offset, Arc::clone(device)))
    }

    /// A vCPU read at guest-physical `addr`.
    pub fn read(&self, addr: u64, data: &mut [u8]) {
        match self.device_at(addr) {
            Some((offset, device)) => lock(&device).mmio_read(offset, data),
            // Nothing decodes this address: the bus floats high, which is what drivers
            // probing for absent hardware expect.
            None => data.fill(0xff),
        }
    }

    /// A vCPU write at guest-physical `addr`; unclaimed writes are dropped.
    pub fn write(&self, addr: u64, data: &[u8]) {
        if let Some((offset, device)) = self.device_at(addr) {
            lock(&device).mmio_write(offset, data);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Remembers the last access and answers reads with the low byte of the offset.
    #[derive(Default)]
    struct Recorder {
        writes: Vec<(u64, Vec<u8>)>,
    }

    impl MmioDevice for Recorder {
        fn mmio_read(&mut self, offset: u64, data: &mut [u8]) {
            data.fill(offset as u8);
        }
        fn mmio_write(&mut self, offset: u64, data: &[u8]) {
            self.writes.push((offset, data.to_vec()));
        }
    }

    fn bus_with_one() -> (MmioBus, Arc<Mutex<Recorder>>, MmioRegionId) {
        let bus = MmioBus::new();
        let device = Arc::new(Mutex::new(Recorder::default()));
        let id = bus.register(device.clone());
        (bus, device, id)
    }

    #[test]
    fn dispatches_relative_offsets_and_floats_high_elsewhere() {
        let (bus, device, id) = bus_with_one();
        bus.map(id, 0x1000, 0x100).unwrap();
        let mut data = [0u8; 4];
        bus.read(0x1010, &mut data);
        assert_eq!(data, [0x10; 4]);
        bus.read(0x1100, &mut data);
        assert_eq!(data, [0xff; 4]);
        bus.read(0xfff, &mut data);
        assert_eq!(data, [0xff; 4]);
        bus.write(0x10ff, &[7]);
        bus.write(0x1100, &[8]);
        assert_eq!(device.lock().unwrap().writes, vec![(0xff, vec![7])]);
    }

    #[test]
    fn remapping_moves_the_range() {
        let (bus, _device, id) = bus_with_one();
        bus.map(id, 0x1000, 0x100).unwrap();
        bus.map(id, 0x8000, 0x100).unwrap();
        assert_eq!(bus.base_of(id), Some(0x8000));
        let mut data = [0u8; 1];
        bus.read(0x1000, &mut data);
        assert_eq!(data, [0xff]);
        bus.read(0x8001, &mut data);
        assert_eq!(data, [1]);
        bus.unmap(id);
        bus.read(0x8001, &mut data);
        assert_eq!(data, [0xff]);
        assert_eq!(bus.base_of(id), None);
    }

    #[test]
    fn overlaps_and_bad_ranges_are_refused_and_leave_the_region_unmapped() {
        let (bus, _first, a) = bus_with_one();
        let b = bus.register(Arc::new(Mutex::new(Recorder::default())));
        bus.map(a, 0x1000, 0x100).unwrap();
        assert_eq!(
            bus.map(b, 0x10f0, 0x100),
            Err(MmioBusError::Overlap {
                base: 0x10f0,
                len: 0x100,
                other: 0x1000
            })
        );
        assert!(matches!(
            bus.map(b, 0x0f80, 0x100),
            Err(MmioBusError::Overlap { .. })
        ));
        assert!(matches!(
            bus.map(b, u64::MAX - 0x10, 0x100),
            Err(MmioBusError::BadRange { .. })
        ));
        assert!(matches!(
            bus.map(b, 0x5000, 0),
            Err(MmioBusError::BadRange { .. })
        ));
        assert_eq!(bus.base_of(b), None);
        bus.map(b, 0x1100, 0x100).unwrap();
        assert_eq!(
            bus.map(MmioRegionId(9), 0, 1),
            Err(MmioBusError::UnknownRegion(9))
        );
    }
}
