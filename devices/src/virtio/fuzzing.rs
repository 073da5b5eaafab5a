//! Entry points for the coverage-guided fuzz targets in the repository's `fuzz/` crate.
//!
//! Not part of the device API: the chain walker is private to the device models, and the
//! fuzz targets must run it, not a copy of it. Everything here only composes the code the
//! queue workers run.

use virtio_queue::Queue;

use super::chain::{iovecs, pieces, read_stream, write_stream, ChainLayout, MAX_CHAIN_DESCRIPTORS};
use super::queue_ring::QueueRing;
use super::GuestMemory;

/// What walking one available chain gave.
#[derive(Debug)]
pub struct WalkedChain {
    pub head: u16,
    /// `Err` holds the walker's reason; the segments then are the ones read before it.
    pub result: Result<(), String>,
    /// Device-readable and device-writable buffers: (guest address, length).
    pub readable: Vec<(u64, u32)>,
    pub writable: Vec<(u64, u32)>,
    pub readable_len: u64,
    pub writable_len: u64,
    /// Where virtio-blk would write its status byte.
    pub last_writable_byte: Option<u64>,
    /// `iovecs` over the whole readable and writable parts, buffered and O_DIRECT:
    /// (host address, length) pairs, which must all lie in guest RAM.
    pub iovecs: Vec<(usize, usize)>,
}

/// Pops every available chain of `queue` the way the workers do (`QueueRing::pop_heads`),
/// walks each one, copies `window` bytes in and out of both parts through the stream
/// helpers, builds iovecs, and returns each chain as a used entry. A [`QueueFault`] (a
/// ring the guest broke) ends the walk, as it ends a worker's.
///
/// [`QueueFault`]: ringvisor_io::QueueFault
pub fn walk_available_chains(
    mem: &GuestMemory,
    queue: Queue,
    window: (u64, u64),
) -> Result<Vec<WalkedChain>, ringvisor_io::QueueFault> {
    let mut ring = QueueRing::new(0, queue, mem.clone());
    let mut heads = Vec::new();
    ring.pop_heads(&mut heads)?;
    let mut layout = ChainLayout::with_capacity(MAX_CHAIN_DESCRIPTORS);
    let mut walked = Vec::with_capacity(heads.len());
    let (skip, len) = window;
    // The window is the fuzzer's; bound it so a huge length cannot allocate gigabytes.
    let len = len.min(1 << 16);
    for head in heads {
        let result = ring.walk(head, &mut layout).map_err(|e| e.to_string());
        let mut chain = WalkedChain {
            head,
            result,
            readable: layout.readable.iter().map(|s| (s.addr.0, s.len)).collect(),
            writable: layout.writable.iter().map(|s| (s.addr.0, s.len)).collect(),
            readable_len: layout.readable_len(),
            writable_len: layout.writable_len(),
            last_writable_byte: layout.last_writable_byte(mem).map(|a| a.0),
            iovecs: Vec::new(),
        };
        let mut buf = vec![0u8; len as usize];
        for segments in [&layout.readable, &layout.writable] {
            let _ = pieces(segments, skip, len).count();
            if read_stream(mem, segments, skip, &mut buf).is_ok() {
                let _ = write_stream(mem, segments, skip, &buf);
            }
            let total: u64 = segments.iter().map(|s| u64::from(s.len)).sum();
            for direct in [false, true] {
                for whole in [(0, total), (skip, len)] {
                    if let Ok(v) = iovecs(mem, segments, whole.0, whole.1, direct) {
                        chain
                            .iovecs
                            .extend(v.iter().map(|v| (v.iov_base as usize, v.iov_len)));
                    }
                }
            }
        }
        ring.add_used(head, 0)?;
        walked.push(chain);
    }
    ring.needs_interrupt()?;
    ring.enable_notification()?;
    ring.has_available()?;
    Ok(walked)
}
