//! Tier 4: NVMe passthrough. L1 of the nested lab gets an emulated NVMe controller; the
//! stock L2 kernel's virtio-blk disk is its namespace, served by the freshly built
//! ringvisor through the generic device /dev/ng0n1 (io_uring driver commands, no block
//! layer in L1). The guest writes, verifies, discards and zeroes (l2-tests/nvme.sh); L1
//! then reads what it wrote through its own block device, /dev/nvme0n1.

mod lab_support;

use lab_support::{fact, field, run_lab};

/// The namespace's size in MiB (lab.sh --nvme).
const NAMESPACE_MIB: u64 = 128;

#[test]
fn a_guest_disk_on_an_nvme_namespace_is_served_by_passthrough() {
    let size = NAMESPACE_MIB.to_string();
    let Some(console) = run_lab("tests/lab/scenarios/ringvisor-nvme.sh", &["--nvme", &size]) else {
        return;
    };
    println!("{console}");
    let expect = |prefix: &str| {
        fact(&console, prefix).unwrap_or_else(|| panic!("no '{prefix}' line in:\n{console}"))
    };
    assert_eq!(expect("L1: nvme devices "), "generic=yes block=yes");
    assert!(
        expect("L1: nvme log ").starts_with("NVMe passthrough to namespace 1, "),
        "the disk must be opened for passthrough"
    );
    // The namespace as the guest sees it: its size, its 512-byte blocks, discard and
    // write-zeroes offered (QEMU's controller has both).
    let disk = expect("L2: nvme vda ");
    assert_eq!(field(disk, "sectors"), NAMESPACE_MIB << 11, "{disk}");
    assert_eq!(field(disk, "lbs"), 512, "{disk}");
    assert!(field(disk, "discard_max") > 0, "{disk}");
    assert!(field(disk, "write_zeroes_max") > 0, "{disk}");
    for check in [
        "serial-write-verify",
        "pattern-write-verify",
        "large-roundtrip",
        "discard",
        "discard-reads-zeros",
        "write-zeroes",
        "write-zeroes-reads-zeros",
        "marker",
    ] {
        assert!(
            console.contains(&format!("L2: nvme {check} ok")),
            "{check} failed in the guest"
        );
    }
    assert_eq!(expect("L2: test nvme exit="), "0");
    // Every request became NVMe commands, the 1 MiB write four of them (the transfer
    // limit is 256 KiB), and none failed.
    let stats = expect("L1: nvme stats ");
    let (requests, commands) = (field(stats, "requests"), field(stats, "commands"));
    assert!(requests > 0 && commands > requests, "{stats}");
    assert_eq!(field(stats, "io_errors"), 0, "{stats}");
    // Guest RAM is prefaulted, so registered: a command on one buffer names it by index
    // (L1's kernel, 6.12, takes registered buffers for driver commands).
    assert!(field(stats, "fixed_buffer_ops") > 0, "{stats}");
    assert_eq!(
        expect("L1: nvme vmm exit="),
        "0",
        "poweroff ends ringvisor with 0"
    );
    // What the guest wrote is on the namespace: fio's pattern and the marker, read by L1
    // through its block layer after ringvisor flushed and exited.
    assert_eq!(expect("L1: nvme host verify exit="), "0");
    assert_eq!(expect("L1: nvme host marker="), "rv-nvme-marker");
    // A character device that is no NVMe namespace is refused, naming what it is not.
    let negative = expect("L1: negative not-nvme exit=");
    assert!(
        !negative.starts_with("0 ") && negative.contains("not an NVMe namespace"),
        "{negative}"
    );
}
