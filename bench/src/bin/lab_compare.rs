//! Turns interleaved measurements into a verdict: reads "PAIR VMM METRIC VALUE" lines
//! (one per measurement; PAIR numbers the rounds A B A B ... of one machine) and prints,
//! for each metric and each reference VMM, both medians, the ratio of the medians with its
//! 95 % bootstrap interval, and whether the VMM under test is ahead, level or behind.
//!
//!   lab-compare --a ringvisor [--lower METRIC,...] [--json FILE] < samples.txt

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use ringvisor_bench::stats::{Better, PairedRatio, Verdict};
use serde_json::json;

#[derive(Parser)]
#[command(about = "Ratio of medians with a 95 % bootstrap interval, over interleaved pairs")]
struct Args {
    /// The VMM under test; every other VMM in the samples is a reference.
    #[arg(long, default_value = "ringvisor")]
    a: String,
    /// Metrics where lower is better (latency, exits, system calls, CPU time per I/O),
    /// by name or by the last '/' part of their name (`p99_us` covers `randread/p99_us`).
    #[arg(long, value_delimiter = ',')]
    lower: Vec<String>,
    /// Also write the table as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// (metric, vmm) -> pair -> value
type Samples = BTreeMap<(String, String), BTreeMap<u32, f64>>;

fn parse(input: &str) -> Result<Samples, String> {
    let mut samples = Samples::new();
    for (n, line) in input.lines().enumerate() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.is_empty() || fields[0].starts_with('#') {
            continue;
        }
        let [pair, vmm, metric, value] = fields[..] else {
            return Err(format!(
                "line {}: want PAIR VMM METRIC VALUE: {line}",
                n + 1
            ));
        };
        let pair: u32 = pair
            .parse()
            .map_err(|_| format!("line {}: pair {pair:?} is not a number", n + 1))?;
        let value: f64 = value
            .parse()
            .ok()
            .filter(|v: &f64| v.is_finite())
            .ok_or_else(|| format!("line {}: value {value:?} is not a number", n + 1))?;
        samples
            .entry((metric.to_string(), vmm.to_string()))
            .or_default()
            .insert(pair, value);
    }
    Ok(samples)
}

/// Three significant digits or more, without a trail of zeros for large values.
fn fmt_value(v: f64) -> String {
    match v.abs() {
        a if a >= 100.0 => format!("{v:.0}"),
        a if a >= 1.0 => format!("{v:.2}"),
        _ => format!("{v:.4}"),
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mut input = String::new();
    if let Err(err) = std::io::stdin().read_to_string(&mut input) {
        eprintln!("lab-compare: cannot read the samples: {err}");
        return ExitCode::FAILURE;
    }
    let samples = match parse(&input) {
        Ok(samples) => samples,
        Err(err) => {
            eprintln!("lab-compare: {err}");
            return ExitCode::from(2);
        }
    };
    println!(
        "| metric | {} median | reference | its median | ratio | 95 % interval | pairs | verdict |",
        args.a
    );
    println!("|---|---|---|---|---|---|---|---|");
    let mut rows = Vec::new();
    for ((metric, vmm), reference) in &samples {
        if *vmm == args.a {
            continue;
        }
        let Some(ours) = samples.get(&(metric.clone(), args.a.clone())) else {
            continue;
        };
        // Only rounds where both were measured form pairs.
        let pairs: Vec<(f64, f64)> = ours
            .iter()
            .filter_map(|(pair, a)| reference.get(pair).map(|b| (*a, *b)))
            .collect();
        let lower = args
            .lower
            .iter()
            .any(|l| metric == l || metric.rsplit('/').next() == Some(l.as_str()));
        let better = if lower { Better::Lower } else { Better::Higher };
        let Some(r) = PairedRatio::from_pairs(&pairs) else {
            println!("| {metric} | | {vmm} | | | | {} | no ratio |", pairs.len());
            continue;
        };
        let verdict = r.verdict(better);
        println!(
            "| {metric} | {} | {vmm} | {} | {:.3} | {:.3}–{:.3} | {} | {verdict} |",
            fmt_value(r.median_a),
            fmt_value(r.median_b),
            r.ratio,
            r.low,
            r.high,
            r.pairs
        );
        rows.push(json!({
            "metric": metric, "reference": vmm, "pairs": r.pairs,
            "median": r.median_a, "reference_median": r.median_b,
            "ratio": r.ratio, "ci95": [r.low, r.high],
            "better": if better == Better::Higher { "higher" } else { "lower" },
            "verdict": verdict.to_string(),
            "judged": verdict != Verdict::TooFewPairs,
        }));
    }
    if let Some(path) = args.json {
        let body = json!({ "vmm": args.a, "comparisons": rows });
        if let Err(err) = std::fs::write(&path, format!("{body:#}\n")) {
            eprintln!("lab-compare: cannot write {}: {err}", path.display());
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_keyed_by_metric_and_vmm() {
        let s =
            parse("# comment\n1 ringvisor iops 10\n1 qemu iops 8\n2 ringvisor iops 11\n").unwrap();
        assert_eq!(s[&("iops".into(), "ringvisor".into())].len(), 2);
        assert_eq!(s[&("iops".into(), "qemu".into())][&1], 8.0);
    }

    #[test]
    fn malformed_lines_are_refused_with_their_number() {
        assert!(parse("1 ringvisor iops\n").unwrap_err().contains("line 1"));
        assert!(parse("x ringvisor iops 1\n").unwrap_err().contains("pair"));
        assert!(parse("1 ringvisor iops NaN\n")
            .unwrap_err()
            .contains("value"));
    }
}
