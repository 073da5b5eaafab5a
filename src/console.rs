//! The host terminal as the guest's serial console: stdin bytes go to the UART, and an
//! interactive terminal is put in raw mode so keystrokes (Ctrl-C included) reach the guest.

use std::io::Read;
use std::sync::{Arc, OnceLock};
use std::thread;
use std::time::Duration;

use crate::pio_bus::PortIoBus;

/// The terminal settings to put back on exit, saved when raw mode was entered.
static SAVED_TERMIOS: OnceLock<libc::termios> = OnceLock::new();

/// Puts stdin in raw mode when it is a terminal. The saved settings are restored by
/// [`restore_terminal`], which the VMM calls on every way out.
pub fn enter_raw_mode() {
    // SAFETY: isatty only inspects the descriptor number.
    if unsafe { libc::isatty(libc::STDIN_FILENO) } != 1 {
        return;
    }
    // SAFETY: termios is plain old data; tcgetattr fills it and we check the result.
    let mut termios: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: valid descriptor and a valid pointer to a termios we own.
    if unsafe { libc::tcgetattr(libc::STDIN_FILENO, &mut termios) } != 0 {
        return;
    }
    if SAVED_TERMIOS.set(termios).is_err() {
        return;
    }
    let mut raw = termios;
    // SAFETY: cfmakeraw only edits the struct we pass.
    unsafe { libc::cfmakeraw(&mut raw) };
    // Keep output post-processing so the host terminal still turns \n into \r\n.
    raw.c_oflag = termios.c_oflag;
    // SAFETY: valid descriptor and termios.
    unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &raw) };
}

/// Restores the terminal settings saved by [`enter_raw_mode`], if any.
pub fn restore_terminal() {
    if let Some(saved) = SAVED_TERMIOS.get() {
        // SAFETY: valid descriptor and the termios we saved earlier.
        unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, saved) };
    }
}

/// Starts the thread that feeds stdin to the guest's serial port until stdin closes. Bytes
/// the UART FIFO cannot take yet are retried, never dropped.
pub fn spawn_stdin_pump(bus: Arc<PortIoBus>) -> std::io::Result<()> {
    thread::Builder::new()
        .name("console-in".into())
        .spawn(move || {
            crate::seccomp::confine(crate::seccomp::ThreadKind::Stdin);
            let mut stdin = std::io::stdin().lock();
            let mut buf = [0u8; 64];
            loop {
                let n = match stdin.read(&mut buf) {
                    Ok(0) => return,
                    Ok(n) => n,
                    Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(_) => return,
                };
                let mut pending = &buf[..n];
                while !pending.is_empty() {
                    let taken = bus.serial_input(pending);
                    pending = &pending[taken..];
                    if taken == 0 {
                        thread::sleep(Duration::from_millis(1));
                    }
                }
            }
        })
        .map(|_| ())
}
