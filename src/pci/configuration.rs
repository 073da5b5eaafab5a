//! A type-0 PCI configuration header with per-bit write masks, so guest writes can only change
//! what real hardware lets them change: BAR sizing (write all-ones, read the size mask back)
//! and the capability list fall out of the same masks.

pub const CONFIG_REGISTERS: usize = 64;
/// Byte size of the configuration space a type-0 header plus capabilities can use.
pub const CONFIG_SPACE_SIZE: usize = CONFIG_REGISTERS * 4;

const VENDOR_DEVICE: usize = 0;
const COMMAND_STATUS: usize = 1;
const CLASS_REVISION: usize = 2;
const HEADER_TYPE: usize = 3;
/// Registers 4..10 are the six BARs.
pub const BAR0_REGISTER: usize = 4;
pub const BAR_COUNT: usize = 6;
const SUBSYSTEM: usize = 11;
const CAPABILITIES_POINTER_OFFSET: usize = 0x34;
const INTERRUPT_LINE_PIN: usize = 15;
/// The first byte after the standard header: capabilities live from here to the end.
const FIRST_CAPABILITY_OFFSET: usize = 0x40;

/// Memory space, I/O space and bus-master enables.
const COMMAND_WRITABLE: u32 = 0x0007;
pub const COMMAND_MEMORY_SPACE: u16 = 0x0002;
pub const COMMAND_BUS_MASTER: u16 = 0x0004;
/// Status register bit 4: the capability pointer at 0x34 is valid.
const STATUS_CAPABILITIES_LIST: u32 = 1 << (16 + 4);
const INTERRUPT_LINE_WRITABLE: u32 = 0x0000_00ff;
/// BAR low-dword type bits: memory space, 64-bit decoder.
const BAR_MEMORY_64: u32 = 0b100;
/// BAR type bit 0: I/O space.
const BAR_IO: u32 = 0b1;
/// Command register bit 0: I/O space decoding.
pub const COMMAND_IO_SPACE: u16 = 0x0001;

/// How a BAR decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum BarKind {
    #[default]
    Unused,
    /// The low half of a 64-bit memory BAR.
    Memory64,
    Memory32,
    Io,
}

/// Mistakes in how the VMM builds a header; never caused by the guest.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PciConfigError {
    #[error("BAR {index} cannot hold a 64-bit BAR (needs an even index below 5, unused)")]
    BarIndex { index: usize },
    #[error("BAR size {size:#x} is not a power of two between 16 bytes and 2 GiB")]
    BarSize { size: u64 },
    #[error("BAR address {address:#x} is not aligned to its size {size:#x}")]
    BarAlignment { address: u64, size: u64 },
    #[error("no room for a {len}-byte capability in configuration space")]
    CapabilityFull { len: usize },
    #[error("a capability needs at least its ID and next-pointer bytes")]
    CapabilityTooShort,
}

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
    /// Sizes of the BARs, indexed by their first register.
    bar_sizes: [u64; BAR_COUNT],
    bar_kinds: [BarKind; BAR_COUNT],
    /// Byte offset of the last capability, whose next pointer the next one patches.
    last_capability: Option<usize>,
    next_capability: usize,
}

#[derive(Clone, Copy)]
enum Field {
    Value,
    Writable,
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
            bar_sizes: [0; BAR_COUNT],
            bar_kinds: [BarKind::Unused; BAR_COUNT],
            last_capability: None,
            next_capability: FIRST_CAPABILITY_OFFSET,
        }
    }

    pub fn read_register(&self, register: usize) -> u32 {
        self.registers.get(register).copied().unwrap_or(0xffff_ffff)
    }

    /// Sets the command register as firmware leaves it (e.g. memory decoding on).
    pub fn set_command(&mut self, command: u16) {
        let status = self.registers[COMMAND_STATUS] & 0xffff_0000;
        self.registers[COMMAND_STATUS] = status | u32::from(command);
    }

    pub fn command(&self) -> u16 {
        self.registers[COMMAND_STATUS] as u16
    }

    pub fn memory_enabled(&self) -> bool {
        self.command() & COMMAND_MEMORY_SPACE != 0
    }

    /// Declares a non-prefetchable 64-bit memory BAR in registers `index` and `index + 1`,
    /// placed at `address` as firmware would. Its low bits read back as its type and a
    /// guest writing all-ones reads back the size mask.
    pub fn add_memory_bar64(
        &mut self,
        index: usize,
        size: u64,
        address: u64,
    ) -> Result<(), PciConfigError> {
        if index % 2 != 0
            || index + 1 >= BAR_COUNT
            || self.bar_kinds[index] != BarKind::Unused
            || self.bar_kinds[index + 1] != BarKind::Unused
        {
            return Err(PciConfigError::BarIndex { index });
        }
        if !size.is_power_of_two() || !(16..=1 << 31).contains(&size) {
            return Err(PciConfigError::BarSize { size });
        }
        if address % size != 0 {
            return Err(PciConfigError::BarAlignment { address, size });
        }
        let low = BAR0_REGISTER + index;
        self.bar_sizes[index] = size;
        self.bar_kinds[index] = BarKind::Memory64;
        self.writable[low] = !(size as u32 - 1) & !0xf;
        self.writable[low + 1] = 0xffff_ffff;
        self.registers[low] = (address as u32 & !0xf) | BAR_MEMORY_64;
        self.registers[low + 1] = (address >> 32) as u32;
        Ok(())
    }

    /// Declares a non-prefetchable 32-bit memory BAR in register `index`, at `address`.
    pub fn add_memory_bar32(
        &mut self,
        index: usize,
        size: u32,
        address: u32,
    ) -> Result<(), PciConfigError> {
        self.add_single_bar(
            index,
            u64::from(size),
            u64::from(address),
            BarKind::Memory32,
        )
    }

    /// Declares an I/O BAR of `size` ports (4 to 256, a power of two) in register
    /// `index`, at port `port`.
    pub fn add_io_bar(&mut self, index: usize, size: u16, port: u16) -> Result<(), PciConfigError> {
        self.add_single_bar(index, u64::from(size), u64::from(port), BarKind::Io)
    }

    fn add_single_bar(
        &mut self,
        index: usize,
        size: u64,
        address: u64,
        kind: BarKind,
    ) -> Result<(), PciConfigError> {
        if index >= BAR_COUNT || self.bar_kinds[index] != BarKind::Unused {
            return Err(PciConfigError::BarIndex { index });
        }
        let sizes = match kind {
            BarKind::Io => 4..=256,
            _ => 16..=1 << 31,
        };
        if !size.is_power_of_two() || !sizes.contains(&size) {
            return Err(PciConfigError::BarSize { size });
        }
        if address % size != 0 {
            return Err(PciConfigError::BarAlignment { address, size });
        }
        let register = BAR0_REGISTER + index;
        let (type_bits, low_bits) = match kind {
            BarKind::Io => (BAR_IO, 0x3),
            _ => (0, 0xf),
        };
        self.bar_sizes[index] = size;
        self.bar_kinds[index] = kind;
        // An I/O BAR decodes 16 address bits: the upper half reads back as zero.
        let decoded = if kind == BarKind::Io {
            0xffff
        } else {
            u32::MAX
        };
        self.writable[register] = !(size as u32 - 1) & !low_bits & decoded;
        self.registers[register] = (address as u32 & !low_bits) | type_bits;
        Ok(())
    }

    /// The address (or first port) the guest (or firmware) programmed in BAR `index`.
    pub fn bar_address(&self, index: usize) -> Option<u64> {
        let low = BAR0_REGISTER + index;
        match *self.bar_kinds.get(index)? {
            BarKind::Unused => None,
            BarKind::Memory64 => {
                let address =
                    u64::from(self.registers[low + 1]) << 32 | u64::from(self.registers[low]);
                Some(address & !0xf)
            }
            BarKind::Memory32 => Some(u64::from(self.registers[low] & !0xf)),
            BarKind::Io => Some(u64::from(self.registers[low] & !0x3)),
        }
    }

    pub fn io_enabled(&self) -> bool {
        self.command() & COMMAND_IO_SPACE != 0
    }

    /// Declares the function's interrupt pin (1 = INTA#) and the line firmware routed
    /// it to; the guest may rewrite the line register, never the pin.
    pub fn set_interrupt(&mut self, pin: u8, line: u8) {
        self.registers[INTERRUPT_LINE_PIN] = u32::from(pin) << 8 | u32::from(line);
    }

    pub fn bar_size(&self, index: usize) -> Option<u64> {
        self.bar_sizes.get(index).copied().filter(|size| *size != 0)
    }

    /// Appends a capability to the list at 0x34. `body` starts with the capability ID; its
    /// second byte (next pointer) is filled in here. `writable` is a per-byte mask of what
    /// the guest may change (empty: read-only). Returns the capability's byte offset.
    pub fn add_capability(
        &mut self,
        body: &[u8],
        writable: &[u8],
    ) -> Result<usize, PciConfigError> {
        if body.len() < 2 {
            return Err(PciConfigError::CapabilityTooShort);
        }
        let offset = self.next_capability;
        let end = offset + body.len();
        if end > CONFIG_SPACE_SIZE {
            return Err(PciConfigError::CapabilityFull { len: body.len() });
        }
        for (i, byte) in body.iter().enumerate() {
            let value = if i == 1 { 0 } else { *byte };
            self.set_byte(Field::Value, offset + i, value);
            self.set_byte(
                Field::Writable,
                offset + i,
                writable.get(i).copied().unwrap_or(0),
            );
        }
        match self.last_capability {
            Some(last) => self.set_byte(Field::Value, last + 1, offset as u8),
            None => {
                self.set_byte(Field::Value, CAPABILITIES_POINTER_OFFSET, offset as u8);
                self.registers[COMMAND_STATUS] |= STATUS_CAPABILITIES_LIST;
            }
        }
        self.last_capability = Some(offset);
        // Capabilities are dword-aligned (the low two pointer bits are reserved).
        self.next_capability = end.next_multiple_of(4);
        Ok(offset)
    }

    /// Reads the byte at `offset` of configuration space.
    pub fn read_byte(&self, offset: usize) -> u8 {
        (self.read_register(offset / 4) >> ((offset % 4) * 8)) as u8
    }

    /// Sets a byte of configuration space directly (VMM side, ignoring write masks), for
    /// registers whose value the device model owns.
    pub fn store_byte(&mut self, offset: usize, value: u8) {
        self.set_byte(Field::Value, offset, value);
    }

    fn set_byte(&mut self, field: Field, offset: usize, value: u8) {
        let array = match field {
            Field::Value => &mut self.registers,
            Field::Writable => &mut self.writable,
        };
        if let Some(register) = array.get_mut(offset / 4) {
            let shift = (offset % 4) * 8;
            *register = (*register & !(0xff << shift)) | (u32::from(value) << shift);
        }
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

    #[test]
    fn bar_sizing_reads_back_the_size_mask_and_type() {
        let mut config = bridge();
        config.add_memory_bar64(0, 0x1_0000, 0xc000_0000).unwrap();
        assert_eq!(config.read_register(BAR0_REGISTER), 0xc000_0004);
        assert_eq!(config.bar_address(0), Some(0xc000_0000));
        config.write_register(BAR0_REGISTER, 0, &[0xff; 4]);
        config.write_register(BAR0_REGISTER + 1, 0, &[0xff; 4]);
        assert_eq!(config.read_register(BAR0_REGISTER), 0xffff_0004);
        assert_eq!(config.read_register(BAR0_REGISTER + 1), 0xffff_ffff);
        config.write_register(BAR0_REGISTER, 0, &0xd001_2345u32.to_le_bytes());
        config.write_register(BAR0_REGISTER + 1, 0, &1u32.to_le_bytes());
        assert_eq!(config.bar_address(0), Some(0x1_d001_0000));
        // Unimplemented BARs stay zero, whatever the guest writes.
        config.write_register(BAR0_REGISTER + 2, 0, &[0xff; 4]);
        assert_eq!(config.read_register(BAR0_REGISTER + 2), 0);
        assert_eq!(config.bar_address(2), None);
    }

    #[test]
    fn bars_of_32_bits_and_io_bars_size_and_move() {
        let mut config = bridge();
        config.add_memory_bar32(0, 0x10_0000, 0xc010_0000).unwrap();
        config.add_io_bar(3, 32, 0xc040).unwrap();
        assert_eq!(config.read_register(BAR0_REGISTER), 0xc010_0000);
        assert_eq!(config.read_register(BAR0_REGISTER + 3), 0xc041);
        config.write_register(BAR0_REGISTER, 0, &[0xff; 4]);
        assert_eq!(config.read_register(BAR0_REGISTER), 0xfff0_0000);
        config.write_register(BAR0_REGISTER + 3, 0, &[0xff; 4]);
        assert_eq!(config.read_register(BAR0_REGISTER + 3), 0xffe1);
        config.write_register(BAR0_REGISTER + 3, 0, &0xd000u32.to_le_bytes());
        assert_eq!(config.bar_address(3), Some(0xd000));
        assert_eq!(config.bar_address(1), None);
        assert_eq!(
            config.add_io_bar(3, 32, 0),
            Err(PciConfigError::BarIndex { index: 3 })
        );
        assert_eq!(
            config.add_io_bar(4, 512, 0),
            Err(PciConfigError::BarSize { size: 512 })
        );
        assert_eq!(
            config.add_memory_bar64(2, 0x1000, 0),
            Err(PciConfigError::BarIndex { index: 2 }),
            "a 64-bit BAR may not overlap BAR 3"
        );
        config.set_interrupt(1, 16);
        config.write_register(15, 0, &[0xff, 0xff]);
        assert_eq!(
            config.read_register(15) & 0xffff,
            0x01ff,
            "pin stays, line is the guest's"
        );
    }

    #[test]
    fn bad_bars_are_refused() {
        let mut config = bridge();
        assert_eq!(
            config.add_memory_bar64(1, 0x1000, 0),
            Err(PciConfigError::BarIndex { index: 1 })
        );
        assert_eq!(
            config.add_memory_bar64(0, 0x1800, 0),
            Err(PciConfigError::BarSize { size: 0x1800 })
        );
        assert_eq!(
            config.add_memory_bar64(0, 0x1000, 0x800),
            Err(PciConfigError::BarAlignment {
                address: 0x800,
                size: 0x1000
            })
        );
        config.add_memory_bar64(4, 0x1000, 0).unwrap();
        assert!(config.add_memory_bar64(4, 0x1000, 0).is_err());
    }

    #[test]
    fn capabilities_chain_from_0x34_with_their_write_masks() {
        let mut config = bridge();
        assert_eq!(
            config.read_register(COMMAND_STATUS) & STATUS_CAPABILITIES_LIST,
            0
        );
        let first = config.add_capability(&[0x09, 0xee, 3, 0xaa], &[]).unwrap();
        let second = config
            .add_capability(&[0x11, 0, 0x12, 0x34, 0x56], &[0, 0, 0xff, 0x0f])
            .unwrap();
        assert_eq!((first, second), (0x40, 0x44));
        assert_ne!(
            config.read_register(COMMAND_STATUS) & STATUS_CAPABILITIES_LIST,
            0
        );
        assert_eq!(config.read_byte(CAPABILITIES_POINTER_OFFSET), 0x40);
        assert_eq!(config.read_byte(0x41), 0x44, "next pointer patched");
        assert_eq!(config.read_byte(0x45), 0, "end of list");
        config.write_register(0x44 / 4, 2, &[0xab, 0xff]);
        assert_eq!(config.read_byte(0x46), 0xab);
        assert_eq!(config.read_byte(0x47), 0x3f);
        config.write_register(0x40 / 4, 3, &[0]);
        assert_eq!(config.read_byte(0x43), 0xaa, "read-only capability byte");
        assert_eq!(
            config.add_capability(&[0; 200], &[]),
            Err(PciConfigError::CapabilityFull { len: 200 })
        );
    }
}
