//! The state the boot CPU needs to enter a 64-bit Linux kernel directly: long mode with an
//! identity map of the first GiB, flat segments, the zero page in RSI.

use kvm_bindings::{kvm_fpu, kvm_regs, kvm_segment, kvm_sregs};
use vm_memory::{Bytes, GuestAddress};

use crate::layout::{BOOT_GDT, BOOT_IDT, BOOT_STACK_TOP, PD, PDPT, PML4};
use crate::memory::GuestMemory;

const CR0_PE: u64 = 1 << 0;
const CR0_PG: u64 = 1 << 31;
const CR4_PAE: u64 = 1 << 5;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;
const RFLAGS_RESERVED: u64 = 1 << 1;

const PAGE_PRESENT_WRITABLE: u64 = 0x3;
const PAGE_HUGE: u64 = 0x80;
const HUGE_PAGE_SIZE: u64 = 2 << 20;

/// GDT access/flags words (bits 40..55 of a descriptor).
const GDT_CODE64: u16 = 0xa09b;
const GDT_DATA: u16 = 0xc093;
const GDT_TSS: u16 = 0x808b;

pub fn gdt_entry(flags: u16, base: u32, limit: u32) -> u64 {
    let (flags, base, limit) = (u64::from(flags), u64::from(base), u64::from(limit));
    ((base & 0xff00_0000) << 32)
        | ((flags & 0xf0ff) << 40)
        | ((limit & 0x000f_0000) << 32)
        | ((base & 0x00ff_ffff) << 16)
        | (limit & 0xffff)
}

/// Decodes a GDT descriptor into the segment register KVM loads.
pub fn segment_from_gdt(entry: u64, index: u8) -> kvm_segment {
    let granular = (entry >> 55) & 1 == 1;
    let raw_limit = ((entry & 0xffff) | ((entry >> 32) & 0xf_0000)) as u32;
    let present = ((entry >> 47) & 1) as u8;
    kvm_segment {
        base: ((entry >> 16) & 0xff_ffff) | ((entry >> 32) & 0xff00_0000),
        limit: if granular {
            (raw_limit << 12) | 0xfff
        } else {
            raw_limit
        },
        selector: u16::from(index) * 8,
        type_: ((entry >> 40) & 0xf) as u8,
        present,
        dpl: ((entry >> 45) & 0x3) as u8,
        db: ((entry >> 54) & 1) as u8,
        s: ((entry >> 44) & 1) as u8,
        l: ((entry >> 53) & 1) as u8,
        g: granular as u8,
        avl: ((entry >> 52) & 1) as u8,
        unusable: u8::from(present == 0),
        padding: 0,
    }
}

/// Writes the GDT, IDT and page tables into guest memory and returns the special registers
/// that use them, starting from the vCPU's reset state `sregs`.
pub fn long_mode_sregs(
    mem: &GuestMemory,
    mut sregs: kvm_sregs,
) -> Result<kvm_sregs, vm_memory::GuestMemoryError> {
    let gdt = [
        gdt_entry(0, 0, 0),
        gdt_entry(GDT_CODE64, 0, 0xfffff),
        gdt_entry(GDT_DATA, 0, 0xfffff),
        gdt_entry(GDT_TSS, 0, 0xfffff),
    ];
    for (i, entry) in gdt.iter().enumerate() {
        mem.write_obj(*entry, GuestAddress(BOOT_GDT.0 + 8 * i as u64))?;
    }
    mem.write_obj(0u64, BOOT_IDT)?;

    let code = segment_from_gdt(gdt[1], 1);
    let data = segment_from_gdt(gdt[2], 2);
    let tss = segment_from_gdt(gdt[3], 3);
    sregs.gdt.base = BOOT_GDT.0;
    sregs.gdt.limit = (std::mem::size_of_val(&gdt) - 1) as u16;
    sregs.idt.base = BOOT_IDT.0;
    sregs.idt.limit = 7;
    sregs.cs = code;
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
    sregs.tr = tss;

    // Identity map of the first GiB with 2 MiB pages: enough for the kernel's own setup.
    mem.write_obj(PDPT.0 | PAGE_PRESENT_WRITABLE, PML4)?;
    mem.write_obj(PD.0 | PAGE_PRESENT_WRITABLE, PDPT)?;
    for i in 0..512u64 {
        let entry = (i * HUGE_PAGE_SIZE) | PAGE_HUGE | PAGE_PRESENT_WRITABLE;
        mem.write_obj(entry, GuestAddress(PD.0 + i * 8))?;
    }
    sregs.cr3 = PML4.0;
    sregs.cr4 |= CR4_PAE;
    sregs.cr0 |= CR0_PE | CR0_PG;
    sregs.efer |= EFER_LME | EFER_LMA;
    Ok(sregs)
}

/// General registers at the kernel's 64-bit entry point.
pub fn entry_regs(entry: GuestAddress, zero_page: GuestAddress) -> kvm_regs {
    kvm_regs {
        rflags: RFLAGS_RESERVED,
        rip: entry.0,
        rsp: BOOT_STACK_TOP,
        rbp: BOOT_STACK_TOP,
        rsi: zero_page.0,
        ..Default::default()
    }
}

/// The x87/SSE state firmware leaves behind: default control word and MXCSR.
pub fn initial_fpu() -> kvm_fpu {
    kvm_fpu {
        fcw: 0x37f,
        mxcsr: 0x1f80,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gdt_entries_decode_to_flat_segments() {
        let code = segment_from_gdt(gdt_entry(GDT_CODE64, 0, 0xfffff), 1);
        assert_eq!((code.base, code.limit, code.selector), (0, 0xffff_ffff, 8));
        assert_eq!(
            (code.l, code.db, code.present, code.s, code.type_),
            (1, 0, 1, 1, 0xb)
        );
        let data = segment_from_gdt(gdt_entry(GDT_DATA, 0, 0xfffff), 2);
        assert_eq!((data.db, data.l, data.type_, data.selector), (1, 0, 3, 16));
        let null = segment_from_gdt(0, 0);
        assert_eq!(null.unusable, 1);
    }

    #[test]
    fn page_tables_identity_map_the_first_gib() {
        let mem = crate::memory::allocate(64 << 20).unwrap();
        let sregs = long_mode_sregs(&mem, kvm_sregs::default()).unwrap();
        assert_eq!(sregs.cr3, PML4.0);
        assert_ne!(sregs.efer & EFER_LMA, 0);
        let pml4: u64 = mem.read_obj(PML4).unwrap();
        assert_eq!(pml4 & !0xfff, PDPT.0);
        let last: u64 = mem.read_obj(GuestAddress(PD.0 + 511 * 8)).unwrap();
        assert_eq!(last & !0xfff, 511 * HUGE_PAGE_SIZE);
        assert_ne!(last & PAGE_HUGE, 0);
    }
}
