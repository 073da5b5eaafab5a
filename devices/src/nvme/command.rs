//! The NVMe I/O commands a virtio-blk request becomes (NVMe NVM Command Set 1.0: Read,
//! Write, Flush, Dataset Management, Write Zeroes), as io_uring driver commands, and what
//! their completion means. The guest's buffers go to the controller as they are (one
//! command per `max_transfer` bytes); nothing here reads guest memory.

use std::os::fd::RawFd;

use ringvisor_io::{IoOp, UringCommand};

use super::Namespace;

/// `struct nvme_passthru_cmd` (the admin ioctl) and `struct nvme_uring_cmd` (io_uring),
/// which share this layout; the last field is the admin command's result, reserved in the
/// io_uring one (include/uapi/linux/nvme_ioctl.h).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PassthruCmd {
    pub opcode: u8,
    pub flags: u8,
    pub rsvd1: u16,
    pub nsid: u32,
    pub cdw2: u32,
    pub cdw3: u32,
    pub metadata: u64,
    pub addr: u64,
    pub metadata_len: u32,
    pub data_len: u32,
    pub cdw10: u32,
    pub cdw11: u32,
    pub cdw12: u32,
    pub cdw13: u32,
    pub cdw14: u32,
    pub cdw15: u32,
    pub timeout_ms: u32,
    pub result: u32,
}

/// The ioctl type of every NVMe ioctl ('N').
pub(super) const NVME_IOCTL_TYPE: u32 = 0x4E;
vmm_sys_util::ioctl_iowr_nr!(NVME_URING_CMD_IO, NVME_IOCTL_TYPE, 0x80, PassthruCmd);
vmm_sys_util::ioctl_iowr_nr!(NVME_URING_CMD_IO_VEC, NVME_IOCTL_TYPE, 0x81, PassthruCmd);

pub(super) const OPC_FLUSH: u8 = 0x00;
const OPC_WRITE: u8 = 0x01;
const OPC_READ: u8 = 0x02;
const OPC_WRITE_ZEROES: u8 = 0x08;
const OPC_DATASET_MANAGEMENT: u8 = 0x09;
/// Dataset Management CDW11: Attribute – Deallocate.
const DSM_DEALLOCATE: u32 = 1 << 2;
/// Write Zeroes CDW12: Deallocate, the blocks may be unmapped (and read back as zeros).
const WRITE_ZEROES_DEALLOCATE: u32 = 1 << 25;
/// One Dataset Management range: context attributes, block count, starting LBA.
const DSM_RANGE_LEN: usize = 16;
/// The Number of Logical Blocks field (0's based) of Read, Write and Write Zeroes.
const MAX_BLOCKS_PER_COMMAND: u64 = 1 << 16;

impl PassthruCmd {
    /// The command as the bytes of an io_uring SQE's command area.
    fn to_bytes(self) -> [u8; 80] {
        let mut bytes = [0u8; 80];
        let mut at = 0;
        let mut put = |field: &[u8]| {
            bytes[at..at + field.len()].copy_from_slice(field);
            at += field.len();
        };
        put(&[self.opcode, self.flags]);
        put(&self.rsvd1.to_ne_bytes());
        for word in [self.nsid, self.cdw2, self.cdw3] {
            put(&word.to_ne_bytes());
        }
        put(&self.metadata.to_ne_bytes());
        put(&self.addr.to_ne_bytes());
        for word in [
            self.metadata_len,
            self.data_len,
            self.cdw10,
            self.cdw11,
            self.cdw12,
            self.cdw13,
            self.cdw14,
            self.cdw15,
            self.timeout_ms,
            self.result,
        ] {
            put(&word.to_ne_bytes());
        }
        bytes
    }

    /// `cdw10..cdw12` of a command on `blocks` blocks from `lba` (the count 0's based).
    fn on_blocks(mut self, lba: u64, blocks: u64) -> Self {
        self.cdw10 = lba as u32;
        self.cdw11 = (lba >> 32) as u32;
        self.cdw12 |= (blocks - 1) as u32 & 0xffff;
        self
    }
}

/// A command whose data, if any, the driver finds through `command.iovecs` or
/// `command.data`; `point` fills the address fields once those are where they stay.
fn op(fd: RawFd, mut command: UringCommand, cmd: PassthruCmd, point: Pointing) -> IoOp {
    let mut cmd = cmd;
    match point {
        Pointing::Nothing => {}
        // One buffer: the plain command names it; several: the vectored one names the
        // iovec array and counts its entries.
        Pointing::Iovecs if command.iovecs.len() == 1 => {
            cmd.addr = command.iovecs[0].iov_base as u64;
            cmd.data_len = command.iovecs[0].iov_len as u32;
            command.fixed_buffer = Some(command.iovecs[0]);
        }
        Pointing::Iovecs => {
            command.cmd_op = NVME_URING_CMD_IO_VEC() as u32;
            cmd.addr = command.iovecs.as_ptr() as u64;
            cmd.data_len = command.iovecs.len() as u32;
        }
        Pointing::Data => {
            cmd.addr = command.data.as_ptr() as u64;
            cmd.data_len = command.data.len() as u32;
        }
    }
    command.bytes = cmd.to_bytes();
    IoOp::UringCmd {
        fd,
        command: Box::new(command),
    }
}

enum Pointing {
    Nothing,
    Iovecs,
    Data,
}

fn command(iovecs: Vec<libc::iovec>, data: Vec<u8>) -> UringCommand {
    UringCommand {
        cmd_op: NVME_URING_CMD_IO() as u32,
        bytes: [0; 80],
        iovecs,
        data,
        fixed_buffer: None,
    }
}

/// Reads (`write` false) or writes the `len` bytes of `iovecs` at byte `offset`, a
/// multiple of the block size as `len` is, in commands of at most `max_transfer` bytes.
pub(crate) fn transfer(
    ns: &Namespace,
    fd: RawFd,
    write: bool,
    offset: u64,
    iovecs: &[libc::iovec],
) -> Vec<IoOp> {
    let base = PassthruCmd {
        opcode: if write { OPC_WRITE } else { OPC_READ },
        nsid: ns.nsid,
        ..PassthruCmd::default()
    };
    let mut lba = offset >> ns.lba_shift;
    split_iovecs(iovecs, ns.max_transfer as usize)
        .into_iter()
        .map(|piece| {
            let bytes: usize = piece.iter().map(|iov| iov.iov_len).sum();
            let blocks = (bytes as u64) >> ns.lba_shift;
            let cmd = base.on_blocks(lba, blocks);
            lba += blocks;
            op(fd, command(piece, Vec::new()), cmd, Pointing::Iovecs)
        })
        .collect()
}

/// Flushes the controller's volatile write cache for the namespace.
pub(crate) fn flush(ns: &Namespace, fd: RawFd) -> IoOp {
    let cmd = PassthruCmd {
        opcode: OPC_FLUSH,
        nsid: ns.nsid,
        ..PassthruCmd::default()
    };
    op(fd, command(Vec::new(), Vec::new()), cmd, Pointing::Nothing)
}

/// Deallocates `len` bytes at byte `offset` (both block multiples): one Dataset
/// Management command with one range (the disk advertises one discard segment).
pub(crate) fn discard(ns: &Namespace, fd: RawFd, offset: u64, len: u64) -> IoOp {
    let mut range = vec![0u8; DSM_RANGE_LEN];
    let blocks = (len >> ns.lba_shift) as u32;
    range[4..8].copy_from_slice(&blocks.to_le_bytes());
    range[8..16].copy_from_slice(&(offset >> ns.lba_shift).to_le_bytes());
    let cmd = PassthruCmd {
        opcode: OPC_DATASET_MANAGEMENT,
        nsid: ns.nsid,
        cdw10: 0, // one range (0's based)
        cdw11: DSM_DEALLOCATE,
        ..PassthruCmd::default()
    };
    op(fd, command(Vec::new(), range), cmd, Pointing::Data)
}

/// Zeroes `len` bytes at byte `offset` (both block multiples), letting the controller
/// deallocate them when `unmap`; one command per 65,536 blocks.
pub(crate) fn write_zeroes(
    ns: &Namespace,
    fd: RawFd,
    offset: u64,
    len: u64,
    unmap: bool,
) -> Vec<IoOp> {
    let base = PassthruCmd {
        opcode: OPC_WRITE_ZEROES,
        nsid: ns.nsid,
        cdw12: if unmap { WRITE_ZEROES_DEALLOCATE } else { 0 },
        ..PassthruCmd::default()
    };
    let mut lba = offset >> ns.lba_shift;
    let end = lba + (len >> ns.lba_shift);
    let mut ops = Vec::new();
    while lba < end {
        let blocks = (end - lba).min(MAX_BLOCKS_PER_COMMAND);
        ops.push(op(
            fd,
            command(Vec::new(), Vec::new()),
            base.on_blocks(lba, blocks),
            Pointing::Nothing,
        ));
        lba += blocks;
    }
    ops
}

/// What a completed command means for the guest. The result is the NVMe status field
/// (0: success; Status Code Type in bits 10:8, Status Code in bits 7:0) or, when the host
/// could not issue it, -errno.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Completion {
    Ok,
    /// The controller does not support the command or a field of it (Generic status:
    /// Invalid Command Opcode, Invalid Field in Command).
    Unsupported,
    Failed,
}

pub(crate) fn completion(result: i32) -> Completion {
    const GENERIC_INVALID_OPCODE: i32 = 0x01;
    const GENERIC_INVALID_FIELD: i32 = 0x02;
    match result {
        0 => Completion::Ok,
        r if r > 0 && matches!(r & 0x7ff, GENERIC_INVALID_OPCODE | GENERIC_INVALID_FIELD) => {
            Completion::Unsupported
        }
        _ => Completion::Failed,
    }
}

/// `iovecs` cut into pieces of at most `max` bytes (the last may be shorter); a buffer
/// that straddles a cut is split there.
fn split_iovecs(iovecs: &[libc::iovec], max: usize) -> Vec<Vec<libc::iovec>> {
    let mut pieces = Vec::new();
    let mut piece = Vec::new();
    let mut room = max;
    for iov in iovecs {
        let (mut base, mut left) = (iov.iov_base as usize, iov.iov_len);
        while left > 0 {
            let take = left.min(room);
            piece.push(libc::iovec {
                iov_base: base as *mut libc::c_void,
                iov_len: take,
            });
            base += take;
            left -= take;
            room -= take;
            if room == 0 {
                pieces.push(std::mem::take(&mut piece));
                room = max;
            }
        }
    }
    if !piece.is_empty() {
        pieces.push(piece);
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(lba_shift: u32, max_transfer: u32) -> Namespace {
        Namespace {
            nsid: 3,
            lba_shift,
            blocks: 1 << 30,
            max_transfer,
            dataset_management: true,
            write_zeroes: true,
        }
    }

    fn iov(base: usize, len: usize) -> libc::iovec {
        libc::iovec {
            iov_base: base as *mut libc::c_void,
            iov_len: len,
        }
    }

    /// The command bytes of `op`, read back as the structure.
    fn decoded(op: &IoOp) -> (u32, PassthruCmd, &UringCommand) {
        let IoOp::UringCmd { command, .. } = op else {
            panic!("not a driver command: {op:?}");
        };
        let b = &command.bytes;
        let word = |at: usize| u32::from_ne_bytes(b[at..at + 4].try_into().unwrap());
        let cmd = PassthruCmd {
            opcode: b[0],
            flags: b[1],
            nsid: word(4),
            addr: u64::from_ne_bytes(b[24..32].try_into().unwrap()),
            data_len: word(36),
            cdw10: word(40),
            cdw11: word(44),
            cdw12: word(48),
            ..PassthruCmd::default()
        };
        (command.cmd_op, cmd, command)
    }

    #[test]
    fn the_command_layout_is_the_kernels() {
        assert_eq!(std::mem::size_of::<PassthruCmd>(), 72);
        // _IOWR('N', 0x80 / 0x81, struct nvme_uring_cmd) in linux/nvme_ioctl.h.
        assert_eq!(NVME_URING_CMD_IO() as u32, 0xC048_4E80);
        assert_eq!(NVME_URING_CMD_IO_VEC() as u32, 0xC048_4E81);
    }

    #[test]
    fn a_read_in_one_buffer_is_one_plain_command() {
        let ops = transfer(&ns(9, 128 << 10), 7, false, 4096, &[iov(0x1000, 8192)]);
        assert_eq!(ops.len(), 1);
        let (cmd_op, cmd, command) = decoded(&ops[0]);
        assert_eq!(cmd_op, NVME_URING_CMD_IO() as u32);
        assert_eq!((cmd.opcode, cmd.nsid), (OPC_READ, 3));
        // The one buffer may go as a registered one.
        let buffer = command
            .fixed_buffer
            .expect("a plain command names its buffer");
        assert_eq!((buffer.iov_base as usize, buffer.iov_len), (0x1000, 8192));
        assert_eq!((cmd.addr, cmd.data_len), (0x1000, 8192));
        // LBA 8, 16 blocks (0's based 15).
        assert_eq!((cmd.cdw10, cmd.cdw11, cmd.cdw12), (8, 0, 15));
    }

    #[test]
    fn a_large_scattered_write_is_split_at_the_transfer_limit() {
        // 4 KiB blocks, 8 KiB per command, buffers of 6 KiB + 10 KiB at LBA 2^32.
        let offset = (1u64 << 32) << 12;
        let ops = transfer(
            &ns(12, 8192),
            7,
            true,
            offset,
            &[iov(0x10000, 6144), iov(0x40000, 10240)],
        );
        assert_eq!(ops.len(), 2);
        let (cmd_op, first, command) = decoded(&ops[0]);
        assert_eq!(cmd_op, NVME_URING_CMD_IO_VEC() as u32);
        assert_eq!(first.opcode, OPC_WRITE);
        assert_eq!((first.cdw10, first.cdw11, first.cdw12), (0, 1, 1));
        assert_eq!(first.addr, command.iovecs.as_ptr() as u64);
        assert_eq!(first.data_len, 2);
        assert!(command.fixed_buffer.is_none(), "vectored: no fixed buffer");
        assert_eq!(command.iovecs[1].iov_base as usize, 0x40000);
        assert_eq!(command.iovecs[1].iov_len, 2048);
        let (_, second, command) = decoded(&ops[1]);
        assert_eq!((second.cdw10, second.cdw11, second.cdw12), (2, 1, 1));
        assert_eq!(command.iovecs.len(), 1);
        assert_eq!(second.addr, 0x40000 + 2048);
    }

    #[test]
    fn discard_names_one_deallocate_range() {
        let op = discard(&ns(9, 4096), 7, 512 * 100, 512 * 50);
        let (_, cmd, command) = decoded(&op);
        assert_eq!(
            (cmd.opcode, cmd.cdw10, cmd.cdw11),
            (OPC_DATASET_MANAGEMENT, 0, 4)
        );
        assert_eq!(cmd.addr, command.data.as_ptr() as u64);
        assert_eq!(cmd.data_len, 16);
        assert_eq!(&command.data[4..8], &50u32.to_le_bytes());
        assert_eq!(&command.data[8..16], &100u64.to_le_bytes());
    }

    #[test]
    fn write_zeroes_is_split_at_the_block_count_field() {
        let ops = write_zeroes(&ns(9, 4096), 7, 0, (MAX_BLOCKS_PER_COMMAND + 3) << 9, true);
        assert_eq!(ops.len(), 2);
        let (_, first, _) = decoded(&ops[0]);
        assert_eq!(first.opcode, OPC_WRITE_ZEROES);
        assert_eq!(first.cdw12, WRITE_ZEROES_DEALLOCATE | 0xffff);
        let (_, second, _) = decoded(&ops[1]);
        assert_eq!(
            (second.cdw10, second.cdw12),
            (1 << 16, WRITE_ZEROES_DEALLOCATE | 2)
        );
        let (_, keep, _) = decoded(&write_zeroes(&ns(9, 4096), 7, 0, 512, false)[0]);
        assert_eq!(keep.cdw12, 0);
        let (_, flushed, _) = decoded(&flush(&ns(9, 4096), 7));
        assert_eq!(
            (flushed.opcode, flushed.nsid, flushed.data_len),
            (OPC_FLUSH, 3, 0)
        );
    }

    #[test]
    fn statuses_map_to_virtio_outcomes() {
        assert_eq!(completion(0), Completion::Ok);
        assert_eq!(completion(0x01), Completion::Unsupported);
        assert_eq!(completion(0x4002), Completion::Unsupported); // DNR set
        assert_eq!(completion(0x281), Completion::Failed); // media: unrecovered read
        assert_eq!(completion(-libc::EIO), Completion::Failed);
    }
}
