//! Port I/O dispatch: which legacy device answers which port.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use ringvisor_devices::legacy::acpi_pm::PM_REGISTER_COUNT;
use ringvisor_devices::legacy::reset_control::RESET_CONTROL_PORT;
use ringvisor_devices::legacy::{
    AcpiPmRegisters, CmosRtc, I8042ResetLine, ResetControl, SerialPort, I8042_PORT_COUNT,
    RTC_PORT_COUNT, SERIAL_PORT_COUNT,
};

use crate::layout::ACPI_PM_PORT;
use crate::pci::{PciConfigIo, PCI_CONFIG_IO_PORT, PCI_CONFIG_IO_PORT_COUNT};

pub const COM1_PORT: u16 = 0x3f8;
pub const I8042_PORT: u16 = 0x60;
pub const RTC_PORT: u16 = 0x70;

/// What the vCPU must do after a port write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PioAction {
    Continue,
    Reset,
    Poweroff,
}

pub type ConsoleSink = Box<dyn Write + Send>;

/// A device that decodes a range of ports (a PCI I/O BAR); offsets are from its base.
pub trait PioDevice: Send + Sync {
    fn pio_read(&self, offset: u16, data: &mut [u8]);
    fn pio_write(&self, offset: u16, data: &[u8]);
}

/// A decoded range: its length and who answers it.
type PortRange = (u16, Arc<dyn PioDevice>);

/// Port ranges that move with their PCI BARs, by base port.
#[derive(Default)]
pub struct IoPortRegions {
    ranges: RwLock<BTreeMap<u16, PortRange>>,
}

impl IoPortRegions {
    /// Decodes `[base, base + len)` for `device`; false when it overlaps another range
    /// or wraps past port 0xffff.
    pub fn map(&self, base: u16, len: u16, device: Arc<dyn PioDevice>) -> bool {
        let Some(end) = base.checked_add(len) else {
            return false;
        };
        let mut ranges = self.ranges.write().unwrap_or_else(|p| p.into_inner());
        let overlaps = ranges
            .range(..end)
            .next_back()
            .is_some_and(|(&other, &(other_len, _))| {
                u32::from(other) + u32::from(other_len) > u32::from(base)
            });
        if len == 0 || overlaps {
            return false;
        }
        ranges.insert(base, (len, device));
        true
    }

    pub fn unmap(&self, base: u16) {
        self.ranges
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&base);
    }

    fn lookup(&self, port: u16) -> Option<(u16, Arc<dyn PioDevice>)> {
        let ranges = self.ranges.read().unwrap_or_else(|p| p.into_inner());
        let (&base, (len, device)) = ranges.range(..=port).next_back()?;
        within(port, base, *len).map(|offset| (offset, device.clone()))
    }
}

/// The legacy port space. Each device sits behind its own lock: port I/O is the slow path
/// and vCPUs rarely contend on it.
pub struct PortIoBus {
    serial: Mutex<SerialPort<ConsoleSink>>,
    i8042: Mutex<I8042ResetLine>,
    rtc: Mutex<CmosRtc>,
    acpi_pm: Mutex<AcpiPmRegisters>,
    reset_control: Mutex<ResetControl>,
    pci: Mutex<PciConfigIo>,
    pci_io: Arc<IoPortRegions>,
}

/// A poisoned lock only means another vCPU thread died mid-access; the device state is still
/// the best we have, so keep serving it.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn within(port: u16, base: u16, count: u16) -> Option<u16> {
    port.checked_sub(base).filter(|offset| *offset < count)
}

impl PortIoBus {
    pub fn new(serial: SerialPort<ConsoleSink>, pci: PciConfigIo) -> Self {
        Self::with_pci_io(serial, pci, Arc::default())
    }

    /// A bus that also decodes the PCI I/O BARs in `pci_io`.
    pub fn with_pci_io(
        serial: SerialPort<ConsoleSink>,
        pci: PciConfigIo,
        pci_io: Arc<IoPortRegions>,
    ) -> Self {
        Self {
            serial: Mutex::new(serial),
            i8042: Mutex::new(I8042ResetLine::new()),
            rtc: Mutex::new(CmosRtc::new()),
            acpi_pm: Mutex::new(AcpiPmRegisters::new()),
            reset_control: Mutex::new(ResetControl::new()),
            pci: Mutex::new(pci),
            pci_io,
        }
    }

    pub fn read(&self, port: u16, data: &mut [u8]) {
        if let Some(offset) = within(port, COM1_PORT, SERIAL_PORT_COUNT) {
            let value = lock(&self.serial).read(offset);
            data.fill(0);
            if let Some(first) = data.first_mut() {
                *first = value;
            }
        } else if let Some(offset) = within(port, I8042_PORT, I8042_PORT_COUNT) {
            let value = lock(&self.i8042).read(offset);
            data.fill(value);
        } else if let Some(offset) = within(port, RTC_PORT, RTC_PORT_COUNT) {
            let value = lock(&self.rtc).read(offset);
            data.fill(value);
        } else if let Some(offset) = within(port, ACPI_PM_PORT, PM_REGISTER_COUNT) {
            data.fill(0);
            if let Some(first) = data.first_mut() {
                *first = lock(&self.acpi_pm).read(offset);
            }
        } else if port == RESET_CONTROL_PORT && data.len() == 1 {
            data[0] = lock(&self.reset_control).read();
        } else if let Some(offset) = within(port, PCI_CONFIG_IO_PORT, PCI_CONFIG_IO_PORT_COUNT) {
            lock(&self.pci).read(offset, data);
        } else if let Some((offset, device)) = self.pci_io.lookup(port) {
            device.pio_read(offset, data);
        } else {
            // Nothing decodes this port: the ISA bus floats high.
            data.fill(0xff);
        }
    }

    pub fn write(&self, port: u16, data: &[u8]) -> PioAction {
        let Some(&first) = data.first() else {
            return PioAction::Continue;
        };
        if let Some(offset) = within(port, COM1_PORT, SERIAL_PORT_COUNT) {
            lock(&self.serial).write(offset, first);
        } else if let Some(offset) = within(port, I8042_PORT, I8042_PORT_COUNT) {
            if lock(&self.i8042).write(offset, first) {
                return PioAction::Reset;
            }
        } else if let Some(offset) = within(port, RTC_PORT, RTC_PORT_COUNT) {
            lock(&self.rtc).write(offset, first);
        } else if let Some(offset) = within(port, ACPI_PM_PORT, PM_REGISTER_COUNT) {
            if lock(&self.acpi_pm).write(offset, first) {
                return PioAction::Poweroff;
            }
        } else if port == RESET_CONTROL_PORT && data.len() == 1 {
            if lock(&self.reset_control).write(first) {
                return PioAction::Reset;
            }
        } else if let Some(offset) = within(port, PCI_CONFIG_IO_PORT, PCI_CONFIG_IO_PORT_COUNT) {
            lock(&self.pci).write(offset, data);
        } else if let Some((offset, device)) = self.pci_io.lookup(port) {
            device.pio_write(offset, data);
        }
        PioAction::Continue
    }

    /// Hands host input to the serial port; returns how many bytes it took.
    pub fn serial_input(&self, bytes: &[u8]) -> usize {
        lock(&self.serial).enqueue_input(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pci::{PciHostBridge, PciRootBus};
    use ringvisor_io::IrqEvent;
    use std::sync::Arc;

    /// A sink the test can read after the bus took ownership of it.
    #[derive(Clone, Default)]
    struct SharedSink(Arc<Mutex<Vec<u8>>>);

    impl Write for SharedSink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn bus() -> (PortIoBus, SharedSink) {
        let sink = SharedSink::default();
        let serial = SerialPort::new(
            IrqEvent::new().unwrap(),
            Box::new(sink.clone()) as ConsoleSink,
        );
        let mut root = PciRootBus::new();
        root.add(Box::new(PciHostBridge::new()));
        (PortIoBus::new(serial, PciConfigIo::new(root)), sink)
    }

    #[test]
    fn routes_serial_pci_and_reset() {
        let (bus, sink) = bus();
        assert_eq!(bus.write(COM1_PORT, b"A"), PioAction::Continue);
        assert_eq!(sink.0.lock().unwrap().as_slice(), b"A");

        bus.write(PCI_CONFIG_IO_PORT, &0x8000_0000u32.to_le_bytes());
        let mut id = [0u8; 4];
        bus.read(PCI_CONFIG_IO_PORT + 4, &mut id);
        assert_eq!(u32::from_le_bytes(id), 0x0d57_8086);

        bus.write(RTC_PORT, &[0x0d]);
        let mut status = [0u8; 1];
        bus.read(RTC_PORT + 1, &mut status);
        assert_eq!(status, [0x80], "RTC register D: valid time");

        assert_eq!(bus.write(I8042_PORT + 4, &[0xfe]), PioAction::Reset);
        // The ACPI sleep registers: S5 powers off. The reset control register (the FADT's
        // reset register) resets on a byte write; 32-bit accesses there are PCI's.
        assert_eq!(bus.write(ACPI_PM_PORT, &[0x34]), PioAction::Poweroff);
        assert_eq!(
            bus.write(0xcf8, &0x8000_0000u32.to_le_bytes()),
            PioAction::Continue
        );
        assert_eq!(bus.write(0xcf9, &[0x02]), PioAction::Continue);
        assert_eq!(bus.write(0xcf9, &[0x06]), PioAction::Reset);
        let mut wake = [0xffu8; 1];
        bus.read(ACPI_PM_PORT + 1, &mut wake);
        assert_eq!(wake, [0], "never woke");
    }

    struct Recorder(Mutex<Vec<(u16, Vec<u8>)>>);

    impl PioDevice for Recorder {
        fn pio_read(&self, offset: u16, data: &mut [u8]) {
            data.fill(offset as u8);
        }
        fn pio_write(&self, offset: u16, data: &[u8]) {
            self.0.lock().unwrap().push((offset, data.to_vec()));
        }
    }

    #[test]
    fn pci_io_bars_decode_where_they_are_mapped() {
        let regions = Arc::new(IoPortRegions::default());
        let bus = PortIoBus::with_pci_io(
            SerialPort::new(
                IrqEvent::new().unwrap(),
                Box::new(std::io::sink()) as ConsoleSink,
            ),
            PciConfigIo::new(PciRootBus::new()),
            regions.clone(),
        );
        let device = Arc::new(Recorder(Mutex::new(Vec::new())));
        assert!(regions.map(0xc000, 32, device.clone()));
        assert!(!regions.map(0xc010, 32, device.clone()), "overlap refused");
        assert!(!regions.map(0xffff, 2, device.clone()), "wrap refused");
        bus.write(0xc003, &[7, 0]);
        let mut data = [0u8; 1];
        bus.read(0xc01f, &mut data);
        assert_eq!(data, [0x1f]);
        regions.unmap(0xc000);
        bus.write(0xc004, &[1]);
        bus.read(0xc000, &mut data);
        assert_eq!(data, [0xff]);
        assert_eq!(device.0.lock().unwrap().as_slice(), &[(3, vec![7, 0])]);
    }

    #[test]
    fn unclaimed_ports_read_all_ones_and_ignore_writes() {
        let (bus, sink) = bus();
        let mut data = [0u8; 2];
        bus.read(0x2f8, &mut data);
        assert_eq!(data, [0xff, 0xff]);
        assert_eq!(bus.write(0x2f8, b"x"), PioAction::Continue);
        assert_eq!(bus.write(0x80, &[]), PioAction::Continue);
        assert!(sink.0.lock().unwrap().is_empty());
    }
}
