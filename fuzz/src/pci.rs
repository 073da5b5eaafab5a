//! Target 8: PCI configuration space (mechanism #1 at 0xCF8/0xCFC, capabilities, BAR
//! sizing and moves) and the virtio-pci BAR0: common configuration, ISR, device
//! configuration, doorbells, and the MSI-X table and PBA. The function is a real
//! virtio-pci transport around a real balloon; only the hypervisor is recorded.

use std::sync::{Arc, Mutex};

use ringvisor::mmio_bus::MmioBus;
use ringvisor::pci::virtio::{plug_virtio_pci, VirtioPciDevice, VirtioPciServices, BAR0_SIZE};
use ringvisor::pci::{
    InterruptController, IoEventRegistry, MsiMessage, PciConfigIo, PciRootBus, VmEventError,
};
use ringvisor_devices::virtio::balloon::{BalloonConfig, BalloonDevice};
use ringvisor_devices::virtio::QueueWorkers;
use ringvisor_io::{AttachedQueue, QueueBinding, QueueHost, QueueHostError};
use vmm_sys_util::eventfd::EventFd;

use crate::harness::{guest_memory, Input, Reactor};

pub const BAR: u64 = 0xc000_0000;

/// The hypervisor's side: hands out lines, accepts every route and binding.
#[derive(Default)]
struct NullVm {
    next_gsi: Mutex<u32>,
}

impl InterruptController for NullVm {
    fn allocate_msi_gsi(&self) -> Result<u32, VmEventError> {
        let mut next = self.next_gsi.lock().unwrap_or_else(|p| p.into_inner());
        *next += 1;
        Ok(*next)
    }
    fn set_msi_route(&self, _: u32, _: Option<MsiMessage>) -> Result<(), VmEventError> {
        Ok(())
    }
    fn bind_irqfd(&self, _: &EventFd, _: u32) -> Result<(), VmEventError> {
        Ok(())
    }
    fn unbind_irqfd(&self, _: &EventFd, _: u32) -> Result<(), VmEventError> {
        Ok(())
    }
}

impl IoEventRegistry for NullVm {
    fn register_ioevent(&self, _: &EventFd, _: u64) -> Result<(), VmEventError> {
        Ok(())
    }
    fn unregister_ioevent(&self, _: &EventFd, _: u64) -> Result<(), VmEventError> {
        Ok(())
    }
}

/// The reactors' side: keeps attached queues until they are taken back.
#[derive(Default)]
struct Host {
    bindings: Mutex<Vec<Option<QueueBinding>>>,
}

impl QueueHost for Host {
    fn attach(&self, binding: QueueBinding) -> Result<AttachedQueue, QueueHostError> {
        let mut bindings = self.bindings.lock().unwrap_or_else(|p| p.into_inner());
        bindings.push(Some(binding));
        Ok(AttachedQueue {
            reactor: 0,
            key: bindings.len() - 1,
        })
    }
    fn detach(&self, queue: AttachedQueue) -> Result<(), QueueHostError> {
        let mut bindings = self.bindings.lock().unwrap_or_else(|p| p.into_inner());
        match bindings.get_mut(queue.key).and_then(Option::take) {
            Some(_) => Ok(()),
            None => Err(QueueHostError::ReactorGone(queue.reactor)),
        }
    }
}

/// Bytes of one step: `[op, offset lo, offset hi, value (8 bytes)]`.
pub const STEP_LEN: usize = 11;

/// The input: steps of [`STEP_LEN`] bytes, then (after the first 0xff op byte) a guest
/// memory image for the queues a DRIVER_OK activates. `op & 3`: 0 writes and 1 reads
/// configuration mechanism #1's ports (offset `& 7`), 2 writes and 3 reads BAR0 through
/// the MMIO bus at BAR + offset (`op & 0x80`: + 64 KiB, past BAR0); `(op >> 2) & 3` picks
/// the width 1, 2, 4 or 8.
pub fn pci_config(data: &[u8]) {
    let split = data
        .chunks(STEP_LEN)
        .position(|s| s[0] == 0xff)
        .map_or(data.len(), |i| i * STEP_LEN);
    let (script, rest) = data.split_at(split);
    let image = rest.get(1..).unwrap_or(&[]);
    let mem = guest_memory(image);
    let vm = Arc::new(NullVm::default());
    let host = Arc::new(Host::default());
    let services = VirtioPciServices {
        mem,
        queue_host: host.clone(),
        interrupts: vm.clone(),
        ioevents: vm,
    };
    let balloon = BalloonDevice::new(BalloonConfig::default()).expect("a balloon");
    let device = VirtioPciDevice::new("balloon0", Box::new(balloon), &services, BAR)
        .expect("a virtio-pci function");
    let mut root = PciRootBus::new();
    let mmio = Arc::new(MmioBus::new());
    let Ok(plugged) = plug_virtio_pci(device, &mut root, &mmio) else {
        return;
    };
    let mut config_io = PciConfigIo::new(root);

    for step in script.chunks_exact(STEP_LEN) {
        let op = step[0];
        let offset = u64::from(u16::from_le_bytes([step[1], step[2]]));
        let width = 1usize << ((op >> 2) & 3);
        let mut value = [0u8; 8];
        value.copy_from_slice(&step[3..11]);
        let addr = BAR + offset + if op & 0x80 != 0 { BAR0_SIZE } else { 0 };
        match op & 3 {
            0 => config_io.write((offset & 7) as u16, &value[..width.min(4)]),
            1 => config_io.read((offset & 7) as u16, &mut value[..width.min(4)]),
            2 => mmio.write(addr, &value[..width]),
            _ => mmio.read(addr, &mut value[..width]),
        }
    }
    if let Ok(mut dev) = plugged.device.lock() {
        dev.notify_config_change();
        let _ = dev.status();
    }

    // Serve whatever queues a DRIVER_OK handed the reactors, as they would.
    let taken: Vec<QueueBinding> = host
        .bindings
        .lock()
        .map(|mut b| b.drain(..).flatten().collect())
        .unwrap_or_default();
    let mut workers: QueueWorkers = taken
        .into_iter()
        .enumerate()
        .map(|(i, b)| (i as u16, b.worker))
        .collect();
    let header = [0u8; 16];
    Reactor::new(&Input::new(&header), None).run(&mut workers, 1);
}

/// One step, for seeds.
pub fn step(op: u8, offset: u16, value: u64) -> [u8; STEP_LEN] {
    let mut s = [0u8; STEP_LEN];
    s[0] = op;
    s[1..3].copy_from_slice(&offset.to_le_bytes());
    s[3..11].copy_from_slice(&value.to_le_bytes());
    s
}
