//! Which pieces of guest RAM this ring holds as registered buffers (see `reactor::ram`).

use io_uring::Submitter;
use log::warn;

use crate::reactor::ram::RegisteredRam;

pub(super) struct FixedBuffers {
    ram: Option<RegisteredRam>,
    /// Per piece: registered now (not forgotten, not refused).
    live: Vec<bool>,
    /// The kernel reads and writes several segments of one registered piece in one op
    /// (READV_FIXED, WRITEV_FIXED).
    vectored: bool,
    /// The kernel takes driver commands on registered buffers.
    commands: bool,
}

fn iovec(piece: (usize, usize)) -> libc::iovec {
    libc::iovec {
        iov_base: piece.0 as *mut libc::c_void,
        iov_len: piece.1,
    }
}

impl FixedBuffers {
    /// Registers every piece of `ram` with `ring`, which must still be disabled. A kernel
    /// that refuses (RLIMIT_MEMLOCK without CAP_IPC_LOCK, a kernel without it) leaves the
    /// requests naming their iovecs, with a warning.
    pub(super) fn register(
        submitter: &Submitter<'_>,
        ram: Option<&RegisteredRam>,
        reactor: usize,
        capabilities: super::setup::RingCapabilities,
    ) -> Self {
        let none = Self {
            ram: None,
            live: Vec::new(),
            vectored: false,
            commands: false,
        };
        let Some(ram) = ram.filter(|ram| !ram.pieces().is_empty()) else {
            return none;
        };
        let iovecs: Vec<libc::iovec> = ram.pieces().iter().copied().map(iovec).collect();
        // SAFETY: `RegisteredRam::new`'s contract: every piece is read/write memory of this
        // process that stays mapped while this reactor runs, and the ring goes with it.
        let registered = unsafe { submitter.register_buffers(&iovecs) };
        if let Err(err) = registered {
            warn!(
                "reactor {reactor}: guest RAM not registered with the ring ({err}): \
                 requests name their iovecs"
            );
            return none;
        }
        Self {
            live: vec![true; ram.pieces().len()],
            ram: Some(ram.clone()),
            vectored: capabilities.vectored_fixed,
            commands: capabilities.uring_cmd_fixed,
        }
    }

    /// The registered piece that holds all of `[addr, addr + len)`.
    pub(super) fn index_of(&self, addr: usize, len: usize) -> Option<u16> {
        let index = self.ram.as_ref()?.piece_of(addr, len)?;
        if !self.live[index] {
            return None;
        }
        u16::try_from(index).ok()
    }

    /// The registered piece that holds every one of `iovecs` (two or more), where the
    /// kernel takes vectored fixed ops.
    pub(super) fn vectored_index_of(&self, iovecs: &[libc::iovec]) -> Option<u16> {
        if !self.vectored || iovecs.len() < 2 {
            return None;
        }
        let mut pieces = iovecs
            .iter()
            .map(|iov| self.index_of(iov.iov_base as usize, iov.iov_len));
        let first = pieces.next()??;
        pieces.all(|index| index == Some(first)).then_some(first)
    }

    /// The registered piece that holds a driver command's one buffer, where the kernel
    /// takes commands on registered buffers.
    pub(super) fn command_index_of(&self, buffer: &libc::iovec) -> Option<u16> {
        if !self.commands {
            return None;
        }
        self.index_of(buffer.iov_base as usize, buffer.iov_len)
    }

    /// Drops the pieces overlapping `[addr, addr + len)` from the ring: ops already in
    /// flight keep their pages until they complete, later ones name their iovecs.
    pub(super) fn forget(&mut self, submitter: &Submitter<'_>, addr: usize, len: usize) {
        let Some(ram) = &self.ram else {
            return;
        };
        let empty = libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        };
        for index in ram.pieces_overlapping(addr, len) {
            if !self.live[index] {
                continue;
            }
            // The slot becomes empty (a null, zero-length iovec); a failure leaves it
            // registered, so the piece must not be used either way.
            // SAFETY: an empty iovec points at nothing.
            let cleared =
                unsafe { submitter.register_buffers_update(index as u32, &[empty], None) };
            if let Err(err) = cleared {
                warn!("cannot drop guest RAM piece {index} from the ring: {err}");
            }
            self.live[index] = false;
        }
    }

    /// Registers again every piece that was forgotten (after a reboot cleared the RAM).
    pub(super) fn restore(&mut self, submitter: &Submitter<'_>) {
        let Some(ram) = &self.ram else {
            return;
        };
        for (index, &piece) in ram.pieces().iter().enumerate() {
            if self.live[index] {
                continue;
            }
            // SAFETY: as in `register`: the piece stays mapped while the reactor runs.
            let update =
                unsafe { submitter.register_buffers_update(index as u32, &[iovec(piece)], None) };
            match update {
                Ok(()) => self.live[index] = true,
                Err(err) => warn!("cannot register guest RAM piece {index} again: {err}"),
            }
        }
    }

    /// Pieces registered now.
    pub(super) fn live(&self) -> usize {
        self.live.iter().filter(|&&live| live).count()
    }
}
