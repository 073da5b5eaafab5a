//! What ringvisor's tests share, kept out of the shipped crates: a dev-dependency only.

use std::fmt::Display;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The file `tests/run.sh` names for the run's list of skipped tests.
pub const SKIP_LOG_ENV: &str = "RINGVISOR_SKIP_LOG";

/// Whether this run is CI's, where every test must run.
pub fn in_ci() -> bool {
    std::env::var_os("CI").is_some()
}

/// Reports that the calling test cannot run here and why; the caller then returns.
///
/// Outside CI it prints `SKIPPED: test: reason` and appends the same line to the file named
/// by `RINGVISOR_SKIP_LOG`, which `tests/run.sh` lists at the end of the run, because
/// `cargo test` hides a passing test's stderr. In CI nothing may skip: it panics instead,
/// so the missing piece fails the run.
pub fn skip(reason: impl Display) {
    let log = std::env::var_os(SKIP_LOG_ENV);
    record_skip(in_ci(), log.as_deref().map(Path::new), &reason);
}

fn record_skip(ci: bool, log: Option<&Path>, reason: &dyn Display) {
    let test = std::thread::current()
        .name()
        .unwrap_or("an unnamed test")
        .to_owned();
    assert!(
        !ci,
        "{test} cannot run in CI, where nothing may skip: {reason}"
    );
    let line = format!("SKIPPED: {test}: {reason}");
    eprintln!("{line}");
    let Some(path) = log else { return };
    // One O_APPEND write per line: parallel test processes do not interleave their lines.
    let logged = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut file| file.write_all(format!("{line}\n").as_bytes()));
    if let Err(err) = logged {
        eprintln!("cannot add the skip to {}: {err}", path.display());
    }
}

/// Whether this process may pin `bytes` of memory (io_uring's registered buffers count
/// against RLIMIT_MEMLOCK unless the process has CAP_IPC_LOCK, which root has); when it
/// may not, the calling test is skipped with the limit and how to raise it.
pub fn can_pin_memory(bytes: u64) -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let cap_ipc_lock = status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << 14) != 0);
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let soft = limits
        .lines()
        .find_map(|line| line.strip_prefix("Max locked memory"))
        .and_then(|rest| rest.split_whitespace().next().map(str::to_owned));
    let limit = match soft.as_deref() {
        Some("unlimited") => None,
        Some(n) => n.parse::<u64>().ok(),
        None => Some(0),
    };
    if cap_ipc_lock || limit.is_none_or(|limit| limit >= bytes) {
        return true;
    }
    skip(format_args!(
        "pinning {} MiB for io_uring's registered buffers needs RLIMIT_MEMLOCK of that much \
         (it is {} KiB: `ulimit -l`, memlock in /etc/security/limits.conf) or root",
        bytes >> 20,
        limit.unwrap_or(0) >> 10
    ));
    false
}

/// The repository's root.
pub fn repo() -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    path.canonicalize().unwrap_or(path)
}

/// Whether `tests/lab/lab.sh deps` has set the nested lab up; when it has not, the calling
/// test is reported as skipped (or fails, in CI) and should return.
pub fn lab_ready() -> bool {
    let ready = Command::new("bash")
        .arg(repo().join("tests/lab/lab.sh"))
        .arg("ready")
        .status()
        .map(|status| status.success())
        .unwrap_or(false);
    if !ready {
        skip("the nested lab is not set up (bash tests/lab/lab.sh deps)");
    }
    ready
}

/// A child process's status and both of its outputs, for assertion messages.
pub fn output_text(output: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// How many threads of this process are io-wq workers of thread `tid` (`iou-wrk-<tid>`),
/// read from /proc/self/task/*/comm directly.
pub fn iowq_workers_of(tid: u32) -> usize {
    let name = format!("iou-wrk-{tid}");
    std::fs::read_dir("/proc/self/task")
        .map(|tasks| {
            tasks
                .flatten()
                .filter(|task| {
                    std::fs::read_to_string(task.path().join("comm"))
                        .is_ok_and(|comm| comm.trim_end() == name)
                })
                .count()
        })
        .unwrap_or(0)
}

/// A file in the temporary directory, named after the test and this process, removed when
/// dropped.
pub struct TempFile(pub PathBuf);

impl TempFile {
    /// A path only: the test creates the file (or the code under test does).
    pub fn path_only(name: &str) -> Self {
        Self(std::env::temp_dir().join(format!("ringvisor-{name}-{}", std::process::id())))
    }

    /// A sparse file of `len` bytes.
    pub fn with_len(name: &str, len: u64) -> Self {
        let file = Self::path_only(name);
        let created = std::fs::File::create(&file.0).and_then(|f| f.set_len(len));
        if let Err(err) = created {
            panic!("cannot create {}: {err}", file.0.display());
        }
        file
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn in_thread(name: &str, run: impl FnOnce() + Send + 'static) -> std::thread::Result<()> {
        std::thread::Builder::new()
            .name(name.into())
            .spawn(run)
            .unwrap()
            .join()
    }

    #[test]
    fn a_skip_outside_ci_names_the_test_in_the_run_log() {
        let log = std::env::temp_dir().join(format!("rv-skip-{}", std::process::id()));
        let _ = std::fs::remove_file(&log);
        for reason in ["no widget here", "no gadget either"] {
            let path = log.clone();
            in_thread("named_test", move || {
                record_skip(false, Some(&path), &reason)
            })
            .unwrap();
        }
        let text = std::fs::read_to_string(&log).unwrap();
        std::fs::remove_file(&log).unwrap();
        assert_eq!(
            text,
            "SKIPPED: named_test: no widget here\nSKIPPED: named_test: no gadget either\n"
        );
    }

    #[test]
    fn a_skip_in_ci_fails_the_test() {
        let panic = in_thread("ci_test", || record_skip(true, None, &"no widget")).unwrap_err();
        let message = panic.downcast_ref::<String>().unwrap();
        assert_eq!(
            message,
            "ci_test cannot run in CI, where nothing may skip: no widget"
        );
    }
}
