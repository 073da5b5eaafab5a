use super::*;
use crate::layout::{GED_GSI, IOAPIC_ADDR, PCI_MMIO_END, PCI_MMIO_START};
use crate::pci::BarAllocator;

fn u32_at(bytes: &[u8], offset: usize) -> u32 {
    u32::from_le_bytes(bytes[offset..offset + 4].try_into().unwrap())
}

fn u64_at(bytes: &[u8], offset: usize) -> u64 {
    u64::from_le_bytes(bytes[offset..offset + 8].try_into().unwrap())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Tables by signature, after checking each one's length and checksum.
fn tables(cpus: u8, pci_interrupts: &[PciInterrupt]) -> (AcpiTables, Vec<(u64, Vec<u8>)>) {
    let built = build_tables(&AcpiPlatform {
        cpus,
        pci_interrupts,
    })
    .unwrap();
    let mut sdts = Vec::new();
    for (addr, bytes) in &built.tables {
        let sum = bytes.iter().fold(0u8, |acc, b| acc.wrapping_add(*b));
        assert_eq!(sum, 0, "checksum of the table at {addr:?}");
        if *addr != built.rsdp {
            assert_eq!(u32_at(bytes, 4) as usize, bytes.len(), "length field");
            sdts.push((addr.0, bytes.clone()));
        }
    }
    (built, sdts)
}

fn by_signature<'a>(sdts: &'a [(u64, Vec<u8>)], signature: &[u8; 4]) -> (u64, &'a [u8]) {
    let (addr, bytes) = sdts
        .iter()
        .find(|(_, b)| &b[..4] == signature)
        .unwrap_or_else(|| panic!("no {}", String::from_utf8_lossy(signature)));
    (*addr, bytes)
}

#[test]
fn rsdp_xsdt_and_fadt_reach_every_table() {
    let (built, sdts) = tables(2, &[]);
    let rsdp = &built.tables[0].1;
    assert_eq!(built.rsdp, ACPI_TABLES_START);
    assert_eq!(&rsdp[..8], b"RSD PTR ");
    assert_eq!(rsdp[15], 2, "ACPI 2.0+ RSDP");
    let (xsdt_addr, xsdt) = by_signature(&sdts, b"XSDT");
    assert_eq!(u64_at(rsdp, 24), xsdt_addr);
    let entries: Vec<u64> = (36..xsdt.len())
        .step_by(8)
        .map(|o| u64_at(xsdt, o))
        .collect();
    let mut signatures: Vec<&[u8]> = entries
        .iter()
        .map(|addr| &sdts.iter().find(|(a, _)| a == addr).unwrap().1[..4])
        .collect();
    signatures.sort();
    assert_eq!(signatures, [b"APIC", b"FACP", b"MCFG"]);
    let (_, fadt) = by_signature(&sdts, b"FACP");
    let (dsdt_addr, _) = by_signature(&sdts, b"DSDT");
    assert_eq!(u64_at(fadt, 140), dsdt_addr, "X_DSDT");
    for (addr, bytes) in &built.tables {
        assert!(addr.0 + bytes.len() as u64 <= ACPI_TABLES_END.0);
    }
}

#[test]
fn fadt_is_hardware_reduced_with_sleep_and_reset_registers() {
    let (_, sdts) = tables(1, &[]);
    let (_, fadt) = by_signature(&sdts, b"FACP");
    let flags = u32_at(fadt, 112);
    assert_ne!(flags & (1 << 20), 0, "HW_REDUCED_ACPI");
    assert_ne!(flags & (1 << 10), 0, "RESET_REG_SUP");
    // Generic address structures: space 1 (I/O), 8 bits wide, byte access, the port.
    let gas = |offset: usize| {
        (
            fadt[offset],
            fadt[offset + 1],
            fadt[offset + 3],
            u64_at(fadt, offset + 4),
        )
    };
    let port = u64::from(ACPI_PM_PORT);
    assert_eq!(
        gas(116),
        (1, 8, 1, u64::from(RESET_CONTROL_PORT)),
        "RESET_REG"
    );
    assert_eq!(fadt[128], RESET_CONTROL_HARD_RESET);
    assert_eq!(
        gas(244),
        (1, 8, 1, port + u64::from(SLEEP_CONTROL_OFFSET)),
        "SLEEP_CONTROL_REG"
    );
    assert_eq!(
        gas(256),
        (1, 8, 1, port + u64::from(SLEEP_STATUS_OFFSET)),
        "SLEEP_STATUS_REG"
    );
}

#[test]
fn madt_has_an_x2apic_per_vcpu_the_ioapic_an_override_and_nmi() {
    for cpus in [1u8, 8, 64, MAX_VCPUS] {
        let (_, sdts) = tables(cpus, &[]);
        let (_, madt) = by_signature(&sdts, b"APIC");
        assert_eq!(u32_at(madt, 36), LAPIC_ADDR_FOR_TEST);
        let mut x2apic_ids = Vec::new();
        let mut kinds = Vec::new();
        let mut offset = 44;
        while offset < madt.len() {
            let (kind, len) = (madt[offset], madt[offset + 1] as usize);
            assert!(len >= 2 && offset + len <= madt.len());
            let entry = &madt[offset..offset + len];
            match kind {
                9 => {
                    assert_eq!(u32_at(entry, 4), u32_at(entry, 12), "UID = APIC ID");
                    assert_eq!(u32_at(entry, 8), 1, "enabled");
                    x2apic_ids.push(u32_at(entry, 4));
                }
                1 => assert_eq!(u32_at(entry, 4), IOAPIC_ADDR),
                2 => assert_eq!((entry[3], u32_at(entry, 4)), (0, 0), "IRQ 0 -> GSI 0"),
                10 => assert_eq!(
                    (u32_at(entry, 4), entry[8]),
                    (0xffff_ffff, 1),
                    "NMI on LINT1"
                ),
                other => panic!("unexpected MADT structure {other}"),
            }
            kinds.push(kind);
            offset += len;
        }
        assert_eq!(x2apic_ids, (0..u32::from(cpus)).collect::<Vec<_>>());
        for kind in [1, 2, 10] {
            assert_eq!(kinds.iter().filter(|&&k| k == kind).count(), 1);
        }
    }
}

const LAPIC_ADDR_FOR_TEST: u32 = crate::layout::LAPIC_ADDR;

#[test]
fn mcfg_announces_bus_zero_at_the_ecam() {
    let (_, sdts) = tables(1, &[]);
    let (_, mcfg) = by_signature(&sdts, b"MCFG");
    assert_eq!(mcfg.len(), 44 + 16);
    assert_eq!(u64_at(mcfg, 44), PCI_ECAM_START);
    assert_eq!((mcfg[54], mcfg[55]), (0, 0), "buses 0..=0");
}

#[test]
fn host_bridge_window_is_the_bar_allocators() {
    let (_, sdts) = tables(1, &[]);
    let (_, dsdt) = by_signature(&sdts, b"DSDT");
    // DWordMemory: descriptor 0x87, length 23, type 0 (memory); min at +10, max at +14.
    let at = find(dsdt, &[0x87, 23, 0, 0, 0x0c]).expect("a DWordMemory window");
    let (min, max) = (u32_at(dsdt, at + 10), u32_at(dsdt, at + 14));
    assert_eq!(
        (u64::from(min), u64::from(max) + 1),
        (PCI_MMIO_START, PCI_MMIO_END)
    );
    let mut bars = BarAllocator::default();
    let mut last = None;
    while let Some(base) = bars.allocate(0x10_0000) {
        last = Some(base);
    }
    let first = BarAllocator::default().allocate(0x10_0000).unwrap();
    assert!(first >= u64::from(min));
    assert!(last.unwrap() + 0x10_0000 - 1 <= u64::from(max));
}

#[test]
fn dsdt_names_the_devices_and_routes_intx_through_edge_links() {
    let route = PciInterrupt {
        slot: 5,
        pin: 0,
        ioapic_pin: 16,
    };
    let (_, sdts) = tables(4, &[route]);
    let (_, dsdt) = by_signature(&sdts, b"DSDT");
    for name in [
        &b"_S5_"[..],
        b"PCI0",
        b"_PRT",
        b"PWRB",
        b"GED0",
        b"_EVT",
        b"COM1",
        b"RTC_",
        b"MBRD",
        b"LK00",
        b"C000",
        b"C003",
        b"ACPI0013",
        b"ACPI0007",
    ] {
        assert!(
            find(dsdt, name).is_some(),
            "{}",
            String::from_utf8_lossy(name)
        );
    }
    assert!(find(dsdt, b"C004").is_none());
    // Extended interrupt descriptors, consumer + edge + active high: the link's GSI 16
    // and the GED's.
    for gsi in [16u32, GED_GSI] {
        let mut descriptor = vec![0x89, 6, 0, 0b011, 1];
        descriptor.extend_from_slice(&gsi.to_le_bytes());
        assert!(find(dsdt, &descriptor).is_some(), "edge interrupt {gsi}");
    }
}

#[test]
fn refuses_cpu_counts_it_cannot_describe() {
    for cpus in [0, MAX_VCPUS + 1] {
        let err = build_tables(&AcpiPlatform {
            cpus,
            pci_interrupts: &[],
        })
        .unwrap_err();
        assert!(matches!(err, AcpiError::CpuCount(n) if n == cpus));
    }
}

#[test]
fn the_guest_reboots_through_acpi_unless_told_otherwise() {
    assert_eq!(
        guest_cmdline("console=ttyS0 root=/dev/vda"),
        "console=ttyS0 root=/dev/vda reboot=acpi"
    );
    assert_eq!(guest_cmdline(""), "reboot=acpi");
    for own in ["console=ttyS0 reboot=k", "reboot=pci,warm quiet"] {
        assert_eq!(guest_cmdline(own), own, "the user's method stays");
    }
}
