//! One vCPU: its CPU state at power-on and the loop that runs it until the guest stops.
//!
//! The loop handles only exits that must reach userspace (port I/O, MMIO, shutdown): queue
//! kicks never arrive here, they land on ioeventfds owned by the I/O reactors.

use kvm_bindings::{kvm_msr_entry, Msrs, KVM_MAX_CPUID_ENTRIES, KVM_SYSTEM_EVENT_CRASH};
use kvm_ioctls::{Kvm, VcpuExit, VcpuFd};
use log::{debug, warn};

use crate::boot::LoadedKernel;
use crate::memory::GuestMemory;
use crate::mmio_bus::MmioBus;
use crate::pio_bus::{PioAction, PortIoBus};

use super::boot_cpu::{entry_regs, initial_fpu, long_mode_sregs};
use super::cpuid::{configure_for_vcpu, xsave_features};
use super::pause::PauseControl;
use super::power_on::VcpuPowerOnState;
use super::vm::VmError;

const MSR_IA32_TSC: u32 = 0x10;
const MSR_IA32_SYSENTER_CS: u32 = 0x174;
const MSR_IA32_SYSENTER_ESP: u32 = 0x175;
const MSR_IA32_SYSENTER_EIP: u32 = 0x176;
const MSR_IA32_MISC_ENABLE: u32 = 0x1a0;
const MSR_MTRR_DEF_TYPE: u32 = 0x2ff;
const MSR_STAR: u32 = 0xc000_0081;
const MSR_LSTAR: u32 = 0xc000_0082;
const MSR_CSTAR: u32 = 0xc000_0083;
const MSR_SYSCALL_MASK: u32 = 0xc000_0084;
const MSR_KERNEL_GS_BASE: u32 = 0xc000_0102;
const MISC_ENABLE_FAST_STRING: u64 = 1;
/// MTRRs enabled with write-back as the default memory type, as firmware leaves them.
const MTRR_ENABLE_WRITEBACK: u64 = (1 << 11) | 6;

const APIC_LVT_LINT0: usize = 0x350;
const APIC_LVT_LINT1: usize = 0x360;
const APIC_DELIVERY_MODE_MASK: u32 = 0x700;
const APIC_MODE_NMI: u32 = 0x4 << 8;
const APIC_MODE_EXTINT: u32 = 0x7 << 8;

/// Why a vCPU stopped running the guest.
#[derive(Debug)]
pub enum VcpuStop {
    /// The guest asked for a reset (the ACPI reset register, an i8042 pulse or a KVM
    /// system event): a clean stop.
    Reset,
    /// The guest's CPU shut down (a triple fault): a reset, or a failure where the machine
    /// does not reboot.
    TripleFault,
    /// The machine rebooted while this vCPU was parked: it must be reset before it runs.
    Rebooted,
    /// The guest powered off: a clean stop.
    Poweroff,
    /// Something went wrong; the machine cannot go on.
    Failed(VcpuError),
}

#[derive(Debug, thiserror::Error)]
pub enum VcpuError {
    #[error("vCPU {vcpu}: triple fault (the guest CPU shut down)")]
    TripleFault { vcpu: u8 },
    #[error("vCPU {vcpu}: KVM internal error (emulation failure)")]
    InternalError { vcpu: u8 },
    #[error("vCPU {vcpu}: VM entry failed, hardware reason {reason:#x}")]
    FailEntry { vcpu: u8, reason: u64 },
    #[error("vCPU {vcpu}: cannot reset it for the reboot: {reason}")]
    Reboot { vcpu: u8, reason: String },
    #[error("vCPU {vcpu}: the guest reported a crash (system event)")]
    GuestCrash { vcpu: u8 },
    #[error("vCPU {vcpu}: unexpected exit {exit}")]
    UnexpectedExit { vcpu: u8, exit: String },
    #[error("vCPU {vcpu}: KVM_RUN failed: {source}")]
    Run {
        vcpu: u8,
        #[source]
        source: kvm_ioctls::Error,
    },
}

pub struct Vcpu {
    index: u8,
    fd: VcpuFd,
    /// What a reboot puts back; read once the vCPU is configured.
    power_on: Option<VcpuPowerOnState>,
}

fn ioctl(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> VmError {
    move |source| VmError::Ioctl { what, source }
}

impl Vcpu {
    pub(super) fn new(index: u8, fd: VcpuFd) -> Self {
        Self {
            index,
            fd,
            power_on: None,
        }
    }

    /// Remembers the configured, never-run state for [`Vcpu::reset_to_power_on`].
    pub(super) fn capture_power_on(&mut self, kvm: &Kvm) -> Result<(), VmError> {
        self.power_on = Some(VcpuPowerOnState::capture(kvm, &self.fd)?);
        Ok(())
    }

    /// Puts the vCPU back in its power-on state (a reboot in place); the boot processor
    /// then needs [`Vcpu::enter_kernel`] again.
    pub fn reset_to_power_on(&self) -> Result<(), VmError> {
        match &self.power_on {
            Some(state) => state.restore(&self.fd),
            None => Err(VmError::MissingCapability("the vCPU's power-on state")),
        }
    }

    pub fn index(&self) -> u8 {
        self.index
    }

    /// The raw vCPU descriptor, for state the wrappers here do not set (tests, debugging).
    pub fn fd(&self) -> &VcpuFd {
        &self.fd
    }

    /// Starts the vCPU with every XSAVE state component the CPUID offers enabled in XCR0,
    /// as Linux enables them anyway. A guest whose XSETBV does not exit (nested SVM under
    /// QEMU's TCG, the project's lab) would otherwise keep KVM's XSAVE size for x87 only,
    /// and its kernel would allocate FPU buffers too small for the AVX state it saves.
    fn enable_xsave_features(&self, xcr0: u64) -> Result<(), VmError> {
        let mut xcrs = kvm_bindings::kvm_xcrs {
            nr_xcrs: 1,
            ..Default::default()
        };
        xcrs.xcrs[0].xcr = 0;
        xcrs.xcrs[0].value = xcr0;
        self.fd
            .set_xcrs(&xcrs)
            .map_err(ioctl("enable the XSAVE state components (XCR0)"))
    }

    /// CPUID, MSRs, FPU and local APIC wiring common to every vCPU.
    pub(super) fn configure(&self, kvm: &Kvm, count: u8) -> Result<(), VmError> {
        let mut cpuid = kvm
            .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
            .map_err(ioctl("read the supported CPUID"))?;
        let tsc_deadline = kvm.check_extension(kvm_ioctls::Cap::TscDeadlineTimer);
        configure_for_vcpu(&mut cpuid, self.index, count, tsc_deadline);
        self.fd
            .set_cpuid2(&cpuid)
            .map_err(ioctl("set the vCPU's CPUID"))?;
        if let Some(xcr0) = xsave_features(&cpuid) {
            self.enable_xsave_features(xcr0)?;
            // KVM sizes the XSAVE area it reports (CPUID 0xD.0 EBX) from XCR0 when the CPUID
            // is set; setting it again after XCR0 makes that size match XCR0 from the start.
            self.fd
                .set_cpuid2(&cpuid)
                .map_err(ioctl("set the vCPU's CPUID"))?;
        }

        let entries: Vec<kvm_msr_entry> = [
            (MSR_IA32_SYSENTER_CS, 0),
            (MSR_IA32_SYSENTER_ESP, 0),
            (MSR_IA32_SYSENTER_EIP, 0),
            (MSR_STAR, 0),
            (MSR_CSTAR, 0),
            (MSR_KERNEL_GS_BASE, 0),
            (MSR_SYSCALL_MASK, 0),
            (MSR_LSTAR, 0),
            (MSR_IA32_TSC, 0),
            (MSR_IA32_MISC_ENABLE, MISC_ENABLE_FAST_STRING),
            (MSR_MTRR_DEF_TYPE, MTRR_ENABLE_WRITEBACK),
        ]
        .into_iter()
        .map(|(index, data)| kvm_msr_entry {
            index,
            data,
            ..Default::default()
        })
        .collect();
        let msrs = Msrs::from_entries(&entries)
            .map_err(|_| VmError::MissingCapability("room for the boot MSR list"))?;
        let written = self.fd.set_msrs(&msrs).map_err(ioctl("set boot MSRs"))?;
        if written != entries.len() {
            warn!(
                "vCPU {}: KVM accepted {written} of {} boot MSRs (MSR {:#x} refused)",
                self.index,
                entries.len(),
                entries[written].index
            );
        }

        self.fd
            .set_fpu(&initial_fpu())
            .map_err(ioctl("set the FPU state"))?;

        let mut lapic = self.fd.get_lapic().map_err(ioctl("read the local APIC"))?;
        set_lvt_delivery_mode(&mut lapic.regs, APIC_LVT_LINT0, APIC_MODE_EXTINT);
        set_lvt_delivery_mode(&mut lapic.regs, APIC_LVT_LINT1, APIC_MODE_NMI);
        self.fd
            .set_lapic(&lapic)
            .map_err(ioctl("set the local APIC"))?;
        Ok(())
    }

    /// Puts the boot CPU at the kernel's 64-bit entry. Application processors are left in
    /// their reset state: the guest starts them with INIT/SIPI through the in-kernel APIC.
    pub fn enter_kernel(&self, mem: &GuestMemory, kernel: &LoadedKernel) -> Result<(), VmError> {
        let sregs = self
            .fd
            .get_sregs()
            .map_err(ioctl("read special registers"))?;
        let sregs = long_mode_sregs(mem, sregs)
            .map_err(|_| VmError::MissingCapability("guest memory for boot page tables"))?;
        self.fd
            .set_sregs(&sregs)
            .map_err(ioctl("set special registers"))?;
        self.fd
            .set_regs(&entry_regs(kernel.entry, kernel.zero_page))
            .map_err(ioctl("set registers"))?;
        Ok(())
    }

    /// Runs the guest until it stops; port I/O goes to `bus`, MMIO to `mmio`.
    pub fn run(&mut self, bus: &PortIoBus, mmio: &MmioBus, pause: &PauseControl) -> VcpuStop {
        let vcpu = self.index;
        pause.register_current_thread();
        loop {
            if pause.checkpoint(&self.fd) {
                return VcpuStop::Rebooted;
            }
            let exit = match self.fd.run() {
                Ok(exit) => exit,
                Err(err) if matches!(err.errno(), libc::EINTR | libc::EAGAIN) => continue,
                Err(source) => return VcpuStop::Failed(VcpuError::Run { vcpu, source }),
            };
            let failure = match exit {
                VcpuExit::IoIn(port, data) => {
                    bus.read(port, data);
                    continue;
                }
                VcpuExit::IoOut(port, data) => match bus.write(port, data) {
                    PioAction::Continue => continue,
                    PioAction::Reset => return VcpuStop::Reset,
                    PioAction::Poweroff => return VcpuStop::Poweroff,
                },
                VcpuExit::MmioRead(addr, data) => {
                    mmio.read(addr, data);
                    continue;
                }
                VcpuExit::MmioWrite(addr, data) => {
                    mmio.write(addr, data);
                    continue;
                }
                VcpuExit::Hlt => VcpuError::UnexpectedExit {
                    vcpu,
                    exit: "HLT with the in-kernel irqchip".into(),
                },
                VcpuExit::Shutdown => return VcpuStop::TripleFault,
                VcpuExit::InternalError => VcpuError::InternalError { vcpu },
                VcpuExit::FailEntry(reason, _) => VcpuError::FailEntry { vcpu, reason },
                VcpuExit::SystemEvent(kind, _) => match kind {
                    kvm_bindings::KVM_SYSTEM_EVENT_SHUTDOWN => return VcpuStop::Poweroff,
                    kvm_bindings::KVM_SYSTEM_EVENT_RESET => return VcpuStop::Reset,
                    KVM_SYSTEM_EVENT_CRASH => VcpuError::GuestCrash { vcpu },
                    other => VcpuError::UnexpectedExit {
                        vcpu,
                        exit: format!("system event {other}"),
                    },
                },
                VcpuExit::Intr => continue,
                other => VcpuError::UnexpectedExit {
                    vcpu,
                    exit: format!("{other:?}"),
                },
            };
            self.dump_state();
            return VcpuStop::Failed(failure);
        }
    }

    /// Logs the registers at debug level, for post-mortems of failed guests.
    fn dump_state(&self) {
        if !log::log_enabled!(log::Level::Debug) {
            return;
        }
        match (self.fd.get_regs(), self.fd.get_sregs()) {
            (Ok(regs), Ok(sregs)) => debug!(
                "vCPU {}: rip={:#x} rsp={:#x} rflags={:#x} rax={:#x} rbx={:#x} rcx={:#x} rdx={:#x} rsi={:#x} rdi={:#x} cr0={:#x} cr2={:#x} cr3={:#x} cr4={:#x} efer={:#x} cs={:#x}",
                self.index, regs.rip, regs.rsp, regs.rflags, regs.rax, regs.rbx, regs.rcx, regs.rdx,
                regs.rsi, regs.rdi, sregs.cr0, sregs.cr2, sregs.cr3, sregs.cr4, sregs.efer, sregs.cs.selector
            ),
            (Err(err), _) | (_, Err(err)) => debug!("vCPU {}: cannot read registers: {err}", self.index),
        }
    }
}

fn set_lvt_delivery_mode(regs: &mut [std::os::raw::c_char; 1024], offset: usize, mode: u32) {
    let mut bytes = [0u8; 4];
    for (i, byte) in bytes.iter_mut().enumerate() {
        *byte = regs[offset + i] as u8;
    }
    let value = (u32::from_le_bytes(bytes) & !APIC_DELIVERY_MODE_MASK) | mode;
    for (i, byte) in value.to_le_bytes().iter().enumerate() {
        regs[offset + i] = *byte as std::os::raw::c_char;
    }
}
