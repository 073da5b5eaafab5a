//! Device-path benchmark for virtio-blk and virtio-scsi: synthetic guest driver → reactor →
//! io_uring on a real file, against host fio on the same file with the same job. See
//! bench/README.md.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Parser;
use ringvisor::memory::{HugePageSize, MemoryOptions};
use ringvisor_devpath_bench::load::{self, Device, LoadConfig};
use ringvisor_devpath_bench::report::{self, Row};
use ringvisor_devpath_bench::{file_size, fio, prepare_file, Job, JOBS};
use serde_json::json;

#[derive(Debug, Parser)]
#[command(
    about = "virtio-blk/-scsi device path (synthetic driver → reactors → io_uring) vs host fio"
)]
struct Args {
    /// File or block device to read (O_DIRECT); default: a prefilled file under the
    /// output directory, created once.
    #[arg(long)]
    file: Option<PathBuf>,
    /// Size of the default file, in MiB.
    #[arg(long, default_value_t = 1024)]
    size_mib: u64,
    /// Measured seconds per job and side.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Warm-up seconds before each measurement (fio's ramp_time).
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Reactor counts to run each job with (one queue and one driver thread per reactor).
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    reactors: Vec<usize>,
    /// Devices to run each job on: blk, and scsi:N for a virtio-scsi controller with N
    /// logical units on the same file (requests round-robin over them).
    #[arg(long, value_delimiter = ',', default_value = "blk", value_parser = parse_device)]
    devices: Vec<Device>,
    /// Jobs to run, by name (default: all).
    #[arg(long, value_delimiter = ',')]
    jobs: Vec<String>,
    /// The fio binary.
    #[arg(long, default_value = "fio")]
    fio: PathBuf,
    /// Skip the fio side.
    #[arg(long)]
    no_fio: bool,
    /// Virtqueue size.
    #[arg(long, default_value_t = 256)]
    queue_size: u16,
    /// Reactor adaptive polling in microseconds, as ringvisor's --poll-us (0: off).
    #[arg(long, default_value_t = 0)]
    poll_us: u64,
    /// The synthetic driver spins on the used ring and asks for no interrupts (a guest's
    /// polled queue, Linux virtio_blk poll_queues + io_poll) instead of sleeping on them.
    #[arg(long)]
    driver_poll: bool,
    /// Requests a reactor gathers per io_uring_enter while draining, as ringvisor's
    /// --submit-batch.
    #[arg(long, default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(1..=256))]
    submit_batch: u16,
    /// Back the rig's guest memory with 2 MiB pages from the hugetlb pool (prefaulted),
    /// as `ringvisor run --memory SIZE,hugepages=on,prefault=on`.
    #[arg(long)]
    hugepages: bool,
    /// Prefault the rig's guest memory (small pages), as `ringvisor run --memory
    /// SIZE,prefault=on`: the reactors then hold it as registered buffers (READ_FIXED).
    /// --hugepages prefaults too.
    #[arg(long)]
    prefault: bool,
    /// Pin each reactor and its driver thread to separate cores (reactors on the last
    /// allowed cores, drivers on the first), as --reactor-cores and --cpus affinity do.
    #[arg(long)]
    pin: bool,
    /// Also print every row as "devpath-sample rv-LABEL JOB/METRIC VALUE" lines on stdout
    /// (fio's side as fio-LABEL), for comparisons in rounds (the lab's nvme-compare).
    #[arg(long)]
    sample_label: Option<String>,
    /// Offset PRNG seed (default: from the clock; printed).
    #[arg(long)]
    seed: Option<u64>,
    /// Where the table, the JSON document and the default file go.
    #[arg(long, default_value = "target/bench/devpath-blk")]
    out: PathBuf,
}

fn parse_device(text: &str) -> Result<Device, String> {
    match text.split_once(':') {
        None if text == "blk" => Ok(Device::Blk),
        None if text == "scsi" => Ok(Device::Scsi { luns: 1 }),
        Some(("scsi", n)) => n
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=4096).contains(n))
            .map(|luns| Device::Scsi { luns })
            .ok_or_else(|| format!("scsi:{n}: want 1 to 4096 logical units")),
        _ => Err(format!("{text}: want blk, scsi or scsi:N")),
    }
}

fn device_name(device: Device) -> String {
    match device {
        Device::Blk => "blk".to_string(),
        Device::Scsi { luns } => format!("scsi×{luns}"),
    }
}

fn seconds(s: f64, what: &str) -> Result<Duration, String> {
    Duration::try_from_secs_f64(s).map_err(|_| format!("--{what} {s}: not a duration"))
}

fn selected_jobs(names: &[String]) -> Result<Vec<Job>, String> {
    if names.is_empty() {
        return Ok(JOBS.to_vec());
    }
    names
        .iter()
        .map(|name| {
            JOBS.iter()
                .find(|j| j.name == name)
                .copied()
                .ok_or_else(|| {
                    let known: Vec<_> = JOBS.iter().map(|j| j.name).collect();
                    format!("unknown job {name}; known: {}", known.join(", "))
                })
        })
        .collect()
}

fn run(args: Args) -> Result<(), String> {
    let jobs = selected_jobs(&args.jobs)?;
    let run = seconds(args.seconds, "seconds")?;
    let warmup = seconds(args.warmup, "warmup")?;
    if args.reactors.iter().any(|&r| r == 0 || r > 16) {
        return Err("--reactors: counts from 1 to 16".into());
    }
    let seed = args.seed.unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    std::fs::create_dir_all(&args.out).map_err(|e| format!("{}: {e}", args.out.display()))?;
    let file = match args.file {
        Some(file) => file,
        None => {
            let file = args.out.join(format!("disk-{}M.img", args.size_mib));
            eprintln!("devpath-blk: preparing {}", file.display());
            prepare_file(&file, args.size_mib << 20)?;
            file
        }
    };
    let file_bytes = file_size(&file)?;
    eprintln!(
        "devpath-blk: {} ({} MiB), {}s + {}s warm-up per run, seed {seed}",
        file.display(),
        file_bytes >> 20,
        run.as_secs_f64(),
        warmup.as_secs_f64()
    );

    let mut rows = Vec::new();
    let mut fio_json = Vec::new();
    for &job in &jobs {
        for &reactors in &args.reactors {
            let mut results = Vec::new();
            for &device in &args.devices {
                let name = device_name(device);
                eprintln!(
                    "devpath-blk: {} with {reactors} reactor(s): ringvisor {name}",
                    job.name
                );
                let result = load::run(&LoadConfig {
                    device,
                    file: file.clone(),
                    file_bytes,
                    job,
                    reactors,
                    queue_size: args.queue_size,
                    warmup,
                    run,
                    seed,
                    poll: (args.poll_us > 0).then(|| Duration::from_micros(args.poll_us)),
                    driver_poll: args.driver_poll,
                    submit_batch: std::num::NonZeroUsize::new(usize::from(args.submit_batch))
                        .unwrap_or(std::num::NonZeroUsize::MIN),
                    memory: MemoryOptions {
                        hugepages: args.hugepages.then_some(HugePageSize::TwoMiB),
                        prefault: args.hugepages || args.prefault,
                        shared: false,
                    },
                    pin: args.pin,
                })
                .map_err(|e| format!("{} on {name} with {reactors} reactors: {e}", job.name))?;
                results.push((name, result));
            }
            let fio = if args.no_fio {
                None
            } else {
                eprintln!(
                    "devpath-blk: {} with {reactors} job clone(s): fio",
                    job.name
                );
                let fio_args = fio::args(&file, file_bytes, job, reactors, warmup, run);
                let (result, raw) = fio::run(&args.fio, &fio_args)?;
                fio_json.push(json!({
                    "job": job.name,
                    "reactors": reactors,
                    "args": fio_args,
                    "output": serde_json::from_str::<serde_json::Value>(&raw).ok(),
                }));
                Some(result)
            };
            for (device, ringvisor) in results {
                let row = Row {
                    device,
                    job,
                    reactors,
                    ringvisor,
                    fio: fio.clone(),
                };
                eprintln!("{}", row.markdown());
                if let Some(label) = &args.sample_label {
                    for line in row.sample_lines(label) {
                        println!("{line}");
                    }
                }
                rows.push(row);
            }
        }
    }

    let table = report::markdown(&rows);
    println!("{table}");
    let document = json!({
        "file": file.display().to_string(),
        "file_bytes": file_bytes,
        "seconds": run.as_secs_f64(),
        "warmup_seconds": warmup.as_secs_f64(),
        "queue_size": args.queue_size,
        "reactor_poll_us": args.poll_us,
        "driver_poll": args.driver_poll,
        "prefault": args.hugepages || args.prefault,
        "submit_batch": args.submit_batch,
        "seed": seed,
        "host_cpus": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "results": rows.iter().map(Row::json).collect::<Vec<_>>(),
        "fio_raw": fio_json,
    });
    let write = |name: &str, text: String| {
        let path = args.out.join(name);
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))
    };
    write("summary.md", table)?;
    write(
        "results.json",
        serde_json::to_string_pretty(&document).map_err(|e| e.to_string())?,
    )?;
    eprintln!(
        "devpath-blk: wrote {}/summary.md and results.json",
        args.out.display()
    );
    Ok(())
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("devpath-blk: {e}");
            ExitCode::FAILURE
        }
    }
}
