//! virtio-console with MULTIPORT (virtio 1.2, section 5.3): port 0 is a console (`hvc0`
//! in a Linux guest), the other ports are named (`/dev/virtio-ports/NAME`).
//!
//! Queues: port 0's receive and transmit queues (0, 1), the control receive and transmit
//! queues (2, 3), then each further port's pair (2 + 2n, 3 + 2n). They all share one
//! reactor (one queue group): the workers meet in a [`hub`] for the port states and the
//! control messages, and wake each other through eventfds read by that reactor.

mod backend;
mod control;
mod hub;
mod port;
#[cfg(test)]
mod tests;

use std::sync::{Arc, Mutex};

use ringvisor_io::QueueWorker;
use virtio_queue::{Queue, QueueT};

use super::{ActivateError, GuestMemory, QueueWorkers, VirtioDevice, VIRTIO_F_VERSION_1};
use backend::HostLink;
pub use backend::{BackendError, PortBackend};
pub use control::{ControlRxWorker, ControlTxWorker};
pub use hub::PortStats;
use hub::{lock, port_rx_queue, Hub, Port, SharedHub};
pub use port::{PortRxWorker, PortTxWorker};

/// The virtio device ID of a console.
pub const VIRTIO_ID_CONSOLE: u32 = 3;
/// VIRTIO_CONSOLE_F_MULTIPORT.
const VIRTIO_CONSOLE_F_MULTIPORT: u64 = 1 << 1;
/// Size of every queue.
pub const QUEUE_MAX_SIZE: u16 = 128;
/// Ports per device, the console included: Linux accepts more, 32 keeps queue indices
/// small and is far beyond what a guest needs.
pub const MAX_PORTS: usize = 32;
/// Ports besides the console.
pub const MAX_NAMED_PORTS: usize = MAX_PORTS - 1;
/// Longest port name: it travels in one control message.
pub const MAX_NAME_LEN: usize = 64;
/// `struct virtio_console_config`: cols, rows (le16, 0: unknown), max_nr_ports (le32),
/// emerg_wr (le32, not offered).
const CONFIG_LEN: usize = 12;

/// A named port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedPort {
    pub name: String,
    pub backend: PortBackend,
}

/// The console and its named ports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleConfig {
    /// Port 0, the console.
    pub console: PortBackend,
    pub ports: Vec<NamedPort>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("port {name:?}: {source}")]
    Backend {
        name: String,
        #[source]
        source: BackendError,
    },
    #[error("at most {MAX_NAMED_PORTS} named ports (got {0})")]
    TooManyPorts(usize),
    #[error(
        "port name {0:?} must be 1 to {MAX_NAME_LEN} characters of letters, digits, '.', '-' and '_'"
    )]
    BadName(String),
    #[error("port name {0:?} is used twice")]
    DuplicateName(String),
}

/// Whether `name` can name a port: it becomes a file name under /dev/virtio-ports.
pub fn valid_port_name(name: &str) -> bool {
    (1..=MAX_NAME_LEN).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// A virtio-console device.
pub struct ConsoleDevice {
    hub: SharedHub,
    ports: usize,
    config_space: [u8; CONFIG_LEN],
}

impl ConsoleDevice {
    /// Opens every port's host end (sockets listen from now on).
    pub fn new(config: ConsoleConfig) -> Result<Self, ConsoleError> {
        if config.ports.len() > MAX_NAMED_PORTS {
            return Err(ConsoleError::TooManyPorts(config.ports.len()));
        }
        for (i, port) in config.ports.iter().enumerate() {
            if !valid_port_name(&port.name) {
                return Err(ConsoleError::BadName(port.name.clone()));
            }
            if config.ports[..i].iter().any(|p| p.name == port.name) {
                return Err(ConsoleError::DuplicateName(port.name.clone()));
            }
        }
        let open = |name: Option<&str>, backend: &PortBackend| {
            HostLink::open(backend).map_err(|source| ConsoleError::Backend {
                name: name.unwrap_or("console").to_owned(),
                source,
            })
        };
        let mut ports = vec![Port {
            name: None,
            link: open(None, &config.console)?,
            ready: false,
            guest_open: false,
            stats: PortStats::default(),
        }];
        for named in &config.ports {
            ports.push(Port {
                name: Some(named.name.clone()),
                link: open(Some(&named.name), &named.backend)?,
                ready: false,
                guest_open: false,
                stats: PortStats::default(),
            });
        }
        let count = ports.len();
        let mut config_space = [0u8; CONFIG_LEN];
        config_space[4..8].copy_from_slice(&(count as u32).to_le_bytes());
        Ok(Self {
            hub: Arc::new(Mutex::new(Hub::new(ports))),
            ports: count,
            config_space,
        })
    }

    /// Each port's name (`None`: the console) and byte counts.
    pub fn port_stats(&self) -> Vec<(Option<String>, PortStats)> {
        lock(&self.hub)
            .ports
            .iter()
            .map(|p| (p.name.clone(), p.stats))
            .collect()
    }

    fn queue_count(&self) -> usize {
        2 * (self.ports + 1)
    }
}

impl VirtioDevice for ConsoleDevice {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_CONSOLE
    }

    fn queue_max_sizes(&self) -> Vec<u16> {
        vec![QUEUE_MAX_SIZE; self.queue_count()]
    }

    fn queue_group(&self, _index: u16) -> u16 {
        0
    }

    fn offered_features(&self) -> u64 {
        VIRTIO_F_VERSION_1 | VIRTIO_CONSOLE_F_MULTIPORT
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        super::read_config_space(&self.config_space, offset, data);
    }

    fn write_config(&mut self, offset: u64, data: &[u8]) {
        log::debug!(
            "console: ignored config write of {} bytes at {offset:#x}",
            data.len()
        );
    }

    fn activate(
        &mut self,
        mem: GuestMemory,
        acked_features: u64,
        queues: Vec<(u16, Queue)>,
    ) -> Result<QueueWorkers, ActivateError> {
        let multiport = acked_features & VIRTIO_CONSOLE_F_MULTIPORT != 0;
        let want = if multiport { self.queue_count() } else { 2 };
        if queues.len() != want {
            return Err(ActivateError::QueueCount {
                got: queues.len(),
                want,
            });
        }
        let mut hub = lock(&self.hub);
        hub.reset();
        if !multiport {
            hub.single_port_mode();
        }
        drop(hub);
        let setup = |e: std::io::Error| ActivateError::Backend(e.to_string());
        let mut workers: QueueWorkers = Vec::with_capacity(queues.len());
        for (position, (index, queue)) in queues.into_iter().enumerate() {
            if usize::from(index) != position || !queue.is_valid(&mem) {
                return Err(ActivateError::InvalidQueue(usize::from(index)));
            }
            let hub = Arc::clone(&self.hub);
            let mem = mem.clone();
            let worker: Box<dyn QueueWorker> = match index {
                2 => Box::new(ControlRxWorker::new(index, queue, mem, hub).map_err(setup)?),
                3 => Box::new(ControlTxWorker::new(index, queue, mem, hub)),
                _ => {
                    let port = if index < 2 {
                        0
                    } else {
                        u32::from(index - 2) / 2
                    };
                    if index == port_rx_queue(port) {
                        Box::new(PortRxWorker::new(port, queue, mem, hub).map_err(setup)?)
                    } else {
                        Box::new(PortTxWorker::new(port, queue, mem, hub).map_err(setup)?)
                    }
                }
            };
            workers.push((index, worker));
        }
        Ok(workers)
    }

    fn reset(&mut self) {
        lock(&self.hub).reset();
    }
}
