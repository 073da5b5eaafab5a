//! libFuzzer entry point; the target itself is `ringvisor_fuzz::virtio_blk`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ringvisor_fuzz::virtio_blk(data));
