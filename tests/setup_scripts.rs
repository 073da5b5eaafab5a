//! The README's two set-up commands respect the host: what they need is checked before
//! anything is installed (tests/preflight.sh), and no script installs a kernel, a
//! bootloader or QEMU into the host or touches its /boot.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ringvisor_test_support::{output_text, repo, skip};

/// A PATH of one directory holding links to the tools preflight.sh uses, and `extra`
/// scripts (name, body) of the test's own.
struct FakePath(PathBuf);

impl FakePath {
    fn new(tag: &str, extra: &[(&str, &str)]) -> Self {
        let dir = std::env::temp_dir().join(format!("rv-preflight-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for tool in [
            "bash", "cat", "awk", "sort", "head", "id", "grep", "tr", "apt-get", "dpkg",
        ] {
            let found = which(tool).unwrap_or_else(|| panic!("{tool} is not installed"));
            symlink(found, dir.join(tool)).unwrap();
        }
        for (name, body) in extra {
            let path = dir.join(name);
            std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
            Command::new("chmod").arg("+x").arg(&path).status().unwrap();
        }
        Self(dir)
    }
}

impl Drop for FakePath {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn which(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .map(|dir| dir.join(tool))
        .find(|candidate| candidate.is_file())
}

fn preflight(mode: &str, path: Option<&Path>) -> Output {
    let mut command = Command::new(which("bash").unwrap());
    command.arg(repo().join("tests/preflight.sh")).arg(mode);
    if let Some(path) = path {
        command.env("PATH", path).env_remove("SUDO_USER");
    }
    command.output().unwrap()
}

#[test]
fn a_missing_toolchain_is_named_before_anything_is_installed() {
    let bare = FakePath::new("bare", &[]);
    for mode in ["tests", "boot"] {
        let out = preflight(mode, Some(&bare.0));
        let report = output_text(&out);
        assert_eq!(out.status.code(), Some(2), "{report}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("preflight: missing: the Rust toolchain (cargo and rustc 1.85"),
            "{report}"
        );
        assert!(
            stderr.ends_with("preflight: nothing was installed\n"),
            "{report}"
        );
    }
}

#[test]
fn an_old_rustc_is_named_with_its_version() {
    let old = FakePath::new(
        "old",
        &[
            ("cargo", "exit 0"),
            ("rustc", "echo 'rustc 1.70.0 (90c541806 2023-05-31)'"),
        ],
    );
    let out = preflight("tests", Some(&old.0));
    let report = output_text(&out);
    assert_eq!(out.status.code(), Some(2), "{report}");
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("missing: rustc 1.85 or later (found 1.70.0: rustup update stable)"),
        "{report}"
    );
}

#[test]
fn a_user_boots_without_root_once_the_lab_is_set_up() {
    // As an unprivileged user (nobody): root is named only while lab.sh says the lab is
    // not set up yet.
    let as_nobody = |ready: bool| {
        let mut command = Command::new("setpriv");
        command
            .args([
                "--reuid",
                "65534",
                "--regid",
                "65534",
                "--clear-groups",
                "bash",
            ])
            .arg(repo().join("tests/preflight.sh"))
            .arg("boot")
            .env_remove("SUDO_USER")
            .env_remove("RINGVISOR_LAB_READY");
        if ready {
            command.env("RINGVISOR_LAB_READY", "1");
        }
        command.output()
    };
    let Ok(first) = as_nobody(false) else {
        skip("setpriv (util-linux) is not installed");
        return;
    };
    let report = output_text(&first);
    if report.contains("Operation not permitted") {
        skip("becoming another user needs root");
        return;
    }
    assert!(
        report.contains("preflight: missing: root: the first boot"),
        "{report}"
    );
    let later = as_nobody(true).unwrap();
    let report = output_text(&later);
    assert!(!report.contains("missing: root"), "{report}");
}

#[test]
fn this_machine_passes_the_checks_of_the_tests() {
    // The machine running the tests has what they need (CI: root and /dev/kvm too).
    let out = preflight("tests", None);
    assert!(out.status.success(), "{}", output_text(&out));
}

/// Every shell script of the repository, outside build output.
fn scripts(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if path.is_dir() {
            if name != "target" && name != ".git" {
                scripts(&path, found);
            }
        } else if path.extension().is_some_and(|ext| ext == "sh") {
            found.push(path);
        }
    }
}

#[test]
fn no_script_installs_a_kernel_or_touches_the_hosts_boot() {
    let mut found = Vec::new();
    scripts(&repo(), &mut found);
    assert!(found.len() > 20, "{found:?}");
    let mut installers = Vec::new();
    for script in &found {
        let text = std::fs::read_to_string(script).unwrap();
        for (number, line) in text.lines().enumerate() {
            let code = line.split('#').next().unwrap_or("");
            // A message that names a command ("apt-get install fio") runs nothing.
            let message = ["echo ", "printf ", "log ", "die "]
                .iter()
                .any(|said| code.trim_start().starts_with(said));
            if !message
                && [
                    "apt-get install",
                    "apt install",
                    "dpkg -i",
                    "dpkg --install",
                    "aptitude",
                ]
                .iter()
                .any(|installer| code.contains(installer))
            {
                installers.push(format!("{}:{}", script.display(), number + 1));
            }
            // The lab's kernels live in unpacked roots ("$root/boot/..."), never in /boot.
            for (at, _) in code.match_indices("/boot") {
                // "$root"/boot, $(l1_root)/boot: the path continues a variable or a command.
                let mut before = code[..at].chars().rev();
                let named = |c: Option<char>| matches!(c, Some(c) if c.is_alphanumeric() || "}_)".contains(c));
                let first = before.next();
                assert!(
                    named(first) || (first == Some('"') && named(before.next())),
                    "{}:{}: a path into the host's /boot: {line}",
                    script.display(),
                    number + 1
                );
            }
        }
    }
    // One installer, tests/lab/lab.sh's apt_install, fed the host tools and QEMU's libraries.
    assert_eq!(installers.len(), 1, "{installers:?}");
    assert!(installers[0].contains("tests/lab/lab.sh"), "{installers:?}");
    let listed = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "eval \"$(sed -n '/^HOST_PACKAGES=(/,/)/p' {})\"; printf '%s\\n' \"${{HOST_PACKAGES[@]}}\"",
            repo().join("tests/lab/lab.sh").display()
        ))
        .output()
        .unwrap();
    let packages = String::from_utf8_lossy(&listed.stdout).into_owned();
    assert!(packages.lines().count() > 5, "{packages}");
    for package in packages.lines() {
        assert!(
            ![
                "linux-image",
                "linux-headers",
                "grub",
                "systemd-boot",
                "initramfs-tools",
                "dracut",
                "qemu-system"
            ]
            .iter()
            .any(|forbidden| package.starts_with(forbidden)),
            "the host would get {package}"
        );
    }
}
