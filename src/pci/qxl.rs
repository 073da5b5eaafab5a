//! The QXL device as a PCI function: BAR0 (RAM) and BAR1 (VRAM) are host memory mapped
//! straight into the guest, BAR2 is the ROM (read through MMIO exits), BAR3 the I/O ports
//! (port exits handed to the device), INTA# its interrupt. BARs follow the guest's
//! configuration writes: a guest that sizes or moves a BAR moves its mapping.

use std::sync::{Arc, Mutex, MutexGuard, Weak};

use log::{debug, warn};
use ringvisor_devices::qxl::layout::{
    IO_PORT_COUNT, QXL_DEVICE_ID, QXL_REVISION, QXL_VENDOR_ID, ROM_SIZE,
};
use ringvisor_devices::qxl::{BarMemory, BarPlacement, QxlDevice};

use crate::mmio_bus::{MmioBus, MmioDevice, MmioRegionId};
use crate::pci::{
    DeviceMemoryMapper, PciClass, PciConfigError, PciConfiguration, PciFunction, PciHeader,
    PciRootBus, BAR0_REGISTER, BAR_COUNT, COMMAND_BUS_MASTER, COMMAND_IO_SPACE,
    COMMAND_MEMORY_SPACE,
};
use crate::pio_bus::{IoPortRegions, PioDevice};

const RAM_BAR: usize = 0;
const VRAM_BAR: usize = 1;
const ROM_BAR: usize = 2;
const IO_BAR: usize = 3;
const COMMAND_REGISTER: usize = 1;
/// INTA#.
const INTERRUPT_PIN_A: u8 = 1;

#[derive(Debug, thiserror::Error)]
pub enum QxlPciError {
    #[error(transparent)]
    Config(#[from] PciConfigError),
    #[error("every PCI slot on the root bus is taken")]
    NoFreeSlot,
}

/// Where firmware put the BARs.
#[derive(Debug, Clone, Copy)]
pub struct QxlBars {
    pub ram: u32,
    pub vram: u32,
    pub rom: u32,
    pub io_port: u16,
}

/// What the BARs are decoded at now, with the hypervisor handles of the memory maps.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Decoded {
    ram: Option<(u64, u32)>,
    vram: Option<(u64, u32)>,
    rom: Option<u64>,
    io: Option<u16>,
}

pub struct QxlPciFunction {
    config: PciConfiguration,
    device: Arc<QxlDevice>,
    memory: Arc<dyn DeviceMemoryMapper>,
    mmio: Weak<MmioBus>,
    rom_region: MmioRegionId,
    ports: Arc<IoPortRegions>,
    port_device: Arc<dyn PioDevice>,
    decoded: Decoded,
}

/// The ROM BAR's reads.
struct QxlRom(Arc<QxlDevice>);

impl MmioDevice for QxlRom {
    fn mmio_read(&mut self, offset: u64, data: &mut [u8]) {
        let rom = self.0.rom();
        for (i, byte) in data.iter_mut().enumerate() {
            *byte = usize::try_from(offset)
                .ok()
                .and_then(|o| o.checked_add(i))
                .and_then(|o| rom.get(o))
                .copied()
                .unwrap_or(0);
        }
    }

    fn mmio_write(&mut self, _offset: u64, _data: &[u8]) {}
}

/// The I/O BAR: Linux writes bytes (outb); the value is the slot or surface id.
struct QxlPorts(Arc<QxlDevice>);

impl PioDevice for QxlPorts {
    fn pio_read(&self, _offset: u16, data: &mut [u8]) {
        data.fill(0xff);
    }

    fn pio_write(&self, offset: u16, data: &[u8]) {
        let mut value = [0u8; 4];
        let len = data.len().min(4);
        value[..len].copy_from_slice(&data[..len]);
        self.0.io_write(offset, u32::from_le_bytes(value));
    }
}

fn lock(function: &Mutex<QxlPciFunction>) -> MutexGuard<'_, QxlPciFunction> {
    function.lock().unwrap_or_else(|p| p.into_inner())
}

/// The configuration-space face on the root bus.
struct QxlConfigSpace(Arc<Mutex<QxlPciFunction>>);

impl PciFunction for QxlConfigSpace {
    fn read_config_register(&self, register: usize) -> u32 {
        lock(&self.0).config.read_register(register)
    }

    fn write_config_register(&mut self, register: usize, offset: u8, data: &[u8]) {
        let mut function = lock(&self.0);
        function.config.write_register(register, offset, data);
        if register == COMMAND_REGISTER
            || (BAR0_REGISTER..BAR0_REGISTER + BAR_COUNT).contains(&register)
        {
            function.sync_decoding();
        }
    }
}

/// Puts the QXL device on the root bus with its BARs at `bars` and decoding on, its
/// interrupt pin routed to `irq_line`. Returns the slot.
#[allow(clippy::too_many_arguments)]
pub fn plug_qxl(
    device: Arc<QxlDevice>,
    bars: QxlBars,
    irq_line: u8,
    memory: Arc<dyn DeviceMemoryMapper>,
    root: &mut PciRootBus,
    mmio: &Arc<MmioBus>,
    ports: Arc<IoPortRegions>,
) -> Result<usize, QxlPciError> {
    let mut config = PciConfiguration::new(PciHeader {
        vendor_id: QXL_VENDOR_ID,
        device_id: QXL_DEVICE_ID,
        class: PciClass::Other(0x03, 0x00, 0x00), // display: VGA-compatible
        revision: QXL_REVISION,
        subsystem_vendor_id: 0x1af4,
        subsystem_id: 0x1100,
    });
    config.add_memory_bar32(RAM_BAR, bar_size(device.ram_bar()), bars.ram)?;
    config.add_memory_bar32(VRAM_BAR, bar_size(device.vram_bar()), bars.vram)?;
    config.add_memory_bar32(ROM_BAR, ROM_SIZE as u32, bars.rom)?;
    config.add_io_bar(IO_BAR, IO_PORT_COUNT, bars.io_port)?;
    config.set_interrupt(INTERRUPT_PIN_A, irq_line);
    config.set_command(COMMAND_IO_SPACE | COMMAND_MEMORY_SPACE | COMMAND_BUS_MASTER);
    let rom_region = mmio.register(Arc::new(Mutex::new(QxlRom(device.clone()))));
    let function = Arc::new(Mutex::new(QxlPciFunction {
        config,
        port_device: Arc::new(QxlPorts(device.clone())),
        device,
        memory,
        mmio: Arc::downgrade(mmio),
        rom_region,
        ports,
        decoded: Decoded::default(),
    }));
    lock(&function).sync_decoding();
    match root.add(Box::new(QxlConfigSpace(function.clone()))) {
        Some(slot) => Ok(slot),
        None => {
            lock(&function).undecode_all();
            Err(QxlPciError::NoFreeSlot)
        }
    }
}

fn bar_size(bar: &BarMemory) -> u32 {
    // QxlDevice checked it: a power of two of at most 1 GiB.
    bar.size() as u32
}

impl QxlPciFunction {
    fn wanted(&self) -> (Option<u64>, Option<u64>, Option<u64>, Option<u16>) {
        let memory = self.config.memory_enabled();
        let mem_bar = |index| memory.then(|| self.config.bar_address(index)).flatten();
        let io = self
            .config
            .io_enabled()
            .then(|| self.config.bar_address(IO_BAR))
            .flatten()
            .and_then(|port| u16::try_from(port).ok());
        (mem_bar(RAM_BAR), mem_bar(VRAM_BAR), mem_bar(ROM_BAR), io)
    }

    /// Makes every BAR's mapping match the command register and the BAR registers.
    fn sync_decoding(&mut self) {
        let (ram, vram, rom, io) = self.wanted();
        if ram != self.decoded.ram.map(|(at, _)| at) {
            self.decoded.ram = self.remap_memory(self.decoded.ram, ram, true);
        }
        if vram != self.decoded.vram.map(|(at, _)| at) {
            self.decoded.vram = self.remap_memory(self.decoded.vram, vram, false);
        }
        if rom != self.decoded.rom {
            self.decoded.rom = None;
            if let Some(bus) = self.mmio.upgrade() {
                bus.unmap(self.rom_region);
                if let Some(base) = rom {
                    match bus.map(self.rom_region, base, ROM_SIZE) {
                        Ok(()) => self.decoded.rom = Some(base),
                        Err(err) => warn!("qxl: ROM BAR at {base:#x} not decoded: {err}"),
                    }
                }
            }
        }
        if io != self.decoded.io {
            if let Some(old) = self.decoded.io.take() {
                self.ports.unmap(old);
            }
            if let Some(port) = io {
                if self
                    .ports
                    .map(port, IO_PORT_COUNT, self.port_device.clone())
                {
                    self.decoded.io = Some(port);
                } else {
                    warn!("qxl: I/O BAR at port {port:#x} overlaps another device");
                }
            }
        }
        self.device.set_bar_placement(BarPlacement {
            ram: self.decoded.ram.map(|(at, _)| at),
            vram: self.decoded.vram.map(|(at, _)| at),
        });
    }

    fn remap_memory(
        &self,
        current: Option<(u64, u32)>,
        wanted: Option<u64>,
        ram: bool,
    ) -> Option<(u64, u32)> {
        if let Some((at, handle)) = current {
            if let Err(err) = self.memory.unmap_device_memory(handle) {
                warn!("qxl: cannot unmap the BAR at {at:#x}: {err}");
            }
        }
        let at = wanted?;
        let bar = if ram {
            self.device.ram_bar()
        } else {
            self.device.vram_bar()
        };
        let host = bar.host_address()? as usize;
        // SAFETY: the BAR's memory belongs to the device, which this function keeps alive
        // (and never unmaps) for as long as the mapping exists; it is plain anonymous
        // memory shared with the guest by design.
        match unsafe { self.memory.map_device_memory(at, host, bar.size()) } {
            Ok(handle) => {
                debug!("qxl: {} BAR at {at:#x}", if ram { "RAM" } else { "VRAM" });
                Some((at, handle))
            }
            Err(err) => {
                warn!("qxl: cannot map the BAR at {at:#x}: {err}");
                None
            }
        }
    }

    fn undecode_all(&mut self) {
        self.config.set_command(0);
        self.sync_decoding();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pci::VmEventError;
    use ringvisor_devices::qxl::QxlConfig;
    use ringvisor_io::IrqEvent;
    use vm_memory::{GuestAddress, GuestMemoryMmap};

    /// Records the device memory maps (guest address -> length) like a hypervisor would.
    #[derive(Default)]
    struct RecordingMaps {
        live: Mutex<std::collections::BTreeMap<u32, (u64, u64)>>,
        next: Mutex<u32>,
    }

    impl DeviceMemoryMapper for RecordingMaps {
        unsafe fn map_device_memory(
            &self,
            guest_addr: u64,
            _host: usize,
            len: u64,
        ) -> Result<u32, VmEventError> {
            let mut next = self.next.lock().unwrap();
            *next += 1;
            self.live.lock().unwrap().insert(*next, (guest_addr, len));
            Ok(*next)
        }

        fn unmap_device_memory(&self, handle: u32) -> Result<(), VmEventError> {
            self.live.lock().unwrap().remove(&handle);
            Ok(())
        }
    }

    impl RecordingMaps {
        fn addresses(&self) -> Vec<u64> {
            let mut at: Vec<u64> = self.live.lock().unwrap().values().map(|v| v.0).collect();
            at.sort_unstable();
            at
        }
    }

    struct Plugged {
        root: PciRootBus,
        slot: usize,
        mmio: Arc<MmioBus>,
        ports: Arc<IoPortRegions>,
        maps: Arc<RecordingMaps>,
        device: Arc<QxlDevice>,
    }

    const BARS: QxlBars = QxlBars {
        ram: 0xc000_0000,
        vram: 0xc400_0000,
        rom: 0xc800_0000,
        io_port: 0xc000,
    };

    fn plugged() -> Plugged {
        let guest = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        let config = QxlConfig {
            ram_size: 1 << 20,
            vram_size: 1 << 20,
            ..QxlConfig::default()
        };
        let device = Arc::new(QxlDevice::new(&config, guest, IrqEvent::new().unwrap()).unwrap());
        let mut root = PciRootBus::new();
        let mmio = Arc::new(MmioBus::new());
        let ports = Arc::new(IoPortRegions::default());
        let maps = Arc::new(RecordingMaps::default());
        let slot = plug_qxl(
            device.clone(),
            BARS,
            16,
            maps.clone(),
            &mut root,
            &mmio,
            ports.clone(),
        )
        .unwrap();
        Plugged {
            root,
            slot,
            mmio,
            ports,
            maps,
            device,
        }
    }

    impl Plugged {
        fn read(&self, register: usize) -> u32 {
            self.root
                .function(self.slot)
                .unwrap()
                .read_config_register(register)
        }

        fn write(&mut self, register: usize, value: u32) {
            self.root
                .function_mut(self.slot)
                .unwrap()
                .write_config_register(register, 0, &value.to_le_bytes());
        }
    }

    #[test]
    fn identifies_as_qxl_with_four_bars_and_inta() {
        let p = plugged();
        assert_eq!(p.read(0), 0x0100_1b36);
        assert_eq!(p.read(2), 0x0300_0005, "VGA class, revision 5");
        assert_eq!(p.read(BAR0_REGISTER), BARS.ram);
        assert_eq!(p.read(BAR0_REGISTER + 1), BARS.vram);
        assert_eq!(p.read(BAR0_REGISTER + 2), BARS.rom);
        assert_eq!(p.read(BAR0_REGISTER + 3), u32::from(BARS.io_port) | 1);
        assert_eq!(p.read(15) & 0xffff, 0x0110, "INTA# on line 16");
        assert_eq!(
            p.maps.addresses(),
            vec![u64::from(BARS.ram), u64::from(BARS.vram)]
        );
        let mut magic = [0u8; 4];
        p.mmio.read(u64::from(BARS.rom), &mut magic);
        assert_eq!(&magic, b"QXRO");
    }

    #[test]
    fn sizing_and_moving_bars_moves_every_mapping() {
        let mut p = plugged();
        // Linux sizes with decoding off: everything goes away.
        p.write(COMMAND_REGISTER, 0);
        assert!(p.maps.addresses().is_empty());
        p.write(BAR0_REGISTER, u32::MAX);
        assert_eq!(p.read(BAR0_REGISTER), 0xfff0_0000, "1 MiB RAM BAR");
        p.write(BAR0_REGISTER + 3, u32::MAX);
        assert_eq!(p.read(BAR0_REGISTER + 3), 0xffe1, "32 ports");
        let mut magic = [0u8; 4];
        p.mmio.read(u64::from(BARS.rom), &mut magic);
        assert_eq!(magic, [0xff; 4], "ROM not decoded");
        // New places, decoding back on.
        p.write(BAR0_REGISTER, 0xd000_0000);
        p.write(BAR0_REGISTER + 1, BARS.vram);
        p.write(BAR0_REGISTER + 2, 0xd800_0000);
        p.write(BAR0_REGISTER + 3, 0xd000);
        p.write(
            COMMAND_REGISTER,
            u32::from(COMMAND_IO_SPACE | COMMAND_MEMORY_SPACE),
        );
        assert_eq!(p.maps.addresses(), vec![u64::from(BARS.vram), 0xd000_0000]);
        p.mmio.read(0xd800_0000, &mut magic);
        assert_eq!(&magic, b"QXRO");
        // The ports decode at the new base: a reset reaches the device.
        let before = p.device.handle().stats().resets;
        let bus = crate::pio_bus::PortIoBus::with_pci_io(
            ringvisor_devices::legacy::SerialPort::new(
                IrqEvent::new().unwrap(),
                Box::new(std::io::sink()) as crate::pio_bus::ConsoleSink,
            ),
            crate::pci::PciConfigIo::new(PciRootBus::new()),
            p.ports.clone(),
        );
        bus.write(0xd000 + 5, &[0]);
        bus.write(BARS.io_port + 5, &[0]);
        assert_eq!(p.device.handle().stats().resets, before + 1);
    }
}
