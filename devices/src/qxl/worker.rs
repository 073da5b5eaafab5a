//! The QXL device on the low-priority reactor: its doorbell (NOTIFY_CMD, NOTIFY_CURSOR
//! and queued async port commands) wakes the worker, which runs what is queued and
//! drains the rings. It needs no host I/O, so every command completes during the drain.

use std::sync::Arc;

use ringvisor_io::{IoBatch, QueueFault, QueueWorker};

use super::device::{Shared, DRAIN_BUDGET};

pub struct QxlWorker {
    shared: Arc<Shared>,
}

impl QxlWorker {
    pub(super) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }
}

impl QueueWorker for QxlWorker {
    fn drain(&mut self, _batch: &mut IoBatch) -> Result<usize, QueueFault> {
        let mut done = self.shared.run_async_commands();
        let (taken, screen_changed) = self.shared.process_rings(DRAIN_BUDGET);
        done += taken;
        if screen_changed {
            self.shared.bump_screen();
        }
        Ok(done)
    }

    fn complete(
        &mut self,
        _tag: u64,
        _result: i32,
        _batch: &mut IoBatch,
    ) -> Result<(), QueueFault> {
        Ok(())
    }

    /// The device raises its own interrupts as commands finish.
    fn needs_interrupt(&mut self) -> Result<bool, QueueFault> {
        Ok(false)
    }

    fn disable_notification(&mut self) -> Result<(), QueueFault> {
        Ok(())
    }

    fn enable_notification(&mut self) -> Result<bool, QueueFault> {
        for ring in [self.shared.command_ring(), self.shared.cursor_ring()] {
            // A broken ring is reported by the next drain; it never faults the reactor.
            let _ = ring.arm_notify(&self.shared.ram);
        }
        Ok(self.shared.has_async_commands() || self.shared.rings_pending())
    }

    fn in_flight(&self) -> usize {
        0
    }

    fn has_available(&mut self) -> Result<bool, QueueFault> {
        Ok(self.shared.has_async_commands() || self.shared.rings_pending())
    }

    fn counters(&self) -> Vec<(&'static str, u64)> {
        let stats = self.shared.counters.snapshot();
        vec![
            ("draws", stats.draws),
            ("surface_commands", stats.surface_commands),
            ("cursor_commands", stats.cursor_commands),
            ("unsupported", stats.unsupported),
            ("guest_errors", stats.guest_errors),
            ("releases", stats.releases),
            ("interrupts", stats.interrupts),
        ]
    }
}
