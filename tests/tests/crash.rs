//! Crash recovery: a file-backed producer (`test-producer --dir`) is SIGKILLed at random moments,
//! from the middle of creating its buffers to long after its rings have wrapped, and its
//! directory is then read post-mortem ([`ring_mmap::BufferDir`], what `trace-reader recover`
//! uses). Each run varies the mode, CPUs, geometry, payload size and nested writes.
//!
//! Checked after every kill: every event recovered is intact (its self-checking payload) and
//! in order without a gap; in overwrite mode the events before the first one recovered are
//! reported lost, exactly; and the last event recovered is where the writer's own record, kept
//! outside the buffer (`hyptrace_tests::progress`), says it can be: at or after its last
//! recorded commit (nothing committed is missing), before the first event it never began (nothing
//! made up). A kill before the buffers exist must give a clear error, never a panic.
//!
//! In half the runs a consumer in this process reads every CPU live over the socket, asking for
//! reader pages back to back, so the kill mostly lands while the producer serves a
//! GET_READER_PAGE. After the hangup it drains the rest from its mapping
//! (`Consumer::drain_remaining`), and the directory is read post-mortem as well. Both are held
//! to what the dead producer's memory holds: every event on any page of the file that the
//! consumer had not read yet must be delivered, so nothing intact is ever reported lost.
//!
//! `HYPTRACE_KILLS` sets the number of kills (default 200; e.g. `HYPTRACE_KILLS=2000`),
//! `HYPTRACE_CRASH_SEED` replays a run.
#![cfg(not(loom))]

use hyptrace_tests::payload;
use hyptrace_tests::progress::{CpuProgress, Progress};
use ring_core::EventIter;
use ring_mmap::{BufferDir, BufferProblem, Connection, Consumer, CpuSource, DirCpu, Error, Lost, Record};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread::JoinHandle;
use std::time::Duration;

/// A small deterministic generator (xorshift64*), so a failing run can be replayed by its seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

/// One producer run.
#[derive(Debug, Clone, Copy)]
struct Scenario {
    overwrite: bool,
    cpus: u32,
    subbuf_size: u32,
    nr_subbufs: u32,
    payload: usize,
    nested: bool,
    /// Kill this long after the producer said it was ready.
    delay: Duration,
    /// Kill at `delay` after spawning it instead, ready or not (buffers half-created).
    early: bool,
    /// A consumer reads every CPU live over the socket until the kill.
    consumer: bool,
}

impl Scenario {
    fn random(rng: &mut Rng) -> Self {
        Self {
            overwrite: rng.below(3) != 0,
            cpus: 1 + rng.below(2) as u32,
            subbuf_size: 4096 << rng.below(2),
            nr_subbufs: 3 + rng.below(6) as u32,
            payload: 8 + rng.below(200) as usize,
            nested: rng.below(2) == 0,
            delay: Duration::from_micros(rng.below(20_000)),
            early: rng.below(10) == 0,
            consumer: rng.below(2) == 0,
        }
    }
}

/// What one CPU's recovery gave.
#[derive(Debug, Default)]
struct Recovered {
    events: u64,
    lost: u64,
    /// Rounds of GET_READER_PAGE requests live consumers made.
    rounds: u64,
}

/// What a live consumer of one CPU saw: everything delivered live and after the hangup, in order.
#[derive(Debug, Default)]
struct Consumed {
    /// Sequence numbers delivered, and the losses reported, in order (`Err(n)`: n lost here).
    items: Vec<Result<u64, u64>>,
    /// Where the consumer stood when the producer hung up, as a payload sequence number: every
    /// earlier event was delivered or reported lost.
    next_at_hangup: u64,
    /// Drains made live, each at least one GET_READER_PAGE request.
    rounds: u64,
}

/// A record as the checks want it: a checked sequence number, a loss, or why it is wrong.
fn item(r: Record<'_>, payload_len: usize) -> Result<Result<u64, u64>, String> {
    match r {
        Record::Lost(Lost::Count(n)) => Ok(Err(n)),
        Record::Lost(other) => Err(format!("unexpected {other:?}")),
        Record::Event(e) => {
            let bytes = e.payload.to_vec();
            match payload::check(&bytes) {
                Ok(seq) if bytes.len() == payload_len.next_multiple_of(4) => Ok(Ok(u64::from(seq))),
                Ok(seq) => Err(format!("event {seq} has {} bytes", bytes.len())),
                Err(torn) => Err(format!("a torn event ({torn:?})")),
            }
        }
    }
}

/// Opens CPU `cpu` of the producer at `socket` and consumes it live on a thread of its own,
/// requesting reader pages back to back, until it hangs up; then drains the rest from the mapping.
fn consume_live(socket: &Path, cpu: u32, payload_len: usize) -> JoinHandle<Result<Consumed, String>> {
    let opened = Connection::connect(socket)
        .and_then(|conn| conn.open_cpu(cpu))
        .and_then(Consumer::new)
        .map_err(|e| format!("opening the CPU: {e}"));
    std::thread::spawn(move || {
        let mut consumer = opened?;
        let (mut items, mut bad, mut rounds) = (Vec::new(), None, 0);
        loop {
            rounds += 1;
            match consumer.drain(|r| keep(r, payload_len, &mut items, &mut bad)) {
                Ok(_) => {}
                Err(Error::Hangup) => break,
                Err(e) => return Err(format!("live drain: {e}")),
            }
        }
        let next_at_hangup = next_after(&items);
        consumer
            .drain_remaining(|r| keep(r, payload_len, &mut items, &mut bad))
            .map_err(|e| format!("drain after the hangup: {e}"))?;
        match bad {
            Some(bad) => Err(bad),
            None => Ok(Consumed { items, next_at_hangup, rounds }),
        }
    })
}

/// Adds record `r` to `items`, or its fault to `bad` (the first one is kept).
fn keep(r: Record<'_>, payload_len: usize, items: &mut Vec<Result<u64, u64>>, bad: &mut Option<String>) {
    match item(r, payload_len) {
        Ok(i) => items.push(i),
        Err(e) => *bad = bad.take().or(Some(e)),
    }
}

/// The payload number after the last event in `items` (0 if none).
fn next_after(items: &[Result<u64, u64>]) -> u64 {
    items.iter().rev().find_map(|i| i.ok()).map_or(0, |last| last + 1)
}

/// Sequence numbers of every event on every page of CPU `cpu`'s file: what the dead producer's
/// memory holds, read without any of the consumer's logic.
fn memory_holds(dir: &Path, cpu: u32) -> Result<Vec<u64>, String> {
    let file = DirCpu::open(dir, cpu).map_err(|e| format!("opening cpu {cpu}'s file: {e}"))?;
    let view = file.view().map_err(|e| format!("cpu {cpu}'s view: {e}"))?;
    let mut seqs = Vec::new();
    for id in 0..view.geometry().nr_subbufs() {
        let page = view.page(id).expect("ids below nr_subbufs exist");
        for event in EventIter::new(&page).into_iter().flatten().map_while(Result::ok) {
            seqs.extend(payload::check(&event.payload.to_vec()).ok().map(u64::from));
        }
    }
    seqs.sort_unstable();
    Ok(seqs)
}

/// Checks a live consumer's view against the dead producer's memory: in order, gaps reported
/// exactly, and every event memory holds that it had not read by the hangup delivered.
///
/// With nested writes a dropped outer event leaves its nested one unwritten: one event lost, two
/// payload numbers skipped. So there a gap of payload numbers may be up to twice the loss.
fn check_consumed(got: &Consumed, held: &[u64], nested: bool) -> Result<(), String> {
    let mut next = None;
    let mut lost_here = 0;
    for &i in &got.items {
        match i {
            Err(n) => lost_here += n,
            Ok(seq) => {
                let most = if nested { 2 * lost_here } else { lost_here };
                if let Some(expected) = next
                    && !(expected + lost_here..=expected + most).contains(&seq)
                {
                    return Err(format!("event {seq} after {expected} with {lost_here} reported lost before it"));
                }
                (next, lost_here) = (Some(seq + 1), 0);
            }
        }
    }
    let delivered: std::collections::HashSet<u64> = got.items.iter().filter_map(|i| i.ok()).collect();
    let from = got.next_at_hangup;
    match held.iter().find(|&&seq| seq >= from && !delivered.contains(&seq)) {
        Some(missing) => Err(format!("event {missing} was intact in memory but not delivered (read up to {from})")),
        None => Ok(()),
    }
}

/// Reads CPU `cpu` of the dead producer's directory and checks it against `progress`, how far
/// the writer had got by its own count.
fn check_cpu(
    consumer: &mut Consumer<ring_mmap::DirCpu>,
    s: &Scenario,
    progress: CpuProgress,
) -> Result<Recovered, String> {
    let (mut got, mut seqs) = (Recovered::default(), Vec::new());
    let mut bad = None;
    consumer
        .drain_remaining(|r| match r {
            Record::Lost(Lost::Count(n)) if seqs.is_empty() && got.lost == 0 => got.lost = n,
            Record::Lost(other) => bad = Some(format!("unexpected {other:?} after {} events", seqs.len())),
            Record::Event(e) => {
                let bytes = e.payload.to_vec();
                match payload::check(&bytes) {
                    Ok(seq) if bytes.len() == s.payload.next_multiple_of(4) => seqs.push(u64::from(seq)),
                    Ok(seq) => bad = Some(format!("event {seq} has {} bytes", bytes.len())),
                    Err(torn) => bad = Some(format!("a torn event ({torn:?}) after {} events", seqs.len())),
                }
            }
        })
        .map_err(|e| format!("recovery failed: {e}"))?;
    if let Some(bad) = bad {
        return Err(bad);
    }
    got.events = seqs.len() as u64;
    let first = seqs.first().copied().unwrap_or(0);
    if let Some(at) = seqs.windows(2).position(|w| w[1] != w[0] + 1) {
        return Err(format!("a gap: event {} follows {}", seqs[at + 1], seqs[at]));
    }
    if got.lost != first {
        return Err(format!("the first event recovered is {first} but {} were reported lost", got.lost));
    }
    if !s.overwrite && got.lost > 0 {
        return Err(format!("drop mode lost {} old events", got.lost));
    }
    let end = seqs.last().map_or(0, |l| l + 1);
    if !progress.allows(end) {
        return Err(format!("events up to {end} recovered, the writer had got to {progress:?}"));
    }
    Ok(got)
}

/// Runs one scenario; `Ok(None)` if it was killed before its buffers could be read.
fn run(s: &Scenario, dir: &Path) -> Result<Option<Recovered>, String> {
    let bufs = dir.join("bufs");
    let progress = dir.join("progress");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_test-producer"));
    cmd.arg("--socket").arg(dir.join("sock")).arg("--dir").arg(&bufs).arg("--progress").arg(&progress);
    cmd.args(["--mode", if s.overwrite { "overwrite" } else { "drop" }, "--events", "0"]);
    cmd.args(["--cpus", &s.cpus.to_string(), "--subbuf-size", &s.subbuf_size.to_string()]);
    cmd.args(["--nr-subbufs", &s.nr_subbufs.to_string(), "--payload", &s.payload.to_string()]);
    if s.nested {
        cmd.arg("--nested");
    }
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().expect("spawning test-producer");
    let mut consumers = Vec::new();
    if !s.early {
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line).expect("reading");
        assert_eq!(line.trim(), "ready", "test-producer said {line:?}");
        if s.consumer {
            consumers = (0..s.cpus).map(|cpu| consume_live(&dir.join("sock"), cpu, s.payload)).collect();
        }
    }
    std::thread::sleep(s.delay);
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");
    let consumed = consumers
        .into_iter()
        .enumerate()
        .map(|(cpu, c)| c.join().expect("consumer thread").map_err(|e| format!("cpu {cpu}'s live consumer: {e}")))
        .collect::<Result<Vec<_>, _>>()?;

    let opened = match BufferDir::open(&bufs) {
        Ok(opened) => opened,
        // Killed while creating its files: nothing was committed, and the reader says why.
        Err(
            e @ (Error::NotInitialised { .. }
            | Error::Path { .. }
            | Error::BadDirFile { .. }
            | Error::BadBuffer(BufferProblem::FileTooShort { .. })
            | Error::Geometry(_)
            | Error::View(_)),
        ) if s.early => {
            assert!(!e.to_string().is_empty());
            let writers = Progress::read(&progress).unwrap_or_default();
            return match writers.iter().all(|w| w.committed == 0) {
                true => Ok(None),
                false => Err(format!("unreadable buffers ({e}) after commits {writers:?}")),
            };
        }
        Err(e) => return Err(format!("opening the buffer directory: {e}")),
    };
    if opened.cpus.len() != s.cpus as usize {
        return match s.early {
            true => Ok(None),
            false => Err(format!("{} CPU files", opened.cpus.len())),
        };
    }
    let writers = match Progress::read(&progress) {
        Ok(writers) => writers,
        // Killed before its writers started: nothing was committed.
        Err(e) if s.early && e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(format!("reading progress: {e}")),
    };
    let mut total = Recovered::default();
    for (cpu, source) in opened.cpus.into_iter().enumerate() {
        let progress = writers.get(cpu).copied().unwrap_or_default();
        let Some(live) = consumed.get(cpu) else {
            let mut consumer = Consumer::new(source).map_err(|e| format!("cpu {cpu}: {e}"))?;
            let got = check_cpu(&mut consumer, s, progress).map_err(|e| format!("cpu {cpu}: {e}"))?;
            total.events += got.events;
            total.lost += got.lost;
            continue;
        };
        let held = memory_holds(&bufs, cpu as u32)?;
        check_consumed(live, &held, s.nested).map_err(|e| format!("cpu {cpu}'s live consumer: {e}"))?;
        let end = next_after(&live.items);
        if !progress.allows(end) {
            return Err(format!("cpu {cpu}: the live consumer got up to {end}, the writer had got to {progress:?}"));
        }
        // A reader of the directory that was not the consumer starts where the consumer last
        // told the producer it stood: it finds at least what the consumer drained after the hangup.
        let mut dir_reader = Consumer::new(source).map_err(|e| format!("cpu {cpu}: {e}"))?;
        let mut recovered = Consumed { next_at_hangup: live.next_at_hangup, ..Consumed::default() };
        let mut bad = None;
        dir_reader
            .drain_remaining(|r| keep(r, s.payload, &mut recovered.items, &mut bad))
            .map_err(|e| format!("cpu {cpu}: recovering the directory: {e}"))?;
        if let Some(bad) = bad {
            return Err(format!("cpu {cpu}: recovering the directory: {bad}"));
        }
        check_consumed(&recovered, &held, s.nested).map_err(|e| format!("cpu {cpu}: recovering the directory: {e}"))?;
        total.events += live.items.iter().filter(|i| i.is_ok()).count() as u64;
        total.lost += live.items.iter().filter_map(|i| i.err()).sum::<u64>();
        total.rounds += live.rounds;
    }
    Ok(Some(total))
}

#[test]
fn every_event_committed_before_a_sigkill_is_recovered_intact() {
    let kills: u32 = std::env::var("HYPTRACE_KILLS").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    let seed = std::env::var("HYPTRACE_CRASH_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_nanos() as u64 | 1
    });
    let mut rng = Rng(seed);
    let (mut total, mut unborn, mut wrapped, mut consumed) = (Recovered::default(), 0, 0, 0);
    for i in 0..kills {
        let s = Scenario::random(&mut rng);
        let dir = tempfile::tempdir().expect("tempdir");
        match run(&s, dir.path()) {
            Ok(Some(got)) => {
                wrapped += u32::from(got.lost > 0);
                consumed += u32::from(s.consumer && !s.early);
                total.events += got.events;
                total.lost += got.lost;
                total.rounds += got.rounds;
            }
            Ok(None) => unborn += 1,
            Err(e) => panic!("kill {i} of {s:?} (HYPTRACE_CRASH_SEED={seed}): {e}"),
        }
    }
    println!(
        "crash recovery: {kills} producers SIGKILLed ({unborn} before their buffers existed, {wrapped} after \
         losing events to overwrite or drops, {consumed} while a live consumer requested reader pages back to \
         back: {} rounds), {} events recovered intact and in order, {} lost ones reported, 0 committed events \
         missing, 0 intact events reported lost (seed {seed})",
        total.rounds, total.events, total.lost
    );
}
