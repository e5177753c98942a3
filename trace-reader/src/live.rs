//! The consuming read loop `stream` and `record` share: drain every CPU, hand each record to the
//! caller, wait on the CPUs' wakeups, and stop on Ctrl-C, after a duration or when the producer
//! goes away — then read what is left, so that nothing committed is missed.

use crate::source::{CpuReader, Session};
use anyhow::{Context, Result};
use ring_mmap::client::{HANGUP_POLL, is_hangup};
use ring_mmap::{DrainScope, Error, Lost, PageCopy, Record, Remaining};
use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::io::Errno;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Why reading stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// The duration asked for passed.
    Duration,
    /// Ctrl-C (or SIGTERM).
    Interrupted,
    /// The producer went away; everything it committed was read.
    Hangup,
}

impl Stop {
    /// Why, in words for the user.
    pub fn reason(self) -> &'static str {
        match self {
            Stop::Duration => "stopped after --duration",
            Stop::Interrupted => "interrupted",
            Stop::Hangup => "the producer exited",
        }
    }
}

/// What was read from one CPU.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Events read.
    pub events: u64,
    /// Events reported lost, where the count was known.
    pub lost: u64,
    /// Losses of unknown size reported.
    pub lost_unknown: u64,
    /// Payload bytes read.
    pub bytes: u64,
}

impl Tally {
    /// Counts one record.
    pub fn count(&mut self, record: &Record<'_>) {
        match record {
            Record::Event(e) => {
                self.events += 1;
                self.bytes += e.payload.len() as u64;
            }
            Record::Lost(lost) => self.count_lost(*lost),
        }
    }

    /// Counts a page copy: the loss before it and its events.
    pub fn count_copy(&mut self, copy: &PageCopy) {
        self.count_lost(copy.page.lost);
        self.events += copy.events;
        self.bytes += copy.payload_bytes;
    }

    fn count_lost(&mut self, lost: Lost) {
        match lost {
            Lost::Count(n) => self.lost = self.lost.saturating_add(n),
            Lost::Unknown => self.lost_unknown += 1,
            Lost::None => {}
        }
    }
}

/// How to read.
#[derive(Debug, Clone, Copy)]
pub struct LiveOptions {
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// Longest wait between two reads: a page the writer is still filling rings no doorbell,
    /// so its events are picked up at this interval.
    pub interval: Duration,
}

/// How [`run`] reads each CPU. `cpu_index` is the CPU's index into `session.cpus`.
pub trait Reading {
    /// Reads what the CPU has now ([`CpuReader::drain`] or a variant of it). `scope` is what
    /// needs reading: everything on the first and last passes and after the interval passed
    /// without a doorbell; after a doorbell, finished pages are enough (a reader may read
    /// more).
    fn live(&mut self, cpu_index: usize, cpu: &mut CpuReader, scope: DrainScope) -> Result<u64, Error>;
    /// Reads what the producer left after it went away ([`CpuReader::drain_remaining`]).
    fn remaining(&mut self, cpu_index: usize, cpu: &mut CpuReader) -> Result<Remaining, Error>;
}

/// The [`Reading`] that hands every record of the CPU at `cpu_index`, in that CPU's order, to the
/// function: `f(cpu_index, record)`.
pub struct EachRecord<F>(pub F);

impl<F: FnMut(usize, Record<'_>)> Reading for EachRecord<F> {
    /// Everything, whatever the scope: events are shown as soon as they are read.
    fn live(&mut self, cpu_index: usize, cpu: &mut CpuReader, _scope: DrainScope) -> Result<u64, Error> {
        cpu.drain(|r| (self.0)(cpu_index, r))
    }

    fn remaining(&mut self, cpu_index: usize, cpu: &mut CpuReader) -> Result<Remaining, Error> {
        cpu.drain_remaining(|r| (self.0)(cpu_index, r))
    }
}

/// How [`run`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finished {
    /// Why it stopped.
    pub stop: Stop,
    /// Problems found in what a producer that went away left (each printed as a warning when
    /// found): its events that could be read were read all the same.
    pub damage: usize,
}

/// Reads `session` until a stop condition, each CPU as `reading` says; `round(session, last)`
/// runs after each pass over the CPUs (`last` on the final one). `stop` is set by a signal
/// handler.
pub fn run(
    session: &mut Session,
    opts: LiveOptions,
    stop: &AtomicBool,
    reading: &mut impl Reading,
    mut round: impl FnMut(&Session, bool) -> Result<()>,
) -> Result<Finished> {
    let start = Instant::now();
    let mut scope = DrainScope::Everything;
    let why = loop {
        let mut hangup = false;
        for (cpu_index, cpu) in session.cpus.iter_mut().enumerate() {
            match reading.live(cpu_index, cpu, scope) {
                Ok(_) => {}
                Err(Error::Hangup) => hangup = true,
                Err(e) => return Err(e).with_context(|| format!("reading cpu {}", cpu.cpu())),
            }
        }
        round(session, false)?;
        if hangup {
            break Stop::Hangup;
        }
        if stop.load(Ordering::Relaxed) {
            break Stop::Interrupted;
        }
        let left = opts.duration.map(|d| d.saturating_sub(start.elapsed()));
        if left == Some(Duration::ZERO) {
            break Stop::Duration;
        }
        match wait(session, left.map_or(opts.interval, |l| l.min(opts.interval))) {
            Ok(Woken::Doorbell) => scope = DrainScope::FinishedPages,
            Ok(Woken::Timeout) => scope = DrainScope::Everything,
            Err(Error::Hangup) => break Stop::Hangup,
            Err(e) => return Err(e).context("waiting for events"),
        }
    };
    let mut damage = 0;
    for (cpu_index, cpu) in session.cpus.iter_mut().enumerate() {
        let left = match why {
            // The mapping no longer changes: read everything the producer left in it.
            Stop::Hangup => reading.remaining(cpu_index, cpu),
            _ => reading.live(cpu_index, cpu, DrainScope::Everything).map(|_| Remaining::default()),
        };
        let left = match left {
            Ok(left) => left,
            // The producer went away during this last pass: take what it left.
            Err(Error::Hangup) => {
                reading.remaining(cpu_index, cpu).with_context(|| format!("draining cpu {}", cpu.cpu()))?
            }
            Err(e) => return Err(e).with_context(|| format!("reading cpu {}", cpu.cpu())),
        };
        for problem in &left.damage {
            eprintln!("trace-reader: warning: cpu {}: {problem}", cpu.cpu());
        }
        damage += left.damage.len();
    }
    round(session, true)?;
    Ok(Finished { stop: why, damage })
}

/// How [`wait`] ended.
enum Woken {
    /// A CPU has a finished page (its doorbell rang, or it had one already).
    Doorbell,
    /// The timeout passed (or a signal came) first.
    Timeout,
}

/// Waits until a CPU has a finished page, `timeout` passes, or the producer goes away.
fn wait(session: &mut Session, timeout: Duration) -> Result<Woken, Error> {
    let mut ready = false;
    for cpu in &mut session.cpus {
        ready |= cpu.arm(1)?;
    }
    if ready {
        return Ok(Woken::Doorbell);
    }
    let started = Instant::now();
    let ts = Timespec { tv_sec: timeout.as_secs() as i64, tv_nsec: i64::from(timeout.subsec_nanos()) };
    let hangup = session.connection.as_ref().map(|c| c.hangup_fd());
    let mut fds: Vec<PollFd<'_>> = session.cpus.iter().map(|c| PollFd::new(c, PollFlags::IN)).collect();
    if let Some(h) = &hangup {
        fds.push(PollFd::new(h, HANGUP_POLL));
    }
    let woken = match rustix::event::poll(&mut fds, Some(&ts)) {
        Ok(0) | Err(Errno::INTR) => Woken::Timeout,
        Ok(_) => Woken::Doorbell,
        Err(e) => return Err(Error::Io { what: "poll", source: e.into() }),
    };
    if hangup.is_some() && fds.last().is_some_and(|f| is_hangup(f.revents())) {
        return Err(Error::Hangup);
    }
    let rung: Vec<bool> = fds.iter().map(|f| !f.revents().is_empty()).collect();
    drop(fds);
    for (cpu, rang) in session.cpus.iter().zip(rung) {
        if rang {
            cpu.clear_wakeup();
        }
    }
    // A kernel buffer's poll stays readable while it holds unread data the writer is still
    // adding to: do not spin on it. (Doorbells are armed per wait and cleared above.)
    if session.connection.is_none() {
        let min = timeout.min(Duration::from_millis(5));
        if let Some(rest) = min.checked_sub(started.elapsed()) {
            std::thread::sleep(rest);
        }
    }
    Ok(woken)
}

impl rustix::fd::AsFd for CpuReader {
    fn as_fd(&self) -> rustix::fd::BorrowedFd<'_> {
        self.wait_fd()
    }
}
