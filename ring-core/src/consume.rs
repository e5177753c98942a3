//! A consuming reader: the loop a consumer runs against any swap transport.
//!
//! The consumer owns a position (reader page id and bytes read). Each round it asks the producer
//! to swap, passing how much it has read (in-process: [`CpuBuffer::swap_reader_page`]; across
//! processes: a GET_READER_PAGE request), then decodes the reader page from that position up to
//! `commit`, zero-copy from the shared mapping.
//!
//! [`CpuBuffer::swap_reader_page`]: crate::CpuBuffer::swap_reader_page

use crate::decode::{DecodeError, Event, EventIter, ShmBytes};
use crate::error::SwapError;
use crate::swap::{ReaderUpdate, SwapStatus};
use crate::view::SharedView;

/// What a consumer is told, in order.
#[derive(Debug)]
pub enum Consumed<'r> {
    /// `n` events were lost (overwritten or dropped) before the next event.
    Lost(u64),
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

/// A consumer's position on one CPU's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Cursor {
    /// Reader page id (as of the last swap answer).
    pub page: u32,
    /// Bytes of its data consumed.
    pub read: u32,
}

impl Cursor {
    /// Reads everything available now: swaps as long as the producer has pages, hands each lost
    /// count and event to `sink`, and returns how many events were handed over. `swap` performs
    /// one swap request with the given `read`.
    pub fn drain<'r>(
        &mut self,
        view: &SharedView<'r>,
        mut swap: impl FnMut(u32) -> Result<ReaderUpdate, SwapError>,
        mut sink: impl FnMut(Consumed<'r>),
    ) -> Result<u64, ConsumeError> {
        let mut total = 0;
        loop {
            let update = swap(self.read)?;
            if update.status == SwapStatus::Swapped && update.lost_events > 0 {
                sink(Consumed::Lost(update.lost_events));
            }
            self.page = update.id;
            self.read = update.read;
            let page = view.page(update.id).ok_or(ConsumeError::BadReaderPage(update.id))?;
            let mut events = EventIter::starting_at(&page, self.read as usize)
                .map_err(|error| ConsumeError::Malformed { id: update.id, error })?;
            let mut got = 0;
            for item in &mut events {
                match item {
                    Ok(event) => {
                        got += 1;
                        sink(Consumed::Event(event));
                    }
                    Err(error) => {
                        // Skip the bad remainder so the producer can move on.
                        self.read = events.data_end() as u32;
                        return Err(ConsumeError::Malformed { id: update.id, error });
                    }
                }
            }
            let advanced = events.position() as u32 != self.read;
            self.read = events.position() as u32;
            total += got;
            if update.status != SwapStatus::Swapped && !advanced {
                return Ok(total);
            }
        }
    }
}
