//! `stream`: consume and print events live, merged across CPUs in time order; the kernel and a
//! producer read together are merged across both ([`together`]).

mod together;

use super::{interrupt_flag, rows};
use crate::cli::StreamArgs;
use crate::live::{self, EachRecord, LiveOptions, Stop, Tally};
use crate::merge::{MergedItem, Merger};
use crate::output::Style;
use crate::source::Session;
use crate::table;
use anyhow::Result;
use ring_mmap::Record;
use std::cell::RefCell;
use std::time::Instant;

/// Runs `stream`.
pub fn run(args: &StreamArgs) -> Result<()> {
    if args.source.names_kernel_and_producer() {
        return together::run(args);
    }
    let (target, kernel) = args.source.prepared_target(&args.kernel_setup)?;
    let printed = Session::open(&target, &args.source.cpus.list())
        .and_then(|session| print(session, args.format.style, args.times.ns, args.live.options()));
    // Put back (or removed) once the session, which read it, is closed.
    drop(kernel);
    printed
}

/// Consumes `session` until it stops, printing its events as `format` (nanosecond timestamps if
/// `in_ns`), then the per-CPU table.
pub fn print(mut session: Session, format: Style, in_ns: bool, options: LiveOptions) -> Result<()> {
    let stop = interrupt_flag()?;
    let cpus: Vec<u32> = session.cpus.iter().map(|c| c.cpu()).collect();
    let clock = session.clock;
    let merger = RefCell::new(Merger::new(cpus.len()));
    let mut tallies = vec![Tally::default(); cpus.len()];
    let mut printer = super::session_printer(&session, format, in_ns);
    let started = Instant::now();
    let finished = live::run(
        &mut session,
        options,
        &stop,
        &mut EachRecord(|cpu_index: usize, record: Record<'_>| {
            tallies[cpu_index].count(&record);
            merger.borrow_mut().push(cpu_index, MergedItem::of_record(cpus[cpu_index], record, &clock));
        }),
        |_, last| {
            merger.borrow_mut().release(last, |item| printer.item(None, &item));
            printer.flush();
            Ok(())
        },
    )?;
    let secs = started.elapsed().as_secs_f64();
    let why = match finished.stop {
        Stop::Hangup if finished.damage == 0 => format!("{}; everything it committed was read", Stop::Hangup.reason()),
        stop => stop.reason().to_string(),
    };
    // One write, so that it does not interleave with the producer's own report.
    eprintln!("{}trace-reader: {why}", table::summary(&rows(&session, &tallies, secs)?));
    super::fail_if_damaged(finished.damage)
}
