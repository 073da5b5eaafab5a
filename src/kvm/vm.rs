//! Creating a KVM VM with an in-kernel irqchip and PIT, and mapping guest RAM into it.

use std::sync::Arc;

use kvm_bindings::{kvm_pit_config, kvm_userspace_memory_region, KVM_PIT_SPEAKER_DUMMY};
use kvm_ioctls::{Kvm, VmFd};
use vm_memory::{GuestMemoryBackend, GuestMemoryRegion};
use vmm_sys_util::eventfd::EventFd;

use crate::layout::{KVM_IDENTITY_MAP_ADDR, KVM_TSS_ADDR};
use crate::memory::GuestMemory;

use super::irq_routing::KvmIrqRouter;
use super::power_on::IrqchipPowerOnState;
use super::vcpu::Vcpu;

#[derive(Debug, thiserror::Error)]
pub enum VmError {
    #[error("cannot open /dev/kvm: it does not exist (load the kvm module, or run on a host with virtualization)")]
    NoKvm,
    #[error("cannot open /dev/kvm: permission denied (run as root or join the group that owns /dev/kvm)")]
    KvmPermission,
    #[error("cannot open /dev/kvm: {0}")]
    OpenKvm(#[source] kvm_ioctls::Error),
    #[error("KVM lacks a capability ringvisor needs: {0}")]
    MissingCapability(&'static str),
    #[error("cannot {what}: {source}")]
    Ioctl {
        what: &'static str,
        #[source]
        source: kvm_ioctls::Error,
    },
    #[error("--cpus {asked} is more than this host's KVM allows ({max})")]
    TooManyVcpus { asked: usize, max: usize },
}

fn ioctl(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> VmError {
    move |source| VmError::Ioctl { what, source }
}

/// A KVM virtual machine with its in-kernel interrupt controllers.
pub struct KvmVm {
    kvm: Kvm,
    /// Shared with the interrupt router, which device models call from vCPU threads.
    fd: Arc<VmFd>,
    router: Arc<KvmIrqRouter>,
    /// The interrupt controllers as created, for reboots.
    irqchip_power_on: Arc<IrqchipPowerOnState>,
}

impl KvmVm {
    /// Opens /dev/kvm and creates a VM with the in-kernel PIC, IOAPIC, local APICs and PIT.
    pub fn create() -> Result<Self, VmError> {
        let kvm = Kvm::new().map_err(|err| match err.errno() {
            libc::ENOENT | libc::ENODEV | libc::ENXIO => VmError::NoKvm,
            libc::EACCES | libc::EPERM => VmError::KvmPermission,
            _ => VmError::OpenKvm(err),
        })?;
        for (cap, name) in [
            (kvm_ioctls::Cap::Irqchip, "KVM_CAP_IRQCHIP"),
            (kvm_ioctls::Cap::Irqfd, "KVM_CAP_IRQFD"),
            (kvm_ioctls::Cap::IrqRouting, "KVM_CAP_IRQ_ROUTING"),
            (kvm_ioctls::Cap::Ioeventfd, "KVM_CAP_IOEVENTFD"),
            (kvm_ioctls::Cap::Pit2, "KVM_CAP_PIT2"),
            (kvm_ioctls::Cap::UserMemory, "KVM_CAP_USER_MEMORY"),
            (kvm_ioctls::Cap::ExtCpuid, "KVM_CAP_EXT_CPUID"),
        ] {
            if !kvm.check_extension(cap) {
                return Err(VmError::MissingCapability(name));
            }
        }
        let fd = kvm.create_vm().map_err(ioctl("create a VM"))?;
        fd.set_tss_address(KVM_TSS_ADDR as usize)
            .map_err(ioctl("set the TSS address"))?;
        fd.set_identity_map_address(KVM_IDENTITY_MAP_ADDR)
            .map_err(ioctl("set the identity map address"))?;
        fd.create_irq_chip()
            .map_err(ioctl("create the in-kernel irqchip"))?;
        let pit = kvm_pit_config {
            flags: KVM_PIT_SPEAKER_DUMMY,
            ..Default::default()
        };
        fd.create_pit2(pit)
            .map_err(ioctl("create the in-kernel PIT"))?;
        let irqchip_power_on = Arc::new(IrqchipPowerOnState::capture(&fd)?);
        let fd = Arc::new(fd);
        let router = Arc::new(KvmIrqRouter::new(Arc::clone(&fd)));
        Ok(Self {
            kvm,
            fd,
            router,
            irqchip_power_on,
        })
    }

    /// The most vCPUs this host's KVM accepts in one VM.
    pub fn max_vcpus(&self) -> usize {
        self.kvm.get_max_vcpus()
    }

    /// Maps every region of `mem` as a KVM memory slot.
    pub fn map_memory(&self, mem: &GuestMemory) -> Result<(), VmError> {
        for (slot, region) in mem.iter().enumerate() {
            let host = region
                .get_host_address(vm_memory::MemoryRegionAddress(0))
                .map_err(|_| VmError::MissingCapability("host mapping of guest memory"))?;
            let descriptor = kvm_userspace_memory_region {
                slot: slot as u32,
                flags: 0,
                guest_phys_addr: region.start_addr().0,
                memory_size: region.len(),
                userspace_addr: host as u64,
            };
            // SAFETY: the region is a live mmap owned by `mem`, which the machine keeps alive
            // for as long as the VM exists; guest and host ranges come from the same region.
            unsafe { self.fd.set_user_memory_region(descriptor) }
                .map_err(ioctl("map guest memory"))?;
        }
        Ok(())
    }

    /// Binds `event` to interrupt line `gsi`: each write to it injects that interrupt.
    pub fn bind_irqfd(&self, event: &EventFd, gsi: u32) -> Result<(), VmError> {
        self.fd
            .register_irqfd(event, gsi)
            .map_err(ioctl("register an irqfd"))
    }

    /// The VM's interrupt routing table and doorbell registry, for MSI-X devices
    /// (`crate::pci::InterruptController` and `crate::pci::IoEventRegistry`).
    pub fn irq_router(&self) -> Arc<KvmIrqRouter> {
        Arc::clone(&self.router)
    }

    /// Maps device memory (RAM-backed BARs) into this VM.
    pub fn device_memory(&self) -> Arc<super::KvmDeviceMemory> {
        Arc::new(super::KvmDeviceMemory::new(Arc::clone(&self.fd)))
    }

    /// Creates vCPU `index` with CPUID, MSRs, FPU and LAPIC set for `count` vCPUs.
    pub fn create_vcpu(&self, index: u8, count: u8) -> Result<Vcpu, VmError> {
        if usize::from(count) > self.max_vcpus() {
            return Err(VmError::TooManyVcpus {
                asked: count.into(),
                max: self.max_vcpus(),
            });
        }
        let fd = self
            .fd
            .create_vcpu(u64::from(index))
            .map_err(ioctl("create a vCPU"))?;
        let mut vcpu = Vcpu::new(index, fd);
        vcpu.configure(&self.kvm, count)?;
        vcpu.capture_power_on(&self.kvm)?;
        Ok(vcpu)
    }

    /// The raw VM descriptor, for ioctls the wrappers above do not cover (tests).
    pub fn fd(&self) -> &VmFd {
        &self.fd
    }

    /// The PICs, IOAPIC and PIT as created, for a reboot to put back.
    pub fn irqchip_power_on(&self) -> Arc<IrqchipPowerOnState> {
        Arc::clone(&self.irqchip_power_on)
    }

    /// The VM descriptor, shared with what outlives this call frame (pause control).
    pub fn shared_fd(&self) -> Arc<VmFd> {
        Arc::clone(&self.fd)
    }
}
