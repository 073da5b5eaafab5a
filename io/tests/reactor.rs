//! The reactors on real io_uring and real files, driven by a minimal queue worker (no
//! virtio here: the virtio devices have their own device-path tests).

use std::fs::OpenOptions;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ringvisor_io::{
    AttachedQueue, IoBatch, IoOp, IrqEvent, OpKind, QueueBinding, QueueFault, QueueHost,
    QueueWorker, ReactorFailure, ReactorOptions, ReactorSet, RingPolicy, UringCommand,
};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

/// (offset, result, bytes) of every completion, in completion order.
type Completions = Arc<Mutex<Vec<(u64, i32, [u8; 8])>>>;

/// A "queue" whose requests are file offsets to read 8 bytes from, posted by the test.
struct FileReader {
    file: std::fs::File,
    posted: Arc<Mutex<Vec<u64>>>,
    done: Completions,
    buffers: Vec<(u64, Box<[u8; 8]>)>,
    fault_on: Option<u64>,
    /// Wait this long (an IoOp::Delay) before each read, queued from the completion.
    delay_ns: Option<u64>,
    /// Results of the delays, for the test to check.
    delays: Arc<Mutex<Vec<(i32, Instant)>>>,
    added: bool,
}

/// Tags of delays have this bit set; the read queued after one gets the tag without it.
const DELAY_TAG: u64 = 1 << 40;
/// Posted as an offset: a driver command (IORING_OP_URING_CMD) on the file instead of a
/// read; a regular file has no driver that takes commands, so the kernel answers
/// -EOPNOTSUPP once the ring has carried it.
const DRIVER_COMMAND: u64 = u64::MAX;

impl FileReader {
    fn read(&self, tag: u64, iovec: libc::iovec) -> IoOp {
        IoOp::Read {
            fd: self.file.as_raw_fd(),
            offset: self.buffers[tag as usize].0,
            iovecs: vec![iovec],
        }
    }
}

impl QueueWorker for FileReader {
    fn drain(&mut self, batch: &mut IoBatch) -> Result<usize, QueueFault> {
        let posted: Vec<u64> = self.posted.lock().unwrap().drain(..).collect();
        for &offset in &posted {
            if Some(offset) == self.fault_on {
                return Err(QueueFault::Broken {
                    queue: 0,
                    reason: "test fault".into(),
                });
            }
            let mut buffer = Box::new([0u8; 8]);
            let iovec = libc::iovec {
                iov_base: buffer.as_mut_ptr().cast(),
                iov_len: 8,
            };
            let tag = self.buffers.len() as u64;
            self.buffers.push((offset, buffer));
            if offset == DRIVER_COMMAND {
                let command = UringCommand {
                    cmd_op: 0,
                    bytes: [0; 80],
                    iovecs: Vec::new(),
                    data: Vec::new(),
                    fixed_buffer: None,
                };
                batch.push(
                    tag,
                    IoOp::UringCmd {
                        fd: self.file.as_raw_fd(),
                        command: Box::new(command),
                    },
                );
                continue;
            }
            match self.delay_ns {
                Some(nanos) => {
                    self.delays.lock().unwrap().push((i32::MIN, Instant::now()));
                    batch.push(tag | DELAY_TAG, IoOp::Delay { nanos });
                }
                None => batch.push(tag, self.read(tag, iovec)),
            }
        }
        Ok(posted.len())
    }

    fn complete(&mut self, tag: u64, result: i32, batch: &mut IoBatch) -> Result<(), QueueFault> {
        if tag & DELAY_TAG != 0 {
            let tag = tag & !DELAY_TAG;
            let slot = &mut self.delays.lock().unwrap()[tag as usize];
            *slot = (result, slot.1);
            let buffer = &mut self.buffers[tag as usize].1;
            let iovec = libc::iovec {
                iov_base: buffer.as_mut_ptr().cast(),
                iov_len: 8,
            };
            batch.push(tag, self.read(tag, iovec));
            return Ok(());
        }
        let (offset, buffer) = &self.buffers[tag as usize];
        self.done.lock().unwrap().push((*offset, result, **buffer));
        self.added = true;
        Ok(())
    }

    fn needs_interrupt(&mut self) -> Result<bool, QueueFault> {
        Ok(std::mem::take(&mut self.added))
    }

    fn disable_notification(&mut self) -> Result<(), QueueFault> {
        Ok(())
    }

    fn enable_notification(&mut self) -> Result<bool, QueueFault> {
        Ok(!self.posted.lock().unwrap().is_empty())
    }

    fn has_available(&mut self) -> Result<bool, QueueFault> {
        Ok(!self.posted.lock().unwrap().is_empty())
    }

    fn in_flight(&self) -> usize {
        self.buffers.len() - self.done.lock().unwrap().len()
    }
}

struct TestQueue {
    posted: Arc<Mutex<Vec<u64>>>,
    done: Completions,
    kick: EventFd,
    interrupt: IrqEvent,
    faults: Arc<Mutex<Vec<String>>>,
    delays: Arc<Mutex<Vec<(i32, Instant)>>>,
}

fn test_file(name: &str) -> std::path::PathBuf {
    let path =
        std::env::temp_dir().join(format!("ringvisor-reactor-{name}-{}", std::process::id()));
    let mut file = std::fs::File::create(&path).unwrap();
    for block in 0u64..64 {
        file.write_all(&block.to_le_bytes()).unwrap();
    }
    path
}

fn binding(name: &str, path: &std::path::Path, fault_on: Option<u64>) -> (QueueBinding, TestQueue) {
    delayed_binding(name, path, fault_on, None)
}

fn delayed_binding(
    name: &str,
    path: &std::path::Path,
    fault_on: Option<u64>,
    delay_ns: Option<u64>,
) -> (QueueBinding, TestQueue) {
    let delays = Arc::new(Mutex::new(Vec::new()));
    let posted = Arc::new(Mutex::new(Vec::new()));
    let done = Arc::new(Mutex::new(Vec::new()));
    let faults = Arc::new(Mutex::new(Vec::new()));
    let kick = EventFd::new(EFD_NONBLOCK).unwrap();
    let interrupt = IrqEvent::new().unwrap();
    let worker = FileReader {
        file: OpenOptions::new().read(true).open(path).unwrap(),
        posted: posted.clone(),
        done: done.clone(),
        buffers: Vec::new(),
        fault_on,
        delay_ns,
        delays: delays.clone(),
        added: false,
    };
    let fault_log = faults.clone();
    let binding = QueueBinding {
        name: name.into(),
        worker: Box::new(worker),
        kick: kick.try_clone().unwrap(),
        interrupt: interrupt.try_clone().unwrap(),
        on_fault: Box::new(move |fault| fault_log.lock().unwrap().push(fault.to_string())),
    };
    let queue = TestQueue {
        posted,
        done,
        kick,
        interrupt,
        faults,
        delays,
    };
    (binding, queue)
}

/// Waits (bounded, generously: CI machines are small) until `cond` holds.
fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn kicks_become_reads_and_completions_raise_the_interrupt() {
    let path = test_file("reads");
    let reactors = ReactorSet::start(&[None, None]).unwrap();
    let (b0, q0) = binding("q0", &path, None);
    let (b1, q1) = binding("q1", &path, None);
    let a0 = reactors.attach(b0).unwrap();
    let a1 = reactors.attach(b1).unwrap();
    assert_ne!(
        a0.reactor, a1.reactor,
        "queues are spread over the reactors"
    );

    for (queue, offsets) in [(&q0, [0u64, 8, 16]), (&q1, [504, 256, 8])] {
        queue.posted.lock().unwrap().extend(offsets);
        queue.kick.write(1).unwrap();
    }
    for (queue, offsets) in [(&q0, [0u64, 8, 16]), (&q1, [504, 256, 8])] {
        wait_for("three completions", || {
            queue.done.lock().unwrap().len() == 3
        });
        let done = queue.done.lock().unwrap().clone();
        for offset in offsets {
            let (_, result, bytes) = done.iter().find(|d| d.0 == offset).unwrap();
            assert_eq!(*result, 8);
            assert_eq!(u64::from_le_bytes(*bytes), offset / 8, "data at {offset}");
        }
        wait_for("an interrupt", || queue.interrupt.take_pending() > 0);
    }

    // A read past the end of the file completes with 0 bytes, not an error or a hang.
    q0.posted.lock().unwrap().push(4096);
    q0.kick.write(1).unwrap();
    wait_for("the short read", || q0.done.lock().unwrap().len() == 4);
    assert_eq!(q0.done.lock().unwrap()[3].1, 0);

    let stats = reactors.stats();
    let all: Vec<_> = stats.iter().flat_map(|r| r.queues.iter()).collect();
    let s0 = all.iter().find(|q| q.name == "q0").unwrap();
    assert_eq!((s0.requests, s0.ops, s0.op_errors), (4, 4, 0));
    assert!(s0.irqs_sent >= 1);
    assert_eq!(s0.submit_to_complete_ns.len(), 4);
    assert!(stats.iter().map(|r| r.sqes_submitted).sum::<u64>() >= 7);

    reactors.detach(a0).unwrap();
    reactors.detach(a1).unwrap();
    // Detached: a kick is no longer served.
    q0.posted.lock().unwrap().push(0);
    q0.kick.write(1).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(q0.done.lock().unwrap().len(), 4);
    std::fs::remove_file(path).unwrap();
}

#[test]
fn wide_rings_carry_driver_commands_and_plain_ones_refuse_them() {
    let path = test_file("wide");
    for wide in [true, false] {
        let options = ReactorOptions {
            wide_entries: wide,
            ..ReactorOptions::default()
        };
        let reactors = ReactorSet::start_with(&[None], &options).unwrap();
        let (b, q) = binding("q", &path, None);
        let attached = reactors.attach(b).unwrap();
        q.posted.lock().unwrap().extend([8, DRIVER_COMMAND, 16]);
        q.kick.write(1).unwrap();
        wait_for("three completions", || q.done.lock().unwrap().len() == 3);
        let done = q.done.lock().unwrap().clone();
        for (offset, result, bytes) in &done {
            match *offset {
                DRIVER_COMMAND => assert_eq!(*result, -libc::EOPNOTSUPP, "wide={wide}"),
                offset => {
                    assert_eq!(*result, 8, "wide={wide}");
                    assert_eq!(u64::from_le_bytes(*bytes), offset / 8);
                }
            }
        }
        // A wide ring handed the command to the kernel (which found no driver for it);
        // a plain one refused it without a submission.
        let stats = reactors.stats();
        let queue = stats[0].queues.iter().find(|s| s.name == "q").unwrap();
        assert_eq!(queue.ops, if wide { 3 } else { 2 }, "wide={wide}");
        reactors.detach(attached).unwrap();
    }
    std::fs::remove_file(path).unwrap();
}

#[test]
fn detach_waits_for_in_flight_requests() {
    let path = test_file("detach");
    let reactors = ReactorSet::start(&[None]).unwrap();
    let (b, q) = binding("q", &path, None);
    let attached = reactors.attach(b).unwrap();
    q.posted.lock().unwrap().extend((0..32).map(|i| i * 8));
    q.kick.write(1).unwrap();
    // Detach right away: whatever was popped must have completed when it returns.
    wait_for("the first completion", || {
        !q.done.lock().unwrap().is_empty()
    });
    reactors.detach(attached).unwrap();
    let done = q.done.lock().unwrap().len();
    assert_eq!(
        done, 32,
        "every popped request completed before detach returned"
    );
    std::fs::remove_file(path).unwrap();
}

#[test]
fn a_queue_fault_is_reported_and_the_queue_is_no_longer_served() {
    let path = test_file("fault");
    let reactors = ReactorSet::start(&[None]).unwrap();
    let (bad, bad_q) = binding("bad", &path, Some(8));
    let (good, good_q) = binding("good", &path, None);
    reactors.attach(bad).unwrap();
    reactors.attach(good).unwrap();
    bad_q.posted.lock().unwrap().push(8);
    bad_q.kick.write(1).unwrap();
    wait_for("the fault report", || {
        !bad_q.faults.lock().unwrap().is_empty()
    });
    assert!(bad_q.faults.lock().unwrap()[0].contains("test fault"));

    // The other queue on the same reactor keeps working.
    good_q.posted.lock().unwrap().push(16);
    good_q.kick.write(1).unwrap();
    wait_for("the healthy queue", || {
        good_q.done.lock().unwrap().len() == 1
    });
    assert_eq!(good_q.done.lock().unwrap()[0].1, 8);
    std::fs::remove_file(path).unwrap();
}

#[test]
fn a_ring_refuses_ops_its_policy_does_not_list_and_the_queue_faults() {
    let path = test_file("policy");
    let confined = |ops: &[OpKind]| {
        ReactorSet::start_confined(
            &[None],
            &ReactorOptions::default(),
            Arc::new(|| {}),
            RingPolicy::new(ops),
        )
        .unwrap()
    };
    // Delays only: the reader's delay runs, the read it queues after it is refused.
    let reactors = confined(&[OpKind::Delay]);
    let (b, q) = delayed_binding("q", &path, None, Some(1_000));
    reactors.attach(b).unwrap();
    q.posted.lock().unwrap().push(8);
    q.kick.write(1).unwrap();
    wait_for("the fault report", || !q.faults.lock().unwrap().is_empty());
    assert_eq!(q.delays.lock().unwrap()[0].0, 0, "the delay ran");
    assert_eq!(q.done.lock().unwrap()[0].1, -libc::EACCES);
    let fault = q.faults.lock().unwrap()[0].clone();
    assert!(fault.contains("refused a Read op"), "{fault}");
    let stats = reactors.stats();
    let queue = &stats[0].queues[0];
    assert_eq!((queue.ops, queue.op_errors, queue.ops_refused), (2, 1, 1));
    // A faulted queue is served no more.
    q.posted.lock().unwrap().push(16);
    q.kick.write(1).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(q.done.lock().unwrap().len(), 1);
    drop(reactors);

    // With reads on the list the same queue is served.
    let reactors = confined(&[OpKind::Delay, OpKind::Read]);
    let (b, q) = delayed_binding("q", &path, None, Some(1_000));
    reactors.attach(b).unwrap();
    q.posted.lock().unwrap().push(8);
    q.kick.write(1).unwrap();
    wait_for("the read", || q.done.lock().unwrap().len() == 1);
    assert_eq!(q.done.lock().unwrap()[0].1, 8);
    assert!(q.faults.lock().unwrap().is_empty());
    std::fs::remove_file(path).unwrap();
}

#[test]
fn a_polling_reactor_serves_chains_posted_without_a_kick() {
    let path = test_file("poll");
    // A budget far longer than the test: the reactor is certainly still polling when the
    // second request is posted, so it must find it without a kick.
    let reactors = ReactorSet::start_with_polling(&[None], Some(Duration::from_secs(30))).unwrap();
    let (b, q) = binding("q", &path, None);
    let attached = reactors.attach(b).unwrap();
    q.posted.lock().unwrap().push(8);
    q.kick.write(1).unwrap();
    wait_for("the kicked request", || q.done.lock().unwrap().len() == 1);
    q.posted.lock().unwrap().push(16);
    wait_for("the request found by polling", || {
        q.done.lock().unwrap().len() == 2
    });
    assert_eq!(q.done.lock().unwrap()[1], (16, 8, 2u64.to_le_bytes()));
    // Control messages still get through while it spins.
    reactors.detach(attached).unwrap();
    std::fs::remove_file(path).unwrap();
}

#[test]
fn a_completion_can_queue_more_io_after_a_delay() {
    let path = test_file("delay");
    let reactors = ReactorSet::start(&[None]).unwrap();
    let (b, q) = delayed_binding("q", &path, None, Some(2_000_000));
    let attached = reactors.attach(b).unwrap();
    q.posted.lock().unwrap().extend([16u64, 24]);
    q.kick.write(1).unwrap();
    wait_for("two reads after their delays", || {
        q.done.lock().unwrap().len() == 2
    });
    let done_at = Instant::now();
    for (offset, result, bytes) in q.done.lock().unwrap().iter() {
        assert_eq!((*result, u64::from_le_bytes(*bytes)), (8, offset / 8));
    }
    for (result, started) in q.delays.lock().unwrap().iter() {
        assert_eq!(*result, 0, "a delay that ran its course completes with 0");
        assert!(done_at - *started >= Duration::from_millis(2));
    }
    let stats = reactors.stats();
    let queue = &stats[0].queues[0];
    assert_eq!((queue.ops, queue.op_errors), (4, 0));
    assert_eq!(
        queue.submit_to_complete_ns.len(),
        2,
        "delays are not I/O latency"
    );
    reactors.detach(attached).unwrap();
    std::fs::remove_file(path).unwrap();
}

/// The `(comm, nice)` of every thread of this process.
fn threads() -> Vec<(String, i64)> {
    let mut out = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        // comm is in parentheses and may hold spaces; the fields after it are plain.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm = stat[open + 1..close].to_string();
        // After ") ": state(3) ... nice is field 19, the 17th after the comm.
        let nice = stat[close + 2..]
            .split(' ')
            .nth(16)
            .and_then(|n| n.parse().ok())
            .unwrap();
        out.push((comm, nice));
    }
    out
}

#[test]
fn the_low_priority_reactor_runs_niced_and_serves_queues() {
    let set = ReactorSet::start_low_priority(&[]).unwrap();
    assert_eq!(set.len(), 1);
    wait_for("the lowprio0 thread", || {
        threads()
            .iter()
            .any(|(comm, nice)| comm == "lowprio0" && *nice == 10)
    });
    let path = test_file("lowprio");
    let (binding, queue) = binding("lowprio/q0", &path, None);
    let attached = set.attach(binding).unwrap();
    queue.posted.lock().unwrap().push(16);
    queue.kick.write(1).unwrap();
    wait_for("a completion", || queue.done.lock().unwrap().len() == 1);
    assert_eq!(u64::from_le_bytes(queue.done.lock().unwrap()[0].2), 2);
    set.detach(attached).unwrap();
    let _ = std::fs::remove_file(path);
    // Upkeep tasks run on the reactor's own thread and hand their result back.
    let ran_on = set
        .run_on(0, || std::thread::current().name().map(str::to_owned))
        .unwrap();
    assert_eq!(ran_on.as_deref(), Some("lowprio0"));
    assert!(set.run_on(1, || ()).is_err(), "there is one reactor");
}

/// Reactors whose failure hook records what it is told.
fn reactors_reporting_failures(count: usize) -> (ReactorSet, Arc<Mutex<Vec<ReactorFailure>>>) {
    let failures = Arc::new(Mutex::new(Vec::new()));
    let told = failures.clone();
    let options = ReactorOptions {
        on_failure: Some(Arc::new(move |failure| told.lock().unwrap().push(failure))),
        ..ReactorOptions::default()
    };
    (
        ReactorSet::start_with(&vec![None; count], &options).unwrap(),
        failures,
    )
}

/// Attaches `binding` to reactor `reactor` of `set`.
fn attach_on(set: &ReactorSet, reactor: usize, binding: QueueBinding) -> AttachedQueue {
    let attached = set
        .attach_beside(binding, AttachedQueue { reactor, key: 0 })
        .unwrap();
    assert_eq!(attached.reactor, reactor);
    attached
}

/// Posts three reads behind 30 s delays on `queue` and waits until reactor `reactor` has
/// handed the delays to the kernel (its stats are answered after the enter that did).
fn three_delays_in_flight(set: &ReactorSet, reactor: usize, queue: &TestQueue, name: &str) {
    queue.posted.lock().unwrap().extend([0u64, 8, 16]);
    queue.kick.write(1).unwrap();
    wait_for("three delays in flight", || {
        set.stats()[reactor]
            .queues
            .iter()
            .any(|q| q.name == name && q.ops == 3)
    });
}

#[test]
fn a_failed_enter_faults_every_queue_of_the_reactor_waits_for_the_kernel_and_tells_the_set_once() {
    let path = test_file("enter-fails");
    for errno in [libc::EBADF, libc::EFAULT] {
        let (reactors, failures) = reactors_reporting_failures(2);
        let (slow, slow_q) = delayed_binding("slow", &path, None, Some(30_000_000_000));
        let (idle, idle_q) = binding("idle", &path, None);
        let (other, other_q) = binding("other", &path, None);
        attach_on(&reactors, 1, slow);
        attach_on(&reactors, 1, idle);
        attach_on(&reactors, 0, other);
        three_delays_in_flight(&reactors, 1, &slow_q, "slow");

        reactors.fail_next_enter(1, errno).unwrap();
        wait_for("the failure report", || {
            !failures.lock().unwrap().is_empty()
        });
        let reported = ReactorFailure { reactor: 1, errno };
        assert_eq!(failures.lock().unwrap()[..], [reported]);
        let why = std::io::Error::from_raw_os_error(errno).to_string();
        for queue in [&slow_q, &idle_q] {
            let faults = queue.faults.lock().unwrap().clone();
            assert_eq!(faults.len(), 1, "{faults:?}");
            assert!(faults[0].contains("reactor 1 failed") && faults[0].contains(&why));
        }
        // The hook comes last: by then the kernel had handed back every op it held (the
        // delays cancelled, each completed through the worker), and no read followed them.
        for (result, _) in slow_q.delays.lock().unwrap().iter() {
            assert_eq!(*result, -libc::ECANCELED);
        }
        assert!(slow_q.done.lock().unwrap().is_empty());
        // The reactor thread ends, its queues and their workers dropped (nothing leaked).
        wait_for("the failed reactor to end", || {
            reactors.run_on(1, || ()).is_err()
        });
        wait_for("the workers dropped", || {
            Arc::strong_count(&slow_q.done) == 1 && Arc::strong_count(&idle_q.done) == 1
        });
        assert_eq!(failures.lock().unwrap().len(), 1, "the hook is called once");

        // The other reactor goes on serving.
        other_q.posted.lock().unwrap().push(24);
        other_q.kick.write(1).unwrap();
        wait_for("the other reactor's read", || {
            other_q.done.lock().unwrap().len() == 1
        });
        assert_eq!(other_q.done.lock().unwrap()[0], (24, 8, 3u64.to_le_bytes()));
        assert!(other_q.faults.lock().unwrap().is_empty());
        drop(reactors);
        assert_eq!(failures.lock().unwrap().len(), 1);
    }
    std::fs::remove_file(path).unwrap();
}

#[test]
fn a_ring_that_never_gives_its_ops_back_is_left_with_its_buffers() {
    let path = test_file("enter-never-recovers");
    let (reactors, failures) = reactors_reporting_failures(1);
    let (slow, slow_q) = delayed_binding("slow", &path, None, Some(30_000_000_000));
    attach_on(&reactors, 0, slow);
    three_delays_in_flight(&reactors, 0, &slow_q, "slow");
    // Every enter fails: with deferred task work no completion is ever posted, so the
    // delays stay with the kernel past the wait's bound.
    let failed_at = Instant::now();
    reactors.fail_enters(0, libc::EBADF, usize::MAX).unwrap();
    wait_for("the failure report", || {
        !failures.lock().unwrap().is_empty()
    });
    assert!(
        failed_at.elapsed() >= Duration::from_secs(4),
        "the kernel was waited for"
    );
    assert_eq!(
        failures.lock().unwrap()[..],
        [ReactorFailure {
            reactor: 0,
            errno: libc::EBADF
        }]
    );
    assert_eq!(slow_q.faults.lock().unwrap().len(), 1);
    wait_for("the failed reactor to end", || {
        reactors.run_on(0, || ()).is_err()
    });
    // The worker, whose buffers the delayed reads were to fill, was leaked with the
    // in-flight ops rather than freed under the kernel.
    assert_eq!(Arc::strong_count(&slow_q.done), 2);
    assert!(slow_q
        .delays
        .lock()
        .unwrap()
        .iter()
        .all(|(result, _)| *result == i32::MIN));
    std::fs::remove_file(path).unwrap();
}

#[test]
fn interrupted_or_busy_enters_are_retried_and_the_reactor_keeps_serving() {
    let path = test_file("enter-retried");
    let (reactors, failures) = reactors_reporting_failures(1);
    let (b, q) = binding("q", &path, None);
    attach_on(&reactors, 0, b);
    // EAGAIN and EBUSY many times over: retried after reading the completion queue, and
    // with a back-off rather than a spin.
    for (round, (errno, count)) in [(libc::EINTR, 3), (libc::EAGAIN, 20), (libc::EBUSY, 20)]
        .into_iter()
        .enumerate()
    {
        reactors.fail_enters(0, errno, count).unwrap();
        let offset = 8 * round as u64;
        q.posted.lock().unwrap().push(offset);
        q.kick.write(1).unwrap();
        wait_for("the read", || q.done.lock().unwrap().len() == round + 1);
        assert_eq!(
            q.done.lock().unwrap()[round],
            (offset, 8, (offset / 8).to_le_bytes()),
            "errno {errno}"
        );
    }
    assert!(q.faults.lock().unwrap().is_empty());
    assert!(failures.lock().unwrap().is_empty());
    assert!(reactors.run_on(0, || ()).is_ok());
    std::fs::remove_file(path).unwrap();
}
