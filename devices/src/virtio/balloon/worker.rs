//! The queues that move memory: inflateq, deflateq and reporting_vq. Every chain is
//! served at once (no host I/O) and completed with a used length of 0.

use std::sync::Arc;

use log::{debug, warn};
use ringvisor_io::{IoBatch, QueueFault, QueueWorker};
use virtio_queue::Queue;

use super::discard::{Discarded, Discarder, BALLOON_PAGE_SIZE};
use super::handle::{QueueCounters, Shared};
use super::{QueueRole, QUEUE_MAX_SIZE};
use crate::virtio::chain::{read_stream, ChainError, ChainLayout, MAX_CHAIN_DESCRIPTORS};
use crate::virtio::queue_ring::{forward_to_ring, serve_popped, QueueRing};

/// Page frame numbers read from guest memory at a time. Linux puts at most 256 in a
/// buffer (VIRTIO_BALLOON_ARRAY_PFNS_MAX), so one read usually covers a chain.
const PFN_BATCH: usize = 256;
/// Bytes of PFNs one chain may carry (1 GiB worth of pages): more is no driver's, and
/// bounds the time one chain holds the reactor.
const MAX_PFN_BYTES: u64 = 1 << 20;

/// Why a chain of a memory queue is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
enum BadChain {
    #[error(transparent)]
    Chain(#[from] ChainError),
    #[error("a {0} buffer must be device-readable only")]
    NotReadable(&'static str),
    #[error("a reporting buffer must be device-writable only")]
    NotWritable,
    #[error("{0} bytes of page frame numbers, more than {MAX_PFN_BYTES}")]
    TooManyPfns(u64),
}

/// Serves inflateq, deflateq or reporting_vq of a [`super::BalloonDevice`].
pub struct BalloonPageWorker {
    ring: QueueRing,
    role: QueueRole,
    discarder: Discarder,
    shared: Arc<Shared>,
    layout: ChainLayout,
    heads: Vec<u16>,
    pfn_bytes: Vec<u8>,
    pfns: Vec<u32>,
}

impl BalloonPageWorker {
    /// `role` is Inflate, Deflate or Reporting (the stats queue has its own worker).
    pub(super) fn new(
        index: u16,
        role: QueueRole,
        queue: Queue,
        discarder: Discarder,
        shared: Arc<Shared>,
    ) -> Self {
        Self {
            ring: QueueRing::new(index, queue, discarder.mem().clone()),
            role,
            discarder,
            shared,
            layout: ChainLayout::with_capacity(MAX_CHAIN_DESCRIPTORS),
            heads: Vec::with_capacity(usize::from(QUEUE_MAX_SIZE)),
            pfn_bytes: vec![0; PFN_BATCH * 4],
            pfns: Vec::with_capacity(PFN_BATCH),
        }
    }

    /// The queue's index in its device.
    pub fn index(&self) -> u16 {
        self.ring.index()
    }

    fn role_counters(&self) -> &QueueCounters {
        match self.role {
            QueueRole::Inflate => &self.shared.inflate,
            QueueRole::Deflate => &self.shared.deflate,
            QueueRole::Reporting => &self.shared.reporting,
            QueueRole::Stats => &self.shared.stats,
        }
    }

    fn serve(&mut self, head: u16, batch: &mut IoBatch) -> Result<(), QueueFault> {
        let result = self
            .ring
            .walk(head, &mut self.layout)
            .map_err(BadChain::from)
            .and_then(|()| match self.role {
                QueueRole::Reporting => self.report(),
                _ => self.pages(),
            });
        let counters = self.role_counters();
        QueueCounters::add(&counters.chains, 1);
        if let Err(e) = result {
            debug!("balloon queue {}: chain {head} refused: {e}", self.index());
            QueueCounters::add(&counters.bad_chains, 1);
        }
        batch.note_completed();
        // Nothing is written into any balloon buffer.
        self.ring.add_used(head, 0)
    }

    /// An inflate or deflate buffer: le32 page frame numbers. On error the pages read
    /// before it stay handled and counted.
    fn pages(&mut self) -> Result<(), BadChain> {
        let inflate = self.role == QueueRole::Inflate;
        let name = if inflate { "inflate" } else { "deflate" };
        if !self.layout.writable.is_empty() {
            return Err(BadChain::NotReadable(name));
        }
        let total = self.layout.readable_len();
        if total > MAX_PFN_BYTES {
            return Err(BadChain::TooManyPfns(total));
        }
        // A trailing partial PFN is no page.
        let total = total - total % 4;
        let mut skip = 0u64;
        while skip < total {
            let take = (total - skip).min(self.pfn_bytes.len() as u64) as usize;
            let buf = &mut self.pfn_bytes[..take];
            read_stream(self.ring.mem(), &self.layout.readable, skip, buf)?;
            skip += take as u64;
            self.pfns.clear();
            self.pfns.extend(
                buf.chunks_exact(4)
                    .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            );
            let count = self.pfns.len() as u64;
            QueueCounters::add(&self.role_counters().amount, count);
            if inflate {
                let ignored = self.release_pfns().ignored_pages();
                QueueCounters::add(&self.role_counters().ignored_pages, ignored);
            }
        }
        Ok(())
    }

    /// Releases the pages in `self.pfns`, contiguous ones in one call.
    fn release_pfns(&mut self) -> Discarded {
        // Releasing is idempotent and order-free: sorting only merges more runs.
        self.pfns.sort_unstable();
        self.pfns.dedup();
        let mut done = Discarded::default();
        let mut run: Option<(u64, u64)> = None; // first PFN, pages
        for &pfn in &self.pfns {
            let pfn = u64::from(pfn);
            run = match run {
                Some((first, pages)) if first + pages == pfn => Some((first, pages + 1)),
                Some((first, pages)) => {
                    done += self.discard_pages(first, pages);
                    Some((pfn, 1))
                }
                None => Some((pfn, 1)),
            };
        }
        if let Some((first, pages)) = run {
            done += self.discard_pages(first, pages);
        }
        done
    }

    fn discard_pages(&self, first: u64, pages: u64) -> Discarded {
        // PFNs are u32: the product stays below 2^44.
        self.discarder
            .discard(first * BALLOON_PAGE_SIZE, pages * BALLOON_PAGE_SIZE)
    }

    /// A free page report: every device-writable buffer is a free range of guest memory.
    fn report(&mut self) -> Result<(), BadChain> {
        if !self.layout.readable.is_empty() {
            return Err(BadChain::NotWritable);
        }
        let mut done = Discarded::default();
        for segment in &self.layout.writable {
            done += self
                .discarder
                .discard(segment.addr.0, u64::from(segment.len));
        }
        let counters = self.role_counters();
        QueueCounters::add(&counters.amount, self.layout.writable_len());
        QueueCounters::add(&counters.ignored_pages, done.ignored_pages());
        Ok(())
    }
}

impl QueueWorker for BalloonPageWorker {
    forward_to_ring!();

    fn drain(&mut self, batch: &mut IoBatch) -> Result<usize, QueueFault> {
        serve_popped(
            self,
            |w| (&mut w.ring, &mut w.heads),
            |w, head| w.serve(head, batch),
        )
    }

    fn complete(&mut self, tag: u64, _result: i32, _batch: &mut IoBatch) -> Result<(), QueueFault> {
        warn!(
            "balloon queue {}: completion for tag {tag}, but no op was submitted",
            self.index()
        );
        Ok(())
    }

    fn in_flight(&self) -> usize {
        0
    }

    fn counters(&self) -> Vec<(&'static str, u64)> {
        let amount = match self.role {
            QueueRole::Inflate => "inflated_pages",
            QueueRole::Deflate => "deflated_pages",
            QueueRole::Reporting => "reported_bytes",
            QueueRole::Stats => "stats_updates",
        };
        self.role_counters().named(amount)
    }
}
