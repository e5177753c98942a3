//! The kernel's own ring buffer for a benchmark: a tracefs instance, or the reason there is none;
//! its `trace_marker_raw`, the kernel's peer of hyptrace's writer; and the kernel's KVM
//! tracepoints recorded into it, the kernel's peer of hyptrace tracing a hypervisor's exits.

use ring_mmap::TracefsInstance;
use ring_mmap::kernel::KernelCpu;
use std::fs::File;
use std::io::Write as _;
use std::path::PathBuf;

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

/// The kernel's tracepoints on the KVM exits a user-space hypervisor handles: the exit from the
/// guest and the entry back into it (`kvm_exit`, `kvm_entry`), the exit to user space
/// (`kvm_userspace_exit`) and the access it was for (`kvm_pio`, `kvm_mmio`). hyptrace records
/// three events for each of these exits; the kernel records three or four.
pub const KVM_TRACEPOINTS: [&str; 5] = ["kvm_exit", "kvm_entry", "kvm_userspace_exit", "kvm_pio", "kvm_mmio"];

/// [`KVM_TRACEPOINTS`] in a tracefs instance of this benchmark's own with 1 MiB per CPU
/// (overwrite mode, no reader: recorded into its ring buffer as hyptrace's benchmark buffers
/// are), switched on and off between batches; the instance is removed when dropped, which
/// switches them off.
pub struct KvmTracepoints {
    /// Each tracepoint's `enable` file in the instance.
    enables: Vec<PathBuf>,
    instance: TracefsInstance,
}

impl KvmTracepoints {
    /// The instance for `bench` ([`instance`]) with the tracepoints off, or why not (no tracefs,
    /// not root, a kernel without them).
    pub fn open(bench: &str) -> Result<Self, String> {
        let instance = instance(bench)?;
        instance.set("buffer_size_kb", "1024").map_err(|e| e.to_string())?;
        let events = instance.path().join("events/kvm");
        let enables: Vec<PathBuf> = KVM_TRACEPOINTS.iter().map(|name| events.join(name).join("enable")).collect();
        if let Some(missing) = enables.iter().find(|enable| !enable.exists()) {
            return Err(format!("this kernel has no {} (built without KVM tracepoints?)", missing.display()));
        }
        Ok(Self { enables, instance })
    }

    /// Switches every one of them on or off in the instance.
    pub fn set(&self, on: bool) {
        for enable in &self.enables {
            std::fs::write(enable, if on { "1" } else { "0" })
                .unwrap_or_else(|e| panic!("writing {}: {e}", enable.display()));
        }
    }

    /// Events the kernel has recorded into the instance so far, on every CPU (overwritten ones
    /// included): whatever KVM guest ran while the tracepoints were on, the benchmark's and any
    /// other.
    pub fn recorded(&self) -> u64 {
        (0..crate::cpus::available() as u32)
            .filter_map(|cpu| KernelCpu::stats_file(self.instance.path(), cpu).ok())
            .map(|stats| stats.stats.entries)
            .sum()
    }
}
