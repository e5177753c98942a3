//! The kernel's own ring buffer for a benchmark: a tracefs instance, or the reason there is none,
//! and its `trace_marker_raw`, the kernel's peer of hyptrace's writer.

use ring_mmap::TracefsInstance;
use std::fs::File;
use std::io::Write as _;

/// Mounts tracefs if needed and creates an instance named after `bench` and this process,
/// removed when dropped. `Err` says why not (no tracefs, not root), for the benchmark to print as
/// the reason it is skipped.
pub fn instance(bench: &str) -> Result<TracefsInstance, String> {
    let root = ring_mmap::kernel::mount_tracefs().map_err(|e| format!("tracefs unavailable: {e}"))?;
    TracefsInstance::create(&root, &format!("hyptrace-bench-{bench}-{}", std::process::id()))
        .map_err(|e| format!("cannot create a tracefs instance: {e}"))
}

/// `trace_marker_raw` of a tracefs instance of this benchmark's own with 1 MiB per CPU (overwrite
/// mode, the kernel's default), removed when dropped.
pub struct RawMarker {
    // Closed before the instance is removed (fields drop in declaration order).
    marker: File,
    _instance: TracefsInstance,
}

impl RawMarker {
    /// The instance for `bench` ([`instance`]) and its `trace_marker_raw`, or why not.
    pub fn open(bench: &str) -> Result<Self, String> {
        let instance = instance(bench)?;
        instance.set("buffer_size_kb", "1024").map_err(|e| e.to_string())?;
        let path = instance.path().join("trace_marker_raw");
        let marker = File::options().write(true).open(&path).map_err(|e| format!("opening {}: {e}", path.display()))?;
        Ok(Self { marker, _instance: instance })
    }

    /// One `write(2)` of `payload` as a raw marker event: its first 4 bytes become the event id
    /// the kernel requires.
    #[inline]
    pub fn write(&mut self, payload: &[u8; 16]) {
        let mut record = *payload;
        record[..4].copy_from_slice(&1u32.to_ne_bytes());
        self.marker.write_all(&record).expect("writing trace_marker_raw");
    }
}
