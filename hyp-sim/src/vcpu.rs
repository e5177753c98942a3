//! vCPU threads: each runs the guest workload on one physical CPU, exiting to the hypervisor at
//! a set rate or as fast as it can.

use crate::guest;
use crate::hyp::Hyp;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How a vCPU runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Workload {
    /// Exits per second (0: as fast as possible).
    pub rate: u64,
    /// Seed of the guest's exit stream ([`guest::exit`]).
    pub seed: u64,
}

/// Runs the vCPU on physical CPU `cpu` until `stop` is set; returns how many exits it made.
pub fn run(hyp: &Hyp, cpu: u32, workload: Workload, stop: &AtomicBool) -> u64 {
    pin_to(cpu);
    let start = Instant::now();
    let mut n = 0u64;
    // Ordering: Relaxed; the stop flag carries no data.
    while !stop.load(Ordering::Relaxed) {
        if let Some(ns) = n.saturating_mul(1_000_000_000).checked_div(workload.rate) {
            let due = start + Duration::from_nanos(ns);
            let now = Instant::now();
            if due > now {
                std::thread::sleep((due - now).min(Duration::from_millis(50)));
                continue;
            }
        }
        hyp.handle_exit(cpu, n, &guest::exit(workload.seed, cpu, n));
        n += 1;
    }
    n
}

/// Pins the calling thread to host core `cpu` modulo the cores there are (best effort: the
/// simulation is correct without it, only less realistic).
fn pin_to(cpu: u32) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut set = rustix::thread::CpuSet::new();
    set.set(cpu as usize % cores);
    let _ = rustix::thread::sched_setaffinity(None, &set);
}
