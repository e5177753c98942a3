//! `record`: consume events into a trace.dat file.
//!
//! The CPUs are read by as many threads as the machine has CPUs (fewer if fewer are recorded),
//! each over a session of its own (a connection of its own, for a producer) and into each CPU's
//! own spool of the file, the way trace-cmd records with a reader per CPU: a CPU whose buffer
//! fills is read as soon as the machine can run its reader, rather than after one reader has
//! gone over every other CPU, and copying pages into the file is spread over the machine. Each
//! thread runs on the CPUs it reads, where the machine has them ([`ring_mmap::affinity`];
//! `--no-pin` leaves the placing to the scheduler); with `--realtime` each runs under
//! `SCHED_FIFO` ([`ring_mmap::realtime`]), the spools' writing threads not. The main thread shows
//! progress.

use super::{interrupt_flag, rows};
use crate::cli::RecordArgs;
use crate::live::{self, Finished, LiveOptions, Stop, Tally};
use crate::source::{CpuReader, Session, Target};
use crate::table::{self, Row};
use crate::tracedat::{BufferSpec, DatError, DatInfo, DatWriter, PageBuilder, Spool, SpoolIo};
use anyhow::{Context, Result, anyhow, bail};
use indicatif::{HumanBytes, ProgressBar, ProgressDrawTarget, ProgressStyle};
use ring_core::{ClockParams, EventIter};
use ring_mmap::{DrainScope, Error, PageCopy, Record, Remaining};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::ScopedJoinHandle;
use std::time::{Duration, Instant};

/// What one CPU's reader thread writes.
struct CpuRecording<'s> {
    cpu: u32,
    spool: &'s mut Spool,
    builder: PageBuilder,
    tally: Tally,
    clock: ClockParams,
    /// The first write error: recording stops at the next round.
    error: Option<anyhow::Error>,
}

impl CpuRecording<'_> {
    fn take(&mut self, record: Record<'_>) {
        if self.error.is_some() {
            return;
        }
        self.tally.count(&record);
        let Self { cpu, spool, builder, clock, .. } = self;
        let mut out = |page: &[u8]| spool.write_page(page);
        let result = match record {
            Record::Lost(lost) => builder.lost(lost, &mut out).map_err(anyhow::Error::from),
            Record::Event(e) => {
                let ns = clock.convert(e.timestamp);
                match builder.push(ns, e.payload.len(), |d| _ = e.payload.copy_to(d), &mut out) {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => Err(anyhow!(e).context(format!("cpu {cpu}"))),
                    Err(e) => Err(e.into()),
                }
            }
        };
        if let Err(e) = result {
            self.error = Some(e.context("writing the trace file"));
        }
    }

    /// Takes a reader page copied whole ([`PageCopy`]). A copy that begins at the start of its
    /// page is stored as it is when its timestamps are nanoseconds already (the producer's clock
    /// is the identity): one page write instead of re-encoding every event. Otherwise, and when
    /// a loss count would not fit on it, its events go through the page builder one by one.
    fn take_copy(&mut self, copy: &PageCopy, page: &mut [u8]) {
        if self.error.is_some() {
            return;
        }
        self.tally.count_copy(copy);
        let Self { cpu, spool, builder, clock, .. } = self;
        let mut out = |page: &[u8]| spool.write_page(page);
        let whole = *clock == ClockParams::IDENTITY && copy.page.start == 0;
        let stored = if whole { builder.put_page(page, copy.events, copy.page.lost, &mut out) } else { Ok(false) };
        let result = match stored {
            Ok(true) => Ok(()),
            Ok(false) => Self::push_events(builder, clock, copy, page, &mut out).context(format!("cpu {cpu}")),
            Err(e) => Err(e.into()),
        };
        if let Err(e) = result {
            self.error = Some(e.context("writing the trace file"));
        }
    }

    /// The events of `copy` from its start, pushed into `builder` one by one.
    fn push_events(
        builder: &mut PageBuilder,
        clock: &ClockParams,
        copy: &PageCopy,
        page: &[u8],
        out: &mut impl FnMut(&[u8]) -> Result<(), DatError>,
    ) -> Result<()> {
        builder.lost(copy.page.lost, out)?;
        for event in EventIter::starting_at(page, copy.page.start as usize)? {
            let event = event?;
            let payload = event.payload;
            builder.push(clock.convert(event.timestamp), payload.len(), |d| d.copy_from_slice(payload), out)??;
        }
        Ok(())
    }

    /// Writes the page being built.
    fn finish(&mut self) -> Result<(), DatError> {
        let spool = &mut *self.spool;
        self.builder.flush(&mut |page: &[u8]| spool.write_page(page))
    }
}

/// How `record` reads a session's CPUs (`recs[cpu_index]` records `session.cpus[cpu_index]`):
/// live, by page copies into `page` (one sub-buffer); after the producer went away, record by
/// record from what it left.
struct Copies<'r, 's> {
    recs: &'r [RefCell<CpuRecording<'s>>],
    page: Vec<u8>,
}

impl live::Reading for Copies<'_, '_> {
    fn live(&mut self, cpu_index: usize, cpu: &mut CpuReader, scope: DrainScope) -> Result<u64, Error> {
        let rec = &self.recs[cpu_index];
        cpu.drain_copies(scope, &mut self.page, |copy, page| rec.borrow_mut().take_copy(copy, page))
    }

    fn remaining(&mut self, cpu_index: usize, cpu: &mut CpuReader) -> Result<Remaining, Error> {
        let rec = &self.recs[cpu_index];
        cpu.drain_remaining(|record| rec.borrow_mut().take(record))
    }
}

/// What one reader thread has done so far, for the progress line.
#[derive(Debug, Default)]
struct Progress {
    events: AtomicU64,
    lost: AtomicU64,
    pages: AtomicU64,
}

impl Progress {
    /// Shows what the thread's CPUs have recorded so far.
    fn publish(&self, recs: &[RefCell<CpuRecording<'_>>]) {
        let (mut events, mut lost, mut pages) = (0, 0, 0);
        for r in recs {
            let r = r.borrow();
            (events, lost, pages) = (events + r.tally.events, lost + r.tally.lost, pages + r.spool.pages());
        }
        // Ordering: Relaxed; the counts are only shown, and each is exact on its own.
        self.events.store(events, Ordering::Relaxed);
        self.lost.store(lost, Ordering::Relaxed);
        self.pages.store(pages, Ordering::Relaxed);
    }
}

/// Records the CPUs of `session`, each into its spool (`spools[cpu_index]` for
/// `session.cpus[cpu_index]`), until a stop condition: why it stopped and what was read from each
/// CPU.
fn record_session(
    session: &mut Session,
    spools: Vec<&mut Spool>,
    opts: LiveOptions,
    stop: &AtomicBool,
    progress: &Progress,
) -> Result<(Finished, Vec<Tally>)> {
    let page_size = session.subbuf_size as usize;
    let recs: Vec<RefCell<CpuRecording<'_>>> = session
        .cpus
        .iter()
        .zip(spools)
        .map(|(cpu, spool)| {
            RefCell::new(CpuRecording {
                cpu: cpu.cpu(),
                spool,
                builder: PageBuilder::new(page_size),
                tally: Tally::default(),
                clock: session.clock,
                error: None,
            })
        })
        .collect();
    let mut reading = Copies { recs: &recs, page: vec![0; page_size] };
    // What a dead producer's damaged buffer could not give is printed as warnings by `run`; the
    // file holds what could be read, so the recording goes on and says so at the end.
    let finished = live::run(session, opts, stop, &mut reading, |_, _| {
        if let Some(e) = recs.iter().find_map(|r| r.borrow_mut().error.take()) {
            return Err(e);
        }
        progress.publish(&recs);
        Ok(())
    })?;
    for r in &recs {
        let mut r = r.borrow_mut();
        let cpu = r.cpu;
        r.finish().with_context(|| format!("writing the trace file (cpu {cpu})"))?;
    }
    progress.publish(&recs);
    Ok((finished, recs.into_iter().map(|r| r.into_inner().tally).collect()))
}

/// The trace clock's name: the kernel's from `trace_clock`; a producer's timestamps are
/// converted to nanoseconds, and trace-cmd shows nanoseconds when no clock is named.
fn clock_name(target: &Target) -> Option<String> {
    let Target::Kernel { tracing } = target else { return None };
    let text = std::fs::read_to_string(tracing.join("trace_clock")).ok()?;
    crate::tracedat::clock_in_use(&text)
}

/// The tracefs root above `tracing`: where the files every instance shares live (an instance
/// has no `saved_cmdlines` or `printk_formats` of its own).
fn tracefs_root(tracing: &Path) -> &Path {
    match tracing.parent() {
        Some(parent) if parent.file_name().is_some_and(|n| n == "instances") => parent.parent().unwrap_or(tracing),
        _ => tracing,
    }
}

/// The text of `path`, or nothing, with a warning, if it cannot be read: what the recording
/// would name with it (addresses, processes) is left unnamed, its events are complete.
fn read_or_warn(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| {
        eprintln!("trace-reader: recording without {}: {e}", path.display());
        String::new()
    })
}

/// Adds what trace-cmd needs to name a kernel recording's addresses: kernel symbols and the
/// `printk` formats (of `bprint` events).
fn kernel_symbols(info: &mut DatInfo, tracing: &Path) {
    info.kallsyms = read_or_warn(Path::new("/proc/kallsyms"));
    info.printk_formats = read_or_warn(&tracefs_root(tracing).join("printk_formats"));
}

/// The kernel's task names (`saved_cmdlines`), read once the recording has stopped, as
/// `trace-cmd record` does: the tasks the recorded events name include those that began while
/// it ran.
fn kernel_task_names(target: &Target) -> Option<String> {
    let Target::Kernel { tracing } = target else { return None };
    Some(read_or_warn(&tracefs_root(tracing).join("saved_cmdlines")))
}

/// Moves the calling reader thread to `SCHED_FIFO`, and has it sleep at once for the answers of
/// its session's producer instead of polling for them first: a producer's thread answering on
/// the same CPU at the same real-time priority (hyp-sim's does) cannot take the CPU from a
/// reader polling for its answer, so every poll would run its whole window for nothing.
fn enter_realtime(session: &Session) -> Result<()> {
    ring_mmap::realtime::enter().map_err(|e| {
        anyhow!(std::io::Error::from(e))
            .context("--realtime: taking SCHED_FIFO (needs CAP_SYS_NICE or an RLIMIT_RTPRIO of 1)")
    })?;
    if let Some(connection) = &session.connection {
        connection.set_answer_spin(Duration::ZERO);
    }
    Ok(())
}

/// How the reader threads run.
#[derive(Debug, Clone, Copy)]
struct ReaderOptions {
    /// When to stop, how often to look.
    live: LiveOptions,
    /// Each thread runs on the CPUs it reads (`--no-pin` unset).
    pin: bool,
    /// Each thread runs under `SCHED_FIFO` (`--realtime`).
    realtime: bool,
}

/// What a reader thread ends with: why it stopped and what it read from each of its CPUs.
type SessionResult = Result<(Finished, Vec<Tally>)>;

/// Runs `record`.
pub fn run(args: &RecordArgs) -> Result<()> {
    // Set up until the recording ends (it is dropped after the sessions, which read it).
    let (target, _kernel) = args.source.prepared_target(&args.kernel_setup)?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut sessions = Session::open_groups(&target, &args.source.cpus, threads)?;
    // Only once connected: until then Ctrl-C ends the wait for a producer (nothing is written).
    let stop = interrupt_flag()?;
    let Some(first) = sessions.first() else { bail!("no CPU to record") };
    let page_size = u64::from(first.subbuf_size);
    let mut writer = create_file(&target, first, &recorded_cpus(&sessions), args)?;
    let options = ReaderOptions { live: args.live.options(), pin: !args.no_pin, realtime: args.realtime };
    let progress: Vec<Progress> = sessions.iter().map(|_| Progress::default()).collect();
    let line = ProgressLine::new(&progress, page_size);
    let spools = spools_by_session(&mut writer, &sessions)?;
    let results = read_sessions(&mut sessions, spools, options, &stop, &line);
    let secs = line.finish();
    let mut outcome = Outcome::collect(&sessions, results, secs)?;
    // A reader that failed after others (or itself) had read pages: what was read is kept, in
    // a complete file, and the failure reported after it. One that failed before anything was
    // read leaves the output as it was.
    if writer.pages() == 0
        && let Some(e) = outcome.failure.take()
    {
        return Err(e);
    }
    let pages = writer.pages();
    if let Some(names) = kernel_task_names(&target) {
        writer.set_cmdlines(names);
    }
    let size = finish_file(writer, &outcome.rows, &args.output)?;
    summarize(outcome, &args.output, pages, size)
}

/// The CPUs the sessions read, in CPU order.
fn recorded_cpus(sessions: &[Session]) -> Vec<u32> {
    let mut cpus: Vec<u32> = sessions.iter().flat_map(|s| s.cpus.iter().map(CpuReader::cpu)).collect();
    cpus.sort_unstable();
    cpus
}

/// Creates the trace.dat file of `args` for `cpus`, with the page size, event formats and CPU
/// count of `first` (every session reads the same target).
fn create_file(target: &Target, first: &Session, cpus: &[u32], args: &RecordArgs) -> Result<DatWriter> {
    let mut info = DatInfo::new(first.subbuf_size, &first.formats, clock_name(target));
    if let Target::Kernel { tracing } = target {
        kernel_symbols(&mut info, tracing);
    }
    let io = if args.direct_io { SpoolIo::Direct } else { SpoolIo::Buffered };
    DatWriter::create(&args.output, info, &[BufferSpec::top(first.nr_cpus, cpus)], io)
        .with_context(|| format!("creating {}", args.output.display()))
}

/// Each session's spools in `writer`, in the order of the session's CPUs.
fn spools_by_session<'w>(writer: &'w mut DatWriter, sessions: &[Session]) -> Result<Vec<Vec<&'w mut Spool>>> {
    let mut by_cpu: BTreeMap<u32, &mut Spool> = writer.spools().map(|(at, spool)| (at.cpu, spool)).collect();
    let mut take = |cpu: u32| by_cpu.remove(&cpu).with_context(|| format!("cpu {cpu} has no spool"));
    sessions.iter().map(|s| s.cpus.iter().map(|c| take(c.cpu())).collect()).collect()
}

/// The progress line on stderr while the readers run: events, bytes and losses so far.
struct ProgressLine<'p> {
    bar: ProgressBar,
    /// The reader threads' counts.
    progress: &'p [Progress],
    started: Instant,
    /// Bytes per page.
    page_size: u64,
}

impl<'p> ProgressLine<'p> {
    /// A line showing `progress`, read from now on.
    fn new(progress: &'p [Progress], page_size: u64) -> Self {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{spinner} recording [{elapsed_precise}] {msg}").expect("a valid template"),
        );
        Self { bar, progress, started: Instant::now(), page_size }
    }

    /// Shows the counts the reader threads published last.
    fn show(&self) {
        let sum = |f: fn(&Progress) -> &AtomicU64| -> u64 {
            // Ordering: Relaxed; see `Progress::publish`.
            self.progress.iter().map(|p| f(p).load(Ordering::Relaxed)).sum()
        };
        let (events, lost, pages) = (sum(|p| &p.events), sum(|p| &p.lost), sum(|p| &p.pages));
        let rate = events as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
        let bytes = HumanBytes(pages * self.page_size);
        self.bar.set_message(format!("{events} events, {bytes}, {rate:.0} events/s, {lost} lost"));
        self.bar.tick();
    }

    /// Clears the line: the seconds the reading took.
    fn finish(self) -> f64 {
        self.bar.finish_and_clear();
        self.started.elapsed().as_secs_f64()
    }
}

/// Records each session on a thread of its own, into its spools, showing progress on `line`
/// until every thread has stopped: what each returned, in the order of `sessions`, then the
/// error of a thread that could not be started (the others are told to stop then).
fn read_sessions(
    sessions: &mut [Session],
    spools: Vec<Vec<&mut Spool>>,
    options: ReaderOptions,
    stop: &AtomicBool,
    line: &ProgressLine<'_>,
) -> Vec<SessionResult> {
    std::thread::scope(|scope| {
        let mut threads = Vec::new();
        let mut failed = None;
        for (i, ((session, spools), progress)) in sessions.iter_mut().zip(spools).zip(line.progress).enumerate() {
            let spawned = std::thread::Builder::new()
                .name(format!("record-{i}"))
                .spawn_scoped(scope, move || read_session(session, spools, options, stop, progress));
            match spawned {
                Ok(thread) => threads.push(thread),
                Err(e) => {
                    // Ordering: Relaxed; the flag carries no data.
                    stop.store(true, Ordering::Relaxed);
                    failed = Some(anyhow!(e).context("starting a reader thread"));
                    break;
                }
            }
        }
        let mut results = join_showing(threads, line);
        results.extend(failed.map(Err));
        results
    })
}

/// Waits for every thread, showing progress on `line` meanwhile: what each returned.
fn join_showing(threads: Vec<ScopedJoinHandle<'_, SessionResult>>, line: &ProgressLine<'_>) -> Vec<SessionResult> {
    while !threads.iter().all(|t| t.is_finished()) {
        line.show();
        std::thread::sleep(Duration::from_millis(100));
    }
    threads.into_iter().map(|t| t.join().unwrap_or_else(|_| Err(anyhow!("a reader thread panicked")))).collect()
}

/// A reader thread: runs where `options` say, then records `session` into `spools`. On an
/// error it has the other threads stop too.
fn read_session(
    session: &mut Session,
    spools: Vec<&mut Spool>,
    options: ReaderOptions,
    stop: &AtomicBool,
    progress: &Progress,
) -> SessionResult {
    if options.pin {
        pin_to_cpus(session);
    }
    let result = if options.realtime { enter_realtime(session) } else { Ok(()) }
        .and_then(|()| record_session(session, spools, options.live, stop, progress));
    if result.is_err() {
        // Ordering: Relaxed; the flag carries no data.
        stop.store(true, Ordering::Relaxed);
    }
    result
}

/// Moves the calling reader thread onto the CPUs `session` reads, where the machine has them;
/// if it cannot, says so and leaves the thread to run anywhere.
fn pin_to_cpus(session: &Session) {
    let cpus: Vec<u32> = session.cpus.iter().map(CpuReader::cpu).collect();
    if let Err(e) = ring_mmap::affinity::run_on(&cpus) {
        eprintln!("trace-reader: the reader of cpus {cpus:?} runs on any CPU: {e}");
    }
}

/// What the reader threads ended with, together.
struct Outcome {
    /// Why the first session (in session order) that ended without an error stopped.
    stop: Option<Stop>,
    /// The first error, in session order.
    failure: Option<anyhow::Error>,
    /// Problems found in what a producer that went away left.
    damage: usize,
    /// A row per CPU recorded, in CPU order.
    rows: Vec<Row>,
}

impl Outcome {
    /// Puts together what the threads of `sessions` returned, over a reading of `secs` seconds.
    fn collect(sessions: &[Session], results: Vec<SessionResult>, secs: f64) -> Result<Self> {
        let mut outcome = Self { stop: None, failure: None, damage: 0, rows: Vec::new() };
        for (session, result) in sessions.iter().zip(results) {
            match result {
                Ok((finished, tallies)) => {
                    outcome.stop.get_or_insert(finished.stop);
                    outcome.damage += finished.damage;
                    outcome.rows.extend(rows(session, &tallies, secs)?);
                }
                Err(e) => drop(outcome.failure.get_or_insert(e)),
            }
        }
        outcome.rows.sort_by_key(|r| r.cpu);
        Ok(outcome)
    }
}

/// Assembles the file from its spools, with the CPUs' statistics of `rows`, showing a progress
/// bar: the file's size.
fn finish_file(writer: DatWriter, rows: &[Row], output: &Path) -> Result<u64> {
    let stats: Vec<String> = rows.iter().map(table::cpustat).collect();
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{spinner} writing {msg} [{bar:30}] {bytes}/{total_bytes}")
            .expect("a valid template"),
    );
    bar.set_message(output.display().to_string());
    let size = writer
        .finish(&[stats], |copied, total| {
            bar.set_length(total);
            bar.set_position(copied);
        })
        .with_context(|| format!("writing {}", output.display()))?;
    bar.finish_and_clear();
    Ok(size)
}

/// Prints the per-CPU table and what `output` holds (`pages` pages, `size` bytes), and ends
/// with the error that stopped the recording, if one did, else with the damage found.
fn summarize(outcome: Outcome, output: &Path, pages: u64, size: u64) -> Result<()> {
    eprint!("{}", table::summary(&outcome.rows));
    let events: u64 = outcome.rows.iter().filter_map(|r| r.tally).map(|t| t.events).sum();
    let why = match (&outcome.failure, outcome.stop) {
        (Some(_), _) => "stopped by an error",
        (None, Some(why)) => why.reason(),
        (None, None) => "no CPU was recorded",
    };
    eprintln!(
        "trace-reader: {why}; wrote {}: {events} events in {} pages, {}",
        output.display(),
        pages,
        HumanBytes(size)
    );
    match outcome.failure {
        Some(e) => Err(e.context(format!("recording stopped early ({} holds what was read before)", output.display()))),
        None => super::fail_if_damaged(outcome.damage),
    }
}
