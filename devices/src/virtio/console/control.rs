//! The control queues of a MULTIPORT console: messages from the driver (port ready,
//! opened, closed) and to it (ports added, named, connected on the host).

use std::collections::VecDeque;

use ringvisor_io::{IoBatch, QueueFault, QueueWorker};
use virtio_queue::Queue;

use super::hub::{lock, ControlMessage, Nudge, SharedHub, CONTROL_HEADER_LEN};
use crate::virtio::chain::{read_stream, write_stream, ChainLayout};
use crate::virtio::queue_ring::{forward_to_ring, QueueRing};
use crate::virtio::GuestMemory;

/// Longest control chain walked: a header and a name never need more.
const CONTROL_CHAIN_DESCRIPTORS: usize = 16;

/// Delivers the hub's messages to the driver (control receive queue).
pub struct ControlRxWorker {
    ring: QueueRing,
    hub: SharedHub,
    nudge: Nudge,
    layout: ChainLayout,
    /// Buffers the driver posted, waiting for messages.
    buffers: VecDeque<u16>,
    delivered: u64,
    bad_chains: u64,
}

impl ControlRxWorker {
    pub(crate) fn new(
        index: u16,
        queue: Queue,
        mem: GuestMemory,
        hub: SharedHub,
    ) -> std::io::Result<Self> {
        let nudge = Nudge::register(&mut lock(&hub), index)?;
        Ok(Self {
            ring: QueueRing::new(index, queue, mem),
            hub,
            nudge,
            layout: ChainLayout::with_capacity(CONTROL_CHAIN_DESCRIPTORS),
            buffers: VecDeque::new(),
            delivered: 0,
            bad_chains: 0,
        })
    }

    fn deliver(&mut self, batch: &mut IoBatch) -> Result<(), QueueFault> {
        let mut hub = lock(&self.hub);
        while !hub.outbox.is_empty() {
            let Some(head) = self.buffers.pop_front() else {
                break;
            };
            let walked = self.ring.walk(head, &mut self.layout);
            let Some(message) = hub.outbox.front() else {
                break;
            };
            let bytes = message.encode();
            let written = walked.ok().and_then(|()| {
                ((self.layout.writable_len() as usize) >= bytes.len()).then(|| {
                    write_stream(self.ring.mem(), &self.layout.writable, 0, &bytes).is_ok()
                })
            });
            if written == Some(true) {
                hub.outbox.pop_front();
                self.delivered += 1;
                self.ring.add_used(head, bytes.len() as u32)?;
            } else {
                // The message stays for the next buffer.
                self.bad_chains += 1;
                self.ring.add_used(head, 0)?;
            }
            batch.note_completed();
        }
        Ok(())
    }
}

impl QueueWorker for ControlRxWorker {
    fn drain(&mut self, batch: &mut IoBatch) -> Result<usize, QueueFault> {
        self.nudge.arm(batch);
        let popped = self.ring.pop_heads_onto(&mut self.buffers)?;
        self.deliver(batch)?;
        Ok(popped)
    }

    fn complete(&mut self, _tag: u64, result: i32, batch: &mut IoBatch) -> Result<(), QueueFault> {
        if self.nudge.fired(result) {
            self.nudge.arm(batch);
            self.deliver(batch)?;
        }
        Ok(())
    }

    fn in_flight(&self) -> usize {
        0
    }

    fn counters(&self) -> Vec<(&'static str, u64)> {
        vec![
            ("messages_to_driver", self.delivered),
            ("bad_chains", self.bad_chains),
        ]
    }

    forward_to_ring!();
}

/// Reads the driver's messages (control transmit queue) and acts on them.
pub struct ControlTxWorker {
    ring: QueueRing,
    hub: SharedHub,
    layout: ChainLayout,
    heads: Vec<u16>,
    received: u64,
}

impl ControlTxWorker {
    pub(crate) fn new(index: u16, queue: Queue, mem: GuestMemory, hub: SharedHub) -> Self {
        Self {
            ring: QueueRing::new(index, queue, mem),
            hub,
            layout: ChainLayout::with_capacity(CONTROL_CHAIN_DESCRIPTORS),
            heads: Vec::new(),
            received: 0,
        }
    }
}

impl QueueWorker for ControlTxWorker {
    fn drain(&mut self, batch: &mut IoBatch) -> Result<usize, QueueFault> {
        self.heads.clear();
        self.ring.pop_heads(&mut self.heads)?;
        for i in 0..self.heads.len() {
            let head = self.heads[i];
            let mut header = [0u8; CONTROL_HEADER_LEN];
            let parsed = self
                .ring
                .walk(head, &mut self.layout)
                .and_then(|()| read_stream(self.ring.mem(), &self.layout.readable, 0, &mut header));
            let mut hub = lock(&self.hub);
            match parsed {
                Ok(()) => {
                    self.received += 1;
                    hub.handle_driver_message(ControlMessage::parse(&header));
                }
                Err(_) => hub.bad_control += 1,
            }
            drop(hub);
            self.ring.add_used(head, 0)?;
            batch.note_completed();
        }
        Ok(self.heads.len())
    }

    fn complete(
        &mut self,
        _tag: u64,
        _result: i32,
        _batch: &mut IoBatch,
    ) -> Result<(), QueueFault> {
        Ok(())
    }

    fn in_flight(&self) -> usize {
        0
    }

    fn counters(&self) -> Vec<(&'static str, u64)> {
        vec![
            ("messages_handle_driver_message", self.received),
            ("bad_messages", lock(&self.hub).bad_control),
        ]
    }

    forward_to_ring!();
}
