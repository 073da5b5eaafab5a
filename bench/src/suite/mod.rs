//! The library behind ringvisor's fio-in-guest benchmark suite: the job matrix, fio's and
//! the VMM's results, the model of a run, its reports and the comparison of two runs.
//! Everything here is pure (files in, files out); booting guests and running fio is the
//! orchestrator's.
//!
//! A run directory's `raw/` holds `meta.json`, `matrix.json`, `<target>/<job>.fio.json`
//! `ringvisor/<job>.hist-{before,after}.json` and `<target>/<job>.costs`; [`SuiteResults::load`] reads it,
//! [`write_reports`] writes `summary.json`, `latency.hlog`, `summary.md` and `report.html`,
//! and [`compare`] sets two `summary.json`s side by side.

pub mod compare;
pub mod costs;
pub mod device;
mod expand;
pub mod fio;
pub mod hlog;
pub mod html;
pub mod matrix;
pub mod model;
pub mod rawdir;
pub mod report;
pub mod svg;
#[cfg(test)]
pub(crate) mod testutil;

pub use compare::{compare, CompareRow, Comparison};
pub use device::{device_delta, parse_histograms, DeviceError, DeviceLatency, Snapshot};
pub use fio::{parse_fio_json, Direction, FioError, FioResult};
pub use matrix::{Device, IoEngine, JobSpec, Matrix, MatrixError, Rw};
pub use model::{JobResult, Meta, SuiteError, SuiteResults, Target, TargetResult};
pub use rawdir::{fio_file, hist_files, MATRIX_FILE, META_FILE};
pub use report::{write_reports, ReportError};
