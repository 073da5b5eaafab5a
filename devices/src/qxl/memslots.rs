//! QXL memory slots: the guest names device memory with QXLPHYSICAL addresses (slot id
//! and generation in the top 16 bits, an offset below) after registering each slot's
//! guest-physical range with MEMSLOT_ADD. Every address is checked against its slot and
//! resolved to the BAR or guest RAM behind it, so a command never reaches outside them.

use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend as _};

use super::bar::BarMemory;
use super::draw::{DrawError, QxlReader};
use super::layout::{SLOTS_END, SLOT_GENERATION, SLOT_GEN_BITS, SLOT_ID_BITS};
use crate::virtio::GuestMemory;

const OFFSET_BITS: u32 = 64 - SLOT_ID_BITS as u32 - SLOT_GEN_BITS as u32;
const OFFSET_MASK: u64 = (1 << OFFSET_BITS) - 1;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SlotError {
    #[error("memslot {0} does not exist (slots go up to {SLOTS_END})")]
    BadId(u32),
    #[error("memslot range {start:#x}..{end:#x} is empty or inverted")]
    Inverted { start: u64, end: u64 },
    #[error(
        "memslot range {start:#x}..{end:#x} is not inside the RAM BAR, the VRAM BAR or guest RAM"
    )]
    Unbacked { start: u64, end: u64 },
}

/// What a slot's guest-physical range is backed by, resolved when it is added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backing {
    /// Offset into the RAM BAR (BAR0).
    Ram(u64),
    /// Offset into the VRAM BAR (BAR1).
    Vram(u64),
    /// Guest-physical address in guest RAM.
    Guest(u64),
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    backing: Backing,
    len: u64,
}

/// Where the two memory BARs are decoded now (None: not decoded).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BarPlacement {
    pub ram: Option<u64>,
    pub vram: Option<u64>,
}

#[derive(Debug, Default)]
pub struct MemSlots {
    slots: [Option<Slot>; SLOTS_END as usize],
}

fn inside(base: Option<u64>, size: u64, start: u64, end: u64) -> Option<u64> {
    let base = base?;
    (start >= base && end <= base.checked_add(size)?).then(|| start - base)
}

impl MemSlots {
    /// MEMSLOT_ADD: `[start, end)` as the guest wrote it in the RAM header, resolved
    /// against the three places a slot may point into.
    #[allow(clippy::too_many_arguments)]
    pub fn add(
        &mut self,
        id: u32,
        start: u64,
        end: u64,
        bars: BarPlacement,
        ram: &BarMemory,
        vram: &BarMemory,
        guest: &GuestMemory,
    ) -> Result<(), SlotError> {
        let slot = self
            .slots
            .get_mut(id as usize)
            .ok_or(SlotError::BadId(id))?;
        if end <= start {
            return Err(SlotError::Inverted { start, end });
        }
        let len = end - start;
        let backing = if let Some(offset) = inside(bars.ram, ram.size(), start, end) {
            Backing::Ram(offset)
        } else if let Some(offset) = inside(bars.vram, vram.size(), start, end) {
            Backing::Vram(offset)
        } else if guest.check_range(GuestAddress(start), len as usize) {
            Backing::Guest(start)
        } else {
            return Err(SlotError::Unbacked { start, end });
        };
        *slot = Some(Slot { backing, len });
        Ok(())
    }

    pub fn remove(&mut self, id: u32) -> Result<(), SlotError> {
        let slot = self
            .slots
            .get_mut(id as usize)
            .ok_or(SlotError::BadId(id))?;
        *slot = None;
        Ok(())
    }

    pub fn clear(&mut self) {
        self.slots = Default::default();
    }

    /// The backing of `[addr, addr + len)`, which must lie inside one live slot of the
    /// current generation.
    fn resolve(&self, addr: u64, len: u64) -> Option<Backing> {
        let id = (addr >> (64 - SLOT_ID_BITS as u32)) as usize;
        let generation = ((addr >> OFFSET_BITS) & ((1 << SLOT_GEN_BITS) - 1)) as u8;
        let offset = addr & OFFSET_MASK;
        let slot = (*self.slots.get(id)?)?;
        if generation != SLOT_GENERATION || offset.checked_add(len)? > slot.len {
            return None;
        }
        Some(match slot.backing {
            Backing::Ram(base) => Backing::Ram(base + offset),
            Backing::Vram(base) => Backing::Vram(base + offset),
            Backing::Guest(base) => Backing::Guest(base + offset),
        })
    }
}

/// Guest memory as QXL commands address it: the slots plus what backs them.
pub struct QxlMemory<'a> {
    pub slots: &'a MemSlots,
    pub ram: &'a BarMemory,
    pub vram: &'a BarMemory,
    pub guest: &'a GuestMemory,
}

impl QxlMemory<'_> {
    /// Writes `buf` at QXL address `addr`; false when it is not inside one slot.
    pub fn write(&self, addr: u64, buf: &[u8]) -> bool {
        match self.slots.resolve(addr, buf.len() as u64) {
            Some(Backing::Ram(offset)) => self.ram.write(offset, buf),
            Some(Backing::Vram(offset)) => self.vram.write(offset, buf),
            Some(Backing::Guest(gpa)) => self.guest.write_slice(buf, GuestAddress(gpa)).is_ok(),
            None => false,
        }
    }

    pub fn read_u64(&self, addr: u64) -> Option<u64> {
        let mut bytes = [0u8; 8];
        self.read(addr, &mut bytes).ok()?;
        Some(u64::from_le_bytes(bytes))
    }

    /// Whether `len` bytes at `addr` are inside one slot.
    pub fn covers(&self, addr: u64, len: u64) -> bool {
        self.slots.resolve(addr, len).is_some()
    }
}

impl QxlReader for QxlMemory<'_> {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), DrawError> {
        let ok = match self.slots.resolve(addr, buf.len() as u64) {
            Some(Backing::Ram(offset)) => self.ram.read(offset, buf),
            Some(Backing::Vram(offset)) => self.vram.read(offset, buf),
            Some(Backing::Guest(gpa)) => self.guest.read_slice(buf, GuestAddress(gpa)).is_ok(),
            None => false,
        };
        if ok {
            Ok(())
        } else {
            Err(DrawError::OutOfRange {
                addr,
                len: buf.len() as u64,
            })
        }
    }
}

/// The QXL address of `offset` in slot `id` (what the guest driver computes).
pub fn qxl_address(id: u8, offset: u64) -> u64 {
    (u64::from(id) << (64 - SLOT_ID_BITS as u32))
        | (u64::from(SLOT_GENERATION) << OFFSET_BITS)
        | (offset & OFFSET_MASK)
}
