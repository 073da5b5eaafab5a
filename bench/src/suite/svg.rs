//! Inline SVG charts for `report.html`: grouped bars, percentile lines on log axes and a
//! stacked bar. Plain text in, escaped markup out; no scripts, no external resources.

use std::fmt::Write;

use super::html::escape;

/// A named, coloured series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Series<'a> {
    pub name: &'a str,
    pub color: &'a str,
}

const FONT: &str = r#"font-family="sans-serif" font-size="11""#;
const PLOT_H: f64 = 240.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 50.0;

/// 0..max in about five steps of 1, 2 or 5 × 10^k.
pub fn nice_ticks(max: f64) -> Vec<f64> {
    let max = if max.is_finite() && max > 0.0 {
        max
    } else {
        1.0
    };
    let rough = max / 5.0;
    let magnitude = 10f64.powf(rough.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|&s| s >= rough)
        .unwrap_or(10.0 * magnitude);
    let n = (max / step).ceil().max(1.0) as usize;
    (0..=n).map(|i| i as f64 * step).collect()
}

/// 1500 -> `1.5k`, 2000000 -> `2M`.
pub fn si(value: f64) -> String {
    let (scaled, unit) = match value.abs() {
        v if v >= 1e9 => (value / 1e9, "G"),
        v if v >= 1e6 => (value / 1e6, "M"),
        v if v >= 1e3 => (value / 1e3, "k"),
        _ => (value, ""),
    };
    let text = format!("{scaled:.2}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text}{unit}")
}

/// Nanoseconds on a latency axis: `500 ns`, `10 µs`, `2 ms`, `1 s`.
pub fn time_label(ns: f64) -> String {
    match ns {
        v if v >= 1e9 => format!("{} s", si(v / 1e9)),
        v if v >= 1e6 => format!("{} ms", si(v / 1e6)),
        v if v >= 1e3 => format!("{} µs", si(v / 1e3)),
        v => format!("{} ns", si(v)),
    }
}

fn open(out: &mut String, width: f64, height: f64, title: &str) {
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" role="img"><title>{t}</title><rect width="100%" height="100%" fill="white"/><text x="{x:.1}" y="20" {FONT} font-size="14" font-weight="bold">{t}</text>"#,
        x = LEFT,
        t = escape(title)
    );
}

/// Legend in one row under the title.
fn legend(out: &mut String, series: &[Series]) {
    let mut x = LEFT;
    for s in series {
        let _ = write!(
            out,
            r#"<rect x="{x:.1}" y="30" width="10" height="10" fill="{c}"/><text x="{tx:.1}" y="39" {FONT}>{n}</text>"#,
            c = escape(s.color),
            tx = x + 14.0,
            n = escape(s.name)
        );
        x += 24.0 + 7.0 * s.name.chars().count() as f64;
    }
}

fn no_data(out: &mut String, x: f64, y: f64) {
    let _ = write!(
        out,
        r#"<text x="{x:.1}" y="{y:.1}" {FONT} fill="gray">no data</text>"#
    );
}

/// Grouped vertical bars: one group per label, one bar per series that has any value.
/// `groups`: (label, one value per series; `None` where that series has no result).
pub fn grouped_bars(
    title: &str,
    axis: &str,
    series: &[Series],
    groups: &[(String, Vec<Option<f64>>)],
) -> String {
    let value = |g: &(String, Vec<Option<f64>>), s: usize| {
        g.1.get(s).copied().flatten().filter(|v| v.is_finite())
    };
    let active: Vec<usize> = (0..series.len())
        .filter(|&s| groups.iter().any(|g| value(g, s).is_some()))
        .collect();
    let bar = 14.0;
    let group_w = (active.len().max(1) as f64) * bar + 14.0;
    let plot_w = (groups.len() as f64 * group_w).max(320.0);
    let longest = groups
        .iter()
        .map(|g| g.0.chars().count())
        .max()
        .unwrap_or(0) as f64;
    // Labels slant down to the left: the first ones need room left of the axis.
    let bottom = (20.0 + longest * 4.6).min(260.0);
    let left = LEFT.max((longest * 4.4).min(260.0) - 4.0);
    let (width, height) = (left + plot_w + RIGHT, TOP + PLOT_H + bottom);
    let mut out = String::new();
    open(&mut out, width, height, title);
    legend(
        &mut out,
        &active.iter().map(|&s| series[s]).collect::<Vec<_>>(),
    );
    let max = groups
        .iter()
        .flat_map(|g| active.iter().filter_map(|&s| value(g, s)))
        .fold(0.0, f64::max);
    let ticks = nice_ticks(max);
    let top = ticks.last().copied().unwrap_or(1.0);
    let y = |v: f64| TOP + PLOT_H - (v / top).clamp(0.0, 1.0) * PLOT_H;
    for t in &ticks {
        let _ = write!(
            out,
            r##"<line x1="{left}" x2="{x2:.1}" y1="{yy:.1}" y2="{yy:.1}" stroke="#ddd"/><text x="{tx}" y="{ty:.1}" {FONT} text-anchor="end">{l}</text>"##,
            x2 = left + plot_w,
            yy = y(*t),
            tx = left - 6.0,
            ty = y(*t) + 4.0,
            l = si(*t)
        );
    }
    let _ = write!(
        out,
        r#"<text transform="translate({ax:.1} {cy:.1}) rotate(-90)" {FONT} text-anchor="middle">{a}</text>"#,
        ax = left - 52.0,
        cy = TOP + PLOT_H / 2.0,
        a = escape(axis)
    );
    if active.is_empty() {
        no_data(&mut out, left + 10.0, TOP + PLOT_H / 2.0);
    }
    for (i, g) in groups.iter().enumerate() {
        let x0 = left + i as f64 * group_w + 7.0;
        for (k, &s) in active.iter().enumerate() {
            if let Some(v) = value(g, s) {
                let _ = write!(
                    out,
                    r#"<rect x="{x:.1}" y="{yy:.1}" width="{bar}" height="{h:.1}" fill="{c}"><title>{n} {l}: {v}</title></rect>"#,
                    x = x0 + k as f64 * bar,
                    yy = y(v),
                    h = TOP + PLOT_H - y(v),
                    c = escape(series[s].color),
                    n = escape(series[s].name),
                    l = escape(&g.0),
                    v = si(v)
                );
            }
        }
        let lx = x0 + (active.len().max(1) as f64) * bar / 2.0;
        let ly = TOP + PLOT_H + 12.0;
        let _ = write!(
            out,
            r#"<text transform="translate({lx:.1} {ly:.1}) rotate(-40)" {FONT} font-size="10" text-anchor="end">{l}</text>"#,
            l = escape(&g.0)
        );
    }
    let _ = write!(
        out,
        r#"<line x1="{left}" x2="{left}" y1="{TOP}" y2="{b}" stroke="black"/><line x1="{left}" x2="{r:.1}" y1="{b}" y2="{b}" stroke="black"/></svg>"#,
        b = TOP + PLOT_H,
        r = left + plot_w
    );
    out
}

/// Where percentile `pct` sits on a log(1/(1-p)) axis: p90 -> 1, p99 -> 2, p99.9 -> 3.
fn nines(pct: f64) -> f64 {
    (1.0 / (1.0 - (pct / 100.0).min(0.999_999))).log10()
}

/// Latency percentiles, one polyline per series: x on a log(1/(1-p)) axis at `pcts`, y
/// (ns) on a log axis. `lines`: (series, (percentile, ns) points).
pub fn percentile_lines(title: &str, pcts: &[f64], lines: &[(Series, Vec<(f64, u64)>)]) -> String {
    let plot_w = 420.0;
    let (width, height) = (LEFT + plot_w + RIGHT, TOP + PLOT_H + 40.0);
    let mut out = String::new();
    open(&mut out, width, height, title);
    let drawn: Vec<&(Series, Vec<(f64, u64)>)> = lines.iter().filter(|l| !l.1.is_empty()).collect();
    legend(&mut out, &drawn.iter().map(|l| l.0).collect::<Vec<_>>());
    let x_lo = pcts
        .iter()
        .copied()
        .map(nines)
        .fold(f64::INFINITY, f64::min);
    let x_hi = pcts
        .iter()
        .copied()
        .map(nines)
        .fold(f64::NEG_INFINITY, f64::max);
    // No percentiles to place: an axis from p0 to p90 keeps every coordinate finite.
    let (x_lo, x_hi) = if x_lo.is_finite() {
        (x_lo, x_hi)
    } else {
        (0.0, 1.0)
    };
    let span = if x_hi > x_lo { x_hi - x_lo } else { 1.0 };
    let x = |p: f64| LEFT + 10.0 + (nines(p) - x_lo) / span * (plot_w - 20.0);
    let values = || {
        drawn
            .iter()
            .flat_map(|l| l.1.iter().map(|&(_, ns)| (ns.max(1)) as f64))
    };
    let lo = values().fold(f64::INFINITY, f64::min);
    let hi = values().fold(0.0, f64::max);
    let (d_lo, mut d_hi) = if lo.is_finite() {
        (lo.log10().floor(), hi.log10().ceil())
    } else {
        (3.0, 6.0)
    };
    if d_hi <= d_lo {
        d_hi = d_lo + 1.0;
    }
    let y = |ns: f64| TOP + PLOT_H - (ns.max(1.0).log10() - d_lo) / (d_hi - d_lo) * PLOT_H;
    let mut decade = d_lo;
    while decade <= d_hi {
        let v = 10f64.powf(decade);
        let _ = write!(
            out,
            r##"<line x1="{LEFT}" x2="{x2:.1}" y1="{yy:.1}" y2="{yy:.1}" stroke="#ccc"/><text x="{tx}" y="{ty:.1}" {FONT} text-anchor="end">{l}</text>"##,
            x2 = LEFT + plot_w,
            yy = y(v),
            tx = LEFT - 6.0,
            ty = y(v) + 4.0,
            l = time_label(v)
        );
        for minor in [2.0, 5.0] {
            if decade < d_hi {
                let _ = write!(
                    out,
                    r##"<line x1="{LEFT}" x2="{x2:.1}" y1="{yy:.1}" y2="{yy:.1}" stroke="#eee"/>"##,
                    x2 = LEFT + plot_w,
                    yy = y(v * minor)
                );
            }
        }
        decade += 1.0;
    }
    for &p in pcts {
        let _ = write!(
            out,
            r##"<line x1="{xx:.1}" x2="{xx:.1}" y1="{TOP}" y2="{b}" stroke="#eee"/><text x="{xx:.1}" y="{ty}" {FONT} text-anchor="middle">p{p}</text>"##,
            xx = x(p),
            b = TOP + PLOT_H,
            ty = TOP + PLOT_H + 16.0
        );
    }
    if drawn.is_empty() {
        no_data(&mut out, LEFT + 10.0, TOP + PLOT_H / 2.0);
    }
    for (s, points) in drawn {
        let path: Vec<String> = points
            .iter()
            .map(|&(p, ns)| format!("{:.1},{:.1}", x(p), y(ns as f64)))
            .collect();
        let _ = write!(
            out,
            r#"<polyline points="{}" fill="none" stroke="{c}" stroke-width="2"/>"#,
            path.join(" "),
            c = escape(s.color)
        );
        for &(p, ns) in points {
            let _ = write!(
                out,
                r#"<circle cx="{cx:.1}" cy="{cy:.1}" r="3" fill="{c}"><title>{n} p{p}: {l}</title></circle>"#,
                cx = x(p),
                cy = y(ns as f64),
                c = escape(s.color),
                n = escape(s.name),
                l = time_label(ns as f64)
            );
        }
    }
    let _ = write!(
        out,
        r#"<text x="{cx:.1}" y="{ty}" {FONT} text-anchor="middle">percentile (log scale of 1/(1-p)); latency on a log scale</text><line x1="{LEFT}" x2="{LEFT}" y1="{TOP}" y2="{b}" stroke="black"/><line x1="{LEFT}" x2="{r:.1}" y1="{b}" y2="{b}" stroke="black"/></svg>"#,
        cx = LEFT + plot_w / 2.0,
        ty = TOP + PLOT_H + 34.0,
        b = TOP + PLOT_H,
        r = LEFT + plot_w
    );
    out
}

/// Horizontal stacked bars on one linear time axis. `bars`: (label, segments), each
/// segment (series, ns).
pub fn stacked_bars(title: &str, bars: &[(String, Vec<(Series, u64)>)]) -> String {
    let plot_w = 380.0;
    let left = 190.0;
    let row = 28.0;
    let plot_h = row * bars.len().max(1) as f64;
    let (width, height) = (left + plot_w + RIGHT, TOP + plot_h + 36.0);
    let mut out = String::new();
    open(&mut out, width, height, title);
    // Only bars of several segments need a key: single ones are named by their label.
    let mut keys: Vec<Series> = Vec::new();
    for s in bars
        .iter()
        .filter(|b| b.1.len() > 1)
        .flat_map(|b| b.1.iter().map(|seg| seg.0))
    {
        if !keys.contains(&s) {
            keys.push(s);
        }
    }
    legend(&mut out, &keys);
    let max = bars
        .iter()
        .map(|b| b.1.iter().map(|s| s.1 as f64).sum::<f64>())
        .fold(0.0, f64::max);
    let ticks = nice_ticks(max);
    let top = ticks.last().copied().unwrap_or(1.0);
    let x = |ns: f64| left + (ns / top).clamp(0.0, 1.0) * plot_w;
    for t in &ticks {
        let _ = write!(
            out,
            r##"<line x1="{xx:.1}" x2="{xx:.1}" y1="{TOP}" y2="{b:.1}" stroke="#ddd"/><text x="{xx:.1}" y="{ty:.1}" {FONT} text-anchor="middle">{l}</text>"##,
            xx = x(*t),
            b = TOP + plot_h,
            ty = TOP + plot_h + 14.0,
            l = time_label(*t)
        );
    }
    if bars.is_empty() {
        no_data(&mut out, left + 10.0, TOP + 18.0);
    }
    for (i, (label, segments)) in bars.iter().enumerate() {
        let y0 = TOP + i as f64 * row + 4.0;
        let _ = write!(
            out,
            r#"<text x="{lx}" y="{ly:.1}" {FONT} text-anchor="end">{l}</text>"#,
            lx = left - 8.0,
            ly = y0 + 14.0,
            l = escape(label)
        );
        let mut at = 0.0;
        for (s, ns) in segments {
            let ns = *ns as f64;
            let _ = write!(
                out,
                r#"<rect x="{xx:.1}" y="{y0:.1}" width="{w:.1}" height="{h}" fill="{c}"><title>{l}: {n} {v}</title></rect>"#,
                xx = x(at),
                w = x(at + ns) - x(at),
                h = row - 8.0,
                c = escape(s.color),
                l = escape(label),
                n = escape(s.name),
                v = time_label(ns)
            );
            at += ns;
        }
    }
    let _ = write!(
        out,
        r#"<line x1="{left}" x2="{left}" y1="{TOP}" y2="{b:.1}" stroke="black"/></svg>"#,
        b = TOP + plot_h
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const RV: Series = Series {
        name: "ringvisor",
        color: "#1f77b4",
    };
    const BARE: Series = Series {
        name: "bare <metal>",
        color: "#2ca02c",
    };

    #[test]
    fn ticks_and_labels() {
        assert_eq!(nice_ticks(95.0), [0.0, 20.0, 40.0, 60.0, 80.0, 100.0]);
        assert_eq!(nice_ticks(11225.0), [0.0, 5000.0, 10000.0, 15000.0]);
        assert_eq!(nice_ticks(0.0).len(), 6);
        assert_eq!(nice_ticks(0.0).last(), Some(&1.0));
        assert_eq!(nice_ticks(f64::NAN).len(), 6);
        assert_eq!(si(1500.0), "1.5k");
        assert_eq!(si(2_000_000.0), "2M");
        assert_eq!(si(12.0), "12");
        assert_eq!(time_label(1000.0), "1 µs");
        assert_eq!(time_label(2_500_000.0), "2.5 ms");
        assert!((nines(99.9) - 3.0).abs() < 1e-9);
        assert!((nines(100.0) - 6.0).abs() < 1e-6);
    }

    #[test]
    fn a_missing_series_gets_no_bars_and_no_legend() {
        let qemu = Series {
            name: "QEMU",
            color: "#d62728",
        };
        let svg = grouped_bars(
            "IOPS",
            "IOPS",
            &[RV, BARE, qemu],
            &[("job<1>".into(), vec![Some(11225.0), Some(20000.0), None])],
        );
        assert_eq!(svg.matches("<svg").count(), 1);
        assert!(svg.ends_with("</svg>"));
        assert_eq!(svg.matches("<rect x=").count(), 2 + 2, "{svg}");
        assert!(svg.contains("bare &lt;metal&gt;"));
        assert!(svg.contains("job&lt;1&gt;"));
        assert!(!svg.contains("QEMU"));
        assert!(!svg.contains("<metal>"));
        let empty = grouped_bars("IOPS", "IOPS", &[RV], &[]);
        assert!(empty.contains("no data"));
    }

    #[test]
    fn percentile_lines_and_stacks_render_with_one_series() {
        let pcts = [50.0, 99.0, 99.99];
        let svg = percentile_lines(
            "lat",
            &pcts,
            &[
                (RV, vec![(50.0, 80_000), (99.0, 300_000), (99.99, 0)]),
                (BARE, vec![]),
            ],
        );
        assert_eq!(svg.matches("<polyline").count(), 1);
        assert_eq!(svg.matches("<circle").count(), 3);
        assert!(svg.contains(">p99.99<"));
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
        assert!(percentile_lines("lat", &pcts, &[]).contains("no data"));
        let no_axis = percentile_lines("lat", &[], &[(RV, vec![(50.0, 10)])]);
        assert!(!no_axis.contains("NaN") && !no_axis.contains("inf"));
        let stack = stacked_bars(
            "p50",
            &[
                ("device".into(), vec![(RV, 2000), (BARE, 30000)]),
                ("guest".into(), vec![(RV, 82000)]),
            ],
        );
        // Two keys (the two-segment bar's), three segments.
        assert_eq!(stack.matches("<rect x=").count(), 2 + 3);
        assert!(!stack.contains("NaN"));
        assert!(stacked_bars("p50", &[]).contains("no data"));
    }
}
