//! End to end: `hyp-sim` producing into 1 MiB per CPU in drop mode, `trace-reader record`
//! writing every event to a trace.dat file in the temporary directory (`TMPDIR`, else `/tmp`:
//! where users record, on the disk), as separate processes; the 1 MiB split two ways: 256 × 4 KiB
//! sub-buffers (the kernel's default page) and 16 × 64 KiB (fewer, larger pages: a sixteenth of
//! the GET_READER_PAGE round trips per event). The recorder is given what it has for keeping up
//! where the machine allows it (`RecordOptions::best_for`): `--realtime` and `--direct-io`.
//!
//! - `producer_alone`: hyp-sim flat out with no consumer (overwrite mode, so every event is
//!   written), the events/s the producer itself can make: the baseline.
//! - `record_flat_out_{4,64}KiB`: hyp-sim flat out with the recorder; the events/s reaching the
//!   file, with whatever was lost.
//! - `record_lossless_{4,64}KiB`: the highest guest exit rate at which nothing is lost, searched
//!   for below the producer's flat-out rate, each trial checked from both processes' reports
//!   (nothing dropped or overwritten, nothing reported lost, every committed event in the file);
//!   the events/s reaching the file at that rate. The search halves the rate until a trial loses
//!   nothing, then bisects between that rate and the lowest that lost. A flat-out trial that lost
//!   nothing is the lossless figure itself.
//! - `lttng_flat_out_{4,64}KiB` and `lttng_lossless_{4,64}KiB`: LTTng-UST's peers of those two,
//!   measured right after hyptrace's with the same layout (`hyptrace_benches::lttng_pipeline`):
//!   one writer thread per CPU in this process recording `hyptrace_bench:payload_16B` (the same
//!   16-byte payload), paced as hyp-sim paces its vCPUs, for the same trial length, into a
//!   discard-mode session with per-UID buffers laid out alike, its consumer daemon writing the
//!   trace into the same directory as it records; events counted in the trace with babeltrace2,
//!   discarded ones from the channel's statistic. A trial is lossless when the trace holds every
//!   event emitted and none was discarded; the lossless rate is searched for as hyptrace's is,
//!   below the flat-out trial's rate. Skipped, with the reason printed, where LTTng cannot run.
//! - `record_lossless_64KiB_timeshared`: the same search with the reader threads scheduled like
//!   any other thread (no `--realtime`), when the others had it: what real-time scheduling buys.
//!
//! - `kvm_alone`: hyp-sim's real KVM guests (`--guest kvm`) flat out on every vCPU with no
//!   consumer (overwrite mode, 256 × 4 KiB sub-buffers), in guest exits/s: the baseline.
//! - `kvm_record_exits`: the same guests flat out in drop mode, recorded; the guest exits/s.
//! - `kvm_record_produced` and `kvm_record_recorded`: of that trial, the events/s the exits
//!   produced (committed or dropped) and the events/s reaching the file: equal when nothing was
//!   lost (checked from both processes' reports, as the lossless searches check, and printed).
//!   Skipped, with the reason printed, where KVM cannot run.
//!
//! - `store_new_pages` and `store_rewrite`: 256 MiB written into a new file in the trials'
//!   directory, then over the same file again: what storing through the page cache costs there,
//!   which `--direct-io` avoids.
//!
//! Not a criterion benchmark (each trial is two processes running for seconds), but its figures
//! go where criterion's do, in criterion's layout, for `perf-report`. `--quick` runs shorter
//! trials and fewer bisection steps; a name filter that does not match `end_to_end` skips it.
#![forbid(unsafe_code)]

use anyhow::{Context, Result};
use criterion::Throughput;
use hyptrace_benches::command_line::{self, Run};
use hyptrace_benches::lossless_search::{self, Trial};
use hyptrace_benches::lttng::{self, Subbufs};
use hyptrace_benches::pipeline::{self, Binaries, RecordOptions, Recorded, Workload};
use hyptrace_benches::{cpus, kvm_guest, results, skipped, storage};
use std::path::Path;
use std::time::Duration;

/// Events each guest exit records (`hyp_enter`, the exit's own, `hyp_exit`).
const EVENTS_PER_EXIT: f64 = 3.0;

/// How long each trial runs and how finely the lossless rate is searched.
struct Plan {
    trial: Duration,
    bisection_steps: u32,
}

/// The plan the command line asks for ([`command_line::run_of`]), `None` if none.
fn plan() -> Option<Plan> {
    let names = [
        "record_flat_out_4KiB",
        "record_lossless_4KiB",
        "record_flat_out_64KiB",
        "record_lossless_64KiB",
        "record_lossless_64KiB_timeshared",
        "lttng_flat_out_4KiB",
        "lttng_lossless_4KiB",
        "lttng_flat_out_64KiB",
        "lttng_lossless_64KiB",
        "producer_alone",
        "store_new_pages",
        "store_rewrite",
        "kvm_alone",
        "kvm_record_exits",
        "kvm_record_produced",
        "kvm_record_recorded",
    ];
    Some(match command_line::run_of("end_to_end", &names)? {
        Run::Quick => Plan { trial: Duration::from_millis(500), bisection_steps: 3 },
        Run::Full => Plan { trial: Duration::from_secs(2), bisection_steps: 5 },
    })
}

fn report(id: &str, events_per_sec: f64, detail: &str) -> Result<()> {
    println!("end_to_end/{id:<20} {:>8.3} M events/s   {detail}", events_per_sec / 1e6);
    results::write(&results::criterion_dir(), "end_to_end", id, 1e9 / events_per_sec, Throughput::Elements(1))
}

fn report_exits(id: &str, exits_per_sec: f64, detail: &str) -> Result<()> {
    println!("end_to_end/{id:<20} {:>8.1} k exits/s   {detail}", exits_per_sec / 1e3);
    results::write(&results::criterion_dir(), "end_to_end", id, 1e9 / exits_per_sec, Throughput::Elements(1))
}

/// Bytes the storage figures write (each pass).
const STORED: usize = 256 << 20;

/// What every lossless search needs besides its workload and recorder options.
struct Search<'a> {
    bins: &'a Binaries,
    plan: &'a Plan,
    scratch: &'a Path,
    /// Per-vCPU exit rate the producer makes alone: the search stays below it.
    ceiling: u64,
}

impl Search<'_> {
    /// The highest per-vCPU exit rate below the ceiling at which a recording of `work` with
    /// `opts` loses nothing, and that trial ([`lossless_search::highest_lossless`]).
    fn lossless(&self, work: Workload, opts: RecordOptions) -> Result<Option<Recorded>> {
        lossless_search::highest_lossless(self.ceiling, self.plan.bisection_steps, "exits/s per vCPU", |rate| {
            pipeline::record(self.bins, &Workload { rate, ..work }, opts, self.scratch)
        })
    }

    /// Reports as `id` the lossless figure of `work` recorded with `opts`, given its flat-out
    /// trial ([`report_lossless`]); the events/s, if found.
    fn report(&self, work: Workload, opts: RecordOptions, flat: Recorded, id: &str) -> Result<Option<f64>> {
        report_lossless(id, flat, || self.lossless(work, opts))
    }
}

/// Reports as `id` a recording's lossless figure given its flat-out trial: that trial if it lost
/// nothing, else the one `search` finds; the events/s, `None` if every rate tried lost events.
fn report_lossless<T: Trial>(id: &str, flat: T, search: impl FnOnce() -> Result<Option<T>>) -> Result<Option<f64>> {
    let best = if flat.lossless() { Some(flat) } else { search()? };
    match best {
        Some(trial) => {
            report(id, trial.events_per_sec(), &trial.describe())?;
            Ok(Some(trial.events_per_sec()))
        }
        None => {
            println!("end_to_end/{id}: every rate tried lost events; not measured");
            Ok(None)
        }
    }
}

/// The two layouts of 1 MiB per CPU every recording is measured with: sub-buffers, their size
/// and the name the figures carry.
const LAYOUTS: [Subbufs; 2] = [Subbufs { size: 4096, count: 256 }, Subbufs { size: 65536, count: 16 }];

/// A layout's name in the figures' ids: `4KiB`, `64KiB`.
fn layout_name(layout: Subbufs) -> String {
    format!("{}KiB", layout.size / 1024)
}

/// LTTng-UST's flat-out and lossless figures with `layout`, the lossless rate searched as
/// hyptrace's is, below the flat-out trial's ([`lttng_pipeline`]); the lossless events/s, if
/// found.
#[cfg(lttng_ust)]
fn lttng_peer(plan: &Plan, layout: Subbufs, scratch: &Path) -> Result<Option<f64>> {
    use hyptrace_benches::lttng_pipeline::{self, LttngWorkload};
    let name = layout_name(layout);
    let threads = cpus::available();
    let work = LttngWorkload { threads, rate: 0, subbufs: layout, duration: plan.trial };
    println!("end_to_end: LTTng-UST, {threads} writer threads, per-UID {} x {name} sub-buffers per CPU", layout.count);
    let flat = lttng_pipeline::record(&work, scratch)?;
    report(&format!("lttng_flat_out_{name}"), flat.events_per_sec(), &flat.describe())?;
    let ceiling = flat.emitted_per_sec_per_thread(threads);
    report_lossless(&format!("lttng_lossless_{name}"), flat, || {
        lossless_search::highest_lossless(ceiling, plan.bisection_steps, "events/s per thread", |rate| {
            lttng_pipeline::record(&LttngWorkload { rate, ..work }, scratch)
        })
    })
}

#[cfg(not(lttng_ust))]
fn lttng_peer(_: &Plan, layout: Subbufs, _: &Path) -> Result<Option<f64>> {
    skipped::skip(&format!("end_to_end/lttng_*_{}", layout_name(layout)), lttng::NOT_BUILT);
    Ok(None)
}

/// The KVM guests flat out on every vCPU, `base`'s buffers: alone in overwrite mode, then in
/// drop mode recorded with `opts`; skipped, with the reason printed, where KVM cannot run.
fn kvm_guests(bins: &Binaries, base: Workload, opts: RecordOptions, scratch: &Path) -> Result<()> {
    if let Err(why) = kvm_guest::available() {
        skipped::skip("end_to_end/kvm_*", &why);
        return Ok(());
    }
    let kvm = Workload { guest: "kvm", ..base };
    println!("end_to_end: KVM guests, {} x {} KiB sub-buffers per CPU", kvm.nr_subbufs, kvm.subbuf_size / 1024);
    let cpus = f64::from(kvm.cpus);
    let alone = pipeline::produce_alone(bins, &Workload { mode: "overwrite", ..kvm }, scratch)?;
    let exits = alone.events_per_sec() / EVENTS_PER_EXIT;
    let detail = format!("{} vCPUs flat out, {:.1} k exits/s each, no consumer", kvm.cpus, exits / cpus / 1e3);
    report_exits("kvm_alone", exits, &detail)?;
    let trial = pipeline::record(bins, &kvm, opts, scratch)?;
    let exits = trial.produced.events_per_sec() / EVENTS_PER_EXIT;
    report_exits("kvm_record_exits", exits, &format!("{:.1} k exits/s each, recorded", exits / cpus / 1e3))?;
    report("kvm_record_produced", trial.produced.events_per_sec(), "produced by the exits")?;
    let verdict = if trial.lossless() { "lossless" } else { "LOST EVENTS" };
    report("kvm_record_recorded", trial.events_per_sec(), &format!("{}: {verdict}", trial.describe()))
}

fn main() -> Result<()> {
    let Some(plan) = plan() else { return Ok(()) };
    let bins = Binaries::locate()?;
    let scratch = tempfile::tempdir().context("creating a scratch directory")?;
    let opts = RecordOptions::best_for(scratch.path());
    println!("end_to_end: recording into {} with {:?}", scratch.path().display(), opts.args());
    let base = Workload {
        guest: "sim",
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
    let ceiling = (alone.events_per_sec() / EVENTS_PER_EXIT / f64::from(base.cpus)) as u64;
    let search = Search { bins: &bins, plan: &plan, scratch: scratch.path(), ceiling };
    let lttng = lttng::available();
    if let Err(why) = &lttng {
        skipped::skip("end_to_end/lttng_*", why);
    }
    for layout in LAYOUTS {
        let name = layout_name(layout);
        let work = Workload { subbuf_size: layout.size, nr_subbufs: layout.count, ..base };
        println!("end_to_end: {} x {name} sub-buffers per CPU", layout.count);
        let flat = pipeline::record(&bins, &work, opts, scratch.path())?;
        report(&format!("record_flat_out_{name}"), flat.events_per_sec(), &flat.describe())?;
        let ours = search.report(work, opts, flat, &format!("record_lossless_{name}"))?;
        // LTTng right after hyptrace with the same layout, so both see the machine alike.
        if lttng.is_ok()
            && let (Some(ours), Some(theirs)) = (ours, lttng_peer(&plan, layout, scratch.path())?)
        {
            println!("end_to_end: lossless with {name} sub-buffers, hyptrace vs LTTng-UST: {:.2}x", ours / theirs);
        }
    }
    if opts.realtime {
        let work = Workload { subbuf_size: 65536, nr_subbufs: 16, ..base };
        println!("end_to_end: 16 x 64KiB sub-buffers per CPU, reader threads timeshared (no --realtime)");
        let timeshared = RecordOptions { realtime: false, ..opts };
        let flat = pipeline::record(&bins, &work, timeshared, scratch.path())?;
        println!("  flat out: {}", flat.describe());
        search.report(work, timeshared, flat, "record_lossless_64KiB_timeshared")?;
    }
    kvm_guests(&bins, base, opts, scratch.path())
}
