//! The SPICE rings in the RAM header: the guest produces on the command and cursor rings,
//! the device on the release ring. Indices are free-running u32s shared with guest vCPUs.

use super::bar::BarMemory;
use super::layout::{
    COMMAND_SIZE, RELEASE_ITEM_SIZE, RELEASE_RING_SIZE, RING_CONS, RING_ITEMS, RING_NOTIFY_ON_CONS,
    RING_NOTIFY_ON_PROD, RING_NUM_ITEMS, RING_PROD,
};

/// The guest moved `prod` more than a ring's length past `cons`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("ring at {ring:#x}: prod {prod} is more than {size} past cons {cons}")]
pub struct RingOverrun {
    pub ring: u64,
    pub prod: u32,
    pub cons: u32,
    pub size: u32,
}

/// A ring at `offset` in the RAM BAR with `size` items (the device's own size: the
/// guest's `num_items` is never trusted).
#[derive(Debug, Clone, Copy)]
pub struct Ring {
    pub offset: u64,
    pub size: u32,
}

/// One command popped from the command or cursor ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingCommand {
    pub data: u64,
    pub kind: u32,
}

/// What popping did beside returning a command.
#[derive(Debug, Default, Clone, Copy)]
pub struct Popped {
    pub command: Option<RingCommand>,
    /// `cons` reached the guest's `notify_on_cons`: it waits for room.
    pub notify: bool,
}

impl Ring {
    fn word(&self, bar: &BarMemory, field: u64) -> u32 {
        bar.load_u32(self.offset + field).unwrap_or(0)
    }

    fn set_word(&self, bar: &BarMemory, field: u64, value: u32) {
        bar.store_u32(self.offset + field, value);
    }

    /// SPICE_RING_INIT, plus a zero first release item as QEMU leaves it.
    pub fn init(&self, bar: &BarMemory) {
        self.set_word(bar, RING_NUM_ITEMS, self.size);
        self.set_word(bar, RING_PROD, 0);
        self.set_word(bar, RING_CONS, 0);
        self.set_word(bar, RING_NOTIFY_ON_PROD, 1);
        self.set_word(bar, RING_NOTIFY_ON_CONS, 0);
    }

    fn pending(&self, bar: &BarMemory) -> Result<u32, RingOverrun> {
        let prod = self.word(bar, RING_PROD);
        let cons = self.word(bar, RING_CONS);
        let pending = prod.wrapping_sub(cons);
        if pending > self.size {
            return Err(RingOverrun {
                ring: self.offset,
                prod,
                cons,
                size: self.size,
            });
        }
        Ok(pending)
    }

    /// Whether the guest produced something not consumed yet.
    pub fn has_pending(&self, bar: &BarMemory) -> Result<bool, RingOverrun> {
        Ok(self.pending(bar)? > 0)
    }

    /// Consumer side: takes the next command, if any.
    pub fn pop(&self, bar: &BarMemory) -> Result<Popped, RingOverrun> {
        if self.pending(bar)? == 0 {
            return Ok(Popped::default());
        }
        let cons = self.word(bar, RING_CONS);
        let item = self.offset + RING_ITEMS + u64::from(cons % self.size) * COMMAND_SIZE;
        let data = bar.read_u64(item).unwrap_or(0);
        let kind = bar.read_u32(item + 8).unwrap_or(u32::MAX);
        let next = cons.wrapping_add(1);
        self.set_word(bar, RING_CONS, next);
        let notify = next == self.word(bar, RING_NOTIFY_ON_CONS);
        Ok(Popped {
            command: Some(RingCommand { data, kind }),
            notify,
        })
    }

    /// Consumer side, going idle: asks the guest to notify the next push (SPICE's
    /// CONS_WAIT). Returns true when something arrived meanwhile.
    pub fn arm_notify(&self, bar: &BarMemory) -> Result<bool, RingOverrun> {
        let cons = self.word(bar, RING_CONS);
        self.set_word(bar, RING_NOTIFY_ON_PROD, cons.wrapping_add(1));
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
        self.has_pending(bar)
    }

    /// Producer side (the release ring): pushes `value` when there is room. Returns
    /// None when full, else whether the guest asked to be told of this push.
    pub fn push(&self, bar: &BarMemory, value: u64) -> Option<bool> {
        debug_assert_eq!(self.size, RELEASE_RING_SIZE);
        let prod = self.word(bar, RING_PROD);
        let cons = self.word(bar, RING_CONS);
        if prod.wrapping_sub(cons) >= self.size {
            return None;
        }
        let item = self.offset + RING_ITEMS + u64::from(prod % self.size) * RELEASE_ITEM_SIZE;
        bar.write_u64(item, value);
        let next = prod.wrapping_add(1);
        self.set_word(bar, RING_PROD, next);
        Some(next == self.word(bar, RING_NOTIFY_ON_PROD))
    }
}
