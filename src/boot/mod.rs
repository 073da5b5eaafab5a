//! Everything the guest finds in memory before its first instruction: the kernel, the
//! initramfs, the command line, and the zero page with the e820 map and the RSDP's
//! address (the ACPI tables themselves are `crate::acpi`'s).

mod linux;

pub use linux::{load_linux, BootError, LoadedKernel};
