//! The virtio-console side of the rig: control messages both ways and port data.

use std::time::Duration;

use ringvisor_devices::virtio::console::{ConsoleConfig, ConsoleDevice};
use vm_memory::{Bytes, GuestAddress};

use super::{DevPathError, GuestQueue, Result, Rig};
use crate::virtq_driver::Buffer;

/// A virtio-console device on the reactors.
pub type ConsoleRig = Rig<ConsoleDevice>;

/// The control receive and transmit queues of a MULTIPORT console.
pub const CONTROL_RX: usize = 2;
pub const CONTROL_TX: usize = 3;
/// Size of a control receive buffer the rig posts: a header and a port name.
const CONTROL_BUFFER: u32 = 128;

/// A control message as the driver sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlEvent {
    pub id: u32,
    pub event: u16,
    pub value: u16,
    /// What follows the header (PORT_NAME's name).
    pub payload: Vec<u8>,
}

/// The receive queue of port `port` (its transmit queue is the next one).
pub fn port_rx_queue(port: usize) -> usize {
    if port == 0 {
        0
    } else {
        2 + 2 * port
    }
}

impl GuestQueue {
    /// Adds a device-readable buffer holding `data`; returns its head.
    pub fn post_bytes(&mut self, data: &[u8]) -> Result<u16> {
        let at = self.alloc(data.len() as u64)?;
        self.mem.write_slice(data, at)?;
        self.post_chain(&[Buffer::readable(at, data.len() as u32)])
    }
}

impl Rig<ConsoleDevice> {
    /// Serves the console's queues (one queue group) on one reactor.
    pub fn console(config: ConsoleConfig, queue_size: u16) -> Result<Self> {
        let device = ConsoleDevice::new(config).map_err(|e| {
            DevPathError::Activate(ringvisor_devices::virtio::ActivateError::Backend(
                e.to_string(),
            ))
        })?;
        Rig::with_device(device, "console", &[None], queue_size, None)
    }

    /// Posts `count` control receive buffers; returns their addresses by head.
    pub fn post_control_buffers(&mut self, count: usize) -> Result<Vec<(u16, GuestAddress)>> {
        let queue = self.queue(CONTROL_RX)?;
        let mut posted = Vec::with_capacity(count);
        for _ in 0..count {
            posted.push(queue.post_rx_buffer(CONTROL_BUFFER)?);
        }
        queue.kick()?;
        Ok(posted)
    }

    /// Sends one control message to the device and waits until it is consumed.
    pub fn send_control(&mut self, id: u32, event: u16, value: u16) -> Result<()> {
        let mut bytes = id.to_le_bytes().to_vec();
        bytes.extend(event.to_le_bytes());
        bytes.extend(value.to_le_bytes());
        let queue = self.queue(CONTROL_TX)?;
        queue.post_bytes(&bytes)?;
        queue.kick()?;
        self.wait_used(CONTROL_TX, 1)?;
        Ok(())
    }

    /// Waits for `count` control messages in the buffers `posted` (from
    /// [`post_control_buffers`](Self::post_control_buffers)); decodes them in order.
    pub fn receive_control(
        &mut self,
        posted: &[(u16, GuestAddress)],
        count: usize,
    ) -> Result<Vec<ControlEvent>> {
        let used = self.wait_used(CONTROL_RX, count)?;
        let mut events = Vec::with_capacity(used.len());
        for (head, len) in used {
            let Some(&(_, at)) = posted.iter().find(|(h, _)| *h == head) else {
                continue;
            };
            let mut bytes = vec![0u8; len as usize];
            self.mem().read_slice(&mut bytes, at)?;
            if bytes.len() < 8 {
                continue;
            }
            events.push(ControlEvent {
                id: u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]),
                event: u16::from_le_bytes([bytes[4], bytes[5]]),
                value: u16::from_le_bytes([bytes[6], bytes[7]]),
                payload: bytes[8..].to_vec(),
            });
        }
        Ok(events)
    }

    /// Whether used entries wait on `queue` after `wait`, without taking them.
    pub fn used_within(&mut self, queue: usize, wait: Duration) -> Result<bool> {
        self.queue(queue)?.wait_interrupt(wait)
    }
}
