//! Pausing and resuming the vCPUs (the control API's pause/resume).
//!
//! A pause sets a flag and signals every vCPU thread out of KVM_RUN until all of them
//! have parked at their next checkpoint. Each parking vCPU calls KVM_KVMCLOCK_CTRL, so
//! the guest's watchdogs do not count the pause as a soft lockup; the VM's kvmclock is
//! read once all are parked and written back on resume, so the guest's monotonic time
//! does not jump by the pause.
//!
//! Two parties pause, each with its own hold: the user (the control API) and the machine
//! itself (a reboot in place, the orderly stop). The vCPUs run only when neither holds, so
//! a user's `resume` cannot let them loose on RAM a reboot is still clearing, and a reboot
//! or an orderly stop works on a machine the user has paused and leaves it paused.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use kvm_bindings::kvm_clock_data;
use kvm_ioctls::{VcpuFd, VmFd};
use log::debug;

/// How often a pause re-signals vCPUs that have not parked yet (a signal that lands
/// just before KVM_RUN is entered is lost).
const RESIGNAL: Duration = Duration::from_millis(1);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PauseError {
    #[error("the VM is already paused")]
    AlreadyPaused,
    #[error("the VM is not paused")]
    NotPaused,
    #[error("{parked} of {vcpus} vCPUs stopped within {waited:?}")]
    Timeout {
        parked: usize,
        vcpus: usize,
        waited: Duration,
    },
    #[error("cannot {what} the kvmclock: {errno}")]
    Clock { what: &'static str, errno: i32 },
    #[error("cannot install the vCPU kick signal: {0}")]
    Signal(i32),
}

/// Who holds a pause.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PauseHolder {
    /// The user, through the control API.
    User,
    /// The machine itself: a reboot in place or the orderly stop.
    Machine,
}

impl PauseHolder {
    fn bit(self) -> u8 {
        match self {
            Self::User => 1,
            Self::Machine => 2,
        }
    }
}

#[derive(Default)]
struct State {
    /// The holders' bits ([`PauseHolder::bit`]); the vCPUs may run only when it is 0.
    holds: u8,
    parked: usize,
    threads: Vec<libc::pthread_t>,
    held_clock: Option<kvm_clock_data>,
    /// How many times the machine rebooted in place: a vCPU that sees it move while
    /// parked resets itself before it runs again.
    generation: u64,
}

/// Shared by the vCPU threads (checkpoints) and the control side (pause, resume).
pub struct PauseControl {
    vm: Arc<VmFd>,
    vcpus: usize,
    want_paused: AtomicBool,
    state: Mutex<State>,
    changed: Condvar,
}

extern "C" fn on_kick(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // Nothing to do: the signal's only job is to make KVM_RUN return EINTR.
}

fn kick_signal() -> libc::c_int {
    vmm_sys_util::signal::SIGRTMIN()
}

impl PauseControl {
    /// For `vcpus` vCPU threads of `vm`; installs the kick signal's handler.
    pub fn new(vm: Arc<VmFd>, vcpus: usize) -> Result<Arc<Self>, PauseError> {
        vmm_sys_util::signal::register_signal_handler(kick_signal(), on_kick)
            .map_err(|e| PauseError::Signal(e.errno()))?;
        Ok(Arc::new(Self {
            vm,
            vcpus,
            want_paused: AtomicBool::new(false),
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
        }))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Called once by each vCPU thread before it first runs the vCPU.
    pub fn register_current_thread(&self) {
        // SAFETY: pthread_self has no preconditions.
        let me = unsafe { libc::pthread_self() };
        self.lock().threads.push(me);
    }

    /// Called by a vCPU thread whose vCPU stopped for good (the guest powered off, reset
    /// or failed): from now on it counts as parked and is no longer kicked.
    pub fn retire_current_thread(&self) {
        // SAFETY: pthread_self has no preconditions.
        let me = unsafe { libc::pthread_self() };
        let mut state = self.lock();
        // SAFETY: pthread_equal compares two thread handles of this process.
        state
            .threads
            .retain(|&t| unsafe { libc::pthread_equal(t, me) } == 0);
        state.parked += 1;
        self.changed.notify_all();
    }

    /// How many times the machine has rebooted in place.
    pub fn generation(&self) -> u64 {
        self.lock().generation
    }

    /// Called by a vCPU thread whose guest asked for a reset in `generation`: parks (as
    /// paused) until the reboot is done, i.e. until [`PauseControl::finish_reboot`].
    pub fn wait_for_reboot(&self, generation: u64) {
        let mut state = self.lock();
        state.parked += 1;
        self.changed.notify_all();
        while state.generation == generation {
            state = self
                .changed
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        state.parked -= 1;
    }

    /// Ends a reboot done while every vCPU was paused: the vCPUs reset themselves to their
    /// power-on state and run again.
    /// The machine's hold ends; a user's hold, if any, keeps the vCPUs parked, and they
    /// reset themselves when the user resumes them.
    pub fn finish_reboot(&self) -> Result<(), PauseError> {
        self.lock().generation += 1;
        self.changed.notify_all();
        self.resume(PauseHolder::Machine)
    }

    /// Called by a vCPU thread before each KVM_RUN: parks while a pause is wanted. True
    /// when the machine rebooted meanwhile (the vCPU must be reset before it runs).
    #[must_use]
    pub fn checkpoint(&self, vcpu: &VcpuFd) -> bool {
        if !self.want_paused.load(Ordering::Acquire) {
            return false;
        }
        // EINVAL: the guest registered no kvmclock; nothing to tell it then.
        if let Err(e) = vcpu.kvmclock_ctrl() {
            debug!("KVM_KVMCLOCK_CTRL: {e}");
        }
        let mut state = self.lock();
        let generation = state.generation;
        state.parked += 1;
        self.changed.notify_all();
        while self.want_paused.load(Ordering::Acquire) {
            state = self
                .changed
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        state.parked -= 1;
        state.generation != generation
    }

    /// Whether `holder` holds a pause.
    pub fn is_paused_by(&self, holder: PauseHolder) -> bool {
        self.lock().holds & holder.bit() != 0
    }

    /// Takes `holder`'s hold and stops every vCPU (waiting up to `timeout`); the first hold
    /// holds the kvmclock.
    pub fn pause(&self, holder: PauseHolder, timeout: Duration) -> Result<(), PauseError> {
        let start = Instant::now();
        let mut state = self.lock();
        if state.holds & holder.bit() != 0 {
            return Err(PauseError::AlreadyPaused);
        }
        state.holds |= holder.bit();
        self.want_paused.store(true, Ordering::Release);
        while state.parked < self.vcpus {
            if start.elapsed() > timeout {
                let parked = state.parked;
                self.release(state, holder);
                return Err(PauseError::Timeout {
                    parked,
                    vcpus: self.vcpus,
                    waited: start.elapsed(),
                });
            }
            for &thread in &state.threads {
                // SAFETY: `thread` is a vCPU thread of this process that registered
                // itself; vCPU threads live until the process exits, and the signal's
                // handler (installed in `new`) does nothing.
                unsafe { libc::pthread_kill(thread, kick_signal()) };
            }
            state = self
                .changed
                .wait_timeout(state, RESIGNAL)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        if state.held_clock.is_some() {
            return Ok(());
        }
        match self.vm.get_clock() {
            Ok(clock) => {
                state.held_clock = Some(clock);
                Ok(())
            }
            Err(e) => {
                self.release(state, holder);
                Err(PauseError::Clock {
                    what: "read",
                    errno: e.errno(),
                })
            }
        }
    }

    /// Ends `holder`'s hold; once no hold is left, puts the held kvmclock back and lets the
    /// vCPUs run.
    pub fn resume(&self, holder: PauseHolder) -> Result<(), PauseError> {
        let mut state = self.lock();
        if state.holds & holder.bit() == 0 {
            return Err(PauseError::NotPaused);
        }
        if state.holds == holder.bit() {
            if let Some(mut clock) = state.held_clock.take() {
                // Only the clock value is written back (flags such as KVM_CLOCK_TSC_STABLE
                // are read-only).
                clock.flags = 0;
                if let Err(e) = self.vm.set_clock(&clock) {
                    debug!("KVM_SET_CLOCK: {e}");
                }
            }
        }
        self.release(state, holder);
        Ok(())
    }

    /// Drops `holder`'s hold; the vCPUs go on once no hold is left.
    fn release(&self, mut state: MutexGuard<'_, State>, holder: PauseHolder) {
        state.holds &= !holder.bit();
        if state.holds == 0 {
            state.held_clock = None;
            self.want_paused.store(false, Ordering::Release);
            self.changed.notify_all();
        }
    }
}
