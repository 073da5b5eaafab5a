//! Everything the guest finds in memory before its first instruction: the kernel, the
//! initramfs, the command line, the zero page with the e820 map, and the MP tables.

mod linux;
mod mptable;

pub use linux::{load_linux, BootError, LoadedKernel};
pub use mptable::{write_mptable, MpTableError, PciInterrupt, MAX_MPTABLE_CPUS};
