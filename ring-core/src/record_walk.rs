//! Walking a sub-buffer's records by their lengths alone: where each record ends, without
//! timestamps or payloads.
//!
//! A consumer gives back how far it read a reader page as a data offset, and that offset must be
//! a *record boundary*: the start of the page's data, the end of a record, or the end of the
//! committed data. [`boundary_at_or_after`] finds the first boundary at or after an offset by
//! stepping from a known boundary over each record's length, with the record step
//! [`crate::EventIter`] decodes with, so its boundaries are where the decoder's records end and
//! it fails where the decoder fails. The swapper uses it to refuse a `read` that is not a
//! boundary (so no consumer is left to decode from the middle of an event), and a new consumer
//! to start at a boundary whatever an earlier one left in the meta area.
//!
//! The page may be written by an untrusted party at any time (a host under a hypervisor): every
//! length is checked before it is followed, and arbitrary bytes give a [`DecodeError`], never a
//! panic. Every step moves forward by at least one 4-byte word, so a walk ends within
//! `data_end / 4` steps. Nothing here allocates.

use crate::decode::{DecodeError, PageSource};
use crate::record_header::{checked_data_end, data_size, record_at};

/// The first record boundary of `page` at or after data offset `at`, found by stepping over the
/// records from `from`, a boundary at or before `at` (0, the start of the data, is always one).
/// The page's committed data ends at `data_end`, which is a boundary too: an `at` past it gives
/// `data_end`.
///
/// An error if the records from `from` on do not decode before `at` is reached (their lengths run
/// past `data_end` or are impossible), if `data_end` is not a possible committed length of the
/// page, or if `from` is not 4-aligned (records start on 4-byte boundaries).
pub fn boundary_at_or_after<P: PageSource + ?Sized>(
    page: &P,
    data_end: usize,
    from: usize,
    at: usize,
) -> Result<usize, DecodeError> {
    let data_end = checked_data_end(data_end as u64, data_size(page)?)?;
    if !from.is_multiple_of(4) {
        return Err(DecodeError::Misaligned(from));
    }
    let mut pos = from;
    while pos < at && pos < data_end {
        pos = record_at(page, pos, data_end)?.end;
    }
    Ok(pos.min(data_end))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EventIter;
    use crate::format::{TYPE_LEN_PADDING, TYPE_LEN_TIME_STAMP, TimeRecord, header_word};
    use crate::test_support::{proptest_config, subbuf};
    use proptest::strategy::Strategy;
    use std::vec::Vec;

    /// A 4096-byte page whose data is `words`, committed up to `commit` bytes.
    fn page(commit: u64, words: &[u32]) -> Vec<u8> {
        subbuf(0, commit, words, 4096)
    }

    #[test]
    fn every_kind_of_record_is_stepped_over_by_its_length() {
        let ext = TimeRecord::Extend(1 << 30).words();
        #[rustfmt::skip]
        let words = [
            header_word(2, 0), 1, 2,                        // 0: small, 12 bytes
            ext[0], ext[1],                                 // 12: time extend, 8 bytes
            header_word(0, 0), 4 + 8, 7, 7,                 // 20: large, 16 bytes
            header_word(TYPE_LEN_PADDING, 3), 8, 0,         // 36: discarded, 12 bytes
            header_word(TYPE_LEN_TIME_STAMP, 0), 0,         // 48: absolute stamp, 8 bytes
            header_word(TYPE_LEN_PADDING, 0), 0,            // 56: null padding: the rest
        ];
        let p = page(80, &words);
        let page = p.as_slice();
        let boundaries = [0, 12, 20, 36, 48, 56, 80];
        for at in 0..=84 {
            let want = boundaries.iter().copied().find(|&b| b >= at).unwrap_or(80);
            assert_eq!(boundary_at_or_after(page, 80, 0, at), Ok(want), "at {at}");
        }
        assert_eq!(boundary_at_or_after(page, 80, 20, 30), Ok(36), "from a later boundary");
        assert_eq!(boundary_at_or_after(page, 80, 2, 30), Err(DecodeError::Misaligned(2)));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        // A small event claiming more than is committed.
        let p = page(8, &[header_word(4, 0), 1]);
        assert_eq!(boundary_at_or_after(p.as_slice(), 8, 0, 8), Err(DecodeError::Truncated(0)));
        // A large event with an impossible length word.
        let p = page(16, &[header_word(0, 0), 2]);
        assert_eq!(boundary_at_or_after(p.as_slice(), 16, 0, 4), Err(DecodeError::BadLength(0)));
        let p = page(16, &[header_word(0, 0), !3]);
        assert_eq!(boundary_at_or_after(p.as_slice(), 16, 0, 4), Err(DecodeError::Truncated(0)));
        // A committed length the page cannot hold, or not a multiple of 4.
        let p = page(0, &[]);
        assert!(matches!(boundary_at_or_after(p.as_slice(), 5000, 0, 4), Err(DecodeError::CommitTooLarge { .. })));
        assert_eq!(boundary_at_or_after(p.as_slice(), 6, 0, 4), Err(DecodeError::MisalignedCommit(6)));
        assert_eq!(boundary_at_or_after(&p[..8], 0, 0, 0), Err(DecodeError::ShortPage(8)));
    }

    proptest::proptest! {
        #![proptest_config(proptest_config())]
        /// On arbitrary bytes, the boundaries found are exactly the positions the decoder reaches
        /// record by record, and the walk fails where the decoder fails, with the same error.
        #[test]
        #[cfg_attr(miri, ignore = "no unsafe code to check here, and ten minutes under Miri")]
        fn boundaries_are_where_the_decoder_steps(
            words in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::num::u32::ANY,
                    (0u32..32, 0u32..4).prop_map(|(t, d)| header_word(t, d)),
                    (1u32..40).prop_map(|n| n * 4),
                ],
                0..200,
            ),
            commit in 0usize..1000,
            at in 0usize..1100,
        ) {
            let commit = (commit & !3).min(words.len() * 4);
            let p = page(commit as u64, &words);
            let page = p.as_slice();
            let mut iter = EventIter::new(page).unwrap();
            let mut stepped = std::vec![0usize];
            let mut failed = None;
            while let Some(record) = iter.next_record() {
                match record {
                    Ok(_) => stepped.push(iter.position()),
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
            let want = match stepped.iter().copied().find(|&b| b >= at) {
                Some(b) => Ok(b),
                None => failed.map_or(Ok(commit), Err),
            };
            proptest::prop_assert_eq!(boundary_at_or_after(page, commit, 0, at), want);
        }
    }
}
