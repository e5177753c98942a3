//! Which CPUs the benchmarks run on.

/// CPUs this process may run on (at least 1).
pub fn available() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
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
