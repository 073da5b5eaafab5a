//! What SQE an op becomes: its opcode, its file named by registered slot or by descriptor,
//! its data in registered guest RAM (one segment) or by iovec array.

use io_uring::{opcode, squeue, types};

use super::fixed_buffers::FixedBuffers;
use super::fixed_files::FixedFiles;
use crate::worker::IoOp;

/// An SQE of either size: a driver command needs the 128-byte kind, which only a ring
/// built with wide entries takes (see `entries`).
pub(crate) enum Sqe {
    Plain(squeue::Entry),
    Wide(squeue::Entry128),
}

impl Sqe {
    pub fn user_data(self, data: u64) -> Self {
        match self {
            Sqe::Plain(entry) => Sqe::Plain(entry.user_data(data)),
            Sqe::Wide(entry) => Sqe::Wide(entry.user_data(data)),
        }
    }
}

/// An op's SQE (its user_data still to be set) and what must outlive it.
pub(super) struct OpEntry {
    pub entry: Sqe,
    /// The op names a slot of the ring's file table.
    pub fixed_file: bool,
    /// The op reads or writes a registered piece of guest RAM.
    pub fixed_buffer: bool,
    /// A delay's timeout, which the kernel reads while the op is armed: boxed, to be kept
    /// until the op completes.
    pub timeout: Option<Box<types::Timespec>>,
}

/// Where a read or write finds its data in registered guest RAM.
#[derive(Clone, Copy)]
enum Fixed {
    /// One segment of `.1` bytes in piece `.0`.
    One(u16, u32),
    /// Several segments, all in this piece.
    Vectored(u16),
}

/// The SQE for `op`. Its pointers (the iovec array, guest RAM, the timeout) must stay valid
/// until the op completes: the caller keeps `op` and the timeout with the op in flight.
pub(super) fn entry_for(op: &IoOp, files: &FixedFiles, buffers: &FixedBuffers) -> OpEntry {
    // An op on a descriptor in the ring's file table names its slot instead.
    let slot = op.fd().and_then(|fd| files.slot_of(fd));
    macro_rules! on_file {
        ($fd:expr, |$target:ident| $build:expr) => {
            match slot {
                Some(slot) => {
                    let $target = types::Fixed(slot);
                    $build
                }
                None => {
                    let $target = types::Fd($fd);
                    $build
                }
            }
        };
    }
    // One segment inside a registered piece of guest RAM: a fixed read or write; several
    // in one piece, where the kernel has it: a vectored fixed one.
    let piece = match op {
        IoOp::Read { iovecs, .. } | IoOp::Write { iovecs, .. } if iovecs.len() == 1 => buffers
            .index_of(iovecs[0].iov_base as usize, iovecs[0].iov_len)
            .and_then(|index| Some(Fixed::One(index, u32::try_from(iovecs[0].iov_len).ok()?))),
        IoOp::Read { iovecs, .. } | IoOp::Write { iovecs, .. } => {
            buffers.vectored_index_of(iovecs).map(Fixed::Vectored)
        }
        _ => None,
    };
    let mut timeout = None;
    let entry = match (op, piece) {
        (IoOp::Read { fd, offset, iovecs }, Some(Fixed::Vectored(index))) => {
            on_file!(*fd, |file| opcode::ReadvFixed::new(
                file,
                iovecs.as_ptr(),
                iovecs.len() as u32,
                index
            )
            .offset(*offset)
            .build())
        }
        (IoOp::Write { fd, offset, iovecs }, Some(Fixed::Vectored(index))) => {
            on_file!(*fd, |file| opcode::WritevFixed::new(
                file,
                iovecs.as_ptr(),
                iovecs.len() as u32,
                index
            )
            .offset(*offset)
            .build())
        }
        (IoOp::Read { fd, offset, iovecs }, Some(Fixed::One(index, len))) => {
            on_file!(*fd, |file| opcode::ReadFixed::new(
                file,
                iovecs[0].iov_base.cast(),
                len,
                index
            )
            .offset(*offset)
            .build())
        }
        (IoOp::Write { fd, offset, iovecs }, Some(Fixed::One(index, len))) => {
            on_file!(*fd, |file| opcode::WriteFixed::new(
                file,
                iovecs[0].iov_base.cast_const().cast(),
                len,
                index
            )
            .offset(*offset)
            .build())
        }
        (IoOp::Read { fd, offset, iovecs }, None) => on_file!(*fd, |file| opcode::Readv::new(
            file,
            iovecs.as_ptr(),
            iovecs.len() as u32
        )
        .offset(*offset)
        .build()),
        (IoOp::Write { fd, offset, iovecs }, None) => on_file!(*fd, |file| opcode::Writev::new(
            file,
            iovecs.as_ptr(),
            iovecs.len() as u32
        )
        .offset(*offset)
        .build()),
        (IoOp::Flush { fd }, _) => on_file!(*fd, |file| opcode::Fsync::new(file)
            .flags(types::FsyncFlags::DATASYNC)
            .build()),
        (
            IoOp::Fallocate {
                fd,
                mode,
                offset,
                len,
            },
            _,
        ) => on_file!(*fd, |file| opcode::Fallocate::new(file, *len)
            .offset(*offset)
            .mode(*mode)
            .build()),
        (IoOp::Accept { fd }, _) => on_file!(*fd, |file| opcode::Accept::new(
            file,
            std::ptr::null_mut(),
            std::ptr::null_mut()
        )
        .flags(libc::SOCK_CLOEXEC)
        .build()),
        (IoOp::Poll { fd, events }, _) => {
            on_file!(*fd, |file| opcode::PollAdd::new(file, *events).build())
        }
        (IoOp::Delay { nanos }, _) => {
            let timespec = Box::new(
                types::Timespec::new()
                    .sec(nanos / 1_000_000_000)
                    .nsec((nanos % 1_000_000_000) as u32),
            );
            let entry = opcode::Timeout::new(&*timespec as *const types::Timespec).build();
            timeout = Some(timespec);
            entry
        }
        (IoOp::UringCmd { fd, command }, _) => {
            let index = command
                .fixed_buffer
                .as_ref()
                .and_then(|buffer| buffers.command_index_of(buffer));
            let entry = on_file!(*fd, |file| opcode::UringCmd80::new(file, command.cmd_op)
                .cmd(command.bytes)
                .buf_index(index)
                .build());
            return OpEntry {
                entry: Sqe::Wide(entry),
                fixed_file: slot.is_some(),
                fixed_buffer: index.is_some(),
                timeout: None,
            };
        }
    };
    OpEntry {
        entry: Sqe::Plain(entry),
        fixed_file: slot.is_some(),
        fixed_buffer: piece.is_some(),
        timeout,
    }
}
