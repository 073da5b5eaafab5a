//! Orderly shutdown, from the API's `shutdown` or SIGTERM: the vCPUs stop, the disks'
//! requests in flight complete, every writable disk is flushed, then the VMM exits.

use std::fs::File;
use std::path::PathBuf;
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{info, warn};
use ringvisor_io::ReactorSet;
use serde_json::{json, Value};

use super::MachineStop;
use crate::api::ShutdownHook;
use crate::kvm::PauseControl;

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

impl ShutdownHook for OrderlyShutdown {
    fn prepare(&self) -> Result<Value, String> {
        if !self.pause.is_paused() {
            self.pause
                .pause(PAUSE_TIMEOUT)
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
        // devices wrote through theirs (and the disk's write cache below).
        for path in &self.disk_paths {
            File::open(path)
                .and_then(|file| file.sync_data())
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

    fn finish(&self) {
        let _ = self.stops.send(MachineStop::Shutdown);
    }
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

/// A thread that waits for SIGTERM and shuts the machine down in order.
pub(super) fn spawn_sigterm_handler(hook: Arc<OrderlyShutdown>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("sigterm".into())
        .spawn(move || {
            crate::seccomp::confine(crate::seccomp::ThreadKind::Signals);
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
            info!("SIGTERM: shutting down in order");
            if let Err(e) = hook.prepare() {
                warn!("orderly shutdown failed: {e}; exiting anyway");
            }
            hook.finish();
        })
        .map(drop)
}
