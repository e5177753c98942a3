//! Reader cost on full, hot sub-buffers (32 × 4 KiB of 16-byte events, which stay in cache):
//!
//! - `decode_shm`: decoding every page in place in shared memory (`EventIter::drain_events`
//!   over `ShmPage`, the path every consumer takes), copying each payload out, against
//!   `plain_read`, a plain read of the same bytes from private memory (summing them as 64-bit
//!   words), and `decode_slice`, the same decode from a private copy;
//! - `decode_shm_mixed`: `decode_shm` on pages of events of mixed sizes;
//! - `snapshot`: a non-consuming snapshot of the whole buffer (every page copied and validated)
//!   against `plain_copy`, a `memcpy` of the same bytes;
//! - `consume_in_process`: consuming the whole ring through reader-page swaps
//!   (`Cursor::drain` with `swap_reader_page`), and `consume_socket`, the same through a
//!   read-only mapping of a memfd-backed producer with each swap a GET_READER_PAGE round trip
//!   over its control socket (served by a thread of this process).
//!
//! Each reports bytes/s and events/s; the writer's refill between consuming iterations is
//! untimed.

use criterion::measurement::WallTime;
use criterion::{BatchSize, BenchmarkGroup, Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use hyptrace_benches::{cpus, payload::payload, settings};
use ring_core::{Config, CounterClock, CpuBuffer, Cursor, EventIter, Geometry, Mode, Record};
use ring_mmap::{Backing, Connection, Consumer, ProducerConfig, Server, ShmProducer};
use std::hint::black_box;
use std::sync::Arc;

/// Sub-buffers of every buffer here, the reader page included.
const SUBBUFS: u32 = 33;
/// Bytes per sub-buffer.
const SUBBUF_SIZE: u32 = 4096;

fn geometry() -> Geometry {
    Geometry::new(SUBBUF_SIZE, SUBBUFS).expect("valid geometry")
}

/// 16-byte events that fill every ring page but the one the writer ends on: writes them into an
/// empty buffer of [`geometry`] and leaves one event on the last page.
fn fill(write: impl Fn(&[u8; 16])) -> u64 {
    // A 16-byte event takes 20 bytes; the page's 4080 data bytes hold 204 of them.
    let per_page = u64::from(geometry().data_size()) / 20;
    let events = per_page * u64::from(geometry().nr_slots() - 1) + 1;
    for i in 0..events {
        write(&payload::<16>(i));
    }
    events
}

/// Folds an event into a checksum, so decoding cannot be skipped.
#[inline]
fn fold(sum: u64, timestamp: u64, payload: &[u8]) -> u64 {
    let word = u64::from_ne_bytes(payload[..8].try_into().expect("16-byte payloads"));
    sum.wrapping_add(timestamp ^ word)
}

fn in_place(g: &mut BenchmarkGroup<'_, WallTime>) {
    let buf = CpuBuffer::with_heap(Config { geometry: geometry(), mode: Mode::Overwrite }, CounterClock::default())
        .expect("heap buffer");
    let writer = buf.writer().expect("the benchmark is the buffer's only writer");
    let events = fill(|p| writer.write(p).expect("overwrite mode never refuses"));
    let view = buf.view();
    let pages: Vec<_> = (0..SUBBUFS).map(|id| view.page(id).expect("page")).collect();
    let page_len = SUBBUF_SIZE as usize;
    let mut private = vec![0u8; pages.len() * page_len];
    for (page, out) in pages.iter().zip(private.chunks_mut(page_len)) {
        page.copy_to(out);
    }
    g.throughput(Throughput::ElementsAndBytes { elements: events, bytes: private.len() as u64 });
    g.bench_function("decode_shm", |b| {
        b.iter(|| {
            let mut sum = 0u64;
            let mut out = [0u8; 16];
            for page in &pages {
                let mut events = EventIter::new(page).expect("a valid page");
                events
                    .drain_events(|event| {
                        event.payload.copy_to(&mut out);
                        sum = fold(sum, event.timestamp, &out);
                    })
                    .expect("valid events");
            }
            black_box(sum)
        })
    });
    g.bench_function("decode_slice", |b| {
        b.iter(|| {
            let mut sum = 0u64;
            for page in private.chunks(page_len) {
                let mut events = EventIter::new(page).expect("a valid page");
                events.drain_events(|event| sum = fold(sum, event.timestamp, event.payload)).expect("valid events");
            }
            black_box(sum)
        })
    });
    g.bench_function("plain_read", |b| {
        b.iter(|| {
            let words = black_box(&private).as_chunks::<8>().0;
            black_box(words.iter().fold(0u64, |sum, w| sum.wrapping_add(u64::from_ne_bytes(*w))))
        })
    });
    g.bench_function("snapshot", |b| b.iter(|| black_box(view.snapshot().expect("no swapper runs"))));
    let mut copy = vec![0u8; private.len()];
    g.bench_function("plain_copy", |b| {
        b.iter(|| {
            copy.copy_from_slice(black_box(&private));
            black_box(&copy);
        })
    });
}

/// The same pages as [`in_place`], full of events of mixed sizes (payloads of 8 to 64 bytes in
/// a pseudo-random order), decoded in place as `decode_shm` does: the decoder's fast path
/// expects each event to be the size of the one before, and here it mostly is not.
fn in_place_mixed(g: &mut BenchmarkGroup<'_, WallTime>) {
    let buf = CpuBuffer::with_heap(Config { geometry: geometry(), mode: Mode::Overwrite }, CounterClock::default())
        .expect("heap buffer");
    let writer = buf.writer().expect("the benchmark is the buffer's only writer");
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let capacity = u64::from(geometry().data_size()) * u64::from(SUBBUFS);
    let mut written = 0;
    // Overwrite mode: writing more than the ring holds leaves every ring page full.
    for i in 0u64.. {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let len = 8 + 8 * (state % 8) as usize;
        let bytes: Vec<u8> = i.to_ne_bytes().iter().copied().cycle().take(len).collect();
        writer.write(&bytes).expect("overwrite mode never refuses");
        written += 4 + len as u64;
        if written > 2 * capacity {
            break;
        }
    }
    let view = buf.view();
    let pages: Vec<_> = (0..SUBBUFS).map(|id| view.page(id).expect("page")).collect();
    let decode = |pages: &[ring_core::ShmPage<'_>]| {
        let mut sum = 0u64;
        let mut count = 0u64;
        let mut out = [0u8; 8];
        for page in pages {
            let mut events = EventIter::new(page).expect("a valid page");
            count += events
                .drain_events(|event| {
                    event.payload.copy_to(&mut out);
                    sum = fold(sum, event.timestamp, &out);
                })
                .expect("valid events");
        }
        (sum, count)
    };
    let events = decode(&pages).1;
    g.throughput(Throughput::ElementsAndBytes { elements: events, bytes: u64::from(SUBBUF_SIZE * SUBBUFS) });
    g.bench_function("decode_shm_mixed", |b| b.iter(|| black_box(decode(&pages))));
}

/// Consuming benchmarks: `refill` writes a ring's worth of events (untimed), `consume` reads
/// them all and returns how many it read.
fn consuming(
    g: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    refill: impl Fn() -> u64,
    mut consume: impl FnMut() -> u64,
) {
    let events = refill();
    assert_eq!(consume(), events, "{name}: the consumer reads every event");
    g.throughput(Throughput::ElementsAndBytes { elements: events, bytes: u64::from(SUBBUF_SIZE * (SUBBUFS - 1)) });
    // An iteration is a whole ring (milliseconds through the socket): a few equal samples.
    g.sampling_mode(SamplingMode::Flat).sample_size(20);
    g.bench_function(name, |b| b.iter_batched(&refill, |_| consume(), BatchSize::PerIteration));
}

fn consume_in_process(g: &mut BenchmarkGroup<'_, WallTime>) {
    let buf = CpuBuffer::with_heap(Config { geometry: geometry(), mode: Mode::Drop }, CounterClock::default())
        .expect("heap buffer");
    let view = buf.view();
    let mut cursor = Cursor::default();
    let writer = buf.writer().expect("the benchmark is the buffer's only writer");
    consuming(
        g,
        "consume_in_process",
        || fill(|p| writer.write(p).expect("the ring has room")),
        || {
            let mut sum = 0u64;
            let mut out = [0u8; 16];
            let read = cursor.drain(
                &view,
                |read| buf.swap_reader_page(read),
                |record| {
                    if let Record::Event(e) = record {
                        e.payload.copy_to(&mut out);
                        sum = fold(sum, e.timestamp, &out);
                    }
                },
            );
            black_box(sum);
            read.expect("a valid buffer")
        },
    );
}

fn consume_socket(g: &mut BenchmarkGroup<'_, WallTime>) {
    let config = ProducerConfig {
        nr_cpus: 1,
        buffer: Config { geometry: geometry(), mode: Mode::Drop },
        backing: Backing::Memfd,
        formats: Vec::new(),
    };
    let producer = Arc::new(ShmProducer::new(config, |_| CounterClock::default()).expect("memfd producer"));
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("sock");
    let server = Server::start(&socket, producer.clone()).expect("serving");
    let conn = Connection::connect(&socket).expect("connect");
    let mut consumer = Consumer::new(conn.open_cpu(0).expect("open_cpu")).expect("consumer");
    let writer = producer.cpu(0).writer().expect("the benchmark is the buffer's only writer");
    consuming(
        g,
        "consume_socket",
        || fill(|p| writer.write(p).expect("the ring has room")),
        || {
            let mut sum = 0u64;
            let mut out = [0u8; 16];
            let read = consumer.drain(|record| {
                if let Record::Event(e) = record {
                    e.payload.copy_to(&mut out);
                    sum = fold(sum, e.timestamp, &out);
                }
            });
            black_box(sum);
            read.expect("the producer answers")
        },
    );
    drop(consumer);
    drop(server);
}

fn reader(c: &mut Criterion) {
    cpus::pin_or_warn(0);
    let mut g = c.benchmark_group("reader");
    in_place(&mut g);
    in_place_mixed(&mut g);
    consume_in_process(&mut g);
    consume_socket(&mut g);
    g.finish();
}

criterion_group! {
    name = benches;
    config = settings::criterion();
    targets = reader
}
criterion_main!(benches);
