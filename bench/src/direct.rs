//! What `ringvisor bench` checks before it runs the suite directly on this host's KVM:
//! hardware virtualization, the guest's images, and a target disk it may write to.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Why the suite cannot run directly, in words a user acts on.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DirectError {
    #[error(
        "this host has no usable hardware virtualization ({0}); run the suite through the \
         emulated lab instead: ringvisor bench run --lab"
    )]
    NoHardwareKvm(String),
    #[error("direct mode needs --target PATH: the disk the guests and fio use (a block device, a partition or a file)")]
    NoTarget,
    #[error("{path}: {reason}")]
    Target { path: PathBuf, reason: String },
    #[error("{0}: the suite writes over this target's first {1} MiB; say so with --destroy-data")]
    WouldDestroy(PathBuf, u64),
    #[error("--guest-root {path}: {reason}")]
    GuestRoot { path: PathBuf, reason: String },
    #[error("{path}: no guest {what} here ({hint})")]
    Image {
        path: PathBuf,
        what: &'static str,
        hint: &'static str,
    },
}

/// "vmx"/"svm" in /proc/cpuinfo and /dev/kvm open for reading and writing.
pub fn check_hardware_kvm() -> Result<(), DirectError> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let flagged = cpuinfo
        .lines()
        .filter(|line| line.starts_with("flags"))
        .any(|line| line.split_whitespace().any(|f| f == "vmx" || f == "svm"));
    if !flagged {
        return Err(DirectError::NoHardwareKvm(
            "no vmx or svm flag in /proc/cpuinfo".into(),
        ));
    }
    OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .map(drop)
        .map_err(|e| DirectError::NoHardwareKvm(format!("/dev/kvm: {e}")))
}

/// The guest the suite boots: the lab's L2 kernel and initramfs unless named.
#[derive(Debug, Clone, PartialEq)]
pub struct GuestImages {
    pub kernel: PathBuf,
    pub initramfs: PathBuf,
}

const IMAGES_HINT: &str = "build the lab's images with `bash tests/lab/lab.sh images`, or pass \
                           --kernel and --initramfs (a guest whose init runs the suite's \
                           rv.test=fio-suite, as the lab's does)";

impl GuestImages {
    /// `kernel`/`initramfs` as given, else the lab cache's (`cache`: target/lab or
    /// $RINGVISOR_LAB_CACHE): roots/l2-kernel/boot/vmlinuz-* and images-new/l2-initramfs.
    pub fn resolve(
        kernel: Option<&Path>,
        initramfs: Option<&Path>,
        cache: &Path,
    ) -> Result<GuestImages, DirectError> {
        let kernel = match kernel {
            Some(path) => path.to_path_buf(),
            None => {
                let boot = cache.join("roots/l2-kernel/boot");
                std::fs::read_dir(&boot)
                    .ok()
                    .into_iter()
                    .flatten()
                    .filter_map(Result::ok)
                    .map(|entry| entry.path())
                    .filter(|p| {
                        p.file_name()
                            .and_then(|n| n.to_str())
                            .is_some_and(|n| n.starts_with("vmlinuz-"))
                    })
                    .min()
                    .unwrap_or_else(|| boot.join("vmlinuz-*"))
            }
        };
        let initramfs = initramfs
            .map(Path::to_path_buf)
            .unwrap_or_else(|| cache.join("images-new/l2-initramfs.cpio.gz"));
        for (path, what) in [(&kernel, "kernel"), (&initramfs, "initramfs")] {
            if !path.is_file() {
                return Err(DirectError::Image {
                    path: path.clone(),
                    what,
                    hint: IMAGES_HINT,
                });
            }
        }
        Ok(GuestImages { kernel, initramfs })
    }
}

/// A disk the suite may use: checked, and (a file) grown to the size the jobs need.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub path: PathBuf,
    pub block_device: bool,
}

impl Target {
    /// Checks `path` for a run that writes its first `needed_mib` MiB: a block device
    /// (or partition) needs `destroy_data` and must not be mounted or held; a file is
    /// created, or needs `destroy_data` when it has data, and is grown to the size; both
    /// must open with O_DIRECT, as every VMM and fio open them.
    pub fn prepare(
        path: &Path,
        needed_mib: u64,
        destroy_data: bool,
    ) -> Result<Target, DirectError> {
        let fail = |reason: String| DirectError::Target {
            path: path.to_path_buf(),
            reason,
        };
        let needed = needed_mib << 20;
        let target = match std::fs::metadata(path) {
            Ok(meta) if meta.file_type().is_block_device() => {
                if !destroy_data {
                    return Err(DirectError::WouldDestroy(path.to_path_buf(), needed_mib));
                }
                if let Some(mount) = mounted_from(meta.rdev()) {
                    return Err(fail(format!("mounted (or a partition of it is) at {mount}; the suite will not write to a mounted disk")));
                }
                // O_EXCL on a block device fails with EBUSY while anything holds it (a
                // mounted partition, device-mapper, a RAID member).
                let file = OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_EXCL)
                    .open(path)
                    .map_err(|e| fail(format!("in use by the system ({e})")))?;
                let size = block_device_size(&file).map_err(|e| fail(e.to_string()))?;
                if size < needed {
                    return Err(fail(format!(
                        "{} MiB; the jobs need {needed_mib} MiB",
                        size >> 20
                    )));
                }
                Target {
                    path: path.to_path_buf(),
                    block_device: true,
                }
            }
            Ok(meta) if meta.file_type().is_file() => {
                if meta.len() > 0 && !destroy_data {
                    return Err(DirectError::WouldDestroy(path.to_path_buf(), needed_mib));
                }
                if meta.len() < needed {
                    File::options()
                        .write(true)
                        .open(path)
                        .and_then(|f| f.set_len(needed))
                        .map_err(|e| fail(e.to_string()))?;
                }
                Target {
                    path: path.to_path_buf(),
                    block_device: false,
                }
            }
            Ok(_) => return Err(fail("neither a block device nor a regular file".into())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                File::create_new(path)
                    .and_then(|f| f.set_len(needed))
                    .map_err(|e| fail(e.to_string()))?;
                Target {
                    path: path.to_path_buf(),
                    block_device: false,
                }
            }
            Err(e) => return Err(fail(e.to_string())),
        };
        OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_DIRECT)
            .open(path)
            .map_err(|e| {
                fail(format!(
                    "cannot be opened with O_DIRECT ({e}); tmpfs cannot, put the file on a disk"
                ))
            })?;
        Ok(target)
    }
}

/// Checks a root file system image the guest boots read-write (`--guest-root`): a file
/// or an unmounted block device, writable, and not the target the jobs write over.
pub fn check_guest_root(root: &Path, target: &Target) -> Result<(), DirectError> {
    let fail = |reason: String| DirectError::GuestRoot {
        path: root.to_path_buf(),
        reason,
    };
    let meta = std::fs::metadata(root).map_err(|e| fail(e.to_string()))?;
    let same_as = |other: &std::fs::Metadata| {
        if meta.file_type().is_block_device() {
            other.file_type().is_block_device() && other.rdev() == meta.rdev()
        } else {
            other.dev() == meta.dev() && other.ino() == meta.ino()
        }
    };
    if meta.file_type().is_block_device() {
        if let Some(mount) = mounted_from(meta.rdev()) {
            return Err(fail(format!("mounted at {mount} on this host")));
        }
    } else if !meta.file_type().is_file() {
        return Err(fail("neither a file nor a block device".into()));
    }
    if std::fs::metadata(&target.path).is_ok_and(|t| same_as(&t)) {
        return Err(fail("it is the --target, which the jobs write over".into()));
    }
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(root)
        .map(drop)
        .map_err(|e| fail(format!("the guest writes to its root: {e}")))
}

/// Where a filesystem on device `rdev`, or on a partition of it, is mounted.
fn mounted_from(rdev: u64) -> Option<String> {
    let (major, minor) = (libc::major(rdev), libc::minor(rdev));
    let mut devices = vec![format!("{major}:{minor}")];
    // The partitions of a whole disk: /sys/dev/block/M:N/<part>/dev.
    if let Ok(entries) = std::fs::read_dir(format!("/sys/dev/block/{major}:{minor}")) {
        for entry in entries.flatten() {
            if let Ok(dev) = std::fs::read_to_string(entry.path().join("dev")) {
                if entry.path().join("partition").exists() {
                    devices.push(dev.trim().to_string());
                }
            }
        }
    }
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    mountinfo.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (dev, mount_point) = (fields.get(2)?, fields.get(4)?);
        devices
            .iter()
            .any(|d| d == dev)
            .then(|| mount_point.to_string())
    })
}

fn block_device_size(file: &File) -> std::io::Result<u64> {
    use std::os::fd::AsRawFd;
    // BLKGETSIZE64 = _IOR(0x12, 114, size_t)
    const BLKGETSIZE64: libc::c_ulong = 0x8008_1272;
    let mut size: u64 = 0;
    // SAFETY: BLKGETSIZE64 writes one u64 through the pointer, which points at `size`,
    // live for the call; the fd is open.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), BLKGETSIZE64, &mut size as *mut u64) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::suite::testutil::TempDir;

    #[test]
    fn a_new_file_target_is_created_at_the_jobs_size() {
        let tmp = TempDir::new("direct-new");
        // /tmp may be tmpfs (no O_DIRECT): then the refusal must say so.
        let path = tmp.path().join("disk.img");
        match Target::prepare(&path, 8, false) {
            Ok(target) => {
                assert!(!target.block_device);
                assert_eq!(std::fs::metadata(&path).unwrap().len(), 8 << 20);
            }
            Err(DirectError::Target { reason, .. }) => {
                assert!(reason.contains("O_DIRECT"), "{reason}");
                assert_eq!(std::fs::metadata(&path).unwrap().len(), 8 << 20);
            }
            Err(other) => panic!("{other}"),
        }
    }

    #[test]
    fn a_file_with_data_needs_destroy_data() {
        let tmp = TempDir::new("direct-data");
        let path = tmp.path().join("precious.img");
        std::fs::write(&path, b"somebody's data").unwrap();
        assert_eq!(
            Target::prepare(&path, 8, false),
            Err(DirectError::WouldDestroy(path.clone(), 8))
        );
        assert_eq!(std::fs::read(&path).unwrap(), b"somebody's data");
    }

    #[test]
    fn a_character_device_is_refused() {
        let err = Target::prepare(Path::new("/dev/null"), 8, true).unwrap_err();
        assert!(err.to_string().contains("neither a block device"), "{err}");
    }

    #[test]
    fn a_block_device_needs_destroy_data_and_a_mounted_one_is_refused() {
        // The root filesystem's device, when it is a block device here: mounted, so never
        // written, even with --destroy-data.
        let root = std::fs::metadata("/").unwrap().dev();
        let dev = format!("/sys/dev/block/{}:{}", libc::major(root), libc::minor(root));
        let Some(name) = std::fs::read_to_string(format!("{dev}/uevent"))
            .ok()
            .and_then(|u| {
                u.lines()
                    .find_map(|l| l.strip_prefix("DEVNAME=").map(str::to_string))
            })
        else {
            return; // an overlay or tmpfs root: no block device to try
        };
        let path = PathBuf::from("/dev").join(name);
        if !path.exists() {
            return;
        }
        assert!(matches!(
            Target::prepare(&path, 8, false),
            Err(DirectError::WouldDestroy(..))
        ));
        let err = Target::prepare(&path, 8, true).unwrap_err();
        assert!(
            err.to_string().contains("mounted") || err.to_string().contains("in use"),
            "{err}"
        );
    }

    #[test]
    fn a_guest_root_must_not_be_the_target() {
        let tmp = TempDir::new("guest-root");
        let target = Target::prepare(&tmp.path().join("target.img"), 1, false).unwrap();
        let err = check_guest_root(&target.path, &target).unwrap_err();
        assert!(err.to_string().contains("is the --target"), "{err}");
        let missing = tmp.path().join("root.img");
        assert!(matches!(
            check_guest_root(&missing, &target),
            Err(DirectError::GuestRoot { .. })
        ));
        std::fs::write(&missing, b"ext4").unwrap();
        assert_eq!(check_guest_root(&missing, &target), Ok(()));
        let err = check_guest_root(Path::new("/dev/null"), &target).unwrap_err();
        assert!(err.to_string().contains("neither a file"), "{err}");
    }

    #[test]
    fn missing_images_name_the_way_to_build_them() {
        let tmp = TempDir::new("direct-images");
        let err = GuestImages::resolve(None, None, tmp.path()).unwrap_err();
        assert!(err.to_string().contains("lab.sh images"), "{err}");
        let kernel = tmp.path().join("bzImage");
        std::fs::write(&kernel, b"k").unwrap();
        let err = GuestImages::resolve(Some(&kernel), None, tmp.path()).unwrap_err();
        assert!(err.to_string().contains("initramfs"), "{err}");
        let initramfs = tmp.path().join("initrd");
        std::fs::write(&initramfs, b"i").unwrap();
        assert_eq!(
            GuestImages::resolve(Some(&kernel), Some(&initramfs), tmp.path()),
            Ok(GuestImages { kernel, initramfs })
        );
    }
}
