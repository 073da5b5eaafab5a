//! What the nested-lab tests share: running an L1 scenario with this build of ringvisor
//! (retrying only what the lab lost, with its evidence) and reading the facts it printed.
// Each test crate that includes this module uses a part of it.
#![allow(dead_code)]

use std::process::Command;

pub use ringvisor_test_support::{lab_ready, repo};

/// The exit status of `lab.sh run` when the lab itself lost the run and showed evidence
/// of it (a fault in L1's kernel log, an abort of L1's QEMU): the only failure retried.
const LAB_LOST: i32 = 75;
/// A lab loss gets this many attempts in all. Every loss is also counted in the run's
/// ledger (tests/run.sh), which fails the whole run when more than a quarter were lost.
const MAX_ATTEMPTS: u32 = 3;

/// Runs an L1 scenario with this build of ringvisor (`lab_args` go to `lab.sh run`);
/// returns L1's console output.
pub fn run_lab(scenario: &str, lab_args: &[&str]) -> Option<String> {
    run_lab_prepared(scenario, lab_args, &|| {})
}

/// As [`run_lab`], with `prepare` run before every attempt (a retry after a lab loss
/// starts from the same state as the first attempt, e.g. a pristine disk image).
pub fn run_lab_prepared(scenario: &str, lab_args: &[&str], prepare: &dyn Fn()) -> Option<String> {
    if !lab_ready() {
        return None;
    }
    // A failure without evidence that the lab caused it (an L2 triple fault, a hang, a
    // VMM error, a failed check) fails at once: tests/lab/lab.sh decides, from L1's own
    // kernel log and QEMU's stderr, and says why.
    for attempt in 1..=MAX_ATTEMPTS {
        prepare();
        let out = Command::new("bash")
            .arg(repo().join("tests/lab/lab.sh"))
            .arg("run")
            .arg("--scenario")
            .arg(repo().join(scenario))
            .arg("--vmm")
            .arg(env!("CARGO_BIN_EXE_ringvisor"))
            // Most scenarios take 1-4 minutes on the 2-core build machine with L1's one
            // vCPU; a hung L1 must not eat CI. A longer scenario names its own --timeout
            // in `lab_args`, which comes later and wins.
            .args(["--timeout", "400"])
            .args(lab_args)
            .output()
            .expect("cannot run tests/lab/lab.sh");
        let console = String::from_utf8_lossy(&out.stdout).into_owned();
        let log = String::from_utf8_lossy(&out.stderr);
        // Every poke of a silent L1 (tests/lab/README.md) shows in the test's output, as
        // a retry does.
        for line in log.lines().filter(|line| {
            line.starts_with("lab: run: poked L1") || line.starts_with("lab: run: L1 beat again")
        }) {
            eprintln!("{scenario}: {line}");
        }
        // Every boot runs with the seccomp filters enforced: a call a device path needs
        // and its thread's list lacks stops the VMM with this line, wherever it happens.
        if let Some(line) = console
            .lines()
            .find(|line| line.contains("made a forbidden system call"))
        {
            panic!("a seccomp allowlist misses a call: {line}");
        }
        if out.status.code() == Some(LAB_LOST) && attempt < MAX_ATTEMPTS {
            let evidence = log
                .lines()
                .find_map(|line| line.strip_prefix("lab: run: lost to the lab: "))
                .unwrap_or("(no evidence line)");
            eprintln!("RETRY {attempt}/{MAX_ATTEMPTS} of {scenario}: lost to the lab: {evidence}");
            continue;
        }
        assert!(
            out.status.success(),
            "lab run failed ({}):\n--- console ---\n{console}\n--- lab ---\n{log}",
            out.status
        );
        return Some(console);
    }
    unreachable!("the last attempt either returns or fails")
}

/// The value of the first `PREFIX` line, e.g. `L2: cpus_online=` → "2".
pub fn fact<'a>(console: &'a str, prefix: &str) -> Option<&'a str> {
    console.lines().find_map(|line| {
        line.trim_end_matches('\r')
            .split_once(prefix)
            .map(|(_, v)| v.trim())
    })
}

/// The number after `KEY=` in a fact's `key=value` list; panics (failing the test) when
/// there is none.
pub fn field(text: &str, key: &str) -> u64 {
    text.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("no number {key}= in {text}"))
}

/// The lab's pristine Debian root image (tests/lab/debian-root.sh), built or taken from
/// the cache; a build failure fails the calling test. Boot a copy: see [`copy_sparse`].
/// `None` (the test skipped, visibly) for a user when the image is not built yet: only
/// root can build it.
pub fn debian_root_image() -> Option<String> {
    let built = Command::new("bash")
        .arg(repo().join("tests/lab/lab.sh"))
        .arg("debian-root")
        .output()
        .expect("cannot run tests/lab/lab.sh debian-root");
    let log = String::from_utf8_lossy(&built.stderr);
    if !built.status.success() && log.contains("root mode needs root") {
        ringvisor_test_support::skip(
            "the Debian root image is not built, and building it needs root \
             (sudo bash tests/lab/lab.sh debian-root)",
        );
        return None;
    }
    assert!(
        built.status.success(),
        "the Debian root image was not built:\n{log}"
    );
    Some(String::from_utf8_lossy(&built.stdout).trim().to_owned())
}

/// Copies a disk image, its holes kept.
pub fn copy_sparse(from: &str, to: &std::path::Path) {
    let status = Command::new("cp")
        .arg("--sparse=always")
        .arg(from)
        .arg(to)
        .status()
        .expect("cannot run cp");
    assert!(status.success(), "cannot copy {from} to {}", to.display());
}

/// A test tool of tests/rig (e.g. `vnc-grab`), built now beside this build's ringvisor so
/// that a scenario gets the current one (`--extra PATH:/usr/bin/NAME`); returns its path.
pub fn rig_tool(name: &str) -> String {
    let vmm = std::path::Path::new(env!("CARGO_BIN_EXE_ringvisor"));
    let dir = vmm.parent().expect("the binary has a directory");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = Command::new(cargo);
    build.args(["build", "--quiet", "-p", "ringvisor-rig", "--bin", name]);
    if dir.file_name().is_some_and(|profile| profile == "release") {
        build.arg("--release");
    }
    let status = build.status().expect("cannot run cargo");
    assert!(
        status.success(),
        "cargo build -p ringvisor-rig --bin {name} failed"
    );
    let tool = dir.join(name);
    assert!(tool.is_file(), "{} was not built", tool.display());
    tool.display().to_string()
}
