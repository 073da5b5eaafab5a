//! virtio-scsi (virtio 1.2, section 5.6): one controller with up to thousands of logical
//! units, each a raw file or host block device behind a SPC-4/SBC-3 target.
//!
//! [`ScsiDevice`] is what the transport talks to. Activation hands the reactors one
//! [`ScsiRequestWorker`] per request queue (commands become io_uring reads, writes,
//! fdatasyncs and fallocates), a [`ScsiControlWorker`] for task management and an
//! [`ScsiEventWorker`] that holds the event buffers.

mod cdb;
mod control;
mod inquiry;
mod lun;
mod mode;
pub mod protocol;
mod request;
mod sense;
mod target;
mod worker;

#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use log::debug;
use ringvisor_io::QueueWorker;
use virtio_queue::{Queue, QueueT};

use super::backing::{backing_size, open_backing, BackingError};
use super::{
    ActivateError, GuestMemory, QueueWorkers, VirtioDevice, VIRTIO_F_RING_EVENT_IDX,
    VIRTIO_F_RING_INDIRECT_DESC, VIRTIO_F_VERSION_1,
};
pub use control::{ScsiControlStats, ScsiControlWorker, ScsiEventWorker};
use lun::{LogicalUnit, BLOCK_SHIFT, MAX_TRANSFER_BLOCKS};
pub use protocol::VIRTIO_ID_SCSI;
use protocol::{
    config, LunAddress, CONTROL_QUEUE, DEFAULT_CDB_SIZE, DEFAULT_SENSE_SIZE, EVENT_INFO_SIZE,
    EVENT_QUEUE, FIRST_REQUEST_QUEUE, MAX_CDB_SIZE, MAX_LUN, MAX_SENSE_SIZE, MAX_TARGET,
};
use request::Geometry;
use target::Luns;
pub use worker::{ScsiQueueStats, ScsiRequestWorker};

/// Largest size of every queue.
pub const QUEUE_MAX_SIZE: u16 = 256;
/// Most request queues.
pub const MAX_REQUEST_QUEUES: u16 = 64;
/// Most logical units per controller (each keeps its backing file open).
pub const MAX_UNITS: usize = 4096;
/// Data descriptors per request: a chain also carries the request and response headers.
const SEG_MAX: u32 = QUEUE_MAX_SIZE as u32 - 2;
/// Commands Linux may queue per logical unit.
const CMD_PER_LUN: u32 = 128;

/// One `--scsi-disk`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScsiDiskConfig {
    pub path: PathBuf,
    /// Target and LUN; assigned when omitted.
    pub target: Option<u16>,
    pub lun: Option<u32>,
    pub read_only: bool,
    pub direct: bool,
    /// Unit serial number (VPD page 0x80); derived from the address when omitted.
    pub serial: Option<String>,
}

/// The controller: its request queues and logical units.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScsiConfig {
    pub queues: u16,
    pub disks: Vec<ScsiDiskConfig>,
}

#[derive(Debug, thiserror::Error)]
pub enum ScsiError {
    #[error(transparent)]
    Backing(#[from] BackingError),
    #[error("scsi: {queues} request queues asked for, 1 to {MAX_REQUEST_QUEUES} supported")]
    QueueCount { queues: u16 },
    #[error("scsi-disk {path}: target {target} is out of range (0 to {MAX_TARGET})")]
    TargetRange { path: PathBuf, target: u16 },
    #[error("scsi-disk {path}: lun {lun} is out of range (0 to {MAX_LUN})")]
    LunRange { path: PathBuf, lun: u32 },
    #[error("scsi-disk {path}: target {target} lun {lun} is already taken")]
    Duplicate {
        path: PathBuf,
        target: u16,
        lun: u32,
    },
    #[error("scsi-disk {path}: no free target/lun is left")]
    NoFreeAddress { path: PathBuf },
    #[error("scsi: {count} disks, at most {MAX_UNITS} per controller")]
    TooManyUnits { count: usize },
    #[error("scsi-disk {path}: {bytes} bytes, smaller than one 512-byte block")]
    TooSmall { path: PathBuf, bytes: u64 },
    #[error("scsi-disk {path}: serial {serial:?} must be 1 to 64 printable ASCII characters")]
    BadSerial { path: PathBuf, serial: String },
}

/// Whether `serial` can be a unit serial number (VPD page 0x80): 1 to 64 printable ASCII
/// characters.
pub fn valid_serial(serial: &str) -> bool {
    (1..=64).contains(&serial.len()) && serial.bytes().all(|b| b.is_ascii_graphic())
}

/// Gives every disk its (target, LUN): explicit ones first (duplicates refused), then
/// the rest in order: a free target's LUN 0 while targets last, then the next free LUN.
pub fn assign_addresses(disks: &[ScsiDiskConfig]) -> Result<Vec<LunAddress>, ScsiError> {
    if disks.len() > MAX_UNITS {
        return Err(ScsiError::TooManyUnits { count: disks.len() });
    }
    let mut taken = BTreeSet::new();
    let mut fixed = vec![None; disks.len()];
    for (i, disk) in disks.iter().enumerate() {
        if let Some(target) = disk.target {
            if target > MAX_TARGET {
                return Err(ScsiError::TargetRange {
                    path: disk.path.clone(),
                    target,
                });
            }
        }
        if let Some(lun) = disk.lun {
            if lun > MAX_LUN {
                return Err(ScsiError::LunRange {
                    path: disk.path.clone(),
                    lun,
                });
            }
        }
        if let (Some(target), Some(lun)) = (disk.target, disk.lun) {
            let address = LunAddress { target, lun };
            if !taken.insert(address) {
                return Err(ScsiError::Duplicate {
                    path: disk.path.clone(),
                    target,
                    lun,
                });
            }
            fixed[i] = Some(address);
        }
    }
    let mut out = Vec::with_capacity(disks.len());
    for (disk, fixed) in disks.iter().zip(fixed) {
        let address = match fixed {
            Some(address) => address,
            None => {
                let free = |a: &LunAddress| !taken.contains(a);
                let found = match (disk.target, disk.lun) {
                    (Some(target), None) => (0..=MAX_LUN)
                        .map(|lun| LunAddress { target, lun })
                        .find(free),
                    (None, Some(lun)) => (0..=MAX_TARGET)
                        .map(|target| LunAddress { target, lun })
                        .find(free),
                    _ => (0..=MAX_LUN)
                        .flat_map(|lun| {
                            (0..=MAX_TARGET).map(move |target| LunAddress { target, lun })
                        })
                        .find(free),
                };
                let address = found.ok_or_else(|| ScsiError::NoFreeAddress {
                    path: disk.path.clone(),
                })?;
                taken.insert(address);
                address
            }
        };
        out.push(address);
    }
    Ok(out)
}

/// A virtio-scsi controller.
pub struct ScsiDevice {
    luns: Arc<Luns>,
    request_queues: u16,
    config_space: [u8; config::LEN],
    activated: bool,
}

impl std::fmt::Debug for ScsiDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScsiDevice")
            .field("units", &self.luns.units().count())
            .field("request_queues", &self.request_queues)
            .finish()
    }
}

impl ScsiDevice {
    /// Opens every disk of `config`.
    pub fn new(config: ScsiConfig) -> Result<Self, ScsiError> {
        if config.queues == 0 || config.queues > MAX_REQUEST_QUEUES {
            return Err(ScsiError::QueueCount {
                queues: config.queues,
            });
        }
        let addresses = assign_addresses(&config.disks)?;
        let mut luns = Luns::default();
        for (disk, address) in config.disks.into_iter().zip(addresses) {
            let serial = disk
                .serial
                .clone()
                .unwrap_or_else(|| format!("rv-scsi-{}-{}", address.target, address.lun));
            if !valid_serial(&serial) {
                return Err(ScsiError::BadSerial {
                    path: disk.path,
                    serial,
                });
            }
            let (file, direct) = open_backing(&disk.path, disk.read_only, disk.direct)?;
            let bytes = backing_size(&file, &disk.path)?;
            if bytes >> BLOCK_SHIFT == 0 {
                return Err(ScsiError::TooSmall {
                    path: disk.path,
                    bytes,
                });
            }
            let unit = LogicalUnit::new(
                address,
                &disk.path,
                file,
                bytes,
                disk.read_only,
                direct,
                serial,
            );
            // assign_addresses handed out distinct addresses.
            luns.insert(unit);
        }
        Ok(Self {
            luns: Arc::new(luns),
            request_queues: config.queues,
            config_space: config_space(config.queues),
            activated: false,
        })
    }

    /// The logical units: address, path, read-only, O_DIRECT.
    pub fn units(&self) -> Vec<(LunAddress, PathBuf, bool, bool)> {
        self.luns
            .units()
            .map(|u| (u.address, u.path().to_owned(), u.read_only, u.direct))
            .collect()
    }

    pub fn request_queues(&self) -> u16 {
        self.request_queues
    }

    pub fn is_activated(&self) -> bool {
        self.activated
    }

    fn geometry(&self) -> Geometry {
        let word = |at: usize| {
            let mut b = [0u8; 4];
            b.copy_from_slice(&self.config_space[at..at + 4]);
            u32::from_le_bytes(b)
        };
        Geometry {
            cdb_size: word(config::CDB_SIZE),
            sense_size: word(config::SENSE_SIZE),
        }
    }
}

fn config_space(queues: u16) -> [u8; config::LEN] {
    let mut c = [0u8; config::LEN];
    let mut put = |at: usize, bytes: &[u8]| c[at..at + bytes.len()].copy_from_slice(bytes);
    put(config::NUM_QUEUES, &u32::from(queues).to_le_bytes());
    put(config::SEG_MAX, &SEG_MAX.to_le_bytes());
    put(config::MAX_SECTORS, &MAX_TRANSFER_BLOCKS.to_le_bytes());
    put(config::CMD_PER_LUN, &CMD_PER_LUN.to_le_bytes());
    put(config::EVENT_INFO_SIZE, &EVENT_INFO_SIZE.to_le_bytes());
    put(config::SENSE_SIZE, &DEFAULT_SENSE_SIZE.to_le_bytes());
    put(config::CDB_SIZE, &DEFAULT_CDB_SIZE.to_le_bytes());
    put(config::MAX_CHANNEL, &0u16.to_le_bytes());
    put(config::MAX_TARGET, &MAX_TARGET.to_le_bytes());
    put(config::MAX_LUN, &MAX_LUN.to_le_bytes());
    c
}

impl VirtioDevice for ScsiDevice {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_SCSI
    }

    fn queue_max_sizes(&self) -> Vec<u16> {
        vec![QUEUE_MAX_SIZE; usize::from(FIRST_REQUEST_QUEUE + self.request_queues)]
    }

    fn offered_features(&self) -> u64 {
        VIRTIO_F_VERSION_1 | VIRTIO_F_RING_INDIRECT_DESC | VIRTIO_F_RING_EVENT_IDX
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        super::read_config_space(&self.config_space, offset, data);
    }

    fn write_config(&mut self, offset: u64, data: &[u8]) {
        // Only sense_size and cdb_size are writable, as whole 32-bit fields, and only
        // before activation.
        let Ok(value) = <[u8; 4]>::try_from(data).map(u32::from_le_bytes) else {
            debug!(
                "virtio-scsi: ignored {}-byte config write at {offset:#x}",
                data.len()
            );
            return;
        };
        let (at, max) = match usize::try_from(offset) {
            Ok(config::SENSE_SIZE) => (config::SENSE_SIZE, MAX_SENSE_SIZE),
            Ok(config::CDB_SIZE) => (config::CDB_SIZE, MAX_CDB_SIZE),
            _ => {
                debug!("virtio-scsi: ignored config write at {offset:#x}");
                return;
            }
        };
        // A CDB area shorter than 6 bytes cannot hold any command.
        let min = if at == config::CDB_SIZE { 6 } else { 0 };
        if self.activated || value < min || value > max {
            debug!("virtio-scsi: refused config value {value} at {offset:#x}");
            return;
        }
        self.config_space[at..at + 4].copy_from_slice(&value.to_le_bytes());
    }

    fn activate(
        &mut self,
        mem: GuestMemory,
        acked_features: u64,
        queues: Vec<(u16, Queue)>,
    ) -> Result<QueueWorkers, ActivateError> {
        let total = usize::from(FIRST_REQUEST_QUEUE + self.request_queues);
        // Control, event and at least one request queue.
        if queues.len() < usize::from(FIRST_REQUEST_QUEUE) + 1 || queues.len() > total {
            return Err(ActivateError::QueueCount {
                got: queues.len(),
                want: total,
            });
        }
        let event_idx = acked_features & VIRTIO_F_RING_EVENT_IDX != 0;
        let geometry = self.geometry();
        let mut taken = vec![false; total];
        let mut workers: QueueWorkers = Vec::with_capacity(queues.len());
        for (index, mut queue) in queues {
            let slot = taken.get_mut(usize::from(index));
            if slot.as_deref() != Some(&false) || !queue.is_valid(&mem) {
                return Err(ActivateError::InvalidQueue(usize::from(index)));
            }
            if let Some(slot) = slot {
                *slot = true;
            }
            queue.set_event_idx(event_idx);
            let luns = Arc::clone(&self.luns);
            let worker: Box<dyn QueueWorker> = match index {
                CONTROL_QUEUE => Box::new(ScsiControlWorker::new(index, queue, mem.clone(), luns)),
                EVENT_QUEUE => Box::new(ScsiEventWorker),
                _ => Box::new(ScsiRequestWorker::new(
                    index,
                    queue,
                    mem.clone(),
                    luns,
                    geometry,
                )),
            };
            workers.push((index, worker));
        }
        if !taken[usize::from(CONTROL_QUEUE)] || !taken[usize::from(EVENT_QUEUE)] {
            return Err(ActivateError::QueueCount {
                got: workers.len(),
                want: total,
            });
        }
        self.activated = true;
        Ok(workers)
    }

    fn reset(&mut self) {
        self.activated = false;
        self.config_space = config_space(self.request_queues);
    }
}
