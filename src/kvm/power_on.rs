//! The state a vCPU and the in-kernel interrupt controllers had at power-on, kept to put
//! them back when the guest reboots in place. KVM has no reset ioctl: a vCPU is reset by
//! writing back every piece of state it holds, as it stood after creation and
//! configuration, before the first instruction ran.

use kvm_bindings::{
    kvm_debugregs, kvm_fpu, kvm_irqchip, kvm_lapic_state, kvm_mp_state, kvm_msr_entry,
    kvm_pit_state2, kvm_regs, kvm_sregs, kvm_vcpu_events, kvm_xcrs, Msrs, KVM_IRQCHIP_IOAPIC,
    KVM_IRQCHIP_PIC_MASTER, KVM_IRQCHIP_PIC_SLAVE,
};
use kvm_ioctls::{Kvm, VcpuFd, VmFd};
use log::{debug, warn};

use super::VmError;

fn ioctl(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> VmError {
    move |source| VmError::Ioctl { what, source }
}

/// One vCPU at power-on.
pub(super) struct VcpuPowerOnState {
    regs: kvm_regs,
    sregs: kvm_sregs,
    fpu: kvm_fpu,
    xcrs: Option<kvm_xcrs>,
    msrs: Vec<kvm_msr_entry>,
    lapic: kvm_lapic_state,
    mp_state: kvm_mp_state,
    events: kvm_vcpu_events,
    debug_regs: kvm_debugregs,
}

/// Reads every MSR of `indices` that KVM lets this vCPU read; those it refuses (KVM's
/// list names MSRs the CPU model may lack) are left out.
fn read_msrs(fd: &VcpuFd, indices: &[u32]) -> Vec<kvm_msr_entry> {
    let mut read = Vec::with_capacity(indices.len());
    let mut rest = indices;
    while !rest.is_empty() {
        let entries: Vec<kvm_msr_entry> = rest
            .iter()
            .map(|&index| kvm_msr_entry {
                index,
                ..Default::default()
            })
            .collect();
        let Ok(mut msrs) = Msrs::from_entries(&entries) else {
            break;
        };
        // KVM reads in order and stops at the first MSR it refuses.
        let count = fd.get_msrs(&mut msrs).unwrap_or(0);
        read.extend_from_slice(&msrs.as_slice()[..count]);
        if count < rest.len() {
            debug!(
                "MSR {:#x} cannot be read; not restored on reboot",
                rest[count]
            );
        }
        rest = &rest[(count + 1).min(rest.len())..];
    }
    read
}

/// Writes `entries`, skipping any KVM refuses; returns how many were refused.
fn write_msrs(fd: &VcpuFd, entries: &[kvm_msr_entry]) -> usize {
    let mut refused = 0;
    let mut rest = entries;
    while !rest.is_empty() {
        let Ok(msrs) = Msrs::from_entries(rest) else {
            return refused + rest.len();
        };
        let count = fd.set_msrs(&msrs).unwrap_or(0);
        if count < rest.len() {
            debug!("MSR {:#x} refused on reboot", rest[count].index);
            refused += 1;
        }
        rest = &rest[(count + 1).min(rest.len())..];
    }
    refused
}

impl VcpuPowerOnState {
    /// Reads the state of a vCPU that has been configured and never run.
    pub(super) fn capture(kvm: &Kvm, fd: &VcpuFd) -> Result<Self, VmError> {
        let indices = kvm
            .get_msr_index_list()
            .map_err(ioctl("list the MSRs KVM saves"))?;
        Ok(Self {
            regs: fd.get_regs().map_err(ioctl("read the registers"))?,
            sregs: fd
                .get_sregs()
                .map_err(ioctl("read the special registers"))?,
            fpu: fd.get_fpu().map_err(ioctl("read the FPU state"))?,
            // None where the host has no XSAVE (KVM then reports no XCRs at all).
            xcrs: fd.get_xcrs().ok().filter(|x| x.nr_xcrs > 0),
            msrs: read_msrs(fd, indices.as_slice()),
            lapic: fd.get_lapic().map_err(ioctl("read the local APIC"))?,
            mp_state: fd.get_mp_state().map_err(ioctl("read the MP state"))?,
            events: fd
                .get_vcpu_events()
                .map_err(ioctl("read the vCPU events"))?,
            debug_regs: fd
                .get_debug_regs()
                .map_err(ioctl("read the debug registers"))?,
        })
    }

    /// Puts the vCPU back as it was at power-on: an application processor waits for
    /// INIT/SIPI again, the boot processor is ready for `Vcpu::enter_kernel`. The MSRs
    /// go back too, which disables what the last kernel registered with KVM (kvmclock,
    /// steal time, async page faults, PV EOI) before the next kernel's memory is there.
    pub(super) fn restore(&self, fd: &VcpuFd) -> Result<(), VmError> {
        fd.set_sregs(&self.sregs)
            .map_err(ioctl("reset the special registers"))?;
        fd.set_regs(&self.regs)
            .map_err(ioctl("reset the registers"))?;
        fd.set_fpu(&self.fpu).map_err(ioctl("reset the FPU"))?;
        if let Some(xcrs) = &self.xcrs {
            if let Err(e) = fd.set_xcrs(xcrs) {
                // XCR0 as the last kernel left it is one the next kernel sets again; it
                // only matters that the XSAVE size matches what the guest enables.
                let now = fd.get_xcrs().map(|x| x.xcrs[0].value).unwrap_or_default();
                warn!(
                    "XCR0 {:#x} not restored ({e}); keeping {now:#x}",
                    xcrs.xcrs[0].value
                );
            }
        }
        let refused = write_msrs(fd, &self.msrs);
        if refused > 0 {
            debug!("{refused} MSR(s) kept their values across the reboot");
        }
        fd.set_lapic(&self.lapic)
            .map_err(ioctl("reset the local APIC"))?;
        fd.set_mp_state(self.mp_state)
            .map_err(ioctl("reset the MP state"))?;
        fd.set_vcpu_events(&self.events)
            .map_err(ioctl("reset the vCPU events"))?;
        fd.set_debug_regs(&self.debug_regs)
            .map_err(ioctl("reset the debug registers"))?;
        Ok(())
    }
}

/// The in-kernel PICs, IOAPIC and PIT at power-on.
pub struct IrqchipPowerOnState {
    chips: Vec<kvm_irqchip>,
    pit: kvm_pit_state2,
}

impl IrqchipPowerOnState {
    pub(super) fn capture(vm: &VmFd) -> Result<Self, VmError> {
        let mut chips = Vec::new();
        for chip_id in [
            KVM_IRQCHIP_PIC_MASTER,
            KVM_IRQCHIP_PIC_SLAVE,
            KVM_IRQCHIP_IOAPIC,
        ] {
            let mut chip = kvm_irqchip {
                chip_id,
                ..Default::default()
            };
            vm.get_irqchip(&mut chip)
                .map_err(ioctl("read the interrupt controllers"))?;
            chips.push(chip);
        }
        let pit = vm.get_pit2().map_err(ioctl("read the PIT"))?;
        Ok(Self { chips, pit })
    }

    /// Every IOAPIC pin masked again, the PICs and the PIT as at power-on.
    pub fn restore(&self, vm: &VmFd) -> Result<(), VmError> {
        for chip in &self.chips {
            vm.set_irqchip(chip)
                .map_err(ioctl("reset the interrupt controllers"))?;
        }
        vm.set_pit2(&self.pit).map_err(ioctl("reset the PIT"))
    }
}
