//! What hyptrace's benchmarks share: the floor and the record every peer stores
//! ([`floor`], [`payload`]), CPU pinning ([`cpus`]), the criterion settings every benchmark runs
//! with ([`settings`]), criterion's result files ([`results`]), and the processes of the
//! end-to-end benchmark ([`pipeline`]) with what its file system charges for storing ([`storage`]),
//! and the command line of the benchmarks that run without criterion's harness ([`command_line`]).
//!
//! Every figure the benchmarks publish is a ratio against a baseline measured in the same run on
//! the same machine (`docs/perf.md`); `perf-report` turns the results into its tables.

pub mod command_line;
pub mod cpus;
pub mod floor;
pub mod lttng;
#[cfg(lttng_ust)]
pub mod lttng_probe;
pub mod payload;
pub mod pipeline;
pub mod results;
pub mod settings;
pub mod skipped;
pub mod storage;
pub mod tracefs;
