//! Reading one reader page from where a consumer stands: the step every consuming loop takes
//! after a swap answer, in process ([`crate::Cursor::drain`]) and across processes (ring-mmap's
//! `Consumer`, from the mapping or from a copy of the page).
//!
//! The page is decoded from the data offset the answer says was read up to its `commit`, each
//! event is handed over, and the step says how far reading got: the `read` the next swap request
//! gives back. A page that does not decode is not stuck on: the error says how far to give it
//! back as read so that the producer can move on.

use crate::decode::{DecodeError, Event, EventIter, PageSource};

/// A reader page being read from where a consumer stands.
#[derive(Debug)]
pub struct PageReader<'p, P: PageSource + ?Sized> {
    events: EventIter<'p, P>,
}

/// How far reading a reader page got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageProgress {
    /// Events handed over.
    pub events: u64,
    /// Data offset just past them: the page's committed length as it was when reading started.
    pub read: u32,
}

/// A reader page that stopped decoding, and how far to give it back as read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MalformedPage {
    /// What was wrong.
    pub error: DecodeError,
    /// The `read` to give back: the commit the page's header claims if the header does not
    /// decode at all (or every later read would stop on the page again), else the end of its
    /// committed data (its bad remainder is skipped, with the events it may hold).
    pub skip_to: u32,
}

impl<'p, P: PageSource + ?Sized> PageReader<'p, P> {
    /// Starts reading `page` at data offset `start`, the `read` of the swap answer that named it
    /// (the time records before `start` still count).
    pub fn start(page: &'p P, start: u32) -> Result<Self, MalformedPage> {
        match EventIter::starting_at(page, start as usize) {
            Ok(events) => Ok(Self { events }),
            Err(error) => Err(MalformedPage { error, skip_to: page.committed_len() }),
        }
    }

    /// The page's committed data length, read when reading started: where reading ends.
    pub fn data_end(&self) -> usize {
        self.events.data_end()
    }

    /// Hands every event from the start offset to the end of the committed data to `each`, in
    /// order. A malformed record ends it with the error, after the events before it.
    pub fn hand_over(mut self, each: impl FnMut(Event<P::Payload<'p>>)) -> Result<PageProgress, MalformedPage> {
        match self.events.drain_events(each) {
            Ok(events) => Ok(PageProgress { events, read: self.events.position() as u32 }),
            Err(error) => Err(MalformedPage { error, skip_to: self.events.data_end() as u32 }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{TYPE_LEN_PADDING, header_word};
    use crate::test_support::subbuf;
    use std::vec::Vec;

    #[test]
    fn reads_from_the_start_offset_to_the_commit() {
        let words = [header_word(1, 0), 1, header_word(1, 0), 2, header_word(TYPE_LEN_PADDING, 0), 0];
        let p = subbuf(0, 24, &words, 64);
        let mut seen = Vec::new();
        let reader = PageReader::start(p.as_slice(), 8).unwrap();
        assert_eq!(reader.data_end(), 24);
        let progress = reader.hand_over(|e| seen.push(e.offset)).unwrap();
        assert_eq!((seen, progress), (std::vec![8], PageProgress { events: 1, read: 24 }));
    }

    #[test]
    fn a_malformed_page_is_given_back_past_what_does_not_decode() {
        // A header claiming more than the page holds: back to the commit it claims.
        let p = subbuf(0, 4096, &[], 64);
        let err = PageReader::start(p.as_slice(), 0).unwrap_err();
        assert!(matches!(err, MalformedPage { error: DecodeError::CommitTooLarge { .. }, skip_to: 4096 }), "{err:?}");
        // An event running past the commit: the events before it, then back to the commit.
        let p = subbuf(0, 12, &[header_word(1, 0), 1, header_word(2, 0), 2], 64);
        let mut seen = 0;
        let err = PageReader::start(p.as_slice(), 0).unwrap().hand_over(|_| seen += 1).unwrap_err();
        assert_eq!((seen, err), (1, MalformedPage { error: DecodeError::Truncated(8), skip_to: 12 }));
    }
}
