//! virtio-net (virtio 1.2, section 5.1) over a TAP interface.
//!
//! [`NetDevice`] is what the transport talks to. Activation hands the reactors one
//! [`NetRxWorker`] and one [`NetTxWorker`] per queue pair, each pair on its own TAP queue
//! (IFF_MULTI_QUEUE), and a [`NetControlWorker`] for the control queue.

mod ctrl;
pub mod header;
mod link;
mod tap;
mod worker;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use log::debug;
use ringvisor_io::QueueWorker;
use virtio_queue::{Queue, QueueT};

use super::{
    ActivateError, GuestMemory, QueueWorkers, VirtioDevice, VIRTIO_F_RING_EVENT_IDX,
    VIRTIO_F_RING_INDIRECT_DESC, VIRTIO_F_VERSION_1,
};
pub use ctrl::{NetControlStats, NetControlWorker};
use header::TxRules;
pub use link::LinkState;
pub use tap::{valid_interface_name, Tap, TapError, TapSlot, VNET_HEADER_LEN};
pub use worker::{NetQueueStats, NetRxWorker, NetTxWorker, RxMode};

/// The virtio device ID of a network device.
pub const VIRTIO_ID_NET: u32 = 1;
pub const QUEUE_MAX_SIZE: u16 = 256;
/// Most queue pairs (one per vCPU is the useful maximum).
pub const MAX_QUEUE_PAIRS: u16 = 16;
pub const DEFAULT_MTU: u16 = 1500;
/// Smallest and largest MTU offered (IPv4's minimum; the largest frame a TAP takes).
pub const MIN_MTU: u16 = 68;
pub const MAX_MTU: u16 = 65_535 - 18;

/// Feature bits (virtio 1.2, 5.1.3).
pub mod feature {
    pub const CSUM: u32 = 0;
    pub const GUEST_CSUM: u32 = 1;
    pub const MTU: u32 = 3;
    pub const MAC: u32 = 5;
    pub const GUEST_TSO4: u32 = 7;
    pub const GUEST_TSO6: u32 = 8;
    pub const HOST_TSO4: u32 = 11;
    pub const HOST_TSO6: u32 = 12;
    pub const GUEST_ECN: u32 = 9;
    pub const HOST_ECN: u32 = 13;
    pub const MRG_RXBUF: u32 = 15;
    pub const STATUS: u32 = 16;
    pub const CTRL_VQ: u32 = 17;
    pub const CTRL_RX: u32 = 18;
    pub const MQ: u32 = 22;
}

/// Bytes of `struct virtio_net_config` up to and including mtu.
const CONFIG_LEN: usize = 12;
const STATUS_LINK_UP: u16 = 1;

/// One `--net`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetConfig {
    pub tap: String,
    /// Default: locally administered, derived from the TAP name.
    pub mac: Option<[u8; 6]>,
    pub queue_pairs: u16,
    pub mtu: Option<u16>,
}

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error(transparent)]
    Tap(#[from] TapError),
    #[error("net {tap}: {queues} queue pairs asked for, 1 to {MAX_QUEUE_PAIRS} supported")]
    QueueCount { tap: String, queues: u16 },
    #[error("net {tap}: mtu {mtu} is outside {MIN_MTU}..={MAX_MTU}")]
    Mtu { tap: String, mtu: u16 },
}

/// A virtio-net device on a TAP interface.
pub struct NetDevice {
    taps: Vec<Arc<TapSlot>>,
    link: Arc<LinkState>,
    features: u64,
    mtu: u16,
    config_space: [u8; CONFIG_LEN],
    activated: bool,
}

impl std::fmt::Debug for NetDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetDevice")
            .field("tap", &self.taps.first().map(|t| t.name().to_owned()))
            .field("pairs", &self.taps.len())
            .finish()
    }
}

/// A locally administered unicast MAC derived from `name` (stable across runs).
fn default_mac(name: &str) -> [u8; 6] {
    let mut hash: u32 = 0x811c_9dc5;
    for b in name.bytes() {
        hash = (hash ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    let h = hash.to_be_bytes();
    [0x02, 0x72, h[0], h[1], h[2], h[3]]
}

impl NetDevice {
    /// Attaches `config.queue_pairs` queues to the TAP.
    pub fn new(config: NetConfig) -> Result<Self, NetError> {
        let pairs = config.queue_pairs;
        if pairs == 0 || pairs > MAX_QUEUE_PAIRS {
            return Err(NetError::QueueCount {
                tap: config.tap,
                queues: pairs,
            });
        }
        let mtu = config.mtu.unwrap_or(DEFAULT_MTU);
        if !(MIN_MTU..=MAX_MTU).contains(&mtu) {
            return Err(NetError::Mtu {
                tap: config.tap,
                mtu,
            });
        }
        let taps = (0..pairs)
            .map(|_| {
                Tap::open(&config.tap, pairs > 1).map(|tap| Arc::new(TapSlot::new(tap, pairs > 1)))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let bit = |b: u32| 1u64 << b;
        let mut features = VIRTIO_F_VERSION_1
            | VIRTIO_F_RING_INDIRECT_DESC
            | VIRTIO_F_RING_EVENT_IDX
            | bit(feature::MAC)
            | bit(feature::STATUS)
            | bit(feature::MRG_RXBUF)
            | bit(feature::CSUM)
            | bit(feature::GUEST_CSUM)
            | bit(feature::HOST_TSO4)
            | bit(feature::HOST_TSO6)
            | bit(feature::HOST_ECN)
            | bit(feature::GUEST_TSO4)
            | bit(feature::GUEST_TSO6)
            | bit(feature::GUEST_ECN)
            | bit(feature::CTRL_VQ)
            | bit(feature::CTRL_RX);
        if config.mtu.is_some() {
            features |= bit(feature::MTU);
        }
        if pairs > 1 {
            features |= bit(feature::MQ);
        }
        let mac = config.mac.unwrap_or_else(|| default_mac(&config.tap));
        let mut c = [0u8; CONFIG_LEN];
        c[0..6].copy_from_slice(&mac);
        c[6..8].copy_from_slice(&STATUS_LINK_UP.to_le_bytes());
        c[8..10].copy_from_slice(&pairs.to_le_bytes());
        c[10..12].copy_from_slice(&mtu.to_le_bytes());
        Ok(Self {
            taps,
            link: Arc::new(LinkState::default()),
            features,
            mtu,
            config_space: c,
            activated: false,
        })
    }

    /// The link status the guest reads, shared with the workers (the VMM gives it the
    /// transport's configuration-change interrupt).
    pub fn link(&self) -> Arc<LinkState> {
        Arc::clone(&self.link)
    }

    pub fn tap_name(&self) -> &str {
        self.taps.first().map_or("", |t| t.name())
    }

    pub fn mac(&self) -> [u8; 6] {
        let mut mac = [0u8; 6];
        mac.copy_from_slice(&self.config_space[..6]);
        mac
    }

    pub fn queue_pairs(&self) -> u16 {
        self.taps.len() as u16
    }

    pub fn is_activated(&self) -> bool {
        self.activated
    }

    fn control_queue(&self) -> u16 {
        2 * self.queue_pairs()
    }
}

impl VirtioDevice for NetDevice {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_NET
    }

    fn queue_max_sizes(&self) -> Vec<u16> {
        vec![QUEUE_MAX_SIZE; usize::from(self.control_queue()) + 1]
    }

    fn queue_group(&self, index: u16) -> u16 {
        // A queue pair shares one reactor; the control queue is a group of its own.
        if index == self.control_queue() {
            index
        } else {
            index / 2
        }
    }

    fn offered_features(&self) -> u64 {
        self.features
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        let mut space = self.config_space;
        let status = if self.link.is_up() { STATUS_LINK_UP } else { 0 };
        space[6..8].copy_from_slice(&status.to_le_bytes());
        super::read_config_space(&space, offset, data);
    }

    fn write_config(&mut self, offset: u64, data: &[u8]) {
        // Without VIRTIO_NET_F_CTRL_MAC_ADDR the MAC is read-only, as is everything else.
        debug!(
            "virtio-net: ignored {}-byte config write at {offset:#x}",
            data.len()
        );
    }

    fn activate(
        &mut self,
        mem: GuestMemory,
        acked: u64,
        queues: Vec<(u16, Queue)>,
    ) -> Result<QueueWorkers, ActivateError> {
        let has = |b: u32| acked & (1u64 << b) != 0;
        let total = usize::from(self.control_queue()) + 1;
        if queues.len() < 2 || queues.len() > total {
            return Err(ActivateError::QueueCount {
                got: queues.len(),
                want: total,
            });
        }
        let rules = TxRules {
            csum: has(feature::CSUM),
            tso4: has(feature::HOST_TSO4),
            tso6: has(feature::HOST_TSO6),
            ecn: has(feature::HOST_ECN),
            mtu: self.mtu,
        };
        // What the TAP may hand the guest: partial checksums, and TCP segments up to 64 KiB
        // when the guest takes them (segmentation offloads need the checksum one).
        let mut offload = 0;
        if has(feature::GUEST_CSUM) {
            offload |= libc::TUN_F_CSUM;
            if has(feature::GUEST_TSO4) {
                offload |= libc::TUN_F_TSO4;
            }
            if has(feature::GUEST_TSO6) {
                offload |= libc::TUN_F_TSO6;
            }
            let tso = libc::TUN_F_TSO4 | libc::TUN_F_TSO6;
            if has(feature::GUEST_ECN) && offload & tso != 0 {
                offload |= libc::TUN_F_TSO_ECN;
            }
        }
        let rx_mode = RxMode {
            mergeable: has(feature::MRG_RXBUF),
            large: offload & (libc::TUN_F_TSO4 | libc::TUN_F_TSO6) != 0,
        };
        // One pair until the driver asks for more (5.1.6.5.5), if it can ask at all.
        let mq = has(feature::MQ) && has(feature::CTRL_VQ);
        for (i, slot) in self.taps.iter().enumerate() {
            let tap = slot.get();
            let setup = tap
                .set_offload(offload)
                .and_then(|()| tap.set_queue_enabled(i == 0));
            setup.map_err(|e| ActivateError::Backend(e.to_string()))?;
        }
        let event_idx = has(VIRTIO_F_RING_EVENT_IDX.trailing_zeros());
        let control = self.control_queue();
        let mut seen = vec![false; total];
        let mut workers: QueueWorkers = Vec::with_capacity(queues.len());
        for (index, mut queue) in queues {
            let slot = seen.get_mut(usize::from(index));
            if slot.as_deref() != Some(&false) || !queue.is_valid(&mem) {
                return Err(ActivateError::InvalidQueue(usize::from(index)));
            }
            if let Some(slot) = slot {
                *slot = true;
            }
            queue.set_event_idx(event_idx);
            let worker: Box<dyn QueueWorker> = if index == control {
                if !has(feature::CTRL_VQ) {
                    return Err(ActivateError::InvalidQueue(usize::from(index)));
                }
                Box::new(NetControlWorker::new(
                    index,
                    queue,
                    mem.clone(),
                    self.taps.clone(),
                    mq,
                ))
            } else {
                let tap = Arc::clone(&self.taps[usize::from(index / 2)]);
                if index % 2 == 0 {
                    Box::new(NetRxWorker::new(
                        index,
                        queue,
                        mem.clone(),
                        tap,
                        rx_mode,
                        offload,
                        self.link(),
                    ))
                } else {
                    Box::new(NetTxWorker::new(
                        index,
                        queue,
                        mem.clone(),
                        tap,
                        rules,
                        self.link(),
                    ))
                }
            };
            workers.push((index, worker));
        }
        self.activated = true;
        Ok(workers)
    }

    fn reset(&mut self) {
        self.activated = false;
    }
}
