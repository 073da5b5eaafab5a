//! Guest RAM as the reactors' registered buffers (IORING_REGISTER_BUFFERS): the kernel pins
//! the pages once, and a request whose data lies in one piece is a READ_FIXED/WRITE_FIXED
//! that maps no user memory per op.
//!
//! Pinned pages and released pages do not mix: after MADV_DONTNEED the guest's next touch
//! maps a fresh page while the ring still holds the old one, and a fixed read would land
//! where the guest never looks. Whoever drops guest pages (the balloon, a reboot) first
//! has the reactors forget the pieces that hold them ([`super::ReactorSet::forget_ram`]):
//! requests there then name their iovecs again.

/// The most one registered buffer may span (the kernel refuses larger ones).
pub const RAM_PIECE_MAX: usize = 1 << 30;

/// Guest RAM mappings, cut into pieces the kernel accepts as registered buffers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisteredRam {
    /// (host address, length), sorted by address, not overlapping.
    pieces: Vec<(usize, usize)>,
}

impl RegisteredRam {
    /// `mappings` as (host address, length) pairs.
    ///
    /// # Safety
    ///
    /// Each mapping must be readable and writable memory of this process that stays
    /// mapped as long as any reactor set started with it runs: the kernel pins its pages
    /// and reads and writes them for requests until the set is gone.
    pub unsafe fn new(mappings: &[(*mut u8, usize)]) -> Self {
        let mut pieces = Vec::new();
        for &(host, len) in mappings {
            let mut offset = 0;
            while offset < len {
                let piece = (len - offset).min(RAM_PIECE_MAX);
                pieces.push((host as usize + offset, piece));
                offset += piece;
            }
        }
        pieces.sort_unstable();
        Self { pieces }
    }

    pub fn pieces(&self) -> &[(usize, usize)] {
        &self.pieces
    }

    /// The index of the piece that holds all of `[addr, addr + len)`, if one does.
    pub fn piece_of(&self, addr: usize, len: usize) -> Option<usize> {
        let index = self.pieces.partition_point(|&(start, _)| start <= addr);
        let index = index.checked_sub(1)?;
        let (start, piece_len) = self.pieces[index];
        let end = addr.checked_add(len)?;
        (end <= start + piece_len).then_some(index)
    }

    /// The indices of the pieces that overlap `[addr, addr + len)`.
    pub fn pieces_overlapping(&self, addr: usize, len: usize) -> impl Iterator<Item = usize> + '_ {
        let end = addr.saturating_add(len);
        self.pieces
            .iter()
            .enumerate()
            .filter(move |(_, &(start, piece_len))| start < end && addr < start + piece_len)
            .map(|(index, _)| index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ram(mappings: &[(usize, usize)]) -> RegisteredRam {
        let mappings: Vec<(*mut u8, usize)> = mappings
            .iter()
            .map(|&(host, len)| (host as *mut u8, len))
            .collect();
        // SAFETY: only the bookkeeping is tested; nothing is registered or touched.
        unsafe { RegisteredRam::new(&mappings) }
    }

    #[test]
    fn mappings_are_cut_into_pieces_the_kernel_takes() {
        let gib = RAM_PIECE_MAX;
        let ram = ram(&[(8 * gib, 2 * gib + 4096), (gib, 4096)]);
        assert_eq!(
            ram.pieces(),
            &[
                (gib, 4096),
                (8 * gib, gib),
                (9 * gib, gib),
                (10 * gib, 4096)
            ]
        );
        assert_eq!(ram.piece_of(8 * gib, 4096), Some(1));
        assert_eq!(ram.piece_of(9 * gib - 4096, 4096), Some(1));
        assert_eq!(
            ram.piece_of(9 * gib - 4096, 8192),
            None,
            "straddles two pieces"
        );
        assert_eq!(ram.piece_of(gib + 4096, 1), None, "past a mapping's end");
        assert_eq!(ram.piece_of(0, 1), None, "before every mapping");
        assert_eq!(ram.piece_of(usize::MAX, 2), None);
        let hit: Vec<usize> = ram.pieces_overlapping(9 * gib - 1, 2).collect();
        assert_eq!(hit, vec![1, 2]);
        assert_eq!(ram.pieces_overlapping(2 * gib, gib).count(), 0);
    }
}
