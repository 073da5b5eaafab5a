//! Running the suite's driver from a benchmark, through the nested lab (tests/lab/lab.sh)
//! or directly: in its own process group with its output teed to a log, "L1: suite done
//! ..." lines turned into progress with an ETA, and Ctrl-C stopping it without losing the
//! finished jobs.

use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The exit status of `tests/lab/lab.sh run` when the lab itself lost the run and showed
/// evidence of it (a fault in L1's kernel log, an abort of L1's QEMU): the one failure a
/// caller may retry.
pub const LAB_LOST_STATUS: i32 = 75;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Ctrl-C from now on only sets a flag that [`run_lab`] acts on.
pub fn catch_interrupt() -> std::io::Result<()> {
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe; the
    // sigaction struct is fully initialised (zeroed, then the handler and an empty mask).
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_sigint as extern "C" fn(libc::c_int) as usize;
        libc::sigemptyset(&mut action.sa_mask);
        if libc::sigaction(libc::SIGINT, &action, std::ptr::null_mut()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// One lab run.
pub struct LabRun {
    pub repo: PathBuf,
    pub scenario: PathBuf,
    pub vmm: PathBuf,
    pub timeout_s: u64,
    /// (host file, path in L1)
    pub extras: Vec<(PathBuf, String)>,
    pub collect: Option<PathBuf>,
    /// L1's console goes here as it comes.
    pub log: PathBuf,
    /// Where L1's QEMU writes its pid: `timeout` runs it in a process group of its own,
    /// which stopping the lab's group does not reach.
    pub pidfile: PathBuf,
}

/// Progress of a run of `units` jobs expected to take `estimate` in all.
pub struct Progress {
    units: usize,
    done: usize,
    started: Instant,
    estimate: Duration,
    tty: bool,
}

impl Progress {
    pub fn new(units: usize, estimate: Duration) -> Self {
        Self {
            units,
            done: 0,
            started: Instant::now(),
            estimate,
            tty: std::io::stderr().is_terminal(),
        }
    }

    fn eta(&self) -> Duration {
        let elapsed = self.started.elapsed();
        if self.done == 0 {
            return self.estimate.saturating_sub(elapsed);
        }
        let per_unit = elapsed / self.done as u32;
        per_unit * (self.units.saturating_sub(self.done)) as u32
    }

    /// A line of the lab's console: counts "L1: suite done" lines.
    pub fn line(&mut self, line: &str) {
        let Some(rest) = line.strip_prefix("L1: suite done ") else {
            if ["L1: suite lost", "L1: suite end", "L1: suite data-check"]
                .iter()
                .any(|prefix| line.starts_with(prefix))
            {
                eprintln!("{}{line}", if self.tty { "\r\x1b[K" } else { "" });
            }
            return;
        };
        self.done += 1;
        let bar_len = 30;
        let filled = (self.done * bar_len / self.units.max(1)).min(bar_len);
        let text = format!(
            "[{}{}] {}/{} {} elapsed {} ETA {}",
            "#".repeat(filled),
            "-".repeat(bar_len - filled),
            self.done,
            self.units,
            rest,
            clock(self.started.elapsed()),
            clock(self.eta())
        );
        if self.tty {
            eprint!("\r\x1b[K{text}");
            let _ = std::io::stderr().flush();
        } else {
            eprintln!("{text}");
        }
    }

    pub fn finish(&self) {
        if self.tty {
            eprintln!();
        }
    }
}

fn clock(d: Duration) -> String {
    let s = d.as_secs();
    format!("{}:{:02}", s / 60, s % 60)
}

#[derive(Debug)]
pub enum LabOutcome {
    Finished(ExitStatus),
    Interrupted,
}

/// Runs the lab to its end (or until Ctrl-C, which stops it: TERM to its process group).
pub fn run_lab(run: &LabRun, progress: &mut Progress) -> std::io::Result<LabOutcome> {
    let mut command = Command::new("bash");
    command
        .arg(run.repo.join("tests/lab/lab.sh"))
        .arg("run")
        .arg("--scenario")
        .arg(&run.scenario)
        .arg("--vmm")
        .arg(&run.vmm)
        .args(["--timeout", &run.timeout_s.to_string()]);
    for (src, dest) in &run.extras {
        command
            .arg("--extra")
            .arg(format!("{}:{dest}", src.display()));
    }
    if let Some(collect) = &run.collect {
        command.arg("--collect").arg(collect);
    }
    let _ = std::fs::remove_file(&run.pidfile);
    command.arg("--pidfile").arg(&run.pidfile);
    run_grouped(command, &run.log, Some(&run.pidfile), progress)
}

/// Runs `command` to its end in a process group of its own, its stdout teed line by line
/// to `log` and to `progress`; Ctrl-C (see [`catch_interrupt`]) sends TERM to the group and
/// to the pid in `pidfile`, if any (a child that left the group, like L1's QEMU).
pub fn run_grouped(
    mut command: Command,
    log: &Path,
    pidfile: Option<&Path>,
    progress: &mut Progress,
) -> std::io::Result<LabOutcome> {
    // Its own group: Ctrl-C reaches this process only, which then ends the whole group.
    command
        .process_group(0)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut child = command.spawn()?;
    let stdout = child.stdout.take().ok_or(std::io::ErrorKind::BrokenPipe)?;
    let mut log = std::fs::File::create(log)?;
    let (lines, received) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            match line {
                Ok(line) => {
                    if lines.send(line).is_err() {
                        return;
                    }
                }
                Err(_) => return,
            }
        }
    });
    loop {
        if interrupted() {
            let group = child.id() as libc::pid_t;
            // SAFETY: kill(2) on the process group this process created for the child.
            unsafe { libc::kill(-group, libc::SIGTERM) };
            if let Some(pid) = pidfile
                .and_then(|file| std::fs::read_to_string(file).ok())
                .and_then(|pid| pid.trim().parse::<libc::pid_t>().ok())
                .filter(|pid| *pid > 1)
            {
                // SAFETY: kill(2) on the pid the child wrote for this run.
                unsafe { libc::kill(pid, libc::SIGTERM) };
            }
            let _ = child.wait();
            progress.finish();
            return Ok(LabOutcome::Interrupted);
        }
        match received.recv_timeout(Duration::from_millis(200)) {
            Ok(line) => {
                writeln!(log, "{line}")?;
                progress.line(&line);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let status = child.wait()?;
    progress.finish();
    Ok(LabOutcome::Finished(status))
}

/// Unpacks the tar archive a scenario wrote onto its collect disk into `dir`.
pub fn unpack_collected(image: &Path, dir: &Path) -> std::io::Result<()> {
    let status = Command::new("tar")
        .arg("-xf")
        .arg(image)
        .arg("-C")
        .arg(dir)
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "tar -xf {}: {status} (nothing collected?)",
            image.display()
        )))
    }
}
