//! A tracefs instance of the kernel's own ring buffer for a benchmark, or the reason there is none.

use ring_mmap::TracefsInstance;

/// Mounts tracefs if needed and creates an instance named after `bench` and this process,
/// removed when dropped. `Err` says why not (no tracefs, not root), for the benchmark to print as
/// the reason it is skipped.
pub fn instance(bench: &str) -> Result<TracefsInstance, String> {
    let root = ring_mmap::kernel::mount_tracefs().map_err(|e| format!("tracefs unavailable: {e}"))?;
    TracefsInstance::create(&root, &format!("hyptrace-bench-{bench}-{}", std::process::id()))
        .map_err(|e| format!("cannot create a tracefs instance: {e}"))
}
