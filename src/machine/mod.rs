//! Assembles a machine from its configuration and runs it until the guest stops.

use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;

use log::{debug, info};
use ringvisor_devices::legacy::SerialPort;
use ringvisor_devices::virtio::block::{BlockConfig, BlockDevice, BlockError};
use ringvisor_devices::virtio::net::{NetConfig, NetDevice, NetError};
use ringvisor_devices::virtio::scsi::{assign_addresses, ScsiConfig, ScsiDevice, ScsiError};
use ringvisor_devices::virtio::VirtioDevice;
use ringvisor_io::{IrqEvent, IrqEventError, ReactorError, ReactorSet};
use serde_json::json;

use crate::api::{ApiError, ApiServer, ApiState};
use crate::boot::{load_linux, write_mptable, BootError, MpTableError, MAX_MPTABLE_CPUS};
use crate::kvm::{KvmVm, PauseControl, PauseError, VcpuError, VcpuStop, VmError};
use crate::memory::{self, MemoryError};
use crate::mmio_bus::MmioBus;
use crate::options::{allowed_cpus, DiskSpec};
use crate::pci::virtio::{
    plug_virtio_pci, PluggedVirtioPci, VirtioPciDevice, VirtioPciError, VirtioPciServices,
    BAR0_SIZE,
};
use crate::pci::{BarAllocator, PciConfigIo, PciHostBridge, PciRootBus};
use crate::pio_bus::{ConsoleSink, PortIoBus};

/// ISA IRQ of COM1.
const COM1_GSI: u32 = 4;

#[derive(Debug, Clone)]
pub struct MachineConfig {
    pub kernel: PathBuf,
    pub initramfs: Option<PathBuf>,
    pub cmdline: String,
    pub cpus: u8,
    pub memory_bytes: u64,
    pub disks: Vec<DiskSpec>,
    /// The virtio-scsi controller and its logical units, when asked for.
    pub scsi: Option<ScsiConfig>,
    /// virtio-net NICs, one per TAP.
    pub nets: Vec<NetConfig>,
    /// Where the control API listens, if anywhere.
    pub api_socket: Option<PathBuf>,
    /// Host cores that run I/O reactors, one reactor each; `None`: every allowed core.
    pub reactor_cores: Option<Vec<usize>>,
    /// Reactor adaptive polling budget in microseconds; 0: never spin.
    pub poll_us: u64,
}

/// How a guest that ran to its end stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestExit {
    Reset,
    Poweroff,
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
    MpTable(#[from] MpTableError),
    #[error("--cpus must be between 1 and {max} (got {got})")]
    CpuCount { got: usize, max: usize },
    #[error("cannot set up the serial interrupt: {0}")]
    Irq(#[from] IrqEventError),
    #[error("cannot start a thread: {0}")]
    Thread(#[source] std::io::Error),
    #[error(transparent)]
    Guest(#[from] VcpuError),
    #[error("every vCPU thread ended without a guest exit")]
    VcpusVanished,
    #[error(
        "--reactor-cores: core {core} is not one this process may run on (allowed: {allowed:?})"
    )]
    ReactorCore { core: usize, allowed: Vec<usize> },
    #[error("cannot read this process's CPU affinity: {0}")]
    Affinity(#[source] std::io::Error),
    #[error("cannot start the I/O reactors: {0}")]
    Reactors(#[from] ReactorError),
    #[error("--disk: {0}")]
    Disk(#[from] BlockError),
    #[error("--scsi-disk: {0}")]
    Scsi(#[from] ScsiError),
    #[error("--net: {0}")]
    Net(#[from] NetError),
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
}

impl MachineConfig {
    /// Checks what can be checked without KVM, so bad input is reported before any VM exists.
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
        if self.cpus == 0 || self.cpus > MAX_MPTABLE_CPUS {
            return Err(MachineError::CpuCount {
                got: self.cpus.into(),
                max: MAX_MPTABLE_CPUS.into(),
            });
        }
        if self.memory_bytes < memory::MIN_MEMORY_BYTES {
            return Err(MemoryError::TooSmall {
                got: self.memory_bytes,
            }
            .into());
        }
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
        self.reactor_placement()?;
        Ok(())
    }

    /// The core of each reactor to start: `--reactor-cores`, checked against the cores
    /// this process may use, or one reactor per allowed core.
    pub fn reactor_placement(&self) -> Result<Vec<usize>, MachineError> {
        let allowed = allowed_cpus().map_err(MachineError::Affinity)?;
        match &self.reactor_cores {
            None => Ok(allowed),
            Some(cores) => {
                if let Some(&core) = cores.iter().find(|core| !allowed.contains(core)) {
                    return Err(MachineError::ReactorCore { core, allowed });
                }
                Ok(cores.clone())
            }
        }
    }
}

/// One reactor per placement core, pinned; a machine without virtio queues needs none
/// of them running, but the set is cheap and keeps one code path.
fn start_reactors(config: &MachineConfig) -> Result<Arc<ReactorSet>, MachineError> {
    let cores: Vec<Option<usize>> = config.reactor_placement()?.into_iter().map(Some).collect();
    let poll = (config.poll_us > 0).then(|| std::time::Duration::from_micros(config.poll_us));
    Ok(Arc::new(ReactorSet::start_with_polling(&cores, poll)?))
}

/// Puts a virtio device on the PCI bus: a BAR0 from `bars`, the transport, a slot.
fn plug_device(
    name: &str,
    device: Box<dyn VirtioDevice>,
    services: &VirtioPciServices,
    bars: &mut BarAllocator,
    root: &mut PciRootBus,
    mmio: &Arc<MmioBus>,
) -> Result<(PluggedVirtioPci, u64), MachineError> {
    let bar = bars
        .allocate(BAR0_SIZE)
        .ok_or_else(|| MachineError::NoBarSpace(name.to_owned()))?;
    let plug = VirtioPciDevice::new(name, device, services, bar)
        .and_then(|device| plug_virtio_pci(device, root, mmio))
        .map_err(|source| MachineError::VirtioPci {
            name: name.to_owned(),
            source,
        })?;
    Ok((plug, bar))
}

/// Builds the machine and runs it; returns when the first vCPU reports a stop.
pub fn run(config: &MachineConfig, console: ConsoleSink) -> Result<GuestExit, MachineError> {
    config.validate()?;
    let vm = KvmVm::create()?;
    let max = vm.max_vcpus().min(usize::from(MAX_MPTABLE_CPUS));
    if config.cpus == 0 || usize::from(config.cpus) > max {
        return Err(MachineError::CpuCount {
            got: config.cpus.into(),
            max,
        });
    }
    let pause = PauseControl::new(vm.shared_fd(), usize::from(config.cpus))?;
    let mem = memory::allocate(config.memory_bytes)?;
    vm.map_memory(&mem)?;
    let kernel = load_linux(
        &mem,
        config.memory_bytes,
        &config.kernel,
        config.initramfs.as_deref(),
        &config.cmdline,
    )?;
    write_mptable(&mem, config.cpus)?;

    let serial_irq = IrqEvent::new()?;
    vm.bind_irqfd(serial_irq.eventfd(), COM1_GSI)?;
    let mut root = PciRootBus::new();
    root.add(Box::new(PciHostBridge::new()));
    let mmio = Arc::new(MmioBus::new());
    let reactors = start_reactors(config)?;
    let router = vm.irq_router();
    let services = VirtioPciServices {
        mem: mem.clone(),
        queue_host: reactors.clone(),
        interrupts: router.clone(),
        ioevents: router,
    };
    let mut bars = BarAllocator::default();
    // What the API's `info` reports about each device.
    let mut devices = Vec::new();
    for (index, disk) in config.disks.iter().enumerate() {
        let name = format!("blk{index}");
        let device = BlockDevice::new(BlockConfig {
            path: disk.path.clone(),
            read_only: disk.read_only,
            direct: disk.direct,
            queues: disk.queues,
            serial: disk.serial.clone(),
        })?;
        let (plug, bar) = plug_device(
            &name,
            Box::new(device),
            &services,
            &mut bars,
            &mut root,
            &mmio,
        )?;
        info!(
            "{name}: {} on PCI 00:{:02x}.0, BAR0 {bar:#x}",
            disk.path.display(),
            plug.slot
        );
        devices.push(json!({
            "name": name, "kind": "virtio-blk", "pci_slot": plug.slot,
            "path": disk.path, "read_only": disk.read_only, "queues": disk.queues,
        }));
    }
    if let Some(scsi) = &config.scsi {
        let name = "scsi0".to_string();
        let device = ScsiDevice::new(scsi.clone())?;
        let units = device.units();
        let (plug, bar) = plug_device(
            &name,
            Box::new(device),
            &services,
            &mut bars,
            &mut root,
            &mmio,
        )?;
        info!(
            "{name}: {} logical unit(s), {} request queue(s), on PCI 00:{:02x}.0, BAR0 {bar:#x}",
            units.len(),
            scsi.queues,
            plug.slot
        );
        devices.push(json!({
            "name": name, "kind": "virtio-scsi", "pci_slot": plug.slot,
            "request_queues": scsi.queues, "units": units.len(),
        }));
        for (address, path, read_only, direct) in units {
            debug!(
                "{name}: target {} lun {}: {}{}{}",
                address.target,
                address.lun,
                path.display(),
                if read_only { ", read-only" } else { "" },
                if direct { "" } else { ", page cache" }
            );
        }
    }
    for (index, net) in config.nets.iter().enumerate() {
        let name = format!("net{index}");
        let device = NetDevice::new(net.clone())?;
        let mac = device.mac();
        let (plug, bar) = plug_device(
            &name,
            Box::new(device),
            &services,
            &mut bars,
            &mut root,
            &mmio,
        )?;
        info!(
            "{name}: tap {} ({} queue pair(s)), MAC {}, on PCI 00:{:02x}.0, BAR0 {bar:#x}",
            net.tap,
            net.queue_pairs,
            mac.iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(":"),
            plug.slot
        );
        devices.push(json!({
            "name": name, "kind": "virtio-net", "pci_slot": plug.slot,
            "tap": net.tap, "queue_pairs": net.queue_pairs,
        }));
    }
    let _api = match &config.api_socket {
        Some(path) => {
            let info = json!({
                "version": env!("CARGO_PKG_VERSION"),
                "cpus": config.cpus,
                "memory_bytes": config.memory_bytes,
                "kernel": config.kernel,
                "reactor_cores": config.reactor_placement()?,
                "devices": devices,
            });
            let state = ApiState {
                reactors,
                info,
                pause: Some(Arc::clone(&pause)),
            };
            Some(ApiServer::start(path, state)?)
        }
        None => None,
    };
    let bus = Arc::new(PortIoBus::new(
        SerialPort::new(serial_irq, console),
        PciConfigIo::new(root),
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

    let (stops, stopped) = mpsc::channel();
    for vcpu in vcpus {
        let bus = Arc::clone(&bus);
        let mmio = Arc::clone(&mmio);
        let stops = stops.clone();
        let pause = Arc::clone(&pause);
        thread::Builder::new()
            .name(format!("vcpu{}", vcpu.index()))
            .spawn(move || {
                let stop = vcpu.run(&bus, &mmio, &pause);
                let _ = stops.send(stop);
            })
            .map_err(MachineError::Thread)?;
    }
    drop(stops);
    crate::console::spawn_stdin_pump(Arc::clone(&bus)).map_err(MachineError::Thread)?;

    // The first stop decides the outcome; the caller then exits the process, which ends the
    // other vCPU threads with it.
    match stopped.recv() {
        Ok(VcpuStop::Reset) => Ok(GuestExit::Reset),
        Ok(VcpuStop::Poweroff) => Ok(GuestExit::Poweroff),
        Ok(VcpuStop::Failed(err)) => Err(err.into()),
        Err(_) => Err(MachineError::VcpusVanished),
    }
}
