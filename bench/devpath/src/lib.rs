//! The device-path benchmark (`devpath-blk`) for virtio-blk: a synthetic guest driver keeps a fixed number
//! of requests in flight through the real device, reactors and io_uring, and host fio runs
//! the same job on the same file for comparison.

pub mod fio;
pub mod load;
pub mod report;

use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::Path;

/// Where a job's offsets go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pattern {
    Random,
    Sequential,
}

/// One fio-like job: read-only, O_DIRECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Job {
    pub name: &'static str,
    pub pattern: Pattern,
    pub block_size: u32,
    /// Requests kept in flight per queue (fio's iodepth per job).
    pub depth: usize,
}

impl Job {
    /// fio's `--rw` for this job.
    pub fn fio_rw(&self) -> &'static str {
        match self.pattern {
            Pattern::Random => "randread",
            Pattern::Sequential => "read",
        }
    }
}

/// The jobs the benchmark knows, in the order it runs them.
pub const JOBS: [Job; 3] = [
    Job {
        name: "randread-4k-qd1",
        pattern: Pattern::Random,
        block_size: 4096,
        depth: 1,
    },
    Job {
        name: "randread-4k-qd32",
        pattern: Pattern::Random,
        block_size: 4096,
        depth: 32,
    },
    Job {
        name: "read-128k-qd8",
        pattern: Pattern::Sequential,
        block_size: 128 << 10,
        depth: 8,
    },
];

/// xorshift64: cheap offsets, reproducible from the seed.
#[derive(Debug, Clone)]
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> Self {
        // Zero is the one state xorshift never leaves.
        Self(if seed == 0 {
            0x9e37_79b9_7f4a_7c15
        } else {
            seed
        })
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

/// The byte range of the file one queue (one fio job clone) reads: the file split evenly,
/// each part a whole number of blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    pub start: u64,
    pub len: u64,
}

impl Region {
    /// Part `index` of `parts` of a `file_bytes` file, in blocks of `block_size`.
    pub fn split(file_bytes: u64, parts: usize, index: usize, block_size: u32) -> Self {
        let bs = u64::from(block_size);
        let len = (file_bytes / parts.max(1) as u64) / bs * bs;
        Self {
            start: len * index as u64,
            len,
        }
    }
}

/// Hands out the offsets of one queue's requests.
#[derive(Debug, Clone)]
pub struct Offsets {
    pattern: Pattern,
    region: Region,
    block_size: u64,
    rng: XorShift,
    cursor: u64,
}

impl Offsets {
    pub fn new(pattern: Pattern, region: Region, block_size: u32, seed: u64) -> Self {
        Self {
            pattern,
            region,
            block_size: u64::from(block_size),
            rng: XorShift::new(seed),
            cursor: 0,
        }
    }

    /// The next offset in bytes: block aligned, inside the region.
    pub fn next_offset(&mut self) -> u64 {
        let blocks = (self.region.len / self.block_size).max(1);
        let block = match self.pattern {
            Pattern::Random => self.rng.next_u64() % blocks,
            Pattern::Sequential => {
                let block = self.cursor % blocks;
                self.cursor = block + 1;
                block
            }
        };
        self.region.start + block * self.block_size
    }
}

/// Makes sure `path` is a `bytes`-long file of written (not sparse) blocks: reuses it when
/// it already has that size, otherwise writes it with pseudo-random data, syncs it and
/// drops it from the page cache.
pub fn prepare_file(path: &Path, bytes: u64) -> Result<(), String> {
    if std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.len() == bytes) {
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let partial = path.with_extension("partial");
    let fail = |e: std::io::Error| format!("cannot write {}: {e}", partial.display());
    let mut file = File::create(&partial).map_err(fail)?;
    let mut rng = XorShift::new(0x5eed);
    let mut chunk = vec![0u8; 1 << 20];
    let mut written = 0;
    while written < bytes {
        for word in chunk.chunks_exact_mut(8) {
            word.copy_from_slice(&rng.next_u64().to_le_bytes());
        }
        let n = (bytes - written).min(chunk.len() as u64) as usize;
        file.write_all(&chunk[..n]).map_err(fail)?;
        written += n as u64;
    }
    file.sync_all().map_err(fail)?;
    // SAFETY: plain advice on a file descriptor this function owns; no memory is passed.
    unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    std::fs::rename(&partial, path).map_err(|e| format!("{}: {e}", path.display()))
}

/// The size of a file or block device.
pub fn file_size(path: &Path) -> Result<u64, String> {
    use ringvisor_devices::nvme::{is_passthrough_path, Namespace};
    use std::io::{Seek, SeekFrom};
    if is_passthrough_path(path) {
        let file = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        return Namespace::identify(&file, path)
            .map(|namespace| namespace.bytes())
            .map_err(|e| e.to_string());
    }
    File::open(path)
        .and_then(|mut f| f.seek(SeekFrom::End(0)))
        .map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_stay_aligned_inside_their_region() {
        let region = Region::split(1 << 30, 2, 1, 128 << 10);
        assert_eq!(
            region,
            Region {
                start: 512 << 20,
                len: 512 << 20
            }
        );
        for pattern in [Pattern::Random, Pattern::Sequential] {
            let mut offsets = Offsets::new(pattern, region, 4096, 42);
            for _ in 0..10_000 {
                let at = offsets.next_offset();
                assert_eq!(at % 4096, 0);
                assert!(at >= region.start && at + 4096 <= region.start + region.len);
            }
        }
        let mut seq = Offsets::new(
            Pattern::Sequential,
            Region {
                start: 0,
                len: 8192,
            },
            4096,
            1,
        );
        let got: Vec<u64> = (0..3).map(|_| seq.next_offset()).collect();
        assert_eq!(got, [0, 4096, 0]);
    }
}
