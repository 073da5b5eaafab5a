//! QXL paravirtual graphics (spice-protocol's `qxl_dev.h`), as Linux's `qxl` DRM driver
//! drives it: a ROM describing the device, a RAM BAR holding the command, cursor and
//! release rings, a VRAM BAR for surfaces, and I/O ports. Commands are drawn into
//! host-side surfaces on the low-priority reactor; outputs (VNC, screenshots) read the
//! primary surface through a [`QxlHandle`].
//!
//! The VMM maps the memory BARs into the guest, forwards port writes
//! ([`QxlDevice::io_write`]) and ROM reads, and runs the [`QxlWorker`].

mod bar;
mod device;
pub mod draw;
pub mod layout;
mod memslots;
mod rings;
mod rom;
mod stats;
#[cfg(test)]
mod tests;
mod worker;

pub use bar::{BarMemory, BarMemoryError};
pub use device::{
    CursorState, QxlConfig, QxlDevice, QxlError, QxlHandle, Screen, MAX_BAR_SIZE, MIN_BAR_SIZE,
};
pub use memslots::{qxl_address, BarPlacement, SlotError};
pub use stats::QxlStats;
pub use worker::QxlWorker;
