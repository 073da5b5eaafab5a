//! Interrupt lines backed by eventfds.
//!
//! An [`IrqEvent`] is registered with KVM as an irqfd by the VMM; a device raises its
//! interrupt by writing the eventfd, so signalling never needs the vCPU thread or a VM exit.

use std::os::fd::{AsRawFd, RawFd};

use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

/// Errors raised while creating or signalling an interrupt line.
#[derive(Debug, thiserror::Error)]
pub enum IrqEventError {
    #[error("cannot create the interrupt eventfd: {0}")]
    Create(#[source] std::io::Error),
    #[error("cannot duplicate the interrupt eventfd: {0}")]
    Clone(#[source] std::io::Error),
    #[error("cannot signal the interrupt eventfd: {0}")]
    Signal(#[source] std::io::Error),
}

/// One edge-triggered interrupt line: every [`IrqEvent::signal`] injects one interrupt once
/// the eventfd is bound to a GSI through KVM_IRQFD.
#[derive(Debug)]
pub struct IrqEvent {
    eventfd: EventFd,
}

impl IrqEvent {
    /// Creates an unbound, non-blocking interrupt line.
    pub fn new() -> Result<Self, IrqEventError> {
        let eventfd = EventFd::new(EFD_NONBLOCK).map_err(IrqEventError::Create)?;
        Ok(Self { eventfd })
    }

    /// Raises the interrupt.
    pub fn signal(&self) -> Result<(), IrqEventError> {
        self.eventfd.write(1).map_err(IrqEventError::Signal)
    }

    /// Returns a second handle on the same line (both signal the same interrupt).
    pub fn try_clone(&self) -> Result<Self, IrqEventError> {
        let eventfd = self.eventfd.try_clone().map_err(IrqEventError::Clone)?;
        Ok(Self { eventfd })
    }

    /// The eventfd itself, for KVM_IRQFD registration.
    pub fn eventfd(&self) -> &EventFd {
        &self.eventfd
    }

    /// Reads and clears the pending count: how many signals were raised since the last call.
    /// Used by tests and by consumers that poll the line instead of binding it to KVM.
    pub fn take_pending(&self) -> u64 {
        self.eventfd.read().unwrap_or(0)
    }
}

impl AsRawFd for IrqEvent {
    fn as_raw_fd(&self) -> RawFd {
        self.eventfd.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_accumulate_until_taken() {
        let line = IrqEvent::new().unwrap();
        let clone = line.try_clone().unwrap();
        assert_eq!(line.take_pending(), 0);
        line.signal().unwrap();
        clone.signal().unwrap();
        assert_eq!(line.take_pending(), 2);
        assert_eq!(clone.take_pending(), 0);
    }
}
