//! Writer cost: `write` of a 16-byte payload with the cycle counter and with a per-CPU counter
//! clock, beside the floor (clock + 16-byte store) and rtrb's push, in one run.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use hyptrace_benches::{Floor, payload16};
use ring_core::{Config, CounterClock, CpuBuffer, CycleClock, Geometry, Mode};
use std::hint::black_box;

fn buffer<C: ring_core::Clock>(clock: C) -> CpuBuffer<'static, C> {
    let config = Config { geometry: Geometry::new(4096, 256).expect("valid geometry"), mode: Mode::Overwrite };
    CpuBuffer::with_heap(config, clock).expect("heap buffer")
}

fn write_16b(c: &mut Criterion) {
    let mut g = c.benchmark_group("write_16B");
    g.throughput(Throughput::Elements(1));

    let mut floor = Floor::new(1 << 16, CycleClock);
    let mut i = 0u64;
    g.bench_function("floor_cycle_clock", |b| {
        b.iter(|| {
            i += 1;
            floor.record(&payload16(black_box(i)));
        })
    });

    let buf = buffer(CycleClock);
    let mut i = 0u64;
    g.bench_function("hyptrace_cycle_clock", |b| {
        b.iter(|| {
            i += 1;
            buf.write(&payload16(black_box(i))).expect("overwrite mode never refuses");
        })
    });

    let mut floor = Floor::new(1 << 16, CounterClock::default());
    let mut i = 0u64;
    g.bench_function("floor_counter_clock", |b| {
        b.iter(|| {
            i += 1;
            floor.record(&payload16(black_box(i)));
        })
    });

    let buf = buffer(CounterClock::default());
    let mut i = 0u64;
    g.bench_function("hyptrace_counter_clock", |b| {
        b.iter(|| {
            i += 1;
            buf.write(&payload16(black_box(i))).expect("overwrite mode never refuses");
        })
    });

    // rtrb with the same record (timestamp + 16 bytes); a consumer-less queue refuses when full,
    // so the benchmark drains it in place when that happens.
    let (mut tx, mut rx) = rtrb::RingBuffer::<(u64, [u8; 16])>::new(1 << 16);
    let mut i = 0u64;
    g.bench_function("rtrb_push_cycle_clock", |b| {
        b.iter(|| {
            i += 1;
            let item = (ring_core::Clock::now(&CycleClock), payload16(black_box(i)));
            if let Err(rtrb::PushError::Full(item)) = tx.push(item) {
                while rx.pop().is_ok() {}
                let _ = tx.push(item);
            }
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(std::time::Duration::from_secs(3)).warm_up_time(std::time::Duration::from_secs(1));
    targets = write_16b
}
criterion_main!(benches);
