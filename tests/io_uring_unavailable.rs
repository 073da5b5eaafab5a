//! A host that refuses io_uring, as a container's seccomp profile does (io_uring_setup fails
//! with EPERM), made in child processes: `ringvisor run` says so in one line and exits 2
//! before any VM exists, and the device-path rig returns the same error instead of
//! panicking.
//!
//! The refusal is a seccomp filter installed between fork and exec. A second filter answers
//! every KVM ioctl with ENOTRECOVERABLE, so a run that got as far as KVM says so instead
//! of starting a VM.
//!
//! The rig's child is this test binary run again on the ignored `child_*` entry below,
//! which does nothing unless RV_IO_URING_CHILD is set.

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use ringvisor_devices::virtio::block::BlockConfig;
use ringvisor_io::{diagnose, HostGate, IoUringUnavailable};
use ringvisor_rig::devpath::{BlockRig, DevPathError};
use ringvisor_test_support::{output_text, TempFile};
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

const CHILD: &str = "RV_IO_URING_CHILD";
/// The ioctl type byte of every KVM request (KVMIO), in bits 8-15 of the request number.
const KVMIO: u64 = 0xae;

fn compile(rules: BTreeMap<i64, Vec<SeccompRule>>, matched: SeccompAction) -> BpfProgram {
    let arch = TargetArch::try_from(std::env::consts::ARCH).unwrap();
    let filter = SeccompFilter::new(rules, SeccompAction::Allow, matched, arch).unwrap();
    BpfProgram::try_from(filter).unwrap()
}

/// Makes `command`'s process meet a KVM that answers no ioctl and, with `refuse_io_uring`,
/// an io_uring_setup that fails with EPERM.
fn confine(command: &mut Command, refuse_io_uring: bool) -> &mut Command {
    let kvm_request = SeccompCondition::new(
        1,
        SeccompCmpArgLen::Dword,
        SeccompCmpOp::MaskedEq(0xff00),
        KVMIO << 8,
    )
    .unwrap();
    let no_kvm = compile(
        BTreeMap::from([(
            libc::SYS_ioctl,
            vec![SeccompRule::new(vec![kvm_request]).unwrap()],
        )]),
        SeccompAction::Errno(libc::ENOTRECOVERABLE as u32),
    );
    let no_io_uring = refuse_io_uring.then(|| {
        compile(
            BTreeMap::from([(libc::SYS_io_uring_setup, vec![])]),
            SeccompAction::Errno(libc::EPERM as u32),
        )
    });
    let install = move || -> std::io::Result<()> {
        for program in std::iter::once(&no_kvm).chain(no_io_uring.as_ref()) {
            seccompiler::apply_filter(program).map_err(|_| std::io::Error::last_os_error())?;
        }
        Ok(())
    };
    // SAFETY: between fork and exec the closure makes only prctl and seccomp system calls
    // on programs compiled before the fork; it allocates nothing and takes no lock.
    unsafe { command.pre_exec(install) }
}

/// What this host's ringvisor must say under the filter: the seccomp filter, unless the
/// host's own sysctl already restricts io_uring (its EPERM and the filter's look alike).
fn expected_refusal() -> IoUringUnavailable {
    let gate = HostGate::read();
    match gate.disabled {
        Some(1..) => diagnose(libc::EPERM, &gate),
        _ => IoUringUnavailable::Seccomp {
            call: "io_uring_setup",
        },
    }
}

/// `ringvisor run` with a kernel file and a disk that validate accepts; the kernel is not
/// a bzImage, so a run that loaded it would fail with a boot error instead.
fn ringvisor_run(kernel: &Path, disk: &Path, refuse_io_uring: bool) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ringvisor"));
    command
        .args([
            "--log-level",
            "debug",
            "run",
            "--cpus",
            "1",
            "--memory",
            "128M",
        ])
        .arg("--kernel")
        .arg(kernel)
        .arg("--disk")
        .arg(format!("path={}", disk.display()))
        .stdin(Stdio::null());
    confine(&mut command, refuse_io_uring).output().unwrap()
}

#[test]
fn run_refuses_to_start_in_one_line_without_io_uring() {
    let kernel = TempFile::with_len("no-io-uring-kernel", 4096);
    let disk = TempFile::with_len("no-io-uring-disk", 1 << 20);

    if ringvisor_io::probe().is_ok() {
        // The same run with io_uring left alone goes past the probe and reaches KVM: the
        // arguments are not what stops the refused run below.
        let control = ringvisor_run(&kernel.0, &disk.0, false);
        let report = output_text(&control);
        assert!(!control.status.success(), "{report}");
        assert!(report.contains("KVM") || report.contains("kvm"), "{report}");
        assert!(!report.contains("io_uring"), "{report}");
    }

    let refused = ringvisor_run(&kernel.0, &disk.0, true);
    let report = output_text(&refused);
    assert_eq!(refused.status.code(), Some(2), "{report}");
    assert!(refused.stdout.is_empty(), "{report}");
    // One line and nothing else: no KVM error, no boot error, no log line of a start.
    assert_eq!(
        String::from_utf8_lossy(&refused.stderr),
        format!("ringvisor: error: {}\n", expected_refusal()),
        "{report}"
    );
    if HostGate::read().disabled.unwrap_or(0) == 0 {
        assert!(
            report.contains("io_uring unavailable: a seccomp filter"),
            "{report}"
        );
    }
}

/// Builds a one-queue virtio-blk rig, as every device-path test and the bench do; prints
/// the error it returns.
#[test]
#[ignore = "a child process of device_path_rig_returns_the_error_without_io_uring"]
fn child_builds_a_rig() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    let disk = TempFile::with_len("no-io-uring-rig", 1 << 20);
    let config = BlockConfig {
        path: disk.0.clone(),
        read_only: false,
        direct: false,
        queues: 1,
        serial: None,
    };
    match BlockRig::new(config, &[None], 64) {
        Ok(_) => println!("rig: started"),
        Err(DevPathError::IoUring(err)) => println!("rig: {err}"),
        Err(other) => println!("rig: another error: {other}"),
    }
}

#[test]
fn device_path_rig_returns_the_error_without_io_uring() {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args([
            "--ignored",
            "--exact",
            "child_builds_a_rig",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, "1")
        .stdin(Stdio::null());
    let child = confine(&mut command, true).output().unwrap();
    let report = output_text(&child);
    assert!(child.status.success(), "{report}");
    assert!(
        report.contains(&format!("rig: {}\n", expected_refusal())),
        "{report}"
    );
}
