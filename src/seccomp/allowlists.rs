//! The allowlists, one per thread kind. Each list is what that kind's code paths call,
//! found by reading them and checked by the nested-lab boots (`--seccomp log` and dmesg
//! show what a new path needs). Thread creation (clone) is only on the list of the display
//! threads, the one kind that starts threads after it is confined.

use super::ThreadKind;

macro_rules! calls {
    ($($name:ident),* $(,)?) => {
        vec![$(sys_number(stringify!($name))),*]
    };
}

/// The number of a system call named in a list; the names are this file's own and the
/// unit tests check every one, so an unknown name is a bug here.
fn sys_number(name: &str) -> i64 {
    super::names::syscall_number(name)
        .unwrap_or_else(|| panic!("seccomp allowlist names an unknown system call '{name}'"))
}

/// What every thread does: memory (std's allocator, thread stacks), locks and channels
/// (futex), time, logging to stderr, eventfd kicks, and its own exit.
fn common() -> Vec<i64> {
    calls![
        read,
        write,
        readv,
        writev,
        close,
        fcntl,
        futex,
        mmap,
        munmap,
        mremap,
        mprotect,
        madvise,
        brk,
        rt_sigprocmask,
        rt_sigreturn,
        sigaltstack,
        sched_yield,
        sched_getaffinity,
        clock_gettime,
        clock_nanosleep,
        nanosleep,
        gettid,
        getpid,
        getrandom,
        restart_syscall,
        poll,
        ppoll,
        exit,
        exit_group,
    ]
}

/// Opening, flushing and describing files: the orderly shutdown flushes every disk by path,
/// the API lists this process's threads under /proc.
fn files() -> Vec<i64> {
    calls![openat, statx, fstat, newfstatat, getdents64, lseek, fsync, fdatasync]
}

/// Accepting and serving stream sockets.
fn stream_server() -> Vec<i64> {
    calls![
        accept4,
        recvfrom,
        sendto,
        recvmsg,
        sendmsg,
        shutdown,
        getsockname,
        getpeername,
        setsockopt,
        getsockopt,
    ]
}

fn specific(kind: ThreadKind) -> Vec<i64> {
    match kind {
        // Tears the machine down after the first stop: restores the terminal, unlinks the
        // API socket, wakes the VNC listener (a loopback connect) and joins the reactors.
        ThreadKind::Main => calls![ioctl, unlink, unlinkat, socket, connect, shutdown],
        // KVM_RUN and the ioctls of the exits handled inline (irqfd, ioeventfd, GSI routes,
        // memory slots when a BAR moves); the pause kick is a signal to this thread.
        ThreadKind::Vcpu => calls![ioctl, eventfd2, rt_sigtimedwait, tgkill],
        // io_uring, and a TAP re-attached after it was deleted: /dev/net/tun, TUNSETIFF,
        // and the interface looked up through a datagram socket (if_nametoindex).
        ThreadKind::HotReactor => {
            let mut list = calls![
                io_uring_enter,
                io_uring_register,
                ioctl,
                eventfd2,
                socket,
                pread64,
                pwrite64,
                preadv,
                pwritev,
                pwritev2,
                fallocate,
                shutdown,
            ];
            list.extend(files());
            list
        }
        // io_uring; the kvmclock hold and the vCPU pause (KVM ioctls, kicks); the balloon
        // returning pages (madvise, fallocate); console sockets and FIFOs.
        ThreadKind::LowPriorityReactor => {
            let mut list = calls![
                io_uring_enter,
                io_uring_register,
                ioctl,
                eventfd2,
                tgkill,
                fallocate,
                pread64,
                pwrite64,
            ];
            list.extend(files());
            list.extend(stream_server());
            list
        }
        // Requests over its Unix socket; screenshots written to files; pause (kicks) and the
        // orderly shutdown (disk flushes) on request.
        ThreadKind::Api => {
            let mut list = calls![ioctl, tgkill, rename, unlink, umask, fchmod];
            list.extend(files());
            list.extend(stream_server());
            list
        }
        // The VNC listener starts a reader and a writer thread per client.
        ThreadKind::Display => {
            let mut list = calls![clone, clone3, set_robust_list, rseq, prctl, socket, connect];
            list.extend(stream_server());
            list
        }
        // sigwait(SIGTERM), then the orderly shutdown: pause, drain, flush every disk.
        ThreadKind::Signals => {
            let mut list = calls![rt_sigtimedwait, tgkill, ioctl];
            list.extend(files());
            list
        }
        ThreadKind::Stdin => calls![ioctl],
    }
}

pub(super) fn allowed(kind: ThreadKind) -> Vec<i64> {
    let mut list = common();
    list.extend(specific(kind));
    list.extend(softly_denied(kind).into_iter().map(|(call, _)| call));
    list.sort_unstable();
    list.dedup();
    list
}

/// Calls that fail with an error instead of stopping the VMM, for the kinds that have no
/// use for them. glibc's malloc opens /proc/sys/vm/overcommit_memory and
/// /sys/devices/system/cpu/online the first time any thread needs a new arena or shrinks
/// one, which may be a vCPU at any moment; both are caches it fills with a safe default when
/// the open fails.
pub(super) fn softly_denied(kind: ThreadKind) -> Vec<(i64, u32)> {
    match kind {
        ThreadKind::Main | ThreadKind::Vcpu | ThreadKind::Display | ThreadKind::Stdin => {
            vec![(sys_number("openat"), libc::EACCES as u32)]
        }
        ThreadKind::HotReactor
        | ThreadKind::LowPriorityReactor
        | ThreadKind::Api
        | ThreadKind::Signals => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_on_every_list_is_a_system_call() {
        for kind in ThreadKind::ALL {
            // sys_number panics on an unknown name.
            assert!(allowed(kind).len() > common().len() - 1, "{kind}");
        }
        assert_eq!(sys_number("io_uring_enter"), libc::SYS_io_uring_enter);
        assert_eq!(sys_number("clone3"), libc::SYS_clone3);
    }
}
