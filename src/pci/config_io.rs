//! PCI configuration mechanism #1: a 32-bit address register at 0xCF8 selects
//! bus/device/function/register, and 0xCFC..0xCFF move the data.

use std::sync::{Arc, Mutex};

use super::{lock_bus, PciRootBus, SharedPciRootBus, PCI_SLOTS};

pub const PCI_CONFIG_IO_PORT: u16 = 0xcf8;
pub const PCI_CONFIG_IO_PORT_COUNT: u16 = 8;

const ENABLE_BIT: u32 = 1 << 31;
const DATA_OFFSET: u16 = 4;

pub struct PciConfigIo {
    address: u32,
    bus: SharedPciRootBus,
}

/// Which function and register an enabled address selects (bus 0 only: no bridges).
struct Selection {
    slot: usize,
    function: u32,
    register: usize,
}

impl PciConfigIo {
    pub fn new(bus: PciRootBus) -> Self {
        Self {
            address: 0,
            bus: Arc::new(Mutex::new(bus)),
        }
    }

    /// The bus, for the ECAM to reach the same functions.
    pub fn bus(&self) -> SharedPciRootBus {
        Arc::clone(&self.bus)
    }

    fn selection(&self) -> Option<Selection> {
        if self.address & ENABLE_BIT == 0 {
            return None;
        }
        let bus = (self.address >> 16) & 0xff;
        let slot = ((self.address >> 11) & 0x1f) as usize;
        let function = (self.address >> 8) & 0x7;
        let register = ((self.address >> 2) & 0x3f) as usize;
        (bus == 0 && slot < PCI_SLOTS).then_some(Selection {
            slot,
            function,
            register,
        })
    }

    /// Port read at `offset` from 0xCF8; `data` is 1, 2 or 4 bytes.
    pub fn read(&self, offset: u16, data: &mut [u8]) {
        let value = match offset {
            0 if data.len() == 4 => self.address,
            DATA_OFFSET..=7 => self
                .selection()
                .map(|sel| lock_bus(&self.bus).read_config(sel.slot, sel.function, sel.register))
                .unwrap_or(0xffff_ffff),
            _ => 0xffff_ffff,
        };
        let shift = if offset >= DATA_OFFSET {
            u32::from(offset - DATA_OFFSET) * 8
        } else {
            0
        };
        let bytes = (value >> shift).to_le_bytes();
        let len = data.len().min(4);
        data[..len].copy_from_slice(&bytes[..len]);
    }

    /// Port write at `offset` from 0xCF8. Byte writes to 0xCF8..0xCFB are configuration
    /// mechanism #2 probes and must not disturb the address register.
    pub fn write(&mut self, offset: u16, data: &[u8]) {
        match offset {
            0 => {
                if let Ok(bytes) = <[u8; 4]>::try_from(data) {
                    self.address = u32::from_le_bytes(bytes);
                }
            }
            DATA_OFFSET..=7 => {
                let Some(sel) = self.selection() else {
                    return;
                };
                let byte_offset = (offset - DATA_OFFSET) as u8;
                lock_bus(&self.bus).write_config(
                    sel.slot,
                    sel.function,
                    sel.register,
                    byte_offset,
                    data,
                );
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pci::PciHostBridge;

    fn config_io() -> PciConfigIo {
        let mut bus = PciRootBus::new();
        assert_eq!(bus.add(Box::new(PciHostBridge::new())), Some(0));
        PciConfigIo::new(bus)
    }

    fn select(io: &mut PciConfigIo, slot: u32, register: u32) {
        io.write(0, &(ENABLE_BIT | slot << 11 | register << 2).to_le_bytes());
    }

    fn read32(io: &PciConfigIo) -> u32 {
        let mut data = [0u8; 4];
        io.read(DATA_OFFSET, &mut data);
        u32::from_le_bytes(data)
    }

    #[test]
    fn address_register_reads_back_like_linux_probes_it() {
        let mut io = config_io();
        io.write(3, &[0x01]); // mechanism #2 probe byte at 0xCFB
        io.write(0, &ENABLE_BIT.to_le_bytes());
        let mut data = [0u8; 4];
        io.read(0, &mut data);
        assert_eq!(u32::from_le_bytes(data), ENABLE_BIT);
    }

    #[test]
    fn host_bridge_is_enumerated_and_empty_slots_read_all_ones() {
        let mut io = config_io();
        select(&mut io, 0, 0);
        assert_eq!(read32(&io), 0x0d57_8086);
        select(&mut io, 0, 2);
        let mut class = [0u8; 2];
        io.read(DATA_OFFSET + 2, &mut class);
        assert_eq!(u16::from_le_bytes(class), 0x0600);
        select(&mut io, 5, 0);
        assert_eq!(read32(&io), 0xffff_ffff);
    }

    #[test]
    fn disabled_address_and_other_buses_select_nothing() {
        let mut io = config_io();
        io.write(0, &0u32.to_le_bytes());
        assert_eq!(read32(&io), 0xffff_ffff);
        io.write(0, &(ENABLE_BIT | 1 << 16).to_le_bytes());
        assert_eq!(read32(&io), 0xffff_ffff);
        io.write(DATA_OFFSET, &[0xff; 4]); // must not reach slot 0 of bus 0
        select(&mut io, 0, 1);
        assert_eq!(read32(&io), 0);
    }
}
