//! Puts the configured virtio devices on the PCI bus: the I/O devices (disks, SCSI,
//! NICs) with their queues on the per-core reactors, the console and the balloon on the
//! low-priority reactor.

use std::path::PathBuf;
use std::sync::Arc;

use log::{debug, info};
use ringvisor_devices::virtio::balloon::{BalloonDevice, BalloonHandle, BALLOON_PAGE_SIZE};
use ringvisor_devices::virtio::block::{BlockConfig, BlockDevice};
use ringvisor_devices::virtio::console::ConsoleDevice;
use ringvisor_devices::virtio::net::NetDevice;
use ringvisor_devices::virtio::scsi::ScsiDevice;
use ringvisor_devices::virtio::VirtioDevice;
use serde_json::{json, Value};

use super::{MachineConfig, MachineError};
use crate::api::BalloonControl;
use crate::layout::HIMEM_START;
use crate::mmio_bus::MmioBus;
use crate::pci::virtio::{
    plug_virtio_pci, PluggedVirtioPci, VirtioPciDevice, VirtioPciServices, BAR0_SIZE,
};
use crate::pci::{BarAllocator, PciRootBus};

/// The buses and services devices are plugged into.
pub(super) struct Slots<'a> {
    /// Queues served by the per-core I/O reactors.
    pub io: &'a VirtioPciServices,
    /// Queues served by the low-priority reactor.
    pub low_priority: &'a VirtioPciServices,
    pub bars: &'a mut BarAllocator,
    pub root: &'a mut PciRootBus,
    pub mmio: &'a Arc<MmioBus>,
    /// Every virtio function plugged so far, for a reboot to reset.
    pub virtio: Vec<Arc<std::sync::Mutex<VirtioPciDevice>>>,
    /// What the balloon calls before it releases guest pages (the reactors pin them).
    pub ram_release: Option<ringvisor_devices::virtio::balloon::ReleaseHook>,
}

impl Slots<'_> {
    /// Puts a virtio device on the PCI bus: a BAR0, the transport, a slot.
    pub(super) fn plug(
        &mut self,
        name: &str,
        device: Box<dyn VirtioDevice>,
    ) -> Result<(PluggedVirtioPci, u64), MachineError> {
        let bar = self
            .bars
            .allocate(BAR0_SIZE)
            .ok_or_else(|| MachineError::NoBarSpace(name.to_owned()))?;
        let services = match crate::seccomp::serving_reactor(device.device_type()) {
            crate::seccomp::ThreadKind::HotReactor => self.io,
            _ => self.low_priority,
        };
        let plug = VirtioPciDevice::new(name, device, services, bar)
            .and_then(|device| plug_virtio_pci(device, self.root, self.mmio))
            .map_err(|source| MachineError::VirtioPci {
                name: name.to_owned(),
                source,
            })?;
        self.virtio.push(Arc::clone(&plug.device));
        Ok((plug, bar))
    }
}

/// What the rest of the machine needs from the plugged devices.
#[derive(Default)]
pub(super) struct Plugged {
    /// What the API's `info` reports about each device.
    pub info: Vec<Value>,
    /// The backing file of every writable disk, flushed by an orderly shutdown.
    pub disk_paths: Vec<PathBuf>,
    /// Names of the devices whose queues carry disk I/O.
    pub disk_devices: Vec<String>,
    /// Whether the virtio console took stdin.
    pub console_on_stdio: bool,
    pub balloon: Option<Arc<dyn BalloonControl>>,
}

/// The balloon as the API drives it: its shared state, and its transport to tell the
/// guest that the target moved.
struct PluggedBalloon {
    handle: BalloonHandle,
    plug: PluggedVirtioPci,
    memory_bytes: u64,
}

impl BalloonControl for PluggedBalloon {
    fn set_target(&self, bytes: u64) -> Result<(), String> {
        if bytes > self.memory_bytes {
            return Err(format!(
                "a balloon of {bytes} bytes is larger than the guest's {} bytes of RAM",
                self.memory_bytes
            ));
        }
        if self
            .handle
            .set_target_bytes(bytes)
            .map_err(|e| e.to_string())?
        {
            self.plug.notify_config_change();
        }
        Ok(())
    }

    fn stats(&self) -> Value {
        let stats = self.handle.stats();
        let guest: serde_json::Map<String, Value> = stats
            .guest_stats
            .iter()
            .map(|(name, value)| ((*name).to_owned(), json!(value)))
            .collect();
        json!({
            "target_bytes": u64::from(stats.target_pages) * BALLOON_PAGE_SIZE,
            "actual_bytes": u64::from(stats.actual_pages) * BALLOON_PAGE_SIZE,
            "inflated_pages": stats.inflated_pages,
            "deflated_pages": stats.deflated_pages,
            "ignored_pages": stats.ignored_pages,
            "bad_chains": stats.bad_chains,
            "reported_bytes": stats.reported_bytes,
            "guest_stats_updates": stats.guest_stats_updates,
            "guest": guest,
        })
    }
}

pub(super) fn plug_all(
    config: &MachineConfig,
    slots: &mut Slots<'_>,
) -> Result<Plugged, MachineError> {
    let mut plugged = Plugged::default();
    for (index, disk) in config.disks.iter().enumerate() {
        let name = format!("blk{index}");
        let device = BlockDevice::new(BlockConfig {
            path: disk.path.clone(),
            read_only: disk.read_only,
            direct: disk.direct,
            queues: disk.queues,
            serial: disk.serial.clone(),
        })?;
        let (plug, bar) = slots.plug(&name, Box::new(device))?;
        info!(
            "{name}: {} on PCI 00:{:02x}.0, BAR0 {bar:#x}",
            disk.path.display(),
            plug.slot
        );
        plugged.info.push(json!({
            "name": name, "kind": "virtio-blk", "pci_slot": plug.slot,
            "path": disk.path, "read_only": disk.read_only, "queues": disk.queues,
        }));
        if !disk.read_only {
            plugged.disk_paths.push(disk.path.clone());
        }
        plugged.disk_devices.push(name);
    }
    if let Some(scsi) = &config.scsi {
        let name = "scsi0".to_string();
        let device = ScsiDevice::new(scsi.clone())?;
        let units = device.units();
        let (plug, bar) = slots.plug(&name, Box::new(device))?;
        info!(
            "{name}: {} logical unit(s), {} request queue(s), on PCI 00:{:02x}.0, BAR0 {bar:#x}",
            units.len(),
            scsi.queues,
            plug.slot
        );
        plugged.info.push(json!({
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
            if !read_only {
                plugged.disk_paths.push(path);
            }
        }
        plugged.disk_devices.push(name);
    }
    for (index, net) in config.nets.iter().enumerate() {
        let name = format!("net{index}");
        let device = NetDevice::new(net.clone())?;
        let mac = device.mac();
        let link = device.link();
        let (plug, bar) = slots.plug(&name, Box::new(device))?;
        // A TAP deleted under the guest takes the link down; the driver must hear it.
        link.set_notifier(plug.config_change_notifier());
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
        plugged.info.push(json!({
            "name": name, "kind": "virtio-net", "pci_slot": plug.slot,
            "tap": net.tap, "queue_pairs": net.queue_pairs,
        }));
    }
    if let Some(console) = &config.console {
        let name = "console0";
        let device = ConsoleDevice::new(console.clone())?;
        let (plug, bar) = slots.plug(name, Box::new(device))?;
        info!(
            "{name}: console on {}, {} named port(s), on PCI 00:{:02x}.0, BAR0 {bar:#x}",
            console.console,
            console.ports.len(),
            plug.slot
        );
        let ports: Vec<Value> = console
            .ports
            .iter()
            .map(|p| json!({ "name": p.name, "host": p.backend.to_string() }))
            .collect();
        plugged.info.push(json!({
            "name": name, "kind": "virtio-console", "pci_slot": plug.slot,
            "console": console.console.to_string(), "ports": ports,
        }));
        plugged.console_on_stdio =
            console.console == ringvisor_devices::virtio::console::PortBackend::Stdio;
    }
    if let Some(balloon) = &config.balloon {
        let name = "balloon0";
        let mut balloon = balloon.clone();
        // The boot structures below 1 MiB (zero page, command line, MP table) stay.
        balloon.protected.push((0, HIMEM_START.0));
        let mut device = BalloonDevice::new(balloon.clone())?;
        if let Some(hook) = &slots.ram_release {
            device = device.with_release_hook(hook.clone());
        }
        let handle = device.handle();
        let (plug, bar) = slots.plug(name, Box::new(device))?;
        info!(
            "{name}: target {} MiB, on PCI 00:{:02x}.0, BAR0 {bar:#x}",
            balloon.initial_target_bytes >> 20,
            plug.slot
        );
        plugged.info.push(json!({
            "name": name, "kind": "virtio-balloon", "pci_slot": plug.slot,
            "deflate_on_oom": balloon.deflate_on_oom,
            "stats_interval_s": balloon.stats_interval.as_secs_f64(),
        }));
        plugged.balloon = Some(Arc::new(PluggedBalloon {
            handle,
            plug,
            memory_bytes: config.memory_bytes,
        }));
    }
    Ok(plugged)
}
