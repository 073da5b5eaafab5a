//! Two runs side by side (usually two `summary.json`s): IOPS and p99 change per job and
//! target, and which of them moved the wrong way by more than a threshold.

use std::collections::{HashMap, HashSet};

use super::model::{JobResult, SuiteResults, Target};
use super::report::{fmt_iops, NA};

/// One (job, target) present in both runs.
#[derive(Debug, Clone, PartialEq)]
pub struct CompareRow {
    pub job: String,
    pub target: Target,
    pub iops_a: f64,
    pub iops_b: f64,
    /// (b - a) / a in percent; none where a is zero.
    pub iops_change_pct: Option<f64>,
    pub p99_a_ns: Option<u64>,
    pub p99_b_ns: Option<u64>,
    pub p99_change_pct: Option<f64>,
    /// IOPS fell, or p99 grew, by more than the threshold.
    pub regression: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    pub threshold_pct: f64,
    /// In `a`'s job order, then [`Target::ALL`] order.
    pub rows: Vec<CompareRow>,
    /// Jobs in one run only.
    pub only_in_a: Vec<String>,
    pub only_in_b: Vec<String>,
    /// (job, target) with a result in `a` and none in `b`: a run that got worse by not
    /// running at all.
    pub lost: Vec<(String, Target)>,
}

fn change_pct(a: f64, b: f64) -> Option<f64> {
    (a != 0.0 && a.is_finite() && b.is_finite()).then(|| (b - a) / a * 100.0)
}

/// Matches `b`'s jobs to `a`'s by id and target.
pub fn compare(a: &SuiteResults, b: &SuiteResults, threshold_pct: f64) -> Comparison {
    let mut rows = Vec::new();
    let mut only_in_a = Vec::new();
    let mut lost = Vec::new();
    let b_jobs: HashMap<String, &JobResult> = b.jobs.iter().map(|j| (j.id(), j)).collect();
    let a_ids: HashSet<String> = a.jobs.iter().map(JobResult::id).collect();
    for ja in &a.jobs {
        let id = ja.id();
        let Some(jb) = b_jobs.get(&id) else {
            only_in_a.push(id);
            continue;
        };
        for target in Target::ALL {
            let (ra, rb) = match (ja.get(target), jb.get(target)) {
                (Some(ra), Some(rb)) => (ra, rb),
                (Some(_), None) => {
                    lost.push((id.clone(), target));
                    continue;
                }
                _ => continue,
            };
            let (p99_a_ns, p99_b_ns) = (ra.clat_percentile_ns(99.0), rb.clat_percentile_ns(99.0));
            let iops_change_pct = change_pct(ra.iops, rb.iops);
            let p99_change_pct = match (p99_a_ns, p99_b_ns) {
                (Some(x), Some(y)) => change_pct(x as f64, y as f64),
                _ => None,
            };
            let regression = iops_change_pct.is_some_and(|c| c < -threshold_pct)
                || p99_change_pct.is_some_and(|c| c > threshold_pct);
            rows.push(CompareRow {
                job: id.clone(),
                target,
                iops_a: ra.iops,
                iops_b: rb.iops,
                iops_change_pct,
                p99_a_ns,
                p99_b_ns,
                p99_change_pct,
                regression,
            });
        }
    }
    let only_in_b = b
        .jobs
        .iter()
        .map(|j| j.id())
        .filter(|id| !a_ids.contains(id))
        .collect();
    Comparison {
        threshold_pct,
        rows,
        only_in_a,
        only_in_b,
        lost,
    }
}

fn pct(change: Option<f64>) -> String {
    change.map_or_else(|| NA.to_string(), |c| format!("{c:+.1}%"))
}

fn us(ns: Option<u64>) -> String {
    ns.map_or_else(|| NA.to_string(), |ns| format!("{:.1}", ns as f64 / 1000.0))
}

impl Comparison {
    pub fn regressions(&self) -> Vec<&CompareRow> {
        self.rows.iter().filter(|r| r.regression).collect()
    }

    /// A plain-text table, columns aligned, regressions marked.
    pub fn render(&self) -> String {
        let header = [
            "job",
            "target",
            "IOPS A",
            "IOPS B",
            "IOPS Δ",
            "p99 A µs",
            "p99 B µs",
            "p99 Δ",
            "",
        ];
        let mut lines: Vec<Vec<String>> = vec![header.iter().map(|s| s.to_string()).collect()];
        for r in &self.rows {
            lines.push(vec![
                r.job.clone(),
                r.target.as_str().to_string(),
                fmt_iops(r.iops_a),
                fmt_iops(r.iops_b),
                pct(r.iops_change_pct),
                us(r.p99_a_ns),
                us(r.p99_b_ns),
                pct(r.p99_change_pct),
                if r.regression { "REGRESSION" } else { "" }.to_string(),
            ]);
        }
        let mut widths = [0usize; 9];
        for line in &lines {
            for (w, cell) in widths.iter_mut().zip(line) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = format!(
            "fio suite comparison: A -> B, a regression is IOPS down or p99 up by more than {}%\n\n",
            self.threshold_pct
        );
        for line in &lines {
            let cells: Vec<String> = line
                .iter()
                .zip(widths)
                .enumerate()
                .map(|(i, (cell, w))| {
                    let pad = " ".repeat(w - cell.chars().count());
                    // Names left, numbers right.
                    if i < 2 || i == 8 {
                        format!("{cell}{pad}")
                    } else {
                        format!("{pad}{cell}")
                    }
                })
                .collect();
            out.push_str(cells.join("  ").trim_end());
            out.push('\n');
        }
        for id in &self.only_in_a {
            out.push_str(&format!("only in A: {id}\n"));
        }
        for id in &self.only_in_b {
            out.push_str(&format!("only in B: {id}\n"));
        }
        for (id, target) in &self.lost {
            out.push_str(&format!("no {} result in B: {id}\n", target.as_str()));
        }
        let n = self.regressions().len();
        out.push_str(&format!(
            "\n{n} regression{}\n",
            if n == 1 { "" } else { "s" }
        ));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::super::matrix::Matrix;
    use super::super::model::{Meta, TargetResult};
    use super::*;

    fn target(iops: f64, p99_ns: u64) -> Result<TargetResult, String> {
        Ok(TargetResult {
            iops,
            bw_kib: iops * 4.0,
            ios: 0,
            clat_ns: vec![(50.0, p99_ns / 2), (99.0, p99_ns)],
            clat_mean_ns: None,
            read: None,
            write: None,
            fio: None,
            costs: None,
        })
    }

    /// The quick preset's first `n` jobs with (ringvisor, bare) IOPS and p99 (ns).
    /// (IOPS, p99 ns)
    type Point = (f64, u64);

    fn run(numbers: &[(Point, Option<Point>)]) -> SuiteResults {
        let specs = Matrix::preset("quick", 2).unwrap().jobs;
        let jobs = numbers
            .iter()
            .zip(specs)
            .map(|(&(rv, bare), spec)| JobResult {
                spec,
                targets: [
                    target(rv.0, rv.1),
                    bare.map_or_else(|| Err("no file".to_string()), |b| target(b.0, b.1)),
                    Err("no file".into()),
                ],
                device: Err("no file".into()),
            })
            .collect();
        SuiteResults {
            meta: Meta::default(),
            jobs,
        }
    }

    #[test]
    fn regressions_past_the_threshold_are_marked() {
        let a = run(&[
            ((10000.0, 100_000), Some((20000.0, 50_000))),
            ((5000.0, 200_000), Some((6000.0, 90_000))),
        ]);
        let b = run(&[
            ((9000.0, 104_000), Some((20500.0, 50_000))),
            ((5100.0, 230_000), None),
            ((1.0, 1), None),
        ]);
        let c = compare(&a, &b, 5.0);
        assert_eq!(c.rows.len(), 3);
        let r0 = &c.rows[0];
        assert_eq!(
            (r0.job.as_str(), r0.target),
            ("randread-4k-qd1-j1-io_uring-blk", Target::Ringvisor)
        );
        assert!((r0.iops_change_pct.unwrap() + 10.0).abs() < 1e-9);
        assert!((r0.p99_change_pct.unwrap() - 4.0).abs() < 1e-9);
        assert!(r0.regression);
        assert!(!c.rows[1].regression);
        assert!((c.rows[2].p99_change_pct.unwrap() - 15.0).abs() < 1e-9);
        assert!(c.rows[2].regression);
        assert_eq!(c.regressions().len(), 2);
        assert_eq!(c.only_in_b, ["randread-4k-qd32-j1-io_uring-blk"]);
        assert!(c.only_in_a.is_empty());
        assert_eq!(
            c.lost,
            [("randread-4k-qd1-j1-io_uring-scsi".to_string(), Target::Bare)]
        );
        // A looser threshold lets the 10% drop through but not the 15% growth.
        assert_eq!(compare(&a, &b, 12.0).regressions().len(), 1);
        assert_eq!(
            c.render(),
            "fio suite comparison: A -> B, a regression is IOPS down or p99 up by more than 5%\n\n\
             job                               target     IOPS A  IOPS B  IOPS Δ  p99 A µs  p99 B µs   p99 Δ\n\
             randread-4k-qd1-j1-io_uring-blk   ringvisor   10000    9000  -10.0%     100.0     104.0   +4.0%  REGRESSION\n\
             randread-4k-qd1-j1-io_uring-blk   bare        20000   20500   +2.5%      50.0      50.0   +0.0%\n\
             randread-4k-qd1-j1-io_uring-scsi  ringvisor    5000    5100   +2.0%     200.0     230.0  +15.0%  REGRESSION\n\
             only in B: randread-4k-qd32-j1-io_uring-blk\n\
             no bare result in B: randread-4k-qd1-j1-io_uring-scsi\n\
             \n2 regressions\n"
        );
    }

    #[test]
    fn zero_and_empty_runs_do_not_divide() {
        let a = run(&[((0.0, 0), None)]);
        let b = run(&[((100.0, 5), None)]);
        let c = compare(&a, &b, 5.0);
        assert_eq!(c.rows[0].iops_change_pct, None);
        assert_eq!(c.rows[0].p99_change_pct, None);
        assert!(!c.rows[0].regression);
        assert!(c.render().contains("n/a"));
        let empty = compare(&run(&[]), &b, 5.0);
        assert!(empty.rows.is_empty());
        assert!(empty.render().ends_with("\n0 regressions\n"));
    }
}
