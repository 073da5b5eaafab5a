//! The same job through host fio (`--ioengine=io_uring --direct=1`), and the few numbers
//! the benchmark takes from fio's JSON output.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use super::{Job, Region};

/// What fio reported for the whole group of job clones.
#[derive(Debug, Clone, PartialEq)]
pub struct FioResult {
    pub iops: f64,
    pub bytes_per_second: f64,
    /// Completion latency (submission to completion) percentiles, in nanoseconds.
    pub clat_p50_ns: f64,
    pub clat_p99_ns: f64,
    pub clat_p999_ns: f64,
    /// fio's own CPU time (user + system, all its threads) per I/O, in nanoseconds;
    /// `None` where its JSON has no usage figures.
    pub cpu_ns_per_io: Option<f64>,
}

/// The fio arguments for `job` with one job clone per reactor, each on its own region of
/// the file, as the synthetic driver splits it.
pub fn args(
    file: &Path,
    file_bytes: u64,
    job: Job,
    clones: usize,
    warmup: Duration,
    run: Duration,
) -> Vec<String> {
    let region = Region::split(file_bytes, clones, 0, job.block_size);
    // An NVMe namespace's generic device: NVMe commands through io_uring, as ringvisor
    // passes its requests on (fio 3.31+).
    let engine: [String; 2] = if ringvisor_devices::nvme::is_passthrough_path(file) {
        ["--ioengine=io_uring_cmd".into(), "--cmd_type=nvme".into()]
    } else {
        ["--ioengine=io_uring".into(), "--direct=1".into()]
    };
    let mut args = vec![
        "--name=devpath".into(),
        format!("--filename={}", file.display()),
    ];
    args.extend(engine);
    args.extend([
        format!("--rw={}", job.fio_rw()),
        format!("--bs={}", job.block_size),
        format!("--iodepth={}", job.depth),
        format!("--numjobs={clones}"),
        "--group_reporting".into(),
        format!("--size={}", region.len),
        format!("--offset_increment={}", region.len),
        "--norandommap".into(),
        "--randrepeat=0".into(),
        format!("--ramp_time={}ms", warmup.as_millis()),
        format!("--runtime={}ms", run.as_millis()),
        "--time_based".into(),
        "--output-format=json".into(),
    ]);
    args
}

/// Runs `fio` with `args`; returns the parsed result and fio's JSON output.
pub fn run(fio: &Path, args: &[String]) -> Result<(FioResult, String), String> {
    let output = Command::new(fio)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", fio.display()))?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        return Err(format!(
            "fio failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr),
            stdout
        ));
    }
    // fio may print notes before the JSON document.
    let json = stdout.find('{').map_or("", |at| &stdout[at..]).to_string();
    Ok((parse(&json)?, json))
}

/// Takes the read side of the first (grouped) job out of fio's JSON output.
pub fn parse(json: &str) -> Result<FioResult, String> {
    let root: Value = serde_json::from_str(json).map_err(|e| format!("fio JSON: {e}"))?;
    let job = root.pointer("/jobs/0").ok_or("fio JSON: no jobs[0]")?;
    if let Some(error) = job.get("error").and_then(Value::as_i64).filter(|&e| e != 0) {
        return Err(format!("fio job failed with error {error}"));
    }
    let number = |pointer: &str| {
        job.pointer(pointer)
            .and_then(Value::as_f64)
            .ok_or_else(|| format!("fio JSON: no number at jobs[0]{pointer}"))
    };
    let iops = number("/read/iops")?;
    // usr_cpu and sys_cpu are percentages of one CPU over the measured run.
    let cpu_ns_per_io = match (number("/usr_cpu"), number("/sys_cpu")) {
        (Ok(user), Ok(system)) if iops > 0.0 => Some((user + system) / 100.0 * 1e9 / iops),
        _ => None,
    };
    Ok(FioResult {
        iops,
        cpu_ns_per_io,
        bytes_per_second: number("/read/bw_bytes")?,
        clat_p50_ns: number("/read/clat_ns/percentile/50.000000")?,
        clat_p99_ns: number("/read/clat_ns/percentile/99.000000")?,
        clat_p999_ns: number("/read/clat_ns/percentile/99.900000")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_read_side_of_fio_json_is_extracted() {
        let json = r#"{"fio version": "fio-3.33", "jobs": [{"jobname": "devpath", "error": 0,
            "usr_cpu": 20.0, "sys_cpu": 30.25,
            "read": {"io_bytes": 1, "bw_bytes": 409600, "iops": 100.5,
              "clat_ns": {"mean": 1.0, "percentile": {"1.000000": 10, "50.000000": 2000,
                "99.000000": 9000, "99.900000": 15000}}},
            "write": {"iops": 0}}]}"#;
        assert_eq!(
            parse(json).unwrap(),
            FioResult {
                iops: 100.5,
                bytes_per_second: 409600.0,
                clat_p50_ns: 2000.0,
                clat_p99_ns: 9000.0,
                clat_p999_ns: 15000.0,
                cpu_ns_per_io: Some(0.5025 * 1e9 / 100.5),
            }
        );
        assert!(parse(r#"{"jobs": [{"error": 5, "read": {}}]}"#).is_err());
        assert!(parse(r#"{"jobs": []}"#).is_err());
        assert!(parse("not json").is_err());
    }

    #[test]
    fn clones_get_their_own_region() {
        let job = super::super::JOBS[1];
        let args = args(
            Path::new("/f"),
            1 << 30,
            job,
            2,
            Duration::from_secs(1),
            Duration::from_secs(5),
        );
        assert!(args.contains(&"--size=536870912".to_string()));
        assert!(args.contains(&"--offset_increment=536870912".to_string()));
        assert!(args.contains(&"--iodepth=32".to_string()));
        assert!(args.contains(&"--runtime=5000ms".to_string()));
    }
}
