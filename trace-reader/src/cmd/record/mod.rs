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
//!
//! The kernel and a producer are recorded together ([`super::sources`]) as two buffers of one file,
//! on one clock, their events numbered apart ([`crate::event_ids`]):
//!
//! ```text
//!   kernel instance  trace_clock := mono ──► sessions ──► spools of buffer 0 (top-level)
//!   producer         CLOCK(mono)         ──► sessions ──► spools of buffer "hyp"
//!                                              │            (event ids renumbered)
//!                    the producer exits ───────┴──► every reader stops; the file is written:
//!                    one header (formats of both, kallsyms, task names: the kernel's
//!                    read at the end, the producer's threads seen while it ran),
//!                    then each buffer's CPUs
//! ```

mod dat_file;
mod kernel_files;
mod progress;
mod thread_names;
mod writing;

use super::sources::{self, Source};
use super::{interrupt_flag, rows};
use crate::cli::RecordArgs;
use crate::live::{Finished, LiveOptions, Stop, Tally};
use crate::source::{CpuReader, Session};
use crate::table::{self, Row};
use crate::tracedat::{BufferCpu, DatWriter, Spool};
use anyhow::{Context, Result, anyhow};
use indicatif::{HumanBytes, ProgressBar, ProgressDrawTarget, ProgressStyle};
use kernel_files::kernel_task_names;
use progress::{Progress, ProgressLine};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::ScopedJoinHandle;
use std::time::Duration;
use thread_names::ProducerThreads;
use writing::{Destination, Recording, record_session};

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
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (sources, kernel) = sources::open(&args.source, &args.kernel_setup, threads)?;
    let recorded = record(sources, args);
    // Put back (or removed) once the sources, which read it, are closed.
    drop(kernel);
    recorded
}

/// Records `sources` as `args` say, into the file.
fn record(mut sources: Vec<Source>, args: &RecordArgs) -> Result<()> {
    // Only once connected: until then Ctrl-C ends the wait for a producer (nothing is written).
    let stop = interrupt_flag()?;
    let mut writer = dat_file::create_file(&sources, args)?;
    let page_size = sources[0].sessions[0].subbuf_size;
    let options = ReaderOptions { live: args.live.options(), pin: !args.no_pin, realtime: args.realtime };
    let progress: Vec<Progress> = sources.iter().flat_map(|s| &s.sessions).map(|_| Progress::default()).collect();
    let line = ProgressLine::new(&progress, u64::from(page_size));
    let spools = spools_by_session(&mut writer, &sources)?;
    let mut threads = ProducerThreads::of(&sources);
    let results = read_sessions(&mut sources, spools, page_size, options, &stop, &line, &mut threads);
    let secs = line.finish();
    let mut outcome = Outcome::collect(&sources, results, secs)?;
    // A reader that failed after others (or itself) had read pages: what was read is kept, in
    // a complete file, and the failure reported after it. One that failed before anything was
    // read leaves the output as it was.
    if writer.pages() == 0
        && let Some(e) = outcome.failure.take()
    {
        return Err(e);
    }
    let pages = writer.pages();
    if let Some(names) = threads.with_kernel_names(sources.iter().find_map(|s| kernel_task_names(&s.target))) {
        writer.set_cmdlines(names);
    }
    let size = finish_file(writer, &outcome.rows, &args.output)?;
    summarize(&sources, outcome, &args.output, pages, size)
}

/// Each session's spools in `writer`, in the order of the session's CPUs, for every session of
/// every source in turn (source `i` fills buffer `i`).
fn spools_by_session<'w>(writer: &'w mut DatWriter, sources: &[Source]) -> Result<Vec<Vec<&'w mut Spool>>> {
    let mut by_cpu: BTreeMap<BufferCpu, &mut Spool> = writer.spools().collect();
    let mut take = |at: BufferCpu| by_cpu.remove(&at).with_context(|| format!("cpu {} has no spool", at.cpu));
    let mut spools = Vec::new();
    for (buffer, source) in sources.iter().enumerate() {
        for session in &source.sessions {
            spools.push(session.cpus.iter().map(|c| take(BufferCpu { buffer, cpu: c.cpu() })).collect::<Result<_>>()?);
        }
    }
    Ok(spools)
}

/// Records each session of `sources` on a thread of its own, into its spools (pages of
/// `page_size` bytes), showing progress on `line` until every thread has stopped: what each
/// returned, in the order of the sessions, then the error of a thread that could not be started
/// (the others are told to stop then).
fn read_sessions(
    sources: &mut [Source],
    spools: Vec<Vec<&mut Spool>>,
    page_size: u32,
    options: ReaderOptions,
    stop: &AtomicBool,
    line: &ProgressLine<'_>,
    threads: &mut ProducerThreads,
) -> Vec<SessionResult> {
    let sessions = sources.iter_mut().flat_map(|Source { sessions, ids, .. }| {
        let to = Destination { page_size, ids: ids.as_ref() };
        sessions.iter_mut().map(move |session| (session, to))
    });
    std::thread::scope(|scope| {
        let mut readers = Vec::new();
        let mut failed = None;
        for (i, (((session, to), spools), progress)) in sessions.zip(spools).zip(line.progress).enumerate() {
            let spawned = std::thread::Builder::new()
                .name(format!("record-{i}"))
                .spawn_scoped(scope, move || read_session(session, Recording { spools, to, stop, progress }, options));
            match spawned {
                Ok(thread) => readers.push(thread),
                Err(e) => {
                    // Ordering: Relaxed; the flag carries no data.
                    stop.store(true, Ordering::Relaxed);
                    failed = Some(anyhow!(e).context("starting a reader thread"));
                    break;
                }
            }
        }
        let mut results = join_showing(readers, line, threads);
        results.extend(failed.map(Err));
        results
    })
}

/// Waits for every reader thread, showing progress on `line` and looking at the producer's
/// `threads` meanwhile: what each reader returned.
fn join_showing(
    readers: Vec<ScopedJoinHandle<'_, SessionResult>>,
    line: &ProgressLine<'_>,
    threads: &mut ProducerThreads,
) -> Vec<SessionResult> {
    loop {
        threads.look();
        if readers.iter().all(|t| t.is_finished()) {
            break;
        }
        line.show();
        std::thread::sleep(Duration::from_millis(100));
    }
    readers.into_iter().map(|t| t.join().unwrap_or_else(|_| Err(anyhow!("a reader thread panicked")))).collect()
}

/// A reader thread: runs where `options` say, then records `session` into `spools`. On an
/// error, or when its producer went away (the end of what is traced, when the kernel is
/// recorded beside it), it has the other threads stop too.
fn read_session(session: &mut Session, recording: Recording<'_, '_>, options: ReaderOptions) -> SessionResult {
    let stop = recording.stop;
    if options.pin {
        pin_to_cpus(session);
    }
    let result = if options.realtime { enter_realtime(session) } else { Ok(()) }
        .and_then(|()| record_session(session, recording, options.live));
    if result.as_ref().is_ok_and(|(finished, _)| finished.stop != Stop::Hangup) {
        return result;
    }
    // Ordering: Relaxed; the flag carries no data.
    stop.store(true, Ordering::Relaxed);
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
    /// Why reading stopped: the producer's going away if a session saw it (it ends a recording
    /// of the kernel beside it), else why the first session that ended without an error stopped.
    stop: Option<Stop>,
    /// The first error, in session order.
    failure: Option<anyhow::Error>,
    /// Problems found in what a producer that went away left.
    damage: usize,
    /// For each source, a row per CPU recorded, in CPU order.
    rows: Vec<Vec<Row>>,
}

impl Outcome {
    /// Puts together what the threads of the sessions of `sources` returned (in their order),
    /// over a reading of `secs` seconds.
    fn collect(sources: &[Source], results: Vec<SessionResult>, secs: f64) -> Result<Self> {
        let mut outcome = Self { stop: None, failure: None, damage: 0, rows: vec![Vec::new(); sources.len()] };
        let sessions = sources.iter().enumerate().flat_map(|(i, s)| s.sessions.iter().map(move |session| (i, session)));
        for ((source, session), result) in sessions.zip(results) {
            match result {
                Ok((finished, tallies)) => {
                    if outcome.stop.is_none() || finished.stop == Stop::Hangup {
                        outcome.stop = Some(finished.stop);
                    }
                    outcome.damage += finished.damage;
                    outcome.rows[source].extend(rows(session, &tallies, secs)?);
                }
                Err(e) => drop(outcome.failure.get_or_insert(e)),
            }
        }
        for rows in &mut outcome.rows {
            rows.sort_by_key(|r| r.cpu);
        }
        Ok(outcome)
    }
}

/// Assembles the file from its spools, with the CPUs' statistics of `rows` (a list per buffer),
/// showing a progress bar: the file's size.
fn finish_file(writer: DatWriter, rows: &[Vec<Row>], output: &Path) -> Result<u64> {
    let stats: Vec<Vec<String>> = rows.iter().map(|rows| rows.iter().map(table::cpustat).collect()).collect();
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{spinner} writing {msg} [{bar:30}] {bytes}/{total_bytes}")
            .expect("a valid template"),
    );
    bar.set_message(output.display().to_string());
    let size = writer
        .finish(&stats, |copied, total| {
            bar.set_length(total);
            bar.set_position(copied);
        })
        .with_context(|| format!("writing {}", output.display()))?;
    bar.finish_and_clear();
    Ok(size)
}

/// Prints the per-CPU table of each source (headed by its name when there are several) and
/// what `output` holds (`pages` pages, `size` bytes), and ends with the error that stopped the
/// recording, if one did, else with the damage found.
fn summarize(sources: &[Source], outcome: Outcome, output: &Path, pages: u64, size: u64) -> Result<()> {
    for (source, rows) in sources.iter().zip(&outcome.rows) {
        if sources.len() > 1 {
            eprintln!("{}:", source.label());
        }
        eprint!("{}", table::summary(rows));
    }
    let events: u64 = outcome.rows.iter().flatten().filter_map(|r| r.tally).map(|t| t.events).sum();
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
