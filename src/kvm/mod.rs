//! The KVM side of a machine: the VM file descriptor, its memory slots and interrupt routing,
//! and the vCPUs with their boot state. Nothing here knows a device protocol: exits are
//! handed to the port-I/O bus.

mod boot_cpu;
mod cpuid;
mod vcpu;
mod vm;

pub use vcpu::{Vcpu, VcpuError, VcpuStop};
pub use vm::{KvmVm, VmError};
