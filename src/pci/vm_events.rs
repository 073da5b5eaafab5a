//! What a PCI device model needs from the hypervisor to turn eventfds into guest events:
//! MSI routes for its interrupt vectors and ioeventfds for its doorbells.
//!
//! Device models talk to these traits only; `crate::kvm::KvmIrqRouter` implements them on
//! a real VM and unit tests implement them with a recorder.

use vmm_sys_util::eventfd::EventFd;

/// One MSI message as the guest programmed it in an MSI-X table entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MsiMessage {
    pub address_lo: u32,
    pub address_hi: u32,
    pub data: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum VmEventError {
    #[error("no interrupt line (GSI) left for another MSI vector")]
    NoFreeGsi,
    #[error("no memory slot left for device memory")]
    NoFreeSlot,
    #[error("cannot {what}: {source}")]
    Hypervisor {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// MSI delivery through interrupt lines (GSIs) that carry one route each.
pub trait InterruptController: Send + Sync {
    /// Reserves a line for one MSI vector; it has no route until [`Self::set_msi_route`].
    fn allocate_msi_gsi(&self) -> Result<u32, VmEventError>;

    /// Routes `gsi` to `message`, or removes its route with `None`.
    fn set_msi_route(&self, gsi: u32, message: Option<MsiMessage>) -> Result<(), VmEventError>;

    /// Makes every write to `event` raise `gsi`. Writes made while unbound stay counted in
    /// the eventfd, and binding delivers them: that is how a masked vector stays pending.
    fn bind_irqfd(&self, event: &EventFd, gsi: u32) -> Result<(), VmEventError>;

    /// Undoes [`Self::bind_irqfd`]; later writes accumulate in the eventfd.
    fn unbind_irqfd(&self, event: &EventFd, gsi: u32) -> Result<(), VmEventError>;
}

/// Host memory a device owns (a RAM-backed BAR) made guest-physical memory, so guest
/// accesses to it never exit to the VMM.
pub trait DeviceMemoryMapper: Send + Sync {
    /// Maps `len` bytes of this process at `host` to guest-physical `guest_addr`;
    /// returns the mapping's handle.
    ///
    /// # Safety
    /// `host..host + len` must stay mapped, and be memory the guest may read and write,
    /// until [`Self::unmap_device_memory`] removes the mapping.
    unsafe fn map_device_memory(
        &self,
        guest_addr: u64,
        host: usize,
        len: u64,
    ) -> Result<u32, VmEventError>;

    /// Removes the mapping `handle`; the guest then sees nothing at that address.
    fn unmap_device_memory(&self, handle: u32) -> Result<(), VmEventError>;
}

/// Guest MMIO writes that land on an eventfd without leaving the hypervisor.
pub trait IoEventRegistry: Send + Sync {
    /// Any write of any width at guest-physical `addr` signals `event`.
    fn register_ioevent(&self, event: &EventFd, addr: u64) -> Result<(), VmEventError>;

    /// Undoes [`Self::register_ioevent`] for the same `event` and `addr`.
    fn unregister_ioevent(&self, event: &EventFd, addr: u64) -> Result<(), VmEventError>;
}
