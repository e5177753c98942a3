//! What the file system the end-to-end trials record into charges for storing bytes: into a
//! file's new pages, as a recorder's spool takes them, and rewriting pages the file already has.
//!
//! The two differ by the cost of finding memory for a new page, which on a virtual machine whose
//! host takes freed memory back includes a fault in the host (`docs/perf.md`): the recorder pays
//! it for every byte it stores, so the end-to-end table shows it measured in the same run.

use anyhow::{Context, Result};
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;
use std::time::{Duration, Instant};

/// Bytes per write, as a spool of 64 KiB pages writes them.
const WRITE: usize = 64 << 10;

/// How long storing `bytes` into a new file in `dir` took, in writes of 64 KiB, and how long
/// writing them again over the same file took.
pub fn new_and_rewrite(dir: &Path, bytes: usize) -> Result<(Duration, Duration)> {
    let mut file = tempfile::tempfile_in(dir).with_context(|| format!("creating a file in {}", dir.display()))?;
    // Not all zeros, so that no file system can take a shortcut.
    let block: Vec<u8> = (0..WRITE).map(|i| (i % 251) as u8).collect();
    let pass = |file: &mut std::fs::File| -> Result<Duration> {
        file.seek(SeekFrom::Start(0))?;
        let start = Instant::now();
        for _ in 0..bytes.div_ceil(WRITE) {
            file.write_all(&block)?;
        }
        Ok(start.elapsed())
    };
    let new = pass(&mut file).context("writing new pages")?;
    let rewrite = pass(&mut file).context("rewriting them")?;
    Ok((new, rewrite))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_passes_store_every_byte() {
        let dir = tempfile::tempdir().unwrap();
        let (new, rewrite) = new_and_rewrite(dir.path(), 3 * WRITE + 1).unwrap();
        assert!(new > Duration::ZERO && rewrite > Duration::ZERO);
    }
}
