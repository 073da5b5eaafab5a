//! Errors the way a real target reports them, and requests a guest can break.

use super::*;
use crate::virtio::scsi::worker::error_sense_for_test;

#[test]
fn unsupported_out_of_range_and_write_protected() {
    let mem = guest_memory();
    let (dev, files) = device(&[(0, 0, 64, false), (0, 1, 64, true)]);
    let mut h = Harness::new(&mem, &dev);
    // FORMAT UNIT is not implemented.
    let a = h.command(lun(0, 0), &[0x04, 0, 0, 0, 0, 0], &[], 0);
    assert_eq!((a.response, a.status), (0, CHECK));
    assert_eq!(
        a.sense,
        vec![0x70, 0, 5, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x20, 0, 0, 0, 0, 0]
    );
    let a = h.command(lun(0, 0), &cdb10(0x28, 60, 8), &[], 4096);
    assert_eq!(a.sense, sense(5, 0x21, 0));
    assert_eq!(a.residual, 4096);
    let a = h.command(lun(0, 0), &cdb16(0x88, u64::MAX, 2), &[], 1024);
    assert_eq!(a.sense, sense(5, 0x21, 0));
    // Protection information asked for (RDPROTECT 1).
    let mut protected = cdb10(0x28, 0, 1);
    protected[1] = 0x20;
    let a = h.command(lun(0, 0), &protected, &[], 512);
    assert_eq!(a.sense, invalid_cdb(1, Some(5)));
    // NACA in the control byte.
    let a = h.command(lun(0, 0), &[0, 0, 0, 0, 0, 0x04], &[], 0);
    assert_eq!(a.sense, invalid_cdb(5, Some(2)));
    // Writes of every kind to the read-only unit.
    let block = pattern(512, 1);
    for cdb in [cdb10(0x2a, 0, 1), cdb16(0x93, 0, 1), cdb10(0x42, 0, 0)] {
        let mut cdb = cdb;
        if cdb[0] == 0x42 {
            cdb[8] = 24;
        }
        let a = h.command(lun(0, 1), &cdb, &block, 0);
        assert_eq!(a.sense, sense(7, 0x27, 0), "opcode {:#x}", cdb[0]);
    }
    assert!(files[1].contents().iter().all(|&b| b == 0));
    // A transfer longer than MAXIMUM TRANSFER LENGTH.
    let a = h.command(lun(0, 0), &cdb16(0x88, 0, 0x10000), &[], 512);
    assert_eq!(a.sense, invalid_cdb(10, None));
    assert_eq!(h.worker.stats().check_conditions, 9);
}

#[test]
fn absent_luns_and_targets() {
    let mem = guest_memory();
    let (dev, _files) = device(&[(4, 1, 8, false)]);
    let mut h = Harness::new(&mem, &dev);
    // LUN 0 of target 4 does not exist: INQUIRY says so, REPORT LUNS answers.
    let a = h.command(lun(4, 0), &[0x12, 0, 0, 0, 36, 0], &[], 36);
    assert_eq!((a.status, a.data[0], a.data.len()), (GOOD, 0x7f, 36));
    let a = h.command(
        lun(4, 0),
        &[0xa0, 0, 0, 0, 0, 0, 0, 0, 0, 64, 0, 0],
        &[],
        64,
    );
    assert_eq!(a.data, vec![0, 0, 0, 8, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
    let a = h.command(lun(4, 0), &[0, 0, 0, 0, 0, 0], &[], 0);
    assert_eq!(a.sense, sense(5, 0x25, 0));
    let a = h.command(lun(4, 0), &[0x03, 0, 0, 0, 18, 0], &[], 18);
    assert_eq!((a.status, a.data.clone()), (GOOD, sense(5, 0x25, 0)));
    // No target 5; a LUN field in another format.
    let a = h.command(lun(5, 0), &[0x12, 0, 0, 0, 36, 0], &[], 36);
    assert_eq!((a.response, a.used_len), (response::BAD_TARGET, RESP_LEN));
    let a = h.command([2, 4, 0x40, 1, 0, 0, 0, 0], &[0, 0, 0, 0, 0, 0], &[], 0);
    assert_eq!(a.response, response::BAD_TARGET);
}

#[test]
fn broken_requests_never_reach_the_file() {
    let mem = guest_memory();
    let (dev, files) = device(&[(0, 0, 64, false)]);
    let mut h = Harness::new(&mem, &dev);
    let mut req = vec![0u8; REQ_LEN as usize];
    req[..8].copy_from_slice(&lun(0, 0));
    req[19..29].copy_from_slice(&cdb10(0x2a, 0, 8));
    mem.write_slice(&req, GuestAddress(REQ)).unwrap();
    // A request header shorter than lun + id + attributes + CDB.
    let a = h.raw(&[(REQ, 30, R), (RESP, RESP_LEN, W)], 0);
    assert_eq!(a.response, response::FAILURE);
    // No room for the response: the chain comes back empty.
    let head = h.driver.add(&[(REQ, REQ_LEN, R), (RESP, 20, W)]);
    h.run();
    assert_eq!(h.driver.next_used(), (u32::from(head), 0));
    // Data-out shorter than the transfer: overrun, nothing written.
    let a = h.raw(
        &[(REQ, REQ_LEN, R), (DATA_OUT, 1024, R), (RESP, RESP_LEN, W)],
        0,
    );
    assert_eq!(a.response, response::OVERRUN);
    // Data-out outside guest memory.
    let a = h.raw(
        &[
            (REQ, REQ_LEN, R),
            (0x100_0000, 4096, R),
            (RESP, RESP_LEN, W),
        ],
        0,
    );
    assert_eq!(a.response, response::FAILURE);
    // Readable after writable.
    let a = h.raw(
        &[(REQ, REQ_LEN, R), (RESP, RESP_LEN, W), (DATA_OUT, 4096, R)],
        0,
    );
    assert_eq!(a.response, response::FAILURE);
    // A descriptor loop.
    let next = virtio_bindings::virtio_ring::VRING_DESC_F_NEXT as u16;
    h.driver.store(0, REQ, REQ_LEN, R | next, 1);
    h.driver.store(1, RESP, RESP_LEN, W | next, 0);
    h.driver.publish(0);
    h.run();
    let (_, len) = h.driver.next_used();
    assert_eq!(len, RESP_LEN);
    assert!(files[0].contents().iter().all(|&b| b == 0));
    assert_eq!(h.worker.stats().failed_requests, 6);
}

#[test]
fn host_errors_become_sense_data() {
    use super::super::target::OpKind;
    assert_eq!(
        error_sense_for_test(OpKind::Read, libc::EIO)
            .fixed()
            .to_vec(),
        sense(3, 0x11, 0)
    );
    assert_eq!(
        error_sense_for_test(OpKind::Write, libc::EIO)
            .fixed()
            .to_vec(),
        sense(3, 0x0c, 0)
    );
    assert_eq!(
        error_sense_for_test(OpKind::Write, libc::ENOSPC)
            .fixed()
            .to_vec(),
        sense(7, 0x27, 7)
    );
    assert_eq!(
        error_sense_for_test(OpKind::Read, libc::EBADF)
            .fixed()
            .to_vec(),
        sense(4, 0x44, 0)
    );
}

#[test]
fn a_failed_host_op_is_a_medium_error() {
    let mem = guest_memory();
    let (dev, _files) = device(&[(0, 0, 64, false)]);
    let mut h = Harness::new(&mem, &dev);
    let mut req = vec![0u8; REQ_LEN as usize];
    req[..8].copy_from_slice(&lun(0, 0));
    req[19..29].copy_from_slice(&cdb10(0x28, 0, 1));
    mem.write_slice(&req, GuestAddress(REQ)).unwrap();
    h.driver
        .add(&[(REQ, REQ_LEN, R), (RESP, RESP_LEN, W), (DATA_IN, 512, W)]);
    let mut batch = IoBatch::new();
    h.worker.drain(&mut batch).unwrap();
    let (tag, _op) = batch.drain().next().unwrap();
    h.worker
        .complete(tag, -libc::EIO, &mut IoBatch::new())
        .unwrap();
    let (_, len) = h.driver.next_used();
    assert_eq!(len, RESP_LEN, "no data-in on failure");
    let mut resp = [0u8; 30];
    mem.read_slice(&mut resp, GuestAddress(RESP)).unwrap();
    assert_eq!((resp[10], resp[11]), (CHECK, 0));
    assert_eq!(&resp[12..30], &sense(3, 0x11, 0)[..]);
    assert_eq!(u32::from_le_bytes(resp[4..8].try_into().unwrap()), 0);
    assert_eq!(h.worker.stats().io_errors, 1);
    // A short read is an error too.
    h.driver
        .add(&[(REQ, REQ_LEN, R), (RESP, RESP_LEN, W), (DATA_IN, 512, W)]);
    h.worker.drain(&mut batch).unwrap();
    let (tag, _op) = batch.drain().next().unwrap();
    h.worker.complete(tag, 100, &mut IoBatch::new()).unwrap();
    h.driver.next_used();
    mem.read_slice(&mut resp, GuestAddress(RESP)).unwrap();
    assert_eq!(&resp[12..30], &sense(3, 0x11, 0)[..]);
}
