//! The control queue (task management and asynchronous notification, virtio 1.2 5.6.6.2)
//! and the event queue.
//!
//! Task management completes once every request it concerns has completed (the spec
//! requires those used entries before the TMF's): requests cannot be pulled back from
//! io_uring on another reactor, so ABORT TASK, ABORT TASK SET, CLEAR TASK SET and
//! LOGICAL UNIT RESET wait for the unit's requests in flight, I_T NEXUS RESET for every
//! unit of the target, checking again every [`RECHECK_NANOS`] through a reactor delay.
//! Requests are not tracked by tag across queues, so ABORT TASK waits for all of the
//! unit's requests and QUERY TASK answers for the unit as a whole.

use std::sync::Arc;

use log::debug;
use ringvisor_io::{IoBatch, IoOp, QueueFault, QueueWorker};
use virtio_queue::Queue;
use vm_memory::Bytes;

use super::protocol::{
    response, tmf, LunAddress, AN_REQUEST_LEN, AN_RESPONSE_LEN, TMF_REQUEST_LEN, T_AN_QUERY,
    T_AN_SUBSCRIBE, T_TMF,
};
use super::target::{Lookup, Luns};
use crate::virtio::chain::{read_stream, write_stream, ChainLayout, MAX_CHAIN_DESCRIPTORS};
use crate::virtio::queue_ring::{forward_to_ring, serve_popped, InFlightTable, QueueRing};
use crate::virtio::GuestMemory;

/// How often a waiting task-management function checks again.
pub const RECHECK_NANOS: u64 = 50_000;

/// Counters of the control queue.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ScsiControlStats {
    pub task_management: u64,
    pub notification_queries: u64,
    /// Requests too short or of an unknown type.
    pub malformed: u64,
}

/// Which units a waiting function waits for.
#[derive(Debug, Clone, Copy)]
enum Scope {
    Unit(LunAddress),
    Target(u16),
}

struct Waiting {
    head: u16,
    scope: Scope,
    layout_response: vm_memory::GuestAddress,
}

pub struct ScsiControlWorker {
    ring: QueueRing,
    luns: Arc<Luns>,
    layout: ChainLayout,
    heads: Vec<u16>,
    waiting: InFlightTable<Waiting>,
    finished_now: bool,
    stats: ScsiControlStats,
}

impl ScsiControlWorker {
    pub(crate) fn new(index: u16, queue: Queue, mem: GuestMemory, luns: Arc<Luns>) -> Self {
        Self {
            ring: QueueRing::new(index, queue, mem),
            luns,
            layout: ChainLayout::with_capacity(MAX_CHAIN_DESCRIPTORS),
            heads: Vec::new(),
            waiting: InFlightTable::default(),
            finished_now: false,
            stats: ScsiControlStats::default(),
        }
    }

    pub fn stats(&self) -> ScsiControlStats {
        self.stats
    }

    fn busy(&self, scope: Scope) -> bool {
        match scope {
            Scope::Unit(address) => match self.luns.lookup(address) {
                Lookup::Unit(unit) => unit.in_flight() > 0,
                _ => false,
            },
            Scope::Target(target) => self
                .luns
                .target(target)
                .is_some_and(|luns| luns.values().any(|unit| unit.in_flight() > 0)),
        }
    }

    fn answer(
        &mut self,
        head: u16,
        at: vm_memory::GuestAddress,
        bytes: &[u8],
    ) -> Result<(), QueueFault> {
        self.finished_now = true;
        let written = match self.ring.mem().write_slice(bytes, at) {
            Ok(()) => bytes.len() as u32,
            Err(_) => 0,
        };
        self.ring.add_used(head, written)
    }

    fn start_request(&mut self, head: u16, batch: &mut IoBatch) -> Result<(), QueueFault> {
        let mem = self.ring.mem().clone();
        let walked = self.ring.walk(head, &mut self.layout);
        let mut kind = [0u8; 4];
        if walked.is_err() || read_stream(&mem, &self.layout.readable, 0, &mut kind).is_err() {
            return self.malformed(head);
        }
        match u32::from_le_bytes(kind) {
            T_TMF => self.task_management(head, batch),
            T_AN_QUERY | T_AN_SUBSCRIBE => {
                if self.layout.readable_len() < AN_REQUEST_LEN
                    || self.layout.writable_len() < AN_RESPONSE_LEN
                {
                    return self.malformed(head);
                }
                self.stats.notification_queries += 1;
                // No asynchronous event is supported: event_actual 0, response OK.
                let mut reply = [0u8; AN_RESPONSE_LEN as usize];
                reply[4] = response::OK;
                self.finished_now = true;
                let written = match write_stream(&mem, &self.layout.writable, 0, &reply) {
                    Ok(()) => AN_RESPONSE_LEN as u32,
                    Err(_) => 0,
                };
                self.ring.add_used(head, written)
            }
            other => {
                debug!("virtio-scsi control: unknown request type {other}");
                self.malformed(head)
            }
        }
    }

    fn malformed(&mut self, head: u16) -> Result<(), QueueFault> {
        self.stats.malformed += 1;
        self.finished_now = true;
        self.ring.add_used(head, 0)
    }

    fn task_management(&mut self, head: u16, batch: &mut IoBatch) -> Result<(), QueueFault> {
        let mem = self.ring.mem().clone();
        let mut req = [0u8; TMF_REQUEST_LEN as usize];
        if self.layout.writable_len() < 1
            || read_stream(&mem, &self.layout.readable, 0, &mut req).is_err()
        {
            return self.malformed(head);
        }
        // The response byte: the first writable byte.
        let Some(at) = crate::virtio::chain::pieces(&self.layout.writable, 0, 1).next() else {
            return self.malformed(head);
        };
        let at = at.addr;
        self.stats.task_management += 1;
        let subtype = u32::from_le_bytes([req[4], req[5], req[6], req[7]]);
        let mut raw_lun = [0u8; 8];
        raw_lun.copy_from_slice(&req[8..16]);
        let Some(address) = LunAddress::decode(&raw_lun) else {
            return self.answer(head, at, &[response::BAD_TARGET]);
        };
        let unit_exists = match self.luns.lookup(address) {
            Lookup::NoTarget => return self.answer(head, at, &[response::BAD_TARGET]),
            Lookup::NoLun(_) => false,
            Lookup::Unit(_) => true,
        };
        let scope = match subtype {
            tmf::I_T_NEXUS_RESET => Scope::Target(address.target),
            _ if !unit_exists => return self.answer(head, at, &[response::INCORRECT_LUN]),
            tmf::ABORT_TASK
            | tmf::ABORT_TASK_SET
            | tmf::CLEAR_TASK_SET
            | tmf::LOGICAL_UNIT_RESET => Scope::Unit(address),
            tmf::QUERY_TASK | tmf::QUERY_TASK_SET => {
                let code = if self.busy(Scope::Unit(address)) {
                    response::FUNCTION_SUCCEEDED
                } else {
                    response::OK
                };
                return self.answer(head, at, &[code]);
            }
            // CLEAR ACA needs NACA, which the target does not support; unknown functions.
            _ => return self.answer(head, at, &[response::FUNCTION_REJECTED]),
        };
        if !self.busy(scope) {
            return self.answer(head, at, &[response::OK]);
        }
        let tag = self.waiting.insert(Waiting {
            head,
            scope,
            layout_response: at,
        });
        batch.push(
            tag,
            IoOp::Delay {
                nanos: RECHECK_NANOS,
            },
        );
        Ok(())
    }
}

impl QueueWorker for ScsiControlWorker {
    forward_to_ring!();

    fn drain(&mut self, batch: &mut IoBatch) -> Result<usize, QueueFault> {
        let result = serve_popped(
            self,
            |w| (&mut w.ring, &mut w.heads),
            |w, head| w.start_request(head, batch),
        );
        if std::mem::take(&mut self.finished_now) {
            batch.note_completed();
        }
        result
    }

    fn complete(&mut self, tag: u64, _result: i32, batch: &mut IoBatch) -> Result<(), QueueFault> {
        let Some(waiting) = self.waiting.get_mut(tag) else {
            return Ok(());
        };
        let scope = waiting.scope;
        if self.busy(scope) {
            batch.push(
                tag,
                IoOp::Delay {
                    nanos: RECHECK_NANOS,
                },
            );
            return Ok(());
        }
        let Some(waiting) = self.waiting.remove(tag) else {
            return Ok(());
        };
        self.answer(waiting.head, waiting.layout_response, &[response::OK])
    }

    fn in_flight(&self) -> usize {
        self.waiting.len()
    }
}

/// The event queue: the driver posts buffers for events; ringvisor reports none (no hot
/// plug, no parameter changes), so the buffers stay with the device until reset.
pub struct ScsiEventWorker;

impl QueueWorker for ScsiEventWorker {
    fn drain(&mut self, _batch: &mut IoBatch) -> Result<usize, QueueFault> {
        Ok(0)
    }

    fn complete(
        &mut self,
        _tag: u64,
        _result: i32,
        _batch: &mut IoBatch,
    ) -> Result<(), QueueFault> {
        Ok(())
    }

    fn needs_interrupt(&mut self) -> Result<bool, QueueFault> {
        Ok(false)
    }

    fn disable_notification(&mut self) -> Result<(), QueueFault> {
        Ok(())
    }

    // Posted buffers are kept, not drained: never ask the reactor to drain again.
    fn enable_notification(&mut self) -> Result<bool, QueueFault> {
        Ok(false)
    }

    fn in_flight(&self) -> usize {
        0
    }

    fn has_available(&mut self) -> Result<bool, QueueFault> {
        Ok(false)
    }
}
