//! The writer handle: the only way to write, and proof that one context writes at a time.
//!
//! The ring's fast path is plain loads and stores of writer state (see [`crate::writer`]),
//! which is only sound if one writing context at a time runs on a buffer, with nested contexts
//! (signal handlers, interrupts) running to completion inside it ([`crate::nest`]). A
//! [`Writer`] carries that rule in its type:
//!
//! ```text
//!   CpuBuffer::writer()  -- CAS claimed: false -> true (Acquire) --> Writer      (Send, !Sync)
//!        second claim while one lives --------------------------> Err(WriterClaimed)
//!   Writer::write / reserve: the CPU's writing context; nested reservations borrow the Writer
//!   drop(Writer)  -- close an abandoned context, if any; claimed = false (Release)
//! ```
//!
//! A `Writer` can move to another thread (the claim's Release/Acquire pair hands the writer's
//! private state over with it) but cannot be shared: `&Writer` is not `Send`, so two threads can
//! never write the same buffer at once in safe code. Contexts that guarantee exclusivity by other
//! means (a hypervisor's per-CPU code with preemption off, or a signal handler of the thread that
//! holds the claim) build a writer with the `unsafe` [`CpuBuffer::writer_unchecked`].
//!
//! A writing context left open (a [`crate::Reservation`] forgotten with `mem::forget`) would
//! leave every later write nested, staged and finally dropped: when a claimed writer is released
//! it closes such a context, gives the reserved room back, writes what nested writers staged and
//! counts it in [`crate::CpuBuffer::abandoned`].

use crate::buffer::CpuBuffer;
use crate::clock::Clock;
use crate::doorbell::{Doorbell, NoDoorbell};
use crate::error::{WriteError, WriterClaimed};
use crate::reservation::Reservation;
use crate::sync::Ordering;
use core::cell::Cell;
use core::marker::PhantomData;

/// The right to write to one CPU's buffer, from [`CpuBuffer::writer`].
///
/// One claimed writer exists per buffer at a time. It is `Send` (hand it to the thread that will
/// write) but not `Sync`, so it cannot be used from two threads at once:
///
/// ```
/// use ring_core::{Config, CpuBuffer, ManualClock};
/// let buffer = CpuBuffer::with_heap(Config::default(), ManualClock::new(0)).unwrap();
/// let writer = buffer.writer().unwrap();
/// assert!(buffer.writer().is_err(), "a second claim is refused");
/// std::thread::scope(|s| {
///     s.spawn(move || writer.write(b"written on another thread").unwrap());
/// });
/// assert_eq!(buffer.stats().entries, 1);
/// buffer.writer().unwrap().write(b"claimed again once released").unwrap();
/// ```
///
/// Sharing one between threads does not compile:
///
/// ```compile_fail,E0277
/// use ring_core::{Config, CpuBuffer, ManualClock};
/// let buffer = CpuBuffer::with_heap(Config::default(), ManualClock::new(0)).unwrap();
/// let writer = buffer.writer().unwrap();
/// std::thread::scope(|s| {
///     s.spawn(|| writer.write(b"from another thread").unwrap()); // `Writer` is not `Sync`
///     writer.write(b"from this one").unwrap();
/// });
/// ```
pub struct Writer<'b, 'a, C: Clock, D: Doorbell = NoDoorbell> {
    buffer: &'b CpuBuffer<'a, C, D>,
    /// Releases the claim when dropped (false for [`CpuBuffer::writer_unchecked`]).
    claimed: bool,
    /// `Send` but not `Sync`.
    _one_thread_at_a_time: PhantomData<Cell<()>>,
}

impl<C: Clock, D: Doorbell> core::fmt::Debug for Writer<'_, '_, C, D> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Writer").field("claimed", &self.claimed).finish_non_exhaustive()
    }
}

impl<'a, C: Clock, D: Doorbell> CpuBuffer<'a, C, D> {
    /// Claims this buffer's writer. Only one claimed [`Writer`] exists at a time: while it lives,
    /// another claim is refused with [`WriterClaimed`]; dropping it releases the claim.
    pub fn writer(&self) -> Result<Writer<'_, 'a, C, D>, WriterClaimed> {
        // Ordering: Acquire pairs with the Release in `Writer::drop`: the writer state the
        // previous holder left (offsets, counters, staging lanes, written with relaxed or
        // plain accesses) is visible to the new one.
        self.writer_shared
            .claimed
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .map_err(|_| WriterClaimed)?;
        Ok(Writer { buffer: self, claimed: true, _one_thread_at_a_time: PhantomData })
    }

    /// A writer that does not claim the buffer, for contexts that guarantee exclusivity
    /// themselves and cannot hold a claimed writer: a hypervisor's per-CPU exit handler running
    /// with preemption off, or a signal handler writing to the buffer its thread holds the claim
    /// of.
    ///
    /// # Safety
    ///
    /// While the returned writer (or a reservation made through it) is in use, every other
    /// writing context of this buffer — any [`Writer`], claimed or not — must either be idle, or
    /// be interrupted by this one, or interrupt this one and run to completion before it resumes
    /// (as an interrupt or signal handler does), on the same CPU. No claimed writer of this buffer
    /// may be dropped inside it. Breaking this lets two contexts reserve the same bytes and
    /// corrupts the ring's bookkeeping.
    pub unsafe fn writer_unchecked(&self) -> Writer<'_, 'a, C, D> {
        Writer { buffer: self, claimed: false, _one_thread_at_a_time: PhantomData }
    }
}

impl<'b, 'a, C: Clock, D: Doorbell> Writer<'b, 'a, C, D> {
    /// Records one event carrying `payload` (padded with zeros to a multiple of 4 bytes).
    ///
    /// Returns [`WriteError::Dropped`] if the event was dropped (and counted), which only happens
    /// in [`crate::Mode::Drop`] with a full ring, or for a nested write whose staging lane is full.
    /// A write made while a reservation of this writer is open is nested ([`crate::nest`]): it
    /// returns once its event is staged, and the event reaches the ring when the outermost
    /// reservation ends; in [`crate::Mode::Drop`] a ring full by then drops it (counted) like any
    /// other event.
    #[inline(always)]
    pub fn write(&self, payload: &[u8]) -> Result<(), WriteError> {
        self.buffer.write(payload)
    }

    /// Reserves room for an event of `len` payload bytes, stamped now.
    ///
    /// Reservations may nest (a signal handler reserving while the code it interrupted holds one):
    /// see [`crate::nest`]. Commit them innermost first. Ended in another order, nothing is lost
    /// uncounted, but a reservation that ends before one it encloses keeps its nesting level
    /// until that one ends: writes made meanwhile are staged, as nested ones, and a chain of
    /// reservations each ended after the next was made holds one more level per link, so past
    /// [`crate::nest::NEST_LEVELS`] links later ones are dropped (and counted) until the chain
    /// ends.
    pub fn reserve(&self, len: usize) -> Result<Reservation<'_, 'a, C, D>, WriteError> {
        self.buffer.reserve(len)
    }

    /// The buffer this writer writes to.
    pub fn buffer(&self) -> &'b CpuBuffer<'a, C, D> {
        self.buffer
    }

    /// Publishes the count of committed events in the meta area's `entries` now. The writer
    /// publishes it when it leaves a page and when a claimed writer is released; a context
    /// writing through [`CpuBuffer::writer_unchecked`] calls this when it stops writing for a
    /// while, so readers of the meta area see the final figure. Only the writing context
    /// publishes it, so the published value never goes backwards.
    pub fn publish_entries(&self) {
        self.buffer.publish_entries();
    }
}

impl<C: Clock, D: Doorbell> Drop for Writer<'_, '_, C, D> {
    fn drop(&mut self) {
        if !self.claimed {
            return;
        }
        // No reservation of this writer is alive (they borrow it), and an unchecked writer may
        // not drop us from inside its own context, so an open context here was abandoned.
        self.buffer.close_abandoned_context();
        self.buffer.publish_entries();
        // Ordering: Release pairs with the Acquire of the next claim (see `CpuBuffer::writer`).
        self.buffer.writer_shared.claimed.store(false, Ordering::Release);
    }
}

#[cfg(all(test, feature = "std", not(loom)))]
mod tests {
    use crate::test_support::{buffer, drain, seq_payload};
    use crate::{Mode, WriteError, WriterClaimed};

    #[test]
    fn one_claim_at_a_time_and_claims_after_release() {
        let buf = buffer(4096, 4, Mode::Overwrite);
        let writer = buf.writer().unwrap();
        assert_eq!(buf.writer().unwrap_err(), WriterClaimed);
        writer.write(&seq_payload(0, 0)).unwrap();
        drop(writer);
        buf.writer().unwrap().write(&seq_payload(1, 0)).unwrap();
        assert_eq!(drain(&buf).seqs(), [0, 1]);
    }

    /// Two threads taking turns on one buffer, each holding the claim for a burst of writes. Were
    /// both able to write at once, one's preempted write could leave the nesting depth stuck and
    /// every later write staged as nested; with the claim, every write is made by the thread
    /// holding it, and the other is refused at the claim.
    #[test]
    fn threads_taking_turns_lose_nothing_and_never_wedge() {
        let buf = buffer(4096, 8, Mode::Overwrite);
        let per_thread = if cfg!(miri) { 20 } else { 20_000u32 };
        std::thread::scope(|s| {
            for thread in 0..2u32 {
                let buf = &buf;
                s.spawn(move || {
                    let mut seq = 0;
                    while seq < per_thread {
                        let Ok(writer) = buf.writer() else { continue };
                        let burst = (1 + seq % 7).min(per_thread - seq);
                        for _ in 0..burst {
                            writer.write(&seq_payload(thread << 24 | seq, 4)).unwrap();
                            seq += 1;
                        }
                    }
                });
            }
        });
        let s = buf.stats();
        assert_eq!(s.entries, 2 * u64::from(per_thread));
        assert_eq!((s.dropped, buf.abandoned()), (0, 0));
        assert_eq!(buf.writer_state.depth.load(crate::sync::Ordering::Relaxed), 0);
        buf.writer().unwrap().write(&seq_payload(7, 0)).unwrap();
        assert_eq!(*drain(&buf).seqs().last().unwrap(), 7, "writes still reach the ring");
    }

    /// The meta area's `entries` is published only by the writing context, so it never goes
    /// backwards, and `read + overrun <= entries` holds for the values stored: sampled by another
    /// thread while two threads take turns writing and a third consumes.
    #[test]
    fn published_entries_never_go_backwards() {
        let buf = buffer(256, 8, Mode::Overwrite);
        let (per_thread, samples) = if cfg!(miri) { (20, 50) } else { (20_000u32, 200_000) };
        let done = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            for thread in 0..2u32 {
                let buf = &buf;
                s.spawn(move || {
                    for seq in 0..per_thread {
                        while buf.writer().map(|w| w.write(&seq_payload(thread << 24 | seq, 4)).unwrap()).is_err() {}
                    }
                });
            }
            let (buf, done) = (&buf, &done);
            s.spawn(move || {
                let mut cursor = crate::Cursor::default();
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    let _ = cursor.drain(&buf.view(), |read| buf.swap_reader_page(read), |_| {});
                }
            });
            s.spawn(move || {
                let mut last = 0;
                for _ in 0..samples {
                    let meta = buf.view().meta().counters();
                    assert!(meta.entries >= last, "entries went back from {last} to {}", meta.entries);
                    last = meta.entries;
                }
                done.store(true, std::sync::atomic::Ordering::Relaxed);
            });
        });
        let meta = buf.view().meta().counters();
        assert_eq!(meta.entries, 2 * u64::from(per_thread), "the last writer released published the final count");
        assert!(meta.read + meta.overrun <= meta.entries);
    }

    #[test]
    fn a_forgotten_reservation_is_closed_and_counted_when_its_writer_is_released() {
        let buf = buffer(4096, 4, Mode::Drop);
        let writer = buf.writer().unwrap();
        writer.write(&seq_payload(0, 0)).unwrap();
        let mut open = writer.reserve(8).unwrap();
        open.write_at(0, &[0xee; 8]).unwrap();
        core::mem::forget(open);
        // Later writes through the same writer are nested behind the open context.
        writer.write(&seq_payload(1, 0)).unwrap();
        let mut forgotten_inner = writer.reserve(4).unwrap();
        forgotten_inner.write_at(0, &[0xdd; 4]).unwrap();
        core::mem::forget(forgotten_inner);
        writer.write(&seq_payload(2, 0)).unwrap();
        assert_eq!(buf.stats().entries, 1, "nothing reached the ring behind the open context");
        drop(writer);
        let s = buf.stats();
        assert_eq!((s.entries, s.dropped, buf.abandoned()), (3, 0, 1));
        let writer = buf.writer().unwrap();
        writer.write(&seq_payload(3, 0)).unwrap();
        let got = drain(&buf);
        assert_eq!(got.seqs(), [0, 1, 2, 3], "the forgotten reservations left nothing behind");
        assert_eq!(got.total_lost(), 0);
    }

    #[test]
    fn releasing_a_writer_with_nothing_open_counts_nothing() {
        let buf = buffer(4096, 4, Mode::Overwrite);
        for seq in 0..3u32 {
            let writer = buf.writer().unwrap();
            let mut r = writer.reserve(4).unwrap();
            r.write_at(0, &seq.to_ne_bytes()).unwrap();
            writer.write(&seq_payload(100 + seq, 0)).unwrap();
            r.commit();
        }
        assert_eq!(buf.abandoned(), 0);
        assert_eq!(drain(&buf).seqs(), [0, 100, 1, 101, 2, 102]);
    }

    #[test]
    fn an_unchecked_writer_nests_inside_a_claimed_one() {
        let buf = buffer(4096, 4, Mode::Overwrite);
        let writer = buf.writer().unwrap();
        let outer = writer.reserve(4).unwrap();
        {
            // SAFETY: this stands for a signal handler of the thread holding `writer`: it runs
            // inside the open reservation and finishes before the thread resumes.
            let handler = unsafe { buf.writer_unchecked() };
            handler.write(&seq_payload(1, 0)).unwrap();
        }
        assert_eq!(buf.stats().entries, 0, "the handler's event is staged behind the open reservation");
        drop(outer);
        assert_eq!(buf.writer().map(drop), Err(WriterClaimed), "the unchecked writer did not release the claim");
        drop(writer);
        assert_eq!(drain(&buf).seqs(), [1]);
        assert!(matches!(buf.writer().unwrap().reserve(1 << 20), Err(WriteError::TooLarge { .. })));
    }
}
