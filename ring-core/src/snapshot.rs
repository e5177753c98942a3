//! Non-consuming reads: copying pages out of the ring without taking them from the writer.
//!
//! Each ring slot's `data_index[]` entry has a counter the writer bumps (before touching the
//! page) every time it moves onto that slot, and a swapper bumps when it puts another sub-buffer
//! in the slot. A copy is trustworthy if the counter is the same before and after it:
//!
//! ```text
//!   c1 = cnt[slot]   (acquire)        writer: cnt[slot] += 1
//!   id = idx[slot]                            fence(release)
//!   copy page id                              reset page, write events
//!   fence(acquire)
//!   c2 = cnt[slot]   -> c1 != c2: the page was rewritten under us; discard the copy
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
        // Ordering: pairs with the writer's Release fence after its cnt bump: if anything read
        // since `begin_slot` saw a byte written after a bump, the load below sees that bump.
        fence(Ordering::Acquire);
        let now = self.view.meta().region().load_u32(crate::meta::off::data_index_cnt(self.slot));
        if now != self.cnt {
            return Err(SnapshotError::Overwritten { slot: self.slot });
        }
        Ok(SlotCopy { slot: self.slot, id: self.id })
    }
}

impl<'r> SharedView<'r> {
    /// Starts a validated read of ring slot `slot`.
    pub fn begin_slot(&self, slot: u32) -> Result<SlotRead<'r>, SnapshotError> {
        if slot >= self.geometry().nr_slots() {
            return Err(SnapshotError::BadSlot { slot });
        }
        let meta = self.meta();
        let cnt = meta.slot_cnt(slot).ok_or(SnapshotError::BadSlot { slot })?;
        let id = meta.slot_id(slot).ok_or(SnapshotError::BadSlot { slot })?;
        self.page(id).ok_or(SnapshotError::BadSlot { slot })?;
        Ok(SlotRead { view: *self, slot, id, cnt })
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

    /// Copies the reader page into `out` and validates it against concurrent swaps. Returns the
    /// page id and how far the consumer had read it.
    pub fn copy_reader_page(&self, out: &mut [u8]) -> Result<(u32, u32), SnapshotError> {
        let need = self.geometry().subbuf_size() as usize;
        if out.len() != need {
            return Err(SnapshotError::BufferSize { need, got: out.len() });
        }
        let meta = self.meta();
        let swaps = meta.swaps();
        let reader = meta.reader();
        let page = self.page(reader.id).ok_or(SnapshotError::BadSlot { slot: u32::MAX })?;
        page.copy_to(out);
        // Ordering: as in `copy_slot`; a swap (which may hand the page back to the writer) bumps
        // `swaps` before the page can be reused.
        fence(Ordering::Acquire);
        if meta.region().load_u64(crate::meta::off::EXT_SWAPS) != swaps {
            return Err(SnapshotError::Overwritten { slot: u32::MAX });
        }
        Ok((reader.id, reader.read))
    }
}

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
        /// Ring slot, or `None` for the reader page.
        pub slot: Option<u32>,
        /// Sub-buffer id.
        pub id: u32,
        /// Data offset to decode from (the reader page's consumed part is skipped).
        pub start: u32,
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
    }

    impl Snapshot {
        /// All events, oldest first.
        pub fn events(&self) -> impl Iterator<Item = Event<&[u8]>> + '_ {
            self.pages.iter().flat_map(SnapshotPage::events)
        }
    }

    impl SharedView<'_> {
        /// Takes a snapshot of everything not yet consumed, without disturbing writer or consumer.
        pub fn snapshot(&self) -> Snapshot {
            let geo = self.geometry();
            let size = geo.subbuf_size() as usize;
            let slots = geo.nr_slots();
            let mut snap = Snapshot::default();
            let mut buf = std::vec![0u8; size];
            match self.copy_reader_page(&mut buf) {
                Ok((id, read)) => {
                    snap.pages.push(SnapshotPage { slot: None, id, start: read, bytes: buf.clone() })
                }
                Err(_) => snap.discarded += 1,
            }
            let meta = self.meta();
            let head = meta.head_slot() % slots;
            let tail = meta.tail_slot() % slots;
            let count = (tail + slots - head) % slots + 1;
            let mut ring = Vec::new();
            for i in 0..count {
                let slot = (head + i) % slots;
                match self.copy_slot(slot, &mut buf) {
                    Ok(c) => ring.push((i, SnapshotPage { slot: Some(slot), id: c.id, start: 0, bytes: buf.clone() })),
                    Err(_) => snap.discarded += 1,
                }
            }
            // Pages whose slot fell behind the head while we copied were consumed or lost.
            let head_now = meta.head_slot() % slots;
            let tail_now = meta.tail_slot() % slots;
            let window = (tail_now + slots - head_now) % slots + 1;
            for (_, page) in ring {
                let slot = page.slot.unwrap_or(0);
                if (slot + slots - head_now) % slots < window {
                    snap.pages.push(page);
                } else {
                    snap.discarded += 1;
                }
            }
            // Time order; pages without events sort by ring position.
            snap.pages.retain(|p| p.first_timestamp().is_some());
            snap.pages.sort_by_key(|p| p.first_timestamp());
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
        let snap = view.snapshot();
        assert_eq!(seqs(&snap), [0, 1, 2, 3, 4, 5, 6]);
        assert_eq!(snap.discarded, 0);
        assert_eq!(view.snapshot(), snap, "non-consuming: a second snapshot sees the same");
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
        assert_eq!(seqs(&buf.view().snapshot()), [1, 2, 3, 4]);
        // After the page is given back, its slot holds consumed data that must not show up.
        buf.swap_reader_page(48).unwrap();
        assert_eq!(seqs(&buf.view().snapshot()), [2, 3, 4]);
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
        assert_eq!(view.copy_slot(0, &mut page), Ok(SlotCopy { slot: 0, id: 1 }));
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
    fn overwritten_pages_never_appear_in_a_snapshot() {
        let buf = buffer(64, 4, Mode::Overwrite);
        for seq in 0..40 {
            buf.write(&seq_payload(seq, 12)).unwrap();
        }
        let got = seqs(&buf.view().snapshot());
        assert_eq!(*got.last().unwrap(), 39);
        assert!(got.windows(2).all(|w| w[1] == w[0] + 1), "{got:?}");
    }
}
