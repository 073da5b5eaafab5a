//! Helpers shared by the device unit tests.

use ringvisor_io::IoOp;

/// Runs an op the way the reactor would, synchronously.
pub(crate) fn execute(op: IoOp) -> i32 {
    // SAFETY: the iovecs point into the test's guest memory, alive for the whole call, and
    // the fds are the device's open image.
    let ret = unsafe {
        match op {
            IoOp::Read { fd, offset, iovecs } => {
                libc::preadv(fd, iovecs.as_ptr(), iovecs.len() as i32, offset as i64) as i64
            }
            IoOp::Write { fd, offset, iovecs } => {
                libc::pwritev(fd, iovecs.as_ptr(), iovecs.len() as i32, offset as i64) as i64
            }
            IoOp::Flush { fd } => libc::fdatasync(fd).into(),
            IoOp::Fallocate {
                fd,
                mode,
                offset,
                len,
            } => libc::fallocate(fd, mode, offset as i64, len as i64).into(),
            IoOp::Delay { nanos } => {
                std::thread::sleep(std::time::Duration::from_nanos(nanos));
                0
            }
        }
    };
    if ret < 0 {
        -std::io::Error::last_os_error().raw_os_error().unwrap()
    } else {
        ret as i32
    }
}
