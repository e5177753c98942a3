//! The floor and the peers hyptrace's writer is compared with, each storing the same record: a
//! timestamp from the same clock and the same payload.
//!
//! - The floor: read the clock, store the timestamp and payload round-robin into about 1 MiB.
//! - rtrb's `push` (wait-free SPSC queue; drained in place when full, as it has no overwrite).
//! - crossbeam's `ArrayQueue::force_push` (lock-free MPMC queue overwriting its oldest element).
//! - the `ringbuf` crate's `push_overwrite` (SPSC ring buffer overwriting its oldest element).
//! - the kernel's `trace_marker_raw`: one `write(2)` of the 16-byte payload into a tracefs
//!   instance's ring buffer (skipped, with the reason printed, where tracefs is unavailable).
//! - LTTng-UST: an enabled tracepoint carrying the 16-byte payload, recorded by a snapshot-mode
//!   session (overwrite, no reader) into per-UID buffers of 256 × 4 KiB per CPU, stamped by
//!   LTTng's own clock (skipped, with the reason printed, where LTTng cannot run).

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main};
use hyptrace_benches::floor::Floor;
use hyptrace_benches::payload::{Record, payload};
use hyptrace_benches::tracefs::RawMarker;
use hyptrace_benches::{cpus, lttng, settings, skipped};
use ring_core::{Clock, CounterClock, CycleClock};
use std::hint::black_box;

/// Bytes each queue and the floor hold, as hyptrace's 1 MiB buffers do.
const BYTES: usize = 1 << 20;

/// Entries of `N`-byte records in about [`BYTES`] (a power of two).
fn capacity<const N: usize>() -> usize {
    (BYTES / size_of::<Record<N>>()).next_power_of_two()
}

fn floor<C: Clock, const N: usize>(g: &mut BenchmarkGroup<'_, WallTime>, name: &str, clock: C) {
    let mut floor = Floor::<C, N>::new(BYTES, clock);
    let mut i = 0u64;
    g.bench_function(name, |b| {
        b.iter(|| {
            i += 1;
            floor.record(&payload::<N>(black_box(i)));
        })
    });
}

fn rtrb_push(g: &mut BenchmarkGroup<'_, WallTime>) {
    let (mut tx, mut rx) = rtrb::RingBuffer::<Record<16>>::new(capacity::<16>());
    let mut i = 0u64;
    g.bench_function("rtrb_push_tsc_16B", |b| {
        b.iter(|| {
            i += 1;
            let record = (CycleClock.now(), payload::<16>(black_box(i)));
            if let Err(rtrb::PushError::Full(record)) = tx.push(record) {
                while rx.pop().is_ok() {}
                let _ = tx.push(record);
            }
        })
    });
}

fn crossbeam_force_push(g: &mut BenchmarkGroup<'_, WallTime>) {
    let queue = crossbeam_queue::ArrayQueue::<Record<16>>::new(capacity::<16>());
    let mut i = 0u64;
    g.bench_function("crossbeam_force_push_tsc_16B", |b| {
        b.iter(|| {
            i += 1;
            black_box(queue.force_push((CycleClock.now(), payload::<16>(black_box(i)))));
        })
    });
}

fn ringbuf_push_overwrite(g: &mut BenchmarkGroup<'_, WallTime>) {
    let mut rb = ringbuf::HeapRb::<Record<16>>::new(capacity::<16>());
    let mut i = 0u64;
    g.bench_function("ringbuf_push_overwrite_tsc_16B", |b| {
        b.iter(|| {
            i += 1;
            black_box(rb.push_overwrite((CycleClock.now(), payload::<16>(black_box(i)))));
        })
    });
}

/// `write(2)` of a 16-byte payload to `trace_marker_raw` on a tracefs instance with a 1 MiB
/// per-CPU overwrite-mode buffer.
fn trace_marker_raw(g: &mut BenchmarkGroup<'_, WallTime>) {
    let mut marker = match RawMarker::open("marker") {
        Ok(marker) => marker,
        Err(why) => return skipped::skip("peers/trace_marker_raw_16B", &why),
    };
    let mut i = 0u64;
    g.bench_function("trace_marker_raw_16B", |b| {
        b.iter(|| {
            i += 1;
            marker.write(&payload::<16>(black_box(i)));
        })
    });
}

/// An enabled LTTng-UST tracepoint carrying the 16-byte payload (one call into the C provider,
/// `benches/lttng/probe.c`), recorded by a session of this benchmark's own.
#[cfg(lttng_ust)]
fn lttng_ust(g: &mut BenchmarkGroup<'_, WallTime>) {
    use hyptrace_benches::lttng_probe;
    let session = match lttng::Session::start("peers", lttng_probe::enabled) {
        Ok(session) => session,
        Err(why) => return skipped::skip(LTTNG_ID, &why),
    };
    let mut i = 0u64;
    g.bench_function("lttng_ust_16B", |b| {
        b.iter(|| {
            i += 1;
            lttng_probe::record(&payload::<16>(black_box(i)));
        })
    });
    drop(session);
}

#[cfg(not(lttng_ust))]
fn lttng_ust(_: &mut BenchmarkGroup<'_, WallTime>) {
    skipped::skip(LTTNG_ID, lttng::NOT_BUILT);
}

/// The LTTng-UST peer's benchmark.
const LTTNG_ID: &str = "peers/lttng_ust_16B";

fn peers(c: &mut Criterion) {
    cpus::pin_or_warn(0);
    let mut g = c.benchmark_group("peers");
    g.throughput(Throughput::Elements(1));
    floor::<_, 16>(&mut g, "floor_tsc_16B", CycleClock);
    floor::<_, 64>(&mut g, "floor_tsc_64B", CycleClock);
    floor::<_, 256>(&mut g, "floor_tsc_256B", CycleClock);
    floor::<_, 16>(&mut g, "floor_counter_16B", CounterClock::default());
    floor::<_, 64>(&mut g, "floor_counter_64B", CounterClock::default());
    floor::<_, 256>(&mut g, "floor_counter_256B", CounterClock::default());
    rtrb_push(&mut g);
    crossbeam_force_push(&mut g);
    ringbuf_push_overwrite(&mut g);
    trace_marker_raw(&mut g);
    lttng_ust(&mut g);
    g.finish();
}

criterion_group! {
    name = benches;
    config = settings::criterion();
    targets = peers
}
criterion_main!(benches);
