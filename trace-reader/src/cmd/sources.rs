//! What `record` and `stream` read: one source, or the kernel and a producer together on one
//! clock, each the sessions that read it and the buffer of a file it fills.

use crate::cli::{KernelSetupArgs, SourceArgs};
use crate::event_ids::EventIds;
use crate::formats::Formats;
use crate::kernel_setup::PreparedKernel;
use crate::source::{CpuReader, Session, Target};
use anyhow::{Context, Result, bail};
use ring_core::TraceClock;

/// The trace clock a recording of the kernel and a producer uses when not told (`-C`): one every
/// hyptrace producer that knows the host's time can convert to exactly.
const SHARED_CLOCK: &str = "mono";

/// One source of a recording.
pub struct Source {
    /// Its buffer in the file: `None` for the top-level one.
    pub name: Option<String>,
    /// What it reads.
    pub target: Target,
    /// Its sessions, each read by a thread of its own.
    pub sessions: Vec<Session>,
    /// Its event formats as the file numbers them.
    pub formats: Formats,
    /// How the file numbers its events, where that differs from its own numbering.
    pub ids: Option<EventIds>,
}

impl Source {
    /// `target` opened as up to `groups` sessions of the CPUs in `only` (all if empty).
    fn open(name: Option<String>, target: Target, only: &[u32], groups: usize) -> Result<Self> {
        let sessions = Session::open_groups(&target, only, groups)?;
        let Some(first) = sessions.first() else { bail!("no CPU to record") };
        let formats = first.formats.clone();
        Ok(Self { name, target, sessions, formats, ids: None })
    }

    /// The CPUs its sessions read, in CPU order.
    pub fn recorded_cpus(&self) -> Vec<u32> {
        let mut cpus: Vec<u32> = self.sessions.iter().flat_map(|s| s.cpus.iter().map(CpuReader::cpu)).collect();
        cpus.sort_unstable();
        cpus
    }

    /// What it is called in the summary.
    pub fn label(&self) -> String {
        match (&self.name, &self.target) {
            (Some(name), _) => format!("buffer {name}"),
            (None, Target::Kernel { .. }) => "the kernel (top-level buffer)".to_string(),
            (None, _) => "top-level buffer".to_string(),
        }
    }
}

/// Opens what `source` names, each as up to `groups` sessions: one source, or the kernel (a
/// file's top-level buffer) and a producer (a buffer named after its events' system), the
/// kernel's trace clock set to one the producer converts its timestamps to. The kernel is set
/// up as `kernel_setup` asks until the [`PreparedKernel`] is dropped, after the sources.
pub fn open(
    source: &SourceArgs,
    kernel_setup: &KernelSetupArgs,
    groups: usize,
) -> Result<(Vec<Source>, Option<PreparedKernel>)> {
    let only = &source.cpus.list()[..];
    if !source.names_kernel_and_producer() {
        let (target, prepared) = source.prepared_target(kernel_setup)?;
        return Ok((vec![Source::open(None, target, only, groups)?], prepared));
    }
    let mut setup = kernel_setup.clone();
    let clock_name = setup.clock.get_or_insert_with(|| SHARED_CLOCK.to_string()).clone();
    let Some(clock) = TraceClock::from_tracefs_name(&clock_name) else {
        bail!(
            "-C {clock_name}: a producer's timestamps can be put on the kernel's mono or boot clock, not on \
             {clock_name}; leave -C out (mono) or choose one of those"
        );
    };
    let (kernel_target, prepared) = source.prepared_kernel(&setup)?;
    let kernel = Source::open(None, kernel_target, only, groups)?;
    let mut producer = Source::open(None, source.producer_target(clock), only, groups)
        .with_context(|| format!("the producer, on the kernel's {clock_name} clock"))?;
    let (formats, ids) = EventIds::after(&kernel.formats, &producer.formats)?;
    producer.name = Some(system_name(&producer.formats));
    producer.formats = formats;
    producer.ids = Some(ids);
    Ok((vec![kernel, producer], Some(prepared)))
}

/// The system a producer's events belong to (hyp-sim's: `hyp`), which names its buffer.
fn system_name(formats: &Formats) -> String {
    formats.iter().map(|f| f.system.clone()).min().unwrap_or_else(|| "producer".to_string())
}

/// The process id of the producer among `sources` read live, if there is one
/// ([`Session::producer_pid`]).
pub fn producer_pid(sources: &[Source]) -> Option<u32> {
    sources.iter().find_map(|source| source.sessions[0].producer_pid())
}

/// Every source's event formats in one table, as they are numbered together (a producer's after
/// the kernel's: [`EventIds`]).
pub fn formats_together(sources: &[Source]) -> Formats {
    let mut formats = Formats::default();
    for format in sources.iter().flat_map(|s| s.formats.iter()) {
        formats.insert(format.clone());
    }
    formats
}
