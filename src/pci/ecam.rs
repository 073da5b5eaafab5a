//! PCI Express enhanced configuration access (ECAM): bus 0's configuration space as a 1 MiB
//! memory window, 4 KiB per function, which the MCFG table announces. Linux then reaches
//! every function with plain loads and stores (no 0xCF8 address-then-data pair, one exit
//! per access instead of two) and can walk extended capabilities, which start at 0x100.
//!
//! The functions here have the 256-byte conventional space only: the extended space reads
//! 0, which PCIe defines as "no extended capability", and ignores writes.

use super::{lock_bus, SharedPciRootBus, CONFIG_SPACE_SIZE, PCI_SLOTS};
use crate::mmio_bus::MmioDevice;

const FUNCTION_SHIFT: u64 = 12;
const DEVICE_SHIFT: u64 = 15;
const BUS_SHIFT: u64 = 20;

/// Which register of which function an offset into the window selects.
#[derive(Debug, PartialEq, Eq)]
struct EcamAddress {
    slot: usize,
    function: u32,
    /// Byte offset in the function's 4 KiB space.
    offset: usize,
}

impl EcamAddress {
    /// `None` for accesses that no function decodes: other buses, and accesses that are
    /// not 1, 2 or 4 bytes within one dword.
    fn decode(window_offset: u64, len: usize) -> Option<Self> {
        let offset = (window_offset & 0xfff) as usize;
        let aligned = matches!(len, 1 | 2 | 4) && offset % 4 + len <= 4;
        let slot = ((window_offset >> DEVICE_SHIFT) & 0x1f) as usize;
        (window_offset >> BUS_SHIFT == 0 && aligned && slot < PCI_SLOTS).then_some(Self {
            slot,
            function: ((window_offset >> FUNCTION_SHIFT) & 0x7) as u32,
            offset,
        })
    }
}

/// The ECAM window over the same bus as the configuration ports.
pub struct PciEcam {
    bus: SharedPciRootBus,
}

impl PciEcam {
    pub fn new(bus: SharedPciRootBus) -> Self {
        Self { bus }
    }
}

impl MmioDevice for PciEcam {
    fn mmio_read(&mut self, offset: u64, data: &mut [u8]) {
        let Some(address) = EcamAddress::decode(offset, data.len()) else {
            data.fill(0xff);
            return;
        };
        let bus = lock_bus(&self.bus);
        let value = if address.offset < CONFIG_SPACE_SIZE {
            bus.read_config(address.slot, address.function, address.offset / 4)
        } else if bus.read_config(address.slot, address.function, 0) == 0xffff_ffff {
            0xffff_ffff
        } else {
            0
        };
        let bytes = (value >> ((address.offset % 4) * 8)).to_le_bytes();
        data.copy_from_slice(&bytes[..data.len()]);
    }

    fn mmio_write(&mut self, offset: u64, data: &[u8]) {
        let Some(address) = EcamAddress::decode(offset, data.len()) else {
            return;
        };
        if address.offset < CONFIG_SPACE_SIZE {
            lock_bus(&self.bus).write_config(
                address.slot,
                address.function,
                address.offset / 4,
                (address.offset % 4) as u8,
                data,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pci::{PciConfigIo, PciFunction, PciHostBridge, PciRootBus};
    use std::sync::{Arc, Mutex};

    /// Every configuration write: register, byte offset, data.
    type Writes = Arc<Mutex<Vec<(usize, u8, Vec<u8>)>>>;

    /// Slot 1: answers register n with n, records every write.
    struct Recorder(Writes);

    impl PciFunction for Recorder {
        fn read_config_register(&self, register: usize) -> u32 {
            register as u32
        }
        fn write_config_register(&mut self, register: usize, offset: u8, data: &[u8]) {
            self.0
                .lock()
                .unwrap()
                .push((register, offset, data.to_vec()));
        }
    }

    fn ecam() -> (PciEcam, PciConfigIo, Writes) {
        let writes = Writes::default();
        let mut bus = PciRootBus::new();
        bus.add(Box::new(PciHostBridge::new()));
        bus.add(Box::new(Recorder(writes.clone())));
        let ports = PciConfigIo::new(bus);
        (PciEcam::new(ports.bus()), ports, writes)
    }

    fn read(ecam: &mut PciEcam, offset: u64, len: usize) -> u64 {
        let mut data = [0u8; 8];
        ecam.mmio_read(offset, &mut data[..len]);
        u64::from_le_bytes(data)
    }

    fn slot(n: u64) -> u64 {
        n << DEVICE_SHIFT
    }

    #[test]
    fn reads_the_same_registers_as_the_ports() {
        let (mut ecam, mut ports, _) = ecam();
        assert_eq!(read(&mut ecam, 0, 4), 0x0d57_8086);
        assert_eq!(read(&mut ecam, 2, 2), 0x0d57, "device ID as a word");
        assert_eq!(read(&mut ecam, 1, 1), 0x80, "vendor ID's high byte");
        assert_eq!(read(&mut ecam, slot(1) + 0x3c, 4), 0x3c / 4);
        ports.write(0, &(0x8000_0000u32 | 1 << 11 | 0x3c).to_le_bytes());
        let mut data = [0u8; 4];
        ports.read(4, &mut data);
        assert_eq!(u32::from_le_bytes(data), 0x3c / 4);
    }

    #[test]
    fn absent_functions_read_all_ones_and_extended_space_reads_zero() {
        let (mut ecam, _, _) = ecam();
        assert_eq!(read(&mut ecam, slot(2), 4), 0xffff_ffff, "empty slot");
        assert_eq!(
            read(&mut ecam, 1 << FUNCTION_SHIFT, 4),
            0xffff_ffff,
            "function 1"
        );
        assert_eq!(read(&mut ecam, 0x100, 4), 0, "no extended capability");
        assert_eq!(read(&mut ecam, slot(2) + 0x100, 4), 0xffff_ffff);
        assert_eq!(read(&mut ecam, 1 << BUS_SHIFT, 4), 0xffff_ffff, "bus 1");
        assert_eq!(read(&mut ecam, 2, 4), 0xffff_ffff, "crosses a dword");
        assert_eq!(
            read(&mut ecam, 0, 8),
            0xffff_ffff_ffff_ffff,
            "8-byte access"
        );
    }

    #[test]
    fn writes_reach_the_function_once_and_only_in_its_conventional_space() {
        let (mut ecam, _, writes) = ecam();
        ecam.mmio_write(slot(1) + 0x10, &0xfeed_f00du32.to_le_bytes());
        ecam.mmio_write(slot(1) + 0x06, &0xabcdu16.to_le_bytes());
        ecam.mmio_write(slot(1) + 0x100, &[0xaa; 4]);
        ecam.mmio_write(slot(1) + (1 << FUNCTION_SHIFT), &[0xaa; 4]);
        ecam.mmio_write(slot(1) + 0x07, &[1, 2]);
        assert_eq!(
            writes.lock().unwrap().as_slice(),
            &[
                (4, 0, 0xfeed_f00du32.to_le_bytes().to_vec()),
                (1, 2, 0xabcdu16.to_le_bytes().to_vec()),
            ]
        );
    }
}
