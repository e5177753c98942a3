//! Decoding a sub-buffer back into `(timestamp, payload)` records.
//!
//! [`EventIter`] walks one sub-buffer, applies time extends and absolute stamps, skips padding,
//! and yields data events; [`EventIter::drain_events`], the consumers' path, hands them to a
//! closure instead, several times faster on streams of events of one size. It works over any
//! [`PageSource`]: a byte slice (a private copy, a trace.dat page) or a [`ShmPage`] (a page of
//! the shared mapping, read word by word through atomics so a writer or a hostile peer changing
//! it under us cannot cause undefined behaviour).
//! Every offset is checked before it is read: arbitrary bytes produce a [`DecodeError`], never a
//! panic or an out-of-bounds read.

use crate::format::{
    COMMIT_LEN_MASK, COMMIT_MISSED_EVENTS, COMMIT_MISSED_STORED, SUBBUF_COMMIT_OFFSET, SUBBUF_HEADER_SIZE,
    SUBBUF_TIMESTAMP_OFFSET, TIME_STAMP_MASK, TYPE_LEN_DATA_MAX, header_time_delta, header_type_len,
};
use crate::lost::Lost;
use crate::record_header::{RecordHeader, RecordKind, checked_data_end, data_size, record_at};
use crate::shm::{ShmRegion, ShmSpan};

/// Where the bytes of one sub-buffer come from.
pub trait PageSource {
    /// What a data event's payload is handed out as.
    type Payload<'a>
    where
        Self: 'a;

    /// Length of the whole sub-buffer, header included.
    fn page_len(&self) -> usize;
    /// The `u32` at `off`; the caller guarantees `off + 4 <= page_len()` and 4-alignment.
    fn read_u32(&self, off: usize) -> u32;
    /// The page header `(timestamp, commit)`, with `commit` read with acquire semantics first so
    /// the data it covers is visible.
    fn header(&self) -> (u64, u64);
    /// The payload bytes `off..off + len`; the caller guarantees they are inside the page.
    fn payload(&self, off: usize, len: usize) -> Self::Payload<'_>;

    /// The data length `commit` claims, its flags masked off (unchecked against the page: what
    /// a consumer gives back as read to skip a page it cannot decode).
    fn committed_len(&self) -> u32 {
        (self.header().1 & COMMIT_LEN_MASK) as u32
    }

    /// [`PageSource::read_u32`] where the caller has checked the bounds itself (the decoder's
    /// fast path). The default checks anyway; a source whose `page_len` is exact may skip it.
    ///
    /// # Safety
    /// `off` is 4-aligned and `off + 4 <= self.page_len()`.
    #[inline]
    unsafe fn read_u32_unchecked(&self, off: usize) -> u32 {
        self.read_u32(off)
    }

    /// [`PageSource::payload`] where the caller has checked the bounds itself, as
    /// [`PageSource::read_u32_unchecked`].
    ///
    /// # Safety
    /// `off` is 4-aligned and `off + len <= self.page_len()`.
    #[inline]
    unsafe fn payload_unchecked(&self, off: usize, len: usize) -> Self::Payload<'_> {
        self.payload(off, len)
    }
}

impl PageSource for [u8] {
    type Payload<'a> = &'a [u8];

    #[inline]
    fn page_len(&self) -> usize {
        self.len()
    }

    #[inline]
    fn read_u32(&self, off: usize) -> u32 {
        u32::from_ne_bytes([self[off], self[off + 1], self[off + 2], self[off + 3]])
    }

    fn header(&self) -> (u64, u64) {
        let word = |off: usize| -> u64 {
            match self.get(off..off + 8) {
                Some(b) => u64::from_ne_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]),
                None => 0,
            }
        };
        (word(SUBBUF_TIMESTAMP_OFFSET), word(SUBBUF_COMMIT_OFFSET))
    }

    #[inline]
    fn payload(&self, off: usize, len: usize) -> &[u8] {
        &self[off..off + len]
    }

    #[inline(always)]
    unsafe fn read_u32_unchecked(&self, off: usize) -> u32 {
        debug_assert!(off + 4 <= self.len());
        // SAFETY: the caller puts `off..off + 4` inside the slice; the read is unaligned.
        unsafe { self.as_ptr().add(off).cast::<u32>().read_unaligned() }
    }

    #[inline(always)]
    unsafe fn payload_unchecked(&self, off: usize, len: usize) -> &[u8] {
        debug_assert!(off + len <= self.len());
        // SAFETY: the caller puts `off..off + len` inside the slice.
        unsafe { self.get_unchecked(off..off + len) }
    }
}

/// A sub-buffer inside a shared region, read through atomic loads.
#[derive(Debug, Clone, Copy)]
pub struct ShmPage<'a> {
    span: ShmSpan<'a>,
}

impl<'a> ShmPage<'a> {
    /// The `len`-byte page at byte offset `base` of `region`, or `None` if it does not fit or is
    /// not 8-aligned.
    pub fn new(region: &'a ShmRegion, base: usize, len: usize) -> Option<Self> {
        if !base.is_multiple_of(8) || !len.is_multiple_of(8) || len < SUBBUF_HEADER_SIZE {
            return None;
        }
        region.span(base, len).map(|span| Self { span })
    }

    /// The commit word, read with acquire semantics.
    #[inline]
    pub fn commit(&self) -> u64 {
        self.span.load_u64_acquire(SUBBUF_COMMIT_OFFSET)
    }

    /// The page timestamp.
    #[inline]
    pub fn timestamp(&self) -> u64 {
        self.span.load_u64(SUBBUF_TIMESTAMP_OFFSET)
    }

    /// Copies the whole page into `out` (which must be exactly the page length), header words at
    /// their own width. `commit` is read first, with acquire semantics, so every event it covers
    /// is complete in the copy unless the page was rewritten meanwhile (which only a `cnt` check,
    /// see [`crate::snapshot`], can tell).
    ///
    /// # Panics
    /// If `out` is not exactly one page long (a caller bug: the page size is known beforehand).
    pub fn copy_to(&self, out: &mut [u8]) {
        assert_eq!(out.len(), self.span.len(), "page copy needs a buffer of the page size");
        let commit = self.commit();
        let ts = self.timestamp();
        out[SUBBUF_TIMESTAMP_OFFSET..SUBBUF_TIMESTAMP_OFFSET + 8].copy_from_slice(&ts.to_ne_bytes());
        out[SUBBUF_COMMIT_OFFSET..SUBBUF_COMMIT_OFFSET + 8].copy_from_slice(&commit.to_ne_bytes());
        self.span.load_bytes(SUBBUF_HEADER_SIZE, &mut out[SUBBUF_HEADER_SIZE..]);
    }
}

// Inlined: the decoder calls these once or more per event, and ring-core's non-generic code is
// not inlined across crates without the attribute.
impl<'a> PageSource for ShmPage<'a> {
    type Payload<'b>
        = ShmBytes<'a>
    where
        Self: 'b;

    #[inline]
    fn page_len(&self) -> usize {
        self.span.len()
    }

    #[inline]
    fn read_u32(&self, off: usize) -> u32 {
        self.span.load_u32(off)
    }

    #[inline]
    fn header(&self) -> (u64, u64) {
        let commit = self.commit();
        (self.timestamp(), commit)
    }

    /// # Panics
    /// If `off..off + len` is not a 4-aligned range inside the page (the caller's contract).
    #[inline]
    fn payload(&self, off: usize, len: usize) -> ShmBytes<'a> {
        match self.span.sub(off, len) {
            Some(span) => ShmBytes { span },
            None => payload_outside_page(off, len, self.span.len()),
        }
    }

    #[inline(always)]
    unsafe fn read_u32_unchecked(&self, off: usize) -> u32 {
        // SAFETY: the caller's contract, with `page_len` the span's exact length.
        unsafe { self.span.load_u32_unchecked(off) }
    }

    #[inline(always)]
    unsafe fn payload_unchecked(&self, off: usize, len: usize) -> ShmBytes<'a> {
        // SAFETY: the caller's contract, with `page_len` the span's exact length.
        ShmBytes { span: unsafe { self.span.sub_unchecked(off, len) } }
    }
}

/// The panic of [`ShmPage::payload`] on a range outside the page, out of the inlined path.
#[cold]
#[inline(never)]
fn payload_outside_page(off: usize, len: usize, page_len: usize) -> ! {
    panic!("payload of {len} bytes at {off} is not inside the {page_len}-byte page")
}

/// Payload bytes that live in shared memory; copy them out to look at them.
#[derive(Debug, Clone, Copy)]
pub struct ShmBytes<'a> {
    span: ShmSpan<'a>,
}

impl ShmBytes<'_> {
    /// Number of payload bytes.
    #[inline]
    pub fn len(&self) -> usize {
        self.span.len()
    }

    /// True if there are no payload bytes.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.span.is_empty()
    }

    /// Copies `out.len()` bytes (at most [`ShmBytes::len`]) from the start of the payload.
    #[inline]
    pub fn copy_to(&self, out: &mut [u8]) -> usize {
        // The whole of `out` first, on its own: a caller's buffer is often of a fixed size
        // and then so is this copy, which the compiler unrolls.
        if out.len() <= self.span.len() {
            self.span.load_bytes(0, out);
            return out.len();
        }
        let n = self.span.len();
        self.span.load_bytes(0, &mut out[..n]);
        n
    }

    /// The payload as an owned vector.
    #[cfg(feature = "std")]
    pub fn to_vec(&self) -> std::vec::Vec<u8> {
        let mut v = std::vec![0u8; self.span.len()];
        self.copy_to(&mut v);
        v
    }
}

/// Why a sub-buffer could not be decoded (past the events already returned).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The buffer is smaller than a sub-buffer header.
    #[error("sub-buffer of {0} bytes is shorter than its 16-byte header")]
    ShortPage(usize),
    /// `commit` claims more data than the page holds.
    #[error("commit of {commit} bytes exceeds the {data_size}-byte data area")]
    CommitTooLarge {
        /// The claimed length.
        commit: u64,
        /// The page's data area.
        data_size: usize,
    },
    /// An event header or body runs past the committed data.
    #[error("event at data offset {0} runs past the committed data")]
    Truncated(usize),
    /// An event's length field is impossible.
    #[error("event at data offset {0} has an invalid length")]
    BadLength(usize),
    /// `commit` is not a multiple of 4 (events are 4-byte aligned).
    #[error("commit of {0} bytes is not 4-byte aligned")]
    MisalignedCommit(u64),
    /// A walk over the records was asked to start at a data offset that is not a multiple of 4
    /// (records start on 4-byte boundaries).
    #[error("data offset {0} is not 4-byte aligned, so no record starts there")]
    Misaligned(usize),
}

/// One data event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event<T> {
    /// Absolute timestamp, in the writer's raw clock units.
    pub timestamp: u64,
    /// The payload, padded with zeros to a multiple of 4 bytes (the format does not record the
    /// exact length; event formats carry their own sizes).
    pub payload: T,
    /// Offset of the event's header in the data area.
    pub offset: u32,
    /// Offset just past the event in the data area.
    pub end: u32,
}

/// Every kind of record in a sub-buffer, as [`EventIter::next_record`] returns them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageRecord<T> {
    /// A data event.
    Event(Event<T>),
    /// A time extend at `offset`, adding `delta` to the running time.
    TimeExtend {
        /// Data offset.
        offset: u32,
        /// Delta added.
        delta: u64,
    },
    /// An absolute stamp at `offset`, setting the running time to `timestamp`.
    TimeStamp {
        /// Data offset.
        offset: u32,
        /// The reconstructed full timestamp.
        timestamp: u64,
    },
    /// Null padding at `offset`: the rest of the page is empty.
    Padding {
        /// Data offset.
        offset: u32,
    },
    /// A discarded event of `len` bytes (header included) at `offset`.
    Discarded {
        /// Data offset.
        offset: u32,
        /// Bytes skipped.
        len: u32,
    },
}

/// Iterator over the data events of one sub-buffer.
#[derive(Debug)]
pub struct EventIter<'p, P: PageSource + ?Sized> {
    page: &'p P,
    data_end: usize,
    pos: usize,
    start: usize,
    ts: u64,
    missed: Lost,
    failed: bool,
    /// The payload length, in words, [`EventIter::drain_small_events`] expects of the next
    /// event: that of the last small event it decoded (1..=`TYPE_LEN_DATA_MAX`), at first 4.
    /// Only a guess: a wrong one costs time, never a wrong event.
    words: u32,
}

impl<'p, P: PageSource + ?Sized> EventIter<'p, P> {
    /// Starts decoding `page` from the beginning of its data.
    pub fn new(page: &'p P) -> Result<Self, DecodeError> {
        Self::starting_at(page, 0)
    }

    /// How many data events of `page` begin before data offset `offset`, as far as the page
    /// decodes: the events a consumer that stands at `offset` has read. With the page's first
    /// sequence number, the sequence number of the event at `offset`.
    pub fn count_before(page: &'p P, offset: u32) -> u64 {
        if offset == 0 {
            return 0;
        }
        Self::new(page).into_iter().flatten().map_while(Result::ok).take_while(|e| e.offset < offset).count() as u64
    }

    /// Decodes `page` but yields only events at data offset `start` or later (how a consumer
    /// resumes on a page it has partly read: the time deltas before `start` are still applied).
    pub fn starting_at(page: &'p P, start: usize) -> Result<Self, DecodeError> {
        let data_size = data_size(page)?;
        let (timestamp, commit) = page.header();
        let data_end = checked_data_end(commit & COMMIT_LEN_MASK, data_size)?;
        let missed = if commit & COMMIT_MISSED_EVENTS == 0 {
            Lost::None
        } else if commit & COMMIT_MISSED_STORED != 0 && data_end + 8 <= data_size {
            let at = SUBBUF_HEADER_SIZE + data_end;
            let lo = u64::from(page.read_u32(at));
            let hi = u64::from(page.read_u32(at + 4));
            Lost::Count(if cfg!(target_endian = "little") { lo | hi << 32 } else { hi | lo << 32 })
        } else {
            Lost::Unknown
        };
        Ok(Self { page, data_end, pos: 0, start, ts: timestamp, missed, failed: false, words: 4 })
    }

    /// Data offset just past everything decoded so far: what a consumer reports as `read`.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// The committed length this iterator decodes up to.
    pub fn data_end(&self) -> usize {
        self.data_end
    }

    /// Running timestamp (of the last event, or the page timestamp before the first).
    pub fn timestamp(&self) -> u64 {
        self.ts
    }

    /// The events lost before this page, as its `commit` flags say.
    pub fn missed_events(&self) -> Lost {
        self.missed
    }

    /// Hands every remaining data event to `each`, in order, and returns how many. A malformed
    /// record ends it with the error: [`EventIter::data_end`] then says where the page's
    /// committed data ends, the offset a consumer skips to so that it can go on.
    ///
    /// The path consumers take, and faster than the [`Iterator`]: runs of small data events
    /// are decoded by `drain_small_events` with the decoder's state in registers;
    /// anything else goes through the general path one record at a time.
    #[inline]
    pub fn drain_events(&mut self, mut each: impl FnMut(Event<P::Payload<'p>>)) -> Result<u64, DecodeError> {
        let mut count = 0;
        loop {
            count += self.drain_small_events(&mut each);
            match self.next_general() {
                None => return Ok(count),
                Some(Ok(event)) => {
                    each(event);
                    count += 1;
                }
                Some(Err(e)) => return Err(e),
            }
        }
    }

    /// Hands `each` the run of small data events (`type_len` 1..=28, inside the committed data,
    /// at or after the start offset) that begins at the current position, decoded exactly as
    /// [`EventIter::step`] would, and returns how many; it stops, without consuming it, at the
    /// first record that is anything else.
    ///
    /// The position, time and predicted size live in locals for the whole run. The next
    /// position is computed from the size of the event before (events of a stream mostly have
    /// one size) and the header only has to confirm it: the walk from event to event is then
    /// an addition, not a load waiting on the previous one, and the loads of a run overlap.
    #[inline(always)]
    fn drain_small_events(&mut self, each: &mut impl FnMut(Event<P::Payload<'p>>)) -> u64 {
        if self.failed || self.pos < self.start {
            return 0;
        }
        let data_end = self.data_end;
        let mut pos = self.pos;
        let mut ts = self.ts;
        // The predicted payload length in words, always 1..=TYPE_LEN_DATA_MAX.
        let mut words = self.words;
        let mut count = 0;
        loop {
            let size = 4 + words as usize * 4;
            // An event of the predicted size at `pos` fits while `pos + size <= data_end`.
            let fits_until = data_end.wrapping_sub(size);
            while pos <= fits_until && data_end >= size {
                // SAFETY: `data_end` is a multiple of 4 within the page's data area (checked in
                // `starting_at`) and the position only moves by multiples of 4, so the header
                // word at `pos`, with `pos + 4 < pos + size <= data_end`, is 4-aligned and
                // inside the page.
                let header = unsafe { self.page.read_u32_unchecked(SUBBUF_HEADER_SIZE + pos) };
                if header_type_len(header) != words {
                    break;
                }
                ts = ts.wrapping_add(u64::from(header_time_delta(header)));
                // SAFETY: the payload `pos + 4..pos + size` is 4-aligned and, since
                // `pos + size <= data_end`, inside the page.
                let payload = unsafe { self.page.payload_unchecked(SUBBUF_HEADER_SIZE + pos + 4, size - 4) };
                each(Event { timestamp: ts, payload, offset: pos as u32, end: (pos + size) as u32 });
                count += 1;
                pos += size;
            }
            // Mispredicted, or no room for another event of the predicted size: the event at
            // `pos` by its own size, if it is a small data event that fits, and the next run
            // expects its size.
            if pos + 4 > data_end {
                break;
            }
            // SAFETY: as above, with `pos + 4 <= data_end`.
            let header = unsafe { self.page.read_u32_unchecked(SUBBUF_HEADER_SIZE + pos) };
            let type_len = header_type_len(header);
            let end = pos + 4 + type_len as usize * 4;
            if !(1..=TYPE_LEN_DATA_MAX).contains(&type_len) || end > data_end {
                break;
            }
            ts = ts.wrapping_add(u64::from(header_time_delta(header)));
            // SAFETY: the payload `pos + 4..end` is 4-aligned and, since `end <= data_end`,
            // inside the page.
            let payload = unsafe { self.page.payload_unchecked(SUBBUF_HEADER_SIZE + pos + 4, end - pos - 4) };
            each(Event { timestamp: ts, payload, offset: pos as u32, end: end as u32 });
            count += 1;
            pos = end;
            words = type_len;
        }
        self.pos = pos;
        self.ts = ts;
        self.words = words;
        count
    }

    /// The next record of any kind, or `None` at the end of the committed data. Records before
    /// the start offset are decoded (their time counts) but only data events there are skipped.
    pub fn next_record(&mut self) -> Option<Result<PageRecord<P::Payload<'p>>, DecodeError>> {
        while !self.failed && self.pos < self.data_end {
            match self.step() {
                Ok(Some(record)) => return Some(Ok(record)),
                Ok(None) => continue,
                Err(e) => {
                    self.failed = true;
                    return Some(Err(e));
                }
            }
        }
        None
    }

    /// Decodes the record at `pos`; `Ok(None)` for a data event before the start offset.
    fn step(&mut self) -> Result<Option<PageRecord<P::Payload<'p>>>, DecodeError> {
        let at = self.pos;
        let offset = at as u32;
        let RecordHeader { kind, end } = record_at(self.page, at, self.data_end)?;
        self.pos = end;
        match kind {
            RecordKind::Event { delta, payload, len } => {
                self.ts = self.ts.wrapping_add(delta);
                if at < self.start {
                    return Ok(None);
                }
                let payload = self.page.payload(SUBBUF_HEADER_SIZE + payload, len);
                Ok(Some(PageRecord::Event(Event { timestamp: self.ts, payload, offset, end: end as u32 })))
            }
            RecordKind::Discarded { delta } => {
                self.ts = self.ts.wrapping_add(delta);
                Ok(Some(PageRecord::Discarded { offset, len: (end - at) as u32 }))
            }
            RecordKind::TimeExtend { delta } => {
                self.ts = self.ts.wrapping_add(delta);
                Ok(Some(PageRecord::TimeExtend { offset, delta }))
            }
            RecordKind::TimeStamp { stamp } => {
                self.ts = fix_absolute_stamp(stamp, self.ts);
                Ok(Some(PageRecord::TimeStamp { offset, timestamp: self.ts }))
            }
            RecordKind::Padding => Ok(Some(PageRecord::Padding { offset })),
        }
    }
}

/// Rebuilds a full timestamp from an absolute stamp's 59 bits and the running time, as the
/// kernel's `rb_fix_abs_ts` does: the high bits come from the running time, and a stamp that
/// would go backwards has crossed a 2^59 boundary.
pub fn fix_absolute_stamp(stamp: u64, running: u64) -> u64 {
    let high = running & !TIME_STAMP_MASK;
    if high == 0 {
        return stamp;
    }
    let full = stamp | high;
    if full < running { full.wrapping_add(TIME_STAMP_MASK + 1) } else { full }
}

impl<'p, P: PageSource + ?Sized> Iterator for EventIter<'p, P> {
    type Item = Result<Event<P::Payload<'p>>, DecodeError>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        // The common record first, inline: a small data event (`type_len` 1..=28) that lies
        // within the committed data, at or after the start offset. It decodes exactly as `step`
        // would; everything else (and any doubt) takes the general path.
        let at = self.pos;
        if !self.failed && at + 4 <= self.data_end && at >= self.start {
            // SAFETY: `data_end` is a multiple of 4 within the page's data area (checked in
            // `starting_at`) and `pos` only ever moves by multiples of 4, so the header word at
            // `at < data_end` is 4-aligned and inside the page.
            let header = unsafe { self.page.read_u32_unchecked(SUBBUF_HEADER_SIZE + at) };
            let words = header_type_len(header);
            let end = at + 4 + words as usize * 4;
            if (1..=TYPE_LEN_DATA_MAX).contains(&words) && end <= self.data_end {
                self.ts = self.ts.wrapping_add(u64::from(header_time_delta(header)));
                self.pos = end;
                // SAFETY: as above, the payload `at + 4..end` is 4-aligned and, since
                // `end <= data_end`, inside the page.
                let payload = unsafe { self.page.payload_unchecked(SUBBUF_HEADER_SIZE + at + 4, words as usize * 4) };
                return Some(Ok(Event { timestamp: self.ts, payload, offset: at as u32, end: end as u32 }));
            }
        }
        self.next_general()
    }
}

impl<'p, P: PageSource + ?Sized> EventIter<'p, P> {
    /// [`Iterator::next`] for any record: skips time records and padding, reports errors.
    // Out of line, so that inlining `next` brings in only its fast path.
    #[inline(never)]
    fn next_general(&mut self) -> Option<Result<Event<P::Payload<'p>>, DecodeError>> {
        loop {
            match self.next_record()? {
                Ok(PageRecord::Event(event)) => return Some(Ok(event)),
                Ok(_) => continue,
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{TIME_DELTA_MAX, TYPE_LEN_PADDING, TYPE_LEN_TIME_EXTEND, TimeRecord, header_word};
    use crate::test_support::{proptest_config, subbuf};
    use std::vec::Vec;

    #[test]
    fn decodes_small_large_extend_absolute_and_padding() {
        let ext = TimeRecord::Extend(TIME_DELTA_MAX + 10).words();
        let abs = TimeRecord::Absolute(5_000_000_000).words();
        #[rustfmt::skip]
        let words = [
            header_word(1, 0), 0xaaaa_aaaa,                 // small, delta 0
            header_word(2, 3), 1, 2,                        // small, delta 3
            ext[0], ext[1], header_word(1, 0), 7,           // time extend then event
            header_word(0, 1), 4 + 120, // large: array[0] = payload + 4
        ];
        let mut all: Vec<u32> = words.to_vec();
        all.extend(core::iter::repeat_n(0x11u32, 30));
        all.extend_from_slice(&[abs[0], abs[1], header_word(1, 2), 9]);
        all.extend_from_slice(&[header_word(TYPE_LEN_PADDING, 0), 0]);
        let commit = (all.len() * 4) as u64;
        let p = subbuf(100, commit, &all, 16 + all.len() * 4 + 16);
        let events: Vec<_> = EventIter::new(p.as_slice()).unwrap().map(Result::unwrap).collect();
        let ts: Vec<u64> = events.iter().map(|e| e.timestamp).collect();
        let big = 100 + 3 + TIME_DELTA_MAX + 10 + 1;
        assert_eq!(ts, [100, 103, 103 + TIME_DELTA_MAX + 10, big, 5_000_000_002]);
        assert_eq!(events[1].payload, &[1, 0, 0, 0, 2, 0, 0, 0]);
        assert_eq!(events[3].payload.len(), 120);
        assert_eq!(events[4].payload, &9u32.to_ne_bytes());
    }

    #[test]
    fn resumes_at_an_offset_with_the_right_time() {
        let words = [header_word(1, 5), 1, header_word(1, 7), 2];
        let p = subbuf(10, 16, &words, 64);
        let mut it = EventIter::starting_at(p.as_slice(), 8).unwrap();
        let e = it.next().unwrap().unwrap();
        assert_eq!((e.timestamp, e.offset, e.payload), (22, 8, &2u32.to_ne_bytes()[..]));
        assert!(it.next().is_none());
        assert_eq!(it.position(), 16);
    }

    #[test]
    fn raw_items_show_time_records_and_padding() {
        let ext = TimeRecord::Extend(1 << 30).words();
        let abs = TimeRecord::Absolute(77).words();
        let words = [ext[0], ext[1], header_word(1, 0), 1, abs[0], abs[1], header_word(TYPE_LEN_PADDING, 0), 4];
        let p = subbuf(0, 32, &words, 64);
        let mut it = EventIter::new(p.as_slice()).unwrap();
        let mut records = Vec::new();
        while let Some(record) = it.next_record() {
            records.push(record.unwrap());
        }
        assert_eq!(records[0], PageRecord::TimeExtend { offset: 0, delta: 1 << 30 });
        assert!(matches!(records[1], PageRecord::Event(Event { timestamp: 0x4000_0000, offset: 8, .. })));
        assert_eq!(records[2], PageRecord::TimeStamp { offset: 16, timestamp: 77 });
        assert_eq!(records[3], PageRecord::Padding { offset: 24 });
        assert_eq!(records.len(), 4);
    }

    #[test]
    fn null_padding_ends_the_page_and_position_reaches_commit() {
        let words = [header_word(1, 0), 1, header_word(TYPE_LEN_PADDING, 0), 36];
        let p = subbuf(0, 48, &words, 64);
        let mut it = EventIter::new(p.as_slice()).unwrap();
        assert!(it.next().unwrap().is_ok());
        assert!(it.next().is_none());
        assert_eq!(it.position(), 48);
    }

    #[test]
    fn discarded_events_are_skipped_but_their_delta_counts() {
        let words = [header_word(TYPE_LEN_PADDING, 4), 8, 0, header_word(1, 1), 3];
        let p = subbuf(0, 20, &words, 64);
        let e: Vec<_> = EventIter::new(p.as_slice()).unwrap().map(Result::unwrap).collect();
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].timestamp, 5);
    }

    #[test]
    fn draining_hands_over_each_event_and_stops_at_a_malformed_one() {
        let words = [header_word(1, 0), 1, header_word(1, 2), 2, header_word(2, 0), 3];
        let p = subbuf(0, 24, &words, 64);
        let mut seen = Vec::new();
        let mut it = EventIter::new(p.as_slice()).unwrap();
        // The third event claims 8 bytes of payload where 4 are committed.
        assert_eq!(it.drain_events(|e| seen.push(e.timestamp)), Err(DecodeError::Truncated(16)));
        assert_eq!((seen, it.data_end()), (std::vec![0, 2], 24));
        let p = subbuf(0, 16, &words, 64);
        assert_eq!(EventIter::new(p.as_slice()).unwrap().drain_events(|_| {}), Ok(2));
    }

    #[test]
    fn missed_event_flags_are_reported() {
        let mut p = subbuf(0, 8, &[header_word(1, 0), 1], 64);
        assert!(crate::format::mark_missed_events(&mut p, 42));
        let it = EventIter::new(p.as_slice()).unwrap();
        assert_eq!(it.missed_events(), Lost::Count(42));
        assert_eq!(it.data_end(), 8);
    }

    #[test]
    fn malformed_pages_are_errors_not_panics() {
        assert_eq!(EventIter::new(&[0u8; 8][..]).err(), Some(DecodeError::ShortPage(8)));
        let p = subbuf(0, 1000, &[], 64);
        assert!(matches!(EventIter::new(p.as_slice()), Err(DecodeError::CommitTooLarge { .. })));
        // type_len 2 claims 8 bytes but only 4 are committed.
        let p = subbuf(0, 8, &[header_word(2, 0), 1], 64);
        let r: Vec<_> = EventIter::new(p.as_slice()).unwrap().collect();
        assert_eq!(r, [Err(DecodeError::Truncated(0))]);
        // A commit that is not a multiple of 4, with a stored lost count.
        let flags = crate::format::COMMIT_MISSED_EVENTS | crate::format::COMMIT_MISSED_STORED;
        let p = subbuf(0, 5 | flags, &[header_word(1, 0), 1], 64);
        assert_eq!(EventIter::new(p.as_slice()).err(), Some(DecodeError::MisalignedCommit(5)));
        // type_len 0 with a length word of 2.
        let p = subbuf(0, 8, &[header_word(0, 0), 2], 64);
        let r: Vec<_> = EventIter::new(p.as_slice()).unwrap().collect();
        assert_eq!(r, [Err(DecodeError::BadLength(0))]);
        // time extend cut in half.
        let p = subbuf(0, 4, &[header_word(TYPE_LEN_TIME_EXTEND, 0)], 64);
        let r: Vec<_> = EventIter::new(p.as_slice()).unwrap().collect();
        assert_eq!(r, [Err(DecodeError::Truncated(0))]);
    }

    #[test]
    fn absolute_stamps_take_high_bits_from_the_running_time() {
        let base = 3u64 << 59;
        assert_eq!(fix_absolute_stamp(5, base + 1), base + 5);
        // Going backwards within the 59-bit window means the window wrapped.
        assert_eq!(fix_absolute_stamp(5, base + 100), base + (1 << 59) + 5);
        assert_eq!(fix_absolute_stamp(5, 3), 5);
    }

    /// Words of a page from `(kind, size, delta)` records: mostly small data events whose size
    /// repeats (kinds 0-5 take the previous size, 6-7 a new one), and large events, time
    /// extends, absolute stamps, discarded events and a null padding for the rest.
    fn plausible_records(records: &[(u8, u32, u32)]) -> Vec<u32> {
        let mut words = Vec::new();
        let mut size = 4;
        for &(kind, new_size, delta) in records {
            match kind {
                0..=7 => {
                    if kind >= 6 {
                        size = new_size;
                    }
                    words.push(header_word(size, delta));
                    words.extend(core::iter::repeat_n(delta, size as usize));
                }
                8 => words.extend_from_slice(&[header_word(0, delta), 4 + 4 * new_size]),
                9 => words.extend_from_slice(&TimeRecord::Extend(TIME_DELTA_MAX + u64::from(delta)).words()),
                10 => words.extend_from_slice(&[header_word(TYPE_LEN_PADDING, delta + 1), 4 * new_size]),
                _ => words.extend_from_slice(&[header_word(TYPE_LEN_PADDING, 0), 0]),
            }
            if kind == 8 || kind == 10 {
                words.extend(core::iter::repeat_n(0, new_size as usize));
            }
        }
        words
    }

    /// What a page holds past `start`: each event's time, offsets and payload, then the outcome
    /// and where decoding stopped.
    type Decoded = (Vec<(u64, u32, u32, Vec<u8>)>, Result<u64, DecodeError>, usize);

    /// [`Decoded`] by [`EventIter::drain_events`] if `drain`, else by iterating.
    fn decoded<'p, P: PageSource + ?Sized>(
        page: &'p P,
        start: usize,
        drain: bool,
        bytes: impl Fn(&P::Payload<'p>) -> Vec<u8>,
    ) -> Option<Decoded> {
        let mut it = EventIter::starting_at(page, start).ok()?;
        let mut events = Vec::new();
        let outcome = if drain {
            it.drain_events(|e| events.push((e.timestamp, e.offset, e.end, bytes(&e.payload))))
        } else {
            it.by_ref()
                .try_for_each(|e| e.map(|e| events.push((e.timestamp, e.offset, e.end, bytes(&e.payload)))))
                .map(|()| events.len() as u64)
        };
        Some((events, outcome, it.position()))
    }

    proptest::proptest! {
        #![proptest_config(proptest_config())]
        /// The same arbitrary bytes, read from shared memory (the path consumers take), decode
        /// exactly as they do from a slice, drained as iterated, and never panic either.
        #[test]
        fn arbitrary_shared_pages_decode_like_slices(
            words in proptest::collection::vec(proptest::num::u32::ANY, 4..80),
            commit in proptest::num::u64::ANY,
            start in 0usize..300,
        ) {
            let mut bytes: Vec<u8> = words.iter().flat_map(|w| w.to_ne_bytes()).collect();
            bytes.truncate(bytes.len() & !7);
            // Bias the commit towards plausible lengths, flags included, misaligned ones too.
            let commit = commit & (crate::format::COMMIT_MISSED_EVENTS | crate::format::COMMIT_MISSED_STORED | 0x1ff);
            bytes[8..16].copy_from_slice(&commit.to_ne_bytes());
            let region = crate::shm::ShmRegion::alloc_zeroed(bytes.len());
            region.store_bytes(0, &bytes);
            let shm = ShmPage::new(&region, 0, bytes.len()).unwrap();
            let from_shm = EventIter::starting_at(&shm, start).map(|it| {
                (it.missed_events(), it.map(|e| e.map(|e| (e.timestamp, e.offset, e.payload.to_vec()))).collect::<Vec<_>>())
            });
            let from_slice = EventIter::starting_at(bytes.as_slice(), start).map(|it| {
                (it.missed_events(), it.map(|e| e.map(|e| (e.timestamp, e.offset, e.payload.to_vec()))).collect::<Vec<_>>())
            });
            proptest::prop_assert_eq!(from_shm, from_slice);
            proptest::prop_assert_eq!(decoded(&shm, start, true, ShmBytes::to_vec), decoded(&shm, start, false, ShmBytes::to_vec));
        }

        /// Draining (the consumers' path, with its predicted-size runs) hands over exactly the
        /// events iterating yields, ends with the same error and at the same position, from a
        /// slice and from shared memory, on pages of plausible records: runs of one size, size
        /// changes, large events, time records, discarded events and padding, cut anywhere.
        #[test]
        fn draining_matches_iterating(
            records in proptest::collection::vec((0u8..12, 1u32..=TYPE_LEN_DATA_MAX, 0u32..1000), 0..120),
            cut in proptest::num::usize::ANY,
            start in 0usize..600,
        ) {
            let words = plausible_records(&records);
            let data_len = (words.len() * 4).min(4080);
            let commit = match cut % 3 {
                0 => data_len,
                _ => (cut / 3 % (data_len + 1)) & !3,
            } as u64;
            let bytes = subbuf(7, commit, &words[..data_len / 4], 16 + 4080);
            let region = crate::shm::ShmRegion::alloc_zeroed(bytes.len());
            region.store_bytes(0, &bytes);
            let shm = ShmPage::new(&region, 0, bytes.len()).unwrap();
            proptest::prop_assert_eq!(decoded(bytes.as_slice(), start, true, |p| p.to_vec()), decoded(bytes.as_slice(), start, false, |p| p.to_vec()));
            proptest::prop_assert_eq!(decoded(&shm, start, true, ShmBytes::to_vec), decoded(&shm, start, false, ShmBytes::to_vec));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300), start in 0usize..300) {
            if let Ok(it) = EventIter::starting_at(bytes.as_slice(), start) {
                let mut last = 0;
                for e in it.flatten() {
                    proptest::prop_assert!(e.end as usize <= bytes.len());
                    proptest::prop_assert!(e.offset as usize >= last);
                    proptest::prop_assert!(e.offset as usize >= start);
                    last = e.end as usize;
                }
            }
        }
    }
}
