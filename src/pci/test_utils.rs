//! A stand-in for the hypervisor that records what device models ask of it.

use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::AsRawFd;
use std::sync::Mutex;

use vmm_sys_util::eventfd::EventFd;

use super::{InterruptController, IoEventRegistry, MsiMessage, VmEventError};

#[derive(Default)]
pub struct RecordedVm {
    pub next_gsi: u32,
    pub routes: BTreeMap<u32, MsiMessage>,
    /// (raw eventfd, gsi) pairs currently bound.
    pub irqfds: BTreeSet<(i32, u32)>,
    /// (raw eventfd, address) pairs currently registered.
    pub ioevents: BTreeSet<(i32, u64)>,
    pub route_updates: usize,
}

/// Records routes, irqfds and ioeventfds; refuses double binds like KVM does.
#[derive(Default)]
pub struct RecordingVm {
    pub state: Mutex<RecordedVm>,
}

fn busy() -> VmEventError {
    VmEventError::Hypervisor {
        what: "bind twice",
        source: std::io::Error::from_raw_os_error(libc::EBUSY),
    }
}

impl RecordingVm {
    pub fn new(first_gsi: u32) -> Self {
        let vm = Self::default();
        vm.state.lock().unwrap().next_gsi = first_gsi;
        vm
    }

    pub fn route(&self, gsi: u32) -> Option<MsiMessage> {
        self.state.lock().unwrap().routes.get(&gsi).copied()
    }

    pub fn bound(&self, event: &EventFd, gsi: u32) -> bool {
        let key = (event.as_raw_fd(), gsi);
        self.state.lock().unwrap().irqfds.contains(&key)
    }

    pub fn ioevent_addresses(&self) -> Vec<u64> {
        let state = self.state.lock().unwrap();
        state.ioevents.iter().map(|(_, addr)| *addr).collect()
    }
}

impl InterruptController for RecordingVm {
    fn allocate_msi_gsi(&self) -> Result<u32, VmEventError> {
        let mut state = self.state.lock().unwrap();
        state.next_gsi += 1;
        Ok(state.next_gsi - 1)
    }

    fn set_msi_route(&self, gsi: u32, message: Option<MsiMessage>) -> Result<(), VmEventError> {
        let mut state = self.state.lock().unwrap();
        state.route_updates += 1;
        match message {
            Some(message) => state.routes.insert(gsi, message),
            None => state.routes.remove(&gsi),
        };
        Ok(())
    }

    fn bind_irqfd(&self, event: &EventFd, gsi: u32) -> Result<(), VmEventError> {
        let inserted = (self.state.lock().unwrap().irqfds).insert((event.as_raw_fd(), gsi));
        inserted.then_some(()).ok_or_else(busy)
    }

    fn unbind_irqfd(&self, event: &EventFd, gsi: u32) -> Result<(), VmEventError> {
        let removed = (self.state.lock().unwrap().irqfds).remove(&(event.as_raw_fd(), gsi));
        removed.then_some(()).ok_or_else(busy)
    }
}

impl IoEventRegistry for RecordingVm {
    fn register_ioevent(&self, event: &EventFd, addr: u64) -> Result<(), VmEventError> {
        let inserted = (self.state.lock().unwrap().ioevents).insert((event.as_raw_fd(), addr));
        inserted.then_some(()).ok_or_else(busy)
    }

    fn unregister_ioevent(&self, event: &EventFd, addr: u64) -> Result<(), VmEventError> {
        let removed = (self.state.lock().unwrap().ioevents).remove(&(event.as_raw_fd(), addr));
        removed.then_some(()).ok_or_else(busy)
    }
}
