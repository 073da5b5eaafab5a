//! Requests the device must refuse, and rings it must give up on.

use super::*;

#[test]
fn bad_sector_and_length_are_ioerr() {
    let disk = TempDisk::new(64 * 1024); // 128 sectors
    let dev = open(&disk, false);
    let mem = guest_memory();
    let mut h = Harness::new(&mem, &dev, false);

    let two = [(DATA, 1024, W)];
    assert_eq!(h.request(VIRTIO_BLK_T_IN, 127, &two), (IOERR, 1));
    assert_eq!(h.request(VIRTIO_BLK_T_IN, u64::MAX, &two), (IOERR, 1));
    assert_eq!(h.request(VIRTIO_BLK_T_IN, 126, &two), (OK, 1025));
    assert_eq!(h.request(VIRTIO_BLK_T_IN, 0, &[(DATA, 513, W)]), (IOERR, 1));
    assert_eq!(
        h.request(VIRTIO_BLK_T_OUT, 0, &[(DATA, 100, R)]),
        (IOERR, 1)
    );
    assert_eq!(h.stats().refused, 4);
}

#[test]
fn unknown_type_is_unsupp() {
    let disk = TempDisk::new(4096);
    let dev = open(&disk, false);
    let mem = guest_memory();
    let mut h = Harness::new(&mem, &dev, false);
    assert_eq!(h.request(0x99, 0, &[]), (UNSUPP, 1));
}

#[test]
fn buffers_outside_guest_memory() {
    let disk = TempDisk::new(4096);
    let dev = open(&disk, false);
    let mem = guest_memory();
    let mut h = Harness::new(&mem, &dev, false);

    assert_eq!(h.request(VIRTIO_BLK_T_IN, 0, &[(HOLE, 512, W)]), (IOERR, 1));
    // Straddling the end of guest memory.
    let end = 2 * REGION_SPLIT;
    assert_eq!(
        h.request(VIRTIO_BLK_T_OUT, 0, &[(end - 512, 1024, R)]),
        (IOERR, 1)
    );
    // Wrapping around the address space.
    assert_eq!(
        h.request(VIRTIO_BLK_T_IN, 0, &[(u64::MAX - 10, 512, W)]),
        (IOERR, 1)
    );
    // With the status byte itself outside RAM there is nowhere to report.
    write_header(&mem, HDR, VIRTIO_BLK_T_IN, 0);
    mem.write_obj(UNTOUCHED, GuestAddress(STATUS)).unwrap();
    let head = h.add(&[(HDR, 16, R), (DATA, 512, W), (HOLE, 1, W)]);
    assert_eq!(h.run(), 1);
    assert_eq!(h.next_used(), (u32::from(head), 0));
    assert_eq!(h.stats().refused, 4);
}

#[test]
fn wrong_direction_is_ioerr() {
    let disk = TempDisk::filled(4096, 0x33);
    let dev = open(&disk, false);
    let mem = guest_memory();
    let mut h = Harness::new(&mem, &dev, false);

    // A read whose data buffer is device-readable.
    assert_eq!(h.request(VIRTIO_BLK_T_IN, 0, &[(DATA, 512, R)]), (IOERR, 1));
    // A write whose data buffer is device-writable.
    assert_eq!(
        h.request(VIRTIO_BLK_T_OUT, 0, &[(DATA, 512, W)]),
        (IOERR, 1)
    );
    // A readable descriptor after a writable one.
    write_header(&mem, HDR, VIRTIO_BLK_T_IN, 0);
    let chain = [(HDR, 16, R), (STATUS, 1, W), (DATA, 512, R)];
    assert_eq!(h.raw_request(&chain), (IOERR, 1));
    assert_eq!(disk.contents(), vec![0x33; 4096]);
}

#[test]
fn malformed_chains() {
    let disk = TempDisk::new(4096);
    let dev = open(&disk, false);
    let mem = guest_memory();
    let mut h = Harness::new(&mem, &dev, false);

    // No writable descriptor at all: returned with used length 0, nothing written.
    write_header(&mem, HDR, VIRTIO_BLK_T_FLUSH, 0);
    let (s, len) = h.raw_request(&[(HDR, 16, R)]);
    assert_eq!((s, len), (UNTOUCHED, 0));

    // A header shorter than 16 bytes.
    assert_eq!(h.raw_request(&[(HDR, 8, R), (STATUS, 1, W)]), (IOERR, 1));

    // A loop: header -> status -> status -> ...
    mem.write_obj(UNTOUCHED, GuestAddress(STATUS)).unwrap();
    let next = VRING_DESC_F_NEXT as u16;
    h.store(0, HDR, 16, R | next, 1);
    h.store(1, STATUS, 1, W | next, 1);
    h.publish(0);
    let (s, len) = h.complete_one(0);
    assert_eq!((s, len), (IOERR, 1));

    // A next index outside the table.
    mem.write_obj(UNTOUCHED, GuestAddress(STATUS)).unwrap();
    h.store(2, HDR, 16, R | next, 1);
    h.store(3, STATUS, 1, W | next, QSIZE + 3);
    h.publish(2);
    assert_eq!(h.complete_one(2), (IOERR, 1));

    // An indirect descriptor that is not alone, and a nested indirect table.
    mem.write_obj(UNTOUCHED, GuestAddress(STATUS)).unwrap();
    h.store(4, STATUS, 1, W | next, 5);
    h.store(5, TABLE, 16, VRING_DESC_F_INDIRECT as u16, 0);
    h.publish(4);
    assert_eq!(h.complete_one(4), (IOERR, 1));
    let nested = Descriptor::new(TABLE, 16, VRING_DESC_F_INDIRECT as u16, 0);
    mem.write_obj(RawDescriptor::from(nested), GuestAddress(TABLE))
        .unwrap();
    let head = h.add(&[(TABLE, 16, VRING_DESC_F_INDIRECT as u16)]);
    assert_eq!(h.run(), 1);
    assert_eq!(h.next_used(), (u32::from(head), 0));
    assert_eq!(h.stats().refused, 6);
}

#[test]
fn failed_and_short_host_io_is_ioerr() {
    let disk = TempDisk::new(4096);
    let dev = open(&disk, false);
    let mem = guest_memory();
    let mut h = Harness::new(&mem, &dev, false);

    write_header(&mem, HDR, VIRTIO_BLK_T_IN, 0);
    let chain = [(HDR, 16, R), (DATA, 1024, W), (STATUS, 1, W)];
    for result in [-libc::EIO, 512] {
        let head = h.add(&chain);
        let mut batch = IoBatch::new();
        assert_eq!(h.worker.drain(&mut batch).unwrap(), 1);
        let (tag, _) = batch.drain().next().unwrap();
        assert_eq!(h.worker.in_flight(), 1);
        h.worker.complete(tag, result, &mut IoBatch::new()).unwrap();
        assert_eq!(h.next_used(), (u32::from(head), 1));
        assert_eq!(mem.read_obj::<u8>(GuestAddress(STATUS)).unwrap(), IOERR);
    }
    // A stray completion is ignored.
    h.worker.complete(1234, 0, &mut IoBatch::new()).unwrap();
    assert_eq!(h.stats().io_errors, 2);
}

#[test]
fn broken_rings_fault_the_queue() {
    let disk = TempDisk::new(4096);
    let dev = open(&disk, false);
    let mem = guest_memory();
    let mut h = Harness::new(&mem, &dev, false);

    // A head index past the queue size.
    h.publish(QSIZE + 1);
    assert!(h.worker.drain(&mut IoBatch::new()).is_err());

    // The same head submitted again and again while its I/O is in flight.
    let mut h = Harness::new(&mem, &dev, false);
    write_header(&mem, HDR, VIRTIO_BLK_T_FLUSH, 0);
    let head = h.add(&[(HDR, 16, R), (STATUS, 1, W)]);
    let mut batch = IoBatch::new();
    for _ in 0..QSIZE {
        assert_eq!(h.worker.drain(&mut batch).unwrap(), 1);
        h.publish(head);
    }
    assert_eq!(h.worker.in_flight(), usize::from(QSIZE));
    assert!(h.worker.drain(&mut batch).is_err());

    // An avail index more than a queue ahead.
    let mut h = Harness::new(&mem, &dev, false);
    h.vq.avail().idx().store(QSIZE + 1);
    let fault = h.worker.drain(&mut IoBatch::new()).unwrap_err();
    assert!(
        matches!(fault, ringvisor_io::QueueFault::Broken { queue: 0, .. }),
        "{fault}"
    );
}
