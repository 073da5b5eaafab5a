//! One virtio-scsi command request: where its header, response, data-out and data-in
//! are in the chain, and how its response is written. Every value read here comes from
//! the guest, so nothing in this module may panic on it.

use vm_memory::Bytes;

use super::protocol::{LunAddress, CMD_HEADER_FIXED, MAX_CDB_SIZE, RESP_HEADER_FIXED};
use super::sense::{Sense, CHECK_CONDITION, GOOD};
use crate::virtio::chain::{pieces, read_stream, ChainError, ChainLayout, Segment};
use crate::virtio::GuestMemory;

/// Most pieces a response header may be split into; Linux uses one.
const RESPONSE_PIECES: usize = 4;

/// The CDB and sense sizes in force (the driver may rewrite them before DRIVER_OK).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    pub cdb_size: u32,
    pub sense_size: u32,
}

impl Geometry {
    pub fn request_len(&self) -> u64 {
        CMD_HEADER_FIXED + u64::from(self.cdb_size)
    }

    pub fn response_len(&self) -> u64 {
        RESP_HEADER_FIXED + u64::from(self.sense_size)
    }
}

/// Where a response header goes: the first `response_len` writable bytes.
#[derive(Debug, Clone, Copy)]
pub struct ResponseAt {
    pieces: [Segment; RESPONSE_PIECES],
    count: usize,
    sense_size: u32,
    len: u32,
}

impl ResponseAt {
    /// None when the writable part is too short or too fragmented to hold it.
    pub fn find(layout: &ChainLayout, geometry: Geometry) -> Option<Self> {
        let len = geometry.response_len();
        if layout.writable_len() < len {
            return None;
        }
        let mut at = Self {
            pieces: [Segment {
                addr: vm_memory::GuestAddress(0),
                len: 0,
            }; RESPONSE_PIECES],
            count: 0,
            sense_size: geometry.sense_size,
            len: u32::try_from(len).ok()?,
        };
        for piece in pieces(&layout.writable, 0, len) {
            *at.pieces.get_mut(at.count)? = piece;
            at.count += 1;
        }
        Some(at)
    }

    /// Bytes of the response header (the used length before any data-in).
    pub fn len(&self) -> u32 {
        self.len
    }

    /// Writes the response; `sense` only with CHECK CONDITION.
    pub fn write(&self, mem: &GuestMemory, reply: &Reply) -> Result<(), ChainError> {
        let mut header = [0u8; RESP_HEADER_FIXED as usize + super::sense::FIXED_LEN];
        let sense_len = match reply.sense {
            Some(sense) => {
                let fixed = sense.fixed();
                let n = fixed.len().min(self.sense_size as usize);
                header[RESP_HEADER_FIXED as usize..][..n].copy_from_slice(&fixed[..n]);
                n
            }
            None => 0,
        };
        header[0..4].copy_from_slice(&(sense_len as u32).to_le_bytes());
        header[4..8].copy_from_slice(&reply.residual.to_le_bytes());
        header[10] = reply.status;
        header[11] = reply.response;
        let used = RESP_HEADER_FIXED as usize + sense_len;
        let mut done = 0usize;
        for piece in &self.pieces[..self.count] {
            if done >= used {
                break;
            }
            let n = (piece.len as usize).min(used - done);
            mem.write_slice(&header[done..done + n], piece.addr)
                .map_err(|_| ChainError::BufferOutOfRange)?;
            done += n;
        }
        Ok(())
    }
}

/// A finished command's response fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply {
    pub response: u8,
    pub status: u8,
    pub sense: Option<Sense>,
    pub residual: u32,
}

impl Reply {
    pub fn good(residual: u32) -> Self {
        Self {
            response: super::protocol::response::OK,
            status: GOOD,
            sense: None,
            residual,
        }
    }

    pub fn check(sense: Sense, residual: u32) -> Self {
        Self {
            response: super::protocol::response::OK,
            status: CHECK_CONDITION,
            sense: Some(sense),
            residual,
        }
    }

    /// A virtio-level failure: the command never reached a logical unit.
    pub fn response(response: u8, residual: u32) -> Self {
        Self {
            response,
            status: GOOD,
            sense: None,
            residual,
        }
    }
}

/// The request header fields the target needs.
#[derive(Debug, Clone, Copy)]
pub struct Header {
    pub lun: Option<LunAddress>,
    pub cdb: [u8; MAX_CDB_SIZE as usize],
    pub cdb_len: usize,
}

impl Header {
    pub fn read(
        mem: &GuestMemory,
        layout: &ChainLayout,
        geometry: Geometry,
    ) -> Result<Self, ChainError> {
        let mut raw = [0u8; (CMD_HEADER_FIXED + MAX_CDB_SIZE as u64) as usize];
        let len = geometry.request_len() as usize;
        let raw = raw.get_mut(..len).ok_or(ChainError::BufferOutOfRange)?;
        read_stream(mem, &layout.readable, 0, raw)?;
        let mut lun = [0u8; 8];
        lun.copy_from_slice(&raw[..8]);
        let mut cdb = [0u8; MAX_CDB_SIZE as usize];
        let cdb_len = len - CMD_HEADER_FIXED as usize;
        cdb[..cdb_len].copy_from_slice(&raw[CMD_HEADER_FIXED as usize..]);
        Ok(Self {
            lun: LunAddress::decode(&lun),
            cdb,
            cdb_len,
        })
    }

    pub fn cdb(&self) -> &[u8] {
        &self.cdb[..self.cdb_len]
    }
}
