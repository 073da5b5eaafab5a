//! libFuzzer entry point; the target itself is `ringvisor_fuzz::pci_config`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ringvisor_fuzz::pci_config(data));
