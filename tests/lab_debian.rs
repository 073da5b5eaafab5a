//! Tier 4: a distribution from a root disk. Debian bookworm with systemd
//! (tests/lab/debian-root.sh) boots under the freshly built ringvisor in the nested lab,
//! reboots in place, shuts down through the power button and powers itself off; its file
//! system is checked after each, and a file written without sync must survive.

mod lab_support;

use std::path::Path;
use std::process::Command;

use lab_support::{copy_sparse, debian_root_image, fact, lab_ready, repo, run_lab_prepared};

/// Every "L2: debian boot=N ..." fact of a console, in order.
fn boots(console: &str) -> Vec<&str> {
    console
        .lines()
        .filter_map(|line| line.trim_end_matches('\r').split_once("L2: debian boot="))
        .map(|(_, rest)| rest.trim())
        .collect()
}

/// The values of every "L2: debian PREFIX" fact, in order (one per boot).
fn each<'a>(console: &'a str, prefix: &str) -> Vec<&'a str> {
    let prefix = format!("L2: debian {prefix}");
    console
        .lines()
        .filter_map(|line| line.trim_end_matches('\r').split_once(prefix.as_str()))
        .map(|(_, value)| value.trim())
        .collect()
}

fn e2fsck_clean(image: &Path) -> Result<(), String> {
    let out = Command::new("e2fsck")
        .args(["-f", "-n"])
        .arg(image)
        .output()
        .map_err(|err| format!("cannot run e2fsck: {err}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "e2fsck -fn {} ({}):\n{}{}",
            image.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn file_in_image(image: &Path, path: &str) -> String {
    let out = Command::new("debugfs")
        .args(["-R", &format!("cat {path}")])
        .arg(image)
        .output()
        .expect("cannot run debugfs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn debian_with_systemd_boots_reboots_and_shuts_down_from_its_root_disk() {
    if !lab_ready() {
        return;
    }
    // The image is built (or taken from the cache) first: a build failure is this test's.
    let Some(pristine) = debian_root_image() else {
        return;
    };
    let disk = repo().join("target/lab/debian-test.img");
    let disk_arg = disk.to_str().expect("a UTF-8 path").to_owned();
    // Every attempt starts from the pristine image: the guest counts its boots on it.
    let copy_pristine = || copy_sparse(&pristine, &disk);
    let Some(console) = run_lab_prepared(
        "tests/lab/scenarios/ringvisor-debian.sh",
        &["--disk", &disk_arg, "--timeout", "900"],
        &copy_pristine,
    ) else {
        return;
    };
    println!("{console}");
    let expect = |prefix: &str| {
        fact(&console, prefix).unwrap_or_else(|| panic!("no '{prefix}' line in:\n{console}"))
    };

    // Three boots of the disk, each reaching multi-user.target with nothing failed: the
    // first two in one ringvisor process (a `systemctl reboot` in between), the third in
    // a second one.
    let boots = boots(&console);
    assert_eq!(boots.len(), 3, "three boots: {boots:?}");
    for (n, boot) in boots.iter().enumerate() {
        assert!(
            boot.starts_with(&format!("{} state=running multi_user=active ", n + 1)),
            "boot {}: {boot}",
            n + 1
        );
    }
    for root in each(&console, "root=") {
        assert_eq!(root, "/dev/vda ext4 init=/usr/lib/systemd/systemd");
    }
    for clock in each(&console, "clocksource=") {
        assert_eq!(clock, "kvm-clock");
    }
    // udev named the virtio-serial port; the balloon driver bound and reported statistics.
    for ports in each(&console, "ports=") {
        assert_eq!(ports, "org.ringvisor.lab");
    }
    for balloon in each(&console, "balloon=") {
        assert_eq!(balloon, "1");
    }
    let balloon_api = expect("L1: debian balloon-api exit=");
    assert!(
        balloon_api.starts_with("0 ") && balloon_api.contains("\"total_memory\":"),
        "{balloon_api}"
    );
    // systemd-networkd configured the virtio NIC and the guest reached L1 over the TAP.
    let nets = each(&console, "net ");
    assert_eq!(nets.len(), 3, "{nets:?}");
    for net in nets {
        assert!(
            net.contains("=169.254.100.2/24") && net.ends_with("ping=ok"),
            "{net}"
        );
    }

    // The reboot was served in place, and the power button (`ringvisor ctl shutdown`)
    // made systemd shut down: ringvisor exited 0, the file system is clean.
    assert_eq!(expect("L1: debian first exit="), "0 reboots=1");
    assert_eq!(expect("L1: debian ctl-shutdown exit="), "0");
    assert_eq!(expect("L1: debian fsck after-shutdown exit="), "0");
    // The file boot 2 wrote without sync survived, and boot 3's journal of boot 2 shows
    // the power key and the shutdown it started; `systemctl poweroff` ended ringvisor 0.
    assert_eq!(
        expect("L2: debian unsynced="),
        "written at boot 2, never synced"
    );
    assert_eq!(
        expect("L2: debian last shutdown power_key="),
        "1 powering_off=1"
    );
    assert_eq!(expect("L1: debian second exit="), "0");
    assert_eq!(expect("L1: debian fsck after-poweroff exit="), "0");
    assert!(
        !console.contains("made a forbidden system call"),
        "{console}"
    );
    // And on the host, from the image file itself.
    e2fsck_clean(&disk).unwrap();
    assert_eq!(
        file_in_image(&disk, "/root/unsynced").trim(),
        "written at boot 2, never synced"
    );
    let _ = std::fs::remove_file(&disk);
}
