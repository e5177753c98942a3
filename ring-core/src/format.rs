//! The Linux ring-buffer byte format: sub-buffer header and event headers.
//!
//! A sub-buffer (page) is a [`SubBufHeader`] followed by the data area. Events are 4-byte aligned,
//! each starting with a native-endian `u32`: `type_len` in the low 5 bits, `time_delta` in the
//! high 27 bits.
//!
//! | `type_len` | meaning                                   | size                       |
//! |------------|-------------------------------------------|----------------------------|
//! | 1..=28     | data, payload of `type_len * 4` bytes     | `4 + type_len * 4`         |
//! | 0          | data, `array[0]` = payload + 4, payload at `array[1]` | `4 + array[0]` |
//! | 29         | padding (`time_delta == 0`: rest of page empty) | `4 + array[0]`       |
//! | 30         | time extend: delta = `array[0] << 27 \| time_delta` | 8                  |
//! | 31         | absolute stamp, same encoding, replaces the running time | 8             |
//!
//! These are the facts of `kernel/trace/ring_buffer.c` and libtraceevent's `kbuffer`; the
//! encoders here produce exactly those bytes and [`crate::decode`] reads them back.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Header at the start of every sub-buffer, as in the kernel's `struct buffer_data_page`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct SubBufHeader {
    /// Absolute time of the page's first event (raw clock units).
    pub timestamp: u64,
    /// Bytes of event data committed, plus the [`COMMIT_MISSED_EVENTS`] and
    /// [`COMMIT_MISSED_STORED`] flags.
    pub commit: u64,
}

const _: () = assert!(size_of::<SubBufHeader>() == 16);
const _: () = assert!(core::mem::offset_of!(SubBufHeader, timestamp) == 0);
const _: () = assert!(core::mem::offset_of!(SubBufHeader, commit) == 8);

/// Offset of the timestamp in a sub-buffer.
pub const SUBBUF_TIMESTAMP_OFFSET: usize = core::mem::offset_of!(SubBufHeader, timestamp);
/// Offset of the commit word in a sub-buffer.
pub const SUBBUF_COMMIT_OFFSET: usize = core::mem::offset_of!(SubBufHeader, commit);
/// Bytes before the data area of a sub-buffer.
pub const SUBBUF_HEADER_SIZE: usize = size_of::<SubBufHeader>();

/// `commit` flag: events were lost before this page (`RB_MISSED_EVENTS`).
pub const COMMIT_MISSED_EVENTS: u64 = 1 << 31;
/// `commit` flag: the lost count is stored as a `u64` right after the data (`RB_MISSED_STORED`).
pub const COMMIT_MISSED_STORED: u64 = 1 << 30;
/// Mask of the length part of `commit`.
pub const COMMIT_LEN_MASK: u64 = (1 << 30) - 1;

/// Bytes of an event header.
pub const EVENT_HEADER_SIZE: usize = 4;
/// Largest `type_len` of a data event with an implicit length.
pub const TYPE_LEN_DATA_MAX: u32 = 28;
/// `type_len` of padding and discarded events.
pub const TYPE_LEN_PADDING: u32 = 29;
/// `type_len` of a time-extend event.
pub const TYPE_LEN_TIME_EXTEND: u32 = 30;
/// `type_len` of an absolute-timestamp event.
pub const TYPE_LEN_TIME_STAMP: u32 = 31;
/// Largest payload stored with an implicit length (`28 * 4`).
pub const SMALL_DATA_MAX: usize = TYPE_LEN_DATA_MAX as usize * 4;
/// Bits of `time_delta` in an event header.
pub const TIME_DELTA_BITS: u32 = 27;
/// Largest delta an event header holds.
pub const TIME_DELTA_MAX: u64 = (1 << TIME_DELTA_BITS) - 1;
/// Bytes of a time-extend or absolute-stamp event.
pub const TIME_EVENT_SIZE: usize = 8;
/// Bits a time-extend or absolute stamp can carry (`27 + 32`).
pub const TIME_EXTEND_BITS: u32 = TIME_DELTA_BITS + 32;
/// Mask of the bits an absolute stamp carries; the rest come from the page timestamp.
pub const TIME_STAMP_MASK: u64 = (1 << TIME_EXTEND_BITS) - 1;

/// Builds an event header word.
#[inline]
pub const fn header_word(type_len: u32, time_delta: u32) -> u32 {
    (time_delta << 5) | (type_len & 0x1f)
}

/// `type_len` of a header word.
#[inline]
pub const fn header_type_len(word: u32) -> u32 {
    word & 0x1f
}

/// `time_delta` of a header word.
#[inline]
pub const fn header_time_delta(word: u32) -> u32 {
    word >> 5
}

/// How a data event of a given payload length is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataLayout {
    /// Total bytes the event takes in the page, header included.
    pub size: u32,
    /// `type_len` to put in the header.
    pub type_len: u32,
    /// Offset of the payload from the event start (4, or 8 with `type_len` 0).
    pub payload_offset: u32,
    /// Payload bytes as stored, rounded up to 4 (at least 4: an empty payload still takes a word).
    pub stored_len: u32,
}

impl DataLayout {
    /// Layout of a data event carrying `len` payload bytes, or `None` if `len` is absurdly large.
    #[inline]
    pub const fn for_payload(len: usize) -> Option<Self> {
        if len > COMMIT_LEN_MASK as usize {
            return None;
        }
        // The kernel stores an empty payload as one zero word ("zero length can cause confusions").
        let stored = if len == 0 { 4 } else { len.next_multiple_of(4) } as u32;
        if len <= SMALL_DATA_MAX {
            Some(Self { size: 4 + stored, type_len: stored / 4, payload_offset: 4, stored_len: stored })
        } else {
            Some(Self { size: 8 + stored, type_len: 0, payload_offset: 8, stored_len: stored })
        }
    }

    /// The `array[0]` word of a `type_len` 0 event (payload + 4), if this layout has one.
    #[inline]
    pub const fn length_word(&self) -> Option<u32> {
        if self.type_len == 0 { Some(self.stored_len + 4) } else { None }
    }
}

/// Which record carries a timestamp that a header delta cannot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeRecord {
    /// Time extend: adds `delta` (< 2^59) to the running time.
    Extend(u64),
    /// Absolute stamp: the low 59 bits of the new running time.
    Absolute(u64),
}

impl TimeRecord {
    /// The two words of this record (header, `array[0]`).
    #[inline]
    pub const fn words(self) -> [u32; 2] {
        let (type_len, v) = match self {
            TimeRecord::Extend(d) => (TYPE_LEN_TIME_EXTEND, d),
            TimeRecord::Absolute(t) => (TYPE_LEN_TIME_STAMP, t & TIME_STAMP_MASK),
        };
        [header_word(type_len, (v & TIME_DELTA_MAX) as u32), (v >> TIME_DELTA_BITS) as u32]
    }
}

/// How an event stamped `now`, following one at `prev`, encodes its time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeEncoding {
    /// In the event header's 27-bit delta.
    Delta(u32),
    /// A time-extend record first, then a zero header delta.
    Extend(u64),
    /// Not expressible after `prev` on the same page: time went backwards, or jumped by 2^59 or
    /// more (an absolute stamp keeps only 59 bits and readers take the rest from the running
    /// time). The event must start a new page, whose header holds the full 64-bit time.
    NewPage,
}

/// Chooses the encoding of `now` after `prev`, the way the kernel does: a header delta when it
/// fits in 27 bits, else a time extend.
#[inline]
pub const fn time_encoding(prev: u64, now: u64) -> TimeEncoding {
    if now < prev {
        return TimeEncoding::NewPage;
    }
    let delta = now - prev;
    if delta <= TIME_DELTA_MAX {
        TimeEncoding::Delta(delta as u32)
    } else if delta <= TIME_STAMP_MASK {
        TimeEncoding::Extend(delta)
    } else {
        TimeEncoding::NewPage
    }
}

/// Words of the padding written when a page is closed with `room` (>= 4, multiple of 4) bytes
/// left: a null padding event (`time_delta` 0: rest of page empty) and, if it fits, its length.
#[inline]
pub const fn closing_padding(room: u32) -> (u32, Option<u32>) {
    let header = header_word(TYPE_LEN_PADDING, 0);
    if room >= 8 { (header, Some(room - 4)) } else { (header, None) }
}

/// Marks a page copy as preceded by `lost` missed events, the way the kernel does when it hands
/// pages to `splice`/`trace.dat`: sets [`COMMIT_MISSED_EVENTS`] in `commit`, and if the count fits
/// after the data (`commit_len + 8 <= data_size`), stores it there and sets
/// [`COMMIT_MISSED_STORED`]. `page` is the whole sub-buffer copy. Returns false (and changes
/// nothing) if `page` is too short to hold its own header and committed data.
pub fn mark_missed_events(page: &mut [u8], lost: u64) -> bool {
    if lost == 0 || page.len() < SUBBUF_HEADER_SIZE {
        return lost == 0;
    }
    let Ok(commit_bytes) = <[u8; 8]>::try_from(&page[SUBBUF_COMMIT_OFFSET..SUBBUF_HEADER_SIZE]) else {
        return false;
    };
    let mut commit = u64::from_ne_bytes(commit_bytes);
    let len = (commit & COMMIT_LEN_MASK) as usize;
    let data_size = page.len() - SUBBUF_HEADER_SIZE;
    if len > data_size {
        return false;
    }
    commit |= COMMIT_MISSED_EVENTS;
    if len + 8 <= data_size {
        let at = SUBBUF_HEADER_SIZE + len;
        page[at..at + 8].copy_from_slice(&lost.to_ne_bytes());
        commit |= COMMIT_MISSED_STORED;
    }
    page[SUBBUF_COMMIT_OFFSET..SUBBUF_HEADER_SIZE].copy_from_slice(&commit.to_ne_bytes());
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec;

    #[test]
    fn data_layouts_match_the_kernel() {
        let l = DataLayout::for_payload(0).unwrap();
        assert_eq!((l.size, l.type_len, l.stored_len), (8, 1, 4));
        let l = DataLayout::for_payload(5).unwrap();
        assert_eq!((l.size, l.type_len, l.stored_len, l.payload_offset), (12, 2, 8, 4));
        let l = DataLayout::for_payload(112).unwrap();
        assert_eq!((l.size, l.type_len), (116, 28));
        let l = DataLayout::for_payload(113).unwrap();
        assert_eq!((l.size, l.type_len, l.payload_offset, l.length_word()), (124, 0, 8, Some(120)));
        assert!(DataLayout::for_payload(usize::MAX).is_none());
    }

    #[test]
    fn header_words_split_type_and_delta() {
        let w = header_word(TYPE_LEN_TIME_EXTEND, TIME_DELTA_MAX as u32);
        assert_eq!(header_type_len(w), 30);
        assert_eq!(header_time_delta(w) as u64, TIME_DELTA_MAX);
    }

    #[test]
    fn time_encoding_picks_the_smallest_record() {
        assert_eq!(time_encoding(10, 10 + TIME_DELTA_MAX), TimeEncoding::Delta(TIME_DELTA_MAX as u32));
        let d = TIME_DELTA_MAX + 1;
        assert_eq!(time_encoding(10, 10 + d), TimeEncoding::Extend(d));
        assert_eq!(time_encoding(10, 10 + TIME_STAMP_MASK), TimeEncoding::Extend(TIME_STAMP_MASK));
        assert_eq!(time_encoding(0, 1 << 60), TimeEncoding::NewPage);
        assert_eq!(time_encoding(100, 50), TimeEncoding::NewPage);
        let [h, hi] = TimeRecord::Extend((5 << 27) | 7).words();
        assert_eq!((header_type_len(h), header_time_delta(h), hi), (30, 7, 5));
    }

    #[test]
    fn missed_events_are_stored_when_room_remains() {
        let mut page = vec![0u8; 64];
        page[8..16].copy_from_slice(&20u64.to_ne_bytes());
        assert!(mark_missed_events(&mut page, 7));
        let commit = u64::from_ne_bytes(page[8..16].try_into().unwrap());
        assert_eq!(commit, 20 | COMMIT_MISSED_EVENTS | COMMIT_MISSED_STORED);
        assert_eq!(u64::from_ne_bytes(page[36..44].try_into().unwrap()), 7);

        let mut full = vec![0u8; 64];
        full[8..16].copy_from_slice(&44u64.to_ne_bytes());
        assert!(mark_missed_events(&mut full, 7));
        let commit = u64::from_ne_bytes(full[8..16].try_into().unwrap());
        assert_eq!(commit, 44 | COMMIT_MISSED_EVENTS);

        let mut bogus = vec![0u8; 32];
        bogus[8..16].copy_from_slice(&1000u64.to_ne_bytes());
        assert!(!mark_missed_events(&mut bogus, 1));
    }
}
