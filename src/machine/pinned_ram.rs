//! Guest RAM that the I/O reactors hold as registered buffers (prefaulted RAM only: the
//! kernel pins every page), and the two moments pages are dropped under them: the
//! balloon's releases and a reboot's clearing. Each asks the reactors to let go first.

use std::sync::{Arc, Mutex, PoisonError};

use ringvisor_io::{ReactorSet, RegisteredRam};

/// Which pieces of registered guest RAM the reactors still hold.
pub(super) struct PinnedRam {
    reactors: Arc<ReactorSet>,
    ram: RegisteredRam,
    /// Per piece: dropped from the rings (the balloon released pages in it).
    forgotten: Mutex<Vec<bool>>,
}

impl PinnedRam {
    pub(super) fn new(reactors: Arc<ReactorSet>, ram: RegisteredRam) -> Self {
        let forgotten = Mutex::new(vec![false; ram.pieces().len()]);
        Self {
            reactors,
            ram,
            forgotten,
        }
    }

    /// Before the balloon releases `[addr, addr + len)`: the pieces holding it leave the
    /// rings for good (registering them again would fault the released pages back in).
    /// Only the first release in a piece costs a round trip to the reactors.
    pub(super) fn before_release(&self, addr: usize, len: usize) {
        let mut forgotten = self
            .forgotten
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let fresh: Vec<usize> = self
            .ram
            .pieces_overlapping(addr, len)
            .filter(|&piece| !forgotten[piece])
            .collect();
        if fresh.is_empty() {
            return;
        }
        self.reactors.forget_ram(addr, len);
        for piece in fresh {
            forgotten[piece] = true;
        }
    }

    /// Before a reboot drops every page of guest RAM.
    pub(super) fn before_clear(&self) {
        let mut forgotten = self
            .forgotten
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        self.reactors.forget_ram(0, usize::MAX);
        forgotten.iter_mut().for_each(|piece| *piece = true);
    }

    /// After the cleared RAM was faulted in again (prefault): every piece goes back to
    /// the rings (the balloon starts the next boot deflated).
    pub(super) fn after_clear(&self) {
        let mut forgotten = self
            .forgotten
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        self.reactors.restore_ram();
        forgotten.iter_mut().for_each(|piece| *piece = false);
    }
}

#[cfg(test)]
mod tests {
    use vm_memory::{GuestAddress, GuestMemoryBackend};

    use super::*;
    use crate::memory::{self, MemoryOptions};

    #[test]
    fn a_release_drops_its_piece_and_a_reboot_brings_every_piece_back() {
        if !ringvisor_test_support::can_pin_memory(memory::MIN_MEMORY_BYTES) {
            return;
        }
        let options = MemoryOptions {
            prefault: true,
            ..MemoryOptions::default()
        };
        let mem = memory::allocate_with(memory::MIN_MEMORY_BYTES, &options).unwrap();
        let ram = memory::registered_ram(&mem, &options).expect("prefaulted RAM registers");
        let reactors = Arc::new(
            ReactorSet::start_with(
                &[None, None],
                &ringvisor_io::ReactorOptions {
                    registered_ram: Some(ram.clone()),
                    ..Default::default()
                },
            )
            .unwrap(),
        );
        let live = || -> Vec<usize> { reactors.stats().iter().map(|r| r.fixed_buffers).collect() };
        assert_eq!(live(), vec![1, 1], "every reactor holds the one piece");
        let pinned = PinnedRam::new(Arc::clone(&reactors), ram);

        let host = mem.get_host_address(GuestAddress(0x10_0000)).unwrap() as usize;
        pinned.before_release(host, 4096);
        assert_eq!(live(), vec![0, 0], "both let go before the page is dropped");
        pinned.before_release(host + 4096, 4096);
        assert_eq!(live(), vec![0, 0]);

        pinned.before_clear();
        memory::clear(&mem, &options).unwrap();
        pinned.after_clear();
        assert_eq!(live(), vec![1, 1], "registered again after the clear");
    }
}
