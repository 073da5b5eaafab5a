//! Rebooting in place, as QEMU and Cloud Hypervisor do: the same process, API socket,
//! TAPs and disk files; devices reset, guest RAM cleared, the kernel loaded again, every
//! vCPU back at power-on. A guest reset (`reboot`, the ACPI reset register, the i8042, a
//! triple fault) reboots unless `--no-reboot` says to end the machine instead.
//!
//! The vCPU that saw the reset parks; the shutdown thread pauses the others, quiesces
//! the devices (a virtio reset waits for the requests in flight, so nothing writes RAM
//! after it is cleared), clears RAM, loads the kernel and the ACPI tables, puts the
//! interrupt controllers back, and lets the vCPUs go: each resets itself to its power-on
//! state, the boot processor at the new kernel's entry.

use std::path::PathBuf;
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use kvm_ioctls::VmFd;
use log::{info, warn};
use ringvisor_devices::qxl::QxlHandle;

use super::MachineStop;
use crate::acpi::{write_tables, AcpiPlatform};
use crate::boot::{load_linux, LoadedKernel};
use crate::kvm::{IrqchipPowerOnState, PauseControl, PauseHolder, Vcpu, VcpuError, VcpuStop};
use crate::memory::{self, GuestMemory, MemoryOptions};
use crate::mmio_bus::MmioBus;
use crate::pci::virtio::VirtioPciDevice;
use crate::pci::PciInterrupt;
use crate::pio_bus::PortIoBus;

/// How long the vCPUs may take to stop for a reboot.
const PAUSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the boot processor enters the kernel loaded last.
pub(super) type BootEntry = Arc<Mutex<LoadedKernel>>;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A device a reboot puts back to its power-on state, with the vCPUs stopped.
pub(super) trait PlatformReset: Send + Sync {
    fn platform_reset(&self);
}

impl PlatformReset for Mutex<VirtioPciDevice> {
    fn platform_reset(&self) {
        lock(self).platform_reset();
    }
}

impl PlatformReset for QxlHandle {
    fn platform_reset(&self) {
        QxlHandle::platform_reset(self);
    }
}

/// Everything a reboot puts back.
pub(super) struct Rebooter {
    pub pause: Arc<PauseControl>,
    pub vm: Arc<VmFd>,
    pub irqchip: Arc<IrqchipPowerOnState>,
    /// The PCI devices: the virtio functions and the display.
    pub devices: Vec<Arc<dyn PlatformReset>>,
    pub mem: GuestMemory,
    pub memory_bytes: u64,
    pub memory_options: MemoryOptions,
    /// Guest RAM the reactors hold pinned, let go of while it is cleared.
    pub pinned_ram: Option<Arc<super::pinned_ram::PinnedRam>>,
    pub kernel: PathBuf,
    pub initramfs: Option<PathBuf>,
    pub cmdline: String,
    pub cpus: u8,
    pub pci_interrupts: Vec<PciInterrupt>,
    pub boot_entry: BootEntry,
}

impl Rebooter {
    pub(super) fn reboot(&self) -> Result<(), String> {
        let started = Instant::now();
        self.pause
            .pause(PauseHolder::Machine, PAUSE_TIMEOUT)
            .map_err(|e| format!("cannot stop the vCPUs: {e}"))?;
        for device in &self.devices {
            device.platform_reset();
        }
        self.irqchip
            .restore(&self.vm)
            .map_err(|e| format!("cannot reset the interrupt controllers: {e}"))?;
        if let Some(pinned) = &self.pinned_ram {
            pinned.before_clear();
        }
        memory::clear(&self.mem, &self.memory_options).map_err(|e| e.to_string())?;
        if let Some(pinned) = &self.pinned_ram {
            pinned.after_clear();
        }
        let kernel = load_linux(
            &self.mem,
            self.memory_bytes,
            &self.kernel,
            self.initramfs.as_deref(),
            &self.cmdline,
        )
        .map_err(|e| format!("cannot load the kernel again: {e}"))?;
        write_tables(
            &self.mem,
            &AcpiPlatform {
                cpus: self.cpus,
                pci_interrupts: &self.pci_interrupts,
            },
        )
        .map_err(|e| e.to_string())?;
        *lock(&self.boot_entry) = kernel;
        self.pause
            .finish_reboot()
            .map_err(|e| format!("cannot restart the vCPUs: {e}"))?;
        info!(
            "rebooted in place in {} ms ({} device(s) reset, RAM cleared, {} reloaded)",
            started.elapsed().as_millis(),
            self.devices.len(),
            self.kernel.display()
        );
        Ok(())
    }
}

/// What a vCPU thread works with besides its vCPU.
pub(super) struct VcpuContext {
    pub bus: Arc<PortIoBus>,
    pub mmio: Arc<MmioBus>,
    pub pause: Arc<PauseControl>,
    pub stops: Sender<MachineStop>,
    pub mem: GuestMemory,
    pub boot_entry: BootEntry,
    /// False with `--no-reboot`: a triple fault is then a failure.
    pub reboot: bool,
}

/// Runs `vcpu` until the machine ends for it: a reset parks it until the reboot is
/// done, then it starts again from its power-on state.
pub(super) fn run_vcpu(mut vcpu: Vcpu, ctx: VcpuContext) {
    let index = vcpu.index();
    loop {
        let stop = match vcpu.run(&ctx.bus, &ctx.mmio, &ctx.pause) {
            VcpuStop::TripleFault if ctx.reboot => {
                warn!("vCPU {index}: triple fault; the machine reboots");
                VcpuStop::Reset
            }
            VcpuStop::TripleFault => VcpuStop::Failed(VcpuError::TripleFault { vcpu: index }),
            other => other,
        };
        match stop {
            VcpuStop::Reset => {
                let generation = ctx.pause.generation();
                let _ = ctx.stops.send(MachineStop::Reset { generation });
                ctx.pause.wait_for_reboot(generation);
            }
            VcpuStop::Rebooted => {}
            other => {
                // A vCPU that stopped counts as parked: a pause (the orderly stop after a
                // poweroff) need not wait for it.
                ctx.pause.retire_current_thread();
                let _ = ctx.stops.send(MachineStop::Vcpu(other));
                return;
            }
        }
        let restarted = vcpu.reset_to_power_on().and_then(|()| {
            if index == 0 {
                let kernel = *lock(&ctx.boot_entry);
                vcpu.enter_kernel(&ctx.mem, &kernel)
            } else {
                Ok(())
            }
        });
        if let Err(err) = restarted {
            ctx.pause.retire_current_thread();
            let failure = VcpuError::Reboot {
                vcpu: index,
                reason: err.to_string(),
            };
            let _ = ctx.stops.send(MachineStop::Vcpu(VcpuStop::Failed(failure)));
            return;
        }
    }
}
