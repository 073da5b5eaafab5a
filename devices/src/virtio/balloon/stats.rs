//! The statistics queue (virtio 1.2, 5.5.6.3): the driver posts one buffer of
//! `(le16 tag, le64 value)` entries and gets to refresh it only when the device hands it
//! back. The device reads the buffer, holds it for the statistics interval (a reactor
//! delay), then returns it; the driver answers with fresh statistics.

use std::sync::Arc;

use log::{debug, warn};
use ringvisor_io::{IoBatch, IoOp, QueueFault, QueueWorker};
use virtio_queue::Queue;

use super::handle::{GuestStats, QueueCounters, Shared};
use crate::virtio::chain::{read_stream, ChainLayout, MAX_CHAIN_DESCRIPTORS};
use crate::virtio::queue_ring::{forward_to_ring, serve_popped, QueueRing};
use crate::virtio::GuestMemory;

/// Bytes of one `struct virtio_balloon_stat` (packed).
const STAT_LEN: usize = 10;
/// Entries read from a buffer: every tag a guest can send, with room to spare; the rest
/// of a larger buffer is not read.
const MAX_STATS: usize = 64;
/// The tag of the refresh delay, the only op this worker submits.
const TIMER_TAG: u64 = 0;

/// Serves statsq of a [`super::BalloonDevice`].
pub struct BalloonStatsWorker {
    ring: QueueRing,
    shared: Arc<Shared>,
    layout: ChainLayout,
    heads: Vec<u16>,
    /// The buffer kept until the next refresh.
    held: Option<u16>,
    timer_armed: bool,
    /// 0: the first report is kept, the buffer never returned.
    interval_nanos: u64,
}

impl BalloonStatsWorker {
    pub(super) fn new(
        index: u16,
        queue: Queue,
        mem: GuestMemory,
        shared: Arc<Shared>,
        interval_nanos: u64,
    ) -> Self {
        Self {
            ring: QueueRing::new(index, queue, mem),
            shared,
            layout: ChainLayout::with_capacity(MAX_CHAIN_DESCRIPTORS),
            heads: Vec::new(),
            held: None,
            timer_armed: false,
            interval_nanos,
        }
    }

    /// The queue's index in its device.
    pub fn index(&self) -> u16 {
        self.ring.index()
    }

    /// Reads the report in the chain at `head`; `None` when the chain is malformed.
    fn parse(&mut self, head: u16) -> Option<GuestStats> {
        let mem = self.ring.mem();
        if let Err(e) = self.ring.walk(head, &mut self.layout) {
            debug!("balloon stats queue: chain {head} refused: {e}");
            return None;
        }
        if !self.layout.writable.is_empty() {
            debug!("balloon stats queue: chain {head} has device-writable buffers");
            return None;
        }
        let entries = usize::try_from(self.layout.readable_len() / STAT_LEN as u64)
            .unwrap_or(MAX_STATS)
            .min(MAX_STATS);
        let mut raw = [0u8; STAT_LEN * MAX_STATS];
        let raw = &mut raw[..entries * STAT_LEN];
        if let Err(e) = read_stream(mem, &self.layout.readable, 0, raw) {
            debug!("balloon stats queue: chain {head} unreadable: {e}");
            return None;
        }
        let mut report = GuestStats::default();
        for entry in raw.chunks_exact(STAT_LEN) {
            let tag = u16::from_le_bytes([entry[0], entry[1]]);
            let mut value = [0u8; 8];
            value.copy_from_slice(&entry[2..]);
            report.set(tag, u64::from_le_bytes(value));
        }
        Some(report)
    }

    fn serve(&mut self, head: u16, batch: &mut IoBatch) -> Result<(), QueueFault> {
        QueueCounters::add(&self.shared.stats.chains, 1);
        let Some(report) = self.parse(head) else {
            QueueCounters::add(&self.shared.stats.bad_chains, 1);
            batch.note_completed();
            return self.ring.add_used(head, 0);
        };
        self.shared.set_guest_stats(report);
        // Linux keeps one buffer in the queue; a second one means the driver gave up on
        // the first, so hand that one back rather than hold both.
        if let Some(older) = self.held.replace(head) {
            batch.note_completed();
            self.ring.add_used(older, 0)?;
        }
        if self.interval_nanos > 0 && !self.timer_armed {
            self.timer_armed = true;
            batch.push(
                TIMER_TAG,
                IoOp::Delay {
                    nanos: self.interval_nanos,
                },
            );
        }
        Ok(())
    }
}

impl QueueWorker for BalloonStatsWorker {
    forward_to_ring!();

    fn drain(&mut self, batch: &mut IoBatch) -> Result<usize, QueueFault> {
        serve_popped(
            self,
            |w| (&mut w.ring, &mut w.heads),
            |w, head| w.serve(head, batch),
        )
    }

    fn complete(&mut self, tag: u64, result: i32, _batch: &mut IoBatch) -> Result<(), QueueFault> {
        if tag != TIMER_TAG || !self.timer_armed {
            warn!(
                "balloon stats queue {}: completion for unknown tag {tag}",
                self.index()
            );
            return Ok(());
        }
        self.timer_armed = false;
        let held = self.held.take();
        if result == -libc::ECANCELED {
            // The queue is being reset: the driver no longer waits for the buffer.
            return Ok(());
        }
        if result < 0 {
            // The delay failed early (the ring refused it): refresh now rather than never.
            debug!("balloon stats queue: refresh delay ended with {result}");
        }
        match held {
            Some(head) => self.ring.add_used(head, 0),
            None => Ok(()),
        }
    }

    fn in_flight(&self) -> usize {
        usize::from(self.held.is_some())
    }

    fn counters(&self) -> Vec<(&'static str, u64)> {
        self.shared.stats.named("stats_updates")
    }
}
