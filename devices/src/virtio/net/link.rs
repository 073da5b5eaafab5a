//! The link as the guest sees it (VIRTIO_NET_S_LINK_UP in the configuration space):
//! down while the TAP is gone from under the device, up otherwise; the transport is told
//! of each change so that the driver re-reads the status.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

type Notifier = Box<dyn Fn() + Send + Sync>;

#[derive(Default)]
pub struct LinkState {
    down: AtomicBool,
    /// Raises the configuration-change interrupt; set by the VMM once the device is on
    /// its transport. It must not block: workers call it on reactor threads.
    on_change: OnceLock<Notifier>,
}

impl LinkState {
    pub fn is_up(&self) -> bool {
        !self.down.load(Ordering::Acquire)
    }

    /// Sets how a change reaches the driver; only the first call counts.
    pub fn set_notifier(&self, notify: Notifier) {
        let _ = self.on_change.set(notify);
    }

    /// The TAP is back: the link comes up, and the driver is told.
    pub(crate) fn set_up(&self) {
        if self.down.swap(false, Ordering::AcqRel) {
            if let Some(notify) = self.on_change.get() {
                notify();
            }
        }
    }

    /// The TAP is gone: the link goes down once, and the driver is told.
    pub(crate) fn set_down(&self) {
        if !self.down.swap(true, Ordering::AcqRel) {
            if let Some(notify) = self.on_change.get() {
                notify();
            }
        }
    }
}
