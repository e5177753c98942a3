//! The command line.

use crate::kernel_setup::{EventChoice, KernelSetup, PreparedKernel};
use crate::live::LiveOptions;
use crate::output::Style;
use crate::source::Target;
use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use ring_core::TraceClock;
use std::path::PathBuf;
use std::time::Duration;

/// Reads trace buffers through their memory mappings, zero-copy: those of a hyptrace producer
/// (such as hyp-sim), found through its control socket, or the Linux kernel's own (tracefs).
///
/// Events print one per line, merged across CPUs in time order, as `trace-cmd report` prints
/// them (their text made by libtraceevent from each event's print format):
///
///   <task>-<pid> [<cpu>] <seconds>.<microseconds>: <event>: <text>
///
/// with `CPU:<cpu> [<n> EVENTS DROPPED]` where the buffer lost events (-t: nanoseconds). Data
/// goes to stdout, diagnostics and summaries to stderr.
#[derive(Parser, Debug)]
#[command(name = "trace-reader", version, about, long_about, after_help = EXAMPLES)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

const EXAMPLES: &str = "Examples:
  hyp-sim --cpus 2 & trace-reader stream          read a producer live until it exits
  trace-reader stream --format json --duration 5  JSON lines for five seconds
  trace-reader show                               what is in the buffers now, without consuming
  trace-reader stats --kernel                     the kernel buffer's per-CPU counters
  trace-reader record --kernel -e sched -e 'kvm:*' the kernel's scheduler and KVM events, until Ctrl-C
  trace-reader record --kernel -e sched --socket S the host's scheduler and a hypervisor, in one file
  trace-reader record -o trace.dat                record until Ctrl-C; then: trace-cmd report trace.dat
  trace-reader report trace.dat                   print a recorded file
  trace-reader recover /var/tmp/hyp               what a crashed hyp-sim --dir /var/tmp/hyp left";

impl Cli {
    /// The process's command line, parsed; on a bad one, exits with clap's message.
    pub fn from_command_line() -> Self {
        Self::from_matches(&Self::command().get_matches()).unwrap_or_else(|e| e.exit())
    }

    /// The command line `matches` hold, with each `-f` bound to the `-e` before it (an order
    /// clap's derived parsing does not keep).
    pub fn from_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let mut cli = Self::from_arg_matches(matches)?;
        let setup = match &mut cli.command {
            Command::Record(args) => Some(&mut args.kernel_setup),
            Command::Stream(args) => Some(&mut args.kernel_setup),
            _ => None,
        };
        if let (Some(setup), Some((_, sub))) = (setup, matches.subcommand()) {
            setup.bind_filters(sub).map_err(|e| e.format(&mut Self::command()))?;
        }
        Ok(cli)
    }
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Consume and print events live, merged across CPUs in time order, until the producer
    /// exits, --duration passes or Ctrl-C. Ends with a per-CPU table on stderr.
    Stream(StreamArgs),
    /// Print what the buffers hold now without consuming it (hyptrace buffers: the kernel's
    /// meta page has no ring map to walk). Pages the writer overwrote while they were being
    /// read are left out and reported, never printed torn.
    Show(ShowArgs),
    /// Print each CPU's counters (entries, overrun, dropped, read, unread, pages touched and
    /// lost, bytes), like tracefs per_cpu/cpuN/stats.
    Stats(StatsArgs),
    /// Consume events into a trace-cmd trace.dat file (version 6) that `trace-cmd report` and
    /// KernelShark open. Shows progress on stderr; Ctrl-C, SIGTERM or --duration stops it and
    /// leaves a complete file (a recording that fails before reading anything leaves an earlier
    /// file of the name as it was; one that fails later keeps what it read).
    Record(RecordArgs),
    /// Print a trace.dat file written by `record` (or an uncompressed version 6 file from
    /// trace-cmd), without trace-cmd: all its buffers' events merged in time order, each line of
    /// a file of several buffers starting with its buffer's name as trace-cmd report's do.
    Report(ReportArgs),
    /// Print every event a dead (crashed, killed or exited) producer committed to the buffer
    /// directory it wrote (hyp-sim --dir): oldest first, merged across CPUs, with the events
    /// overwritten before them reported as LOST; an event the producer was still writing when
    /// it died is never printed. Same as `stream --dir DIR`; `record --dir DIR` saves the same
    /// events as a trace.dat file.
    Recover(RecoverArgs),
}

/// Where the buffers are.
#[derive(Args, Debug, Clone)]
pub struct SourceArgs {
    /// A hyptrace producer's control socket [default: hyp-sim's, $XDG_RUNTIME_DIR/hyptrace.sock
    /// or /tmp/hyptrace-<uid>/hyptrace.sock]. `record --kernel --socket PATH` records the kernel
    /// and the producer together, on one clock, each in a buffer of its own in the one file;
    /// `stream --kernel --socket PATH` prints both live, merged in time order
    #[arg(long, conflicts_with = "dir")]
    pub socket: Option<PathBuf>,
    /// Read the buffer directory a producer that has gone left behind (hyp-sim --dir), post-mortem
    #[arg(long, conflicts_with = "kernel")]
    pub dir: Option<PathBuf>,
    /// Read the Linux kernel's trace buffers (tracefs, mounted if needed; needs root)
    #[arg(long)]
    pub kernel: bool,
    /// With --kernel: the tracefs instance (instances/NAME) to read instead of the top buffer
    #[arg(long, requires = "kernel")]
    pub instance: Option<String>,
    /// With --kernel: where tracefs is mounted
    #[arg(long, requires = "kernel", default_value = ring_mmap::kernel::TRACEFS)]
    pub tracefs: PathBuf,
    /// Seconds to wait for the producer's socket to appear (it may still be starting; not used
    /// with --kernel or --dir). A socket that is there but whose directory or producer is not
    /// trusted (see docs/abi.md §5) is an error at once
    #[arg(long, default_value_t = 5.0, value_parser = seconds)]
    pub wait: f64,
    /// CPUs to read.
    #[command(flatten)]
    pub cpus: CpuArgs,
}

impl SourceArgs {
    /// Whether both the kernel and a producer are named: what only `record` reads together.
    pub fn names_kernel_and_producer(&self) -> bool {
        self.kernel && self.socket.is_some()
    }

    /// Refuses both the kernel and a producer where one source is read.
    fn one_source(&self) -> anyhow::Result<()> {
        if self.names_kernel_and_producer() {
            anyhow::bail!(
                "--kernel and --socket name two sources: `record` and `stream` read them together; \
                 here read one of them"
            );
        }
        Ok(())
    }

    /// The producer at `--socket` (or the default one), its timestamps converted to `clock`.
    pub fn producer_target(&self, clock: TraceClock) -> Target {
        let socket = match &self.socket {
            Some(s) => s.clone(),
            None => ring_mmap::default_socket_path(),
        };
        Target::Producer { socket, wait: Duration::from_secs_f64(self.wait), clock }
    }

    /// Mounts tracefs at its usual place if it is not mounted yet (not a `--tracefs` elsewhere).
    fn mount_tracefs(&self) -> anyhow::Result<()> {
        if self.tracefs.as_os_str() == ring_mmap::kernel::TRACEFS {
            ring_mmap::kernel::mount_tracefs()?;
        }
        Ok(())
    }

    /// The target these arguments name.
    pub fn target(&self) -> anyhow::Result<Target> {
        self.one_source()?;
        if self.kernel {
            self.mount_tracefs()?;
            let tracing = match &self.instance {
                Some(name) => ring_mmap::kernel::instance_dir(&self.tracefs, name),
                None => self.tracefs.clone(),
            };
            return Ok(Target::Kernel { tracing });
        }
        if let Some(dir) = &self.dir {
            return Ok(Target::Dir { dir: dir.clone() });
        }
        Ok(self.producer_target(TraceClock::Own))
    }

    /// The target of a consuming read (`record`, `stream`): with --kernel, the kernel buffer
    /// `setup` chooses, set up as it asks until the [`PreparedKernel`] is dropped.
    pub fn prepared_target(&self, setup: &KernelSetupArgs) -> anyhow::Result<(Target, Option<PreparedKernel>)> {
        if !self.kernel {
            return Ok((self.target()?, None));
        }
        self.one_source()?;
        let (target, prepared) = self.prepared_kernel(setup)?;
        Ok((target, Some(prepared)))
    }

    /// The kernel buffer `setup` chooses, set up as it asks until the [`PreparedKernel`] is
    /// dropped.
    pub fn prepared_kernel(&self, setup: &KernelSetupArgs) -> anyhow::Result<(Target, PreparedKernel)> {
        self.mount_tracefs()?;
        let prepared = setup.choices(self.instance.clone()).prepare(&self.tracefs)?;
        Ok((Target::Kernel { tracing: prepared.tracing().to_path_buf() }, prepared))
    }
}

/// What --kernel sets up before a consuming read, as `trace-cmd record` takes it.
#[derive(Args, Debug, Clone, Default)]
pub struct KernelSetupArgs {
    /// With --kernel: enable the kernel events SYSTEM:EVENT, every event of SYSTEM, or every
    /// event named EVENT (repeat; globs: -e sched -e 'kvm:*' -e 'sched:sched_wak*'; `all` for
    /// every event; the list is tracefs's available_events). Without --instance or --top they
    /// are recorded in a tracefs instance of trace-reader's own, created and removed
    #[arg(short = 'e', long = "event", value_name = "SYSTEM[:EVENT]", requires = "kernel")]
    pub events: Vec<String>,
    /// Filter the events of the -e before it, in the kernel's filter syntax (e.g. -e
    /// sched:sched_switch -f 'prev_pid != 0'; the fields are in each event's format file)
    #[arg(short = 'f', long = "filter", value_name = "FILTER", requires = "events")]
    pub filters: Vec<String>,
    /// For each of `filters`, the index in `events` of the -e it follows.
    #[arg(skip)]
    pub filter_of: Vec<usize>,
    /// With --kernel: each CPU's buffer size, in KiB
    #[arg(short = 'b', long = "buffer-size-kb", value_name = "KB", requires = "kernel")]
    pub buffer_size_kb: Option<u64>,
    /// With --kernel: the trace clock (one of tracefs's trace_clock: local, global, mono, boot,
    /// x86-tsc, ...)
    #[arg(short = 'C', long = "clock", value_name = "CLOCK", requires = "kernel")]
    pub clock: Option<String>,
    /// With --kernel: read the top-level buffer, with what -e, -f, -b and -C ask set up and put
    /// back afterwards, instead of an instance of trace-reader's own
    #[arg(long, requires = "kernel", conflicts_with = "instance")]
    pub top: bool,
    /// With --kernel: record trace-reader's own tasks' events too (left out by default)
    #[arg(long, requires = "kernel")]
    pub trace_self: bool,
}

impl KernelSetupArgs {
    /// Binds each `-f` of `matches` to the `-e` before it ([`KernelSetupArgs::filter_of`]).
    fn bind_filters(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        let positions = |id| matches.indices_of(id).map(Iterator::collect::<Vec<usize>>).unwrap_or_default();
        let events = positions("events");
        self.filter_of = Vec::new();
        for (filter, at) in self.filters.iter().zip(positions("filters")) {
            let invalid = |what: String| clap::Error::raw(clap::error::ErrorKind::ArgumentConflict, what + "\n");
            let Some(event) = events.iter().rposition(|&e| e < at) else {
                return Err(invalid(format!("-f '{filter}' filters the events of the -e before it; put it after one")));
            };
            if self.filter_of.contains(&event) {
                return Err(invalid(format!(
                    "-e {} has two filters; join them into one with && or ||",
                    self.events[event]
                )));
            }
            self.filter_of.push(event);
        }
        Ok(())
    }

    /// The setup these arguments ask of the kernel buffer, `instance` being --instance.
    pub fn choices(&self, instance: Option<String>) -> KernelSetup {
        let filter = |event| {
            let index = self.filter_of.iter().position(|&e| e == event)?;
            self.filters.get(index).cloned()
        };
        KernelSetup {
            events: self
                .events
                .iter()
                .enumerate()
                .map(|(event, pattern)| EventChoice { pattern: pattern.clone(), filter: filter(event) })
                .collect(),
            buffer_size_kb: self.buffer_size_kb,
            clock: self.clock.clone(),
            instance,
            top: self.top,
            trace_self: self.trace_self,
        }
    }
}

/// How a consuming read runs (`stream`, `record`).
#[derive(Args, Debug, Clone, Copy)]
pub struct LiveArgs {
    /// Stop after this many seconds [default: until the producer exits or Ctrl-C]
    #[arg(long, value_parser = seconds)]
    pub duration: Option<f64>,
    /// Longest time, in milliseconds, a partly filled page waits before its events are read
    #[arg(long, default_value_t = 100)]
    pub interval_ms: u64,
}

impl LiveArgs {
    /// The read loop's options.
    pub fn options(&self) -> LiveOptions {
        LiveOptions {
            duration: self.duration.map(Duration::from_secs_f64),
            interval: Duration::from_millis(self.interval_ms.max(1)),
        }
    }
}

/// The `--format` option, declared once for every subcommand that prints: text or JSON lines.
#[derive(Args, Debug, Clone, Copy)]
pub struct FormatArgs {
    /// Output format
    #[arg(long = "format", value_name = "FORMAT", value_enum, default_value = "text")]
    pub style: Style,
}

/// The `-t` option of every subcommand that prints events.
#[derive(Args, Debug, Clone, Copy)]
pub struct TimeArgs {
    /// Text: timestamps in seconds with nanoseconds (`trace-cmd report -t`), instead of
    /// microseconds, rounded, as `trace-cmd report` shows them by default
    #[arg(short = 't', long = "ns")]
    pub ns: bool,
}

/// Arguments of `stream`.
#[derive(Args, Debug)]
pub struct StreamArgs {
    /// Source.
    #[command(flatten)]
    pub source: SourceArgs,
    /// Kernel setup.
    #[command(flatten)]
    pub kernel_setup: KernelSetupArgs,
    /// Output format.
    #[command(flatten)]
    pub format: FormatArgs,
    /// Timestamps.
    #[command(flatten)]
    pub times: TimeArgs,
    /// When to stop, how often to look.
    #[command(flatten)]
    pub live: LiveArgs,
}

/// Arguments of `show`.
#[derive(Args, Debug)]
pub struct ShowArgs {
    /// Source.
    #[command(flatten)]
    pub source: SourceArgs,
    /// Output format.
    #[command(flatten)]
    pub format: FormatArgs,
    /// Timestamps.
    #[command(flatten)]
    pub times: TimeArgs,
}

/// Arguments of `stats`.
#[derive(Args, Debug)]
pub struct StatsArgs {
    /// Source.
    #[command(flatten)]
    pub source: SourceArgs,
    /// Output format.
    #[command(flatten)]
    pub format: FormatArgs,
}

/// Arguments of `record`.
#[derive(Args, Debug)]
pub struct RecordArgs {
    /// Source.
    #[command(flatten)]
    pub source: SourceArgs,
    /// Kernel setup.
    #[command(flatten)]
    pub kernel_setup: KernelSetupArgs,
    /// The file to write
    #[arg(short, long, default_value = "trace.dat")]
    pub output: PathBuf,
    /// When to stop, how often to look.
    #[command(flatten)]
    pub live: LiveArgs,
    /// Let the scheduler run the reader threads anywhere, instead of each on the CPUs whose
    /// buffers it reads (where this machine has them): a buffer is written on its own CPU, so
    /// read there its pages are in that CPU's caches, and a reader woken by its doorbell does
    /// not wake a second CPU
    #[arg(long)]
    pub no_pin: bool,
    /// Store the pages with direct I/O (O_DIRECT), around the page cache, a mebibyte per write:
    /// far less CPU per byte where every page-cache page is fresh memory the machine charges for
    /// (virtual machines whose host takes freed memory back), and no page cache filled with the
    /// trace. The output's file system must take O_DIRECT (a tmpfs takes it and saves nothing).
    /// The finished file is assembled through the page cache as usual
    #[arg(long)]
    pub direct_io: bool,
    /// Run the reader threads under real-time scheduling (SCHED_FIFO, the lowest priority),
    /// so that a reader woken by a full page runs at once instead of waiting for its CPU behind
    /// busy threads (the producer's own, on a machine it keeps busy): with a small buffer, that
    /// wait is what loses events. Needs CAP_SYS_NICE (root) or an RLIMIT_RTPRIO of at least 1.
    /// Readers sleep between pages, and the kernel's real-time throttling bounds them besides
    #[arg(long)]
    pub realtime: bool,
}

/// Arguments of `recover`.
#[derive(Args, Debug)]
pub struct RecoverArgs {
    /// The buffer directory (the producer's --dir)
    pub dir: PathBuf,
    /// Output format.
    #[command(flatten)]
    pub format: FormatArgs,
    /// Timestamps.
    #[command(flatten)]
    pub times: TimeArgs,
    /// CPUs to read.
    #[command(flatten)]
    pub cpus: CpuArgs,
}

/// Arguments of `report`.
#[derive(Args, Debug)]
pub struct ReportArgs {
    /// The trace.dat file
    pub file: PathBuf,
    /// Output format.
    #[command(flatten)]
    pub format: FormatArgs,
    /// Timestamps.
    #[command(flatten)]
    pub times: TimeArgs,
    /// CPUs to print, of every buffer.
    #[command(flatten)]
    pub cpus: CpuArgs,
    /// Also print the file's per-CPU statistics, buffer by buffer (to stderr)
    #[arg(long)]
    pub stats: bool,
}

/// The `--cpu` option, declared once for every subcommand that reads some CPUs only.
#[derive(Args, Debug, Clone, Default)]
pub struct CpuArgs {
    /// Only these CPUs: numbers and ranges, repeated or separated with commas (--cpu 0,2-3)
    /// [default: all]
    #[arg(long = "cpu", value_name = "CPUS", value_delimiter = ',', value_parser = cpu_range)]
    ranges: Vec<std::ops::RangeInclusive<u32>>,
}

impl CpuArgs {
    /// The CPUs chosen, in the order given (empty: all).
    pub fn list(&self) -> Vec<u32> {
        self.ranges.iter().cloned().flatten().collect()
    }
}

/// Parses `N` or `FIRST-LAST` (CPU numbers, a range no longer than any machine's CPUs).
fn cpu_range(s: &str) -> Result<std::ops::RangeInclusive<u32>, String> {
    let number = |n: &str| n.trim().parse::<u32>().map_err(|_| format!("`{s}` is not a CPU number or range like 0-3"));
    let (first, last) = match s.split_once('-') {
        Some((first, last)) => (number(first)?, number(last)?),
        None => (number(s)?, number(s)?),
    };
    if first > last || last - first >= 4096 {
        return Err(format!("`{s}` is not a range of CPUs (FIRST-LAST, FIRST no greater than LAST)"));
    }
    Ok(first..=last)
}

/// Parses a non-negative number of seconds.
fn seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..1e9).contains(&v) => Ok(v),
        _ => Err(format!("`{s}` is not a number of seconds")),
    }
}

#[cfg(test)]
mod tests {
    use super::{Cli, Command};
    use clap::CommandFactory;

    /// clap's own checks of the definition (conflicting or unknown argument names, defaults its
    /// parsers refuse, and the like), which it otherwise makes only when a command line reaches
    /// the faulty argument.
    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::from_matches(&Cli::command().try_get_matches_from([&["trace-reader"], args].concat())?)
    }

    #[test]
    fn each_filter_applies_to_the_event_before_it() {
        let cli = parse(&[
            "record",
            "--kernel",
            "-e",
            "sched",
            "-f",
            "prev_pid != 0",
            "-e",
            "irq",
            "-e",
            "kvm:*",
            "-f",
            "pid > 1",
        ])
        .unwrap();
        let Command::Record(args) = cli.command else { panic!("a record command") };
        let choices = args.kernel_setup.choices(None).events;
        let got: Vec<(&str, Option<&str>)> =
            choices.iter().map(|c| (c.pattern.as_str(), c.filter.as_deref())).collect();
        assert_eq!(got, [("sched", Some("prev_pid != 0")), ("irq", None), ("kvm:*", Some("pid > 1"))]);
    }

    #[test]
    fn cpus_are_numbers_and_ranges() {
        let cli = parse(&["stream", "--cpu", "0,2-4", "--cpu", "7"]).unwrap();
        let Command::Stream(args) = cli.command else { panic!("a stream command") };
        assert_eq!(args.source.cpus.list(), [0, 2, 3, 4, 7]);
        for bad in ["3-1", "a", "1-", "0-99999"] {
            assert!(parse(&["report", "f.dat", "--cpu", bad]).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_filter_without_its_event_is_refused() {
        let err = parse(&["stream", "--kernel", "-f", "pid > 1", "-e", "sched"]).unwrap_err();
        assert!(err.to_string().contains("put it after one"), "{err}");
        let err = parse(&["record", "--kernel", "-e", "sched", "-f", "a == 1", "-f", "b == 2"]).unwrap_err();
        assert!(err.to_string().contains("has two filters"), "{err}");
        let err = parse(&["record", "-e", "sched"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::MissingRequiredArgument, "-e needs --kernel: {err}");
    }
}
