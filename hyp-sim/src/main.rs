//! `hyp-sim`: runs the simulated hypervisor and exports its trace buffers.
#![forbid(unsafe_code)]

use anyhow::{Context, Result, bail};
use clap::{Parser, ValueEnum};
use hyp_kvm::{Step, Vcpu, VcpuStop, Vm};
use hyp_sim::guest;
use hyp_sim::host::{Host, HostConfig};
use hyp_sim::hyp::Hyp;
use hyp_sim::hyp::stats::HypStats;
use hyp_sim::vcpu::{self, Ending, VcpuRun, Workload};
use ring_core::{Config, Geometry, Mode};
use ring_mmap::server::ServerOptions;
use ring_mmap::{Backing, Server, default_socket_path};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long the vCPU threads have to end once the run has and each KVM vCPU was stopped: a
/// thread still inside its guest then (KVM kept it in `KVM_RUN` through the signals that stop
/// it) is left, and the process exits without it.
const VCPU_END_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Clone, Copy, Debug, ValueEnum)]
enum ModeArg {
    /// Flight recorder: when the ring is full the oldest page is overwritten (and counted).
    Overwrite,
    /// Producer/consumer: when the ring is full new events are dropped (and counted).
    Drop,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum HypercallPriority {
    /// Hypercalls are answered under real-time scheduling (SCHED_FIFO), ahead of the vCPU
    /// threads, as a hypervisor runs them the moment the host makes them; without the privilege
    /// (root or CAP_SYS_NICE) this falls back to normal, with a warning.
    Realtime,
    /// Hypercalls are answered by a normal thread, which waits for a CPU like any other.
    Normal,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum GuestArg {
    /// Simulated guests, made in-process: a deterministic stream of hypercalls, SMCs, memory
    /// aborts and printks per vCPU (host_hcall, host_smc, host_mem_abort, hyp_printk)
    Sim,
    /// Real guests on KVM (/dev/kvm): one VM, one vCPU per CPU running hyp-kvm's guest program,
    /// whose real exits are traced (guest_pio, guest_mmio, guest_hlt); a vCPU that stops (a
    /// guest that misbehaves, or that KVM cannot run) is traced (guest_stop) and ends alone
    Kvm,
}

/// One step of a KVM guest's exit pattern.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum ExitKind {
    /// `out` of the guest's counter to the hypercall port: one guest_pio exit
    Out,
    /// `in` from the hypercall port, answered with the exit's number, then `out` of the value
    /// read to the echo port: two guest_pio exits
    In,
    /// A 4-byte store of the counter to the vCPU's MMIO register: one guest_mmio exit
    MmioWrite,
    /// A 4-byte load from the vCPU's MMIO register, answered with the exit's number, then `out`
    /// of the value read to the echo port: a guest_mmio and a guest_pio exit
    MmioRead,
    /// `hlt`: one guest_hlt exit
    Hlt,
}

impl ExitKind {
    /// The guest program's step.
    fn step(self) -> Step {
        match self {
            ExitKind::Out => Step::Out,
            ExitKind::In => Step::In,
            ExitKind::MmioWrite => Step::MmioWrite,
            ExitKind::MmioRead => Step::MmioRead,
            ExitKind::Hlt => Step::Halt,
        }
    }
}

/// The exit pattern of a KVM guest when none is given: every kind.
const DEFAULT_EXITS: [ExitKind; 5] =
    [ExitKind::Out, ExitKind::In, ExitKind::MmioWrite, ExitKind::MmioRead, ExitKind::Hlt];

/// A simulated hypervisor that traces its own events (hyp_enter, hyp_exit, and one event per
/// guest exit) into per-CPU ring buffers in memory the host donated, and a host that exports
/// those buffers to consumers in other processes (zero-copy, through a Unix control socket and
/// read-only mappings). Read them with `trace-reader`. The guests are simulated, or real guests
/// on KVM (--guest kvm).
#[derive(Parser, Debug)]
#[command(version, about, long_about = None)]
struct Args {
    /// Simulated physical CPUs, one vCPU thread and one buffer each (1 to 64) [default: all cores]
    #[arg(long)]
    cpus: Option<u32>,
    /// The guests the vCPUs run
    #[arg(long, value_enum, default_value = "sim")]
    guest: GuestArg,
    /// With --guest kvm: the steps each guest repeats, in this order, comma-separated (1 to 16)
    /// [default: out,in,mmio-write,mmio-read,hlt]
    #[arg(long, value_enum, value_delimiter = ',')]
    exits: Option<Vec<ExitKind>>,
    /// With --guest kvm: make these vCPUs' guests misbehave (comma-separated vCPU numbers): each
    /// triple faults after one round of its exit pattern, which stops that vCPU (traced as
    /// guest_stop) while the others go on
    #[arg(long, value_delimiter = ',')]
    triple_fault: Vec<u32>,
    /// With --guest kvm: make these vCPUs' guests loop without exits after one round of their
    /// exit pattern (comma-separated vCPU numbers), as a guest that never exits does; the run
    /// still ends on time: its end stops each vCPU inside its guest
    #[arg(long, value_delimiter = ',')]
    spin: Vec<u32>,
    /// Guest exits per second per vCPU, each recording three events; 0 runs as fast as possible
    /// (with --guest kvm: as fast as KVM delivers them)
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// How long the guests run: seconds, or `forever` (until Ctrl-C or SIGTERM); 0 stops them
    /// at once, as `trace-reader --duration 0` stops reading at once. A KVM guest's plan has
    /// 2^32-1 steps, over 14 hours at full speed: one that runs them all stops (guest_stop "done")
    #[arg(long, default_value = "3", value_parser = run_time)]
    duration: RunTime,
    /// What happens when a buffer is full
    #[arg(long, value_enum, default_value = "overwrite")]
    mode: ModeArg,
    /// Bytes per sub-buffer (a power of two, 4096 to 1 MiB)
    #[arg(long, default_value_t = 4096)]
    subbuf_size: u32,
    /// Sub-buffers per CPU, the reader page included (3 to 4096)
    #[arg(long, default_value_t = 64)]
    nr_subbufs: u32,
    /// Control socket path [default: $XDG_RUNTIME_DIR/hyptrace.sock or /tmp/hyptrace-<uid>/hyptrace.sock]
    #[arg(long)]
    socket: Option<PathBuf>,
    /// Keep the buffers in files cpu0, cpu1, ... in this directory (they outlive the run, for
    /// `trace-reader recover DIR`) instead of anonymous sealed memory. The directory must be
    /// yours and closed to everyone else (mode 0700; created so if missing); symbolic links and
    /// files not yours in it are refused, and so is a directory holding the buffers of a
    /// producer that has gone, unless --force
    #[arg(long)]
    dir: Option<PathBuf>,
    /// With --dir: overwrite the buffers a producer that has gone left in the directory (without
    /// it they are kept, and the run refused, so that they can be read first)
    #[arg(long, requires = "dir")]
    force: bool,
    /// After the guests stop, keep serving up to this many seconds while a CPU holds events its
    /// consumer has not read (the page the writer was on included): until connected consumers
    /// have read everything or disconnected, or, for a CPU no consumer has read yet, one comes
    #[arg(long, default_value_t = 2.0, value_parser = seconds)]
    linger: f64,
    /// Seed of the guests' exit streams; with --guest kvm, the counter every guest starts from
    /// (0 to 2^32-1)
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// How often the host recalibrates the hypervisor's clock, in milliseconds
    #[arg(long, default_value_t = 500)]
    recalibrate_ms: u64,
    /// Start the guests only once a consumer reads every CPU's buffer (has asked for its reader
    /// page), so that nothing is recorded before anyone reads; Ctrl-C stops waiting
    #[arg(long)]
    wait_for_consumer: bool,
    /// How the threads that answer the host's hypercalls (the control socket's, one per
    /// connection, each running on the CPUs whose buffers its connection consumes, as a
    /// hypervisor runs a hypercall on the CPU that makes it) are scheduled
    #[arg(long, value_enum, default_value = "realtime")]
    hypercall_priority: HypercallPriority,
}

/// How long the guests run.
#[derive(Debug, Clone, Copy, PartialEq)]
enum RunTime {
    /// Until stopped.
    Forever,
    /// This long.
    For(Duration),
}

/// `forever`, or a number of seconds.
fn run_time(arg: &str) -> Result<RunTime, String> {
    if arg == "forever" {
        return Ok(RunTime::Forever);
    }
    seconds(arg).map(|secs| RunTime::For(Duration::from_secs_f64(secs)))
}

/// A number of seconds: finite, not negative, and within what a `Duration` holds.
fn seconds(arg: &str) -> Result<f64, String> {
    let secs: f64 = arg.parse().map_err(|e| format!("{e}"))?;
    if Duration::try_from_secs_f64(secs).is_err() {
        return Err(format!("{arg} is not a number of seconds (finite, 0 or more)"));
    }
    Ok(secs)
}

/// Runs hyp-sim; an error is one line on stderr (its causes after colons, no backtrace) and exit
/// status 1.
fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("hyp-sim: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<()> {
    let nr_cpus = match args.cpus {
        Some(0) => bail!("--cpus must be at least 1"),
        Some(n) => n,
        None => std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
    };
    let geometry = Geometry::new(args.subbuf_size, args.nr_subbufs).context("invalid buffer geometry")?;
    if args.subbuf_size < 4096 {
        bail!("--subbuf-size must be at least 4096 (a page)");
    }
    // The KVM guests' VM, made first: a machine without KVM is refused before anything starts.
    let kvm_vcpus = match args.guest {
        GuestArg::Sim => {
            if args.exits.is_some() || !args.triple_fault.is_empty() || !args.spin.is_empty() {
                bail!("--exits, --triple-fault and --spin are for KVM guests: add --guest kvm");
            }
            None
        }
        GuestArg::Kvm => Some(kvm_vm(&args, nr_cpus)?),
    };
    let config = HostConfig {
        nr_cpus,
        buffer: Config {
            geometry,
            mode: match args.mode {
                ModeArg::Overwrite => Mode::Overwrite,
                ModeArg::Drop => Mode::Drop,
            },
        },
        backing: args.dir.clone().map_or(Backing::Memfd, |path| Backing::Dir { path, overwrite: args.force }),
    };
    let host = Arc::new(Host::boot(config).context("booting the hypervisor")?);
    let socket = args.socket.clone().unwrap_or_else(default_socket_path);
    // A hypervisor runs a hypercall on the CPU that makes it: a host reading CPU n's buffer from
    // CPU n (trace-reader record does) has its GET_READER_PAGE answered there.
    let options = ServerOptions {
        realtime: args.hypercall_priority == HypercallPriority::Realtime,
        on_consumed_cpus: true,
        ..Default::default()
    };
    let server =
        Server::start_with(&socket, host.clone(), options).with_context(|| format!("serving {}", socket.display()))?;
    eprintln!(
        "hyp-sim: {nr_cpus} CPUs, {:?} mode, {} x {} B sub-buffers per CPU, serving {}",
        args.mode,
        args.nr_subbufs,
        args.subbuf_size,
        socket.display()
    );
    if let Err(e) = server.realtime() {
        eprintln!("hyp-sim: warning: hypercalls are answered at normal priority: real-time scheduling refused ({e})");
    }

    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        ctrlc::set_handler(move || stop.store(true, Ordering::Relaxed)).context("installing the Ctrl-C handler")?;
    }
    if args.wait_for_consumer {
        eprintln!("hyp-sim: waiting for a consumer to read every CPU");
        while !host.every_cpu_consumed() {
            if stop.load(Ordering::Relaxed) {
                drop(server);
                bail!("interrupted while waiting for a consumer");
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let workload = Workload { rate: args.rate, seed: args.seed };
    let start = Instant::now();
    let spawn = |cpu, body| spawn_vcpu(cpu, &host, &stop, body);
    // What stops the KVM vCPUs inside their guests when the run ends.
    let stoppers: Vec<VcpuStop> = kvm_vcpus.iter().flat_map(|(_vm, vcpus)| vcpus.iter().map(Vcpu::stopper)).collect();
    let vcpus: Vec<JoinHandle<VcpuRun>> = match kvm_vcpus {
        None => (0..nr_cpus)
            .map(|cpu| {
                spawn(
                    cpu,
                    Box::new(move |hyp: &Hyp, stop: &AtomicBool| VcpuRun {
                        exits: vcpu::run(hyp, cpu, workload, stop),
                        ending: Ending::RunEnded,
                    }),
                )
            })
            .collect::<Result<_>>()?,
        Some((_vm, kvm_vcpus)) => (0..nr_cpus)
            .zip(kvm_vcpus)
            .map(|(cpu, kvm_vcpu)| {
                let rate = args.rate;
                spawn(cpu, Box::new(move |hyp: &Hyp, stop: &AtomicBool| vcpu::kvm::run(hyp, cpu, kvm_vcpu, rate, stop)))
            })
            .collect::<Result<_>>()?,
    };

    // The host's own loop: recalibrate the trace clock until the run ends.
    let duration = match args.duration {
        RunTime::Forever => None,
        RunTime::For(duration) => Some(duration),
    };
    let period = Duration::from_millis(args.recalibrate_ms.max(10));
    let mut next_calibration = Instant::now() + period;
    while !stop.load(Ordering::Relaxed) && duration.is_none_or(|d| start.elapsed() < d) {
        std::thread::sleep(Duration::from_millis(10));
        if Instant::now() >= next_calibration {
            let drift = host.recalibrate_clock()?;
            if drift.abs() > hyp_sim::host::clock::DRIFT_WARNING_NS {
                eprintln!("hyp-sim: warning: the hypervisor clock drifted {drift} ns before recalibration");
            }
            next_calibration += period;
        }
    }
    // Ordering: Relaxed; the flag carries no data: the vCPU threads' loads are its partners, and
    // joining them orders what they did before this thread goes on.
    stop.store(true, Ordering::Relaxed);
    // A vCPU thread inside its guest looks at the flag only once the guest exits: a guest that
    // never does is stopped there.
    for stopper in &stoppers {
        if let Err(e) = stopper.stop() {
            eprintln!("hyp-sim: {e}");
        }
    }
    let runs = end_vcpus(vcpus);
    let elapsed = start.elapsed();
    host.set_tracing(false)?;

    // Give consumers a chance to read everything before the buffers go away: up to the linger
    // time, while a CPU holds events that its connected consumer (or one yet to come) has not
    // read. A linger too long to add to the clock lasts until then.
    let linger_until = Instant::now().checked_add(Duration::from_secs_f64(args.linger));
    while linger_until.is_none_or(|until| Instant::now() < until)
        && (0..nr_cpus).any(|cpu| awaits_reading(&host, &server, cpu))
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    // The report first: consumers print theirs when the socket closes.
    let report = report(&host, &runs, elapsed, args.guest == GuestArg::Kvm);
    drop(server);
    report
}

/// True while CPU `cpu` holds events not yet read (the page the writer is on included) and a
/// consumer may still read them: one is connected to it, or none has come yet. A CPU whose
/// consumer has disconnected is not waited for.
fn awaits_reading(host: &Host, server: &Server, cpu: u32) -> bool {
    host.has_unread(cpu) && (server.is_consumed(cpu) || !host.was_consumed(cpu))
}

/// Makes the VM of the KVM guests, one vCPU per CPU, each running the exit pattern of `args`.
fn kvm_vm(args: &Args, nr_cpus: u32) -> Result<(Vm, Vec<Vcpu>)> {
    let seed =
        u32::try_from(args.seed).context("with --guest kvm, --seed is the guests' 32-bit counter: 0 to 2^32-1")?;
    for (option, vcpus) in [("--triple-fault", &args.triple_fault), ("--spin", &args.spin)] {
        if let Some(vcpu) = vcpus.iter().find(|&&vcpu| vcpu >= nr_cpus) {
            bail!("{option} {vcpu}: there are only vCPUs 0 to {}", nr_cpus - 1);
        }
    }
    let pattern: Vec<Step> = args.exits.as_deref().unwrap_or(&DEFAULT_EXITS).iter().map(|kind| kind.step()).collect();
    let misbehaving = guest::kvm::Misbehaving { triple_fault: &args.triple_fault, spin: &args.spin };
    let plans = guest::kvm::plans(nr_cpus, seed, &pattern, misbehaving)?;
    // Its errors are one line each, saying what to do (KVM missing is `Unavailable`).
    Ok(Vm::new(&plans)?)
}

/// What a vCPU thread runs, given the hypervisor and the stop flag.
type VcpuBody = Box<dyn FnOnce(&Hyp, &AtomicBool) -> VcpuRun + Send>;

/// Starts the thread `vcpu<cpu>` running `body`.
fn spawn_vcpu(cpu: u32, host: &Arc<Host>, stop: &Arc<AtomicBool>, body: VcpuBody) -> Result<JoinHandle<VcpuRun>> {
    let (host, stop) = (host.clone(), stop.clone());
    std::thread::Builder::new()
        .name(format!("vcpu{cpu}"))
        .spawn(move || body(host.hyp(), &stop))
        .context("spawning a vCPU thread")
}

/// Waits for the vCPU threads to end, up to [`VCPU_END_TIMEOUT`] in all; a thread still running
/// then (inside a guest that makes no exit) is left, its run `None`.
fn end_vcpus(vcpus: Vec<JoinHandle<VcpuRun>>) -> Vec<Option<VcpuRun>> {
    let deadline = Instant::now() + VCPU_END_TIMEOUT;
    while Instant::now() < deadline && !vcpus.iter().all(JoinHandle::is_finished) {
        std::thread::sleep(Duration::from_millis(1));
    }
    vcpus.into_iter().map(|vcpu| vcpu.is_finished().then(|| vcpu.join().expect("a vCPU thread panicked"))).collect()
}

fn report(host: &Host, runs: &[Option<VcpuRun>], elapsed: Duration, endings: bool) -> Result<()> {
    use std::fmt::Write as _;
    let secs = elapsed.as_secs_f64().max(1e-9);
    // One write to stderr, so that it does not interleave with a consumer's output.
    let mut out = format!("\nhyp-sim: ran {secs:.2} s\n");
    let _ = writeln!(
        out,
        "{:>4} {:>10} {:>12} {:>10} {:>10} {:>10} {:>10} {:>8} {:>12}",
        "cpu", "exits", "entries", "overrun", "dropped", "read", "discarded", "swaps", "events/s"
    );
    for (cpu, run) in runs.iter().enumerate() {
        let HypStats { stats: s, discarded } = host.cpu_stats(cpu as u32)?;
        let exits = run.as_ref().map_or_else(|| "?".to_string(), |run| run.exits.to_string());
        let _ = writeln!(
            out,
            "{:>4} {:>10} {:>12} {:>10} {:>10} {:>10} {:>10} {:>8} {:>12.0}",
            cpu,
            exits,
            s.entries,
            s.overrun,
            s.dropped,
            s.read,
            discarded,
            s.swaps,
            (s.entries + s.dropped) as f64 / secs
        );
    }
    let (max, last, updates) = host.clock_report();
    let _ = writeln!(
        out,
        "hyp-sim: trace clock recalibrated {updates} times; drift before recalibration: last {last} ns, largest {max} ns"
    );
    if endings {
        for (cpu, run) in runs.iter().enumerate() {
            let _ = match run {
                Some(run) => writeln!(out, "hyp-sim: vcpu{cpu} {}", run.ending),
                None => writeln!(
                    out,
                    "hyp-sim: vcpu{cpu} was still in its guest {VCPU_END_TIMEOUT:?} after the run ended; left"
                ),
            };
        }
    }
    eprint!("{out}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_run_time_is_seconds_or_forever() {
        assert_eq!(run_time("forever"), Ok(RunTime::Forever));
        assert_eq!(run_time("0"), Ok(RunTime::For(Duration::ZERO)), "0 is no time, as in trace-reader");
        assert_eq!(run_time("2.5"), Ok(RunTime::For(Duration::from_millis(2500))));
        assert!(run_time("-1").is_err() && run_time("always").is_err());
    }
}
