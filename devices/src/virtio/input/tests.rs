//! virtio-input without a reactor: events into buffers posted on mock split queues
//! (virtio-queue's MockSplitQueue), the bounded host queue, malformed chains and the
//! status queue. The configuration space is tested in config.rs, the keymap in keymap.rs,
//! the reactor path in tests/device_path_input.rs.

use std::os::fd::AsRawFd;

use ringvisor_io::{IoBatch, IoOp, QueueWorker};
use virtio_bindings::virtio_ring::{VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use virtio_queue::desc::{split::Descriptor, RawDescriptor};
use virtio_queue::mock::MockSplitQueue;
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress};

use super::evdev::key::*;
use super::evdev::*;
use super::worker::WAKE_TAG;
use super::*;
use crate::virtio::test_util::execute;
use crate::virtio::{ActivateError, GuestMemory};

const QSIZE: u16 = 64;
const R: u16 = 0;
const W: u16 = VRING_DESC_F_WRITE as u16;
const EVENT_RING: u64 = 0;
const STATUS_RING: u64 = 0x4000;
/// Where each queue's used ring goes, past MockSplitQueue's avail ring (see MockDriver).
const USED_OFFSET: u64 = 0x2000;
const BUFFERS: u64 = 0x1_0000;
const MEM_END: u64 = 0x10_0000;

fn memory() -> GuestMemory {
    GuestMemory::from_ranges(&[(GuestAddress(0), MEM_END as usize)]).unwrap()
}

/// The driver side of one queue at `base`.
struct Driver<'a> {
    mem: &'a GuestMemory,
    vq: MockSplitQueue<'a, GuestMemory>,
    used_ring: u64,
    next_desc: u16,
    avail: u16,
    used: u16,
}

impl<'a> Driver<'a> {
    fn new(mem: &'a GuestMemory, base: u64) -> (Self, Queue) {
        let vq = MockSplitQueue::create(mem, GuestAddress(base), QSIZE);
        let mut queue: Queue = vq.create_queue().unwrap();
        let used_ring = base + USED_OFFSET;
        queue.set_used_ring_address(Some(used_ring as u32), Some(0));
        let driver = Self {
            mem,
            vq,
            used_ring,
            next_desc: 0,
            avail: 0,
            used: 0,
        };
        (driver, queue)
    }

    /// Publishes a chain of (addr, len, flags); returns its head.
    fn add(&mut self, descs: &[(u64, u32, u16)]) -> u16 {
        let n = descs.len() as u16;
        if self.next_desc + n > QSIZE {
            self.next_desc = 0;
        }
        let head = self.next_desc;
        for (i, &(addr, len, flags)) in descs.iter().enumerate() {
            let index = head + i as u16;
            let (flags, next) = if i + 1 == descs.len() {
                (flags, 0)
            } else {
                (flags | VRING_DESC_F_NEXT as u16, index + 1)
            };
            self.store(index, addr, len, flags, next);
        }
        self.next_desc += n;
        self.publish(head);
        head
    }

    fn store(&self, index: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let desc = Descriptor::new(addr, len, flags, next);
        self.vq
            .desc_table()
            .store(index, RawDescriptor::from(desc))
            .unwrap();
    }

    fn publish(&mut self, head: u16) {
        let slot = usize::from(self.avail % QSIZE);
        self.vq.avail().ring().ref_at(slot).unwrap().store(head);
        self.avail = self.avail.wrapping_add(1);
        self.vq.avail().idx().store(self.avail);
    }

    /// Every used entry not read yet: (head, len).
    fn used(&mut self) -> Vec<(u32, u32)> {
        let idx: u16 = self.mem.read_obj(GuestAddress(self.used_ring + 2)).unwrap();
        let mut out = Vec::new();
        while self.used != idx {
            let elem = self.used_ring + 4 + 8 * u64::from(self.used % QSIZE);
            let id: u32 = self.mem.read_obj(GuestAddress(elem)).unwrap();
            let len: u32 = self.mem.read_obj(GuestAddress(elem + 4)).unwrap();
            out.push((id, len));
            self.used = self.used.wrapping_add(1);
        }
        out
    }
}

/// An activated device with both queues, driven the way a reactor would.
struct Rig<'a> {
    mem: &'a GuestMemory,
    dev: InputDevice,
    handle: InputHandle,
    events: Driver<'a>,
    status: Driver<'a>,
    event_worker: Box<dyn QueueWorker>,
    status_worker: Box<dyn QueueWorker>,
    /// The event worker's wake-up read, while it is under way.
    wake_read: Option<IoOp>,
    next_buffer: u64,
}

impl<'a> Rig<'a> {
    fn new(mem: &'a GuestMemory, kind: InputKind) -> Self {
        let mut dev = InputDevice::new(kind).unwrap();
        let handle = dev.handle();
        let (events, event_queue) = Driver::new(mem, EVENT_RING);
        let (status, status_queue) = Driver::new(mem, STATUS_RING);
        let mut workers = dev
            .activate(
                mem.clone(),
                VIRTIO_F_VERSION_1,
                vec![(0, event_queue), (1, status_queue)],
            )
            .unwrap();
        let (1, status_worker) = workers.pop().unwrap() else {
            panic!("queue 1 last");
        };
        let (0, event_worker) = workers.pop().unwrap() else {
            panic!("queue 0 first");
        };
        let mut rig = Self {
            mem,
            dev,
            handle,
            events,
            status,
            event_worker,
            status_worker,
            wake_read: None,
            next_buffer: BUFFERS,
        };
        // The reactor drains a queue as soon as it gets it.
        assert_eq!(rig.drain_events(), 0);
        assert!(
            rig.wake_read.is_some(),
            "the worker waits for input at once"
        );
        rig
    }

    fn alloc(&mut self, len: u64) -> u64 {
        let at = self.next_buffer;
        self.next_buffer += len.next_multiple_of(64);
        at
    }

    /// Posts `count` 8-byte event buffers; returns their addresses by head.
    fn post_event_buffers(&mut self, count: usize) -> Vec<(u16, u64)> {
        (0..count)
            .map(|_| {
                let at = self.alloc(8);
                (self.events.add(&[(at, 8, W)]), at)
            })
            .collect()
    }

    fn take_ops(&mut self, batch: &mut IoBatch) {
        for (tag, op) in batch.drain() {
            assert_eq!(tag, WAKE_TAG);
            assert!(self.wake_read.replace(op).is_none(), "one wake-up read");
        }
    }

    /// The kick: drains the event queue; returns how many chains it popped.
    fn drain_events(&mut self) -> usize {
        let mut batch = IoBatch::new();
        let popped = self.event_worker.drain(&mut batch).unwrap();
        self.take_ops(&mut batch);
        popped
    }

    /// Completes the wake-up read if the eventfd was written, as the reactor would;
    /// returns whether it was.
    fn fire_wake(&mut self) -> bool {
        let fd = self.dev.shared.wake.as_raw_fd();
        let mut pollfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd on the device's eventfd, which outlives the call.
        let ready = unsafe { libc::poll(&mut pollfd, 1, 0) };
        if ready != 1 {
            return false;
        }
        let op = self.wake_read.take().expect("a wake-up read under way");
        let result = execute(op);
        assert_eq!(result, 8);
        let mut batch = IoBatch::new();
        self.event_worker
            .complete(WAKE_TAG, result, &mut batch)
            .unwrap();
        self.take_ops(&mut batch);
        true
    }

    /// The events written into the used buffers of `posted`, in used-ring order.
    fn delivered(&mut self, posted: &[(u16, u64)]) -> Vec<InputEvent> {
        self.events
            .used()
            .into_iter()
            .map(|(head, len)| {
                assert_eq!(len, 8, "buffer {head}");
                let &(_, at) = posted
                    .iter()
                    .find(|(h, _)| u32::from(*h) == head)
                    .expect("a posted buffer");
                let mut raw = [0u8; 8];
                self.mem.read_slice(&mut raw, GuestAddress(at)).unwrap();
                InputEvent::from_bytes(raw)
            })
            .collect()
    }

    /// Sends `events` in one status buffer and drains the status queue.
    fn send_status(&mut self, events: &[InputEvent]) -> Vec<(u32, u32)> {
        let bytes: Vec<u8> = events.iter().flat_map(|e| e.to_bytes()).collect();
        let at = self.alloc(bytes.len() as u64);
        self.mem.write_slice(&bytes, GuestAddress(at)).unwrap();
        self.status.add(&[(at, bytes.len() as u32, R)]);
        self.drain_status()
    }

    fn drain_status(&mut self) -> Vec<(u32, u32)> {
        let mut batch = IoBatch::new();
        self.status_worker.drain(&mut batch).unwrap();
        assert!(batch.is_empty(), "the status queue needs no host I/O");
        self.status.used()
    }
}

fn ev(kind: u16, code: u16, value: u32) -> InputEvent {
    InputEvent::new(kind, code, value)
}

const SYN: InputEvent = InputEvent::new(EV_SYN, SYN_REPORT, 0);

fn counter(worker: &dyn QueueWorker, name: &str) -> u64 {
    worker
        .counters()
        .into_iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("no counter {name}"))
        .1
}

#[test]
fn the_handle_is_shared_across_threads() {
    fn shareable<T: Clone + Send + Sync + 'static>() {}
    shareable::<InputHandle>();
}

#[test]
fn identity_queues_and_features() {
    for kind in [InputKind::Keyboard, InputKind::Tablet] {
        let dev = InputDevice::new(kind).unwrap();
        assert_eq!(dev.device_type(), 18);
        assert_eq!(dev.queue_max_sizes(), vec![64, 64]);
        assert_eq!(dev.offered_features(), VIRTIO_F_VERSION_1);
        assert_eq!(dev.kind(), kind);
        assert_eq!(dev.handle().kind(), kind);
    }
}

#[test]
fn events_reach_posted_buffers_in_order_with_syn() {
    let mem = memory();
    let mut rig = Rig::new(&mem, InputKind::Keyboard);
    let posted = rig.post_event_buffers(6);
    assert_eq!(rig.drain_events(), 6);
    assert!(!rig.fire_wake(), "no input yet");
    rig.handle.key(KEY_A, true);
    rig.handle.key(KEY_A, false);
    assert!(rig.fire_wake());
    assert_eq!(
        rig.delivered(&posted),
        [ev(EV_KEY, KEY_A, 1), SYN, ev(EV_KEY, KEY_A, 0), SYN]
    );
    let stats = rig.handle.stats();
    assert_eq!(stats.events_delivered, 4);
    assert_eq!(stats.events_pending, 0);
    assert_eq!(counter(&*rig.event_worker, "posted_buffers"), 2);
    assert_eq!(counter(&*rig.event_worker, "events_delivered"), 4);
    // The wake-up read is under way again.
    rig.handle.key(KEY_LEFTSHIFT, true);
    assert!(rig.fire_wake());
    assert_eq!(rig.delivered(&posted), [ev(EV_KEY, KEY_LEFTSHIFT, 1), SYN]);
}

#[test]
fn events_wait_for_buffers() {
    let mem = memory();
    let mut rig = Rig::new(&mem, InputKind::Keyboard);
    rig.handle.key(KEY_ENTER, true);
    rig.handle.key(KEY_ENTER, false);
    assert!(rig.fire_wake());
    assert_eq!(rig.events.used(), []);
    assert_eq!(rig.handle.stats().events_pending, 4);
    let first = rig.post_event_buffers(3);
    rig.drain_events();
    assert_eq!(
        rig.delivered(&first),
        [ev(EV_KEY, KEY_ENTER, 1), SYN, ev(EV_KEY, KEY_ENTER, 0)]
    );
    let second = rig.post_event_buffers(3);
    rig.drain_events();
    assert_eq!(rig.delivered(&second), [SYN]);
    assert_eq!(rig.handle.stats().events_pending, 0);
    assert_eq!(counter(&*rig.event_worker, "posted_buffers"), 2);
}

#[test]
fn tablet_reports_position_changed_buttons_and_the_wheel() {
    let mem = memory();
    let mut rig = Rig::new(&mem, InputKind::Tablet);
    let posted = rig.post_event_buffers(QSIZE as usize);
    rig.drain_events();
    rig.handle.pointer_abs(100, 40_000);
    rig.handle.buttons(BUTTON_LEFT);
    rig.handle.buttons(BUTTON_LEFT | 0x80); // held still, other bits ignored
    rig.handle.buttons(BUTTON_RIGHT);
    rig.handle.wheel(-1);
    rig.handle.wheel(0);
    rig.handle.buttons(BUTTON_MIDDLE);
    rig.handle.key(KEY_A, true); // a tablet has no keys
    assert!(rig.fire_wake());
    assert_eq!(
        rig.delivered(&posted),
        [
            ev(EV_ABS, ABS_X, 100),
            ev(EV_ABS, ABS_Y, 32767),
            SYN,
            ev(EV_KEY, BTN_LEFT, 1),
            SYN,
            ev(EV_KEY, BTN_LEFT, 0),
            ev(EV_KEY, BTN_RIGHT, 1),
            SYN,
            ev(EV_REL, REL_WHEEL, u32::MAX),
            SYN,
            ev(EV_KEY, BTN_MIDDLE, 1),
            ev(EV_KEY, BTN_RIGHT, 0),
            SYN,
        ]
    );
    assert_eq!(rig.handle.stats().events_ignored, 1);
}

#[test]
fn a_full_queue_drops_the_oldest_whole_reports() {
    let mem = memory();
    let mut rig = Rig::new(&mem, InputKind::Keyboard);
    // 2100 reports of two events: 4200 events for 4096 places.
    let code = |i: usize| (i % 200) as u16 + 1;
    for i in 0..2100 {
        rig.handle.key(code(i), i % 2 == 0);
    }
    let stats = rig.handle.stats();
    assert_eq!(stats.events_pending, MAX_PENDING_EVENTS as u64);
    assert_eq!(stats.events_dropped, 4200 - MAX_PENDING_EVENTS as u64);
    assert_eq!(counter(&*rig.event_worker, "events_dropped"), 104);
    assert!(rig.fire_wake());
    // The survivors start at report 52, whole.
    let posted = rig.post_event_buffers(4);
    rig.drain_events();
    assert_eq!(
        rig.delivered(&posted),
        [ev(EV_KEY, code(52), 1), SYN, ev(EV_KEY, code(53), 0), SYN]
    );
}

#[test]
fn input_without_a_driver_is_dropped() {
    let dev = InputDevice::new(InputKind::Keyboard).unwrap();
    let handle = dev.handle();
    handle.key(KEY_A, true);
    assert_eq!(handle.stats().events_dropped, 2);
    assert_eq!(handle.stats().events_pending, 0);
    assert!(!dev.is_activated());

    let mem = memory();
    let mut rig = Rig::new(&mem, InputKind::Keyboard);
    rig.handle.key(KEY_B, true);
    rig.send_status(&[ev(EV_LED, LED_CAPSL, 1)]);
    assert!(rig.handle.leds().caps_lock);
    assert!(rig.dev.is_activated());
    rig.dev.reset();
    assert!(!rig.dev.is_activated());
    let stats = rig.handle.stats();
    assert_eq!((stats.events_pending, stats.events_dropped), (0, 2));
    assert_eq!(rig.handle.leds(), LedState::default());
    rig.handle.key(KEY_B, false);
    assert_eq!(rig.handle.stats().events_dropped, 4);
    drop(dev);
}

#[test]
fn wake_ups_are_coalesced_until_the_worker_reads() {
    let mem = memory();
    let mut rig = Rig::new(&mem, InputKind::Keyboard);
    for _ in 0..5 {
        rig.handle.key(KEY_X, true);
    }
    assert!(rig.fire_wake());
    assert!(!rig.fire_wake(), "one write for the burst");
    rig.handle.key(KEY_X, false);
    assert!(rig.fire_wake(), "the next event after the read wakes again");
    assert_eq!(rig.handle.stats().events_pending, 12);
}

#[test]
fn bad_event_chains_are_returned_empty_and_counted() {
    let mem = memory();
    let mut rig = Rig::new(&mem, InputKind::Keyboard);
    let split = rig.alloc(8);
    let good = rig.alloc(8);
    let heads = [
        rig.events.add(&[(rig.next_buffer, 8, R)]), // read-only
        rig.events.add(&[(rig.next_buffer, 4, W)]), // too short
        rig.events.add(&[(MEM_END - 4, 8, W)]),     // crosses the end of RAM
        rig.events.add(&[(1 << 40, 8, W)]),         // outside RAM
        rig.events.add(&[(BUFFERS, 8, R), (good, 8, W)]), // readable part
    ];
    // A descriptor whose `next` is outside the table.
    let looped = rig.events.add(&[(good, 8, W)]);
    rig.events
        .store(looped, good, 8, W | VRING_DESC_F_NEXT as u16, 500);
    // An event split over two descriptors is fine, as is a longer buffer.
    let split_head = rig.events.add(&[(split, 4, W), (split + 4, 4, W)]);
    let good_head = rig.events.add(&[(good, 64, W)]);
    assert_eq!(rig.drain_events(), 8);
    let returned = rig.events.used();
    let mut expected: Vec<(u32, u32)> = heads.iter().map(|&h| (u32::from(h), 0)).collect();
    expected.push((u32::from(looped), 0));
    assert_eq!(returned, expected, "returned at once, nothing written");
    assert_eq!(rig.handle.stats().bad_chains, 6);
    assert_eq!(counter(&*rig.event_worker, "bad_chains"), 6);
    rig.handle.key(KEY_Z, true);
    assert!(rig.fire_wake());
    assert_eq!(
        rig.delivered(&[(split_head, split), (good_head, good)]),
        [ev(EV_KEY, KEY_Z, 1), SYN]
    );
}

#[test]
fn status_events_set_the_leds() {
    let mem = memory();
    let mut rig = Rig::new(&mem, InputKind::Keyboard);
    assert_eq!(rig.handle.leds(), LedState::default());
    let used = rig.send_status(&[ev(EV_LED, LED_CAPSL, 1)]);
    assert_eq!(used.len(), 1);
    assert_eq!(used[0].1, 0, "nothing written");
    assert_eq!(
        rig.handle.leds(),
        LedState {
            caps_lock: true,
            ..LedState::default()
        }
    );
    // Several events in one buffer, and events with no LED behind them.
    rig.send_status(&[
        ev(EV_LED, LED_NUML, 1),
        ev(EV_LED, LED_CAPSL, 0),
        ev(EV_LED, LED_SCROLLL, 7),
        ev(EV_LED, 9, 1),
        ev(EV_REP, REP_DELAY, 250),
    ]);
    let on = LedState {
        num_lock: true,
        caps_lock: false,
        scroll_lock: true,
    };
    assert_eq!(rig.handle.leds(), on);
    assert_eq!(rig.handle.stats().status_events, 6);
    assert_eq!(counter(&*rig.status_worker, "leds"), 0b101);

    // Malformed buffers change nothing and come back empty.
    let at = rig.alloc(1024);
    mem.write_slice(&ev(EV_LED, LED_NUML, 0).to_bytes(), GuestAddress(at))
        .unwrap();
    rig.status.add(&[(at, 8, W)]); // device-writable
    rig.status.add(&[(at, 12, R)]); // not whole events
    rig.status.add(&[(at, 0, R)]); // empty
    rig.status.add(&[(at, 65 * 8, R)]); // too many events
    rig.status.add(&[(1 << 40, 8, R)]); // outside RAM
    assert_eq!(rig.drain_status().iter().filter(|u| u.1 == 0).count(), 5);
    assert_eq!(rig.handle.leds(), on);
    assert_eq!(counter(&*rig.status_worker, "bad_chains"), 5);
    assert_eq!(rig.handle.stats().bad_chains, 5);
    assert_eq!(counter(&*rig.status_worker, "status_events"), 6);
}

#[test]
fn activation_needs_both_queues_in_order() {
    let mem = memory();
    let (_, alone) = Driver::new(&mem, EVENT_RING);
    let (_, q0) = Driver::new(&mem, EVENT_RING);
    let (_, q1) = Driver::new(&mem, STATUS_RING);
    let mut dev = InputDevice::new(InputKind::Tablet).unwrap();
    let err = dev
        .activate(mem.clone(), VIRTIO_F_VERSION_1, vec![(0, alone)])
        .err()
        .unwrap();
    assert!(matches!(err, ActivateError::QueueCount { got: 1, want: 2 }));
    let err = dev
        .activate(mem.clone(), VIRTIO_F_VERSION_1, vec![(1, q1), (0, q0)])
        .err()
        .unwrap();
    assert!(matches!(err, ActivateError::InvalidQueue(1)));
    assert!(!dev.is_activated());
}

#[test]
fn events_round_trip_little_endian() {
    let event = ev(EV_ABS, ABS_Y, 0x0102_0304);
    assert_eq!(event.to_bytes(), [3, 0, 1, 0, 4, 3, 2, 1]);
    assert_eq!(InputEvent::from_bytes(event.to_bytes()), event);
}
