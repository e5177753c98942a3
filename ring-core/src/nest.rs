//! Nested writers: a write started while another write on the same CPU is open.
//!
//! A signal handler (or, in a kernel, an interrupt) can fire in the middle of a write and write
//! itself. The outermost context owns the ring; a nested context never touches it. Instead it
//! stages its event in the staging lane of its nesting level, and the outermost context moves
//! staged events into the ring, in timestamp order, right after its own event when it commits:
//!
//! ```text
//!  depth 0  reserve ─── fill ──────────────── commit ─ flush lanes ─ depth=0 ─ recheck
//!  depth 1              └─ write → lane[0] ─┘            │
//!  depth 2                    └─ write → lane[1]          └─ lane[0], lane[1] → ring
//! ```
//!
//! Why this shape: reserving ring space with plain loads and stores is only safe if nothing
//! else reserves between the load and the store. Giving the ring a single writer context at any
//! time makes the fast path free of read-modify-write instructions (the reason the writer costs a
//! few nanoseconds), and each lane has one producer (the contexts at its depth, which run one
//! after another) and one consumer (the outermost context), so lanes need no read-modify-write
//! either. Nested events become visible when the outermost write commits ("only the outermost
//! commit publishes"), after the event they interrupted, with their own timestamps (clamped so
//! time never goes backwards in the buffer).
//!
//! A lane holds [`LANE_WORDS`] words; a nested event that does not fit in an empty lane is
//! refused ([`WriteError::NestedTooLarge`]), one that does not fit in what is left is dropped and
//! counted, and so are writes nested deeper than [`NEST_LEVELS`]. To keep lost-event reports
//! exact, the flush closes the tail page before accounting such drops, so the gap falls on a page
//! boundary like every other loss. It falls after the events of the same flush: the count is
//! exact, but a drop that came before some of the events staged with it (a deeper level that
//! was full while a shallower one still had room) is reported after them. Drops come of full
//! lanes, so they mostly follow what filled them.

use crate::buffer::CpuBuffer;
use crate::clock::Clock;
use crate::doorbell::Doorbell;
use crate::error::WriteError;
use crate::format::DataLayout;
use crate::sync::local::{AtomicU32, AtomicU64};
use crate::sync::{Ordering, signal_fence};

/// Nesting levels with a staging lane (writes nested deeper are dropped and counted).
pub const NEST_LEVELS: usize = if cfg!(loom) { 1 } else { 4 };
/// Words (4 bytes) per staging lane.
pub const LANE_WORDS: usize = if cfg!(loom) { 16 } else { 512 };
// Free-running lane positions wrap at 2^32 onto the same word.
const _: () = assert!((1u64 << 32).is_multiple_of(LANE_WORDS as u64));
/// Words of a staged record before its payload: timestamp (2) and payload length (1).
const RECORD_HEADER_WORDS: u32 = 3;
/// Largest payload a nested write can carry.
pub const NESTED_MAX_PAYLOAD: usize = (LANE_WORDS - RECORD_HEADER_WORDS as usize) * 4;

// Ordering for everything in this file: Relaxed plus `signal_fence`. A lane is only used by the
// contexts of one CPU, which interrupt each other but never run in parallel; an interrupting
// context runs to completion, so compiler barriers are the only ordering needed.

/// One nesting level's staging ring. Positions are free-running word counters.
#[derive(Debug)]
pub(crate) struct NestLane {
    words: [AtomicU32; LANE_WORDS],
    /// Next word the flusher reads (flusher-owned).
    head: AtomicU32,
    /// Next word a writer at this level fills (owned by this level's writers).
    tail: AtomicU32,
    /// Events this level dropped (owned by this level's writers).
    dropped: AtomicU64,
    /// How much of `dropped` the flusher has accounted (flusher-owned).
    folded: AtomicU64,
}

impl NestLane {
    fn new() -> Self {
        Self {
            words: core::array::from_fn(|_| AtomicU32::new(0)),
            head: AtomicU32::new(0),
            tail: AtomicU32::new(0),
            dropped: AtomicU64::new(0),
            folded: AtomicU64::new(0),
        }
    }

    #[inline]
    fn word(&self, pos: u32) -> &AtomicU32 {
        &self.words[pos as usize % LANE_WORDS]
    }

    /// Positions are free-running: they wrap at 2^32, a multiple of [`LANE_WORDS`], so word
    /// arithmetic on them wraps too.
    fn timestamp_at(&self, pos: u32) -> u64 {
        let low = self.word(pos).load(Ordering::Relaxed);
        let high = self.word(pos.wrapping_add(1)).load(Ordering::Relaxed);
        u64::from(low) | u64::from(high) << 32
    }

    /// Stores `bytes` into the payload of the record at `pos`, starting `offset` bytes in.
    pub(crate) fn store_payload(&self, pos: u32, offset: usize, bytes: &[u8]) {
        let start = (pos.wrapping_add(RECORD_HEADER_WORDS)) as usize * 4 + offset;
        for (i, b) in bytes.iter().enumerate() {
            let at = start + i;
            let word = self.word((at / 4) as u32);
            let mut w = word.load(Ordering::Relaxed).to_ne_bytes();
            w[at % 4] = *b;
            word.store(u32::from_ne_bytes(w), Ordering::Relaxed);
        }
    }

    fn store_payload_words(&self, pos: u32, bytes: &[u8]) {
        for (i, chunk) in bytes.chunks(4).enumerate() {
            let mut w = [0u8; 4];
            w[..chunk.len()].copy_from_slice(chunk);
            self.word(pos.wrapping_add(RECORD_HEADER_WORDS + i as u32)).store(u32::from_ne_bytes(w), Ordering::Relaxed);
        }
    }
}

/// The staging lanes of one CPU.
#[derive(Debug)]
pub(crate) struct NestLanes {
    lanes: [NestLane; NEST_LEVELS],
    /// Writes nested deeper than `NEST_LEVELS` (contexts of different depths may race on it, so it
    /// is the one read-modify-write here).
    overflow: AtomicU64,
    /// How much of `overflow` the flusher has accounted.
    overflow_folded: AtomicU64,
}

impl NestLanes {
    pub(crate) fn new() -> Self {
        Self {
            lanes: core::array::from_fn(|_| NestLane::new()),
            overflow: AtomicU64::new(0),
            overflow_folded: AtomicU64::new(0),
        }
    }

    pub(crate) fn reset(&self) {
        for lane in &self.lanes {
            lane.head.store(0, Ordering::Relaxed);
            lane.tail.store(0, Ordering::Relaxed);
            lane.dropped.store(0, Ordering::Relaxed);
            lane.folded.store(0, Ordering::Relaxed);
        }
        self.overflow.store(0, Ordering::Relaxed);
        self.overflow_folded.store(0, Ordering::Relaxed);
    }

    pub(crate) fn lane(&self, level: usize) -> &NestLane {
        &self.lanes[level]
    }
}

/// A record reserved in a staging lane.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LaneSpot {
    pub level: usize,
    pub pos: u32,
    pub words: u32,
    /// Depth the nested context found (restored when it ends).
    pub depth: u32,
}

impl<C: Clock, D: Doorbell> CpuBuffer<'_, C, D> {
    /// Reserves a staged record for a nested context at `depth` (>= 1). On error the context is
    /// already closed.
    pub(crate) fn nested_reserve(&self, depth: u32, layout: DataLayout, len: usize) -> Result<LaneSpot, WriteError> {
        let level = depth as usize - 1;
        if level >= NEST_LEVELS {
            self.lanes.overflow.fetch_add(1, Ordering::Relaxed);
            self.writer_state.nest_pending.store(1, Ordering::Relaxed);
            self.leave_nested(depth);
            return Err(WriteError::Dropped);
        }
        let words = RECORD_HEADER_WORDS + layout.stored_len / 4;
        if words as usize > LANE_WORDS {
            self.leave_nested(depth);
            return Err(WriteError::NestedTooLarge { len, max: NESTED_MAX_PAYLOAD });
        }
        let ts = self.clock.now();
        let lane = self.lanes.lane(level);
        let head = lane.head.load(Ordering::Relaxed);
        let tail = lane.tail.load(Ordering::Relaxed);
        if tail.wrapping_sub(head) + words > LANE_WORDS as u32 {
            lane.dropped.store(lane.dropped.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
            signal_fence();
            self.writer_state.nest_pending.store(1, Ordering::Relaxed);
            self.leave_nested(depth);
            return Err(WriteError::Dropped);
        }
        lane.word(tail).store(ts as u32, Ordering::Relaxed);
        lane.word(tail.wrapping_add(1)).store((ts >> 32) as u32, Ordering::Relaxed);
        lane.word(tail.wrapping_add(2)).store(len as u32, Ordering::Relaxed);
        lane.word(tail.wrapping_add(words - 1)).store(0, Ordering::Relaxed);
        Ok(LaneSpot { level, pos: tail, words, depth })
    }

    /// Publishes a staged record to the flusher and closes the nested context.
    pub(crate) fn nested_commit(&self, spot: &LaneSpot) {
        self.nested_publish(spot);
        self.leave_nested(spot.depth);
    }

    /// Publishes a staged record to the flusher, leaving the nested context open.
    pub(crate) fn nested_publish(&self, spot: &LaneSpot) {
        let lane = self.lanes.lane(spot.level);
        signal_fence();
        lane.tail.store(spot.pos.wrapping_add(spot.words), Ordering::Relaxed);
        signal_fence();
        self.writer_state.nest_pending.store(1, Ordering::Relaxed);
    }

    /// Closes the context of a [`crate::Reservation`] that found the depth at `depth` (0: an
    /// outermost one), which need not be the innermost open context.
    ///
    /// Reservations are meant to end innermost first, but safe code can end them in any order
    /// (a `Vec` of them drops front to back). One that ends while a context it encloses is
    /// still open is marked in `ended_early` and the depth stays where it is, so that later
    /// writes nest above the open context and never share its lane; when the innermost open
    /// context ends, the depth falls past every context below it that ended early, and once
    /// it reaches 0 the staged events are flushed as after any outermost write. A context
    /// that ended early is never the innermost one (something it encloses is still open), so
    /// the depth always falls to the innermost context still open. Interrupting contexts run
    /// above the depth they find and clear their own bits before they return, so the load
    /// and store of the bits here need no more than signal fences.
    pub(crate) fn end_reservation(&self, depth: u32) {
        let state = &self.writer_state;
        let early = state.ended_early.load(Ordering::Relaxed);
        if state.depth.load(Ordering::Relaxed) != depth + 1 {
            state.ended_early.store(early | 1 << depth, Ordering::Relaxed);
            return;
        }
        let mut below = depth;
        let mut early_left = early;
        while below > 0 && early_left & 1 << (below - 1) != 0 {
            early_left &= !(1 << (below - 1));
            below -= 1;
        }
        if early_left != early {
            state.ended_early.store(early_left, Ordering::Relaxed);
        }
        if below == 0 { self.end_outer() } else { self.leave_nested(below) }
    }

    /// Stages a whole nested event.
    pub(crate) fn nested_write(&self, depth: u32, layout: DataLayout, payload: &[u8]) -> Result<(), WriteError> {
        let spot = self.nested_reserve(depth, layout, payload.len())?;
        self.lanes.lane(spot.level).store_payload_words(spot.pos, payload);
        self.nested_commit(&spot);
        Ok(())
    }

    /// Ends the outermost writing context: drops the depth to 0, then, if nested writers staged
    /// anything meanwhile, raises it again and moves their events into the ring.
    ///
    /// Checking after the depth is 0 is enough: a nested writer can only stage while the depth is
    /// raised, and once it is 0 an interrupting writer is itself outermost and flushes.
    #[inline(always)]
    pub(crate) fn end_outer(&self) {
        signal_fence();
        self.writer_state.depth.store(0, Ordering::Relaxed);
        signal_fence();
        if self.writer_state.nest_pending.load(Ordering::Relaxed) != 0 {
            self.end_outer_flushing();
        }
    }

    #[cold]
    fn end_outer_flushing(&self) {
        loop {
            self.writer_state.depth.store(1, Ordering::Relaxed);
            signal_fence();
            self.flush_lanes();
            signal_fence();
            self.writer_state.depth.store(0, Ordering::Relaxed);
            signal_fence();
            if self.writer_state.nest_pending.load(Ordering::Relaxed) == 0 {
                return;
            }
        }
    }

    /// Moves every staged record into the ring in timestamp order and accounts nested drops.
    /// Runs in the outermost context with the depth still raised.
    #[cold]
    fn flush_lanes(&self) {
        loop {
            self.writer_state.nest_pending.store(0, Ordering::Relaxed);
            signal_fence();
            while let Some(level) = self.oldest_staged() {
                let lane = self.lanes.lane(level);
                let head = lane.head.load(Ordering::Relaxed);
                let ts = lane.timestamp_at(head);
                let len = lane.word(head.wrapping_add(2)).load(Ordering::Relaxed) as usize;
                // The length was validated when staged; a corrupt one (a misbehaving nested
                // context) cannot get past `layout_for` and discards the lane's content.
                let words = match self.layout_for(len) {
                    Ok(layout) => {
                        // A refused reservation was already counted as dropped by `ring_reserve`.
                        if let Ok(spot) = self.ring_reserve(ts, layout) {
                            for i in 0..spot.stored_len / 4 {
                                let from = head.wrapping_add(RECORD_HEADER_WORDS + i);
                                let v = lane.word(from).load(Ordering::Relaxed);
                                self.data.store_u32(spot.payload_at + 4 * i as usize, v, Ordering::Relaxed);
                            }
                            self.ring_commit(&spot);
                        }
                        RECORD_HEADER_WORDS + layout.stored_len / 4
                    }
                    Err(_) => lane.tail.load(Ordering::Relaxed).wrapping_sub(head),
                };
                signal_fence();
                lane.head.store(head.wrapping_add(words), Ordering::Relaxed);
            }
            self.fold_nested_drops();
            signal_fence();
            if self.writer_state.nest_pending.load(Ordering::Relaxed) == 0 {
                return;
            }
        }
    }

    /// The level whose oldest staged record has the smallest timestamp.
    fn oldest_staged(&self) -> Option<usize> {
        let mut best: Option<(usize, u64)> = None;
        for level in 0..NEST_LEVELS {
            let lane = self.lanes.lane(level);
            let head = lane.head.load(Ordering::Relaxed);
            if head == lane.tail.load(Ordering::Relaxed) {
                continue;
            }
            signal_fence();
            let ts = lane.timestamp_at(head);
            if best.is_none_or(|(_, t)| ts < t) {
                best = Some((level, ts));
            }
        }
        best.map(|(level, _)| level)
    }

    /// Adds drops counted by nested contexts to `dropped`, closing the tail page first so the
    /// gap in sequence numbers falls on a page boundary.
    fn fold_nested_drops(&self) {
        let mut newly = 0;
        for level in 0..NEST_LEVELS {
            let lane = self.lanes.lane(level);
            let dropped = lane.dropped.load(Ordering::Relaxed);
            newly += dropped - lane.folded.load(Ordering::Relaxed);
            lane.folded.store(dropped, Ordering::Relaxed);
        }
        let overflow = self.lanes.overflow.load(Ordering::Relaxed);
        newly += overflow - self.lanes.overflow_folded.load(Ordering::Relaxed);
        self.lanes.overflow_folded.store(overflow, Ordering::Relaxed);
        if newly == 0 {
            return;
        }
        // Even an empty tail page is closed: its sequence range must not straddle the gap.
        self.close_page();
        self.add_dropped(newly);
    }
}

#[cfg(all(test, feature = "std", not(loom)))]
mod tests {
    use super::*;
    use crate::test_support::{buffer, drain, seq_payload};
    use crate::{Mode, Reservation};
    use std::vec::Vec;

    #[test]
    fn nested_events_follow_the_event_they_interrupted() {
        let buf = buffer(4096, 4, Mode::Overwrite);
        let clock = buf.clock();
        let mut outer = buf.reserve(4).unwrap();
        clock.advance(10);
        buf.write(&seq_payload(1, 0)).unwrap(); // "interrupt" at depth 1
        clock.advance(10);
        let mut inner = buf.reserve(4).unwrap(); // depth 1 again
        clock.advance(5);
        buf.write(&seq_payload(2, 0)).unwrap(); // depth 2
        inner.write_at(0, &3u32.to_ne_bytes()).unwrap();
        inner.commit();
        // Nothing is visible until the outermost commit.
        assert_eq!(buf.stats().entries, 0);
        outer.write_at(0, &0u32.to_ne_bytes()).unwrap();
        outer.commit();
        let got = drain(&buf);
        // Time order: outer (1000), seq 1 (1010), inner reservation (1020), seq 2 (1025).
        assert_eq!(got.seqs(), [0, 1, 3, 2]);
        let ts: Vec<u64> = got.events.iter().map(|e| e.0).collect();
        assert_eq!(ts, [1000, 1010, 1020, 1025]);
        assert_eq!(buf.writer_state.depth.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn reservations_ended_in_any_order_lose_nothing_and_wedge_nothing() {
        // Three reservations, outermost first, ended (committed or dropped) in every order:
        // every committed event and every later write arrives, nothing is counted lost, and the
        // CPU is outermost again afterwards.
        for order in [[0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]] {
            for commit in [true, false] {
                let buf = buffer(4096, 8, Mode::Drop);
                let mut held: Vec<Option<Reservation<'_, '_, _>>> = (0..3u32)
                    .map(|seq| {
                        let mut r = buf.reserve(4).unwrap();
                        r.write_at(0, &seq.to_ne_bytes()).unwrap();
                        Some(r)
                    })
                    .collect();
                for (n, &i) in order.iter().enumerate() {
                    let r = held[i].take().unwrap();
                    if commit {
                        r.commit()
                    } else {
                        drop(r)
                    }
                    // Writes between the ends: staged while a reservation is still open.
                    buf.write(&seq_payload(10 + n as u32, 0)).unwrap();
                }
                for seq in 100..400 {
                    buf.write(&seq_payload(seq, 0)).unwrap();
                }
                assert_eq!(buf.writer_state.depth.load(Ordering::Relaxed), 0, "{order:?} commit {commit}");
                let got = drain(&buf);
                let mut seqs = got.seqs();
                seqs.sort_unstable();
                let reserved = if commit { 0..3 } else { 0..0 };
                let expected: Vec<u32> = reserved.chain(10..13).chain(100..400).collect();
                assert_eq!(seqs, expected, "{order:?} commit {commit}");
                assert_eq!((got.total_lost(), buf.stats().dropped), (0, 0), "{order:?} commit {commit}");
            }
        }
    }

    #[test]
    fn discarded_nested_reservations_leave_nothing() {
        let buf = buffer(4096, 4, Mode::Overwrite);
        let outer = buf.reserve(4).unwrap();
        let inner: Reservation<'_, '_, _> = buf.reserve(8).unwrap();
        inner.discard();
        buf.write(&seq_payload(5, 0)).unwrap();
        drop(outer); // discards the outer event
        assert_eq!(drain(&buf).seqs(), [5]);
    }

    #[test]
    fn full_lanes_drop_and_count_at_a_page_boundary() {
        let buf = buffer(4096, 8, Mode::Overwrite);
        buf.write(&seq_payload(0, 0)).unwrap();
        let outer = buf.reserve(4).unwrap();
        let per_record = 3 + 1;
        let fits = LANE_WORDS / per_record;
        let mut results = Vec::new();
        for seq in 1..=(fits as u32 + 3) {
            results.push(buf.write(&seq_payload(seq, 0)));
        }
        assert!(results[..fits].iter().all(Result::is_ok));
        assert!(results[fits..].iter().all(|r| *r == Err(WriteError::Dropped)));
        drop(outer);
        assert_eq!(buf.stats().dropped, 3);
        buf.write(&seq_payload(999, 0)).unwrap();
        let got = drain(&buf);
        assert_eq!(got.events.len(), 1 + fits + 1);
        // The drop shows up as a loss right before the first event after it.
        assert_eq!(got.lost, [(fits + 1, 3)]);
    }

    /// Lane positions are free-running u32 word counts: after 2^32 staged words they wrap, and
    /// staging and flushing go on across the wrap (under overflow checks too).
    #[test]
    fn staging_goes_on_across_the_wrap_of_lane_positions() {
        let buf = buffer(4096, 4, Mode::Overwrite);
        for level in 0..NEST_LEVELS {
            let lane = buf.lanes.lane(level);
            lane.head.store(u32::MAX, Ordering::Relaxed);
            lane.tail.store(u32::MAX, Ordering::Relaxed);
        }
        let writer = buf.writer().unwrap();
        for round in 0..4u32 {
            let outer = writer.reserve(4).unwrap();
            for seq in 0..3 {
                writer.write(&seq_payload(round * 10 + seq, 2 + seq as usize)).unwrap();
            }
            let mut inner = writer.reserve(6).unwrap();
            inner.write_at(0, &(round * 10 + 9).to_ne_bytes()).unwrap();
            inner.commit();
            drop(outer);
        }
        let got = drain(&buf);
        let want: Vec<u32> = (0..4).flat_map(|round| [0, 1, 2, 9].map(|seq| round * 10 + seq)).collect();
        assert_eq!(got.seqs(), want);
        assert!(buf.lanes.lane(0).tail.load(Ordering::Relaxed) < 100, "the positions wrapped");
    }

    #[test]
    fn nesting_deeper_than_the_lanes_is_dropped_and_counted() {
        let buf = buffer(4096, 4, Mode::Overwrite);
        let mut held = Vec::new();
        for _ in 0..=NEST_LEVELS {
            held.push(buf.reserve(4).unwrap());
        }
        assert_eq!(buf.write(b"deep"), Err(WriteError::Dropped));
        while let Some(r) = held.pop() {
            r.commit();
        }
        let s = buf.stats();
        assert_eq!((s.entries, s.dropped), (NEST_LEVELS as u64 + 1, 1));
    }

    #[test]
    fn nested_events_larger_than_a_lane_are_refused() {
        let buf = buffer(8192, 4, Mode::Overwrite);
        let outer = buf.reserve(4).unwrap();
        assert_eq!(
            buf.write(&std::vec![0; NESTED_MAX_PAYLOAD + 1]),
            Err(WriteError::NestedTooLarge { len: NESTED_MAX_PAYLOAD + 1, max: NESTED_MAX_PAYLOAD })
        );
        buf.write(&std::vec![1; NESTED_MAX_PAYLOAD]).unwrap();
        outer.commit();
        assert_eq!(drain(&buf).events.len(), 2);
    }

    #[test]
    fn nested_writes_in_drop_mode_are_dropped_when_the_ring_is_full() {
        let buf = buffer(64, 3, Mode::Drop); // 2 ring pages of 2 events
        let outer = buf.reserve(16).unwrap();
        for seq in 0..6 {
            buf.write(&seq_payload(seq, 12)).unwrap(); // staged: lanes are not the ring
        }
        outer.commit();
        let s = buf.stats();
        assert_eq!((s.entries, s.dropped), (4, 3));
        assert_eq!(drain(&buf).seqs()[1..], [0, 1, 2]);
    }
}
