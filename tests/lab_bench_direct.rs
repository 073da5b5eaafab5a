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

use lab_support::{copy_sparse, debian_root_image, fact, lab_ready, run_lab_prepared};
use serde_json::Value;

const NVME_MIB: &str = "256";
/// The scenario's matrix: reads on virtio-blk, writes on virtio-scsi.
/// The one job of the run with the Debian root image as the guest.
const DEBIAN_JOB: &str = "randread-4k-qd16-j1-io_uring-blk";
const JOBS: [&str; 2] = [
    "randread-4k-qd16-j1-io_uring-blk",
    "randwrite-4k-qd16-j1-io_uring-scsi",
];

fn scratch() -> PathBuf {
    std::env::temp_dir().join(format!("ringvisor-bench-direct-{}", std::process::id()))
}

#[test]
fn the_suite_runs_directly_on_a_kvm_host_with_every_reference() {
    if !lab_ready() {
        return;
    }
    let dir = scratch();
    let collect = dir.join("collect.img");
    // The Debian root image, for the run with --guest-root; the guest writes its copy.
    let Some(debian) = debian_root_image() else {
        return;
    };
    let root_copy = dir.join("debian-root.img");
    let prepare = || {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::File::create(&collect)
            .and_then(|f| f.set_len(256 << 20))
            .unwrap();
        copy_sparse(&debian, &root_copy);
    };
    let collect_arg = collect.display().to_string();
    let root_arg = root_copy.display().to_string();
    let Some(console) = run_lab_prepared(
        "tests/lab/scenarios/bench-direct.sh",
        &[
            "--nvme",
            NVME_MIB,
            "--collect",
            &collect_arg,
            "--disk",
            &root_arg,
            "--timeout",
            "1800",
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
    // The Debian image as the guest: under both VMMs its systemd unit said it runs on
    // Debian 12 from /dev/vda, and the suite's disk was its /dev/vdb (below).
    let debian_run = expect("L1: bench debian ");
    assert_eq!(debian_run, "exit=0 booted=2", "{debian_run}");

    let status = Command::new("tar")
        .arg("-xf")
        .arg(&collect)
        .arg("-C")
        .arg(&dir)
        .status()
        .unwrap();
    assert!(status.success(), "nothing collected");
    check_summary(&dir.join("bench"), &JOBS);
    let debian = dir.join("bench-debian");
    check_summary(&debian, &[DEBIAN_JOB]);
    let meta = std::fs::read_to_string(debian.join("raw/meta.json")).unwrap();
    assert!(meta.contains("\"guest\":\"root /dev/vdb\""), "{meta}");
    for target in ["ringvisor", "qemu"] {
        let fio =
            std::fs::read_to_string(debian.join(format!("raw/{target}/{DEBIAN_JOB}.fio.json")))
                .unwrap();
        assert!(
            fio.contains("\"filename\" : \"/dev/vdb\""),
            "{target}: the job ran on the guest's second disk:\n{fio}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn check_summary(run: &Path, jobs_expected: &[&str]) {
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
    let mut expected = jobs_expected.to_vec();
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
