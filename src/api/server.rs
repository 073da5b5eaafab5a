//! The API server: one thread, one connection at a time, one JSON line per request.

use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use log::{debug, warn};
use ringvisor_io::{iowq_workers, ReactorSet};
use serde_json::{json, Value};

use crate::kvm::{PauseControl, PauseHolder};

use super::protocol::{
    histograms_json, iowq_json, parse_request, stats_json, Request, MAX_REQUEST_BYTES,
};

/// How long a pause may wait for every vCPU to stop.
const PAUSE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a connected client may take to send a request.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("--api-socket {path}: already in use by a running process")]
    InUse { path: PathBuf },
    #[error("--api-socket {path}: exists and is not a socket")]
    NotASocket { path: PathBuf },
    #[error("--api-socket {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// How the machine stops in order, for the `shutdown` command.
pub trait ShutdownHook: Send + Sync {
    /// Asks the guest to shut down (the ACPI power button); the machine ends when it has
    /// powered off, or by force after the shutdown timeout.
    fn press_power_button(&self) -> Result<Value, String>;
    /// `shutdown --force`: stops the guest, lets its disk I/O finish and makes every disk
    /// durable; returns what was done, for the answer.
    fn prepare(&self) -> Result<Value, String>;
    /// The answer went out: ends the VMM.
    fn finish(&self);
}

/// The balloon, for the `balloon` command.
pub trait BalloonControl: Send + Sync {
    /// Sets the balloon's target and tells the guest.
    fn set_target(&self, bytes: u64) -> Result<(), String>;
    /// The balloon's counters and the guest's latest memory statistics.
    fn stats(&self) -> Value;
}

/// The display, for the `display` and `screenshot` commands.
pub trait DisplayControl: Send + Sync {
    /// Writes the screen as a PNG at `path`; answers its size.
    fn screenshot(&self, path: &Path) -> Result<Value, String>;
    /// The mode, the device's counters and the outputs.
    fn status(&self) -> Value;
}

/// What the API answers from.
pub struct ApiState {
    pub reactors: Arc<ReactorSet>,
    /// The low-priority reactor (console, balloon), when the machine has one.
    pub low_priority: Option<Arc<ReactorSet>>,
    /// The `info` result, fixed once the machine is built.
    pub info: Value,
    /// The vCPUs' pause control; `None` where there are no vCPUs (tests).
    pub pause: Option<Arc<PauseControl>>,
    pub shutdown: Option<Arc<dyn ShutdownHook>>,
    pub balloon: Option<Arc<dyn BalloonControl>>,
    pub display: Option<Arc<dyn DisplayControl>>,
}

impl ApiState {
    /// A state with the reactors and `info` only: no vCPUs, no balloon, no shutdown.
    pub fn new(reactors: Arc<ReactorSet>, info: Value) -> Self {
        Self {
            reactors,
            low_priority: None,
            info,
            pause: None,
            shutdown: None,
            balloon: None,
            display: None,
        }
    }

    fn answer(&self, line: &str) -> Value {
        match parse_request(line) {
            Ok(Request::Info) => {
                // Where the threads run now, read from /proc (not what was planned).
                let threads: Vec<Value> = crate::placement::live_threads()
                    .into_iter()
                    .map(|(name, tid, cores)| json!({ "name": name, "tid": tid, "cores": cores }))
                    .collect();
                let low = self
                    .low_priority
                    .as_ref()
                    .map(|set| set.stats())
                    .unwrap_or_default();
                let iowq = iowq_json(&self.reactors.stats(), &low, &iowq_workers());
                let mut info = self.info.clone();
                if let Value::Object(map) = &mut info {
                    map.insert("threads".into(), Value::Array(threads));
                    map.insert("iowq".into(), iowq);
                }
                json!({ "ok": true, "result": info })
            }
            Ok(Request::Stats) => {
                let low = self
                    .low_priority
                    .as_ref()
                    .map(|set| set.stats())
                    .unwrap_or_default();
                json!({ "ok": true, "result": stats_json(&self.reactors.stats(), &low) })
            }
            Ok(Request::Shutdown { force }) => match &self.shutdown {
                None => {
                    json!({ "ok": false, "error": "this VMM cannot shut down through the API" })
                }
                Some(hook) => match if force {
                    hook.prepare()
                } else {
                    hook.press_power_button()
                } {
                    Ok(result) => json!({ "ok": true, "result": result }),
                    Err(e) => json!({ "ok": false, "error": e }),
                },
            },
            Ok(Request::Balloon { target_bytes }) => {
                let Some(balloon) = &self.balloon else {
                    return json!({ "ok": false, "error": "this VMM has no balloon (--balloon)" });
                };
                if let Some(bytes) = target_bytes {
                    if let Err(e) = balloon.set_target(bytes) {
                        return json!({ "ok": false, "error": e });
                    }
                }
                json!({ "ok": true, "result": balloon.stats() })
            }
            Ok(Request::Histograms) => {
                json!({ "ok": true, "result": histograms_json(&self.reactors.stats()) })
            }
            Ok(Request::Display) => match &self.display {
                None => json!({ "ok": false, "error": "this VMM has no display (--display)" }),
                Some(display) => json!({ "ok": true, "result": display.status() }),
            },
            Ok(Request::Screenshot { path }) => match &self.display {
                None => json!({ "ok": false, "error": "this VMM has no display (--display)" }),
                Some(display) => match display.screenshot(&path) {
                    Ok(result) => json!({ "ok": true, "result": result }),
                    Err(e) => json!({ "ok": false, "error": e }),
                },
            },
            Ok(request @ (Request::Pause | Request::Resume)) => {
                let Some(pause) = &self.pause else {
                    return json!({ "ok": false, "error": "this VMM has no vCPUs to pause" });
                };
                let task = {
                    let pause = Arc::clone(pause);
                    move || {
                        let done = if request == Request::Pause {
                            pause.pause(PauseHolder::User, PAUSE_TIMEOUT)
                        } else {
                            pause.resume(PauseHolder::User)
                        };
                        done.map(|()| pause.is_paused_by(PauseHolder::User))
                            .map_err(|e| e.to_string())
                    }
                };
                // The pause and the kvmclock hold are the low-priority reactor's upkeep.
                let done = match &self.low_priority {
                    Some(reactor) => reactor
                        .run_on(0, task)
                        .unwrap_or_else(|e| Err(e.to_string())),
                    None => task(),
                };
                match done {
                    Ok(paused) => json!({ "ok": true, "result": { "paused": paused } }),
                    Err(e) => json!({ "ok": false, "error": e }),
                }
            }
            Err(error) => json!({ "ok": false, "error": error }),
        }
    }
}

/// A running API server; the socket file is removed when it is dropped.
pub struct ApiServer {
    path: PathBuf,
    _thread: JoinHandle<()>,
}

impl ApiServer {
    /// Binds `path` (owner-only permissions) and serves `state` on a thread of its own.
    pub fn start(path: &Path, state: ApiState) -> Result<Self, ApiError> {
        let io_err = |source| ApiError::Io {
            path: path.to_owned(),
            source,
        };
        if let Ok(meta) = fs::symlink_metadata(path) {
            if !meta.file_type().is_socket() {
                return Err(ApiError::NotASocket {
                    path: path.to_owned(),
                });
            }
            if UnixStream::connect(path).is_ok() {
                return Err(ApiError::InUse {
                    path: path.to_owned(),
                });
            }
            // A socket nobody listens on: left over from a VMM that is gone.
            fs::remove_file(path).map_err(io_err)?;
        }
        // The socket is created with the umask's permissions: owner-only from the start,
        // so no other user can connect between bind and chmod.
        // SAFETY: umask only swaps the process's file-creation mask.
        let old = unsafe { libc::umask(0o177) };
        let bound = UnixListener::bind(path);
        // SAFETY: as above; restores the previous mask.
        unsafe { libc::umask(old) };
        let listener = bound.map_err(io_err)?;
        fs::set_permissions(path, fs::Permissions::from_mode(0o600)).map_err(io_err)?;
        let thread = std::thread::Builder::new()
            .name("api".into())
            .spawn(move || {
                crate::seccomp::confine(crate::seccomp::ThreadKind::Api);
                serve(listener, state)
            })
            .map_err(io_err)?;
        Ok(Self {
            path: path.to_owned(),
            _thread: thread,
        })
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

fn serve(listener: UnixListener, state: ApiState) {
    for stream in listener.incoming() {
        match stream {
            Ok(stream) => {
                if let Err(e) = serve_client(stream, &state) {
                    debug!("api: client: {e}");
                }
            }
            Err(e) => warn!("api: accept: {e}"),
        }
    }
}

/// Answers every request line of one client until it hangs up, sends a line too long
/// or stays silent past the timeout.
fn serve_client(stream: UnixStream, state: &ApiState) -> io::Result<()> {
    stream.set_read_timeout(Some(CLIENT_TIMEOUT))?;
    stream.set_write_timeout(Some(CLIENT_TIMEOUT))?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream).take(MAX_REQUEST_BYTES as u64 + 1);
    loop {
        let mut line = String::new();
        reader.set_limit(MAX_REQUEST_BYTES as u64 + 1);
        let n = match reader.read_line(&mut line) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                let answer = json!({ "ok": false, "error": "the request is not UTF-8" });
                writeln!(writer, "{answer}")?;
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        if n == 0 {
            return Ok(());
        }
        if !line.ends_with('\n') && n > MAX_REQUEST_BYTES {
            let error = format!("request longer than {MAX_REQUEST_BYTES} bytes");
            writeln!(writer, "{}", json!({ "ok": false, "error": error }))?;
            return Ok(());
        }
        let answer = state.answer(line.trim_end());
        writeln!(writer, "{answer}")?;
        if answer["ok"] == Value::Bool(true)
            && parse_request(line.trim_end()) == Ok(Request::Shutdown { force: true })
        {
            if let Some(hook) = &state.shutdown {
                hook.finish();
            }
        }
    }
}
