//! The control side of a reactor's loop: attaching and detaching queues, stats
//! snapshots. Never on the request path.

use std::os::fd::AsRawFd;

use crossbeam_channel::Sender;
use io_uring::{opcode, types};
use log::error;

use super::{
    user_data, Control, RingLoop, ServedQueue, KIND_CANCEL, KIND_CONTROL, KIND_KICK, KIND_OP,
};
use crate::reactor::stats::{QueueStats, ReactorStats};

impl RingLoop {
    pub(super) fn arm_control(&mut self) -> std::io::Result<()> {
        let entry = opcode::Read::new(
            types::Fd(self.control_event.as_raw_fd()),
            (&mut *self.control_buf as *mut u64).cast(),
            8,
        )
        .build()
        .user_data(user_data(KIND_CONTROL, 0));
        self.push(&entry)
    }

    pub(super) fn handle_control(&mut self) {
        while let Ok(message) = self.control.try_recv() {
            match message {
                Control::Attach(binding, reply) => {
                    let name = binding.name.clone();
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
                Control::Run(task) => task(),
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
        stats.sqes_per_enter = self.sqes_per_enter.clone();
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
            if let Some(reply) = queue.detach_reply {
                let _ = reply.send(());
            }
        }
    }
}
