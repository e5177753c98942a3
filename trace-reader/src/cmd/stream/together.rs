//! `stream --kernel -e … --socket S`: the host kernel and a hyptrace producer read live together,
//! on one clock, their events merged in time order and each labelled with its source's buffer,
//! as `report` labels a recording of both.
//!
//! ```text
//!   kernel instance  trace_clock := mono ──► reader thread ──┐  each round: its items, and
//!   producer         CLOCK(mono)         ──► reader thread ──┤  its source's horizon
//!                                                            ▼
//!            Merger: a queue per CPU of each source (behind a mutex)
//!                                                            │ every 20 ms: every item up to
//!                                                            ▼ the lower of the two horizons
//!            the main thread prints it, labelled "hyp: " or blank (the kernel), with the
//!            producer's events numbered after the kernel's, as in a recording of both
//!   the producer exits, Ctrl-C or --duration ──► both readers stop; all held is printed;
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
use crate::event_ids::EventIds;
use crate::event_text::EventText;
use crate::live::{self, EachRecord, Finished, LiveOptions, Stop, Tally};
use crate::merge::{MergedItem, Merger};
use crate::output::{BufferLabel, Printer, Style, Timestamps};
use crate::source::{Session, Target};
use crate::symbols::Symbols;
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

/// What the reader threads and the printing thread share: the items not printed yet and where
/// each source stands.
struct Together {
    merger: Merger,
    /// Each source's horizon after its last round (0 until its first; `u64::MAX` once it has
    /// stopped).
    horizons: Vec<u64>,
}

impl Together {
    /// Takes every item no source can still precede, in time order, with its queue's index.
    fn releasable(&mut self) -> Vec<(usize, MergedItem)> {
        let upto = self.horizons.iter().copied().min().unwrap_or(u64::MAX);
        let mut items = Vec::new();
        self.merger.release_upto(upto, |queue, item| items.push((queue, item)));
        items
    }

    /// Whether every source has stopped.
    fn finished(&self) -> bool {
        self.horizons.iter().all(|&h| h == u64::MAX)
    }
}

/// Prints items with their buffer's label (the producer's events numbered as a recording of
/// both numbers them, after the kernel's: [`EventIds`]).
struct Labelled<'a> {
    printer: Printer,
    /// For each queue of the merger, the source it belongs to.
    source_of_queue: Vec<usize>,
    labels: Vec<BufferLabel<'a>>,
}

impl Labelled<'_> {
    fn print(&mut self, items: Vec<(usize, MergedItem)>) {
        for (queue, item) in items {
            self.printer.item(Some(self.labels[self.source_of_queue[queue]]), &item);
        }
        self.printer.flush();
    }
}

/// How often the printing thread looks for items to print.
const PRINT_INTERVAL: std::time::Duration = std::time::Duration::from_millis(20);

/// Runs `stream` of the kernel and a producer.
pub fn run(args: &StreamArgs) -> Result<()> {
    // One session per source: the rates a terminal shows need no more readers.
    let (mut sources, kernel) = sources::open(&args.source, &args.kernel_setup, 1)?;
    let printed = print(&mut sources, args.format.style, args.times.ns, args.live.options());
    // Put back (or removed) once the sources, which read it, are closed: an instance whose
    // buffers are still open cannot be removed.
    drop(sources);
    drop(kernel);
    printed
}

/// Reads `sources` until one stops, printing their events merged, then a table per source.
fn print(sources: &mut [Source], style: Style, in_ns: bool, options: LiveOptions) -> Result<()> {
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
    let mut labelled = Labelled {
        printer: printer(sources, style, in_ns),
        labels: names.iter().map(|name| BufferLabel { name: name.as_deref(), width }).collect(),
        source_of_queue,
    };
    let together =
        Mutex::new(Together { merger: Merger::new(labelled.source_of_queue.len()), horizons: vec![0; sources.len()] });
    let started = Instant::now();
    let results: Vec<Result<(Finished, Vec<Tally>)>> = std::thread::scope(|scope| {
        let threads: Vec<_> = sources
            .iter_mut()
            .zip(queues)
            .enumerate()
            .map(|(index, (source, queues))| {
                let ids = source.ids.as_ref();
                let reader = SourceReader { index, queues, ids, together: &together, stop: &stop, clock };
                let session = &mut source.sessions[0];
                scope.spawn(move || reader.read(session, options))
            })
            .collect();
        // This thread prints, so that the readers never wait for the terminal.
        loop {
            let (items, finished) = {
                let mut together = together.lock();
                (together.releasable(), together.finished())
            };
            labelled.print(items);
            if finished {
                break;
            }
            std::thread::sleep(PRINT_INTERVAL);
        }
        threads.into_iter().map(|t| t.join().unwrap_or_else(|_| Err(anyhow!("a reader thread panicked")))).collect()
    });
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
struct SourceReader<'t> {
    /// The source's index.
    index: usize,
    /// Its CPUs' queues in the merger.
    queues: Range<usize>,
    /// How its events are numbered in what is printed, where that differs from its own.
    ids: Option<&'t EventIds>,
    together: &'t Mutex<Together>,
    /// Set on Ctrl-C, and by the first reader to stop, so that the other stops too.
    stop: &'t AtomicBool,
    /// The clock both sources are on.
    clock: ClockId,
}

impl SourceReader<'_> {
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
                let mut item = MergedItem::of_record(cpus[cpu_index], record, &clock);
                if let (Some(ids), MergedItem::Event { payload, .. }) = (self.ids, &mut item) {
                    ids.renumber(payload);
                }
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
                Ok(())
            },
        );
        // Ordering: Relaxed; the flag carries no data. Whatever ended this source ends the other.
        self.stop.store(true, Ordering::Relaxed);
        // A source that stopped holds no one back (also when it stopped on an error).
        self.together.lock().horizons[self.index] = u64::MAX;
        Ok((finished?, tallies))
    }
}

/// The printer of both `sources`' events as `style` (nanosecond timestamps if `in_ns`): every
/// source's formats as they are numbered together, the kernel's symbols and task names as they
/// are now, and the producer's threads the kernel does not name as they are in `/proc`.
fn printer(sources: &[Source], style: Style, in_ns: bool) -> Printer {
    let formats = sources::formats_together(sources);
    let kernel = sources.iter().find_map(|s| s.sessions[0].tracing());
    let symbols = kernel.map(Symbols::of_kernel).unwrap_or_default();
    let clock = sources.iter().find_map(|s| s.target.trace_clock());
    let events =
        EventText::new(formats, &symbols, page_size(sources)).naming_threads_of(sources::producer_pid(sources));
    Printer::new(style, Timestamps::new(clock.as_deref(), in_ns), events)
}

/// The sources' sub-buffer size (the kernel's).
fn page_size(sources: &[Source]) -> u32 {
    sources[0].sessions[0].subbuf_size
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
