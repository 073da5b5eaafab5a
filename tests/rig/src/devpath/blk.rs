//! The virtio-blk side of the rig: requests with a header and a status byte.

use ringvisor_devices::virtio::block::{BlockConfig, BlockDevice};
use vm_memory::{Bytes, GuestAddress};

use super::{DevPathError, GuestQueue, Result, Rig};
use crate::virtq_driver::Buffer;
use ringvisor::memory::MemoryOptions;

/// virtio-blk request types (virtio 1.2, 5.2.6).
pub const VIRTIO_BLK_T_IN: u32 = 0;
pub const VIRTIO_BLK_T_OUT: u32 = 1;
pub const VIRTIO_BLK_T_FLUSH: u32 = 4;
pub const VIRTIO_BLK_T_GET_ID: u32 = 8;
pub const VIRTIO_BLK_T_DISCARD: u32 = 11;
pub const VIRTIO_BLK_T_WRITE_ZEROES: u32 = 13;
/// virtio-blk status bytes.
pub const VIRTIO_BLK_S_OK: u8 = 0;
pub const VIRTIO_BLK_S_IOERR: u8 = 1;
pub const VIRTIO_BLK_S_UNSUPP: u8 = 2;

/// The request header: type, reserved, sector.
const HEADER_LEN: u32 = 16;

/// A virtio-blk device on the reactors.
pub type BlockRig = Rig<BlockDevice>;

/// What the device answered to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Completion {
    /// The status byte the device wrote.
    pub status: u8,
    /// The length of the used entry: bytes the device wrote, status byte included.
    pub used_len: u32,
}

/// Guest addresses of one request's header and status byte.
#[derive(Debug, Clone, Copy)]
pub struct RequestSlot {
    pub header: GuestAddress,
    pub status: GuestAddress,
}

/// A request that is in the avail ring.
#[derive(Debug, Clone, Copy)]
pub struct Posted {
    /// Head descriptor: the id its used entry comes back with.
    pub head: u16,
    pub status: GuestAddress,
}

impl GuestQueue {
    /// Takes a header and a status byte from scratch memory.
    pub fn alloc_slot(&mut self) -> Result<RequestSlot> {
        Ok(RequestSlot {
            header: self.alloc(u64::from(HEADER_LEN))?,
            status: self.alloc(1)?,
        })
    }

    /// Adds a request whose header and status byte live at `slot`: header, then `data`,
    /// then the status byte (set to 0xff until the device writes it). Not visible to the
    /// device before [`kick`](Self::kick). Returns the head descriptor.
    pub fn post_in(
        &mut self,
        slot: RequestSlot,
        kind: u32,
        sector: u64,
        data: &[Buffer],
    ) -> Result<u16> {
        let mut header = [0u8; HEADER_LEN as usize];
        header[..4].copy_from_slice(&kind.to_le_bytes());
        header[8..].copy_from_slice(&sector.to_le_bytes());
        self.mem.write_slice(&header, slot.header)?;
        self.mem.write_obj(0xffu8, slot.status)?;
        let mut chain = Vec::with_capacity(data.len() + 2);
        chain.push(Buffer::readable(slot.header, HEADER_LEN));
        chain.extend_from_slice(data);
        chain.push(Buffer::writable(slot.status, 1));
        Ok(self.driver.add_chain(&chain)?)
    }

    /// Like [`post_in`](Self::post_in), with the header and status from scratch memory.
    pub fn post(&mut self, kind: u32, sector: u64, data: &[Buffer]) -> Result<Posted> {
        let slot = self.alloc_slot()?;
        let head = self.post_in(slot, kind, sector, data)?;
        Ok(Posted {
            head,
            status: slot.status,
        })
    }

    /// Reads the status byte the device wrote at `status`.
    pub fn status(&self, status: GuestAddress) -> Result<u8> {
        Ok(self.mem.read_obj(status)?)
    }
}

impl Rig<BlockDevice> {
    /// Opens the disk, starts one reactor per entry of `reactor_cores` (`None`: not
    /// pinned), lays out `config.queues` queues of `queue_size` entries in fresh guest
    /// memory and activates the device with every feature it offers.
    pub fn new(
        config: BlockConfig,
        reactor_cores: &[Option<usize>],
        queue_size: u16,
    ) -> Result<Self> {
        Self::with_polling(config, reactor_cores, queue_size, None)
    }

    /// As [`new`](Self::new), with the reactors' adaptive polling budget (`--poll-us`).
    pub fn with_polling(
        config: BlockConfig,
        reactor_cores: &[Option<usize>],
        queue_size: u16,
        poll: Option<std::time::Duration>,
    ) -> Result<Self> {
        let reactor = ringvisor_io::ReactorOptions {
            poll,
            ..Default::default()
        };
        Self::with_options(
            config,
            reactor_cores,
            queue_size,
            &reactor,
            &MemoryOptions::default(),
        )
    }

    /// As [`with_polling`](Self::with_polling), the reactors started with `reactor`
    /// (polling, submit batch) and guest memory backed as `memory` says.
    pub fn with_options(
        config: BlockConfig,
        reactor_cores: &[Option<usize>],
        queue_size: u16,
        reactor: &ringvisor_io::ReactorOptions,
        memory: &MemoryOptions,
    ) -> Result<Self> {
        Rig::with_device_options(
            BlockDevice::new(config)?,
            "blk",
            reactor_cores,
            queue_size,
            reactor,
            memory,
        )
    }

    /// As [`new`](Self::new), the reactors started with `reactor` (polling, io-wq
    /// limits).
    pub fn with_reactor_options(
        config: BlockConfig,
        reactor_cores: &[Option<usize>],
        queue_size: u16,
        reactor: &ringvisor_io::ReactorOptions,
    ) -> Result<Self> {
        Self::with_options(
            config,
            reactor_cores,
            queue_size,
            reactor,
            &MemoryOptions::default(),
        )
    }

    /// Posts a request with header and status from scratch memory; returns the status
    /// address.
    pub fn post(
        &mut self,
        queue: usize,
        kind: u32,
        sector: u64,
        data: &[Buffer],
    ) -> Result<GuestAddress> {
        Ok(self.queue(queue)?.post(kind, sector, data)?.status)
    }

    /// Posts one request, kicks, waits for it and frees the queue's scratch memory.
    pub fn roundtrip(
        &mut self,
        queue: usize,
        kind: u32,
        sector: u64,
        data: &[Buffer],
    ) -> Result<Completion> {
        let status = self.post(queue, kind, sector, data)?;
        self.kick(queue)?;
        let used = self.wait_used(queue, 1)?;
        let q = self.queue(queue)?;
        q.reset_scratch();
        Ok(Completion {
            status: q.status(status)?,
            used_len: used.first().map_or(0, |&(_, len)| len),
        })
    }

    /// Writes `bytes` at `sector` in one data buffer.
    pub fn write(&mut self, queue: usize, sector: u64, bytes: &[u8]) -> Result<Completion> {
        let len = u32::try_from(bytes.len()).map_err(|_| DevPathError::ScratchExhausted {
            queue,
            want: bytes.len() as u64,
        })?;
        let buf = self.queue(queue)?.alloc(u64::from(len))?;
        self.mem.write_slice(bytes, buf)?;
        self.roundtrip(
            queue,
            VIRTIO_BLK_T_OUT,
            sector,
            &[Buffer::readable(buf, len)],
        )
    }

    /// Reads `len` bytes at `sector` into one data buffer; returns what came back.
    pub fn read(&mut self, queue: usize, sector: u64, len: u32) -> Result<(Completion, Vec<u8>)> {
        let buf = self.queue(queue)?.alloc(u64::from(len))?;
        let completion = self.roundtrip(
            queue,
            VIRTIO_BLK_T_IN,
            sector,
            &[Buffer::writable(buf, len)],
        )?;
        let mut data = vec![0; len as usize];
        self.mem.read_slice(&mut data, buf)?;
        Ok((completion, data))
    }
}
