//! `ringvisor bench run --lab` end to end: the `quick` preset in the nested lab (the stock
//! guest under this build of ringvisor, then the same jobs on L1's files, then the data
//! check), and the reports checked for content; the HTML page rendered by headless
//! Chromium and its screenshot checked.

use std::path::Path;
use std::process::Command;

use ringvisor::display::png::decode_png_rgb;
use ringvisor::display::summary::summarize;
use ringvisor_bench::lab_run::LAB_LOST_STATUS;
use ringvisor_bench::suite::hlog::read_hlog;
use ringvisor_bench::suite::matrix::Matrix;
use ringvisor_test_support::{lab_ready, skip};
use serde_json::Value;

/// A run the lab lost with evidence (tests/lab/lab.sh says so with its exit status) gets
/// this many attempts in all; any other failure none.
const MAX_ATTEMPTS: u32 = 3;
const VCPUS: u32 = 2;

fn has(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .map(|out| out.status.success())
        .unwrap_or(false)
}

fn run_quick(out: &Path) -> Option<()> {
    for attempt in 1..=MAX_ATTEMPTS {
        let _ = std::fs::remove_dir_all(out);
        // The binary this test was built with runs the suite and is the VMM under test.
        let run = Command::new(env!("CARGO_BIN_EXE_ringvisor"))
            .args(["bench", "run", "--lab", "--preset", "quick"])
            .args(["--vcpus", &VCPUS.to_string()])
            .arg("--out")
            .arg(out)
            .output()
            .expect("cannot run ringvisor bench");
        let log = std::fs::read_to_string(out.join("run.log")).unwrap_or_default();
        let stderr = String::from_utf8_lossy(&run.stderr);
        if run.status.code() == Some(LAB_LOST_STATUS) && attempt < MAX_ATTEMPTS {
            let evidence = stderr
                .lines()
                .find_map(|line| line.strip_prefix("lab: run: lost to the lab: "))
                .unwrap_or("(no evidence line)");
            eprintln!(
                "RETRY {attempt}/{MAX_ATTEMPTS} of the fio suite: lost to the lab: {evidence}"
            );
            continue;
        }
        assert!(
            run.status.success(),
            "ringvisor bench failed ({}):\n{stderr}\n--- run.log ---\n{log}",
            run.status
        );
        return Some(());
    }
    unreachable!("the last attempt either returns or fails")
}

#[test]
fn the_quick_preset_runs_and_reports() {
    if !lab_ready() {
        return;
    }
    let out = std::env::temp_dir().join(format!("ringvisor-fio-suite-{}", std::process::id()));
    run_quick(&out);
    let matrix = Matrix::preset("quick", VCPUS).expect("quick preset");

    // summary.json: every job, with both targets' numbers and the device side.
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    // The guest's pattern, written through ringvisor's virtio-blk, read back on L1.
    let data_check = summary["meta"]["data_check"].as_str().unwrap_or("");
    assert!(data_check.starts_with("ok:"), "data check: {data_check:?}");
    let jobs = summary["jobs"].as_array().expect("jobs");
    assert_eq!(jobs.len(), matrix.jobs.len());
    for (job, spec) in jobs.iter().zip(&matrix.jobs) {
        let id = spec.id();
        assert_eq!(job["id"], Value::String(id.clone()));
        for target in ["ringvisor", "bare"] {
            let result = &job["targets"][target];
            let iops = result["iops"].as_f64().unwrap_or(0.0);
            assert!(iops > 0.0, "{id} {target}: {result}");
            assert!(
                result["clat_ns"]["p50"].as_u64().unwrap_or(0) > 0,
                "{id} {target}"
            );
        }
        // The VMM's cost counts over the job, counted in L1: its VM exited to L1, the guest
        // took disk interrupts, and the VMM made system calls to serve the I/O.
        let costs = &job["targets"]["ringvisor"]["costs"]["per_1000_ios"];
        for count in ["exits", "guest_irqs", "syscalls", "ctxsw"] {
            // A polled job's guest finds its completions on a poll queue, which has no
            // interrupt: it may take a few stray ones, never one per I/O.
            if spec.polled && count == "guest_irqs" {
                let irqs = costs[count].as_f64().unwrap_or(f64::MAX);
                assert!(irqs < 50.0, "{id}: {irqs} disk interrupts per 1000 I/Os");
                continue;
            }
            assert!(
                costs[count].as_f64().unwrap_or(0.0) > 0.0,
                "{id}: ringvisor {count} per 1000 I/Os: {costs}"
            );
        }
        let device = &job["device"];
        let stages: &[&str] = if spec.polled {
            &["kick_to_submit", "submit_to_complete"]
        } else {
            &["kick_to_submit", "submit_to_complete", "complete_to_irq"]
        };
        for &stage in stages {
            let count = device[stage]["count"].as_u64().unwrap_or(0);
            assert!(count > 0, "{id}: device {stage}: {device}");
        }
        assert!(
            job["ratios"]["ringvisor/bare"]["iops"]
                .as_f64()
                .unwrap_or(0.0)
                > 0.0
        );
    }

    // latency.hlog: each job's in-guest and device-side histograms, readable back.
    let intervals = read_hlog(&std::fs::read(out.join("latency.hlog")).unwrap()).unwrap();
    for spec in &matrix.jobs {
        for series in ["ringvisor/clat", "bare/clat", "device/submit_to_complete"] {
            let tag = format!("{}/{series}", spec.id());
            let interval = intervals
                .iter()
                .find(|i| i.tag.as_deref() == Some(tag.as_str()))
                .unwrap_or_else(|| panic!("no {tag} in latency.hlog"));
            assert!(!interval.histogram.is_empty(), "{tag} is empty");
        }
    }

    // summary.md and report.html name every job; the page has its charts.
    let markdown = std::fs::read_to_string(out.join("summary.md")).unwrap();
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    for spec in &matrix.jobs {
        assert!(
            markdown.contains(&spec.id()),
            "{} not in summary.md",
            spec.id()
        );
        assert!(
            html.contains(&spec.id()),
            "{} not in report.html",
            spec.id()
        );
    }
    let charts = html.matches("<svg").count();
    assert!(charts > matrix.jobs.len(), "{charts} charts");
    assert_eq!(charts, html.matches("</svg>").count());

    // Headless Chromium renders the page: a screenshot of the asked size, not blank.
    // The browser is installed for this check alone, not with the lab.
    if !has("chromium") {
        let lab = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lab/lab.sh");
        let installed = Command::new("bash").arg(lab).arg("deps-report").status();
        if !has("chromium") {
            skip(format!(
                "rendering the report needs chromium; `bash tests/lab/lab.sh deps-report` (root) installs it: {installed:?}"
            ));
            return;
        }
    }
    let shot = out.join("report.png");
    let url = format!("file://{}", out.join("report.html").display());
    let render = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--window-size=1280,2000",
        ])
        .arg(format!("--screenshot={}", shot.display()))
        .arg(&url)
        .output()
        .expect("cannot run chromium");
    assert!(
        shot.exists(),
        "chromium wrote no screenshot: {}",
        String::from_utf8_lossy(&render.stderr)
    );
    let frame = decode_png_rgb(&std::fs::read(&shot).unwrap()).unwrap();
    assert_eq!((frame.width, frame.height), (1280, 2000));
    let seen = summarize(&frame);
    assert!(seen.distinct_colors > 8, "{seen}");
    assert!(
        seen.foreground_pixels > (1280 * 2000) / 50,
        "mostly blank: {seen}"
    );
    let _ = std::fs::remove_dir_all(&out);
}
