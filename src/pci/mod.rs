//! The PCI root bus behind configuration mechanism #1 (ports 0xCF8/0xCFC) and the PCI
//! Express enhanced configuration window (ECAM), the functions on it, and what they need
//! from the hypervisor (MSI routes, doorbells).

use std::sync::{Arc, Mutex, MutexGuard};

mod bar_allocator;
mod config_io;
mod configuration;
mod ecam;
mod host_bridge;
pub mod msix;
pub mod qxl;
#[cfg(test)]
pub(crate) mod test_utils;
pub mod virtio;
mod vm_events;

pub use bar_allocator::BarAllocator;
pub use config_io::{PciConfigIo, PCI_CONFIG_IO_PORT, PCI_CONFIG_IO_PORT_COUNT};
pub use configuration::{
    PciClass, PciConfigError, PciConfiguration, PciHeader, BAR0_REGISTER, BAR_COUNT,
    COMMAND_BUS_MASTER, COMMAND_IO_SPACE, COMMAND_MEMORY_SPACE, CONFIG_REGISTERS,
    CONFIG_SPACE_SIZE,
};
pub use ecam::PciEcam;
pub use host_bridge::PciHostBridge;
pub use vm_events::{
    DeviceMemoryMapper, InterruptController, IoEventRegistry, MsiMessage, VmEventError,
};

/// A PCI function's interrupt pin wired to an IOAPIC pin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PciInterrupt {
    /// Device number on bus 0.
    pub slot: u8,
    /// 0 = INTA# ... 3 = INTD#.
    pub pin: u8,
    pub ioapic_pin: u8,
}

/// A function on the root bus as configuration cycles see it.
pub trait PciFunction: Send {
    /// Reads the 32-bit configuration register `register` (byte offset / 4, 0..64).
    fn read_config_register(&self, register: usize) -> u32;
    /// Writes `data` (1, 2 or 4 bytes) at byte `offset` within register `register`.
    fn write_config_register(&mut self, register: usize, offset: u8, data: &[u8]);
}

/// Devices 0..32 of bus 0, function 0 each.
pub struct PciRootBus {
    slots: Vec<Option<Box<dyn PciFunction>>>,
}

pub const PCI_SLOTS: usize = 32;

impl Default for PciRootBus {
    fn default() -> Self {
        Self::new()
    }
}

impl PciRootBus {
    pub fn new() -> Self {
        Self {
            slots: (0..PCI_SLOTS).map(|_| None).collect(),
        }
    }

    /// Puts `function` in the first free slot; returns the slot number.
    pub fn add(&mut self, function: Box<dyn PciFunction>) -> Option<usize> {
        let slot = self.slots.iter().position(Option::is_none)?;
        self.slots[slot] = Some(function);
        Some(slot)
    }

    pub fn function_mut(&mut self, slot: usize) -> Option<&mut (dyn PciFunction + 'static)> {
        self.slots.get_mut(slot)?.as_deref_mut()
    }

    pub fn function(&self, slot: usize) -> Option<&(dyn PciFunction + 'static)> {
        self.slots.get(slot)?.as_deref()
    }

    /// A configuration read of bus 0: all ones where no function answers (an empty slot,
    /// functions 1-7), as on real hardware.
    pub fn read_config(&self, slot: usize, function: u32, register: usize) -> u32 {
        if function != 0 {
            return 0xffff_ffff;
        }
        self.function(slot)
            .map(|f| f.read_config_register(register))
            .unwrap_or(0xffff_ffff)
    }

    /// A configuration write of bus 0; dropped where no function answers.
    pub fn write_config(
        &mut self,
        slot: usize,
        function: u32,
        register: usize,
        offset: u8,
        data: &[u8],
    ) {
        if function != 0 {
            return;
        }
        if let Some(f) = self.function_mut(slot) {
            f.write_config_register(register, offset, data);
        }
    }
}

/// The root bus as both configuration mechanisms reach it: the ports and the ECAM.
pub type SharedPciRootBus = Arc<Mutex<PciRootBus>>;

/// A poisoned lock only means a vCPU thread died mid-access; the bus is still the best
/// state there is.
fn lock_bus(bus: &SharedPciRootBus) -> MutexGuard<'_, PciRootBus> {
    bus.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
