//! The VM's one GSI routing table, irqfd binding and ioeventfd registration, behind the
//! traits device models use (`crate::pci::InterruptController`, `IoEventRegistry`).
//!
//! KVM_SET_GSI_ROUTING replaces the whole table, so every route the VM needs lives here:
//! the legacy PIC/IOAPIC pins that KVM installs by default (the serial port's irqfd and the
//! PIT depend on them) plus one MSI route per deliverable MSI-X vector.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use kvm_bindings::{
    kvm_irq_routing_entry, KvmIrqRouting, KVM_IRQCHIP_IOAPIC, KVM_IRQCHIP_PIC_MASTER,
    KVM_IRQCHIP_PIC_SLAVE, KVM_IRQ_ROUTING_IRQCHIP, KVM_IRQ_ROUTING_MSI, KVM_MAX_IRQ_ROUTES,
};
use kvm_ioctls::{IoEventAddress, NoDatamatch, VmFd};
use vmm_sys_util::eventfd::EventFd;

use crate::pci::{InterruptController, IoEventRegistry, MsiMessage, VmEventError};

/// GSIs 0..24 are the IOAPIC pins (and 0..16 also the PIC pins); MSI lines come after.
pub const FIRST_MSI_GSI: u32 = 24;
const IOAPIC_PINS: u32 = 24;
const PIC_PINS: u32 = 16;

fn irqchip_route(gsi: u32, irqchip: u32, pin: u32) -> kvm_irq_routing_entry {
    let mut entry = kvm_irq_routing_entry {
        gsi,
        type_: KVM_IRQ_ROUTING_IRQCHIP,
        ..Default::default()
    };
    entry.u.irqchip.irqchip = irqchip;
    entry.u.irqchip.pin = pin;
    entry
}

fn msi_route(gsi: u32, message: MsiMessage) -> kvm_irq_routing_entry {
    let mut entry = kvm_irq_routing_entry {
        gsi,
        type_: KVM_IRQ_ROUTING_MSI,
        ..Default::default()
    };
    entry.u.msi.address_lo = message.address_lo;
    entry.u.msi.address_hi = message.address_hi;
    entry.u.msi.data = message.data;
    entry
}

/// The table KVM builds for an in-kernel irqchip (kvm_setup_default_irq_routing): every
/// GSI below 24 to the IOAPIC pin of the same number and, below 16, also to the PIC pin
/// (master for 0..8, slave for 8..16), GSI 2 included.
pub fn default_irqchip_routes() -> Vec<kvm_irq_routing_entry> {
    let mut routes = Vec::with_capacity((IOAPIC_PINS + PIC_PINS) as usize);
    for gsi in 0..IOAPIC_PINS {
        routes.push(irqchip_route(gsi, KVM_IRQCHIP_IOAPIC, gsi));
        if gsi < PIC_PINS {
            let pic = if gsi < 8 {
                KVM_IRQCHIP_PIC_MASTER
            } else {
                KVM_IRQCHIP_PIC_SLAVE
            };
            routes.push(irqchip_route(gsi, pic, gsi % 8));
        }
    }
    routes
}

struct RoutingState {
    next_gsi: u32,
    msi: BTreeMap<u32, MsiMessage>,
}

/// Interrupt routing and doorbells of one VM; shared by every device model.
pub struct KvmIrqRouter {
    vm: Arc<VmFd>,
    state: Mutex<RoutingState>,
}

fn hypervisor(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> VmEventError {
    move |err| VmEventError::Hypervisor {
        what,
        source: std::io::Error::from_raw_os_error(err.errno()),
    }
}

impl KvmIrqRouter {
    pub fn new(vm: Arc<VmFd>) -> Self {
        Self {
            vm,
            state: Mutex::new(RoutingState {
                next_gsi: FIRST_MSI_GSI,
                msi: BTreeMap::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, RoutingState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Installs the whole table: the default irqchip routes plus the current MSI routes.
    fn commit(&self, state: &RoutingState) -> Result<(), VmEventError> {
        let mut entries = default_irqchip_routes();
        entries.extend(
            state
                .msi
                .iter()
                .map(|(&gsi, &message)| msi_route(gsi, message)),
        );
        let table = KvmIrqRouting::from_entries(&entries).map_err(|_| VmEventError::NoFreeGsi)?;
        self.vm
            .set_gsi_routing(&table)
            .map_err(hypervisor("set the GSI routing table"))
    }

    /// Installs the table as it stands (at least the default routes), so a caller can
    /// check early that KVM accepts it.
    pub fn install(&self) -> Result<(), VmEventError> {
        let state = self.lock();
        self.commit(&state)
    }
}

impl InterruptController for KvmIrqRouter {
    fn allocate_msi_gsi(&self) -> Result<u32, VmEventError> {
        let mut state = self.lock();
        let gsi = state.next_gsi;
        if gsi as usize >= KVM_MAX_IRQ_ROUTES {
            return Err(VmEventError::NoFreeGsi);
        }
        state.next_gsi += 1;
        Ok(gsi)
    }

    fn set_msi_route(&self, gsi: u32, message: Option<MsiMessage>) -> Result<(), VmEventError> {
        let mut state = self.lock();
        let previous = match message {
            Some(message) => state.msi.insert(gsi, message),
            None => state.msi.remove(&gsi),
        };
        if previous == message {
            return Ok(());
        }
        let result = self.commit(&state);
        if result.is_err() {
            // Keep the table in step with what KVM holds.
            match previous {
                Some(previous) => state.msi.insert(gsi, previous),
                None => state.msi.remove(&gsi),
            };
        }
        result
    }

    fn bind_irqfd(&self, event: &EventFd, gsi: u32) -> Result<(), VmEventError> {
        self.vm
            .register_irqfd(event, gsi)
            .map_err(hypervisor("bind an MSI irqfd"))
    }

    fn unbind_irqfd(&self, event: &EventFd, gsi: u32) -> Result<(), VmEventError> {
        self.vm
            .unregister_irqfd(event, gsi)
            .map_err(hypervisor("unbind an MSI irqfd"))
    }
}

impl IoEventRegistry for KvmIrqRouter {
    fn register_ioevent(&self, event: &EventFd, addr: u64) -> Result<(), VmEventError> {
        // No datamatch and length 0: a write of any width and value signals the eventfd.
        self.vm
            .register_ioevent(event, &IoEventAddress::Mmio(addr), NoDatamatch)
            .map_err(hypervisor("register an ioeventfd"))
    }

    fn unregister_ioevent(&self, event: &EventFd, addr: u64) -> Result<(), VmEventError> {
        self.vm
            .unregister_ioevent(event, &IoEventAddress::Mmio(addr), NoDatamatch)
            .map_err(hypervisor("unregister an ioeventfd"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_routes_match_kvm_default_table() {
        let routes = default_irqchip_routes();
        assert_eq!(routes.len(), 40);
        let pins: Vec<(u32, u32, u32)> = routes
            .iter()
            .map(|r| {
                // SAFETY: every default route is an irqchip route, so `irqchip` is the union
                // member that was written.
                let chip = unsafe { r.u.irqchip };
                (r.gsi, chip.irqchip, chip.pin)
            })
            .collect();
        assert_eq!(pins[0], (0, KVM_IRQCHIP_IOAPIC, 0));
        assert_eq!(pins[1], (0, KVM_IRQCHIP_PIC_MASTER, 0));
        assert!(pins.contains(&(2, KVM_IRQCHIP_PIC_MASTER, 2)));
        assert!(pins.contains(&(4, KVM_IRQCHIP_IOAPIC, 4)));
        assert!(pins.contains(&(12, KVM_IRQCHIP_PIC_SLAVE, 4)));
        assert!(pins.contains(&(23, KVM_IRQCHIP_IOAPIC, 23)));
        assert!(routes.iter().all(|r| r.type_ == KVM_IRQ_ROUTING_IRQCHIP));
    }
}
