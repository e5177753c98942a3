//! LTTng-UST end to end, the peer of [`crate::pipeline`]: writer threads of this process, one
//! per CPU, recording `hyptrace_bench:payload_16B` (the same 16-byte payload) at a set rate into a
//! discard-mode session with per-UID buffers, whose consumer daemon writes the trace into a
//! directory as it records ([`Session::record_into`]). [`record`] runs one trial and counts what
//! reached the directory with babeltrace2, and what the channel discarded with `lttng`.

use crate::lossless_search::Trial;
use crate::lttng::{Session, Subbufs};
use crate::{cpus, lttng_probe, payload::payload};
use anyhow::{Context, Result, anyhow, ensure};
use hyp_sim::vcpu::BATCH;
use hyp_sim::vcpu::pace::Pacer;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How the writers run in a trial.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LttngWorkload {
    /// Writer threads, thread `t` pinned to CPU `t`.
    pub threads: usize,
    /// Events per second per thread, paced as hyp-sim paces its vCPUs' exits; 0 runs flat out.
    pub rate: u64,
    /// The channel's sub-buffers per CPU.
    pub subbufs: Subbufs,
    /// How long the writers run.
    pub duration: Duration,
}

/// A trial: what the writers emitted, what reached the trace and what the channel discarded.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LttngRecorded {
    /// Tracepoint calls the writers made, all threads.
    pub emitted: u64,
    /// Events babeltrace2 read from the trace.
    pub counted: u64,
    /// The channel's `Discarded events` statistic.
    pub discarded: u64,
    /// How long the writers ran.
    pub secs: f64,
}

impl LttngRecorded {
    /// Events the writers emitted per second per thread: the ceiling of a search below this
    /// trial's rate.
    pub fn emitted_per_sec_per_thread(&self, threads: usize) -> u64 {
        (self.emitted as f64 / self.secs / threads as f64) as u64
    }
}

impl Trial for LttngRecorded {
    /// Events read from the trace per second of the writers' run.
    fn events_per_sec(&self) -> f64 {
        self.counted as f64 / self.secs
    }

    /// True if the trace holds every event emitted and the channel discarded none.
    fn lossless(&self) -> bool {
        self.counted == self.emitted && self.discarded == 0
    }

    fn describe(&self) -> String {
        format!("{} events emitted, {} in the trace, {} discarded", self.emitted, self.counted, self.discarded)
    }
}

/// Runs one trial recording into `scratch/lttng-trace` (removed after counting), its session
/// destroyed at the end, also on an error.
pub fn record(work: &LttngWorkload, scratch: &Path) -> Result<LttngRecorded> {
    let dir = scratch.join("lttng-trace");
    let _ = std::fs::remove_dir_all(&dir);
    let session =
        Session::record_into("end_to_end", &dir, work.subbufs, lttng_probe::enabled).map_err(|e| anyhow!(e))?;
    let (emitted, secs) = emit(work);
    let discarded = session.stop().map_err(|e| anyhow!(e))?;
    drop(session);
    let counted = count_events(&dir)?;
    std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    Ok(LttngRecorded { emitted, counted, discarded, secs })
}

/// Runs `work.threads` writers for `work.duration`, each making the events due at `work.rate`
/// in batches as hyp-sim's vCPUs do; the events emitted and the seconds from the writers' start
/// until the last one stopped.
fn emit(work: &LttngWorkload) -> (u64, f64) {
    let stop = AtomicBool::new(false);
    let start = Instant::now();
    let emitted = std::thread::scope(|s| {
        let writers: Vec<_> = (0..work.threads)
            .map(|cpu| {
                let stop = &stop;
                s.spawn(move || {
                    cpus::pin_or_warn(cpu);
                    let pacer = Pacer::start(work.rate);
                    let mut n = 0u64;
                    // Ordering: Relaxed; the flag carries no data, and the events' count reaches
                    // the caller through the thread's join.
                    while !stop.load(Ordering::Relaxed) {
                        let Some(due) = pacer.due(n, BATCH) else { continue };
                        while n < due {
                            lttng_probe::record(&payload::<16>(n));
                            n += 1;
                        }
                    }
                    n
                })
            })
            .collect();
        std::thread::sleep(work.duration);
        stop.store(true, Ordering::Relaxed);
        writers.into_iter().map(|w| w.join().expect("an LTTng writer thread panicked")).sum()
    });
    (emitted, start.elapsed().as_secs_f64())
}

/// The events in the trace under `dir`, counted by babeltrace2's `sink.utils.counter` (no trace
/// at all: none recorded).
fn count_events(dir: &Path) -> Result<u64> {
    if !dir.exists() {
        return Ok(0);
    }
    let output = Command::new("babeltrace2")
        .arg(dir)
        // `step=+0` (unsigned): the statistics once, at the end, not every 10,000 messages as by default.
        .args(["--component", "sink.utils.counter", "--params", "step=+0"])
        .output()
        .context("running babeltrace2 (install babeltrace2, which tests/setup.sh does)")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    ensure!(
        output.status.success(),
        "babeltrace2 {} failed ({}): {}",
        dir.display(),
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    );
    event_messages(&stdout).with_context(|| format!("no event count in babeltrace2's counter output:\n{stdout}"))
}

/// The `N Event messages` line of `sink.utils.counter`'s statistics (the last, should it have
/// printed them more than once).
fn event_messages(stats: &str) -> Option<u64> {
    stats.lines().filter_map(|l| l.trim().strip_suffix("Event messages")?.trim().parse().ok()).next_back()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_event_count_is_the_counters_last() {
        let stats = "  10000 Event messages\n      1 Total messages\n\n  25000 Event messages\n      2 Discarded event messages\n";
        assert_eq!(event_messages(stats), Some(25000));
        assert_eq!(event_messages("nothing"), None);
    }
}
