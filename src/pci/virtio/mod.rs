//! The virtio-pci modern transport (virtio 1.2, 4.1; non-transitional) with MSI-X.
//!
//! A [`VirtioPciDevice`] wraps any `ringvisor_devices::virtio::VirtioDevice`. The guest configures it through BAR0
//! (vCPU threads, under one lock per device); on DRIVER_OK the device's queue workers go to
//! the [`QueueHost`] (the reactors) together with each queue's doorbell eventfd (an
//! ioeventfd, so kicks never exit to userspace) and its MSI-X vector's eventfd (an irqfd).
//! From then on the data path never touches this module.

mod common_config;
mod device;
mod layout;
mod signals;
#[cfg(test)]
mod tests;

use std::sync::{Arc, Mutex, MutexGuard};

use ringvisor_io::QueueHost;

use crate::memory::GuestMemory;
use crate::mmio_bus::{MmioBus, MmioDevice};
use crate::pci::msix::MsixError;
use crate::pci::{InterruptController, IoEventRegistry, PciConfigError, PciFunction, PciRootBus};

pub use common_config::{
    NO_VECTOR, STATUS_ACKNOWLEDGE, STATUS_DEVICE_NEEDS_RESET, STATUS_DRIVER, STATUS_DRIVER_OK,
    STATUS_FAILED, STATUS_FEATURES_OK,
};
pub use device::VirtioPciDevice;
pub use layout::{
    BAR0_SIZE, COMMON_CONFIG_OFFSET, DEVICE_CONFIG_OFFSET, ISR_OFFSET, MAX_QUEUES, MSIX_PBA_OFFSET,
    MSIX_TABLE_OFFSET, NOTIFY_OFFSET, NOTIFY_OFF_MULTIPLIER,
};

/// PCI IDs of modern virtio devices: vendor Red Hat/Qumranet, device 0x1040 + type.
pub const VIRTIO_PCI_VENDOR_ID: u16 = 0x1af4;
pub const VIRTIO_PCI_DEVICE_ID_BASE: u16 = 0x1040;

#[derive(Debug, thiserror::Error)]
pub enum VirtioPciError {
    #[error("virtio device type {0} has no modern PCI device ID")]
    DeviceType(u32),
    #[error("{0} queues do not fit the notify area (at most {MAX_QUEUES})")]
    QueueCount(usize),
    #[error("queue {index} has an invalid maximum size {size} (a power of two up to 32768)")]
    QueueSize { index: usize, size: u16 },
    #[error("cannot create a queue doorbell eventfd: {0}")]
    Doorbell(#[source] std::io::Error),
    #[error(transparent)]
    Msix(#[from] MsixError),
    #[error(transparent)]
    Config(#[from] PciConfigError),
    #[error("every PCI slot on the root bus is taken")]
    NoFreeSlot,
}

/// What every virtio-pci device of a VM shares: guest RAM, the reactors, and the
/// hypervisor's interrupt routing and doorbells (on a real VM, `KvmVm::irq_router()` is
/// both `interrupts` and `ioevents`).
#[derive(Clone)]
pub struct VirtioPciServices {
    pub mem: GuestMemory,
    pub queue_host: Arc<dyn QueueHost>,
    pub interrupts: Arc<dyn InterruptController>,
    pub ioevents: Arc<dyn IoEventRegistry>,
}

/// A device placed on the buses; keep it to raise configuration changes later.
#[derive(Clone)]
pub struct PluggedVirtioPci {
    /// Device number on bus 0.
    pub slot: usize,
    pub device: Arc<Mutex<VirtioPciDevice>>,
}

fn lock(device: &Mutex<VirtioPciDevice>) -> MutexGuard<'_, VirtioPciDevice> {
    // A poisoned lock means a vCPU thread died mid-access; the registers are still the
    // best state there is.
    device
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl PluggedVirtioPci {
    /// Raises the configuration-change interrupt without taking the device's lock, so a
    /// reactor thread can call it (e.g. a NIC whose TAP went away) even while a vCPU
    /// holds the lock waiting for that reactor. Only for fields a driver reads in one
    /// access: the configuration generation is not bumped.
    pub fn config_change_notifier(&self) -> Box<dyn Fn() + Send + Sync> {
        let signals = lock(&self.device).signals();
        Box::new(move || signals.signal_config_change())
    }

    /// The device configuration changed (e.g. a resized disk): bump config_generation and
    /// raise the configuration-change interrupt.
    pub fn notify_config_change(&self) {
        lock(&self.device).notify_config_change();
    }
}

/// The configuration-space face of a device on the root bus.
struct VirtioPciFunction(Arc<Mutex<VirtioPciDevice>>);

impl PciFunction for VirtioPciFunction {
    fn read_config_register(&self, register: usize) -> u32 {
        lock(&self.0).read_config_register(register)
    }

    fn write_config_register(&mut self, register: usize, offset: u8, data: &[u8]) {
        lock(&self.0).write_config_register(register, offset, data)
    }
}

impl MmioDevice for VirtioPciDevice {
    fn mmio_read(&mut self, offset: u64, data: &mut [u8]) {
        self.read_bar(offset, data);
    }

    fn mmio_write(&mut self, offset: u64, data: &[u8]) {
        self.write_bar(offset, data);
    }
}

/// Puts `device` on the root bus (configuration space) and the MMIO bus (BAR0, at the
/// address it was created with, since firmware already enabled decoding).
pub fn plug_virtio_pci(
    device: VirtioPciDevice,
    root: &mut PciRootBus,
    mmio: &Arc<MmioBus>,
) -> Result<PluggedVirtioPci, VirtioPciError> {
    let device = Arc::new(Mutex::new(device));
    let region = mmio.register(device.clone());
    lock(&device).attach_mmio(Arc::downgrade(mmio), region);
    match root.add(Box::new(VirtioPciFunction(device.clone()))) {
        Some(slot) => Ok(PluggedVirtioPci { slot, device }),
        None => {
            lock(&device).detach_mmio();
            Err(VirtioPciError::NoFreeSlot)
        }
    }
}
