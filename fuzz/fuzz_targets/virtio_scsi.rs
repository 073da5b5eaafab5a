//! libFuzzer entry point; the target itself is `ringvisor_fuzz::virtio_scsi`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ringvisor_fuzz::virtio_scsi(data));
