//! Scaling: 1..=N writer threads (N = the CPUs available), each pinned to its own CPU and writing
//! 16-byte events stamped with the cycle counter into its own CPU's 1 MiB overwrite-mode buffer
//! (`hyptrace_benches::pinned_writers`). One iteration is one event per thread, so criterion's
//! events/s is the aggregate rate.

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use hyptrace_benches::{cpus, pinned_writers, settings, writer_buffer};
use ring_core::{CycleClock, Mode};

fn scaling(c: &mut Criterion) {
    let mut g = c.benchmark_group("scaling");
    // Each sample starts its threads afresh: few long samples keep that out of the figure.
    g.sampling_mode(SamplingMode::Flat).sample_size(20);
    for threads in 1..=cpus::available() {
        let bufs: Vec<_> = (0..threads).map(|_| writer_buffer::megabyte(Mode::Overwrite, CycleClock)).collect();
        g.throughput(Throughput::Elements(threads as u64));
        g.bench_function(format!("threads_{threads}"), |b| b.iter_custom(|iters| pinned_writers::run(&bufs, iters)));
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = settings::criterion();
    targets = scaling
}
criterion_main!(benches);
