//! ringvisor's benchmarks: the fio-in-guest suite behind `ringvisor bench` ([`cli`]), the
//! statistics of interleaved comparisons ([`stats`], the `lab-compare` binary). Results
//! are written under `target/bench/`; numbers are reported, never asserted.

pub mod cli;
pub mod direct;
pub mod lab_run;
pub mod stats;
pub mod suite;
