//! `report.html`: one self-contained page (inline CSS and SVG, no scripts, nothing fetched)
//! with the charts and the same tables as `summary.md`.

use std::fmt::Write;

use super::fio::PERCENTILES;
use super::model::{JobResult, SuiteResults, Target};
use super::report::{
    cost_table, describe, device_table, gaps, job_table, meta_rows, overview_table, Table,
    COST_NOTE, STAGE_LABELS,
};
use super::svg::{grouped_bars, percentile_lines, stacked_bars, Series};

const STYLE: &str = "body{font-family:sans-serif;margin:2em;color:#222;max-width:1400px}\
table{border-collapse:collapse;margin:0.5em 0 1em}\
th,td{border:1px solid #ccc;padding:3px 8px;text-align:right;font-variant-numeric:tabular-nums}\
th:first-child,td:first-child{text-align:left}\
th{background:#f3f3f3}\
.chart{overflow-x:auto;margin:0.5em 0}\
.charts{display:flex;flex-wrap:wrap;gap:1em}\
.gaps{color:#a33}\
h2{border-bottom:1px solid #ddd;padding-bottom:0.2em;margin-top:1.5em}";

/// Text as HTML (and SVG) text or attribute value.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

pub fn target_color(target: Target) -> &'static str {
    match target {
        Target::Ringvisor => "#1f77b4",
        Target::Bare => "#2ca02c",
        Target::Qemu => "#d62728",
    }
}

fn target_series(target: Target) -> Series<'static> {
    Series {
        name: target.label(),
        color: target_color(target),
    }
}

const STAGE_COLORS: [&str; 3] = ["#9467bd", "#ff7f0e", "#e377c2"];

fn table_html(table: &Table) -> String {
    let mut out = String::from("<table><thead><tr>");
    for h in &table.header {
        let _ = write!(out, "<th>{}</th>", escape(h));
    }
    out.push_str("</tr></thead><tbody>");
    for row in &table.rows {
        out.push_str("<tr>");
        for cell in row {
            let _ = write!(out, "<td>{}</td>", escape(cell));
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>\n");
    out
}

/// The matrix's throughput: one group per job, one bar per target.
fn throughput_charts(results: &SuiteResults) -> String {
    let series: Vec<Series> = Target::ALL.into_iter().map(target_series).collect();
    let groups =
        |value: &dyn Fn(&JobResult, Target) -> Option<f64>| -> Vec<(String, Vec<Option<f64>>)> {
            results
                .jobs
                .iter()
                .map(|j| (j.id(), Target::ALL.iter().map(|&t| value(j, t)).collect()))
                .collect()
        };
    let iops = groups(&|j, t| j.get(t).map(|r| r.iops));
    let bw = groups(&|j, t| j.get(t).map(|r| r.bw_kib / 1024.0));
    format!(
        "<div class=\"chart\">{}</div>\n<div class=\"chart\">{}</div>\n",
        grouped_bars("IOPS per job", "IOPS", &series, &iops),
        grouped_bars("Bandwidth per job", "MiB/s", &series, &bw)
    )
}

/// One job's latency percentiles per target, and where ringvisor's median time goes.
fn job_charts(job: &JobResult) -> String {
    let id = job.id();
    let lines: Vec<(Series, Vec<(f64, u64)>)> = Target::ALL
        .into_iter()
        .filter_map(|t| Some((target_series(t), job.get(t)?.clat_ns.clone())))
        .collect();
    let percentiles = percentile_lines(&format!("{id}: completion latency"), &PERCENTILES, &lines);
    let mut bars: Vec<(String, Vec<(Series, u64)>)> = Vec::new();
    if let Ok(device) = &job.device {
        let segments = STAGE_LABELS
            .iter()
            .zip(STAGE_COLORS)
            .filter_map(|((name, label), color)| {
                let ns = device.stage(name)?.percentile_ns(50.0)?;
                Some((Series { name: label, color }, ns))
            })
            .collect();
        bars.push(("ringvisor device (stage p50s)".to_string(), segments));
    }
    for t in Target::ALL {
        if let Some(ns) = job.get(t).and_then(|r| r.clat_percentile_ns(50.0)) {
            let label = format!("{} in-guest clat p50", t.label());
            let label = if t == Target::Bare {
                "bare metal clat p50".to_string()
            } else {
                label
            };
            bars.push((label, vec![(target_series(t), ns)]));
        }
    }
    let stack = stacked_bars(&format!("{id}: in-guest vs device-side (p50)"), &bars);
    format!("<div class=\"charts\"><div class=\"chart\">{percentiles}</div><div class=\"chart\">{stack}</div></div>\n")
}

/// The whole page.
pub fn render(results: &SuiteResults) -> String {
    let mut out =
        String::from("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    let _ = writeln!(
        out,
        "<title>ringvisor fio suite: {}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<h1>ringvisor fio suite</h1>",
        escape(&results.meta.preset)
    );
    out.push_str("<table class=\"meta\"><tbody>");
    for (key, value) in meta_rows(results) {
        let value = if key == "command" {
            format!("<code>{}</code>", escape(&value))
        } else {
            escape(&value)
        };
        let _ = write!(out, "<tr><th>{}</th><td>{value}</td></tr>", escape(&key));
    }
    out.push_str("</tbody></table>\n<p>Ratios are ringvisor's over the target's: IOPS above 1.00 is faster than the target. Latencies are fio's completion latency (clat) in µs.</p>\n");
    out.push_str("<h2>Throughput</h2>\n");
    out.push_str(&throughput_charts(results));
    out.push_str("<h2>Overview</h2>\n");
    out.push_str(&table_html(&overview_table(results)));
    for job in &results.jobs {
        let id = escape(&job.id());
        let _ = writeln!(
            out,
            "<h2 id=\"job-{id}\">{id}</h2>\n<p>{}</p>",
            escape(&describe(job))
        );
        out.push_str(&job_charts(job));
        out.push_str(&table_html(&job_table(results, job)));
        if let Some(device) = device_table(job) {
            out.push_str("<p>ringvisor's device side (sum of the device's queues):</p>\n");
            out.push_str(&table_html(&device));
        }
        if let Some(costs) = cost_table(results, job) {
            let _ = writeln!(out, "<p>{}</p>", escape(COST_NOTE));
            out.push_str(&table_html(&costs));
        }
        let gaps = gaps(results, job);
        if !gaps.is_empty() {
            out.push_str("<ul class=\"gaps\">");
            for (what, why) in gaps {
                let _ = write!(out, "<li>{} missing: {}</li>", escape(&what), escape(&why));
            }
            out.push_str("</ul>\n");
        }
    }
    out.push_str("</body>\n</html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::super::model::SuiteResults;
    use super::super::testutil::{known_raw_dir, TempDir};
    use super::*;

    /// Every `<` in the page opens one of the tags the renderer writes.
    fn stray_angle_brackets(html: &str) -> Vec<String> {
        const TAGS: [&str; 26] = [
            "!DOCTYPE", "html", "head", "meta ", "meta>", "title", "style", "body", "h1", "h2",
            "table", "thead", "tbody", "tr", "th", "td", "p>", "ul", "li", "div", "code", "svg",
            "rect", "text", "line", "poly",
        ];
        html.match_indices('<')
            .map(|(at, _)| html[at + 1..].trim_start_matches('/'))
            .filter(|rest| !TAGS.iter().any(|t| rest.starts_with(t)) && !rest.starts_with("circle"))
            .map(|rest| rest.chars().take(20).collect())
            .collect()
    }

    #[test]
    fn the_page_has_its_charts_numbers_and_no_raw_data_markup() {
        let tmp = TempDir::new("html");
        let r = SuiteResults::load(&known_raw_dir(tmp.path())).unwrap();
        let html = render(&r);
        // IOPS, bandwidth, then two per job.
        assert_eq!(html.matches("<svg").count(), 2 + 2 * r.jobs.len());
        assert_eq!(html.matches("</svg>").count(), html.matches("<svg").count());
        assert!(html.contains("<td>11225</td>"), "{html}");
        assert!(html.contains("<td>20000</td>"));
        assert!(html.contains("<td>0.56</td>"));
        assert!(html.contains("<td>342.0</td>"));
        // The command's markup is text.
        assert!(
            html.contains(
                "<code>fio-suite --preset quick --note &#39;&lt;b&gt;&amp;amp;|x&#39;</code>"
            ),
            "{html}"
        );
        assert_eq!(stray_angle_brackets(&html), Vec::<String>::new());
        assert!(!html.contains(" src=") && !html.contains("href=") && !html.contains("<script"));
        // No QEMU result anywhere: not in the legends either.
        assert!(!html.contains(">QEMU<"));
    }

    #[test]
    fn one_job_and_missing_everything_still_render() {
        let tmp = TempDir::new("html-one");
        let mut r = SuiteResults::load(&known_raw_dir(tmp.path())).unwrap();
        r.jobs.truncate(1);
        r.jobs[0].targets = [
            Err("a <gone> target".into()),
            Err("x".into()),
            Err("y".into()),
        ];
        r.jobs[0].device = Err("no device".into());
        let html = render(&r);
        assert_eq!(html.matches("<svg").count(), 4);
        assert_eq!(html.matches("</svg>").count(), 4);
        assert!(html.contains("no data"));
        assert_eq!(stray_angle_brackets(&html), Vec::<String>::new());
        assert!(!html.contains("NaN") && !html.contains("inf\""));
    }

    #[test]
    fn escaping() {
        assert_eq!(escape("a<b>&\"c'"), "a&lt;b&gt;&amp;&quot;c&#39;");
    }
}
