//! The ring's registered file table: the descriptors of attached queues' disks and TAPs,
//! so that each op names a table slot (IOSQE_FIXED_FILE) and the kernel takes no file
//! reference per op. The table is registered empty (sparse) before the ring is enabled;
//! its slots are filled and cleared as queues come and go, the one register operation the
//! ring's restrictions leave open.

use std::os::fd::RawFd;

use io_uring::Submitter;
use log::warn;

/// Slots per ring: a reactor serves a handful of devices, each with one descriptor per
/// disk or TAP queue pair.
pub(crate) const FIXED_FILE_SLOTS: u32 = 64;

struct Entry {
    fd: RawFd,
    slot: u32,
    /// Attached queues whose ops use the descriptor (a multi-queue disk shares one).
    users: usize,
}

/// Which descriptor sits in which slot of the ring's table.
pub(super) struct FixedFiles {
    /// The filled slots only: ops look their descriptor up here.
    entries: Vec<Entry>,
    /// False when the kernel refused the table: every op names its descriptor.
    registered: bool,
}

impl FixedFiles {
    /// Registers an empty table on `ring`, which must still be disabled.
    pub(super) fn register(submitter: &Submitter<'_>, reactor: usize) -> Self {
        let registered = match submitter.register_files_sparse(FIXED_FILE_SLOTS) {
            Ok(()) => true,
            Err(err) => {
                warn!("reactor {reactor}: no registered file table ({err}): ops name descriptors");
                false
            }
        };
        Self {
            entries: Vec::new(),
            registered,
        }
    }

    /// The slot holding `fd`, if it is in the table. A linear scan: the table holds a
    /// few descriptors, and this runs for every op.
    pub(super) fn slot_of(&self, fd: RawFd) -> Option<u32> {
        self.entries
            .iter()
            .find(|entry| entry.fd == fd)
            .map(|entry| entry.slot)
    }

    /// Puts `fd` in the table (or counts one more user of it). Returns false when it
    /// stays out: the table is full or the kernel refused, and ops name the descriptor.
    pub(super) fn add(&mut self, submitter: &Submitter<'_>, fd: RawFd) -> bool {
        if !self.registered || fd < 0 {
            return false;
        }
        if let Some(entry) = self.entries.iter_mut().find(|entry| entry.fd == fd) {
            entry.users += 1;
            return true;
        }
        let Some(slot) =
            (0..FIXED_FILE_SLOTS).find(|&slot| self.entries.iter().all(|e| e.slot != slot))
        else {
            return false;
        };
        match submitter.register_files_update(slot, &[fd]) {
            Ok(_) => {
                self.entries.push(Entry { fd, slot, users: 1 });
                true
            }
            Err(err) => {
                warn!("cannot register descriptor {fd} with the ring: {err}");
                false
            }
        }
    }

    /// One user of `fd` fewer; the last one clears its slot (the kernel drops its file
    /// reference once no op in flight uses it).
    pub(super) fn remove(&mut self, submitter: &Submitter<'_>, fd: RawFd) {
        let Some(index) = self.entries.iter().position(|entry| entry.fd == fd) else {
            return;
        };
        let entry = &mut self.entries[index];
        entry.users -= 1;
        if entry.users > 0 {
            return;
        }
        let slot = self.entries.swap_remove(index).slot;
        if let Err(err) = submitter.register_files_update(slot, &[-1]) {
            warn!("cannot clear slot {slot} of the ring's file table: {err}");
        }
    }

    /// Descriptors in the table now.
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }
}
