//! Assembles a machine from its configuration and runs it until the guest stops.

mod devices;
mod display;
mod pinned_ram;
mod reboot;
mod shutdown;

use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;

use log::{info, warn};
use ringvisor_devices::legacy::SerialPort;
use ringvisor_devices::virtio::balloon::{BalloonConfig, BalloonError};
use ringvisor_devices::virtio::block::BlockError;
use ringvisor_devices::virtio::console::{ConsoleConfig, ConsoleError};
use ringvisor_devices::virtio::net::{NetConfig, NetError};
use ringvisor_devices::virtio::scsi::{assign_addresses, ScsiConfig, ScsiError};
use ringvisor_io::{
    FailureHook, IoUringUnavailable, IrqEvent, IrqEventError, ReactorError, ReactorFailure,
    ReactorOptions, ReactorSet,
};
use serde_json::json;

use crate::acpi::{write_tables, AcpiError, AcpiPlatform, MAX_VCPUS};
use crate::api::{ApiError, ApiServer, ApiState};
use crate::boot::{load_linux, BootError};
use crate::iowq;
use crate::kvm::{KvmVm, PauseControl, PauseError, VcpuError, VcpuStop, VmError};
use crate::layout::{GED_GSI, PCI_ECAM_SIZE, PCI_ECAM_START};
use crate::memory::{self, MemoryError, MemoryOptions};
use crate::mmio_bus::MmioBus;
use crate::options::DiskSpec;
use crate::pci::virtio::{VirtioPciError, VirtioPciServices};
use crate::pci::{BarAllocator, PciConfigIo, PciEcam, PciHostBridge, PciRootBus};
use crate::pio_bus::{ConsoleSink, IoPortRegions, PortIoBus};
use crate::placement::{allowed_cpus, cpu_list_string, plan, Placement, PlacementError};
use crate::seccomp::{self, SeccompError, SeccompMode, SeccompPolicy, ThreadKind};

/// ISA IRQ of COM1.
const COM1_GSI: u32 = 4;

#[derive(Debug, Clone)]
pub struct MachineConfig {
    pub kernel: PathBuf,
    pub initramfs: Option<PathBuf>,
    pub cmdline: String,
    pub cpus: u8,
    /// vCPU index and the host cores it is pinned to.
    pub vcpu_affinity: Vec<(u8, Vec<usize>)>,
    pub memory_bytes: u64,
    pub memory_options: MemoryOptions,
    pub disks: Vec<DiskSpec>,
    /// The virtio-scsi controller and its logical units, when asked for.
    pub scsi: Option<ScsiConfig>,
    /// virtio-net NICs, one per TAP.
    pub nets: Vec<NetConfig>,
    /// The virtio console and its named ports, when asked for.
    pub console: Option<ConsoleConfig>,
    /// The memory balloon, when asked for.
    pub balloon: Option<BalloonConfig>,
    /// QXL graphics with its outputs, when asked for.
    pub display: Option<crate::options::DisplaySpec>,
    /// Where the control API listens, if anywhere.
    pub api_socket: Option<PathBuf>,
    /// Host cores that run I/O reactors, one reactor each; `None`: every allowed core.
    pub reactor_cores: Option<Vec<usize>>,
    /// Reactor adaptive polling budget in microseconds; 0: never spin.
    pub poll_us: u64,
    /// The most io-wq workers per reactor (`--iowq-workers`); `None`: derived from the
    /// queues (see `crate::iowq`).
    pub iowq_workers: Option<std::num::NonZeroU32>,
    /// Requests an I/O reactor gathers per io_uring_enter while draining (`--submit-batch`);
    /// `None`: one.
    pub submit_batch: Option<std::num::NonZeroUsize>,
    /// How long a graceful shutdown waits for the guest to power off.
    pub shutdown_timeout: std::time::Duration,
    /// A guest reset ends the machine (exit 0) instead of rebooting it in place.
    pub no_reboot: bool,
    /// How the VMM's threads are confined (seccomp).
    pub seccomp: SeccompMode,
}

/// Exit status of bad input: the same as clap's for a malformed flag.
pub const EXIT_BAD_INPUT: u8 = 2;
/// Exit status when the guest ignored the power button for --shutdown-timeout and was
/// stopped by force (in order, disks flushed).
pub const EXIT_SHUTDOWN_TIMED_OUT: u8 = 3;
/// Exit status when an I/O reactor's io_uring failed: its devices were marked
/// DEVICE_NEEDS_RESET and the machine was stopped by force, in order, disks flushed.
pub const EXIT_REACTOR_FAILED: u8 = 4;

/// How a machine that ran to its end stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestExit {
    Reset,
    /// The guest powered off (by itself, or after the power button): disks flushed.
    Poweroff,
    /// Stopped by force, in order (`shutdown --force`, a second SIGTERM): disks flushed.
    Shutdown,
    /// The power button was pressed and the guest did not power off within the shutdown
    /// timeout; then stopped by force, in order.
    ShutdownTimedOut,
    /// A reactor's io_uring failed and nothing served its devices any more; then stopped
    /// by force, in order.
    ReactorFailed(ReactorFailure),
}

impl GuestExit {
    /// The exit status of `ringvisor run` for a machine that ended this way.
    pub fn exit_status(self) -> u8 {
        match self {
            GuestExit::Reset | GuestExit::Poweroff | GuestExit::Shutdown => 0,
            GuestExit::ShutdownTimedOut => EXIT_SHUTDOWN_TIMED_OUT,
            GuestExit::ReactorFailed(_) => EXIT_REACTOR_FAILED,
        }
    }
}

/// What the main thread hears: a vCPU's report, a reset to reboot from, a reactor that
/// failed, or a shutdown or reboot that is done.
pub(crate) enum MachineStop {
    Vcpu(VcpuStop),
    /// The guest reset while the machine was in its `generation`th boot.
    Reset {
        generation: u64,
    },
    /// A reactor stopped because its ring failed (its set's failure hook).
    ReactorFailed(ReactorFailure),
    Finished(GuestExit),
    RebootFailed(String),
}

impl MachineStop {
    /// For the reports that end the machine in order without asking the guest (vCPUs
    /// paused, disk I/O drained, every disk flushed: the shutdown thread's work), how it
    /// then ends.
    fn ends_in_order(&self) -> Option<GuestExit> {
        match self {
            MachineStop::Vcpu(VcpuStop::Poweroff) => Some(GuestExit::Poweroff),
            MachineStop::ReactorFailed(failure) => Some(GuestExit::ReactorFailed(*failure)),
            _ => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MachineError {
    #[error(transparent)]
    Vm(#[from] VmError),
    #[error(transparent)]
    Memory(#[from] MemoryError),
    #[error(transparent)]
    Boot(#[from] BootError),
    #[error(transparent)]
    Acpi(#[from] AcpiError),
    #[error("--cpus must be between 1 and {max} (got {got})")]
    CpuCount { got: usize, max: usize },
    #[error("cannot set up the serial interrupt: {0}")]
    Irq(#[from] IrqEventError),
    #[error("cannot start a thread: {0}")]
    Thread(#[source] std::io::Error),
    #[error(transparent)]
    Guest(#[from] VcpuError),
    #[error(transparent)]
    Seccomp(#[from] SeccompError),
    #[error("every vCPU thread ended without a guest exit")]
    VcpusVanished,
    #[error(transparent)]
    Placement(#[from] PlacementError),
    #[error("cannot pin the VMM's threads: {0}")]
    Pin(#[source] std::io::Error),
    #[error("cannot read this process's CPU affinity: {0}")]
    Affinity(#[source] std::io::Error),
    #[error("cannot start the I/O reactors: {0}")]
    Reactors(#[from] ReactorError),
    #[error(transparent)]
    IoUring(#[from] IoUringUnavailable),
    #[error("--disk: {0}")]
    Disk(#[from] BlockError),
    #[error("--scsi-disk: {0}")]
    Scsi(#[from] ScsiError),
    #[error("--net: {0}")]
    Net(#[from] NetError),
    #[error("--virtio-console/--serial-port: {0}")]
    Console(#[from] ConsoleError),
    #[error("--balloon: {0}")]
    Balloon(#[from] BalloonError),
    #[error("--balloon: size={size} bytes is more than the guest's {memory} bytes of RAM")]
    BalloonTooLarge { size: u64, memory: u64 },
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error("cannot set up pausing the vCPUs: {0}")]
    Pause(#[from] PauseError),
    #[error("--disk: cannot use {}: {source}", path.display())]
    DiskPath {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("--scsi-disk: cannot use {}: {source}", path.display())]
    ScsiDiskPath {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot add {name}: {source}")]
    VirtioPci {
        name: String,
        #[source]
        source: VirtioPciError,
    },
    #[error("no room left in the PCI MMIO window for {0}")]
    NoBarSpace(String),
    #[error("--display: {0}")]
    Display(String),
    #[error("cannot map the PCI Express configuration window: {0}")]
    Ecam(String),
    #[error("the guest reset and the machine could not reboot: {0}")]
    Reboot(String),
}

impl MachineError {
    /// Whether the user asked for something impossible (exit status 2, as for a
    /// malformed flag) rather than the host or the guest failing.
    pub fn is_bad_input(&self) -> bool {
        matches!(self, MachineError::CpuCount { .. })
    }
}

impl MachineConfig {
    /// Checks what can be checked without KVM, so bad input, and a host that cannot run the
    /// machine (no hugepages, no io_uring), is reported before any VM exists.
    pub fn validate(&self) -> Result<(), MachineError> {
        let open = |path: &PathBuf| std::fs::File::open(path).map(drop);
        open(&self.kernel).map_err(|source| BootError::OpenKernel {
            path: self.kernel.clone(),
            source,
        })?;
        if let Some(initramfs) = &self.initramfs {
            open(initramfs).map_err(|source| BootError::ReadInitramfs {
                path: initramfs.clone(),
                source,
            })?;
        }
        if self.cpus == 0 || self.cpus > MAX_VCPUS {
            return Err(MachineError::CpuCount {
                got: self.cpus.into(),
                max: MAX_VCPUS.into(),
            });
        }
        memory::check(self.memory_bytes, &self.memory_options)?;
        for disk in &self.disks {
            std::fs::metadata(&disk.path).map_err(|source| MachineError::DiskPath {
                path: disk.path.clone(),
                source,
            })?;
        }
        if let Some(scsi) = &self.scsi {
            for disk in &scsi.disks {
                std::fs::metadata(&disk.path).map_err(|source| MachineError::ScsiDiskPath {
                    path: disk.path.clone(),
                    source,
                })?;
            }
            assign_addresses(&scsi.disks)?;
        }
        if let Some(balloon) = &self.balloon {
            if balloon.initial_target_bytes > self.memory_bytes {
                return Err(MachineError::BalloonTooLarge {
                    size: balloon.initial_target_bytes,
                    memory: self.memory_bytes,
                });
            }
        }
        self.placement()?;
        // Last, so that a mistake in the flags is reported before the host's set-up.
        ringvisor_io::probe()?;
        Ok(())
    }

    /// Where every thread goes: the reactors, the vCPUs and the background threads,
    /// checked against the cores this process may use. Call it before any thread of
    /// the VMM is pinned (the allowed set is read from the calling thread).
    pub fn placement(&self) -> Result<Placement, MachineError> {
        let allowed = allowed_cpus().map_err(MachineError::Affinity)?;
        Ok(plan(
            self.cpus,
            &self.vcpu_affinity,
            self.reactor_cores.as_deref(),
            &allowed,
        )?)
    }
}

/// One reactor per placement core, pinned; a machine without virtio queues needs none
/// of them running, but the set is cheap and keeps one code path.
fn start_reactors(
    config: &MachineConfig,
    placement: &Placement,
    on_failure: FailureHook,
    registered_ram: Option<ringvisor_io::RegisteredRam>,
) -> Result<Arc<ReactorSet>, MachineError> {
    let cores: Vec<Option<usize>> = placement.reactors.iter().copied().map(Some).collect();
    let hot_queues = iowq::hot_queue_count(&config.disks, config.scsi.as_ref(), &config.nets);
    let options = ReactorOptions {
        poll: (config.poll_us > 0).then(|| std::time::Duration::from_micros(config.poll_us)),
        iowq: Some(iowq::hot_limits(
            config.iowq_workers,
            hot_queues,
            cores.len(),
        )),
        on_failure: Some(on_failure),
        submit_batch: config.submit_batch,
        registered_ram,
        // NVMe passthrough disks' commands need 128-byte SQEs; other machines keep the
        // plain rings.
        wide_entries: config
            .disks
            .iter()
            .any(|disk| ringvisor_devices::nvme::is_passthrough_path(&disk.path)),
    };
    Ok(Arc::new(ReactorSet::start_confined(
        &cores,
        &options,
        Arc::new(|| seccomp::confine(ThreadKind::HotReactor)),
        seccomp::ring_policy(ThreadKind::HotReactor),
    )?))
}

/// Builds the machine and runs it; returns when the first vCPU reports a stop.
pub fn run(config: &MachineConfig, console: ConsoleSink) -> Result<GuestExit, MachineError> {
    config.validate()?;
    let placement = config.placement()?;
    for warning in &placement.warnings {
        warn!("placement: {warning}");
    }
    shutdown::block_sigterm();
    // Built before the first thread starts: each installs its own filter from it.
    seccomp::set_process_policy(SeccompPolicy::new(config.seccomp)?);
    let vm = KvmVm::create()?;
    let max = vm.max_vcpus().min(usize::from(MAX_VCPUS));
    if config.cpus == 0 || usize::from(config.cpus) > max {
        return Err(MachineError::CpuCount {
            got: config.cpus.into(),
            max,
        });
    }
    let pause = PauseControl::new(vm.shared_fd(), usize::from(config.cpus))?;
    let mem = memory::allocate_with(config.memory_bytes, &config.memory_options)?;
    vm.map_memory(&mem)?;
    let cmdline = crate::acpi::guest_cmdline(&config.cmdline).into_owned();
    if cmdline != config.cmdline {
        info!("kernel command line: reboot=acpi added (no reboot= method was given)");
    }
    let kernel = load_linux(
        &mem,
        config.memory_bytes,
        &config.kernel,
        config.initramfs.as_deref(),
        &cmdline,
    )?;
    let boot_entry = Arc::new(std::sync::Mutex::new(kernel));
    let serial_irq = IrqEvent::new()?;
    vm.bind_irqfd(serial_irq.eventfd(), COM1_GSI)?;
    let power_button = IrqEvent::new()?;
    vm.bind_irqfd(power_button.eventfd(), GED_GSI)?;
    let mut root = PciRootBus::new();
    root.add(Box::new(PciHostBridge::new()));
    let mmio = Arc::new(MmioBus::new());
    let (stops, stopped) = mpsc::channel();
    // A reactor whose ring failed has marked its devices DEVICE_NEEDS_RESET; the machine
    // then stops in order, as for a forced shutdown, rather than run on without them.
    let reactor_failed: FailureHook = {
        let stops = stops.clone();
        Arc::new(move |failure| {
            let _ = stops.send(MachineStop::ReactorFailed(failure));
        })
    };
    let registered_ram = memory::registered_ram(&mem, &config.memory_options);
    let reactors = start_reactors(
        config,
        &placement,
        Arc::clone(&reactor_failed),
        registered_ram.clone(),
    )?;
    let pinned_ram =
        registered_ram.map(|ram| Arc::new(pinned_ram::PinnedRam::new(Arc::clone(&reactors), ram)));
    let router = vm.irq_router();
    let services = VirtioPciServices {
        mem: mem.clone(),
        queue_host: reactors.clone(),
        interrupts: router.clone(),
        ioevents: router,
    };
    let low_priority = Arc::new(ReactorSet::start_low_priority_confined(
        &placement.background,
        &ReactorOptions {
            iowq: Some(iowq::low_priority_limits(config.iowq_workers)),
            on_failure: Some(reactor_failed),
            ..ReactorOptions::default()
        },
        Arc::new(|| seccomp::confine(ThreadKind::LowPriorityReactor)),
        seccomp::ring_policy(ThreadKind::LowPriorityReactor),
    )?);
    // The threads started from here on (API, signals, stdin) inherit the background
    // cores; the vCPU threads set their own.
    ringvisor_io::pin_current_thread(&placement.background).map_err(MachineError::Pin)?;
    let low_services = VirtioPciServices {
        queue_host: low_priority.clone(),
        ..services.clone()
    };
    let mut bars = BarAllocator::default();
    let pci_ports = Arc::new(IoPortRegions::default());
    let mut slots = devices::Slots {
        io: &services,
        low_priority: &low_services,
        bars: &mut bars,
        root: &mut root,
        mmio: &mmio,
        virtio: Vec::new(),
        ram_release: pinned_ram.as_ref().map(|pinned| {
            let pinned = Arc::clone(pinned);
            ringvisor_devices::virtio::balloon::ReleaseHook::new(move |addr, len| {
                pinned.before_release(addr, len)
            })
        }),
    };
    let mut plugged = devices::plug_all(config, &mut slots)?;
    let display = match &config.display {
        Some(spec) => Some(display::plug_display(
            spec,
            &mut slots,
            &services.interrupts,
            vm.device_memory(),
            pci_ports.clone(),
        )?),
        None => None,
    };
    let mut reset_devices: Vec<Arc<dyn reboot::PlatformReset>> = std::mem::take(&mut slots.virtio)
        .into_iter()
        .map(|device| device as Arc<dyn reboot::PlatformReset>)
        .collect();
    reset_devices.extend(
        display
            .iter()
            .map(|d| Arc::new(d.device.clone()) as Arc<dyn reboot::PlatformReset>),
    );
    let pci_interrupts: Vec<_> = display.iter().map(|d| d.interrupt).collect();
    if let Some(display) = &display {
        plugged.info.push(display.info.clone());
    }
    write_tables(
        &mem,
        &AcpiPlatform {
            cpus: config.cpus,
            pci_interrupts: &pci_interrupts,
        },
    )?;
    let pci_config = PciConfigIo::new(root);
    let ecam = mmio.register(Arc::new(std::sync::Mutex::new(PciEcam::new(
        pci_config.bus(),
    ))));
    mmio.map(ecam, PCI_ECAM_START, PCI_ECAM_SIZE)
        .map_err(|e| MachineError::Ecam(e.to_string()))?;
    let orderly = Arc::new(shutdown::OrderlyShutdown {
        pause: Arc::clone(&pause),
        reactors: Arc::clone(&reactors),
        disk_devices: plugged.disk_devices.clone(),
        disk_paths: plugged.disk_paths.clone(),
        stops: stops.clone(),
    });
    let rebooter = (!config.no_reboot).then(|| reboot::Rebooter {
        pause: Arc::clone(&pause),
        vm: vm.shared_fd(),
        irqchip: vm.irqchip_power_on(),
        devices: reset_devices,
        mem: mem.clone(),
        memory_bytes: config.memory_bytes,
        memory_options: config.memory_options,
        pinned_ram: pinned_ram.clone(),
        kernel: config.kernel.clone(),
        initramfs: config.initramfs.clone(),
        cmdline,
        cpus: config.cpus,
        pci_interrupts: pci_interrupts.clone(),
        boot_entry: Arc::clone(&boot_entry),
    });
    let (shutdown_requests, shutdown_inbox) = mpsc::channel();
    shutdown::spawn_shutdown_thread(
        Arc::clone(&orderly),
        power_button,
        shutdown_inbox,
        config.shutdown_timeout,
        rebooter,
    )
    .map_err(MachineError::Thread)?;
    shutdown::spawn_sigterm_handler(shutdown_requests.clone()).map_err(MachineError::Thread)?;
    let shutdown_control = Arc::new(shutdown::ShutdownControl {
        orderly,
        requests: shutdown_requests.clone(),
        timeout: config.shutdown_timeout,
    });
    let _api = match &config.api_socket {
        Some(path) => {
            let info = json!({
                "version": env!("CARGO_PKG_VERSION"),
                "cpus": config.cpus,
                "memory_bytes": config.memory_bytes,
                "kernel": config.kernel,
                "reactor_cores": placement.reactors,
                "vcpu_cores": placement.vcpus.iter().map(|c| cpu_list_string(c)).collect::<Vec<_>>(),
                "background_cores": cpu_list_string(&placement.background),
                "devices": plugged.info,
            });
            let state = ApiState {
                reactors,
                low_priority: Some(low_priority),
                info,
                pause: Some(Arc::clone(&pause)),
                shutdown: Some(shutdown_control),
                balloon: plugged.balloon.clone(),
                display: display.as_ref().map(|d| d.control.clone()),
            };
            Some(ApiServer::start(path, state)?)
        }
        None => None,
    };
    let bus = Arc::new(PortIoBus::with_pci_io(
        SerialPort::new(serial_irq, console),
        pci_config,
        pci_ports,
    ));

    let mut vcpus = Vec::with_capacity(config.cpus.into());
    for index in 0..config.cpus {
        vcpus.push(vm.create_vcpu(index, config.cpus)?);
    }
    vcpus[0].enter_kernel(&mem, &kernel)?;
    info!(
        "booting {} with {} vCPU(s) and {} MiB",
        config.kernel.display(),
        config.cpus,
        config.memory_bytes >> 20
    );

    for vcpu in vcpus {
        let context = reboot::VcpuContext {
            bus: Arc::clone(&bus),
            mmio: Arc::clone(&mmio),
            pause: Arc::clone(&pause),
            stops: stops.clone(),
            mem: mem.clone(),
            boot_entry: Arc::clone(&boot_entry),
            reboot: !config.no_reboot,
        };
        let cores = placement
            .vcpus
            .get(usize::from(vcpu.index()))
            .cloned()
            .unwrap_or_default();
        thread::Builder::new()
            .name(format!("vcpu{}", vcpu.index()))
            .spawn(move || {
                if let Err(err) = ringvisor_io::pin_current_thread(&cores) {
                    warn!("vcpu{}: cannot pin to cores {cores:?}: {err}", vcpu.index());
                }
                seccomp::confine(ThreadKind::Vcpu);
                reboot::run_vcpu(vcpu, context);
            })
            .map_err(MachineError::Thread)?;
    }
    drop(stops);
    if !plugged.console_on_stdio {
        crate::console::spawn_stdin_pump(Arc::clone(&bus)).map_err(MachineError::Thread)?;
    }

    seccomp::confine(ThreadKind::Main);
    // A poweroff first flushes the disks on the shutdown thread, a reset reboots there
    // (or, with --no-reboot, flushes and ends); whatever ends the machine decides the
    // outcome, and the caller then exits the process, which ends the other vCPU threads.
    let mut rebooting: Option<u64> = None;
    loop {
        let stop = stopped.recv();
        if let Some(exit) = stop.as_ref().ok().and_then(MachineStop::ends_in_order) {
            match exit {
                GuestExit::ReactorFailed(failure) => warn!(
                    "{failure}: its devices need a reset; stopping the machine in order \
                     (exit status {EXIT_REACTOR_FAILED})"
                ),
                _ => info!("the guest powered off; flushing the disks"),
            }
            if shutdown_requests
                .send(shutdown::ShutdownRequest::Finish(exit))
                .is_err()
            {
                return Ok(exit);
            }
            continue;
        }
        match stop {
            Ok(MachineStop::Reset { generation }) => {
                // Several vCPUs may see the same reset; the first one's is the reboot.
                if rebooting.replace(generation) == Some(generation) {
                    continue;
                }
                let request = if config.no_reboot {
                    info!("the guest reset; --no-reboot: flushing the disks and exiting");
                    shutdown::ShutdownRequest::GuestReset
                } else {
                    info!("the guest reset; rebooting in place");
                    shutdown::ShutdownRequest::Reboot
                };
                if shutdown_requests.send(request).is_err() {
                    return Ok(GuestExit::Reset);
                }
            }
            Ok(MachineStop::RebootFailed(reason)) => return Err(MachineError::Reboot(reason)),
            Ok(MachineStop::Vcpu(VcpuStop::Failed(err))) => return Err(err.into()),
            // run_vcpu turns these into a reboot or a failure; it never reports them.
            Ok(MachineStop::Vcpu(VcpuStop::Reset | VcpuStop::TripleFault | VcpuStop::Rebooted)) => {
                continue
            }
            // Handled above, with the stop in order they ask for.
            Ok(MachineStop::Vcpu(VcpuStop::Poweroff) | MachineStop::ReactorFailed(_)) => continue,
            Ok(MachineStop::Finished(exit)) => return Ok(exit),
            Err(_) => return Err(MachineError::VcpusVanished),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_reactor_stops_the_machine_in_order_with_an_exit_status_of_its_own() {
        let failure = ReactorFailure {
            reactor: 1,
            errno: libc::EBADF,
        };
        let exit = MachineStop::ReactorFailed(failure).ends_in_order();
        assert_eq!(exit, Some(GuestExit::ReactorFailed(failure)));
        let status = exit.map(GuestExit::exit_status);
        assert_eq!(status, Some(EXIT_REACTOR_FAILED));
        // Told apart from every other way `ringvisor run` ends: the other stops, a failure
        // (1), bad input, and a seccomp violation.
        let mut others: Vec<u8> = [
            GuestExit::Reset,
            GuestExit::Poweroff,
            GuestExit::Shutdown,
            GuestExit::ShutdownTimedOut,
        ]
        .map(GuestExit::exit_status)
        .to_vec();
        others.extend([1, EXIT_BAD_INPUT]);
        others.push(u8::try_from(crate::seccomp::VIOLATION_EXIT_CODE).unwrap());
        assert!(!others.contains(&EXIT_REACTOR_FAILED), "{others:?}");
        assert_ne!(EXIT_REACTOR_FAILED, 0);
        // A guest poweroff goes the same way, ending in 0.
        let poweroff = MachineStop::Vcpu(VcpuStop::Poweroff).ends_in_order();
        assert_eq!(poweroff.map(GuestExit::exit_status), Some(0));
        assert_eq!(MachineStop::Reset { generation: 0 }.ends_in_order(), None);
    }
}
