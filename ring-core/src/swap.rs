//! Swapping the reader page with the head page (the producer side of GET_READER_PAGE).
//!
//! ## Crash consistency
//!
//! A producer can die at any instruction of a swap (SIGKILL), and a reader of its memory
//! afterwards must still find every unread event. Which pages are where is then unreliable (the
//! head page may be out of the ring and not yet the reader page, the page given back may be in
//! the ring and refilled by the writer while `reader.id` still names it), so a post-mortem reader
//! does not go by it ([`crate::SharedView::snapshot_quiescent`]): it reads every sub-buffer, orders
//! them by their `first_seq[]`, and keeps the events from the consumption point on. That point
//! is `reader.read` on the reader page, except while a swap is under way (`reader_seq` odd): the
//! swap stores it first, as `swap_consumed_seq`, the sequence number just past the reader page it
//! is giving back (read to its end):
//!
//! ```text
//!   swap_consumed_seq = end_seq(R)        R: the reader page, read to its end
//!   reader_seq = odd                      "the consumption point is swap_consumed_seq"
//!   CAS  P.next: H|HEAD -> R, head_slot, data_index, reader.*, counters
//!   reader_seq = even                     "the consumption point is reader.id at reader.read"
//! ```

use crate::buffer::CpuBuffer;
use crate::clock::Clock;
use crate::decode::{DecodeError, PageSource, ShmPage};
use crate::doorbell::Doorbell;
use crate::error::SwapError;
use crate::format::{COMMIT_LEN_MASK, SUBBUF_COMMIT_OFFSET};
use crate::link::{LinkWord, SubBufLink};
use crate::lost::Lost;
use crate::meta::off;
use crate::record_walk::boundary_at_or_after;
use crate::sync::{Ordering, fence, signal_fence, spin_hint};

/// Marks a step of the swap where the crash-consistency tests stop the swapper as a SIGKILL would
/// (they unwind out of it, leaving memory as it is); nothing outside those tests.
macro_rules! crash_point {
    ($step:literal) => {
        #[cfg(all(test, feature = "std", not(loom)))]
        crash::point($step);
    };
}

/// Whether a consumer may give back `read` bytes of a reader page `page` whose committed length is
/// `commit` and of which `consumed` bytes were given back before: `read` must lie within
/// `commit`, not below `consumed`, and on a record boundary (so that no later consumer decodes
/// from the middle of an event). The check [`CpuBuffer::swap_reader_page`] makes, for a
/// transport that wants to say why it refused a read.
///
/// The walk goes from `consumed` (a boundary) to `read`, so a consumer that keeps reading one
/// page has each of its bytes walked once in all. The page may be written by an untrusted party
/// at any time (a host under a hypervisor): garbage gives an error, never a panic.
pub fn check_read<P: PageSource + ?Sized>(page: &P, commit: u32, consumed: u32, read: u32) -> Result<(), SwapError> {
    if read > commit {
        return Err(SwapError::ReadPastCommit { read, commit });
    }
    if read < consumed {
        return Err(SwapError::ReadBehind { read, consumed });
    }
    // Nothing new given back, or everything: the committed length is a boundary, and a consumer
    // skips a page it cannot decode by giving back that much.
    if read == consumed || read == commit {
        return Ok(());
    }
    match boundary_at_or_after(page, commit as usize, consumed as usize, read as usize) {
        Ok(at) if at == read as usize => Ok(()),
        Ok(next) => Err(SwapError::NotEventBoundary { read, next: next as u32 }),
        Err(error) => Err(SwapError::MalformedPage { read, error }),
    }
}

/// What a swap did. Its discriminant is its number on the wire ([`SwapStatus::to_wire`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum SwapStatus {
    /// The old reader page went back into the ring; `id` is a new reader page, read from 0.
    Swapped = 0,
    /// The reader page still has unread committed data; keep reading it from `read`.
    Unread = 1,
    /// Everything committed on the reader page was read, but the writer is still writing on it
    /// (the ring holds nothing else); read again when `commit` grows.
    WriterOnPage = 2,
}

impl SwapStatus {
    /// Every status.
    const ALL: [Self; 3] = [Self::Swapped, Self::Unread, Self::WriterOnPage];

    /// The status's number wherever a swap's outcome is carried as one: the `swap_status` of a
    /// GET_READER_PAGE answer (docs/abi.md §5.2) and the status of a hypervisor's swap call.
    pub const fn to_wire(self) -> u32 {
        self as u32
    }

    /// The status numbered `n` ([`SwapStatus::to_wire`]), if there is one.
    pub fn from_wire(n: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.to_wire() == n)
    }
}

/// The reader page after a swap request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReaderUpdate {
    /// What happened.
    pub status: SwapStatus,
    /// Sub-buffer id of the reader page.
    pub id: u32,
    /// Bytes of its data already consumed: resume decoding here.
    pub read: u32,
    /// Events lost between the previous reader page and this one (only non-zero when swapped).
    pub lost_events: u64,
}

impl ReaderUpdate {
    /// The events lost before the reader page this answer names: `lost_events` of a swap that
    /// handed over a new page.
    pub fn lost(&self) -> Lost {
        if self.status == SwapStatus::Swapped && self.lost_events > 0 {
            Lost::Count(self.lost_events)
        } else {
            Lost::None
        }
    }
}

/// Most head-search steps before giving up with [`SwapError::Busy`] (the writer would have to push
/// the head past us this many times).
fn max_steps(nr_slots: u32) -> u32 {
    4 * nr_slots + 16
}

impl<C: Clock, D: Doorbell> CpuBuffer<'_, C, D> {
    /// Accounts `read` bytes of the current reader page as consumed and, if that was all of it,
    /// exchanges the reader page with the head page of the ring.
    ///
    /// Callable from any thread while this CPU's writer runs: it never waits for the writer. One
    /// swapper at a time per CPU; a concurrent call gets [`SwapError::Busy`].
    ///
    /// `read` must leave the reader page in a state the next consumer can read from: it is
    /// refused unless it is a record boundary of the page (its committed length, or the end of a
    /// record: [`SwapError::NotEventBoundary`], [`SwapError::MalformedPage`]), no less than what
    /// earlier requests gave back for this page ([`SwapError::ReadBehind`]) and within its
    /// commit ([`SwapError::ReadPastCommit`]). A refused request changes nothing.
    pub fn swap_reader_page(&self, read: u32) -> Result<ReaderUpdate, SwapError> {
        // Ordering: Acquire pairs with the Release in `SwapLock::drop`, so each swapper sees the
        // swapper state the previous one left.
        if self.swapper.lock.compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed).is_err() {
            return Err(SwapError::Busy);
        }
        let _unlock = SwapLock(self);
        self.swap_locked(read)
    }

    fn swap_locked(&self, read: u32) -> Result<ReaderUpdate, SwapError> {
        // Ordering: Relaxed for swapper state (protected by the lock).
        let reader = self.swapper.reader.load(Ordering::Relaxed);
        // The tail first: if the writer has left the reader page, the Acquire here (pairing with
        // the Release store of `tail` in `enter_page`) makes that page's final commit, end_seq and
        // entries visible, and the first_seq of every page entered before the current tail. Read
        // the other way round, the writer could commit one more event on the reader page and
        // leave it between the two loads, and the swap would hand it back unread.
        let writer_on_reader = self.writer_shared.tail.load(Ordering::Acquire) == reader;
        let page = self.geometry.subbuf_offset(reader);
        // Ordering: acquire load of commit, pairing with the writer's Release store, for the
        // case where the writer is still on the reader page.
        let commit = (self.data.load_u64_acquire(page + SUBBUF_COMMIT_OFFSET) & COMMIT_LEN_MASK) as u32;
        // Ordering: Relaxed; swapper state, made visible by the swap lock's Acquire (in
        // `swap_reader_page`), pairing with the previous swapper's Release (`SwapLock::drop`).
        let consumed = self.swapper.reader_read.load(Ordering::Relaxed);
        let size = self.geometry.subbuf_size() as usize;
        let bytes = ShmPage::new(&self.data, page, size)
            .ok_or(SwapError::MalformedPage { read, error: DecodeError::ShortPage(size) })?;
        check_read(&bytes, commit, consumed, read)?;
        // Ordering: Relaxed; swapper state, handed to the next swapper by the swap lock (Release
        // in `SwapLock::drop`, Acquire in `swap_reader_page`).
        self.swapper.reader_read.store(read, Ordering::Relaxed);
        // Ordering: Relaxed; the value is all a reader takes from it (`MetaPage::reader`, a
        // consumer resuming where this one stopped), and it publishes nothing else. When the
        // page is swapped below, `take_head` stores 0 here before its Release store of
        // `reader.id`, which readers acquire first, so they never pair a new id with this value.
        self.meta.store_u32(off::READER_READ, read, Ordering::Relaxed);
        if read < commit {
            return Ok(ReaderUpdate { status: SwapStatus::Unread, id: reader, read, lost_events: 0 });
        }
        if writer_on_reader {
            return Ok(ReaderUpdate { status: SwapStatus::WriterOnPage, id: reader, read, lost_events: 0 });
        }
        self.take_head(reader)
    }

    /// Splices the (consumed) reader page into the ring in place of the head page and makes the
    /// head page the reader page.
    fn take_head(&self, reader: u32) -> Result<ReaderUpdate, SwapError> {
        let slots = self.geometry.nr_slots();
        // Ordering: Relaxed; swapper-owned state, ordered between swappers by the lock.
        let mut prev = self.swapper.hint.load(Ordering::Relaxed);
        let mut prev_slot = self.swapper.hint_slot.load(Ordering::Relaxed);
        let reader_link = &self.links[reader as usize];
        // What the consumer is giving back, read now: once the CAS below splices the page into the
        // ring the writer may enter it at once (in drop mode it is often waiting right there) and
        // overwrite its sequence range and entry count with the next lap's. Until then the page
        // is the swapper's alone. Ordering: Relaxed; the writer wrote these when it left the page,
        // before the Release store of `tail` that `swap_locked` acquired.
        let given_back = GivenBack {
            end_seq: reader_link.end_seq.load(Ordering::Relaxed),
            entries: reader_link.entries.load(Ordering::Relaxed),
        };
        // Post-mortem readers (see the module docs): where consumption stands if we die from here
        // on. Ordering: Relaxed; it is read only from a dead producer's memory, which holds every
        // store made before the instruction the process died at: the signal fence keeps the
        // compiler from moving it after the odd `reader_seq` below.
        self.meta.store_u64(off::EXT_SWAP_CONSUMED_SEQ, given_back.end_seq, Ordering::Relaxed);
        signal_fence();
        crash_point!("consumed-seq published");
        // Non-consuming readers of the reader page: it may go back to the writer from the CAS on,
        // so `reader_seq` turns odd before it (the Release fence orders the odd value before the
        // CAS, and so before any write the writer makes to the page after following it) and even
        // again once the new reader page is published (`end_reader_update`).
        // Ordering: Relaxed for the swapper's own copy (under the lock).
        let reader_seq = self.swapper.reader_seq.load(Ordering::Relaxed);
        self.meta.store_u32(off::EXT_READER_SEQ, reader_seq.wrapping_add(1), Ordering::Relaxed);
        fence(Ordering::Release);
        crash_point!("reader_seq odd");
        for _ in 0..max_steps(slots) {
            let link = &self.links[prev as usize];
            let next = link.load_next();
            if next.is_update() {
                self.help_push(link, next);
                continue;
            }
            if !next.is_head() {
                prev = next.id();
                prev_slot = (prev_slot + 1) % slots;
                continue;
            }
            let head = next.id();
            let after_head = self.links[head as usize].load_next().id();
            // The reader page will sit where the head is and point at the new head. Nobody else
            // looks at the reader page's link until the CAS below publishes it.
            let reader_next = reader_link.load_next().replaced(after_head, true);
            // Ordering: Relaxed; published by the AcqRel CAS below.
            reader_link.store_next(reader_next, Ordering::Relaxed);
            if link.cas_next(next, next.replaced(reader, false)).is_err() {
                // The writer pushed the head (overwrite) or is pushing it: look again from here.
                spin_hint();
                continue;
            }
            crash_point!("head taken");
            let slot = (prev_slot + 1) % slots;
            let update = self.finish_swap(reader, given_back, head, slot);
            self.end_reader_update(reader_seq);
            return Ok(update);
        }
        self.end_reader_update(reader_seq);
        Err(SwapError::Busy)
    }

    /// Makes `reader_seq` even again after a swap attempt that made it odd.
    fn end_reader_update(&self, before: u32) {
        let after = before.wrapping_add(2);
        // Ordering: Release; a reader that sees the even value sees the reader fields published
        // before it. Relaxed for the swapper's own copy (under the lock).
        self.meta.store_u32(off::EXT_READER_SEQ, after, Ordering::Release);
        self.swapper.reader_seq.store(after, Ordering::Relaxed);
    }

    /// Bookkeeping after `head` (in `slot`) became the reader page and `old`, whose content is
    /// summed up in `given_back`, took its slot.
    fn finish_swap(&self, old: u32, given_back: GivenBack, head: u32, slot: u32) -> ReaderUpdate {
        self.advance_head_slot();
        crash_point!("head slot moved");
        // The slot now names the old reader page. Ordering: Relaxed; non-consuming readers do not
        // trust this id alone: a copy of the slot is validated by its `cnt` (the writer bumps it
        // before rewriting whatever page is there) and a whole snapshot by `reader_seq`, odd
        // since before the CAS and made even (Release) after this store.
        self.meta.store_u32(off::data_index_id(slot), old, Ordering::Relaxed);
        crash_point!("slot renamed");
        // Ordering: Relaxed for swapper-owned state (under the lock).
        self.swapper.hint.store(old, Ordering::Relaxed);
        self.swapper.hint_slot.store(slot, Ordering::Relaxed);
        // Ordering: Release, for `full_pages` on another thread (Acquire), which then also sees
        // the meta fields stored before this.
        self.swapper.reader.store(head, Ordering::Release);
        // Sequence numbers: the old reader page ended at end_seq, the new one starts at first_seq;
        // everything in between was overwritten or dropped. The new reader page is out of the
        // ring, so the writer cannot re-enter it and its first_seq stays put. Ordering: Relaxed;
        // made visible by the Acquire of `tail` (a page entered before the tail we saw) or of the
        // link load that found the head (a head reached by a push).
        let first_seq = self.links[head as usize].first_seq.load(Ordering::Relaxed);
        debug_assert!(first_seq >= given_back.end_seq, "new reader page {head} starts before page {old} ended");
        let lost = first_seq.saturating_sub(given_back.end_seq);
        let read = self.swapper.read.load(Ordering::Relaxed) + u64::from(given_back.entries);
        self.swapper.read.store(read, Ordering::Relaxed);
        let swaps = self.swapper.swaps.load(Ordering::Relaxed) + 1;
        self.swapper.swaps.store(swaps, Ordering::Relaxed);
        self.meta.store_u64(off::READER_LOST_EVENTS, lost, Ordering::Relaxed);
        // Ordering: Relaxed; swapper state, handed on by the swap lock as in `swap_locked`.
        self.swapper.reader_read.store(0, Ordering::Relaxed);
        self.meta.store_u32(off::READER_READ, 0, Ordering::Relaxed);
        self.meta.store_u64(off::READ, read, Ordering::Relaxed);
        // Ordering: Release; a consumer acquiring the reader id or the swap count sees the fields
        // above.
        self.meta.store_u32(off::READER_ID, head, Ordering::Release);
        crash_point!("reader published");
        self.meta.store_u64(off::EXT_SWAPS, swaps, Ordering::Release);
        ReaderUpdate { status: SwapStatus::Swapped, id: head, read: 0, lost_events: lost }
    }

    /// Finishes a head push the writer started on `link` (seen carrying UPDATE as `claimed`):
    /// makes the page after the pushed one the head, then clears UPDATE. Both steps are
    /// compare-and-swaps the writer also attempts; whoever is second fails harmlessly.
    fn help_push(&self, link: &SubBufLink, claimed: LinkWord) {
        let victim = claimed.id();
        // Ordering: Acquire pairs with the writer's Release store of `push_next`. If the value
        // read belongs to a later push, the writer's clearing of `claimed` happened before it and
        // the re-check below sees the link changed; otherwise the value is this push's.
        let victim_next = LinkWord::from_raw(self.writer_shared.push_next.load(Ordering::Acquire));
        if link.load_next() != claimed {
            return;
        }
        let _ = self.links[victim as usize].cas_next(victim_next, victim_next.as_head());
        let _ = link.cas_next(claimed, claimed.as_plain());
    }
}

/// What a reader page held when the consumer gave it back.
#[derive(Debug, Clone, Copy)]
struct GivenBack {
    /// Sequence number just past its last event.
    end_seq: u64,
    /// Events on it (now consumed).
    entries: u32,
}

/// Releases the swap lock when dropped.
struct SwapLock<'b, 'a, C: Clock, D: Doorbell>(&'b CpuBuffer<'a, C, D>);

impl<C: Clock, D: Doorbell> Drop for SwapLock<'_, '_, C, D> {
    fn drop(&mut self) {
        // Ordering: Release pairs with the Acquire in `swap_reader_page`.
        self.0.swapper.lock.store(false, Ordering::Release);
    }
}

/// Stopping a swap at one of its steps, as a SIGKILL would, for the crash-consistency tests.
#[cfg(all(test, feature = "std", not(loom)))]
pub(crate) mod crash {
    use core::cell::Cell;

    /// Every step [`crash_point!`] marks, in the order a swap passes them.
    pub(crate) const STEPS: [&str; 6] = [
        "consumed-seq published",
        "reader_seq odd",
        "head taken",
        "head slot moved",
        "slot renamed",
        "reader published",
    ];

    std::thread_local! {
        static STOP_AT: Cell<Option<&'static str>> = const { Cell::new(None) };
    }

    /// What a stopped swap unwinds with.
    struct Killed;

    pub(crate) fn point(step: &'static str) {
        if STOP_AT.get() == Some(step) {
            STOP_AT.set(None);
            std::panic::resume_unwind(std::boxed::Box::new(Killed));
        }
    }

    /// Runs `swap`, stopping it at `step`; true if it got there (and stopped).
    pub(crate) fn stopped_at(step: &'static str, swap: impl FnOnce()) -> bool {
        STOP_AT.set(Some(step));
        let stopped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(swap)).is_err();
        STOP_AT.set(None);
        stopped
    }
}

#[cfg(all(test, feature = "std", not(loom)))]
mod tests {
    use super::*;
    use crate::test_support::{Drained, buffer, drain_from, seq_payload};
    use crate::{Cursor, EventIter, Mode};
    use std::vec::Vec;

    fn commit_of(buf: &CpuBuffer<'_, crate::ManualClock>, id: u32) -> u32 {
        (buf.view().page(id).unwrap().commit() & COMMIT_LEN_MASK) as u32
    }

    fn seqs_on(buf: &CpuBuffer<'_, crate::ManualClock>, id: u32, from: u32) -> Vec<u32> {
        let page = buf.view().page(id).unwrap();
        EventIter::starting_at(&page, from as usize)
            .unwrap()
            .map(|e| {
                let mut b = [0u8; 4];
                e.unwrap().payload.copy_to(&mut b);
                u32::from_ne_bytes(b)
            })
            .collect()
    }

    #[test]
    fn swapping_an_empty_buffer_hands_out_the_empty_writer_page() {
        let buf = buffer(64, 4, Mode::Overwrite);
        let first = buf.swap_reader_page(0).unwrap();
        assert_eq!(first, ReaderUpdate { status: SwapStatus::Swapped, id: 1, read: 0, lost_events: 0 });
        // The writer is still on page 1, which is now the reader page.
        let again = buf.swap_reader_page(0).unwrap();
        assert_eq!(again.status, SwapStatus::WriterOnPage);
        assert_eq!(buf.view().meta().reader().id, 1);
        assert_eq!(buf.stats().swaps, 1);
    }

    #[test]
    fn partial_reads_keep_the_page_and_overlong_reads_are_refused() {
        let buf = buffer(4096, 4, Mode::Overwrite);
        for seq in 0..3 {
            buf.write(&seq_payload(seq, 4)).unwrap();
        }
        let up = buf.swap_reader_page(0).unwrap();
        assert_eq!(up.status, SwapStatus::Swapped);
        let commit = commit_of(&buf, up.id);
        assert_eq!(commit, 36);
        let kept = buf.swap_reader_page(12).unwrap();
        assert_eq!((kept.status, kept.id, kept.read), (SwapStatus::Unread, up.id, 12));
        assert_eq!(buf.view().meta().reader().read, 12);
        assert_eq!(seqs_on(&buf, up.id, 12), [1, 2]);
        assert_eq!(buf.swap_reader_page(commit + 4), Err(SwapError::ReadPastCommit { read: commit + 4, commit }));
    }

    /// A `read` that is not a record boundary, or below what was given back before, is refused
    /// and changes nothing: the next consumer still starts at an event, and nothing consumed is
    /// handed out again.
    #[test]
    fn reads_inside_an_event_or_behind_the_last_one_are_refused() {
        let buf = buffer(4096, 4, Mode::Overwrite);
        for seq in 0..4 {
            buf.write(&seq_payload(seq, 4)).unwrap(); // 12 bytes each
        }
        let up = buf.swap_reader_page(0).unwrap();
        for read in [2u32, 4, 13, 35] {
            let next = read.next_multiple_of(12);
            assert_eq!(buf.swap_reader_page(read), Err(SwapError::NotEventBoundary { read, next }), "read {read}");
            assert_eq!(buf.view().meta().reader().read, 0, "a refused read is not published");
        }
        assert_eq!(buf.swap_reader_page(24).unwrap().read, 24);
        assert_eq!(buf.swap_reader_page(12), Err(SwapError::ReadBehind { read: 12, consumed: 24 }));
        assert_eq!(buf.swap_reader_page(26), Err(SwapError::NotEventBoundary { read: 26, next: 36 }));
        assert_eq!(buf.view().meta().reader().read, 24);
        assert_eq!(seqs_on(&buf, up.id, 24), [2, 3]);
        let again = buf.swap_reader_page(24).unwrap();
        assert_eq!((again.status, again.read), (SwapStatus::Unread, 24), "the same read again is fine");
        // The whole committed length is always a boundary.
        let all = buf.swap_reader_page(48).unwrap();
        assert_eq!((all.status, all.read), (SwapStatus::WriterOnPage, 48));
    }

    /// Bytes of the reader page scribbled over (by a host, under a hypervisor) make reads inside
    /// it refused, never a panic; giving back the whole committed length still skips the page.
    #[test]
    fn a_scribbled_reader_page_refuses_reads_inside_it_but_can_be_skipped() {
        let buf = buffer(4096, 4, Mode::Overwrite);
        for seq in 0..4 {
            buf.write(&seq_payload(seq, 4)).unwrap();
        }
        let up = buf.swap_reader_page(0).unwrap();
        let (_, data) = buf.regions();
        let first = buf.geometry().subbuf_offset(up.id) + crate::format::SUBBUF_HEADER_SIZE;
        // The first event now claims a 4000-byte payload, past the 48 bytes committed.
        data.store_u32(first, crate::format::header_word(0, 0), Ordering::Relaxed);
        data.store_u32(first + 4, 4004, Ordering::Relaxed);
        let refused = buf.swap_reader_page(12).unwrap_err();
        assert!(
            matches!(refused, SwapError::MalformedPage { read: 12, error: crate::DecodeError::Truncated(0) }),
            "{refused:?}"
        );
        assert_eq!(buf.view().meta().reader().read, 0, "a refused read is not published");
        let skipped = buf.swap_reader_page(48).unwrap();
        assert_eq!((skipped.status, skipped.read), (SwapStatus::WriterOnPage, 48));
    }

    #[test]
    fn writer_on_the_swapped_head_keeps_writing_into_the_reader_page() {
        let buf = buffer(64, 4, Mode::Overwrite);
        buf.write(&seq_payload(0, 0)).unwrap();
        let up = buf.swap_reader_page(0).unwrap();
        assert_eq!((up.status, up.id), (SwapStatus::Swapped, 1));
        assert_eq!(commit_of(&buf, 1), 8);
        // The writer is on the reader page: the consumer sees commit grow.
        buf.write(&seq_payload(1, 0)).unwrap();
        assert_eq!(commit_of(&buf, 1), 16);
        assert_eq!(buf.swap_reader_page(8).unwrap().status, SwapStatus::Unread);
        assert_eq!(seqs_on(&buf, 1, 8), [1]);
        assert_eq!(buf.swap_reader_page(16).unwrap().status, SwapStatus::WriterOnPage);
        // Fill the reader page; the writer then moves to the new head (page 2) without a push.
        for seq in 2..7 {
            buf.write(&seq_payload(seq, 0)).unwrap();
        }
        assert_eq!(buf.stats().pages_lost, 0);
        assert_eq!(seqs_on(&buf, 1, 16), [2, 3, 4, 5]);
        let next = buf.swap_reader_page(commit_of(&buf, 1)).unwrap();
        assert_eq!((next.status, next.id, next.lost_events), (SwapStatus::Swapped, 2, 0));
        assert_eq!(seqs_on(&buf, 2, 0), [6]);
        assert_eq!(buf.stats().read, 6);
    }

    #[test]
    fn swap_takes_the_head_not_the_writer_page() {
        let buf = buffer(64, 5, Mode::Drop); // 4 ring pages of 2 events
        for seq in 0..5 {
            buf.write(&seq_payload(seq, 12)).unwrap();
        }
        let up = buf.swap_reader_page(0).unwrap();
        assert_eq!(up.id, 1);
        assert_eq!(seqs_on(&buf, 1, 0), [0, 1]);
        // The consumed page 0 went into slot 0; data_index says so and its cnt moved.
        let meta = buf.view().meta();
        assert_eq!(meta.slot_id(0), Some(0));
        assert_eq!(meta.head_slot(), 1);
        let up = buf.swap_reader_page(commit_of(&buf, 1)).unwrap();
        assert_eq!(up.id, 2);
        assert_eq!(seqs_on(&buf, 2, 0), [2, 3]);
        assert_eq!(buf.stats().read, 2);
    }

    #[test]
    fn lost_events_equal_the_gaps_in_overwrite_mode() {
        let buf = buffer(64, 4, Mode::Overwrite);
        let mut cursor = Cursor::default();
        let mut got = Drained::default();
        let mut seq = 0;
        for round in 0..50 {
            for _ in 0..(round % 9) {
                buf.write(&seq_payload(seq, 12)).unwrap();
                seq += 1;
            }
            drain_from(&buf, &mut cursor, &mut got);
        }
        let seqs = got.seqs();
        let mut expected_next = 0;
        let mut lost = got.lost.iter().peekable();
        for (i, &s) in seqs.iter().enumerate() {
            let gap = lost.next_if(|(at, _)| *at == i).map_or(0, |(_, n)| *n);
            assert_eq!(u64::from(s - expected_next), gap, "gap before event {i} (seq {s})");
            expected_next = s + 1;
        }
        let s = buf.stats();
        assert_eq!(s.overrun, got.total_lost());
        assert_eq!(s.entries, u64::from(seq));
        assert_eq!(u64::from(seq), seqs.len() as u64 + s.overrun);
    }

    #[test]
    fn a_second_swapper_is_told_busy() {
        let buf = buffer(64, 4, Mode::Overwrite);
        buf.swapper.lock.store(true, Ordering::Relaxed);
        assert_eq!(buf.swap_reader_page(0), Err(SwapError::Busy));
        buf.swapper.lock.store(false, Ordering::Relaxed);
        assert!(buf.swap_reader_page(0).is_ok());
    }

    #[test]
    fn a_swapper_finishes_a_push_the_writer_left_half_done() {
        let buf = buffer(64, 4, Mode::Overwrite);
        for seq in 0..6 {
            buf.write(&seq_payload(seq, 12)).unwrap(); // fills all 3 ring pages
        }
        // Play the writer's first push steps by hand: claim the head (page 1) from page 3.
        let tail = &buf.links[3];
        let next = tail.load_next();
        assert!(next.is_head() && next.id() == 1);
        let victim_next = buf.links[1].load_next();
        buf.writer_shared.push_next.store(victim_next.raw(), Ordering::Release);
        tail.cas_next(next, next.as_update()).unwrap();
        // The writer is "preempted" here. A swap must still succeed, taking page 2 (the head the
        // push makes) and repairing both links.
        let up = buf.swap_reader_page(0).unwrap();
        assert_eq!((up.status, up.id), (SwapStatus::Swapped, 2));
        assert!(!buf.links[3].load_next().is_update());
        assert_eq!(buf.links[1].load_next().id(), 0, "page 0 was spliced in after page 1");
        assert!(buf.links[0].load_next().is_head());
        assert_eq!(up.lost_events, 2, "the claimed page's events count as lost");
    }

    /// A producer killed at any step of a swap (stopped there as by SIGKILL, the writer going on
    /// for a few more events before the process dies) leaves its memory readable post-mortem
    /// with nothing unread reported lost: the page the swap was taking is found even when no
    /// meta field but the swap's own names it yet, and the page it was giving back is never
    /// decoded from a stale offset. In drop mode every committed unread event is recovered; in
    /// overwrite mode the recovered events run without a gap up to the last one written, and
    /// the events missing before them were overwritten.
    #[test]
    fn a_swap_killed_at_any_step_leaves_every_unread_event_recoverable() {
        // Events written before the swap (after the consumer caught up): on the reader page, a
        // few ring pages, a full ring, more than the ring; and after it. Under Miri, which checks
        // the memory accesses rather than the protocol, one case per step.
        let (modes, unread, after): (&[Mode], &[u32], &[u32]) = if cfg!(miri) {
            (&[Mode::Overwrite], &[12], &[9])
        } else {
            (&[Mode::Drop, Mode::Overwrite], &[3, 5, 8, 12], &[0, 1, 3, 9])
        };
        for &mode in modes {
            for &unread in unread {
                for step in crash::STEPS {
                    for &after in after {
                        killed_swap(mode, unread, step, after);
                    }
                }
            }
        }
    }

    /// One [`a_swap_killed_at_any_step_leaves_every_unread_event_recoverable`] case.
    fn killed_swap(mode: Mode, unread: u32, step: &'static str, after: u32) {
        let case = std::format!("{mode:?}, {unread} unread, killed at '{step}', then {after} writes");
        let buf = buffer(64, 5, mode); // 4 ring pages of 2 events
        let writer = buf.writer().unwrap();
        let mut committed = Vec::new();
        let mut write = |seq: u32| {
            if writer.write(&seq_payload(seq, 12)).is_ok() {
                committed.push(seq);
            }
        };
        for seq in 0..3 {
            write(seq);
        }
        let mut cursor = Cursor::default();
        drain_from(&buf, &mut cursor, &mut Drained::default());
        for seq in 3..3 + unread {
            write(seq);
        }
        // The consumer reads its reader page to the end, then asks for the next one.
        let read_to = commit_of(&buf, cursor.page);
        let consumed = seqs_on(&buf, cursor.page, 0).last().map_or(0, |&last| last + 1);
        let stopped = crash::stopped_at(step, || {
            let _ = buf.swap_reader_page(read_to);
        });
        for seq in 3 + unread..3 + unread + after {
            write(seq);
        }
        let view = buf.view();
        let start = if view.meta().reader().id == cursor.page { read_to } else { 0 };
        let snap = view.snapshot_quiescent(start).unwrap();
        let got: Vec<u32> = snap.events().map(|e| u32::from_ne_bytes(e.payload[..4].try_into().unwrap())).collect();
        // What memory holds that the consumer had not read, page by page.
        let mut intact: Vec<u32> = (0..5).flat_map(|id| seqs_on(&buf, id, 0)).filter(|&seq| seq >= consumed).collect();
        intact.sort_unstable();
        assert_eq!(got, intact, "{case} (stopped: {stopped}): not what memory holds unread");
        let newest = committed.last().copied();
        assert_eq!(got.last().copied(), newest.filter(|&n| n >= consumed), "{case}: the newest event");
        if mode == Mode::Drop {
            let unread: Vec<u32> = committed.iter().copied().filter(|&seq| seq >= consumed).collect();
            assert_eq!(got, unread, "{case}: drop mode loses nothing committed");
        }
    }

    /// The writer keeps its own count of each slot's `data_index[].cnt` instead of reading it
    /// back from the meta area: a host that scribbles odd values there cannot make every slot
    /// look forever mid-reset to snapshot readers.
    #[test]
    fn scribbled_slot_counters_do_not_stick() {
        let buf = buffer(64, 4, Mode::Overwrite);
        for slot in 0..3 {
            buf.meta.store_u32(crate::meta::off::data_index_cnt(slot), 0x7fff_ffff, Ordering::Relaxed);
        }
        let writer = buf.writer().unwrap();
        for seq in 0..12 {
            writer.write(&seq_payload(seq, 12)).unwrap();
        }
        let snap = buf.view().snapshot().unwrap();
        assert_eq!(snap.discarded, 0, "every slot validates again once the writer moved onto it");
        let seqs: Vec<u32> = snap.events().map(|e| u32::from_ne_bytes(e.payload[..4].try_into().unwrap())).collect();
        assert_eq!(seqs, [6, 7, 8, 9, 10, 11]);
    }

    /// In a hypervisor the host can write the meta area at any time. Scribbling over every word of
    /// it between writes and swaps must not panic the writer or the swapper, nor change what the
    /// consumer is handed or the accounting: they keep their own state privately.
    #[test]
    fn a_scribbled_meta_area_cannot_upset_the_writer_or_the_swapper() {
        let buf = buffer(64, 4, Mode::Overwrite);
        let scribble = |round: u32| {
            let len = buf.meta.len();
            for (i, at) in (crate::meta::META_BASE_LEN..len).step_by(4).enumerate() {
                let junk = [u32::MAX, 0x8000_0001, round.wrapping_mul(2_654_435_761), 7][i % 4];
                buf.meta.store_u32(at, junk, Ordering::Relaxed);
            }
        };
        let mut cursor = Cursor::default();
        let mut got = Drained::default();
        let mut seq = 0;
        for round in 0..40 {
            for _ in 0..(round % 7) {
                scribble(round);
                buf.write(&seq_payload(seq, 12)).unwrap();
                seq += 1;
            }
            scribble(round);
            drain_from(&buf, &mut cursor, &mut got);
        }
        let seqs = got.seqs();
        assert_eq!(*seqs.last().unwrap(), seq - 1);
        assert!(seqs.windows(2).all(|w| w[1] > w[0]));
        let s = buf.stats();
        assert_eq!(s.overrun, got.total_lost());
        assert_eq!(u64::from(seq), seqs.len() as u64 + s.overrun);
        assert!(buf.full_pages() <= buf.geometry().nr_slots());
    }

    #[test]
    fn swap_statuses_are_numbered_as_the_abi_says() {
        let all = [SwapStatus::Swapped, SwapStatus::Unread, SwapStatus::WriterOnPage];
        assert_eq!(all.map(SwapStatus::to_wire), [0, 1, 2]);
        assert_eq!([0, 1, 2, 3].map(SwapStatus::from_wire), [Some(all[0]), Some(all[1]), Some(all[2]), None]);
    }
}
