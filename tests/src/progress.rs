//! A per-CPU record of how many events a writer has committed, kept in a shared file mapping so
//! that it survives the writer being SIGKILLed: the crash tests' ground truth, independent of
//! the buffer under test.
//!
//! The file holds one native-endian `u64` per CPU: 1 + the sequence number of the last event
//! whose commit returned (0: none yet). The writer stores it after each commit, so at a kill the
//! file may lag the buffer by the events of one commit, never lead it.

use memmap2::{MmapOptions, MmapRaw};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// The writer's side: the mapped file.
pub struct Progress {
    map: MmapRaw,
    cpus: usize,
}

impl Progress {
    /// Creates `path` (zero-filled, one slot per CPU) and maps it shared.
    pub fn create(path: &Path, cpus: u32) -> std::io::Result<Self> {
        let cpus = cpus as usize;
        let file = std::fs::File::create_new(path)?;
        file.set_len((cpus * 8) as u64)?;
        let map = MmapOptions::new().len(cpus * 8).map_raw(&file)?;
        Ok(Self { map, cpus })
    }

    /// Records that CPU `cpu` committed every event up to sequence number `count - 1`.
    pub fn committed(&self, cpu: u32, count: u64) {
        let cpu = cpu as usize;
        assert!(cpu < self.cpus, "cpu {cpu} has no progress slot");
        // SAFETY: the mapping is page-aligned and `cpus * 8` bytes long, so slot `cpu` is an
        // in-bounds, 8-aligned u64 that lives as long as `self`; other processes only read it
        // after this one died, and this process accesses it only atomically.
        let slot = unsafe { &*self.map.as_mut_ptr().add(cpu * 8).cast::<AtomicU64>() };
        // Ordering: Release keeps the store after the commit's own stores, so the count never
        // runs ahead of what the buffer holds (a kill can only leave it behind).
        slot.store(count, Ordering::Release);
    }

    /// Reads the counts a writer (now dead) left in `path`, one per CPU.
    pub fn read(path: &Path) -> std::io::Result<Vec<u64>> {
        let bytes = std::fs::read(path)?;
        Ok(bytes.chunks_exact(8).map(|c| u64::from_ne_bytes(c.try_into().expect("8 bytes"))).collect())
    }
}
