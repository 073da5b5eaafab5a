//! A TAP interface opened for virtio-net: no packet information, a 12-byte virtio-net
//! header on every frame, one file per queue pair (IFF_MULTI_QUEUE).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

/// Bytes of `struct virtio_net_hdr_v1` (with num_buffers): what the guest and the TAP
/// both put in front of every frame.
pub const VNET_HEADER_LEN: usize = 12;
/// Longest interface name, NUL excluded.
const IFNAMSIZ: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum TapError {
    #[error(
        "tap {name}: not an interface name (1 to 15 printable ASCII characters, no '/' or ':')"
    )]
    BadName { name: String },
    #[error("tap {name}: cannot open /dev/net/tun: {source}")]
    OpenTun {
        name: String,
        #[source]
        source: io::Error,
    },
    #[error(
        "tap {name} does not exist and cannot be created here (creating it needs \
         CAP_NET_ADMIN; or create it with `ip tuntap add {name} mode tap multi_queue`)"
    )]
    CannotCreate { name: String },
    #[error("tap {name} is busy: another process holds it, or it was not made multi_queue")]
    Busy { name: String },
    #[error("tap {name} exists but is not a TAP with virtio-net headers: {source}")]
    NotATap {
        name: String,
        #[source]
        source: io::Error,
    },
    #[error("tap {name}: {what}: {source}")]
    Ioctl {
        name: String,
        what: &'static str,
        #[source]
        source: io::Error,
    },
}

/// Whether the kernel accepts `name` as an interface name (its dev_valid_name).
pub fn valid_interface_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() < IFNAMSIZ
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'/' && b != b':')
}

/// `struct ifreq` with the name and the flags, the part TUNSETIFF reads.
#[repr(C)]
struct IfReq {
    name: [u8; IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// One queue of a TAP interface.
#[derive(Debug)]
pub struct Tap {
    name: String,
    file: File,
}

impl Tap {
    /// Attaches a queue to TAP `name` (created if missing and allowed); `multi_queue`
    /// for devices with more than one queue pair.
    pub fn open(name: &str, multi_queue: bool) -> Result<Self, TapError> {
        if !valid_interface_name(name) {
            return Err(TapError::BadName {
                name: name.to_owned(),
            });
        }
        // Non-blocking. io_uring still waits for frames (it polls a file that says
        // EAGAIN), but it only tries a read or write inline on a file that is O_NONBLOCK
        // or FMODE_NOWAIT, and tun is not FMODE_NOWAIT on every kernel (the lab's 6.1): a
        // blocking TAP sent every frame through an io-wq worker thread there. The receive
        // burst's plain reads rely on it too.
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open("/dev/net/tun")
            .map_err(|source| TapError::OpenTun {
                name: name.to_owned(),
                source,
            })?;
        let mut req = IfReq {
            name: [0; IFNAMSIZ],
            flags: (libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR) as libc::c_short,
            _pad: [0; 22],
        };
        if multi_queue {
            req.flags |= libc::IFF_MULTI_QUEUE as libc::c_short;
        }
        req.name[..name.len()].copy_from_slice(name.as_bytes());
        // SAFETY: TUNSETIFF reads (and may write back) one ifreq; `req` is a live,
        // ifreq-sized and -laid-out buffer, and `file` is an open tun control file.
        let rc = unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETIFF, &mut req) };
        if rc < 0 {
            let err = io::Error::last_os_error();
            let exists = Path::new("/sys/class/net").join(name).exists();
            return Err(match err.raw_os_error() {
                Some(libc::EPERM) if !exists => TapError::CannotCreate {
                    name: name.to_owned(),
                },
                Some(libc::EBUSY) => TapError::Busy {
                    name: name.to_owned(),
                },
                _ => TapError::NotATap {
                    name: name.to_owned(),
                    source: err,
                },
            });
        }
        let tap = Self {
            name: name.to_owned(),
            file,
        };
        let len = VNET_HEADER_LEN as libc::c_int;
        // SAFETY: TUNSETVNETHDRSZ reads one int through the pointer, which is `len`.
        let rc = unsafe { libc::ioctl(tap.fd(), libc::TUNSETVNETHDRSZ, &len) };
        tap.check(rc, "setting the virtio-net header size")?;
        tap.set_offload(0)?;
        Ok(tap)
    }

    /// A queue over any open file, with no TAP interface behind it: only for the fuzz
    /// targets (`fuzz/`), which run the workers without CAP_NET_ADMIN. The ioctls of a real
    /// TAP fail on it.
    #[doc(hidden)]
    pub fn from_file(name: &str, file: File) -> Self {
        Self {
            name: name.to_owned(),
            file,
        }
    }

    fn check(&self, rc: libc::c_int, what: &'static str) -> Result<(), TapError> {
        if rc < 0 {
            return Err(TapError::Ioctl {
                name: self.name.clone(),
                what,
                source: io::Error::last_os_error(),
            });
        }
        Ok(())
    }

    /// TUNSETOFFLOAD: which offloads the TAP may hand us (frames for the guest), from
    /// what the guest negotiated (TUN_F_* flags).
    pub fn set_offload(&self, flags: libc::c_uint) -> Result<(), TapError> {
        // SAFETY: TUNSETOFFLOAD takes the flags by value; `self.file` is an attached TAP.
        let rc = unsafe { libc::ioctl(self.fd(), libc::TUNSETOFFLOAD, flags as libc::c_ulong) };
        self.check(rc, "setting offloads")
    }

    /// Attaches this queue to the interface (frames are steered to it) or detaches it
    /// (TUNSETQUEUE), following the queue pairs the guest uses.
    pub fn set_queue_enabled(&self, enabled: bool) -> Result<(), TapError> {
        let mut req = IfReq {
            name: [0; IFNAMSIZ],
            flags: if enabled {
                libc::IFF_ATTACH_QUEUE
            } else {
                libc::IFF_DETACH_QUEUE
            } as libc::c_short,
            _pad: [0; 22],
        };
        // SAFETY: TUNSETQUEUE reads one ifreq; `req` is a live ifreq-sized buffer.
        let rc = unsafe { libc::ioctl(self.fd(), libc::TUNSETQUEUE, &mut req) };
        if rc < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EINVAL) {
            // Already in the asked state (tun refuses a second attach or detach).
            return Ok(());
        }
        self.check(rc, "attaching or detaching a queue")
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}

/// A queue pair's TAP queue, replaced when an interface deleted under the guest is
/// created again. Workers keep an `Arc<Tap>` and compare the generation once per drain,
/// so the data path never takes the lock.
#[derive(Debug)]
pub struct TapSlot {
    tap: RwLock<Arc<Tap>>,
    generation: AtomicU64,
    name: String,
    multi_queue: bool,
}

impl TapSlot {
    pub fn new(tap: Tap, multi_queue: bool) -> Self {
        Self {
            name: tap.name().to_owned(),
            tap: RwLock::new(Arc::new(tap)),
            generation: AtomicU64::new(0),
            multi_queue,
        }
    }

    pub fn get(&self) -> Arc<Tap> {
        Arc::clone(&self.tap.read().unwrap_or_else(|p| p.into_inner()))
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Attaches a new queue once the interface exists again (never creating it: an
    /// administrator deleted it), with the offloads the guest negotiated. Ok(false):
    /// not there yet.
    pub fn reattach(&self, offload: libc::c_uint) -> Result<bool, TapError> {
        if !interface_exists(&self.name) {
            return Ok(false);
        }
        let tap = Tap::open(&self.name, self.multi_queue)?;
        tap.set_offload(offload)?;
        *self.tap.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(tap);
        self.generation.fetch_add(1, Ordering::AcqRel);
        Ok(true)
    }
}

/// Whether interface `name` exists in this thread's network namespace (sysfs shows the
/// namespace it was mounted in, which may be another).
fn interface_exists(name: &str) -> bool {
    let Ok(name) = std::ffi::CString::new(name) else {
        return false;
    };
    // SAFETY: if_nametoindex reads the NUL-terminated string, which `name` owns.
    unsafe { libc::if_nametoindex(name.as_ptr()) != 0 }
}
