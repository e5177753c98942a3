//! The subcommands, one module each.

pub mod record;
pub mod recover;
pub mod report;
pub mod show;
pub mod sources;
pub mod stats;
pub mod stream;

use crate::live::Tally;
use crate::source::Session;
use crate::table::Row;
use anyhow::{Context, Result};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// A flag Ctrl-C (SIGINT) and SIGTERM set, so a consuming read stops cleanly and reads what is
/// left instead of dying mid-page.
pub fn interrupt_flag() -> Result<Arc<AtomicBool>> {
    let flag = Arc::new(AtomicBool::new(false));
    let set = flag.clone();
    ctrlc::set_handler(move || set.store(true, Ordering::Relaxed)).context("installing the Ctrl-C handler")?;
    Ok(flag)
}

/// The error a command whose output is the events it read ends with when it found `problems`
/// (each printed as a warning) in a damaged buffer: it still printed every event it could read.
pub fn fail_if_damaged(problems: usize) -> Result<()> {
    match problems {
        0 => Ok(()),
        n => anyhow::bail!(
            "the buffer is damaged ({n} problem{} listed above); every event that could be read was read",
            if n == 1 { "" } else { "s" }
        ),
    }
}

/// A row per CPU of `session`, with what was read from each.
pub fn rows(session: &Session, tallies: &[Tally], secs: f64) -> Result<Vec<Row>> {
    session
        .cpus
        .iter()
        .zip(tallies)
        .map(|(cpu, tally)| {
            Ok(Row { cpu: cpu.cpu(), counters: cpu.counters(session.tracing())?, tally: Some(*tally), secs })
        })
        .collect()
}
