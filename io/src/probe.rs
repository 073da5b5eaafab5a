//! Whether this process may use io_uring at all, asked before anything starts. A host that
//! refuses it (a sysctl, a container's seccomp profile, a low locked-memory limit) otherwise
//! fails deep inside VM creation with a reactor's bare errno; here the errno is turned into
//! its cause and the fix.

use std::sync::OnceLock;

use io_uring::{IoUring, Probe};

/// Linux 6.6+: 0 allows io_uring to all, 1 only to `io_uring_group` and CAP_SYS_ADMIN,
/// 2 to nobody.
const DISABLED_SYSCTL: &str = "/proc/sys/kernel/io_uring_disabled";
/// The group `io_uring_disabled=1` lets through; -1 (the default): none.
const GROUP_SYSCTL: &str = "/proc/sys/kernel/io_uring_group";
/// The bit of CAP_SYS_ADMIN in /proc/self/status's capability masks.
const CAP_SYS_ADMIN: u32 = 21;

/// Why io_uring cannot be used here; each message is `io_uring unavailable: CAUSE; FIX`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IoUringUnavailable {
    #[error(
        "io_uring unavailable: this kernel has no io_uring (built without CONFIG_IO_URING); \
         boot a kernel built with CONFIG_IO_URING=y, Linux 5.19 or later"
    )]
    NotInKernel,
    #[error(
        "io_uring unavailable: disabled for every process by the sysctl \
         kernel.io_uring_disabled=2; run `sysctl kernel.io_uring_disabled=0`"
    )]
    DisabledBySysctl,
    #[error(
        "io_uring unavailable: the sysctl kernel.io_uring_disabled=1 allows it only to group \
         {gid} (kernel.io_uring_group) and to CAP_SYS_ADMIN; add this user to group {gid}, \
         or run `sysctl kernel.io_uring_disabled=0`"
    )]
    RestrictedToGroup { gid: u32 },
    #[error(
        "io_uring unavailable: the sysctl kernel.io_uring_disabled=1 with \
         kernel.io_uring_group=-1 allows it only to CAP_SYS_ADMIN; run \
         `sysctl kernel.io_uring_disabled=0`, or set kernel.io_uring_group to a group of this user"
    )]
    RestrictedToAdmin,
    #[error(
        "io_uring unavailable: a seccomp filter refuses {call} (a container's profile: Docker's \
         default refuses io_uring); run under a profile that allows io_uring_setup, \
         io_uring_enter and io_uring_register (Docker/Podman: --security-opt seccomp=PROFILE.json)"
    )]
    Seccomp { call: &'static str },
    #[error(
        "io_uring unavailable: the locked-memory limit ({limit_kib} KiB, RLIMIT_MEMLOCK) is too \
         low for a ring (kernels before 5.12 charge rings to it); raise it: `ulimit -l \
         unlimited`, LimitMEMLOCK=infinity in a systemd unit, --ulimit memlock=-1 for Docker"
    )]
    MemlockTooLow { limit_kib: u64 },
    #[error("io_uring unavailable: {call} failed: {}", std::io::Error::from_raw_os_error(*errno))]
    Other { call: &'static str, errno: i32 },
}

/// What the kernel's io_uring gate and its memory accounting look at, for this process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HostGate {
    /// kernel.io_uring_disabled; `None` where the kernel has no such sysctl (before 6.6).
    pub disabled: Option<u32>,
    /// kernel.io_uring_group; `None` for -1 (no group) or no such sysctl.
    pub group: Option<u32>,
    /// Whether `io_uring_disabled=1` lets this process through anyway (CAP_SYS_ADMIN, or
    /// a member of the group), so that an EPERM must come from somewhere else.
    pub exempt: bool,
    /// The RLIMIT_MEMLOCK soft limit; `None`: unlimited.
    pub memlock_bytes: Option<u64>,
}

impl HostGate {
    /// Reads the sysctls, this process's credentials and its locked-memory limit; what
    /// cannot be read counts as absent.
    pub fn read() -> Self {
        let number = |path: &str| {
            std::fs::read_to_string(path)
                .ok()
                .and_then(|text| text.trim().parse::<i64>().ok())
        };
        let disabled = number(DISABLED_SYSCTL).and_then(|n| u32::try_from(n).ok());
        let group = number(GROUP_SYSCTL).and_then(|n| u32::try_from(n).ok());
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let uid_map = std::fs::read_to_string("/proc/self/uid_map").unwrap_or_default();
        // The kernel checks the capability and the group in the initial user namespace;
        // inside another one, /proc shows neither as the kernel's check sees them.
        let exempt = initial_user_namespace(&uid_map)
            && (has_cap_sys_admin(&status) || group.is_some_and(|gid| in_group(&status, gid)));
        Self {
            disabled,
            group,
            exempt,
            memlock_bytes: memlock_limit(),
        }
    }
}

/// Whether a ring can be set up and entered here. The kernel is asked once per process;
/// later calls return the first answer.
pub fn probe() -> Result<(), IoUringUnavailable> {
    static ANSWER: OnceLock<Result<(), IoUringUnavailable>> = OnceLock::new();
    ANSWER.get_or_init(ask_kernel).clone()
}

fn ask_kernel() -> Result<(), IoUringUnavailable> {
    let ring = IoUring::new(2).map_err(|err| diagnose(errno(&err), &HostGate::read()))?;
    // A filter may let the setup through and refuse the calls every reactor makes next.
    let submitter = ring.submitter();
    submitter
        .submit()
        .map_err(|err| after_setup("io_uring_enter", errno(&err)))?;
    if let Err(err) = submitter.register_probe(&mut Probe::new()) {
        // Kernels before 5.6 lack IORING_REGISTER_PROBE: only a filter's refusal counts.
        let refused = after_setup("io_uring_register", errno(&err));
        if matches!(refused, IoUringUnavailable::Seccomp { .. }) {
            return Err(refused);
        }
    }
    Ok(())
}

fn errno(err: &std::io::Error) -> i32 {
    err.raw_os_error().unwrap_or(libc::EIO)
}

/// The cause of io_uring_setup failing with `errno` on a host whose gate is `gate`, in the
/// order the kernel checks: the sysctl, then the ring's memory.
pub fn diagnose(errno: i32, gate: &HostGate) -> IoUringUnavailable {
    match errno {
        // The sysctl exists only where io_uring is built in: its presence means a filter
        // answered ENOSYS (some runtimes' default for calls they do not know).
        libc::ENOSYS if gate.disabled.is_some() => IoUringUnavailable::Seccomp {
            call: "io_uring_setup",
        },
        libc::ENOSYS => IoUringUnavailable::NotInKernel,
        libc::EPERM => match (gate.disabled, gate.group) {
            (Some(2..), _) => IoUringUnavailable::DisabledBySysctl,
            (Some(1), Some(gid)) if !gate.exempt => IoUringUnavailable::RestrictedToGroup { gid },
            (Some(1), None) if !gate.exempt => IoUringUnavailable::RestrictedToAdmin,
            _ => IoUringUnavailable::Seccomp {
                call: "io_uring_setup",
            },
        },
        // Unlimited, the limit cannot be what ran out.
        libc::ENOMEM => match gate.memlock_bytes {
            Some(limit) => IoUringUnavailable::MemlockTooLow {
                limit_kib: limit / 1024,
            },
            None => IoUringUnavailable::Other {
                call: "io_uring_setup",
                errno,
            },
        },
        _ => IoUringUnavailable::Other {
            call: "io_uring_setup",
            errno,
        },
    }
}

/// The cause of `call` failing once io_uring_setup worked: the kernel has io_uring and its
/// sysctl let this process in, so a refusal is a filter's.
fn after_setup(call: &'static str, errno: i32) -> IoUringUnavailable {
    match errno {
        libc::EPERM | libc::EACCES | libc::ENOSYS => IoUringUnavailable::Seccomp { call },
        _ => IoUringUnavailable::Other { call, errno },
    }
}

/// The value of `name:` in /proc/self/status.
fn status_field<'a>(status: &'a str, name: &str) -> Option<&'a str> {
    status
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
        .map(str::trim)
}

fn has_cap_sys_admin(status: &str) -> bool {
    status_field(status, "CapEff")
        .and_then(|mask| u64::from_str_radix(mask, 16).ok())
        .is_some_and(|mask| mask & (1 << CAP_SYS_ADMIN) != 0)
}

/// As the kernel's `in_group_p`: the file-system gid or a supplementary group.
fn in_group(status: &str, gid: u32) -> bool {
    let fsgid = status_field(status, "Gid").and_then(|ids| ids.split_whitespace().nth(3));
    let groups = status_field(status, "Groups").unwrap_or("");
    fsgid
        .into_iter()
        .chain(groups.split_whitespace())
        .any(|id| id.parse() == Ok(gid))
}

/// The initial user namespace maps every uid to itself.
fn initial_user_namespace(uid_map: &str) -> bool {
    uid_map.split_whitespace().eq(["0", "0", "4294967295"])
}

fn memlock_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into `limit`, which lives across the call.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) };
    (rc == 0 && limit.rlim_cur != libc::RLIM_INFINITY).then_some(limit.rlim_cur)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(disabled: Option<u32>, group: Option<u32>, exempt: bool) -> HostGate {
        HostGate {
            disabled,
            group,
            exempt,
            memlock_bytes: Some(64 << 10),
        }
    }

    #[test]
    fn enosys_is_a_kernel_without_io_uring_unless_its_sysctl_exists() {
        assert_eq!(
            diagnose(libc::ENOSYS, &gate(None, None, false)),
            IoUringUnavailable::NotInKernel
        );
        assert_eq!(
            diagnose(libc::ENOSYS, &gate(Some(0), None, false)),
            IoUringUnavailable::Seccomp {
                call: "io_uring_setup"
            }
        );
    }

    #[test]
    fn eperm_follows_the_sysctl_then_blames_seccomp() {
        let cases = [
            (
                gate(Some(2), None, true),
                IoUringUnavailable::DisabledBySysctl,
            ),
            (
                gate(Some(1), Some(27), false),
                IoUringUnavailable::RestrictedToGroup { gid: 27 },
            ),
            (
                gate(Some(1), None, false),
                IoUringUnavailable::RestrictedToAdmin,
            ),
            // Let through by the sysctl (a member, or CAP_SYS_ADMIN): not the sysctl's EPERM.
            (
                gate(Some(1), Some(27), true),
                IoUringUnavailable::Seccomp {
                    call: "io_uring_setup",
                },
            ),
            (
                gate(Some(0), None, false),
                IoUringUnavailable::Seccomp {
                    call: "io_uring_setup",
                },
            ),
            (
                gate(None, None, false),
                IoUringUnavailable::Seccomp {
                    call: "io_uring_setup",
                },
            ),
        ];
        for (gate, want) in cases {
            assert_eq!(diagnose(libc::EPERM, &gate), want, "{gate:?}");
        }
    }

    #[test]
    fn enomem_is_the_memlock_limit_when_there_is_one() {
        let limited = diagnose(libc::ENOMEM, &gate(None, None, false));
        assert_eq!(limited, IoUringUnavailable::MemlockTooLow { limit_kib: 64 });
        let unlimited = HostGate {
            memlock_bytes: None,
            ..gate(None, None, false)
        };
        assert_eq!(
            diagnose(libc::ENOMEM, &unlimited),
            IoUringUnavailable::Other {
                call: "io_uring_setup",
                errno: libc::ENOMEM
            }
        );
    }

    #[test]
    fn other_errnos_keep_their_text() {
        let err = diagnose(libc::EINVAL, &gate(Some(0), None, false));
        assert_eq!(
            err.to_string(),
            format!(
                "io_uring unavailable: io_uring_setup failed: {}",
                std::io::Error::from_raw_os_error(libc::EINVAL)
            )
        );
    }

    #[test]
    fn refusals_after_setup_are_a_filter() {
        assert_eq!(
            after_setup("io_uring_enter", libc::EPERM),
            IoUringUnavailable::Seccomp {
                call: "io_uring_enter"
            }
        );
        assert_eq!(
            after_setup("io_uring_register", libc::EINVAL),
            IoUringUnavailable::Other {
                call: "io_uring_register",
                errno: libc::EINVAL
            }
        );
    }

    #[test]
    fn every_message_is_one_line_with_cause_and_fix() {
        let all = [
            IoUringUnavailable::NotInKernel,
            IoUringUnavailable::DisabledBySysctl,
            IoUringUnavailable::RestrictedToGroup { gid: 27 },
            IoUringUnavailable::RestrictedToAdmin,
            IoUringUnavailable::Seccomp {
                call: "io_uring_setup",
            },
            IoUringUnavailable::MemlockTooLow { limit_kib: 64 },
        ];
        for err in all {
            let text = err.to_string();
            assert!(text.starts_with("io_uring unavailable: "), "{text}");
            assert!(!text.contains('\n') && !text.contains("  "), "{text}");
            assert_eq!(text.matches("; ").count(), 1, "{text}");
        }
    }

    #[test]
    fn credentials_are_read_as_the_kernel_checks_them() {
        let status = "Name:\tringvisor\nGid:\t100\t100\t100\t101\nGroups:\t4 27 \n\
                      CapEff:\t000001ffffffffff\n";
        assert!(in_group(status, 101), "the fsgid");
        assert!(in_group(status, 27), "a supplementary group");
        assert!(!in_group(status, 100), "the real gid only");
        assert!(has_cap_sys_admin(status));
        assert!(!has_cap_sys_admin("CapEff:\t00000000a80425fb\n"));
        assert!(initial_user_namespace("         0          0 4294967295\n"));
        assert!(!initial_user_namespace(
            "         0     100000      65536\n"
        ));
    }
}
