//! Running a thread on the CPUs whose buffers it serves.
//!
//! A per-CPU buffer is written on its own CPU (the kernel's, and a hypervisor's for its physical
//! CPUs; hyp-sim pins each vCPU thread to the CPU of its buffer). A reader running there too
//! reads pages its writer just left in that CPU's caches, and stops when the writer stops: on a
//! virtual machine whose host takes a CPU away for milliseconds at a time, a reader on another
//! CPU can be the one held up while the writer goes on and fills the buffer (see
//! `docs/perf.md`). The same goes for the producer's thread answering that reader's swaps
//! ([`crate::ServerOptions::on_consumed_cpus`]).

use rustix::thread::{CpuSet, sched_getaffinity, sched_setaffinity};

/// Restricts the calling thread to those of `cpus` it may run on now. Returns them, empty (and
/// the thread left as it was) if it may run on none of them (the buffers' CPUs are not this
/// machine's, or not this process's).
pub fn run_on(cpus: &[u32]) -> rustix::io::Result<Vec<u32>> {
    let allowed = sched_getaffinity(None)?;
    let mut set = CpuSet::new();
    let mut chosen = Vec::new();
    for &cpu in cpus {
        let cpu_index = cpu as usize;
        if cpu_index < CpuSet::MAX_CPU && allowed.is_set(cpu_index) {
            set.set(cpu_index);
            chosen.push(cpu);
        }
    }
    if !chosen.is_empty() {
        sched_setaffinity(None, &set)?;
    }
    Ok(chosen)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_runs_on_the_cpus_it_may_use_and_no_other() {
        std::thread::spawn(|| {
            let allowed = sched_getaffinity(None).unwrap();
            let first = (0..CpuSet::MAX_CPU).find(|&c| allowed.is_set(c)).unwrap() as u32;
            assert_eq!(run_on(&[first, CpuSet::MAX_CPU as u32 + 5]).unwrap(), vec![first]);
            let now = sched_getaffinity(None).unwrap();
            assert_eq!(now.count(), 1);
            assert!(now.is_set(first as usize));
            // None of them: left as it was.
            assert!(run_on(&[CpuSet::MAX_CPU as u32 + 5]).unwrap().is_empty());
            assert_eq!(sched_getaffinity(None).unwrap().count(), 1);
        })
        .join()
        .unwrap();
    }
}
