//! The fio-in-guest benchmark suite: a job matrix run in a stock Linux guest under
//! ringvisor (virtio-blk and virtio-scsi), the same jobs on the host's backing files (the
//! bare-metal reference) and, with --qemu, under QEMU-KVM; then reports (JSON, HDR
//! histogram log, Markdown, HTML) and comparisons between runs. See bench/README.md.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Parser, Subcommand};
use ringvisor_bench::lab_run::{self, LabOutcome, LabRun, Progress};
use ringvisor_bench::suite::compare::compare;
use ringvisor_bench::suite::matrix::Matrix;
use ringvisor_bench::suite::model::SuiteResults;
use ringvisor_bench::suite::rawdir::{MATRIX_FILE, META_FILE};
use ringvisor_bench::suite::report::write_reports;
use serde_json::json;

#[derive(Debug, Parser)]
#[command(
    about = "fio in a guest under ringvisor vs bare metal (and QEMU-KVM): reports and comparisons"
)]
struct Args {
    #[command(subcommand)]
    command: Action,
}

#[derive(Debug, Subcommand)]
enum Action {
    /// Run a job matrix (through the nested lab: tests/lab) and write the reports.
    Run(RunArgs),
    /// Render the reports again from a run directory's raw results.
    Report {
        /// The run directory (holds raw/).
        run: PathBuf,
    },
    /// Compare two runs' summary.json; exits 1 when a job got worse past the threshold.
    Compare {
        baseline: PathBuf,
        candidate: PathBuf,
        /// Percent of IOPS lost, or of p99 latency gained, that counts as a regression.
        #[arg(long, default_value_t = 10.0)]
        threshold: f64,
    },
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// A preset matrix: quick or full.
    #[arg(long, default_value = "quick", conflicts_with = "matrix")]
    preset: String,
    /// A matrix file (TOML; see bench/README.md).
    #[arg(long)]
    matrix: Option<PathBuf>,
    /// Also run every job under QEMU-KVM (virtio-blk-pci and virtio-scsi-pci with an
    /// iothread and aio=io_uring) in the same L1.
    #[arg(long)]
    qemu: bool,
    /// The guest's vCPUs (also the disks' queue counts).
    #[arg(long, default_value_t = 2)]
    vcpus: u32,
    #[arg(long, default_value = "384M")]
    memory: String,
    /// The ringvisor binary to test (default: target/release/ringvisor, built if missing).
    #[arg(long)]
    vmm: Option<PathBuf>,
    /// Where the run directory goes (default target/bench/fio-suite/<time>).
    #[arg(long)]
    out: Option<PathBuf>,
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = match args.command {
        Action::Run(run) => run_suite(&run),
        Action::Report { run } => render(&run).map(|_| ExitCode::SUCCESS),
        Action::Compare {
            baseline,
            candidate,
            threshold,
        } => compare_runs(&baseline, &candidate, threshold),
    };
    result.unwrap_or_else(|err| {
        eprintln!("fio-suite: error: {err}");
        ExitCode::FAILURE
    })
}

fn render(run: &Path) -> Result<SuiteResults, String> {
    let results = SuiteResults::load(&run.join("raw")).map_err(|e| e.to_string())?;
    let written = write_reports(&results, run).map_err(|e| e.to_string())?;
    for path in written {
        println!("wrote {}", path.display());
    }
    Ok(results)
}

fn compare_runs(baseline: &Path, candidate: &Path, threshold: f64) -> Result<ExitCode, String> {
    let load = |path: &Path| -> Result<SuiteResults, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        SuiteResults::from_summary_json(&text).map_err(|e| format!("{}: {e}", path.display()))
    };
    let comparison = compare(&load(baseline)?, &load(candidate)?, threshold);
    print!("{}", comparison.render());
    Ok(if comparison.regressions().is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn run_suite(args: &RunArgs) -> Result<ExitCode, String> {
    let matrix = match &args.matrix {
        Some(path) => {
            let text =
                std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
            Matrix::parse(&text, args.vcpus).map_err(|e| format!("{}: {e}", path.display()))?
        }
        None => Matrix::preset(&args.preset, args.vcpus)
            .ok_or_else(|| format!("--preset {}: known presets are quick and full", args.preset))?,
    };
    let repo = repo();
    let vmm = match &args.vmm {
        Some(vmm) => vmm.clone(),
        None => build_release_vmm(&repo)?,
    };
    let out = args.out.clone().unwrap_or_else(|| {
        repo.join("target/bench/fio-suite")
            .join(now_unix().to_string())
    });
    let raw = out.join("raw");
    let input = out.join("input");
    for dir in [&raw, &input] {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let write = |path: PathBuf, text: String| {
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))
    };
    let jobs: String = matrix
        .jobs
        .iter()
        .map(|job| {
            format!(
                "{} {} {}\n",
                job.id(),
                job.device.as_str(),
                job.fio_args("@DEV@").join(" ")
            )
        })
        .collect();
    write(input.join("jobs.txt"), jobs)?;
    let disk_mb = matrix.jobs.iter().map(|j| j.size >> 20).max().unwrap_or(64) + 16;
    write(
        input.join("env"),
        format!(
            "VCPUS={}\nMEMORY={}\nDISK_MB={disk_mb}\nQEMU={}\n",
            args.vcpus,
            args.memory,
            u8::from(args.qemu)
        ),
    )?;
    write(input.join("matrix.json"), matrix.to_json().to_string())?;
    // Also in raw/ at once: a run stopped before L1 collected anything still reports.
    write(raw.join(MATRIX_FILE), matrix.to_json().to_string())?;
    let command: Vec<String> = std::env::args().collect();
    let meta = json!({
        "command": command.join(" "),
        "started": now_unix(),
        "preset": args.matrix.as_ref().map_or(args.preset.clone(), |m| m.display().to_string()),
        "vcpus": args.vcpus,
        "memory": args.memory,
        "lab": "nested",
        "vmm": vmm,
        "vmm_version": env!("CARGO_PKG_VERSION"),
        "qemu": args.qemu,
        "interrupted": false,
    });
    write(input.join("meta.json"), meta.to_string())?;
    write(raw.join(META_FILE), meta.to_string())?;
    // The archive of results L1 writes back: sparse, generous.
    let collect = out.join("collect.img");
    std::fs::File::create(&collect)
        .and_then(|f| f.set_len(1 << 30))
        .map_err(|e| format!("{}: {e}", collect.display()))?;

    let targets = if args.qemu { 3 } else { 2 };
    let units = matrix.jobs.len() * targets;
    // Two guest boots (~1 min each in the nested lab) on top of the jobs themselves.
    let estimate =
        Duration::from_secs(matrix.estimated_seconds() * targets as u64 + 60 * targets as u64);
    let timeout_s = (estimate.as_secs() * 4).max(600);
    lab_run::catch_interrupt().map_err(|e| format!("cannot catch Ctrl-C: {e}"))?;
    eprintln!(
        "fio-suite: {} jobs x {targets} targets, about {} min; results in {}",
        matrix.jobs.len(),
        estimate.as_secs().div_ceil(60),
        out.display()
    );
    let run = LabRun {
        repo: repo.clone(),
        scenario: repo.join("tests/lab/scenarios/fio-suite.sh"),
        vmm,
        timeout_s,
        extras: vec![
            (input.join("jobs.txt"), "/etc/suite/jobs.txt".into()),
            (input.join("env"), "/etc/suite/env".into()),
            (input.join("matrix.json"), "/etc/suite/matrix.json".into()),
            (input.join("meta.json"), "/etc/suite/meta.json".into()),
        ],
        collect: Some(collect.clone()),
        log: out.join("lab.log"),
        pidfile: out.join("l1.pid"),
    };
    let mut progress = Progress::new(units, estimate);
    let outcome = lab_run::run_lab(&run, &mut progress).map_err(|e| format!("lab: {e}"))?;
    if let Err(err) = lab_run::unpack_collected(&collect, &out) {
        eprintln!("fio-suite: {err}");
    }
    let _ = std::fs::remove_file(&collect);
    let interrupted = matches!(outcome, LabOutcome::Interrupted);
    let mut meta = meta;
    meta["finished"] = json!(now_unix());
    meta["interrupted"] = json!(interrupted);
    write(raw.join(META_FILE), meta.to_string())?;
    if interrupted {
        eprintln!("fio-suite: interrupted; reporting the jobs that finished");
    }
    render(&out)?;
    if let Ok(md) = std::fs::read_to_string(out.join("summary.md")) {
        println!("{md}");
    }
    match outcome {
        LabOutcome::Finished(status) if status.success() => Ok(ExitCode::SUCCESS),
        LabOutcome::Finished(status) if status.code() == Some(lab_run::LAB_LOST_STATUS) => {
            eprintln!(
                "fio-suite: the lab lost the run (its evidence is above); see {}",
                out.join("lab.log").display()
            );
            Ok(ExitCode::from(lab_run::LAB_LOST_STATUS as u8))
        }
        LabOutcome::Finished(status) => {
            eprintln!(
                "fio-suite: the lab run failed ({status}); see {}",
                out.join("lab.log").display()
            );
            Ok(ExitCode::FAILURE)
        }
        LabOutcome::Interrupted => Ok(ExitCode::from(130)),
    }
}

/// The VMM under test: a release build, as users run it.
fn build_release_vmm(repo: &Path) -> Result<PathBuf, String> {
    let status = std::process::Command::new("cargo")
        .args(["build", "--release", "--bin", "ringvisor"])
        .current_dir(repo)
        .status()
        .map_err(|e| format!("cargo build: {e}"))?;
    if !status.success() {
        return Err(format!("cargo build --release: {status}"));
    }
    Ok(repo.join("target/release/ringvisor"))
}
