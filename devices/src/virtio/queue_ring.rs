//! The device side of one split virtqueue as every queue worker uses it: popping chains,
//! adding used entries, deciding interrupts and notifications, and the table of requests
//! waiting for host I/O.

use std::collections::VecDeque;
use std::fmt::Display;
use std::sync::atomic::Ordering;

use ringvisor_io::QueueFault;
use virtio_bindings::virtio_ring::VRING_AVAIL_F_NO_INTERRUPT;
use virtio_queue::{Queue, QueueOwnedT, QueueT};
use vm_memory::{Bytes, GuestAddress};

use super::chain::{walk_chain, ChainError, ChainLayout};
use super::GuestMemory;

/// The `QueueWorker` methods every ring-backed worker answers from its `ring` field:
/// interrupt decisions, notification suppression, available chains.
macro_rules! forward_to_ring {
    () => {
        fn needs_interrupt(&mut self) -> Result<bool, ringvisor_io::QueueFault> {
            self.ring.needs_interrupt()
        }

        fn disable_notification(&mut self) -> Result<(), ringvisor_io::QueueFault> {
            self.ring.disable_notification()
        }

        fn enable_notification(&mut self) -> Result<bool, ringvisor_io::QueueFault> {
            self.ring.enable_notification()
        }

        fn has_available(&mut self) -> Result<bool, ringvisor_io::QueueFault> {
            self.ring.has_available()
        }
    };
}
pub(crate) use forward_to_ring;

/// One activated queue and the guest memory its rings live in.
pub(crate) struct QueueRing {
    index: u16,
    queue: Queue,
    mem: GuestMemory,
    used_added: bool,
}

impl QueueRing {
    pub fn new(index: u16, queue: Queue, mem: GuestMemory) -> Self {
        Self {
            index,
            queue,
            mem,
            used_added: false,
        }
    }

    /// The queue's index in its device.
    pub fn index(&self) -> u16 {
        self.index
    }

    pub fn mem(&self) -> &GuestMemory {
        &self.mem
    }

    pub fn size(&self) -> u16 {
        self.queue.size()
    }

    pub fn desc_table(&self) -> GuestAddress {
        GuestAddress(self.queue.desc_table())
    }

    /// Walks the chain at `head` of this queue into `layout` (see [`walk_chain`]).
    pub fn walk(&self, head: u16, layout: &mut ChainLayout) -> Result<(), ChainError> {
        walk_chain(&self.mem, self.desc_table(), self.size(), head, layout)
    }

    pub fn fault(&self, reason: impl Display) -> QueueFault {
        QueueFault::Broken {
            queue: self.index,
            reason: reason.to_string(),
        }
    }

    /// Pops every available chain; appends their head indices to `heads`. A head the
    /// used ring could not name means the driver broke the ring.
    pub fn pop_heads(&mut self, heads: &mut Vec<u16>) -> Result<(), QueueFault> {
        self.pop_into(heads).map(drop)
    }

    /// As [`pop_heads`](Self::pop_heads), onto the back of a queue of heads waiting for
    /// the host (receive buffers, output waiting for a client); returns how many.
    pub fn pop_heads_onto(&mut self, waiting: &mut VecDeque<u16>) -> Result<usize, QueueFault> {
        self.pop_into(waiting)
    }

    fn pop_into(&mut self, heads: &mut impl Extend<u16>) -> Result<usize, QueueFault> {
        let size = self.queue.size();
        let mut popped = 0;
        let mut bad = None;
        match self.queue.iter(&self.mem) {
            Ok(chains) => heads.extend(chains.map(|chain| chain.head_index()).filter(|&head| {
                if head >= size {
                    bad.get_or_insert(head);
                    return false;
                }
                popped += 1;
                true
            })),
            Err(e) => return Err(self.fault(e)),
        }
        match bad {
            Some(head) => Err(self.fault(format!("available ring names descriptor {head}"))),
            None => Ok(popped),
        }
    }

    pub fn add_used(&mut self, head: u16, len: u32) -> Result<(), QueueFault> {
        self.queue
            .add_used(&self.mem, head, len)
            .map_err(|e| self.fault(format!("cannot add a used entry: {e}")))?;
        self.used_added = true;
        Ok(())
    }

    /// Whether the guest wants an interrupt for the used entries added since the last
    /// call (EVENT_IDX or VRING_AVAIL_F_NO_INTERRUPT honoured).
    pub fn needs_interrupt(&mut self) -> Result<bool, QueueFault> {
        if !std::mem::take(&mut self.used_added) {
            return Ok(false);
        }
        let wanted = self
            .queue
            .needs_notification(&self.mem)
            .map_err(|e| self.fault(e))?;
        if !wanted || self.queue.event_idx_enabled() {
            return Ok(wanted);
        }
        // virtio-queue ignores VRING_AVAIL_F_NO_INTERRUPT (spec 2.7.7.2); needs_notification
        // already fenced the used-ring writes before this read.
        let flags: u16 = self
            .mem
            .read_obj(GuestAddress(self.queue.avail_ring()))
            .map_err(|e| self.fault(format!("cannot read the avail flags: {e}")))?;
        Ok(u16::from_le(flags) & VRING_AVAIL_F_NO_INTERRUPT as u16 == 0)
    }

    pub fn disable_notification(&mut self) -> Result<(), QueueFault> {
        self.queue
            .disable_notification(&self.mem)
            .map_err(|e| self.fault(e))
    }

    /// Returns true when chains arrived while notifications were off.
    pub fn enable_notification(&mut self) -> Result<bool, QueueFault> {
        self.queue
            .enable_notification(&self.mem)
            .map_err(|e| self.fault(e))
    }

    /// Whether the guest posted chains not popped yet.
    pub fn has_available(&mut self) -> Result<bool, QueueFault> {
        let avail = self
            .queue
            .avail_idx(&self.mem, Ordering::Acquire)
            .map_err(|e| self.fault(e))?;
        Ok(avail.0 != self.queue.next_avail())
    }
}

/// Requests waiting for host I/O, keyed by the tag handed to the reactor: a slot index,
/// reused through a free list so the hot path does not allocate once the queue has warmed
/// up.
#[derive(Debug)]
pub(crate) struct InFlightTable<T> {
    slots: Vec<Option<T>>,
    free: Vec<usize>,
    len: usize,
}

impl<T> Default for InFlightTable<T> {
    fn default() -> Self {
        Self {
            slots: Vec::new(),
            free: Vec::new(),
            len: 0,
        }
    }
}

impl<T> InFlightTable<T> {
    pub fn insert(&mut self, request: T) -> u64 {
        self.len += 1;
        let index = match self.free.pop() {
            Some(index) => index,
            None => {
                self.slots.push(None);
                self.slots.len() - 1
            }
        };
        if let Some(slot) = self.slots.get_mut(index) {
            *slot = Some(request);
        }
        index as u64
    }

    pub fn get(&self, tag: u64) -> Option<&T> {
        self.slots.get(usize::try_from(tag).ok()?)?.as_ref()
    }

    pub fn get_mut(&mut self, tag: u64) -> Option<&mut T> {
        self.slots.get_mut(usize::try_from(tag).ok()?)?.as_mut()
    }

    pub fn remove(&mut self, tag: u64) -> Option<T> {
        let index = usize::try_from(tag).ok()?;
        let request = self.slots.get_mut(index)?.take()?;
        self.free.push(index);
        self.len -= 1;
        Some(request)
    }

    pub fn len(&self) -> usize {
        self.len
    }
}

/// Pops every available chain of a worker's queue and hands each head, in order, to
/// `serve`, stopping at the first fault; returns how many were popped. `parts` lends the
/// worker's ring and the scratch list of heads it keeps between drains (so popping does
/// not allocate).
pub(crate) fn serve_popped<W>(
    worker: &mut W,
    parts: fn(&mut W) -> (&mut QueueRing, &mut Vec<u16>),
    mut serve: impl FnMut(&mut W, u16) -> Result<(), QueueFault>,
) -> Result<usize, QueueFault> {
    let (ring, scratch) = parts(worker);
    let mut heads = std::mem::take(scratch);
    heads.clear();
    let result = ring
        .pop_heads(&mut heads)
        .and_then(|()| heads.iter().try_for_each(|&head| serve(worker, head)));
    let popped = heads.len();
    *parts(worker).1 = heads;
    result.map(|()| popped)
}
