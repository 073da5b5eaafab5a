//! A guest-side split-virtqueue driver living in the VMM process: it writes descriptors
//! and the avail ring into guest memory and reads the used ring back, exactly as a guest
//! driver would. Device-path tests and the device-path benchmark use it to drive the real
//! devices, reactors and io_uring without KVM.

use std::num::Wrapping;
use std::sync::atomic::{fence, Ordering};

use virtio_queue::{Queue, QueueT};
use vm_memory::{Address, Bytes, GuestAddress};

use ringvisor::memory::GuestMemory;

const DESC_SIZE: u64 = 16;
const VRING_DESC_F_NEXT: u16 = 1;
const VRING_DESC_F_WRITE: u16 = 2;

#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("queue size {0} is not a power of two in 1..=32768")]
    Size(u16),
    #[error("not enough free descriptors for a chain of {0}")]
    Full(usize),
    #[error("empty chain")]
    Empty,
    #[error("guest memory access failed: {0}")]
    Memory(#[from] vm_memory::GuestMemoryError),
}

/// One buffer of a chain: guest address, length, and whether the device writes it.
#[derive(Debug, Clone, Copy)]
pub struct Buffer {
    pub addr: GuestAddress,
    pub len: u32,
    pub device_writes: bool,
}

impl Buffer {
    pub fn readable(addr: GuestAddress, len: u32) -> Self {
        Self {
            addr,
            len,
            device_writes: false,
        }
    }

    pub fn writable(addr: GuestAddress, len: u32) -> Self {
        Self {
            addr,
            len,
            device_writes: true,
        }
    }
}

/// The driver side of one split virtqueue.
pub struct SplitQueueDriver {
    mem: GuestMemory,
    size: u16,
    desc_table: GuestAddress,
    avail_ring: GuestAddress,
    used_ring: GuestAddress,
    free: Vec<u16>,
    /// Descriptors of each in-flight chain, by head.
    chains: Vec<Vec<u16>>,
    avail_idx: Wrapping<u16>,
    last_used: Wrapping<u16>,
}

impl SplitQueueDriver {
    /// Bytes the rings of a `size`-entry queue take from `base` (descriptor table, avail
    /// ring, used ring, each aligned as the spec asks).
    pub fn footprint(size: u16) -> u64 {
        let size = u64::from(size);
        let avail = (DESC_SIZE * size).next_multiple_of(2);
        let used = (avail + 6 + 2 * size).next_multiple_of(4);
        used + 6 + 8 * size
    }

    /// Lays the rings out at `base` (16-byte aligned) and zeroes them.
    pub fn new(mem: GuestMemory, base: GuestAddress, size: u16) -> Result<Self, DriverError> {
        if size == 0 || !size.is_power_of_two() || size > 32768 {
            return Err(DriverError::Size(size));
        }
        let desc_table = GuestAddress(base.0.next_multiple_of(16));
        let avail_ring = desc_table.unchecked_add(DESC_SIZE * u64::from(size));
        let used_ring = GuestAddress(
            avail_ring
                .unchecked_add(6 + 2 * u64::from(size))
                .0
                .next_multiple_of(4),
        );
        let zeros = vec![0u8; Self::footprint(size) as usize];
        mem.write_slice(&zeros, desc_table)?;
        Ok(Self {
            mem,
            size,
            desc_table,
            avail_ring,
            used_ring,
            free: (0..size).rev().collect(),
            chains: vec![Vec::new(); usize::from(size)],
            avail_idx: Wrapping(0),
            last_used: Wrapping(0),
        })
    }

    /// Points a device-side queue at these rings and marks it ready, as a driver does
    /// through the transport's queue registers.
    pub fn configure(&self, queue: &mut Queue) {
        queue.set_size(self.size);
        let split = |addr: GuestAddress| (Some(addr.0 as u32), Some((addr.0 >> 32) as u32));
        let (lo, hi) = split(self.desc_table);
        queue.set_desc_table_address(lo, hi);
        let (lo, hi) = split(self.avail_ring);
        queue.set_avail_ring_address(lo, hi);
        let (lo, hi) = split(self.used_ring);
        queue.set_used_ring_address(lo, hi);
        queue.set_ready(true);
    }

    pub fn size(&self) -> u16 {
        self.size
    }

    pub fn free_descriptors(&self) -> usize {
        self.free.len()
    }

    /// Writes a chain and puts its head in the avail ring (not yet visible: see
    /// [`publish`](Self::publish)). Returns the head index.
    pub fn add_chain(&mut self, buffers: &[Buffer]) -> Result<u16, DriverError> {
        if buffers.is_empty() {
            return Err(DriverError::Empty);
        }
        if buffers.len() > self.free.len() {
            return Err(DriverError::Full(buffers.len()));
        }
        let start = self.free.len() - buffers.len();
        let indices: Vec<u16> = self.free.drain(start..).rev().collect();
        for (i, buffer) in buffers.iter().enumerate() {
            let mut flags = if buffer.device_writes {
                VRING_DESC_F_WRITE
            } else {
                0
            };
            let next = indices.get(i + 1).copied().unwrap_or(0);
            if i + 1 < buffers.len() {
                flags |= VRING_DESC_F_NEXT;
            }
            self.write_descriptor(indices[i], buffer.addr.0, buffer.len, flags, next)?;
        }
        let head = indices[0];
        self.chains[usize::from(head)] = indices;
        let slot = u64::from(self.avail_idx.0 % self.size);
        self.mem
            .write_obj(head, self.avail_ring.unchecked_add(4 + 2 * slot))?;
        self.avail_idx += 1;
        Ok(head)
    }

    /// Writes a raw descriptor: for tests that build broken chains on purpose.
    pub fn write_descriptor(
        &self,
        index: u16,
        addr: u64,
        len: u32,
        flags: u16,
        next: u16,
    ) -> Result<(), DriverError> {
        let at = self.desc_table.unchecked_add(DESC_SIZE * u64::from(index));
        self.mem.write_obj(addr, at)?;
        self.mem.write_obj(len, at.unchecked_add(8))?;
        self.mem.write_obj(flags, at.unchecked_add(12))?;
        self.mem.write_obj(next, at.unchecked_add(14))?;
        Ok(())
    }

    /// Makes every added chain visible to the device (the avail idx store, after a fence).
    pub fn publish(&mut self) -> Result<(), DriverError> {
        fence(Ordering::Release);
        self.mem
            .write_obj(self.avail_idx.0, self.avail_ring.unchecked_add(2))?;
        fence(Ordering::SeqCst);
        Ok(())
    }

    /// Pops the used entries the device wrote since the last call: (head, length).
    pub fn take_used(&mut self) -> Result<Vec<(u16, u32)>, DriverError> {
        let device_idx: u16 = self.mem.read_obj(self.used_ring.unchecked_add(2))?;
        fence(Ordering::Acquire);
        let mut used = Vec::new();
        while self.last_used.0 != device_idx {
            let slot = u64::from(self.last_used.0 % self.size);
            let at = self.used_ring.unchecked_add(4 + 8 * slot);
            let id: u32 = self.mem.read_obj(at)?;
            let len: u32 = self.mem.read_obj(at.unchecked_add(4))?;
            if let Some(chain) = self.chains.get_mut(id as usize) {
                self.free.append(chain);
            }
            used.push((id as u16, len));
            self.last_used += 1;
        }
        Ok(used)
    }

    /// Whether the device added used entries that [`take_used`](Self::take_used) has not
    /// popped yet.
    pub fn has_used(&self) -> Result<bool, DriverError> {
        let device_idx: u16 = self.mem.read_obj(self.used_ring.unchecked_add(2))?;
        Ok(device_idx != self.last_used.0)
    }

    /// With EVENT_IDX: asks for an interrupt only once the used index passes `idx`.
    pub fn set_used_event(&self, idx: u16) -> Result<(), DriverError> {
        let at = self.avail_ring.unchecked_add(4 + 2 * u64::from(self.size));
        self.mem.write_obj(idx, at)?;
        Ok(())
    }

    /// With EVENT_IDX: the avail index at which the device asked to be notified.
    pub fn avail_event(&self) -> Result<u16, DriverError> {
        let at = self.used_ring.unchecked_add(4 + 8 * u64::from(self.size));
        Ok(self.mem.read_obj(at)?)
    }

    /// The avail index the device sees: as of the last [`publish`](Self::publish).
    pub fn published_avail_idx(&self) -> Result<u16, DriverError> {
        Ok(self.mem.read_obj(self.avail_ring.unchecked_add(2))?)
    }

    /// The avail index of the chains added so far, published or not.
    pub fn avail_idx(&self) -> u16 {
        self.avail_idx.0
    }

    /// The used index the driver has consumed up to.
    pub fn last_used(&self) -> u16 {
        self.last_used.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chains_reach_a_device_queue_and_used_entries_come_back() {
        let mem = ringvisor::memory::allocate(ringvisor::memory::MIN_MEMORY_BYTES).unwrap();
        let mut driver = SplitQueueDriver::new(mem.clone(), GuestAddress(0x1_0000), 16).unwrap();
        let mut queue = Queue::new(16).unwrap();
        driver.configure(&mut queue);
        assert!(queue.is_valid(&mem));

        let head = driver
            .add_chain(&[
                Buffer::readable(GuestAddress(0x10_0000), 16),
                Buffer::writable(GuestAddress(0x10_1000), 512),
            ])
            .unwrap();
        assert_eq!(
            queue.pop_descriptor_chain(&mem).map(|c| c.head_index()),
            None
        );
        driver.publish().unwrap();

        let chain = queue.pop_descriptor_chain(&mem).unwrap();
        assert_eq!(chain.head_index(), head);
        let descriptors: Vec<_> = chain.collect();
        assert_eq!(descriptors.len(), 2);
        assert!(!descriptors[0].is_write_only() && descriptors[1].is_write_only());
        assert_eq!(descriptors[1].len(), 512);

        queue.add_used(&mem, head, 512).unwrap();
        assert_eq!(driver.take_used().unwrap(), vec![(head, 512)]);
        assert_eq!(driver.free_descriptors(), 16);
        assert!(driver.take_used().unwrap().is_empty());
    }

    #[test]
    fn bad_sizes_and_overfull_chains_are_refused() {
        let mem = ringvisor::memory::allocate(ringvisor::memory::MIN_MEMORY_BYTES).unwrap();
        assert!(SplitQueueDriver::new(mem.clone(), GuestAddress(0), 12).is_err());
        let mut driver = SplitQueueDriver::new(mem, GuestAddress(0), 2).unwrap();
        let buffer = Buffer::readable(GuestAddress(0x10_0000), 1);
        assert!(matches!(
            driver.add_chain(&[buffer; 3]),
            Err(DriverError::Full(3))
        ));
        assert!(matches!(driver.add_chain(&[]), Err(DriverError::Empty)));
    }
}
