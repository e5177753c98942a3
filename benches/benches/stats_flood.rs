//! What clients flooding the control socket cost the traced vCPUs: `hyp-sim` flat out (overwrite
//! mode, no consumer, hypercalls answered at real-time priority where the process may), alone
//! and while four clients, a connection each, ask for STATS as fast as they are answered. Each
//! connection's request budget (`ring_mmap::request_budget`) bounds what those clients get, so
//! the vCPUs should keep most of their rate.
//!
//! - `stats_flood/producer_alone`: events/s hyp-sim makes alone.
//! - `stats_flood/producer_flooded`: events/s it makes while flooded; printed with the share of
//!   the rate alone it kept and the STATS answered per second.
//!
//! Not a criterion benchmark (each trial is a process running for seconds); its figures go
//! where criterion's do, for `perf-report`. `--quick` runs shorter trials; a name filter that
//! does not match `stats_flood` skips it.
#![forbid(unsafe_code)]

use anyhow::{Context, Result};
use criterion::Throughput;
use hyptrace_benches::command_line::{self, Run};
use hyptrace_benches::pipeline::{self, Binaries, Workload};
use hyptrace_benches::{cpus, results};
use std::time::Duration;

/// Clients flooding the socket.
const FLOODERS: u32 = 4;

/// How long each trial runs, or `None` if this benchmark is filtered out.
fn trial() -> Option<Duration> {
    Some(match command_line::run_of("stats_flood", &["producer_alone", "producer_flooded"])? {
        Run::Quick => Duration::from_millis(500),
        Run::Full => Duration::from_secs(2),
    })
}

fn report(id: &str, events_per_sec: f64, detail: &str) -> Result<()> {
    println!("stats_flood/{id:<18} {:>8.3} M events/s   {detail}", events_per_sec / 1e6);
    results::write(&results::criterion_dir(), "stats_flood", id, 1e9 / events_per_sec, Throughput::Elements(1))
}

fn main() -> Result<()> {
    let Some(duration) = trial() else { return Ok(()) };
    let bins = Binaries::locate()?;
    let scratch = tempfile::tempdir().context("creating a scratch directory")?;
    let work = Workload {
        guest: "sim",
        cpus: cpus::available() as u32,
        rate: 0,
        mode: "overwrite",
        subbuf_size: 4096,
        nr_subbufs: 256,
        duration,
    };
    let alone = pipeline::produce_alone(&bins, &work, scratch.path())?;
    report("producer_alone", alone.events_per_sec(), &format!("{} vCPUs flat out", work.cpus))?;
    let (flooded, answered) = pipeline::produce_flooded(&bins, &work, scratch.path(), FLOODERS)?;
    let kept = flooded.events_per_sec() / alone.events_per_sec();
    let detail = format!(
        "{:.0}% of the rate alone, {FLOODERS} clients answered {:.0} STATS/s",
        100.0 * kept,
        answered as f64 / flooded.secs
    );
    report("producer_flooded", flooded.events_per_sec(), &detail)
}
