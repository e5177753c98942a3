//! The writer: reserve, fill, commit; closing a page, moving onto the next, pushing the head.
//!
//! Only the outermost writing context of a CPU runs this code (see [`crate::nest`] for nested
//! contexts), so the writer's own state needs no read-modify-write: plain (relaxed) loads and
//! stores of atomics. The words it shares with swappers (the tail id, the ring links) are
//! published with release stores or compare-and-swap, as each comment says.

use crate::buffer::CpuBuffer;
use crate::clock::Clock;
use crate::doorbell::Doorbell;
use crate::error::WriteError;
use crate::format::{
    DataLayout, SMALL_DATA_MAX, SUBBUF_COMMIT_OFFSET, SUBBUF_HEADER_SIZE, SUBBUF_TIMESTAMP_OFFSET, TIME_DELTA_MAX,
    TIME_EVENT_SIZE, TimeEncoding, TimeRecord, closing_padding, header_word, time_encoding,
};
use crate::geometry::Mode;
use crate::meta::{off, seq_offset};
use crate::sync::{Ordering, fence, signal_fence};

/// `WriterState::off` value of a page the writer has closed (padding written, counters recorded).
pub(crate) const PAGE_CLOSED: u32 = u32::MAX;

/// Where a reserved event sits in the ring.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RingSpot {
    /// Offset of the payload in the sub-buffer array.
    pub payload_at: usize,
    /// Payload bytes as stored (a multiple of 4).
    pub stored_len: u32,
    /// Sub-buffer holding the event.
    pub page: u32,
    /// Data offset just past the event: the page's commit once it is committed.
    pub end: u32,
    /// Writer offset and last timestamp to restore if the reservation is discarded.
    pub undo_off: u32,
    pub undo_ts: u64,
}

impl<C: Clock, D: Doorbell> CpuBuffer<'_, C, D> {
    /// Records one event carrying `payload` (padded with zeros to a multiple of 4 bytes): the
    /// body of [`crate::Writer::write`], which documents it. The caller is this CPU's writing
    /// context.
    ///
    /// Returns [`WriteError::Dropped`] if the event was dropped (and counted), which only happens
    /// in [`Mode::Drop`] with a full ring, or for a nested write whose staging lane is full.
    /// A nested write returns once its event is staged ([`crate::nest`]): the event reaches the
    /// ring when the outermost write commits, and in [`Mode::Drop`] a ring full by then drops it
    /// (counted) like any other event.
    // Always inlined, as a tracepoint is: the fast path is a few dozen instructions, and inlined
    // into its call site the payload copy has a constant length (an out-of-line call costs
    // about a third more instructions per event).
    #[inline(always)]
    pub(crate) fn write(&self, payload: &[u8]) -> Result<(), WriteError> {
        let len = payload.len();
        if len == 0 || len > SMALL_DATA_MAX {
            return self.write_general(payload);
        }
        let state = &self.writer_state;
        // Ordering: Relaxed plus signal fences for writer-owned state throughout (see `enter`).
        let depth = state.depth.load(Ordering::Relaxed);
        state.depth.store(depth.wrapping_add(1), Ordering::Relaxed);
        signal_fence();
        // Ordering: Relaxed; `enabled` is advisory. It is read once: the decision below and in
        // `write_entered` must agree, whatever another thread stores meanwhile.
        let enabled = state.enabled.load(Ordering::Relaxed);
        if depth != 0 || !enabled {
            return self.write_entered(depth, enabled, payload);
        }
        let ts = self.clock.now();
        let last = state.last_ts.load(Ordering::Relaxed);
        let off = state.off.load(Ordering::Relaxed);
        let stored = (len as u32 + 3) & !3;
        let size = 4 + stored;
        let delta = ts.wrapping_sub(last);
        // The common case: not the first event of the page, the delta fits in the header, the
        // event fits on the page. Anything else takes the general path.
        if off == 0 || delta > TIME_DELTA_MAX || u64::from(off) + u64::from(size) > u64::from(self.geometry.data_size())
        {
            return self.write_outer(ts, payload);
        }
        let data = state.page_data.load(Ordering::Relaxed) as usize;
        let at = data + off as usize;
        // SAFETY: `page_data` only ever holds the data-area offset of a sub-buffer, so
        // `data - 8` is that page's 8-aligned commit word and `data + data_size` is within the
        // sub-buffer array; `off + size <= data_size` was checked above and `off` is a multiple of
        // 4, so the header word and the `stored` payload bytes at `at + 4` are inside the page.
        // Ordering: the commit word is stored last, with Release, as in `ring_commit`.
        unsafe {
            self.data.store_event_unchecked(
                at,
                header_word(stored / 4, delta as u32),
                payload,
                data - 8,
                u64::from(off + size),
            );
        }
        state.off.store(off + size, Ordering::Relaxed);
        state.last_ts.store(ts, Ordering::Relaxed);
        self.count_entry();
        self.end_outer();
        Ok(())
    }

    /// `write` for payloads the fast path does not handle (empty, or large enough for a
    /// `type_len` 0 event).
    #[cold]
    fn write_general(&self, payload: &[u8]) -> Result<(), WriteError> {
        let layout = self.layout_for(payload.len())?;
        let depth = self.enter()?;
        if depth != 0 {
            return self.nested_write(depth, layout, payload);
        }
        self.write_outer(self.clock.now(), payload)
    }

    /// `write` after the depth was raised, for a nested or disabled writer.
    #[cold]
    fn write_entered(&self, depth: u32, enabled: bool, payload: &[u8]) -> Result<(), WriteError> {
        if !enabled {
            self.leave(depth);
            return Err(WriteError::Disabled);
        }
        debug_assert_ne!(depth, 0, "an enabled outermost write takes the fast path");
        let layout = self.layout_for(payload.len()).inspect_err(|_| self.leave(depth))?;
        self.nested_write(depth, layout, payload)
    }

    /// The general outermost write (depth already raised): any page move, time record or size.
    #[cold]
    fn write_outer(&self, ts: u64, payload: &[u8]) -> Result<(), WriteError> {
        let res = self.layout_for(payload.len()).and_then(|layout| self.ring_reserve(ts, layout));
        if let Ok(spot) = &res {
            if payload.is_empty() {
                // An empty payload still takes one word; make it zeros, not stale bytes.
                // Ordering: Relaxed; published by the Release store of `commit` in `ring_commit`.
                self.data.store_u32(spot.payload_at, 0, Ordering::Relaxed);
            } else {
                self.data.store_bytes(spot.payload_at, payload);
            }
            self.ring_commit(spot);
        }
        self.end_outer();
        res.map(|_| ())
    }

    /// Closes a writing context that found the depth at `depth` (0: the outermost).
    fn leave(&self, depth: u32) {
        if depth == 0 { self.end_outer() } else { self.leave_nested(depth) }
    }

    /// Counts one committed event. The meta area's copy of `entries` is refreshed when the writer
    /// leaves the page ([`CpuBuffer::close_page`]), not here: one more store per event costs about
    /// a fifth of a small write, and the kernel too refreshes its meta page only now and then.
    #[inline(always)]
    fn count_entry(&self) {
        // Ordering: Relaxed; writer-owned counter.
        let entries = self.writer_state.entries.load(Ordering::Relaxed) + 1;
        self.writer_state.entries.store(entries, Ordering::Relaxed);
    }

    /// Layout of a `len`-byte event, or [`WriteError::TooLarge`].
    #[inline]
    pub(crate) fn layout_for(&self, len: usize) -> Result<DataLayout, WriteError> {
        self.geometry.layout(len).ok_or(WriteError::TooLarge { len, max: self.geometry.max_payload() })
    }

    /// Opens a writing context: bumps the nesting depth and returns the depth it had (0 for the
    /// outermost writer).
    #[inline(always)]
    pub(crate) fn enter(&self) -> Result<u32, WriteError> {
        // Ordering: Relaxed plus signal fences. Only this CPU's own contexts touch `depth`, and a
        // nested context runs to completion inside the one it interrupts and restores the value it
        // found, so a plain load and store is interrupt-safe.
        let depth = self.writer_state.depth.load(Ordering::Relaxed);
        self.writer_state.depth.store(depth.wrapping_add(1), Ordering::Relaxed);
        signal_fence();
        // Ordering: Relaxed; `enabled` is advisory.
        if !self.writer_state.enabled.load(Ordering::Relaxed) {
            self.leave(depth);
            return Err(WriteError::Disabled);
        }
        Ok(depth)
    }

    /// Closes a nested context that found the depth at `depth`.
    #[inline(always)]
    pub(crate) fn leave_nested(&self, depth: u32) {
        signal_fence();
        // Ordering: Relaxed; see `enter`.
        self.writer_state.depth.store(depth, Ordering::Relaxed);
    }

    /// Reserves room for an event stamped `ts` on the tail page, moving to the next page if it
    /// does not fit. Writes the time record (if any) and the event header.
    #[inline]
    pub(crate) fn ring_reserve(&self, ts: u64, layout: DataLayout) -> Result<RingSpot, WriteError> {
        let state = &self.writer_state;
        // Ordering (this function): Relaxed for the writer's own state; page bytes are published
        // by the Release store of `commit` in `ring_commit`.
        let last = state.last_ts.load(Ordering::Relaxed);
        let t = ts.max(last);
        let mut off = state.off.load(Ordering::Relaxed);
        // The first event of a page takes its time from the page header (delta 0).
        let time = if off == 0 { TimeEncoding::Delta(0) } else { time_encoding(last, t) };
        let (mut extend, mut delta, mut need) = match time {
            TimeEncoding::Delta(d) => (None, d, layout.size),
            TimeEncoding::Extend(d) => (Some(d), 0, layout.size + TIME_EVENT_SIZE as u32),
            // Force a new page: its header carries the full timestamp.
            TimeEncoding::NewPage => (None, 0, u32::MAX),
        };
        let mut undo_off = off;
        if u64::from(off) + u64::from(need) > u64::from(self.geometry.data_size()) {
            if self.move_tail().is_err() {
                return Err(self.count_drop());
            }
            (off, extend, delta, need, undo_off) = (0, None, 0, layout.size, 0);
        }
        let page_id = self.writer_shared.tail.load(Ordering::Relaxed);
        let page = self.geometry.subbuf_offset(page_id);
        if off == 0 {
            self.data.store_u64(page + SUBBUF_TIMESTAMP_OFFSET, t, Ordering::Relaxed);
        }
        let mut at = page + SUBBUF_HEADER_SIZE + off as usize;
        if let Some(extend) = extend {
            let [head, high] = TimeRecord::Extend(extend).words();
            self.data.store_u32(at, head, Ordering::Relaxed);
            self.data.store_u32(at + 4, high, Ordering::Relaxed);
            at += 8;
        }
        self.data.store_u32(at, header_word(layout.type_len, delta), Ordering::Relaxed);
        let payload_at = match layout.length_word() {
            Some(len_word) => {
                self.data.store_u32(at + 4, len_word, Ordering::Relaxed);
                at + 8
            }
            None => at + 4,
        };
        let end = off + need;
        state.off.store(end, Ordering::Relaxed);
        state.last_ts.store(t, Ordering::Relaxed);
        Ok(RingSpot { payload_at, stored_len: layout.stored_len, page: page_id, end, undo_off, undo_ts: last })
    }

    /// Publishes a reserved event: readers that load the page's `commit` see it.
    #[inline]
    pub(crate) fn ring_commit(&self, spot: &RingSpot) {
        let page = self.geometry.subbuf_offset(spot.page);
        // Ordering: Release, pairing with the acquire load of `commit` by readers: the event bytes,
        // the time record and (for a first event) the page timestamp are visible to whoever sees
        // the new commit.
        self.data.store_u64(page + SUBBUF_COMMIT_OFFSET, u64::from(spot.end), Ordering::Release);
        self.count_entry();
    }

    /// Undoes an uncommitted reservation. Nothing else wrote to the ring since it was made
    /// (nested writers only stage), so the space and the time simply roll back.
    pub(crate) fn ring_discard(&self, spot: &RingSpot) {
        self.ring_discard_to(spot.undo_off, spot.undo_ts);
    }

    /// Rolls the writer's offset and last timestamp back to `undo_off` and `undo_ts`.
    pub(crate) fn ring_discard_to(&self, undo_off: u32, undo_ts: u64) {
        // Ordering: Relaxed; writer-owned state.
        self.writer_state.off.store(undo_off, Ordering::Relaxed);
        self.writer_state.last_ts.store(undo_ts, Ordering::Relaxed);
    }

    /// Publishes `entries` in the meta area. Only the writing context calls it (when it leaves a
    /// page, and through [`crate::Writer`]), so the published count never goes backwards.
    pub(crate) fn publish_entries(&self) {
        // Ordering: Relaxed; writer-owned counter.
        self.publish_counter(off::ENTRIES, self.writer_state.entries.load(Ordering::Relaxed));
    }

    /// Counts one dropped event and returns the error for it.
    pub(crate) fn count_drop(&self) -> WriteError {
        self.add_dropped(1);
        WriteError::Dropped
    }

    /// Adds `n` to the dropped counter (writer-owned).
    pub(crate) fn add_dropped(&self, n: u64) {
        // Ordering: Relaxed; writer-owned counter mirrored to the meta area.
        let dropped = self.writer_state.dropped.load(Ordering::Relaxed) + n;
        self.writer_state.dropped.store(dropped, Ordering::Relaxed);
        self.publish_counter(off::EXT_DROPPED, dropped);
    }

    /// Events handed to the writer so far (committed plus dropped): the sequence number the next
    /// event gets.
    #[inline]
    pub(crate) fn seq(&self) -> u64 {
        // Ordering: Relaxed; writer-owned counters.
        self.writer_state.entries.load(Ordering::Relaxed) + self.writer_state.dropped.load(Ordering::Relaxed)
    }

    /// Closes the tail page: pads the rest, commits the padding when it has a length word, and
    /// records the page's sequence range for swappers. Idempotent.
    pub(crate) fn close_page(&self) {
        let state = &self.writer_state;
        // Ordering (this function): Relaxed for writer-owned state; `end_seq`/`entries` are
        // published to swappers by the Release store of `tail` when the writer moves on.
        let off = state.off.load(Ordering::Relaxed);
        if off == PAGE_CLOSED {
            return;
        }
        let tail = self.writer_shared.tail.load(Ordering::Relaxed);
        let page = self.geometry.subbuf_offset(tail);
        let room = self.geometry.data_size() - off;
        if room >= 4 {
            let at = page + SUBBUF_HEADER_SIZE + off as usize;
            let (padding, length) = closing_padding(room);
            self.data.store_u32(at, padding, Ordering::Relaxed);
            if let Some(length) = length {
                self.data.store_u32(at + 4, length, Ordering::Relaxed);
                // Ordering: Release, as in `ring_commit`.
                self.data.store_u64(
                    page + SUBBUF_COMMIT_OFFSET,
                    u64::from(self.geometry.data_size()),
                    Ordering::Release,
                );
            }
        }
        let link = &self.links[tail as usize];
        let entries = state.entries.load(Ordering::Relaxed);
        self.publish_entries();
        link.end_seq.store(self.seq(), Ordering::Relaxed);
        link.entries.store((entries - state.page_entries_base.load(Ordering::Relaxed)) as u32, Ordering::Relaxed);
        state.off.store(PAGE_CLOSED, Ordering::Relaxed);
    }

    /// Closes the tail page and moves onto the next one. In overwrite mode a full ring pushes the
    /// head (the oldest page is lost); in drop mode a full ring is `Err(())`.
    pub(crate) fn move_tail(&self) -> Result<(), ()> {
        self.close_page();
        let state = &self.writer_state;
        // Ordering: Relaxed; writer-owned.
        let tail = self.writer_shared.tail.load(Ordering::Relaxed);
        let link = &self.links[tail as usize];
        loop {
            let next = link.load_next();
            if !next.is_head() {
                // The page after ours is free: consumed, or never written. An UPDATE flag cannot
                // be here: the writer clears (or a swapper clears for it) the flag of a push
                // before moving on, and only the writer sets it.
                self.enter_page(next.id());
                return Ok(());
            }
            if self.mode == Mode::Drop {
                return Err(());
            }
            // Overwrite: the next page is the head. Claim it by turning HEAD into UPDATE on our
            // link; a swapper taking the same head page CASes the same word, so exactly one wins.
            let victim = next.id();
            let victim_link = &self.links[victim as usize];
            let victim_next = victim_link.load_next();
            // Ordering: Release; a helping swapper acquires it after seeing our claim and then
            // re-checks the claim, so it never uses a value from a different push (see
            // `help_push`). The claim's AcqRel CAS below orders it before the claim.
            self.writer_shared.push_next.store(victim_next.raw(), Ordering::Release);
            let claimed = next.as_update();
            if link.cas_next(next, claimed).is_err() {
                // A swapper took the head page and spliced its old reader page in: follow it.
                continue;
            }
            // Ordering: Relaxed; the victim's counters were written by this writer when it
            // closed the page, a lap ago.
            let lost = u64::from(victim_link.entries.load(Ordering::Relaxed));
            let overrun = state.overrun.load(Ordering::Relaxed) + lost;
            state.overrun.store(overrun, Ordering::Relaxed);
            self.publish_counter(off::OVERRUN, overrun);
            let pages_lost = state.pages_lost.load(Ordering::Relaxed) + 1;
            state.pages_lost.store(pages_lost, Ordering::Relaxed);
            self.publish_counter(off::PAGES_LOST, pages_lost);
            self.advance_head_slot();
            // The page after the victim becomes the head, then our link loses UPDATE. Either CAS
            // fails only if a swapper already did that step for us (see `help_push`).
            let _ = victim_link.cas_next(victim_next, victim_next.as_head());
            let _ = link.cas_next(claimed, claimed.as_plain());
            self.enter_page(victim);
            return Ok(());
        }
    }

    /// Makes `id` the tail page: bumps its slot's `data_index[].cnt`, resets it, publishes it.
    fn enter_page(&self, id: u32) {
        let state = &self.writer_state;
        // Ordering (this function): Relaxed for writer-owned state unless noted.
        let slot = (self.writer_shared.slot.load(Ordering::Relaxed) + 1) % self.geometry.nr_slots();
        // Seqlock for non-consuming readers (see `crate::snapshot`): `cnt` is odd while the page
        // is reset. The Release fence orders the odd value before the reset (pairing with the
        // Acquire fence a reader issues after copying); the Release store of the even value
        // publishes the reset (pairing with the reader's Acquire load of `cnt`), so a reader that
        // sees an even `cnt` never sees the previous lap's `commit`. Only the writer writes `cnt`.
        let cnt_at = off::data_index_cnt(slot);
        // `cnt` is 2 per earlier move onto this slot, and moves go round the slots in order, so
        // it follows from the writer's own count of moves: never read back from the meta area,
        // which a host may scribble on.
        let moves = state.pages_touched.load(Ordering::Relaxed);
        let cnt = (moves / u64::from(self.geometry.nr_slots())).wrapping_mul(2) as u32;
        self.meta.store_u32(cnt_at, cnt.wrapping_add(1), Ordering::Relaxed);
        fence(Ordering::Release);
        let page = self.geometry.subbuf_offset(id);
        let first_seq = self.seq();
        self.data.store_u64(page + SUBBUF_COMMIT_OFFSET, 0, Ordering::Relaxed);
        // Published for post-mortem readers inside the seqlock window, so a copy validated by
        // `cnt` carries the page's own first_seq. A dead producer's memory holds every store made
        // before the instruction it died at; the signal fence keeps the compiler from moving this
        // one before the reset of `commit`, so the page is never the old lap's under the new
        // number (docs/abi.md §2.4).
        signal_fence();
        self.meta.store_u64(seq_offset(self.geometry.nr_slots()) + id as usize * 8, first_seq, Ordering::Relaxed);
        self.meta.store_u32(cnt_at, cnt.wrapping_add(2), Ordering::Release);
        self.links[id as usize].first_seq.store(first_seq, Ordering::Relaxed);
        state.page_entries_base.store(state.entries.load(Ordering::Relaxed), Ordering::Relaxed);
        state.off.store(0, Ordering::Relaxed);
        state.page_data.store((page + SUBBUF_HEADER_SIZE) as u64, Ordering::Relaxed);
        self.writer_shared.slot.store(slot, Ordering::Relaxed);
        let touched = state.pages_touched.load(Ordering::Relaxed) + 1;
        state.pages_touched.store(touched, Ordering::Relaxed);
        self.publish_counter(off::PAGES_TOUCHED, touched);
        // Ordering: Release; a snapshot reader acquiring the tail slot or id sees the page reset.
        self.meta.store_u32(off::EXT_TAIL_SLOT, slot, Ordering::Release);
        self.meta.store_u32(off::EXT_TAIL_ID, id, Ordering::Release);
        // Ordering: Release; a swapper that acquires this tail sees the reset above, this page's
        // first_seq, and the previous page's end_seq/entries written by `close_page`.
        self.writer_shared.tail.store(id, Ordering::Release);
        self.check_doorbell();
    }
}

#[cfg(all(test, feature = "std", not(loom)))]
mod tests {
    use crate::format::{COMMIT_LEN_MASK, SUBBUF_HEADER_SIZE, TIME_DELTA_MAX, TYPE_LEN_PADDING, header_type_len};
    use crate::test_support::{Drained, buffer, drain, drain_from, seq_payload};
    use crate::{Clock, Cursor, EventIter, Mode, PageRecord, WriteError};
    use std::vec::Vec;

    /// Data words of the sub-buffer the writer is on.
    fn tail_words<C: Clock>(buf: &crate::CpuBuffer<'_, C>) -> Vec<u32> {
        let page = buf.view().page(buf.writer_shared.tail.load(crate::sync::Ordering::Relaxed)).unwrap();
        let mut bytes = std::vec![0u8; buf.geometry().subbuf_size() as usize];
        page.copy_to(&mut bytes);
        let commit = (page.commit() & COMMIT_LEN_MASK) as usize;
        bytes[SUBBUF_HEADER_SIZE..SUBBUF_HEADER_SIZE + commit]
            .chunks(4)
            .map(|c| u32::from_ne_bytes(c.try_into().unwrap()))
            .collect()
    }

    #[test]
    fn payload_sizes_round_trip() {
        let buf = buffer(4096, 4, Mode::Overwrite);
        let sizes = [0usize, 1, 4, 5, 111, 112, 113, 500, buf.geometry().max_payload()];
        for (i, &n) in sizes.iter().enumerate() {
            let payload: Vec<u8> = (0..n).map(|b| (b as u8) ^ (i as u8)).collect();
            buf.write(&payload).unwrap();
        }
        let got = drain(&buf);
        assert_eq!(got.events.len(), sizes.len());
        for (i, ((_, p), &n)) in got.events.iter().zip(&sizes).enumerate() {
            let want: Vec<u8> = (0..n).map(|b| (b as u8) ^ (i as u8)).collect();
            assert_eq!(&p[..n], &want[..], "payload {i}");
            assert!(p[n..].iter().all(|&b| b == 0), "padding of {i} is zero");
            assert_eq!(p.len(), n.max(1).next_multiple_of(4));
        }
    }

    #[test]
    fn too_large_is_an_error_and_records_nothing() {
        let buf = buffer(256, 3, Mode::Overwrite);
        let max = buf.geometry().max_payload();
        assert_eq!(buf.write(&std::vec![0; max + 1]), Err(WriteError::TooLarge { len: max + 1, max }));
        assert!(buf.reserve(usize::MAX).is_err());
        assert_eq!(buf.stats().entries, 0);
        buf.write(&std::vec![7; max]).unwrap();
        assert_eq!(drain(&buf).events.len(), 1);
    }

    #[test]
    fn timestamps_use_deltas_extends_and_absolute_stamps() {
        let buf = buffer(4096, 4, Mode::Overwrite);
        let clock = buf.clock();
        let mut want = Vec::new();
        for step in [0u64, 5, TIME_DELTA_MAX, TIME_DELTA_MAX + 1, 1 << 40, 1 << 60, 3] {
            clock.advance(step);
            want.push(clock.now());
            buf.write(&[1, 2, 3, 4]).unwrap();
        }
        // Deltas of 2^27 and 2^40 became time extends on the first page; the 2^60 jump cannot be
        // a delta, so it started a second page whose header holds the full time.
        let first = buf.view().page(1).unwrap();
        let mut it = EventIter::new(&first).unwrap();
        let mut extends = 0;
        while let Some(record) = it.next_record() {
            extends += usize::from(matches!(record.unwrap(), PageRecord::TimeExtend { .. }));
        }
        assert_eq!(extends, 2);
        assert_eq!(buf.view().page(2).unwrap().timestamp(), want[5]);
        let got: Vec<u64> = drain(&buf).events.iter().map(|e| e.0).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn time_never_goes_backwards() {
        let buf = buffer(4096, 4, Mode::Overwrite);
        buf.clock().set(500);
        buf.write(b"a").unwrap();
        buf.clock().set(100);
        buf.write(b"b").unwrap();
        let got: Vec<u64> = drain(&buf).events.iter().map(|e| e.0).collect();
        assert_eq!(got, [500, 500]);
    }

    #[test]
    fn events_that_do_not_fit_move_to_the_next_page_after_padding() {
        let buf = buffer(64, 4, Mode::Overwrite); // 48 data bytes per page
        for seq in 0..3 {
            buf.write(&seq_payload(seq, 12)).unwrap(); // 20 bytes each: two per page
        }
        let first = buf.view().page(1).unwrap();
        let mut bytes = std::vec![0u8; 64];
        first.copy_to(&mut bytes);
        let commit = first.commit() & COMMIT_LEN_MASK;
        assert_eq!(commit, 48, "padding is committed so the page reads as full");
        let pad = u32::from_ne_bytes(bytes[16 + 40..16 + 44].try_into().unwrap());
        assert_eq!(header_type_len(pad), TYPE_LEN_PADDING);
        assert_eq!(buf.writer_shared.tail.load(crate::sync::Ordering::Relaxed), 2);
        assert_eq!(drain(&buf).seqs(), [0, 1, 2]);
        assert_eq!(buf.stats().pages_touched, 1);
    }

    #[test]
    fn overwrite_keeps_the_newest_and_counts_the_rest() {
        let buf = buffer(64, 4, Mode::Overwrite); // 3 ring pages, 2 events per page
        for seq in 0..20 {
            buf.write(&seq_payload(seq, 12)).unwrap();
        }
        let stats = buf.stats();
        assert_eq!(stats.entries, 20);
        assert_eq!(stats.dropped, 0);
        let got = drain(&buf);
        let seqs = got.seqs();
        assert_eq!(*seqs.last().unwrap(), 19);
        assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "survivors are contiguous: {seqs:?}");
        assert_eq!(u64::from(seqs[0]), got.total_lost(), "the gap before the first survivor is reported");
        let stats = buf.stats();
        assert_eq!(stats.overrun, got.total_lost());
        assert_eq!(stats.pages_lost * 2, stats.overrun);
        // Consumed events count as read when their page is given back; the consumer still holds
        // the last reader page.
        let held = EventIter::new(&buf.view().page(buf.view().meta().reader().id).unwrap()).unwrap().count();
        assert_eq!(stats.in_buffer(), held as u64);
        assert_eq!(stats.read + stats.in_buffer(), seqs.len() as u64);
    }

    #[test]
    fn drop_mode_keeps_the_oldest_and_counts_drops() {
        let buf = buffer(64, 4, Mode::Drop);
        let mut results = Vec::new();
        for seq in 0..20 {
            results.push(buf.write(&seq_payload(seq, 12)));
        }
        // The reader page is empty and the ring holds 3 pages of 2 events.
        assert!(results[..6].iter().all(Result::is_ok));
        assert!(results[6..].iter().all(|r| *r == Err(WriteError::Dropped)));
        let stats = buf.stats();
        assert_eq!((stats.entries, stats.dropped, stats.overrun), (6, 14, 0));
        let mut cursor = Cursor::default();
        let mut got = Drained::default();
        drain_from(&buf, &mut cursor, &mut got);
        assert_eq!(got.seqs(), [0, 1, 2, 3, 4, 5]);
        // Nothing was written after the drops yet, so no loss was reported.
        assert_eq!(got.total_lost(), 0);
        // Space is back: the next event lands, and the drops are reported before it.
        buf.write(&seq_payload(20, 12)).unwrap();
        let mut got = Drained::default();
        drain_from(&buf, &mut cursor, &mut got);
        assert_eq!(got.seqs(), [20]);
        assert_eq!(got.lost, [(0, 14)]);
        let s = buf.stats();
        assert_eq!(s.entries, s.read + s.overrun + s.in_buffer());
    }

    #[test]
    fn reservations_fill_commit_and_discard() {
        let buf = buffer(4096, 4, Mode::Overwrite);
        let mut r = buf.reserve(10).unwrap();
        assert_eq!(r.len(), 10);
        r.write_at(0, &[1, 2, 3]).unwrap();
        r.write_at(3, &[4, 5, 6, 7, 8, 9, 10]).unwrap();
        assert!(matches!(r.write_at(8, &[0; 3]), Err(WriteError::OutOfBounds { .. })));
        r.commit();
        buf.clock().advance(10);
        let r = buf.reserve(100).unwrap();
        r.discard();
        {
            let _dropped = buf.reserve(8).unwrap();
        }
        buf.write(b"last").unwrap();
        let got = drain(&buf);
        assert_eq!(got.events.len(), 2);
        assert_eq!(&got.events[0].1[..10], &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
        assert_eq!(got.events[1].1, b"last");
        assert_eq!(got.events[1].0, 1010);
        assert_eq!(buf.stats().entries, 2);
        // The discarded space was reused: the second event directly follows the first.
        assert_eq!(tail_words(&buf).len(), 4 + 2);
    }

    #[test]
    fn disabled_buffers_record_nothing() {
        let buf = buffer(4096, 4, Mode::Overwrite);
        buf.set_enabled(false);
        assert!(!buf.is_enabled());
        assert_eq!(buf.write(b"x"), Err(WriteError::Disabled));
        assert!(matches!(buf.reserve(1), Err(WriteError::Disabled)));
        buf.set_enabled(true);
        buf.write(b"y").unwrap();
        assert_eq!(drain(&buf).events.len(), 1);
    }

    #[test]
    fn a_write_that_saw_tracing_disabled_stays_refused_if_it_is_enabled_meanwhile() {
        let buf = buffer(4096, 4, Mode::Overwrite);
        buf.set_enabled(false);
        // Replays `write` having read `enabled == false` at depth 0, with another thread turning
        // tracing back on before the refusal path runs.
        buf.writer_state.depth.store(1, crate::sync::Ordering::Relaxed);
        buf.set_enabled(true);
        assert_eq!(buf.write_entered(0, false, b"x"), Err(WriteError::Disabled));
        assert_eq!(buf.writer_state.depth.load(crate::sync::Ordering::Relaxed), 0, "the context was closed");
        buf.write(b"y").unwrap();
        assert_eq!(drain(&buf).events.len(), 1);
    }

    #[test]
    fn reset_empties_everything() {
        let mut buf = buffer(64, 4, Mode::Overwrite);
        for seq in 0..10 {
            buf.write(&seq_payload(seq, 12)).unwrap();
        }
        let _ = drain(&buf);
        buf.reset();
        assert_eq!(buf.stats(), crate::Stats::default());
        assert_eq!(buf.view().meta().counters(), crate::Stats::default());
        assert!(drain(&buf).events.is_empty());
        buf.write(&seq_payload(42, 0)).unwrap();
        assert_eq!(drain(&buf).seqs(), [42]);
    }

    #[test]
    fn meta_entries_are_published_when_the_writer_leaves_a_page() {
        let buf = buffer(64, 4, Mode::Overwrite); // two 20-byte events per page
        buf.write(&seq_payload(0, 12)).unwrap();
        buf.write(&seq_payload(1, 12)).unwrap();
        assert_eq!(buf.view().meta().counters().entries, 0, "nothing published mid-page");
        buf.write(&seq_payload(2, 12)).unwrap();
        assert_eq!(buf.view().meta().counters().entries, 2, "the page left holds two");
        assert_eq!(buf.stats().entries, 3, "the writer's own count is exact");
    }

    #[test]
    fn meta_counters_follow_the_writer() {
        let buf = buffer(64, 4, Mode::Drop);
        for seq in 0..8 {
            let _ = buf.write(&seq_payload(seq, 12));
        }
        let m = buf.view().meta().counters();
        let s = buf.stats();
        assert_eq!(
            (m.entries, m.dropped, m.overrun, m.pages_touched),
            (s.entries, s.dropped, s.overrun, s.pages_touched)
        );
        assert_eq!(buf.view().meta().tail_slot(), 2);
    }
}
