//! End to end: `hyp-sim` producing into 1 MiB per CPU in drop mode, `trace-reader record`
//! writing every event to a trace.dat file (on tmpfs where there is one, so the disk is not what
//! is measured), as separate processes; the 1 MiB split two ways: 256 × 4 KiB sub-buffers (the
//! kernel's default page) and 16 × 64 KiB (fewer, larger pages: a sixteenth of the
//! GET_READER_PAGE round trips per event).
//!
//! - `producer_alone`: hyp-sim flat out with no consumer (overwrite mode, so every event is
//!   written), the events/s the producer itself can make: the baseline.
//! - `record_flat_out_{4,64}KiB`: hyp-sim flat out with the recorder; the events/s reaching the
//!   file, with whatever was lost.
//! - `record_lossless_{4,64}KiB`: the highest guest exit rate at which nothing is lost, searched
//!   for below the producer's flat-out rate, each trial checked from both processes' reports
//!   (nothing dropped or overwritten, nothing reported lost, every committed event in the file);
//!   the events/s reaching the file at that rate. The search halves the rate until a trial loses
//!   nothing, then bisects between that rate and the lowest that lost.
//!
//! - `store_new_pages` and `store_rewrite`: 256 MiB written into a new file in the trials'
//!   directory, then over the same file again: what storing costs there, the recorder's largest
//!   cost per event on a machine that charges much for new memory.
//!
//! Not a criterion benchmark (each trial is two processes running for seconds), but its figures
//! go where criterion's do, in criterion's layout, for `perf-report`. `--quick` runs shorter
//! trials and fewer bisection steps; a name filter that does not match `end_to_end` skips it.
#![forbid(unsafe_code)]

use anyhow::{Context, Result};
use criterion::Throughput;
use hyptrace_benches::pipeline::{self, Binaries, Recorded, Workload};
use hyptrace_benches::{cpus, results, storage};
use std::path::Path;
use std::time::Duration;

/// Events each guest exit records (`hyp_enter`, the exit's own, `hyp_exit`).
const EVENTS_PER_EXIT: f64 = 3.0;

/// How long each trial runs and how finely the lossless rate is searched.
struct Plan {
    trial: Duration,
    bisection_steps: u32,
}

/// The command line cargo and criterion users pass: `--quick`, and name filters (arguments
/// that are neither flags nor numbers).
fn plan() -> Option<Plan> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let filters: Vec<&String> = args.iter().filter(|a| !a.starts_with('-') && a.parse::<f64>().is_err()).collect();
    if !filters.is_empty() && !filters.iter().any(|f| "end_to_end".contains(f.as_str()) || f.contains("end_to_end")) {
        return None;
    }
    if args.iter().any(|a| a == "--list") {
        for name in ["4KiB", "64KiB"] {
            println!("end_to_end/record_flat_out_{name}: benchmark");
            println!("end_to_end/record_lossless_{name}: benchmark");
        }
        println!("end_to_end/producer_alone: benchmark");
        println!("end_to_end/store_new_pages: benchmark");
        println!("end_to_end/store_rewrite: benchmark");
        return None;
    }
    Some(if args.iter().any(|a| a == "--quick") {
        Plan { trial: Duration::from_millis(500), bisection_steps: 3 }
    } else {
        Plan { trial: Duration::from_secs(2), bisection_steps: 5 }
    })
}

fn report(id: &str, events_per_sec: f64, detail: &str) -> Result<()> {
    println!("end_to_end/{id:<20} {:>8.3} M events/s   {detail}", events_per_sec / 1e6);
    results::write(&results::criterion_dir(), "end_to_end", id, 1e9 / events_per_sec, Throughput::Elements(1))
}

fn describe(trial: &Recorded) -> String {
    let produced: u64 = trial.produced.cpus.iter().map(|c| c.entries + c.dropped).sum();
    format!("{produced} events produced, {} recorded, {} lost", trial.read(), trial.lost())
}

/// Bytes the storage figures write (each pass).
const STORED: usize = 256 << 20;

/// Most halvings of the rate while looking for one that loses nothing.
const MAX_HALVINGS: u32 = 8;

/// The highest per-vCPU exit rate below `ceiling` at which a recording loses nothing, and that
/// trial: the rate is halved until a trial loses nothing, then bisected between that rate and
/// the lowest that lost, `plan.bisection_steps` times. `None` if even the lowest rate tried lost
/// events.
fn lossless(bins: &Binaries, work: Workload, ceiling: u64, plan: &Plan, scratch: &Path) -> Result<Option<Recorded>> {
    let (mut low, mut high) = (0, ceiling);
    let mut best = None;
    let (mut halvings, mut steps) = (0, 0);
    while steps < plan.bisection_steps && halvings < MAX_HALVINGS {
        let rate = if best.is_none() { high / 2 } else { (low + high) / 2 };
        let trial = pipeline::record(bins, &Workload { rate, ..work }, scratch)?;
        println!("  {rate:>9} exits/s per vCPU: {}", describe(&trial));
        if trial.lossless() {
            low = rate;
            best = Some(trial);
        } else {
            high = rate;
        }
        if best.is_none() {
            halvings += 1;
        } else {
            steps += 1;
        }
    }
    Ok(best)
}

fn main() -> Result<()> {
    let Some(plan) = plan() else { return Ok(()) };
    let bins = Binaries::locate()?;
    let scratch = match Path::new("/dev/shm") {
        shm if shm.is_dir() => tempfile::tempdir_in(shm),
        _ => tempfile::tempdir(),
    }
    .context("creating a scratch directory")?;
    let base = Workload {
        cpus: cpus::available() as u32,
        rate: 0,
        mode: "drop",
        subbuf_size: 4096,
        nr_subbufs: 256,
        duration: plan.trial,
    };
    let alone = pipeline::produce_alone(&bins, &Workload { mode: "overwrite", ..base }, scratch.path())?;
    report("producer_alone", alone.events_per_sec(), &format!("{} vCPUs flat out, no consumer", base.cpus))?;
    let (new, rewrite) = storage::new_and_rewrite(scratch.path(), STORED)?;
    for (id, took) in [("store_new_pages", new), ("store_rewrite", rewrite)] {
        let rate = STORED as f64 / took.as_secs_f64();
        println!("end_to_end/{id:<20} {:>8.3} GB/s", rate / 1e9);
        let ns = took.as_nanos() as f64;
        results::write(&results::criterion_dir(), "end_to_end", id, ns, Throughput::Bytes(STORED as u64))?;
    }
    let ceiling = alone.events_per_sec() / EVENTS_PER_EXIT / f64::from(base.cpus);
    for (subbuf_size, nr_subbufs, name) in [(4096, 256, "4KiB"), (65536, 16, "64KiB")] {
        let work = Workload { subbuf_size, nr_subbufs, ..base };
        println!("end_to_end: {nr_subbufs} x {name} sub-buffers per CPU");
        let flat = pipeline::record(&bins, &work, scratch.path())?;
        report(&format!("record_flat_out_{name}"), flat.events_per_sec(), &describe(&flat))?;
        let best =
            if flat.lossless() { Some(flat) } else { lossless(&bins, work, ceiling as u64, &plan, scratch.path())? };
        match best {
            Some(trial) => report(&format!("record_lossless_{name}"), trial.events_per_sec(), &describe(&trial))?,
            None => println!("end_to_end/record_lossless_{name}: every rate tried lost events; not measured"),
        }
    }
    Ok(())
}
