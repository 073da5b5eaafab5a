//! The guest-physical address map of a ringvisor machine.
//!
//! Low memory holds the structures the boot protocol needs; RAM is split around a 1 GiB hole
//! below 4 GiB that belongs to the IOAPIC, the local APICs and PCI memory BARs.

use vm_memory::GuestAddress;

/// Real-mode interrupt vector table and BIOS data area live below this; kept as RAM.
pub const BOOT_GDT: GuestAddress = GuestAddress(0x500);
pub const BOOT_IDT: GuestAddress = GuestAddress(0x520);
/// The Linux zero page (`struct boot_params`).
pub const ZERO_PAGE: GuestAddress = GuestAddress(0x7000);
/// Initial stack of the boot CPU; grows down from here.
pub const BOOT_STACK_TOP: u64 = 0x8ff0;
/// Identity-mapping page tables for the first GiB (PML4, PDPT, PD).
pub const PML4: GuestAddress = GuestAddress(0x9000);
pub const PDPT: GuestAddress = GuestAddress(0xa000);
pub const PD: GuestAddress = GuestAddress(0xb000);
/// Kernel command line, NUL-terminated.
pub const CMDLINE: GuestAddress = GuestAddress(0x20000);
pub const CMDLINE_MAX_SIZE: usize = 0x10000;
/// End of conventional memory: the last KiB before 640 KiB is the extended BIOS data area,
/// where Linux looks for the MP floating pointer.
pub const EBDA_START: GuestAddress = GuestAddress(0x9fc00);
/// Where the protected-mode kernel is loaded (bzImage `code32_start`).
pub const HIMEM_START: GuestAddress = GuestAddress(0x10_0000);

/// The ACPI tables: the RSDP where Linux scans for it (0xE0000..0x100000, which the
/// e820 map reserves), the other tables after it.
pub const ACPI_TABLES_START: GuestAddress = GuestAddress(0xe_0000);
pub const ACPI_TABLES_END: GuestAddress = HIMEM_START;

/// The 32-bit MMIO hole: PCI BARs, the PCI Express configuration space (ECAM), then the
/// IOAPIC and local APIC at its top.
pub const MMIO_HOLE_START: u64 = 0xc000_0000;
/// ECAM of bus 0, the only bus: 32 devices x 8 functions x 4 KiB.
pub const PCI_ECAM_START: u64 = 0xfe00_0000;
pub const PCI_ECAM_SIZE: u64 = 0x10_0000;
/// PCI memory BARs live in `[PCI_MMIO_START, PCI_MMIO_END)`, below the ECAM.
pub const PCI_MMIO_START: u64 = MMIO_HOLE_START;
pub const PCI_MMIO_END: u64 = PCI_ECAM_START;

/// The ACPI platform registers (sleep control, sleep status, reset): see `crate::acpi`.
pub const ACPI_PM_PORT: u16 = 0x600;
/// The Generic Event Device's interrupt (the power button): an IOAPIC pin no ISA device
/// and no PCI INTx route uses.
pub const GED_GSI: u32 = 17;
pub const MMIO_HOLE_END: u64 = 0x1_0000_0000;
pub const IOAPIC_ADDR: u32 = 0xfec0_0000;
pub const LAPIC_ADDR: u32 = 0xfee0_0000;

/// KVM needs three pages for the TSS and one for the identity map; placed just below the
/// IOAPIC so they never overlap RAM or a BAR.
pub const KVM_TSS_ADDR: u64 = 0xfeff_d000;
pub const KVM_IDENTITY_MAP_ADDR: u64 = 0xfeff_c000;
