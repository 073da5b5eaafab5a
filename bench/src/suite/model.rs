//! The suite's results: a run directory's raw files (or a `summary.json`) read into one
//! model that the reports and the comparison share.

use super::costs::Costs;
use std::path::PathBuf;

use hdrhistogram::Histogram;
use serde_json::{json, Map, Value};
use thiserror::Error;

use super::device::DeviceLatency;
use super::fio::{FioResult, PERCENTILES};
use super::matrix::JobSpec;

#[derive(Debug, Error)]
pub enum SuiteError {
    #[error("cannot read {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("{path}: {reason}")]
    Parse { path: PathBuf, reason: String },
    #[error("summary JSON: {0}")]
    Summary(String),
}

/// Where a job ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    Ringvisor,
    /// The same fio job on the host.
    Bare,
    Qemu,
}

impl Target {
    pub const ALL: [Target; 3] = [Target::Ringvisor, Target::Bare, Target::Qemu];

    /// The directory name under `raw/` and the key in `summary.json`.
    pub fn as_str(self) -> &'static str {
        match self {
            Target::Ringvisor => "ringvisor",
            Target::Bare => "bare",
            Target::Qemu => "qemu",
        }
    }

    /// The name in reports.
    pub fn label(self) -> &'static str {
        match self {
            Target::Ringvisor => "ringvisor",
            Target::Bare => "bare metal",
            Target::Qemu => "QEMU",
        }
    }

    pub fn parse(text: &str) -> Option<Target> {
        Target::ALL.into_iter().find(|t| t.as_str() == text)
    }
}

/// `raw/meta.json`, leniently: a field the orchestrator did not write is empty, and one
/// the model does not know is kept as text for the reports.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Meta {
    /// As written: RFC 3339 or seconds since the epoch.
    pub started: String,
    pub finished: String,
    pub preset: String,
    pub vcpus: u32,
    /// "nested" or "kvm".
    pub lab: String,
    pub vmm_version: String,
    pub interrupted: bool,
    /// The command line that ran the suite, if the orchestrator recorded it.
    pub command: Option<String>,
    /// Other scalar fields (memory, the QEMU switch...), by key.
    pub extra: Vec<(String, String)>,
}

const META_KEYS: [&str; 8] = [
    "started",
    "finished",
    "preset",
    "vcpus",
    "lab",
    "vmm_version",
    "interrupted",
    "command",
];

/// A scalar as text: numbers and booleans too (`"started": 1795639030` is fine).
fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

impl Meta {
    pub fn from_json(value: &Value) -> Meta {
        let text = |key: &str| value.get(key).and_then(scalar_text).unwrap_or_default();
        let extra = value
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(k, _)| !META_KEYS.contains(&k.as_str()))
            .filter_map(|(k, v)| Some((k.clone(), scalar_text(v)?)))
            .collect();
        Meta {
            started: text("started"),
            finished: text("finished"),
            preset: text("preset"),
            vcpus: value
                .get("vcpus")
                .and_then(Value::as_u64)
                .and_then(|n| u32::try_from(n).ok())
                .unwrap_or(0),
            lab: text("lab"),
            vmm_version: text("vmm_version"),
            interrupted: value
                .get("interrupted")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            command: value.get("command").and_then(scalar_text),
            extra,
        }
    }

    pub fn to_json(&self) -> Value {
        let mut out = json!({
            "started": self.started,
            "finished": self.finished,
            "preset": self.preset,
            "vcpus": self.vcpus,
            "lab": self.lab,
            "vmm_version": self.vmm_version,
            "interrupted": self.interrupted,
            "command": self.command,
        });
        if let Some(map) = out.as_object_mut() {
            for (k, v) in &self.extra {
                map.insert(k.clone(), json!(v));
            }
        }
        out
    }
}

/// `{"p50": ns, "p99.9": ns, ...}`
pub fn percentiles_json(pcts: &[(f64, u64)]) -> Value {
    Value::Object(
        pcts.iter()
            .map(|(p, ns)| (format!("p{p}"), json!(ns)))
            .collect(),
    )
}

fn percentiles_from_json(value: Option<&Value>) -> Vec<(f64, u64)> {
    let mut out: Vec<(f64, u64)> = value
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.strip_prefix('p')?.parse().ok()?, v.as_u64()?)))
        .collect();
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    out
}

fn find_pct(pcts: &[(f64, u64)], pct: f64) -> Option<u64> {
    pcts.iter()
        .find(|(p, _)| (p - pct).abs() < 1e-6)
        .map(|&(_, ns)| ns)
}

/// One direction in `summary.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct DirectionSummary {
    pub iops: f64,
    pub bw_kib: f64,
    pub clat_ns: Vec<(f64, u64)>,
}

/// One target's numbers for one job.
#[derive(Debug, Clone)]
pub struct TargetResult {
    /// Reads and writes together.
    pub iops: f64,
    pub bw_kib: f64,
    /// I/Os completed (reads and writes) after the ramp.
    pub ios: u64,
    /// The job's completion latency at [`PERCENTILES`] (see [`FioResult::clat_percentile_ns`]).
    pub clat_ns: Vec<(f64, u64)>,
    pub clat_mean_ns: Option<f64>,
    pub read: Option<DirectionSummary>,
    pub write: Option<DirectionSummary>,
    /// fio's full result with its histograms: only when loaded from raw files.
    pub fio: Option<FioResult>,
    /// What the job cost the machine (exits, system calls, ...), where it was counted.
    pub costs: Option<Costs>,
}

impl TargetResult {
    pub fn from_fio(fio: FioResult) -> TargetResult {
        let summary = |d: &super::fio::Direction| DirectionSummary {
            iops: d.iops,
            bw_kib: d.bw_kib,
            clat_ns: PERCENTILES
                .iter()
                .filter_map(|&p| Some((p, d.percentile_ns(p)?)))
                .collect(),
        };
        TargetResult {
            iops: fio.iops(),
            bw_kib: fio.bw_kib(),
            ios: fio
                .read
                .iter()
                .chain(fio.write.iter())
                .map(|d| d.total_ios)
                .sum(),
            clat_ns: PERCENTILES
                .iter()
                .filter_map(|&p| Some((p, fio.clat_percentile_ns(p)?)))
                .collect(),
            clat_mean_ns: fio.clat_mean_ns(),
            read: fio.read.as_ref().map(summary),
            write: fio.write.as_ref().map(summary),
            fio: Some(fio),
            costs: None,
        }
    }

    pub fn clat_percentile_ns(&self, pct: f64) -> Option<u64> {
        find_pct(&self.clat_ns, pct)
    }

    fn to_json(&self) -> Value {
        let direction = |d: &Option<DirectionSummary>| {
            d.as_ref().map(|d| json!({"iops": d.iops, "bw_kib": d.bw_kib, "clat_ns": percentiles_json(&d.clat_ns)}))
        };
        json!({
            "iops": self.iops,
            "bw_kib": self.bw_kib,
            "ios": self.ios,
            "clat_mean_ns": self.clat_mean_ns,
            "clat_ns": percentiles_json(&self.clat_ns),
            "read": direction(&self.read),
            "write": direction(&self.write),
            "costs": self.costs.as_ref().map(|c| c.to_json(self.ios)),
        })
    }

    fn from_json(value: &Value) -> Option<TargetResult> {
        let direction = |key: &str| {
            let d = value.get(key).filter(|d| !d.is_null())?;
            Some(DirectionSummary {
                iops: d.get("iops")?.as_f64()?,
                bw_kib: d.get("bw_kib")?.as_f64()?,
                clat_ns: percentiles_from_json(d.get("clat_ns")),
            })
        };
        Some(TargetResult {
            iops: value.get("iops")?.as_f64()?,
            bw_kib: value.get("bw_kib")?.as_f64()?,
            ios: value.get("ios").and_then(Value::as_u64).unwrap_or(0),
            clat_ns: percentiles_from_json(value.get("clat_ns")),
            clat_mean_ns: value.get("clat_mean_ns").and_then(Value::as_f64),
            read: direction("read"),
            write: direction("write"),
            fio: None,
            costs: value.get("costs").and_then(Costs::from_json),
        })
    }
}

/// One device-side stage.
#[derive(Debug, Clone, PartialEq)]
pub struct StageSummary {
    /// `kick_to_submit`, `submit_to_complete` or `complete_to_irq`.
    pub name: String,
    pub count: u64,
    pub mean_ns: f64,
    pub percentiles_ns: Vec<(f64, u64)>,
}

impl StageSummary {
    pub fn of(name: &str, h: &Histogram<u64>) -> StageSummary {
        let percentiles_ns = if h.is_empty() {
            Vec::new()
        } else {
            PERCENTILES
                .iter()
                .map(|&p| (p, h.value_at_percentile(p)))
                .collect()
        };
        StageSummary {
            name: name.to_string(),
            count: h.len(),
            mean_ns: if h.is_empty() { 0.0 } else { h.mean() },
            percentiles_ns,
        }
    }

    pub fn percentile_ns(&self, pct: f64) -> Option<u64> {
        find_pct(&self.percentiles_ns, pct)
    }
}

/// ringvisor's device-side latency for one job.
#[derive(Debug, Clone)]
pub struct DeviceResult {
    /// In pipeline order: kick→submit, submit→complete, complete→irq.
    pub stages: Vec<StageSummary>,
    /// The histograms: only when loaded from raw files.
    pub latency: Option<DeviceLatency>,
}

impl DeviceResult {
    pub fn from_latency(latency: DeviceLatency) -> DeviceResult {
        DeviceResult {
            stages: latency
                .stages()
                .iter()
                .map(|(n, h)| StageSummary::of(n, h))
                .collect(),
            latency: Some(latency),
        }
    }

    pub fn stage(&self, name: &str) -> Option<&StageSummary> {
        self.stages.iter().find(|s| s.name == name)
    }
}

/// A result, or why there is none (not run, a broken file...).
pub type Measured<T> = Result<T, String>;

#[derive(Debug, Clone)]
pub struct JobResult {
    pub spec: JobSpec,
    /// In [`Target::ALL`] order.
    pub targets: [Measured<TargetResult>; 3],
    pub device: Measured<DeviceResult>,
}

impl JobResult {
    pub fn id(&self) -> String {
        self.spec.id()
    }

    pub fn target(&self, target: Target) -> &Measured<TargetResult> {
        &self.targets[target as usize]
    }

    pub fn get(&self, target: Target) -> Option<&TargetResult> {
        self.target(target).as_ref().ok()
    }

    /// ringvisor's IOPS over `other`'s (1.0: as fast; above: faster).
    pub fn iops_ratio(&self, other: Target) -> Option<f64> {
        ratio(self.get(Target::Ringvisor)?.iops, self.get(other)?.iops)
    }

    /// ringvisor's bandwidth over `other`'s.
    pub fn bw_ratio(&self, other: Target) -> Option<f64> {
        ratio(self.get(Target::Ringvisor)?.bw_kib, self.get(other)?.bw_kib)
    }

    /// ringvisor's completion latency at `pct` over `other`'s (above 1.0: slower).
    pub fn clat_ratio(&self, other: Target, pct: f64) -> Option<f64> {
        let rv = self.get(Target::Ringvisor)?.clat_percentile_ns(pct)?;
        ratio(rv as f64, self.get(other)?.clat_percentile_ns(pct)? as f64)
    }

    fn ratios_json(&self, other: Target) -> Value {
        if self.get(Target::Ringvisor).is_none() || self.get(other).is_none() {
            return Value::Null;
        }
        json!({
            "iops": self.iops_ratio(other),
            "bw": self.bw_ratio(other),
            "clat_p50": self.clat_ratio(other, 50.0),
            "clat_p99": self.clat_ratio(other, 99.0),
        })
    }

    fn to_json(&self) -> Value {
        let mut targets = Map::new();
        for t in Target::ALL {
            let v = match self.target(t) {
                Ok(r) => r.to_json(),
                Err(why) => json!({ "missing": why }),
            };
            targets.insert(t.as_str().to_string(), v);
        }
        let device = match &self.device {
            Ok(d) => Value::Object(
                d.stages
                    .iter()
                    .map(|s| {
                        let v = json!({"count": s.count, "mean_ns": s.mean_ns,
                                       "percentiles_ns": percentiles_json(&s.percentiles_ns)});
                        (s.name.clone(), v)
                    })
                    .collect(),
            ),
            Err(why) => json!({ "missing": why }),
        };
        json!({
            "id": self.id(),
            "spec": self.spec.to_json(),
            "targets": targets,
            "device": device,
            "ratios": {
                "ringvisor/bare": self.ratios_json(Target::Bare),
                "ringvisor/qemu": self.ratios_json(Target::Qemu),
            },
        })
    }

    fn from_json(value: &Value) -> Result<JobResult, SuiteError> {
        let spec = JobSpec::from_json(value.get("spec").unwrap_or(&Value::Null))
            .map_err(|e| SuiteError::Summary(e.to_string()))?;
        let missing = |v: &Value| v.get("missing").and_then(Value::as_str).map(str::to_string);
        let target = |t: Target| -> Measured<TargetResult> {
            let v = value
                .pointer(&format!("/targets/{}", t.as_str()))
                .unwrap_or(&Value::Null);
            if let Some(why) = missing(v) {
                return Err(why);
            }
            TargetResult::from_json(v).ok_or_else(|| "malformed in summary.json".to_string())
        };
        let device = match value.get("device") {
            Some(v) if missing(v).is_some() => Err(missing(v).unwrap_or_default()),
            Some(Value::Object(stages)) => Ok(DeviceResult {
                stages: stages
                    .iter()
                    .map(|(name, s)| StageSummary {
                        name: name.clone(),
                        count: s.get("count").and_then(Value::as_u64).unwrap_or(0),
                        mean_ns: s.get("mean_ns").and_then(Value::as_f64).unwrap_or(0.0),
                        percentiles_ns: percentiles_from_json(s.get("percentiles_ns")),
                    })
                    .collect(),
                latency: None,
            }),
            _ => Err("malformed in summary.json".to_string()),
        };
        Ok(JobResult {
            spec,
            targets: [
                target(Target::Ringvisor),
                target(Target::Bare),
                target(Target::Qemu),
            ],
            device,
        })
    }
}

/// `a / b`, none where `b` is zero.
pub fn ratio(a: f64, b: f64) -> Option<f64> {
    (b != 0.0 && a.is_finite() && b.is_finite()).then(|| a / b)
}

#[derive(Debug, Clone)]
pub struct SuiteResults {
    pub meta: Meta,
    pub jobs: Vec<JobResult>,
}

impl SuiteResults {
    /// The targets with a result for at least one job, in [`Target::ALL`] order.
    pub fn targets_present(&self) -> Vec<Target> {
        Target::ALL
            .into_iter()
            .filter(|&t| self.jobs.iter().any(|j| j.get(t).is_some()))
            .collect()
    }

    /// `summary.json`.
    pub fn to_json(&self) -> Value {
        json!({
            "suite": "ringvisor-fio",
            "version": 1,
            "meta": self.meta.to_json(),
            "targets": self.targets_present().iter().map(|t| t.as_str()).collect::<Vec<_>>(),
            "jobs": self.jobs.iter().map(JobResult::to_json).collect::<Vec<_>>(),
        })
    }

    /// Reads a `summary.json` back (without histograms: those are in `latency.hlog`).
    pub fn from_summary_json(text: &str) -> Result<SuiteResults, SuiteError> {
        let root: Value =
            serde_json::from_str(text).map_err(|e| SuiteError::Summary(e.to_string()))?;
        if root.get("suite").and_then(Value::as_str) != Some("ringvisor-fio") {
            return Err(SuiteError::Summary(
                "not a ringvisor fio suite summary".into(),
            ));
        }
        let jobs = root
            .get("jobs")
            .and_then(Value::as_array)
            .ok_or_else(|| SuiteError::Summary("no `jobs` list".into()))?
            .iter()
            .map(JobResult::from_json)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(SuiteResults {
            meta: Meta::from_json(root.get("meta").unwrap_or(&Value::Null)),
            jobs,
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn meta_is_lenient() {
        let m = Meta::from_json(&json!({"started": 1795639030, "vcpus": 2, "memory": "2G",
                                        "qemu": true, "nested": {"x": 1}, "interrupted": "no"}));
        assert_eq!(m.started, "1795639030");
        assert_eq!(m.finished, "");
        assert!(!m.interrupted);
        assert_eq!(
            m.extra,
            [
                ("memory".to_string(), "2G".to_string()),
                ("qemu".to_string(), "true".to_string())
            ]
        );
        assert_eq!(Meta::from_json(&m.to_json()), m);
        assert_eq!(Meta::from_json(&Value::Null), Meta::default());
    }

    use super::super::testutil::{known_raw_dir, TempDir};
    use super::*;

    #[test]
    fn summary_json_round_trips() {
        let tmp = TempDir::new("model-json");
        let r = SuiteResults::load(&known_raw_dir(tmp.path())).unwrap();
        let json = r.to_json();
        let job = &json["jobs"][0];
        assert_eq!(job["targets"]["ringvisor"]["iops"], json!(11224.775225));
        assert_eq!(
            job["targets"]["ringvisor"]["clat_ns"]["p99.99"],
            json!(4227072)
        );
        assert_eq!(
            job["ratios"]["ringvisor/bare"]["iops"],
            json!(11224.775225 / 20000.0)
        );
        assert_eq!(job["ratios"]["ringvisor/qemu"], Value::Null);
        assert_eq!(job["device"]["submit_to_complete"]["count"], json!(100));
        let back = SuiteResults::from_summary_json(&json.to_string()).unwrap();
        assert_eq!(back.meta, r.meta);
        // serde_json reads floats back to within an ulp or so, not bit for bit: compare
        // what the reports show.
        assert_eq!(
            super::super::report::markdown(&back),
            super::super::report::markdown(&r)
        );
        assert_eq!(
            back.to_json()["jobs"][1]["device"],
            json["jobs"][1]["device"]
        );
        assert_eq!(back.to_json()["meta"], json["meta"]);
        let iops = back.jobs[1].get(Target::Ringvisor).unwrap().iops;
        assert!((iops - r.jobs[1].get(Target::Ringvisor).unwrap().iops).abs() < 1e-6);
        assert!(back.jobs[0].get(Target::Ringvisor).unwrap().fio.is_none());
        assert!(SuiteResults::from_summary_json("{}").is_err());
        assert!(SuiteResults::from_summary_json("[").is_err());
    }
}
