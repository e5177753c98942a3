//! `perf-report`: turns criterion's results into the tables of `docs/perf.md`.
//!
//! Every row puts a hyptrace figure beside its baseline from the same `cargo bench` run, with the
//! ratio and the target it is held to. Run `cargo bench -p hyptrace-benches` first, then
//! `cargo run -p hyptrace-benches --bin perf-report -- --write docs/perf.md`.
#![forbid(unsafe_code)]

use anyhow::{Context, Result, bail};
use clap::Parser;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Writes the performance tables of docs/perf.md from criterion's results.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// Criterion's output directory.
    #[arg(long, default_value = "target/criterion")]
    criterion_dir: PathBuf,
    /// Replace the generated part of this markdown file (between the `perf-report:begin` and
    /// `perf-report:end` markers) instead of printing the tables.
    #[arg(long)]
    write: Option<PathBuf>,
}

/// What a figure is held to.
#[derive(Clone, Copy)]
enum Target {
    /// At most this many times the baseline.
    RatioAtMost(f64),
    /// At most this many nanoseconds per operation.
    NsAtMost(f64),
    /// Nothing: the row gives context.
    None,
}

/// One row: our benchmark, the baseline it is compared with, the target.
struct Row {
    scenario: &'static str,
    ours: &'static str,
    baseline: Option<&'static str>,
    target: Target,
}

/// One table of rows.
struct Table {
    title: &'static str,
    rows: &'static [Row],
}

const TABLES: &[Table] = &[
    Table {
        title: "Writer: `write` of a 16-byte payload (time per event)",
        rows: &[
            Row {
                scenario: "cycle-counter (TSC) clock vs the floor (rdtsc + 16-byte store)",
                ours: "write_16B/hyptrace_cycle_clock",
                baseline: Some("write_16B/floor_cycle_clock"),
                target: Target::RatioAtMost(1.15),
            },
            Row {
                scenario: "cycle-counter clock vs rtrb push of the same record",
                ours: "write_16B/hyptrace_cycle_clock",
                baseline: Some("write_16B/rtrb_push_cycle_clock"),
                target: Target::RatioAtMost(1.0),
            },
            Row {
                scenario: "per-CPU counter clock",
                ours: "write_16B/hyptrace_counter_clock",
                baseline: None,
                target: Target::NsAtMost(3.0),
            },
            Row {
                scenario: "per-CPU counter clock vs the floor (counter + 16-byte store)",
                ours: "write_16B/hyptrace_counter_clock",
                baseline: Some("write_16B/floor_counter_clock"),
                target: Target::None,
            },
        ],
    },
    Table {
        title: "Reader-page swap (time per swap or round trip)",
        rows: &[
            Row {
                scenario: "in-process exchange (`swap_reader_page` taking a full page)",
                ours: "swap/in_process_exchange",
                baseline: None,
                target: Target::None,
            },
            Row {
                scenario: "cross-process GET_READER_PAGE round trip vs a bare socket echo (both polling before sleeping)",
                ours: "swap/cross_process_round_trip",
                baseline: Some("swap/baseline_socket_echo_spinning"),
                target: Target::NsAtMost(10_000.0),
            },
            Row {
                scenario: "cross-process round trip vs a bare socket echo that sleeps (the VM's wakeup floor)",
                ours: "swap/cross_process_round_trip",
                baseline: Some("swap/baseline_socket_echo_sleeping"),
                target: Target::None,
            },
            Row {
                scenario: "kernel `TRACE_MMAP_IOCTL_GET_READER` on a tracefs instance",
                ours: "swap/kernel_ioctl",
                baseline: None,
                target: Target::None,
            },
        ],
    },
];

/// Mean time per iteration, in nanoseconds, of benchmark `id` (`group/function`).
fn mean_ns(dir: &Path, id: &str) -> Result<f64> {
    let path = dir.join(id).join("new/estimates.json");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("no result for {id} at {} (run `cargo bench -p hyptrace-benches`)", path.display()))?;
    let json: serde_json::Value = serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    json["mean"]["point_estimate"].as_f64().with_context(|| format!("{} has no mean estimate", path.display()))
}

/// A time in nanoseconds, in the unit that reads best.
fn time(ns: f64) -> String {
    if ns >= 1000.0 { format!("{:.2} µs", ns / 1000.0) } else { format!("{ns:.2} ns") }
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name").and_then(|r| r.split_once(':')).map(|(_, m)| m.trim().to_string()))
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let rustc = std::process::Command::new("rustc")
        .arg("-V")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .unwrap_or_default();
    format!("{model}, {cores} cores, Linux {}, {}", kernel.trim(), rustc.trim())
}

fn render(dir: &Path) -> Result<String> {
    let mut out = String::new();
    writeln!(out, "Machine: {}.", machine())?;
    for table in TABLES {
        writeln!(out, "\n### {}\n", table.title)?;
        writeln!(out, "| scenario | hyptrace | baseline | ratio | target | result |")?;
        writeln!(out, "|---|---:|---:|---:|---|---|")?;
        for row in table.rows {
            let ours = mean_ns(dir, row.ours)?;
            let (baseline, ratio) = match row.baseline {
                Some(b) => {
                    let base = mean_ns(dir, b)?;
                    (time(base), Some(ours / base))
                }
                None => ("—".into(), None),
            };
            let (target, met) = match (row.target, ratio) {
                (Target::RatioAtMost(t), Some(r)) => (format!("≤ {t:.2}×"), Some(r <= t)),
                (Target::NsAtMost(t), _) => (format!("≤ {}", time(t)), Some(ours <= t)),
                (Target::RatioAtMost(_) | Target::None, _) => ("(context)".into(), None),
            };
            let result = match (met, row.target, ratio) {
                (None, ..) => String::new(),
                (Some(true), ..) => "met".into(),
                (Some(false), Target::RatioAtMost(t), Some(r)) => {
                    format!("**missed by {:.0}%**", (r / t - 1.0) * 100.0)
                }
                (Some(false), Target::NsAtMost(t), _) => format!("**missed by {:.0}%**", (ours / t - 1.0) * 100.0),
                (Some(false), ..) => "**missed**".into(),
            };
            let ratio = ratio.map_or_else(|| "—".into(), |r| format!("{r:.3}×"));
            writeln!(out, "| {} | {} | {baseline} | {ratio} | {target} | {result} |", row.scenario, time(ours))?;
        }
    }
    Ok(out)
}

const BEGIN: &str = "<!-- perf-report:begin -->";
const END: &str = "<!-- perf-report:end -->";

fn main() -> Result<()> {
    let args = Args::parse();
    let tables = render(&args.criterion_dir)?;
    let Some(path) = args.write else {
        print!("{tables}");
        return Ok(());
    };
    let doc = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let (Some(b), Some(e)) = (doc.find(BEGIN), doc.find(END)) else {
        bail!("{} lacks the {BEGIN} / {END} markers", path.display());
    };
    if e < b {
        bail!("{}: {END} comes before {BEGIN}", path.display());
    }
    let updated = format!("{}{BEGIN}\n{tables}{}", &doc[..b], &doc[e..]);
    std::fs::write(&path, updated).with_context(|| format!("writing {}", path.display()))?;
    eprintln!("updated {}", path.display());
    Ok(())
}
