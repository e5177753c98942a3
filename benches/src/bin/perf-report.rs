//! `perf-report`: turns criterion's results into the tables of `docs/perf.md`.
//!
//! Every row puts a hyptrace figure beside its baseline from the same `cargo bench` run, with the
//! ratio and the target it is held to. Run `cargo bench -p benches` first, then
//! `cargo run -p benches --bin perf-report -- --write docs/perf.md`.
#![forbid(unsafe_code)]

use anyhow::{Context, Result, bail};
use clap::Parser;
use hyptrace_benches::interleaved::{Interleaved, Spread};
use hyptrace_benches::machine_load::MachineLoad;
use hyptrace_benches::results::{self, Figure};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Writes the performance tables of docs/perf.md from criterion's results.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// Criterion's output directory [default: `$CARGO_TARGET_DIR/criterion`, else
    /// `target/criterion`].
    #[arg(long)]
    criterion_dir: Option<PathBuf>,
    /// Replace the generated part of this markdown file (between the `perf-report:begin` and
    /// `perf-report:end` markers) instead of printing the tables.
    #[arg(long)]
    write: Option<PathBuf>,
}

/// What a row compares: time per event (lower is better) or a rate (higher is better).
#[derive(Clone, Copy)]
enum Metric {
    /// Nanoseconds per event (per iteration for benchmarks that declare no events).
    Time,
    /// Events per second.
    Events,
    /// Bytes per second.
    Bytes,
}

/// What a figure is held to.
#[derive(Clone, Copy)]
enum Target {
    /// Time: at most this many times the baseline's.
    RatioAtMost(f64),
    /// Time: the baseline takes at least this many times as long.
    TimesFaster(f64),
    /// Rate: at least this many times the baseline's.
    RatioAtLeast(f64),
    /// Time: at most this many nanoseconds per event.
    NsAtMost(f64),
    /// Rate: at least this many events or bytes per second.
    RateAtLeast(f64),
    /// Nothing: the row gives context.
    None,
}

/// One row: our benchmark, the baseline it is compared with, the target.
struct Row {
    scenario: &'static str,
    ours: &'static str,
    baseline: Option<&'static str>,
    metric: Metric,
    target: Target,
}

/// One table of rows.
struct Table {
    title: &'static str,
    rows: &'static [Row],
}

/// A row measuring time per event.
const fn time(scenario: &'static str, ours: &'static str, baseline: Option<&'static str>, target: Target) -> Row {
    Row { scenario, ours, baseline, metric: Metric::Time, target }
}

/// A row measuring a rate.
const fn rate(
    scenario: &'static str,
    ours: &'static str,
    baseline: Option<&'static str>,
    metric: Metric,
    target: Target,
) -> Row {
    Row { scenario, ours, baseline, metric, target }
}

/// A pair measured interleaved (`benches/benches/interleaved.rs`): hyptrace's side against its
/// baseline, round after round.
struct Pair {
    scenario: &'static str,
    /// The pair's name under `interleaved/`.
    name: &'static str,
    /// Time per event, or a rate (events/s) from it.
    metric: Metric,
    target: Target,
}

const PAIRS: &[Pair] = &[
    Pair {
        scenario: "TSC writer vs the floor (rdtsc + 16-byte store)",
        name: "tsc_16B_vs_floor",
        metric: Metric::Time,
        target: Target::RatioAtMost(1.15),
    },
    Pair {
        scenario: "TSC writer vs rtrb `push` of the same record",
        name: "tsc_16B_vs_rtrb",
        metric: Metric::Time,
        target: Target::RatioAtMost(1.0),
    },
    Pair {
        scenario: "TSC writer vs an enabled LTTng-UST tracepoint (snapshot session, per-UID 256 × 4 KiB)",
        name: "tsc_16B_vs_lttng_ust",
        metric: Metric::Time,
        target: Target::RatioAtMost(0.15),
    },
    Pair {
        scenario: "TSC writer vs the kernel's `trace_marker_raw` write on a tracefs instance",
        name: "tsc_16B_vs_trace_marker_raw",
        metric: Metric::Time,
        target: Target::TimesFaster(30.0),
    },
    Pair {
        scenario: "per-CPU counter clock writer (vs the floor: counter + 16-byte store)",
        name: "counter_16B_vs_floor",
        metric: Metric::Time,
        target: Target::NsAtMost(3.0),
    },
    Pair {
        scenario: "2 writer threads on 2 CPUs vs 1 (aggregate events/s)",
        name: "scaling_2_vs_1",
        metric: Metric::Events,
        target: Target::RatioAtLeast(1.9),
    },
    Pair {
        scenario: "real KVM exits/s of a vCPU, each traced by hyptrace (3 events), vs untraced",
        name: "kvm_exits_traced_vs_untraced",
        metric: Metric::Events,
        target: Target::RatioAtLeast(0.99),
    },
    Pair {
        scenario: "real KVM exits/s of a vCPU traced by hyptrace vs by the kernel's KVM tracepoints in a tracefs instance",
        name: "kvm_exits_traced_vs_kernel_tracepoints",
        metric: Metric::Events,
        target: Target::RatioAtLeast(1.0),
    },
];

const TABLES: &[Table] = &[
    Table {
        title: "Writer: `write` of a 16-byte payload against the floor and peers, one benchmark after another (time per event)",
        rows: &[
            time(
                "cycle-counter (TSC) clock vs the floor (rdtsc + 16-byte store)",
                "write/tsc_16B_overwrite",
                Some("peers/floor_tsc_16B"),
                Target::None,
            ),
            time(
                "TSC clock vs rtrb `push` of the same record",
                "write/tsc_16B_overwrite",
                Some("peers/rtrb_push_tsc_16B"),
                Target::None,
            ),
            time(
                "TSC clock vs crossbeam `ArrayQueue::force_push` of the same record",
                "write/tsc_16B_overwrite",
                Some("peers/crossbeam_force_push_tsc_16B"),
                Target::None,
            ),
            time(
                "TSC clock vs `ringbuf` `push_overwrite` of the same record",
                "write/tsc_16B_overwrite",
                Some("peers/ringbuf_push_overwrite_tsc_16B"),
                Target::None,
            ),
            time(
                "TSC clock vs the kernel's `trace_marker_raw` write on a tracefs instance",
                "write/tsc_16B_overwrite",
                Some("peers/trace_marker_raw_16B"),
                Target::None,
            ),
            time(
                "TSC clock vs an enabled LTTng-UST tracepoint with the same payload",
                "write/tsc_16B_overwrite",
                Some("peers/lttng_ust_16B"),
                Target::None,
            ),
            time(
                "per-CPU counter clock vs the floor (counter + 16-byte store)",
                "write/counter_16B_overwrite",
                Some("peers/floor_counter_16B"),
                Target::None,
            ),
        ],
    },
    Table {
        title: "Writer: payload sizes (time per event, vs the floor with the same clock and payload)",
        rows: &[
            time("TSC, 64 bytes", "write/tsc_64B_overwrite", Some("peers/floor_tsc_64B"), Target::None),
            time("TSC, 256 bytes", "write/tsc_256B_overwrite", Some("peers/floor_tsc_256B"), Target::None),
            time("counter, 64 bytes", "write/counter_64B_overwrite", Some("peers/floor_counter_64B"), Target::None),
            time("counter, 256 bytes", "write/counter_256B_overwrite", Some("peers/floor_counter_256B"), Target::None),
        ],
    },
    Table {
        title: "Writer: modes and a concurrent consumer (16 bytes, time per event, vs overwrite mode alone)",
        rows: &[
            time(
                "TSC, overwrite, consumer swapping on the other CPU",
                "write/tsc_16B_overwrite_consumer",
                Some("write/tsc_16B_overwrite"),
                Target::None,
            ),
            time(
                "TSC, overwrite, the other CPU only spinning (no consumer)",
                "write/tsc_16B_overwrite_spinner",
                Some("write/tsc_16B_overwrite"),
                Target::None,
            ),
            time(
                "TSC, overwrite, consumer swapping vs the other CPU only spinning",
                "write/tsc_16B_overwrite_consumer",
                Some("write/tsc_16B_overwrite_spinner"),
                Target::None,
            ),
            time(
                "TSC, drop mode, ring full (every event dropped and counted)",
                "write/tsc_16B_drop",
                Some("write/tsc_16B_overwrite"),
                Target::None,
            ),
            time(
                "TSC, drop mode, consumer swapping on the other CPU",
                "write/tsc_16B_drop_consumer",
                Some("write/tsc_16B_overwrite"),
                Target::None,
            ),
            time(
                "counter, overwrite, consumer swapping on the other CPU",
                "write/counter_16B_overwrite_consumer",
                Some("write/counter_16B_overwrite"),
                Target::None,
            ),
            time(
                "counter, overwrite, the other CPU only spinning (no consumer)",
                "write/counter_16B_overwrite_spinner",
                Some("write/counter_16B_overwrite"),
                Target::None,
            ),
            time(
                "counter, overwrite, consumer swapping vs the other CPU only spinning",
                "write/counter_16B_overwrite_consumer",
                Some("write/counter_16B_overwrite_spinner"),
                Target::None,
            ),
            time(
                "counter, drop mode, ring full (every event dropped and counted)",
                "write/counter_16B_drop",
                Some("write/counter_16B_overwrite"),
                Target::None,
            ),
            time(
                "counter, drop mode, consumer swapping on the other CPU",
                "write/counter_16B_drop_consumer",
                Some("write/counter_16B_overwrite"),
                Target::None,
            ),
            time(
                "TSC, a write nested in an open one (per event of the pair)",
                "write/tsc_16B_nested",
                Some("write/tsc_16B_overwrite"),
                Target::None,
            ),
        ],
    },
    Table {
        title: "Scaling: writer threads pinned one per CPU, each on its own buffer (aggregate events/s)",
        rows: &[
            rate("1 thread", "scaling/threads_1", None, Metric::Events, Target::None),
            rate("2 threads vs 1", "scaling/threads_2", Some("scaling/threads_1"), Metric::Events, Target::None),
        ],
    },
    Table {
        title: "Reader: full, hot 4 KiB sub-buffers of 16-byte events",
        rows: &[
            rate("decode in shared memory (GB/s)", "reader/decode_shm", None, Metric::Bytes, Target::RateAtLeast(5e9)),
            rate(
                "decode in shared memory (events/s) vs hyp-sim alone flat out, every vCPU (the fastest producer here)",
                "reader/decode_shm",
                Some("end_to_end/producer_alone"),
                Metric::Events,
                Target::RatioAtLeast(10.0),
            ),
            rate(
                "decode of a private copy vs a plain read of the same bytes (GB/s)",
                "reader/decode_slice",
                Some("reader/plain_read"),
                Metric::Bytes,
                Target::RatioAtLeast(0.5),
            ),
            rate(
                "decode in shared memory (4-byte atomic loads) vs a plain read of the same bytes (GB/s)",
                "reader/decode_shm",
                Some("reader/plain_read"),
                Metric::Bytes,
                Target::None,
            ),
            rate(
                "decode in shared memory, payloads of mixed sizes (8 to 64 bytes) vs all of 16 bytes (GB/s)",
                "reader/decode_shm_mixed",
                Some("reader/decode_shm"),
                Metric::Bytes,
                Target::None,
            ),
            rate(
                "non-consuming snapshot vs a `memcpy` of the same bytes (GB/s)",
                "reader/snapshot",
                Some("reader/plain_copy"),
                Metric::Bytes,
                Target::None,
            ),
            rate(
                "consuming with in-process swaps (events/s)",
                "reader/consume_in_process",
                None,
                Metric::Events,
                Target::None,
            ),
            rate(
                "consuming through the mapping, swaps over the control socket, vs in-process (events/s)",
                "reader/consume_socket",
                Some("reader/consume_in_process"),
                Metric::Events,
                Target::None,
            ),
        ],
    },
    Table {
        title: "Reader-page swap (time per swap or round trip)",
        rows: &[
            time(
                "in-process exchange (`swap_reader_page` taking a full page)",
                "swap/in_process_exchange",
                None,
                Target::None,
            ),
            time(
                "cross-process GET_READER_PAGE round trip vs a bare socket echo (both polling before sleeping)",
                "swap/cross_process_round_trip",
                Some("swap/baseline_socket_echo_spinning"),
                Target::NsAtMost(10_000.0),
            ),
            time(
                "cross-process round trip vs a bare socket echo that sleeps (the VM's wakeup floor)",
                "swap/cross_process_round_trip",
                Some("swap/baseline_socket_echo_sleeping"),
                Target::None,
            ),
            time("kernel `TRACE_MMAP_IOCTL_GET_READER` on a tracefs instance", "swap/kernel_ioctl", None, Target::None),
        ],
    },
    Table {
        title: "End to end: hyp-sim → `trace-reader record`, drop mode, 1 MiB per CPU (events/s)",
        rows: &[
            rate(
                "16 × 64 KiB sub-buffers: recorded with zero loss (checked) vs hyp-sim alone flat out",
                "end_to_end/record_lossless_64KiB",
                Some("end_to_end/producer_alone"),
                Metric::Events,
                Target::RateAtLeast(20e6),
            ),
            rate(
                "16 × 64 KiB: recorded with zero loss, reader threads timeshared (no `--realtime`) vs hyp-sim alone",
                "end_to_end/record_lossless_64KiB_timeshared",
                Some("end_to_end/producer_alone"),
                Metric::Events,
                Target::None,
            ),
            rate(
                "16 × 64 KiB: recorded with hyp-sim flat out, lost or not, vs hyp-sim alone",
                "end_to_end/record_flat_out_64KiB",
                Some("end_to_end/producer_alone"),
                Metric::Events,
                Target::None,
            ),
            rate(
                "256 × 4 KiB sub-buffers: recorded with zero loss (checked) vs hyp-sim alone flat out",
                "end_to_end/record_lossless_4KiB",
                Some("end_to_end/producer_alone"),
                Metric::Events,
                Target::None,
            ),
            rate(
                "256 × 4 KiB: recorded with hyp-sim flat out, lost or not, vs hyp-sim alone",
                "end_to_end/record_flat_out_4KiB",
                Some("end_to_end/producer_alone"),
                Metric::Events,
                Target::None,
            ),
            rate(
                "storing through the page cache of the trials' file system: new pages vs rewriting them (GB/s)",
                "end_to_end/store_new_pages",
                Some("end_to_end/store_rewrite"),
                Metric::Bytes,
                Target::None,
            ),
        ],
    },
    Table {
        title: "End to end vs LTTng-UST: the lossless rates of the same run, 1 MiB per CPU laid out alike (events/s)",
        rows: &[
            rate(
                "256 × 4 KiB sub-buffers: hyptrace recorded with zero loss vs LTTng-UST (per-UID, discard mode, consumer daemon to disk) with zero loss",
                "end_to_end/record_lossless_4KiB",
                Some("end_to_end/lttng_lossless_4KiB"),
                Metric::Events,
                Target::RatioAtLeast(3.0),
            ),
            rate(
                "16 × 64 KiB sub-buffers: hyptrace recorded with zero loss vs LTTng-UST with zero loss",
                "end_to_end/record_lossless_64KiB",
                Some("end_to_end/lttng_lossless_64KiB"),
                Metric::Events,
                Target::RatioAtLeast(3.0),
            ),
            rate(
                "256 × 4 KiB: recorded flat out, lost or not: hyptrace vs LTTng-UST",
                "end_to_end/record_flat_out_4KiB",
                Some("end_to_end/lttng_flat_out_4KiB"),
                Metric::Events,
                Target::None,
            ),
            rate(
                "16 × 64 KiB: recorded flat out, lost or not: hyptrace vs LTTng-UST",
                "end_to_end/record_flat_out_64KiB",
                Some("end_to_end/lttng_flat_out_64KiB"),
                Metric::Events,
                Target::None,
            ),
        ],
    },
    Table {
        title: "End to end on KVM: `hyp-sim --guest kvm --rate 0` on every vCPU → `trace-reader record`, drop mode, 256 × 4 KiB per CPU (exits/s, events/s)",
        rows: &[
            rate(
                "real guest exits/s, all vCPUs, recorded vs the KVM guests alone (no consumer)",
                "end_to_end/kvm_record_exits",
                Some("end_to_end/kvm_alone"),
                Metric::Events,
                Target::None,
            ),
            rate(
                "events/s reaching the file vs events/s the exits produced (1.000×: zero loss)",
                "end_to_end/kvm_record_recorded",
                Some("end_to_end/kvm_record_produced"),
                Metric::Events,
                Target::RatioAtLeast(1.0),
            ),
        ],
    },
];

/// A row's figure from a result: time per event, or the rate its metric names.
fn figure(metric: Metric, f: &Figure) -> Option<f64> {
    match metric {
        Metric::Time => Some(f.ns_per_event()),
        Metric::Events => f.events_per_sec(),
        Metric::Bytes => f.bytes_per_sec(),
    }
}

/// A figure in the unit that reads best.
fn show(metric: Metric, value: f64) -> String {
    match metric {
        Metric::Time if value >= 1000.0 => format!("{:.2} µs", value / 1000.0),
        Metric::Time => format!("{value:.2} ns"),
        Metric::Events if value < 1e6 => format!("{:.1} k/s", value / 1e3),
        Metric::Events => format!("{:.1} M/s", value / 1e6),
        Metric::Bytes => format!("{:.2} GB/s", value / 1e9),
    }
}

/// The target column and, where a target applies and the figures exist, whether it was met and
/// by how much it was missed (`Err(percent)`).
fn judge(target: Target, metric: Metric, ours: f64, ratio: Option<f64>) -> (String, Option<Result<(), f64>>) {
    let miss = |ok: bool, short: f64| if ok { Ok(()) } else { Err(short * 100.0) };
    let verdict = match (target, ratio) {
        (Target::RatioAtMost(t), Some(r)) => Some(miss(r <= t, r / t - 1.0)),
        (Target::TimesFaster(t), Some(r)) => Some(miss(r * t <= 1.0, r * t - 1.0)),
        (Target::RatioAtLeast(t), Some(r)) => Some(miss(r >= t, 1.0 - r / t)),
        (Target::NsAtMost(t), _) => Some(miss(ours <= t, ours / t - 1.0)),
        (Target::RateAtLeast(t), _) => Some(miss(ours >= t, 1.0 - ours / t)),
        (Target::RatioAtMost(_) | Target::TimesFaster(_) | Target::RatioAtLeast(_) | Target::None, _) => None,
    };
    let text = if verdict.is_some() { target_text(target, metric) } else { "(context)".into() };
    (text, verdict)
}

/// A verdict as the result column shows it.
fn verdict_text(verdict: Result<(), f64>) -> String {
    match verdict {
        Ok(()) => "met".into(),
        // A miss under 1% still shows its size rather than "0%".
        Err(percent) if percent < 1.0 => format!("**missed by {percent:.1}%**"),
        Err(percent) => format!("**missed by {percent:.0}%**"),
    }
}

/// The target column.
fn target_text(target: Target, metric: Metric) -> String {
    match target {
        Target::RatioAtMost(t) => format!("≤ {t:.2}×"),
        Target::TimesFaster(t) => format!("≥ {t:.0}× faster"),
        Target::RatioAtLeast(t) => format!("≥ {t:.2}×"),
        Target::NsAtMost(t) => format!("≤ {}", show(Metric::Time, t)),
        Target::RateAtLeast(t) => format!("≥ {}", show(metric, t)),
        Target::None => "(context)".into(),
    }
}

/// One row of a criterion table; a target is not judged when `run_load` (the run's, from its
/// interleaved pairs) was busy.
fn render_row(dir: &Path, row: &Row, run_load: Option<MachineLoad>) -> Result<String> {
    let value = |id: &str| -> Result<Option<f64>> { Ok(results::read(dir, id)?.and_then(|f| figure(row.metric, &f))) };
    let ours = value(row.ours)?;
    let baseline = row.baseline.map(value).transpose()?;
    let Some(ours) = ours else {
        let target = target_text(row.target, row.metric);
        return Ok(format!("| {} | not measured | | | {target} | not measured |", row.scenario));
    };
    let (baseline, ratio) = match baseline {
        None => ("—".to_string(), None),
        Some(None) => ("not measured".to_string(), None),
        Some(Some(base)) => (show(row.metric, base), Some(ours / base)),
    };
    let (target, verdict) = judge(row.target, row.metric, ours, ratio);
    let result = match verdict {
        None if row.baseline.is_some() && ratio.is_none() => "not measured".to_string(),
        None => String::new(),
        Some(_) if run_load.is_some_and(|load| load.busy()) => "busy: not judged".into(),
        Some(verdict) => verdict_text(verdict),
    };
    let ratio = ratio.map_or_else(|| "—".into(), |r| format!("{r:.3}×"));
    Ok(format!("| {} | {} | {baseline} | {ratio} | {target} | {result} |", row.scenario, show(row.metric, ours)))
}

/// One row of the interleaved table; "not measured" where the pair did not run.
fn render_pair(dir: &Path, pair: &Pair) -> Result<String> {
    let Some(result) = Interleaved::read(dir, pair.name)? else {
        let target = target_text(pair.target, pair.metric);
        return Ok(format!("| {} | not measured | | | | | {target} | not measured |", pair.scenario));
    };
    // Rates are the inverse of times: per round, the baseline's time over ours.
    let (ratios, ours, baseline) = match pair.metric {
        Metric::Time => (result.time_ratios(), median(&result.ours_ns), median(&result.baseline_ns)),
        Metric::Events | Metric::Bytes => (
            result.time_ratios().iter().map(|r| 1.0 / r).collect(),
            1e9 / median(&result.ours_ns),
            1e9 / median(&result.baseline_ns),
        ),
    };
    let spread = Spread::of(&ratios).with_context(|| format!("interleaved/{}: no rounds", pair.name))?;
    let (target, verdict) = judge(pair.target, pair.metric, ours, Some(spread.median));
    let result_text = match verdict {
        None => String::new(),
        Some(_) if result.load.busy() => "busy: not judged".into(),
        Some(verdict) => verdict_text(verdict),
    };
    Ok(format!(
        "| {} | {} | {} | {:.3}× | {:.3}–{:.3} ({:.3}–{:.3}, {} rounds) | {:.1}%, {:.2} | {target} | {result_text} |",
        pair.scenario,
        show(pair.metric, ours),
        show(pair.metric, baseline),
        spread.median,
        spread.q1,
        spread.q3,
        spread.min,
        spread.max,
        ratios.len(),
        result.load.steal_percent,
        result.load.load_average,
    ))
}

fn median(figures: &[f64]) -> f64 {
    Spread::of(figures).map_or(f64::NAN, |spread| spread.median)
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |name: &str| {
        cpuinfo.lines().find_map(|l| l.strip_prefix(name).and_then(|r| r.split_once(':')).map(|(_, v)| v.trim()))
    };
    let model = field("model name").unwrap_or("unknown CPU");
    // Virtual machines of one model name differ in clock: say which this was.
    let model = match field("cpu MHz").and_then(|m| m.parse::<f64>().ok()) {
        Some(mhz) => format!("{model} at {mhz:.0} MHz"),
        None => model.to_string(),
    };
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

/// The machine's load over a run, as its interleaved pairs measured it: the most stolen and the
/// highest load average of any pair (`None` if no pair ran). The criterion benchmarks record no
/// load of their own; the pairs run in the middle of a full run, and the load average they read
/// covers the minute before each.
fn run_load(dir: &Path) -> Result<Option<MachineLoad>> {
    let mut worst: Option<MachineLoad> = None;
    for pair in PAIRS {
        let Some(result) = Interleaved::read(dir, pair.name)? else { continue };
        let load = result.load;
        worst = Some(worst.map_or(load, |w| MachineLoad {
            steal_percent: w.steal_percent.max(load.steal_percent),
            load_average: w.load_average.max(load.load_average),
            cpus: load.cpus,
        }));
    }
    Ok(worst)
}

fn render(dir: &Path) -> Result<String> {
    if !dir.is_dir() {
        bail!("no results in {} (run `cargo bench -p benches` first)", dir.display());
    }
    let load = run_load(dir)?;
    let mut out = String::new();
    writeln!(out, "Machine: {}.", machine())?;
    match load {
        Some(load) if load.busy() => {
            writeln!(out, "\nBusy during the run ({load} at worst): targets not judged; run again on a quiet machine.")?
        }
        Some(load) => writeln!(out, "\nQuiet enough during the run ({load} at worst): targets judged.")?,
        None => writeln!(
            out,
            "\nThe machine's load was not measured (no interleaved pair ran): targets judged regardless."
        )?,
    }
    writeln!(out, "\n### {PAIRS_TITLE}\n")?;
    writeln!(out, "| scenario | hyptrace | baseline | ratio | spread: IQR (range) | steal, load | target | result |")?;
    writeln!(out, "|---|---:|---:|---:|---|---|---|---|")?;
    for pair in PAIRS {
        writeln!(out, "{}", render_pair(dir, pair)?)?;
    }
    for table in TABLES {
        writeln!(out, "\n### {}\n", table.title)?;
        writeln!(out, "| scenario | hyptrace | baseline | ratio | target | result |")?;
        writeln!(out, "|---|---:|---:|---:|---|---|")?;
        for row in table.rows {
            writeln!(out, "{}", render_row(dir, row, load)?)?;
        }
    }
    Ok(out)
}

const PAIRS_TITLE: &str =
    "Targets, measured interleaved (medians over the rounds; steal and load during the pair's rounds)";

const BEGIN: &str = "<!-- perf-report:begin -->";
const END: &str = "<!-- perf-report:end -->";

fn main() -> Result<()> {
    let args = Args::parse();
    let dir = args.criterion_dir.unwrap_or_else(|| {
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| PathBuf::from("target"), PathBuf::from).join("criterion")
    });
    let tables = render(&dir)?;
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
