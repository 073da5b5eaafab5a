//! Helpers shared by the device unit tests.

use std::fs::{self, File};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use ringvisor_io::IoOp;
use virtio_bindings::virtio_ring::VRING_DESC_F_NEXT;
use virtio_queue::desc::{split::Descriptor, RawDescriptor};
use virtio_queue::mock::MockSplitQueue;
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress};

use super::GuestMemory;

/// A sparse image in the temp directory, removed on drop.
pub(crate) struct TempDisk {
    pub path: PathBuf,
}

impl TempDisk {
    pub fn new(bytes: u64) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "ringvisor-dev-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        File::create(&path).unwrap().set_len(bytes).unwrap();
        Self { path }
    }

    pub fn filled(bytes: usize, byte: u8) -> Self {
        let disk = Self::new(0);
        fs::write(&disk.path, vec![byte; bytes]).unwrap();
        disk
    }

    pub fn contents(&self) -> Vec<u8> {
        fs::read(&self.path).unwrap()
    }
}

impl Drop for TempDisk {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// The driver side of one split queue (virtio-queue's MockSplitQueue): descriptors,
/// avail ring, and reading back used entries.
pub(crate) struct MockDriver<'a> {
    pub mem: &'a GuestMemory,
    pub vq: MockSplitQueue<'a, GuestMemory>,
    pub qsize: u16,
    used_ring: u64,
    next_desc: u16,
    avail: u16,
    used: u16,
}

impl<'a> MockDriver<'a> {
    /// The driver and the device's view of the queue. The used ring goes to `used_ring`:
    /// the mock sizes the avail ring in entries rather than bytes, so its own used ring
    /// overlaps the avail ring's used_event field.
    pub fn new(mem: &'a GuestMemory, qsize: u16, used_ring: u64, event_idx: bool) -> (Self, Queue) {
        let vq = MockSplitQueue::new(mem, qsize);
        let mut queue: Queue = vq.create_queue().unwrap();
        queue.set_used_ring_address(Some(used_ring as u32), Some(0));
        queue.set_event_idx(event_idx);
        let driver = Self {
            mem,
            vq,
            qsize,
            used_ring,
            next_desc: 0,
            avail: 0,
            used: 0,
        };
        (driver, queue)
    }

    pub fn store(&self, index: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let desc = Descriptor::new(addr, len, flags, next);
        self.vq
            .desc_table()
            .store(index, RawDescriptor::from(desc))
            .unwrap();
    }

    /// Publishes a chain of (addr, len, flags) linked in order; returns its head.
    pub fn add(&mut self, descs: &[(u64, u32, u16)]) -> u16 {
        let n = descs.len() as u16;
        if self.next_desc + n > self.qsize {
            self.next_desc = 0;
        }
        let head = self.next_desc;
        for (i, &(addr, len, flags)) in descs.iter().enumerate() {
            let index = head + i as u16;
            if i as u16 + 1 == n {
                self.store(index, addr, len, flags, 0);
            } else {
                self.store(
                    index,
                    addr,
                    len,
                    flags | VRING_DESC_F_NEXT as u16,
                    index + 1,
                );
            }
        }
        self.next_desc += n;
        self.publish(head);
        head
    }

    pub fn publish(&mut self, head: u16) {
        let slot = usize::from(self.avail % self.qsize);
        self.vq.avail().ring().ref_at(slot).unwrap().store(head);
        self.avail = self.avail.wrapping_add(1);
        self.vq.avail().idx().store(self.avail);
    }

    /// The next used entry: (head, len).
    pub fn next_used(&mut self) -> (u32, u32) {
        let idx: u16 = self.mem.read_obj(GuestAddress(self.used_ring + 2)).unwrap();
        assert_eq!(idx, self.used.wrapping_add(1));
        let elem = self.used_ring + 4 + 8 * u64::from(self.used % self.qsize);
        let id: u32 = self.mem.read_obj(GuestAddress(elem)).unwrap();
        let len: u32 = self.mem.read_obj(GuestAddress(elem + 4)).unwrap();
        self.used = self.used.wrapping_add(1);
        (id, len)
    }

    /// Used entries the device added that were not read yet.
    pub fn pending_used(&self) -> u16 {
        let idx: u16 = self.mem.read_obj(GuestAddress(self.used_ring + 2)).unwrap();
        idx.wrapping_sub(self.used)
    }
}

/// Runs an op the way the reactor would, synchronously.
pub(crate) fn execute(op: IoOp) -> i32 {
    // Driver commands need the device behind them (an NVMe namespace): the lab tests them.
    if let IoOp::UringCmd { .. } = op {
        return -libc::EOPNOTSUPP;
    }
    // SAFETY: the iovecs point into the test's guest memory, alive for the whole call, and
    // the fds are the device's open image.
    let ret = unsafe {
        match op {
            IoOp::Read { fd, offset, iovecs } => {
                libc::preadv2(fd, iovecs.as_ptr(), iovecs.len() as i32, offset as i64, 0) as i64
            }
            IoOp::Write { fd, offset, iovecs } => {
                libc::pwritev2(fd, iovecs.as_ptr(), iovecs.len() as i32, offset as i64, 0) as i64
            }
            IoOp::Flush { fd } => libc::fdatasync(fd).into(),
            IoOp::Fallocate {
                fd,
                mode,
                offset,
                len,
            } => libc::fallocate(fd, mode, offset as i64, len as i64).into(),
            IoOp::Accept { fd } => libc::accept4(
                fd,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                libc::SOCK_CLOEXEC,
            )
            .into(),
            IoOp::Poll { fd, events } => {
                let mut pollfd = libc::pollfd {
                    fd,
                    events: events as i16,
                    revents: 0,
                };
                match libc::poll(&mut pollfd, 1, -1) {
                    1 => pollfd.revents.into(),
                    rc => rc.into(),
                }
            }
            IoOp::Delay { nanos } => {
                std::thread::sleep(std::time::Duration::from_nanos(nanos));
                0
            }
            IoOp::UringCmd { .. } => unreachable!("answered above"),
        }
    };
    if ret < 0 {
        -std::io::Error::last_os_error().raw_os_error().unwrap()
    } else {
        ret as i32
    }
}
