//! ringvisor: a KVM virtual machine monitor whose I/O plane is io_uring.
//!
//! The binary (`src/main.rs`) is a thin CLI over this library; integration tests drive the
//! same library against the host's `/dev/kvm`.

pub mod acpi;
pub mod api;
pub mod boot;
pub mod cli;
pub mod config_file;
pub mod console;
pub mod display;
pub mod iowq;
pub mod kvm;
pub mod layout;
pub mod logger;
pub mod machine;
pub mod memory;
pub mod mmio_bus;
pub mod options;
pub mod pci;
pub mod pio_bus;
pub mod placement;
pub mod seccomp;
