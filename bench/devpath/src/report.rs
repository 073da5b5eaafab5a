//! The benchmark's Markdown tables and JSON document.

use serde_json::{json, Value};

use super::fio::FioResult;
use super::load::LoadResult;
use super::Job;

/// One job at one reactor count, both sides.
#[derive(Debug, Clone)]
pub struct Row {
    /// "blk", or "scsi×N" for a controller with N logical units.
    pub device: String,
    pub job: Job,
    pub reactors: usize,
    pub ringvisor: LoadResult,
    pub fio: Option<FioResult>,
}

fn us(ns: f64) -> String {
    format!("{:.1}", ns / 1000.0)
}

fn quantile_ns(histogram: &hdrhistogram::Histogram<u64>, q: f64) -> f64 {
    histogram.value_at_quantile(q) as f64
}

fn na() -> String {
    "n/a".to_string()
}

impl Row {
    fn rv_ns(&self, q: f64) -> f64 {
        quantile_ns(&self.ringvisor.latency_ns, q)
    }

    /// The row as "devpath-sample SIDE JOB/METRIC VALUE" lines, ringvisor's side named
    /// `rv-<label>` and fio's `fio-<label>`, for a comparison of rounds (`lab-compare`
    /// reads them once a round number is put in front).
    pub fn sample_lines(&self, label: &str) -> Vec<String> {
        let rv = &self.ringvisor;
        let job = self.job.name;
        let mut lines = vec![
            format!("devpath-sample rv-{label} {job}/iops {:.0}", rv.iops()),
            format!(
                "devpath-sample rv-{label} {job}/p50_us {:.1}",
                self.rv_ns(0.5) / 1e3
            ),
            format!(
                "devpath-sample rv-{label} {job}/p99_us {:.1}",
                self.rv_ns(0.99) / 1e3
            ),
            format!(
                "devpath-sample rv-{label} {job}/cpu_us_per_io {:.2}",
                (rv.reactors.cpu_ns_per_request() + rv.reactors.iowq_cpu_ns_per_request()) / 1e3
            ),
        ];
        if let Some(fio) = &self.fio {
            lines.push(format!(
                "devpath-sample fio-{label} {job}/iops {:.0}",
                fio.iops
            ));
            lines.push(format!(
                "devpath-sample fio-{label} {job}/p50_us {:.1}",
                fio.clat_p50_ns / 1e3
            ));
            lines.push(format!(
                "devpath-sample fio-{label} {job}/p99_us {:.1}",
                fio.clat_p99_ns / 1e3
            ));
            if let Some(cpu) = fio.cpu_ns_per_io {
                lines.push(format!(
                    "devpath-sample fio-{label} {job}/cpu_us_per_io {:.2}",
                    cpu / 1e3
                ));
            }
        }
        lines
    }

    /// The comparison table's row.
    pub fn markdown(&self) -> String {
        let rv = &self.ringvisor;
        let fio = self.fio.as_ref();
        let cells = [
            self.device.clone(),
            self.job.name.to_string(),
            self.reactors.to_string(),
            format!("{:.0}", rv.iops()),
            fio.map_or_else(na, |f| format!("{:.0}", f.iops)),
            fio.map_or_else(na, |f| format!("{:.2}", rv.iops() / f.iops.max(1.0))),
            us(self.rv_ns(0.5)),
            us(self.rv_ns(0.99)),
            us(self.rv_ns(0.999)),
            fio.map_or_else(na, |f| us(f.clat_p50_ns)),
            fio.map_or_else(na, |f| us(f.clat_p99_ns)),
            fio.map_or_else(na, |f| us(f.clat_p999_ns)),
            fio.map_or_else(na, |f| us(self.rv_ns(0.5) - f.clat_p50_ns)),
            fio.map_or_else(na, |f| us(self.rv_ns(0.99) - f.clat_p99_ns)),
            format!("{:.2}", rv.reactors.sqes_per_enter()),
        ];
        format!("| {} |", cells.join(" | "))
    }

    /// The reactor-side table's row: where the time goes inside ringvisor.
    pub fn reactor_markdown(&self) -> String {
        let rv = &self.ringvisor;
        let window = &rv.reactors;
        let q = |h: &hdrhistogram::Histogram<u64>| {
            format!("{} / {}", us(quantile_ns(h, 0.5)), us(quantile_ns(h, 0.99)))
        };
        let cells = [
            self.device.clone(),
            self.job.name.to_string(),
            self.reactors.to_string(),
            format!("{:.1}", rv.bytes_per_second() / f64::from(1u32 << 20)),
            self.fio.as_ref().map_or_else(na, |f| {
                format!("{:.1}", f.bytes_per_second / f64::from(1u32 << 20))
            }),
            window.requests.to_string(),
            window.irqs_sent.to_string(),
            window.irqs_suppressed.to_string(),
            q(&window.kick_to_submit_ns),
            q(&window.submit_to_complete_ns),
            format!(
                "{:.2} + {:.2}",
                window.cpu_ns_per_request() / 1000.0,
                window.iowq_cpu_ns_per_request() / 1000.0
            ),
            rv.errors.to_string(),
        ];
        format!("| {} |", cells.join(" | "))
    }

    pub fn json(&self) -> Value {
        let rv = &self.ringvisor;
        let window = &rv.reactors;
        let pcts = |h: &hdrhistogram::Histogram<u64>| {
            json!({
                "p50": quantile_ns(h, 0.5),
                "p99": quantile_ns(h, 0.99),
                "p99.9": quantile_ns(h, 0.999),
                "mean": h.mean(),
                "count": h.len(),
            })
        };
        json!({
            "device": self.device,
            "job": self.job.name,
            "rw": self.job.fio_rw(),
            "block_size": self.job.block_size,
            "iodepth_per_queue": self.job.depth,
            "reactors": self.reactors,
            "ringvisor": {
                "ops": rv.ops,
                "errors": rv.errors,
                "seconds": rv.seconds,
                "iops": rv.iops(),
                "bytes_per_second": rv.bytes_per_second(),
                "latency_ns": pcts(&rv.latency_ns),
                "reactors": {
                    "requests": window.requests,
                    "submitting_enters": window.submitting_enters,
                    "sqes": window.sqes,
                    "sqes_per_enter": window.sqes_per_enter(),
                    "irqs_sent": window.irqs_sent,
                    "irqs_suppressed": window.irqs_suppressed,
                    "kick_to_submit_ns": pcts(&window.kick_to_submit_ns),
                    "submit_to_complete_ns": pcts(&window.submit_to_complete_ns),
                    "cpu_ns": window.cpu_ns,
                    "ops": window.ops,
                    "fixed_buffer_ops": window.fixed_buffer_ops,
                    "cpu_ns_per_request": window.cpu_ns_per_request(),
                    "iowq_cpu_ns": window.iowq_cpu_ns.values().sum::<u64>(),
                    "iowq_cpu_ns_per_request": window.iowq_cpu_ns_per_request(),
                },
            },
            "fio": self.fio.as_ref().map(|f| json!({
                "iops": f.iops,
                "bytes_per_second": f.bytes_per_second,
                "clat_ns": {
                    "p50": f.clat_p50_ns,
                    "p99": f.clat_p99_ns,
                    "p99.9": f.clat_p999_ns,
                },
            })),
        })
    }
}

/// Both tables, with their headers.
pub fn markdown(rows: &[Row]) -> String {
    let mut out = String::new();
    out.push_str(
        "| device | job | reactors | ringvisor IOPS | fio IOPS | ratio | rv p50 µs | rv p99 µs \
         | rv p99.9 µs | fio p50 µs | fio p99 µs | fio p99.9 µs | added p50 µs \
         | added p99 µs | SQEs/enter |\n",
    );
    out.push_str("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for row in rows {
        out.push_str(&row.markdown());
        out.push('\n');
    }
    out.push('\n');
    out.push_str(
        "| device | job | reactors | rv MiB/s | fio MiB/s | requests | irqs sent | irqs suppressed \
         | kick→submit p50/p99 µs | submit→complete p50/p99 µs \
         | CPU µs/request: reactor + its io-wq \
         | errors |\n",
    );
    out.push_str("|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for row in rows {
        out.push_str(&row.reactor_markdown());
        out.push('\n');
    }
    out
}
