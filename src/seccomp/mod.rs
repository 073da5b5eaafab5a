//! Least privilege: every thread of the VMM runs under a seccomp-bpf allowlist of its own
//! kind (a vCPU, a hot reactor, the low-priority reactor, the API server, ...), installed by
//! the thread itself once its setup is done. A guest that takes over one thread through a
//! device bug gets only the system calls that thread needs, and the first one outside the
//! list stops the VMM with a report naming the thread and the call (see `report`).
//!
//! The lists name system calls, not arguments: `ioctl` is open to every thread that needs
//! one. They are checked by the nested-lab boots, which run with the filters enforced.

mod allowlists;
mod names;
mod report;
mod ring_ops;

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

use seccompiler::{BpfProgram, SeccompAction, SeccompFilter, SeccompRule, TargetArch};

pub use names::syscall_name;
pub use report::{install_reporter, VIOLATION_EXIT_CODE};
pub use ring_ops::{ring_ops, ring_policy, serving_reactor};

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("cannot build the seccomp filter of the {kind} threads: {source}")]
    Build {
        kind: ThreadKind,
        source: seccompiler::BackendError,
    },
    #[error("cannot compile the seccomp filter of the {kind} threads: {source}")]
    Compile {
        kind: ThreadKind,
        source: seccompiler::BackendError,
    },
    #[error("cannot install the seccomp filter of a {kind} thread: {source}")]
    Install {
        kind: ThreadKind,
        source: seccompiler::Error,
    },
    #[error("cannot install the SIGSYS handler: {0}")]
    Handler(std::io::Error),
}

/// What a thread's filter does with a system call off its list.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SeccompMode {
    /// The call traps; the VMM reports it and exits (`VIOLATION_EXIT_CODE`).
    #[default]
    Enforce,
    /// The call goes through and the kernel's audit logs it (type 1326, where audit is
    /// enabled): how a new code path's needs are found without stopping the guest.
    Log,
    /// No filter at all.
    Off,
}

impl FromStr for SeccompMode {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "on" | "enforce" => Ok(Self::Enforce),
            "log" => Ok(Self::Log),
            "off" => Ok(Self::Off),
            _ => Err(format!(
                "'{text}' is not a seccomp mode: use on, log or off"
            )),
        }
    }
}

/// The kinds of threads the VMM runs, each with its own allowlist.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ThreadKind {
    /// The main thread once the machine runs: it waits for a stop, then tears down.
    Main,
    /// A vCPU: KVM_RUN and the port, MMIO and PCI configuration exits it handles inline.
    Vcpu,
    /// An io_uring reactor serving virtio queues (block, SCSI, network).
    HotReactor,
    /// The low-priority reactor: console, balloon, input, QXL, the kvmclock hold.
    LowPriorityReactor,
    /// The control-API server.
    Api,
    /// The VNC listener and its client threads.
    Display,
    /// The thread that waits for SIGTERM and shuts the machine down in order.
    Signals,
    /// The thread that copies the host's stdin to the guest's serial port.
    Stdin,
}

impl ThreadKind {
    pub const ALL: [ThreadKind; 8] = [
        ThreadKind::Main,
        ThreadKind::Vcpu,
        ThreadKind::HotReactor,
        ThreadKind::LowPriorityReactor,
        ThreadKind::Api,
        ThreadKind::Display,
        ThreadKind::Signals,
        ThreadKind::Stdin,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ThreadKind::Main => "main",
            ThreadKind::Vcpu => "vCPU",
            ThreadKind::HotReactor => "hot reactor",
            ThreadKind::LowPriorityReactor => "low-priority reactor",
            ThreadKind::Api => "API",
            ThreadKind::Display => "display",
            ThreadKind::Signals => "signal",
            ThreadKind::Stdin => "stdin",
        }
    }

    /// The system calls this kind of thread may make.
    pub fn allowed_syscalls(self) -> Vec<i64> {
        allowlists::allowed(self)
    }
}

impl fmt::Display for ThreadKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The compiled filters of every thread kind, built once before any thread starts so that a
/// thread only has to install its own (which cannot fail for a reason of ours).
#[derive(Clone, Debug, Default)]
pub struct SeccompPolicy {
    mode: SeccompMode,
    /// Each kind's filters, installed in order: (where the kind has some) the calls that
    /// fail softly, then the allowlist, last because installing a filter takes prctl and
    /// seccomp, which it forbids. The kernel runs every filter of a thread and takes the
    /// strictest answer, so a soft denial turns a call the allowlist lets through into an
    /// error.
    programs: BTreeMap<ThreadKind, Vec<BpfProgram>>,
}

impl SeccompPolicy {
    pub fn new(mode: SeccompMode) -> Result<Self, SeccompError> {
        let mut programs = BTreeMap::new();
        let mismatch = match mode {
            SeccompMode::Off => {
                return Ok(Self {
                    mode,
                    programs: BTreeMap::new(),
                })
            }
            SeccompMode::Enforce => SeccompAction::Trap,
            SeccompMode::Log => SeccompAction::Log,
        };
        for kind in ThreadKind::ALL {
            let rules = kind
                .allowed_syscalls()
                .into_iter()
                .map(|number| (number, Vec::new()))
                .collect();
            let mut filters = Vec::new();
            // In log mode nothing fails: the soft denials would hide what a path needs.
            if mode == SeccompMode::Enforce {
                for (call, errno) in allowlists::softly_denied(kind) {
                    let rules = BTreeMap::from([(call, Vec::new())]);
                    filters.push(compile(
                        kind,
                        rules,
                        SeccompAction::Allow,
                        SeccompAction::Errno(errno),
                    )?);
                }
            }
            filters.push(compile(
                kind,
                rules,
                mismatch.clone(),
                SeccompAction::Allow,
            )?);
            programs.insert(kind, filters);
        }
        if mode == SeccompMode::Enforce {
            install_reporter().map_err(SeccompError::Handler)?;
        }
        Ok(Self { mode, programs })
    }

    pub fn mode(&self) -> SeccompMode {
        self.mode
    }

    /// Confines the calling thread to `kind`'s list, for the rest of its life. Filters
    /// stack: a thread this one starts later keeps this list and may narrow it further.
    pub fn confine_current_thread(&self, kind: ThreadKind) -> Result<(), SeccompError> {
        let Some(filters) = self.programs.get(&kind) else {
            return Ok(());
        };
        report::set_current_kind(kind);
        for filter in filters {
            seccompiler::apply_filter(filter)
                .map_err(|source| SeccompError::Install { kind, source })?;
        }
        Ok(())
    }

    /// As `confine_current_thread`, for threads that have nowhere to return an error to: a
    /// thread that cannot be confined must not run unconfined, so the VMM stops.
    pub fn confine_or_exit(&self, kind: ThreadKind) {
        if let Err(err) = self.confine_current_thread(kind) {
            log::error!("{err}");
            std::process::exit(1);
        }
    }
}

/// The policy of this process, set once by the machine before it starts a thread.
static PROCESS_POLICY: OnceLock<SeccompPolicy> = OnceLock::new();

/// Makes `policy` the one `confine` applies. The first call wins: a process runs one
/// machine.
pub fn set_process_policy(policy: SeccompPolicy) {
    let _ = PROCESS_POLICY.set(policy);
}

/// Confines the calling thread to `kind`'s list under the process policy; nothing when
/// none is set (unit and device-path tests run the same code unconfined). A thread that
/// cannot be confined must not run unconfined, so the VMM stops.
pub fn confine(kind: ThreadKind) {
    if let Some(policy) = PROCESS_POLICY.get() {
        policy.confine_or_exit(kind);
    }
}

fn compile(
    kind: ThreadKind,
    rules: BTreeMap<i64, Vec<SeccompRule>>,
    mismatch: SeccompAction,
    matched: SeccompAction,
) -> Result<BpfProgram, SeccompError> {
    let filter = SeccompFilter::new(rules, mismatch, matched, TargetArch::x86_64)
        .map_err(|source| SeccompError::Build { kind, source })?;
    BpfProgram::try_from(filter).map_err(|source| SeccompError::Compile { kind, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_and_bad_ones_say_what_is_accepted() {
        assert_eq!("on".parse::<SeccompMode>(), Ok(SeccompMode::Enforce));
        assert_eq!("log".parse::<SeccompMode>(), Ok(SeccompMode::Log));
        assert_eq!("off".parse::<SeccompMode>(), Ok(SeccompMode::Off));
        let err = "strict".parse::<SeccompMode>().unwrap_err();
        assert!(err.contains("on, log or off"), "{err}");
    }

    #[test]
    fn every_kind_compiles_to_a_filter() {
        let policy = SeccompPolicy::new(SeccompMode::Log).unwrap();
        for kind in ThreadKind::ALL {
            let program = policy.programs[&kind].last().unwrap();
            assert!(!program.is_empty(), "{kind}");
            // The kernel takes at most 4096 instructions per filter.
            assert!(program.len() < 4096, "{kind}: {}", program.len());
        }
        let enforced = SeccompPolicy::new(SeccompMode::Enforce).unwrap();
        assert_eq!(enforced.programs[&ThreadKind::Vcpu].len(), 2);
        assert_eq!(enforced.programs[&ThreadKind::Api].len(), 1);
        assert!(SeccompPolicy::new(SeccompMode::Off)
            .unwrap()
            .programs
            .is_empty());
    }

    #[test]
    fn the_lists_keep_dangerous_calls_out() {
        for kind in ThreadKind::ALL {
            let allowed = kind.allowed_syscalls();
            for forbidden in [
                libc::SYS_execve,
                libc::SYS_execveat,
                libc::SYS_ptrace,
                libc::SYS_process_vm_writev,
                libc::SYS_mount,
                libc::SYS_init_module,
                libc::SYS_kexec_load,
                libc::SYS_bpf,
            ] {
                assert!(
                    !allowed.contains(&forbidden),
                    "{kind} may call {}",
                    syscall_name(forbidden).unwrap_or("?")
                );
            }
        }
        // A vCPU never opens a socket (nor a file: openat fails softly, see allowlists).
        let vcpu = ThreadKind::Vcpu.allowed_syscalls();
        for call in [libc::SYS_socket, libc::SYS_connect, libc::SYS_accept4] {
            assert!(!vcpu.contains(&call), "{}", syscall_name(call).unwrap());
        }
    }
}
