//! A consuming reader: the loop a consumer runs against any swap transport.
//!
//! The consumer owns a position (reader page id and bytes read). Each round it asks the producer
//! to swap, passing how much it has read (in-process: [`CpuBuffer::swap_reader_page`]; across
//! processes: a GET_READER_PAGE request), then decodes the reader page from that position up to
//! `commit`, zero-copy from the shared mapping ([`crate::reader_page`], the step ring-mmap's
//! `Consumer` takes too).
//!
//! [`CpuBuffer::swap_reader_page`]: crate::CpuBuffer::swap_reader_page

use crate::decode::{DecodeError, Event, ShmBytes};
use crate::error::SwapError;
use crate::geometry::Geometry;
use crate::lost::Lost;
use crate::reader_page::{MalformedPage, PageReader};
use crate::swap::{ReaderUpdate, SwapStatus};
use crate::view::SharedView;

/// What a consumer is handed, in order: every consuming loop's sink takes these, in process
/// ([`Cursor::drain`]) and across processes (ring-mmap's `Consumer`).
#[derive(Debug)]
pub enum Record<'r> {
    /// Events were lost (overwritten or dropped) before the next event.
    Lost(Lost),
    /// An event, read in place from the shared mapping.
    Event(Event<ShmBytes<'r>>),
}

/// Why a consuming read stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ConsumeError {
    /// The swap request failed.
    #[error(transparent)]
    Swap(#[from] SwapError),
    /// The producer named a reader page that does not exist.
    #[error("producer named reader page {0}, which does not exist")]
    BadReaderPage(u32),
    /// A page did not decode; the rest of it was skipped.
    #[error("reader page {id} is malformed: {error}")]
    Malformed {
        /// The page.
        id: u32,
        /// What was wrong.
        error: DecodeError,
    },
}

/// When a drain stops: the bound [`Cursor::drain`] and every other consuming loop (ring-mmap's
/// `Consumer::drain`) share, so that one busy CPU cannot keep a reader of several from the others.
///
/// A drain stops once the producer has nothing new (a read that neither swapped nor moved the
/// position), after a ring's worth of swaps, or after two reads in a row without a swap (the
/// writer kept committing on the reader page meanwhile, as it may for ever). With the writer
/// stopped, a drain under this bound still reads everything.
#[derive(Debug, Clone, Copy)]
pub struct DrainBound {
    max_swaps: u32,
    swaps: u32,
    unswapped: u32,
}

impl DrainBound {
    /// The bound of one drain of a buffer of geometry `geometry`.
    pub fn new(geometry: Geometry) -> Self {
        Self { max_swaps: geometry.nr_slots(), swaps: 0, unswapped: 0 }
    }

    /// Counts one read of a reader page: `swapped` if the request handed over a new reader page,
    /// `advanced` if the read moved the consumer's position. True if the drain stops here.
    pub fn stop_after(&mut self, swapped: bool, advanced: bool) -> bool {
        if swapped {
            (self.swaps, self.unswapped) = (self.swaps + 1, 0);
        } else {
            self.unswapped += 1;
        }
        (!swapped && !advanced) || self.unswapped == 2 || self.swaps == self.max_swaps
    }
}

/// A consumer's position on one CPU's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Cursor {
    /// Reader page id (as of the last swap answer).
    pub page: u32,
    /// Bytes of its data consumed.
    pub read: u32,
}

impl Cursor {
    /// Reads what is available now: swaps as long as the producer has pages (at most a ring's
    /// worth), hands each lost count and event to `sink`, and returns how many events were handed
    /// over. `swap` performs one swap request with the given `read`.
    ///
    /// Bounded ([`DrainBound`]): call it again to go on; with the writer stopped, one call reads
    /// everything.
    ///
    /// Events are read in place, so the sink sees each only during its call: once the drain
    /// moves on, the page may go back to the writer. Keeping an event's payload handle past the
    /// call does not compile (copy the bytes out instead):
    ///
    /// ```compile_fail
    /// use ring_core::{Config, CpuBuffer, Cursor, ManualClock, Record, ShmBytes};
    /// let buffer = CpuBuffer::with_heap(Config::default(), ManualClock::new(0)).unwrap();
    /// buffer.writer().unwrap().write(b"event").unwrap();
    /// let view = buffer.view();
    /// let mut kept: Vec<ShmBytes<'_>> = Vec::new();
    /// Cursor::default().drain(&view, |read| buffer.swap_reader_page(read), |record| {
    ///     if let Record::Event(e) = record {
    ///         kept.push(e.payload); // does not live long enough
    ///     }
    /// });
    /// ```
    pub fn drain(
        &mut self,
        view: &SharedView<'_>,
        mut swap: impl FnMut(u32) -> Result<ReaderUpdate, SwapError>,
        mut sink: impl FnMut(Record<'_>),
    ) -> Result<u64, ConsumeError> {
        let mut bound = DrainBound::new(view.geometry());
        let mut total = 0;
        loop {
            let update = swap(self.read)?;
            let lost = update.lost();
            if lost != Lost::None {
                sink(Record::Lost(lost));
            }
            self.page = update.id;
            self.read = update.read;
            let page = view.page(update.id).ok_or(ConsumeError::BadReaderPage(update.id))?;
            let read =
                PageReader::start(&page, self.read).and_then(|reader| reader.hand_over(|e| sink(Record::Event(e))));
            let progress = match read {
                Ok(progress) => progress,
                Err(MalformedPage { error, skip_to }) => {
                    self.read = skip_to;
                    return Err(ConsumeError::Malformed { id: update.id, error });
                }
            };
            let advanced = progress.read != self.read;
            self.read = progress.read;
            total += progress.events;
            if bound.stop_after(update.status == SwapStatus::Swapped, advanced) {
                return Ok(total);
            }
        }
    }
}

#[cfg(all(test, feature = "std", not(loom)))]
mod tests {
    use super::*;
    use crate::Mode;
    use crate::test_support::{buffer, seq_payload};

    /// Drains `buf` with a producer that runs `before_each` ahead of every swap request, and
    /// returns (events handed over, swap requests made, swaps done).
    fn drain_racing(buf: &crate::CpuBuffer<'_, crate::ManualClock>, before_each: impl Fn()) -> (u64, u32, u32) {
        let view = buf.view();
        let (mut requests, mut swaps, mut seen) = (0, 0, 0);
        let got = Cursor::default()
            .drain(
                &view,
                |read| {
                    requests += 1;
                    before_each();
                    let update = buf.swap_reader_page(read)?;
                    swaps += u32::from(update.status == SwapStatus::Swapped);
                    Ok(update)
                },
                |c| seen += u64::from(matches!(c, Record::Event(_))),
            )
            .unwrap();
        assert_eq!(got, seen);
        (got, requests, swaps)
    }

    #[test]
    fn a_page_whose_header_cannot_be_decoded_is_skipped_not_stuck_on() {
        let buf = buffer(64, 6, Mode::Overwrite); // two 20-byte events per page
        for seq in 0..6 {
            buf.write(&seq_payload(seq, 12)).unwrap();
        }
        // The oldest page (id 1) claims more data than a page holds.
        let (_, data) = buf.regions();
        let geometry = buf.geometry();
        data.store_u64(
            geometry.subbuf_offset(1) + crate::format::SUBBUF_COMMIT_OFFSET,
            4096,
            crate::sync::Ordering::Relaxed,
        );
        let view = buf.view();
        let mut cursor = Cursor::default();
        let mut seqs = std::vec::Vec::new();
        let mut drain = |cursor: &mut Cursor| {
            cursor.drain(
                &view,
                |read| buf.swap_reader_page(read),
                |c| {
                    if let Record::Event(e) = c {
                        seqs.push(e.payload.to_vec()[0]);
                    }
                },
            )
        };
        let err = drain(&mut cursor).unwrap_err();
        assert!(matches!(err, ConsumeError::Malformed { id: 1, error: DecodeError::CommitTooLarge { .. } }), "{err:?}");
        drain(&mut cursor).unwrap();
        assert_eq!(seqs, [2, 3, 4, 5], "the pages after the bad one");
    }

    #[test]
    fn drain_returns_while_the_writer_keeps_committing_on_the_reader_page() {
        let buf = buffer(4096, 4, Mode::Overwrite);
        let written = core::cell::Cell::new(0u32);
        // One more event before every request: the reader page never stops growing.
        let (got, requests, swaps) = drain_racing(&buf, || {
            buf.write(&seq_payload(written.get(), 4)).unwrap();
            written.set(written.get() + 1);
        });
        assert_eq!((requests, swaps), (3, 1), "a swap onto the live page, then two reads of it");
        assert_eq!(got, u64::from(written.get()), "each event was written before a request");
    }

    #[test]
    fn drain_returns_after_a_ring_s_worth_of_swaps() {
        let buf = buffer(64, 6, Mode::Overwrite); // 5 ring slots, two 20-byte events per page
        let written = core::cell::Cell::new(0u32);
        // A page's worth before every request: there is always a finished page to swap in.
        let (got, _, swaps) = drain_racing(&buf, || {
            for _ in 0..2 {
                buf.write(&seq_payload(written.get(), 12)).unwrap();
                written.set(written.get() + 1);
            }
        });
        assert_eq!(swaps, buf.geometry().nr_slots(), "a ring's worth of swaps");
        assert!(got >= 2 * u64::from(swaps) - 2, "each swapped page held events: {got}");
    }
}
