//! Fixtures shared by the suite's tests: a temporary directory and a known run directory.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::json;

use super::fio::tests::{RANDREAD_NOTE, RANDRW};
use super::matrix::{Device, IoEngine, JobSpec, Matrix, Rw};
use super::model::Target;
use super::rawdir::{costs_file, fio_file, hist_files, MATRIX_FILE, META_FILE};

/// A directory under the system's temporary directory, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("ringvisor-suite-{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A read-only fio json+ document with the given numbers.
pub fn synthetic_fio(iops: f64, bw_kib: f64, pcts: &[(f64, u64)], bins: &[(u64, u64)]) -> String {
    let total: u64 = bins.iter().map(|b| b.1).sum();
    let percentile: serde_json::Map<String, serde_json::Value> = pcts
        .iter()
        .map(|(p, ns)| (format!("{p:.6}"), json!(ns)))
        .collect();
    let bins: serde_json::Map<String, serde_json::Value> = bins
        .iter()
        .map(|(ns, n)| (ns.to_string(), json!(n)))
        .collect();
    json!({
        "fio version": "fio-3.33",
        "jobs": [{
            "jobname": "synthetic",
            "error": 0,
            "read": {
                "io_bytes": total * 4096,
                "bw_bytes": bw_kib * 1024.0,
                "bw": bw_kib as u64,
                "iops": iops,
                "runtime": 3000,
                "total_ios": total,
                "clat_ns": {"mean": 50000.0, "N": total, "percentile": percentile, "bins": bins},
            },
            "write": {"io_bytes": 0, "total_ios": 0, "iops": 0.0, "bw": 0, "clat_ns": {"N": 0}},
        }],
    })
    .to_string()
}

pub fn known_jobs() -> Vec<JobSpec> {
    let job = |rw, iodepth, device| JobSpec {
        rw,
        bs: 4096,
        iodepth,
        numjobs: 1,
        ioengine: IoEngine::IoUring,
        device,
        runtime_s: 3,
        ramp_s: 1,
        polled: false,
        size: 32 << 20,
    };
    vec![
        job(Rw::RandRead, 32, Device::Blk),
        job(Rw::RandRw, 1, Device::Scsi),
    ]
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn queue(name: &str, kick: &str, submit: &str, irq: &str) -> String {
    format!(
        r#"{{"name":"{name}","reactor":0,"kick_to_submit_ns":{kick},"submit_to_complete_ns":{submit},"complete_to_irq_ns":{irq}}}"#
    )
}

/// A run directory with two jobs. Job 0 (randread, blk): ringvisor is the real randread
/// fixture, bare metal a synthetic 20000 IOPS, QEMU's file is cut short; device side 100
/// requests (kick→submit: 30 at 1000 ns and 70 at 2001 ns; submit→complete: 30015 ns;
/// complete→irq: 800 ns); ringvisor's costs counted (per I/O: 2 exits, 1 MMIO exit, 3
/// syscalls), its guest IRQ count empty. Job 1 (randrw, scsi): ringvisor the real randrw
/// fixture, bare metal a synthetic 15000 IOPS, no QEMU; 7 kicks on scsi0.
pub fn known_raw_dir(base: &Path) -> PathBuf {
    let raw = base.join("raw");
    let meta = json!({
        "started": "2026-11-25T20:00:00Z", "finished": "2026-11-25T20:05:00Z",
        "preset": "quick", "vcpus": 2, "lab": "nested", "vmm_version": "0.1.0",
        "interrupted": false, "command": "fio-suite --preset quick --note '<b>&amp;|x'",
    });
    write(&raw.join(META_FILE), &meta.to_string());
    let jobs = known_jobs();
    write(
        &raw.join(MATRIX_FILE),
        &Matrix { jobs: jobs.clone() }.to_json().to_string(),
    );
    let (id0, id1) = (jobs[0].id(), jobs[1].id());
    write(&fio_file(&raw, Target::Ringvisor, &id0), RANDREAD_NOTE);
    let pcts = [
        (50.0, 40000),
        (90.0, 50000),
        (99.0, 100000),
        (99.9, 200000),
        (99.99, 400000),
    ];
    let bins = [
        (40000, 500),
        (50000, 400),
        (100000, 90),
        (200000, 9),
        (400000, 1),
    ];
    write(
        &fio_file(&raw, Target::Bare, &id0),
        &synthetic_fio(20000.0, 80000.0, &pcts, &bins),
    );
    write(
        &fio_file(&raw, Target::Qemu, &id0),
        &RANDRW[..RANDRW.len() / 3],
    );
    let ios = 11236;
    write(
        &costs_file(&raw, Target::Ringvisor, &id0),
        &format!(
            "exits={} io_exits=0 mmio_exits={ios} halt_exits=0 irq_injections=0 syscalls={} ctxsw=0 cpu_ms=0 guest_irqs=\n",
            2 * ios,
            3 * ios
        ),
    );
    write(&fio_file(&raw, Target::Ringvisor, &id1), RANDRW);
    write(
        &fio_file(&raw, Target::Bare, &id1),
        &synthetic_fio(15000.0, 60000.0, &pcts, &bins),
    );
    let scsi_before = queue("scsi0/q0", "[[900,3]]", "[]", "[]");
    let scsi_after = queue("scsi0/q0", "[[900,10]]", "[]", "[]");
    let blk_before = queue("blk0/q0", "[[1000,10]]", "[[20000,10]]", "[[500,10]]");
    let blk_after = queue(
        "blk0/q0",
        "[[1000,40],[2001,70]]",
        "[[20000,10],[30015,100]]",
        "[[500,10],[800,100]]",
    );
    let snapshot = |queues: &[&str]| format!(r#"{{"queues":[{}]}}"#, queues.join(","));
    let (before, after) = hist_files(&raw, &id0);
    write(&before, &snapshot(&[&blk_before, &scsi_before]));
    write(&after, &snapshot(&[&blk_after, &scsi_after]));
    let (before, after) = hist_files(&raw, &id1);
    write(&before, &snapshot(&[&scsi_before]));
    write(&after, &snapshot(&[&scsi_after, &blk_after]));
    raw
}

/// The ids of a matrix's jobs, in order.
pub fn ids(m: &super::matrix::Matrix) -> Vec<String> {
    m.jobs.iter().map(super::matrix::JobSpec::id).collect()
}
