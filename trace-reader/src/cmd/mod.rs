//! The subcommands, one module each.

pub mod record;
pub mod recover;
pub mod report;
pub mod show;
pub mod sources;
pub mod stats;
pub mod stream;

use crate::event_text::EventText;
use crate::live::Tally;
use crate::output::{Printer, Style, Timestamps};
use crate::source::Session;
use crate::symbols::Symbols;
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

/// A printer of `session`'s events as `style` (nanosecond timestamps if `ns`): named with the
/// kernel's symbols and task names as they are now, for the kernel's buffers; a running
/// producer's threads named as they are in `/proc`.
pub fn session_printer(session: &Session, style: Style, ns: bool) -> Printer {
    let symbols = session.tracing().map(Symbols::of_kernel).unwrap_or_default();
    let events = EventText::new(session.formats.clone(), &symbols, session.subbuf_size);
    let events = events.naming_threads_of(session.producer_pid());
    Printer::new(style, Timestamps::new(session.target.trace_clock().as_deref(), ns), events)
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
