//! Least privilege, checked in child processes (a filter, once installed, stays for the
//! thread's life): a confined thread that makes a forbidden call stops its own VMM
//! process with a report naming the thread, its kind and the call, while a sibling VMM
//! process serving a real disk through confined io_uring reactors goes on to the end.
//!
//! Each child is this test binary run again on one of the ignored `child_*` entries below,
//! which do nothing unless RV_SECCOMP_CHILD is set.

use std::process::Command;
use std::thread;

use ringvisor::seccomp::{self, SeccompMode, SeccompPolicy, ThreadKind, VIOLATION_EXIT_CODE};
use ringvisor_devices::virtio::block::BlockConfig;
use ringvisor_rig::devpath::{BlockRig, VIRTIO_BLK_S_OK, VIRTIO_BLK_T_FLUSH};
use ringvisor_test_support::output_text;

const CHILD: &str = "RV_SECCOMP_CHILD";

fn spawn_child(entry: &str) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            entry,
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

fn in_child() -> bool {
    std::env::var_os(CHILD).is_some()
}

/// Runs `body` on a thread named vcpu0 confined as a vCPU under a `mode` policy.
fn as_confined_vcpu(mode: SeccompMode, body: impl FnOnce() + Send + 'static) {
    seccomp::set_process_policy(SeccompPolicy::new(mode).unwrap());
    thread::Builder::new()
        .name("vcpu0".into())
        .spawn(|| {
            seccomp::confine(ThreadKind::Vcpu);
            body();
        })
        .unwrap()
        .join()
        .unwrap();
}

/// A vCPU thread (by name and filter) that opens a file (denied softly) and then a socket,
/// which no vCPU ever should.
#[test]
#[ignore = "a child process of forbidden_call_stops_only_its_own_vmm"]
fn child_vcpu_opens_a_socket() {
    if !in_child() {
        return;
    }
    as_confined_vcpu(SeccompMode::Enforce, || {
        println!("confined");
        // What glibc's malloc may do on any thread: a soft denial, not a stop.
        let open = std::fs::File::open("/proc/sys/vm/overcommit_memory");
        println!("open: {:?}", open.map_err(|e| e.kind()));
        // SAFETY: socket(2) with constant arguments; the result is only printed.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
        println!("survived with fd {fd}");
    });
    println!("the process went on");
}

/// A VMM process whose disk is served by confined hot reactors over io_uring on a real
/// file: writes, reads back, flushes.
#[test]
#[ignore = "a child process of forbidden_call_stops_only_its_own_vmm"]
fn child_serves_a_disk_through_confined_reactors() {
    if !in_child() {
        return;
    }
    seccomp::set_process_policy(SeccompPolicy::new(SeccompMode::Enforce).unwrap());
    let path = std::env::temp_dir().join(format!("ringvisor-seccomp-{}.img", std::process::id()));
    std::fs::File::create(&path)
        .unwrap()
        .set_len(4 << 20)
        .unwrap();
    let config = BlockConfig {
        path: path.clone(),
        read_only: false,
        direct: true,
        queues: 2,
        serial: None,
    };
    let mut rig = BlockRig::new(config, &[None, None], 64).unwrap();
    for queue in 0..rig.queues_mut().len() {
        let pattern: Vec<u8> = (0..65536u32)
            .map(|i| (i % 251) as u8 ^ queue as u8)
            .collect();
        let sector = queue as u64 * 256;
        assert_eq!(
            rig.write(queue, sector, &pattern).unwrap().status,
            VIRTIO_BLK_S_OK
        );
        let (completion, back) = rig.read(queue, sector, pattern.len() as u32).unwrap();
        assert_eq!(completion.status, VIRTIO_BLK_S_OK);
        assert!(back == pattern, "queue {queue}: data differs");
        let flush = rig.roundtrip(queue, VIRTIO_BLK_T_FLUSH, 0, &[]).unwrap();
        assert_eq!(flush.status, VIRTIO_BLK_S_OK);
    }
    rig.shutdown().unwrap();
    let _ = std::fs::remove_file(&path);
    println!("disk served");
}

/// Log mode lets the same call through (left to the kernel's audit).
#[test]
#[ignore = "a child process of log_mode_lets_the_call_through"]
fn child_vcpu_opens_a_socket_in_log_mode() {
    if !in_child() {
        return;
    }
    as_confined_vcpu(SeccompMode::Log, || {
        // SAFETY: as above; the descriptor is closed at once.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
        assert!(fd >= 0);
        // SAFETY: fd is ours.
        unsafe { libc::close(fd) };
        println!("socket allowed");
    });
}

#[test]
fn forbidden_call_stops_only_its_own_vmm() {
    // Both at once: one VMM process misbehaves while the other serves its disk.
    let violator = spawn_child("child_vcpu_opens_a_socket");
    let sibling = spawn_child("child_serves_a_disk_through_confined_reactors");
    let violator = violator.wait_with_output().unwrap();
    let sibling = sibling.wait_with_output().unwrap();

    let report = output_text(&violator);
    assert_eq!(
        violator.status.code(),
        Some(VIOLATION_EXIT_CODE),
        "{report}"
    );
    assert!(report.contains("confined"), "{report}");
    assert!(report.contains("open: Err(PermissionDenied)"), "{report}");
    assert!(
        report.contains(&format!(
            "ringvisor: error: seccomp: thread 'vcpu0' (vCPU) made a forbidden system call {} (socket); stopping the VMM",
            libc::SYS_socket
        )),
        "{report}"
    );
    assert!(!report.contains("survived"), "{report}");
    assert!(!report.contains("the process went on"), "{report}");

    let served = output_text(&sibling);
    assert!(sibling.status.success(), "{served}");
    assert!(served.contains("disk served"), "{served}");
}

#[test]
fn log_mode_lets_the_call_through() {
    let child = spawn_child("child_vcpu_opens_a_socket_in_log_mode")
        .wait_with_output()
        .unwrap();
    let report = output_text(&child);
    assert!(child.status.success(), "{report}");
    assert!(report.contains("socket allowed"), "{report}");
}
