//! One virtio-pci function: configuration space, BAR0 dispatch, activation and reset.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use log::{debug, info, warn};
use ringvisor_devices::virtio::{VirtioDevice, VIRTIO_F_RING_EVENT_IDX, VIRTIO_F_VERSION_1};
use ringvisor_io::{AttachedQueue, IrqEvent, QueueBinding, QueueFault, QueueHost};
use virtio_queue::{Queue, QueueT};
use vm_memory::GuestAddress;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::memory::GuestMemory;
use crate::mmio_bus::{MmioBus, MmioRegionId};
use crate::pci::msix::{MsixVectors, MSIX_CONTROL_OFFSET};
use crate::pci::{
    IoEventRegistry, PciClass, PciConfiguration, PciHeader, BAR0_REGISTER, COMMAND_BUS_MASTER,
    COMMAND_MEMORY_SPACE,
};

use super::common_config::{CommonConfig, CommonConfigAction, QueueRegisters, NO_VECTOR};
use super::layout::{
    add_capabilities, bar0_region, Bar0Region, CapabilityOffsets, BAR0_SIZE, MAX_QUEUES,
    NOTIFY_OFFSET, NOTIFY_OFF_MULTIPLIER, PCI_CFG_BAR, PCI_CFG_DATA, PCI_CFG_LENGTH,
    PCI_CFG_OFFSET,
};
use super::signals::DeviceSignals;
use super::{VirtioPciError, VirtioPciServices, VIRTIO_PCI_DEVICE_ID_BASE, VIRTIO_PCI_VENDOR_ID};

const COMMAND_REGISTER: usize = 1;
/// virtio-queue's limit on a split queue's size.
const MAX_QUEUE_SIZE: u16 = 32768;

fn class_of(device_type: u32) -> PciClass {
    match device_type {
        2 => PciClass::Other(0x01, 0x80, 0x00), // block: other mass storage
        8 => PciClass::Other(0x01, 0x00, 0x00), // SCSI
        1 => PciClass::Other(0x02, 0x00, 0x00), // network: Ethernet
        _ => PciClass::Other(0xff, 0x00, 0x00),
    }
}

pub struct VirtioPciDevice {
    name: String,
    config: PciConfiguration,
    caps: CapabilityOffsets,
    device: Box<dyn VirtioDevice>,
    common: CommonConfig,
    signals: Arc<DeviceSignals>,
    msix: MsixVectors,
    /// One doorbell per queue, created with the device so its ioeventfd can follow BAR0.
    kicks: Vec<EventFd>,
    attached: Vec<AttachedQueue>,
    mem: GuestMemory,
    queue_host: Arc<dyn QueueHost>,
    ioevents: Arc<dyn IoEventRegistry>,
    /// Weak: the bus holds the device, the device only needs to move itself on it.
    mmio: Option<(Weak<MmioBus>, MmioRegionId)>,
    /// Where BAR0 is decoded now (MMIO range and doorbells), if anywhere.
    mapped_at: Option<u64>,
}

impl VirtioPciDevice {
    /// Wraps `device` as a PCI function whose BAR0 firmware placed at `bar_base` (aligned
    /// to [`BAR0_SIZE`], e.g. from `BarAllocator`), with memory decoding and bus mastering
    /// on. `name` labels its queues in logs ("blk0" gives "blk0/q0", ...).
    pub fn new(
        name: impl Into<String>,
        device: Box<dyn VirtioDevice>,
        services: &VirtioPciServices,
        bar_base: u64,
    ) -> Result<Self, VirtioPciError> {
        let device_type = device.device_type();
        let device_id = u16::try_from(device_type)
            .ok()
            .and_then(|t| VIRTIO_PCI_DEVICE_ID_BASE.checked_add(t))
            .ok_or(VirtioPciError::DeviceType(device_type))?;
        let max_sizes = device.queue_max_sizes();
        if max_sizes.len() > MAX_QUEUES {
            return Err(VirtioPciError::QueueCount(max_sizes.len()));
        }
        if let Some((index, &size)) = max_sizes
            .iter()
            .enumerate()
            .find(|(_, size)| !size.is_power_of_two() || **size > MAX_QUEUE_SIZE)
        {
            return Err(VirtioPciError::QueueSize { index, size });
        }

        // One vector per queue plus one for configuration changes.
        let msix = MsixVectors::new(max_sizes.len() + 1, services.interrupts.clone())?;
        let vector_events = (0..msix.len() as u16)
            .filter_map(|v| msix.event(v))
            .map(IrqEvent::try_clone)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|err| VirtioPciError::Msix(err.into()))?;
        let kicks = max_sizes
            .iter()
            .map(|_| EventFd::new(EFD_NONBLOCK))
            .collect::<Result<Vec<_>, _>>()
            .map_err(VirtioPciError::Doorbell)?;

        let mut config = PciConfiguration::new(PciHeader {
            vendor_id: VIRTIO_PCI_VENDOR_ID,
            device_id,
            class: class_of(device_type),
            revision: 1,
            subsystem_vendor_id: VIRTIO_PCI_VENDOR_ID,
            subsystem_id: device_type as u16,
        });
        config.add_memory_bar64(0, BAR0_SIZE, bar_base)?;
        let caps = add_capabilities(&mut config, &msix)?;
        config.set_command(COMMAND_MEMORY_SPACE | COMMAND_BUS_MASTER);

        let offered = device.offered_features() | VIRTIO_F_VERSION_1;
        let common = CommonConfig::new(offered, &max_sizes, msix.len() as u16);
        let mut this = Self {
            name: name.into(),
            config,
            caps,
            device,
            common,
            signals: Arc::new(DeviceSignals::new(vector_events)),
            msix,
            kicks,
            attached: Vec::new(),
            mem: services.mem.clone(),
            queue_host: services.queue_host.clone(),
            ioevents: services.ioevents.clone(),
            mmio: None,
            mapped_at: None,
        };
        this.sync_bar_mapping();
        Ok(this)
    }

    /// Where BAR0 is decoded now.
    pub fn bar0(&self) -> Option<u64> {
        self.mapped_at
    }

    /// The eventfd of MSI-X vector `vector` (queues' vectors are whatever the driver chose;
    /// the last vector is free for configuration changes).
    pub fn vector_event(&self, vector: u16) -> Option<&IrqEvent> {
        self.msix.event(vector)
    }

    /// The GSI that carries MSI-X vector `vector`.
    pub fn vector_gsi(&self, vector: u16) -> Option<u32> {
        self.msix.gsi(vector)
    }

    /// The doorbell eventfd of queue `index`.
    pub fn kick_event(&self, index: usize) -> Option<&EventFd> {
        self.kicks.get(index)
    }

    /// Device status as the driver reads it.
    pub fn status(&self) -> u8 {
        self.signals.status.load(Ordering::Acquire)
    }

    pub(super) fn signals(&self) -> Arc<DeviceSignals> {
        Arc::clone(&self.signals)
    }

    /// See `PluggedVirtioPci::notify_config_change`.
    pub fn notify_config_change(&mut self) {
        self.common.bump_generation();
        self.signals.signal_config_change();
    }

    pub(super) fn attach_mmio(&mut self, bus: Weak<MmioBus>, region: MmioRegionId) {
        self.mmio = Some((bus, region));
        // Re-decode so the range lands on the bus where the doorbells already are.
        self.unmap_bar();
        self.sync_bar_mapping();
    }

    pub(super) fn detach_mmio(&mut self) {
        self.unmap_bar();
        self.mmio = None;
    }

    // ---- configuration space ----

    fn pci_cfg_window(&self) -> Option<(u64, usize)> {
        let cap = self.caps.pci_cfg;
        let dword = |at: usize| {
            let bytes = [0, 1, 2, 3].map(|i| self.config.read_byte(at + i));
            u32::from_le_bytes(bytes)
        };
        let bar = self.config.read_byte(cap + PCI_CFG_BAR);
        let offset = u64::from(dword(cap + PCI_CFG_OFFSET));
        let length = dword(cap + PCI_CFG_LENGTH) as usize;
        // Only BAR0 exists; the spec allows 1, 2 or 4 bytes, aligned.
        (bar == 0 && matches!(length, 1 | 2 | 4) && offset % length as u64 == 0)
            .then_some((offset, length))
    }

    pub fn read_config_register(&self, register: usize) -> u32 {
        if register == (self.caps.pci_cfg + PCI_CFG_DATA) / 4 {
            // VIRTIO_PCI_CAP_PCI_CFG: a window onto BAR0 for drivers that cannot map it.
            let mut data = [0u8; 4];
            if let Some((offset, length)) = self.pci_cfg_window() {
                self.read_bar(offset, &mut data[..length]);
            }
            return u32::from_le_bytes(data);
        }
        self.config.read_register(register)
    }

    pub fn write_config_register(&mut self, register: usize, offset: u8, data: &[u8]) {
        if register == (self.caps.pci_cfg + PCI_CFG_DATA) / 4 {
            if let Some((bar_offset, length)) = self.pci_cfg_window() {
                if offset == 0 && data.len() >= length {
                    self.write_bar(bar_offset, &data[..length]);
                }
            }
            return;
        }
        self.config.write_register(register, offset, data);
        let msix_control = self.caps.msix + MSIX_CONTROL_OFFSET;
        if register == msix_control / 4 {
            let control = u16::from_le_bytes([
                self.config.read_byte(msix_control),
                self.config.read_byte(msix_control + 1),
            ]);
            self.msix.set_control(control);
        }
        if register == COMMAND_REGISTER
            || register == BAR0_REGISTER
            || register == BAR0_REGISTER + 1
        {
            self.sync_bar_mapping();
        }
    }

    // ---- BAR0 placement ----

    fn notify_address(base: u64, queue: usize) -> u64 {
        base + NOTIFY_OFFSET + u64::from(NOTIFY_OFF_MULTIPLIER) * queue as u64
    }

    fn unmap_bar(&mut self) {
        let Some(base) = self.mapped_at.take() else {
            return;
        };
        for (queue, kick) in self.kicks.iter().enumerate() {
            let addr = Self::notify_address(base, queue);
            if let Err(err) = self.ioevents.unregister_ioevent(kick, addr) {
                debug!(
                    "{}: doorbell of queue {queue} at {addr:#x}: {err}",
                    self.name
                );
            }
        }
        if let Some((bus, region)) = &self.mmio {
            if let Some(bus) = bus.upgrade() {
                bus.unmap(*region);
            }
        }
    }

    /// Makes the MMIO range and the doorbells follow the command register and BAR0: a
    /// guest that moves the BAR (or turns decoding off while sizing it) moves them too.
    fn sync_bar_mapping(&mut self) {
        let wanted = self
            .config
            .memory_enabled()
            .then(|| self.config.bar_address(0))
            .flatten();
        if wanted == self.mapped_at {
            return;
        }
        self.unmap_bar();
        let Some(base) = wanted else {
            return;
        };
        if let Some((bus, region)) = &self.mmio {
            if let Some(bus) = bus.upgrade() {
                if let Err(err) = bus.map(*region, base, BAR0_SIZE) {
                    warn!("{}: BAR0 at {base:#x} is not decoded: {err}", self.name);
                    return;
                }
            }
        }
        for (queue, kick) in self.kicks.iter().enumerate() {
            let addr = Self::notify_address(base, queue);
            // Without the ioeventfd the kick still works, through an MMIO exit.
            if let Err(err) = self.ioevents.register_ioevent(kick, addr) {
                warn!(
                    "{}: doorbell of queue {queue} at {addr:#x}: {err}",
                    self.name
                );
            }
        }
        self.mapped_at = Some(base);
    }

    // ---- BAR0 registers ----

    pub fn read_bar(&self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        match bar0_region(offset, data.len()) {
            Some(Bar0Region::CommonConfig(at)) => self.common.read(at, data, &self.signals),
            Some(Bar0Region::Isr(_)) => {
                if let Some(first) = data.first_mut() {
                    *first = self.signals.isr.swap(0, Ordering::AcqRel);
                }
            }
            Some(Bar0Region::DeviceConfig(at)) => self.device.read_config(at, data),
            Some(Bar0Region::MsixTable(at)) => self.msix.read_table(at, data),
            Some(Bar0Region::MsixPba(at)) => self.msix.read_pba(at, data),
            Some(Bar0Region::Notify(_)) | None => {}
        }
    }

    pub fn write_bar(&mut self, offset: u64, data: &[u8]) {
        match bar0_region(offset, data.len()) {
            Some(Bar0Region::CommonConfig(at)) => {
                match self.common.write(at, data, &self.signals) {
                    CommonConfigAction::None => {}
                    CommonConfigAction::Reset => self.reset(),
                    CommonConfigAction::Activate => self.activate(),
                }
            }
            Some(Bar0Region::DeviceConfig(at)) => self.device.write_config(at, data),
            Some(Bar0Region::Notify(at)) => {
                // Only reached when the doorbell's ioeventfd is not registered.
                let queue = (at / u64::from(NOTIFY_OFF_MULTIPLIER)) as usize;
                if let Some(kick) = self.kicks.get(queue) {
                    let _ = kick.write(1);
                }
            }
            Some(Bar0Region::MsixTable(at)) => self.msix.write_table(at, data),
            Some(Bar0Region::Isr(_)) | Some(Bar0Region::MsixPba(_)) | None => {}
        }
    }

    // ---- device lifecycle ----

    fn build_queue(&self, regs: &QueueRegisters, event_idx: bool) -> Result<Queue, String> {
        let mut queue = Queue::new(regs.max_size).map_err(|err| err.to_string())?;
        queue
            .try_set_size(regs.size)
            .map_err(|err| err.to_string())?;
        queue
            .try_set_desc_table_address(GuestAddress(regs.desc))
            .map_err(|err| err.to_string())?;
        queue
            .try_set_avail_ring_address(GuestAddress(regs.driver))
            .map_err(|err| err.to_string())?;
        queue
            .try_set_used_ring_address(GuestAddress(regs.device))
            .map_err(|err| err.to_string())?;
        queue.set_event_idx(event_idx);
        queue.set_ready(true);
        if !queue.is_valid(&self.mem) {
            return Err("its rings are not in guest RAM".into());
        }
        Ok(queue)
    }

    /// DRIVER_OK: the device gets its queues and the reactors its workers. Any failure
    /// leaves the device needing a reset, which the driver learns from the status and a
    /// configuration-change interrupt.
    fn activate(&mut self) {
        let features = self.common.driver_features();
        let event_idx = features & VIRTIO_F_RING_EVENT_IDX != 0;
        let mut queues = Vec::new();
        let registers = self.common.queues().to_vec();
        for (index, regs) in registers.iter().enumerate() {
            if !regs.enabled {
                continue;
            }
            match self.build_queue(regs, event_idx) {
                Ok(queue) => queues.push((index as u16, queue)),
                Err(reason) => return self.fail(&format!("queue {index}: {reason}")),
            }
        }
        let workers = match self.device.activate(self.mem.clone(), features, queues) {
            Ok(workers) => workers,
            Err(err) => return self.fail(&err.to_string()),
        };
        let mut groups: Vec<(u16, AttachedQueue)> = Vec::new();
        for (index, worker) in workers {
            let Some(regs) = self.common.queues().get(usize::from(index)).copied() else {
                return self.fail(&format!("the device returned a worker for queue {index}"));
            };
            let binding = match self.binding(index, regs.msix_vector, worker) {
                Ok(binding) => binding,
                Err(reason) => return self.fail(&reason),
            };
            let group = self.device.queue_group(index);
            let attached = match groups.iter().find(|(g, _)| *g == group) {
                Some(&(_, beside)) => self.queue_host.attach_beside(binding, beside),
                None => self.queue_host.attach(binding),
            };
            match attached {
                Ok(handle) => {
                    groups.push((group, handle));
                    self.attached.push(handle);
                }
                Err(err) => return self.fail(&format!("queue {index}: {err}")),
            }
        }
        info!(
            "{}: driver ready, {} queue(s) running",
            self.name,
            self.attached.len()
        );
    }

    fn binding(
        &self,
        index: u16,
        vector: u16,
        worker: Box<dyn ringvisor_io::QueueWorker>,
    ) -> Result<QueueBinding, String> {
        let kick = self
            .kicks
            .get(usize::from(index))
            .ok_or_else(|| format!("no queue {index}"))?
            .try_clone()
            .map_err(|err| format!("queue {index}: cannot share its doorbell: {err}"))?;
        // A queue without a vector gets a line nobody listens to: the driver asked for no
        // interrupts on it.
        let interrupt = match self.msix.event(vector).filter(|_| vector != NO_VECTOR) {
            Some(event) => event.try_clone(),
            None => IrqEvent::new(),
        }
        .map_err(|err| format!("queue {index}: {err}"))?;
        let signals = Arc::clone(&self.signals);
        let name = format!("{}/q{index}", self.name);
        let fault_name = name.clone();
        Ok(QueueBinding {
            name,
            worker,
            kick,
            interrupt,
            on_fault: Box::new(move |fault: &QueueFault| {
                warn!("{fault_name}: {fault}; the device needs a reset");
                signals.set_needs_reset();
            }),
        })
    }

    fn fail(&mut self, reason: &str) {
        warn!("{}: cannot start the device: {reason}", self.name);
        self.signals.set_needs_reset();
    }

    /// A platform reset (the guest rebooted in place): the device as firmware left it at
    /// power-on. Its queues are taken back (requests in flight complete first, so that
    /// nothing writes guest RAM afterwards), MSI-X is off with every vector masked, and
    /// BAR0 stays where firmware placed it.
    pub fn platform_reset(&mut self) {
        self.reset();
        let control = self.caps.msix + MSIX_CONTROL_OFFSET;
        let (register, offset) = (control / 4, (control % 4) as u8);
        self.config.write_register(register, offset, &[0, 0]);
        self.msix.reset();
    }

    /// Device status 0: take every queue back from the reactors (waiting for requests in
    /// flight), then forget everything the driver set up.
    fn reset(&mut self) {
        for handle in self.attached.drain(..) {
            if let Err(err) = self.queue_host.detach(handle) {
                warn!("{}: cannot take a queue back: {err}", self.name);
            }
        }
        self.device.reset();
        self.common.reset();
        self.signals.reset();
        // Stale kicks would only make the next activation drain empty rings.
        for kick in &self.kicks {
            let _ = kick.read();
        }
        debug!("{}: reset", self.name);
    }
}
