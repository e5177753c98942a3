//! Building the sub-buffers a trace.dat file stores.
//!
//! A consumer reads a reader page in pieces (the writer may still be filling it) and may start
//! in the middle of one; trace.dat wants whole pages, each decodable on its own from its header
//! timestamp. So recorded events are laid out again into fresh pages in the Linux format: the
//! page timestamp is the first event's, each later event carries its delta (with a time extend
//! when it needs more than 27 bits), and losses reported before an event put the missed-events
//! flag, with the count stored after the data, on the page that starts with it — as the kernel
//! does for pages it hands to `splice`. Payload bytes are copied once, straight from the mapping.

use ring_core::format::{
    COMMIT_MISSED_EVENTS, DataLayout, SUBBUF_COMMIT_OFFSET, SUBBUF_HEADER_SIZE, SUBBUF_TIMESTAMP_OFFSET, TimeEncoding,
    TimeRecord, header_word, mark_missed_events, time_encoding,
};
use ring_mmap::Lost;

/// Why an event cannot be stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PageError {
    /// The payload does not fit in an empty page.
    #[error("a {len}-byte event does not fit in a {page_size}-byte page")]
    TooLarge {
        /// Payload bytes.
        len: usize,
        /// Page size.
        page_size: usize,
    },
}

/// Lays out events into pages of one CPU.
#[derive(Debug)]
pub struct PageBuilder {
    page: Vec<u8>,
    /// Data bytes used.
    len: usize,
    /// Time of the last event on the page.
    last_ts: u64,
    events: u64,
    /// Losses to report on the next page written.
    lost: Lost,
}

impl PageBuilder {
    /// A builder of `page_size`-byte pages.
    pub fn new(page_size: usize) -> Self {
        Self { page: vec![0; page_size], len: 0, last_ts: 0, events: 0, lost: Lost::None }
    }

    fn data_size(&self) -> usize {
        self.page.len() - SUBBUF_HEADER_SIZE
    }

    /// Notes events lost before the next event: the current page is finished (handed to `out`)
    /// so that the next one starts with the loss.
    pub fn lost<E>(&mut self, lost: Lost, out: &mut impl FnMut(&[u8]) -> Result<(), E>) -> Result<(), E> {
        if lost == Lost::None {
            return Ok(());
        }
        if self.events > 0 {
            self.flush(out)?;
        }
        self.lost = self.lost.then(lost);
        Ok(())
    }

    /// Stores `page`, a whole sub-buffer of this builder's size already in the Linux format with
    /// its timestamps in nanoseconds and its `commit` (no flags) covering its `events` events,
    /// after the events pushed so far, marked with `lost` (and any loss noted before it). Saves
    /// re-encoding a page read whole. Returns false, storing nothing, if the page has no room
    /// after its data for the loss count: push its events one by one then (the builder makes
    /// the room).
    pub fn put_page<E>(
        &mut self,
        page: &mut [u8],
        events: u64,
        lost: Lost,
        out: &mut impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<bool, E> {
        debug_assert_eq!(page.len(), self.page.len(), "pages of the builder's size");
        if self.events > 0 {
            self.flush(out)?;
        }
        let lost = self.lost.then(lost);
        let commit = page
            .get(SUBBUF_COMMIT_OFFSET..SUBBUF_HEADER_SIZE)
            .map_or(u64::MAX, |b| u64::from_ne_bytes(b.try_into().expect("8 bytes")));
        if matches!(lost, Lost::Count(_)) && commit.saturating_add(8) > self.data_size() as u64 {
            return Ok(false);
        }
        self.lost = Lost::None;
        match lost {
            Lost::Count(n) => {
                mark_missed_events(page, n);
            }
            Lost::Unknown => {
                let flagged = commit | COMMIT_MISSED_EVENTS;
                page[SUBBUF_COMMIT_OFFSET..SUBBUF_HEADER_SIZE].copy_from_slice(&flagged.to_ne_bytes());
            }
            Lost::None if events == 0 => return Ok(true),
            Lost::None => {}
        }
        out(page)?;
        Ok(true)
    }

    /// Adds an event stamped `ts` whose `len` payload bytes `fill` writes into the slice it is
    /// given; full pages go to `out`.
    pub fn push<E>(
        &mut self,
        ts: u64,
        len: usize,
        fill: impl FnOnce(&mut [u8]),
        out: &mut impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<Result<(), PageError>, E> {
        let too_large = PageError::TooLarge { len, page_size: self.page.len() };
        let Some(layout) = DataLayout::for_payload(len) else { return Ok(Err(too_large)) };
        // A stored loss count takes 8 bytes after the data.
        let reserve = if matches!(self.lost, Lost::Count(_)) { 8 } else { 0 };
        if layout.size as usize + reserve > self.data_size() {
            return Ok(Err(too_large));
        }
        let time = if self.events == 0 { TimeEncoding::Delta(0) } else { time_encoding(self.last_ts, ts) };
        let need = layout.size as usize + if matches!(time, TimeEncoding::Extend(_)) { 8 } else { 0 };
        let time = if matches!(time, TimeEncoding::NewPage) || self.len + need + reserve > self.data_size() {
            self.flush(out)?;
            TimeEncoding::Delta(0)
        } else {
            time
        };
        if self.events == 0 {
            self.page[SUBBUF_TIMESTAMP_OFFSET..SUBBUF_TIMESTAMP_OFFSET + 8].copy_from_slice(&ts.to_ne_bytes());
        }
        let delta = match time {
            TimeEncoding::Delta(d) => d,
            TimeEncoding::Extend(d) => {
                let [w0, w1] = TimeRecord::Extend(d).words();
                self.word(w0);
                self.word(w1);
                0
            }
            TimeEncoding::NewPage => unreachable!("a new page was started"),
        };
        self.word(header_word(layout.type_len, delta));
        if let Some(length) = layout.length_word() {
            self.word(length);
        }
        let at = SUBBUF_HEADER_SIZE + self.len;
        let stored = &mut self.page[at..at + layout.stored_len as usize];
        stored.fill(0);
        fill(&mut stored[..len]);
        self.len += layout.stored_len as usize;
        self.last_ts = ts;
        self.events += 1;
        Ok(Ok(()))
    }

    fn word(&mut self, w: u32) {
        let at = SUBBUF_HEADER_SIZE + self.len;
        self.page[at..at + 4].copy_from_slice(&w.to_ne_bytes());
        self.len += 4;
    }

    /// Hands the current page to `out` if it holds events or a loss, and starts a new one.
    pub fn flush<E>(&mut self, out: &mut impl FnMut(&[u8]) -> Result<(), E>) -> Result<(), E> {
        if self.events == 0 && self.lost == Lost::None {
            return Ok(());
        }
        self.page[SUBBUF_COMMIT_OFFSET..SUBBUF_HEADER_SIZE].copy_from_slice(&(self.len as u64).to_ne_bytes());
        self.page[SUBBUF_HEADER_SIZE + self.len..].fill(0);
        match core::mem::replace(&mut self.lost, Lost::None) {
            Lost::Count(n) => {
                mark_missed_events(&mut self.page, n);
            }
            Lost::Unknown => {
                let commit = self.len as u64 | COMMIT_MISSED_EVENTS;
                self.page[SUBBUF_COMMIT_OFFSET..SUBBUF_HEADER_SIZE].copy_from_slice(&commit.to_ne_bytes());
            }
            Lost::None => {}
        }
        out(&self.page)?;
        self.len = 0;
        self.events = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring_core::EventIter;
    use std::convert::Infallible;

    fn build(page_size: usize, input: &[(Lost, u64, Vec<u8>)]) -> Vec<Vec<u8>> {
        let mut pages = Vec::new();
        let mut out = |p: &[u8]| -> Result<(), Infallible> {
            pages.push(p.to_vec());
            Ok(())
        };
        let mut b = PageBuilder::new(page_size);
        for (lost, ts, payload) in input {
            b.lost(*lost, &mut out).unwrap();
            b.push(*ts, payload.len(), |d| d.copy_from_slice(payload), &mut out).unwrap().unwrap();
        }
        b.flush(&mut out).unwrap();
        pages
    }

    /// A decoded page: its lost-events mark and its (timestamp, payload) events.
    type Decoded = (Lost, Vec<(u64, Vec<u8>)>);

    fn decode(pages: &[Vec<u8>]) -> Vec<Decoded> {
        pages
            .iter()
            .map(|p| {
                let it = EventIter::new(p.as_slice()).unwrap();
                let missed = it.missed_events();
                (missed, it.map(|e| e.map(|e| (e.timestamp, e.payload.to_vec())).unwrap()).collect())
            })
            .collect()
    }

    #[test]
    fn events_come_back_with_their_times_losses_and_payloads() {
        let input = vec![
            (Lost::None, 1_000, vec![1, 2, 3, 4]),
            (Lost::None, 1_010, vec![5; 200]),
            (Lost::None, 1_010 + (1 << 27) + 5, vec![6; 8]),
            (Lost::Count(7), 5_000_000_000, vec![7; 4]),
            (Lost::None, 4_000_000_000, vec![8; 4]),
        ];
        let pages = build(4096, &input);
        let got = decode(&pages);
        assert_eq!(got.len(), 3, "a loss and a backwards time each start a page");
        assert_eq!(got[0].0, Lost::None);
        assert_eq!(got[0].1.iter().map(|e| e.0).collect::<Vec<_>>(), [1_000, 1_010, 1_010 + (1 << 27) + 5]);
        assert_eq!(got[0].1[1].1, vec![5; 200], "a type_len 0 event");
        assert_eq!(got[1], (Lost::Count(7), vec![(5_000_000_000, vec![7; 4])]));
        assert_eq!(got[2].1, [(4_000_000_000, vec![8; 4])]);
    }

    #[test]
    fn full_pages_split_and_keep_room_for_the_loss_count() {
        // 64-byte pages: 48 data bytes, 12-byte events (4 header + 8 payload): four per page,
        // three when a loss count must fit after them.
        let mut input: Vec<_> = (0..6).map(|i| (Lost::None, 100 + i, vec![i as u8; 8])).collect();
        input[0].0 = Lost::Count(2);
        let got = decode(&build(64, &input));
        assert_eq!(got.iter().map(|p| p.1.len()).collect::<Vec<_>>(), [3, 3]);
        assert_eq!(got[0].0, Lost::Count(2));
        let ts: Vec<u64> = got.iter().flat_map(|p| p.1.iter().map(|e| e.0)).collect();
        assert_eq!(ts, (100..106).collect::<Vec<_>>());
    }

    /// A 64-byte page holding `n` 8-byte-payload events from time `ts`, one apart, as the Linux
    /// format lays them out (built by a builder of its own).
    fn whole_page(ts: u64, n: u64) -> Vec<u8> {
        let input: Vec<_> = (0..n).map(|i| (Lost::None, ts + i, vec![i as u8; 8])).collect();
        build(64, &input).pop().unwrap_or_else(|| {
            let mut empty = vec![0; 64];
            empty[..8].copy_from_slice(&ts.to_ne_bytes());
            empty
        })
    }

    #[test]
    fn whole_pages_go_in_as_they_are_after_what_was_pushed() {
        let mut pages = Vec::new();
        let mut out = |p: &[u8]| -> Result<(), Infallible> {
            pages.push(p.to_vec());
            Ok(())
        };
        let mut b = PageBuilder::new(64);
        b.push(5, 4, |d| d.copy_from_slice(&[9; 4]), &mut out).unwrap().unwrap();
        let page = whole_page(100, 2);
        assert!(b.put_page(&mut page.clone(), 2, Lost::None, &mut out).unwrap());
        // A loss noted before the page is marked on it, with its count (24 bytes of data, room).
        b.lost(Lost::Count(3), &mut out).unwrap();
        assert!(b.put_page(&mut whole_page(200, 2), 2, Lost::Count(4), &mut out).unwrap());
        assert!(b.put_page(&mut whole_page(300, 1), 1, Lost::Unknown, &mut out).unwrap());
        // Nothing to store: no events and no loss.
        assert!(b.put_page(&mut whole_page(400, 0), 0, Lost::None, &mut out).unwrap());
        let got = decode(&pages);
        assert_eq!(pages[1], page, "stored byte for byte");
        assert_eq!(got.len(), 4);
        assert_eq!(got[0].1, [(5, vec![9; 4])], "the pushed event first, on its own page");
        assert_eq!(got[1].1.iter().map(|e| e.0).collect::<Vec<_>>(), [100, 101]);
        assert_eq!(got[2].0, Lost::Count(7), "both losses, on the page after them");
        assert_eq!(got[3].0, Lost::Unknown);
    }

    #[test]
    fn a_whole_page_without_room_for_a_loss_count_is_refused() {
        let mut out = |_: &[u8]| -> Result<(), Infallible> { Ok(()) };
        let mut b = PageBuilder::new(64);
        // Four 12-byte events fill the 48 data bytes.
        let mut full = whole_page(100, 4);
        assert!(!b.put_page(&mut full, 4, Lost::Count(2), &mut out).unwrap());
        assert_eq!(full, whole_page(100, 4), "left as it was");
        assert!(b.put_page(&mut full, 4, Lost::Unknown, &mut out).unwrap(), "an unknown loss needs no room");
    }

    #[test]
    fn unknown_losses_and_oversized_events() {
        let got = decode(&build(4096, &[(Lost::Unknown, 9, vec![1; 4])]));
        assert_eq!(got[0].0, Lost::Unknown);
        let mut b = PageBuilder::new(64);
        let mut out = |_: &[u8]| -> Result<(), Infallible> { Ok(()) };
        assert_eq!(b.push(1, 60, |_| {}, &mut out).unwrap(), Err(PageError::TooLarge { len: 60, page_size: 64 }));
    }
}
