//! The control side of a reactor's loop: attaching and detaching queues, stats
//! snapshots. Never on the request path.

use std::os::fd::AsRawFd;

use crossbeam_channel::Sender;
use io_uring::{opcode, types};
use log::error;

use super::{
    user_data, Control, EntrySize, RingLoop, ServedQueue, KIND_CANCEL, KIND_CONTROL, KIND_KICK,
    KIND_OP,
};
use crate::reactor::stats::{QueueStats, ReactorStats};

impl<E: EntrySize> RingLoop<E> {
    pub(super) fn arm_control(&mut self) -> std::io::Result<()> {
        let entry = opcode::Read::new(
            types::Fd(self.control_event.as_raw_fd()),
            (&mut *self.control_buf as *mut u64).cast(),
            8,
        )
        .build()
        .user_data(user_data(KIND_CONTROL, 0));
        self.push(&entry)?;
        self.control_armed = true;
        Ok(())
    }

    pub(super) fn handle_control(&mut self) {
        while let Ok(message) = self.control.try_recv() {
            match message {
                Control::Attach(binding, reply) => {
                    let name = binding.name.clone();
                    let files = binding
                        .worker
                        .fixed_files()
                        .into_iter()
                        .filter(|&fd| self.files.add(&self.ring.submitter(), fd))
                        .collect();
                    let key = self.queues.insert(ServedQueue {
                        binding,
                        kick_buf: Box::new(0),
                        kick_armed: false,
                        // The guest may have posted requests before the queue got here.
                        ready: true,
                        kicked_at: None,
                        completed_at: None,
                        used_added: false,
                        notifications_off: false,
                        ops_in_flight: 0,
                        files,
                        detach_reply: None,
                        faulted: false,
                        stats: QueueStats::new(name, self.index),
                    });
                    if let Err(err) = self.arm_kick(key) {
                        error!("reactor {}: cannot watch queue kicks: {err}", self.index);
                    }
                    let _ = reply.send(key);
                }
                Control::Detach(key, reply) => self.start_detach(key, reply),
                Control::Stats(reply) => {
                    let _ = reply.send(self.snapshot());
                }
                Control::ForgetRam { addr, len, reply } => {
                    self.buffers.forget(&self.ring.submitter(), addr, len);
                    let _ = reply.send(());
                }
                Control::RestoreRam(reply) => {
                    self.buffers.restore(&self.ring.submitter());
                    let _ = reply.send(());
                }
                Control::Run(task) => task(),
                #[cfg(feature = "test-hooks")]
                Control::TryForbidden(op, reply) => self.try_forbidden(op, reply),
                #[cfg(feature = "test-hooks")]
                Control::FailEnters {
                    errno,
                    count,
                    reply,
                } => {
                    self.health.inject(errno, count);
                    let _ = reply.send(());
                }
                Control::Stop => {
                    self.stopping = true;
                    let keys: Vec<usize> = self.queues.iter().map(|(key, _)| key).collect();
                    for key in keys {
                        // Nobody waits for these replies: the reactor is going away.
                        let (reply, _) = crossbeam_channel::bounded(1);
                        self.start_detach(key, reply);
                    }
                }
            }
        }
    }

    /// Stops taking requests from queue `key`; `reply` is answered by `finish_detaches`
    /// once its in-flight ops have completed and its kick read is cancelled.
    fn start_detach(&mut self, key: usize, reply: Sender<()>) {
        let Some(queue) = self.queues.get_mut(key) else {
            let _ = reply.send(());
            return;
        };
        queue.detach_reply = Some(reply);
        queue.ready = false;
        let mut targets = std::mem::take(&mut self.scratch_keys);
        targets.clear();
        if queue.kick_armed {
            targets.push(user_data(KIND_KICK, key) as usize);
        }
        // Ops that wait on something other than a disk (a TAP read waits for a frame)
        // would hold the detach forever: cancel every op of the queue. Disk I/O already
        // under way cannot be cancelled and simply completes.
        targets.extend(
            self.in_flight
                .iter()
                .filter(|(_, op)| op.queue == key)
                .map(|(slot, _)| user_data(KIND_OP, slot) as usize),
        );
        for &target in &targets {
            let cancel = opcode::AsyncCancel::new(target as u64)
                .build()
                .user_data(user_data(KIND_CANCEL, key));
            if let Err(err) = self.push(&cancel) {
                error!("reactor {}: cannot cancel an op: {err}", self.index);
            }
        }
        self.scratch_keys = targets;
    }

    fn snapshot(&self) -> ReactorStats {
        let mut stats = ReactorStats::new(self.index, self.core);
        stats.enters = self.enters;
        stats.sqes_submitted = self.sqes_submitted;
        stats.fixed_files = self.files.len();
        stats.fixed_buffers = self.buffers.live();
        stats.sqes_per_enter = self.sqes_per_enter.clone();
        stats.tid = self.tid;
        stats.iowq_limits = self.iowq.limits;
        stats.iowq_cores = self.iowq.cores.clone();
        stats.queues = self
            .queues
            .iter()
            .map(|(_, q)| {
                let mut queue = q.stats.clone();
                queue.device = q.binding.worker.counters();
                queue.in_flight = q.binding.worker.in_flight();
                queue
            })
            .collect();
        stats
    }

    pub(super) fn finish_detaches(&mut self) {
        let done: Vec<usize> = self
            .queues
            .iter()
            .filter(|(_, q)| q.detach_reply.is_some() && q.ops_in_flight == 0 && !q.kick_armed)
            .map(|(key, _)| key)
            .collect();
        for key in done {
            let queue = self.queues.remove(key);
            for &fd in &queue.files {
                self.files.remove(&self.ring.submitter(), fd);
            }
            if let Some(reply) = queue.detach_reply {
                let _ = reply.send(());
            }
        }
    }
}

#[cfg(feature = "test-hooks")]
impl<E: EntrySize> RingLoop<E> {
    fn try_forbidden(&mut self, op: crate::reactor::ring_policy::ForbiddenOp, reply: Sender<i32>) {
        use crate::reactor::ring_policy::ForbiddenOp;
        // Both point at statics, alive as long as the kernel may read them.
        static ROOT: &std::ffi::CStr = c"/";
        static NOWHERE: libc::sockaddr_in = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: 0,
            sin_addr: libc::in_addr { s_addr: 0 },
            sin_zero: [0; 8],
        };
        let entry = match op {
            ForbiddenOp::OpenAt => opcode::OpenAt::new(types::Fd(libc::AT_FDCWD), ROOT.as_ptr())
                .flags(libc::O_RDONLY | libc::O_CLOEXEC)
                .build(),
            ForbiddenOp::Connect => opcode::Connect::new(
                types::Fd(-1),
                std::ptr::from_ref(&NOWHERE).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
            .build(),
        };
        self.forbidden_reply = Some(reply);
        if let Err(err) = self.push(&entry.user_data(user_data(super::KIND_FORBIDDEN, 0))) {
            error!(
                "reactor {}: cannot submit the forbidden op: {err}",
                self.index
            );
            self.forbidden_done(-libc::EIO);
        }
    }

    pub(super) fn forbidden_done(&mut self, result: i32) {
        if result >= 0 {
            // An open that was let through: its descriptor is ours to close.
            // SAFETY: the kernel just handed this descriptor to this process; nothing
            // else knows it.
            unsafe { libc::close(result) };
        }
        if let Some(reply) = self.forbidden_reply.take() {
            let _ = reply.send(result);
        }
    }
}
