//! Tier 2: prefaulted guest RAM registered with the reactors' rings as fixed buffers,
//! through the real virtio-blk device and io_uring on a real file (O_DIRECT). The
//! requests whose data lies in registered RAM are READ_FIXED/WRITE_FIXED; a page the
//! balloon releases must still receive what the disk reads into it afterwards.

use std::os::unix::fs::FileExt;

use ringvisor::memory::MemoryOptions;
use ringvisor_devices::virtio::block::BlockConfig;
use ringvisor_io::ReactorOptions;
use ringvisor_rig::devpath::{
    BlockRig as Rig, Completion, VIRTIO_BLK_S_OK as S_OK, VIRTIO_BLK_T_IN as T_IN,
    VIRTIO_BLK_T_OUT as T_OUT,
};
use ringvisor_rig::virtq_driver::Buffer;
use ringvisor_test_support::{can_pin_memory, TempFile};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};

const QUEUE_SIZE: u16 = 64;
/// The rig's RAM for one queue (the machine's minimum), all of it registered.
const RIG_RAM_BYTES: u64 = ringvisor::memory::MIN_MEMORY_BYTES;
const BLOCK: usize = 4096;

fn pattern(seed: u8) -> Vec<u8> {
    (0..BLOCK)
        .map(|i| (i as u8).wrapping_mul(13).wrapping_add(seed) | 1)
        .collect()
}

/// A disk whose block `i` holds `pattern(i)`, and a rig on it with prefaulted RAM.
fn prefaulted_rig(name: &str, blocks: u8) -> (TempFile, Rig) {
    let disk = TempFile::with_len(name, 1 << 20);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&disk.0)
        .unwrap();
    for i in 0..blocks {
        file.write_all_at(&pattern(i), u64::from(i) * BLOCK as u64)
            .unwrap();
    }
    let config = BlockConfig {
        path: disk.0.clone(),
        read_only: false,
        direct: true,
        queues: 1,
        serial: None,
    };
    let memory = MemoryOptions {
        prefault: true,
        ..MemoryOptions::default()
    };
    let rig = Rig::with_options(
        config,
        &[None],
        QUEUE_SIZE,
        &ReactorOptions::default(),
        &memory,
    )
    .unwrap();
    (disk, rig)
}

/// Reads disk block `block` into the guest buffer at `at` (one segment).
fn read_into(rig: &mut Rig, block: u8, at: GuestAddress) -> Vec<u8> {
    let Completion { status, used_len } = rig
        .roundtrip(
            0,
            T_IN,
            u64::from(block) * (BLOCK as u64 / 512),
            &[Buffer::writable(at, BLOCK as u32)],
        )
        .unwrap();
    assert_eq!((status, used_len), (S_OK, BLOCK as u32 + 1));
    let mut data = vec![0; BLOCK];
    rig.mem().read_slice(&mut data, at).unwrap();
    data
}

/// `data` is `pattern(seed)`; a mismatch shows where, not 4 KiB of bytes.
fn assert_block(data: &[u8], seed: u8, what: &str) {
    let expected = pattern(seed);
    if let Some(at) = data.iter().zip(&expected).position(|(a, b)| a != b) {
        panic!(
            "{what}: byte {at} is {}, not {} (first bytes {:?})",
            data[at],
            expected[at],
            &data[..16]
        );
    }
}

fn fixed_counts(rig: &Rig) -> (usize, u64, u64) {
    let stats = rig.stats();
    let queue = &stats[0].queues[0];
    (stats[0].fixed_buffers, queue.fixed_buffer_ops, queue.ops)
}

#[test]
fn one_segment_requests_in_prefaulted_ram_are_fixed_reads_and_writes() {
    if !can_pin_memory(RIG_RAM_BYTES) {
        return;
    }
    let (disk, mut rig) = prefaulted_rig("ram-fixed", 4);
    assert_eq!(fixed_counts(&rig).0, 1, "the rig's RAM is one piece");
    for block in 0..4 {
        let (completion, data) = rig.read(0, u64::from(block) * 8, BLOCK as u32).unwrap();
        assert_eq!(completion.status, S_OK);
        assert_block(&data, block, &format!("block {block}"));
    }
    let written = pattern(200);
    assert_eq!(rig.write(0, 5 * 8, &written).unwrap().status, S_OK);
    let mut on_disk = vec![0; BLOCK];
    std::fs::File::open(&disk.0)
        .unwrap()
        .read_exact_at(&mut on_disk, 5 * BLOCK as u64)
        .unwrap();
    assert_block(&on_disk, 200, "the fixed write in the file");
    let (_, fixed, ops) = fixed_counts(&rig);
    assert_eq!(
        (fixed, ops),
        (5, 5),
        "every request was a fixed read or write"
    );
    rig.shutdown().unwrap();
}

#[test]
fn a_page_released_like_the_balloon_does_still_receives_the_next_read() {
    if !can_pin_memory(RIG_RAM_BYTES) {
        return;
    }
    let (_disk, mut rig) = prefaulted_rig("ram-release", 2);
    let at = rig.queue(0).unwrap().alloc(BLOCK as u64).unwrap();
    assert_block(&read_into(&mut rig, 0, at), 0, "the first read");
    assert_eq!(fixed_counts(&rig).1, 1, "the first read was a fixed one");

    // What the balloon does with a page the guest gave up: the reactors let go of the
    // piece that holds it, then MADV_DONTNEED drops it; the next touch maps a zero page.
    let host = rig.mem().get_host_address(at).unwrap();
    let (_, reactors) = rig.split_mut();
    reactors.forget_ram(host as usize, BLOCK);
    // SAFETY: one page of the rig's private anonymous guest RAM, which nothing is
    // reading or writing now (no request is in flight).
    let rc = unsafe { libc::madvise(host.cast(), BLOCK, libc::MADV_DONTNEED) };
    assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
    let mut zeros = vec![1; BLOCK];
    rig.mem().read_slice(&mut zeros, at).unwrap();
    assert!(
        zeros.iter().all(|&b| b == 0),
        "the released page reads zeros"
    );

    // Had the ring kept its pin, this read would land in the old page and the guest
    // would go on seeing zeros.
    assert_block(
        &read_into(&mut rig, 1, at),
        1,
        "the read into the released page",
    );
    let (pieces, fixed, ops) = fixed_counts(&rig);
    assert_eq!(pieces, 0, "the piece left the ring");
    assert_eq!((fixed, ops), (1, 2), "the second read named its iovec");

    // A reboot clears RAM and has the pieces registered again.
    let (_, reactors) = rig.split_mut();
    reactors.restore_ram();
    assert_block(
        &read_into(&mut rig, 0, at),
        0,
        "the read after the pieces came back",
    );
    let (pieces, fixed, ops) = fixed_counts(&rig);
    assert_eq!((pieces, fixed, ops), (1, 2, 3));
    rig.shutdown().unwrap();
}

/// Whether this kernel has IORING_OP_READV_FIXED and WRITEV_FIXED (Linux 6.15+).
fn kernel_has_vectored_fixed() -> bool {
    let ring = io_uring::IoUring::new(2).unwrap();
    let mut probe = io_uring::Probe::new();
    ring.submitter().register_probe(&mut probe).unwrap();
    probe.is_supported(io_uring::opcode::ReadvFixed::CODE)
        && probe.is_supported(io_uring::opcode::WritevFixed::CODE)
}

#[test]
fn scattered_requests_in_prefaulted_ram_are_vectored_fixed_where_the_kernel_can() {
    if !can_pin_memory(RIG_RAM_BYTES) {
        return;
    }
    let (disk, mut rig) = prefaulted_rig("ram-vectored", 4);
    // Two blocks into two buffers apart from each other (a spacer between them).
    let queue = rig.queue(0).unwrap();
    let first = queue.alloc(BLOCK as u64).unwrap();
    queue.alloc(BLOCK as u64).unwrap();
    let second = queue.alloc(BLOCK as u64).unwrap();
    let buffers = [
        Buffer::writable(first, BLOCK as u32),
        Buffer::writable(second, BLOCK as u32),
    ];
    let Completion { status, used_len } = rig.roundtrip(0, T_IN, 2 * 8, &buffers).unwrap();
    assert_eq!((status, used_len), (S_OK, 2 * BLOCK as u32 + 1));
    let mut data = vec![0; BLOCK];
    rig.mem().read_slice(&mut data, first).unwrap();
    assert_block(&data, 2, "block 2 in the first buffer");
    rig.mem().read_slice(&mut data, second).unwrap();
    assert_block(&data, 3, "block 3 in the second buffer");

    // Two buffers apart again (the rig's scratch memory starts over after a roundtrip),
    // written out as one request to blocks 6 and 7.
    let queue = rig.queue(0).unwrap();
    let first = queue.alloc(BLOCK as u64).unwrap();
    queue.alloc(BLOCK as u64).unwrap();
    let second = queue.alloc(BLOCK as u64).unwrap();
    rig.mem().write_slice(&pattern(2), first).unwrap();
    rig.mem().write_slice(&pattern(3), second).unwrap();
    let written = [
        Buffer::readable(first, BLOCK as u32),
        Buffer::readable(second, BLOCK as u32),
    ];
    let Completion { status, .. } = rig.roundtrip(0, T_OUT, 6 * 8, &written).unwrap();
    assert_eq!(status, S_OK);
    let mut on_disk = vec![0; 2 * BLOCK];
    std::fs::File::open(&disk.0)
        .unwrap()
        .read_exact_at(&mut on_disk, 6 * BLOCK as u64)
        .unwrap();
    assert_block(&on_disk[..BLOCK], 2, "block 6 on disk");
    assert_block(&on_disk[BLOCK..], 3, "block 7 on disk");

    let (_, fixed, ops) = fixed_counts(&rig);
    let expected = if kernel_has_vectored_fixed() { 2 } else { 0 };
    assert_eq!(
        (fixed, ops),
        (expected, 2),
        "two-segment requests are READV_FIXED/WRITEV_FIXED exactly where the kernel has them"
    );
    rig.shutdown().unwrap();
}
