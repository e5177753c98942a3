//! Crash recovery: a file-backed producer (`test-producer --dir`) is SIGKILLed at random moments,
//! from the middle of creating its buffers to long after its rings have wrapped, and its
//! directory is then read post-mortem ([`ring_mmap::BufferDir`], what `trace-reader recover`
//! uses). Each run varies the mode, CPUs, geometry, payload size and nested writes.
//!
//! Checked after every kill: every event recovered is intact (its self-checking payload) and
//! in order without a gap; in overwrite mode the events before the first one recovered are
//! reported lost, exactly; and nothing committed is missing: the writer's own committed-event
//! count, kept outside the buffer (`hyptrace_tests::progress`), is never ahead of what was
//! recovered. A kill before the buffers exist must give a clear error, never a panic.
//!
//! `HYPTRACE_KILLS` sets the number of kills (default 200; e.g. `HYPTRACE_KILLS=2000`),
//! `HYPTRACE_CRASH_SEED` replays a run.
#![cfg(not(loom))]

use hyptrace_tests::payload;
use hyptrace_tests::progress::Progress;
use ring_mmap::{BufferDir, Consumer, Error, Lost, Record};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
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
        }
    }
}

/// What one CPU's recovery gave.
#[derive(Debug, Default)]
struct Recovered {
    events: u64,
    lost: u64,
}

/// Reads CPU `cpu` of the dead producer's directory and checks it against `committed`, the
/// writer's own count of committed events.
fn check_cpu(consumer: &mut Consumer<ring_mmap::DirCpu>, s: &Scenario, committed: u64) -> Result<Recovered, String> {
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
    // The count is stored after each commit: it may lag by one commit (two events when nested).
    if end < committed || end > committed + 2 {
        return Err(format!("events up to {end} recovered, the writer had committed {committed}"));
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
    if !s.early {
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line).expect("reading");
        assert_eq!(line.trim(), "ready", "test-producer said {line:?}");
    }
    std::thread::sleep(s.delay);
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");

    let opened = match BufferDir::open(&bufs) {
        Ok(opened) => opened,
        // Killed while creating its files: nothing was committed, and the reader says why.
        Err(e @ (Error::Path { .. } | Error::Protocol(_) | Error::Geometry(_) | Error::View(_))) if s.early => {
            assert!(!e.to_string().is_empty());
            let committed = Progress::read(&progress).unwrap_or_default();
            return match committed.iter().all(|&c| c == 0) {
                true => Ok(None),
                false => Err(format!("unreadable buffers ({e}) after commits {committed:?}")),
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
    let committed = match Progress::read(&progress) {
        Ok(committed) => committed,
        // Killed before its writers started: nothing was committed.
        Err(e) if s.early && e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(format!("reading progress: {e}")),
    };
    let mut total = Recovered::default();
    for (cpu, source) in opened.cpus.into_iter().enumerate() {
        let mut consumer = Consumer::new(source).map_err(|e| format!("cpu {cpu}: {e}"))?;
        let got = check_cpu(&mut consumer, s, committed.get(cpu).copied().unwrap_or(0))
            .map_err(|e| format!("cpu {cpu}: {e}"))?;
        total.events += got.events;
        total.lost += got.lost;
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
    let (mut total, mut unborn, mut wrapped) = (Recovered::default(), 0, 0);
    for i in 0..kills {
        let s = Scenario::random(&mut rng);
        let dir = tempfile::tempdir().expect("tempdir");
        match run(&s, dir.path()) {
            Ok(Some(got)) => {
                wrapped += u32::from(got.lost > 0);
                total.events += got.events;
                total.lost += got.lost;
            }
            Ok(None) => unborn += 1,
            Err(e) => panic!("kill {i} of {s:?} (HYPTRACE_CRASH_SEED={seed}): {e}"),
        }
    }
    println!(
        "crash recovery: {kills} producers SIGKILLed ({unborn} before their buffers existed, {wrapped} after \
         overwriting), {} events recovered intact and in order, {} overwritten ones reported lost, 0 committed \
         events missing (seed {seed})",
        total.events, total.lost
    );
}
