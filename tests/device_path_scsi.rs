//! Tier 2: virtio-scsi through the real reactors and io_uring on real files, driven by a
//! synthetic guest driver. No KVM, no vCPU.

use std::path::PathBuf;

use ringvisor_devices::virtio::scsi::{ScsiConfig, ScsiDiskConfig};
use ringvisor_rig::devpath::{ScsiAnswer, ScsiRig as Rig};

const QUEUE_SIZE: u16 = 256;

/// A directory of small images, removed on drop.
struct Images {
    dir: PathBuf,
    paths: Vec<PathBuf>,
}

impl Images {
    fn new(name: &str, count: usize, bytes: u64) -> Self {
        let dir =
            std::env::temp_dir().join(format!("ringvisor-scsi-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let paths = (0..count)
            .map(|i| {
                let path = dir.join(format!("lun{i}.img"));
                std::fs::File::create(&path)
                    .unwrap()
                    .set_len(bytes)
                    .unwrap();
                path
            })
            .collect();
        Self { dir, paths }
    }

    fn disks(&self, read_only: bool) -> Vec<ScsiDiskConfig> {
        self.paths
            .iter()
            .map(|path| ScsiDiskConfig {
                path: path.clone(),
                target: None,
                lun: None,
                read_only,
                direct: true,
                serial: None,
            })
            .collect()
    }
}

impl Drop for Images {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn cdb10(op: u8, lba: u32, blocks: u16) -> Vec<u8> {
    let mut c = vec![op, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    c[2..6].copy_from_slice(&lba.to_be_bytes());
    c[7..9].copy_from_slice(&blocks.to_be_bytes());
    c
}

fn good(answer: &ScsiAnswer) {
    assert_eq!(
        (answer.response, answer.status),
        (0, 0),
        "sense {:?}",
        answer.sense_code()
    );
}

/// The auto-assigned address of disk `i` of `n` (a free target's LUN 0 first).
fn address(i: usize) -> (u8, u16) {
    ((i % 256) as u8, (i / 256) as u16)
}

#[test]
fn three_hundred_luns_on_two_reactors_keep_their_data_apart() {
    const LUNS: usize = 300;
    let images = Images::new("many", LUNS, 64 << 10);
    let config = ScsiConfig {
        queues: 2,
        disks: images.disks(false),
    };
    let mut rig = Rig::scsi(config, &[None, None], QUEUE_SIZE).unwrap();
    // Every LUN answers INQUIRY and READ CAPACITY.
    for i in [0, 255, 256, 299] {
        let (t, l) = address(i);
        let a = rig
            .command(0, t, l, &[0x12, 0, 0, 0, 36, 0], &[], 36)
            .unwrap();
        good(&a);
        assert_eq!(a.data[0], 0);
        let a = rig.command(1, t, l, &cdb10(0x25, 0, 0), &[], 8).unwrap();
        assert_eq!(a.data, vec![0, 0, 0, 127, 0, 0, 2, 0]);
    }
    // REPORT LUNS on target 0 lists LUN 0 and LUN 1 (disks 0 and 256).
    let a = rig
        .command(0, 0, 0, &[0xa0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0], &[], 1024)
        .unwrap();
    assert_eq!(&a.data[..4], &[0, 0, 0, 16]);

    // Both queues at once, many LUNs per batch: each LUN gets its own pattern.
    let pattern = |i: usize| -> Vec<u8> {
        (0..4096)
            .map(|b| (b as u8) ^ (i as u8) ^ ((i >> 8) as u8 * 31))
            .collect()
    };
    for round in 0..2 {
        let write = round == 0;
        for chunk in (0..LUNS).collect::<Vec<_>>().chunks(60) {
            let mut posted = [Vec::new(), Vec::new()];
            for &i in chunk {
                let n = i % 2;
                let (t, l) = address(i);
                let queue = rig.queue(Rig::request_queue(n)).unwrap();
                let p = if write {
                    queue.post_command(t, l, &cdb10(0x2a, 8, 8), &pattern(i), 0)
                } else {
                    queue.post_command(t, l, &cdb10(0x28, 8, 8), &[], 4096)
                }
                .unwrap();
                posted[n].push((i, p));
            }
            for (n, list) in posted.iter().enumerate() {
                rig.kick(Rig::request_queue(n)).unwrap();
                let used = rig.wait_used(Rig::request_queue(n), list.len()).unwrap();
                let queue = rig.queue(Rig::request_queue(n)).unwrap();
                for (head, len) in used {
                    let (i, p) = list.iter().find(|(_, p)| p.head == head).unwrap();
                    let a = queue.answer(p, len).unwrap();
                    good(&a);
                    if !write {
                        assert_eq!(a.data, pattern(*i), "lun {i}");
                    }
                }
                queue.reset_scratch();
            }
        }
    }
    for i in [0, 1, 150, 299] {
        let file = std::fs::read(&images.paths[i]).unwrap();
        assert_eq!(&file[4096..8192], &pattern(i)[..], "image {i}");
        assert!(file[..4096].iter().all(|&b| b == 0));
    }
    assert!(rig.faults().is_empty());
    // 300 descriptors do not fit a ring's file table: it fills up, and the units left
    // out are served by descriptor, their data as right as the others'.
    for reactor in rig.stats() {
        assert_eq!(reactor.fixed_files, 64, "reactor {}", reactor.reactor);
        // The control and event queues do no host I/O.
        for queue in reactor.queues.iter().filter(|queue| queue.ops > 0) {
            assert!(
                queue.fixed_file_ops > 0 && queue.fixed_file_ops < queue.ops,
                "{}: {} of {} ops by slot",
                queue.name,
                queue.fixed_file_ops,
                queue.ops
            );
        }
    }
    rig.shutdown().unwrap();
}

#[test]
fn flush_unmap_write_same_and_errors_through_io_uring() {
    let images = Images::new("ops", 2, 1 << 20);
    std::fs::write(&images.paths[0], vec![0x5au8; 1 << 20]).unwrap();
    let mut disks = images.disks(false);
    disks[1].read_only = true;
    let mut rig = Rig::scsi(ScsiConfig { queues: 1, disks }, &[None], QUEUE_SIZE).unwrap();
    // SYNCHRONIZE CACHE becomes an fdatasync.
    good(&rig.command(0, 0, 0, &cdb10(0x35, 0, 0), &[], 0).unwrap());
    // UNMAP of blocks 16..32 punches a hole.
    let mut list = vec![0, 22, 0, 16, 0, 0, 0, 0];
    list.extend(16u64.to_be_bytes());
    list.extend(16u32.to_be_bytes());
    list.extend([0; 4]);
    good(
        &rig.command(0, 0, 0, &[0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0], &list, 0)
            .unwrap(),
    );
    // WRITE SAME(10) of a pattern over blocks 40..50.
    let block: Vec<u8> = (0..512).map(|i| i as u8).collect();
    good(
        &rig.command(0, 0, 0, &cdb10(0x41, 40, 10), &block, 0)
            .unwrap(),
    );
    let file = std::fs::read(&images.paths[0]).unwrap();
    assert!(file[16 * 512..32 * 512].iter().all(|&b| b == 0));
    assert_eq!(file[15 * 512], 0x5a);
    for b in 40..50 {
        assert_eq!(&file[b * 512..(b + 1) * 512], &block[..]);
    }
    // Read-only unit, bad target, out of range: answered, nothing written.
    let a = rig.command(0, 1, 0, &cdb10(0x2a, 0, 1), &block, 0).unwrap();
    assert_eq!(a.sense_code(), Some((7, 0x27)));
    let a = rig.command(0, 9, 0, &[0, 0, 0, 0, 0, 0], &[], 0).unwrap();
    assert_eq!(a.response, 3, "BAD TARGET");
    let a = rig
        .command(0, 0, 0, &cdb10(0x28, 2047, 2), &[], 1024)
        .unwrap();
    assert_eq!(a.sense_code(), Some((5, 0x21)));
    assert!(std::fs::read(&images.paths[1])
        .unwrap()
        .iter()
        .all(|&b| b == 0));
    // Task management on the control queue, through its reactor.
    let control = 0;
    let queue = rig.queue(control).unwrap();
    let req = queue.alloc(24).unwrap();
    let resp = queue.alloc(1).unwrap();
    let mut tmf = [0u8; 24];
    tmf[4] = 5; // LOGICAL UNIT RESET
    tmf[8..12].copy_from_slice(&[1, 0, 0x40, 0]);
    use vm_memory::Bytes;
    queue.mem().write_slice(&tmf, req).unwrap();
    queue
        .post_chain(&[
            ringvisor_rig::virtq_driver::Buffer::readable(req, 24),
            ringvisor_rig::virtq_driver::Buffer::writable(resp, 1),
        ])
        .unwrap();
    rig.kick(control).unwrap();
    assert_eq!(rig.wait_used(control, 1).unwrap()[0].1, 1);
    assert_eq!(rig.mem().read_obj::<u8>(resp).unwrap(), 0);
    assert!(rig.faults().is_empty());
    rig.shutdown().unwrap();
}
