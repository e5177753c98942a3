//! Writer threads pinned one per CPU, each writing 16-byte events stamped with the cycle counter
//! into a buffer of its own: the scaling benchmark's workload.

use crate::{cpus, payload::payload};
use ring_core::{CpuBuffer, CycleClock};
use std::hint::black_box;
use std::sync::Barrier;
use std::time::{Duration, Instant};

/// `bufs.len()` writers, writer `t` on CPU `t` into `bufs[t]`, each writing `events` events once
/// all are ready; how long from the first one's start until the last one's end (each thread
/// reads the clock itself: the calling thread may share a CPU with a writer).
pub fn run(bufs: &[CpuBuffer<'static, CycleClock>], events: u64) -> Duration {
    let ready = Barrier::new(bufs.len());
    let spans: Vec<(Instant, Instant)> = std::thread::scope(|s| {
        let writers: Vec<_> = bufs
            .iter()
            .enumerate()
            .map(|(cpu, buf)| {
                let ready = &ready;
                s.spawn(move || {
                    cpus::pin_or_warn(cpu);
                    let writer = buf.writer().expect("each thread claims its own CPU's writer");
                    ready.wait();
                    let start = Instant::now();
                    for i in 0..events {
                        let _ = writer.write(&payload::<16>(black_box(i)));
                    }
                    (start, Instant::now())
                })
            })
            .collect();
        writers.into_iter().map(|w| w.join().expect("writer thread")).collect()
    });
    let start = spans.iter().map(|span| span.0).min();
    let end = spans.iter().map(|span| span.1).max();
    start.zip(end).map_or(Duration::ZERO, |(start, end)| end.saturating_duration_since(start))
}
