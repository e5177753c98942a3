//! Building heap buffers and reading them back, for this crate's unit tests.

use crate::format::{SUBBUF_COMMIT_OFFSET, SUBBUF_HEADER_SIZE, SUBBUF_TIMESTAMP_OFFSET};
use crate::{Config, CpuBuffer, Cursor, Geometry, Lost, ManualClock, Mode, Record};
use std::vec::Vec;

/// A buffer of `nr_subbufs` sub-buffers of `subbuf_size` bytes on a manual clock.
pub(crate) fn buffer(subbuf_size: u32, nr_subbufs: u32, mode: Mode) -> CpuBuffer<'static, ManualClock> {
    let geometry = Geometry::new(subbuf_size, nr_subbufs).unwrap();
    CpuBuffer::with_heap(Config { geometry, mode }, ManualClock::new(1000)).unwrap()
}

/// What a consumer saw.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Drained {
    /// `(timestamp, payload)` in order.
    pub events: Vec<(u64, Vec<u8>)>,
    /// Lost counts in the order they were reported, with the index of the event they precede.
    pub lost: Vec<(usize, u64)>,
}

impl Drained {
    pub(crate) fn total_lost(&self) -> u64 {
        self.lost.iter().map(|(_, n)| n).sum()
    }

    /// First 4 payload bytes of each event as a u32 (tests put sequence numbers there).
    pub(crate) fn seqs(&self) -> Vec<u32> {
        self.events.iter().map(|(_, p)| u32::from_ne_bytes(p[..4].try_into().unwrap())).collect()
    }
}

/// Consumes everything currently readable, continuing from `cursor`.
pub(crate) fn drain_from(buf: &CpuBuffer<'_, ManualClock>, cursor: &mut Cursor, out: &mut Drained) {
    let view = buf.view();
    cursor
        .drain(
            &view,
            |read| buf.swap_reader_page(read),
            |item| match item {
                Record::Lost(Lost::Count(n)) => out.lost.push((out.events.len(), n)),
                Record::Lost(other) => panic!("an in-process swap reports exact losses, not {other:?}"),
                Record::Event(e) => out.events.push((e.timestamp, e.payload.to_vec())),
            },
        )
        .unwrap();
}

/// Consumes everything currently readable from a fresh cursor.
pub(crate) fn drain(buf: &CpuBuffer<'_, ManualClock>) -> Drained {
    let mut out = Drained::default();
    drain_from(buf, &mut Cursor::default(), &mut out);
    out
}

/// A `size`-byte sub-buffer stamped `timestamp`, whose `commit` word (flags included) is
/// `commit` and whose data begins with `words`.
pub(crate) fn subbuf(timestamp: u64, commit: u64, words: &[u32], size: usize) -> Vec<u8> {
    let mut page = std::vec![0u8; size];
    page[SUBBUF_TIMESTAMP_OFFSET..SUBBUF_TIMESTAMP_OFFSET + 8].copy_from_slice(&timestamp.to_ne_bytes());
    page[SUBBUF_COMMIT_OFFSET..SUBBUF_COMMIT_OFFSET + 8].copy_from_slice(&commit.to_ne_bytes());
    for (i, word) in words.iter().enumerate() {
        let at = SUBBUF_HEADER_SIZE + 4 * i;
        page[at..at + 4].copy_from_slice(&word.to_ne_bytes());
    }
    page
}

/// A 4-byte sequence number followed by `extra` filler bytes.
pub(crate) fn seq_payload(seq: u32, extra: usize) -> Vec<u8> {
    let mut p = seq.to_ne_bytes().to_vec();
    p.extend(core::iter::repeat_n(seq as u8, extra));
    p
}

/// The proptest configuration of this crate's property tests: the default, with few cases and no
/// regression files under Miri (which is slow and cannot write them).
pub(crate) fn proptest_config() -> proptest::test_runner::Config {
    let mut config = proptest::test_runner::Config::default();
    if cfg!(miri) {
        config.cases = 24;
        config.failure_persistence = None;
    }
    config
}
