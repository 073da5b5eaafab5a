//! The control API: line-delimited JSON over a Unix socket (`--api-socket PATH`).
//!
//! Each request is one line holding a JSON object with a `"cmd"` string; each answer is
//! one line: `{"ok":true,"result":...}` or `{"ok":false,"error":"..."}`. Commands:
//!
//! - `info`: the machine (vCPUs, memory, devices), the reactors' placement, every thread
//!   and the cores it may run on, and `iowq`: each reactor's io-wq limits and the io-wq
//!   worker threads (id, name, reactor, cores).
//! - `stats`: every reactor's counters and, per queue, its counters, the device's own
//!   counters and the latency histograms (kick→submit, submit→complete) as percentiles.
//! - `histograms`: every I/O queue's three latency histograms (kick→submit,
//!   submit→complete, complete→irq) as [value, count] buckets, for benchmarks.
//! - `pause`, `resume`: stop and restart the vCPUs (see `kvm::PauseControl`).
//! - `shutdown`: presses the ACPI power button and answers at once; the guest shuts itself
//!   down and the VMM exits 0 once it has powered off and the disks are flushed, or after
//!   `--shutdown-timeout` stops it by force (exit status 3).
//! - `shutdown` with `"force": true`: orderly, without asking the guest: the vCPUs stop,
//!   the disks' requests in flight complete, every writable disk is flushed (fdatasync),
//!   the answer goes out, then the VMM exits 0.
//! - `balloon`, with an optional `"size"` (bytes, or a string like `"256M"`): sets the
//!   balloon's target (how much guest RAM to take back) and answers its state: target,
//!   actual, pages inflated, deflated and ignored, and the guest's memory statistics.
//! - `display`: the screen's mode, the QXL device's counters, the VNC address.
//! - `screenshot` with `"path"` (absolute): writes the screen as a PNG file.
//!
//! `ringvisor ctl --socket PATH COMMAND [SIZE] [--force]` sends one request and prints the
//! answer.

mod protocol;
mod server;

pub use protocol::{
    histograms_json, iowq_json, parse_request, stats_json, Request, COMMANDS, MAX_REQUEST_BYTES,
};
pub use server::{ApiError, ApiServer, ApiState, BalloonControl, DisplayControl, ShutdownHook};

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// Sends `request` (one JSON object) to the API at `socket`; returns the answer line.
pub fn call(socket: &Path, request: &serde_json::Value) -> std::io::Result<String> {
    let mut stream = UnixStream::connect(socket)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut line = request.to_string();
    line.push('\n');
    stream.write_all(line.as_bytes())?;
    let mut answer = String::new();
    BufReader::new(stream).read_line(&mut answer)?;
    Ok(answer)
}
