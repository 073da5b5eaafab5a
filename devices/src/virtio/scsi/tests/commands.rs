//! One test per command family, response and sense data checked byte for byte.

use super::*;

#[test]
fn test_unit_ready_and_standard_inquiry() {
    let mem = guest_memory();
    let (dev, _files) = device(&[(0, 0, 64, false)]);
    let mut h = Harness::new(&mem, &dev);
    let a = h.command(lun(0, 0), &[0, 0, 0, 0, 0, 0], &[], 0);
    assert_eq!((a.response, a.status, a.used_len), (0, GOOD, RESP_LEN));

    let a = h.command(lun(0, 0), &[0x12, 0, 0, 0, 96, 0], &[], 128);
    assert_eq!((a.response, a.status), (0, GOOD));
    assert_eq!(a.data.len(), 74);
    assert_eq!(&a.data[..8], &[0x00, 0x00, 0x06, 0x12, 69, 0, 0, 0x02]);
    assert_eq!(&a.data[8..36], b"RINGVSR VIRTUAL DISK    0001");
    assert_eq!(&a.data[58..64], &[0x00, 0xa0, 0x04, 0x60, 0x04, 0xc0]);
    assert_eq!(a.residual, 128 - 74);
    assert_eq!(a.used_len, RESP_LEN + 74);

    // ALLOCATION LENGTH 5: only the header.
    let a = h.command(lun(0, 0), &[0x12, 0, 0, 0, 5, 0], &[], 128);
    assert_eq!(a.data, vec![0x00, 0x00, 0x06, 0x12, 69]);
    assert_eq!(a.residual, 123);

    // A page code without EVPD.
    let a = h.command(lun(0, 0), &[0x12, 0, 0x80, 0, 96, 0], &[], 128);
    assert_eq!((a.status, a.sense.clone()), (CHECK, invalid_cdb(2, None)));
    assert_eq!(a.residual, 128);
}

#[test]
fn vital_product_data_pages() {
    let mem = guest_memory();
    let (dev, _files) = device(&[(3, 5, 64, false), (3, 6, 64, true)]);
    let mut h = Harness::new(&mem, &dev);
    let vpd = |h: &mut Harness, l: u16, page: u8| {
        let a = h.command(lun(3, l), &[0x12, 1, page, 1, 0, 0], &[], 256);
        assert_eq!(a.status, GOOD, "page {page:#x}: {:?}", a.sense);
        a.data
    };
    assert_eq!(
        vpd(&mut h, 5, 0x00),
        vec![0, 0, 0, 6, 0x00, 0x80, 0x83, 0xb0, 0xb1, 0xb2]
    );
    let serial = vpd(&mut h, 5, 0x80);
    assert_eq!(&serial[..4], &[0, 0x80, 0, 11]);
    assert_eq!(&serial[4..], b"rv-scsi-3-5");
    let id = vpd(&mut h, 5, 0x83);
    assert_eq!(&id[..2], &[0, 0x83]);
    assert_eq!(&id[4..8], &[0x01, 0x03, 0x00, 0x08]);
    assert_eq!(id[8] >> 4, 3, "NAA locally assigned");
    assert_eq!(&id[16..20], &[0x02, 0x01, 0x00, 8 + 11]);
    assert_eq!(&id[20..39], b"RINGVSR rv-scsi-3-5");
    // Different units, different designators.
    assert_ne!(vpd(&mut h, 6, 0x83)[8..16], id[8..16]);

    let limits = vpd(&mut h, 5, 0xb0);
    assert_eq!(limits.len(), 64);
    assert_eq!(&limits[..4], &[0, 0xb0, 0, 0x3c]);
    assert_eq!(limits[4], 1, "WSNZ");
    assert_eq!(&limits[8..12], &0xffffu32.to_be_bytes());
    assert_eq!(&limits[24..28], &64u32.to_be_bytes());
    assert_eq!(&limits[36..44], &65536u64.to_be_bytes());
    let chars = vpd(&mut h, 5, 0xb1);
    assert_eq!(&chars[..6], &[0, 0xb1, 0, 0x3c, 0, 1]);
    assert_eq!(vpd(&mut h, 5, 0xb2), vec![0, 0xb2, 0, 4, 0, 0xe4, 0x02, 0]);
    assert_eq!(vpd(&mut h, 6, 0xb2), vec![0, 0xb2, 0, 4, 0, 0, 0, 0]);

    let a = h.command(lun(3, 5), &[0x12, 1, 0x89, 1, 0, 0], &[], 256);
    assert_eq!((a.status, a.sense), (CHECK, invalid_cdb(2, None)));
}

#[test]
fn read_capacity_10_and_16() {
    let mem = guest_memory();
    let (dev, _files) = device(&[(0, 0, 2048, false), (0, 1, 8, true)]);
    let mut h = Harness::new(&mem, &dev);
    let a = h.command(lun(0, 0), &cdb10(0x25, 0, 0), &[], 8);
    assert_eq!(a.data, vec![0, 0, 0x07, 0xff, 0, 0, 0x02, 0]);
    let mut rc16 = cdb16(0x9e, 0, 32);
    rc16[1] = 0x10;
    let a = h.command(lun(0, 0), &rc16, &[], 32);
    let mut want = vec![0u8; 32];
    want[6..8].copy_from_slice(&[0x07, 0xff]);
    want[10] = 0x02;
    want[13] = 3;
    want[14] = 0xc0;
    assert_eq!(a.data, want);
    let a = h.command(lun(0, 1), &rc16, &[], 32);
    assert_eq!((a.data[7], a.data[14]), (7, 0), "read-only: no LBPME");
    // An unimplemented SERVICE ACTION IN(16) action.
    let mut other = rc16.clone();
    other[1] = 0x12;
    let a = h.command(lun(0, 0), &other, &[], 32);
    assert_eq!((a.status, a.sense), (CHECK, invalid_cdb(1, Some(4))));
    // PMI-era LBA must be 0.
    let a = h.command(lun(0, 0), &cdb10(0x25, 5, 0), &[], 8);
    assert_eq!(a.sense, invalid_cdb(2, None));
}

#[test]
fn reads_and_writes_of_every_size_reach_the_file() {
    let mem = guest_memory();
    let (dev, files) = device(&[(0, 0, 64, false)]);
    let mut h = Harness::new(&mem, &dev);
    let data = pattern(4096, 1);
    let a = h.command(lun(0, 0), &cdb10(0x2a, 8, 8), &data, 0);
    assert_eq!((a.response, a.status, a.residual), (0, GOOD, 0));
    assert_eq!(&files[0].contents()[4096..8192], &data[..]);

    let a = h.command(lun(0, 0), &cdb16(0x88, 8, 8), &[], 4096);
    assert_eq!((a.status, a.data.clone()), (GOOD, data.clone()));
    assert_eq!(a.used_len, RESP_LEN + 4096);
    // READ(12) into a larger buffer: the rest is the residual.
    let mut r12 = vec![0xa8, 0, 0, 0, 0, 9, 0, 0, 0, 1, 0, 0];
    let a = h.command(lun(0, 0), &r12, &[], 1024);
    assert_eq!((a.data.as_slice(), a.residual), (&data[512..1024], 512));
    // READ(6) and WRITE(6).
    let w6 = [0x0a, 0, 0, 40, 1, 0];
    let block = pattern(512, 9);
    assert_eq!(h.command(lun(0, 0), &w6, &block, 0).status, GOOD);
    let a = h.command(lun(0, 0), &[0x08, 0, 0, 40, 1, 0], &[], 512);
    assert_eq!(a.data, block);
    // WRITE(16), WRITE(12).
    assert_eq!(
        h.command(lun(0, 0), &cdb16(0x8a, 60, 1), &block, 0).status,
        GOOD
    );
    r12[0] = 0xaa;
    r12[5] = 61;
    assert_eq!(h.command(lun(0, 0), &r12, &block, 0).status, GOOD);
    assert_eq!(
        &files[0].contents()[60 * 512..62 * 512],
        &[block.clone(), block].concat()[..]
    );
    // Zero blocks: nothing moves.
    let a = h.command(lun(0, 0), &cdb10(0x28, 0, 0), &[], 0);
    assert_eq!((a.status, a.used_len), (GOOD, RESP_LEN));
    let stats = h.worker.stats();
    assert_eq!((stats.reads, stats.writes), (3, 4));
    assert_eq!(stats.bytes_read, 4096 + 512 + 512);
}

#[test]
fn mode_sense_pages_and_headers() {
    let mem = guest_memory();
    let (dev, _files) = device(&[(0, 0, 64, false), (0, 1, 64, true)]);
    let mut h = Harness::new(&mem, &dev);
    // MODE SENSE(6), caching page, with the block descriptor.
    let a = h.command(lun(0, 0), &[0x1a, 0, 0x08, 0, 255, 0], &[], 255);
    let mut want = vec![3 + 8 + 20, 0, 0, 8, 0, 0, 0, 64, 0, 0, 2, 0];
    let mut caching = vec![0u8; 20];
    caching[0] = 0x08;
    caching[1] = 18;
    caching[2] = 0x04;
    want.extend(&caching);
    assert_eq!(a.data, want);
    // Read-only unit: WP; DBD: no descriptor; all pages.
    let a = h.command(lun(0, 1), &[0x1a, 0x08, 0x3f, 0, 255, 0], &[], 255);
    assert_eq!(&a.data[..4], &[3 + 20 + 12 + 12, 0, 0x80, 0]);
    assert_eq!((a.data[4], a.data[24], a.data[36]), (0x08, 0x0a, 0x1c));
    assert_eq!(a.data[38], 0x08, "DEXCPT");
    // MODE SENSE(10) with a long LBA descriptor, control page.
    let a = h.command(
        lun(0, 0),
        &[0x5a, 0x10, 0x0a, 0, 0, 0, 0, 0, 255, 0],
        &[],
        255,
    );
    assert_eq!(&a.data[..8], &[0, 6 + 16 + 12, 0, 0, 1, 0, 0, 16]);
    assert_eq!(&a.data[8..16], &64u64.to_be_bytes());
    assert_eq!(&a.data[20..24], &512u32.to_be_bytes());
    assert_eq!(&a.data[24..28], &[0x0a, 10, 0, 0x10]);
    // Changeable values: nothing.
    let a = h.command(lun(0, 0), &[0x1a, 0x08, 0x48, 0, 255, 0], &[], 255);
    assert_eq!(&a.data[4..7], &[0x08, 18, 0]);
    // Saved values, unknown page, subpage.
    let a = h.command(lun(0, 0), &[0x1a, 0, 0xc8, 0, 255, 0], &[], 255);
    assert_eq!(a.sense, sense(5, 0x39, 0));
    let a = h.command(lun(0, 0), &[0x1a, 0, 0x19, 0, 255, 0], &[], 255);
    assert_eq!(a.sense, invalid_cdb(2, Some(5)));
    let a = h.command(lun(0, 0), &[0x1a, 0, 0x08, 1, 255, 0], &[], 255);
    assert_eq!(a.sense, invalid_cdb(3, None));
}

#[test]
fn mode_select_accepts_the_current_values_only() {
    let mem = guest_memory();
    let (dev, _files) = device(&[(0, 0, 64, false)]);
    let mut h = Harness::new(&mem, &dev);
    // What Linux sends back: header, the caching page as sensed (PS cleared).
    let mut list = vec![0, 0, 0, 0];
    let mut caching = vec![0u8; 20];
    caching[0] = 0x08;
    caching[1] = 18;
    caching[2] = 0x04;
    list.extend(&caching);
    let sel = [0x15, 0x10, 0, 0, list.len() as u8, 0];
    let a = h.command(lun(0, 0), &sel, &list, 0);
    assert_eq!((a.status, a.sense.clone()), (GOOD, vec![]));
    // Turning the write cache off is not possible.
    list[4 + 2] = 0;
    let a = h.command(lun(0, 0), &sel, &list, 0);
    let mut want = sense(5, 0x26, 0);
    want[15] = 0x80;
    want[17] = 6;
    assert_eq!(a.sense, want);
    // SP=1, PF=0.
    let a = h.command(lun(0, 0), &[0x15, 0x11, 0, 0, 0, 0], &[], 0);
    assert_eq!(a.sense, invalid_cdb(1, Some(0)));
    let a = h.command(lun(0, 0), &[0x15, 0x00, 0, 0, 0, 0], &[], 0);
    assert_eq!(a.sense, invalid_cdb(1, Some(4)));
    // A list cut short by the driver.
    let a = h.command(
        lun(0, 0),
        &[0x55, 0x10, 0, 0, 0, 0, 0, 0, 40, 0],
        &[0; 8],
        0,
    );
    assert_eq!(a.sense, sense(5, 0x1a, 0));
}

#[test]
fn report_luns_and_supported_opcodes() {
    let mem = guest_memory();
    let (dev, _files) = device(&[(1, 0, 8, false), (1, 300, 8, false), (2, 0, 8, false)]);
    let mut h = Harness::new(&mem, &dev);
    let a = h.command(
        lun(1, 0),
        &[0xa0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0],
        &[],
        256,
    );
    assert_eq!(
        a.data,
        vec![0, 0, 0, 16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x41, 44, 0, 0, 0, 0, 0, 0]
    );
    let a = h.command(
        lun(1, 0),
        &[0xa0, 0, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0],
        &[],
        256,
    );
    assert_eq!(a.sense, invalid_cdb(6, None));

    // Every command, no timeouts.
    let a = h.command(
        lun(1, 0),
        &[0xa3, 0x0c, 0, 0, 0, 0, 0, 0, 8, 0, 0, 0],
        &[],
        2048,
    );
    let len = u32::from_be_bytes(a.data[..4].try_into().unwrap()) as usize;
    assert_eq!(len, a.data.len() - 4);
    assert_eq!(len % 8, 0);
    let read16 = a.data[4..].chunks(8).find(|d| d[0] == 0x88).unwrap();
    assert_eq!(read16, &[0x88, 0, 0, 0, 0, 0, 0, 16]);
    let rc16 = a.data[4..].chunks(8).find(|d| d[0] == 0x9e).unwrap();
    assert_eq!(rc16, &[0x9e, 0, 0, 0x10, 0, 1, 0, 16]);
    // One command: READ(10), with its usage data and a timeouts descriptor.
    let a = h.command(
        lun(1, 0),
        &[0xa3, 0x0c, 0x81, 0x28, 0, 0, 0, 0, 1, 0, 0, 0],
        &[],
        256,
    );
    let mut want = vec![
        0, 0x83, 0, 10, 0x28, 0xf8, 0xff, 0xff, 0xff, 0xff, 0, 0xff, 0xff, 0,
    ];
    want.extend([0, 0x0a, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(a.data, want);
    // Not supported: FORMAT UNIT.
    let a = h.command(
        lun(1, 0),
        &[0xa3, 0x0c, 0x01, 0x04, 0, 0, 0, 0, 1, 0, 0, 0],
        &[],
        256,
    );
    assert_eq!(a.data, vec![0, 0x01, 0, 0]);
    // Option 1 on an opcode with service actions.
    let a = h.command(
        lun(1, 0),
        &[0xa3, 0x0c, 0x01, 0x9e, 0, 0, 0, 0, 1, 0, 0, 0],
        &[],
        256,
    );
    assert_eq!(a.sense, invalid_cdb(3, None));
    // Option 2: READ CAPACITY(16).
    let a = h.command(
        lun(1, 0),
        &[0xa3, 0x0c, 0x02, 0x9e, 0, 0x10, 0, 0, 1, 0, 0, 0],
        &[],
        256,
    );
    assert_eq!(&a.data[..4], &[0, 0x03, 0, 16]);
}

#[test]
fn synchronize_cache_unmap_and_write_same() {
    let mem = guest_memory();
    let (dev, files) = device(&[(0, 0, 256, false)]);
    std::fs::write(&files[0].path, vec![0xabu8; 256 * 512]).unwrap();
    let mut h = Harness::new(&mem, &dev);
    assert_eq!(
        h.command(lun(0, 0), &cdb10(0x35, 0, 0), &[], 0).status,
        GOOD
    );
    assert_eq!(
        h.command(lun(0, 0), &cdb16(0x91, 10, 5), &[], 0).status,
        GOOD
    );
    let a = h.command(lun(0, 0), &cdb10(0x35, 250, 10), &[], 0);
    assert_eq!(a.sense, sense(5, 0x21, 0));

    // UNMAP two ranges.
    let mut list = vec![0, 38, 0, 32, 0, 0, 0, 0];
    for (lba, n) in [(8u64, 8u32), (100, 4)] {
        list.extend(lba.to_be_bytes());
        list.extend(n.to_be_bytes());
        list.extend([0; 4]);
    }
    let a = h.command(lun(0, 0), &[0x42, 0, 0, 0, 0, 0, 0, 0, 40, 0], &list, 0);
    assert_eq!((a.status, a.sense.clone()), (GOOD, vec![]));
    let file = files[0].contents();
    assert!(file[8 * 512..16 * 512].iter().all(|&b| b == 0));
    assert!(file[100 * 512..104 * 512].iter().all(|&b| b == 0));
    assert!(file[16 * 512..100 * 512].iter().all(|&b| b == 0xab));
    // A range past the end.
    list[8..16].copy_from_slice(&255u64.to_be_bytes());
    let a = h.command(lun(0, 0), &[0x42, 0, 0, 0, 0, 0, 0, 0, 40, 0], &list, 0);
    assert_eq!(a.sense, sense(5, 0x21, 0));

    // WRITE SAME(16) with a pattern, over three ops' worth of blocks? (one op: 40 blocks)
    let block = pattern(512, 4);
    let a = h.command(lun(0, 0), &cdb16(0x93, 150, 40), &block, 0);
    assert_eq!(a.status, GOOD);
    let file = files[0].contents();
    for b in 150..190 {
        assert_eq!(&file[b * 512..(b + 1) * 512], &block[..], "block {b}");
    }
    // Zeros with UNMAP: a hole; NDOB: zeros without a data-out buffer.
    let mut ws = cdb10(0x41, 150, 10);
    ws[1] = 0x08;
    assert_eq!(h.command(lun(0, 0), &ws, &[0; 512], 0).status, GOOD);
    let mut ndob = cdb16(0x93, 160, 10);
    ndob[1] = 0x01;
    assert_eq!(h.command(lun(0, 0), &ndob, &[], 0).status, GOOD);
    let file = files[0].contents();
    assert!(file[150 * 512..170 * 512].iter().all(|&b| b == 0));
    assert_eq!(&file[170 * 512..171 * 512], &block[..]);
    // WSNZ: zero blocks refused; ANCHOR refused.
    let a = h.command(lun(0, 0), &cdb16(0x93, 0, 0), &block, 0);
    assert_eq!(a.sense, invalid_cdb(10, None));
    let mut anchor = cdb16(0x93, 0, 1);
    anchor[1] = 0x10;
    assert_eq!(
        h.command(lun(0, 0), &anchor, &block, 0).sense,
        invalid_cdb(1, Some(4))
    );
}

#[test]
fn verify_compares_with_the_medium() {
    let mem = guest_memory();
    let (dev, files) = device(&[(0, 0, 64, false)]);
    let data = pattern(64 * 512, 2);
    std::fs::write(&files[0].path, &data).unwrap();
    let mut h = Harness::new(&mem, &dev);
    let mut v = cdb10(0x2f, 4, 2);
    assert_eq!(h.command(lun(0, 0), &v, &[], 0).status, GOOD);
    v[1] = 0x02; // BYTCHK 1
    let a = h.command(lun(0, 0), &v, &data[4 * 512..6 * 512], 0);
    assert_eq!((a.status, a.sense.clone()), (GOOD, vec![]));
    let mut wrong = data[4 * 512..6 * 512].to_vec();
    wrong[700] ^= 1;
    let a = h.command(lun(0, 0), &v, &wrong, 0);
    assert_eq!(a.sense, sense(0x0e, 0x1d, 0));
    // BYTCHK 2 is reserved; past the end.
    v[1] = 0x04;
    assert_eq!(
        h.command(lun(0, 0), &v, &[], 0).sense,
        invalid_cdb(1, Some(2))
    );
    let a = h.command(lun(0, 0), &cdb16(0x8f, 63, 2), &[], 0);
    assert_eq!(a.sense, sense(5, 0x21, 0));
    // WRITE AND VERIFY(10), BYTCHK 0, writes.
    let block = pattern(512, 77);
    assert_eq!(
        h.command(lun(0, 0), &cdb10(0x2e, 1, 1), &block, 0).status,
        GOOD
    );
    assert_eq!(&files[0].contents()[512..1024], &block[..]);
}

#[test]
fn request_sense_start_stop_and_prevent_allow() {
    let mem = guest_memory();
    let (dev, _files) = device(&[(0, 0, 8, false)]);
    let mut h = Harness::new(&mem, &dev);
    let a = h.command(lun(0, 0), &[0x03, 0, 0, 0, 252, 0], &[], 252);
    assert_eq!(a.data, sense(0, 0, 0));
    let a = h.command(lun(0, 0), &[0x03, 0, 0, 0, 8, 0], &[], 252);
    assert_eq!(a.data.len(), 8);
    assert_eq!(
        h.command(lun(0, 0), &[0x03, 1, 0, 0, 8, 0], &[], 252).sense,
        invalid_cdb(1, Some(0))
    );
    assert_eq!(
        h.command(lun(0, 0), &[0x1b, 0, 0, 0, 1, 0], &[], 0).status,
        GOOD
    );
    assert_eq!(
        h.command(lun(0, 0), &[0x1e, 0, 0, 0, 1, 0], &[], 0).status,
        GOOD
    );
}
