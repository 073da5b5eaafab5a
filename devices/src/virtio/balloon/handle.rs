//! State shared between the device, its workers and the VMM's control API: the target,
//! what the driver reports, the counters and the guest's latest statistics.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::discard::BALLOON_PAGE_SIZE;
use super::BalloonError;

/// Names of the guest statistics by tag (VIRTIO_BALLOON_S_*; tags from 10 on are newer
/// Linux additions). Memory amounts are in bytes, the others are event counts.
pub const GUEST_STAT_NAMES: [&str; 16] = [
    "swap_in",
    "swap_out",
    "major_faults",
    "minor_faults",
    "free_memory",
    "total_memory",
    "available_memory",
    "disk_caches",
    "hugetlb_allocations",
    "hugetlb_failures",
    "oom_kills",
    "alloc_stalls",
    "async_scans",
    "direct_scans",
    "async_reclaims",
    "direct_reclaims",
];

/// The pages `bytes` needs (a partial page counts whole), as the config space holds them.
pub(super) fn pages_for(bytes: u64) -> Result<u32, BalloonError> {
    u32::try_from(bytes.div_ceil(BALLOON_PAGE_SIZE))
        .map_err(|_| BalloonError::TargetTooLarge { bytes })
}

/// Counters of one queue role. Relaxed atomics: they are statistics, read on the control
/// path, ordered with nothing else.
#[derive(Debug, Default)]
pub(super) struct QueueCounters {
    /// Chains completed, well-formed or not.
    pub chains: AtomicU64,
    /// Pages inflated or deflated, bytes reported, or statistics reports received.
    pub amount: AtomicU64,
    /// 4 KiB pages (rounded up) given up by the guest but not released to the host.
    pub ignored_pages: AtomicU64,
    /// Chains that could not be parsed, completed with nothing done.
    pub bad_chains: AtomicU64,
}

impl QueueCounters {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// The counters under the names the reactor's stats show; `amount` is named by role.
    pub fn named(&self, amount: &'static str) -> Vec<(&'static str, u64)> {
        vec![
            (amount, Self::get(&self.amount)),
            ("chains", Self::get(&self.chains)),
            ("ignored_pages", Self::get(&self.ignored_pages)),
            ("bad_chains", Self::get(&self.bad_chains)),
        ]
    }
}

/// The latest statistics report, by tag.
#[derive(Debug, Default, Clone)]
pub(super) struct GuestStats {
    values: [Option<u64>; GUEST_STAT_NAMES.len()],
}

impl GuestStats {
    /// Records `value` for `tag`; unknown tags (a newer guest) are dropped.
    pub fn set(&mut self, tag: u16, value: u64) {
        if let Some(slot) = self.values.get_mut(usize::from(tag)) {
            *slot = Some(value);
        }
    }

    fn named(&self) -> Vec<(&'static str, u64)> {
        GUEST_STAT_NAMES
            .iter()
            .zip(&self.values)
            .filter_map(|(&name, value)| Some((name, (*value)?)))
            .collect()
    }
}

/// Everything the device, its workers and the handles share.
#[derive(Debug)]
pub(super) struct Shared {
    target_pages: AtomicU32,
    actual_pages: AtomicU32,
    pub inflate: QueueCounters,
    pub deflate: QueueCounters,
    pub stats: QueueCounters,
    pub reporting: QueueCounters,
    guest: Mutex<GuestStats>,
}

impl Shared {
    pub fn new(target_pages: u32) -> Self {
        Self {
            target_pages: AtomicU32::new(target_pages),
            actual_pages: AtomicU32::new(0),
            inflate: QueueCounters::default(),
            deflate: QueueCounters::default(),
            stats: QueueCounters::default(),
            reporting: QueueCounters::default(),
            guest: Mutex::new(GuestStats::default()),
        }
    }

    pub fn target_pages(&self) -> u32 {
        self.target_pages.load(Ordering::Relaxed)
    }

    pub fn actual_pages(&self) -> u32 {
        self.actual_pages.load(Ordering::Relaxed)
    }

    pub fn set_actual_pages(&self, pages: u32) {
        self.actual_pages.store(pages, Ordering::Relaxed);
    }

    /// Replaces the guest's statistics with a new report.
    pub fn set_guest_stats(&self, report: GuestStats) {
        *self.guest() = report;
        QueueCounters::add(&self.stats.amount, 1);
    }

    fn guest(&self) -> MutexGuard<'_, GuestStats> {
        // The critical sections only copy plain values: a panic elsewhere while holding
        // the lock cannot have left them half-written in a way that matters.
        self.guest.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What the balloon has done, for the control API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BalloonStats {
    /// Pages (4 KiB) the guest is asked to hold in the balloon.
    pub target_pages: u32,
    /// Pages the driver says it holds (its last write of `actual`).
    pub actual_pages: u32,
    /// Pages the guest put in the balloon, released or not.
    pub inflated_pages: u64,
    /// Pages the guest took back.
    pub deflated_pages: u64,
    /// Pages (inflated or reported) not released to the host: outside guest RAM, in a
    /// protected range, or not whole host pages.
    pub ignored_pages: u64,
    /// Chains of any queue that could not be parsed.
    pub bad_chains: u64,
    /// Bytes of free memory the guest reported.
    pub reported_bytes: u64,
    /// Statistics reports received.
    pub guest_stats_updates: u64,
    /// The guest's latest statistics, by name; tags the guest did not send are absent.
    pub guest_stats: Vec<(&'static str, u64)>,
}

/// The control API's handle on a balloon: cheap to clone, usable from any thread.
#[derive(Debug, Clone)]
pub struct BalloonHandle {
    shared: Arc<Shared>,
}

impl BalloonHandle {
    pub(super) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// Asks the guest to hold `bytes` (rounded up to 4 KiB pages) in the balloon. Returns
    /// whether the target changed: the caller then raises the configuration-change
    /// interrupt, which is what makes the driver look.
    pub fn set_target_bytes(&self, bytes: u64) -> Result<bool, BalloonError> {
        let pages = pages_for(bytes)?;
        Ok(self.shared.target_pages.swap(pages, Ordering::Relaxed) != pages)
    }

    /// The target in 4 KiB pages.
    pub fn target_pages(&self) -> u32 {
        self.shared.target_pages()
    }

    /// A snapshot of the counters and the guest's latest statistics.
    pub fn stats(&self) -> BalloonStats {
        let s = &*self.shared;
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        BalloonStats {
            target_pages: s.target_pages(),
            actual_pages: s.actual_pages(),
            inflated_pages: get(&s.inflate.amount),
            deflated_pages: get(&s.deflate.amount),
            ignored_pages: get(&s.inflate.ignored_pages) + get(&s.reporting.ignored_pages),
            bad_chains: [&s.inflate, &s.deflate, &s.stats, &s.reporting]
                .iter()
                .map(|q| get(&q.bad_chains))
                .sum(),
            reported_bytes: get(&s.reporting.amount),
            guest_stats_updates: get(&s.stats.amount),
            guest_stats: s.guest().named(),
        }
    }
}
