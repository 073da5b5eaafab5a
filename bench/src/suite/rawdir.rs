//! A run's `raw/` directory, as the orchestrator writes it, read into [`SuiteResults`].

use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::costs::Costs;
use super::device::{device_delta, parse_histograms};
use super::fio::parse_fio_json;
use super::matrix::{JobSpec, Matrix};
use super::model::{
    DeviceResult, JobResult, Measured, Meta, SuiteError, SuiteResults, Target, TargetResult,
};

pub const META_FILE: &str = "meta.json";
pub const MATRIX_FILE: &str = "matrix.json";
/// Raw files come from guests and tools; anything bigger is not a result.
const MAX_RAW_BYTES: u64 = 64 << 20;

/// `raw/<target>/<job-id>.fio.json`
pub fn fio_file(raw_dir: &Path, target: Target, job_id: &str) -> PathBuf {
    raw_dir
        .join(target.as_str())
        .join(format!("{job_id}.fio.json"))
}

/// `raw/<target>/<job-id>.costs`
pub fn costs_file(raw_dir: &Path, target: Target, job_id: &str) -> PathBuf {
    raw_dir
        .join(target.as_str())
        .join(format!("{job_id}.costs"))
}

/// `raw/ringvisor/<job-id>.hist-before.json` and `.hist-after.json`.
pub fn hist_files(raw_dir: &Path, job_id: &str) -> (PathBuf, PathBuf) {
    let dir = raw_dir.join(Target::Ringvisor.as_str());
    (
        dir.join(format!("{job_id}.hist-before.json")),
        dir.join(format!("{job_id}.hist-after.json")),
    )
}

/// A raw file's text (lossy: a guest may write anything), capped in size.
fn read_text(path: &Path) -> Result<String, String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut bytes = Vec::new();
    file.take(MAX_RAW_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > MAX_RAW_BYTES {
        return Err(format!("larger than {MAX_RAW_BYTES} bytes"));
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

fn read_json(path: &Path) -> Result<Value, SuiteError> {
    let text = read_text(path).map_err(|reason| SuiteError::Read {
        path: path.to_path_buf(),
        reason,
    })?;
    serde_json::from_str(&text).map_err(|e| SuiteError::Parse {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// `dir/name` as the reports show it: relative to the raw directory.
fn shown(raw_dir: &Path, path: &Path) -> String {
    path.strip_prefix(raw_dir)
        .unwrap_or(path)
        .display()
        .to_string()
}

fn load_target(raw_dir: &Path, target: Target, id: &str) -> Measured<TargetResult> {
    let path = fio_file(raw_dir, target, id);
    if !path.exists() {
        return Err(format!("no {}", shown(raw_dir, &path)));
    }
    let text = read_text(&path).map_err(|e| format!("{}: {e}", shown(raw_dir, &path)))?;
    let fio = parse_fio_json(&text).map_err(|e| format!("{}: {e}", shown(raw_dir, &path)))?;
    let mut result = TargetResult::from_fio(fio);
    // Counted where the lab could (not on the bare target, nor in older runs).
    result.costs = read_text(&costs_file(raw_dir, target, id))
        .ok()
        .map(|text| Costs::parse(&text))
        .filter(|costs| !costs.is_empty());
    Ok(result)
}

fn load_device(raw_dir: &Path, spec: &JobSpec) -> Measured<DeviceResult> {
    let (before, after) = hist_files(raw_dir, &spec.id());
    let read = |path: &Path| {
        if !path.exists() {
            return Err(format!("no {}", shown(raw_dir, path)));
        }
        let text = read_text(path).map_err(|e| format!("{}: {e}", shown(raw_dir, path)))?;
        parse_histograms(&text).map_err(|e| format!("{}: {e}", shown(raw_dir, path)))
    };
    let (before, after) = (read(&before)?, read(&after)?);
    let latency =
        device_delta(&before, &after, spec.device.queue_prefix()).map_err(|e| e.to_string())?;
    Ok(DeviceResult::from_latency(latency))
}

impl SuiteResults {
    /// Reads a run's `raw/` directory. Only `meta.json` and `matrix.json` must be there;
    /// a job's missing or broken file is recorded with the reason.
    pub fn load(raw_dir: &Path) -> Result<SuiteResults, SuiteError> {
        let meta = Meta::from_json(&read_json(&raw_dir.join(META_FILE))?);
        let matrix_path = raw_dir.join(MATRIX_FILE);
        let matrix =
            Matrix::from_json(&read_json(&matrix_path)?).map_err(|e| SuiteError::Parse {
                path: matrix_path,
                reason: e.to_string(),
            })?;
        let jobs = matrix
            .jobs
            .into_iter()
            .map(|spec| {
                let id = spec.id();
                JobResult {
                    targets: Target::ALL.map(|t| load_target(raw_dir, t, &id)),
                    device: load_device(raw_dir, &spec),
                    spec,
                }
            })
            .collect();
        Ok(SuiteResults { meta, jobs })
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{known_raw_dir, TempDir};
    use super::*;

    #[test]
    fn a_run_directory_loads_with_its_gaps() {
        let tmp = TempDir::new("model-load");
        let raw = known_raw_dir(tmp.path());
        let r = SuiteResults::load(&raw).unwrap();
        assert_eq!(r.meta.preset, "quick");
        assert_eq!(r.meta.vcpus, 2);
        assert_eq!(r.jobs.len(), 2);
        let job = &r.jobs[0];
        assert_eq!(job.id(), "randread-4k-qd32-j1-io_uring-blk");
        let rv = job.get(Target::Ringvisor).unwrap();
        assert_eq!(rv.iops, 11224.775225);
        assert_eq!(rv.clat_percentile_ns(99.0), Some(342016));
        assert_eq!(job.get(Target::Bare).unwrap().iops, 20000.0);
        assert_eq!(job.iops_ratio(Target::Bare), Some(11224.775225 / 20000.0));
        // QEMU's file is broken for job 0 and absent for job 1.
        assert!(job
            .target(Target::Qemu)
            .as_ref()
            .unwrap_err()
            .starts_with("qemu/randread-4k-qd32-j1-io_uring-blk.fio.json: "));
        assert_eq!(
            r.jobs[1].target(Target::Qemu).as_ref().unwrap_err(),
            "no qemu/randrw-4k-qd1-j1-io_uring-scsi.fio.json"
        );
        let device = job.device.as_ref().unwrap();
        assert_eq!(device.stage("submit_to_complete").unwrap().count, 100);
        assert_eq!(
            device.stage("kick_to_submit").unwrap().percentile_ns(50.0),
            Some(2001)
        );
        // Job 1's device is scsi: its histograms come from scsi0/ queues only.
        assert_eq!(
            r.jobs[1]
                .device
                .as_ref()
                .unwrap()
                .stage("kick_to_submit")
                .unwrap()
                .count,
            7
        );
        assert_eq!(r.targets_present(), [Target::Ringvisor, Target::Bare]);
    }

    #[test]
    fn a_directory_without_its_matrix_is_an_error() {
        let tmp = TempDir::new("model-empty");
        assert!(matches!(
            SuiteResults::load(tmp.path()),
            Err(SuiteError::Read { .. })
        ));
        std::fs::write(tmp.path().join(META_FILE), "{}").unwrap();
        std::fs::write(tmp.path().join(MATRIX_FILE), "{\"jobs\": 3}").unwrap();
        assert!(matches!(
            SuiteResults::load(tmp.path()),
            Err(SuiteError::Parse { .. })
        ));
    }
}
