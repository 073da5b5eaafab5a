//! The host side of a virtio-input device: the events the VNC server (or anyone holding an
//! [`InputHandle`]) produces, waiting for the guest's buffers, and what the guest told
//! the device back (its LEDs).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use log::warn;
use vmm_sys_util::eventfd::EventFd;

use super::config::{Capabilities, ABS_MAX};
use super::evdev::{
    ABS_X, ABS_Y, BTN_LEFT, BTN_MIDDLE, BTN_RIGHT, EV_ABS, EV_KEY, EV_REL, EV_SYN, LED_CAPSL,
    LED_NUML, LED_SCROLLL, REL_WHEEL, SYN_REPORT,
};
use super::InputKind;

/// Events held for the guest at most: a guest that never reads (no driver, a hung one)
/// costs the VMM 32 KiB per device and no more.
pub const MAX_PENDING_EVENTS: usize = 4096;

/// Button bits of [`InputHandle::buttons`], in RFB's PointerEvent order, so a VNC server
/// passes `button_mask & 7` through.
pub const BUTTON_LEFT: u8 = 1 << 0;
pub const BUTTON_MIDDLE: u8 = 1 << 1;
pub const BUTTON_RIGHT: u8 = 1 << 2;

/// `struct virtio_input_event`: le16 type, le16 code, le32 value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputEvent {
    pub kind: u16,
    pub code: u16,
    pub value: u32,
}

/// Bytes of one event on the wire.
pub const EVENT_LEN: usize = 8;

impl InputEvent {
    pub const fn new(kind: u16, code: u16, value: u32) -> Self {
        Self { kind, code, value }
    }

    pub fn to_bytes(self) -> [u8; EVENT_LEN] {
        let [a, b] = self.kind.to_le_bytes();
        let [c, d] = self.code.to_le_bytes();
        let [e, f, g, h] = self.value.to_le_bytes();
        [a, b, c, d, e, f, g, h]
    }

    pub fn from_bytes(bytes: [u8; EVENT_LEN]) -> Self {
        let [a, b, c, d, e, f, g, h] = bytes;
        Self::new(
            u16::from_le_bytes([a, b]),
            u16::from_le_bytes([c, d]),
            u32::from_le_bytes([e, f, g, h]),
        )
    }

    fn is_syn(&self) -> bool {
        self.kind == EV_SYN && self.code == SYN_REPORT
    }
}

const SYN: InputEvent = InputEvent::new(EV_SYN, SYN_REPORT, 0);

/// The keyboard LEDs as the guest last set them.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LedState {
    pub num_lock: bool,
    pub caps_lock: bool,
    pub scroll_lock: bool,
}

/// What the device has done, for the control API.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct InputStats {
    /// Events written into guest buffers.
    pub events_delivered: u64,
    /// Events dropped: the oldest when the queue was full, and those produced while no
    /// driver had the device.
    pub events_dropped: u64,
    /// Events waiting for guest buffers now.
    pub events_pending: u64,
    /// Events of a kind this device does not report (a pointer event to the keyboard),
    /// never queued.
    pub events_ignored: u64,
    /// Event and status buffers that could not be used, returned empty.
    pub bad_chains: u64,
    /// Status events (LED changes and the like) the guest sent.
    pub status_events: u64,
}

/// Events waiting for the guest, with the state they are computed from.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    pub events: VecDeque<InputEvent>,
    /// Whether a driver has the device: events produced without one are stale by the
    /// time a driver comes (keys typed at the firmware would burst into a login prompt).
    pub active: bool,
    /// The buttons held now, to report only changes.
    buttons: u8,
}

/// Counters; relaxed atomics: statistics ordered with nothing.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub delivered: AtomicU64,
    pub dropped: AtomicU64,
    pub ignored: AtomicU64,
    pub event_bad_chains: AtomicU64,
    pub status_bad_chains: AtomicU64,
    pub status_events: AtomicU64,
}

impl Counters {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// Everything the device, its workers and the handles share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub caps: Capabilities,
    pending: Mutex<Pending>,
    /// Written when events arrive; the event queue's worker keeps a read of it under way
    /// in its reactor.
    pub wake: EventFd,
    /// A write of `wake` is not consumed yet: later events need no syscall of their own
    /// (pointer motion comes in bursts).
    pub wake_pending: AtomicBool,
    /// LED bits by LED code, as the guest last set them.
    pub leds: AtomicU16,
    pub counters: Counters,
}

impl Shared {
    pub fn new(kind: InputKind) -> std::io::Result<Self> {
        Ok(Self {
            caps: Capabilities::new(kind),
            pending: Mutex::new(Pending::default()),
            // Blocking: a read through io_uring then waits for a write instead of failing
            // with EAGAIN.
            wake: EventFd::new(libc::EFD_CLOEXEC)?,
            wake_pending: AtomicBool::new(false),
            leds: AtomicU16::new(0),
            counters: Counters::default(),
        })
    }

    pub fn pending(&self) -> MutexGuard<'_, Pending> {
        // The critical sections leave the queue whole at every step: a panic elsewhere
        // while holding the lock cannot have left it half-written.
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A driver took the device (DRIVER_OK) or let it go (reset): either way, what was
    /// queued is for nobody.
    pub fn set_active(&self, active: bool) {
        let mut pending = self.pending();
        let stale = pending.events.len() as u64;
        pending.events.clear();
        pending.buttons = 0;
        pending.active = active;
        drop(pending);
        Counters::add(&self.counters.dropped, stale);
        if !active {
            self.leds.store(0, Ordering::Relaxed);
        }
    }

    /// Queues one report (its events then SYN_REPORT) and wakes the event worker.
    fn report(&self, events: &[InputEvent]) {
        self.queue_report(self.pending(), events);
    }

    /// As [`report`](Self::report), under a lock the caller already took to compute the
    /// events, so that reports leave in the order their state changed.
    fn queue_report(&self, mut pending: MutexGuard<'_, Pending>, events: &[InputEvent]) {
        let (wanted, unsupported): (Vec<_>, Vec<_>) = events
            .iter()
            .partition(|e| self.caps.supports(e.kind, e.code));
        Counters::add(&self.counters.ignored, unsupported.len() as u64);
        if wanted.is_empty() {
            return;
        }
        if !pending.active {
            drop(pending);
            // The SYN_REPORT that would have closed them counts too.
            Counters::add(&self.counters.dropped, wanted.len() as u64 + 1);
            return;
        }
        let dropped = push_report(&mut pending.events, &wanted);
        drop(pending);
        Counters::add(&self.counters.dropped, dropped);
        self.wake_worker();
    }

    fn wake_worker(&self) {
        if self.wake_pending.swap(true, Ordering::AcqRel) {
            return;
        }
        if let Err(err) = self.wake.write(1) {
            // Only a counter about to overflow fails; the events still go out with the
            // guest's next kick.
            warn!("virtio-input: cannot wake the event queue: {err}");
            self.wake_pending.store(false, Ordering::Release);
        }
    }

    fn leds(&self) -> LedState {
        let bits = self.leds.load(Ordering::Relaxed);
        let on = |led: u16| bits & (1 << led) != 0;
        LedState {
            num_lock: on(LED_NUML),
            caps_lock: on(LED_CAPSL),
            scroll_lock: on(LED_SCROLLL),
        }
    }
}

/// Appends `events` and a SYN_REPORT to `queue`, first dropping the oldest whole reports
/// until they fit in [`MAX_PENDING_EVENTS`]: the guest never sees half a report (an X
/// without its Y). Returns how many events were dropped.
pub(crate) fn push_report(queue: &mut VecDeque<InputEvent>, events: &[InputEvent]) -> u64 {
    let needed = events.len() + 1;
    let mut dropped = 0u64;
    while !queue.is_empty() && queue.len() + needed > MAX_PENDING_EVENTS {
        while let Some(event) = queue.pop_front() {
            dropped += 1;
            if event.is_syn() {
                break;
            }
        }
    }
    queue.extend(events.iter().copied());
    queue.push_back(SYN);
    dropped
}

/// Feeds a virtio-input device: cheap to clone, usable from any thread (the VNC server's).
///
/// Every call is one report: its events and a SYN_REPORT, delivered in order. Events the
/// device does not report (a key to the tablet) are counted and left out.
#[derive(Debug, Clone)]
pub struct InputHandle {
    shared: Arc<Shared>,
}

impl InputHandle {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// Which device this handle feeds.
    pub fn kind(&self) -> InputKind {
        self.shared.caps.kind()
    }

    /// A key (a Linux KEY_* code, see [`super::keysym_to_linux`]) went down or up.
    pub fn key(&self, linux_code: u16, down: bool) {
        self.shared
            .report(&[InputEvent::new(EV_KEY, linux_code, u32::from(down))]);
    }

    /// The pointer is at (`x`, `y`), each 0..=[`ABS_MAX`] across the screen; larger
    /// values are clamped.
    pub fn pointer_abs(&self, x: u32, y: u32) {
        self.shared.report(&[
            InputEvent::new(EV_ABS, ABS_X, x.min(ABS_MAX)),
            InputEvent::new(EV_ABS, ABS_Y, y.min(ABS_MAX)),
        ]);
    }

    /// The buttons held now ([`BUTTON_LEFT`] | [`BUTTON_MIDDLE`] | [`BUTTON_RIGHT`]);
    /// other bits are ignored. Only buttons that changed are reported, so a VNC server
    /// may call this with every PointerEvent.
    pub fn buttons(&self, mask: u8) {
        let mut pending = self.shared.pending();
        let changed = (pending.buttons ^ mask) & (BUTTON_LEFT | BUTTON_MIDDLE | BUTTON_RIGHT);
        if changed == 0 {
            return;
        }
        pending.buttons ^= changed;
        let events: Vec<InputEvent> = [
            (BUTTON_LEFT, BTN_LEFT),
            (BUTTON_MIDDLE, BTN_MIDDLE),
            (BUTTON_RIGHT, BTN_RIGHT),
        ]
        .into_iter()
        .filter(|&(bit, _)| changed & bit != 0)
        .map(|(bit, code)| InputEvent::new(EV_KEY, code, u32::from(mask & bit != 0)))
        .collect();
        self.shared.queue_report(pending, &events);
    }

    /// The wheel turned `delta` notches: positive away from the user (scroll up, RFB's
    /// button 4), negative towards (button 5).
    pub fn wheel(&self, delta: i32) {
        if delta != 0 {
            // The wire value is the two's complement of the signed delta.
            self.shared
                .report(&[InputEvent::new(EV_REL, REL_WHEEL, delta as u32)]);
        }
    }

    /// The keyboard LEDs as the guest last set them (all off for a tablet).
    pub fn leds(&self) -> LedState {
        self.shared.leds()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> InputStats {
        let c = &self.shared.counters;
        InputStats {
            events_delivered: Counters::get(&c.delivered),
            events_dropped: Counters::get(&c.dropped),
            events_pending: self.shared.pending().events.len() as u64,
            events_ignored: Counters::get(&c.ignored),
            bad_chains: Counters::get(&c.event_bad_chains) + Counters::get(&c.status_bad_chains),
            status_events: Counters::get(&c.status_events),
        }
    }
}
