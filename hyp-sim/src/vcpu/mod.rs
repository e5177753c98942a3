//! vCPU threads: each runs a guest on one physical CPU, handing its exits to the hypervisor at a
//! set rate or as fast as it can ([`pace`]): the simulated guest's here ([`run`]), a KVM guest's
//! in [`kvm`].

pub mod kvm;
pub mod pace;

use crate::guest;
use crate::hyp::Hyp;
use pace::Pacer;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};

/// How a vCPU runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Workload {
    /// Exits per second (0: as fast as possible).
    pub rate: u64,
    /// Seed of the guest's exit stream ([`guest::exit`]).
    pub seed: u64,
}

/// Exits made between two looks at the clock: a few microseconds of exits at full speed.
pub const BATCH: u64 = 256;

/// How a vCPU thread's run went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VcpuRun {
    /// Exits it handed to the hypervisor.
    pub exits: u64,
    /// How it ended.
    pub ending: Ending,
}

/// How a vCPU thread ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// It ran until the run ended.
    RunEnded,
    /// Its vCPU stopped before, for this reason (traced as `guest_stop`).
    Stopped(String),
}

impl fmt::Display for Ending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ending::RunEnded => write!(f, "ran until the run ended"),
            Ending::Stopped(reason) => write!(f, "stopped: {reason}"),
        }
    }
}

/// Runs the simulated guest's vCPU on physical CPU `cpu` until `stop` is set; returns how many
/// exits it made. Exit `n` is [`guest::exit`]`(seed, cpu, n)`, paced at `workload.rate`.
pub fn run(hyp: &Hyp, cpu: u32, workload: Workload, stop: &AtomicBool) -> u64 {
    pin_to(cpu);
    let task = current_task();
    let pacer = Pacer::start(workload.rate);
    let mut n = 0u64;
    // Ordering: Relaxed; the stop flag carries no data (its partner is the store that ends the
    // run, in the binary).
    while !stop.load(Ordering::Relaxed) {
        let Some(due) = pacer.due(n, BATCH) else { continue };
        while n < due {
            hyp.handle_exit(cpu, task, n, &guest::exit(workload.seed, cpu, n));
            n += 1;
        }
    }
    n
}

/// The host task the hypervisor attributes a vCPU's exits to: the calling thread, which runs it.
fn current_task() -> i32 {
    rustix::thread::gettid().as_raw_nonzero().get()
}

/// Pins the calling thread to host core `cpu` modulo the cores there are (best effort: the
/// simulation is correct without it, only less realistic).
fn pin_to(cpu: u32) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut set = rustix::thread::CpuSet::new();
    set.set(cpu as usize % cores);
    let _ = rustix::thread::sched_setaffinity(None, &set);
}
