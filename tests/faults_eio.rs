//! Host faults under a running device: a backing file whose middle returns EIO. The guest
//! sees I/O errors for the requests that touch it, everything else on that disk keeps
//! working, and a second disk is unaffected.
//!
//! There is no device-mapper or nbd on the test machines, so the failing file comes from
//! a tiny FUSE file system served by a thread of this test over /dev/fuse (raw protocol,
//! no library). Root: the test mounts it; CI runs as root.

use std::ffi::CString;
use std::ops::Range;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ringvisor_devices::virtio::block::BlockConfig;
use ringvisor_rig::devpath::{
    BlockRig, Completion, VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_OK, VIRTIO_BLK_T_FLUSH,
};

const QUEUE_SIZE: u16 = 64;
const MIB: u64 = 1 << 20;
const DISK_BYTES: u64 = 4 * MIB;
/// Reads and writes touching the second MiB fail with EIO.
const BAD: Range<u64> = MIB..2 * MIB;
const CHUNK: usize = 64 << 10;
const SECTOR: u64 = 512;
const FILE_NAME: &[u8] = b"disk.img";

// FUSE protocol numbers (include/uapi/linux/fuse.h).
const ROOT_ID: u64 = 1;
const FILE_ID: u64 = 2;
const IN_HEADER_LEN: usize = 40;
const OUT_HEADER_LEN: usize = 16;
const OP_LOOKUP: u32 = 1;
const OP_FORGET: u32 = 2;
const OP_GETATTR: u32 = 3;
const OP_OPEN: u32 = 14;
const OP_READ: u32 = 15;
const OP_WRITE: u32 = 16;
const OP_STATFS: u32 = 17;
const OP_RELEASE: u32 = 18;
const OP_FSYNC: u32 = 20;
const OP_FLUSH: u32 = 25;
const OP_INIT: u32 = 26;
const OP_INTERRUPT: u32 = 36;
const OP_DESTROY: u32 = 38;
const OP_BATCH_FORGET: u32 = 42;
/// The protocol this server speaks: 7.31 has every structure at its current size.
const MINOR: u32 = 31;
const INIT_BIG_WRITES: u32 = 1 << 5;
/// Every READ and WRITE reaches the server with the guest's offset and length: no page
/// cache, so no readahead from a good range spills into the bad one and no write is
/// acknowledged before the server saw it.
const FOPEN_DIRECT_IO: u32 = 1 << 0;
const MAX_WRITE: u32 = 128 << 10;
/// The kernel wants a read buffer that holds the largest WRITE plus its headers.
const REQUEST_BUFFER: usize = MAX_WRITE as usize + 4096;

/// The served file: its bytes, the range that fails, and how many requests failed.
struct Backing {
    data: Mutex<Vec<u8>>,
    bad: Range<u64>,
    failed: AtomicU64,
}

impl Backing {
    fn touches_bad(&self, offset: u64, len: u64) -> bool {
        offset < self.bad.end && offset.saturating_add(len) > self.bad.start
    }

    fn bytes(&self) -> std::sync::MutexGuard<'_, Vec<u8>> {
        // The server thread must not die of a panic elsewhere: a poisoned lock still
        // holds consistent bytes (every update is one copy).
        self.data.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
}

fn put32(out: &mut Vec<u8>, values: &[u32]) {
    values
        .iter()
        .for_each(|v| out.extend_from_slice(&v.to_ne_bytes()));
}

fn put64(out: &mut Vec<u8>, values: &[u64]) {
    values
        .iter()
        .for_each(|v| out.extend_from_slice(&v.to_ne_bytes()));
}

/// `struct fuse_attr` of the root directory or of the disk file.
fn attr(out: &mut Vec<u8>, node: u64, size: u64) {
    let (mode, nlink) = if node == ROOT_ID {
        (libc::S_IFDIR | 0o755, 2)
    } else {
        (libc::S_IFREG | 0o644, 1)
    };
    // ino, size, blocks, atime, mtime, ctime
    put64(out, &[node, size, size.div_ceil(512), 0, 0, 0]);
    // atimensec, mtimensec, ctimensec, mode, nlink, uid, gid, rdev, blksize, flags
    put32(out, &[0, 0, 0, mode, nlink, 0, 0, 0, 4096, 0]);
}

/// Attributes stay valid for an hour: nothing but the server changes them.
const VALID_SECS: u64 = 3600;

/// Answers one request: `Some(Ok(payload))`, `Some(Err(errno))`, or `None` for the
/// requests that take no reply. Never panics on what the kernel sent.
fn answer(backing: &Backing, opcode: u32, node: u64, body: &[u8]) -> Option<Result<Vec<u8>, i32>> {
    let size = backing.bytes().len() as u64;
    let mut out = Vec::new();
    let reply = match opcode {
        OP_FORGET | OP_BATCH_FORGET | OP_INTERRUPT => return None,
        OP_INIT => {
            let (Some(major), Some(minor), Some(readahead), Some(flags)) = (
                u32_at(body, 0),
                u32_at(body, 4),
                u32_at(body, 8),
                u32_at(body, 12),
            ) else {
                return Some(Err(libc::EINVAL));
            };
            // A kernel of another major version waits for a reply naming ours.
            let minor = if major == 7 { minor.min(MINOR) } else { MINOR };
            // major, minor, max_readahead, flags
            put32(&mut out, &[7, minor, readahead, flags & INIT_BIG_WRITES]);
            // max_background, congestion_threshold (u16 each), max_write, time_gran
            put32(&mut out, &[16 | (12 << 16), MAX_WRITE, 1]);
            // max_pages, map_alignment (u16 each: 0, the defaults), unused[8]
            put32(&mut out, &[0; 9]);
            Ok(out)
        }
        OP_LOOKUP => {
            if node != ROOT_ID || body.split(|&b| b == 0).next() != Some(FILE_NAME) {
                return Some(Err(libc::ENOENT));
            }
            // nodeid, generation, entry_valid, attr_valid, entry_valid_nsec, attr_valid_nsec
            put64(&mut out, &[FILE_ID, 1, VALID_SECS, VALID_SECS]);
            put32(&mut out, &[0, 0]);
            attr(&mut out, FILE_ID, size);
            Ok(out)
        }
        OP_GETATTR if node == ROOT_ID || node == FILE_ID => {
            // attr_valid, attr_valid_nsec, dummy
            put64(&mut out, &[VALID_SECS]);
            put32(&mut out, &[0, 0]);
            attr(&mut out, node, if node == FILE_ID { size } else { 0 });
            Ok(out)
        }
        OP_OPEN if node == FILE_ID => {
            // fh, open_flags, padding
            put64(&mut out, &[0]);
            put32(&mut out, &[FOPEN_DIRECT_IO, 0]);
            Ok(out)
        }
        OP_READ if node == FILE_ID => {
            let (Some(offset), Some(len)) = (u64_at(body, 8), u32_at(body, 16)) else {
                return Some(Err(libc::EINVAL));
            };
            if backing.touches_bad(offset, u64::from(len)) {
                backing.failed.fetch_add(1, Ordering::Relaxed);
                return Some(Err(libc::EIO));
            }
            let data = backing.bytes();
            let start = usize::try_from(offset).map_or(data.len(), |o| o.min(data.len()));
            let end = start.saturating_add(len as usize).min(data.len());
            Ok(data[start..end].to_vec())
        }
        OP_WRITE if node == FILE_ID => {
            // fuse_write_in is 40 bytes; the data follows.
            let (Some(offset), Some(len)) = (u64_at(body, 8), u32_at(body, 16)) else {
                return Some(Err(libc::EINVAL));
            };
            let Some(bytes) = body.get(40..40 + len as usize) else {
                return Some(Err(libc::EINVAL));
            };
            if backing.touches_bad(offset, u64::from(len)) {
                backing.failed.fetch_add(1, Ordering::Relaxed);
                return Some(Err(libc::EIO));
            }
            let mut data = backing.bytes();
            let start = usize::try_from(offset).unwrap_or(usize::MAX);
            // The file does not grow: a write past its end is a full disk.
            let Some(dst) = data.get_mut(start..start.saturating_add(bytes.len())) else {
                return Some(Err(libc::ENOSPC));
            };
            dst.copy_from_slice(bytes);
            // size, padding
            put32(&mut out, &[len, 0]);
            Ok(out)
        }
        OP_STATFS => {
            let blocks = size / 4096;
            // blocks, bfree, bavail, files, ffree
            put64(&mut out, &[blocks, 0, 0, 2, 0]);
            // bsize, namelen, frsize, padding, spare[6]
            put32(&mut out, &[4096, 255, 4096, 0, 0, 0, 0, 0, 0, 0]);
            Ok(out)
        }
        OP_FLUSH | OP_RELEASE | OP_FSYNC | OP_DESTROY => Ok(out),
        // GETXATTR, SETATTR, ACCESS, OPENDIR, ... and requests on unknown nodes.
        _ => Err(libc::ENOSYS),
    };
    Some(reply)
}

/// Reads requests from /dev/fuse and answers them until the file system goes away.
fn serve(fd: OwnedFd, backing: Arc<Backing>) {
    let mut request = vec![0u8; REQUEST_BUFFER];
    loop {
        // SAFETY: `request` is a live buffer of `request.len()` writable bytes.
        let n = unsafe { libc::read(fd.as_raw_fd(), request.as_mut_ptr().cast(), request.len()) };
        let Ok(n) = usize::try_from(n) else {
            match std::io::Error::last_os_error().raw_os_error() {
                // Interrupted, or a request the kernel withdrew before we read it.
                Some(libc::EINTR | libc::EAGAIN | libc::ENOENT) => continue,
                // ENODEV: unmounted and every file closed.
                _ => return,
            }
        };
        let request = &request[..n];
        let (Some(len), Some(opcode), Some(unique), Some(node)) = (
            u32_at(request, 0),
            u32_at(request, 4),
            u64_at(request, 8),
            u64_at(request, 16),
        ) else {
            continue; // Not even a header: nothing to answer to.
        };
        let end = (len as usize).clamp(IN_HEADER_LEN, n.max(IN_HEADER_LEN));
        let body = request.get(IN_HEADER_LEN..end).unwrap_or(&[]);
        let Some(reply) = answer(&backing, opcode, node, body) else {
            continue;
        };
        let (error, payload) = match reply {
            Ok(payload) => (0, payload),
            Err(errno) => (-errno, Vec::new()),
        };
        let mut out = Vec::with_capacity(OUT_HEADER_LEN + payload.len());
        put32(
            &mut out,
            &[(OUT_HEADER_LEN + payload.len()) as u32, error as u32],
        );
        put64(&mut out, &[unique]);
        out.extend_from_slice(&payload);
        // SAFETY: `out` is a live buffer of `out.len()` bytes. A failed write (ENOENT:
        // the request was interrupted meanwhile) leaves nothing to do.
        unsafe { libc::write(fd.as_raw_fd(), out.as_ptr().cast(), out.len()) };
        if opcode == OP_DESTROY {
            return;
        }
    }
}

/// The FUSE file system, mounted on a fresh directory and unmounted on drop (also when
/// the test fails, so no dead mount is left behind).
struct FuseDisk {
    dir: PathBuf,
    backing: Arc<Backing>,
    server: Option<JoinHandle<()>>,
}

impl FuseDisk {
    fn mount() -> Option<Self> {
        let dir = std::env::temp_dir().join(format!("rv-fuse-eio-{}", std::process::id()));
        std::fs::create_dir_all(&dir).ok()?;
        let skip = |what: &str, err: std::io::Error| {
            ringvisor_test_support::skip(format!(
                "cannot {what} here (needs root and /dev/fuse): {err}"
            ));
            let _ = std::fs::remove_dir(&dir);
        };
        // SAFETY: a valid NUL-terminated path; the result is checked before use.
        let raw = unsafe { libc::open(c"/dev/fuse".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
        if raw < 0 {
            skip("open /dev/fuse", std::io::Error::last_os_error());
            return None;
        }
        // SAFETY: `raw` was just opened and nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let target = CString::new(dir.as_os_str().as_encoded_bytes()).ok()?;
        let options = CString::new(format!(
            "fd={raw},rootmode=40000,user_id=0,group_id=0,allow_other"
        ))
        .ok()?;
        // SAFETY: every pointer is a valid NUL-terminated string that outlives the call;
        // the kernel takes its own reference to the /dev/fuse file named by `fd=`.
        let rc = unsafe {
            libc::mount(
                c"rv-fuse-eio".as_ptr(),
                target.as_ptr(),
                c"fuse".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV,
                options.as_ptr().cast(),
            )
        };
        if rc != 0 {
            skip("mount a FUSE file system", std::io::Error::last_os_error());
            return None;
        }
        let backing = Arc::new(Backing {
            data: Mutex::new(vec![0; DISK_BYTES as usize]),
            bad: BAD,
            failed: AtomicU64::new(0),
        });
        let served = Arc::clone(&backing);
        let mut disk = Self {
            dir,
            backing,
            server: None,
        };
        // A failed spawn panics here, and dropping `disk` unmounts.
        let server = std::thread::Builder::new()
            .name("fuse-eio".into())
            .spawn(move || serve(fd, served))
            .expect("spawn the FUSE server thread");
        disk.server = Some(server);
        Some(disk)
    }

    fn failed(&self) -> u64 {
        self.backing.failed.load(Ordering::Relaxed)
    }
}

impl Drop for FuseDisk {
    fn drop(&mut self) {
        if let Ok(target) = CString::new(self.dir.as_os_str().as_encoded_bytes()) {
            // SAFETY: a valid path string; MNT_DETACH unmounts even if a file is still
            // open (the server keeps answering until the last one is closed).
            unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
        }
        // Once nothing holds the file system the kernel ends the connection and the
        // server's read fails. A file a failed test leaked keeps it alive: do not hang.
        if let Some(server) = self.server.take() {
            let deadline = Instant::now() + Duration::from_secs(5);
            while !server.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if server.is_finished() {
                let _ = server.join();
            }
        }
        let _ = std::fs::remove_dir(&self.dir);
    }
}

fn disk(path: PathBuf) -> BlockRig {
    BlockRig::new(
        BlockConfig {
            path,
            read_only: false,
            // FUSE serves the file without the page cache anyway (FOPEN_DIRECT_IO).
            direct: false,
            queues: 1,
            serial: None,
        },
        &[None],
        QUEUE_SIZE,
    )
    .unwrap()
}

fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| seed.wrapping_add(i as u8) ^ (i >> 9) as u8)
        .collect()
}

/// Writes and reads a chunk on the healthy disk: it must not notice the other one failing.
fn check_other(other: &mut BlockRig, round: u8) {
    let data = pattern(round, CHUNK);
    let sector = u64::from(round) * (CHUNK as u64 / SECTOR);
    assert_eq!(
        other.write(0, sector, &data).unwrap().status,
        VIRTIO_BLK_S_OK
    );
    let (completion, back) = other.read(0, sector, CHUNK as u32).unwrap();
    assert_eq!(completion.status, VIRTIO_BLK_S_OK);
    assert!(back == data, "the other disk lost round {round}");
}

#[test]
fn eio_from_the_backing_file_fails_only_the_requests_that_touch_it() {
    let Some(fs) = FuseDisk::mount() else {
        return;
    };
    let other_path = std::env::temp_dir().join(format!("rv-eio-other-{}.img", std::process::id()));
    std::fs::File::create(&other_path)
        .and_then(|f| f.set_len(DISK_BYTES))
        .unwrap();
    let mut flaky = disk(fs.dir.join("disk.img"));
    let mut other = disk(other_path.clone());

    // Good ranges, including the chunks right before and right after the bad MiB.
    let good = [
        0,
        BAD.start - CHUNK as u64,
        BAD.end,
        DISK_BYTES - CHUNK as u64,
    ];
    for (i, &offset) in good.iter().enumerate() {
        let data = pattern(i as u8 + 1, CHUNK);
        let Completion { status, .. } = flaky.write(0, offset / SECTOR, &data).unwrap();
        assert_eq!(status, VIRTIO_BLK_S_OK, "write at {offset:#x}");
        let (completion, back) = flaky.read(0, offset / SECTOR, CHUNK as u32).unwrap();
        assert_eq!(completion.status, VIRTIO_BLK_S_OK, "read at {offset:#x}");
        assert_eq!(completion.used_len as usize, CHUNK + 1);
        assert!(
            back == data,
            "read at {offset:#x} differs from what was written"
        );
        let stored = fs.backing.bytes()[offset as usize..][..CHUNK] == data[..];
        assert!(stored, "the write at {offset:#x} did not reach the file");
        check_other(&mut other, i as u8);
    }
    assert_eq!(fs.failed(), 0, "nothing touched the bad range yet");

    // Inside the bad range, and straddling its start and its end.
    let bad = [
        (BAD.start + MIB / 2, CHUNK),
        (BAD.start - 4096, 8192),
        (BAD.end - 4096, 8192),
    ];
    for (i, &(offset, len)) in bad.iter().enumerate() {
        let sector = offset / SECTOR;
        let (completion, _) = flaky.read(0, sector, len as u32).unwrap();
        assert_eq!(
            completion.status, VIRTIO_BLK_S_IOERR,
            "read of {len} at {offset:#x}"
        );
        let data = pattern(0xa0 + i as u8, len);
        let Completion { status, .. } = flaky.write(0, sector, &data).unwrap();
        assert_eq!(status, VIRTIO_BLK_S_IOERR, "write of {len} at {offset:#x}");
        check_other(&mut other, 8 + i as u8);
    }
    // Every IOERR is an EIO the file system returned, not something the device made up.
    assert!(fs.failed() >= 2 * bad.len() as u64, "{} EIOs", fs.failed());
    let untouched = fs.backing.bytes()[BAD.start as usize..BAD.end as usize]
        .iter()
        .all(|&b| b == 0);
    assert!(untouched, "a failed write changed the bad range");

    // The device keeps serving: the good data is still there, and a flush goes through.
    for (i, &offset) in good.iter().enumerate() {
        let (completion, back) = flaky.read(0, offset / SECTOR, CHUNK as u32).unwrap();
        assert_eq!(
            completion.status, VIRTIO_BLK_S_OK,
            "read at {offset:#x} after the errors"
        );
        assert!(
            back == pattern(i as u8 + 1, CHUNK),
            "data at {offset:#x} changed"
        );
    }
    let flush = flaky.roundtrip(0, VIRTIO_BLK_T_FLUSH, 0, &[]).unwrap();
    assert_eq!(flush.status, VIRTIO_BLK_S_OK);
    check_other(&mut other, 16);

    let faults = (flaky.faults(), other.faults());
    assert!(
        faults.0.is_empty() && faults.1.is_empty(),
        "queue faults: {faults:?}"
    );
    flaky.shutdown().unwrap();
    other.shutdown().unwrap();
    let _ = std::fs::remove_file(other_path);
    drop(fs);
}
