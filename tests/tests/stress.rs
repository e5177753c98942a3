//! Multi-threaded stress of ring-core: a writer thread per CPU buffer, one consumer thread swapping
//! reader pages on every CPU, and one non-consuming snapshot reader, for a bounded time in both
//! modes. The machine is oversubscribed on purpose (more threads than cores) so swaps land in the
//! middle of writes, page moves and head pushes.
//!
//! Checked: no event is torn; each CPU's events arrive in sequence order with non-decreasing
//! timestamps; every gap in the sequence is reported as lost right before the event after it;
//! validated snapshot pages are never torn; and at the end, `lost = overrun + dropped` and
//! `entries = read + overrun + held` on every CPU. Separately, snapshots of a ring whose writer
//! moves from page to page every few tens of nanoseconds still cover the ring.
//!
//! `HYPTRACE_STRESS_MS` sets the time per mode (default 1500 ms).
#![cfg(not(loom))]

use hyptrace_tests::payload;
use ring_core::{
    Config, CpuBuffer, Cursor, EventIter, Geometry, Lost, Mode, MonotonicClock, Record, SnapshotError, WriteError,
};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

type Buf = CpuBuffer<'static, MonotonicClock>;

const CPUS: usize = 2;

fn run_time() -> Duration {
    let ms = std::env::var("HYPTRACE_STRESS_MS").ok().and_then(|v| v.parse().ok()).unwrap_or(1500);
    Duration::from_millis(ms)
}

/// Payload length of event `seq`: mostly small, sometimes large enough for a `type_len` 0 event.
fn len_of(seq: u32) -> usize {
    match seq % 23 {
        0 => 200,
        n => 8 + (n as usize * 5) % 57,
    }
}

/// Writes events 0.. until told to stop; every 16th is an outer reservation with a nested write
/// inside it (as a signal handler would make). Returns how many sequence numbers were used.
fn writer(buf: &Buf, stop: &AtomicBool) -> u32 {
    let writer = buf.writer().expect("one writer thread per buffer");
    let mut seq = 0u32;
    while !stop.load(Ordering::Relaxed) {
        if seq % 16 == 15 {
            let p = payload::make(seq, len_of(seq));
            let nested = payload::make(seq + 1, 12);
            match writer.reserve(p.len()) {
                Ok(mut outer) => {
                    outer.write_at(0, &p).expect("in bounds");
                    let _ = writer.write(&nested);
                    outer.commit();
                }
                // The outer event was dropped (drop mode, ring full) and counted; the "nested"
                // one then goes to the ring as an outermost write.
                Err(WriteError::Dropped) => {
                    let _ = writer.write(&nested);
                }
                Err(e) => panic!("reserve {seq} failed: {e}"),
            }
            seq += 2;
        } else {
            match writer.write(&payload::make(seq, len_of(seq))) {
                Ok(()) | Err(WriteError::Dropped) => {}
                Err(e) => panic!("write {seq} failed: {e}"),
            }
            seq += 1;
        }
    }
    seq
}

/// What the consumer saw on one CPU.
#[derive(Default)]
struct CpuSeen {
    cursor: Cursor,
    next_seq: u32,
    last_ts: u64,
    events: u64,
    lost: u64,
    pending_lost: u64,
}

impl CpuSeen {
    fn take(&mut self, item: Record<'_>) {
        match item {
            Record::Lost(Lost::Count(n)) => self.pending_lost += n,
            Record::Lost(other) => panic!("an in-process swap reports exact losses, not {other:?}"),
            Record::Event(e) => {
                let seq = payload::check(&e.payload.to_vec()).unwrap_or_else(|t| panic!("torn event: {t:?}"));
                assert!(seq >= self.next_seq, "event {seq} after {}: repeated or out of order", self.next_seq);
                assert_eq!(
                    u64::from(seq - self.next_seq),
                    self.pending_lost,
                    "gap before event {seq} differs from the losses reported"
                );
                assert!(e.timestamp >= self.last_ts, "time went backwards at event {seq}");
                self.lost += self.pending_lost;
                self.pending_lost = 0;
                self.next_seq = seq + 1;
                self.last_ts = e.timestamp;
                self.events += 1;
            }
        }
    }

    fn drain(&mut self, buf: &Buf) {
        let view = buf.view();
        let mut cursor = self.cursor;
        let result = cursor.drain(&view, |read| buf.swap_reader_page(read), |item| self.take(item));
        self.cursor = cursor;
        if let Err(e) = result {
            panic!("consumer failed: {e}");
        }
    }
}

/// Takes snapshots until told to stop; every validated page must decode into untorn events in
/// sequence order. Returns (pages validated, pages discarded, snapshots that lost to swaps).
fn snapshotter(bufs: &[Buf], stop: &AtomicBool) -> (u64, u64, u64) {
    let (mut good, mut discarded, mut contended) = (0, 0, 0);
    while !stop.load(Ordering::Relaxed) {
        for buf in bufs {
            let snap = match buf.view().snapshot() {
                Ok(snap) => snap,
                Err(SnapshotError::Contended) => {
                    contended += 1;
                    continue;
                }
                Err(e) => panic!("snapshot failed: {e}"),
            };
            discarded += u64::from(snap.discarded);
            for page in &snap.pages {
                good += 1;
                let mut last = None;
                for event in page.events() {
                    let seq = payload::check(event.payload).unwrap_or_else(|t| panic!("torn snapshot event: {t:?}"));
                    assert!(last.is_none_or(|l| seq > l), "snapshot page out of order");
                    last = Some(seq);
                }
            }
        }
    }
    (good, discarded, contended)
}

fn stress(mode: Mode) {
    let geometry = Geometry::new(1024, 8).expect("valid geometry");
    let bufs: Vec<Buf> = (0..CPUS)
        .map(|_| CpuBuffer::with_heap(Config { geometry, mode }, MonotonicClock::new()).expect("heap"))
        .collect();
    let stop_writers = AtomicBool::new(false);
    let stop_readers = AtomicBool::new(false);
    let swaps = AtomicU64::new(0);
    let mut seen: Vec<CpuSeen> = (0..CPUS).map(|_| CpuSeen::default()).collect();
    let (written, (good, discarded, contended)) = thread::scope(|s| {
        let writers: Vec<_> = bufs.iter().map(|buf| s.spawn(|| writer(buf, &stop_writers))).collect();
        let snapshots = s.spawn(|| snapshotter(&bufs, &stop_readers));
        let consumer = s.spawn(|| {
            while !stop_readers.load(Ordering::Relaxed) {
                for (cpu, buf) in bufs.iter().enumerate() {
                    seen[cpu].drain(buf);
                }
                swaps.fetch_add(1, Ordering::Relaxed);
                // A consumer slower than the writers, so both modes lose events.
                thread::sleep(Duration::from_micros(200));
            }
        });
        thread::sleep(run_time());
        stop_writers.store(true, Ordering::Relaxed);
        let written: Vec<u32> = writers.into_iter().map(|w| w.join().expect("writer panicked")).collect();
        stop_readers.store(true, Ordering::Relaxed);
        consumer.join().expect("consumer panicked");
        (written, snapshots.join().expect("snapshot reader panicked"))
    });
    for (cpu, buf) in bufs.iter().enumerate() {
        let seen = &mut seen[cpu];
        seen.drain(buf);
        // Losses are reported before the next event: a final event flushes the last report out.
        buf.writer()
            .expect("the writer threads are done")
            .write(&payload::make(written[cpu], 8))
            .expect("the drained buffer has room");
        seen.drain(buf);
        assert_eq!(seen.next_seq, written[cpu] + 1, "cpu {cpu}: the last event arrives");
        let s = buf.stats();
        assert_eq!(seen.lost, s.overrun + s.dropped, "cpu {cpu}: every loss reported exactly: {s:?}");
        let view = buf.view();
        let page = view.page(seen.cursor.page).expect("reader page");
        let held = EventIter::new(&page).expect("decodes").count() as u64;
        assert_eq!(s.entries, s.read + s.overrun + held, "cpu {cpu}: accounting: {s:?}");
        assert_eq!(s.entries + s.dropped, u64::from(written[cpu]) + 1, "cpu {cpu}: every write counted");
        assert_eq!(seen.events + s.overrun, s.entries, "cpu {cpu}: every committed event read or overwritten");
        if mode == Mode::Drop {
            assert_eq!(s.overrun, 0);
        }
        println!(
            "stress {mode:?} cpu {cpu}: {} events written, {} read, {} overrun, {} dropped, {} swaps",
            written[cpu] + 1,
            seen.events,
            s.overrun,
            s.dropped,
            s.swaps
        );
    }
    println!(
        "stress {mode:?}: {} consumer rounds, snapshots: {good} pages validated, {discarded} discarded as overwritten, \
         {contended} retried out by swaps",
        swaps.load(Ordering::Relaxed)
    );
    assert!(good > 0, "the snapshot reader validated at least one page");
}

#[test]
fn stress_overwrite_mode() {
    stress(Mode::Overwrite);
}

#[test]
fn stress_drop_mode() {
    stress(Mode::Drop);
}

/// A snapshot of a full ring the writer keeps moving on (two events a page, so it moves every
/// few tens of nanoseconds) covers the ring as it was at one moment: nearly every slot is
/// copied (or discarded as overwritten while copied), never a sliver of the ring that a tail
/// and a head read at different moments would make of it.
#[test]
fn snapshots_of_a_fast_moving_ring_cover_the_ring() {
    const SLOTS: u32 = 16;
    let geometry = Geometry::new(64, SLOTS + 1).expect("geometry");
    let buf: Buf =
        CpuBuffer::with_heap(Config { geometry, mode: Mode::Overwrite }, MonotonicClock::new()).expect("heap");
    let writer = buf.writer().expect("the only writer");
    for seq in 0..200 {
        writer.write(&payload::make(seq, 8)).expect("overwrite mode");
    }
    let stop = AtomicBool::new(false);
    let (snapshots, least) = thread::scope(|s| {
        let stop = &stop;
        s.spawn(move || {
            let mut seq = 200;
            while !stop.load(Ordering::Relaxed) {
                writer.write(&payload::make(seq, 8)).expect("overwrite mode");
                seq = seq.wrapping_add(1);
            }
        });
        let snapshotter = s.spawn(|| {
            let (mut snapshots, mut least) = (0u64, u32::MAX);
            let deadline = std::time::Instant::now() + run_time();
            while std::time::Instant::now() < deadline {
                if let Ok(snap) = buf.view().snapshot() {
                    // The reader page (empty here, so left out) aside, every slot of the window.
                    least = least.min(snap.pages.len() as u32 + snap.discarded);
                    snapshots += 1;
                }
            }
            (snapshots, least)
        });
        let got = snapshotter.join().expect("snapshotter");
        stop.store(true, Ordering::Relaxed);
        got
    });
    println!("stress snapshots of a moving ring: {snapshots}, the smallest covered {least} of {SLOTS} slots");
    assert!(snapshots > 0);
    assert!(least >= SLOTS / 2, "a snapshot covered {least} of {SLOTS} slots");
}
