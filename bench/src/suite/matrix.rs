//! The job matrix: a small TOML file (or a named preset) expanded into the list of fio
//! jobs the suite runs on every target.

use serde_json::{json, Value};
use thiserror::Error;

/// More jobs than this is a typo in a list, not a benchmark anyone waits for.
pub const MAX_JOBS: usize = 2000;
pub const MAX_NUMJOBS: u32 = 64;
pub const MAX_IODEPTH: u32 = 1024;
/// fio runs `--direct=1`: block sizes must be whole sectors.
pub(super) const SECTOR: u64 = 512;
/// The largest block size fio is asked for (and what `bs` fits in a u32 comfortably).
pub(super) const MAX_BS: u64 = 64 << 20;
pub(super) const MAX_RUNTIME_S: i64 = 3600;
pub(super) const MAX_RAMP_S: i64 = 600;

/// The named presets.
pub const PRESETS: [&str; 2] = ["quick", "full"];

const QUICK: &str = r#"
[defaults]
runtime = 3
ramp = 1
size = "32M"
devices = ["blk", "scsi"]
ioengines = ["io_uring"]
[[job]]
rw = "randread"
bs = "4k"
iodepth = [1, 32]
[[job]]
rw = "randwrite"
bs = "4k"
iodepth = 32
[[job]]
rw = "read"
bs = "1M"
iodepth = 8
[[job]]
rw = "randread"
bs = "4k"
iodepth = [1, 32]
devices = "blk"
polled = true
"#;

const FULL: &str = r#"
[defaults]
runtime = 5
ramp = 1
size = "64M"
devices = ["blk", "scsi"]
ioengines = ["io_uring", "libaio"]
[[job]]
rw = ["randread", "randwrite", "randrw", "read", "write"]
bs = ["4k", "64k", "1M"]
iodepth = [1, 32, 128]
numjobs = [1, "vcpus"]
"#;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum MatrixError {
    #[error("matrix TOML: {0}")]
    Toml(String),
    #[error("unknown key `{key}` in {section}")]
    UnknownKey { key: String, section: String },
    #[error("`{key}` in {section}: {reason}")]
    BadValue {
        key: String,
        section: String,
        reason: String,
    },
    #[error("the matrix expands to more than {MAX_JOBS} jobs")]
    TooManyJobs,
    #[error("the matrix has no jobs")]
    NoJobs,
    #[error("matrix JSON: {0}")]
    Json(String),
}

/// fio's `--rw`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Rw {
    RandRead,
    RandWrite,
    /// 70% reads, 30% writes.
    RandRw,
    Read,
    Write,
}

impl Rw {
    pub const ALL: [Rw; 5] = [Rw::RandRead, Rw::RandWrite, Rw::RandRw, Rw::Read, Rw::Write];

    pub fn as_str(self) -> &'static str {
        match self {
            Rw::RandRead => "randread",
            Rw::RandWrite => "randwrite",
            Rw::RandRw => "randrw",
            Rw::Read => "read",
            Rw::Write => "write",
        }
    }

    pub fn parse(text: &str) -> Option<Rw> {
        Rw::ALL.into_iter().find(|rw| rw.as_str() == text)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IoEngine {
    IoUring,
    Libaio,
}

impl IoEngine {
    pub const ALL: [IoEngine; 2] = [IoEngine::IoUring, IoEngine::Libaio];

    pub fn as_str(self) -> &'static str {
        match self {
            IoEngine::IoUring => "io_uring",
            IoEngine::Libaio => "libaio",
        }
    }

    pub fn parse(text: &str) -> Option<IoEngine> {
        IoEngine::ALL.into_iter().find(|e| e.as_str() == text)
    }
}

/// The guest device a job runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Device {
    Blk,
    Scsi,
}

impl Device {
    pub const ALL: [Device; 2] = [Device::Blk, Device::Scsi];

    pub fn as_str(self) -> &'static str {
        match self {
            Device::Blk => "blk",
            Device::Scsi => "scsi",
        }
    }

    pub fn parse(text: &str) -> Option<Device> {
        Device::ALL.into_iter().find(|d| d.as_str() == text)
    }

    /// The prefix of this device's queue names in the control API's `histograms`
    /// (the suite's guest has one device of each kind).
    pub fn queue_prefix(self) -> &'static str {
        match self {
            Device::Blk => "blk0/",
            Device::Scsi => "scsi0/",
        }
    }
}

/// One fio job on one device with one engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSpec {
    pub rw: Rw,
    /// Block size in bytes.
    pub bs: u32,
    pub iodepth: u32,
    pub numjobs: u32,
    pub ioengine: IoEngine,
    pub device: Device,
    pub runtime_s: u32,
    pub ramp_s: u32,
    /// Bytes of the device each job clone touches.
    pub size: u64,
    /// The guest polls for completions (fio `--hipri` on io_uring, served by a virtio-blk
    /// poll queue: Linux `virtio_blk.poll_queues`) instead of taking interrupts. Only for
    /// io_uring on blk: virtio-scsi has no poll queues and libaio cannot poll.
    pub polled: bool,
}

/// `4096` -> `4k`, `1048576` -> `1m`: short and file-name safe.
pub fn size_label(bytes: u64) -> String {
    const UNITS: [(u64, &str); 4] = [
        (1 << 40, "t"),
        (1 << 30, "g"),
        (1 << 20, "m"),
        (1 << 10, "k"),
    ];
    UNITS
        .iter()
        .find(|(unit, _)| bytes >= *unit && bytes % unit == 0)
        .map_or_else(
            || bytes.to_string(),
            |(unit, s)| format!("{}{s}", bytes / unit),
        )
}

/// fio-style sizes: `4096`, `4k`, `64M`, `1G`, `64MiB`, `64MB` (powers of 1024, as fio's
/// default `kb_base`).
pub fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let number: u64 = text[..digits].parse().ok()?;
    let unit = text[digits..].to_ascii_lowercase();
    let shift = match unit.as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => return None,
    };
    number.checked_mul(1u64 << shift)
}

impl JobSpec {
    /// Names the job's files and its rows in every report.
    pub fn id(&self) -> String {
        format!(
            "{}-{}-qd{}-j{}-{}-{}{}",
            self.rw.as_str(),
            size_label(u64::from(self.bs)),
            self.iodepth,
            self.numjobs,
            self.ioengine.as_str(),
            self.device.as_str(),
            if self.polled { "-polled" } else { "" }
        )
    }

    /// The fio command line (without `fio` itself) for this job on `filename`.
    pub fn fio_args(&self, filename: &str) -> Vec<String> {
        let mut args = vec![
            format!("--name={}", self.id()),
            format!("--filename={filename}"),
            "--direct=1".to_string(),
            format!("--rw={}", self.rw.as_str()),
        ];
        if self.rw == Rw::RandRw {
            args.push("--rwmixread=70".to_string());
        }
        args.extend([
            format!("--bs={}", self.bs),
            format!("--iodepth={}", self.iodepth),
            format!("--numjobs={}", self.numjobs),
            format!("--ioengine={}", self.ioengine.as_str()),
        ]);
        if self.polled {
            args.push("--hipri".to_string());
        }
        args.extend([
            format!("--runtime={}", self.runtime_s),
            format!("--ramp_time={}", self.ramp_s),
            "--time_based".to_string(),
            format!("--size={}", self.size),
            "--group_reporting".to_string(),
            "--output-format=json+".to_string(),
            "--percentile_list=50:90:99:99.9:99.99".to_string(),
        ]);
        args
    }

    /// Whether the job's engine and device can poll for completions.
    pub fn can_poll(&self) -> bool {
        self.ioengine == IoEngine::IoUring && self.device == Device::Blk
    }

    /// Seconds fio runs this job on one target (ramp included, start-up not).
    pub fn estimated_seconds(&self) -> u64 {
        u64::from(self.runtime_s) + u64::from(self.ramp_s)
    }

    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id(),
            "rw": self.rw.as_str(),
            "bs": self.bs,
            "iodepth": self.iodepth,
            "numjobs": self.numjobs,
            "ioengine": self.ioengine.as_str(),
            "device": self.device.as_str(),
            "runtime_s": self.runtime_s,
            "ramp_s": self.ramp_s,
            "size": self.size,
            "polled": self.polled,
        })
    }

    /// Reads what [`JobSpec::to_json`] wrote, with the same limits as the TOML.
    pub fn from_json(value: &Value) -> Result<JobSpec, MatrixError> {
        let bad = |key: &str, reason: &str| MatrixError::Json(format!("job `{key}`: {reason}"));
        let text = |key: &str| {
            value
                .get(key)
                .and_then(Value::as_str)
                .ok_or_else(|| bad(key, "missing or not a string"))
        };
        let number = |key: &str| {
            value
                .get(key)
                .and_then(Value::as_u64)
                .ok_or_else(|| bad(key, "missing or not a number"))
        };
        let small = |key: &str| {
            number(key).and_then(|n| u32::try_from(n).map_err(|_| bad(key, "too large")))
        };
        let spec = JobSpec {
            rw: Rw::parse(text("rw")?).ok_or_else(|| bad("rw", "unknown"))?,
            bs: small("bs")?,
            iodepth: small("iodepth")?,
            numjobs: small("numjobs")?,
            ioengine: IoEngine::parse(text("ioengine")?)
                .ok_or_else(|| bad("ioengine", "unknown"))?,
            device: Device::parse(text("device")?).ok_or_else(|| bad("device", "unknown"))?,
            runtime_s: small("runtime_s")?,
            ramp_s: small("ramp_s")?,
            size: number("size")?,
            // Raw directories written before polled jobs existed have no such key.
            polled: match value.get("polled") {
                None => false,
                Some(polled) => polled
                    .as_bool()
                    .ok_or_else(|| bad("polled", "not true or false"))?,
            },
        };
        spec.check().map_err(|(key, reason)| bad(key, &reason))?;
        Ok(spec)
    }

    /// The limits every job obeys, wherever it came from: (key, why) of the first broken.
    fn check(&self) -> Result<(), (&'static str, String)> {
        if self.bs == 0 || u64::from(self.bs) % SECTOR != 0 || u64::from(self.bs) > MAX_BS {
            return Err((
                "bs",
                format!("{} is not a multiple of {SECTOR} up to {MAX_BS}", self.bs),
            ));
        }
        if self.iodepth == 0 || self.iodepth > MAX_IODEPTH {
            return Err((
                "iodepth",
                format!("{} is not in 1..={MAX_IODEPTH}", self.iodepth),
            ));
        }
        if self.numjobs == 0 || self.numjobs > MAX_NUMJOBS {
            return Err((
                "numjobs",
                format!("{} is not in 1..={MAX_NUMJOBS}", self.numjobs),
            ));
        }
        if self.runtime_s == 0 || i64::from(self.runtime_s) > MAX_RUNTIME_S {
            return Err((
                "runtime",
                format!("{} is not in 1..={MAX_RUNTIME_S}", self.runtime_s),
            ));
        }
        if i64::from(self.ramp_s) > MAX_RAMP_S {
            return Err(("ramp", format!("{} is more than {MAX_RAMP_S}", self.ramp_s)));
        }
        if self.size < u64::from(self.bs) {
            return Err((
                "size",
                format!("{} is smaller than the block size {}", self.size, self.bs),
            ));
        }
        if self.polled && !self.can_poll() {
            return Err((
                "polled",
                "a polled job needs ioengine io_uring on device blk".to_string(),
            ));
        }
        Ok(())
    }
}

/// The expanded matrix, in the order the jobs run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matrix {
    pub jobs: Vec<JobSpec>,
}

impl Matrix {
    /// Expands the TOML matrix; `vcpus` is the guest's vCPU count, what `numjobs = "vcpus"`
    /// stands for.
    pub fn parse(text: &str, vcpus: u32) -> Result<Matrix, MatrixError> {
        Ok(Matrix {
            jobs: super::expand::expand(text, vcpus)?,
        })
    }

    /// The TOML text of a named preset.
    pub fn preset_toml(name: &str) -> Option<&'static str> {
        match name {
            "quick" => Some(QUICK),
            "full" => Some(FULL),
            _ => None,
        }
    }

    pub fn preset(name: &str, vcpus: u32) -> Option<Matrix> {
        Matrix::parse(Matrix::preset_toml(name)?, vcpus).ok()
    }

    /// Seconds fio runs on one target for the whole matrix (boots and start-ups not counted).
    pub fn estimated_seconds(&self) -> u64 {
        self.jobs.iter().map(JobSpec::estimated_seconds).sum()
    }

    pub fn to_json(&self) -> Value {
        json!({ "jobs": self.jobs.iter().map(JobSpec::to_json).collect::<Vec<_>>() })
    }

    pub fn from_json(value: &Value) -> Result<Matrix, MatrixError> {
        let jobs = value
            .get("jobs")
            .and_then(Value::as_array)
            .ok_or_else(|| MatrixError::Json("no `jobs` array".into()))?;
        if jobs.len() > MAX_JOBS {
            return Err(MatrixError::TooManyJobs);
        }
        let jobs = jobs
            .iter()
            .map(JobSpec::from_json)
            .collect::<Result<Vec<_>, _>>()?;
        let mut ids: Vec<String> = jobs.iter().map(JobSpec::id).collect();
        ids.sort();
        if let Some(pair) = ids.windows(2).find(|w| w[0] == w[1]) {
            return Err(MatrixError::Json(format!(
                "job `{}` appears twice",
                pair[0]
            )));
        }
        Ok(Matrix { jobs })
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::ids;
    use super::*;

    #[test]
    fn presets_expand() {
        let quick = Matrix::preset("quick", 2).unwrap();
        assert_eq!(
            ids(&quick),
            [
                "randread-4k-qd1-j1-io_uring-blk",
                "randread-4k-qd1-j1-io_uring-scsi",
                "randread-4k-qd32-j1-io_uring-blk",
                "randread-4k-qd32-j1-io_uring-scsi",
                "randwrite-4k-qd32-j1-io_uring-blk",
                "randwrite-4k-qd32-j1-io_uring-scsi",
                "read-1m-qd8-j1-io_uring-blk",
                "read-1m-qd8-j1-io_uring-scsi",
                "randread-4k-qd1-j1-io_uring-blk-polled",
                "randread-4k-qd32-j1-io_uring-blk-polled",
            ]
        );
        assert!(quick
            .jobs
            .iter()
            .all(|j| j.runtime_s == 3 && j.ramp_s == 1 && j.size == 32 << 20));
        assert_eq!(quick.estimated_seconds(), 10 * 4);
        let polled = &quick.jobs[8];
        assert!(polled.fio_args("/dev/vda").contains(&"--hipri".to_string()));
        assert!(!quick.jobs[0]
            .fio_args("/dev/vda")
            .contains(&"--hipri".to_string()));
        assert_eq!(
            Matrix::preset("full", 4).unwrap().jobs.len(),
            5 * 3 * 3 * 2 * 2 * 2
        );
        assert_eq!(
            Matrix::preset("full", 1).unwrap().jobs.len(),
            5 * 3 * 3 * 2 * 2
        );
        assert!(Matrix::preset("nope", 2).is_none());
    }

    #[test]
    fn fio_args_and_json_round_trip() {
        let m = Matrix::parse("[[job]]\nrw = \"randrw\"\nbs = \"64k\"\niodepth = 32\nnumjobs = 2\nioengines = \"libaio\"\ndevices = \"scsi\"", 2).unwrap();
        let job = &m.jobs[0];
        assert_eq!(
            job.fio_args("/dev/sdb").join(" "),
            "--name=randrw-64k-qd32-j2-libaio-scsi --filename=/dev/sdb --direct=1 --rw=randrw \
             --rwmixread=70 --bs=65536 --iodepth=32 --numjobs=2 --ioengine=libaio --runtime=5 \
             --ramp_time=1 --time_based --size=67108864 --group_reporting --output-format=json+ \
             --percentile_list=50:90:99:99.9:99.99"
        );
        let read = Matrix::preset("quick", 2).unwrap();
        assert!(!read.jobs[0]
            .fio_args("/dev/vdb")
            .iter()
            .any(|a| a.starts_with("--rwmixread")));
        let full = Matrix::preset("full", 3).unwrap();
        assert_eq!(Matrix::from_json(&full.to_json()).unwrap(), full);
        assert_eq!(JobSpec::from_json(&job.to_json()).unwrap(), *job);
        let mut broken = job.to_json();
        broken["iodepth"] = json!(0);
        assert!(JobSpec::from_json(&broken).is_err());
        broken["iodepth"] = json!("x");
        assert!(JobSpec::from_json(&broken).is_err());
        assert!(Matrix::from_json(&json!({"jobs": [job.to_json(), job.to_json()]})).is_err());
        assert!(Matrix::from_json(&json!({})).is_err());
        // Older raw directories have no `polled`; a polled job on scsi is refused.
        let mut old = job.to_json();
        old.as_object_mut().unwrap().remove("polled");
        assert_eq!(JobSpec::from_json(&old).unwrap(), *job);
        let mut polled_scsi = job.to_json();
        polled_scsi["polled"] = json!(true);
        assert!(JobSpec::from_json(&polled_scsi).is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4k"), Some(4096));
        assert_eq!(parse_size("64M"), Some(64 << 20));
        assert_eq!(parse_size("1GiB"), Some(1 << 30));
        assert_eq!(parse_size("512"), Some(512));
        assert_eq!(parse_size("k"), None);
        assert_eq!(parse_size("4x"), None);
        assert_eq!(parse_size("99999999999999999999"), None);
        assert_eq!(parse_size("16777216T"), None);
        assert_eq!(size_label(4096), "4k");
        assert_eq!(size_label(1 << 20), "1m");
        assert_eq!(size_label(1536), "1536");
    }
}
