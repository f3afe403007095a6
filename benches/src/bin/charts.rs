//! Draws the size sweep (`benches/sweep.sh`) as SVG charts and prints it as Markdown
//! tables, medians over the rounds, each figure also divided by the floor measured in the
//! same run.
//!
//! ```sh
//! bash benches/sweep.sh 3
//! cargo run --release -p shm-benches --bin charts    # writes benches/charts/*.svg
//! ```
//!
//! Charts:
//! * `stream_throughput.svg`: GiB/s against message size, log-log, one line per backend,
//!   the floor and a Unix socket.
//! * `roundtrip_p50.svg`, `roundtrip_p99.svg`: round-trip latency against payload size.
//! * `latency_percentiles.svg`: p50 to p99.99 of the 8-byte round trip per backend, from
//!   the HdrHistogram quantiles `shm-demo pingpong --json` prints.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use plotters::prelude::*;
use serde_json::Value;

/// Backends in the order they are drawn and tabled, with their colours.
const BACKENDS: [(&str, RGBColor); 6] = [
    ("floor", RGBColor(0, 0, 0)),
    ("memfd", RGBColor(214, 39, 40)),
    ("posix", RGBColor(31, 119, 180)),
    ("anon", RGBColor(44, 160, 44)),
    ("unix", RGBColor(148, 103, 189)),
    ("pipe", RGBColor(255, 127, 14)),
];

/// One backend's line in a chart: name, colour, points.
type Line = (&'static str, RGBColor, Vec<(f64, f64)>);

/// Median per (backend, size) of one numeric field.
type Medians = BTreeMap<(String, u64), f64>;

fn read_lines(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e} (run benches/sweep.sh first)", path.display()));
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

fn medians(rows: &[Value], field: &str) -> Medians {
    let mut all: BTreeMap<(String, u64), Vec<f64>> = BTreeMap::new();
    for r in rows {
        let (Some(b), Some(size), Some(v)) =
            (r["backend"].as_str(), r["size"].as_u64(), r[field].as_f64())
        else {
            continue;
        };
        all.entry((b.to_owned(), size)).or_default().push(v);
    }
    all.into_iter()
        .map(|(k, mut v)| {
            v.sort_by(f64::total_cmp);
            (k, v[v.len() / 2])
        })
        .collect()
}

fn sizes(m: &Medians) -> Vec<u64> {
    let mut s: Vec<u64> = m.keys().map(|(_, s)| *s).collect();
    s.sort_unstable();
    s.dedup();
    s
}

fn fmt_size(s: u64) -> String {
    match s {
        s if s >= 1 << 20 && s % (1 << 20) == 0 => format!("{} MiB", s >> 20),
        s if s >= 1 << 10 && s % (1 << 10) == 0 => format!("{} KiB", s >> 10),
        s => format!("{s} B"),
    }
}

/// A Markdown table: one row per size, one column per backend, `value (ratio to floor)`.
fn table(m: &Medians, unit: &str, fmt: impl Fn(f64) -> String) -> String {
    let backends: Vec<&str> = BACKENDS
        .iter()
        .map(|(b, _)| *b)
        .filter(|b| m.keys().any(|(k, _)| k == b))
        .collect();
    let mut out = format!("| size | {} |\n|---:|", backends.join(" | "));
    out.push_str(&"---:|".repeat(backends.len()));
    out.push('\n');
    for s in sizes(m) {
        out.push_str(&format!("| {} |", fmt_size(s)));
        let floor = m.get(&("floor".to_owned(), s)).copied();
        for b in &backends {
            match m.get(&((*b).to_owned(), s)) {
                Some(&v) => {
                    let ratio = match floor {
                        Some(f) if *b != "floor" && f > 0.0 && v > 0.0 => {
                            let r = v / f;
                            format!(" ({r:.2}x)")
                        }
                        _ => String::new(),
                    };
                    out.push_str(&format!(" {}{ratio} |", fmt(v)));
                }
                None => out.push_str(" — |"),
            }
        }
        out.push('\n');
    }
    out.push_str(&format!("\n(medians; {unit}; in brackets: divided by the floor of the same size, measured in the same run)\n"));
    out
}

fn log_range(values: impl Iterator<Item = f64>) -> std::ops::Range<f64> {
    let (lo, hi) = values
        .filter(|v| *v > 0.0)
        .fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    (lo / 1.5)..(hi * 1.5)
}

/// A tick on the log-scale size axis (powers of ten): `10 B`, `1 kB`, `10 MB`.
fn fmt_tick(x: f64) -> String {
    match x {
        x if x >= 1e6 => format!("{} MB", x / 1e6),
        x if x >= 1e3 => format!("{} kB", x / 1e3),
        x => format!("{x} B"),
    }
}

/// One log-log chart: a line per backend over the sizes.
fn size_chart(m: &Medians, path: &Path, title: &str, y_desc: &str, y_fmt: &dyn Fn(&f64) -> String) {
    let xs = sizes(m);
    let x_range = (*xs.first().unwrap() as f64 / 1.5)..(*xs.last().unwrap() as f64 * 1.5);
    let y_range = log_range(m.values().copied());
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE).unwrap();
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(14)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(x_range.log_scale(), y_range.log_scale())
        .unwrap();
    chart
        .configure_mesh()
        .x_desc("message size (bytes, log scale)")
        .y_desc(y_desc)
        .x_label_formatter(&|x| fmt_tick(*x))
        .y_label_formatter(y_fmt)
        .draw()
        .unwrap();
    for (b, colour) in BACKENDS {
        let pts: Vec<(f64, f64)> = xs
            .iter()
            .filter_map(|s| m.get(&(b.to_owned(), *s)).map(|v| (*s as f64, *v)))
            .collect();
        if pts.is_empty() {
            continue;
        }
        let style = ShapeStyle::from(&colour).stroke_width(if b == "floor" { 3 } else { 2 });
        chart
            .draw_series(LineSeries::new(pts.clone(), style))
            .unwrap()
            .label(b)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour));
        chart
            .draw_series(pts.into_iter().map(|p| Circle::new(p, 3, colour.filled())))
            .unwrap();
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .unwrap();
    root.present().unwrap();
}

/// p50 .. p99.99 of the smallest payload's round trip, per backend; x is the number of
/// nines (p90 = 1, p99 = 2, ...).
fn percentile_chart(rows: &[Value], path: &Path) -> String {
    const QS: [(&str, f64, &str); 5] = [
        ("p50_ns", 0.0, "p50"),
        ("p90_ns", 1.0, "p90"),
        ("p99_ns", 2.0, "p99"),
        ("p999_ns", 3.0, "p99.9"),
        ("p9999_ns", 4.0, "p99.99"),
    ];
    let size = rows
        .iter()
        .filter_map(|r| r["size"].as_u64())
        .min()
        .unwrap_or(8);
    let mut lines: Vec<Line> = Vec::new();
    let mut md = format!(
        "| backend | {} |\n|---|{}\n",
        QS.map(|q| q.2).join(" | "),
        "---:|".repeat(QS.len())
    );
    for (b, colour) in BACKENDS {
        let mine: Vec<&Value> = rows
            .iter()
            .filter(|r| r["backend"] == b && r["size"].as_u64() == Some(size))
            .collect();
        if mine.is_empty() {
            continue;
        }
        let pts: Vec<(f64, f64)> = QS
            .iter()
            .map(|(field, x, _)| {
                let mut v: Vec<f64> = mine.iter().filter_map(|r| r[*field].as_f64()).collect();
                v.sort_by(f64::total_cmp);
                (*x, v.get(v.len() / 2).copied().unwrap_or(0.0))
            })
            .collect();
        md.push_str(&format!(
            "| {b} | {} |\n",
            pts.iter()
                .map(|p| fmt_ns(p.1))
                .collect::<Vec<_>>()
                .join(" | ")
        ));
        lines.push((b, colour, pts));
    }
    let y_range = log_range(lines.iter().flat_map(|l| l.2.iter().map(|p| p.1)));
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE).unwrap();
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("Round-trip latency percentiles, {size}-byte payload"),
            ("sans-serif", 22),
        )
        .margin(14)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(-0.3..4.3, y_range.log_scale())
        .unwrap();
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("round trip (log scale)")
        .y_label_formatter(&|v| fmt_ns(*v))
        .x_labels(5)
        .x_label_formatter(&|x: &f64| match (x * 10.0).round() as i64 {
            0 => "p50".into(),
            10 => "p90".into(),
            20 => "p99".into(),
            30 => "p99.9".into(),
            40 => "p99.99".into(),
            _ => String::new(),
        })
        .draw()
        .unwrap();
    for (b, colour, pts) in lines {
        chart
            .draw_series(LineSeries::new(pts.clone(), colour.stroke_width(2)))
            .unwrap()
            .label(b)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour));
        chart
            .draw_series(pts.into_iter().map(|p| Circle::new(p, 3, colour.filled())))
            .unwrap();
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .unwrap();
    root.present().unwrap();
    md
}

/// Medians of the broadcast sweep: per size, the SPSC channel and, per subscriber
/// count, reliable / lossy (slowest subscriber, publisher) / Unix sockets, in M msg/s.
fn broadcast_table(rows: &[Value]) -> String {
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(0.0)
    };
    let pick = |kind: &str,
                backend: &str,
                mode: Option<&str>,
                subs: Option<u64>,
                size: u64,
                field: &str| {
        median(
            rows.iter()
                .filter(|r| {
                    r["kind"] == kind
                        && r["backend"] == backend
                        && r["size"].as_u64() == Some(size)
                        && mode.is_none_or(|m| r["mode"] == m)
                        && subs.is_none_or(|n| r["subscribers"].as_u64() == Some(n))
                })
                .filter_map(|r| r[field].as_f64())
                .collect(),
        ) / 1e6
    };
    let mut out = String::from(
        "| size | subscribers | reliable (slowest sub.) | lossy: slowest sub. / publisher | Unix sockets | SPSC channel (1 to 1) | reliable / channel | reliable / Unix |\n|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    let mut sizes: Vec<u64> = rows.iter().filter_map(|r| r["size"].as_u64()).collect();
    sizes.sort_unstable();
    sizes.dedup();
    for size in sizes {
        let chan = pick("channel", "memfd", None, None, size, "msgs_per_s");
        for subs in [1u64, 2, 4] {
            let rel = pick(
                "broadcast",
                "memfd",
                Some("reliable"),
                Some(subs),
                size,
                "msgs_per_s",
            );
            let lossy = pick(
                "broadcast",
                "memfd",
                Some("lossy"),
                Some(subs),
                size,
                "msgs_per_s",
            );
            let lossy_pub = pick(
                "broadcast",
                "memfd",
                Some("lossy"),
                Some(subs),
                size,
                "publisher_msgs_per_s",
            );
            let unix = pick(
                "broadcast",
                "unix",
                Some("reliable"),
                Some(subs),
                size,
                "msgs_per_s",
            );
            out.push_str(&format!(
                "| {} | {subs} | {rel:.3} | {lossy:.3} / {lossy_pub:.3} | {unix:.3} | {chan:.3} | {:.2}x | {:.1}x |\n",
                fmt_size(size),
                rel / chan,
                rel / unix
            ));
        }
    }
    out.push_str("\n(M msg/s, medians; memfd; every figure from the same run)\n");
    out
}

fn fmt_ns(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.1} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let results = root.join("results");
    let charts = root.join("charts");
    std::fs::create_dir_all(&charts).expect("create benches/charts");

    let stream = read_lines(&results.join("stream.jsonl"));
    let gib = medians(&stream, "gib_per_s");
    size_chart(
        &gib,
        &charts.join("stream_throughput.svg"),
        "Stream throughput by message size (two processes, verified)",
        "GiB/s (log scale)",
        &|v| format!("{v}"),
    );
    println!("### Stream throughput, GiB/s\n");
    println!(
        "{}",
        table(&gib, "GiB/s, higher is better", |v| format!("{v:.3}"))
    );

    let ping = read_lines(&results.join("pingpong.jsonl"));
    for (field, name, title) in [
        (
            "p50_ns",
            "roundtrip_p50.svg",
            "Round trip p50 by payload size",
        ),
        (
            "p99_ns",
            "roundtrip_p99.svg",
            "Round trip p99 by payload size",
        ),
    ] {
        let m = medians(&ping, field);
        size_chart(
            &m,
            &charts.join(name),
            title,
            "round trip (log scale)",
            &|v| fmt_ns(*v),
        );
        println!("### Round trip {}, by payload size\n", &field[..3]);
        println!("{}", table(&m, "lower is better", fmt_ns));
    }
    let md = percentile_chart(&ping, &charts.join("latency_percentiles.svg"));
    println!("### Round-trip percentiles, smallest payload\n\n{md}");
    let bc = results.join("broadcast.jsonl");
    if bc.exists() {
        println!("### Broadcast\n\n{}", broadcast_table(&read_lines(&bc)));
    }
    eprintln!("wrote {}/*.svg", charts.display());
}
