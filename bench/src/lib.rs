//! ringvisor's benchmarks. Each binary in `src/bin` prints a Markdown table and writes its
//! results under `target/bench/`; numbers are reported, never asserted.

pub mod devpath;
pub mod lab_run;
pub mod stats;
pub mod suite;
