//! virtio-input (virtio 1.2, section 5.8): a keyboard or an absolute pointer (a tablet)
//! for the guest, fed by the host (the VNC server) through an [`InputHandle`].
//!
//! The device speaks evdev: the driver learns from the configuration space which event
//! types and codes the device reports ([`config`]), then receives `struct
//! virtio_input_event`s on eventq (queue 0), one per buffer it posted, and sends events
//! back on statusq (queue 1), the keyboard LEDs. Both queues are served on the reactor
//! the transport picks (the low-priority one in the VMM); the handle wakes the event
//! queue's worker through an eventfd that reactor reads.
//!
//! Input waits in a bounded queue while the guest has no buffers posted: a guest that
//! stops reading loses its oldest input, never grows the VMM.

pub mod config;
pub mod evdev;
mod handle;
pub mod keymap;
mod worker;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use log::debug;
use ringvisor_io::QueueWorker;
use virtio_queue::{Queue, QueueT};

use super::{ActivateError, GuestMemory, QueueWorkers, VirtioDevice, VIRTIO_F_VERSION_1};
pub use config::ABS_MAX;
use config::{ConfigSpace, OFFSET_SELECT, OFFSET_SUBSEL};
use handle::Shared;
pub use handle::{
    InputEvent, InputHandle, InputStats, LedState, BUTTON_LEFT, BUTTON_MIDDLE, BUTTON_RIGHT,
    EVENT_LEN, MAX_PENDING_EVENTS,
};
pub use keymap::keysym_to_linux;
pub use worker::{InputEventWorker, InputStatusWorker};

/// The virtio device ID of an input device.
pub const VIRTIO_ID_INPUT: u32 = 18;
/// Size of both queues: Linux posts at most 64 event buffers whatever the size.
pub const QUEUE_MAX_SIZE: u16 = 64;
/// eventq and statusq.
const QUEUE_COUNT: usize = 2;
/// Device to driver: input events.
pub const EVENT_QUEUE: u16 = 0;
/// Driver to device: LED state.
pub const STATUS_QUEUE: u16 = 1;

/// Which device the guest sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    /// A US keyboard: every key code below the button range, with Num, Caps and Scroll
    /// Lock LEDs and key repeat.
    Keyboard,
    /// An absolute pointer: X and Y in 0..=[`ABS_MAX`], left, middle and right buttons
    /// and a wheel.
    Tablet,
}

/// Why a device cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("cannot create the eventfd that wakes the event queue: {0}")]
    WakeEvent(#[source] std::io::Error),
}

/// A virtio-input device.
pub struct InputDevice {
    shared: Arc<Shared>,
    config: ConfigSpace,
    activated: bool,
}

impl InputDevice {
    pub fn new(kind: InputKind) -> Result<Self, InputError> {
        let shared = Arc::new(Shared::new(kind).map_err(InputError::WakeEvent)?);
        let config = ConfigSpace::new(shared.caps.clone());
        Ok(Self {
            shared,
            config,
            activated: false,
        })
    }

    pub fn kind(&self) -> InputKind {
        self.shared.caps.kind()
    }

    /// The handle the host feeds input through; valid before activation and across
    /// resets (input produced while no driver has the device is dropped and counted).
    pub fn handle(&self) -> InputHandle {
        InputHandle::new(Arc::clone(&self.shared))
    }

    /// Whether the driver activated the device and has not reset it since.
    pub fn is_activated(&self) -> bool {
        self.activated
    }
}

impl VirtioDevice for InputDevice {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_INPUT
    }

    fn queue_max_sizes(&self) -> Vec<u16> {
        vec![QUEUE_MAX_SIZE; QUEUE_COUNT]
    }

    fn offered_features(&self) -> u64 {
        // Nothing device-specific exists (5.8.3); one buffer per event gains nothing
        // from indirect descriptors or event suppression.
        VIRTIO_F_VERSION_1
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        super::read_config_space(self.config.bytes(), offset, data);
    }

    fn write_config(&mut self, offset: u64, data: &[u8]) {
        // Only select and subsel are the driver's; merging byte by byte accepts any
        // access width, even one that spills past them (whose other bytes are dropped).
        let (mut select, mut subsel) = self.config.selectors();
        let mut ignored = 0usize;
        for (i, &byte) in data.iter().enumerate() {
            match usize::try_from(offset).ok().and_then(|o| o.checked_add(i)) {
                Some(OFFSET_SELECT) => select = byte,
                Some(OFFSET_SUBSEL) => subsel = byte,
                _ => ignored += 1,
            }
        }
        if ignored > 0 {
            debug!("virtio-input: ignored {ignored} config bytes written at {offset:#x}");
        }
        if ignored < data.len() {
            self.config.select(select, subsel);
        }
    }

    fn activate(
        &mut self,
        mem: GuestMemory,
        _acked_features: u64,
        queues: Vec<(u16, Queue)>,
    ) -> Result<QueueWorkers, ActivateError> {
        if queues.len() != QUEUE_COUNT {
            return Err(ActivateError::QueueCount {
                got: queues.len(),
                want: QUEUE_COUNT,
            });
        }
        let mut workers: QueueWorkers = Vec::with_capacity(QUEUE_COUNT);
        for (position, (index, queue)) in queues.into_iter().enumerate() {
            if usize::from(index) != position || !queue.is_valid(&mem) {
                return Err(ActivateError::InvalidQueue(usize::from(index)));
            }
            let shared = Arc::clone(&self.shared);
            let worker: Box<dyn QueueWorker> = if index == EVENT_QUEUE {
                Box::new(InputEventWorker::new(index, queue, mem.clone(), shared))
            } else {
                Box::new(InputStatusWorker::new(index, queue, mem.clone(), shared))
            };
            workers.push((index, worker));
        }
        self.shared.set_active(true);
        self.activated = true;
        Ok(workers)
    }

    fn reset(&mut self) {
        // The workers went with the transport's detach; queued input was for the driver
        // that is gone.
        self.shared.set_active(false);
        self.activated = false;
        self.config = ConfigSpace::new(self.shared.caps.clone());
    }
}
