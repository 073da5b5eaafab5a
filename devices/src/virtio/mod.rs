//! What every virtio device offers its transport (virtio-pci in the VMM), independent of
//! the transport itself.

pub mod backing;
pub mod balloon;
pub mod block;
mod chain;
pub mod console;
#[doc(hidden)]
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod input;
pub mod net;
mod queue_ring;
pub mod scsi;
#[cfg(test)]
mod test_util;

use ringvisor_io::QueueWorker;
use virtio_queue::Queue;
use vm_memory::GuestMemoryMmap;

pub type GuestMemory = GuestMemoryMmap<()>;

/// VIRTIO_F_VERSION_1: every ringvisor device is a modern (non-transitional) device.
pub const VIRTIO_F_VERSION_1: u64 = 1 << 32;
/// VIRTIO_F_RING_INDIRECT_DESC.
pub const VIRTIO_F_RING_INDIRECT_DESC: u64 = 1 << 28;
/// VIRTIO_F_RING_EVENT_IDX.
pub const VIRTIO_F_RING_EVENT_IDX: u64 = 1 << 29;

/// Copies the configuration-space bytes at `offset` into `data`; bytes past the end of
/// `space` (or offsets that overflow) read as 0.
pub(crate) fn read_config_space(space: &[u8], offset: u64, data: &mut [u8]) {
    for (i, byte) in data.iter_mut().enumerate() {
        *byte = usize::try_from(offset)
            .ok()
            .and_then(|o| o.checked_add(i))
            .and_then(|o| space.get(o))
            .copied()
            .unwrap_or(0);
    }
}

/// The workers of an activated device, by queue index.
pub type QueueWorkers = Vec<(u16, Box<dyn QueueWorker>)>;

/// Why a device refused DRIVER_OK.
#[derive(Debug, thiserror::Error)]
pub enum ActivateError {
    #[error("the driver set up {got} queues, the device needs {want}")]
    QueueCount { got: usize, want: usize },
    #[error("queue {0} is not valid in guest memory")]
    InvalidQueue(usize),
    #[error("the device cannot start: {0}")]
    Backend(String),
}

/// A virtio device: its identity, feature bits and configuration space, and the workers
/// that serve its queues once the driver is ready.
pub trait VirtioDevice: Send {
    /// The virtio device ID (2 = block, 8 = SCSI, 1 = network, ...).
    fn device_type(&self) -> u32;

    /// The largest size of each queue, in queue order.
    fn queue_max_sizes(&self) -> Vec<u16>;

    /// Queues with the same group are served by the same reactor (a NIC's receive and
    /// transmit queue of one pair); by default every queue is its own group.
    fn queue_group(&self, index: u16) -> u16 {
        index
    }

    /// The feature bits the device offers.
    fn offered_features(&self) -> u64;

    /// Reads the device-specific configuration space at `offset`; bytes past its end read 0.
    fn read_config(&self, offset: u64, data: &mut [u8]);

    /// Writes the device-specific configuration space; read-only fields ignore writes.
    fn write_config(&mut self, offset: u64, data: &[u8]);

    /// DRIVER_OK: `queues` are the enabled queues, ready, in queue order with their index.
    /// Returns one worker per queue, in the same order, for the reactors to drive.
    fn activate(
        &mut self,
        mem: GuestMemory,
        acked_features: u64,
        queues: Vec<(u16, Queue)>,
    ) -> Result<QueueWorkers, ActivateError>;

    /// The driver reset the device: the transport has already taken every queue back from
    /// the reactors (no request in flight); the device forgets the activation.
    fn reset(&mut self);
}
