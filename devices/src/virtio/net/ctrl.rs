//! The control queue (virtio 1.2, 5.1.6.5): receive filtering (accepted: the TAP passes
//! every frame to the guest's stack anyway) and the number of queue pairs in use.

use std::sync::Arc;

use log::{debug, warn};
use ringvisor_io::{IoBatch, QueueFault, QueueWorker};
use virtio_queue::Queue;
use vm_memory::Bytes;

use super::tap::TapSlot;
use crate::virtio::chain::{read_stream, ChainLayout, MAX_CHAIN_DESCRIPTORS};
use crate::virtio::queue_ring::{forward_to_ring, serve_popped, QueueRing};
use crate::virtio::GuestMemory;

pub const CLASS_RX: u8 = 0;
pub const RX_PROMISC: u8 = 0;
pub const RX_ALLMULTI: u8 = 1;
pub const CLASS_MAC: u8 = 1;
pub const MAC_TABLE_SET: u8 = 0;
pub const CLASS_MQ: u8 = 4;
pub const MQ_VQ_PAIRS_SET: u8 = 0;
pub const OK: u8 = 0;
pub const ERR: u8 = 1;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct NetControlStats {
    pub commands: u64,
    pub refused: u64,
    /// Queue pairs the guest asked for last.
    pub pairs: u16,
}

pub struct NetControlWorker {
    ring: QueueRing,
    taps: Vec<Arc<TapSlot>>,
    mq: bool,
    layout: ChainLayout,
    heads: Vec<u16>,
    stats: NetControlStats,
}

impl NetControlWorker {
    /// Public only for the fuzz targets (`fuzz/`); the VMM gets workers from `activate`.
    #[doc(hidden)]
    pub fn new(
        index: u16,
        queue: Queue,
        mem: GuestMemory,
        taps: Vec<Arc<TapSlot>>,
        mq: bool,
    ) -> Self {
        Self {
            ring: QueueRing::new(index, queue, mem),
            taps,
            mq,
            layout: ChainLayout::with_capacity(MAX_CHAIN_DESCRIPTORS),
            heads: Vec::new(),
            stats: NetControlStats {
                pairs: 1,
                ..Default::default()
            },
        }
    }

    pub fn stats(&self) -> NetControlStats {
        self.stats
    }

    /// Steers frames to the first `pairs` queue pairs only.
    fn set_pairs(&mut self, pairs: u16) -> bool {
        for (i, tap) in self.taps.iter().enumerate() {
            if let Err(e) = tap.get().set_queue_enabled(i < usize::from(pairs)) {
                warn!("virtio-net: {e}");
                return false;
            }
        }
        self.stats.pairs = pairs;
        true
    }

    /// The ack for a command of `len` readable bytes (class and command included).
    fn execute(&mut self, command: &[u8]) -> u8 {
        match command {
            [CLASS_RX, RX_PROMISC | RX_ALLMULTI, _on] => OK,
            // Two MAC tables (unicast, multicast), each a u32 count and 6-byte entries.
            [CLASS_MAC, MAC_TABLE_SET, tables @ ..] => {
                let Some((uni, rest)) = split_table(tables) else {
                    return ERR;
                };
                match split_table(rest) {
                    Some((_, [])) if uni.len() % 6 == 0 => OK,
                    _ => ERR,
                }
            }
            [CLASS_MQ, MQ_VQ_PAIRS_SET, lo, hi] if self.mq => {
                let pairs = u16::from_le_bytes([*lo, *hi]);
                if pairs >= 1 && usize::from(pairs) <= self.taps.len() && self.set_pairs(pairs) {
                    OK
                } else {
                    ERR
                }
            }
            _ => ERR,
        }
    }

    fn serve(&mut self, head: u16) -> Result<(), QueueFault> {
        let mem = self.ring.mem().clone();
        let walked = self.ring.walk(head, &mut self.layout);
        let ack_at = self.layout.last_writable_byte(&mem);
        let (Ok(()), Some(ack_at)) = (walked, ack_at) else {
            self.stats.refused += 1;
            return self.ring.add_used(head, 0);
        };
        // Commands are short: a MAC table of a few hundred entries at most.
        let len = self.layout.readable_len().min(4096) as usize;
        let mut command = vec![0u8; len];
        let ack = match read_stream(&mem, &self.layout.readable, 0, &mut command) {
            Ok(()) => self.execute(&command),
            Err(_) => ERR,
        };
        self.stats.commands += 1;
        if ack != OK {
            debug!("virtio-net control: refused {:?}", command.get(..2));
            self.stats.refused += 1;
        }
        let written = u32::from(mem.write_obj(ack, ack_at).is_ok());
        self.ring.add_used(head, written)
    }
}

#[cfg(test)]
impl NetControlWorker {
    pub(crate) fn run_for_test(&mut self, command: &[u8]) -> u8 {
        self.execute(command)
    }
}

/// Splits one `virtio_net_ctrl_mac` table (u32 entries, then 6 bytes each) off `bytes`.
fn split_table(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let count = u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
    let table_len = count.checked_mul(6)?;
    let rest = bytes.get(4..)?;
    (rest.len() >= table_len).then(|| rest.split_at(table_len))
}

impl QueueWorker for NetControlWorker {
    forward_to_ring!();

    fn drain(&mut self, batch: &mut IoBatch) -> Result<usize, QueueFault> {
        let result = serve_popped(
            self,
            |w| (&mut w.ring, &mut w.heads),
            |w, head| w.serve(head),
        );
        if matches!(result, Ok(count) if count > 0) {
            batch.note_completed();
        }
        result
    }

    fn complete(
        &mut self,
        _tag: u64,
        _result: i32,
        _batch: &mut IoBatch,
    ) -> Result<(), QueueFault> {
        Ok(())
    }

    fn in_flight(&self) -> usize {
        0
    }
}
