//! Non-consuming reads: copying pages out of the ring without taking them from the writer.
//!
//! Each ring slot's `data_index[]` entry has a counter the writer uses as a seqlock when it moves
//! onto the slot's page: odd while it resets the page, even (a release store) once the reset is
//! done; appending events after that only writes past `commit`. A page only comes back into the
//! ring through a swap, which bumps `swaps`. A copy is trustworthy if `cnt` was even and neither
//! `cnt` nor `swaps` changed across it:
//!
//! ```text
//!   reader                               writer (moving onto the page)
//!   s1 = swaps          (acquire)        cnt = odd
//!   c1 = cnt[slot]      (acquire)        fence(release)
//!   id = idx[slot]                       commit = 0            (reset)
//!   copy page id, commit first (acq.)    cnt = even            (release)
//!   fence(acquire)                       write events, commit  (release)
//!   c2 = cnt[slot], s2 = swaps
//!   -> c1 odd, c1 != c2 or s1 != s2: discard the copy
//! ```
//!
//! A copy that passes holds exactly the events committed when it was taken (decode it up to its
//! own `commit`); a copy that fails is reported, never returned as data.

use crate::decode::ShmPage;
use crate::sync::{Ordering, fence};
use crate::view::SharedView;

/// A page copied and validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotCopy {
    /// Ring slot it came from.
    pub slot: u32,
    /// Sub-buffer id that was in the slot.
    pub id: u32,
    /// Sequence number of the page's first event (`None` if the meta area is corrupt).
    pub first_seq: Option<u64>,
}

/// Why a page copy cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    /// The writer (or a swap) changed the page while it was copied.
    #[error("slot {slot} was rewritten while it was read")]
    Overwritten {
        /// The slot.
        slot: u32,
    },
    /// The slot number or the sub-buffer id in it is out of range.
    #[error("slot {slot} is out of range or names no sub-buffer")]
    BadSlot {
        /// The slot.
        slot: u32,
    },
    /// A swap replaced the reader page while it was copied.
    #[error("the reader page was swapped while it was read")]
    ReaderPageChanged,
    /// The meta area names a reader page that does not exist.
    #[error("the meta area names reader page {0}, which does not exist")]
    BadReaderPage(u32),
    /// The meta area has no hyptrace extension (a kernel buffer): there is no `data_index[]` to
    /// validate against.
    #[error("the buffer has no data_index[] (no hyptrace meta extension): only consuming reads work")]
    NoExtension,
    /// A consumer swapped reader pages during every attempt at a snapshot.
    #[error("the consumer kept swapping reader pages during the snapshot; try again")]
    Contended,
    /// The output buffer is not one sub-buffer long.
    #[error("copy buffer of {got} bytes for {need}-byte sub-buffers")]
    BufferSize {
        /// Bytes needed.
        need: usize,
        /// Bytes given.
        got: usize,
    },
}

/// A validated read of one ring slot in progress: parse or copy [`SlotRead::page`], then call
/// [`SlotRead::finish`]; only if it succeeds may what was read be used.
#[derive(Debug, Clone, Copy)]
pub struct SlotRead<'r> {
    view: SharedView<'r>,
    slot: u32,
    id: u32,
    cnt: u32,
    swaps: u64,
}

impl<'r> SlotRead<'r> {
    /// The page in the slot when the read began.
    pub fn page(&self) -> ShmPage<'r> {
        self.view.page(self.id).expect("id validated in begin_slot")
    }

    /// Sub-buffer id in the slot when the read began.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Checks that the page did not change while it was read.
    pub fn finish(self) -> Result<SlotCopy, SnapshotError> {
        // Ordering: the Acquire fence below pairs with the writer's Release fence after its odd
        // cnt store: if anything read since `begin_slot` (page bytes, first_seq) saw a write made
        // after that, the cnt load after the fence sees the bump.
        let first_seq = self.view.meta().first_seq(self.id);
        fence(Ordering::Acquire);
        let region = self.view.meta().region();
        let cnt = self.view.meta().slot_cnt(self.slot).ok_or(SnapshotError::BadSlot { slot: self.slot })?;
        let swaps = region.load_u64(crate::meta::off::EXT_SWAPS);
        if cnt != self.cnt || swaps != self.swaps {
            return Err(SnapshotError::Overwritten { slot: self.slot });
        }
        Ok(SlotCopy { slot: self.slot, id: self.id, first_seq })
    }
}

impl<'r> SharedView<'r> {
    /// Starts a validated read of ring slot `slot`.
    pub fn begin_slot(&self, slot: u32) -> Result<SlotRead<'r>, SnapshotError> {
        if !self.has_extension() {
            return Err(SnapshotError::NoExtension);
        }
        if slot >= self.geometry().nr_slots() {
            return Err(SnapshotError::BadSlot { slot });
        }
        let meta = self.meta();
        let swaps = meta.swaps();
        let cnt = meta.slot_cnt(slot).ok_or(SnapshotError::BadSlot { slot })?;
        if cnt % 2 == 1 {
            // The writer is resetting the page right now.
            return Err(SnapshotError::Overwritten { slot });
        }
        let id = meta.slot_id(slot).ok_or(SnapshotError::BadSlot { slot })?;
        self.page(id).ok_or(SnapshotError::BadSlot { slot })?;
        Ok(SlotRead { view: *self, slot, id, cnt, swaps })
    }

    /// Copies the page in ring slot `slot` into `out` (one sub-buffer long) and validates it.
    pub fn copy_slot(&self, slot: u32, out: &mut [u8]) -> Result<SlotCopy, SnapshotError> {
        let need = self.geometry().subbuf_size() as usize;
        if out.len() != need {
            return Err(SnapshotError::BufferSize { need, got: out.len() });
        }
        let read = self.begin_slot(slot)?;
        read.page().copy_to(out);
        read.finish()
    }

    /// Copies the reader page into `out` and validates it against concurrent swaps (which may
    /// hand the page back to the writer) with the meta area's `reader_seq` seqlock.
    pub fn copy_reader_page(&self, out: &mut [u8]) -> Result<ReaderCopy, SnapshotError> {
        if !self.has_extension() {
            return Err(SnapshotError::NoExtension);
        }
        let need = self.geometry().subbuf_size() as usize;
        if out.len() != need {
            return Err(SnapshotError::BufferSize { need, got: out.len() });
        }
        let meta = self.meta();
        let seq = meta.reader_seq();
        if seq % 2 == 1 {
            return Err(SnapshotError::ReaderPageChanged);
        }
        let reader = meta.reader();
        let page = self.page(reader.id).ok_or(SnapshotError::BadReaderPage(reader.id))?;
        page.copy_to(out);
        let first_seq = meta.first_seq(reader.id);
        // Ordering: pairs with the swapper's Release fence after it made `reader_seq` odd: if the
        // copy saw anything the writer wrote to the page after a swap handed it back, the load
        // below sees the odd value (or a later one).
        fence(Ordering::Acquire);
        if meta.region().load_u32(crate::meta::off::EXT_READER_SEQ) != seq {
            return Err(SnapshotError::ReaderPageChanged);
        }
        Ok(ReaderCopy { id: reader.id, read: reader.read, first_seq })
    }
}

/// The reader page, copied and validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReaderCopy {
    /// Its sub-buffer id.
    pub id: u32,
    /// How far the consumer had read it (as of its last swap request).
    pub read: u32,
    /// Sequence number of its first event (`None` if the meta area is corrupt).
    pub first_seq: Option<u64>,
}

/// Attempts [`SharedView::snapshot`] makes before giving up on a consumer that keeps swapping.
pub const SNAPSHOT_ATTEMPTS: u32 = 8;

/// Readings of the ring's tail and head a snapshot takes, at most, to find them from one state
/// of the ring while the writer keeps moving.
const WINDOW_ATTEMPTS: u32 = 64;

#[cfg(feature = "std")]
pub use with_std::{Snapshot, SnapshotPage};

#[cfg(feature = "std")]
mod with_std {
    use super::*;
    use crate::decode::{Event, EventIter};
    use std::vec::Vec;

    /// One page of a [`Snapshot`].
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct SnapshotPage {
        /// Ring slot, or `None` for the reader page (and in a post-mortem read, which goes by
        /// sequence numbers, not slots).
        pub slot: Option<u32>,
        /// Sub-buffer id.
        pub id: u32,
        /// Data offset to decode from (the reader page's consumed part is skipped).
        pub start: u32,
        /// Sequence number of the page's first event (`None` if the meta area is corrupt).
        pub first_seq: Option<u64>,
        /// The page as copied.
        pub bytes: Vec<u8>,
    }

    impl SnapshotPage {
        /// Decoded events of this page (from `start`).
        pub fn events(&self) -> impl Iterator<Item = Event<&[u8]>> + '_ {
            EventIter::starting_at(self.bytes.as_slice(), self.start as usize)
                .into_iter()
                .flatten()
                .map_while(Result::ok)
        }

        /// Sequence number of the page's first event from [`SnapshotPage::start`] on: `first_seq`
        /// plus the events before `start`.
        pub fn start_seq(&self) -> Option<u64> {
            let before = EventIter::count_before(self.bytes.as_slice(), self.start);
            // A first_seq that overflows is a lie of the producer: the sequence is unknown.
            self.first_seq.and_then(|f| f.checked_add(before))
        }

        /// Why the page stops decoding before its end (from [`SnapshotPage::start`]), if it does:
        /// [`SnapshotPage::events`] gives the events before that.
        pub fn decode_error(&self) -> Option<crate::DecodeError> {
            let mut events = match EventIter::starting_at(self.bytes.as_slice(), self.start as usize) {
                Ok(events) => events,
                Err(error) => return Some(error),
            };
            events.find_map(Result::err)
        }

        /// Sequence number just past the page's last event: `first_seq` plus every event on the
        /// page (from its start, not from [`SnapshotPage::start`]); events on a page are
        /// consecutive, losses only fall between pages.
        pub fn end_seq(&self) -> Option<u64> {
            let all = EventIter::new(self.bytes.as_slice()).into_iter().flatten().map_while(Result::ok).count();
            self.first_seq.and_then(|f| f.checked_add(all as u64))
        }

        fn first_timestamp(&self) -> Option<u64> {
            self.events().next().map(|e| e.timestamp)
        }
    }

    /// What a non-consuming reader saw: the unread part of the reader page and the ring pages
    /// from head to tail, each validated, in time order.
    #[derive(Debug, Clone, Default, PartialEq, Eq)]
    pub struct Snapshot {
        /// Validated pages, oldest first.
        pub pages: Vec<SnapshotPage>,
        /// Pages that changed while being read (overwritten, swapped or consumed) and were left out.
        pub discarded: u32,
        /// For a read after the producer is gone ([`SharedView::snapshot_quiescent`]): the
        /// sequence number of the first event not consumed, where the read starts. Events from
        /// there to the first page's are lost.
        pub from_seq: Option<u64>,
    }

    impl Snapshot {
        /// All events, oldest first.
        pub fn events(&self) -> impl Iterator<Item = Event<&[u8]>> + '_ {
            self.pages.iter().flat_map(SnapshotPage::events)
        }
    }

    /// The data offsets of a page's events, as far as it decodes, and where it stops decoding
    /// if it does before its end.
    fn event_offsets(page: &[u8]) -> (Vec<u32>, Option<u32>) {
        let Ok(mut events) = EventIter::new(page) else { return (Vec::new(), Some(0)) };
        let mut offsets = Vec::new();
        while let Some(event) = events.next() {
            match event {
                Ok(event) => offsets.push(event.offset),
                Err(_) => return (offsets, Some(events.position() as u32)),
            }
        }
        (offsets, None)
    }

    impl SharedView<'_> {
        /// Takes a snapshot of everything not yet consumed, without disturbing writer or consumer.
        /// Pages the writer rewrote while they were copied are left out and counted in
        /// [`Snapshot::discarded`]. A reader-page swap during the snapshot could make a page
        /// appear twice or not at all, so the snapshot is retried until none happened across it
        /// ([`SnapshotError::Contended`] if the consumer kept swapping). A buffer without the
        /// hyptrace extension cannot be snapshotted.
        ///
        /// # Examples
        ///
        /// Look at what a buffer holds; a consumer still reads all of it afterwards:
        ///
        /// ```
        /// use ring_core::{Config, CpuBuffer, Cursor, ManualClock};
        ///
        /// let buffer = CpuBuffer::with_heap(Config::default(), ManualClock::new(0))?;
        /// buffer.writer()?.write(b"kept")?;
        ///
        /// let snapshot = buffer.view().snapshot()?;
        /// let payloads: Vec<&[u8]> = snapshot.events().map(|event| event.payload).collect();
        /// assert_eq!(payloads, [b"kept"]);
        /// assert_eq!(snapshot.discarded, 0);
        ///
        /// let consumed = Cursor::default().drain(&buffer.view(), |read| buffer.swap_reader_page(read), |_| {})?;
        /// assert_eq!(consumed, 1, "the snapshot consumed nothing");
        /// # Ok::<(), Box<dyn std::error::Error>>(())
        /// ```
        pub fn snapshot(&self) -> Result<Snapshot, SnapshotError> {
            if !self.has_extension() {
                return Err(SnapshotError::NoExtension);
            }
            for _ in 0..SNAPSHOT_ATTEMPTS {
                let seq = self.meta().reader_seq();
                if seq % 2 == 1 {
                    std::thread::yield_now();
                    continue;
                }
                let snap = self.snapshot_once();
                // Ordering: as in `copy_reader_page`, over the whole snapshot.
                fence(Ordering::Acquire);
                if self.meta().region().load_u32(crate::meta::off::EXT_READER_SEQ) == seq {
                    return Ok(snap);
                }
            }
            Err(SnapshotError::Contended)
        }

        /// Reads everything unread of a buffer whose producer is gone (crashed or exited): nothing
        /// changes any more. `reader_start` is where the consumer stood on the reader page (give
        /// the meta area's `reader.read` if it does not know better).
        ///
        /// Which page is in which slot is not trusted, since a producer killed in the middle of a
        /// swap leaves that half updated ([`crate::swap`]); every sub-buffer is read, ordered by
        /// its `first_seq[]`, and only events from the consumption point on are kept: the
        /// reader page's event at `reader_start`, or, if the producer died during a swap
        /// (`reader_seq` odd), `swap_consumed_seq`. A page's `commit` and `first_seq[]` always
        /// agree (the writer empties a page before it gives it a new first sequence number, and
        /// fills it only after), so each page holds exactly the events committed on it. Pages a
        /// corrupt meta area gives no sequence number are left out and counted in
        /// [`Snapshot::discarded`].
        pub fn snapshot_quiescent(&self, reader_start: u32) -> Result<Snapshot, SnapshotError> {
            if !self.has_extension() {
                return Err(SnapshotError::NoExtension);
            }
            let meta = self.meta();
            let consumed = if meta.reader_seq() % 2 == 1 {
                meta.swap_consumed_seq()
            } else {
                let id = meta.reader().id;
                let page = self.page(id).ok_or(SnapshotError::BadReaderPage(id))?;
                meta.first_seq(id).unwrap_or(0).saturating_add(EventIter::count_before(&page, reader_start))
            };
            let mut snap = Snapshot { from_seq: Some(consumed), ..Snapshot::default() };
            let mut bytes = std::vec![0u8; self.geometry().subbuf_size() as usize];
            for id in 0..self.geometry().nr_subbufs() {
                let (Some(page), Some(first_seq)) = (self.page(id), meta.first_seq(id)) else {
                    snap.discarded += 1;
                    continue;
                };
                page.copy_to(&mut bytes);
                let (events, fault_at) = event_offsets(&bytes);
                // Events before the consumption point were read; a page starting after it is
                // read whole. Pages with nothing left (read, or empty) are left out, except one
                // that stops decoding right there: its reader must hear of the damage.
                let skip = usize::try_from(consumed.saturating_sub(first_seq)).unwrap_or(usize::MAX);
                let start = match (events.get(skip), fault_at) {
                    (Some(&offset), _) => offset,
                    (None, Some(fault)) if skip == events.len() => fault,
                    _ => continue,
                };
                snap.pages.push(SnapshotPage {
                    slot: None,
                    id,
                    start,
                    first_seq: Some(first_seq),
                    bytes: bytes.clone(),
                });
            }
            snap.pages.sort_by_key(|p| p.first_seq);
            Ok(snap)
        }

        /// The writer's page id, the tail slot and the head slot, read as one state of the ring.
        ///
        /// Ordering: the tail first (its id, then its slot, the reverse of the order the writer
        /// stores them in), then the head, each an acquire load, so the head is at least as new
        /// as the tail: read the other way round, a writer moving between the loads makes a
        /// full ring look like one page (tail == head), or a consumed ring like a full one. A
        /// head newer by a move or two only leaves the newest pages out; newer by more (this
        /// thread was preempted between the loads) would leave most of a full ring out, so the
        /// loads are repeated until the writer's count of page moves (`subbufs_touched`, which
        /// it stores after pushing the head and before the tail) is the same before and after
        /// them. Of the moves between the tail's and the head's loads, all but the last store
        /// the count before the head the loads saw, so the count after sees them; the count
        /// before may already include the move whose tail the loads missed. The head is
        /// therefore at most two moves newer than the tail. A writer that never stops moving
        /// long enough gets the last reading.
        fn ring_window(&self) -> (u32, u32, u32) {
            let meta = self.meta();
            let slots = self.geometry().nr_slots();
            let moves = || meta.region().load_u64_acquire(crate::meta::off::PAGES_TOUCHED);
            let reading = || (meta.tail_id(), meta.tail_slot() % slots, meta.head_slot() % slots);
            let mut before = moves();
            let mut window = reading();
            for _ in 1..WINDOW_ATTEMPTS {
                let after = moves();
                if after == before {
                    break;
                }
                (before, window) = (after, reading());
            }
            window
        }

        /// One pass over the reader page and the ring.
        fn snapshot_once(&self) -> Snapshot {
            let geometry = self.geometry();
            let size = geometry.subbuf_size() as usize;
            let slots = geometry.nr_slots();
            let mut snap = Snapshot::default();
            let mut buf = std::vec![0u8; size];
            let meta = self.meta();
            match self.copy_reader_page(&mut buf) {
                Ok(c) => snap.pages.push(SnapshotPage {
                    slot: None,
                    id: c.id,
                    start: c.read,
                    first_seq: c.first_seq,
                    bytes: buf.clone(),
                }),
                Err(_) => snap.discarded += 1,
            }
            let reader = meta.reader().id;
            let (tail_id, tail, head) = self.ring_window();
            // The writer on the reader page means the ring holds nothing unread (head is then
            // tail + 1, as it also is for a full ring).
            if tail_id == reader {
                snap.pages.retain(|p| p.first_timestamp().is_some());
                return snap;
            }
            let count = (tail + slots - head) % slots + 1;
            let mut ring = Vec::new();
            for i in 0..count {
                let slot = (head + i) % slots;
                match self.copy_slot(slot, &mut buf) {
                    Ok(c) => ring.push(SnapshotPage {
                        slot: Some(slot),
                        id: c.id,
                        start: 0,
                        first_seq: c.first_seq,
                        bytes: buf.clone(),
                    }),
                    Err(_) => snap.discarded += 1,
                }
            }
            // Pages whose slot fell behind the head while we copied were consumed or lost. The
            // tail first again, so the window is never wider than the ring was.
            let tail_now = meta.tail_slot() % slots;
            let head_now = meta.head_slot() % slots;
            let window = (tail_now + slots - head_now) % slots + 1;
            for page in ring {
                let slot = page.slot.unwrap_or(0);
                if (slot + slots - head_now) % slots < window {
                    snap.pages.push(page);
                } else {
                    snap.discarded += 1;
                }
            }
            // Oldest first (the reader page, then the ring from the head), empty pages left out.
            snap.pages.retain(|p| p.first_timestamp().is_some());
            snap.pages.sort_by_key(|p| p.first_seq);
            snap
        }
    }
}

#[cfg(all(test, feature = "std", not(loom)))]
mod tests {
    use super::*;
    use crate::test_support::{buffer, drain, seq_payload};
    use crate::{Mode, meta::off};

    fn seqs(snap: &Snapshot) -> std::vec::Vec<u32> {
        snap.events().map(|e| u32::from_ne_bytes(e.payload[..4].try_into().unwrap())).collect()
    }

    #[test]
    fn snapshot_shows_unread_events_without_consuming() {
        let buf = buffer(64, 5, Mode::Overwrite);
        for seq in 0..7 {
            buf.write(&seq_payload(seq, 12)).unwrap();
        }
        let view = buf.view();
        let snap = view.snapshot().unwrap();
        assert_eq!(seqs(&snap), [0, 1, 2, 3, 4, 5, 6]);
        assert_eq!(snap.discarded, 0);
        assert_eq!(view.snapshot().unwrap(), snap, "non-consuming: a second snapshot sees the same");
        assert_eq!(drain(&buf).seqs(), [0, 1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn snapshot_skips_what_the_consumer_read() {
        let buf = buffer(64, 5, Mode::Overwrite);
        for seq in 0..5 {
            buf.write(&seq_payload(seq, 12)).unwrap();
        }
        let up = buf.swap_reader_page(0).unwrap();
        buf.swap_reader_page(20).unwrap(); // consumed the first event of the reader page
        assert_eq!(up.id, 1);
        assert_eq!(seqs(&buf.view().snapshot().unwrap()), [1, 2, 3, 4]);
        // After the page is given back, its slot holds consumed data that must not show up.
        buf.swap_reader_page(48).unwrap();
        assert_eq!(seqs(&buf.view().snapshot().unwrap()), [2, 3, 4]);
    }

    #[test]
    fn a_page_rewritten_during_the_read_is_discarded() {
        let buf = buffer(64, 3, Mode::Overwrite); // 2 ring slots
        buf.write(&seq_payload(0, 12)).unwrap();
        let view = buf.view();
        let read = view.begin_slot(0).unwrap();
        assert_eq!(read.id(), 1);
        // The writer laps the ring and moves onto slot 0 again while we "parse" it.
        for seq in 1..5 {
            buf.write(&seq_payload(seq, 12)).unwrap();
        }
        assert_eq!(read.finish(), Err(SnapshotError::Overwritten { slot: 0 }));
        // A read that starts after the rewrite is fine.
        let mut page = std::vec![0u8; 64];
        assert_eq!(view.copy_slot(0, &mut page), Ok(SlotCopy { slot: 0, id: 1, first_seq: Some(4) }));
    }

    #[test]
    fn bad_slots_and_buffers_are_errors() {
        let buf = buffer(64, 4, Mode::Overwrite);
        let view = buf.view();
        let mut page = std::vec![0u8; 64];
        assert_eq!(view.copy_slot(7, &mut page), Err(SnapshotError::BadSlot { slot: 7 }));
        assert_eq!(view.copy_slot(0, &mut page[..8]), Err(SnapshotError::BufferSize { need: 64, got: 8 }));
        buf.meta.store_u32(off::data_index_id(1), 99, Ordering::Relaxed);
        assert_eq!(view.copy_slot(1, &mut page), Err(SnapshotError::BadSlot { slot: 1 }));
    }

    #[test]
    fn a_quiescent_snapshot_gives_page_sequence_ranges_to_count_losses() {
        let buf = buffer(64, 4, Mode::Overwrite); // 3 ring pages of two events
        for seq in 0..3 {
            buf.write(&seq_payload(seq, 12)).unwrap();
        }
        let up = buf.swap_reader_page(0).unwrap(); // reader page: events 0 and 1
        buf.swap_reader_page(20).unwrap(); // the consumer read event 0
        for seq in 3..14 {
            buf.write(&seq_payload(seq, 12)).unwrap(); // laps the ring: events 2..=7 overwritten
        }
        let snap = buf.view().snapshot_quiescent(20).unwrap();
        let reader = &snap.pages[0];
        assert_eq!((reader.slot, reader.id, reader.first_seq, reader.end_seq()), (None, up.id, Some(0), Some(2)));
        assert_eq!(reader.events().count(), 1, "only event 1 was left to read");
        assert_eq!(reader.start_seq(), Some(1));
        let ring = &snap.pages[1..];
        assert_eq!(ring[0].first_seq, Some(8), "events 2..8 were lost between the pages");
        let ends: std::vec::Vec<_> = ring.iter().map(|p| (p.first_seq.unwrap(), p.end_seq().unwrap())).collect();
        assert!(ends.windows(2).all(|w| w[0].1 == w[1].0), "ring pages are contiguous: {ends:?}");
        assert_eq!(ends.last().unwrap().1, 14);
    }

    #[test]
    fn overwritten_pages_never_appear_in_a_snapshot() {
        let buf = buffer(64, 4, Mode::Overwrite);
        for seq in 0..40 {
            buf.write(&seq_payload(seq, 12)).unwrap();
        }
        let got = seqs(&buf.view().snapshot().unwrap());
        assert_eq!(*got.last().unwrap(), 39);
        assert!(got.windows(2).all(|w| w[1] == w[0] + 1), "{got:?}");
    }
}
