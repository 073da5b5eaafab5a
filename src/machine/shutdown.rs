//! How a machine ends in order, and the thread that also reboots it.
//!
//! - The guest powers off (ACPI S5): the vCPUs stop, the disks' requests in flight
//!   complete, every writable disk is flushed, then the VMM exits 0.
//! - Graceful shutdown (the API's `shutdown`, SIGTERM): the ACPI power button is pressed
//!   and the guest shuts itself down, ending as above. If it has not powered off within
//!   the shutdown timeout, the forced stop follows.
//! - Forced stop (`shutdown --force`, a second SIGTERM, the timeout): the same pause,
//!   drain and flush without asking the guest.
//! - A guest reset: a reboot in place (`super::reboot`), or with `--no-reboot` the same
//!   flush and exit 0. A reboot that fails flushes too, then ends the VMM with an error.
//! - An I/O reactor's io_uring failed (its set's failure hook; its devices are marked
//!   DEVICE_NEEDS_RESET and nothing serves them): the forced stop's pause, drain and
//!   flush, then exit 4 (`super::EXIT_REACTOR_FAILED`).

use std::fs::File;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{info, warn};
use ringvisor_io::{IrqEvent, ReactorSet};
use serde_json::{json, Value};

use super::reboot::Rebooter;
use super::{GuestExit, MachineStop};
use crate::api::ShutdownHook;
use crate::kvm::{PauseControl, PauseHolder};

/// How long the vCPUs may take to stop.
const PAUSE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the disks' requests in flight may take to complete.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

pub(super) struct OrderlyShutdown {
    pub pause: Arc<PauseControl>,
    pub reactors: Arc<ReactorSet>,
    /// Names of the devices whose queues carry disk I/O (`blk0`, `scsi0`).
    pub disk_devices: Vec<String>,
    /// Every writable disk's backing file or block device.
    pub disk_paths: Vec<PathBuf>,
    pub stops: Sender<MachineStop>,
}

impl OrderlyShutdown {
    /// Requests of the disks popped and not completed yet.
    fn disk_requests_in_flight(&self) -> usize {
        self.reactors
            .stats()
            .iter()
            .flat_map(|r| r.queues.iter())
            .filter(|q| {
                self.disk_devices.iter().any(|d| {
                    q.name
                        .strip_prefix(d.as_str())
                        .is_some_and(|rest| rest.starts_with('/'))
                })
            })
            .map(|q| q.in_flight)
            .sum()
    }
}

impl OrderlyShutdown {
    /// Stops the guest, lets its disk I/O finish and makes every disk durable.
    fn stop_and_flush(&self) -> Result<Value, String> {
        // A reboot that failed half-way still holds the machine's pause.
        if !self.pause.is_paused_by(PauseHolder::Machine) {
            self.pause
                .pause(PauseHolder::Machine, PAUSE_TIMEOUT)
                .map_err(|e| format!("cannot stop the vCPUs: {e}"))?;
        }
        // With the vCPUs stopped no new request comes; those already taken finish.
        let started = Instant::now();
        let mut waited_for = 0;
        loop {
            let busy = self.disk_requests_in_flight();
            if busy == 0 {
                break;
            }
            waited_for = waited_for.max(busy);
            if started.elapsed() > DRAIN_TIMEOUT {
                return Err(format!(
                    "{busy} disk request(s) still in flight after {DRAIN_TIMEOUT:?}"
                ));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        // fdatasync acts on the file, so a descriptor of our own flushes what the
        // devices wrote through theirs (and the disk's write cache below); an NVMe
        // namespace served by passthrough gets an NVMe Flush instead.
        for path in &self.disk_paths {
            if ringvisor_devices::nvme::is_passthrough_path(path) {
                ringvisor_devices::nvme::flush_namespace(path)
            } else {
                File::open(path).and_then(|file| file.sync_data())
            }
            .map_err(|e| format!("cannot flush {}: {e}", path.display()))?;
        }
        info!(
            "orderly shutdown: {} disk(s) flushed, {waited_for} request(s) drained",
            self.disk_paths.len()
        );
        Ok(json!({
            "flushed": self.disk_paths,
            "drained_requests": waited_for,
            "drain_ms": started.elapsed().as_millis() as u64,
        }))
    }

    /// Stops in order and tells the main thread how the machine ended; a failure to
    /// flush is logged and the machine ends anyway (there is nothing left to retry with).
    fn finish_with(&self, exit: GuestExit) {
        if let Err(e) = self.stop_and_flush() {
            warn!("orderly shutdown failed: {e}; exiting anyway");
        }
        let _ = self.stops.send(MachineStop::Finished(exit));
    }
}

/// What the shutdown thread is asked to do.
pub(super) enum ShutdownRequest {
    /// The guest reset: reboot in place.
    Reboot,
    /// The guest reset under --no-reboot: flush and end.
    GuestReset,
    /// Press the power button; stop by force if the guest has not powered off in time.
    PowerButton,
    /// Stop now, without asking the guest.
    Force,
    /// The guest powered off, or a reactor failed: flush and end as this says.
    Finish(GuestExit),
}

/// The API's and the signal thread's handle on the shutdown thread.
pub(super) struct ShutdownControl {
    pub orderly: Arc<OrderlyShutdown>,
    pub requests: Sender<ShutdownRequest>,
    pub timeout: Duration,
}

impl ShutdownHook for ShutdownControl {
    fn press_power_button(&self) -> Result<Value, String> {
        self.requests
            .send(ShutdownRequest::PowerButton)
            .map_err(|_| "the machine is already stopping".to_string())?;
        Ok(json!({
            "power_button": "pressed",
            "timeout_s": self.timeout.as_secs_f64(),
        }))
    }

    fn prepare(&self) -> Result<Value, String> {
        self.orderly.stop_and_flush()
    }

    fn finish(&self) {
        let _ = self
            .orderly
            .stops
            .send(MachineStop::Finished(GuestExit::Shutdown));
    }
}

/// The thread that carries out shutdown requests: presses the power button, waits for
/// the guest up to `timeout`, stops in order; and reboots the machine on a guest reset
/// (with `rebooter`; without, a reset ends it in order).
pub(super) fn spawn_shutdown_thread(
    orderly: Arc<OrderlyShutdown>,
    power_button: IrqEvent,
    requests: Receiver<ShutdownRequest>,
    timeout: Duration,
    rebooter: Option<Rebooter>,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("shutdown".into())
        .spawn(move || {
            crate::seccomp::confine(crate::seccomp::ThreadKind::Signals);
            let mut deadline: Option<Instant> = None;
            loop {
                let request = match deadline {
                    None => requests.recv().map_err(|_| RecvTimeoutError::Disconnected),
                    Some(at) => requests.recv_timeout(at.saturating_duration_since(Instant::now())),
                };
                match request {
                    Ok(ShutdownRequest::PowerButton) => {
                        if let Err(e) = power_button.signal() {
                            warn!("cannot press the power button: {e}");
                        }
                        info!("power button pressed; the guest has {timeout:?} to power off");
                        deadline.get_or_insert_with(|| Instant::now() + timeout);
                    }
                    Ok(ShutdownRequest::Force) => {
                        info!("stopping the guest by force, in order");
                        return orderly.finish_with(GuestExit::Shutdown);
                    }
                    Ok(ShutdownRequest::Finish(exit)) => return orderly.finish_with(exit),
                    Ok(ShutdownRequest::GuestReset) => {
                        return orderly.finish_with(GuestExit::Reset);
                    }
                    Ok(ShutdownRequest::Reboot) => match &rebooter {
                        Some(rebooter) => {
                            if let Err(reason) = rebooter.reboot() {
                                if let Err(e) = orderly.stop_and_flush() {
                                    warn!("orderly shutdown failed: {e}");
                                }
                                let _ = orderly.stops.send(MachineStop::RebootFailed(reason));
                                return;
                            }
                            // A graceful shutdown asked for before the reboot keeps its
                            // deadline.
                        }
                        None => return orderly.finish_with(GuestExit::Reset),
                    },
                    Err(RecvTimeoutError::Timeout) => {
                        warn!(
                            "the guest did not power off within {timeout:?}; stopping it by force"
                        );
                        return orderly.finish_with(GuestExit::ShutdownTimedOut);
                    }
                    Err(RecvTimeoutError::Disconnected) => return,
                }
            }
        })
        .map(drop)
}

/// Blocks SIGTERM in the calling thread, and so in every thread it starts afterwards:
/// only the thread of [`spawn_sigterm_handler`] takes it.
pub(super) fn block_sigterm() {
    // SAFETY: sigset_t is plain data, initialised by sigemptyset before use; the mask
    // change affects the calling thread only.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

/// A thread that waits for SIGTERM: the first presses the power button, the next forces
/// the stop.
pub(super) fn spawn_sigterm_handler(requests: Sender<ShutdownRequest>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("sigterm".into())
        .spawn(move || {
            crate::seccomp::confine(crate::seccomp::ThreadKind::Signals);
            let mut request = ShutdownRequest::PowerButton;
            loop {
                // SAFETY: as in block_sigterm; sigwait stores the signal number it took.
                let taken = unsafe {
                    let mut set: libc::sigset_t = std::mem::zeroed();
                    libc::sigemptyset(&mut set);
                    libc::sigaddset(&mut set, libc::SIGTERM);
                    let mut signal = 0;
                    libc::sigwait(&set, &mut signal) == 0
                };
                if !taken {
                    return;
                }
                info!(
                    "SIGTERM: {}",
                    match request {
                        ShutdownRequest::PowerButton => "pressing the power button",
                        _ => "stopping by force, in order",
                    }
                );
                if requests.send(request).is_err() {
                    return;
                }
                request = ShutdownRequest::Force;
            }
        })
        .map(drop)
}
