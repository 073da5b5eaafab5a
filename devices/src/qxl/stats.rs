//! The QXL device's counters, read by the control API.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

#[derive(Debug, Default)]
pub struct QxlCounters {
    pub io_writes: AtomicU64,
    pub async_commands: AtomicU64,
    pub draws: AtomicU64,
    pub surface_commands: AtomicU64,
    pub cursor_commands: AtomicU64,
    pub unsupported: AtomicU64,
    pub guest_errors: AtomicU64,
    pub releases: AtomicU64,
    pub release_ring_full: AtomicU64,
    pub interrupts: AtomicU64,
    pub resets: AtomicU64,
    last_error: Mutex<Option<String>>,
}

/// A copy of the counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QxlStats {
    pub io_writes: u64,
    pub async_commands: u64,
    pub draws: u64,
    pub surface_commands: u64,
    pub cursor_commands: u64,
    /// Valid commands this renderer does not draw (e.g. STROKE, TEXT), skipped.
    pub unsupported: u64,
    /// Protocol violations: bad addresses, broken rings, unknown types.
    pub guest_errors: u64,
    pub releases: u64,
    pub release_ring_full: u64,
    pub interrupts: u64,
    pub resets: u64,
    pub last_error: Option<String>,
}

impl QxlCounters {
    /// Adds `n`; returns the new value.
    pub fn add(&self, counter: &AtomicU64, n: u64) -> u64 {
        counter.fetch_add(n, Ordering::Relaxed) + n
    }

    pub fn add_release_ring_full(&self) {
        self.add(&self.release_ring_full, 1);
    }

    pub fn set_last_error(&self, what: &str) {
        let mut last = self
            .last_error
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *last = Some(what.chars().take(200).collect());
    }

    pub fn snapshot(&self) -> QxlStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        QxlStats {
            io_writes: get(&self.io_writes),
            async_commands: get(&self.async_commands),
            draws: get(&self.draws),
            surface_commands: get(&self.surface_commands),
            cursor_commands: get(&self.cursor_commands),
            unsupported: get(&self.unsupported),
            guest_errors: get(&self.guest_errors),
            releases: get(&self.releases),
            release_ring_full: get(&self.release_ring_full),
            interrupts: get(&self.interrupts),
            resets: get(&self.resets),
            last_error: self
                .last_error
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .clone(),
        }
    }
}
