//! Each reactor kind's io_uring refuses what its ring policy does not list, on the very
//! ring that serves its devices: an open or a connect submitted on a live reactor (through
//! the io crate's test hook) completes with -EACCES, while a virtio-blk disk on the hot
//! reactor and a virtio-console file on the low-priority kind's ring keep being served.
//! With the restrictions taken out, the open succeeds and this test fails.

use ringvisor::seccomp::{ring_ops, ThreadKind};
use ringvisor_devices::virtio::block::BlockConfig;
use ringvisor_devices::virtio::console::{ConsoleConfig, PortBackend};
use ringvisor_io::{ForbiddenOp, OpKind, ReactorSet};
use ringvisor_rig::devpath::{BlockRig, ConsoleRig};
use ringvisor_test_support::TempFile;

fn assert_refused(reactors: &ReactorSet, kind: &str) {
    for op in [ForbiddenOp::OpenAt, ForbiddenOp::Connect] {
        assert_eq!(
            reactors.try_forbidden(0, op).unwrap(),
            -libc::EACCES,
            "the {kind} ring let {op:?} through"
        );
    }
}

#[test]
fn the_hot_reactors_ring_refuses_open_and_connect_and_serves_a_disk() {
    let disk = TempFile::with_len("restrict-blk", 1 << 20);
    let config = BlockConfig {
        path: disk.0.clone(),
        read_only: false,
        direct: false,
        queues: 1,
        serial: None,
    };
    let mut rig = BlockRig::new(config, &[None], 64).unwrap();
    let data: Vec<u8> = (0..8192u32).map(|i| (i * 13) as u8).collect();
    assert_eq!(rig.write(0, 8, &data).unwrap().status, 0);
    assert_refused(rig.split_mut().1, "hot reactor's");
    let (completion, read) = rig.read(0, 8, data.len() as u32).unwrap();
    assert_eq!(completion.status, 0);
    assert_eq!(read, data, "the disk is still served after the refusals");
    assert_eq!(std::fs::read(&disk.0).unwrap()[4096..4096 + 8192], data[..]);
}

#[test]
fn the_low_priority_rings_refuse_open_and_connect_and_serve_the_console() {
    let out = TempFile::path_only("restrict-console");
    let config = ConsoleConfig {
        console: PortBackend::File(out.0.clone()),
        ports: Vec::new(),
    };
    let mut rig = ConsoleRig::console(config, 64).unwrap();
    assert_refused(rig.split_mut().1, "low-priority reactor's");
    // Port 0's transmit queue (1) writes to the file through the same ring.
    let queue = rig.queue(1).unwrap();
    queue.post_bytes(b"still served\n").unwrap();
    queue.kick().unwrap();
    rig.wait_used(1, 1).unwrap();
    assert_eq!(std::fs::read(&out.0).unwrap(), b"still served\n");
}

#[test]
fn the_lists_are_what_the_devices_of_each_kind_use() {
    // Storage ops never reach the low-priority ring, nor sockets the hot one.
    let hot = ring_ops(ThreadKind::HotReactor).unwrap();
    let low = ring_ops(ThreadKind::LowPriorityReactor).unwrap();
    for kind in [OpKind::Flush, OpKind::Fallocate] {
        assert!(hot.contains(&kind) && !low.contains(&kind), "{kind:?}");
    }
    for kind in [OpKind::Accept, OpKind::Poll] {
        assert!(low.contains(&kind) && !hot.contains(&kind), "{kind:?}");
    }
}
