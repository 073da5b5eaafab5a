//! ACPI tables: how the guest learns its CPUs, its interrupt controllers, the PCI host
//! bridge and its windows, the power button, and the registers that power it off or
//! reset it. Built with rust-vmm's `acpi_tables`; written below 1 MiB where Linux scans
//! for the RSDP (and handed to it in the zero page as well).
//!
//! The platform is hardware-reduced ACPI (FADT `HW_REDUCED_ACPI`), as Cloud Hypervisor's
//! and Firecracker's are. Fixed-function hardware would need PM1 event and control blocks,
//! a PM timer and an SCI that stays asserted while a status bit is set: a level-triggered
//! line held through an irqfd with resampling, an EOI round trip per event, registers
//! Linux on a kvmclock guest does not otherwise use. Hardware-reduced needs two byte
//! registers (sleep control and status: [`ringvisor_devices::legacy::AcpiPmRegisters`]),
//! a reset register (the chipset's reset control at 0xCF9, which Linux also falls back to
//! on a hardware-reduced machine without EFI) and a Generic Event Device whose
//! edge-triggered interrupt is the power button.

mod dsdt;
mod madt;

use acpi_tables::fadt::{FADTBuilder, Flags, PmProfile};
use acpi_tables::gas::{AccessSize, AddressSpace, GAS};
use acpi_tables::mcfg::MCFG;
use acpi_tables::rsdp::Rsdp;
use acpi_tables::sdt::Sdt;
use acpi_tables::xsdt::XSDT;
use acpi_tables::Aml;
use ringvisor_devices::legacy::acpi_pm::{SLEEP_CONTROL_OFFSET, SLEEP_STATUS_OFFSET};
use ringvisor_devices::legacy::reset_control::{RESET_CONTROL_HARD_RESET, RESET_CONTROL_PORT};
use vm_memory::{Bytes, GuestAddress};

use crate::layout::{ACPI_PM_PORT, ACPI_TABLES_END, ACPI_TABLES_START, PCI_ECAM_START};
use crate::memory::GuestMemory;
use crate::pci::PciInterrupt;

pub use madt::MAX_VCPUS;

const OEM_ID: [u8; 6] = *b"RINGVS";
const OEM_REVISION: u32 = 1;
/// DSDT revision 2: integers are 64 bits wide.
const DSDT_REVISION: u8 = 2;
/// IA-PC boot architecture flags: the 16550 and the CMOS clock are ISA devices that
/// the DSDT describes (LEGACY_DEVICES); no 8042 keyboard controller (only its reset
/// line, which the FADT's reset register replaces).
const IAPC_LEGACY_DEVICES: u16 = 1 << 0;

/// What the tables describe.
#[derive(Debug, Clone)]
pub struct AcpiPlatform<'a> {
    pub cpus: u8,
    /// INTx routes of the PCI functions that use them.
    pub pci_interrupts: &'a [PciInterrupt],
}

#[derive(Debug, thiserror::Error)]
pub enum AcpiError {
    #[error("the ACPI tables ({0} bytes) do not fit between 0xE0000 and 1 MiB")]
    TooLarge(u64),
    #[error("cannot write the ACPI tables into guest memory: {0}")]
    GuestWrite(String),
    #[error("ACPI describes 1 to {MAX_VCPUS} vCPUs (asked for {0})")]
    CpuCount(u8),
}

/// The serialized tables, each with the guest address it was built for.
#[derive(Debug)]
pub struct AcpiTables {
    pub rsdp: GuestAddress,
    pub tables: Vec<(GuestAddress, Vec<u8>)>,
}

fn table_id(signature: &[u8; 4]) -> [u8; 8] {
    let mut id = *b"RVSR    ";
    id[4..].copy_from_slice(signature);
    id
}

fn bytes_of(aml: &dyn Aml) -> Vec<u8> {
    let mut bytes = Vec::new();
    aml.to_aml_bytes(&mut bytes);
    bytes
}

fn io_register(port: u16) -> GAS {
    GAS::new(
        AddressSpace::SystemIo,
        8,
        0,
        AccessSize::ByteAccess,
        u64::from(port),
    )
}

/// Lays the tables out from [`ACPI_TABLES_START`]: the RSDP first (16-byte aligned,
/// where the scan finds it), then each table 8-byte aligned.
struct Placer {
    next: u64,
    tables: Vec<(GuestAddress, Vec<u8>)>,
}

impl Placer {
    fn place(&mut self, bytes: Vec<u8>) -> u64 {
        let addr = self.next.next_multiple_of(8);
        self.next = addr + bytes.len() as u64;
        self.tables.push((GuestAddress(addr), bytes));
        addr
    }
}

/// Builds every table for `platform`.
pub fn build_tables(platform: &AcpiPlatform) -> Result<AcpiTables, AcpiError> {
    if platform.cpus == 0 || platform.cpus > MAX_VCPUS {
        return Err(AcpiError::CpuCount(platform.cpus));
    }
    let rsdp_addr = ACPI_TABLES_START;
    let mut placer = Placer {
        next: rsdp_addr.0 + Rsdp::len() as u64,
        tables: Vec::new(),
    };

    let mut dsdt = Sdt::new(
        *b"DSDT",
        36,
        DSDT_REVISION,
        OEM_ID,
        table_id(b"DSDT"),
        OEM_REVISION,
    );
    dsdt.append_slice(&dsdt::dsdt_body(platform));
    let dsdt_addr = placer.place(dsdt.as_slice().to_vec());

    let mut fadt = FADTBuilder::new(OEM_ID, table_id(b"FACP"), OEM_REVISION)
        .dsdt_64(dsdt_addr)
        .flag(Flags::HwReducedAcpi)
        .flag(Flags::ResetRegSup)
        // The power button is a device (PNP0C0C behind the GED); there is no sleep button.
        .flag(Flags::PwrButton)
        .flag(Flags::SlpButton)
        .preferred_pm_profile(PmProfile::EnterpriseServer);
    fadt.iapc_boot_arch = IAPC_LEGACY_DEVICES.into();
    fadt.reset_reg = io_register(RESET_CONTROL_PORT);
    fadt.reset_value = RESET_CONTROL_HARD_RESET;
    fadt.sleep_control_reg = io_register(ACPI_PM_PORT + SLEEP_CONTROL_OFFSET);
    fadt.sleep_status_reg = io_register(ACPI_PM_PORT + SLEEP_STATUS_OFFSET);
    let fadt_addr = placer.place(bytes_of(&fadt.finalize()));

    let madt_addr = placer.place(bytes_of(&madt::build_madt(
        platform.cpus,
        OEM_ID,
        table_id(b"APIC"),
        OEM_REVISION,
    )));

    let mut mcfg = MCFG::new(OEM_ID, table_id(b"MCFG"), OEM_REVISION);
    // Segment 0, bus 0 only: the root bus has no bridges.
    mcfg.add_ecam(PCI_ECAM_START, 0, 0, 0);
    let mcfg_addr = placer.place(bytes_of(&mcfg));

    let mut xsdt = XSDT::new(OEM_ID, table_id(b"XSDT"), OEM_REVISION);
    for addr in [fadt_addr, madt_addr, mcfg_addr] {
        xsdt.add_entry(addr);
    }
    let xsdt_addr = placer.place(bytes_of(&xsdt));

    if placer.next > ACPI_TABLES_END.0 {
        return Err(AcpiError::TooLarge(placer.next - ACPI_TABLES_START.0));
    }
    let mut tables = vec![(rsdp_addr, bytes_of(&Rsdp::new(OEM_ID, xsdt_addr)))];
    tables.extend(placer.tables);
    Ok(AcpiTables {
        rsdp: rsdp_addr,
        tables,
    })
}

/// The kernel command line the guest gets: the user's, with `reboot=acpi` added when it
/// names no reboot method. Since Linux 3.16 a hardware-reduced ACPI machine reboots
/// through EFI by default, and a kernel booted without EFI (as ringvisor boots it) then
/// hangs in its reboot path instead of reaching the reset register (seen with Debian's
/// 6.1 kernels); `reboot=acpi` sends it to the FADT's reset register instead.
pub fn guest_cmdline(cmdline: &str) -> std::borrow::Cow<'_, str> {
    if cmdline
        .split_whitespace()
        .any(|word| word.starts_with("reboot="))
    {
        std::borrow::Cow::Borrowed(cmdline)
    } else if cmdline.trim().is_empty() {
        std::borrow::Cow::Borrowed("reboot=acpi")
    } else {
        std::borrow::Cow::Owned(format!("{} reboot=acpi", cmdline.trim_end()))
    }
}

/// Builds the tables and writes them into guest memory; returns the RSDP's address.
pub fn write_tables(mem: &GuestMemory, platform: &AcpiPlatform) -> Result<GuestAddress, AcpiError> {
    let built = build_tables(platform)?;
    for (addr, bytes) in &built.tables {
        mem.write_slice(bytes, *addr)
            .map_err(|e| AcpiError::GuestWrite(e.to_string()))?;
    }
    Ok(built.rsdp)
}

#[cfg(test)]
mod tests;
