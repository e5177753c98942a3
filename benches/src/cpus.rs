//! Which CPUs the benchmarks run on.

use std::sync::OnceLock;

/// CPUs this process may run on (at least 1), as counted before any of its threads was pinned:
/// a thread inherits the affinity of the thread that spawns it, so counting from a thread of a
/// pinned one would find a single CPU.
pub fn available() -> usize {
    static AVAILABLE: OnceLock<usize> = OnceLock::new();
    *AVAILABLE.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Pins the calling thread to CPU `cpu` (modulo [`available`]), so a writer keeps its caches and
/// two threads of a benchmark never share a CPU.
pub fn pin_current_thread(cpu: usize) -> std::io::Result<()> {
    let mut set = rustix::thread::CpuSet::new();
    set.set(cpu % available());
    rustix::thread::sched_setaffinity(None, &set).map_err(std::io::Error::from)
}

/// Pins the calling thread to CPU `cpu`, or says on stderr why it could not (the benchmark still
/// runs, with noisier figures).
pub fn pin_or_warn(cpu: usize) {
    if let Err(e) = pin_current_thread(cpu) {
        eprintln!("warning: cannot pin a benchmark thread to cpu {cpu}: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_spawned_by_a_pinned_thread_pins_to_another_cpu() {
        if available() < 2 {
            println!("SKIPPED: one CPU only: pinning to a second CPU not tested");
            return;
        }
        std::thread::spawn(|| {
            pin_current_thread(0).unwrap();
            std::thread::spawn(|| {
                pin_current_thread(1).unwrap();
                assert_eq!(rustix::thread::sched_getcpu(), 1);
            })
            .join()
            .unwrap();
        })
        .join()
        .unwrap();
    }
}
