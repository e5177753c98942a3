//! What hyptrace's benchmarks share: the floor and the record every peer stores
//! ([`floor`], [`payload`]), the buffer the writer benchmarks write into ([`writer_buffer`]) and
//! the threads of the scaling one ([`pinned_writers`]), a real KVM guest traced by hyp-sim's
//! hypervisor ([`kvm_guest`]), the peers that need setting up (the kernel's [`tracefs`] and its
//! KVM tracepoints, an LTTng session: [`lttng`]), CPU pinning ([`cpus`]), the criterion
//! settings every benchmark runs with ([`settings`]), criterion's result files ([`results`]),
//! ratios measured interleaved ([`interleaved`]) with the machine's load meanwhile
//! ([`machine_load`]), the processes of the end-to-end benchmark ([`pipeline`]), its LTTng-UST
//! peer (`lttng_pipeline`) and the search for their lossless rates ([`lossless_search`]), with
//! what its file system charges for storing ([`storage`]), the command line of the benchmarks that run
//! without criterion's harness ([`command_line`]), and saying a benchmark was skipped
//! ([`skipped`]).
//!
//! Every figure the benchmarks publish is a ratio against a baseline measured in the same run on
//! the same machine (`docs/perf.md`); `perf-report` turns the results into its tables.

pub mod command_line;
pub mod cpus;
pub mod floor;
pub mod interleaved;
pub mod kvm_guest;
pub mod lossless_search;
pub mod lttng;
#[cfg(lttng_ust)]
pub mod lttng_pipeline;
#[cfg(lttng_ust)]
pub mod lttng_probe;
pub mod machine_load;
pub mod payload;
pub mod pinned_writers;
pub mod pipeline;
pub mod results;
pub mod settings;
pub mod skipped;
pub mod storage;
pub mod tracefs;
pub mod writer_buffer;
