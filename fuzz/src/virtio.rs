//! The virtio targets: each builds the real device (or, for virtio-net, its real workers:
//! the device itself needs a TAP interface), activates it over the fuzzer's guest memory
//! image and drives its workers as a reactor would.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::Duration;

use ringvisor_devices::virtio::balloon::{self, BalloonConfig, BalloonDevice};
use ringvisor_devices::virtio::block::{self, BlockConfig, BlockDevice};
use ringvisor_devices::virtio::console::{ConsoleConfig, ConsoleDevice, NamedPort, PortBackend};
use ringvisor_devices::virtio::net::header::TxRules;
use ringvisor_devices::virtio::net::{
    LinkState, NetControlWorker, NetRxWorker, NetTxWorker, RxMode, Tap, TapSlot,
};
use ringvisor_devices::virtio::scsi::{self, ScsiConfig, ScsiDevice, ScsiDiskConfig};
use ringvisor_devices::virtio::{fuzzing, QueueWorkers, VirtioDevice};
use vm_memory::Bytes;

use crate::harness::{
    assert_in_guest_ram, host_ranges, make_queue, make_queues, memfd_with, queue_layouts, Input,
    Reactor, ScratchFile, RAM_END,
};

const DISK_BYTES: u64 = 64 * 1024;

/// Reads a few configuration bytes where the fuzzer says, as the transport would.
fn poke_config(dev: &mut dyn VirtioDevice, input: &Input<'_>) {
    let offset = u64::from(input.extra(3) & 0x7f);
    let mut buf = [0u8; 8];
    dev.read_config(offset, &mut buf[..1 + usize::from(input.extra(3) >> 7) * 3]);
}

fn activate_and_run(
    dev: &mut dyn VirtioDevice,
    input: &Input<'_>,
    queue_count: usize,
    check_ram: bool,
) {
    let max = dev.queue_max_sizes().first().copied().unwrap_or(1);
    let mem = input.memory();
    let acked = input.acked(dev.offered_features());
    let queues = make_queues(input, max, queue_count);
    let Ok(mut workers) = dev.activate(mem.clone(), acked, queues) else {
        return;
    };
    Reactor::new(input, check_ram.then_some(&mem)).run(&mut workers, input.rounds());
    drop(workers);
    dev.reset();
}

/// Target 1: popping and walking split and indirect descriptor chains, and the stream
/// and iovec helpers every device addresses its buffers with.
pub fn virtio_chain(data: &[u8]) {
    let input = Input::new(data);
    let mem = input.memory();
    let layout = queue_layouts(1, input.queue_size(256))[0];
    let queue = make_queue(256, &layout, input.event_idx());
    let skip = u64::from(u16::from_le_bytes([input.extra(0), input.extra(1)]));
    let len = u64::from(u16::from_le_bytes([input.extra(2), input.extra(3)]));
    let Ok(chains) = fuzzing::walk_available_chains(&mem, queue, (skip, len)) else {
        return;
    };
    let ram = host_ranges(&mem);
    for chain in &chains {
        assert!(
            chain.head < layout.size,
            "a head outside the table was served"
        );
        assert!(chain.readable.len() + chain.writable.len() <= 256);
        let sum = |s: &[(u64, u32)]| s.iter().map(|&(_, l)| u64::from(l)).sum::<u64>();
        assert_eq!(chain.readable_len, sum(&chain.readable));
        assert_eq!(chain.writable_len, sum(&chain.writable));
        if let Some(at) = chain.last_writable_byte {
            assert!(mem.read_obj::<u8>(vm_memory::GuestAddress(at)).is_ok());
        }
        for &(base, len) in &chain.iovecs {
            assert_in_guest_ram(&ram, base, len);
        }
    }
}

thread_local! {
    static BLK_DISK: ScratchFile = ScratchFile::new("blk", DISK_BYTES);
    static SCSI_DISKS: [ScratchFile; 2] =
        [ScratchFile::new("scsi0", DISK_BYTES), ScratchFile::new("scsi1", 4096)];
    static CONSOLE_FILES: RefCell<Option<[ScratchFile; 2]>> = const { RefCell::new(None) };
}

/// Target 2: virtio-blk requests, parsed and executed against a real image file.
pub fn virtio_blk(data: &[u8]) {
    let input = Input::new(data);
    BLK_DISK.with(|disk| {
        disk.reset(DISK_BYTES);
        let mut dev = BlockDevice::new(BlockConfig {
            path: disk.path.clone(),
            read_only: input.extra(0) & 1 != 0,
            direct: false,
            queues: 1,
            serial: (input.extra(0) & 2 != 0).then(|| "fuzz-serial-01234".to_owned()),
        })
        .expect("the scratch image opens");
        poke_config(&mut dev, &input);
        activate_and_run(&mut dev, &input, 1, true);
    });
    let _ = block::QUEUE_MAX_SIZE;
}

/// Target 3: virtio-scsi requests (every CDB the target parses), task management and
/// asynchronous-notification queries, against two real logical units.
pub fn virtio_scsi(data: &[u8]) {
    let input = Input::new(data);
    SCSI_DISKS.with(|disks| {
        disks[0].reset(DISK_BYTES);
        let unit = |file: &ScratchFile, target: u16, lun: u32, read_only: bool| ScsiDiskConfig {
            path: file.path.clone(),
            target: Some(target),
            lun: Some(lun),
            read_only,
            direct: false,
            serial: None,
        };
        let mut dev = ScsiDevice::new(ScsiConfig {
            queues: 1,
            disks: vec![unit(&disks[0], 0, 0, false), unit(&disks[1], 1, 3, true)],
        })
        .expect("the scratch images open");
        if input.extra(0) & 1 != 0 {
            // The driver may change the sense and CDB sizes before DRIVER_OK.
            dev.write_config(20, &u32::from(input.extra(1)).to_le_bytes());
            dev.write_config(24, &u32::from(input.extra(2)).to_le_bytes());
        }
        poke_config(&mut dev, &input);
        activate_and_run(&mut dev, &input, 3, false);
    });
    let _ = scsi::QUEUE_MAX_SIZE;
}

/// Target 4: virtio-net transmit headers, receive buffers and the control queue's
/// commands, through the real workers over a memfd standing in for the TAP (which holds
/// the frame the receive queue gets: the image at 0xc000, `extra(0..2)` bytes long).
pub fn virtio_net(data: &[u8]) {
    let input = Input::new(data);
    let mem = input.memory();
    let frame_len = usize::from(u16::from_le_bytes([input.extra(0), input.extra(1)]) % 0x4000);
    let mut frame = vec![0u8; frame_len];
    let _ = mem.read_slice(&mut frame, vm_memory::GuestAddress(0xc000));
    let slot = Arc::new(TapSlot::new(
        Tap::from_file("rvfuzz0", memfd_with(&frame)),
        true,
    ));
    let link = Arc::new(LinkState::default());
    let bits = input.extra(2);
    let bit = |b: u8| bits & (1 << b) != 0;
    let rules = TxRules {
        csum: bit(0),
        tso4: bit(1),
        tso6: bit(2),
        ecn: bit(3),
        mtu: [1500, 68, 9000, 65_517][usize::from(input.extra(3) & 3)],
    };
    let mode = RxMode {
        mergeable: bit(4),
        large: bit(5),
    };
    let offload = if bit(5) {
        libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6
    } else {
        0
    };
    let max = ringvisor_devices::virtio::net::QUEUE_MAX_SIZE;
    let mut queues = make_queues(&input, max, 3).into_iter();
    let mut next = || queues.next().expect("three queues").1;
    let mut workers: QueueWorkers = vec![
        (
            0,
            Box::new(NetRxWorker::new(
                0,
                next(),
                mem.clone(),
                Arc::clone(&slot),
                mode,
                offload,
                Arc::clone(&link),
            )),
        ),
        (
            1,
            Box::new(NetTxWorker::new(
                1,
                next(),
                mem.clone(),
                Arc::clone(&slot),
                rules,
                Arc::clone(&link),
            )),
        ),
        (
            2,
            Box::new(NetControlWorker::new(
                2,
                next(),
                mem.clone(),
                vec![slot],
                bit(6),
            )),
        ),
    ];
    Reactor::new(&input, Some(&mem)).run(&mut workers, input.rounds());
}

/// Target 5: virtio-console control messages (and port data), multiport or not, with
/// the console and one named port writing to real files.
pub fn virtio_console(data: &[u8]) {
    let input = Input::new(data);
    CONSOLE_FILES.with(|files| {
        let mut files = files.borrow_mut();
        let files =
            files.get_or_insert_with(|| [ScratchFile::new("con0", 0), ScratchFile::new("con1", 0)]);
        let mut dev = ConsoleDevice::new(ConsoleConfig {
            console: PortBackend::File(files[0].path.clone()),
            ports: vec![NamedPort {
                name: "org.ringvisor.fuzz".to_owned(),
                backend: PortBackend::File(files[1].path.clone()),
            }],
        })
        .expect("the scratch files open");
        poke_config(&mut dev, &input);
        let acked = input.acked(dev.offered_features());
        // VIRTIO_CONSOLE_F_MULTIPORT: the control queues and one queue pair per port.
        let multiport = acked & (1 << 1) != 0;
        let count = if multiport { 6 } else { 2 };
        // activate reads the acked features again from the input: same answer.
        activate_and_run(&mut dev, &input, count, false);
    });
}

/// Target 6: balloon page lists (inflate, deflate, free page reporting) and the
/// statistics queue, over real guest memory with protected ranges.
pub fn virtio_balloon(data: &[u8]) {
    let input = Input::new(data);
    let mut dev = BalloonDevice::new(BalloonConfig {
        initial_target_bytes: u64::from(input.extra(0)) << 12,
        deflate_on_oom: input.extra(1) & 1 != 0,
        free_page_reporting: input.extra(1) & 2 != 0,
        stats_interval: Duration::from_millis(u64::from(input.extra(1) >> 2)),
        protected: vec![(0x6000, 0x6100), (0x9000, 0xb000)],
    })
    .expect("a valid balloon configuration");
    if input.extra(2) != 0 {
        // num_pages is read-only, actual and poison_val are the driver's.
        dev.write_config(
            u64::from(input.extra(2) & 0xf),
            &u32::from_le_bytes([input.extra(2), input.extra(3), 0, 0xff]).to_le_bytes(),
        );
    }
    poke_config(&mut dev, &input);
    let acked = input.acked(dev.offered_features());
    let count = 2
        + usize::from(acked & (1 << balloon::VIRTIO_BALLOON_F_STATS_VQ) != 0)
        + usize::from(acked & (1 << balloon::VIRTIO_BALLOON_F_REPORTING) != 0);
    activate_and_run(&mut dev, &input, count, true);
    let _ = dev.handle().stats();
    let _ = RAM_END;
}
