//! Intel MultiProcessor Specification 1.4 tables: how a guest without ACPI learns its CPUs,
//! its IOAPIC and how ISA interrupts are wired.
//!
//! The floating pointer sits at the start of the EBDA, where Linux scans for it, followed by
//! the configuration table. Structures are serialized field by field, little endian, as the
//! specification lays them out.

use vm_memory::{Bytes, GuestAddress};

use crate::layout::{EBDA_START, HIMEM_START, IOAPIC_ADDR, LAPIC_ADDR};
use crate::memory::GuestMemory;

/// APIC IDs are 8-bit in MP tables and the IOAPIC takes the ID after the last CPU.
pub const MAX_MPTABLE_CPUS: u8 = 254;

const SPEC_REV_1_4: u8 = 4;
const LAPIC_VERSION: u8 = 0x14;
const IOAPIC_VERSION: u8 = 0x11;
/// Pins of KVM's in-kernel IOAPIC.
const IOAPIC_PINS: u8 = 24;
const ISA_IRQS: u8 = 16;
/// Linux looks PCI interrupts up by PCI bus number, so the MP bus ID of the root bus
/// must be 0; ISA takes the next ID, as SeaBIOS numbers them.
const PCI_BUS_ID: u8 = 0;
const ISA_BUS_ID: u8 = 1;

const ENTRY_PROCESSOR: u8 = 0;
const ENTRY_BUS: u8 = 1;
const ENTRY_IOAPIC: u8 = 2;
const ENTRY_IO_INTERRUPT: u8 = 3;
const ENTRY_LOCAL_INTERRUPT: u8 = 4;

const CPU_ENABLED: u8 = 0x1;
const CPU_BOOTSTRAP: u8 = 0x2;
/// Family 6 signature and the FPU + APIC feature bits, as firmware reports them.
const CPU_SIGNATURE: u32 = 0x600;
const CPU_FEATURES: u32 = (1 << 0) | (1 << 9);

const INT_TYPE_INT: u8 = 0;
const INT_TYPE_NMI: u8 = 1;
const INT_TYPE_EXTINT: u8 = 3;
/// Polarity and trigger "conforming to the bus": edge, active high for ISA.
const INT_FLAGS_CONFORMING: u16 = 0;
const ALL_LOCAL_APICS: u8 = 0xff;
/// Active high (bits 0-1 = 01), edge triggered (bits 2-3 = 01): PCI devices here signal
/// their interrupt as an edge through an irqfd, so the IOAPIC pin must not wait for an
/// EOI with the line still "high".
const INT_FLAGS_EDGE_HIGH: u16 = 0b0101;

/// A PCI function's interrupt pin wired to an IOAPIC pin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PciInterrupt {
    /// Device number on bus 0.
    pub slot: u8,
    /// 0 = INTA# ... 3 = INTD#.
    pub pin: u8,
    pub ioapic_pin: u8,
}

#[derive(Debug, thiserror::Error)]
pub enum MpTableError {
    #[error("the MP table describes at most {MAX_MPTABLE_CPUS} CPUs (asked for {0})")]
    TooManyCpus(u8),
    #[error("the MP table ({0} bytes) does not fit below 1 MiB")]
    TooLarge(usize),
    #[error("cannot write the MP table into guest memory: {0}")]
    GuestWrite(String),
}

/// Writes the floating pointer and configuration table for `cpus` CPUs at the EBDA,
/// with the interrupt routes of the PCI functions that use INTx.
pub fn write_mptable(
    mem: &GuestMemory,
    cpus: u8,
    pci_interrupts: &[PciInterrupt],
) -> Result<(), MpTableError> {
    let table = build_mptable(EBDA_START, cpus, pci_interrupts)?;
    if EBDA_START.0 + table.len() as u64 > HIMEM_START.0 {
        return Err(MpTableError::TooLarge(table.len()));
    }
    mem.write_slice(&table, EBDA_START)
        .map_err(|e| MpTableError::GuestWrite(e.to_string()))
}

/// Serializes the floating pointer (at `base`) followed by the configuration table.
fn build_mptable(
    base: GuestAddress,
    cpus: u8,
    pci_interrupts: &[PciInterrupt],
) -> Result<Vec<u8>, MpTableError> {
    if cpus == 0 || cpus > MAX_MPTABLE_CPUS {
        return Err(MpTableError::TooManyCpus(cpus));
    }
    let ioapic_id = cpus;
    let mut entries = Vec::new();
    let mut count: u16 = 0;

    for apic_id in 0..cpus {
        let flags = CPU_ENABLED | if apic_id == 0 { CPU_BOOTSTRAP } else { 0 };
        entries.extend_from_slice(&[ENTRY_PROCESSOR, apic_id, LAPIC_VERSION, flags]);
        entries.extend_from_slice(&CPU_SIGNATURE.to_le_bytes());
        entries.extend_from_slice(&CPU_FEATURES.to_le_bytes());
        entries.extend_from_slice(&[0; 8]);
        count += 1;
    }
    for (bus_id, name) in [(ISA_BUS_ID, b"ISA   "), (PCI_BUS_ID, b"PCI   ")] {
        entries.extend_from_slice(&[ENTRY_BUS, bus_id]);
        entries.extend_from_slice(name);
        count += 1;
    }
    entries.extend_from_slice(&[ENTRY_IOAPIC, ioapic_id, IOAPIC_VERSION, CPU_ENABLED]);
    entries.extend_from_slice(&IOAPIC_ADDR.to_le_bytes());
    count += 1;

    // ISA IRQ n arrives on IOAPIC pin n: that is KVM's default GSI routing, the PIT included
    // (GSI 0 -> pin 0). The 8259 reaches the CPUs through LINT0 only; declaring it on an
    // IOAPIC pin as well makes Linux look for an ExtINT pin KVM's IOAPIC does not have.
    for irq in 0..ISA_IRQS.min(IOAPIC_PINS) {
        entries.push(ENTRY_IO_INTERRUPT);
        entries.push(INT_TYPE_INT);
        entries.extend_from_slice(&INT_FLAGS_CONFORMING.to_le_bytes());
        entries.extend_from_slice(&[ISA_BUS_ID, irq, ioapic_id, irq]);
        count += 1;
    }
    for route in pci_interrupts {
        entries.push(ENTRY_IO_INTERRUPT);
        entries.push(INT_TYPE_INT);
        entries.extend_from_slice(&INT_FLAGS_EDGE_HIGH.to_le_bytes());
        // Source bus IRQ of a PCI bus: device number in bits 2-6, pin in bits 0-1.
        let source = (route.slot & 0x1f) << 2 | (route.pin & 0x3);
        entries.extend_from_slice(&[PCI_BUS_ID, source, ioapic_id, route.ioapic_pin]);
        count += 1;
    }
    for (kind, lint) in [(INT_TYPE_EXTINT, 0u8), (INT_TYPE_NMI, 1u8)] {
        entries.push(ENTRY_LOCAL_INTERRUPT);
        entries.push(kind);
        entries.extend_from_slice(&INT_FLAGS_CONFORMING.to_le_bytes());
        entries.extend_from_slice(&[ISA_BUS_ID, 0, ALL_LOCAL_APICS, lint]);
        count += 1;
    }

    const FLOATING_LEN: usize = 16;
    const HEADER_LEN: usize = 44;
    let table_addr = base.0 + FLOATING_LEN as u64;
    let table_len = HEADER_LEN + entries.len();

    let mut header = Vec::with_capacity(table_len);
    header.extend_from_slice(b"PCMP");
    header.extend_from_slice(&(table_len as u16).to_le_bytes());
    header.push(SPEC_REV_1_4);
    header.push(0); // checksum, patched below
    header.extend_from_slice(b"RINGVSOR");
    header.extend_from_slice(b"ringvisor   ");
    header.extend_from_slice(&0u32.to_le_bytes()); // no OEM table
    header.extend_from_slice(&0u16.to_le_bytes());
    header.extend_from_slice(&count.to_le_bytes());
    header.extend_from_slice(&LAPIC_ADDR.to_le_bytes());
    header.extend_from_slice(&0u32.to_le_bytes()); // no extended table
    debug_assert_eq!(header.len(), HEADER_LEN);
    header.extend_from_slice(&entries);
    header[7] = checksum(&header);

    let mut floating = Vec::with_capacity(FLOATING_LEN);
    floating.extend_from_slice(b"_MP_");
    floating.extend_from_slice(&(table_addr as u32).to_le_bytes());
    floating.push(1); // length in 16-byte paragraphs
    floating.push(SPEC_REV_1_4);
    floating.push(0); // checksum, patched below
    floating.extend_from_slice(&[0; 5]); // feature bytes: a configuration table is present
    floating[10] = checksum(&floating);

    floating.extend_from_slice(&header);
    Ok(floating)
}

/// The byte that makes the sum of `bytes` zero modulo 256.
fn checksum(bytes: &[u8]) -> u8 {
    0u8.wrapping_sub(bytes.iter().fold(0u8, |sum, b| sum.wrapping_add(*b)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(bytes: &[u8]) -> u8 {
        bytes.iter().fold(0u8, |s, b| s.wrapping_add(*b))
    }

    #[test]
    fn checksums_and_pointers_are_valid() {
        let table = build_mptable(EBDA_START, 4, &[]).unwrap();
        assert_eq!(&table[0..4], b"_MP_");
        assert_eq!(sum(&table[0..16]), 0);
        let config_addr = u32::from_le_bytes(table[4..8].try_into().unwrap()) as u64;
        assert_eq!(config_addr, EBDA_START.0 + 16);
        let config = &table[16..];
        assert_eq!(&config[0..4], b"PCMP");
        let len = u16::from_le_bytes([config[4], config[5]]) as usize;
        assert_eq!(len, config.len());
        assert_eq!(sum(config), 0);
    }

    #[test]
    fn describes_every_cpu_once_with_one_bootstrap() {
        let cpus = 7;
        let table = build_mptable(EBDA_START, cpus, &[]).unwrap();
        let config = &table[16..];
        let count = u16::from_le_bytes([config[34], config[35]]);
        let mut offset = 44;
        let (mut seen_cpus, mut bootstrap, mut ioapics) = (Vec::new(), 0, 0);
        for _ in 0..count {
            match config[offset] {
                ENTRY_PROCESSOR => {
                    seen_cpus.push(config[offset + 1]);
                    if config[offset + 3] & CPU_BOOTSTRAP != 0 {
                        bootstrap += 1;
                    }
                    offset += 20;
                }
                ENTRY_IOAPIC => {
                    assert_eq!(config[offset + 1], cpus, "IOAPIC ID follows the CPUs");
                    ioapics += 1;
                    offset += 8;
                }
                ENTRY_BUS | ENTRY_IO_INTERRUPT | ENTRY_LOCAL_INTERRUPT => offset += 8,
                other => panic!("unknown entry type {other}"),
            }
        }
        assert_eq!(offset, config.len());
        assert_eq!(seen_cpus, (0..cpus).collect::<Vec<_>>());
        assert_eq!((bootstrap, ioapics), (1, 1));
    }

    #[test]
    fn pci_interrupts_are_routed_from_bus_0_as_edges() {
        let route = PciInterrupt {
            slot: 5,
            pin: 0,
            ioapic_pin: 16,
        };
        let table = build_mptable(EBDA_START, 2, &[route]).unwrap();
        let config = &table[16..];
        let entry = [
            ENTRY_IO_INTERRUPT,
            INT_TYPE_INT,
            0b0101,
            0,
            PCI_BUS_ID,
            5 << 2,
            2,
            16,
        ];
        assert!(config.windows(8).any(|w| w == entry), "route entry present");
        assert!(
            config
                .windows(8)
                .any(|w| w[..2] == [ENTRY_BUS, 0] && &w[2..] == b"PCI   "),
            "bus 0 is PCI"
        );
    }

    #[test]
    fn rejects_zero_and_too_many_cpus() {
        assert!(build_mptable(EBDA_START, 0, &[]).is_err());
        assert!(build_mptable(EBDA_START, MAX_MPTABLE_CPUS + 1, &[]).is_err());
        assert!(build_mptable(EBDA_START, MAX_MPTABLE_CPUS, &[]).is_ok());
    }

    #[test]
    fn fits_in_the_ebda_window_at_the_maximum() {
        let mem = crate::memory::allocate(64 << 20).unwrap();
        write_mptable(&mem, MAX_MPTABLE_CPUS, &[]).unwrap();
        let mut magic = [0u8; 4];
        mem.read_slice(&mut magic, EBDA_START).unwrap();
        assert_eq!(&magic, b"_MP_");
    }
}
