//! The end-to-end pipeline as users run it: `hyp-sim` producing into its per-CPU buffers and
//! `trace-reader record` consuming them into a trace.dat file, two separate processes, each
//! reporting its own counters on exit. [`Binaries::locate`] finds (or builds) the release
//! binaries; [`produce_alone`] and [`record`] run one trial and parse both reports.

use crate::lossless_search::Trial;
use anyhow::{Context, Result, bail, ensure};
use rustix::io::Errno;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use trace_reader::tracedat::{DIRECT_CHUNK, Spool, SpoolIo};

/// The release binaries of the pipeline.
#[derive(Debug, Clone)]
pub struct Binaries {
    /// `hyp-sim`.
    pub hyp_sim: PathBuf,
    /// `trace-reader`.
    pub trace_reader: PathBuf,
}

impl Binaries {
    /// The binaries in the release directory this benchmark was built into
    /// (`target/release/deps/NAME` → `target/release`), brought up to date first with
    /// `cargo build --release -p hyp-sim -p trace-reader` (`cargo bench` builds only the
    /// benchmarks; binaries left from an older build would measure old code). Without cargo
    /// (the benchmark run by hand), whatever is there, if both are.
    pub fn locate() -> Result<Self> {
        let exe = std::env::current_exe().context("locating this benchmark")?;
        let release = exe.ancestors().nth(2).context("the benchmark is not in a cargo target directory")?;
        let bins = Self { hyp_sim: release.join("hyp-sim"), trace_reader: release.join("trace-reader") };
        let missing = !bins.hyp_sim.exists() || !bins.trace_reader.exists();
        if missing || std::env::var_os("CARGO").is_some() {
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let status = Command::new(cargo)
                .args(["build", "--release", "-p", "hyp-sim", "-p", "trace-reader"])
                .env("CARGO_TARGET_DIR", release.parent().context("no target directory")?)
                .status()
                .context("running cargo build")?;
            ensure!(status.success(), "cargo build --release -p hyp-sim -p trace-reader failed");
        }
        Ok(bins)
    }
}

/// How hyp-sim runs in a trial.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Workload {
    /// `sim` (simulated guests) or `kvm` (real guests on KVM, as fast as KVM delivers exits).
    pub guest: &'static str,
    /// vCPUs, one buffer each.
    pub cpus: u32,
    /// Guest exits per second per vCPU (three events each); 0 runs flat out.
    pub rate: u64,
    /// `overwrite` or `drop`.
    pub mode: &'static str,
    /// Bytes per sub-buffer.
    pub subbuf_size: u32,
    /// Sub-buffers per CPU.
    pub nr_subbufs: u32,
    /// How long the guests run.
    pub duration: Duration,
}

/// How `trace-reader record` runs in a trial: which of its options for keeping up it is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RecordOptions {
    /// `--realtime`: reader threads under `SCHED_FIFO`.
    pub realtime: bool,
    /// `--direct-io`: pages stored around the page cache.
    pub direct_io: bool,
}

impl RecordOptions {
    /// Every option this process and `dir` allow, as a user after zero loss would run it:
    /// `--realtime` where a thread of this process may take `SCHED_FIFO`, `--direct-io` where a
    /// file in `dir` takes `O_DIRECT`. Says on stdout why an option is left out.
    pub fn best_for(dir: &Path) -> Self {
        let realtime = std::thread::spawn(ring_mmap::realtime::enter).join().unwrap_or(Err(Errno::PERM));
        if let Err(e) = realtime {
            println!("end_to_end: recording without --realtime: SCHED_FIFO refused ({e})");
        }
        // The recorder's own spool, so that the check is the one `record --direct-io` makes.
        let direct_io = Spool::create(dir, DIRECT_CHUNK, SpoolIo::Direct);
        if let Err(e) = &direct_io {
            println!("end_to_end: recording without --direct-io: {e}");
        }
        Self { realtime: realtime.is_ok(), direct_io: direct_io.is_ok() }
    }

    /// The command-line options.
    pub fn args(self) -> Vec<&'static str> {
        [(self.realtime, "--realtime"), (self.direct_io, "--direct-io")]
            .into_iter()
            .filter_map(|(on, arg)| on.then_some(arg))
            .collect()
    }
}

/// One CPU's line of hyp-sim's report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProducedCpu {
    /// Events committed.
    pub entries: u64,
    /// Events lost to overwrite.
    pub overrun: u64,
    /// Events dropped with the ring full.
    pub dropped: u64,
}

/// hyp-sim's report.
#[derive(Debug, Clone, PartialEq)]
pub struct Produced {
    /// How long the guests ran.
    pub secs: f64,
    /// Per CPU.
    pub cpus: Vec<ProducedCpu>,
}

impl Produced {
    /// Events handed to the writers (committed, then possibly overwritten, or dropped) per second.
    pub fn events_per_sec(&self) -> f64 {
        self.cpus.iter().map(|c| c.entries + c.dropped).sum::<u64>() as f64 / self.secs
    }
}

/// One CPU's line of `trace-reader record`'s summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RecordedCpu {
    /// Events read into the file.
    pub read: u64,
    /// Events reported lost where the count was known.
    pub lost: u64,
    /// Whether losses of unknown size were reported too.
    pub lost_unknown: bool,
}

/// A trial of the whole pipeline: both reports.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    /// hyp-sim's.
    pub produced: Produced,
    /// trace-reader's, per CPU.
    pub cpus: Vec<RecordedCpu>,
}

impl Recorded {
    /// Events written to the file.
    pub fn read(&self) -> u64 {
        self.cpus.iter().map(|c| c.read).sum()
    }

    /// Events lost by either side's account: dropped or overwritten in hyp-sim, reported lost to
    /// the reader, or committed and missing from the file.
    pub fn lost(&self) -> u64 {
        let p = &self.produced.cpus;
        let producer: u64 = p.iter().map(|c| c.dropped + c.overrun).sum();
        let reported: u64 = self.cpus.iter().map(|c| c.lost).sum();
        let missing: u64 = p.iter().zip(&self.cpus).map(|(p, r)| p.entries.saturating_sub(r.read)).sum();
        producer.max(reported) + missing
    }
}

impl Trial for Recorded {
    /// Events written to the file per second of the guests' run.
    fn events_per_sec(&self) -> f64 {
        self.read() as f64 / self.produced.secs
    }

    /// True if every event the guests produced reached the file, by both reports.
    fn lossless(&self) -> bool {
        self.produced.cpus.len() == self.cpus.len() && self.lost() == 0 && !self.cpus.iter().any(|c| c.lost_unknown)
    }

    fn describe(&self) -> String {
        let produced: u64 = self.produced.cpus.iter().map(|c| c.entries + c.dropped).sum();
        format!("{produced} events produced, {} recorded, {} lost", self.read(), self.lost())
    }
}

/// Runs hyp-sim alone (no consumer): how fast the producer itself goes.
pub fn produce_alone(bins: &Binaries, work: &Workload, scratch: &Path) -> Result<Produced> {
    let socket = scratch.join("alone.sock");
    let sim = spawn_hyp_sim(bins, work, &socket, 0.0, &[])?;
    parse_hyp_sim(&finish(sim, work.duration)?)
}

/// Runs hyp-sim (no consumer) while `flooders` clients, one connection each, ask for STATS as
/// fast as they are answered for the whole run: how much of the producer's rate such clients
/// can take. Returns hyp-sim's report and the STATS answered in all.
pub fn produce_flooded(bins: &Binaries, work: &Workload, scratch: &Path, flooders: u32) -> Result<(Produced, u64)> {
    let socket = scratch.join("flooded.sock");
    let sim = spawn_hyp_sim(bins, work, &socket, 0.0, &[])?;
    let started = Instant::now();
    let connections = (0..flooders)
        .map(|_| {
            loop {
                match ring_mmap::Connection::connect(&socket) {
                    Ok(conn) => return Ok(conn),
                    Err(_) if started.elapsed() < Duration::from_secs(10) => {
                        std::thread::sleep(Duration::from_millis(1))
                    }
                    Err(e) => return Err(e).context("connecting a flooding client to hyp-sim"),
                }
            }
        })
        .collect::<Result<Vec<_>>>()?;
    // Each asks until hyp-sim exits (its answers stop: the producer has gone away).
    let threads: Vec<_> = connections
        .into_iter()
        .enumerate()
        .map(|(i, conn)| {
            let cpu = i as u32 % work.cpus;
            std::thread::spawn(move || std::iter::from_fn(|| conn.stats(cpu).ok()).count() as u64)
        })
        .collect();
    let produced = parse_hyp_sim(&finish(sim, work.duration)?)?;
    let answered = threads.into_iter().map(|t| t.join().unwrap_or(0)).sum();
    Ok((produced, answered))
}

/// Runs hyp-sim with `trace-reader record` (given `opts`) writing `scratch/trace.dat`: started as soon as
/// hyp-sim serves its socket, stopping when hyp-sim exits after draining. hyp-sim starts its
/// guests once the recorder reads every CPU (`--wait-for-consumer`), so a trial measures the
/// recording, not the race to start it.
pub fn record(bins: &Binaries, work: &Workload, opts: RecordOptions, scratch: &Path) -> Result<Recorded> {
    let socket = scratch.join("record.sock");
    let file = scratch.join("trace.dat");
    let sim = spawn_hyp_sim(bins, work, &socket, 5.0, &["--wait-for-consumer"])?;
    let started = Instant::now();
    while !socket.exists() {
        ensure!(started.elapsed() < Duration::from_secs(10), "hyp-sim did not serve {}", socket.display());
        std::thread::sleep(Duration::from_micros(100));
    }
    let reader = Command::new(&bins.trace_reader)
        .args(["record", "--socket"])
        .arg(&socket)
        .arg("-o")
        .arg(&file)
        .args(opts.args())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting trace-reader record")?;
    let produced = parse_hyp_sim(&finish(sim, work.duration)?)?;
    let recorded = finish(reader, Duration::ZERO)?;
    let _ = std::fs::remove_file(&file);
    Ok(Recorded { produced, cpus: parse_record(&recorded)? })
}

fn spawn_hyp_sim(bins: &Binaries, work: &Workload, socket: &Path, linger: f64, extra: &[&str]) -> Result<Child> {
    let _ = std::fs::remove_file(socket);
    Command::new(&bins.hyp_sim)
        .arg("--guest")
        .arg(work.guest)
        .arg("--cpus")
        .arg(work.cpus.to_string())
        .arg("--rate")
        .arg(work.rate.to_string())
        .arg("--mode")
        .arg(work.mode)
        .arg("--subbuf-size")
        .arg(work.subbuf_size.to_string())
        .arg("--nr-subbufs")
        .arg(work.nr_subbufs.to_string())
        .arg("--duration")
        .arg(work.duration.as_secs_f64().to_string())
        .arg("--linger")
        .arg(linger.to_string())
        .arg("--socket")
        .arg(socket)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting hyp-sim")
}

/// Waits for `child` (expected to take about `runs` plus start-up and draining), killing it if
/// it hangs; fails unless it exited successfully.
fn finish(mut child: Child, runs: Duration) -> Result<String> {
    let deadline = Instant::now() + runs + Duration::from_secs(30);
    while child.try_wait()?.is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output()?;
            bail!("a pipeline process hung; it said:\n{}", String::from_utf8_lossy(&out.stderr));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let Output { status, stderr, .. } = child.wait_with_output()?;
    let stderr = String::from_utf8_lossy(&stderr).into_owned();
    ensure!(status.success(), "a pipeline process failed ({status}):\n{stderr}");
    Ok(stderr)
}

/// The rows of the table under the header line containing `header`: lines of whitespace-separated
/// fields, as many as the header has, up to the first line that is not one.
fn table<'t>(text: &'t str, header: &str) -> Option<Vec<Vec<&'t str>>> {
    let mut lines = text.lines().skip_while(|l| !l.contains(header));
    let columns = lines.next()?.split_whitespace().count();
    let rows =
        lines.map(|l| l.split_whitespace().collect::<Vec<_>>()).take_while(|f| f.len() == columns).collect::<Vec<_>>();
    Some(rows)
}

fn number(field: &str) -> Result<u64> {
    field.parse().with_context(|| format!("{field:?} is not a count"))
}

/// hyp-sim's exit report: `hyp-sim: ran S s`, then `cpu exits entries overrun dropped ...`.
fn parse_hyp_sim(text: &str) -> Result<Produced> {
    let secs = text
        .lines()
        .find_map(|l| l.strip_prefix("hyp-sim: ran ")?.strip_suffix(" s")?.parse().ok())
        .with_context(|| format!("no run time in hyp-sim's report:\n{text}"))?;
    let rows = table(text, "exits").with_context(|| format!("no counters in hyp-sim's report:\n{text}"))?;
    let cpus = rows
        .iter()
        .map(|f| Ok(ProducedCpu { entries: number(f[2])?, overrun: number(f[3])?, dropped: number(f[4])? }))
        .collect::<Result<Vec<_>>>()?;
    ensure!(!cpus.is_empty(), "no CPU lines in hyp-sim's report:\n{text}");
    Ok(Produced { secs, cpus })
}

/// `trace-reader record`'s summary: `cpu entries overrun dropped lost consumed events/s`, where
/// `lost` may be `N+?` (losses of unknown size besides N).
fn parse_record(text: &str) -> Result<Vec<RecordedCpu>> {
    let rows = table(text, "lost").with_context(|| format!("no summary in trace-reader's output:\n{text}"))?;
    let cpus = rows
        .iter()
        .map(|f| {
            let (lost, lost_unknown) = f[4].strip_suffix("+?").map_or((f[4], false), |n| (n, true));
            Ok(RecordedCpu { read: number(f[5])?, lost: number(lost)?, lost_unknown })
        })
        .collect::<Result<Vec<_>>>()?;
    ensure!(!cpus.is_empty(), "no CPU lines in trace-reader's summary:\n{text}");
    Ok(cpus)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYP_SIM: &str = "hyp-sim: 2 CPUs, Drop mode, 256 x 4096 B sub-buffers per CPU, serving x\n\
        \nhyp-sim: ran 2.02 s\n \
        cpu      exits      entries    overrun    dropped       read  discarded    swaps     events/s\n   \
        0    3487648       766080          0    9696864     766077          0     4024      5188673\n   \
        1    5451598      5265117          0          0    5265114          0    27707      8110498\n\
        hyp-sim: trace clock recalibrated 4 times; drift before recalibration: last 10 ns, largest 10 ns\n";

    const RECORD: &str = " cpu      entries    overrun    dropped       lost     consumed     events/s\n   \
        0       766080          0    9696864    9696864       766080       439318\n   \
        1      5265117          0          0        0+?      5265117      3019345\n\
        trace-reader: the producer exited; wrote x: 6031197 events in 31785 pages, 124.16 MiB\n";

    #[test]
    fn both_reports_parse() {
        let produced = parse_hyp_sim(HYP_SIM).unwrap();
        assert_eq!(produced.secs, 2.02);
        assert_eq!(produced.cpus[0], ProducedCpu { entries: 766080, overrun: 0, dropped: 9696864 });
        let cpus = parse_record(RECORD).unwrap();
        assert_eq!(cpus[1], RecordedCpu { read: 5265117, lost: 0, lost_unknown: true });
        let trial = Recorded { produced, cpus };
        assert_eq!(trial.lost(), 9696864);
        assert!(!trial.lossless());
        assert!(parse_hyp_sim("nothing").is_err());
        assert!(parse_record("nothing").is_err());
    }

    #[test]
    fn a_trial_is_lossless_only_if_every_event_reached_the_file() {
        let produced = Produced { secs: 2.0, cpus: vec![ProducedCpu { entries: 10, overrun: 0, dropped: 0 }] };
        let whole = Recorded { produced: produced.clone(), cpus: vec![RecordedCpu { read: 10, ..Default::default() }] };
        assert!(whole.lossless());
        assert_eq!(whole.events_per_sec(), 5.0);
        let short = Recorded { produced, cpus: vec![RecordedCpu { read: 9, ..Default::default() }] };
        assert_eq!(short.lost(), 1);
    }
}
