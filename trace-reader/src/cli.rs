//! The command line.

use crate::live::LiveOptions;
use crate::output::Style;
use crate::source::Target;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;

/// Reads trace buffers through their memory mappings, zero-copy: those of a hyptrace producer
/// (such as hyp-sim), found through its control socket, or the Linux kernel's own (tracefs).
///
/// Events print ftrace-style, one per line, merged across CPUs in time order:
///
///   <cpu> [<seconds>.<nanoseconds>] <event>: <field>=<value> ...
///
/// with `<cpu> [LOST <n> EVENTS]` where the buffer lost events. Data goes to stdout,
/// diagnostics and summaries to stderr.
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
  trace-reader record -o trace.dat                record until Ctrl-C; then: trace-cmd report trace.dat
  trace-reader report trace.dat                   print a recorded file
  trace-reader recover /var/tmp/hyp               what a crashed hyp-sim --dir /var/tmp/hyp left";

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
    /// trace-cmd of the top-level buffer), without trace-cmd.
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
    /// or /tmp/hyptrace-<uid>/hyptrace.sock]
    #[arg(long, conflicts_with_all = ["kernel", "dir"])]
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
    /// Read only these CPUs (repeat, or separate with commas) [default: all]
    #[arg(long = "cpu", value_delimiter = ',')]
    pub cpus: Vec<u32>,
}

impl SourceArgs {
    /// The target these arguments name.
    pub fn target(&self) -> anyhow::Result<Target> {
        if self.kernel {
            if self.tracefs.as_os_str() == ring_mmap::kernel::TRACEFS {
                ring_mmap::kernel::mount_tracefs()?;
            }
            let tracing = match &self.instance {
                Some(name) => self.tracefs.join("instances").join(name),
                None => self.tracefs.clone(),
            };
            return Ok(Target::Kernel { tracing });
        }
        if let Some(dir) = &self.dir {
            return Ok(Target::Dir { dir: dir.clone() });
        }
        let socket = match &self.socket {
            Some(s) => s.clone(),
            None => ring_mmap::default_socket_path(),
        };
        Ok(Target::Producer { socket, wait: Duration::from_secs_f64(self.wait) })
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

/// Arguments of `stream`.
#[derive(Args, Debug)]
pub struct StreamArgs {
    /// Source.
    #[command(flatten)]
    pub source: SourceArgs,
    /// Output format.
    #[command(flatten)]
    pub format: FormatArgs,
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
    /// Read only these CPUs (repeat, or separate with commas) [default: all]
    #[arg(long = "cpu", value_delimiter = ',')]
    pub cpus: Vec<u32>,
}

/// Arguments of `report`.
#[derive(Args, Debug)]
pub struct ReportArgs {
    /// The trace.dat file
    pub file: PathBuf,
    /// Output format.
    #[command(flatten)]
    pub format: FormatArgs,
    /// Print only these CPUs (repeat, or separate with commas) [default: all]
    #[arg(long = "cpu", value_delimiter = ',')]
    pub cpus: Vec<u32>,
    /// Also print the file's per-CPU statistics (to stderr)
    #[arg(long)]
    pub stats: bool,
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
    use super::Cli;
    use clap::CommandFactory;

    /// clap's own checks of the definition (conflicting or unknown argument names, defaults its
    /// parsers refuse, and the like), which it otherwise makes only when a command line reaches
    /// the faulty argument.
    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
