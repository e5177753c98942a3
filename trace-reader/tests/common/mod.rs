//! A hyp-sim producer running inside the test process (the hypervisor, its vCPU threads and the
//! host's control socket), read by the `trace-reader` binary in another process: the real
//! socket + mmap path, without needing hyp-sim's binary.

#![allow(dead_code)]

use hyp_kvm::Step;
use hyp_sim::host::{Host, HostConfig};
use hyp_sim::vcpu::{self, Workload};
use ring_core::{Config, Geometry, Mode};
use ring_mmap::{Backing, Server, TracefsInstance};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A running producer.
pub struct Sim {
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    host: Arc<Host>,
    server: Option<Server>,
    stop: Arc<AtomicBool>,
    vcpus: Vec<JoinHandle<u64>>,
    /// The directory of its buffer files, if they are in one.
    dir_backing: Option<PathBuf>,
}

impl Sim {
    /// Starts `cpus` vCPUs at `rate` exits per second each (0: flat out).
    pub fn start(cpus: u32, mode: Mode, rate: u64, nr_subbufs: u32) -> Self {
        Self::start_in(cpus, mode, rate, nr_subbufs, Backing::Memfd)
    }

    /// [`Sim::start`] with the buffers in `backing`. The vCPU threads are named `vcpuN`, as
    /// hyp-sim names them.
    pub fn start_in(cpus: u32, mode: Mode, rate: u64, nr_subbufs: u32, backing: Backing) -> Self {
        let mut sim = Self::boot(cpus, mode, nr_subbufs, backing);
        sim.vcpus = (0..cpus)
            .map(|cpu| {
                let (host, stop) = (sim.host.clone(), sim.stop.clone());
                std::thread::Builder::new()
                    .name(format!("vcpu{cpu}"))
                    .spawn(move || vcpu::run(host.hyp(), cpu, Workload { rate, seed: 7 }, &stop))
                    .expect("a vCPU thread")
            })
            .collect();
        sim
    }

    /// A hypervisor tracing real KVM guests: one VM of `cpus` vCPUs, each on a thread named
    /// `vcpuN` running hyp-sim's default mix of exits (port I/O in and out, MMIO store and load,
    /// HLT) at `rate` exits a second, from when a consumer reads every CPU's buffer (so that a
    /// recording sees every exit). `None` where this machine has no `/dev/kvm`, having printed
    /// `SKIPPED: …` (in CI, where the machines have KVM, its absence fails the test instead).
    pub fn start_kvm(cpus: u32, mode: Mode, rate: u64, nr_subbufs: u32, test: &str) -> Option<Self> {
        if !test_capabilities::kvm(test) {
            return None;
        }
        let mut sim = Self::boot(cpus, mode, nr_subbufs, Backing::Memfd);
        let pattern = [Step::Out, Step::In, Step::MmioWrite, Step::MmioRead, Step::Halt];
        let plans = hyp_sim::guest::kvm::plans(cpus, 1, &pattern, Default::default()).expect("plans");
        let (_vm, vcpus) = hyp_kvm::Vm::new(&plans).unwrap_or_else(|e| panic!("creating the VM: {e}"));
        sim.vcpus = vcpus
            .into_iter()
            .zip(0..)
            .map(|(vcpu, cpu)| {
                let (host, stop) = (sim.host.clone(), sim.stop.clone());
                std::thread::Builder::new()
                    .name(format!("vcpu{cpu}"))
                    .spawn(move || {
                        // Ordering: Relaxed; the stop flag carries no data.
                        while !host.every_cpu_consumed() && !stop.load(Ordering::Relaxed) {
                            std::thread::sleep(Duration::from_millis(1));
                        }
                        hyp_sim::vcpu::kvm::run(host.hyp(), cpu, vcpu, rate, &stop).exits
                    })
                    .expect("a vCPU thread")
            })
            .collect();
        Some(sim)
    }

    /// The hypervisor of `cpus` CPUs serving its buffers, no vCPU running yet.
    fn boot(cpus: u32, mode: Mode, nr_subbufs: u32, backing: Backing) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("hyp.sock");
        let dir_backing = match &backing {
            Backing::Dir { path, .. } => Some(path.clone()),
            _ => None,
        };
        let config = HostConfig {
            nr_cpus: cpus,
            buffer: Config { geometry: Geometry::new(4096, nr_subbufs).unwrap(), mode },
            backing,
        };
        let host = Arc::new(Host::boot(config).expect("booting the hypervisor"));
        let server = Server::start(&socket, host.clone()).expect("serving");
        let stop = Arc::new(AtomicBool::new(false));
        Self { dir, socket, host, server: Some(server), stop, vcpus: Vec::new(), dir_backing }
    }

    /// Stops the guests, lets consumers drain for up to `linger`, then stops serving (consumers
    /// see a hangup). Returns each CPU's exits (three events each).
    pub fn finish(&mut self, linger: Duration) -> Vec<u64> {
        self.stop.store(true, Ordering::Relaxed);
        let exits: Vec<u64> = self.vcpus.drain(..).map(|v| v.join().unwrap()).collect();
        self.host.set_tracing(false).unwrap();
        let until = Instant::now() + linger;
        while Instant::now() < until
            && (0..exits.len() as u32).any(|c| self.host.cpu_stats(c).is_ok_and(|s| s.stats.full_pages > 0))
        {
            std::thread::sleep(Duration::from_millis(10));
        }
        drop(self.server.take());
        exits
    }

    /// Ends the producer as its process's exit would: once this returns, a reader takes its
    /// buffer directory (if its buffers are in one) for a dead producer's, as `recover` does
    /// ([`ring_mmap::BufferDir::open`]). Another test thread that starts a program while the
    /// files are open gives it copies of their descriptors, and so of their locks, which it holds
    /// until it has started (they close on exec): a busy machine can make that last a while, so
    /// this waits, up to 10 s, for the locks to go.
    pub fn exit(mut self) {
        if !self.vcpus.is_empty() {
            self.finish(Duration::ZERO);
        }
        let dir = self.dir_backing.clone();
        drop(self);
        let Some(dir) = dir else { return };
        let deadline = Instant::now() + Duration::from_secs(10);
        while let Err(ring_mmap::Error::ProducerAlive(path)) = ring_mmap::BufferDir::open(&dir) {
            assert!(Instant::now() < deadline, "{} stays locked after its producer ended", path.display());
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// CPU `cpu`'s exact counters, from the hypervisor.
    pub fn stats(&self, cpu: u32) -> ring_core::Stats {
        self.host.cpu_stats(cpu).unwrap().stats
    }

    /// Whether a consumer has read every CPU's buffer (a KVM guest's vCPUs start then).
    pub fn every_cpu_consumed(&self) -> bool {
        self.host.every_cpu_consumed()
    }

    /// `trace-reader ARGS --socket SOCKET`, run to completion.
    pub fn reader(&self, args: &[&str]) -> Output {
        reader(&[args, &["--socket", self.socket.to_str().unwrap()]].concat())
    }
}

/// `trace-reader ARGS`, run to completion.
pub fn reader(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_trace-reader")).args(args).output().expect("running trace-reader")
}

/// Standard output as lines.
pub fn lines(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
}

/// Asserts the run succeeded, showing its stderr if not.
pub fn ok(out: &Output) {
    assert!(out.status.success(), "trace-reader failed: {}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
}

/// `trace-cmd` if installed (else the check against it is skipped: [`test_capabilities`]).
pub fn trace_cmd() -> Option<&'static str> {
    test_capabilities::program("trace-cmd", "the trace.dat check against trace-cmd").then_some("trace-cmd")
}

/// One event line, parsed: (cpu, ns, name, fields text).
pub type EventLine = (u32, u64, String, String);

/// Parses our text lines, as `-t` prints them (as `trace-cmd report -t`: `comm-pid [001]
/// 12.000000345: name: text`); lines of lost events are skipped, any other line fails the test.
pub fn parse_ours(lines: &[String]) -> Vec<EventLine> {
    lines
        .iter()
        .filter(|l| !l.contains(" EVENTS DROPPED]"))
        .map(|l| parse_line(l).unwrap_or_else(|| panic!("not an event line: {l:?}")))
        .collect()
}

/// Parses the event lines of `trace-cmd report -t`.
pub fn parse_trace_cmd(text: &str) -> Vec<EventLine> {
    text.lines().filter_map(parse_line).collect()
}

/// An event line (`comm-pid [001] 12.000000345: name: text`) parsed.
fn parse_line(l: &str) -> Option<EventLine> {
    let (_, rest) = l.split_once(" [")?;
    let (cpu, rest) = rest.split_once(']')?;
    let (ts, rest) = rest.trim_start().split_once(": ")?;
    let (name, fields) = rest.split_once(':')?;
    Some((cpu.parse().ok()?, ns(ts), name.trim().to_string(), fields.trim().to_string()))
}

pub fn ns(ts: &str) -> u64 {
    let (s, n) = ts.split_once('.').unwrap();
    assert_eq!(n.len(), 9, "nanosecond timestamps: {ts}");
    s.parse::<u64>().unwrap() * 1_000_000_000 + n.parse::<u64>().unwrap()
}

/// Runs `trace-cmd report -t FILE` and returns its parsed events.
pub fn trace_cmd_report(tc: &str, file: &Path) -> Vec<EventLine> {
    let out = Command::new(tc).args(["report", "-t"]).arg(file).output().unwrap();
    assert!(out.status.success(), "trace-cmd report failed: {}", String::from_utf8_lossy(&out.stderr));
    parse_trace_cmd(&String::from_utf8_lossy(&out.stdout))
}

/// An event line with the buffer it came from (`None`: the top-level buffer).
pub type BufferEventLine = (Option<String>, EventLine);

/// Splits a line of a file with the buffers `names` into its buffer and the rest: trace-cmd
/// starts each line with the buffer's name right-aligned to the longest name and `": "`, or as
/// many blanks for the top-level buffer's lines.
pub fn split_buffer<'l>(line: &'l str, names: &[&str]) -> (Option<String>, &'l str) {
    let width = names.iter().map(|n| n.len()).max().unwrap_or(0);
    for name in names {
        if let Some(rest) = line.strip_prefix(&format!("{name:>width$}: ")) {
            return (Some(name.to_string()), rest);
        }
    }
    (None, line.strip_prefix(&" ".repeat(width + 2)).unwrap_or(line))
}

/// Runs `trace-cmd report -t FILE` on a file with the buffers `names` (besides the top-level
/// one) and returns its events with their buffers.
pub fn trace_cmd_report_buffers(tc: &str, file: &Path, names: &[&str]) -> Vec<BufferEventLine> {
    let out = Command::new(tc).args(["report", "-t"]).arg(file).output().unwrap();
    assert!(out.status.success(), "trace-cmd report failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| {
            let (buffer, rest) = split_buffer(line, names);
            Some((buffer, parse_trace_cmd(rest).pop()?))
        })
        .collect()
}

/// A new tracefs instance `name` (tracefs mounted first if it is not yet); `None`, `test`
/// skipped ([`test_capabilities`]), where this machine has no tracefs or lets us create no
/// instance.
pub fn tracefs_instance(name: &str, test: &str) -> Option<TracefsInstance> {
    let tracefs = test_capabilities::tracefs(test)?;
    TracefsInstance::create(&tracefs, name)
        .map_err(|e| test_capabilities::skip(format_args!("cannot create a tracefs instance ({e})"), test))
        .ok()
}
