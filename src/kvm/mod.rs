//! The KVM side of a machine: the VM file descriptor, its memory slots and interrupt routing,
//! and the vCPUs with their boot state. Nothing here knows a device protocol: exits are
//! handed to the port-I/O and MMIO buses, interrupts to the routing table.

mod boot_cpu;
mod cpuid;
mod device_memory;
mod irq_routing;
mod pause;
mod power_on;
mod vcpu;
mod vm;

pub use device_memory::{KvmDeviceMemory, FIRST_DEVICE_SLOT};
pub use irq_routing::{default_irqchip_routes, KvmIrqRouter, FIRST_MSI_GSI};
pub use pause::{PauseControl, PauseError, PauseHolder};
pub use power_on::IrqchipPowerOnState;
pub use vcpu::{Vcpu, VcpuError, VcpuStop};
pub use vm::{KvmVm, VmError};
