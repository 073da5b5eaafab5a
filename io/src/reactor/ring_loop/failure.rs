//! When io_uring_enter fails.
//!
//! EINTR, EAGAIN and EBUSY are retried: EAGAIN and EBUSY only once the completion queue has
//! been read (io_uring_enter(2): "wait for some completions and try again"), with a back-off
//! once they repeat, and for at most [`TRANSIENT_BOUND`]. Any other error, or a transient one
//! that outlasts the bound, ends the reactor, but never silently: the device of every queue
//! it serves is marked DEVICE_NEEDS_RESET (the queue's `on_fault`), one error line names the
//! reactor, its queues and the errno, the kernel is given [`DRAIN_BOUND`] to hand back every
//! op it holds (whatever it may still read or write is leaked, not freed, if it has not),
//! and the set's [`FailureHook`] tells the VMM.

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use io_uring::opcode;
use log::{debug, error, warn};

use super::{user_data, RingLoop, KIND_CANCEL, KIND_CONTROL, KIND_KICK, KIND_OP};
use crate::worker::QueueFault;

/// How long EAGAIN or EBUSY may go on, with completions read between tries, before the ring
/// is taken for broken: long past any memory shortage a host survives.
const TRANSIENT_BOUND: Duration = Duration::from_secs(10);
/// Retries without a pause: one read of the completion queue normally ends an EBUSY.
const FREE_RETRIES: u32 = 2;
/// The longest pause between retries, and between the looks at a failed ring's completions.
const MAX_PAUSE: Duration = Duration::from_millis(20);
/// How long a failed reactor waits for the kernel to give back the ops it holds. Disk I/O
/// under way cannot be cancelled, only waited for.
const DRAIN_BOUND: Duration = Duration::from_secs(5);

/// A reactor that stopped because its ring failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReactorFailure {
    /// The reactor's index in its set.
    pub reactor: usize,
    /// What io_uring_enter failed with.
    pub errno: i32,
}

impl std::fmt::Display for ReactorFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "I/O reactor {} stopped: io_uring_enter failed: {}",
            self.reactor,
            io::Error::from_raw_os_error(self.errno)
        )
    }
}

/// Called once, on the reactor's own thread, when a reactor of the set has stopped because
/// its ring failed: after its queues were faulted and the kernel gave back what it held (or
/// the wait for it ran out). The devices are then in DEVICE_NEEDS_RESET and nothing serves
/// them; what the VMM does about it is its call.
pub type FailureHook = Arc<dyn Fn(ReactorFailure) + Send + Sync>;

/// How a reactor's io_uring_enter calls have been faring.
pub(super) struct EnterHealth {
    /// The errno that ended the ring's use: every enter fails with it from then on.
    pub broken: Option<i32>,
    /// The reactor is winding down after a failure: no new op, no control message.
    pub failing: bool,
    /// Completions read off the ring while an enter was retried, for the next reap.
    pub stash: Vec<(u64, i32)>,
    /// Since when, and how many times in a row, EAGAIN or EBUSY came back.
    transient: Option<(Instant, u32)>,
    on_failure: Option<FailureHook>,
    /// The errno the next enters fail with instead of entering the kernel, and how many.
    #[cfg(feature = "test-hooks")]
    injected: Option<(i32, usize)>,
}

impl EnterHealth {
    pub fn new(on_failure: Option<FailureHook>) -> Self {
        Self {
            broken: None,
            failing: false,
            stash: Vec::new(),
            transient: None,
            on_failure,
            #[cfg(feature = "test-hooks")]
            injected: None,
        }
    }

    pub fn entered(&mut self) {
        self.transient = None;
    }

    #[cfg(feature = "test-hooks")]
    pub fn inject(&mut self, errno: i32, count: usize) {
        self.injected = (count > 0).then_some((errno, count));
    }
}

/// The pause before retry `n` past the free ones: 100 µs, doubling up to [`MAX_PAUSE`].
fn backoff(n: u32) -> Duration {
    (Duration::from_micros(100) * (1u32 << n.min(8))).min(MAX_PAUSE)
}

impl<E: super::EntrySize> RingLoop<E> {
    /// io_uring_enter: submits what was pushed and waits for `want` completions; or, when
    /// a test asked for it, fails as io_uring_enter would, having submitted nothing.
    pub(super) fn submit_and_wait(&mut self, want: usize) -> io::Result<usize> {
        #[cfg(feature = "test-hooks")]
        if let Some((errno, left)) = self.health.injected.as_mut() {
            let errno = *errno;
            *left -= 1;
            if *left == 0 {
                self.health.injected = None;
            }
            return Err(io::Error::from_raw_os_error(errno));
        }
        self.ring.submitter().submit_and_wait(want)
    }

    /// Sorts out a failed enter of `pushed` SQEs: Ok when the caller is to go on (and enter
    /// again), the error when the ring is beyond use.
    pub(super) fn enter_failed(&mut self, err: io::Error, pushed: usize) -> io::Result<()> {
        match err.raw_os_error() {
            Some(libc::EINTR) => {
                debug!("reactor {}: enter with {pushed} SQEs: {err}", self.index);
                Ok(())
            }
            Some(libc::EAGAIN | libc::EBUSY) => self.retry_after_reading_completions(err, pushed),
            _ => Err(self.break_ring(err)),
        }
    }

    fn retry_after_reading_completions(&mut self, err: io::Error, pushed: usize) -> io::Result<()> {
        let now = Instant::now();
        let (since, tries) = self.health.transient.get_or_insert((now, 0));
        *tries += 1;
        let (since, tries) = (*since, *tries);
        if now.saturating_duration_since(since) >= TRANSIENT_BOUND {
            warn!(
                "reactor {}: io_uring_enter kept failing ({err}) for {TRANSIENT_BOUND:?}, \
                 {tries} tries; giving its ring up",
                self.index
            );
            return Err(self.break_ring(err));
        }
        debug!(
            "reactor {}: enter with {pushed} SQEs: {err} (try {tries}); retrying",
            self.index
        );
        // EBUSY: the completion queue is full and the kernel holds completions back until
        // there is room; EAGAIN: it is short of resources until requests finish. Either way
        // the completions must be read first; the caller's next reap handles them.
        let stash = &mut self.health.stash;
        stash.extend(self.ring.completion().map(|cqe| {
            let cqe: io_uring::cqueue::Entry = cqe.into();
            (cqe.user_data(), cqe.result())
        }));
        if tries > FREE_RETRIES {
            // The kernel needs time, not a spin.
            std::thread::sleep(backoff(tries - FREE_RETRIES));
        }
        Ok(())
    }

    /// Marks the ring broken by `err` (the first such error is the one reported).
    fn break_ring(&mut self, err: io::Error) -> io::Error {
        let errno = err.raw_os_error().unwrap_or(libc::EIO);
        self.health.broken.get_or_insert(errno);
        err
    }

    /// The ring is broken: the error every enter now fails with.
    pub(super) fn broken(&self) -> Option<io::Error> {
        self.health.broken.map(io::Error::from_raw_os_error)
    }

    /// Ends a reactor whose ring failed with `err`: faults every queue (their devices are
    /// marked DEVICE_NEEDS_RESET), says so in one error line, waits for the kernel to give
    /// back what it holds, then calls the set's failure hook. The thread ends on return.
    pub(super) fn fail(mut self, err: io::Error) {
        let errno = err.raw_os_error().unwrap_or(libc::EIO);
        self.health.failing = true;
        let names: Vec<&str> = self
            .queues
            .iter()
            .map(|(_, q)| q.binding.name.as_str())
            .collect();
        error!(
            "reactor {}: io_uring_enter failed: {err}; the reactor stops and the devices of \
             its queues [{}] need a reset",
            self.index,
            names.join(", ")
        );
        let fault = QueueFault::ReactorFailed {
            reactor: self.index,
            errno,
        };
        for (_, queue) in self.queues.iter_mut() {
            // A queue faulted before has told its device already.
            if !queue.faulted {
                queue.faulted = true;
                queue.ready = false;
                (queue.binding.on_fault)(&fault);
            }
        }
        if !self.wait_for_kernel() {
            let held = self.held_by_kernel();
            warn!(
                "reactor {}: the kernel still holds {held} of its ops after {DRAIN_BOUND:?}; \
                 their buffers are leaked",
                self.index
            );
            // What the kernel holds may still read or write the iovec arrays and timeouts
            // of in-flight ops, the kick and control buffers and the buffers of the workers
            // (a test worker reads into its own): closing the ring, below, asks the kernel
            // to drop those ops but does not wait for it. Freeing them could hand memory the
            // kernel still writes to the next allocation, so they are never freed; the VMM
            // is about to stop anyway.
            std::mem::forget(std::mem::take(&mut self.in_flight));
            std::mem::forget(std::mem::take(&mut self.queues));
            std::mem::forget(std::mem::replace(&mut self.control_buf, Box::new(0)));
        }
        if let Some(hook) = self.health.on_failure.take() {
            hook(ReactorFailure {
                reactor: self.index,
                errno,
            });
        }
    }

    /// Cancels every op, kick read and control read the ring may still hold and reaps until
    /// the kernel has given them all back, or [`DRAIN_BOUND`] has passed: true when it did.
    fn wait_for_kernel(&mut self) -> bool {
        let mut targets: Vec<u64> = self
            .in_flight
            .iter()
            .map(|(slot, _)| user_data(KIND_OP, slot))
            .chain(
                self.queues
                    .iter()
                    .filter(|(_, q)| q.kick_armed)
                    .map(|(key, _)| user_data(KIND_KICK, key)),
            )
            .chain(self.control_armed.then_some(user_data(KIND_CONTROL, 0)))
            .collect();
        let deadline = Instant::now() + DRAIN_BOUND;
        let mut pause = 0;
        loop {
            while let Some(&target) = targets.last() {
                let cancel = opcode::AsyncCancel::new(target)
                    .build()
                    .user_data(user_data(KIND_CANCEL, 0));
                // SAFETY: a cancellation points at no memory: it names its target by
                // user_data only.
                let cancel = E::Sqe::from(cancel);
                if unsafe { self.ring.submission().push(&cancel) }.is_err() {
                    break; // the queue is full: the rest after the next enter
                }
                self.unsubmitted += 1;
                targets.pop();
            }
            let held = self.held_by_kernel();
            // With deferred task work, completions are posted only inside an enter. What was
            // pushed before the failure is submitted with the cancellations and then runs
            // to its end or is cancelled like the rest.
            match self.submit_and_wait(0) {
                Ok(submitted) => self.unsubmitted = self.unsubmitted.saturating_sub(submitted),
                Err(err) => debug!("reactor {}: failed ring: enter: {err}", self.index),
            }
            // Without deferred task work the kernel posts completions whether or not an
            // enter succeeds: the completion queue is read either way.
            self.reap();
            self.finish_detaches();
            let left = self.held_by_kernel();
            if left == 0 {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            pause = if left < held { 0 } else { pause + 1 };
            if pause > 0 {
                std::thread::sleep(backoff(pause));
            }
        }
    }

    /// Ops, kick reads and the control read the kernel may still hold.
    fn held_by_kernel(&self) -> usize {
        let kicks = self.queues.iter().filter(|(_, q)| q.kick_armed).count();
        self.in_flight.len() + kicks + usize::from(self.control_armed)
    }
}
