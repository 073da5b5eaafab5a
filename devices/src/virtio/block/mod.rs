//! virtio-blk (virtio 1.2, section 5.2) over a raw image file or a host block device.
//!
//! [`BlockDevice`] is the part the transport talks to: features, configuration space and
//! activation. Activation hands one [`BlockQueueWorker`] per queue to the reactors, which
//! turn requests into io_uring reads, writes, fdatasyncs and fallocates on the shared fd.

mod request;
mod worker;

#[cfg(test)]
mod tests;

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use log::{debug, info, warn};
use ringvisor_io::QueueWorker;
use virtio_bindings::virtio_blk::{
    VIRTIO_BLK_F_BLK_SIZE, VIRTIO_BLK_F_DISCARD, VIRTIO_BLK_F_FLUSH, VIRTIO_BLK_F_MQ,
    VIRTIO_BLK_F_RO, VIRTIO_BLK_F_SEG_MAX, VIRTIO_BLK_F_SIZE_MAX, VIRTIO_BLK_F_TOPOLOGY,
    VIRTIO_BLK_F_WRITE_ZEROES, VIRTIO_BLK_ID_BYTES,
};
use virtio_queue::{Queue, QueueT};

use super::backing::{backing_size, open_backing, BackingError};
use super::{
    ActivateError, GuestMemory, QueueWorkers, VirtioDevice, VIRTIO_F_RING_EVENT_IDX,
    VIRTIO_F_RING_INDIRECT_DESC, VIRTIO_F_VERSION_1,
};
use crate::nvme::{is_passthrough_path, Namespace, NamespaceError};
use request::Disk;
pub use worker::{BlockQueueStats, BlockQueueWorker};

/// The virtio device ID of a block device.
pub const VIRTIO_ID_BLOCK: u32 = 2;
/// Largest size of every request queue.
pub const QUEUE_MAX_SIZE: u16 = 256;
/// Most queues a device may have (Linux uses at most one per vCPU).
pub const MAX_QUEUES: u16 = 64;

/// The exposed logical block size is 512 bytes.
const SECTOR_SHIFT: u32 = 9;
const SECTOR_SIZE: u64 = 1 << SECTOR_SHIFT;
/// Data descriptors per request: a chain also carries the header and the status.
const SEG_MAX: u32 = QUEUE_MAX_SIZE as u32 - 2;
/// Largest single data buffer. Any size works here; this bound keeps a whole request
/// (SEG_MAX * SIZE_MAX, 254 MiB) under what one read/write syscall transfers (2 GiB).
const SIZE_MAX: u32 = 1 << 20;
/// Largest discard / write-zeroes range (2 GiB), so one fallocate stays short.
const MAX_DISCARD_SECTORS: u32 = (1 << 31) >> SECTOR_SHIFT;
const MAX_WRITE_ZEROES_SECTORS: u32 = MAX_DISCARD_SECTORS;

/// Bytes of `struct virtio_blk_config` up to and including the write-zeroes fields (the
/// secure-erase and zoned fields are not offered).
const CONFIG_LEN: usize = 60;

/// How to expose a disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockConfig {
    /// A raw image file or a host block device.
    pub path: PathBuf,
    pub read_only: bool,
    /// Bypass the host page cache (O_DIRECT) when the filesystem allows it.
    pub direct: bool,
    /// Number of request queues, 1..=[`MAX_QUEUES`].
    pub queues: u16,
    /// GET_ID answer, at most 20 bytes; none reads as an empty serial.
    pub serial: Option<String>,
}

/// Why a disk cannot be exposed.
#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    #[error(transparent)]
    Backing(#[from] BackingError),
    #[error("disk {path} is {bytes} bytes, smaller than one 512-byte sector")]
    TooSmall { path: PathBuf, bytes: u64 },
    #[error("disk {path}: {queues} queues requested, 1 to {MAX_QUEUES} supported")]
    QueueCount { path: PathBuf, queues: u16 },
    #[error("disk {path}: serial {serial:?} is longer than 20 bytes")]
    SerialTooLong { path: PathBuf, serial: String },
    #[error(transparent)]
    Nvme(#[from] NamespaceError),
}

/// A virtio-blk device.
#[derive(Debug)]
pub struct BlockDevice {
    path: PathBuf,
    file: Arc<File>,
    disk: Disk,
    queues: u16,
    features: u64,
    config_space: [u8; CONFIG_LEN],
    activated: bool,
}

impl BlockDevice {
    /// Opens the disk described by `config`.
    pub fn new(config: BlockConfig) -> Result<Self, BlockError> {
        let path = config.path;
        if config.queues == 0 || config.queues > MAX_QUEUES {
            return Err(BlockError::QueueCount {
                path,
                queues: config.queues,
            });
        }
        let mut id = [0u8; VIRTIO_BLK_ID_BYTES as usize];
        if let Some(serial) = config.serial {
            match id.get_mut(..serial.len()) {
                Some(dst) => dst.copy_from_slice(serial.as_bytes()),
                None => return Err(BlockError::SerialTooLong { path, serial }),
            }
        }

        // A character device is an NVMe namespace's generic device: passthrough.
        let (file, direct, nvme) = if is_passthrough_path(&path) {
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(!config.read_only)
                .open(&path)
                .map_err(|source| BackingError::Open {
                    path: path.clone(),
                    source,
                })?;
            let namespace = Namespace::identify(&file, &path)?;
            info!(
                "disk {}: NVMe passthrough to namespace {}, {} blocks of {} bytes, \
                 {} KiB per command",
                path.display(),
                namespace.nsid,
                namespace.blocks,
                namespace.block_size(),
                namespace.max_transfer >> 10
            );
            (file, false, Some(namespace))
        } else {
            let (file, direct) = open_backing(&path, config.read_only, config.direct)?;
            (file, direct, None)
        };
        let bytes = match &nvme {
            Some(namespace) => namespace.bytes(),
            None => backing_size(&file, &path)?,
        };
        if bytes < SECTOR_SIZE {
            return Err(BlockError::TooSmall { path, bytes });
        }
        let tail = bytes & (SECTOR_SIZE - 1);
        if tail != 0 {
            warn!(
                "disk {}: size {bytes} is not a multiple of 512, the last {tail} bytes are not exposed",
                path.display(),
            );
        }
        let disk = Disk {
            fd: file.as_raw_fd(),
            capacity: bytes >> SECTOR_SHIFT,
            read_only: config.read_only,
            direct,
            id,
            nvme,
        };
        Ok(Self {
            features: features(config.read_only, config.queues, nvme.as_ref()),
            config_space: config_space(disk.capacity, config.queues, nvme.as_ref()),
            path,
            file: Arc::new(file),
            disk,
            queues: config.queues,
            activated: false,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Size of the disk in 512-byte sectors.
    pub fn capacity_sectors(&self) -> u64 {
        self.disk.capacity
    }

    pub fn read_only(&self) -> bool {
        self.disk.read_only
    }

    /// Whether I/O bypasses the host page cache (O_DIRECT was asked for and accepted,
    /// or the disk is an NVMe namespace served by passthrough).
    pub fn direct(&self) -> bool {
        self.disk.direct || self.disk.nvme.is_some()
    }

    /// The NVMe namespace the disk passes its requests to, when it is one.
    pub fn nvme_namespace(&self) -> Option<&Namespace> {
        self.disk.nvme.as_ref()
    }

    pub fn num_queues(&self) -> u16 {
        self.queues
    }

    /// Whether the driver activated the device and has not reset it since.
    pub fn is_activated(&self) -> bool {
        self.activated
    }
}

fn features(read_only: bool, queues: u16, nvme: Option<&Namespace>) -> u64 {
    let bit = |b: u32| 1u64 << b;
    let mut features = VIRTIO_F_VERSION_1
        | VIRTIO_F_RING_INDIRECT_DESC
        | VIRTIO_F_RING_EVENT_IDX
        | bit(VIRTIO_BLK_F_SIZE_MAX)
        | bit(VIRTIO_BLK_F_SEG_MAX)
        | bit(VIRTIO_BLK_F_BLK_SIZE)
        | bit(VIRTIO_BLK_F_FLUSH)
        | bit(VIRTIO_BLK_F_TOPOLOGY);
    if queues > 1 {
        features |= bit(VIRTIO_BLK_F_MQ);
    }
    if read_only {
        features |= bit(VIRTIO_BLK_F_RO);
    } else {
        // A namespace offers what its controller supports (ONCS).
        if nvme.is_none_or(|ns| ns.dataset_management) {
            features |= bit(VIRTIO_BLK_F_DISCARD);
        }
        if nvme.is_none_or(|ns| ns.write_zeroes) {
            features |= bit(VIRTIO_BLK_F_WRITE_ZEROES);
        }
    }
    features
}

/// `struct virtio_blk_config`, little-endian, laid out by offset. A namespace's logical
/// block size becomes the disk's (blk_size, and the discard alignment).
fn config_space(capacity: u64, queues: u16, nvme: Option<&Namespace>) -> [u8; CONFIG_LEN] {
    let block_size = nvme.map_or(SECTOR_SIZE as u32, Namespace::block_size);
    let mut c = [0u8; CONFIG_LEN];
    let mut put =
        |offset: usize, bytes: &[u8]| c[offset..offset + bytes.len()].copy_from_slice(bytes);
    put(0, &capacity.to_le_bytes());
    put(8, &SIZE_MAX.to_le_bytes());
    put(12, &SEG_MAX.to_le_bytes());
    // 16..20: geometry, not offered.
    put(20, &block_size.to_le_bytes());
    // Topology: physical_block_exp 0 and alignment_offset 0 (24, 25), min_io_size 1
    // logical block, opt_io_size 0 (no preference).
    put(26, &1u16.to_le_bytes());
    put(28, &0u32.to_le_bytes());
    // 32: writeback (CONFIG_WCE not offered), 33: unused.
    put(34, &queues.to_le_bytes());
    put(36, &MAX_DISCARD_SECTORS.to_le_bytes());
    put(40, &1u32.to_le_bytes()); // max_discard_seg
                                  // discard_sector_alignment, in 512-byte sectors
    put(44, &(block_size >> SECTOR_SHIFT).to_le_bytes());
    put(48, &MAX_WRITE_ZEROES_SECTORS.to_le_bytes());
    put(52, &1u32.to_le_bytes()); // max_write_zeroes_seg
    c[56] = 1; // write_zeroes_may_unmap: UNMAP write-zeroes punch holes
    c
}

impl VirtioDevice for BlockDevice {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_BLOCK
    }

    fn queue_max_sizes(&self) -> Vec<u16> {
        vec![QUEUE_MAX_SIZE; usize::from(self.queues)]
    }

    fn offered_features(&self) -> u64 {
        self.features
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        super::read_config_space(&self.config_space, offset, data);
    }

    fn write_config(&mut self, offset: u64, data: &[u8]) {
        // Every field is read-only without VIRTIO_BLK_F_CONFIG_WCE.
        debug!(
            "disk {}: ignored config write of {} bytes at {offset:#x}",
            self.path.display(),
            data.len()
        );
    }

    fn activate(
        &mut self,
        mem: GuestMemory,
        acked_features: u64,
        queues: Vec<(u16, Queue)>,
    ) -> Result<QueueWorkers, ActivateError> {
        // Without MQ the driver uses queue 0 only; with it, Linux may use fewer queues than
        // num_queues (one per vCPU).
        if queues.is_empty() || queues.len() > usize::from(self.queues) {
            return Err(ActivateError::QueueCount {
                got: queues.len(),
                want: usize::from(self.queues),
            });
        }
        let event_idx = acked_features & VIRTIO_F_RING_EVENT_IDX != 0;
        let mut workers: Vec<(u16, Box<dyn QueueWorker>)> = Vec::with_capacity(queues.len());
        let mut taken = vec![false; usize::from(self.queues)];
        for (index, mut queue) in queues {
            let slot = taken.get_mut(usize::from(index));
            if slot.as_deref() != Some(&false) || !queue.is_valid(&mem) {
                return Err(ActivateError::InvalidQueue(usize::from(index)));
            }
            if let Some(slot) = slot {
                *slot = true;
            }
            queue.set_event_idx(event_idx);
            let worker = BlockQueueWorker::new(
                index,
                queue,
                mem.clone(),
                Arc::clone(&self.file),
                self.disk.clone(),
            );
            workers.push((index, Box::new(worker)));
        }
        self.activated = true;
        Ok(workers)
    }

    fn reset(&mut self) {
        // The workers (and their queues) are gone with the transport's detach; the file
        // stays open for the next activation.
        self.activated = false;
    }
}
