//! The host bridge at 00:00.0: what Linux's type-1 probe looks for before it trusts 0xCF8.

use super::{PciClass, PciConfiguration, PciFunction, PciHeader};

/// Intel's vendor ID and a host-bridge device ID that carries no chipset quirks in Linux.
const VENDOR_INTEL: u16 = 0x8086;
const DEVICE_HOST_BRIDGE: u16 = 0x0d57;
const SUBSYSTEM_VENDOR_REDHAT_QUMRANET: u16 = 0x1af4;

pub struct PciHostBridge {
    config: PciConfiguration,
}

impl Default for PciHostBridge {
    fn default() -> Self {
        Self::new()
    }
}

impl PciHostBridge {
    pub fn new() -> Self {
        Self {
            config: PciConfiguration::new(PciHeader {
                vendor_id: VENDOR_INTEL,
                device_id: DEVICE_HOST_BRIDGE,
                class: PciClass::HostBridge,
                revision: 0,
                subsystem_vendor_id: SUBSYSTEM_VENDOR_REDHAT_QUMRANET,
                subsystem_id: 0,
            }),
        }
    }
}

impl PciFunction for PciHostBridge {
    fn read_config_register(&self, register: usize) -> u32 {
        self.config.read_register(register)
    }

    fn write_config_register(&mut self, register: usize, offset: u8, data: &[u8]) {
        self.config.write_register(register, offset, data)
    }
}
