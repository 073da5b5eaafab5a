//! The loop of one reactor thread: one io_uring, every queue assigned to this reactor.
//!
//! Each pass drains every kicked queue until it is empty, turns the popped requests into
//! SQEs, hands the whole batch to the kernel with one io_uring_enter (which also waits when
//! there is nothing else to do), reaps completions into used entries and signals each
//! queue's interrupt at most once per pass, and only when the guest wants one.

use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use io_uring::{cqueue, opcode, squeue, types, IoUring};
use log::{error, warn};
use slab::Slab;
use vmm_sys_util::eventfd::EventFd;

mod control;
mod entries;
mod failure;
mod fixed_buffers;
mod fixed_files;
mod setup;
pub(crate) mod sqe;

pub(crate) use entries::{EntrySize, Plain, Wide};
pub use failure::{FailureHook, ReactorFailure};
pub(crate) use setup::{IowqPlan, LoopConfig};

use super::ring_policy::{OpKind, RingPolicy};
use super::stats::{QueueStats, ReactorStats};
use crate::worker::{IoBatch, IoOp, QueueBinding, QueueFault};

/// Messages from the control side (transport, stats readers); never on the request path.
pub(crate) enum Control {
    Attach(QueueBinding, Sender<usize>),
    /// Stop serving the queue; the reply comes once nothing of it is in flight.
    Detach(usize, Sender<()>),
    Stats(Sender<ReactorStats>),
    /// Drop the registered guest RAM pieces overlapping `[addr, addr + len)`.
    ForgetRam {
        addr: usize,
        len: usize,
        reply: Sender<()>,
    },
    /// Register the forgotten pieces again.
    RestoreRam(Sender<()>),
    /// Run a task on the reactor thread (the low-priority reactor's upkeep work).
    Run(Box<dyn FnOnce() + Send>),
    /// Submit `ForbiddenOp` on the ring and reply with its result.
    #[cfg(feature = "test-hooks")]
    TryForbidden(super::ring_policy::ForbiddenOp, Sender<i32>),
    /// Make the next `count` io_uring_enter calls fail with `errno`; the reply comes once
    /// that is armed.
    #[cfg(feature = "test-hooks")]
    FailEnters {
        errno: i32,
        count: usize,
        reply: Sender<()>,
    },
    Stop,
}

// user_data layout: the top three bits say what completed, the rest is a slab key.
const KIND_SHIFT: u32 = 61;
const KEY_MASK: u64 = (1 << KIND_SHIFT) - 1;
const KIND_OP: u64 = 0;
const KIND_KICK: u64 = 1;
const KIND_CONTROL: u64 = 2;
const KIND_CANCEL: u64 = 3;
#[cfg(feature = "test-hooks")]
const KIND_FORBIDDEN: u64 = 4;

fn user_data(kind: u64, key: usize) -> u64 {
    (kind << KIND_SHIFT) | (key as u64 & KEY_MASK)
}

struct ServedQueue {
    binding: QueueBinding,
    /// Target of the armed eventfd read; boxed so its address survives slab growth.
    kick_buf: Box<u64>,
    kick_armed: bool,
    /// Kicked (or left non-empty): drain it in the next pass.
    ready: bool,
    kicked_at: Option<Instant>,
    /// When the first op completion since the last interrupt decision was reaped.
    completed_at: Option<Instant>,
    /// Used entries were added since the last interrupt decision.
    used_added: bool,
    /// Drained with guest notifications left off (polling): they must be turned back on
    /// before the reactor sleeps.
    notifications_off: bool,
    ops_in_flight: usize,
    /// The worker's descriptors this queue put in the ring's file table.
    files: Vec<RawFd>,
    detach_reply: Option<Sender<()>>,
    faulted: bool,
    stats: QueueStats,
}

struct InFlight {
    queue: usize,
    tag: u64,
    /// Kept alive until completion: the kernel reads the iovec array during the op.
    op: IoOp,
    /// A delay's timeout, which the kernel reads while the op is armed; boxed so its
    /// address survives slab growth.
    _timeout: Option<Box<types::Timespec>>,
    submitted: Instant,
}

pub(crate) struct RingLoop<E: EntrySize> {
    index: usize,
    core: Option<usize>,
    /// Adaptive polling budget (`--poll-us`); `None`: sleep as soon as idle.
    poll: Option<Duration>,
    /// SQEs gathered before `push` hands them to the kernel (see
    /// `ReactorOptions::submit_batch`).
    submit_batch: usize,
    /// Built disabled and restricted: `run` enables it on the reactor thread, the only
    /// task allowed to submit and reap.
    ring: IoUring<E::Sqe, E::Cqe>,
    /// The ring's registered file table.
    files: fixed_files::FixedFiles,
    /// The guest RAM pieces the ring holds as registered buffers.
    buffers: fixed_buffers::FixedBuffers,
    policy: RingPolicy,
    control: Receiver<Control>,
    control_event: EventFd,
    control_buf: Box<u64>,
    /// The read of the control eventfd is with the kernel.
    control_armed: bool,
    queues: Slab<ServedQueue>,
    in_flight: Slab<InFlight>,
    batch: IoBatch,
    /// SQEs pushed since the last io_uring_enter.
    unsubmitted: usize,
    /// How many of them are ops (not the reactor's own reads and cancels).
    unsubmitted_ops: usize,
    stopping: bool,
    /// What the reactor asks of its io-wq; once `run` has registered it, what is in force.
    iowq: IowqPlan,
    /// The reactor thread's id (its io-wq workers are `iou-wrk-<tid>`); set by `run`.
    tid: u32,
    /// Reused lists (queue keys to drain and to poll, reaped CQEs) so a pass allocates
    /// nothing.
    scratch_keys: Vec<usize>,
    scratch_polled: Vec<usize>,
    scratch_completions: Vec<(u64, i32)>,
    health: failure::EnterHealth,
    enters: u64,
    sqes_submitted: u64,
    sqes_per_enter: hdrhistogram::Histogram<u64>,
    #[cfg(feature = "test-hooks")]
    forbidden_reply: Option<Sender<i32>>,
}

impl<E: EntrySize> RingLoop<E> {
    /// Builds the ring; call it on the reactor thread (see `setup::register_iowq`).
    pub(crate) fn new(
        config: LoopConfig,
        control: Receiver<Control>,
        control_event: EventFd,
    ) -> std::io::Result<Self> {
        let LoopConfig {
            index,
            core,
            ring_entries,
            poll,
            submit_batch,
            registered_ram,
            policy,
            iowq,
            on_failure,
        } = config;
        let (ring, capabilities) = setup::build_ring::<E>(ring_entries, &policy)?;
        let files = fixed_files::FixedFiles::register(&ring.submitter(), index);
        let buffers = fixed_buffers::FixedBuffers::register(
            &ring.submitter(),
            registered_ram.as_ref(),
            index,
            capabilities,
        );
        let stats = ReactorStats::new(index, core);
        Ok(Self {
            index,
            core,
            poll,
            submit_batch: submit_batch.max(1),
            ring,
            files,
            buffers,
            policy,
            iowq,
            tid: 0,
            control,
            control_event,
            control_buf: Box::new(0),
            control_armed: false,
            queues: Slab::new(),
            in_flight: Slab::new(),
            batch: IoBatch::new(),
            unsubmitted: 0,
            unsubmitted_ops: 0,
            stopping: false,
            scratch_keys: Vec::new(),
            scratch_polled: Vec::new(),
            scratch_completions: Vec::new(),
            health: failure::EnterHealth::new(on_failure),
            enters: 0,
            sqes_submitted: 0,
            sqes_per_enter: stats.sqes_per_enter,
            #[cfg(feature = "test-hooks")]
            forbidden_reply: None,
        })
    }

    pub(crate) fn run(mut self) {
        // SAFETY: gettid has no preconditions.
        self.tid = u32::try_from(unsafe { libc::gettid() }).unwrap_or_default();
        self.iowq = setup::register_iowq(&self.ring.submitter(), &self.iowq, self.index);
        if let Err(err) = self.ring.submitter().register_enable_rings() {
            error!("reactor {}: cannot enable its ring: {err}", self.index);
            return;
        }
        if let Err(err) = self.arm_control() {
            error!(
                "reactor {}: cannot watch its control eventfd: {err}",
                self.index
            );
            return;
        }
        loop {
            // An enter that failed while pushing (a full submission queue) broke the ring.
            if let Some(err) = self.broken() {
                return self.fail(err);
            }
            self.drain_ready_queues();
            // Requests completed during the drain (no host I/O) must be signalled before
            // the thread sleeps: only wait when there is nothing to do and nothing to say.
            let mut idle = self.health.stash.is_empty()
                && !self
                    .queues
                    .iter()
                    .any(|(_, q)| (q.ready && !q.faulted) || q.used_added);
            if idle {
                idle = self.poll_for_work();
            }
            if let Err(err) = self.enter(if idle { 1 } else { 0 }) {
                return self.fail(err);
            }
            self.reap();
            self.signal_interrupts();
            self.finish_detaches();
            if self.stopping && self.queues.is_empty() && self.in_flight.is_empty() {
                return;
            }
        }
    }

    /// Queues one of the reactor's own SQEs (kick and control reads, cancellations).
    fn push(&mut self, entry: &squeue::Entry) -> std::io::Result<()> {
        self.push_entry(&E::Sqe::from(entry.clone()))
    }

    fn push_entry(&mut self, entry: &E::Sqe) -> std::io::Result<()> {
        loop {
            // SAFETY: every buffer an entry points at (kick/control buffers, the iovec
            // arrays of in-flight ops, guest RAM) stays alive until its completion is
            // reaped: boxes live in slab entries removed only after that, and guest RAM is
            // never unmapped.
            let pushed = unsafe { self.ring.submission().push(entry) }.is_ok();
            if pushed {
                self.unsubmitted += 1;
                return Ok(());
            }
            // Submission queue full: hand what is there to the kernel, then retry.
            self.enter(0)?;
        }
    }

    /// Ok also when the enter is to be retried (EINTR, EAGAIN, EBUSY: see `failure`); an
    /// error means the ring is beyond use, and every later enter fails with it too.
    fn enter(&mut self, want: usize) -> std::io::Result<()> {
        if let Some(err) = self.broken() {
            return Err(err);
        }
        let pushed = self.unsubmitted;
        match self.submit_and_wait(want) {
            Ok(submitted) => {
                self.health.entered();
                self.unsubmitted = self.unsubmitted.saturating_sub(submitted);
                self.unsubmitted_ops = self.unsubmitted_ops.min(self.unsubmitted);
                self.enters += 1;
                if submitted > 0 {
                    self.sqes_submitted += submitted as u64;
                    let _ = self.sqes_per_enter.record(submitted as u64);
                }
                Ok(())
            }
            Err(err) => self.enter_failed(err, pushed),
        }
    }

    fn arm_kick(&mut self, key: usize) -> std::io::Result<()> {
        let Some(queue) = self.queues.get_mut(key) else {
            return Ok(());
        };
        let entry = opcode::Read::new(
            types::Fd(queue.binding.kick.as_raw_fd()),
            (&mut *queue.kick_buf as *mut u64).cast(),
            8,
        )
        .build()
        .user_data(user_data(KIND_KICK, key));
        queue.kick_armed = true;
        self.push(&entry)
    }

    fn drain_ready_queues(&mut self) {
        // Scratch lists live in the loop: the hot path allocates nothing per pass.
        let mut ready = std::mem::take(&mut self.scratch_keys);
        ready.clear();
        ready.extend(
            self.queues
                .iter()
                .filter(|(_, q)| q.ready && !q.faulted && q.detach_reply.is_none())
                .map(|(key, _)| key),
        );
        for &key in &ready {
            if let Err(fault) = self.drain_queue(key) {
                self.fault(key, &fault);
            }
        }
        self.scratch_keys = ready;
    }

    fn drain_queue(&mut self, key: usize) -> Result<(), QueueFault> {
        let mut batch = std::mem::take(&mut self.batch);
        let result = self.drain_into(key, &mut batch);
        self.batch = batch;
        result
    }

    fn drain_into(&mut self, key: usize, batch: &mut IoBatch) -> Result<(), QueueFault> {
        let Some(queue) = self.queues.get_mut(key) else {
            return Ok(());
        };
        queue.ready = false;
        queue.binding.worker.disable_notification()?;
        loop {
            let queue = &mut self.queues[key];
            let popped = queue.binding.worker.drain(batch)?;
            if popped > 0 {
                queue.stats.requests += popped as u64;
                queue.stats.batches += 1;
            }
            if batch.take_completed() > 0 {
                // Requests that needed no host I/O were completed during the drain.
                queue.used_added = true;
            }
            let kicked_at = queue.kicked_at.take();
            let now = Instant::now();
            if let Some(kicked_at) = kicked_at {
                let waited = now.saturating_duration_since(kicked_at).as_nanos() as u64;
                let _ = queue
                    .stats
                    .kick_to_submit_ns
                    .record_n(waited.max(1), batch.len() as u64);
            }
            for (tag, op) in batch.drain() {
                self.submit_op(key, tag, op, now);
            }
            if popped == 0 && self.poll.is_some() {
                // Polling: notifications stay off until the reactor is about to sleep.
                self.queues[key].notifications_off = true;
                return Ok(());
            }
            if popped == 0 && !self.queues[key].binding.worker.enable_notification()? {
                return Ok(());
            }
            if popped == 0 {
                // Chains arrived while notifications were off: keep draining.
                self.queues[key].binding.worker.disable_notification()?;
            }
        }
    }

    /// With adaptive polling: spins until a queue has new chains or a completion is
    /// waiting (returns false: do not sleep), or until the budget runs out; then turns
    /// notifications back on (returns false if chains slipped in meanwhile) and returns
    /// true when the reactor may sleep.
    fn poll_for_work(&mut self) -> bool {
        let mut polled = std::mem::take(&mut self.scratch_polled);
        polled.clear();
        polled.extend(
            self.queues
                .iter()
                .filter(|(_, q)| q.notifications_off && !q.faulted && q.detach_reply.is_none())
                .map(|(key, _)| key),
        );
        let idle = self.poll_queues(&polled);
        self.scratch_polled = polled;
        idle
    }

    fn poll_queues(&mut self, polled: &[usize]) -> bool {
        if let Some(budget) = self.poll {
            // Whatever was queued (ops, re-armed kick reads) must be in the kernel's hands
            // before spinning, or the completions the spin waits for never come. A failed
            // enter is the caller's to handle: its own enter fails the same way.
            if self.unsubmitted > 0 && self.enter(0).is_err() {
                return true;
            }
            let deadline = Instant::now() + budget;
            loop {
                let mut found = false;
                for &key in polled {
                    match self.queues[key].binding.worker.has_available() {
                        Ok(true) => {
                            self.queues[key].ready = true;
                            found = true;
                        }
                        Ok(false) => {}
                        Err(fault) => self.fault(key, &fault),
                    }
                }
                if found {
                    return false;
                }
                // Op completions, kicks and control messages all arrive as CQEs; deferred
                // ones are posted only by an enter, which the TASKRUN flag asks for.
                if self.ring.submission().taskrun() && self.enter(0).is_err() {
                    return true;
                }
                let mut completions = self.ring.completion();
                completions.sync();
                if !completions.is_empty() || !self.health.stash.is_empty() {
                    return false;
                }
                if polled.is_empty() || Instant::now() >= deadline {
                    break;
                }
                std::hint::spin_loop();
            }
        }
        let mut idle = true;
        for &key in polled {
            let queue = &mut self.queues[key];
            queue.notifications_off = false;
            match queue.binding.worker.enable_notification() {
                Ok(true) => {
                    queue.ready = true;
                    idle = false;
                }
                Ok(false) => {}
                Err(fault) => self.fault(key, &fault),
            }
        }
        idle
    }

    fn submit_op(&mut self, queue: usize, tag: u64, op: IoOp, now: Instant) {
        let sqe::OpEntry {
            entry,
            fixed_file,
            fixed_buffer,
            timeout,
        } = sqe::entry_for(&op, &self.files, &self.buffers);
        let slot = self.in_flight.insert(InFlight {
            queue,
            tag,
            op,
            _timeout: timeout,
            submitted: now,
        });
        let Some(entry) = E::entry(entry.user_data(user_data(KIND_OP, slot))) else {
            // A driver command on a ring built without wide entries: the machine decides
            // which reactors need them, so this is a device the machine did not plan for.
            warn!(
                "reactor {}: a driver command needs a ring with wide entries",
                self.index
            );
            self.in_flight.remove(slot);
            self.complete_op(queue, tag, -libc::EOPNOTSUPP);
            return;
        };
        if self.unsubmitted_ops >= self.submit_batch {
            // The ops gathered so far go to the kernel before this one is queued: the
            // disk starts on them while the queue is drained further, and the last op of
            // a pass still rides on the loop's own enter (one system call per request at
            // QD1, as before). A failed enter is the loop's to handle, not this op's: a
            // ring it broke is caught by the next `broken()` check.
            let _ = self.enter(0);
        }
        match self.push_entry(&entry) {
            Ok(()) => {
                self.unsubmitted_ops += 1;
                let queue = &mut self.queues[queue];
                queue.ops_in_flight += 1;
                queue.stats.ops += 1;
                queue.stats.fixed_file_ops += u64::from(fixed_file);
                queue.stats.fixed_buffer_ops += u64::from(fixed_buffer);
            }
            Err(err) => {
                // The ring itself failed: fail the request rather than lose it.
                warn!("reactor {}: cannot submit an op: {err}", self.index);
                self.in_flight.remove(slot);
                self.complete_op(queue, tag, -libc::EIO);
            }
        }
    }

    fn complete_op(&mut self, key: usize, tag: u64, result: i32) {
        let Some(queue) = self.queues.get_mut(key) else {
            return;
        };
        if result < 0 {
            queue.stats.op_errors += 1;
        }
        queue.used_added = true;
        let mut batch = std::mem::take(&mut self.batch);
        let outcome = queue.binding.worker.complete(tag, result, &mut batch);
        batch.take_completed();
        match outcome {
            // A queue being taken back starts nothing new: the detach waits for its ops. Nor
            // does any queue of a failed reactor.
            Ok(()) if queue.detach_reply.is_some() || self.health.failing => {
                batch.drain();
            }
            Ok(()) => {
                let now = Instant::now();
                for (tag, op) in batch.drain() {
                    self.submit_op(key, tag, op, now);
                }
            }
            Err(fault) => {
                batch.drain();
                self.fault(key, &fault);
            }
        }
        self.batch = batch;
    }

    fn reap(&mut self) {
        let now = Instant::now();
        let mut completions = std::mem::take(&mut self.scratch_completions);
        completions.clear();
        // Read off the ring while an enter was retried, so posted before the rest.
        completions.append(&mut self.health.stash);
        completions.extend(self.ring.completion().map(|cqe| {
            let cqe: cqueue::Entry = cqe.into();
            (cqe.user_data(), cqe.result())
        }));
        for &(data, result) in &completions {
            let key = (data & KEY_MASK) as usize;
            match data >> KIND_SHIFT {
                KIND_OP => {
                    if !self.in_flight.contains(key) {
                        continue;
                    }
                    let done = self.in_flight.remove(key);
                    let kind = done.op.kind();
                    let delay = kind == OpKind::Delay;
                    if let Some(queue) = self.queues.get_mut(done.queue) {
                        queue.ops_in_flight = queue.ops_in_flight.saturating_sub(1);
                        if !delay {
                            queue.completed_at.get_or_insert(now);
                            let took = now.saturating_duration_since(done.submitted).as_nanos();
                            let _ = queue
                                .stats
                                .submit_to_complete_ns
                                .record((took as u64).max(1));
                        }
                    }
                    // A delay that ran its course is its success.
                    let result = if delay && result == -libc::ETIME {
                        0
                    } else {
                        result
                    };
                    self.complete_op(done.queue, done.tag, result);
                    if result == -libc::EACCES && !self.policy.allows(kind) {
                        if let Some(queue) = self.queues.get_mut(done.queue) {
                            queue.stats.ops_refused += 1;
                        }
                        self.fault(done.queue, &QueueFault::OpRefused { kind });
                    }
                }
                KIND_KICK => self.kicked(key, result, now),
                #[cfg(feature = "test-hooks")]
                KIND_FORBIDDEN => self.forbidden_done(result),
                KIND_CONTROL => {
                    self.control_armed = false;
                    // A failed reactor takes no more requests: the messages still queued
                    // go with it, and their senders hear that it is gone.
                    if self.health.failing {
                        continue;
                    }
                    self.handle_control();
                    if let Err(err) = self.arm_control() {
                        error!("reactor {}: cannot re-arm control: {err}", self.index);
                        self.stopping = true;
                    }
                }
                _ => {} // cancellation results: the cancelled read reports itself
            }
        }
        self.scratch_completions = completions;
    }

    fn kicked(&mut self, key: usize, result: i32, now: Instant) {
        let Some(queue) = self.queues.get_mut(key) else {
            return;
        };
        queue.kick_armed = false;
        if queue.detach_reply.is_some() || queue.faulted {
            return;
        }
        if result < 0 && result != -libc::EINTR && result != -libc::EAGAIN {
            error!(
                "reactor {}: queue {}: reading its kick eventfd failed: {}",
                self.index,
                queue.binding.name,
                std::io::Error::from_raw_os_error(-result)
            );
            return;
        }
        queue.ready = true;
        queue.kicked_at.get_or_insert(now);
        if let Err(err) = self.arm_kick(key) {
            error!("reactor {}: cannot re-arm a kick read: {err}", self.index);
        }
    }

    fn signal_interrupts(&mut self) {
        let mut faults = Vec::new();
        for (key, queue) in self.queues.iter_mut() {
            if !std::mem::take(&mut queue.used_added) {
                continue;
            }
            let completed_at = queue.completed_at.take();
            match queue.binding.worker.needs_interrupt() {
                Ok(true) => match queue.binding.interrupt.signal() {
                    Ok(()) => {
                        queue.stats.irqs_sent += 1;
                        if let Some(at) = completed_at {
                            let took = at.elapsed().as_nanos() as u64;
                            let _ = queue.stats.complete_to_irq_ns.record(took.max(1));
                        }
                    }
                    Err(err) => warn!("queue {}: {err}", queue.binding.name),
                },
                Ok(false) => queue.stats.irqs_suppressed += 1,
                Err(fault) => faults.push((key, fault)),
            }
        }
        for (key, fault) in faults {
            self.fault(key, &fault);
        }
    }

    fn fault(&mut self, key: usize, fault: &QueueFault) {
        if let Some(queue) = self.queues.get_mut(key) {
            if !queue.faulted {
                warn!("queue {}: {fault}", queue.binding.name);
                queue.faulted = true;
                queue.ready = false;
                (queue.binding.on_fault)(fault);
            }
        }
    }
}
