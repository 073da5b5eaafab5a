//! How a reactor's ring comes to be: built disabled and restricted, then, on the reactor
//! thread and while still disabled, its io-wq capped and placed.

use std::time::Duration;

use io_uring::{opcode, IoUring, Submitter};

use super::EntrySize;
use log::{debug, warn};

use crate::reactor::iowq::IowqLimits;
use crate::reactor::ring_policy::RingPolicy;

/// How one reactor's loop and ring are set up.
pub(crate) struct LoopConfig {
    pub index: usize,
    pub core: Option<usize>,
    pub ring_entries: u32,
    /// Adaptive polling budget (`--poll-us`); `None`: sleep as soon as idle.
    pub poll: Option<Duration>,
    /// SQEs gathered before they are handed to the kernel (at least one).
    pub submit_batch: usize,
    /// Guest RAM to register as fixed buffers before the ring is enabled.
    pub registered_ram: Option<crate::reactor::ram::RegisteredRam>,
    pub policy: RingPolicy,
    pub iowq: IowqPlan,
    pub on_failure: Option<super::FailureHook>,
}

/// What the reactor asks of its io-wq.
#[derive(Debug, Clone, Default)]
pub(crate) struct IowqPlan {
    /// `None`: the kernel's limits.
    pub limits: Option<IowqLimits>,
    /// The cores the workers may run on; empty: left to the kernel (any allowed core).
    pub cores: Vec<usize>,
}

/// The reactor's ring. By default the kernel completes each op through task work that
/// interrupts the submitting thread (an IPI per completion from io-wq workers or IRQ
/// context); measured on a 2-core host, that capped one reactor at about 220k 4k reads/s.
/// Deferred task work (6.1+; single issuer) runs completions only inside the reactor's own
/// io_uring_enter: 500-720k/s in the same run. Older kernels get the cooperative mode
/// (5.19+, no IPI either) or a plain ring. Every ring is built disabled, restricted to
/// `policy` while it is, and enabled by the reactor thread (its single issuer).
pub(super) fn build_ring<E: EntrySize>(
    entries: u32,
    policy: &RingPolicy,
) -> std::io::Result<(Ring<E>, RingCapabilities)> {
    let deferred = IoUring::<E::Sqe, E::Cqe>::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .setup_taskrun_flag()
        .setup_r_disabled()
        .build(entries);
    let ring = match deferred {
        Ok(ring) => ring,
        Err(err) if err.raw_os_error() == Some(libc::EINVAL) => {
            debug!("io_uring without DEFER_TASKRUN: {err}");
            let cooperative = IoUring::<E::Sqe, E::Cqe>::builder()
                .setup_coop_taskrun()
                .setup_taskrun_flag()
                .setup_r_disabled()
                .build(entries);
            match cooperative {
                Ok(ring) => ring,
                Err(err) if err.raw_os_error() == Some(libc::EINVAL) => {
                    debug!("io_uring without COOP_TASKRUN: {err}");
                    IoUring::<E::Sqe, E::Cqe>::builder()
                        .setup_r_disabled()
                        .build(entries)?
                }
                Err(err) => return Err(err),
            }
        }
        Err(err) => return Err(err),
    };
    // What the kernel has of the optional opcodes: probed while the ring is disabled (no
    // restriction applies yet). A kernel without the probe (before 5.6) has none of them.
    let mut probe = io_uring::Probe::new();
    let probed = ring.submitter().register_probe(&mut probe).is_ok();
    let supported = |code: u8| probed && probe.is_supported(code);
    let capabilities = RingCapabilities {
        vectored_fixed: supported(opcode::ReadvFixed::CODE) && supported(opcode::WritevFixed::CODE),
        // No probe covers a flag: the kernel's version does (before 6.1 the flag is an
        // unknown one, and the command fails with EINVAL).
        uring_cmd_fixed: kernel_at_least(6, 1),
    };
    ring.submitter()
        .register_restrictions(&mut policy.restrictions(supported))?;
    Ok((ring, capabilities))
}

/// A reactor's ring with entries of size `E`.
pub(super) type Ring<E> = IoUring<<E as EntrySize>::Sqe, <E as EntrySize>::Cqe>;

/// What the kernel behind a ring can do beyond what every supported kernel can.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct RingCapabilities {
    /// IORING_OP_READV_FIXED and WRITEV_FIXED (Linux 6.15+).
    pub vectored_fixed: bool,
    /// Driver commands on registered buffers (IORING_URING_CMD_FIXED, Linux 6.1+).
    pub uring_cmd_fixed: bool,
}

/// Whether the running kernel is `major.minor` or later (its `osrelease`, e.g.
/// "6.12.95+deb12-cloud-amd64"); false when that cannot be read.
fn kernel_at_least(major: u32, minor: u32) -> bool {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .ok()
        .and_then(|release| parse_release(&release))
        .is_some_and(|version| version >= (major, minor))
}

fn parse_release(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.trim().split(['.', '-', '+']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// Caps and places the io-wq of the calling thread, which must be the reactor thread that
/// built `ring` and the ring still disabled; returns the part of `plan` now in force.
///
/// Both registrations act on the calling task's io-wq, not the ring's: IOWQ_AFF fails
/// with EINVAL on a thread that has no io_uring context yet (one that neither built nor
/// submitted to a ring), hence the ring is built on the reactor thread. MAX_WORKERS is
/// also kept by the ring for threads that attach later. The ring's restrictions refuse
/// every register operation once it is enabled, so this is the only moment. A kernel that
/// refuses (before 5.15, a core outside the cpuset) leaves the kernel's choice, with a
/// warning: the reactor works either way.
pub(super) fn register_iowq(
    submitter: &Submitter<'_>,
    plan: &IowqPlan,
    reactor: usize,
) -> IowqPlan {
    let mut in_force = IowqPlan::default();
    if !plan.cores.is_empty() {
        let placed =
            crate::reactor::cpu_set(&plan.cores).and_then(|set| submitter.register_iowq_aff(&set));
        match placed {
            Ok(()) => in_force.cores.clone_from(&plan.cores),
            Err(err) => warn!(
                "reactor {reactor}: cannot keep its io-wq workers on cores {:?}: {err}",
                plan.cores
            ),
        }
    }
    if let Some(limits) = plan.limits {
        let mut max = limits.as_register_arg();
        match submitter.register_iowq_max_workers(&mut max) {
            Ok(()) => {
                // The kernel hands back the limits it replaced.
                debug!(
                    "reactor {reactor}: io-wq workers at most {limits:?} (were {} and {})",
                    max[0], max[1]
                );
                in_force.limits = Some(limits);
            }
            Err(err) => {
                warn!("reactor {reactor}: cannot cap its io-wq workers at {limits:?}: {err}")
            }
        }
    }
    in_force
}

#[cfg(test)]
mod tests {
    use super::parse_release;

    #[test]
    fn kernel_releases_parse_to_major_and_minor() {
        assert_eq!(parse_release("6.12.95+deb12-cloud-amd64\n"), Some((6, 12)));
        assert_eq!(parse_release("6.1-rc1"), Some((6, 1)));
        assert_eq!(parse_release("5.19.0"), Some((5, 19)));
        assert!(parse_release("linux").is_none());
    }
}
