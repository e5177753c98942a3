//! Scaling: 1..=N writer threads (N = the CPUs available), each pinned to its own CPU and writing
//! 16-byte events stamped with the cycle counter into its own CPU's 1 MiB overwrite-mode buffer.
//! One iteration is one event per thread, so criterion's events/s is the aggregate rate.

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use hyptrace_benches::{cpus, payload::payload, settings};
use ring_core::{Config, CpuBuffer, CycleClock, Geometry, Mode};
use std::hint::black_box;
use std::sync::Barrier;
use std::time::{Duration, Instant};

/// `threads` writers, writer `t` on CPU `t` into `bufs[t]`, each writing `events` events once all
/// are ready; how long from the common start until the last one finished.
fn run(bufs: &[CpuBuffer<'static, CycleClock>], events: u64) -> Duration {
    let ready = Barrier::new(bufs.len() + 1);
    let (start, ends) = std::thread::scope(|s| {
        let writers: Vec<_> = bufs
            .iter()
            .enumerate()
            .map(|(cpu, buf)| {
                let ready = &ready;
                s.spawn(move || {
                    cpus::pin_or_warn(cpu);
                    let writer = buf.writer().expect("each thread claims its own CPU's writer");
                    ready.wait();
                    for i in 0..events {
                        let _ = writer.write(&payload::<16>(black_box(i)));
                    }
                    Instant::now()
                })
            })
            .collect();
        ready.wait();
        let start = Instant::now();
        (start, writers.into_iter().map(|w| w.join().expect("writer thread")).collect::<Vec<_>>())
    });
    ends.into_iter().max().map_or(Duration::ZERO, |end| end.saturating_duration_since(start))
}

fn scaling(c: &mut Criterion) {
    let mut g = c.benchmark_group("scaling");
    // Each sample starts its threads afresh: few long samples keep that out of the figure.
    g.sampling_mode(SamplingMode::Flat).sample_size(20);
    let geometry = Geometry::new(4096, 256).expect("valid geometry");
    for threads in 1..=cpus::available() {
        let bufs: Vec<_> = (0..threads)
            .map(|_| CpuBuffer::with_heap(Config { geometry, mode: Mode::Overwrite }, CycleClock).expect("heap buffer"))
            .collect();
        g.throughput(Throughput::Elements(threads as u64));
        g.bench_function(format!("threads_{threads}"), |b| b.iter_custom(|iters| run(&bufs, iters)));
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = settings::criterion();
    targets = scaling
}
criterion_main!(benches);
