//! Host faults under a running device: a disk whose file system fills up gets I/O errors
//! for the writes that do not fit, keeps serving everything else, and leaves the other
//! disks alone. (Root: the test mounts a 1 MiB tmpfs; CI runs as root.)

use std::ffi::CString;
use std::path::PathBuf;

use ringvisor_devices::virtio::block::BlockConfig;
use ringvisor_rig::devpath::{BlockRig, Completion, VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_OK};

const QUEUE_SIZE: u16 = 64;
const CHUNK: usize = 64 << 10;

/// A tmpfs of `size` mounted on a fresh directory, unmounted on drop.
struct TinyFs(PathBuf);

impl TinyFs {
    fn mount(size: &str) -> Option<Self> {
        let dir = std::env::temp_dir().join(format!("rv-tinyfs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).ok()?;
        let target = CString::new(dir.as_os_str().as_encoded_bytes()).ok()?;
        let options = CString::new(format!("size={size}")).ok()?;
        // SAFETY: every pointer is a valid NUL-terminated string that outlives the call.
        let rc = unsafe {
            libc::mount(
                c"tmpfs".as_ptr(),
                target.as_ptr(),
                c"tmpfs".as_ptr(),
                0,
                options.as_ptr().cast(),
            )
        };
        if rc != 0 {
            let err = std::io::Error::last_os_error();
            ringvisor_test_support::skip(format!("cannot mount a tmpfs here (needs root): {err}"));
            let _ = std::fs::remove_dir(&dir);
            return None;
        }
        Some(Self(dir))
    }
}

impl Drop for TinyFs {
    fn drop(&mut self) {
        if let Ok(target) = CString::new(self.0.as_os_str().as_encoded_bytes()) {
            // SAFETY: a valid path string; MNT_DETACH unmounts even if a file is still open.
            unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
        }
        let _ = std::fs::remove_dir(&self.0);
    }
}

fn disk(path: PathBuf, bytes: u64) -> BlockRig {
    std::fs::File::create(&path)
        .and_then(|f| f.set_len(bytes))
        .unwrap();
    BlockRig::new(
        BlockConfig {
            path,
            read_only: false,
            direct: true,
            queues: 1,
            serial: None,
        },
        &[None],
        QUEUE_SIZE,
    )
    .unwrap()
}

#[test]
fn a_full_file_system_fails_writes_and_nothing_else() {
    let Some(fs) = TinyFs::mount("1m") else {
        return;
    };
    // 16 MiB of disk on 1 MiB of file system, and a second disk elsewhere.
    let mut full = disk(fs.0.join("full.img"), 16 << 20);
    let other_path = std::env::temp_dir().join(format!("rv-other-{}.img", std::process::id()));
    let mut other = disk(other_path.clone(), 16 << 20);

    let data = vec![0x5au8; CHUNK];
    let mut written = Vec::new();
    let mut failed = 0;
    for i in 0..32u64 {
        let sector = i * (CHUNK as u64 / 512);
        let Completion { status, .. } = full.write(0, sector, &data).unwrap();
        match status {
            VIRTIO_BLK_S_OK => written.push(sector),
            VIRTIO_BLK_S_IOERR => failed += 1,
            other => panic!("write {i}: status {other}"),
        }
        // Meanwhile the other disk works as ever.
        let Completion { status, .. } = other.write(0, sector, &data).unwrap();
        assert_eq!(status, VIRTIO_BLK_S_OK);
    }
    assert!(failed > 0, "2 MiB cannot fit in a 1 MiB file system");
    assert!(!written.is_empty(), "what fits is written");
    // The full disk still reads back what it acknowledged, and reads past it as zeros.
    for &sector in &written {
        let (completion, back) = full.read(0, sector, CHUNK as u32).unwrap();
        assert_eq!(completion.status, VIRTIO_BLK_S_OK);
        assert!(back == data, "sector {sector} lost acknowledged data");
    }
    let (completion, _) = full.read(0, 31 * (CHUNK as u64 / 512), 512).unwrap();
    assert_eq!(completion.status, VIRTIO_BLK_S_OK);
    let (completion, back) = other
        .read(0, 31 * (CHUNK as u64 / 512), CHUNK as u32)
        .unwrap();
    assert_eq!(completion.status, VIRTIO_BLK_S_OK);
    assert!(back == data);
    assert!(full.faults().is_empty() && other.faults().is_empty());
    full.shutdown().unwrap();
    other.shutdown().unwrap();
    let _ = std::fs::remove_file(other_path);
}
