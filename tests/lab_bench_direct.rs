//! Tier 4: `ringvisor bench` in direct mode on a host with hardware KVM. These machines
//! have none, but L1 of the nested lab does (nested SVM): there the freshly built binary
//! runs the suite itself (tests/lab/scenarios/bench-direct.sh) on L1's emulated NVMe
//! disk, with the bare-metal fio on that disk and QEMU 10 as the references, and the run
//! directory comes back for these checks. Before it, `lab.sh boot`'s direct branch
//! (tests/lab/boot-direct.sh) boots the default guest there, and a run without
//! --destroy-data is refused with the disk untouched.

mod lab_support;

use std::path::{Path, PathBuf};
use std::process::Command;

use lab_support::{fact, run_lab_prepared};
use serde_json::Value;

const NVME_MIB: &str = "256";
/// The scenario's matrix: reads on virtio-blk, writes on virtio-scsi.
const JOBS: [&str; 2] = [
    "randread-4k-qd16-j1-io_uring-blk",
    "randwrite-4k-qd16-j1-io_uring-scsi",
];

fn scratch() -> PathBuf {
    std::env::temp_dir().join(format!("ringvisor-bench-direct-{}", std::process::id()))
}

#[test]
fn the_suite_runs_directly_on_a_kvm_host_with_every_reference() {
    let dir = scratch();
    let collect = dir.join("collect.img");
    let prepare = || {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::File::create(&collect)
            .and_then(|f| f.set_len(256 << 20))
            .unwrap();
    };
    let collect_arg = collect.display().to_string();
    let Some(console) = run_lab_prepared(
        "tests/lab/scenarios/bench-direct.sh",
        &[
            "--nvme",
            NVME_MIB,
            "--collect",
            &collect_arg,
            "--timeout",
            "1200",
        ],
        &prepare,
    ) else {
        return;
    };
    println!("{console}");
    let expect = |prefix: &str| {
        fact(&console, prefix).unwrap_or_else(|| panic!("no '{prefix}' line in:\n{console}"))
    };
    // `lab.sh boot`'s direct branch, on L1 as the host: the default guest boots, passes
    // its smoke test and powers off.
    assert_eq!(
        expect("L1: boot-direct "),
        "exit=0 L2: test smoke exit=0",
        "lab.sh boot's direct branch"
    );
    // A block device is written only with --destroy-data: refused, and left as it was.
    let refused = expect("L1: bench refused-without-destroy-data ");
    assert!(
        refused.starts_with("exit=1 ") && refused.contains("--destroy-data"),
        "{refused}"
    );
    assert_eq!(
        expect("L1: bench marker-after-refusal="),
        "ringvisor-bench-marker"
    );
    assert_eq!(expect("L1: bench exit="), "0");

    let status = Command::new("tar")
        .arg("-xf")
        .arg(&collect)
        .arg("-C")
        .arg(&dir)
        .status()
        .unwrap();
    assert!(status.success(), "nothing collected");
    check_summary(&dir.join("bench"));
    let _ = std::fs::remove_dir_all(&dir);
}

fn check_summary(run: &Path) {
    let text = std::fs::read_to_string(run.join("summary.json")).expect("summary.json");
    let summary: Value = serde_json::from_str(&text).unwrap();
    let meta = &summary["meta"];
    // Direct mode on KVM, on the disk named, the data the guest wrote read back on the host.
    assert_eq!(meta["lab"], "kvm", "{meta}");
    assert_eq!(meta["target"], "/dev/nvme0n1", "{meta}");
    let data_check = meta["data_check"].as_str().unwrap_or("");
    assert!(data_check.starts_with("ok:"), "{data_check}");
    assert_eq!(
        summary["targets"],
        serde_json::json!(["ringvisor", "bare", "qemu"]),
        "QEMU is installed in L1: its reference runs by default"
    );
    let jobs = summary["jobs"].as_array().expect("jobs");
    let ids: Vec<&str> = jobs.iter().filter_map(|j| j["id"].as_str()).collect();
    let mut expected = JOBS.to_vec();
    expected.sort_unstable();
    let mut got = ids.clone();
    got.sort_unstable();
    assert_eq!(got, expected);
    for job in jobs {
        let id = &job["id"];
        for target in ["ringvisor", "bare", "qemu"] {
            let result = &job["targets"][target];
            assert!(
                result["iops"].as_f64().unwrap_or(0.0) > 0.0,
                "{id} {target}: {result}"
            );
            assert!(
                result["clat_ns"]["p99"].as_u64().unwrap_or(0) > 0,
                "{id} {target}: {result}"
            );
        }
        // Counted on the host: ringvisor's VM exits and system calls over each job.
        let costs = &job["targets"]["ringvisor"]["costs"]["per_1000_ios"];
        for count in ["exits", "syscalls"] {
            assert!(costs[count].as_f64().unwrap_or(0.0) > 0.0, "{id}: {costs}");
        }
        assert!(
            job["ratios"]["ringvisor/bare"]["iops"]
                .as_f64()
                .unwrap_or(0.0)
                > 0.0
        );
        assert!(
            job["ratios"]["ringvisor/qemu"]["iops"]
                .as_f64()
                .unwrap_or(0.0)
                > 0.0
        );
    }
    let markdown = std::fs::read_to_string(run.join("summary.md")).unwrap();
    assert!(markdown.contains("/dev/nvme0n1"), "{markdown}");
}
