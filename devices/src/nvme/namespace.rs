//! What an NVMe namespace is, asked of the controller with Identify (NVMe Base
//! Specification 2.0, 5.17) through the generic character device's admin ioctl.

use std::fs::File;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use vmm_sys_util::ioctl::{ioctl, ioctl_with_mut_ref};

use super::command::{PassthruCmd, NVME_IOCTL_TYPE};

vmm_sys_util::ioctl_io_nr!(NVME_IOCTL_ID, NVME_IOCTL_TYPE, 0x40);
vmm_sys_util::ioctl_iowr_nr!(NVME_IOCTL_ADMIN_CMD, NVME_IOCTL_TYPE, 0x41, PassthruCmd);
vmm_sys_util::ioctl_iowr_nr!(NVME_IOCTL_IO_CMD, NVME_IOCTL_TYPE, 0x43, PassthruCmd);

const ADMIN_IDENTIFY: u8 = 0x06;
const CNS_NAMESPACE: u32 = 0x00;
const CNS_CONTROLLER: u32 = 0x01;
const IDENTIFY_LEN: usize = 4096;

/// The most one command moves, whatever the controller allows: a transfer that needs more
/// physical segments than the host queue takes (128 on nvme-pci) is refused by the
/// kernel, and 256 KiB of 4 KiB pages stays well below that even when unaligned.
const TRANSFER_CAP: u32 = 256 << 10;
/// MDTS counts in units of the controller's minimum page size (CAP.MPSMIN, at least
/// 4 KiB); assuming 4 KiB can only make the bound smaller than the controller's.
const MIN_PAGE_SHIFT: u32 = 12;

/// Why a character device cannot back a passthrough disk.
#[derive(Debug, thiserror::Error)]
pub enum NamespaceError {
    #[error(
        "{path} is a character device but not an NVMe namespace's generic device \
         (/dev/ngXnY, in /sys/class/nvme-generic)"
    )]
    NotNvme { path: PathBuf },
    #[error("{path}: cannot ask the namespace its ID: {source}")]
    NamespaceId {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: Identify {what} failed: {source} (admin commands need CAP_SYS_ADMIN)")]
    Identify {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("{path}: Identify {what} failed with NVMe status {status:#x}")]
    IdentifyStatus {
        path: PathBuf,
        what: &'static str,
        status: i32,
    },
    #[error(
        "{path}: the namespace's LBA format carries {bytes} bytes of metadata per block, \
         which a virtio-blk disk cannot pass on; format it without metadata"
    )]
    Metadata { path: PathBuf, bytes: u16 },
    #[error("{path}: LBA size 2^{shift} bytes is not one of 512 to 4096 bytes")]
    LbaSize { path: PathBuf, shift: u8 },
    #[error("{path}: the namespace has no blocks")]
    Empty { path: PathBuf },
}

/// Whether `path` names a character device: a disk given as one is an NVMe namespace's
/// generic device, served by passthrough (and so by reactors whose rings carry driver
/// commands).
pub fn is_passthrough_path(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.file_type().is_char_device())
}

/// An NVMe namespace as its disk needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Namespace {
    pub nsid: u32,
    /// log2 of the logical block (LBA) size: 9 to 12.
    pub lba_shift: u32,
    /// Size in logical blocks (NSZE).
    pub blocks: u64,
    /// The most bytes one command moves (MDTS, capped), a multiple of the block size.
    pub max_transfer: u32,
    /// Dataset Management (deallocate) is supported (ONCS bit 2).
    pub dataset_management: bool,
    /// Write Zeroes is supported (ONCS bit 3).
    pub write_zeroes: bool,
}

impl Namespace {
    /// Identifies the namespace behind `file`, an open generic character device.
    pub fn identify(file: &File, path: &Path) -> Result<Self, NamespaceError> {
        let not_nvme = || NamespaceError::NotNvme {
            path: path.to_owned(),
        };
        // The ioctl numbers below mean other things to other drivers: ask sysfs first.
        let rdev = file.metadata().map_err(|_| not_nvme())?.rdev();
        let class = format!(
            "/sys/dev/char/{}:{}/subsystem",
            libc::major(rdev),
            libc::minor(rdev)
        );
        let subsystem = std::fs::read_link(&class).map_err(|_| not_nvme())?;
        if subsystem.file_name() != Some(std::ffi::OsStr::new("nvme-generic")) {
            return Err(not_nvme());
        }
        // SAFETY: NVME_IOCTL_ID takes no argument and returns the namespace ID; `file` is
        // an open nvme-generic device (checked above).
        let nsid = unsafe { ioctl(file, NVME_IOCTL_ID()) };
        let nsid = u32::try_from(nsid).map_err(|_| NamespaceError::NamespaceId {
            path: path.to_owned(),
            source: io::Error::last_os_error(),
        })?;
        let controller = identify(file, path, "Controller", CNS_CONTROLLER, 0)?;
        let namespace = identify(file, path, "Namespace", CNS_NAMESPACE, nsid)?;
        Self::from_identify(nsid, &controller, &namespace, path)
    }

    /// Reads the fields the disk needs out of the two Identify data structures.
    fn from_identify(
        nsid: u32,
        controller: &[u8; IDENTIFY_LEN],
        namespace: &[u8; IDENTIFY_LEN],
        path: &Path,
    ) -> Result<Self, NamespaceError> {
        let mdts = u32::from(controller[77]);
        let oncs = u16::from_le_bytes([controller[520], controller[521]]);
        let blocks = u64::from_le_bytes(namespace[0..8].try_into().unwrap_or_default());
        let flbas = namespace[26];
        // FLBAS bits 3:0 are the format's index, bits 6:5 its high bits (NVMe 2.0).
        let format = usize::from(flbas & 0x0f) | usize::from((flbas >> 5) & 0x03) << 4;
        let lbaf = &namespace[128 + 4 * format..128 + 4 * format + 4];
        let metadata = u16::from_le_bytes([lbaf[0], lbaf[1]]);
        let shift = lbaf[2];
        if metadata != 0 {
            return Err(NamespaceError::Metadata {
                path: path.to_owned(),
                bytes: metadata,
            });
        }
        if !(9..=12).contains(&shift) {
            return Err(NamespaceError::LbaSize {
                path: path.to_owned(),
                shift,
            });
        }
        if blocks == 0 {
            return Err(NamespaceError::Empty {
                path: path.to_owned(),
            });
        }
        // MDTS 0: no limit but ours.
        let mdts_bytes = match mdts {
            0 => u64::MAX,
            n => 1u64 << (n + MIN_PAGE_SHIFT).min(63),
        };
        // The command's block count is 16 bits wide.
        let nlb_bytes = (1u64 << 16) << shift;
        let max_transfer = mdts_bytes.min(nlb_bytes).min(u64::from(TRANSFER_CAP)) as u32;
        Ok(Self {
            nsid,
            lba_shift: u32::from(shift),
            blocks,
            max_transfer,
            dataset_management: oncs & (1 << 2) != 0,
            write_zeroes: oncs & (1 << 3) != 0,
        })
    }

    /// The logical block size in bytes.
    pub fn block_size(&self) -> u32 {
        1 << self.lba_shift
    }

    /// The namespace's size in bytes (saturating: no namespace is that large).
    pub fn bytes(&self) -> u64 {
        self.blocks.saturating_mul(u64::from(self.block_size()))
    }
}

/// Flushes the namespace whose generic device is `path` (an NVMe Flush, waited for): what
/// fdatasync is to a file, for the orderly shutdown.
pub fn flush_namespace(path: &Path) -> io::Result<()> {
    let file = File::open(path)?;
    // SAFETY: NVME_IOCTL_ID takes no argument; `file` is open. On a device that is not
    // an NVMe namespace it fails, and nothing else is attempted.
    let nsid = unsafe { ioctl(&file, NVME_IOCTL_ID()) };
    let nsid = u32::try_from(nsid).map_err(|_| io::Error::last_os_error())?;
    let mut cmd = PassthruCmd {
        opcode: super::command::OPC_FLUSH,
        nsid,
        ..PassthruCmd::default()
    };
    // SAFETY: a Flush moves no data: the driver only reads `cmd` and writes its result
    // field, a live structure.
    let status = unsafe { ioctl_with_mut_ref(&file, NVME_IOCTL_IO_CMD(), &mut cmd) };
    match status {
        0 => Ok(()),
        s if s < 0 => Err(io::Error::last_os_error()),
        s => Err(io::Error::other(format!(
            "NVMe Flush failed with status {s:#x}"
        ))),
    }
}

/// Identify with `cns` for `nsid`: the 4 KiB data structure.
fn identify(
    file: &File,
    path: &Path,
    what: &'static str,
    cns: u32,
    nsid: u32,
) -> Result<Box<[u8; IDENTIFY_LEN]>, NamespaceError> {
    let mut data = Box::new([0u8; IDENTIFY_LEN]);
    let mut cmd = PassthruCmd {
        opcode: ADMIN_IDENTIFY,
        nsid,
        addr: data.as_mut_ptr() as u64,
        data_len: IDENTIFY_LEN as u32,
        cdw10: cns,
        ..PassthruCmd::default()
    };
    // SAFETY: the admin command reads `cmd` and writes at most `data_len` bytes to `addr`,
    // which is `data`, a live 4 KiB buffer; `file` is an nvme-generic device.
    let status = unsafe { ioctl_with_mut_ref(file, NVME_IOCTL_ADMIN_CMD(), &mut cmd) };
    if status < 0 {
        return Err(NamespaceError::Identify {
            path: path.to_owned(),
            what,
            source: io::Error::last_os_error(),
        });
    }
    if status > 0 {
        return Err(NamespaceError::IdentifyStatus {
            path: path.to_owned(),
            what,
            status,
        });
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identify_data(
        mdts: u8,
        oncs: u16,
        blocks: u64,
        flbas: u8,
        formats: &[(u16, u8)],
    ) -> ([u8; 4096], [u8; 4096]) {
        let mut controller = [0u8; 4096];
        controller[77] = mdts;
        controller[520..522].copy_from_slice(&oncs.to_le_bytes());
        let mut namespace = [0u8; 4096];
        namespace[0..8].copy_from_slice(&blocks.to_le_bytes());
        namespace[26] = flbas;
        for (i, &(ms, lbads)) in formats.iter().enumerate() {
            namespace[128 + 4 * i..130 + 4 * i].copy_from_slice(&ms.to_le_bytes());
            namespace[130 + 4 * i] = lbads;
        }
        (controller, namespace)
    }

    #[test]
    fn the_formatted_lba_size_and_limits_come_from_identify() {
        let path = Path::new("/dev/ng0n1");
        // Format 1 (4 KiB, no metadata) in use; MDTS 5 = 128 KiB; DSM and Write Zeroes.
        let (c, n) = identify_data(5, 0b1100, 1 << 20, 1, &[(0, 9), (0, 12)]);
        let ns = Namespace::from_identify(1, &c, &n, path).unwrap();
        assert_eq!(ns.lba_shift, 12);
        assert_eq!(ns.block_size(), 4096);
        assert_eq!(ns.bytes(), 4 << 30);
        assert_eq!(ns.max_transfer, 128 << 10);
        assert!(ns.dataset_management && ns.write_zeroes);
        // MDTS 0 (no limit): our cap; no optional commands.
        let (c, n) = identify_data(0, 0, 8, 0, &[(0, 9)]);
        let ns = Namespace::from_identify(1, &c, &n, path).unwrap();
        assert_eq!((ns.lba_shift, ns.max_transfer), (9, TRANSFER_CAP));
        assert!(!ns.dataset_management && !ns.write_zeroes);
        // The high bits of FLBAS select formats 16 and up.
        let mut formats = vec![(0u16, 9u8); 17];
        formats[16] = (0, 12);
        let (c, n) = identify_data(0, 0, 8, 0b0010_0000, &formats);
        assert_eq!(
            Namespace::from_identify(1, &c, &n, path).unwrap().lba_shift,
            12
        );
    }

    #[test]
    fn formats_a_disk_cannot_expose_are_refused() {
        let path = Path::new("/dev/ng0n1");
        let (c, n) = identify_data(0, 0, 8, 0, &[(8, 9)]);
        assert!(matches!(
            Namespace::from_identify(1, &c, &n, path),
            Err(NamespaceError::Metadata { bytes: 8, .. })
        ));
        let (c, n) = identify_data(0, 0, 8, 0, &[(0, 16)]);
        assert!(matches!(
            Namespace::from_identify(1, &c, &n, path),
            Err(NamespaceError::LbaSize { shift: 16, .. })
        ));
        let (c, n) = identify_data(0, 0, 0, 0, &[(0, 9)]);
        assert!(matches!(
            Namespace::from_identify(1, &c, &n, path),
            Err(NamespaceError::Empty { .. })
        ));
    }

    #[test]
    fn a_character_device_that_is_not_nvme_is_refused() {
        let path = Path::new("/dev/null");
        let file = File::open(path).unwrap();
        assert!(is_passthrough_path(path));
        assert!(matches!(
            Namespace::identify(&file, path),
            Err(NamespaceError::NotNvme { .. })
        ));
    }
}
