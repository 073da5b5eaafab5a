//! A type-0 PCI configuration header with per-bit write masks, so guest writes can only change
//! what real hardware lets them change.

pub const CONFIG_REGISTERS: usize = 64;

const VENDOR_DEVICE: usize = 0;
const COMMAND_STATUS: usize = 1;
const CLASS_REVISION: usize = 2;
const HEADER_TYPE: usize = 3;
const SUBSYSTEM: usize = 11;
const INTERRUPT_LINE_PIN: usize = 15;

/// Memory space, I/O space and bus-master enables.
const COMMAND_WRITABLE: u32 = 0x0007;
const INTERRUPT_LINE_WRITABLE: u32 = 0x0000_00ff;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PciClass {
    /// Host bridge: class 0x06, subclass 0x00.
    HostBridge,
    /// Any class given as (class, subclass, programming interface).
    Other(u8, u8, u8),
}

impl PciClass {
    fn code(self) -> (u8, u8, u8) {
        match self {
            PciClass::HostBridge => (0x06, 0x00, 0x00),
            PciClass::Other(class, subclass, prog_if) => (class, subclass, prog_if),
        }
    }
}

/// Identification of a function, written once at creation.
#[derive(Debug, Clone, Copy)]
pub struct PciHeader {
    pub vendor_id: u16,
    pub device_id: u16,
    pub class: PciClass,
    pub revision: u8,
    pub subsystem_vendor_id: u16,
    pub subsystem_id: u16,
}

#[derive(Debug, Clone)]
pub struct PciConfiguration {
    registers: [u32; CONFIG_REGISTERS],
    writable: [u32; CONFIG_REGISTERS],
}

impl PciConfiguration {
    pub fn new(header: PciHeader) -> Self {
        let mut registers = [0u32; CONFIG_REGISTERS];
        let mut writable = [0u32; CONFIG_REGISTERS];
        let (class, subclass, prog_if) = header.class.code();
        registers[VENDOR_DEVICE] = u32::from(header.device_id) << 16 | u32::from(header.vendor_id);
        registers[CLASS_REVISION] = u32::from(class) << 24
            | u32::from(subclass) << 16
            | u32::from(prog_if) << 8
            | u32::from(header.revision);
        registers[HEADER_TYPE] = 0; // type 0, single function
        registers[SUBSYSTEM] =
            u32::from(header.subsystem_id) << 16 | u32::from(header.subsystem_vendor_id);
        writable[COMMAND_STATUS] = COMMAND_WRITABLE;
        writable[INTERRUPT_LINE_PIN] = INTERRUPT_LINE_WRITABLE;
        Self {
            registers,
            writable,
        }
    }

    pub fn read_register(&self, register: usize) -> u32 {
        self.registers.get(register).copied().unwrap_or(0xffff_ffff)
    }

    /// Applies a 1-, 2- or 4-byte write at `offset` bytes into `register`; other widths and
    /// misaligned accesses are ignored, as on real hardware.
    pub fn write_register(&mut self, register: usize, offset: u8, data: &[u8]) {
        let Some(current) = self.registers.get(register).copied() else {
            return;
        };
        let offset = u32::from(offset);
        let (value, mask) = match data {
            [b] => (u32::from(*b), 0xffu32),
            [a, b] if offset % 2 == 0 => (u32::from(u16::from_le_bytes([*a, *b])), 0xffff),
            [a, b, c, d] if offset == 0 => (u32::from_le_bytes([*a, *b, *c, *d]), 0xffff_ffff),
            _ => return,
        };
        if offset > 3 {
            return;
        }
        let shift = offset * 8;
        let mask = (mask << shift) & self.writable[register];
        self.registers[register] = (current & !mask) | ((value << shift) & mask);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bridge() -> PciConfiguration {
        PciConfiguration::new(PciHeader {
            vendor_id: 0x8086,
            device_id: 0x0d57,
            class: PciClass::HostBridge,
            revision: 1,
            subsystem_vendor_id: 0x1af4,
            subsystem_id: 0x1100,
        })
    }

    #[test]
    fn identification_is_read_only() {
        let mut config = bridge();
        assert_eq!(config.read_register(VENDOR_DEVICE), 0x0d57_8086);
        config.write_register(VENDOR_DEVICE, 0, &[0, 0, 0, 0]);
        assert_eq!(config.read_register(VENDOR_DEVICE), 0x0d57_8086);
        assert_eq!(config.read_register(CLASS_REVISION) >> 16, 0x0600);
    }

    #[test]
    fn command_register_takes_only_its_writable_bits() {
        let mut config = bridge();
        config.write_register(COMMAND_STATUS, 0, &[0xff, 0xff]);
        assert_eq!(config.read_register(COMMAND_STATUS), COMMAND_WRITABLE);
        config.write_register(INTERRUPT_LINE_PIN, 0, &[0x0b]);
        assert_eq!(config.read_register(INTERRUPT_LINE_PIN) & 0xff, 0x0b);
    }

    #[test]
    fn odd_widths_and_out_of_range_registers_are_ignored() {
        let mut config = bridge();
        config.write_register(COMMAND_STATUS, 1, &[0xff, 0xff]);
        config.write_register(COMMAND_STATUS, 0, &[1, 2, 3]);
        config.write_register(CONFIG_REGISTERS + 5, 0, &[1]);
        assert_eq!(config.read_register(COMMAND_STATUS), 0);
        assert_eq!(config.read_register(CONFIG_REGISTERS + 5), 0xffff_ffff);
    }
}
