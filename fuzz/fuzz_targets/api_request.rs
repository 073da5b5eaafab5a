//! libFuzzer entry point; the target itself is `ringvisor_fuzz::api_request`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ringvisor_fuzz::api_request(data));
