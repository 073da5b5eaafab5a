//! libFuzzer entry point; the target itself is `ringvisor_fuzz::virtio_console`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ringvisor_fuzz::virtio_console(data));
