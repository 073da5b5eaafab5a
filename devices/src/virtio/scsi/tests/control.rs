//! Task management and asynchronous notification on the control queue.

use super::*;
use crate::virtio::scsi::protocol::tmf;
use crate::virtio::scsi::ScsiControlWorker;
use ringvisor_io::IoOp;

const CTRL_REQ: u64 = 0x5_0000;
const CTRL_RESP: u64 = 0x5_1000;
const CTRL_USED: u64 = 0x6_0000;

fn tmf_request(mem: &GuestMemory, subtype: u32, lun: [u8; 8]) {
    let mut req = [0u8; 24];
    req[4..8].copy_from_slice(&subtype.to_le_bytes());
    req[8..16].copy_from_slice(&lun);
    req[16..24].copy_from_slice(&77u64.to_le_bytes());
    mem.write_slice(&req, GuestAddress(CTRL_REQ)).unwrap();
}

#[test]
fn task_management_waits_for_the_units_requests() {
    let mem = guest_memory();
    let (dev, _files) = device(&[(0, 0, 64, false), (0, 1, 64, false)]);
    let mut h = Harness::new(&mem, &dev);
    let (mut ctrl, queue) = MockDriver::new(&mem, QSIZE, CTRL_USED, false);
    let mut worker = ScsiControlWorker::new(0, queue, mem.clone(), Arc::clone(&dev.luns));

    // A read on LUN 0 goes to the host and stays in flight.
    let mut req = vec![0u8; REQ_LEN as usize];
    req[..8].copy_from_slice(&lun(0, 0));
    req[19..29].copy_from_slice(&cdb10(0x28, 0, 1));
    mem.write_slice(&req, GuestAddress(REQ)).unwrap();
    h.driver
        .add(&[(REQ, REQ_LEN, R), (RESP, RESP_LEN, W), (DATA_IN, 512, W)]);
    let mut io = IoBatch::new();
    h.worker.drain(&mut io).unwrap();
    let (io_tag, io_op) = io.drain().next().unwrap();

    // LOGICAL UNIT RESET on LUN 1 is done at once; on LUN 0 it waits.
    tmf_request(&mem, tmf::LOGICAL_UNIT_RESET, lun(0, 1));
    ctrl.add(&[(CTRL_REQ, 24, R), (CTRL_RESP, 1, W)]);
    let mut batch = IoBatch::new();
    assert_eq!(worker.drain(&mut batch).unwrap(), 1);
    assert!(batch.is_empty());
    assert_eq!(ctrl.next_used().1, 1);
    assert_eq!(
        mem.read_obj::<u8>(GuestAddress(CTRL_RESP)).unwrap(),
        response::OK
    );

    tmf_request(&mem, tmf::LOGICAL_UNIT_RESET, lun(0, 0));
    mem.write_obj(0xeeu8, GuestAddress(CTRL_RESP)).unwrap();
    ctrl.add(&[(CTRL_REQ, 24, R), (CTRL_RESP, 1, W)]);
    worker.drain(&mut batch).unwrap();
    let (tag, delay) = batch.drain().next().unwrap();
    assert!(matches!(delay, IoOp::Delay { .. }));
    assert_eq!(worker.in_flight(), 1);
    // Still busy: another delay.
    let mut again = IoBatch::new();
    worker.complete(tag, 0, &mut again).unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(ctrl.pending_used(), 0);
    // The read completes (used entry written), then the TMF answers.
    h.worker
        .complete(io_tag, execute(io_op), &mut IoBatch::new())
        .unwrap();
    assert_eq!(h.driver.pending_used(), 1);
    let (tag, _) = again.drain().next().unwrap();
    worker.complete(tag, 0, &mut again).unwrap();
    assert!(again.is_empty());
    assert_eq!(ctrl.next_used().1, 1);
    assert_eq!(
        mem.read_obj::<u8>(GuestAddress(CTRL_RESP)).unwrap(),
        response::OK
    );
    assert_eq!(worker.in_flight(), 0);
}

#[test]
fn task_management_addressing_and_functions() {
    let mem = guest_memory();
    let (dev, _files) = device(&[(0, 0, 64, false)]);
    let (mut ctrl, queue) = MockDriver::new(&mem, QSIZE, CTRL_USED, false);
    let mut worker = ScsiControlWorker::new(0, queue, mem.clone(), Arc::clone(&dev.luns));
    let mut ask = |subtype: u32, l: [u8; 8]| {
        tmf_request(&mem, subtype, l);
        ctrl.add(&[(CTRL_REQ, 24, R), (CTRL_RESP, 1, W)]);
        let mut batch = IoBatch::new();
        worker.drain(&mut batch).unwrap();
        assert!(batch.is_empty());
        ctrl.next_used();
        mem.read_obj::<u8>(GuestAddress(CTRL_RESP)).unwrap()
    };
    assert_eq!(ask(tmf::ABORT_TASK, lun(0, 0)), response::OK);
    assert_eq!(ask(tmf::ABORT_TASK_SET, lun(0, 0)), response::OK);
    assert_eq!(ask(tmf::CLEAR_TASK_SET, lun(0, 0)), response::OK);
    assert_eq!(ask(tmf::I_T_NEXUS_RESET, lun(0, 7)), response::OK);
    assert_eq!(ask(tmf::QUERY_TASK_SET, lun(0, 0)), response::OK);
    assert_eq!(ask(tmf::CLEAR_ACA, lun(0, 0)), response::FUNCTION_REJECTED);
    assert_eq!(ask(99, lun(0, 0)), response::FUNCTION_REJECTED);
    assert_eq!(
        ask(tmf::LOGICAL_UNIT_RESET, lun(0, 3)),
        response::INCORRECT_LUN
    );
    assert_eq!(
        ask(tmf::LOGICAL_UNIT_RESET, lun(9, 0)),
        response::BAD_TARGET
    );
    assert_eq!(worker.stats().task_management, 9);
}

#[test]
fn notification_queries_and_malformed_control_requests() {
    let mem = guest_memory();
    let (dev, _files) = device(&[(0, 0, 64, false)]);
    let (mut ctrl, queue) = MockDriver::new(&mem, QSIZE, CTRL_USED, false);
    let mut worker = ScsiControlWorker::new(0, queue, mem.clone(), Arc::clone(&dev.luns));
    let mut an = [0u8; 16];
    an[0] = 1; // AN_QUERY
    an[4..12].copy_from_slice(&lun(0, 0));
    an[12..16].copy_from_slice(&0xffu32.to_le_bytes());
    mem.write_slice(&an, GuestAddress(CTRL_REQ)).unwrap();
    mem.write_slice(&[0xee; 5], GuestAddress(CTRL_RESP))
        .unwrap();
    ctrl.add(&[(CTRL_REQ, 16, R), (CTRL_RESP, 5, W)]);
    let mut batch = IoBatch::new();
    worker.drain(&mut batch).unwrap();
    assert_eq!(ctrl.next_used().1, 5);
    let mut resp = [0u8; 5];
    mem.read_slice(&mut resp, GuestAddress(CTRL_RESP)).unwrap();
    assert_eq!(resp, [0, 0, 0, 0, response::OK]);
    // Too short, unknown type, no response room: back empty, nothing written.
    for chain in [
        vec![(CTRL_REQ, 2, R), (CTRL_RESP, 1, W)],
        vec![(CTRL_REQ, 24, R)],
    ] {
        ctrl.add(&chain);
        worker.drain(&mut batch).unwrap();
        assert_eq!(ctrl.next_used().1, 0);
    }
    mem.write_obj(7u32, GuestAddress(CTRL_REQ)).unwrap();
    ctrl.add(&[(CTRL_REQ, 24, R), (CTRL_RESP, 1, W)]);
    worker.drain(&mut batch).unwrap();
    assert_eq!(ctrl.next_used().1, 0);
    assert_eq!(worker.stats().malformed, 3);
}
