//! The trace.dat file a recording writes: its header made from what the sources describe.

use super::kernel_files::kernel_symbols;
use crate::cli::RecordArgs;
use crate::cmd::sources::{self, Source};
use crate::source::Target;
use crate::tracedat::{BufferSpec, DatInfo, DatWriter, SpoolIo};
use anyhow::{Context, Result};

/// Creates the trace.dat file of `args` for `sources`: the first's page size and trace clock,
/// every source's formats, the kernel's symbols, a buffer per source.
pub(super) fn create_file(sources: &[Source], args: &RecordArgs) -> Result<DatWriter> {
    let top = &sources[0];
    let formats = sources::formats_together(sources);
    let mut info = DatInfo::new(top.sessions[0].subbuf_size, &formats, top.target.trace_clock());
    if let Target::Kernel { tracing } = &top.target {
        kernel_symbols(&mut info, tracing);
    }
    let buffers: Vec<BufferSpec> = sources
        .iter()
        .map(|s| BufferSpec { name: s.name.clone(), nr_cpus: s.sessions[0].nr_cpus, cpus: s.recorded_cpus() })
        .collect();
    let io = if args.direct_io { SpoolIo::Direct } else { SpoolIo::Buffered };
    DatWriter::create(&args.output, info, &buffers, io).with_context(|| format!("creating {}", args.output.display()))
}
