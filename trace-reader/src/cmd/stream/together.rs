//! `stream --kernel -e … --socket S`: the host kernel and a hyptrace producer read live together,
//! on one clock, their events merged in time order and each labelled with its source's buffer,
//! as `report` labels a recording of both.
//!
//! ```text
//!   kernel instance  trace_clock := mono ──► reader thread ──┐  each round: its items, and
//!   producer         CLOCK(mono)         ──► reader thread ──┤  its source's horizon
//!                                                            ▼
//!            Merger: a queue per CPU of each source ── releases every item up to the lower
//!            of the two horizons ──► printed, labelled "hyp: " or blank (the kernel)
//!   the producer exits, Ctrl-C or --duration ──► both threads stop; all held is printed;
//!   then a table per source
//! ```
//!
//! Each source is read by a thread of its own, which waits for its own source's doorbells. After
//! a pass over its CPUs, a source's horizon is the time of the oldest "last event" among its
//! CPUs that delivered events (they may have more after it), or, where none did, the shared
//! clock's reading (`CLOCK_MONOTONIC` for `mono`, `CLOCK_BOOTTIME` for `boot`) taken before the
//! pass began (every event stamped earlier was committed, and
//! read, by then). No event newer than the lower horizon is printed, so the other source's
//! events can still come before it: the order across sources is exact up to the window in
//! which an event stamped before a pass is committed after its CPU was read, as across CPUs.

use super::super::sources::{self, Source};
use super::super::{interrupt_flag, rows};
use crate::cli::StreamArgs;
use crate::formats::Formats;
use crate::live::{self, EachRecord, Finished, LiveOptions, Stop, Tally};
use crate::merge::{MergedItem, Merger};
use crate::output::{BufferLabel, Printer, Style};
use crate::source::{Session, Target};
use crate::table;
use anyhow::{Result, anyhow};
use parking_lot::Mutex;
use ring_core::TraceClock;
use ring_mmap::Record;
use rustix::time::ClockId;
use std::cell::RefCell;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// What the reader threads share: the items not printed yet and where each source stands.
struct Together {
    merger: Merger,
    /// Each source's horizon after its last round (0 until its first).
    horizons: Vec<u64>,
    printer: Printer,
}

/// How the items of each source are printed.
struct Labelled<'a> {
    /// For each queue of the merger, the source it belongs to.
    source_of_queue: Vec<usize>,
    formats: Vec<Formats>,
    labels: Vec<BufferLabel<'a>>,
}

impl Labelled<'_> {
    /// Prints every item the merger holds up to `horizon`.
    fn release(&self, together: &mut Together, horizon: u64) {
        let Together { merger, printer, .. } = together;
        merger.release_upto(horizon, |queue, item| {
            let source = self.source_of_queue[queue];
            printer.item(&self.formats[source], Some(self.labels[source]), &item);
        });
        printer.flush();
    }
}

/// Runs `stream` of the kernel and a producer.
pub fn run(args: &StreamArgs) -> Result<()> {
    // One session per source: the rates a terminal shows need no more readers.
    let (mut sources, kernel) = sources::open(&args.source, &args.kernel_setup, 1)?;
    let printed = print(&mut sources, args.format.style, args.live.options());
    // Put back (or removed) once the sources, which read it, are closed.
    drop(kernel);
    printed
}

/// Reads `sources` until one stops, printing their events merged, then a table per source.
fn print(sources: &mut [Source], style: Style, options: LiveOptions) -> Result<()> {
    let clock = shared_clock(sources)?;
    let stop = interrupt_flag()?;
    let mut queues = Vec::new();
    let mut source_of_queue = Vec::new();
    for (index, source) in sources.iter().enumerate() {
        let start = source_of_queue.len();
        source_of_queue.extend(std::iter::repeat_n(index, source.sessions[0].cpus.len()));
        queues.push(start..source_of_queue.len());
    }
    let width = sources.iter().filter_map(|s| s.name.as_ref()).map(String::len).max().unwrap_or(0);
    let names: Vec<Option<String>> = sources.iter().map(|s| s.name.clone()).collect();
    let labelled = Labelled {
        formats: sources.iter().map(|s| s.sessions[0].formats.clone()).collect(),
        labels: names.iter().map(|name| BufferLabel { name: name.as_deref(), width }).collect(),
        source_of_queue,
    };
    let together = Mutex::new(Together {
        merger: Merger::new(labelled.source_of_queue.len()),
        horizons: vec![0; sources.len()],
        printer: Printer::new(style),
    });
    let started = Instant::now();
    let results: Vec<Result<(Finished, Vec<Tally>)>> = std::thread::scope(|scope| {
        let threads: Vec<_> = sources
            .iter_mut()
            .zip(queues)
            .enumerate()
            .map(|(index, (source, queues))| {
                let reader =
                    SourceReader { index, queues, together: &together, labelled: &labelled, stop: &stop, clock };
                let session = &mut source.sessions[0];
                scope.spawn(move || reader.read(session, options))
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap_or_else(|_| Err(anyhow!("a reader thread panicked")))).collect()
    });
    labelled.release(&mut together.lock(), u64::MAX);
    let secs = started.elapsed().as_secs_f64();
    let mut report = String::new();
    let mut damage = 0;
    let mut stopped = None;
    for (source, result) in sources.iter().zip(results) {
        let (finished, tallies) = result?;
        damage += finished.damage;
        if stopped.is_none() || finished.stop == Stop::Hangup {
            stopped = Some(finished.stop);
        }
        report += &format!("{}:\n{}", source.label(), table::summary(&rows(&source.sessions[0], &tallies, secs)?));
    }
    let why = stopped.map_or("stopped", Stop::reason);
    // One write, so that it does not interleave with the producer's own report.
    eprintln!("{report}trace-reader: {why}");
    super::super::fail_if_damaged(damage)
}

/// One source's reader thread.
struct SourceReader<'t, 'l> {
    /// The source's index.
    index: usize,
    /// Its CPUs' queues in the merger.
    queues: Range<usize>,
    together: &'t Mutex<Together>,
    labelled: &'t Labelled<'l>,
    /// Set on Ctrl-C, and by the first reader to stop, so that the other stops too.
    stop: &'t AtomicBool,
    /// The clock both sources are on.
    clock: ClockId,
}

impl SourceReader<'_, '_> {
    /// Reads `session` until it or the other source stops.
    fn read(&self, session: &mut Session, options: LiveOptions) -> Result<(Finished, Vec<Tally>)> {
        let cpus: Vec<u32> = session.cpus.iter().map(|c| c.cpu()).collect();
        let clock = session.clock;
        let mut tallies = vec![Tally::default(); cpus.len()];
        let round_items = RefCell::new(Vec::new());
        let mut caught_up = now(self.clock);
        let finished = live::run(
            session,
            options,
            self.stop,
            &mut EachRecord(|cpu_index: usize, record: Record<'_>| {
                tallies[cpu_index].count(&record);
                let item = MergedItem::of_record(cpus[cpu_index], record, &clock);
                round_items.borrow_mut().push((self.queues.start + cpu_index, item));
            }),
            |_, last| {
                let mut together = self.together.lock();
                for (queue, item) in round_items.borrow_mut().drain(..) {
                    together.merger.push(queue, item);
                }
                let horizon = match last {
                    true => u64::MAX,
                    false => together.merger.source_horizon(self.queues.clone(), caught_up),
                };
                // Before the next pass begins (a wait for the doorbell comes first).
                caught_up = now(self.clock);
                together.horizons[self.index] = horizon;
                let upto = together.horizons.iter().copied().min().unwrap_or(u64::MAX);
                self.labelled.release(&mut together, upto);
                Ok(())
            },
        );
        // Ordering: Relaxed; the flag carries no data. Whatever ended this source ends the other.
        self.stop.store(true, Ordering::Relaxed);
        // A source that stopped releases no one: the other's items are printed at its own end.
        self.together.lock().horizons[self.index] = u64::MAX;
        Ok((finished?, tallies))
    }
}

/// The clock [`sources::open`] put both `sources` on: the one the producer converts to.
fn shared_clock(sources: &[Source]) -> Result<ClockId> {
    let producer_clock = sources.iter().find_map(|s| match s.target {
        Target::Producer { clock, .. } => Some(clock),
        _ => None,
    });
    match producer_clock {
        Some(TraceClock::Mono) => Ok(ClockId::Monotonic),
        Some(TraceClock::Boot) => Ok(ClockId::Boottime),
        other => Err(anyhow!("the kernel and the producer are not on one clock (the producer's: {other:?})")),
    }
}

/// `clock`'s reading, in nanoseconds.
fn now(clock: ClockId) -> u64 {
    let now = rustix::time::clock_gettime(clock);
    (now.tv_sec as u64).saturating_mul(1_000_000_000).saturating_add(now.tv_nsec as u64)
}
