//! A per-CPU record of how far a writer has got, kept in a shared file mapping so that it
//! survives the writer being SIGKILLed: the crash tests' ground truth, independent of the buffer
//! under test.
//!
//! For each CPU the file holds two native-endian `u64`s, which bracket what the buffer can hold
//! at a kill:
//!
//! ```text
//!   seq:        0 … committed-1 │ committed … started-1 │ started …
//!               every commit    │ in flight, or dropped │ never
//!               returned        │ (drop mode: a full    │ attempted
//!                               │ ring; nested writes)  │
//! ```
//!
//! - `started`: 1 + the last sequence number the writer began to write, stored *before* each
//!   write. No event at or after it can be in the buffer.
//! - `committed`: 1 + the sequence number of the last event whose commit returned, stored
//!   *after* it. Every event before it that was not dropped is in the buffer.
//!
//! A kill between a commit and the store of `committed` leaves that commit unrecorded, so the
//! buffer may hold events up to `started`: with drops in between (a full ring in drop mode), that
//! can be many sequence numbers past `committed`, never past `started`.

use memmap2::{MmapOptions, MmapRaw};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// Words per CPU: `committed`, then `started`.
const WORDS_PER_CPU: usize = 2;

/// How far one CPU's writer had got when it was last seen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuProgress {
    /// 1 + the sequence number of the last event whose commit returned (0: none).
    pub committed: u64,
    /// 1 + the last sequence number the writer began to write (0: none).
    pub started: u64,
}

impl CpuProgress {
    /// Whether a buffer whose last event is `end - 1` (`end` 0: none) agrees with this writer:
    /// it holds at least every committed event and nothing never started.
    pub fn allows(&self, end: u64) -> bool {
        (self.committed..=self.started.max(self.committed)).contains(&end)
    }
}

/// The writer's side: the mapped file.
pub struct Progress {
    map: MmapRaw,
    cpus: usize,
}

impl Progress {
    /// Creates `path` (zero-filled, two words per CPU) and maps it shared.
    pub fn create(path: &Path, cpus: u32) -> std::io::Result<Self> {
        let cpus = cpus as usize;
        let len = cpus * WORDS_PER_CPU * 8;
        let file = std::fs::File::create_new(path)?;
        file.set_len(len as u64)?;
        let map = MmapOptions::new().len(len).map_raw(&file)?;
        Ok(Self { map, cpus })
    }

    /// Records that CPU `cpu`'s writer is about to write events up to sequence number `upto - 1`.
    pub fn starting(&self, cpu: u32, upto: u64) {
        // Ordering: Relaxed plus a compiler fence. Only a dead writer's memory is read, and a
        // kill leaves every store executed before it; what must hold is that this one is not
        // moved after the write's stores to the buffer, which the fence forbids.
        self.word(cpu, 1).store(upto, Ordering::Relaxed);
        std::sync::atomic::compiler_fence(Ordering::SeqCst);
    }

    /// Records that CPU `cpu` committed every event up to sequence number `count - 1`.
    pub fn committed(&self, cpu: u32, count: u64) {
        // Ordering: Release keeps the store after the commit's own stores, so the count never
        // runs ahead of what the buffer holds (a kill can only leave it behind).
        self.word(cpu, 0).store(count, Ordering::Release);
    }

    /// Word `index` of CPU `cpu`'s pair.
    fn word(&self, cpu: u32, index: usize) -> &AtomicU64 {
        let cpu = cpu as usize;
        assert!(cpu < self.cpus, "cpu {cpu} has no progress slot");
        // SAFETY: the mapping is page-aligned and `cpus * WORDS_PER_CPU * 8` bytes long, so word
        // `index` (< WORDS_PER_CPU) of CPU `cpu` is an in-bounds, 8-aligned u64 that lives as long
        // as `self`; other processes only read it after this one died, and this process accesses
        // it only atomically.
        unsafe { &*self.map.as_mut_ptr().add((cpu * WORDS_PER_CPU + index) * 8).cast::<AtomicU64>() }
    }

    /// Reads what a writer (now dead) left in `path`, one entry per CPU.
    pub fn read(path: &Path) -> std::io::Result<Vec<CpuProgress>> {
        let bytes = std::fs::read(path)?;
        let word = |chunk: &[u8]| u64::from_ne_bytes(chunk.try_into().expect("8 bytes"));
        Ok(bytes
            .chunks_exact(WORDS_PER_CPU * 8)
            .map(|pair| CpuProgress { committed: word(&pair[..8]), started: word(&pair[8..]) })
            .collect())
    }
}
