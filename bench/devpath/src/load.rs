//! The synthetic guest side of the benchmark: one driver thread per queue (like one vCPU
//! per queue in a guest) keeps `depth` reads in flight, refilling as completions arrive
//! with one kick per refill batch, and sleeping on the interrupt eventfd in between.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use ringvisor::memory::MemoryOptions;
use ringvisor::placement::allowed_cpus;
use ringvisor_devices::virtio::block::BlockConfig;
use ringvisor_devices::virtio::scsi::{ScsiConfig, ScsiDevice, ScsiDiskConfig};
use ringvisor_io::{pin_current_thread, ReactorSet, ReactorStats};
use ringvisor_rig::devpath::{
    BlockRig, CommandSlot, GuestQueue, RequestSlot, ScsiRig, VIRTIO_BLK_S_OK, VIRTIO_BLK_T_IN,
};
use ringvisor_rig::virtq_driver::Buffer;
use vm_memory::GuestAddress;

use super::{Job, Offsets, Region};

/// How long the driver sleeps on an interrupt before calling the device stuck.
const STALL: Duration = Duration::from_secs(5);

/// Latencies in nanoseconds up to 60 s, 3 significant digits (as the reactors keep them).
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("constant bounds are valid")
}

/// Which device the synthetic driver talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    Blk,
    /// A virtio-scsi controller with `luns` logical units, all backed by the file
    /// (read-only, each with its own descriptor); requests go round-robin over them.
    Scsi {
        luns: usize,
    },
}

/// The address the controller assigns to unit `i` (a free target's LUN 0 first).
fn scsi_address(i: usize) -> (u8, u16) {
    ((i % 256) as u8, (i / 256) as u16)
}

#[derive(Debug, Clone)]
pub struct LoadConfig {
    pub device: Device,
    pub file: PathBuf,
    pub file_bytes: u64,
    pub job: Job,
    /// Reactors, and queues: one queue per reactor.
    pub reactors: usize,
    pub queue_size: u16,
    pub warmup: Duration,
    pub run: Duration,
    pub seed: u64,
    /// The reactors' adaptive polling budget; `None`: they sleep when idle.
    pub poll: Option<Duration>,
    /// The driver spins on the used ring and asks for no interrupts (a guest's polled
    /// queue) instead of sleeping on the interrupt eventfd.
    pub driver_poll: bool,
    /// Requests a reactor gathers per io_uring_enter (ringvisor's `--submit-batch`).
    pub submit_batch: std::num::NonZeroUsize,
    /// How the rig's guest memory is backed (huge pages, prefault).
    pub memory: MemoryOptions,
    /// Pin reactor i to the i-th last allowed core and driver thread i to the i-th first
    /// (a vCPU and its reactor on separate cores), instead of leaving both to the
    /// scheduler.
    pub pin: bool,
}

/// Each thread's core, `None` where the scheduler decides.
type Cores = Vec<Option<usize>>;

/// The cores of the reactors and of the driver threads: see [`LoadConfig::pin`].
fn pinning(config: &LoadConfig) -> Result<(Cores, Cores), String> {
    if !config.pin {
        return Ok((vec![None; config.reactors], vec![None; config.reactors]));
    }
    let allowed = allowed_cpus().map_err(|e| format!("cannot read the allowed cores: {e}"))?;
    let n = allowed.len();
    if n < 2 * config.reactors {
        return Err(format!(
            "--pin: {} reactors and their drivers need {} cores, {n} allowed",
            config.reactors,
            2 * config.reactors
        ));
    }
    let reactors = (0..config.reactors)
        .map(|i| Some(allowed[n - 1 - i]))
        .collect();
    let drivers = (0..config.reactors).map(|i| Some(allowed[i])).collect();
    Ok((reactors, drivers))
}

/// What the reactors did during the measured window (counters of the window only).
#[derive(Debug, Clone)]
pub struct ReactorWindow {
    /// io_uring_enter calls that submitted at least one SQE, and the SQEs they carried.
    pub submitting_enters: u64,
    pub sqes: u64,
    pub requests: u64,
    /// Host ops, and those that read or wrote registered guest RAM (READ_FIXED).
    pub ops: u64,
    pub fixed_buffer_ops: u64,
    pub irqs_sent: u64,
    pub irqs_suppressed: u64,
    pub kick_to_submit_ns: Histogram<u64>,
    pub submit_to_complete_ns: Histogram<u64>,
    /// CPU time the reactor threads used (their io_uring submissions and inline
    /// completions included; io-wq workers not).
    pub cpu_ns: u64,
    /// CPU time of the reactors' io-wq workers (the blocking part of their I/O: on tmpfs,
    /// every copy), by worker thread id; after `since`, only what the window added.
    pub iowq_cpu_ns: std::collections::BTreeMap<u32, u64>,
}

/// CPU time thread `tid` of this process has used, in nanoseconds; 0 if it cannot be read.
fn thread_cpu_ns(tid: u32) -> u64 {
    // The kernel's per-thread CPU clock of another thread of the same process: its id
    // encoded as glibc's pthread_getcpuclockid does (~tid << 3 | CPUCLOCK_PERTHREAD |
    // CPUCLOCK_SCHED), part of the kernel ABI (include/linux/posix-timers.h).
    let clock = (!(tid as libc::clockid_t) << 3) | 6;
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid timespec for the call to fill.
    if unsafe { libc::clock_gettime(clock, &mut now) } != 0 {
        return 0;
    }
    (now.tv_sec as u64) * 1_000_000_000 + now.tv_nsec as u64
}

impl ReactorWindow {
    /// Everything the reactors counted since they started, summed over reactors and queues.
    pub fn total(stats: &[ReactorStats]) -> Self {
        let mut window = Self {
            submitting_enters: 0,
            sqes: 0,
            requests: 0,
            ops: 0,
            fixed_buffer_ops: 0,
            irqs_sent: 0,
            irqs_suppressed: 0,
            kick_to_submit_ns: latency_histogram(),
            submit_to_complete_ns: latency_histogram(),
            cpu_ns: 0,
            iowq_cpu_ns: std::collections::BTreeMap::new(),
        };
        let reactor_tids: Vec<u32> = stats.iter().map(|reactor| reactor.tid).collect();
        for worker in ringvisor_io::iowq_workers() {
            if reactor_tids.contains(&worker.submitter) {
                window
                    .iowq_cpu_ns
                    .insert(worker.tid, thread_cpu_ns(worker.tid));
            }
        }
        for reactor in stats {
            window.cpu_ns += thread_cpu_ns(reactor.tid);
            window.submitting_enters += reactor.sqes_per_enter.len();
            window.sqes += reactor.sqes_submitted;
            for queue in &reactor.queues {
                window.requests += queue.requests;
                window.ops += queue.ops;
                window.fixed_buffer_ops += queue.fixed_buffer_ops;
                window.irqs_sent += queue.irqs_sent;
                window.irqs_suppressed += queue.irqs_suppressed;
                // Same bounds on both sides: adding cannot fail.
                let _ = window.kick_to_submit_ns.add(&queue.kick_to_submit_ns);
                let _ = window
                    .submit_to_complete_ns
                    .add(&queue.submit_to_complete_ns);
            }
        }
        window
    }

    /// What happened between `before` and `self` (both totals of the same reactors).
    pub fn since(mut self, before: &Self) -> Self {
        self.submitting_enters -= before.submitting_enters.min(self.submitting_enters);
        self.sqes -= before.sqes.min(self.sqes);
        self.requests -= before.requests.min(self.requests);
        self.ops -= before.ops.min(self.ops);
        self.fixed_buffer_ops -= before.fixed_buffer_ops.min(self.fixed_buffer_ops);
        self.irqs_sent -= before.irqs_sent.min(self.irqs_sent);
        self.irqs_suppressed -= before.irqs_suppressed.min(self.irqs_suppressed);
        self.cpu_ns -= before.cpu_ns.min(self.cpu_ns);
        // A worker started inside the window counts from zero; one that exited inside it
        // is not counted (io-wq workers leave after seconds of idleness, not under load).
        for (tid, ns) in &mut self.iowq_cpu_ns {
            *ns -= before.iowq_cpu_ns.get(tid).copied().unwrap_or(0).min(*ns);
        }
        // A later total holds every count of an earlier one: subtracting cannot fail.
        let _ = self.kick_to_submit_ns.subtract(&before.kick_to_submit_ns);
        let _ = self
            .submit_to_complete_ns
            .subtract(&before.submit_to_complete_ns);
        self
    }

    /// Reactor CPU time per request, in nanoseconds.
    pub fn cpu_ns_per_request(&self) -> f64 {
        self.cpu_ns as f64 / self.requests.max(1) as f64
    }

    /// The reactors' io-wq workers' CPU time per request, in nanoseconds.
    pub fn iowq_cpu_ns_per_request(&self) -> f64 {
        self.iowq_cpu_ns.values().sum::<u64>() as f64 / self.requests.max(1) as f64
    }

    pub fn sqes_per_enter(&self) -> f64 {
        self.sqes as f64 / self.submitting_enters.max(1) as f64
    }
}

#[derive(Debug, Clone)]
pub struct LoadResult {
    /// Requests posted and completed inside the measured window.
    pub ops: u64,
    /// Requests that came back with an error status or a wrong length.
    pub errors: u64,
    pub seconds: f64,
    pub block_size: u32,
    /// Post (descriptor written) until the used entry was seen after the interrupt.
    pub latency_ns: Histogram<u64>,
    pub reactors: ReactorWindow,
}

impl LoadResult {
    pub fn iops(&self) -> f64 {
        self.ops as f64 / self.seconds
    }

    pub fn bytes_per_second(&self) -> f64 {
        self.iops() * f64::from(self.block_size)
    }
}

/// What one driver thread measured.
struct QueueResult {
    ops: u64,
    errors: u64,
    latency_ns: Histogram<u64>,
}

/// Where one in-flight request's headers live.
#[derive(Clone, Copy)]
enum Headers {
    Blk(RequestSlot),
    Scsi(CommandSlot),
}

struct Slot {
    headers: Headers,
    data: GuestAddress,
    posted: Instant,
}

/// Runs `config.job` through a fresh rig: warm-up, then the measured window.
pub fn run(config: &LoadConfig) -> Result<LoadResult, String> {
    let queues = u16::try_from(config.reactors).map_err(|_| "too many reactors".to_string())?;
    let (cores, drivers) = pinning(config)?;
    match config.device {
        Device::Blk => {
            let block = BlockConfig {
                path: config.file.clone(),
                read_only: true,
                direct: true,
                queues,
                serial: None,
            };
            let mut rig = BlockRig::with_options(
                block,
                &cores,
                config.queue_size,
                &reactor_options(config),
                &config.memory,
            )
            .map_err(|e| e.to_string())?;
            if !rig.device().direct() {
                return Err(refuses_direct(config));
            }
            let (guest_queues, reactors) = rig.split_mut();
            let outcome = measure(config, guest_queues, reactors, &drivers);
            let faults = rig.faults();
            rig.shutdown().map_err(|e| e.to_string())?;
            finish(config, outcome, faults)
        }
        Device::Scsi { luns } => {
            let disks = (0..luns)
                .map(|_| ScsiDiskConfig {
                    path: config.file.clone(),
                    target: None,
                    lun: None,
                    read_only: true,
                    direct: true,
                    serial: None,
                })
                .collect();
            let scsi = ScsiConfig { queues, disks };
            let device = ScsiDevice::new(scsi).map_err(|e| e.to_string())?;
            let mut rig = ScsiRig::with_device_options(
                device,
                "scsi",
                &cores,
                config.queue_size,
                &reactor_options(config),
                &config.memory,
            )
            .map_err(|e| e.to_string())?;
            if rig.device().units().iter().any(|unit| !unit.3) {
                return Err(refuses_direct(config));
            }
            let (guest_queues, reactors) = rig.split_mut();
            // The control and event queues come first; the drivers use the request queues.
            let request_queues = &mut guest_queues[ScsiRig::request_queue(0)..];
            let outcome = measure(config, request_queues, reactors, &drivers);
            let faults = rig.faults();
            rig.shutdown().map_err(|e| e.to_string())?;
            finish(config, outcome, faults)
        }
    }
}

fn reactor_options(config: &LoadConfig) -> ringvisor_io::ReactorOptions {
    ringvisor_io::ReactorOptions {
        poll: config.poll,
        submit_batch: Some(config.submit_batch),
        wide_entries: ringvisor_devices::nvme::is_passthrough_path(&config.file),
        ..Default::default()
    }
}

fn refuses_direct(config: &LoadConfig) -> String {
    format!(
        "{}: the filesystem refuses O_DIRECT; the page cache would serve the reads",
        config.file.display()
    )
}

type Outcome = Result<(QueueResult, ReactorWindow), String>;

fn finish(
    config: &LoadConfig,
    outcome: Outcome,
    faults: Vec<String>,
) -> Result<LoadResult, String> {
    let (total, window) = outcome?;
    if !faults.is_empty() {
        return Err(format!("queue faults: {faults:?}"));
    }
    Ok(LoadResult {
        ops: total.ops,
        errors: total.errors,
        seconds: config.run.as_secs_f64(),
        block_size: config.job.block_size,
        latency_ns: total.latency_ns,
        reactors: window,
    })
}

/// Warm-up, then the measured window, one driver thread per queue.
fn measure(
    config: &LoadConfig,
    guest_queues: &mut [GuestQueue],
    reactors: &ReactorSet,
    driver_cores: &[Option<usize>],
) -> Outcome {
    let measure_from = Instant::now() + config.warmup;
    let measure_to = measure_from + config.run;
    let job = config.job;
    let device = config.device;
    std::thread::scope(|scope| {
        let drivers: Vec<_> = guest_queues
            .iter_mut()
            .enumerate()
            .map(|(index, queue)| {
                let region =
                    Region::split(config.file_bytes, config.reactors, index, job.block_size);
                let offsets = Offsets::new(
                    job.pattern,
                    region,
                    job.block_size,
                    config.seed ^ index as u64,
                );
                let window = Window {
                    from: measure_from,
                    to: measure_to,
                    poll: config.driver_poll,
                };
                let core = driver_cores.get(index).copied().flatten();
                scope.spawn(move || {
                    if let Some(core) = core {
                        pin_current_thread(&[core])
                            .map_err(|e| format!("cannot pin driver {index}: {e}"))?;
                    }
                    drive(queue, job, device, offsets, window)
                })
            })
            .collect();
        std::thread::sleep(measure_from.saturating_duration_since(Instant::now()));
        let before = ReactorWindow::total(&reactors.stats());
        std::thread::sleep(measure_to.saturating_duration_since(Instant::now()));
        let window = ReactorWindow::total(&reactors.stats()).since(&before);
        let mut total = QueueResult {
            ops: 0,
            errors: 0,
            latency_ns: latency_histogram(),
        };
        for driver in drivers {
            let result = driver
                .join()
                .map_err(|_| "a driver thread panicked".to_string())??;
            total.ops += result.ops;
            total.errors += result.errors;
            let _ = total.latency_ns.add(&result.latency_ns);
        }
        Ok::<_, String>((total, window))
    })
}

/// When a driver measures, and how it learns of completions.
#[derive(Clone, Copy)]
struct Window {
    from: Instant,
    to: Instant,
    /// Spin on the used ring (no interrupts) instead of sleeping on the interrupt.
    poll: bool,
}

/// Keeps `job.depth` reads in flight on one queue until `to`, then lets them drain.
/// Counts the requests posted at or after `from` and seen complete by `to`.
fn drive(
    queue: &mut GuestQueue,
    job: Job,
    device: Device,
    mut offsets: Offsets,
    window: Window,
) -> Result<QueueResult, String> {
    let Window { from, to, poll } = window;
    let err = |e: ringvisor_rig::devpath::DevPathError| e.to_string();
    let now = Instant::now();
    let mut slots = Vec::with_capacity(job.depth);
    for _ in 0..job.depth {
        let headers = match device {
            Device::Blk => Headers::Blk(queue.alloc_slot().map_err(err)?),
            Device::Scsi { .. } => Headers::Scsi(queue.alloc_command_slot().map_err(err)?),
        };
        slots.push(Slot {
            headers,
            data: queue.alloc(u64::from(job.block_size)).map_err(err)?,
            posted: now,
        });
    }
    let mut free: Vec<usize> = (0..job.depth).rev().collect();
    let mut by_head = vec![usize::MAX; 1 << 16];
    let mut in_flight = 0;
    let mut next_lun = 0usize;
    let luns = match device {
        Device::Scsi { luns } => luns.max(1),
        Device::Blk => 1,
    };
    let mut result = QueueResult {
        ops: 0,
        errors: 0,
        latency_ns: latency_histogram(),
    };
    loop {
        if !free.is_empty() && Instant::now() < to {
            while let Some(index) = free.pop() {
                let slot = &mut slots[index];
                let sector = offsets.next_offset() >> 9;
                slot.posted = Instant::now();
                let data = Buffer::writable(slot.data, job.block_size);
                let head = match slot.headers {
                    Headers::Scsi(headers) => {
                        let (target, lun) = scsi_address(next_lun % luns);
                        next_lun = next_lun.wrapping_add(1);
                        let blocks = job.block_size >> 9;
                        queue.post_read(headers, target, lun, sector, blocks, data)
                    }
                    Headers::Blk(headers) => {
                        queue.post_in(headers, VIRTIO_BLK_T_IN, sector, &[data])
                    }
                }
                .map_err(err)?;
                by_head[usize::from(head)] = index;
                in_flight += 1;
            }
            if poll {
                queue.kick_polled().map_err(err)?;
            } else {
                queue.kick().map_err(err)?;
            }
        }
        if in_flight == 0 {
            return Ok(result);
        }
        let completed = if poll {
            queue.poll_used(STALL).map_err(err)?
        } else {
            queue.wait_interrupt(STALL).map_err(err)?
        };
        if !completed {
            return Err(format!(
                "no completion for {STALL:?} with {in_flight} requests in flight"
            ));
        }
        let used = queue.reap().map_err(err)?;
        let seen = Instant::now();
        for (head, len) in used {
            let index = match by_head.get(usize::from(head)) {
                Some(&index) if index < slots.len() => index,
                _ => return Err(format!("used entry for unknown head {head}")),
            };
            let slot = &slots[index];
            let ok = match slot.headers {
                Headers::Blk(headers) => {
                    queue.status(headers.status).map_err(err)? == VIRTIO_BLK_S_OK
                        && len == job.block_size + 1
                }
                // GOOD, and the response header (108 bytes) plus the data.
                Headers::Scsi(headers) => {
                    queue.command_status(headers).map_err(err)? == (0, 0)
                        && len == job.block_size + 108
                }
            };
            if !ok {
                result.errors += 1;
            } else if slot.posted >= from && seen <= to {
                let ns = seen.duration_since(slot.posted).as_nanos();
                result
                    .latency_ns
                    .saturating_record(u64::try_from(ns).unwrap_or(u64::MAX));
                result.ops += 1;
            }
            by_head[usize::from(head)] = usize::MAX;
            free.push(index);
            in_flight -= 1;
        }
    }
}
