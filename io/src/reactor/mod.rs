//! The per-core io_uring reactors and the set that spreads queues over them.

mod iowq;
mod ram;
mod ring_loop;
mod ring_policy;
mod stats;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;

use crossbeam_channel::{bounded, unbounded, Receiver, Sender};
use log::warn;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::worker::{AttachedQueue, QueueBinding, QueueHost, QueueHostError};
use ring_loop::{Control, EntrySize, IowqPlan, LoopConfig, Plain, RingLoop, Wide};

pub use ring_loop::{FailureHook, ReactorFailure};

pub use iowq::{iowq_workers, IowqLimits, IowqWorker};
pub use ram::{RegisteredRam, RAM_PIECE_MAX};
#[cfg(feature = "test-hooks")]
pub use ring_policy::ForbiddenOp;
pub use ring_policy::{OpKind, RingPolicy};
pub use stats::{QueueStats, ReactorStats};

/// Submission queue entries per ring: room for several full 256-entry queues per pass.
const RING_ENTRIES: u32 = 1024;

#[derive(Debug, thiserror::Error)]
pub enum ReactorError {
    #[error("no reactor to start (empty core list)")]
    NoReactors,
    #[error("cannot set up io_uring for reactor {reactor}: {source}")]
    Ring {
        reactor: usize,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot create the control eventfd of reactor {reactor}: {source}")]
    ControlEvent {
        reactor: usize,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start reactor thread {reactor}: {source}")]
    Spawn {
        reactor: usize,
        #[source]
        source: std::io::Error,
    },
}

struct ReactorHandle {
    control: Sender<Control>,
    wake: EventFd,
    thread: Option<JoinHandle<()>>,
}

impl ReactorHandle {
    fn send(&self, index: usize, message: Control) -> Result<(), QueueHostError> {
        self.control
            .send(message)
            .map_err(|_| QueueHostError::ReactorGone(index))?;
        self.wake
            .write(1)
            .map_err(|_| QueueHostError::ReactorGone(index))
    }
}

/// Work a reactor thread does on itself before it serves anything (see
/// [`ReactorSet::start_confined`]).
pub type ThreadSetup = std::sync::Arc<dyn Fn() + Send + Sync>;

/// How the reactors of a set behave, beyond where they run.
#[derive(Clone, Default)]
pub struct ReactorOptions {
    /// Adaptive polling: a reactor that runs out of work keeps guest notifications off
    /// and spins on its avail rings and completion queue for up to this long before it
    /// re-enables them and sleeps (QEMU's poll-max-ns): fewer kicks (VM exits) and
    /// wake-ups under load, for a core's worth of spinning. `None`: sleep at once.
    pub poll: Option<std::time::Duration>,
    /// The most io-wq workers each reactor's ring may run; `None`: the kernel's limits.
    /// Whatever the limits, a pinned reactor keeps its workers on its own core.
    pub iowq: Option<IowqLimits>,
    /// Told when a reactor of the set stops because its ring failed (see
    /// [`FailureHook`]); `None`: the failure is logged and the devices of its queues are
    /// marked DEVICE_NEEDS_RESET, and that is all.
    pub on_failure: Option<FailureHook>,
    /// How many SQEs a reactor gathers before it hands them to the kernel while it
    /// drains its queues (it always hands over what it has before it waits); `None`: one,
    /// each op as soon as it is made. A batch of three or more goes through the block
    /// layer's plug and reaches the disk only once the last one is issued: measured on
    /// the device path (ext4 on a virtual disk, 4k randread QD32, six interleaved
    /// rounds), the plug's batches of ~18 cost 10 % of the IOPS of handing each op over
    /// at once (bench/README.md).
    pub submit_batch: Option<std::num::NonZeroUsize>,
    /// Guest RAM to register with every reactor's ring as fixed buffers: requests whose
    /// data lies in one piece become READ_FIXED/WRITE_FIXED. The pages are pinned, so
    /// this is for RAM that is resident or reserved anyway (prefaulted, huge pages);
    /// whoever drops guest pages first calls [`ReactorSet::forget_ram`]. `None`: requests
    /// name their iovecs.
    pub registered_ram: Option<RegisteredRam>,
    /// Build every ring with 128-byte SQEs and 32-byte CQEs (Linux 5.19+), which driver
    /// commands ([`IoOp::UringCmd`](crate::IoOp), NVMe passthrough) need; `false`: the
    /// plain 64/16-byte entries, half the ring memory, and such commands fail with
    /// -EOPNOTSUPP.
    pub wide_entries: bool,
}

impl std::fmt::Debug for ReactorOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReactorOptions")
            .field("poll", &self.poll)
            .field("iowq", &self.iowq)
            .field("on_failure", &self.on_failure.as_ref().map(|_| "set"))
            .field("submit_batch", &self.submit_batch)
            .field(
                "registered_ram",
                &self.registered_ram.as_ref().map(|ram| ram.pieces().len()),
            )
            .finish()
    }
}

/// What a reactor thread needs to build its ring and serve.
struct ServeArgs {
    config: LoopConfig,
    control: Receiver<Control>,
    wake: EventFd,
    built: Sender<std::io::Result<()>>,
    setup: Option<ThreadSetup>,
}

impl ServeArgs {
    fn run<E: EntrySize>(self) {
        // Built here rather than by the caller: the io-wq the ring's set-up configures is
        // the building thread's (see ring_loop::setup).
        let ring = match RingLoop::<E>::new(self.config, self.control, self.wake) {
            Ok(ring) => ring,
            Err(err) => {
                let _ = self.built.send(Err(err));
                return;
            }
        };
        let _ = self.built.send(Ok(()));
        if let Some(setup) = self.setup {
            setup();
        }
        ring.run();
    }
}

/// One reactor thread per entry of the placement, each pinned to its core when one is
/// given; queues go to reactors round-robin as devices activate.
pub struct ReactorSet {
    reactors: Vec<ReactorHandle>,
    next: AtomicUsize,
}

impl ReactorSet {
    /// Starts one reactor per element of `cores` (`None`: not pinned), sleeping as soon
    /// as there is nothing to do, its ring allowing every kind of op.
    pub fn start(cores: &[Option<usize>]) -> Result<Self, ReactorError> {
        Self::start_with(cores, &ReactorOptions::default())
    }

    /// As [`start`](Self::start), polling as [`ReactorOptions::poll`] says.
    pub fn start_with_polling(
        cores: &[Option<usize>],
        poll: Option<std::time::Duration>,
    ) -> Result<Self, ReactorError> {
        Self::start_with(
            cores,
            &ReactorOptions {
                poll,
                ..ReactorOptions::default()
            },
        )
    }

    /// As [`start`](Self::start), with `options`.
    pub fn start_with(
        cores: &[Option<usize>],
        options: &ReactorOptions,
    ) -> Result<Self, ReactorError> {
        Self::start_class(cores, options, ReactorClass::Hot, None, RingPolicy::any())
    }

    /// As [`start_with`](Self::start_with), each thread running `setup` once it is pinned
    /// and its ring built, before its loop, and each ring restricted to `ring`: how the VMM
    /// confines its reactors (seccomp, io_uring restrictions) without this crate knowing
    /// which devices they serve.
    pub fn start_confined(
        cores: &[Option<usize>],
        options: &ReactorOptions,
        setup: ThreadSetup,
        ring: RingPolicy,
    ) -> Result<Self, ReactorError> {
        Self::start_class(cores, options, ReactorClass::Hot, Some(setup), ring)
    }

    /// The low-priority reactor: one thread, "lowprio0", at nice
    /// [`LOW_PRIORITY_NICE`], never polling, on any of `cores` (the cores left to it once
    /// vCPUs and hot reactors are placed; empty: wherever the scheduler likes). It serves
    /// the devices that must never take time from the I/O reactors (console, balloon).
    pub fn start_low_priority(cores: &[usize]) -> Result<Self, ReactorError> {
        Self::start_class(
            &[None],
            &ReactorOptions::default(),
            ReactorClass::LowPriority(cores.to_vec()),
            None,
            RingPolicy::any(),
        )
    }

    /// As [`start_low_priority`](Self::start_low_priority), its io-wq capped at
    /// `options.iowq` (and kept on `cores`, when given), its failures told to
    /// `options.on_failure`, the thread running `setup` before its loop and its ring
    /// restricted to `ring`. It never polls, whatever `options.poll` says.
    pub fn start_low_priority_confined(
        cores: &[usize],
        options: &ReactorOptions,
        setup: ThreadSetup,
        ring: RingPolicy,
    ) -> Result<Self, ReactorError> {
        Self::start_class(
            &[None],
            &ReactorOptions {
                poll: None,
                ..options.clone()
            },
            ReactorClass::LowPriority(cores.to_vec()),
            Some(setup),
            ring,
        )
    }

    fn start_class(
        cores: &[Option<usize>],
        options: &ReactorOptions,
        class: ReactorClass,
        setup: Option<ThreadSetup>,
        policy: RingPolicy,
    ) -> Result<Self, ReactorError> {
        if cores.is_empty() {
            return Err(ReactorError::NoReactors);
        }
        // Reactors started before a failure are stopped by the set's drop.
        let mut set = Self {
            reactors: Vec::with_capacity(cores.len()),
            next: AtomicUsize::new(0),
        };
        for (index, &core) in cores.iter().enumerate() {
            let (control_tx, control_rx) = unbounded();
            let wake = EventFd::new(EFD_NONBLOCK).map_err(|source| ReactorError::ControlEvent {
                reactor: index,
                source,
            })?;
            let loop_wake = wake
                .try_clone()
                .map_err(|source| ReactorError::ControlEvent {
                    reactor: index,
                    source,
                })?;
            let (name, low_cores) = match &class {
                ReactorClass::Hot => (format!("reactor{index}"), None),
                ReactorClass::LowPriority(cores) => {
                    (format!("lowprio{index}"), Some(cores.clone()))
                }
            };
            // The io-wq workers share the reactor's cores: blocking work stays off the
            // vCPUs' cores as the reactor does.
            let iowq_cores = match (core, &low_cores) {
                (Some(core), _) => vec![core],
                (None, Some(cores)) => cores.clone(),
                (None, None) => Vec::new(),
            };
            let config = LoopConfig {
                index,
                core,
                ring_entries: RING_ENTRIES,
                poll: options.poll,
                submit_batch: options.submit_batch.map_or(1, std::num::NonZeroUsize::get),
                registered_ram: options.registered_ram.clone(),
                policy: policy.clone(),
                iowq: IowqPlan {
                    limits: options.iowq,
                    cores: iowq_cores,
                },
                on_failure: options.on_failure.clone(),
            };
            let (built_tx, built_rx) = bounded(1);
            let setup = setup.clone();
            let wide = options.wide_entries;
            let thread = std::thread::Builder::new()
                .name(name)
                .spawn(move || {
                    if let Some(core) = core {
                        pin_to_cores(index, &[core]);
                    }
                    if let Some(cores) = low_cores {
                        lower_priority(index, &cores);
                    }
                    let serve = ServeArgs {
                        config,
                        control: control_rx,
                        wake: loop_wake,
                        built: built_tx,
                        setup,
                    };
                    if wide {
                        serve.run::<Wide>();
                    } else {
                        serve.run::<Plain>();
                    }
                })
                .map_err(|source| ReactorError::Spawn {
                    reactor: index,
                    source,
                })?;
            let built = built_rx.recv().unwrap_or_else(|_| {
                Err(std::io::Error::other(
                    "the reactor thread ended before its ring was built",
                ))
            });
            if let Err(source) = built {
                let _ = thread.join();
                return Err(ReactorError::Ring {
                    reactor: index,
                    source,
                });
            }
            set.reactors.push(ReactorHandle {
                control: control_tx,
                wake,
                thread: Some(thread),
            });
        }
        Ok(set)
    }

    pub fn len(&self) -> usize {
        self.reactors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.reactors.is_empty()
    }

    /// Runs `task` on reactor `reactor`'s thread, between two passes of its loop, and
    /// returns its result: how control-path upkeep (pausing the vCPUs, holding the
    /// kvmclock) gets onto the low-priority reactor. The reactor serves nothing else
    /// meanwhile, so the task must be short or the reactor one whose queues can wait.
    pub fn run_on<R: Send + 'static>(
        &self,
        reactor: usize,
        task: impl FnOnce() -> R + Send + 'static,
    ) -> Result<R, QueueHostError> {
        self.ask(reactor, |reply| {
            Control::Run(Box::new(move || {
                let _ = reply.send(task());
            }))
        })
    }

    /// Submits `op` on reactor `reactor`'s own ring and returns its result (-EACCES when
    /// the ring's restrictions refuse it).
    #[cfg(feature = "test-hooks")]
    pub fn try_forbidden(&self, reactor: usize, op: ForbiddenOp) -> Result<i32, QueueHostError> {
        self.ask(reactor, |reply| Control::TryForbidden(op, reply))
    }

    /// Makes reactor `reactor`'s next io_uring_enter fail with `errno` instead of entering
    /// the kernel (nothing is submitted), as a failing kernel would: how the tests reach
    /// the handling of a failed enter on a live reactor.
    #[cfg(feature = "test-hooks")]
    pub fn fail_next_enter(&self, reactor: usize, errno: i32) -> Result<(), QueueHostError> {
        self.fail_enters(reactor, errno, 1)
    }

    /// As [`fail_next_enter`](Self::fail_next_enter), for the next `count` enters
    /// (`usize::MAX`: a ring that never recovers).
    #[cfg(feature = "test-hooks")]
    pub fn fail_enters(
        &self,
        reactor: usize,
        errno: i32,
        count: usize,
    ) -> Result<(), QueueHostError> {
        self.ask(reactor, |reply| Control::FailEnters {
            errno,
            count,
            reply,
        })
    }

    /// A copy of every reactor's counters and histograms.
    pub fn stats(&self) -> Vec<ReactorStats> {
        let mut all = Vec::with_capacity(self.reactors.len());
        for (index, reactor) in self.reactors.iter().enumerate() {
            let (reply, answer) = bounded(1);
            if reactor.send(index, Control::Stats(reply)).is_ok() {
                if let Ok(stats) = answer.recv() {
                    all.push(stats);
                }
            }
        }
        all
    }
}

impl ReactorSet {
    /// Sends reactor `reactor` the message `message` makes around a reply channel and
    /// waits for the reply.
    fn ask<R>(
        &self,
        reactor: usize,
        message: impl FnOnce(crossbeam_channel::Sender<R>) -> Control,
    ) -> Result<R, QueueHostError> {
        let handle = self
            .reactors
            .get(reactor)
            .ok_or(QueueHostError::ReactorGone(reactor))?;
        let (reply, answer) = bounded(1);
        handle.send(reactor, message(reply))?;
        answer
            .recv()
            .map_err(|_| QueueHostError::ReactorGone(reactor))
    }

    /// Has every reactor drop the registered guest RAM pieces that overlap
    /// `[addr, addr + len)` (host addresses) from its ring before their pages are
    /// released: returns once each has (ops in flight keep the pages they were given).
    /// Requests on those pieces name their iovecs from then on, until
    /// [`restore_ram`](Self::restore_ram). A reactor that is gone holds nothing.
    pub fn forget_ram(&self, addr: usize, len: usize) {
        for reactor in 0..self.reactors.len() {
            let _ = self.ask(reactor, |reply| Control::ForgetRam { addr, len, reply });
        }
    }

    /// Has every reactor register again the guest RAM pieces it forgot (the RAM was
    /// cleared and is resident again); returns once each has.
    pub fn restore_ram(&self) {
        for reactor in 0..self.reactors.len() {
            let _ = self.ask(reactor, Control::RestoreRam);
        }
    }

    fn attach_to(
        &self,
        reactor: usize,
        binding: QueueBinding,
    ) -> Result<AttachedQueue, QueueHostError> {
        let key = self.ask(reactor, |reply| Control::Attach(binding, reply))?;
        Ok(AttachedQueue { reactor, key })
    }
}

impl QueueHost for ReactorSet {
    fn attach(&self, binding: QueueBinding) -> Result<AttachedQueue, QueueHostError> {
        let reactor = self.next.fetch_add(1, Ordering::Relaxed) % self.reactors.len();
        self.attach_to(reactor, binding)
    }

    fn attach_beside(
        &self,
        binding: QueueBinding,
        beside: AttachedQueue,
    ) -> Result<AttachedQueue, QueueHostError> {
        self.attach_to(beside.reactor % self.reactors.len(), binding)
    }

    fn detach(&self, queue: AttachedQueue) -> Result<(), QueueHostError> {
        self.ask(queue.reactor, |reply| Control::Detach(queue.key, reply))
    }
}

impl Drop for ReactorSet {
    fn drop(&mut self) {
        for (index, reactor) in self.reactors.iter().enumerate() {
            let _ = reactor.send(index, Control::Stop);
        }
        for reactor in &mut self.reactors {
            if let Some(thread) = reactor.thread.take() {
                let _ = thread.join();
            }
        }
    }
}

/// Restricts the calling thread to `cores` (a thread's affinity is its own on Linux).
pub fn pin_current_thread(cores: &[usize]) -> std::io::Result<()> {
    let set = cpu_set(cores)?;
    // SAFETY: `set` is a valid cpu_set_t of the size passed; 0 means the calling thread.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// `cores` as a cpu_set_t; EINVAL for a core the set cannot hold.
pub(crate) fn cpu_set(cores: &[usize]) -> std::io::Result<libc::cpu_set_t> {
    // SAFETY: cpu_set_t is plain data; zeroed is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &core in cores {
        if core >= libc::CPU_SETSIZE as usize {
            return Err(std::io::Error::from_raw_os_error(libc::EINVAL));
        }
        // SAFETY: CPU_SET indexes within the set: `core` is below CPU_SETSIZE.
        unsafe { libc::CPU_SET(core, &mut set) };
    }
    Ok(set)
}

/// Pins the calling thread to `cores`; a failure (core offline, not in the allowed set)
/// leaves it unpinned with a warning rather than stopping the VM.
fn pin_to_cores(reactor: usize, cores: &[usize]) {
    if let Err(err) = pin_current_thread(cores) {
        warn!("reactor {reactor}: cannot pin to cores {cores:?}: {err}");
    }
}

/// Niceness of the low-priority reactor: it yields to vCPUs and hot reactors under load.
pub const LOW_PRIORITY_NICE: i32 = 10;

/// Lowers the calling thread's priority (on Linux, niceness is per thread) and keeps it
/// to `cores` when given.
fn lower_priority(reactor: usize, cores: &[usize]) {
    if !cores.is_empty() {
        pin_to_cores(reactor, cores);
    }
    // SAFETY: gettid has no preconditions.
    let tid = unsafe { libc::gettid() };
    // SAFETY: setpriority only reads its scalar arguments; `tid` is this thread.
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, LOW_PRIORITY_NICE) };
    if rc != 0 {
        warn!(
            "low-priority reactor: cannot lower its priority: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// Which kind of set: per-core I/O reactors, or the one low-priority reactor.
#[derive(Debug, Clone)]
enum ReactorClass {
    Hot,
    /// The cores it may run on (empty: any).
    LowPriority(Vec<usize>),
}
