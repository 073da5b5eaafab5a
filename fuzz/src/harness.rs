//! What every virtio target shares: a guest memory image the fuzzer writes, split queues
//! placed in it, and a stand-in for the reactor that runs the workers' ops synchronously.
//!
//! Only the hypervisor side is simulated here (the reactor, interrupt delivery); the device
//! code under test is the crate's own, reached through `VirtioDevice::activate` or a
//! worker's constructor.

use std::fs::File;
use std::os::fd::{FromRawFd, RawFd};
use std::path::PathBuf;

use ringvisor_devices::virtio::{GuestMemory, QueueWorkers};
use ringvisor_io::{IoBatch, IoOp};
use virtio_bindings::virtio_ring::VRING_DESC_F_NEXT;
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryRegion, MemoryRegionAddress};

/// Guest RAM: two adjacent regions (so a buffer can straddle them), then a hole, then a
/// small third region.
pub const REGION_SPLIT: u64 = 0x8000;
pub const RAM_END: u64 = 0x1_0000;
pub const HIGH_REGION: u64 = 0x2_0000;
pub const HIGH_REGION_LEN: u64 = 0x1000;

/// Bytes of the per-input header every virtio target reads before the memory image.
pub const HEADER_LEN: usize = 16;

/// Most ops one input may have run, and most drain rounds: a worker that keeps asking for
/// more I/O (a poll that always fires) must not make an input run forever.
const MAX_OPS: usize = 512;
const MAX_ROUNDS: usize = 3;

/// The header of a virtio input, then the guest memory image (copied to address 0).
pub struct Input<'a> {
    pub header: [u8; HEADER_LEN],
    pub image: &'a [u8],
}

impl<'a> Input<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        let mut header = [0u8; HEADER_LEN];
        let n = data.len().min(HEADER_LEN);
        header[..n].copy_from_slice(&data[..n]);
        Self {
            header,
            image: data.get(HEADER_LEN..).unwrap_or(&[]),
        }
    }

    /// Queue size: a power of two from 1 to `max`.
    pub fn queue_size(&self, max: u16) -> u16 {
        (1u16 << (self.header[0] % 9)).min(max)
    }

    pub fn event_idx(&self) -> bool {
        self.header[1] & 1 != 0
    }

    /// Seed of the I/O fault injection; 0 runs every op as the host would.
    pub fn fault_seed(&self) -> u8 {
        self.header[2]
    }

    pub fn rounds(&self) -> usize {
        1 + usize::from(self.header[3]) % MAX_ROUNDS
    }

    /// Feature bits the driver acks, out of `offered` (bytes 4..12).
    pub fn acked(&self, offered: u64) -> u64 {
        let mask = u64::from_le_bytes(self.header[4..12].try_into().unwrap_or_default());
        // VERSION_1 is always acked: the transport refuses FEATURES_OK without it.
        offered & (!mask | ringvisor_devices::virtio::VIRTIO_F_VERSION_1)
    }

    /// Target-specific bytes 12..16.
    pub fn extra(&self, i: usize) -> u8 {
        self.header[12 + i % 4]
    }

    pub fn memory(&self) -> GuestMemory {
        guest_memory(self.image)
    }
}

/// Guest memory holding `image` from address 0 (the part that fits the first two regions).
pub fn guest_memory(image: &[u8]) -> GuestMemory {
    let mem = GuestMemory::from_ranges(&[
        (GuestAddress(0), REGION_SPLIT as usize),
        (
            GuestAddress(REGION_SPLIT),
            (RAM_END - REGION_SPLIT) as usize,
        ),
        (GuestAddress(HIGH_REGION), HIGH_REGION_LEN as usize),
    ])
    .expect("anonymous guest memory");
    let n = image.len().min(RAM_END as usize);
    // The first two regions are adjacent, so one write covers both.
    mem.write_slice(&image[..n], GuestAddress(0))
        .expect("the image fits guest RAM");
    mem
}

/// Where one split queue's three parts are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueLayout {
    pub size: u16,
    pub desc: u64,
    pub avail: u64,
    pub used: u64,
}

impl QueueLayout {
    /// The byte after the used ring.
    pub fn end(&self) -> u64 {
        self.used + 6 + 8 * u64::from(self.size)
    }
}

/// `count` queues of `size` entries packed from address 0, each part aligned as the spec
/// asks (descriptors 16, avail 2, used 4), so the rings come first in the image.
pub fn queue_layouts(count: usize, size: u16) -> Vec<QueueLayout> {
    let mut at = 0u64;
    (0..count)
        .map(|_| {
            let desc = at.next_multiple_of(16);
            let avail = desc + 16 * u64::from(size);
            let used = (avail + 6 + 2 * u64::from(size)).next_multiple_of(4);
            let layout = QueueLayout {
                size,
                desc,
                avail,
                used,
            };
            at = layout.end();
            layout
        })
        .collect()
}

/// The first free byte after `layouts`, 256-byte aligned: where seeds put their buffers.
pub fn data_start(layouts: &[QueueLayout]) -> u64 {
    layouts
        .iter()
        .map(QueueLayout::end)
        .max()
        .unwrap_or(0)
        .next_multiple_of(0x100)
}

/// A ready queue as the transport hands it to `activate`.
pub fn make_queue(max_size: u16, layout: &QueueLayout, event_idx: bool) -> Queue {
    let mut queue = Queue::new(max_size).expect("a power-of-two maximum size");
    queue.set_size(layout.size);
    let split = |a: u64| (Some(a as u32), Some((a >> 32) as u32));
    let (lo, hi) = split(layout.desc);
    queue.set_desc_table_address(lo, hi);
    let (lo, hi) = split(layout.avail);
    queue.set_avail_ring_address(lo, hi);
    let (lo, hi) = split(layout.used);
    queue.set_used_ring_address(lo, hi);
    queue.set_event_idx(event_idx);
    queue.set_ready(true);
    queue
}

/// `count` queues of the input's size, in order, with their indices.
pub fn make_queues(input: &Input<'_>, max_size: u16, count: usize) -> Vec<(u16, Queue)> {
    queue_layouts(count, input.queue_size(max_size))
        .iter()
        .enumerate()
        .map(|(i, l)| (i as u16, make_queue(max_size, l, input.event_idx())))
        .collect()
}

/// xorshift64*: deterministic and dependency free (fault injection, smoke inputs).
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }
}

/// Host address ranges of guest RAM: every iovec a device hands the reactor must be in one.
pub fn host_ranges(mem: &GuestMemory) -> Vec<(usize, usize)> {
    mem.iter()
        .filter_map(|r| {
            let base = r.get_host_address(MemoryRegionAddress(0)).ok()? as usize;
            Some((base, r.len() as usize))
        })
        .collect()
}

/// Panics unless `[base, base + len)` is inside one guest RAM region.
pub fn assert_in_guest_ram(ranges: &[(usize, usize)], base: usize, len: usize) {
    let inside = ranges
        .iter()
        .any(|&(start, size)| base >= start && base.saturating_add(len) <= start + size);
    assert!(
        inside,
        "iovec {base:#x}+{len:#x} is outside guest RAM {ranges:x?}"
    );
}

fn is_regular_file(fd: RawFd) -> bool {
    // SAFETY: fstat writes one `struct stat` into `st`, a live, correctly sized buffer; a
    // bad fd only makes it fail.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        libc::fstat(fd, &mut st) == 0 && st.st_mode & libc::S_IFMT == libc::S_IFREG
    }
}

/// Runs `op` as the reactor would, synchronously. Reads and writes of regular files (disk
/// images, console output files, the memfd standing in for a TAP) really run, into and out
/// of guest RAM; anything that could block (eventfds, sockets, timers) completes at once
/// with what the kernel could have answered. With `faults`, some ops fail or come up short.
pub fn execute(op: &IoOp, faults: &mut Option<Rng>, ram: Option<&[(usize, usize)]>) -> i32 {
    if let (Some(ram), IoOp::Read { iovecs, .. } | IoOp::Write { iovecs, .. }) = (ram, op) {
        for v in iovecs {
            assert_in_guest_ram(ram, v.iov_base as usize, v.iov_len);
        }
    }
    let result = match op {
        IoOp::Read { fd, offset, iovecs } if is_regular_file(*fd) => {
            // SAFETY: the iovecs point into guest RAM (checked above where the target asks)
            // or a device's own bounce buffer, alive until the op is completed; the fd is
            // a regular file the device holds open.
            let n = unsafe {
                libc::preadv2(*fd, iovecs.as_ptr(), iovecs.len() as i32, *offset as i64, 0)
            };
            errno_or(n as i64)
        }
        IoOp::Write { fd, offset, iovecs } if is_regular_file(*fd) => {
            // SAFETY: as for the read: live buffers, a regular file.
            let n = unsafe {
                libc::pwritev2(*fd, iovecs.as_ptr(), iovecs.len() as i32, *offset as i64, 0)
            };
            errno_or(n as i64)
        }
        IoOp::Read { .. } => -libc::EAGAIN,
        IoOp::Write { iovecs, .. } => iovecs
            .iter()
            .map(|v| v.iov_len)
            .sum::<usize>()
            .min(i32::MAX as usize) as i32,
        // Durability does not matter here, and fdatasync on a disk is slow.
        IoOp::Flush { .. } => 0,
        IoOp::Fallocate {
            fd,
            mode,
            offset,
            len,
        } if is_regular_file(*fd) => {
            // SAFETY: fallocate on a regular file the device holds open; no memory is
            // passed.
            let rc = unsafe { libc::fallocate(*fd, *mode, *offset as i64, *len as i64) };
            errno_or(rc.into())
        }
        IoOp::Fallocate { .. } => -libc::EOPNOTSUPP,
        IoOp::Delay { .. } => 0,
        IoOp::Accept { .. } => -libc::EAGAIN,
        IoOp::Poll { events, .. } => (*events & (libc::POLLIN | libc::POLLOUT) as u32) as i32,
        // No fuzz target backs a device with an NVMe namespace.
        IoOp::UringCmd { .. } => -libc::EOPNOTSUPP,
    };
    let Some(rng) = faults else {
        return result;
    };
    if rng.below(6) != 0 {
        return result;
    }
    match rng.below(6) {
        0 => -libc::EIO,
        1 => -libc::ENOSPC,
        2 => -libc::ECANCELED,
        3 => -libc::EAGAIN,
        4 => -libc::EFAULT,
        _ if result > 0 => result / 2,
        _ => result,
    }
}

fn errno_or(ret: i64) -> i32 {
    if ret < 0 {
        -std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO)
    } else {
        ret.min(i64::from(i32::MAX)) as i32
    }
}

/// Drives activated workers the way a reactor does: drain, run the ops, complete them,
/// ask about interrupts and notifications; a worker that reports a [`QueueFault`] is no
/// longer served (the transport would set DEVICE_NEEDS_RESET).
///
/// [`QueueFault`]: ringvisor_io::QueueFault
pub struct Reactor {
    faults: Option<Rng>,
    ram: Option<Vec<(usize, usize)>>,
}

impl Reactor {
    /// `check_ram`: every Read/Write iovec must point into guest RAM (devices that bounce
    /// through their own buffers pass None).
    pub fn new(input: &Input<'_>, check_ram: Option<&GuestMemory>) -> Self {
        let seed = input.fault_seed();
        Self {
            faults: (seed != 0).then(|| Rng(0x9e37_79b9_7f4a_7c15 ^ u64::from(seed))),
            ram: check_ram.map(host_ranges),
        }
    }

    pub fn run(&mut self, workers: &mut QueueWorkers, rounds: usize) {
        let mut live = vec![true; workers.len()];
        let mut ops_left = MAX_OPS;
        for _ in 0..rounds {
            let mut pending: std::collections::VecDeque<(usize, u64, IoOp)> = Default::default();
            for (i, (_, worker)) in workers.iter_mut().enumerate() {
                if !live[i] {
                    continue;
                }
                let mut batch = IoBatch::new();
                let drained = worker
                    .disable_notification()
                    .and_then(|()| worker.drain(&mut batch));
                if drained.is_err() {
                    live[i] = false;
                }
                pending.extend(batch.drain().map(|(tag, op)| (i, tag, op)));
            }
            while let Some((i, tag, op)) = pending.pop_front() {
                if ops_left == 0 {
                    // Left in flight, as a reset would find them.
                    break;
                }
                ops_left -= 1;
                let result = execute(&op, &mut self.faults, self.ram.as_deref());
                drop(op);
                if !live[i] {
                    continue;
                }
                let mut batch = IoBatch::new();
                if workers[i].1.complete(tag, result, &mut batch).is_err() {
                    live[i] = false;
                }
                pending.extend(batch.drain().map(|(tag, op)| (i, tag, op)));
            }
            for (i, (_, worker)) in workers.iter_mut().enumerate() {
                if !live[i] {
                    continue;
                }
                let ok = worker.needs_interrupt().is_ok()
                    && worker.enable_notification().is_ok()
                    && worker.has_available().is_ok();
                let _ = worker.in_flight();
                let _ = worker.counters();
                live[i] = ok;
            }
        }
    }
}

/// A regular file in shared memory (tmpfs) when there is one, removed on drop.
pub struct ScratchFile {
    pub path: PathBuf,
}

impl ScratchFile {
    pub fn new(tag: &str, bytes: u64) -> Self {
        use std::sync::atomic::{AtomicU32, Ordering};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = ["/dev/shm"]
            .iter()
            .map(PathBuf::from)
            .find(|d| d.is_dir())
            .unwrap_or_else(std::env::temp_dir);
        let path = dir.join(format!(
            "ringvisor-fuzz-{tag}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        File::create(&path)
            .and_then(|f| f.set_len(bytes))
            .expect("a scratch file");
        Self { path }
    }

    /// Back to `bytes` zeros, so inputs do not see each other's writes.
    pub fn reset(&self, bytes: u64) {
        if let Ok(f) = std::fs::OpenOptions::new().write(true).open(&self.path) {
            let _ = f.set_len(0).and_then(|()| f.set_len(bytes));
        }
    }
}

impl Drop for ScratchFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// An anonymous regular file (memfd) holding `bytes`, positioned at its start.
pub fn memfd_with(bytes: &[u8]) -> File {
    // SAFETY: memfd_create reads the NUL-terminated name; the returned fd is new and owned
    // by the File from here on.
    let file = unsafe {
        let fd = libc::memfd_create(c"ringvisor-fuzz".as_ptr(), libc::MFD_CLOEXEC);
        assert!(fd >= 0, "memfd_create: {}", std::io::Error::last_os_error());
        File::from_raw_fd(fd)
    };
    use std::io::{Seek, Write};
    let mut f = file;
    f.write_all(bytes).expect("memfd write");
    f.rewind().expect("memfd seek");
    f
}

/// Builds a virtio input: header plus guest memory image, for seeds and tests.
pub struct Builder {
    pub header: [u8; HEADER_LEN],
    pub image: Vec<u8>,
    pub queues: Vec<QueueLayout>,
    next_desc: Vec<u16>,
    avail: Vec<u16>,
}

pub const R: u16 = 0;
pub const W: u16 = virtio_bindings::virtio_ring::VRING_DESC_F_WRITE as u16;
pub const INDIRECT: u16 = virtio_bindings::virtio_ring::VRING_DESC_F_INDIRECT as u16;

impl Builder {
    /// `count` queues of `2^size_log2` entries; every feature acked, no faults, one round.
    pub fn new(count: usize, size_log2: u8) -> Self {
        let mut header = [0u8; HEADER_LEN];
        header[0] = size_log2;
        let queues = queue_layouts(count, 1 << size_log2);
        Self {
            header,
            image: Vec::new(),
            next_desc: vec![0; count],
            avail: vec![0; count],
            queues,
        }
    }

    pub fn data(&self) -> u64 {
        data_start(&self.queues)
    }

    pub fn put(&mut self, addr: u64, bytes: &[u8]) {
        let end = addr as usize + bytes.len();
        if self.image.len() < end {
            self.image.resize(end, 0);
        }
        self.image[addr as usize..end].copy_from_slice(bytes);
    }

    pub fn desc(&mut self, table: u64, index: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let mut d = [0u8; 16];
        d[..8].copy_from_slice(&addr.to_le_bytes());
        d[8..12].copy_from_slice(&len.to_le_bytes());
        d[12..14].copy_from_slice(&flags.to_le_bytes());
        d[14..16].copy_from_slice(&next.to_le_bytes());
        self.put(table + 16 * u64::from(index), &d);
    }

    /// Stores `descs` (addr, len, flags) linked in order in queue `q`'s table and
    /// publishes the chain; returns its head.
    pub fn chain(&mut self, q: usize, descs: &[(u64, u32, u16)]) -> u16 {
        let layout = self.queues[q];
        let head = self.next_desc[q];
        for (i, &(addr, len, flags)) in descs.iter().enumerate() {
            let index = (head + i as u16) % layout.size;
            let next = (index + 1) % layout.size;
            let flags = if i + 1 < descs.len() {
                flags | VRING_DESC_F_NEXT as u16
            } else {
                flags
            };
            self.desc(layout.desc, index, addr, len, flags, next);
        }
        self.next_desc[q] = (head + descs.len() as u16) % layout.size;
        self.publish(q, head);
        head
    }

    /// Puts `head` on queue `q`'s avail ring.
    pub fn publish(&mut self, q: usize, head: u16) {
        let layout = self.queues[q];
        let slot = u64::from(self.avail[q] % layout.size);
        self.put(layout.avail + 4 + 2 * slot, &head.to_le_bytes());
        self.avail[q] = self.avail[q].wrapping_add(1);
        let idx = self.avail[q];
        self.put(layout.avail + 2, &idx.to_le_bytes());
    }

    pub fn build(&self) -> Vec<u8> {
        let mut out = self.header.to_vec();
        out.extend_from_slice(&self.image);
        out
    }
}
