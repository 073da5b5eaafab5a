//! ringvisor's fuzz targets: one plain function per guest-facing parser, each running the
//! real device code over a fuzzer-controlled guest memory image (or request bytes). The
//! libFuzzer entry points in `fuzz_targets/` call them, and so do the smoke tests in
//! `tests/smoke.rs`, which `cargo test --workspace` runs on stable without cargo-fuzz.

mod api;
pub mod harness;
mod pci;
mod qxl;
pub mod seeds;
mod virtio;

pub use api::api_request;
pub use pci::pci_config;
pub use qxl::qxl;
pub use virtio::{
    virtio_balloon, virtio_blk, virtio_chain, virtio_console, virtio_net, virtio_scsi,
};

/// A fuzz target: never panics on any input.
pub type Target = fn(&[u8]);

/// Every target by name (the names of `fuzz_targets/*.rs` and of the seed folders).
pub const TARGETS: &[(&str, Target)] = &[
    ("virtio_chain", virtio_chain),
    ("virtio_blk", virtio_blk),
    ("virtio_scsi", virtio_scsi),
    ("virtio_net", virtio_net),
    ("virtio_console", virtio_console),
    ("virtio_balloon", virtio_balloon),
    ("qxl", qxl),
    ("pci_config", pci_config),
    ("api_request", api_request),
];
