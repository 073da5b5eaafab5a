//! The ACPI tables as ACPICA's own disassembler reads them: every table ringvisor builds
//! but the RSDP
//! (for one vCPU and for the most it allows, with a PCI INTx route) goes through
//! `iasl -d`, which must report no error and no warning, and the DSDT's disassembly must
//! show the devices the guest relies on. Needs `iasl` (Debian's acpica-tools, which
//! `tests/run.sh` installs); in CI its absence fails the test.

use std::path::Path;
use std::process::Command;

use ringvisor::acpi::{build_tables, AcpiPlatform, MAX_VCPUS};
use ringvisor::pci::PciInterrupt;

fn iasl_available() -> bool {
    match Command::new("iasl").arg("-v").output() {
        Ok(_) => true,
        Err(err) => {
            ringvisor_test_support::skip(format!(
                "iasl (Debian's acpica-tools) is not installed: {err}"
            ));
            false
        }
    }
}

/// Disassembles `bytes` in `dir`; returns the .dsl text after checking iasl's verdict.
fn disassemble(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let table = dir.join(format!("{name}.dat"));
    std::fs::write(&table, bytes).unwrap();
    let out = Command::new("iasl")
        .arg("-d")
        .arg(&table)
        .current_dir(dir)
        .output()
        .unwrap();
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "iasl -d {name}: {log}");
    for line in log.lines() {
        let lower = line.to_ascii_lowercase();
        assert!(
            !(lower.contains("error") || lower.contains("warning")) || lower.contains(" 0 error"),
            "iasl -d {name}: {line}\n{log}"
        );
    }
    std::fs::read_to_string(dir.join(format!("{name}.dsl"))).unwrap()
}

#[test]
fn iasl_disassembles_every_table_without_complaint() {
    if !iasl_available() {
        return;
    }
    let route = PciInterrupt {
        slot: 3,
        pin: 0,
        ioapic_pin: 16,
    };
    for cpus in [1, MAX_VCPUS] {
        let dir = tempfile_dir(&format!("acpi-iasl-{cpus}"));
        let built = build_tables(&AcpiPlatform {
            cpus,
            pci_interrupts: &[route],
        })
        .unwrap();
        // The RSDP is not a table iasl reads from a file (its checksums are unit-tested).
        for (_, bytes) in built.tables.iter().skip(1) {
            let signature = String::from_utf8_lossy(&bytes[..4]).into_owned();
            let text = disassemble(&dir, &signature, bytes);
            match signature.as_str() {
                "DSDT" => {
                    for needle in [
                        "Device (PCI0)",
                        "Device (PWRB)",
                        "Device (GED0)",
                        "Method (_EVT, 1, Serialized)",
                        "Notify (\\_SB.PWRB, 0x80)",
                        "Name (_S5, Package",
                        "Device (LK00)",
                        "Device (COM1)",
                    ] {
                        assert!(text.contains(needle), "DSDT lacks {needle}:\n{text}");
                    }
                    let last_cpu = format!("Device (C{:03X})", cpus - 1);
                    assert!(text.contains(&last_cpu), "DSDT lacks {last_cpu}");
                }
                "APIC" => {
                    let x2apics = text.matches("Processor x2Apic ID").count();
                    assert_eq!(x2apics, usize::from(cpus), "{text}");
                }
                "FACP" => assert!(
                    text.contains("Hardware Reduced (V5) : 1"),
                    "FADT not hardware-reduced:\n{text}"
                ),
                _ => {}
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

fn tempfile_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
