//! `ringvisor bench`: the fio-in-guest suite. A job matrix runs in a stock Linux guest
//! under ringvisor (virtio-blk and virtio-scsi), the same jobs run with fio on the host's
//! disk (the bare-metal reference) and, with QEMU, under QEMU-KVM; then reports (JSON,
//! HDR histogram log, Markdown, HTML) and comparisons between runs. Directly on this
//! host's KVM when it has hardware virtualization, or through the nested lab (`--lab`).
//! See bench/README.md.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Args, Subcommand};
use serde_json::{json, Value};

use crate::direct::{check_guest_root, check_hardware_kvm, GuestImages, Target};
use crate::lab_run::{self, LabOutcome, LabRun, Progress};
use crate::suite::compare::compare;
use crate::suite::matrix::Matrix;
use crate::suite::model::SuiteResults;
use crate::suite::rawdir::{MATRIX_FILE, META_FILE};
use crate::suite::report::write_reports;

/// The suite's driver, run in L1 by the lab or on this host in direct mode.
const DRIVER: &str = include_str!("../../tests/lab/scenarios/fio-suite.sh");
/// The cost counters the driver sources (L1 has it at /lib/lab/measure.sh).
const MEASURE: &str = include_str!("../../tests/lab/l1-measure.sh");
/// The driver's verdict on the data the guest wrote, in `raw/`.
const DATA_CHECK_FILE: &str = "data-check";

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub action: Action,
}

#[derive(Debug, Subcommand)]
pub enum Action {
    /// Run a job matrix and write the reports: directly on this host's KVM (hardware
    /// virtualization), or through the emulated nested lab with --lab.
    Run(Box<RunArgs>),
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

#[derive(Debug, Args)]
pub struct RunArgs {
    /// A preset matrix: quick or full.
    #[arg(long, default_value = "quick", conflicts_with = "matrix")]
    pub preset: String,
    /// A matrix file (TOML; see bench/README.md).
    #[arg(long)]
    pub matrix: Option<PathBuf>,
    /// The disk every guest and the bare-metal fio use, opened O_DIRECT (direct mode): a
    /// block device, a partition, or a file (created if missing).
    #[arg(long, value_name = "PATH", conflicts_with = "lab")]
    pub target: Option<PathBuf>,
    /// Allow writing over --target's data (a block device, or a file that has data).
    #[arg(long)]
    pub destroy_data: bool,
    /// Run through the nested lab (tests/lab: ringvisor in an emulated L1 machine), for a
    /// host without hardware virtualization. Its figures are for counts, not timings.
    #[arg(long)]
    pub lab: bool,
    /// Also run every job under QEMU-KVM (virtio-blk-pci and virtio-scsi-pci with
    /// iothread-vq-mapping and aio=io_uring). Default: in direct mode when
    /// qemu-system-x86_64 is installed; not through the lab.
    #[arg(long, conflicts_with = "no_qemu")]
    pub qemu: bool,
    /// Never run QEMU.
    #[arg(long)]
    pub no_qemu: bool,
    /// The guest's kernel (direct mode; default: the lab's L2 kernel in target/lab).
    #[arg(long, value_name = "FILE", conflicts_with = "lab")]
    pub kernel: Option<PathBuf>,
    /// The guest's initramfs, whose init runs the suite's jobs (direct mode; default: the
    /// lab's L2 initramfs).
    #[arg(long, value_name = "FILE", conflicts_with = "lab")]
    pub initramfs: Option<PathBuf>,
    /// A root file system image the guest boots from (direct mode): both VMMs give it to
    /// the guest as its first virtio-blk disk, read-write, and the suite's disks follow.
    /// The lab's Debian image works (`sudo bash tests/lab/lab.sh debian-root` prints its
    /// path; give the suite a copy); its systemd unit runs the jobs (rv.lab=fio-suite).
    #[arg(long, value_name = "IMAGE", conflicts_with = "lab")]
    pub guest_root: Option<PathBuf>,
    /// The guest's vCPUs (also the disks' queue counts).
    #[arg(long, default_value_t = 2)]
    pub vcpus: u32,
    #[arg(long, default_value = "384M")]
    pub memory: String,
    /// The ringvisor binary under test (default: this one).
    #[arg(long, value_name = "FILE")]
    pub vmm: Option<PathBuf>,
    /// Where the run directory goes (default target/bench/fio-suite/<time>).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

/// The repository this crate was built from: the lab and its image cache live there.
fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

fn lab_cache() -> PathBuf {
    std::env::var_os("RINGVISOR_LAB_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/lab"))
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn installed(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| {
            std::fs::metadata(dir.join(program)).is_ok_and(|m| {
                m.is_file()
                    && std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0
            })
        })
    })
}

/// Runs `ringvisor bench ...`; `own_exe` is the ringvisor binary that was asked.
pub fn run(args: BenchArgs, own_exe: PathBuf) -> ExitCode {
    let result = match args.action {
        Action::Run(run) => run_suite(&run, own_exe),
        Action::Report { run } => render(&run).map(|_| ExitCode::SUCCESS),
        Action::Compare {
            baseline,
            candidate,
            threshold,
        } => compare_runs(&baseline, &candidate, threshold),
    };
    result.unwrap_or_else(|err| {
        eprintln!("ringvisor bench: error: {err}");
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

/// Where the suite runs, decided and checked before anything is written.
enum Mode {
    Lab,
    Direct {
        target: Target,
        images: GuestImages,
        root: Option<PathBuf>,
    },
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

fn run_suite(args: &RunArgs, own_exe: PathBuf) -> Result<ExitCode, String> {
    let matrix = match &args.matrix {
        Some(path) => {
            let text =
                std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
            Matrix::parse(&text, args.vcpus).map_err(|e| format!("{}: {e}", path.display()))?
        }
        None => Matrix::preset(&args.preset, args.vcpus)
            .ok_or_else(|| format!("--preset {}: known presets are quick and full", args.preset))?,
    };
    let disk_mb = matrix.jobs.iter().map(|j| j.size >> 20).max().unwrap_or(64) + 16;
    let mode = if args.lab {
        Mode::Lab
    } else {
        check_hardware_kvm().map_err(|e| e.to_string())?;
        let target = args
            .target
            .as_deref()
            .ok_or_else(|| crate::direct::DirectError::NoTarget.to_string())?;
        if !installed("fio") {
            return Err(
                "fio is not installed (the bare-metal reference): apt-get install fio".into(),
            );
        }
        let images = GuestImages::resolve(
            args.kernel.as_deref(),
            args.initramfs.as_deref(),
            &lab_cache(),
        )
        .map_err(|e| e.to_string())?;
        let target =
            Target::prepare(target, disk_mb, args.destroy_data).map_err(|e| e.to_string())?;
        if let Some(root) = &args.guest_root {
            check_guest_root(root, &target).map_err(|e| e.to_string())?;
        }
        Mode::Direct {
            target,
            images,
            root: args.guest_root.clone(),
        }
    };
    let qemu = match (&mode, args.qemu, args.no_qemu) {
        (_, _, true) => false,
        (Mode::Direct { .. }, true, _) if !installed("qemu-system-x86_64") => {
            return Err("--qemu: qemu-system-x86_64 is not installed".into())
        }
        (_, true, _) => true,
        (Mode::Direct { .. }, false, _) => installed("qemu-system-x86_64"),
        (Mode::Lab, false, _) => false,
    };
    let vmm = args.vmm.clone().unwrap_or(own_exe);
    let out = args.out.clone().unwrap_or_else(|| {
        repo()
            .join("target/bench/fio-suite")
            .join(now_unix().to_string())
    });
    let raw = out.join("raw");
    let input = out.join("input");
    let work = out.join("work");
    for dir in [&raw, &input] {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
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
    write(&input.join("jobs.txt"), &jobs)?;
    let mut env = format!(
        "VCPUS={}\nMEMORY={}\nDISK_MB={disk_mb}\nQEMU={}\n",
        args.vcpus,
        args.memory,
        u8::from(qemu)
    );
    if let Mode::Lab = mode {
        // Only the lab's collect disk is ever written with the results' archive.
        env.push_str("COLLECT_DEV=/dev/vda\n");
    }
    write(&input.join("env"), &env)?;
    write(&input.join("matrix.json"), &matrix.to_json().to_string())?;
    // Also in raw/ at once: a run stopped before anything finished still reports.
    write(&raw.join(MATRIX_FILE), &matrix.to_json().to_string())?;
    let command: Vec<String> = std::env::args().collect();
    let mut meta = json!({
        "command": command.join(" "),
        "started": now_unix(),
        "preset": args.matrix.as_ref().map_or(args.preset.clone(), |m| m.display().to_string()),
        "vcpus": args.vcpus,
        "memory": args.memory,
        "lab": match mode { Mode::Lab => "nested", Mode::Direct { .. } => "kvm" },
        "vmm": vmm,
        "vmm_version": env!("CARGO_PKG_VERSION"),
        "qemu": qemu,
        "interrupted": false,
    });
    if let Mode::Direct { target, root, .. } = &mode {
        meta["target"] = json!(target.path);
        meta["guest"] = json!(root
            .as_ref()
            .map_or("initramfs".to_string(), |r| format!("root {}", r.display())));
    }
    write(&input.join("meta.json"), &meta.to_string())?;
    write(&raw.join(META_FILE), &meta.to_string())?;

    let targets = if qemu { 3 } else { 2 };
    let units = matrix.jobs.len() * targets;
    let boot_s: u64 = match mode {
        Mode::Lab => 60,
        Mode::Direct { root: None, .. } => 5,
        // systemd brings up a distribution before its unit runs the jobs.
        Mode::Direct { root: Some(_), .. } => 20,
    };
    let estimate =
        Duration::from_secs(matrix.estimated_seconds() * targets as u64 + boot_s * targets as u64);
    lab_run::catch_interrupt().map_err(|e| format!("cannot catch Ctrl-C: {e}"))?;
    eprintln!(
        "ringvisor bench: {} jobs x {targets} targets{}, about {} min; results in {}",
        matrix.jobs.len(),
        match &mode {
            Mode::Lab => " through the nested lab".to_string(),
            Mode::Direct { target, .. } => format!(" on {}", target.path.display()),
        },
        estimate.as_secs().div_ceil(60),
        out.display()
    );
    let mut progress = Progress::new(units, estimate);
    let log = out.join("run.log");
    let outcome = match &mode {
        Mode::Lab => run_in_lab(&out, &input, vmm, estimate, &log, &mut progress)?,
        Mode::Direct {
            target,
            images,
            root,
        } => {
            let (driver, lib) = write_driver(&work)?;
            let mut command = Command::new("sh");
            command
                .arg(&driver)
                .env("SUITE", &input)
                .env("OUT", &raw)
                .env("WORK", &work)
                .env("LAB_LIB", &lib)
                .env("L2_KERNEL", &images.kernel)
                .env("L2_INITRAMFS", &images.initramfs)
                .env("RINGVISOR", &vmm)
                .env("TARGET", &target.path);
            if let Some(root) = root {
                command.env("GUEST_ROOT", root);
            }
            lab_run::run_grouped(command, &log, None, &mut progress)
                .map_err(|e| format!("sh {}: {e}", driver.display()))?
        }
    };
    let interrupted = matches!(outcome, LabOutcome::Interrupted);
    let data_check = std::fs::read_to_string(raw.join(DATA_CHECK_FILE))
        .map(|text| text.trim().to_string())
        .unwrap_or_else(|_| "not made (the run ended before it)".into());
    meta["finished"] = json!(now_unix());
    meta["interrupted"] = json!(interrupted);
    meta["data_check"] = Value::String(data_check.clone());
    write(&raw.join(META_FILE), &meta.to_string())?;
    if interrupted {
        eprintln!("ringvisor bench: interrupted; reporting the jobs that finished");
    }
    render(&out)?;
    if let Ok(md) = std::fs::read_to_string(out.join("summary.md")) {
        println!("{md}");
    }
    let failed = |what: String| {
        eprintln!("ringvisor bench: {what}; see {}", log.display());
        Ok(ExitCode::FAILURE)
    };
    match outcome {
        LabOutcome::Interrupted => Ok(ExitCode::from(130)),
        LabOutcome::Finished(status) if status.code() == Some(lab_run::LAB_LOST_STATUS) => {
            eprintln!(
                "ringvisor bench: the lab lost the run (its evidence is above); see {}",
                log.display()
            );
            Ok(ExitCode::from(lab_run::LAB_LOST_STATUS as u8))
        }
        LabOutcome::Finished(status) if !status.success() => {
            failed(format!("the run failed ({status})"))
        }
        LabOutcome::Finished(_) if !data_check.starts_with("ok") => {
            failed(format!("the data check failed: {data_check}"))
        }
        LabOutcome::Finished(_) => Ok(ExitCode::SUCCESS),
    }
}

/// Writes the driver and the library it sources into `work` (created); returns their
/// paths: the script and the directory for its LAB_LIB.
fn write_driver(work: &Path) -> Result<(PathBuf, PathBuf), String> {
    let lib = work.join("lab");
    std::fs::create_dir_all(&lib).map_err(|e| format!("{}: {e}", lib.display()))?;
    let driver = work.join("fio-suite.sh");
    write(&driver, DRIVER)?;
    write(&lib.join("measure.sh"), MEASURE)?;
    Ok((driver, lib))
}

/// The driver in an L1 of the nested lab: inputs copied in, results back on a collect disk.
fn run_in_lab(
    out: &Path,
    input: &Path,
    vmm: PathBuf,
    estimate: Duration,
    log: &Path,
    progress: &mut Progress,
) -> Result<LabOutcome, String> {
    let repo = repo();
    // The archive of results L1 writes back: sparse, generous.
    let collect = out.join("collect.img");
    std::fs::File::create(&collect)
        .and_then(|f| f.set_len(1 << 30))
        .map_err(|e| format!("{}: {e}", collect.display()))?;
    let run = LabRun {
        scenario: repo.join("tests/lab/scenarios/fio-suite.sh"),
        repo,
        vmm,
        timeout_s: (estimate.as_secs() * 4).max(600),
        extras: ["jobs.txt", "env", "matrix.json", "meta.json"]
            .iter()
            .map(|name| (input.join(name), format!("/etc/suite/{name}")))
            .collect(),
        collect: Some(collect.clone()),
        log: log.to_path_buf(),
        pidfile: out.join("l1.pid"),
    };
    let outcome = lab_run::run_lab(&run, progress).map_err(|e| format!("lab: {e}"))?;
    if let Err(err) = lab_run::unpack_collected(&collect, out) {
        eprintln!("ringvisor bench: {err}");
    }
    let _ = std::fs::remove_file(&collect);
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::suite::testutil::TempDir;

    #[test]
    fn the_driver_lands_in_a_fresh_work_directory_with_its_library() {
        let tmp = TempDir::new("cli-driver");
        let work = tmp.path().join("run/work");
        let (driver, lib) = write_driver(&work).unwrap();
        let script = std::fs::read_to_string(&driver).unwrap();
        // The driver sources measure.sh from LAB_LIB and never writes a collect disk it
        // was not given.
        assert!(script.contains(r#". "${LAB_LIB:-/lib/lab}/measure.sh""#));
        assert!(script.contains(r#"[ -n "${COLLECT_DEV:-}" ]"#));
        let measure = std::fs::read_to_string(lib.join("measure.sh")).unwrap();
        assert!(measure.contains("costs_teardown()"));
    }
}
