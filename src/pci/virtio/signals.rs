//! The part of a virtio-pci device that reactor threads touch: device status, the ISR and
//! the configuration-change interrupt. Atomics only, so a queue fault reported on the data
//! path never waits for the vCPU-side lock.

use std::sync::atomic::{AtomicU16, AtomicU8, Ordering};

use log::warn;
use ringvisor_io::IrqEvent;

use super::common_config::{NO_VECTOR, STATUS_DEVICE_NEEDS_RESET};

/// ISR bit 1: the device configuration changed.
pub const ISR_CONFIG_CHANGED: u8 = 0x02;

pub struct DeviceSignals {
    pub status: AtomicU8,
    /// Read-to-clear ISR status (only INTx drivers look at it; kept correct anyway).
    pub isr: AtomicU8,
    /// The MSI-X vector of configuration changes (`msix_config`), or NO_VECTOR.
    pub config_vector: AtomicU16,
    /// Second handles on every MSI-X vector's eventfd, indexed by vector.
    vectors: Vec<IrqEvent>,
}

impl DeviceSignals {
    pub fn new(vectors: Vec<IrqEvent>) -> Self {
        Self {
            status: AtomicU8::new(0),
            isr: AtomicU8::new(0),
            config_vector: AtomicU16::new(NO_VECTOR),
            vectors,
        }
    }

    /// Back to power-on: no status, no pending ISR, no config vector.
    pub fn reset(&self) {
        self.status.store(0, Ordering::Release);
        self.isr.store(0, Ordering::Release);
        self.config_vector.store(NO_VECTOR, Ordering::Release);
    }

    /// Raises the configuration-change interrupt. A masked vector keeps it pending.
    pub fn signal_config_change(&self) {
        self.isr.fetch_or(ISR_CONFIG_CHANGED, Ordering::AcqRel);
        let vector = self.config_vector.load(Ordering::Acquire);
        if let Some(event) = self.vectors.get(usize::from(vector)) {
            if let Err(err) = event.signal() {
                warn!("cannot raise the configuration-change interrupt: {err}");
            }
        }
    }

    /// The device cannot go on until the driver resets it (spec 2.1.2).
    pub fn set_needs_reset(&self) {
        self.status
            .fetch_or(STATUS_DEVICE_NEEDS_RESET, Ordering::AcqRel);
        self.signal_config_change();
    }
}
