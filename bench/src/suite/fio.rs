//! fio 3.x results: `--output-format=json+ --group_reporting`, one entry in `jobs`, the
//! completion latency histogram rebuilt from json+'s `clat_ns.bins`.

use hdrhistogram::Histogram;
use serde_json::Value;
use thiserror::Error;

/// Significant figures of rebuilt histograms: finer than fio's own buckets (about 1.6%),
/// and small enough to keep hundreds of them in memory.
pub const SIGFIG: u8 = 3;

/// The percentiles the suite asks fio for and reports everywhere.
pub const PERCENTILES: [f64; 5] = [50.0, 90.0, 99.0, 99.9, 99.99];

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum FioError {
    #[error("no JSON document in fio's output")]
    NoJson,
    #[error("fio JSON: {0}")]
    Json(String),
    #[error("fio JSON: {0} is missing or malformed")]
    Missing(String),
    #[error("fio JSON has {0} jobs; the suite runs fio with --group_reporting (one)")]
    Jobs(usize),
    #[error("fio reports error {0} for the job")]
    JobError(i64),
    #[error("fio JSON: clat bin {0}")]
    Bin(String),
}

/// One direction (reads or writes) of the grouped job.
#[derive(Debug, Clone)]
pub struct Direction {
    pub iops: f64,
    /// KiB/s.
    pub bw_kib: f64,
    pub io_bytes: u64,
    pub total_ios: u64,
    /// (percentile, ns), ascending, as fio computed them.
    pub clat_percentiles_ns: Vec<(f64, u64)>,
    pub clat_mean_ns: f64,
    /// Rebuilt from json+'s bins; `None` from plain `--output-format=json`.
    pub clat_hist: Option<Histogram<u64>>,
}

impl Direction {
    /// fio's own value for `pct` (e.g. 99.9), if it computed it.
    pub fn percentile_ns(&self, pct: f64) -> Option<u64> {
        self.clat_percentiles_ns
            .iter()
            .find(|(p, _)| (p - pct).abs() < 1e-6)
            .map(|&(_, ns)| ns)
    }
}

#[derive(Debug, Clone)]
pub struct FioResult {
    pub fio_version: String,
    pub jobname: String,
    pub read: Option<Direction>,
    pub write: Option<Direction>,
    /// The longer direction's runtime (the ramp excluded, as fio counts it).
    pub runtime_ms: u64,
    /// CPU use of the fio processes, percent of one CPU.
    pub usr_cpu: f64,
    pub sys_cpu: f64,
}

impl FioResult {
    fn directions(&self) -> impl Iterator<Item = &Direction> {
        self.read.iter().chain(self.write.iter())
    }

    /// Reads and writes together.
    pub fn iops(&self) -> f64 {
        self.directions().map(|d| d.iops).sum()
    }

    pub fn bw_kib(&self) -> f64 {
        self.directions().map(|d| d.bw_kib).sum()
    }

    /// Reads and writes in one histogram, when fio gave bins for every direction.
    pub fn clat_hist(&self) -> Option<Histogram<u64>> {
        let mut merged: Option<Histogram<u64>> = None;
        for d in self.directions() {
            let h = d.clat_hist.as_ref()?;
            match merged.as_mut() {
                None => merged = Some(h.clone()),
                // Both grow on demand, so adding cannot run out of range.
                Some(m) => m.add(h).ok()?,
            }
        }
        merged
    }

    /// The job's completion latency at `pct`: fio's own number for a one-direction job; for
    /// randrw, from the histogram of both directions (fio only reports them apart), else
    /// the read side's.
    pub fn clat_percentile_ns(&self, pct: f64) -> Option<u64> {
        match (&self.read, &self.write) {
            (Some(one), None) | (None, Some(one)) => one
                .percentile_ns(pct)
                .or_else(|| one.clat_hist.as_ref().map(|h| h.value_at_percentile(pct))),
            (Some(read), Some(_)) => self
                .clat_hist()
                .map(|h| h.value_at_percentile(pct))
                .or_else(|| read.percentile_ns(pct)),
            (None, None) => None,
        }
    }

    /// The mean completion latency over both directions, weighted by their I/Os.
    pub fn clat_mean_ns(&self) -> Option<f64> {
        let ios: u64 = self.directions().map(|d| d.total_ios).sum();
        if ios == 0 {
            return None;
        }
        let sum: f64 = self
            .directions()
            .map(|d| d.clat_mean_ns * d.total_ios as f64)
            .sum();
        Some(sum / ios as f64)
    }
}

/// Where the JSON document starts: fio prints notes and warnings on stdout first
/// (`note: both iodepth >= 1 and synchronous I/O engine ...`), and the document itself
/// opens with `{` alone on its line.
fn json_start(text: &str) -> Option<usize> {
    let mut at = 0;
    for line in text.split_inclusive('\n') {
        if line.trim_end() == "{" {
            return Some(at);
        }
        at += line.len();
    }
    text.find('{')
}

fn number(v: &Value) -> Option<f64> {
    v.as_f64()
}

fn unsigned(v: &Value) -> Option<u64> {
    // fio prints some counters as floats ("iops" : 0.000000) and large ones as integers.
    v.as_u64().or_else(|| {
        v.as_f64()
            .filter(|f| f.is_finite() && *f >= 0.0)
            .map(|f| f.round() as u64)
    })
}

fn direction(job: &Value, name: &str) -> Result<Option<Direction>, FioError> {
    let Some(d) = job.get(name) else {
        return Ok(None);
    };
    let missing = |key: &str| FioError::Missing(format!("jobs[0].{name}.{key}"));
    let io_bytes = d
        .get("io_bytes")
        .and_then(unsigned)
        .ok_or_else(|| missing("io_bytes"))?;
    let total_ios = d.get("total_ios").and_then(unsigned).unwrap_or(0);
    if io_bytes == 0 && total_ios == 0 {
        return Ok(None);
    }
    let iops = d
        .get("iops")
        .and_then(number)
        .ok_or_else(|| missing("iops"))?;
    let bw_kib = match d.get("bw_bytes").and_then(number) {
        Some(bytes) => bytes / 1024.0,
        None => d.get("bw").and_then(number).ok_or_else(|| missing("bw"))?,
    };
    let clat = d.get("clat_ns").ok_or_else(|| missing("clat_ns"))?;
    let clat_mean_ns = clat.get("mean").and_then(number).unwrap_or(0.0);
    let mut clat_percentiles_ns = Vec::new();
    if let Some(pcts) = clat.get("percentile").and_then(Value::as_object) {
        for (key, value) in pcts {
            let pct: f64 = key
                .parse()
                .map_err(|_| missing(&format!("clat_ns.percentile.{key}")))?;
            let ns =
                unsigned(value).ok_or_else(|| missing(&format!("clat_ns.percentile.{key}")))?;
            clat_percentiles_ns.push((pct, ns));
        }
    }
    clat_percentiles_ns.sort_by(|a, b| a.0.total_cmp(&b.0));
    let clat_hist = match clat.get("bins").and_then(Value::as_object) {
        None => None,
        Some(bins) => {
            let mut h = Histogram::<u64>::new(SIGFIG).map_err(|e| FioError::Bin(e.to_string()))?;
            for (key, count) in bins {
                let ns: u64 = key
                    .parse()
                    .map_err(|_| FioError::Bin(format!("{key:?} is not a latency")))?;
                let count = count
                    .as_u64()
                    .ok_or_else(|| FioError::Bin(format!("{key}: bad count")))?;
                h.record_n(ns, count)
                    .map_err(|e| FioError::Bin(format!("{key}: {e:?}")))?;
            }
            Some(h)
        }
    };
    Ok(Some(Direction {
        iops,
        bw_kib,
        io_bytes,
        total_ios,
        clat_percentiles_ns,
        clat_mean_ns,
        clat_hist,
    }))
}

/// Parses fio's stdout (notes before the document and text after it are skipped).
pub fn parse_fio_json(text: &str) -> Result<FioResult, FioError> {
    let start = json_start(text).ok_or(FioError::NoJson)?;
    // Only the first document: fio may print more notes after it.
    let root: Value = serde_json::Deserializer::from_str(&text[start..])
        .into_iter::<Value>()
        .next()
        .ok_or(FioError::NoJson)?
        .map_err(|e| FioError::Json(e.to_string()))?;
    let jobs = root
        .get("jobs")
        .and_then(Value::as_array)
        .ok_or_else(|| FioError::Missing("jobs".into()))?;
    if jobs.len() != 1 {
        return Err(FioError::Jobs(jobs.len()));
    }
    let job = &jobs[0];
    if let Some(error) = job.get("error").and_then(Value::as_i64).filter(|&e| e != 0) {
        return Err(FioError::JobError(error));
    }
    let read = direction(job, "read")?;
    let write = direction(job, "write")?;
    let runtime = |d: &str| {
        job.pointer(&format!("/{d}/runtime"))
            .and_then(unsigned)
            .unwrap_or(0)
    };
    let runtime_ms = match runtime("read").max(runtime("write")) {
        0 => job.get("job_runtime").and_then(unsigned).unwrap_or(0),
        ms => ms,
    };
    Ok(FioResult {
        fio_version: root
            .get("fio version")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        jobname: job
            .get("jobname")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        read,
        write,
        runtime_ms,
        usr_cpu: job.get("usr_cpu").and_then(number).unwrap_or(0.0),
        sys_cpu: job.get("sys_cpu").and_then(number).unwrap_or(0.0),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A real fio 3.33 randrw run (psync, 4k), bins merged 16 to 1 to keep it small.
    pub const RANDRW: &str = include_str!("testdata/randrw-4k-psync.fio.json");
    /// A real fio 3.33 randread run with the note fio prints before the document.
    pub const RANDREAD_NOTE: &str = include_str!("testdata/randread-4k-note.fio.json");

    #[test]
    fn randrw_has_both_directions_and_their_histograms() {
        let r = parse_fio_json(RANDRW).unwrap();
        assert_eq!(r.fio_version, "fio-3.33");
        assert_eq!(r.runtime_ms, 1001);
        let read = r.read.as_ref().unwrap();
        let write = r.write.as_ref().unwrap();
        assert_eq!(read.iops, 10656.343656);
        assert_eq!(read.total_ios, 10667);
        assert_eq!(read.io_bytes, 43692032);
        assert_eq!(read.bw_kib, 43648383.0 / 1024.0);
        assert_eq!(read.percentile_ns(99.0), Some(395264));
        assert_eq!(read.percentile_ns(99.99), Some(4014080));
        assert_eq!(read.clat_percentiles_ns.len(), 5);
        assert_eq!(write.percentile_ns(50.0), Some(2320));
        // Every I/O is in a bin.
        assert_eq!(read.clat_hist.as_ref().unwrap().len(), 10667);
        assert_eq!(write.clat_hist.as_ref().unwrap().len(), 10635);
        assert_eq!(r.clat_hist().unwrap().len(), 10667 + 10635);
        assert!((r.iops() - (10656.343656 + 10624.375624)).abs() < 1e-9);
        // Mixed: the merged histogram's median sits between the two sides'.
        let p50 = r.clat_percentile_ns(50.0).unwrap();
        assert!(p50 > 2320 && p50 < 58624, "{p50}");
        let mean = r.clat_mean_ns().unwrap();
        assert!(mean > 2695.0 && mean < 77191.0);
    }

    #[test]
    fn notes_before_the_document_are_skipped_and_idle_directions_are_none() {
        assert!(RANDREAD_NOTE.starts_with("note: "));
        let r = parse_fio_json(RANDREAD_NOTE).unwrap();
        assert!(r.write.is_none());
        let read = r.read.as_ref().unwrap();
        assert_eq!(read.iops, 11224.775225);
        assert_eq!(read.clat_percentiles_ns.len(), 17);
        assert_eq!(r.clat_percentile_ns(99.0), Some(342016));
        assert_eq!(r.clat_percentile_ns(99.99), Some(4227072));
        // Not in fio's list: from the histogram.
        let hist = read.clat_hist.as_ref().unwrap();
        assert_eq!(
            r.clat_percentile_ns(99.999),
            Some(hist.value_at_percentile(99.999))
        );
        assert_eq!(r.iops(), 11224.775225);
        // Trailing text after the document does not matter either.
        assert!(parse_fio_json(&format!("{RANDREAD_NOTE}fio: done\n")).is_ok());
    }

    #[test]
    fn broken_output_is_an_error_not_a_panic() {
        assert_eq!(parse_fio_json("").unwrap_err(), FioError::NoJson);
        assert_eq!(
            parse_fio_json("fio: file not found\n").unwrap_err(),
            FioError::NoJson
        );
        assert!(matches!(
            parse_fio_json("{\n\"jobs\": [").unwrap_err(),
            FioError::Json(_)
        ));
        assert!(matches!(
            parse_fio_json("{\"x\":1}").unwrap_err(),
            FioError::Missing(_)
        ));
        assert_eq!(
            parse_fio_json("{\"jobs\":[]}").unwrap_err(),
            FioError::Jobs(0)
        );
        assert_eq!(
            parse_fio_json("{\"jobs\":[{\"error\":5}]}").unwrap_err(),
            FioError::JobError(5)
        );
        let bad_bin = r#"{"jobs":[{"read":{"io_bytes":4096,"total_ios":1,"iops":1,"bw":4,
            "clat_ns":{"mean":1,"bins":{"abc":1}}}}]}"#;
        assert!(matches!(
            parse_fio_json(bad_bin).unwrap_err(),
            FioError::Bin(_)
        ));
        let bad_count = bad_bin.replace("\"abc\":1", "\"100\":-1");
        assert!(matches!(
            parse_fio_json(&bad_count).unwrap_err(),
            FioError::Bin(_)
        ));
        let no_iops = r#"{"jobs":[{"read":{"io_bytes":4096,"clat_ns":{}}}]}"#;
        assert!(matches!(
            parse_fio_json(no_iops).unwrap_err(),
            FioError::Missing(_)
        ));
        let huge = bad_bin.replace("\"abc\":1", "\"18446744073709551615\":1");
        let huge = parse_fio_json(&huge).map(|r| r.read.and_then(|d| d.clat_hist).map(|h| h.len()));
        assert!(
            matches!(huge, Ok(Some(1)) | Err(FioError::Bin(_))),
            "{huge:?}"
        );
        // A truncated fixture (a guest killed mid-write).
        let cut = &RANDRW[..RANDRW.len() / 2];
        assert!(parse_fio_json(cut).is_err());
    }

    #[test]
    fn plain_json_without_bins_still_parses() {
        let plain = r#"{"jobs":[{"jobname":"x","read":{"io_bytes":8192,"total_ios":2,"iops":2.0,
            "bw":8,"runtime":1000,"clat_ns":{"mean":1500.0,"percentile":{"50.000000":1000,
            "99.000000":2000}}}}]}"#;
        let r = parse_fio_json(plain).unwrap();
        assert!(r.clat_hist().is_none());
        assert_eq!(r.clat_percentile_ns(99.0), Some(2000));
        assert_eq!(r.clat_percentile_ns(99.9), None);
        assert_eq!(r.read.as_ref().unwrap().bw_kib, 8.0);
        assert_eq!(r.runtime_ms, 1000);
    }
}
