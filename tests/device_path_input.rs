//! Tier 2: virtio-input through the real low-priority reactor and io_uring. A synthetic
//! guest driver keeps event buffers posted as Linux's virtio_input does and sleeps on the
//! queue's interrupt; the host types and moves the pointer from other threads; the guest
//! sends its LED state back on the status queue.

use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use ringvisor::memory::{self, GuestMemory};
use ringvisor_devices::virtio::input::evdev::key::{KEY_A, KEY_B};
use ringvisor_devices::virtio::input::evdev::{
    ABS_X, ABS_Y, BTN_LEFT, EV_ABS, EV_KEY, EV_LED, EV_SYN, LED_CAPSL, LED_NUML, SYN_REPORT,
};
use ringvisor_devices::virtio::input::{
    InputDevice, InputEvent, InputKind, LedState, BUTTON_LEFT, EVENT_LEN,
};
use ringvisor_devices::virtio::VirtioDevice;
use ringvisor_io::{AttachedQueue, IrqEvent, QueueBinding, QueueHost, ReactorSet};
use ringvisor_rig::virtq_driver::{Buffer, SplitQueueDriver};
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

const QUEUE_SIZE: u16 = 64;
const EVENTQ: usize = 0;
const STATUSQ: usize = 1;
const MEM_BYTES: u64 = 32 << 20;
const RINGS: u64 = 0x1_0000;
const BUFFERS: u64 = 0x10_0000;
const WAIT: Duration = Duration::from_secs(30);
const SYN: InputEvent = InputEvent::new(EV_SYN, SYN_REPORT, 0);

/// The guest side of one queue.
struct GuestQueue {
    driver: SplitQueueDriver,
    kick: EventFd,
    interrupt: IrqEvent,
}

impl GuestQueue {
    fn post(&mut self, buffers: &[Buffer]) -> u16 {
        self.driver.add_chain(buffers).unwrap()
    }

    fn kick(&mut self) {
        self.driver.publish().unwrap();
        self.kick.write(1).unwrap();
    }

    /// Sleeps on the interrupt, as a guest does, for at most `timeout`; returns whether
    /// it came.
    fn wait_interrupt(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.interrupt.take_pending() > 0 {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            let mut pollfd = libc::pollfd {
                fd: self.interrupt.eventfd().as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            let ms = i32::try_from(left.as_millis().max(1)).unwrap_or(i32::MAX);
            // SAFETY: one valid pollfd on an eventfd this queue owns; the count is 1.
            unsafe { libc::poll(&mut pollfd, 1, ms) };
        }
    }

    /// Waits for `count` used entries, each announced by an interrupt.
    fn wait_used(&mut self, count: usize) -> Vec<(u16, u32)> {
        let start = Instant::now();
        let mut used = Vec::new();
        while used.len() < count {
            let left = WAIT.saturating_sub(start.elapsed());
            assert!(
                self.wait_interrupt(left),
                "{} of {count} used entries signalled within {WAIT:?}; unsignalled: {:?}",
                used.len(),
                self.driver.take_used().unwrap()
            );
            used.extend(self.driver.take_used().unwrap());
        }
        used
    }
}

/// An activated input device on the low-priority reactor, and its guest.
struct Guest {
    mem: GuestMemory,
    queues: Vec<GuestQueue>,
    reactors: ReactorSet,
    attached: Vec<AttachedQueue>,
    faults: Arc<Mutex<Vec<String>>>,
    next_buffer: u64,
    /// Where each posted event buffer is, by head.
    event_buffers: Vec<GuestAddress>,
}

impl Guest {
    fn start(device: &mut InputDevice, name: &str) -> Self {
        let mem = memory::allocate(MEM_BYTES).unwrap();
        let reactors = ReactorSet::start_low_priority(&[]).unwrap();
        let stride = SplitQueueDriver::footprint(QUEUE_SIZE).next_multiple_of(4096);
        let mut device_queues = Vec::new();
        let mut queues = Vec::new();
        for index in 0..device.queue_max_sizes().len() as u16 {
            let base = GuestAddress(RINGS + u64::from(index) * stride);
            let driver = SplitQueueDriver::new(mem.clone(), base, QUEUE_SIZE).unwrap();
            let mut queue = Queue::new(QUEUE_SIZE).unwrap();
            driver.configure(&mut queue);
            device_queues.push((index, queue));
            queues.push(GuestQueue {
                driver,
                kick: EventFd::new(EFD_NONBLOCK).unwrap(),
                interrupt: IrqEvent::new().unwrap(),
            });
        }
        let workers = device
            .activate(mem.clone(), device.offered_features(), device_queues)
            .unwrap();
        let faults = Arc::new(Mutex::new(Vec::new()));
        let mut attached = Vec::new();
        for (index, worker) in workers {
            let queue = &queues[usize::from(index)];
            let recorded = faults.clone();
            let binding = QueueBinding {
                name: format!("{name}/q{index}"),
                worker,
                kick: queue.kick.try_clone().unwrap(),
                interrupt: queue.interrupt.try_clone().unwrap(),
                on_fault: Box::new(move |fault| {
                    recorded
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(fault.to_string());
                }),
            };
            attached.push(reactors.attach(binding).unwrap());
        }
        Self {
            mem,
            queues,
            reactors,
            attached,
            faults,
            next_buffer: BUFFERS,
            event_buffers: vec![GuestAddress(0); usize::from(QUEUE_SIZE)],
        }
    }

    fn alloc(&mut self, len: u64) -> GuestAddress {
        let at = GuestAddress(self.next_buffer);
        self.next_buffer += len.next_multiple_of(64);
        at
    }

    /// Posts `count` event buffers (without kicking), as `virtinput_fill_evt` does.
    fn post_event_buffers(&mut self, count: usize) {
        for _ in 0..count {
            let at = self.alloc(EVENT_LEN as u64);
            let head = self.queues[EVENTQ].post(&[Buffer::writable(at, EVENT_LEN as u32)]);
            self.event_buffers[usize::from(head)] = at;
        }
    }

    /// Reads the events of used event buffers and posts each buffer again, as
    /// `virtinput_recv_events` does.
    fn receive(&mut self, used: &[(u16, u32)]) -> Vec<InputEvent> {
        let mut events = Vec::with_capacity(used.len());
        let mut buffers = Vec::with_capacity(used.len());
        for &(head, len) in used {
            assert_eq!(len as usize, EVENT_LEN, "buffer {head}");
            let at = self.event_buffers[usize::from(head)];
            let mut raw = [0u8; EVENT_LEN];
            self.mem.read_slice(&mut raw, at).unwrap();
            events.push(InputEvent::from_bytes(raw));
            buffers.push(at);
        }
        // Only now: a new chain may take the descriptor of one not read yet.
        for at in buffers {
            let head = self.queues[EVENTQ].post(&[Buffer::writable(at, EVENT_LEN as u32)]);
            self.event_buffers[usize::from(head)] = at;
        }
        self.queues[EVENTQ].kick();
        events
    }

    /// Waits for `count` events.
    fn events(&mut self, count: usize) -> Vec<InputEvent> {
        let used = self.queues[EVENTQ].wait_used(count);
        self.receive(&used)
    }

    /// Sends one status event, as `virtinput_send_status` does, and waits for its
    /// buffer to come back.
    fn send_status(&mut self, event: InputEvent) {
        let at = self.alloc(EVENT_LEN as u64);
        self.mem.write_slice(&event.to_bytes(), at).unwrap();
        let queue = &mut self.queues[STATUSQ];
        queue.post(&[Buffer::readable(at, EVENT_LEN as u32)]);
        queue.kick();
        assert_eq!(queue.wait_used(1)[0].1, 0, "nothing written back");
    }

    fn counter(&self, queue: &str, name: &str) -> u64 {
        self.reactors
            .stats()
            .iter()
            .flat_map(|r| r.queues.iter())
            .find(|q| q.name == queue)
            .and_then(|q| q.device.iter().find(|(n, _)| *n == name).map(|&(_, v)| v))
            .unwrap_or_else(|| panic!("no counter {name} on {queue}"))
    }

    /// Takes the queues back (each returns once nothing of it is in flight, the pending
    /// wake-up read included) and resets the device.
    fn shutdown(mut self, device: &mut InputDevice) {
        let faults = self
            .faults
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        assert!(faults.is_empty(), "{faults:?}");
        for attached in self.attached.drain(..) {
            self.reactors.detach(attached).unwrap();
        }
        device.reset();
    }
}

#[test]
fn keys_reach_the_guest_and_wait_for_its_buffers() {
    let mut device = InputDevice::new(InputKind::Keyboard).unwrap();
    let handle = device.handle();
    let mut guest = Guest::start(&mut device, "kbd");

    // Buffers first, as Linux posts them at probe; the key comes from another thread.
    guest.post_event_buffers(16);
    guest.queues[EVENTQ].kick();
    let typist = handle.clone();
    std::thread::spawn(move || typist.key(KEY_A, true))
        .join()
        .unwrap();
    assert_eq!(guest.events(2), [InputEvent::new(EV_KEY, KEY_A, 1), SYN]);

    // With every buffer used (16, posted again after the first two events), input
    // waits in the device.
    let typist = handle.clone();
    std::thread::spawn(move || {
        for i in 0..9 {
            typist.key(KEY_B, i % 2 == 0);
        }
    })
    .join()
    .unwrap();
    let used = guest.queues[EVENTQ].wait_used(16);
    assert_eq!(used.len(), 16);
    // An interrupt may still come for entries already taken (the device signals per
    // batch); no entry may.
    guest.queues[EVENTQ].wait_interrupt(Duration::from_millis(200));
    assert_eq!(guest.queues[EVENTQ].driver.take_used().unwrap(), []);
    assert_eq!(handle.stats().events_pending, 2);
    assert_eq!(guest.counter("kbd/q0", "posted_buffers"), 0);
    // Reading them posts the buffers again: the rest arrives.
    let mut events = guest.receive(&used);
    events.extend(guest.events(2));
    let expected: Vec<InputEvent> = (0..9)
        .flat_map(|i| [InputEvent::new(EV_KEY, KEY_B, u32::from(i % 2 == 0)), SYN])
        .collect();
    assert_eq!(events, expected);
    assert_eq!(guest.counter("kbd/q0", "events_delivered"), 20);
    assert_eq!(handle.stats().events_dropped, 0);

    // The guest turns Caps Lock and Num Lock on, then Caps Lock off.
    guest.send_status(InputEvent::new(EV_LED, LED_CAPSL, 1));
    assert!(handle.leds().caps_lock);
    guest.send_status(InputEvent::new(EV_LED, LED_NUML, 1));
    guest.send_status(InputEvent::new(EV_LED, LED_CAPSL, 0));
    assert_eq!(
        handle.leds(),
        LedState {
            num_lock: true,
            ..LedState::default()
        }
    );
    assert_eq!(guest.counter("kbd/q1", "status_events"), 3);
    assert_eq!(guest.counter("kbd/q1", "bad_chains"), 0);

    guest.shutdown(&mut device);
    assert_eq!(handle.leds(), LedState::default(), "reset");
}

#[test]
fn a_pointer_stream_arrives_whole_and_in_order() {
    let mut device = InputDevice::new(InputKind::Tablet).unwrap();
    let handle = device.handle();
    let mut guest = Guest::start(&mut device, "tablet");
    guest.post_event_buffers(usize::from(QUEUE_SIZE));
    guest.queues[EVENTQ].kick();

    assert_eq!(guest.queues[EVENTQ].driver.free_descriptors(), 0);

    // 1000 motion reports, a click: 3002 events racing the guest's reposting, fewer
    // than the device holds, so none may be lost.
    let mover = handle.clone();
    let producer = std::thread::spawn(move || {
        for i in 0..1000u32 {
            mover.pointer_abs(i * 32, 32_767 - i * 32);
        }
        mover.buttons(BUTTON_LEFT);
    });
    let mut events = Vec::new();
    while events.len() < 3002 {
        let used = guest.queues[EVENTQ].wait_used(1);
        events.extend(guest.receive(&used));
    }
    producer.join().unwrap();
    let mut expected: Vec<InputEvent> = (0..1000u32)
        .flat_map(|i| {
            [
                InputEvent::new(EV_ABS, ABS_X, i * 32),
                InputEvent::new(EV_ABS, ABS_Y, 32_767 - i * 32),
                SYN,
            ]
        })
        .collect();
    expected.extend([InputEvent::new(EV_KEY, BTN_LEFT, 1), SYN]);
    assert_eq!(events.len(), expected.len());
    assert!(events == expected, "events out of order or changed");
    let stats = handle.stats();
    assert_eq!((stats.events_dropped, stats.events_pending), (0, 0));
    assert_eq!(stats.events_delivered, 3002);
    guest.shutdown(&mut device);
}
