//! What the queues of one console device share: the ports and their host ends, the
//! control messages waiting for the driver, and a way to wake another queue's worker.
//!
//! Every queue of the device is served by the same reactor thread (one queue group), so
//! the mutex around the hub is never contended; it is there because workers are `Send`.

use std::collections::VecDeque;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::{Arc, Mutex, MutexGuard};

use log::{debug, info, warn};
use vmm_sys_util::eventfd::EventFd;

use super::backend::HostLink;

/// Control events (virtio 1.2, 5.3.6.2).
pub(crate) mod event {
    pub const DEVICE_READY: u16 = 0;
    pub const DEVICE_ADD: u16 = 1;
    pub const PORT_READY: u16 = 3;
    pub const CONSOLE_PORT: u16 = 4;
    pub const PORT_OPEN: u16 = 6;
    pub const PORT_NAME: u16 = 7;
}

/// Bytes of `struct virtio_console_control`: le32 id, le16 event, le16 value.
pub(crate) const CONTROL_HEADER_LEN: usize = 8;

/// One control message, either direction; PORT_NAME carries the name after the header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ControlMessage {
    pub id: u32,
    pub event: u16,
    pub value: u16,
    pub name: Vec<u8>,
}

impl ControlMessage {
    pub fn new(id: u32, event: u16, value: u16) -> Self {
        Self {
            id,
            event,
            value,
            name: Vec::new(),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(CONTROL_HEADER_LEN + self.name.len());
        bytes.extend_from_slice(&self.id.to_le_bytes());
        bytes.extend_from_slice(&self.event.to_le_bytes());
        bytes.extend_from_slice(&self.value.to_le_bytes());
        bytes.extend_from_slice(&self.name);
        bytes
    }

    pub fn parse(header: &[u8; CONTROL_HEADER_LEN]) -> Self {
        let [a, b, c, d, e, f, g, h] = *header;
        Self::new(
            u32::from_le_bytes([a, b, c, d]),
            u16::from_le_bytes([e, f]),
            u16::from_le_bytes([g, h]),
        )
    }
}

/// Byte counts of one port.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PortStats {
    pub to_guest_bytes: u64,
    pub from_guest_bytes: u64,
    /// Guest output with nowhere to go: a console with no client, a failed output file.
    pub dropped_bytes: u64,
    pub connects: u64,
    pub disconnects: u64,
}

/// One port: port 0 is the console, the others are named.
#[derive(Debug)]
pub(crate) struct Port {
    /// `None` for the console.
    pub name: Option<String>,
    pub link: HostLink,
    /// The driver set the port up (PORT_READY).
    pub ready: bool,
    /// A guest program has the port open; Linux drops what arrives for a closed port,
    /// so host input waits (in the host's socket or pipe) until then.
    pub guest_open: bool,
    pub stats: PortStats,
}

/// The receive queue of port `port`, then its transmit queue (`+ 1`).
pub(crate) fn port_rx_queue(port: u32) -> u16 {
    if port == 0 {
        0
    } else {
        u16::try_from(2 + 2 * port).unwrap_or(u16::MAX)
    }
}

pub(crate) const CONTROL_RX_QUEUE: u16 = 2;

#[derive(Debug, Default)]
pub(crate) struct Hub {
    pub ports: Vec<Port>,
    /// Messages for the driver, in order, waiting for control receive buffers.
    pub outbox: VecDeque<ControlMessage>,
    /// The wake-up eventfd of each active queue's worker, by queue index.
    nudges: Vec<Option<Arc<EventFd>>>,
    pub bad_control: u64,
}

pub(crate) type SharedHub = Arc<Mutex<Hub>>;

pub(crate) fn lock(hub: &SharedHub) -> MutexGuard<'_, Hub> {
    hub.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Hub {
    pub fn new(ports: Vec<Port>) -> Self {
        Self {
            ports,
            ..Self::default()
        }
    }

    pub fn register_nudge(&mut self, queue: u16, event: Arc<EventFd>) {
        let index = usize::from(queue);
        if self.nudges.len() <= index {
            self.nudges.resize(index + 1, None);
        }
        self.nudges[index] = Some(event);
    }

    /// Wakes the worker of `queue`, if it runs.
    pub fn nudge(&self, queue: u16) {
        if let Some(Some(event)) = self.nudges.get(usize::from(queue)) {
            if let Err(err) = event.write(1) {
                warn!("console: cannot wake queue {queue}: {err}");
            }
        }
    }

    /// The driver reset the device: it will set every port up again.
    pub fn reset(&mut self) {
        self.outbox.clear();
        self.nudges.clear();
        for port in &mut self.ports {
            port.ready = false;
            port.guest_open = false;
        }
    }

    /// Without MULTIPORT the only port is the console, live from the start.
    pub fn single_port_mode(&mut self) {
        if let Some(port) = self.ports.first_mut() {
            port.ready = true;
            port.guest_open = true;
        }
    }

    fn send(&mut self, message: ControlMessage) {
        self.outbox.push_back(message);
        self.nudge(CONTROL_RX_QUEUE);
    }

    /// Acts on a message from the driver.
    pub fn handle_driver_message(&mut self, message: ControlMessage) {
        let id = message.id;
        match message.event {
            event::DEVICE_READY if message.value == 1 => {
                for id in 0..self.ports.len() as u32 {
                    self.send(ControlMessage::new(id, event::DEVICE_ADD, 1));
                }
            }
            event::DEVICE_READY => warn!("console: the driver could not set the device up"),
            event::PORT_READY => {
                let Some(port) = self.ports.get_mut(id as usize) else {
                    return self.bad(&message);
                };
                if message.value != 1 {
                    warn!("console: the driver could not set port {id} up");
                    return;
                }
                port.ready = true;
                let connected = port.link.connected();
                let reply = match &port.name {
                    None => {
                        // Linux treats the console port as open on both ends.
                        port.guest_open = true;
                        ControlMessage::new(id, event::CONSOLE_PORT, 1)
                    }
                    Some(name) => ControlMessage {
                        name: name.as_bytes().to_vec(),
                        ..ControlMessage::new(id, event::PORT_NAME, 1)
                    },
                };
                self.send(reply);
                if connected {
                    self.send(ControlMessage::new(id, event::PORT_OPEN, 1));
                }
                self.nudge(port_rx_queue(id));
            }
            event::PORT_OPEN => {
                let Some(port) = self.ports.get_mut(id as usize) else {
                    return self.bad(&message);
                };
                port.guest_open = message.value == 1;
                debug!(
                    "console: the guest {} port {id}",
                    if port.guest_open { "opened" } else { "closed" }
                );
                self.nudge(port_rx_queue(id));
            }
            _ => self.bad(&message),
        }
    }

    fn bad(&mut self, message: &ControlMessage) {
        self.bad_control += 1;
        debug!("console: ignoring control message {message:?}");
    }

    /// A client connected to the socket of `port`.
    pub fn connect(&mut self, port: u32, connection: OwnedFd) {
        let Some(entry) = self.ports.get_mut(port as usize) else {
            return;
        };
        if let HostLink::Socket {
            connection: slot,
            broken,
            ..
        } = &mut entry.link
        {
            *slot = Some(connection);
            *broken = false;
            entry.stats.connects += 1;
            info!("console port {port}: host client connected");
            if entry.ready {
                self.send(ControlMessage::new(port, event::PORT_OPEN, 1));
            }
            self.nudge(port_rx_queue(port) + 1);
        }
    }

    /// The client of `port` went away (EOF or an error): close it, tell the driver.
    pub fn disconnect(&mut self, port: u32) {
        let Some(entry) = self.ports.get_mut(port as usize) else {
            return;
        };
        if let HostLink::Socket {
            connection, broken, ..
        } = &mut entry.link
        {
            if let Some(connection) = connection.take() {
                // Wakes whatever still waits on the connection in the ring (a read, a
                // hangup watch) before the descriptor goes.
                // SAFETY: shutdown only acts on the socket behind a descriptor we own.
                unsafe { libc::shutdown(connection.as_raw_fd(), libc::SHUT_RDWR) };
                *broken = false;
                entry.stats.disconnects += 1;
                info!("console port {port}: host client disconnected");
                if entry.ready {
                    self.send(ControlMessage::new(port, event::PORT_OPEN, 0));
                }
            }
        }
    }

    /// A write to the client of `port` failed: the receive worker closes the connection
    /// (it owns the connection's life; a read may still be under way on it).
    pub fn mark_broken(&mut self, port: u32) {
        if let Some(Port {
            link: HostLink::Socket { broken, .. },
            ..
        }) = self.ports.get_mut(port as usize)
        {
            *broken = true;
            self.nudge(port_rx_queue(port));
        }
    }

    /// The host input of a fixed port ended (EOF or an error): nothing more to read.
    pub fn end_input(&mut self, port: u32) {
        if let Some(Port {
            link: HostLink::Fixed { input, .. },
            ..
        }) = self.ports.get_mut(port as usize)
        {
            input.take();
        }
    }

    /// The host output of a fixed port failed: later guest output is counted and dropped.
    pub fn end_output(&mut self, port: u32) {
        if let Some(Port {
            link: HostLink::Fixed { output, .. },
            ..
        }) = self.ports.get_mut(port as usize)
        {
            output.take();
        }
    }
}

/// Tag of a worker's wake-up read; the workers' own tags stay below it.
pub(crate) const NUDGE_TAG: u64 = u64::MAX;

/// A worker's wake-up eventfd, read through its reactor so another queue's worker can
/// make it look at the hub again.
pub(crate) struct Nudge {
    event: Arc<EventFd>,
    /// Where the read puts the counter; boxed so it stays put while the worker moves.
    counter: Box<u64>,
    armed: bool,
}

impl Nudge {
    /// A new eventfd, registered in the hub for `queue`.
    pub fn register(hub: &mut Hub, queue: u16) -> std::io::Result<Self> {
        let event = Arc::new(EventFd::new(libc::EFD_CLOEXEC)?);
        hub.register_nudge(queue, Arc::clone(&event));
        Ok(Self {
            event,
            counter: Box::new(0),
            armed: false,
        })
    }

    /// Keeps one read of the eventfd under way.
    pub fn arm(&mut self, batch: &mut ringvisor_io::IoBatch) {
        if self.armed {
            return;
        }
        self.armed = true;
        let iovec = libc::iovec {
            iov_base: (&mut *self.counter as *mut u64).cast(),
            iov_len: std::mem::size_of::<u64>(),
        };
        batch.push(
            NUDGE_TAG,
            ringvisor_io::IoOp::Read {
                fd: std::os::fd::AsRawFd::as_raw_fd(&*self.event),
                offset: 0,
                iovecs: vec![iovec],
            },
        );
    }

    /// The read completed: false when it was cancelled (the queue is being taken back).
    pub fn fired(&mut self, result: i32) -> bool {
        self.armed = false;
        result != -libc::ECANCELED
    }
}
