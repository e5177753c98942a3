//! One record of a sub-buffer read from its header: what kind it is, what it carries and where
//! it ends, checked against the committed data.
//!
//! The decoder ([`crate::EventIter`]) and the walk over record boundaries
//! ([`crate::record_walk`], which the swapper runs on pages another party may write) both step
//! through a page with [`record_at`], so they agree on every record, on every error and its
//! offset. A step reads at most two words of the page, each checked against the committed data
//! before it is read, and allocates nothing.

use crate::decode::{DecodeError, PageSource};
use crate::format::{
    SUBBUF_HEADER_SIZE, TIME_DELTA_BITS, TYPE_LEN_DATA_MAX, TYPE_LEN_PADDING, TYPE_LEN_TIME_EXTEND,
    TYPE_LEN_TIME_STAMP, header_time_delta, header_type_len,
};

/// What a record is, from its header (and length or time word).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RecordKind {
    /// A data event, `delta` after the running time, whose payload is the `len` bytes at data
    /// offset `payload`.
    Event {
        /// Time delta.
        delta: u64,
        /// Data offset of the payload.
        payload: usize,
        /// Payload bytes.
        len: usize,
    },
    /// A discarded event; its `delta` still counts, as libtraceevent applies it.
    Discarded {
        /// Time delta.
        delta: u64,
    },
    /// A time extend, adding `delta` to the running time.
    TimeExtend {
        /// The whole delta, both words.
        delta: u64,
    },
    /// An absolute stamp: the low bits of the time ([`crate::decode::fix_absolute_stamp`]
    /// supplies the rest).
    TimeStamp {
        /// The stamp, both words.
        stamp: u64,
    },
    /// Null padding: the rest of the page's data is empty.
    Padding,
}

/// A record read from its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RecordHeader {
    /// What it is.
    pub kind: RecordKind,
    /// Data offset just past it: the next record boundary (for null padding, the end of the
    /// committed data).
    pub end: usize,
}

/// The size of `page`'s data area, or an error if the page is shorter than its header.
pub(crate) fn data_size<P: PageSource + ?Sized>(page: &P) -> Result<usize, DecodeError> {
    let len = page.page_len();
    len.checked_sub(SUBBUF_HEADER_SIZE).ok_or(DecodeError::ShortPage(len))
}

/// `commit_len` as a data end [`record_at`] can step up to, if it is one: within a data area of
/// `data_size` bytes, and 4-aligned.
pub(crate) fn checked_data_end(commit_len: u64, data_size: usize) -> Result<usize, DecodeError> {
    if commit_len > data_size as u64 {
        return Err(DecodeError::CommitTooLarge { commit: commit_len, data_size });
    }
    if !commit_len.is_multiple_of(4) {
        return Err(DecodeError::MisalignedCommit(commit_len));
    }
    Ok(commit_len as usize)
}

/// The record at data offset `at` of `page`, whose committed data ends at `data_end`; an error if
/// its lengths are impossible or it runs past `data_end`.
///
/// The caller has checked `data_end` ([`checked_data_end`]) and keeps `at` 4-aligned and below
/// `data_end`.
#[inline]
pub(crate) fn record_at<P: PageSource + ?Sized>(
    page: &P,
    at: usize,
    data_end: usize,
) -> Result<RecordHeader, DecodeError> {
    // `data_end` lies within the page's data area and every offset read is 4-aligned, so a word
    // that ends at or before `data_end` lies inside the page.
    let word = |off: usize| -> Result<u32, DecodeError> {
        if off + 4 > data_end {
            return Err(DecodeError::Truncated(at));
        }
        Ok(page.read_u32(SUBBUF_HEADER_SIZE + off))
    };
    let header = word(at)?;
    let delta = u64::from(header_time_delta(header));
    let (kind, end) = match header_type_len(header) {
        0 => {
            let len_word = word(at + 4)? as usize;
            if len_word < 4 || !len_word.is_multiple_of(4) {
                return Err(DecodeError::BadLength(at));
            }
            let len = len_word - 4;
            let end = (at + 8).checked_add(len).ok_or(DecodeError::BadLength(at))?;
            (RecordKind::Event { delta, payload: at + 8, len }, end)
        }
        words @ 1..=TYPE_LEN_DATA_MAX => {
            let len = words as usize * 4;
            (RecordKind::Event { delta, payload: at + 4, len }, at + 4 + len)
        }
        TYPE_LEN_PADDING if delta == 0 => return Ok(RecordHeader { kind: RecordKind::Padding, end: data_end }),
        TYPE_LEN_PADDING => {
            let len = word(at + 4)? as usize;
            if len == 0 || !len.is_multiple_of(4) {
                return Err(DecodeError::BadLength(at));
            }
            (RecordKind::Discarded { delta }, at.checked_add(4 + len).ok_or(DecodeError::BadLength(at))?)
        }
        TYPE_LEN_TIME_EXTEND => {
            let high = u64::from(word(at + 4)?);
            (RecordKind::TimeExtend { delta: high << TIME_DELTA_BITS | delta }, at + 8)
        }
        type_len => {
            debug_assert_eq!(type_len, TYPE_LEN_TIME_STAMP);
            let high = u64::from(word(at + 4)?);
            (RecordKind::TimeStamp { stamp: high << TIME_DELTA_BITS | delta }, at + 8)
        }
    };
    if end > data_end {
        return Err(DecodeError::Truncated(at));
    }
    Ok(RecordHeader { kind, end })
}
