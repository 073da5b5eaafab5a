//! The virtio-scsi side of the rig: command requests (LUN + CDB, data-out, response,
//! data-in) on the request queues.

use ringvisor_devices::virtio::scsi::protocol::{
    DEFAULT_CDB_SIZE, DEFAULT_SENSE_SIZE, FIRST_REQUEST_QUEUE,
};
use ringvisor_devices::virtio::scsi::{ScsiConfig, ScsiDevice};
use vm_memory::{Address, Bytes, GuestAddress};

use super::{GuestQueue, Result, Rig};
use crate::virtq_driver::Buffer;

/// `virtio_scsi_req_cmd` up to the data: lun, id, task attributes, the 32-byte CDB.
const REQUEST_LEN: u32 = 19 + DEFAULT_CDB_SIZE;
/// `virtio_scsi_resp_cmd` with the 96-byte sense buffer.
const RESPONSE_LEN: u32 = 12 + DEFAULT_SENSE_SIZE;

/// A virtio-scsi controller on the reactors.
pub type ScsiRig = Rig<ScsiDevice>;

/// What came back for one command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScsiAnswer {
    pub used_len: u32,
    /// The virtio-scsi response code (0: the command reached a logical unit).
    pub response: u8,
    /// The SCSI status (0 GOOD, 2 CHECK CONDITION).
    pub status: u8,
    pub sense: Vec<u8>,
    pub residual: u32,
    /// The data-in bytes the device wrote.
    pub data: Vec<u8>,
}

impl ScsiAnswer {
    /// The sense key and additional sense code, when there is sense data.
    pub fn sense_code(&self) -> Option<(u8, u8)> {
        Some((self.sense.get(2)? & 0x0f, *self.sense.get(12)?))
    }
}

/// A command in the avail ring, and where its answer will be.
#[derive(Debug, Clone, Copy)]
pub struct PostedCommand {
    pub head: u16,
    response: GuestAddress,
    data_in: GuestAddress,
}

/// Request and response headers of one command, reused from command to command.
#[derive(Debug, Clone, Copy)]
pub struct CommandSlot {
    pub request: GuestAddress,
    pub response: GuestAddress,
}

/// `virtio_scsi_req_cmd` up to the data for `target`/`lun` and `cdb`.
fn request_header(target: u8, lun: u16, cdb: &[u8]) -> [u8; REQUEST_LEN as usize] {
    let mut request = [0u8; REQUEST_LEN as usize];
    request[..4].copy_from_slice(&[1, target, 0x40 | (lun >> 8) as u8, lun as u8]);
    let cdb_len = cdb.len().min(DEFAULT_CDB_SIZE as usize);
    request[19..19 + cdb_len].copy_from_slice(&cdb[..cdb_len]);
    request
}

impl GuestQueue {
    /// Takes a request and a response header from scratch memory.
    pub fn alloc_command_slot(&mut self) -> Result<CommandSlot> {
        Ok(CommandSlot {
            request: self.alloc(u64::from(REQUEST_LEN))?,
            response: self.alloc(u64::from(RESPONSE_LEN))?,
        })
    }

    /// Adds a READ(16) of `blocks` 512-byte blocks at `lba` into `data`, headers at
    /// `slot`. Returns the head descriptor.
    pub fn post_read(
        &mut self,
        slot: CommandSlot,
        target: u8,
        lun: u16,
        lba: u64,
        blocks: u32,
        data: Buffer,
    ) -> Result<u16> {
        let mut cdb = [0u8; 16];
        cdb[0] = 0x88;
        cdb[2..10].copy_from_slice(&lba.to_be_bytes());
        cdb[10..14].copy_from_slice(&blocks.to_be_bytes());
        self.mem
            .write_slice(&request_header(target, lun, &cdb), slot.request)?;
        // Response and status read as "not answered" until the device writes them.
        self.mem.write_slice(&[0xff; 12], slot.response)?;
        self.post_chain(&[
            Buffer::readable(slot.request, REQUEST_LEN),
            Buffer::writable(slot.response, RESPONSE_LEN),
            data,
        ])
    }

    /// The (virtio response, SCSI status) the device wrote at `slot`.
    pub fn command_status(&self, slot: CommandSlot) -> Result<(u8, u8)> {
        let mut fields = [0u8; 2];
        self.mem
            .read_slice(&mut fields, slot.response.unchecked_add(10))?;
        Ok((fields[1], fields[0]))
    }

    /// Adds a command for `target`/`lun` with `data_out` and `data_in` bytes of room,
    /// headers and buffers from scratch memory.
    pub fn post_command(
        &mut self,
        target: u8,
        lun: u16,
        cdb: &[u8],
        data_out: &[u8],
        data_in: u32,
    ) -> Result<PostedCommand> {
        let request = request_header(target, lun, cdb);
        let request_at = self.alloc(u64::from(REQUEST_LEN))?;
        self.mem.write_slice(&request, request_at)?;
        let mut chain = vec![Buffer::readable(request_at, REQUEST_LEN)];
        if !data_out.is_empty() {
            let at = self.alloc(data_out.len() as u64)?;
            self.mem.write_slice(data_out, at)?;
            chain.push(Buffer::readable(at, data_out.len() as u32));
        }
        let response = self.alloc(u64::from(RESPONSE_LEN))?;
        self.mem
            .write_slice(&[0xee; RESPONSE_LEN as usize], response)?;
        chain.push(Buffer::writable(response, RESPONSE_LEN));
        let data_in_at = self.alloc(u64::from(data_in.max(1)))?;
        if data_in > 0 {
            chain.push(Buffer::writable(data_in_at, data_in));
        }
        let head = self.post_chain(&chain)?;
        Ok(PostedCommand {
            head,
            response,
            data_in: data_in_at,
        })
    }

    /// Reads the answer of `posted`, whose used entry said `used_len`.
    pub fn answer(&self, posted: &PostedCommand, used_len: u32) -> Result<ScsiAnswer> {
        let mut response = [0u8; RESPONSE_LEN as usize];
        self.mem.read_slice(&mut response, posted.response)?;
        let word = |at: usize| {
            u32::from_le_bytes([
                response[at],
                response[at + 1],
                response[at + 2],
                response[at + 3],
            ])
        };
        let sense_len = (word(0) as usize).min(DEFAULT_SENSE_SIZE as usize);
        let mut data = vec![0u8; used_len.saturating_sub(RESPONSE_LEN) as usize];
        self.mem.read_slice(&mut data, posted.data_in)?;
        Ok(ScsiAnswer {
            used_len,
            response: response[11],
            status: response[10],
            sense: response[12..12 + sense_len].to_vec(),
            residual: word(4),
            data,
        })
    }
}

impl Rig<ScsiDevice> {
    /// Opens every disk of `config` and serves the controller's queues on one reactor per
    /// entry of `reactor_cores`.
    pub fn scsi(
        config: ScsiConfig,
        reactor_cores: &[Option<usize>],
        queue_size: u16,
    ) -> Result<Self> {
        Self::scsi_with_polling(config, reactor_cores, queue_size, None)
    }

    /// As [`scsi`](Self::scsi), with the reactors' adaptive polling budget (`--poll-us`).
    pub fn scsi_with_polling(
        config: ScsiConfig,
        reactor_cores: &[Option<usize>],
        queue_size: u16,
        poll: Option<std::time::Duration>,
    ) -> Result<Self> {
        let device = ScsiDevice::new(config)?;
        Rig::with_device(device, "scsi", reactor_cores, queue_size, poll)
    }

    /// The rig queue index of request queue `n` (after the control and event queues).
    pub fn request_queue(n: usize) -> usize {
        usize::from(FIRST_REQUEST_QUEUE) + n
    }

    /// Sends one command on request queue `n`, waits for it, frees the scratch memory.
    pub fn command(
        &mut self,
        n: usize,
        target: u8,
        lun: u16,
        cdb: &[u8],
        data_out: &[u8],
        data_in: u32,
    ) -> Result<ScsiAnswer> {
        let queue = Self::request_queue(n);
        let posted = self
            .queue(queue)?
            .post_command(target, lun, cdb, data_out, data_in)?;
        self.kick(queue)?;
        let used = self.wait_used(queue, 1)?;
        let q = self.queue(queue)?;
        let answer = q.answer(&posted, used.first().map_or(0, |&(_, len)| len));
        q.reset_scratch();
        answer
    }
}
