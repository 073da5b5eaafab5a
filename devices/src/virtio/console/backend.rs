//! The host end of a console port: stdio, an output file, a pair of FIFOs, or a Unix
//! socket that one client at a time connects to.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

/// Where a port's bytes go and come from on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortBackend {
    /// Guest output to stdout, stdin to the guest.
    Stdio,
    /// A Unix socket ringvisor listens on (owner-only permissions); one client at a time,
    /// whose connection and disconnection the guest is told about.
    Socket(PathBuf),
    /// Guest output written to a file (created or truncated); nothing flows to the guest.
    File(PathBuf),
    /// `PATH.in` (host to guest) and `PATH.out` (guest to host), FIFOs created when
    /// missing.
    Pipe(PathBuf),
}

impl std::fmt::Display for PortBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Stdio => write!(f, "stdio"),
            Self::Socket(path) => write!(f, "socket {}", path.display()),
            Self::File(path) => write!(f, "file {}", path.display()),
            Self::Pipe(path) => write!(f, "pipe {}.in/.out", path.display()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("cannot duplicate {what}: {source}")]
    Stdio {
        what: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("cannot open {}: {source}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{} exists and is not a socket; refusing to replace it", path.display())]
    NotASocket { path: PathBuf },
    #[error("{} exists and is not a FIFO", path.display())]
    NotAFifo { path: PathBuf },
    #[error("cannot listen on {}: {source}", path.display())]
    Listen {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// The open host end of one port.
#[derive(Debug)]
pub(crate) enum HostLink {
    /// Always connected; either direction may be absent (a file takes no input) or end
    /// (stdin reached EOF).
    Fixed {
        input: Option<OwnedFd>,
        output: Option<OwnedFd>,
    },
    /// Connected while a client is.
    Socket {
        listener: UnixListener,
        connection: Option<OwnedFd>,
        /// A write failed (the client went away); the receive side closes the connection.
        broken: bool,
    },
}

impl HostLink {
    pub fn open(backend: &PortBackend) -> Result<Self, BackendError> {
        match backend {
            PortBackend::Stdio => Ok(Self::Fixed {
                input: Some(dup_stdio(libc::STDIN_FILENO, "stdin")?),
                output: Some(dup_stdio(libc::STDOUT_FILENO, "stdout")?),
            }),
            PortBackend::File(path) => {
                let file = OpenOptions::new()
                    .create(true)
                    .write(true)
                    .truncate(true)
                    .custom_flags(libc::O_APPEND | libc::O_CLOEXEC)
                    .open(path)
                    .map_err(|source| BackendError::Open {
                        path: path.clone(),
                        source,
                    })?;
                Ok(Self::Fixed {
                    input: None,
                    output: Some(file.into()),
                })
            }
            PortBackend::Pipe(path) => Ok(Self::Fixed {
                input: Some(open_fifo(&suffixed(path, ".in"))?),
                output: Some(open_fifo(&suffixed(path, ".out"))?),
            }),
            PortBackend::Socket(path) => Ok(Self::Socket {
                listener: listen(path)?,
                connection: None,
                broken: false,
            }),
        }
    }

    /// Whether bytes can flow now.
    pub fn connected(&self) -> bool {
        match self {
            Self::Fixed { .. } => true,
            Self::Socket {
                connection, broken, ..
            } => connection.is_some() && !broken,
        }
    }

    /// Where the guest's bytes go, when connected.
    pub fn output_fd(&self) -> Option<RawFd> {
        match self {
            Self::Fixed { output, .. } => output.as_ref().map(AsRawFd::as_raw_fd),
            Self::Socket {
                connection,
                broken: false,
                ..
            } => connection.as_ref().map(AsRawFd::as_raw_fd),
            Self::Socket { .. } => None,
        }
    }

    /// Where the guest's bytes come from, when connected.
    pub fn input_fd(&self) -> Option<RawFd> {
        match self {
            Self::Fixed { input, .. } => input.as_ref().map(AsRawFd::as_raw_fd),
            Self::Socket { connection, .. } => connection.as_ref().map(AsRawFd::as_raw_fd),
        }
    }

    /// The listening socket while no client is connected.
    pub fn listener_fd(&self) -> Option<RawFd> {
        match self {
            Self::Socket {
                listener,
                connection: None,
                ..
            } => Some(listener.as_raw_fd()),
            _ => None,
        }
    }
}

/// A socket path and permission bits the tests and the CLI check against.
pub(crate) const SOCKET_MODE: u32 = 0o600;

fn listen(path: &Path) -> Result<UnixListener, BackendError> {
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(BackendError::NotASocket {
                path: path.to_owned(),
            });
        }
        // A socket left by an earlier run: nothing can be listening on it any more if we
        // are to use the path, and binding needs it gone.
        let _ = std::fs::remove_file(path);
    }
    let listener = UnixListener::bind(path).map_err(|source| BackendError::Listen {
        path: path.to_owned(),
        source,
    })?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(SOCKET_MODE)).map_err(
        |source| BackendError::Listen {
            path: path.to_owned(),
            source,
        },
    )?;
    Ok(listener)
}

fn suffixed(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Opens a FIFO read-write, creating it when missing: read-write never blocks in open and
/// never sees EOF when the other side's writers come and go.
fn open_fifo(path: &Path) -> Result<OwnedFd, BackendError> {
    let open_error = |source| BackendError::Open {
        path: path.to_owned(),
        source,
    };
    match std::fs::metadata(path) {
        Ok(meta) if !meta.file_type().is_fifo() => {
            return Err(BackendError::NotAFifo {
                path: path.to_owned(),
            })
        }
        Ok(_) => {}
        Err(_) => {
            let name = CString::new(path.as_os_str().as_encoded_bytes())
                .map_err(|_| open_error(io::Error::from(io::ErrorKind::InvalidInput)))?;
            // SAFETY: `name` is a valid NUL-terminated path; mkfifo only reads it.
            if unsafe { libc::mkfifo(name.as_ptr(), SOCKET_MODE) } != 0 {
                return Err(open_error(io::Error::last_os_error()));
            }
        }
    }
    let file: File = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        .map_err(open_error)?;
    Ok(file.into())
}

fn dup_stdio(fd: RawFd, what: &'static str) -> Result<OwnedFd, BackendError> {
    // SAFETY: F_DUPFD_CLOEXEC on a standard stream only creates a new descriptor.
    let new = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
    if new < 0 {
        return Err(BackendError::Stdio {
            what,
            source: io::Error::last_os_error(),
        });
    }
    // SAFETY: `new` is a descriptor just created and owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}
