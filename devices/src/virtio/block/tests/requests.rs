//! Requests that succeed, and interrupt suppression.

use super::*;

#[test]
fn write_then_read_back_across_descriptors_and_regions() {
    let disk = TempDisk::new(64 * 1024);
    let dev = open(&disk, false);
    let mem = guest_memory();
    let mut h = Harness::new(&mem, &dev, false);

    // 2 KiB in three buffers, the middle one straddling the two memory regions.
    let data = pattern(2048, 0x5a);
    let bufs = [
        (DATA, 512),
        (REGION_SPLIT - 512, 1024),
        (DATA + 0x4000, 512),
    ];
    let mut off = 0;
    for &(addr, len) in &bufs {
        mem.write_slice(&data[off..off + len], GuestAddress(addr))
            .unwrap();
        off += len;
    }
    let chain: Vec<_> = bufs.iter().map(|&(a, l)| (a, l as u32, R)).collect();
    assert_eq!(h.request(VIRTIO_BLK_T_OUT, 2, &chain), (OK, 1));
    assert_eq!(&disk.contents()[1024..3072], &data[..]);

    // Read it back into two different buffers.
    let (s, len) = h.request(
        VIRTIO_BLK_T_IN,
        2,
        &[(DATA + 0x8000, 1536, W), (REGION_SPLIT + 0x1000, 512, W)],
    );
    assert_eq!((s, len), (OK, 2049));
    let mut back = read_mem(&mem, DATA + 0x8000, 1536);
    back.extend(read_mem(&mem, REGION_SPLIT + 0x1000, 512));
    assert_eq!(back, data);

    let stats = h.stats();
    assert_eq!((stats.reads, stats.writes), (1, 1));
    assert_eq!((stats.bytes_read, stats.bytes_written), (2048, 2048));
    assert_eq!(stats.refused + stats.io_errors, 0);
}

#[test]
fn indirect_chain_reads() {
    let disk = TempDisk::new(4096);
    std::fs::write(&disk.path, pattern(4096, 3)).unwrap();
    let dev = open(&disk, false);
    let mem = guest_memory();
    let mut h = Harness::new(&mem, &dev, false);

    write_header(&mem, HDR, VIRTIO_BLK_T_IN, 1);
    let entries = [(HDR, 16, R), (DATA, 1024, W), (STATUS, 1, W)];
    for (i, &(addr, len, flags)) in entries.iter().enumerate() {
        let last = i + 1 == entries.len();
        let flags = if last {
            flags
        } else {
            flags | VRING_DESC_F_NEXT as u16
        };
        let desc = RawDescriptor::from(Descriptor::new(addr, len, flags, i as u16 + 1));
        mem.write_obj(desc, GuestAddress(TABLE + 16 * i as u64))
            .unwrap();
    }
    let (s, len) = h.raw_request(&[(TABLE, 48, VRING_DESC_F_INDIRECT as u16)]);
    assert_eq!((s, len), (OK, 1025));
    assert_eq!(read_mem(&mem, DATA, 1024), pattern(4096, 3)[512..1536]);
}

#[test]
fn flush_completes() {
    let disk = TempDisk::new(4096);
    let dev = open(&disk, false);
    let mem = guest_memory();
    let mut h = Harness::new(&mem, &dev, false);
    assert_eq!(h.request(VIRTIO_BLK_T_FLUSH, 0, &[]), (OK, 1));
    assert_eq!(h.stats().flushes, 1);
}

#[test]
fn discard_and_write_zeroes_clear_ranges() {
    let disk = TempDisk::filled(8192, 0xaa);
    let dev = open(&disk, false);
    let mem = guest_memory();
    let mut h = Harness::new(&mem, &dev, false);
    let seg = (HDR + 16, 16, R);

    write_segment(&mem, HDR + 16, 1, 2, 0);
    assert_eq!(h.request(VIRTIO_BLK_T_DISCARD, 0, &[seg]), (OK, 1));
    write_segment(&mem, HDR + 16, 4, 1, 0);
    assert_eq!(h.request(VIRTIO_BLK_T_WRITE_ZEROES, 0, &[seg]), (OK, 1));
    let unmap = VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP;
    write_segment(&mem, HDR + 16, 6, 1, unmap);
    assert_eq!(h.request(VIRTIO_BLK_T_WRITE_ZEROES, 0, &[seg]), (OK, 1));

    let c = disk.contents();
    assert_eq!(c.len(), 8192, "fallocate must keep the size");
    let zero = |r: std::ops::Range<usize>| c[r].iter().all(|&b| b == 0);
    let aa = |r: std::ops::Range<usize>| c[r].iter().all(|&b| b == 0xaa);
    assert!(aa(0..512) && zero(512..1536) && aa(1536..2048));
    assert!(zero(2048..2560) && aa(2560..3072) && zero(3072..3584) && aa(3584..8192));

    // UNMAP on a discard and unknown flags are UNSUPP (spec 5.2.6.2), as are two segments.
    write_segment(&mem, HDR + 16, 0, 1, unmap);
    assert_eq!(h.request(VIRTIO_BLK_T_DISCARD, 0, &[seg]), (UNSUPP, 1));
    write_segment(&mem, HDR + 16, 0, 1, 0x4);
    assert_eq!(h.request(VIRTIO_BLK_T_WRITE_ZEROES, 0, &[seg]), (UNSUPP, 1));
    write_segment(&mem, HDR + 16, 0, 1, 0);
    write_segment(&mem, HDR + 32, 2, 1, 0);
    let two = (HDR + 16, 32, R);
    assert_eq!(h.request(VIRTIO_BLK_T_DISCARD, 0, &[two]), (UNSUPP, 1));
    // Past the end, and a torn segment.
    write_segment(&mem, HDR + 16, 15, 2, 0);
    assert_eq!(h.request(VIRTIO_BLK_T_DISCARD, 0, &[seg]), (IOERR, 1));
    assert_eq!(
        h.request(VIRTIO_BLK_T_DISCARD, 0, &[(HDR + 16, 8, R)]),
        (IOERR, 1)
    );
    assert!(aa(0..512), "refused requests leave the disk alone");
    let stats = h.stats();
    assert_eq!((stats.discards, stats.write_zeroes), (5, 3));
    assert_eq!(stats.refused, 5);
}

#[test]
fn read_only_disk_refuses_changes() {
    let disk = TempDisk::filled(4096, 0x11);
    let dev = open(&disk, true);
    let mem = guest_memory();
    let mut h = Harness::new(&mem, &dev, false);

    mem.write_slice(&[0x22; 512], GuestAddress(DATA)).unwrap();
    assert_eq!(
        h.request(VIRTIO_BLK_T_OUT, 0, &[(DATA, 512, R)]),
        (IOERR, 1)
    );
    write_segment(&mem, HDR + 16, 0, 1, 0);
    let seg = [(HDR + 16, 16, R)];
    assert_eq!(h.request(VIRTIO_BLK_T_DISCARD, 0, &seg), (IOERR, 1));
    assert_eq!(h.request(VIRTIO_BLK_T_WRITE_ZEROES, 0, &seg), (IOERR, 1));
    assert_eq!(disk.contents(), vec![0x11; 4096]);

    assert_eq!(h.request(VIRTIO_BLK_T_FLUSH, 0, &[]), (OK, 1));
    assert_eq!(h.request(VIRTIO_BLK_T_IN, 0, &[(DATA, 512, W)]), (OK, 513));
    assert_eq!(read_mem(&mem, DATA, 512), vec![0x11; 512]);
}

#[test]
fn get_id_returns_the_serial() {
    let disk = TempDisk::new(4096);
    let dev = BlockDevice::new(BlockConfig {
        serial: Some("ringvisor-disk-0".into()),
        ..disk.config()
    })
    .unwrap();
    let mem = guest_memory();
    let mut h = Harness::new(&mem, &dev, false);

    mem.write_slice(&[0xff; 20], GuestAddress(DATA)).unwrap();
    let (s, len) = h.request(VIRTIO_BLK_T_GET_ID, 0, &[(DATA, 20, W)]);
    assert_eq!((s, len), (OK, 21));
    let mut want = b"ringvisor-disk-0".to_vec();
    want.resize(20, 0);
    assert_eq!(read_mem(&mem, DATA, 20), want);

    // A short buffer gets the start of the ID.
    mem.write_slice(&[0xff; 20], GuestAddress(DATA)).unwrap();
    assert_eq!(h.request(VIRTIO_BLK_T_GET_ID, 0, &[(DATA, 4, W)]), (OK, 5));
    assert_eq!(read_mem(&mem, DATA, 5), b"ring\xff");
    assert_eq!(h.stats().get_ids, 2);
}

#[test]
fn direct_io_needs_aligned_buffers() {
    let disk = TempDisk::new(4096);
    let dev = BlockDevice::new(BlockConfig {
        direct: true,
        ..disk.config()
    })
    .unwrap();
    let mem = guest_memory();
    let mut h = Harness::new(&mem, &dev, false);
    assert_eq!(h.request(VIRTIO_BLK_T_IN, 0, &[(DATA, 512, W)]), (OK, 513));
    let misaligned = h.request(VIRTIO_BLK_T_IN, 0, &[(DATA + 8, 512, W)]);
    if dev.direct() {
        assert_eq!(misaligned, (IOERR, 1));
        assert_eq!(h.stats().unaligned_direct, 1);
    } else {
        // The filesystem refused O_DIRECT: the page cache takes any buffer.
        assert_eq!(misaligned, (OK, 513));
    }
}

#[test]
fn event_idx_suppresses_interrupts() {
    let disk = TempDisk::new(4096);
    let dev = open(&disk, false);
    let mem = guest_memory();
    let mut h = Harness::new(&mem, &dev, true);
    // used_event sits right after the avail ring.
    let used_event = h.vq.avail_addr().unchecked_add(4 + 2 * u64::from(QSIZE));

    assert!(!h.worker.needs_interrupt().unwrap(), "nothing used yet");
    mem.write_obj(0u16, used_event).unwrap();
    h.request(VIRTIO_BLK_T_FLUSH, 0, &[]);
    assert!(h.worker.needs_interrupt().unwrap(), "used idx passed 0");
    h.request(VIRTIO_BLK_T_FLUSH, 0, &[]);
    assert!(
        !h.worker.needs_interrupt().unwrap(),
        "driver asked for entry 0 only"
    );
    mem.write_obj(2u16, used_event).unwrap();
    h.request(VIRTIO_BLK_T_FLUSH, 0, &[]);
    assert!(h.worker.needs_interrupt().unwrap(), "used idx passed 2");
    assert!(!h.worker.needs_interrupt().unwrap(), "already reported");
}

#[test]
fn no_interrupt_flag_without_event_idx() {
    let disk = TempDisk::new(4096);
    let dev = open(&disk, false);
    let mem = guest_memory();
    let mut h = Harness::new(&mem, &dev, false);
    let flags = h.vq.avail_addr();

    mem.write_obj(VRING_AVAIL_F_NO_INTERRUPT as u16, flags)
        .unwrap();
    h.request(VIRTIO_BLK_T_FLUSH, 0, &[]);
    assert!(!h.worker.needs_interrupt().unwrap());
    mem.write_obj(0u16, flags).unwrap();
    h.request(VIRTIO_BLK_T_FLUSH, 0, &[]);
    assert!(h.worker.needs_interrupt().unwrap());
}

#[test]
fn notifications_toggle() {
    let disk = TempDisk::new(4096);
    let dev = open(&disk, false);
    let mem = guest_memory();
    let mut h = Harness::new(&mem, &dev, false);
    h.worker.disable_notification().unwrap();
    assert!(!h.worker.enable_notification().unwrap());
    write_header(&mem, HDR, VIRTIO_BLK_T_FLUSH, 0);
    h.add(&[(HDR, 16, R), (STATUS, 1, W)]);
    assert!(
        h.worker.enable_notification().unwrap(),
        "a chain is waiting"
    );
    assert_eq!(h.run(), 1);
}
