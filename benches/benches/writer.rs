//! Writer cost per event: `CpuBuffer::write` of 16-, 64- and 256-byte payloads with the cycle
//! counter (TSC) and a per-CPU counter clock, in overwrite and drop modes, alone and with a
//! consumer swapping pages concurrently on the other CPU (and, as its baseline, with the other CPU
//! only spinning), and writes nested inside an open one.
//!
//! The buffers are 1 MiB (256 × 4 KiB sub-buffers), so the loop keeps crossing pages. The floor
//! and the peers this is compared with are in `peers.rs`.

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main};
use hyptrace_benches::writer_buffer::megabyte;
use hyptrace_benches::{cpus, payload::payload, settings};
use ring_core::{Clock, CounterClock, CpuBuffer, Cursor, CycleClock, Mode};
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};

/// `write` of `N`-byte payloads into `buf`, as benchmark `name`.
fn write<C: Clock, const N: usize>(g: &mut BenchmarkGroup<'_, WallTime>, name: &str, buf: &CpuBuffer<'_, C>) {
    let mut i = 0u64;
    let writer = buf.writer().expect("the benchmark is the buffer's only writer");
    g.bench_function(name, |b| {
        b.iter(|| {
            i += 1;
            // Drop mode refuses events when the ring is full: that is part of what is measured.
            let _ = writer.write(&payload::<N>(black_box(i)));
        })
    });
}

/// A consumer on the other CPU, as `ring_core::Cursor` runs one: takes each finished page
/// (swapping its reader page for it), decodes its events, and asks again; when there is nothing
/// new it pauses for about a microsecond. Runs until `stop`.
fn consume<C: Clock>(buf: &CpuBuffer<'_, C>, stop: &AtomicBool) {
    cpus::pin_or_warn(1);
    let view = buf.view();
    let mut cursor = Cursor::default();
    let mut events = 0u64;
    // Ordering: Relaxed; the flag carries no data.
    while !stop.load(Ordering::Relaxed) {
        match cursor.drain(&view, |read| buf.swap_reader_page(read), |_| events += 1) {
            Ok(0) | Err(_) => (0..100).for_each(|_| std::hint::spin_loop()),
            Ok(_) => {}
        }
    }
    black_box(events);
}

/// What the consumer's CPU does when it is not consuming: spin, as `consume` does between polls,
/// touching nothing of the buffer. The baseline of the consumer benchmarks: on a virtual machine
/// a busy second vCPU alone can slow the first (they may share a physical core), and this
/// separates that from what the consumer itself costs the writer.
fn spin(stop: &AtomicBool) {
    cpus::pin_or_warn(1);
    // Ordering: Relaxed; the flag carries no data.
    while !stop.load(Ordering::Relaxed) {
        (0..100).for_each(|_| std::hint::spin_loop());
    }
}

/// Runs `bench` while `other` runs on another thread, stopping `other` after it.
fn beside(other: impl FnOnce(&AtomicBool) + Send, bench: impl FnOnce()) {
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| other(&stop));
        bench();
        // Ordering: Relaxed; the flag carries no data, and the scope's join synchronises.
        stop.store(true, Ordering::Relaxed);
    });
}

/// The same 16-byte write in both modes, with and without a concurrent consumer, and in overwrite
/// mode beside a thread that only spins (the consumer rows' baseline).
fn modes<C: Clock + Sync>(g: &mut BenchmarkGroup<'_, WallTime>, clock_name: &str, clock: impl Fn() -> C) {
    for (mode, mode_name) in [(Mode::Overwrite, "overwrite"), (Mode::Drop, "drop")] {
        let buf = megabyte(mode, clock());
        write::<_, 16>(g, &format!("{clock_name}_16B_{mode_name}"), &buf);
        let buf = megabyte(mode, clock());
        beside(
            |stop| consume(&buf, stop),
            || write::<_, 16>(g, &format!("{clock_name}_16B_{mode_name}_consumer"), &buf),
        );
    }
    let buf = megabyte(Mode::Overwrite, clock());
    beside(spin, || write::<_, 16>(g, &format!("{clock_name}_16B_overwrite_spinner"), &buf));
}

/// A 16-byte event written while another is open (as from a signal handler interrupting a
/// write): staged, then moved into the ring by the outer commit. Two events per iteration.
fn nested<C: Clock>(g: &mut BenchmarkGroup<'_, WallTime>, name: &str, buf: &CpuBuffer<'_, C>) {
    g.throughput(Throughput::Elements(2));
    let mut i = 0u64;
    let writer = buf.writer().expect("the benchmark is the buffer's only writer");
    g.bench_function(name, |b| {
        b.iter(|| {
            i += 1;
            let mut outer = writer.reserve(16).expect("overwrite mode never refuses");
            outer.write_at(0, &payload::<16>(black_box(i))).expect("in bounds");
            writer.write(&payload::<16>(black_box(!i))).expect("the lane has room");
            outer.commit();
        })
    });
    g.throughput(Throughput::Elements(1));
}

fn writer(c: &mut Criterion) {
    cpus::pin_or_warn(0);
    let mut g = c.benchmark_group("write");
    g.throughput(Throughput::Elements(1));
    modes(&mut g, "tsc", || CycleClock);
    modes(&mut g, "counter", CounterClock::default);
    write::<_, 64>(&mut g, "tsc_64B_overwrite", &megabyte(Mode::Overwrite, CycleClock));
    write::<_, 256>(&mut g, "tsc_256B_overwrite", &megabyte(Mode::Overwrite, CycleClock));
    write::<_, 64>(&mut g, "counter_64B_overwrite", &megabyte(Mode::Overwrite, CounterClock::default()));
    write::<_, 256>(&mut g, "counter_256B_overwrite", &megabyte(Mode::Overwrite, CounterClock::default()));
    nested(&mut g, "tsc_16B_nested", &megabyte(Mode::Overwrite, CycleClock));
    g.finish();
}

criterion_group! {
    name = benches;
    config = settings::criterion();
    targets = writer
}
criterion_main!(benches);
