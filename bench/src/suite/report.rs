//! The suite's reports: `summary.json`, `latency.hlog`, `summary.md` and `report.html`,
//! all from one [`SuiteResults`]. The Markdown and HTML tables share [`Table`], so both
//! show the same numbers.

use std::io::Write;
use std::path::{Path, PathBuf};

use thiserror::Error;

use super::costs::COST_LABELS;
use super::fio::PERCENTILES;
use super::model::{JobResult, SuiteResults, Target};
use super::{hlog, html};

pub const SUMMARY_JSON: &str = "summary.json";
pub const LATENCY_HLOG: &str = "latency.hlog";
pub const SUMMARY_MD: &str = "summary.md";
pub const REPORT_HTML: &str = "report.html";

pub const NA: &str = "n/a";
/// The ratio cell of ringvisor's own row.
const SELF: &str = "-";

#[derive(Debug, Error)]
pub enum ReportError {
    #[error("cannot write {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("latency log: {0}")]
    Hlog(#[from] hlog::HlogError),
}

/// Operations per second, whole.
pub fn fmt_iops(iops: f64) -> String {
    format!("{iops:.0}")
}

/// KiB/s as MiB/s.
pub fn fmt_mib(bw_kib: f64) -> String {
    format!("{:.1}", bw_kib / 1024.0)
}

/// Nanoseconds as microseconds: two decimals below 10 µs, where device stages live.
pub fn fmt_us(ns: u64) -> String {
    let us = ns as f64 / 1000.0;
    if ns < 10_000 {
        format!("{us:.2}")
    } else {
        format!("{us:.1}")
    }
}

pub fn fmt_ratio(ratio: Option<f64>) -> String {
    ratio.map_or_else(|| NA.to_string(), |r| format!("{r:.2}"))
}

fn opt_us(ns: Option<u64>) -> String {
    ns.map_or_else(|| NA.to_string(), fmt_us)
}

/// Percentile labels: `p50`, `p99.9`.
pub fn pct_label(pct: f64) -> String {
    format!("p{pct}")
}

/// A table of text cells, rendered as Markdown or HTML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

/// Text in a Markdown table cell: pipes and line breaks would end the cell.
fn md_cell(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('|', "\\|")
        .replace(['\n', '\r'], " ")
}

impl Table {
    pub fn markdown(&self) -> String {
        let line = |cells: &[String]| {
            let cells: Vec<String> = cells.iter().map(|c| md_cell(c)).collect();
            format!("| {} |\n", cells.join(" | "))
        };
        let mut out = line(&self.header);
        out.push_str(&format!("|{}\n", "---|".repeat(self.header.len())));
        for row in &self.rows {
            out.push_str(&line(row));
        }
        out
    }
}

/// `33554432` -> `32 MiB`.
pub fn fmt_bytes(bytes: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    UNITS
        .iter()
        .find(|(unit, _)| bytes >= *unit && bytes % unit == 0)
        .map_or_else(
            || format!("{bytes} bytes"),
            |(unit, name)| format!("{} {name}", bytes / unit),
        )
}

/// A job in one line: what fio ran.
pub fn describe(job: &JobResult) -> String {
    let s = &job.spec;
    format!(
        "{} bs={} iodepth={} numjobs={} {} on {}, {} s after a {} s ramp, {} per fio job",
        s.rw.as_str(),
        super::matrix::size_label(u64::from(s.bs)),
        s.iodepth,
        s.numjobs,
        s.ioengine.as_str(),
        s.device.as_str(),
        s.runtime_s,
        s.ramp_s,
        fmt_bytes(s.size)
    )
}

/// The targets the tables show: ringvisor and bare metal always (a gap there is news),
/// QEMU where any job has a QEMU result (it is optional).
pub fn shown_targets(results: &SuiteResults) -> Vec<Target> {
    let present = results.targets_present();
    Target::ALL
        .into_iter()
        .filter(|&t| t != Target::Qemu || present.contains(&t))
        .collect()
}

/// One job's throughput and completion latency per target, with ringvisor's ratios.
pub fn job_table(results: &SuiteResults, job: &JobResult) -> Table {
    let mut header: Vec<String> = [
        "target",
        "IOPS",
        "rv/target IOPS",
        "MiB/s",
        "rv/target MiB/s",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    header.extend(
        PERCENTILES
            .iter()
            .map(|&p| format!("clat {} µs", pct_label(p))),
    );
    let rows = shown_targets(results)
        .into_iter()
        .map(|t| {
            let mut row = vec![t.label().to_string()];
            match job.get(t) {
                Some(r) => {
                    let (iops_ratio, bw_ratio) = if t == Target::Ringvisor {
                        (SELF.to_string(), SELF.to_string())
                    } else {
                        (fmt_ratio(job.iops_ratio(t)), fmt_ratio(job.bw_ratio(t)))
                    };
                    row.extend([fmt_iops(r.iops), iops_ratio, fmt_mib(r.bw_kib), bw_ratio]);
                    row.extend(PERCENTILES.iter().map(|&p| opt_us(r.clat_percentile_ns(p))));
                }
                None => row.extend((1..header.len()).map(|_| NA.to_string())),
            }
            row
        })
        .collect();
    Table { header, rows }
}

/// The job's cost counts per 1000 I/Os, one row per target that has them; none where no
/// target does.
pub fn cost_table(results: &SuiteResults, job: &JobResult) -> Option<Table> {
    let mut header = vec!["per 1000 I/Os".to_string()];
    header.extend(COST_LABELS.iter().map(|(_, label)| label.to_string()));
    let rows: Vec<Vec<String>> = shown_targets(results)
        .into_iter()
        .filter_map(|t| {
            let r = job.get(t)?;
            let costs = r.costs.as_ref()?;
            let mut row = vec![t.label().to_string()];
            row.extend(COST_LABELS.iter().map(|(key, _)| {
                costs
                    .per_kio(key, r.ios)
                    .map_or_else(|| NA.to_string(), |v| format!("{v:.0}"))
            }));
            Some(row)
        })
        .collect();
    (!rows.is_empty()).then_some(Table { header, rows })
}

/// What the cost table counts, for the reports.
pub const COST_NOTE: &str = "Counted over each job (exits: L1's KVM statistics of the VMM's VM; \
guest disk IRQs: the guest's /proc/interrupts; syscalls: a tracepoint histogram of the VMM's threads; \
context switches and CPU time: /proc). Counts carry over to real hardware; the lab's timings do not.";

/// The device-side stages' names in reports.
pub const STAGE_LABELS: [(&str, &str); 3] = [
    ("kick_to_submit", "kick→submit"),
    ("submit_to_complete", "submit→complete"),
    ("complete_to_irq", "complete→irq"),
];

/// ringvisor's device-side stages against the guest's completion latency; none where
/// the device side is missing.
pub fn device_table(job: &JobResult) -> Option<Table> {
    let device = job.device.as_ref().ok()?;
    let header = ["stage", "p50 µs", "p99 µs", "samples"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut rows: Vec<Vec<String>> = STAGE_LABELS
        .iter()
        .map(|(name, label)| {
            let stage = device.stage(name);
            vec![
                label.to_string(),
                opt_us(stage.and_then(|s| s.percentile_ns(50.0))),
                opt_us(stage.and_then(|s| s.percentile_ns(99.0))),
                stage.map_or_else(|| NA.to_string(), |s| s.count.to_string()),
            ]
        })
        .collect();
    if let Some(rv) = job.get(Target::Ringvisor) {
        rows.push(vec![
            "guest clat (fio)".to_string(),
            opt_us(rv.clat_percentile_ns(50.0)),
            opt_us(rv.clat_percentile_ns(99.0)),
            rv.ios.to_string(),
        ]);
    }
    Some(Table { header, rows })
}

/// Every job in one table: IOPS and p99 per target, ringvisor's IOPS ratios.
pub fn overview_table(results: &SuiteResults) -> Table {
    let targets = shown_targets(results);
    let others: Vec<Target> = targets
        .iter()
        .copied()
        .filter(|&t| t != Target::Ringvisor)
        .collect();
    let mut header = vec!["job".to_string()];
    header.extend(targets.iter().map(|t| format!("{} IOPS", t.label())));
    header.extend(others.iter().map(|t| format!("rv/{}", t.label())));
    header.extend(targets.iter().map(|t| format!("{} p99 µs", t.label())));
    let rows = results
        .jobs
        .iter()
        .map(|job| {
            let mut row = vec![job.id()];
            row.extend(targets.iter().map(|&t| {
                job.get(t)
                    .map_or_else(|| NA.to_string(), |r| fmt_iops(r.iops))
            }));
            row.extend(others.iter().map(|&t| fmt_ratio(job.iops_ratio(t))));
            row.extend(
                targets
                    .iter()
                    .map(|&t| opt_us(job.get(t).and_then(|r| r.clat_percentile_ns(99.0)))),
            );
            row
        })
        .collect();
    Table { header, rows }
}

/// Why a job lacks a result: (what, why).
pub fn gaps(results: &SuiteResults, job: &JobResult) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = shown_targets(results)
        .into_iter()
        .filter_map(|t| {
            job.target(t)
                .as_ref()
                .err()
                .map(|why| (t.label().to_string(), why.clone()))
        })
        .collect();
    if let Err(why) = &job.device {
        out.push(("device side".to_string(), why.clone()))
    }
    out
}

/// The run's facts, in the order reports show them.
pub fn meta_rows(results: &SuiteResults) -> Vec<(String, String)> {
    let m = &results.meta;
    let mut rows: Vec<(String, String)> = [
        (
            "command",
            m.command.clone().unwrap_or_else(|| NA.to_string()),
        ),
        ("preset", m.preset.clone()),
        ("guest vCPUs", m.vcpus.to_string()),
        ("lab", m.lab.clone()),
        ("ringvisor version", m.vmm_version.clone()),
        ("started", m.started.clone()),
        ("finished", m.finished.clone()),
        (
            "interrupted",
            if m.interrupted { "yes" } else { "no" }.to_string(),
        ),
        ("jobs", results.jobs.len().to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    rows.extend(m.extra.iter().cloned());
    rows
}

/// Inline code that survives backticks in the text.
fn md_code(text: &str) -> String {
    let text = text.replace(['\n', '\r'], " ");
    if text.contains('`') {
        format!("`` {text} ``")
    } else {
        format!("`{text}`")
    }
}

/// `summary.md`.
pub fn markdown(results: &SuiteResults) -> String {
    let mut out = String::from("# ringvisor fio suite\n\n");
    for (key, value) in meta_rows(results) {
        let value = if key == "command" {
            md_code(&value)
        } else {
            md_cell(&value)
        };
        out.push_str(&format!("- {}: {value}\n", md_cell(&key)));
    }
    out.push_str(
        "\nRatios are ringvisor's over the target's: IOPS above 1.00 is faster than the target. ",
    );
    out.push_str("Latencies are fio's completion latency (clat) in µs.\n\n## Overview\n\n");
    out.push_str(&overview_table(results).markdown());
    for job in &results.jobs {
        out.push_str(&format!(
            "\n## {}\n\n{}\n\n",
            job.id(),
            md_cell(&describe(job))
        ));
        out.push_str(&job_table(results, job).markdown());
        if let Some(device) = device_table(job) {
            out.push_str("\nringvisor's device side (sum of the device's queues):\n\n");
            out.push_str(&device.markdown());
        }
        if let Some(costs) = cost_table(results, job) {
            out.push_str(&format!("\n{COST_NOTE}\n\n"));
            out.push_str(&costs.markdown());
        }
        let gaps = gaps(results, job);
        if !gaps.is_empty() {
            out.push('\n');
            for (what, why) in gaps {
                out.push_str(&format!("- {what} missing: {}\n", md_cell(&why)));
            }
        }
    }
    out
}

/// Writes `contents` next to `path` and renames it into place, so a reader never sees half
/// a report.
fn write_file(path: &Path, contents: &[u8]) -> Result<(), ReportError> {
    let io = |source| ReportError::Io {
        path: path.to_path_buf(),
        source,
    };
    let name = path
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let partial = path.with_file_name(format!(".{name}.partial"));
    let mut file = std::fs::File::create(&partial).map_err(io)?;
    file.write_all(contents).map_err(io)?;
    file.sync_all().map_err(io)?;
    std::fs::rename(&partial, path).map_err(io)
}

/// Writes the four reports into `out_dir` (created if needed); returns their paths.
pub fn write_reports(results: &SuiteResults, out_dir: &Path) -> Result<Vec<PathBuf>, ReportError> {
    std::fs::create_dir_all(out_dir).map_err(|source| ReportError::Io {
        path: out_dir.to_path_buf(),
        source,
    })?;
    let mut json = serde_json::to_string_pretty(&results.to_json()).unwrap_or_default();
    json.push('\n');
    let mut hlog_bytes = Vec::new();
    hlog::write_hlog(results, &mut hlog_bytes)?;
    let files = [
        (SUMMARY_JSON, json.into_bytes()),
        (LATENCY_HLOG, hlog_bytes),
        (SUMMARY_MD, markdown(results).into_bytes()),
        (REPORT_HTML, html::render(results).into_bytes()),
    ];
    let mut written = Vec::with_capacity(files.len());
    for (name, contents) in files {
        let path = out_dir.join(name);
        write_file(&path, &contents)?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{known_raw_dir, TempDir};
    use super::*;

    fn known() -> (TempDir, SuiteResults) {
        let tmp = TempDir::new("report");
        let results = SuiteResults::load(&known_raw_dir(tmp.path())).unwrap();
        (tmp, results)
    }

    #[test]
    fn the_markdown_shows_known_numbers() {
        let (_tmp, r) = known();
        let md = markdown(&r);
        assert!(md.starts_with("# ringvisor fio suite\n\n- command: `fio-suite --preset quick --note '<b>&amp;|x'`\n- preset: quick\n"), "{md}");
        assert!(md.contains(
            "| target | IOPS | rv/target IOPS | MiB/s | rv/target MiB/s | clat p50 µs | clat p90 µs | clat p99 µs | clat p99.9 µs | clat p99.99 µs |\n|---|---|---|---|---|---|---|---|---|---|\n\
             | ringvisor | 11225 | - | 43.8 | - | 82.4 | 98.8 | 342.0 | 610.3 | 4227.1 |\n\
             | bare metal | 20000 | 0.56 | 78.1 | 0.56 | 40.0 | 50.0 | 100.0 | 200.0 | 400.0 |\n"
        ), "{md}");
        assert!(md.contains("\n## randread-4k-qd32-j1-io_uring-blk\n\nrandread bs=4k iodepth=32 numjobs=1 io_uring on blk, 3 s after a 1 s ramp, 32 MiB per fio job\n"), "{md}");
        assert!(md.contains("| kick→submit | 2.00 | 2.00 | 100 |\n"), "{md}");
        assert!(
            md.contains("| submit→complete | 30.0 | 30.0 | 100 |\n"),
            "{md}"
        );
        assert!(
            md.contains("| complete→irq | 0.80 | 0.80 | 100 |\n"),
            "{md}"
        );
        assert!(
            md.contains("| guest clat (fio) | 82.4 | 342.0 | 11236 |\n"),
            "{md}"
        );
        // No QEMU anywhere: no QEMU row, no QEMU column.
        assert!(!md.contains("| QEMU"));
        assert!(
            md.contains(
                "| randread-4k-qd32-j1-io_uring-blk | 11225 | 20000 | 0.56 | 342.0 | 100.0 |\n"
            ),
            "{md}"
        );
        // randrw: IOPS of both directions; 21280.72 over 15000.
        assert!(
            md.contains("| randrw-4k-qd1-j1-io_uring-scsi | 21281 | 15000 | 1.42 |"),
            "{md}"
        );
    }

    #[test]
    fn costs_are_shown_per_thousand_ios_where_counted() {
        let (_tmp, r) = known();
        let rv = r.jobs[0].get(Target::Ringvisor).unwrap();
        assert_eq!(rv.ios, 11236, "the fixture's I/O count");
        let md = markdown(&r);
        assert!(md.contains(COST_NOTE), "{md}");
        assert!(
            md.contains("| ringvisor | 2000 | 0 | 1000 | 0 | 0 | n/a | 3000 | 0 | 0 |\n"),
            "{md}"
        );
        // Bare metal has no VMM to count; job 1 was not counted at all.
        assert_eq!(cost_table(&r, &r.jobs[0]).unwrap().rows.len(), 1);
        assert!(cost_table(&r, &r.jobs[1]).is_none());
        let json = r.to_json().to_string();
        assert!(json.contains("\"per_1000_ios\":{"), "{json}");
    }

    #[test]
    fn a_missing_target_is_named_with_its_reason() {
        let (_tmp, mut r) = known();
        r.jobs[1].targets[1] = Err("no bare/x.fio.json".into());
        let md = markdown(&r);
        assert!(
            md.contains("| bare metal | n/a | n/a | n/a | n/a | n/a | n/a | n/a | n/a | n/a |\n"),
            "{md}"
        );
        assert!(
            md.contains("- bare metal missing: no bare/x.fio.json\n"),
            "{md}"
        );
        r.jobs[1].device = Err("a|b".into());
        assert!(markdown(&r).contains("- device side missing: a\\|b\n"));
    }

    #[test]
    fn cells_format() {
        assert_eq!(fmt_us(999), "1.00");
        assert_eq!(fmt_us(12345), "12.3");
        assert_eq!(fmt_mib(1536.0), "1.5");
        assert_eq!(fmt_ratio(None), "n/a");
        assert_eq!(fmt_ratio(Some(0.456)), "0.46");
        assert_eq!(pct_label(99.99), "p99.99");
        assert_eq!(md_code("a`b"), "`` a`b ``");
        assert_eq!(fmt_bytes(32 << 20), "32 MiB");
        assert_eq!(fmt_bytes(1000), "1000 bytes");
    }

    #[test]
    fn all_four_reports_are_written() {
        let (tmp, r) = known();
        let out = tmp.path().join("report");
        let files = write_reports(&r, &out).unwrap();
        let names: Vec<_> = files
            .iter()
            .map(|p| p.file_name().unwrap().to_str().unwrap())
            .collect();
        assert_eq!(names, [SUMMARY_JSON, LATENCY_HLOG, SUMMARY_MD, REPORT_HTML]);
        let json = std::fs::read_to_string(out.join(SUMMARY_JSON)).unwrap();
        assert!(json.contains("\"iops\": 11224.775225"), "{json}");
        let back = SuiteResults::from_summary_json(&json).unwrap();
        assert_eq!(markdown(&back), markdown(&r));
        // From a summary (no histograms) the reports still render.
        assert!(write_reports(&back, &tmp.path().join("again")).is_ok());
        assert!(!out.join(".summary.md.partial").exists());
    }
}
