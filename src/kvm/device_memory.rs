//! KVM memory slots for device memory (RAM-backed BARs), next to the slots of guest RAM.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use kvm_bindings::kvm_userspace_memory_region;
use kvm_ioctls::VmFd;

use crate::pci::{DeviceMemoryMapper, VmEventError};

/// Guest RAM takes the slots below this (one per RAM region: at most two).
pub const FIRST_DEVICE_SLOT: u32 = 16;
/// KVM on x86 has at least 509 user slots; device BARs need a handful.
const LAST_DEVICE_SLOT: u32 = 255;

/// Maps device memory into one VM.
pub struct KvmDeviceMemory {
    vm: Arc<VmFd>,
    /// slot -> (guest address, size) of the live mappings.
    slots: Mutex<BTreeMap<u32, (u64, u64)>>,
}

impl KvmDeviceMemory {
    pub fn new(vm: Arc<VmFd>) -> Self {
        Self {
            vm,
            slots: Mutex::new(BTreeMap::new()),
        }
    }

    fn set_region(&self, region: kvm_userspace_memory_region) -> Result<(), VmEventError> {
        // SAFETY: for a mapping, the caller of `map_device_memory` guarantees that
        // `userspace_addr..+memory_size` stays mapped in this process until it unmaps the
        // slot; a removal (size 0) touches no host memory.
        unsafe { self.vm.set_user_memory_region(region) }.map_err(|err| VmEventError::Hypervisor {
            what: "set a device memory slot",
            source: std::io::Error::from_raw_os_error(err.errno()),
        })
    }
}

impl DeviceMemoryMapper for KvmDeviceMemory {
    unsafe fn map_device_memory(
        &self,
        guest_addr: u64,
        host: usize,
        len: u64,
    ) -> Result<u32, VmEventError> {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let slot = (FIRST_DEVICE_SLOT..=LAST_DEVICE_SLOT)
            .find(|slot| !slots.contains_key(slot))
            .ok_or(VmEventError::NoFreeSlot)?;
        self.set_region(kvm_userspace_memory_region {
            slot,
            flags: 0,
            guest_phys_addr: guest_addr,
            memory_size: len,
            userspace_addr: host as u64,
        })?;
        slots.insert(slot, (guest_addr, len));
        Ok(slot)
    }

    fn unmap_device_memory(&self, slot: u32) -> Result<(), VmEventError> {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let Some((guest_addr, _)) = slots.get(&slot).copied() else {
            return Ok(());
        };
        self.set_region(kvm_userspace_memory_region {
            slot,
            flags: 0,
            guest_phys_addr: guest_addr,
            memory_size: 0,
            userspace_addr: 0,
        })?;
        slots.remove(&slot);
        Ok(())
    }
}
