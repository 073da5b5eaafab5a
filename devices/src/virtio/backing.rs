//! Opening what backs a disk (virtio-blk) or a logical unit (virtio-scsi): a raw image
//! file or a host block device, O_DIRECT when the filesystem allows it.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use log::warn;

const BLKGETSIZE64_TYPE: u32 = 0x12;
const BLKGETSIZE64_NR: u32 = 114;
vmm_sys_util::ioctl_ior_nr!(BLKGETSIZE64, BLKGETSIZE64_TYPE, BLKGETSIZE64_NR, u64);

/// Why a backing file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum BackingError {
    #[error("cannot open disk {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot read the size of disk {path}: {source}")]
    Size {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("disk {path} is neither a regular file nor a block device")]
    NotADisk { path: PathBuf },
}

/// Opens read-only or read-write, with O_DIRECT when asked and the filesystem allows it.
pub(crate) fn open_backing(
    path: &Path,
    read_only: bool,
    direct: bool,
) -> Result<(File, bool), BackingError> {
    let mut options = OpenOptions::new();
    options.read(true).write(!read_only);
    if direct {
        match options.clone().custom_flags(libc::O_DIRECT).open(path) {
            Ok(file) => return Ok((file, true)),
            // tmpfs and a few others refuse O_DIRECT at open time.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => warn!(
                "disk {}: the filesystem refuses O_DIRECT, using the page cache",
                path.display()
            ),
            Err(source) => {
                return Err(BackingError::Open {
                    path: path.to_owned(),
                    source,
                })
            }
        }
    }
    options
        .open(path)
        .map(|file| (file, false))
        .map_err(|source| BackingError::Open {
            path: path.to_owned(),
            source,
        })
}

/// Size in bytes of a regular file or a block device.
pub(crate) fn backing_size(file: &File, path: &Path) -> Result<u64, BackingError> {
    let size_error = |source| BackingError::Size {
        path: path.to_owned(),
        source,
    };
    let metadata = file.metadata().map_err(size_error)?;
    let file_type = metadata.file_type();
    if file_type.is_file() {
        return Ok(metadata.len());
    }
    if !file_type.is_block_device() {
        return Err(BackingError::NotADisk {
            path: path.to_owned(),
        });
    }
    let mut bytes: u64 = 0;
    // SAFETY: BLKGETSIZE64 writes one u64 through the pointer, which refers to `bytes`, a
    // live u64; `file` is an open block device.
    let ret = unsafe { vmm_sys_util::ioctl::ioctl_with_mut_ref(file, BLKGETSIZE64(), &mut bytes) };
    if ret < 0 {
        return Err(size_error(io::Error::last_os_error()));
    }
    Ok(bytes)
}
