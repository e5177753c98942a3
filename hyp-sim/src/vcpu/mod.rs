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

/// Exits made between two looks at the clock and the stop flag: a few microseconds of exits
/// at full speed.
const BATCH: u64 = 256;

/// Runs the vCPU on physical CPU `cpu` until `stop` is set; returns how many exits it made.
///
/// At a set rate, exit `n` is due `n / rate` seconds after the start and is made as soon as it
/// is due: the vCPU sleeps until the next exit is due, and makes every exit already due back to
/// back (after a sleep that overran, or time off its CPU). The clock is read once per batch of
/// due exits, not per exit: reading it costs as much as recording an event.
pub fn run(hyp: &Hyp, cpu: u32, workload: Workload, stop: &AtomicBool) -> u64 {
    pin_to(cpu);
    // The host task the hypervisor attributes this vCPU's exits to: this thread.
    let task = rustix::thread::gettid().as_raw_nonzero().get();
    let start = Instant::now();
    let mut n = 0u64;
    // Ordering: Relaxed; the stop flag carries no data.
    while !stop.load(Ordering::Relaxed) {
        let due = match workload.rate {
            0 => n + BATCH,
            rate => {
                // Exits 0..due are due by now.
                let elapsed = start.elapsed().as_nanos();
                let due = u64::try_from(elapsed * u128::from(rate) / 1_000_000_000).map_or(u64::MAX, |d| d + 1);
                if due <= n {
                    let next = u64::try_from(u128::from(n) * 1_000_000_000 / u128::from(rate)).unwrap_or(u64::MAX);
                    let next = Duration::from_nanos(next);
                    std::thread::sleep(next.saturating_sub(start.elapsed()).min(Duration::from_millis(50)));
                    continue;
                }
                due.min(n + BATCH)
            }
        };
        while n < due {
            hyp.handle_exit(cpu, task, n, &guest::exit(workload.seed, cpu, n));
            n += 1;
        }
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
