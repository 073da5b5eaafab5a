//! The device path without KVM: a virtio device activated directly, its queues served by
//! the real io_uring reactors, and a synthetic guest driver in this process that writes
//! descriptors into guest memory, kicks the queue's eventfd and sleeps on the interrupt
//! eventfd like a guest driver would.
//!
//! The device-path tests (`tests/device_path_*.rs`) and the device-path benchmark
//! (`bench/`) drive devices through a [`Rig`]: [`BlockRig`] for virtio-blk, [`ScsiRig`]
//! for virtio-scsi, [`NetRig`] for virtio-net, [`ConsoleRig`] for virtio-console.

mod blk;
mod console;
mod net;
mod scsi;

pub use blk::{
    BlockRig, Completion, Posted, RequestSlot, VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_OK,
    VIRTIO_BLK_S_UNSUPP, VIRTIO_BLK_T_DISCARD, VIRTIO_BLK_T_FLUSH, VIRTIO_BLK_T_GET_ID,
    VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT, VIRTIO_BLK_T_WRITE_ZEROES,
};
pub use console::{port_rx_queue, ConsoleRig, ControlEvent, CONTROL_RX, CONTROL_TX};
pub use net::NetRig;
pub use scsi::{CommandSlot, PostedCommand, ScsiAnswer, ScsiRig};

use std::os::fd::AsRawFd;
use std::sync::atomic::{fence, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use ringvisor_devices::virtio::block::BlockError;
use ringvisor_devices::virtio::net::NetError;
use ringvisor_devices::virtio::scsi::ScsiError;
use ringvisor_devices::virtio::{ActivateError, VirtioDevice};
use ringvisor_io::{
    AttachedQueue, IoUringUnavailable, IrqEvent, IrqEventError, QueueBinding, QueueHost,
    QueueHostError, ReactorError, ReactorOptions, ReactorSet, ReactorStats,
};
use virtio_queue::{Queue, QueueT};
use vm_memory::GuestAddress;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::virtq_driver::{Buffer, DriverError, SplitQueueDriver};
use ringvisor::memory::{self, GuestMemory, MemoryError, MemoryOptions, MIN_MEMORY_BYTES};

/// Guest memory each queue gets for request headers, data and status bytes.
pub const SCRATCH_PER_QUEUE: u64 = 8 << 20;
/// Where the scratch areas start: the rings of every queue live below.
const SCRATCH_BASE: u64 = 16 << 20;
/// The rings of queue `i` start at `RING_BASE + i * ring stride`.
const RING_BASE: u64 = 0x1_0000;
/// How long the convenience calls of [`BlockRig`] wait for a completion.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(30);
#[derive(Debug, thiserror::Error)]
pub enum DevPathError {
    #[error("cannot allocate guest memory: {0}")]
    Memory(#[from] MemoryError),
    #[error("cannot open the disk: {0}")]
    Block(#[from] BlockError),
    #[error("cannot open the SCSI disks: {0}")]
    Scsi(#[from] ScsiError),
    #[error("cannot attach the TAP: {0}")]
    Net(#[from] NetError),
    #[error("cannot start the reactors: {0}")]
    Reactor(#[from] ReactorError),
    #[error(transparent)]
    IoUring(#[from] IoUringUnavailable),
    #[error("virtqueue driver: {0}")]
    Driver(#[from] DriverError),
    #[error("guest memory access failed: {0}")]
    GuestMemory(#[from] vm_memory::GuestMemoryError),
    #[error("the device refused activation: {0}")]
    Activate(#[from] ActivateError),
    #[error("interrupt line: {0}")]
    Irq(#[from] IrqEventError),
    #[error("cannot hand a queue to the reactors or take it back: {0}")]
    QueueHost(#[from] QueueHostError),
    #[error("kick eventfd: {0}")]
    Kick(#[source] std::io::Error),
    #[error("waiting on the interrupt eventfd: {0}")]
    Poll(#[source] std::io::Error),
    #[error("queue size {0} does not fit the rig's ring area")]
    QueueSize(u16),
    #[error("the device has {queues} queues, there is no queue {queue}")]
    NoQueue { queue: usize, queues: usize },
    #[error("queue {queue}: scratch memory exhausted ({want} more bytes)")]
    ScratchExhausted { queue: usize, want: u64 },
    #[error(
        "queue {queue}: {got} of {want} completions signalled within {waited:?}; \
         in the used ring without an interrupt: {late:?}; {detail}"
    )]
    Timeout {
        queue: usize,
        got: usize,
        want: usize,
        waited: Duration,
        late: Vec<(u16, u32)>,
        detail: String,
    },
}

pub type Result<T> = std::result::Result<T, DevPathError>;

/// One queue as the guest sees it: rings, a scratch area for headers, data and status,
/// the kick eventfd and the interrupt line.
pub struct GuestQueue {
    index: usize,
    mem: GuestMemory,
    driver: SplitQueueDriver,
    kick: EventFd,
    interrupt: IrqEvent,
    scratch: GuestAddress,
    next_scratch: u64,
    faults: Arc<Mutex<Vec<String>>>,
}

impl GuestQueue {
    /// Takes `len` bytes (4 KiB aligned) of this queue's scratch memory.
    pub fn alloc(&mut self, len: u64) -> Result<GuestAddress> {
        let at = self.next_scratch.next_multiple_of(4096);
        match at.checked_add(len) {
            Some(end) if end <= SCRATCH_PER_QUEUE => {
                self.next_scratch = end;
                Ok(GuestAddress(self.scratch.0 + at))
            }
            _ => Err(DevPathError::ScratchExhausted {
                queue: self.index,
                want: len,
            }),
        }
    }

    /// Frees all the scratch memory (no request may still use it).
    pub fn reset_scratch(&mut self) {
        self.next_scratch = 0;
    }

    /// The guest memory the queue lives in.
    pub fn mem(&self) -> &GuestMemory {
        &self.mem
    }

    /// Adds a chain of `buffers`, not visible to the device before
    /// [`kick`](Self::kick). Returns the head descriptor.
    pub fn post_chain(&mut self, buffers: &[Buffer]) -> Result<u16> {
        Ok(self.driver.add_chain(buffers)?)
    }

    /// Publishes every posted request (see [`publish`](Self::publish)) and notifies the
    /// device whether or not it asked to be.
    pub fn kick(&mut self) -> Result<()> {
        self.publish()?;
        self.kick.write(1).map_err(DevPathError::Kick)
    }

    /// Publishes every posted request without notifying the device and returns whether
    /// the device asked to be notified of them, as Linux's `virtqueue_kick_prepare` does
    /// with EVENT_IDX (the avail_event the device set lies among the new entries). Like
    /// Linux, asks for an interrupt at the next used entry.
    pub fn publish(&mut self) -> Result<bool> {
        let old = self.driver.published_avail_idx()?;
        self.driver.set_used_event(self.driver.last_used())?;
        self.driver.publish()?;
        let new = self.driver.avail_idx();
        let event = self.driver.avail_event()?;
        Ok(new.wrapping_sub(event).wrapping_sub(1) < new.wrapping_sub(old))
    }

    /// Whether the device asked to hear of the next chain published (EVENT_IDX: its
    /// avail_event is the avail index published so far).
    pub fn next_kick_wanted(&self) -> Result<bool> {
        Ok(self.driver.avail_event()? == self.driver.published_avail_idx()?)
    }

    /// Publishes every posted request and notifies the device, asking for no interrupt:
    /// the driver polls the used ring instead, like a Linux virtio-blk poll queue
    /// (`io_poll`). With EVENT_IDX, a used_event half the ring-index space ahead is never
    /// crossed by one batch.
    pub fn kick_polled(&mut self) -> Result<()> {
        self.driver
            .set_used_event(self.driver.last_used().wrapping_add(0x8000))?;
        self.driver.publish()?;
        self.kick.write(1).map_err(DevPathError::Kick)
    }

    /// Spins until used entries wait, for at most `timeout`; returns false on timeout.
    pub fn poll_used(&mut self, timeout: Duration) -> Result<bool> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.driver.has_used()? {
                return Ok(true);
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            std::hint::spin_loop();
        }
    }

    /// Re-arms the interrupt for the next used entry (EVENT_IDX) and, like Linux's
    /// `virtqueue_enable_cb`, checks the used ring again afterwards: entries the device
    /// added before it could see the new used_event raise no interrupt. Returns whether
    /// used entries wait.
    pub fn arm_interrupt(&mut self) -> Result<bool> {
        self.driver.set_used_event(self.driver.last_used())?;
        // The used_event store must be visible before the used idx load (the device
        // does the mirror image: used idx store, fence, used_event load).
        fence(Ordering::SeqCst);
        Ok(self.driver.has_used()?)
    }

    /// Sleeps until an interrupt comes or used entries wait, for at most `timeout`;
    /// returns false on timeout. Clears the interrupt.
    pub fn wait_interrupt(&mut self, timeout: Duration) -> Result<bool> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.interrupt.take_pending() > 0 || self.arm_interrupt()? {
                return Ok(true);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(false);
            }
            let mut pollfd = libc::pollfd {
                fd: self.interrupt.eventfd().as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            let ms = libc::c_int::try_from(left.as_millis().max(1)).unwrap_or(libc::c_int::MAX);
            // SAFETY: `pollfd` is one valid pollfd on an eventfd this queue owns, and the
            // count passed is 1.
            let rc = unsafe { libc::poll(&mut pollfd, 1, ms) };
            if rc < 0 {
                let err = std::io::Error::last_os_error();
                if err.kind() != std::io::ErrorKind::Interrupted {
                    return Err(DevPathError::Poll(err));
                }
            }
        }
    }

    /// Pops the used entries the device wrote so far.
    pub fn reap(&mut self) -> Result<Vec<(u16, u32)>> {
        Ok(self.driver.take_used()?)
    }

    /// Waits until `count` used entries came back, sleeping on the interrupt like a guest
    /// driver (a completion without an interrupt would hang a real guest); returns them.
    pub fn wait_used(&mut self, count: usize, timeout: Duration) -> Result<Vec<(u16, u32)>> {
        let start = Instant::now();
        let mut used = Vec::new();
        while used.len() < count {
            let left = timeout.saturating_sub(start.elapsed());
            if left.is_zero() || !self.wait_interrupt(left)? {
                let faults = self.faults.lock().unwrap_or_else(PoisonError::into_inner);
                return Err(DevPathError::Timeout {
                    queue: self.index,
                    got: used.len(),
                    want: count,
                    waited: start.elapsed(),
                    late: self.driver.take_used()?,
                    detail: format!("queue faults: {faults:?}"),
                });
            }
            used.extend(self.reap()?);
        }
        Ok(used)
    }
}

/// A virtio device, its queues on a [`ReactorSet`], and the guest side of each queue.
pub struct Rig<D: VirtioDevice> {
    mem: GuestMemory,
    device: D,
    reactors: ReactorSet,
    queues: Vec<GuestQueue>,
    attached: Vec<AttachedQueue>,
    faults: Arc<Mutex<Vec<String>>>,
}

impl<D: VirtioDevice> Rig<D> {
    /// Starts one reactor per entry of `reactor_cores` (`None`: not pinned), lays out
    /// every queue of `device` with `queue_size` entries in fresh guest memory, activates
    /// the device with every feature it offers and hands each queue to the reactors.
    pub fn with_device(
        device: D,
        name: &str,
        reactor_cores: &[Option<usize>],
        queue_size: u16,
        poll: Option<std::time::Duration>,
    ) -> Result<Self> {
        Self::with_device_options(
            device,
            name,
            reactor_cores,
            queue_size,
            &ReactorOptions {
                poll,
                ..ReactorOptions::default()
            },
            &MemoryOptions::default(),
        )
    }

    /// As [`with_device`](Self::with_device), with guest memory backed as `memory` says
    /// (huge pages, prefaulted) and the reactors started with `reactor` (polling, submit
    /// batch, failure hook); unless it names io-wq limits, they are the machine's defaults
    /// for the device's reactor kind, counting every queue of the device.
    pub fn with_device_options(
        mut device: D,
        name: &str,
        reactor_cores: &[Option<usize>],
        queue_size: u16,
        reactor: &ReactorOptions,
        memory: &MemoryOptions,
    ) -> Result<Self> {
        let iowq = match ringvisor::seccomp::serving_reactor(device.device_type()) {
            ringvisor::seccomp::ThreadKind::HotReactor => ringvisor::iowq::hot_limits(
                None,
                device.queue_max_sizes().len(),
                reactor_cores.len(),
            ),
            _ => ringvisor::iowq::low_priority_limits(None),
        };
        // A host without io_uring gets its cause and fix, not a reactor thread's errno.
        ringvisor_io::probe()?;
        let queue_count = device.queue_max_sizes().len() as u64;
        let ring_stride = SplitQueueDriver::footprint(queue_size).next_multiple_of(4096);
        if RING_BASE + queue_count * ring_stride > SCRATCH_BASE {
            return Err(DevPathError::QueueSize(queue_size));
        }
        let mem_bytes = (SCRATCH_BASE + queue_count * SCRATCH_PER_QUEUE).max(MIN_MEMORY_BYTES);
        let mem = memory::allocate_with(mem_bytes, memory)?;
        // Confined as the machine's reactors of the device's kind are: their io_uring
        // restrictions always, their seccomp filter when this process has a policy
        // (tests/seccomp.rs serves a disk through them that way).
        let kind = ringvisor::seccomp::serving_reactor(device.device_type());
        // Prefaulted guest RAM becomes the rings' registered buffers, as in the machine.
        let reactor = ReactorOptions {
            iowq: reactor.iowq.or(Some(iowq)),
            registered_ram: reactor
                .registered_ram
                .clone()
                .or_else(|| memory::registered_ram(&mem, memory)),
            ..reactor.clone()
        };
        let reactors = ReactorSet::start_confined(
            reactor_cores,
            &reactor,
            Arc::new(move || ringvisor::seccomp::confine(kind)),
            ringvisor::seccomp::ring_policy(kind),
        )?;
        let faults = Arc::new(Mutex::new(Vec::new()));
        let mut device_queues = Vec::new();
        let mut queues = Vec::new();
        for index in 0..queue_count as u16 {
            let i = u64::from(index);
            let base = GuestAddress(RING_BASE + i * ring_stride);
            let driver = SplitQueueDriver::new(mem.clone(), base, queue_size)?;
            let mut queue =
                Queue::new(queue_size).map_err(|_| DevPathError::QueueSize(queue_size))?;
            driver.configure(&mut queue);
            device_queues.push((index, queue));
            queues.push(GuestQueue {
                index: usize::from(index),
                mem: mem.clone(),
                driver,
                kick: EventFd::new(EFD_NONBLOCK).map_err(DevPathError::Kick)?,
                interrupt: IrqEvent::new()?,
                scratch: GuestAddress(SCRATCH_BASE + i * SCRATCH_PER_QUEUE),
                next_scratch: 0,
                faults: faults.clone(),
            });
        }
        let features = device.offered_features();
        let workers = device.activate(mem.clone(), features, device_queues)?;
        let mut rig = Self {
            mem,
            device,
            reactors,
            queues,
            attached: Vec::new(),
            faults,
        };
        let mut groups: Vec<(u16, AttachedQueue)> = Vec::new();
        for (index, worker) in workers {
            let queue = rig.queue(usize::from(index))?;
            let kick = queue.kick.try_clone().map_err(DevPathError::Kick)?;
            let interrupt = queue.interrupt.try_clone()?;
            let faults = rig.faults.clone();
            let name = format!("{name}/q{index}");
            let fault_name = name.clone();
            let binding = QueueBinding {
                name,
                worker,
                kick,
                interrupt,
                on_fault: Box::new(move |fault| {
                    faults
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(format!("{fault_name}: {fault}"));
                }),
            };
            // Queues of one group (a NIC's pair) share a reactor, as on virtio-pci.
            let group = rig.device.queue_group(index);
            let attached = match groups.iter().find(|(g, _)| *g == group) {
                Some(&(_, beside)) => rig.reactors.attach_beside(binding, beside)?,
                None => rig.reactors.attach(binding)?,
            };
            groups.push((group, attached));
            rig.attached.push(attached);
        }
        Ok(rig)
    }

    pub fn mem(&self) -> &GuestMemory {
        &self.mem
    }

    pub fn device(&self) -> &D {
        &self.device
    }

    /// The guest side of queue `index`.
    pub fn queue(&mut self, index: usize) -> Result<&mut GuestQueue> {
        let queues = self.queues.len();
        self.queues.get_mut(index).ok_or(DevPathError::NoQueue {
            queue: index,
            queues,
        })
    }

    /// Every queue, to drive them from several threads at once.
    pub fn queues_mut(&mut self) -> &mut [GuestQueue] {
        &mut self.queues
    }

    /// Every queue, and the reactors to read statistics from while threads drive them.
    pub fn split_mut(&mut self) -> (&mut [GuestQueue], &ReactorSet) {
        (&mut self.queues, &self.reactors)
    }

    /// A copy of every reactor's counters and histograms.
    pub fn stats(&self) -> Vec<ReactorStats> {
        self.reactors.stats()
    }

    /// The queue faults the reactors reported so far.
    pub fn faults(&self) -> Vec<String> {
        self.faults
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn kick(&mut self, queue: usize) -> Result<()> {
        self.queue(queue)?.kick()
    }

    /// Waits up to [`DEFAULT_WAIT`] for `count` completions on `queue`; on timeout the
    /// error carries the reactors' counters.
    pub fn wait_used(&mut self, queue: usize, count: usize) -> Result<Vec<(u16, u32)>> {
        match self.queue(queue)?.wait_used(count, DEFAULT_WAIT) {
            Err(DevPathError::Timeout {
                queue,
                got,
                want,
                waited,
                late,
                detail,
            }) => {
                let counters: Vec<_> = self
                    .stats()
                    .iter()
                    .flat_map(|r| r.queues.iter())
                    .map(|q| (q.requests, q.ops, q.irqs_sent, q.irqs_suppressed))
                    .collect();
                Err(DevPathError::Timeout {
                    queue,
                    got,
                    want,
                    waited,
                    late,
                    detail: format!(
                        "{detail}; (requests, ops, irqs sent, irqs suppressed): {counters:?}"
                    ),
                })
            }
            other => other,
        }
    }

    /// Takes every queue back from the reactors (each returns once nothing of it is in
    /// flight); the reactors keep running.
    pub fn detach_queues(&mut self) -> Result<()> {
        for attached in self.attached.drain(..) {
            self.reactors.detach(attached)?;
        }
        Ok(())
    }

    /// Takes every queue back from the reactors and resets the device.
    pub fn shutdown(mut self) -> Result<()> {
        self.detach_queues()?;
        self.device.reset();
        Ok(())
    }
}
