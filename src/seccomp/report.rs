//! What happens when a confined thread makes a call off its list: the filter traps it
//! (SIGSYS), and this handler writes one line naming the thread, its kind and the call,
//! then ends the whole process. A thread that tried something it should not is not trusted
//! to go on, and neither are the others (they share its memory); other VMM processes and the
//! host are untouched.
//!
//! The handler runs in signal context under the same filter: it only reads a thread-local
//! cell, formats into a stack buffer and calls write(2) and exit_group(2), both on every list.

use std::cell::Cell;
use std::io;

use super::{syscall_name, ThreadKind};

/// The exit status of a VMM stopped by a forbidden system call (128 + SIGSYS, as a shell
/// reports a process killed by that signal).
pub const VIOLATION_EXIT_CODE: i32 = 128 + libc::SIGSYS;

/// A thread's name as Linux keeps it: at most 15 bytes.
const NAME_BYTES: usize = 15;

thread_local! {
    // Const-initialised cells of plain data: reading them never allocates or registers a
    // destructor, so the signal handler may.
    static CURRENT_KIND: Cell<Option<ThreadKind>> = const { Cell::new(None) };
    static CURRENT_NAME: Cell<([u8; NAME_BYTES], usize)> = const { Cell::new(([0; NAME_BYTES], 0)) };
}

/// Records what the report will say about the calling thread: its kind and the name
/// std::thread gave it (vcpu0, reactor1, lowprio0, api, ...).
pub(super) fn set_current_kind(kind: ThreadKind) {
    CURRENT_KIND.with(|cell| cell.set(Some(kind)));
    let mut name = [0; NAME_BYTES];
    let current = std::thread::current();
    let given = current.name().unwrap_or("unnamed").as_bytes();
    let len = given.len().min(NAME_BYTES);
    name[..len].copy_from_slice(&given[..len]);
    CURRENT_NAME.with(|cell| cell.set((name, len)));
}

/// Installs the process-wide SIGSYS handler. Idempotent.
pub fn install_reporter() -> io::Result<()> {
    // SAFETY: an all-zero sigaction is a valid value to fill in; the handler has the
    // SA_SIGINFO signature and only does async-signal-safe work (see the module comment).
    let result = unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_sigsys as *const () as libc::sighandler_t;
        action.sa_flags = libc::SA_SIGINFO;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(libc::SIGSYS, &action, std::ptr::null_mut())
    };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Where Linux puts the trapped call's number in a SIGSYS siginfo: after si_signo,
/// si_errno, si_code and padding (16 bytes), then the call address (8 bytes).
const SI_SYSCALL_OFFSET: usize = 24;

extern "C" fn on_sigsys(
    _signal: libc::c_int,
    info: *mut libc::siginfo_t,
    _context: *mut libc::c_void,
) {
    // SAFETY: the kernel passes a valid siginfo for a SA_SIGINFO handler; for SIGSYS from
    // seccomp, si_syscall is the int at SI_SYSCALL_OFFSET (see the siginfo layout in
    // <asm-generic/siginfo.h>).
    let number = unsafe {
        (info as *const u8)
            .add(SI_SYSCALL_OFFSET)
            .cast::<i32>()
            .read_unaligned()
    };
    let mut line = LineBuffer::default();
    line.push(b"ringvisor: error: seccomp: thread '");
    push_thread_name(&mut line);
    line.push(b"' (");
    let kind = CURRENT_KIND.with(Cell::get);
    line.push(kind.map_or("unconfined", ThreadKind::name).as_bytes());
    line.push(b") made a forbidden system call ");
    line.push_number(i64::from(number));
    line.push(b" (");
    line.push(
        syscall_name(i64::from(number))
            .unwrap_or("unknown")
            .as_bytes(),
    );
    line.push(b"); stopping the VMM\n");
    // SAFETY: write(2) from a valid buffer of `len` bytes, then exit_group(2): both
    // async-signal-safe; nothing of the process runs after.
    unsafe {
        libc::write(libc::STDERR_FILENO, line.bytes.as_ptr().cast(), line.len);
        libc::_exit(VIOLATION_EXIT_CODE);
    }
}

fn push_thread_name(line: &mut LineBuffer) {
    let (name, len) = CURRENT_NAME.with(Cell::get);
    line.push(&name[..len]);
}

/// A fixed stack buffer: the handler must not allocate.
struct LineBuffer {
    bytes: [u8; 256],
    len: usize,
}

impl Default for LineBuffer {
    fn default() -> Self {
        Self {
            bytes: [0; 256],
            len: 0,
        }
    }
}

impl LineBuffer {
    fn push(&mut self, text: &[u8]) {
        let room = self.bytes.len() - self.len;
        let take = text.len().min(room);
        self.bytes[self.len..self.len + take].copy_from_slice(&text[..take]);
        self.len += take;
    }

    fn push_number(&mut self, mut value: i64) {
        if value < 0 {
            self.push(b"-");
            value = -value;
        }
        let mut digits = [0u8; 20];
        let mut at = digits.len();
        loop {
            at -= 1;
            digits[at] = b'0' + (value % 10) as u8;
            value /= 10;
            if value == 0 {
                break;
            }
        }
        self.push(&digits[at..]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_buffer_formats_numbers_and_truncates() {
        let mut line = LineBuffer::default();
        line.push(b"call ");
        line.push_number(41);
        line.push(b" ");
        line.push_number(0);
        line.push(b" ");
        line.push_number(-7);
        assert_eq!(&line.bytes[..line.len], b"call 41 0 -7");
        line.push(&[b'x'; 400]);
        assert_eq!(line.len, 256);
    }
}
