//! virtio-balloon (virtio 1.2, section 5.5): the VMM asks the guest to give memory back.
//!
//! [`BalloonDevice`] is the part the transport talks to: features, configuration space and
//! activation. The VMM's control API holds a [`BalloonHandle`] to set the target and read
//! the counters. Activation hands one worker per queue to the reactors:
//!
//! - inflateq / deflateq: arrays of page frame numbers the guest gives up or takes back;
//!   inflated pages are released to the host with MADV_DONTNEED, deflated ones need
//!   nothing (anonymous memory comes back zero-filled on the guest's next touch);
//! - statsq: the guest's memory statistics, refreshed every `stats_interval`;
//! - reporting_vq: free page reporting, ranges of free guest memory released like
//!   inflated pages.
//!
//! Queue indices are compact, as Linux numbers them: a queue whose feature is not
//! negotiated takes no index (the table in spec 5.5.2 numbers them as if all existed), so
//! the reporting queue is 3 with STATS_VQ and 2 without.

mod discard;
mod handle;
mod stats;
mod worker;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use log::debug;
use virtio_bindings::virtio_ids::VIRTIO_ID_BALLOON;
use virtio_queue::{Queue, QueueT};

use super::{
    ActivateError, GuestMemory, QueueWorkers, VirtioDevice, VIRTIO_F_RING_EVENT_IDX,
    VIRTIO_F_RING_INDIRECT_DESC, VIRTIO_F_VERSION_1,
};
use discard::Discarder;
pub use discard::{ReleaseHook, BALLOON_PAGE_SIZE};
use handle::Shared;
pub use handle::{BalloonHandle, BalloonStats, GUEST_STAT_NAMES};
pub use stats::BalloonStatsWorker;
pub use worker::BalloonPageWorker;

/// VIRTIO_BALLOON_F_STATS_VQ: the guest reports memory statistics on a queue.
pub const VIRTIO_BALLOON_F_STATS_VQ: u32 = 1;
/// VIRTIO_BALLOON_F_DEFLATE_ON_OOM: the guest deflates rather than run out of memory.
pub const VIRTIO_BALLOON_F_DEFLATE_ON_OOM: u32 = 2;
/// VIRTIO_BALLOON_F_FREE_PAGE_HINT: not offered (it needs migration to be of use).
pub const VIRTIO_BALLOON_F_FREE_PAGE_HINT: u32 = 3;
/// VIRTIO_BALLOON_F_REPORTING ("page reporting"): the guest reports free memory ranges.
pub const VIRTIO_BALLOON_F_REPORTING: u32 = 5;

/// Largest size of every queue (QEMU's choice too; Linux posts one chain at a time on
/// each queue anyway).
pub const QUEUE_MAX_SIZE: u16 = 128;
/// Queues offered: inflateq, deflateq, statsq and reporting_vq (no free_page_vq).
const QUEUES_OFFERED: usize = 4;
/// Bytes of `struct virtio_balloon_config`.
const CONFIG_LEN: usize = 16;
const CONFIG_NUM_PAGES: usize = 0;
const CONFIG_ACTUAL: usize = 4;
const CONFIG_FREE_PAGE_HINT_CMD_ID: usize = 8;
const CONFIG_POISON_VAL: usize = 12;
/// The default period of the guest's statistics refresh.
pub const DEFAULT_STATS_INTERVAL: Duration = Duration::from_secs(1);

/// How to set up the balloon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BalloonConfig {
    /// How much memory the guest is asked to give up from the start; rounded up to
    /// 4 KiB pages.
    pub initial_target_bytes: u64,
    /// Offer VIRTIO_BALLOON_F_DEFLATE_ON_OOM: the guest may take pages back from the
    /// balloon rather than run out of memory, missing the target.
    pub deflate_on_oom: bool,
    /// Offer VIRTIO_BALLOON_F_REPORTING: the guest reports free memory, which goes back
    /// to the host as it frees it (at some guest CPU cost and host page-fault churn).
    pub free_page_reporting: bool,
    /// How often the guest refreshes its statistics; zero keeps the first report.
    pub stats_interval: Duration,
    /// Guest-physical ranges `[start, end)` that stay backed whatever the guest says
    /// (boot structures, firmware tables); widened to whole 4 KiB pages.
    pub protected: Vec<(u64, u64)>,
}

impl Default for BalloonConfig {
    fn default() -> Self {
        Self {
            initial_target_bytes: 0,
            deflate_on_oom: false,
            free_page_reporting: true,
            stats_interval: DEFAULT_STATS_INTERVAL,
            protected: Vec::new(),
        }
    }
}

/// Why a balloon cannot be set up, or a target not set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BalloonError {
    #[error("balloon target of {bytes} bytes is more than 2^32 pages of 4 KiB")]
    TargetTooLarge { bytes: u64 },
    #[error("protected range {start:#x}..{end:#x} is empty or does not fit the address space")]
    BadProtectedRange { start: u64, end: u64 },
}

/// What each queue of an activation serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum QueueRole {
    Inflate,
    Deflate,
    Stats,
    Reporting,
}

/// The roles of queues 0, 1, ... for `acked_features`: absent queues take no index.
pub(crate) fn queue_roles(acked_features: u64) -> Vec<QueueRole> {
    let mut roles = vec![QueueRole::Inflate, QueueRole::Deflate];
    if acked_features & (1 << VIRTIO_BALLOON_F_STATS_VQ) != 0 {
        roles.push(QueueRole::Stats);
    }
    if acked_features & (1 << VIRTIO_BALLOON_F_REPORTING) != 0 {
        roles.push(QueueRole::Reporting);
    }
    roles
}

/// A virtio-balloon device.
#[derive(Debug)]
pub struct BalloonDevice {
    features: u64,
    shared: Arc<Shared>,
    protected: Arc<[(u64, u64)]>,
    stats_interval_nanos: u64,
    poison_val: u32,
    activated: bool,
    before_release: Option<ReleaseHook>,
}

impl BalloonDevice {
    /// Calls `hook` with each host range of guest RAM before its pages are released.
    pub fn with_release_hook(mut self, hook: ReleaseHook) -> Self {
        self.before_release = Some(hook);
        self
    }

    /// Checks `config` and builds the device; nothing is mapped or opened.
    pub fn new(config: BalloonConfig) -> Result<Self, BalloonError> {
        let target = handle::pages_for(config.initial_target_bytes)?;
        let mut protected = Vec::with_capacity(config.protected.len());
        for &(start, end) in &config.protected {
            let bad = BalloonError::BadProtectedRange { start, end };
            if start >= end {
                return Err(bad);
            }
            // A page that is partly protected is kept whole: releases are page-sized.
            let end = end.checked_next_multiple_of(BALLOON_PAGE_SIZE).ok_or(bad)?;
            protected.push((start & !(BALLOON_PAGE_SIZE - 1), end));
        }
        let bit = |b: u32| 1u64 << b;
        let mut features = VIRTIO_F_VERSION_1
            | VIRTIO_F_RING_INDIRECT_DESC
            | VIRTIO_F_RING_EVENT_IDX
            | bit(VIRTIO_BALLOON_F_STATS_VQ);
        if config.free_page_reporting {
            features |= bit(VIRTIO_BALLOON_F_REPORTING);
        }
        if config.deflate_on_oom {
            features |= bit(VIRTIO_BALLOON_F_DEFLATE_ON_OOM);
        }
        Ok(Self {
            features,
            shared: Arc::new(Shared::new(target)),
            protected: protected.into(),
            // Nobody waits 584 years: saturating is exact enough.
            stats_interval_nanos: u64::try_from(config.stats_interval.as_nanos())
                .unwrap_or(u64::MAX),
            poison_val: 0,
            activated: false,
            before_release: None,
        })
    }

    /// The handle the control API sets the target and reads the counters through.
    pub fn handle(&self) -> BalloonHandle {
        BalloonHandle::new(Arc::clone(&self.shared))
    }

    /// Whether the driver activated the device and has not reset it since.
    pub fn is_activated(&self) -> bool {
        self.activated
    }

    /// `struct virtio_balloon_config` as the driver reads it now.
    fn config_space(&self) -> [u8; CONFIG_LEN] {
        let mut c = [0u8; CONFIG_LEN];
        let mut put = |offset: usize, value: u32| {
            c[offset..offset + 4].copy_from_slice(&value.to_le_bytes());
        };
        put(CONFIG_NUM_PAGES, self.shared.target_pages());
        put(CONFIG_ACTUAL, self.shared.actual_pages());
        // Only meaningful with FREE_PAGE_HINT, which is not offered.
        put(CONFIG_FREE_PAGE_HINT_CMD_ID, 0);
        put(CONFIG_POISON_VAL, self.poison_val);
        c
    }
}

fn driver_writable(offset: usize) -> bool {
    (CONFIG_ACTUAL..CONFIG_ACTUAL + 4).contains(&offset)
        || (CONFIG_POISON_VAL..CONFIG_POISON_VAL + 4).contains(&offset)
}

fn le32(space: &[u8; CONFIG_LEN], offset: usize) -> u32 {
    let mut bytes = [0u8; 4];
    bytes.copy_from_slice(&space[offset..offset + 4]);
    u32::from_le_bytes(bytes)
}

impl VirtioDevice for BalloonDevice {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_BALLOON
    }

    fn queue_max_sizes(&self) -> Vec<u16> {
        vec![QUEUE_MAX_SIZE; QUEUES_OFFERED]
    }

    fn offered_features(&self) -> u64 {
        self.features
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        super::read_config_space(&self.config_space(), offset, data);
    }

    fn write_config(&mut self, offset: u64, data: &[u8]) {
        // Merging byte by byte accepts any access width the driver uses, even one that
        // straddles a read-only field (whose bytes are dropped).
        let mut space = self.config_space();
        let mut ignored = 0usize;
        for (i, &byte) in data.iter().enumerate() {
            let at = usize::try_from(offset)
                .ok()
                .and_then(|o| o.checked_add(i))
                .filter(|&o| driver_writable(o));
            match at {
                Some(o) => space[o] = byte,
                None => ignored += 1,
            }
        }
        if ignored > 0 {
            debug!("balloon: ignored {ignored} config bytes written at {offset:#x}");
        }
        self.shared.set_actual_pages(le32(&space, CONFIG_ACTUAL));
        self.poison_val = le32(&space, CONFIG_POISON_VAL);
    }

    fn activate(
        &mut self,
        mem: GuestMemory,
        acked_features: u64,
        queues: Vec<(u16, Queue)>,
    ) -> Result<QueueWorkers, ActivateError> {
        let roles = queue_roles(acked_features);
        if queues.len() != roles.len() {
            return Err(ActivateError::QueueCount {
                got: queues.len(),
                want: roles.len(),
            });
        }
        let event_idx = acked_features & VIRTIO_F_RING_EVENT_IDX != 0;
        let mut taken = vec![false; roles.len()];
        let mut workers: QueueWorkers = Vec::with_capacity(queues.len());
        for (index, mut queue) in queues {
            let slot = usize::from(index);
            let (Some(&role), Some(false)) = (roles.get(slot), taken.get(slot).copied()) else {
                return Err(ActivateError::InvalidQueue(slot));
            };
            if !queue.is_valid(&mem) {
                return Err(ActivateError::InvalidQueue(slot));
            }
            taken[slot] = true;
            queue.set_event_idx(event_idx);
            let shared = Arc::clone(&self.shared);
            let worker: Box<dyn ringvisor_io::QueueWorker> = match role {
                QueueRole::Stats => Box::new(BalloonStatsWorker::new(
                    index,
                    queue,
                    mem.clone(),
                    shared,
                    self.stats_interval_nanos,
                )),
                _ => Box::new(BalloonPageWorker::new(
                    index,
                    role,
                    queue,
                    Discarder::new(
                        mem.clone(),
                        Arc::clone(&self.protected),
                        self.before_release.clone(),
                    ),
                    shared,
                )),
            };
            workers.push((index, worker));
        }
        self.activated = true;
        Ok(workers)
    }

    fn reset(&mut self) {
        // The workers (and any stats buffer they held) went with the transport's detach.
        // The target is the VMM's and stays; what the driver wrote is forgotten.
        self.activated = false;
        self.shared.set_actual_pages(0);
        self.poison_val = 0;
    }
}
