//! Direct boot of a bzImage through the Linux x86 boot protocol (Documentation/arch/x86/boot.rst).

use std::fs::File;
use std::path::{Path, PathBuf};

use linux_loader::cmdline::Cmdline;
use linux_loader::configurator::linux::LinuxBootConfigurator;
use linux_loader::configurator::{BootConfigurator, BootParams};
use linux_loader::loader::bootparam::boot_params;
use linux_loader::loader::bzimage::BzImage;
use linux_loader::loader::{load_cmdline, KernelLoader};
use vm_memory::{Address, Bytes, GuestAddress, GuestMemoryBackend};

use crate::layout::{ACPI_TABLES_START, CMDLINE, CMDLINE_MAX_SIZE, HIMEM_START, ZERO_PAGE};
use crate::memory::{e820_map, GuestMemory};

const BOOT_FLAG_MAGIC: u16 = 0xaa55;
const HEADER_MAGIC: u32 = 0x5372_6448; // "HdrS"
const LOADER_TYPE_UNDEFINED: u8 = 0xff;
/// 64-bit kernels enter at `startup_64`, 0x200 bytes into the protected-mode image.
const STARTUP_64_OFFSET: u64 = 0x200;
/// Kernels older than protocol 2.03 do not report `initrd_addr_max`; this is their limit.
const DEFAULT_INITRD_ADDR_MAX: u64 = 0x37ff_ffff;
const PAGE_SIZE: u64 = 4096;

#[derive(Debug, thiserror::Error)]
pub enum BootError {
    #[error("cannot open kernel {path}: {source}")]
    OpenKernel {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a bootable x86 bzImage ({reason})")]
    NotBzImage { path: PathBuf, reason: String },
    #[error("cannot read initramfs {path}: {source}")]
    ReadInitramfs {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("initramfs {path} ({size} bytes) does not fit in guest memory below {limit:#x}: give the guest more --memory")]
    InitramfsTooLarge {
        path: PathBuf,
        size: u64,
        limit: u64,
    },
    #[error("invalid kernel command line: {0}")]
    Cmdline(String),
    #[error("cannot write {what} into guest memory: {reason}")]
    GuestWrite { what: &'static str, reason: String },
}

/// Where the kernel landed and where the boot CPU must start.
#[derive(Debug, Clone, Copy)]
pub struct LoadedKernel {
    pub entry: GuestAddress,
    pub zero_page: GuestAddress,
}

/// Loads `kernel` (and `initramfs`) into `mem` and writes the command line and the zero page.
pub fn load_linux(
    mem: &GuestMemory,
    mem_size: u64,
    kernel: &Path,
    initramfs: Option<&Path>,
    cmdline: &str,
) -> Result<LoadedKernel, BootError> {
    let mut image = File::open(kernel).map_err(|source| BootError::OpenKernel {
        path: kernel.to_owned(),
        source,
    })?;
    let loaded = BzImage::load(mem, None, &mut image, Some(HIMEM_START)).map_err(|err| {
        BootError::NotBzImage {
            path: kernel.to_owned(),
            reason: err.to_string(),
        }
    })?;
    let hdr = loaded.setup_header.ok_or_else(|| BootError::NotBzImage {
        path: kernel.to_owned(),
        reason: "no setup header".into(),
    })?;
    let mut params = boot_params {
        hdr,
        ..Default::default()
    };
    let protocol = params.hdr.version;
    if protocol < 0x0206 {
        return Err(BootError::NotBzImage {
            path: kernel.to_owned(),
            reason: format!(
                "boot protocol {protocol:#x} is older than 2.06, the first with a 64-bit entry"
            ),
        });
    }
    params.hdr.type_of_loader = LOADER_TYPE_UNDEFINED;
    params.hdr.boot_flag = BOOT_FLAG_MAGIC;
    params.hdr.header = HEADER_MAGIC;

    let kernel_cmdline_max = (params.hdr.cmdline_size as usize + 1).min(CMDLINE_MAX_SIZE);
    let mut line =
        Cmdline::new(kernel_cmdline_max).map_err(|e| BootError::Cmdline(e.to_string()))?;
    line.insert_str(cmdline).map_err(|e| {
        BootError::Cmdline(format!(
            "{e} (the kernel accepts {} bytes)",
            kernel_cmdline_max - 1
        ))
    })?;
    load_cmdline(mem, CMDLINE, &line).map_err(|e| BootError::GuestWrite {
        what: "the command line",
        reason: e.to_string(),
    })?;
    params.hdr.cmd_line_ptr = CMDLINE.raw_value() as u32;
    params.hdr.cmdline_size = cmdline.len() as u32;

    if let Some(path) = initramfs {
        let (addr, size) = load_initramfs(mem, mem_size, path, loaded.kernel_end, &params)?;
        params.hdr.ramdisk_image = addr.raw_value() as u32;
        params.hdr.ramdisk_size = size as u32;
    }

    let map = e820_map(mem_size);
    for (slot, entry) in params.e820_table.iter_mut().zip(&map) {
        slot.addr = entry.addr;
        slot.size = entry.size;
        slot.r#type = entry.kind as u32;
    }
    params.e820_entries = map.len() as u8;
    // Linux also scans for the RSDP, but the zero page is the boot protocol's own answer.
    params.acpi_rsdp_addr = ACPI_TABLES_START.0;

    LinuxBootConfigurator::write_bootparams::<GuestMemory>(
        &BootParams::new(&params, ZERO_PAGE),
        mem,
    )
    .map_err(|e| BootError::GuestWrite {
        what: "the zero page",
        reason: e.to_string(),
    })?;

    Ok(LoadedKernel {
        entry: loaded
            .kernel_load
            .checked_add(STARTUP_64_OFFSET)
            .ok_or_else(|| BootError::NotBzImage {
                path: kernel.to_owned(),
                reason: "entry point overflows".into(),
            })?,
        zero_page: ZERO_PAGE,
    })
}

/// Places the initramfs as high as the kernel allows (below `initrd_addr_max` and the end of
/// low RAM), page aligned and above the kernel image, as boot loaders do.
fn load_initramfs(
    mem: &GuestMemory,
    mem_size: u64,
    path: &Path,
    kernel_end: u64,
    params: &boot_params,
) -> Result<(GuestAddress, u64), BootError> {
    let read_err = |source| BootError::ReadInitramfs {
        path: path.to_owned(),
        source,
    };
    let mut file = File::open(path).map_err(read_err)?;
    let size = file.metadata().map_err(read_err)?.len();
    let addr_max = match params.hdr.initrd_addr_max {
        0 => DEFAULT_INITRD_ADDR_MAX,
        max => u64::from(max),
    };
    let low_ram_end = crate::memory::ram_ranges(mem_size)[0].1;
    let limit = addr_max.saturating_add(1).min(low_ram_end);
    let too_large = || BootError::InitramfsTooLarge {
        path: path.to_owned(),
        size,
        limit,
    };
    let start = limit.checked_sub(size).ok_or_else(too_large)? & !(PAGE_SIZE - 1);
    if start < kernel_end || size > u64::from(u32::MAX) {
        return Err(too_large());
    }
    let addr = GuestAddress(start);
    mem.read_exact_volatile_from(addr, &mut file, size as usize)
        .map_err(|e| BootError::ReadInitramfs {
            path: path.to_owned(),
            source: std::io::Error::other(e.to_string()),
        })?;
    debug_assert!(mem.address_in_range(addr));
    Ok((addr, size))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn temp_file(name: &str, bytes: &[u8]) -> PathBuf {
        let path =
            std::env::temp_dir().join(format!("ringvisor-boot-{}-{name}", std::process::id()));
        File::create(&path).unwrap().write_all(bytes).unwrap();
        path
    }

    fn guest() -> (GuestMemory, u64) {
        let size = 64 << 20;
        (crate::memory::allocate(size).unwrap(), size)
    }

    #[test]
    fn missing_kernel_is_a_clear_error() {
        let (mem, size) = guest();
        let err = load_linux(&mem, size, Path::new("/nonexistent/vmlinuz"), None, "").unwrap_err();
        assert!(matches!(err, BootError::OpenKernel { .. }), "{err}");
        assert!(err.to_string().contains("/nonexistent/vmlinuz"));
    }

    #[test]
    fn non_bzimage_is_rejected() {
        let (mem, size) = guest();
        let path = temp_file("garbage", &[0x7f; 8192]);
        let err = load_linux(&mem, size, &path, None, "").unwrap_err();
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(err, BootError::NotBzImage { .. }), "{err}");
    }

    /// A minimal image with a valid 2.15 setup header and a small "kernel" payload.
    fn fake_bzimage() -> Vec<u8> {
        let setup_sects = 4u8;
        let mut image = vec![0u8; (setup_sects as usize + 1) * 512 + 4096];
        image[0x1f1] = setup_sects;
        image[0x1fe..0x200].copy_from_slice(&BOOT_FLAG_MAGIC.to_le_bytes());
        image[0x202..0x206].copy_from_slice(&HEADER_MAGIC.to_le_bytes());
        image[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
        image[0x211] = 0x01; // loadflags: LOADED_HIGH
        image[0x214..0x218].copy_from_slice(&0x10_0000u32.to_le_bytes());
        image[0x22c..0x230].copy_from_slice(&0x7fff_ffffu32.to_le_bytes());
        image[0x238..0x23c].copy_from_slice(&2047u32.to_le_bytes());
        let payload = (setup_sects as usize + 1) * 512;
        image[payload..payload + 4].copy_from_slice(b"KERN");
        image
    }

    #[test]
    fn loads_kernel_initramfs_cmdline_and_e820() {
        let (mem, size) = guest();
        let kernel = temp_file("kernel", &fake_bzimage());
        let initrd = temp_file("initrd", &[0xab; 10_000]);
        let loaded = load_linux(&mem, size, &kernel, Some(&initrd), "console=ttyS0").unwrap();
        std::fs::remove_file(&kernel).unwrap();
        std::fs::remove_file(&initrd).unwrap();

        assert_eq!(loaded.entry, GuestAddress(HIMEM_START.0 + 0x200));
        let magic: [u8; 4] = mem.read_obj(HIMEM_START).unwrap();
        assert_eq!(&magic, b"KERN");

        let params: boot_params = mem.read_obj(ZERO_PAGE).unwrap();
        let hdr = params.hdr;
        assert_eq!({ hdr.type_of_loader }, LOADER_TYPE_UNDEFINED);
        let (rd_addr, rd_size) = (hdr.ramdisk_image as u64, hdr.ramdisk_size as u64);
        assert_eq!(rd_size, 10_000);
        assert_eq!(rd_addr % PAGE_SIZE, 0);
        assert!(rd_addr + rd_size <= size);
        let byte: u8 = mem.read_obj(GuestAddress(rd_addr + 9_999)).unwrap();
        assert_eq!(byte, 0xab);

        let mut line = [0u8; 14];
        mem.read_slice(&mut line, GuestAddress(hdr.cmd_line_ptr as u64))
            .unwrap();
        assert_eq!(&line, b"console=ttyS0\0");
        assert_eq!(params.e820_entries as usize, e820_map(size).len());
    }

    #[test]
    fn initramfs_larger_than_memory_is_rejected() {
        let (mem, size) = guest();
        let kernel = temp_file("kernel2", &fake_bzimage());
        let initrd = temp_file("initrd2", &vec![0u8; (size + 4096) as usize]);
        let err = load_linux(&mem, size, &kernel, Some(&initrd), "").unwrap_err();
        std::fs::remove_file(&kernel).unwrap();
        std::fs::remove_file(&initrd).unwrap();
        assert!(matches!(err, BootError::InitramfsTooLarge { .. }), "{err}");
    }

    #[test]
    fn oversized_cmdline_is_rejected() {
        let (mem, size) = guest();
        let kernel = temp_file("kernel3", &fake_bzimage());
        let err = load_linux(&mem, size, &kernel, None, &"x".repeat(5000)).unwrap_err();
        std::fs::remove_file(&kernel).unwrap();
        assert!(matches!(err, BootError::Cmdline(_)), "{err}");
    }
}
