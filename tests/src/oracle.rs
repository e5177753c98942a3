//! A deliberately simple model of one CPU's buffer, to check ring-core against.
//!
//! No atomics, no links, no bytes: pages are vectors of events in a `VecDeque`, and the rules are
//! written down the plainest way: an event takes its layout size (plus a time extend when the
//! delta needs one) on the tail page; when it does not fit, the tail page closes and the writer
//! moves on, pushing out the oldest page (overwrite) or dropping the event (drop mode) if the ring
//! is full. Nested writes are staged per level and merged by timestamp at the outermost end. The
//! model predicts every event a consumer sees, every lost-event report, and every counter.

use ring_core::format::{TimeEncoding, time_encoding};
use ring_core::nest::{LANE_WORDS, NEST_LEVELS};
use ring_core::{Geometry, Mode};
use std::collections::VecDeque;

/// One event as the model knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelEvent {
    /// Timestamp the reader must see.
    pub ts: u64,
    /// Payload as written (the reader sees it zero-padded to 4 bytes).
    pub payload: Vec<u8>,
}

#[derive(Debug, Clone, Default)]
struct Page {
    events: Vec<ModelEvent>,
    /// The last event is an open (not yet committed) reservation.
    open_last: bool,
    used: u32,
    closed: bool,
    first_seq: u64,
    end_seq: u64,
}

impl Page {
    fn committed(&self) -> &[ModelEvent] {
        &self.events[..self.events.len() - usize::from(self.open_last)]
    }
}

/// A payload as a reader decodes it: zero-padded to a multiple of 4 bytes, at least 4.
pub fn padded(payload: &[u8]) -> Vec<u8> {
    let mut p = payload.to_vec();
    p.resize(payload.len().max(1).next_multiple_of(4), 0);
    p
}

/// Something a consumer is shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// Events lost before the next event.
    Lost(u64),
    /// An event.
    Event(ModelEvent),
}

/// Counters the model predicts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ModelStats {
    /// Committed events.
    pub entries: u64,
    /// Overwritten events.
    pub overrun: u64,
    /// Dropped events.
    pub dropped: u64,
    /// Events on reader pages given back.
    pub read: u64,
    /// Overwritten pages.
    pub pages_lost: u64,
}

#[derive(Debug, Clone)]
struct Staged {
    ts: u64,
    level: usize,
    order: u64,
    payload: Vec<u8>,
}

/// An open reservation in the model.
#[derive(Debug, Clone)]
enum Open {
    /// The outermost one: its event sits on a page already.
    Ring { undo_used: u32, undo_ts: u64 },
    /// A nested one: staged when committed.
    Lane { level: usize, ts: u64 },
}

/// The model.
#[derive(Debug)]
pub struct Oracle {
    geo: Geometry,
    mode: Mode,
    /// Data pages, head first; the last is the tail page while the writer is in the ring.
    ring: VecDeque<Page>,
    reader: Page,
    /// Events of the reader page the consumer has read.
    consumed: usize,
    /// `consumed` as of the last swap request (what `reader.read` says).
    reported: usize,
    writer_on_reader: bool,
    last_ts: u64,
    stats: ModelStats,
    staged: Vec<Staged>,
    lane_words: [usize; NEST_LEVELS],
    lane_drops: u64,
    order: u64,
    open: Vec<Open>,
}

/// What the model says a write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOutcome {
    /// Recorded (or staged).
    Ok,
    /// Dropped and counted.
    Dropped,
    /// Refused: too large for a nested staging lane.
    NestedTooLarge,
    /// Refused: too large for a sub-buffer.
    TooLarge,
}

impl Oracle {
    /// A model of a fresh buffer.
    pub fn new(geo: Geometry, mode: Mode) -> Self {
        let first = Page::default();
        Self {
            geo,
            mode,
            ring: VecDeque::from([first]),
            reader: Page::default(),
            consumed: 0,
            reported: 0,
            writer_on_reader: false,
            last_ts: 0,
            stats: ModelStats::default(),
            staged: Vec::new(),
            lane_words: [0; NEST_LEVELS],
            lane_drops: 0,
            order: 0,
            open: Vec::new(),
        }
    }

    /// Counters.
    pub fn stats(&self) -> ModelStats {
        self.stats
    }

    /// Events committed and neither read nor overwritten (the reader page counts until given back).
    pub fn in_buffer(&self) -> u64 {
        (self.reader.events.len() + self.ring.iter().map(|p| p.events.len()).sum::<usize>()) as u64
    }

    /// Depth of open reservations.
    pub fn depth(&self) -> usize {
        self.open.len()
    }

    fn seq(&self) -> u64 {
        self.stats.entries + self.stats.dropped
    }

    fn tail(&mut self) -> &mut Page {
        if self.writer_on_reader { &mut self.reader } else { self.ring.back_mut().expect("writer in ring") }
    }

    fn close_tail(&mut self) {
        let seq = self.seq();
        let page = self.tail();
        if !page.closed {
            page.closed = true;
            page.end_seq = seq;
        }
    }

    /// Moves to a new page; false if the ring is full in drop mode.
    fn move_tail(&mut self) -> bool {
        self.close_tail();
        let slots = self.geo.nr_slots() as usize;
        if self.writer_on_reader {
            self.writer_on_reader = false;
        } else if self.ring.len() == slots {
            if self.mode == Mode::Drop {
                return false;
            }
            let lost = self.ring.pop_front().expect("full ring");
            self.stats.overrun += lost.events.len() as u64;
            self.stats.pages_lost += 1;
        }
        let first_seq = self.seq();
        self.ring.push_back(Page { first_seq, ..Page::default() });
        true
    }

    /// Puts an event on the tail page; `None` if it was dropped.
    fn ring_reserve(&mut self, ts: u64, payload: &[u8]) -> Option<(u32, u64)> {
        let size = self.geo.layout(payload.len()).expect("size checked by caller").size;
        let t = ts.max(self.last_ts);
        let last = self.last_ts;
        let data = self.geo.data_size();
        let page = self.tail();
        let need = if page.used == 0 {
            size
        } else {
            match time_encoding(last, t) {
                TimeEncoding::Delta(_) => size,
                TimeEncoding::Extend(_) => size + 8,
                TimeEncoding::NewPage => u32::MAX,
            }
        };
        let undo = page.used;
        let (undo_used, undo_ts) = if page.closed || u64::from(page.used) + u64::from(need) > u64::from(data) {
            if !self.move_tail() {
                self.stats.dropped += 1;
                return None;
            }
            (0, last)
        } else {
            (undo, last)
        };
        let page = self.tail();
        page.used += if page.used == 0 { size } else { need };
        page.events.push(ModelEvent { ts: t, payload: padded(payload) });
        self.last_ts = t;
        Some((undo_used, undo_ts))
    }

    fn lane_record_words(len: usize) -> usize {
        3 + len.max(1).div_ceil(4)
    }

    /// A whole write (`reserve` + `commit`) of `payload` at time `ts`.
    pub fn write(&mut self, ts: u64, payload: &[u8]) -> WriteOutcome {
        if self.geo.layout(payload.len()).is_none() {
            return WriteOutcome::TooLarge;
        }
        if let Some(level) = self.nested_level() {
            return self.stage(level, ts, payload);
        }
        let outcome = match self.ring_reserve(ts, payload) {
            Some(_) => {
                self.stats.entries += 1;
                WriteOutcome::Ok
            }
            None => WriteOutcome::Dropped,
        };
        self.end_outer();
        outcome
    }

    fn nested_level(&self) -> Option<usize> {
        (!self.open.is_empty()).then(|| self.open.len() - 1)
    }

    /// Whether lane `level` has room for a staged record of `len` payload bytes: its size in
    /// words, or what the write returns (a full lane counted as a drop).
    fn lane_room(&mut self, level: usize, len: usize) -> Result<usize, WriteOutcome> {
        if level >= NEST_LEVELS {
            self.lane_drops += 1;
            return Err(WriteOutcome::Dropped);
        }
        let words = Self::lane_record_words(len);
        if words > LANE_WORDS {
            return Err(WriteOutcome::NestedTooLarge);
        }
        if self.lane_words[level] + words > LANE_WORDS {
            self.lane_drops += 1;
            return Err(WriteOutcome::Dropped);
        }
        Ok(words)
    }

    fn stage(&mut self, level: usize, ts: u64, payload: &[u8]) -> WriteOutcome {
        let words = match self.lane_room(level, payload.len()) {
            Ok(words) => words,
            Err(outcome) => return outcome,
        };
        self.lane_words[level] += words;
        self.order += 1;
        self.staged.push(Staged { ts, level, order: self.order, payload: payload.to_vec() });
        WriteOutcome::Ok
    }

    /// Opens a reservation of `payload` at time `ts` (its bytes are what will be committed).
    pub fn open(&mut self, ts: u64, payload: &[u8]) -> WriteOutcome {
        if self.geo.layout(payload.len()).is_none() {
            return WriteOutcome::TooLarge;
        }
        if let Some(level) = self.nested_level() {
            if let Err(outcome) = self.lane_room(level, payload.len()) {
                return outcome;
            }
            self.open.push(Open::Lane { level, ts });
            return WriteOutcome::Ok;
        }
        match self.ring_reserve(ts, payload) {
            Some((undo_used, undo_ts)) => {
                self.tail().open_last = true;
                self.open.push(Open::Ring { undo_used, undo_ts });
                WriteOutcome::Ok
            }
            None => {
                self.end_outer();
                WriteOutcome::Dropped
            }
        }
    }

    /// Commits (or discards) the innermost open reservation, whose payload is `payload`.
    pub fn close(&mut self, commit: bool, payload: &[u8]) {
        match self.open.pop().expect("an open reservation") {
            Open::Lane { level, ts } => {
                if commit {
                    self.stage(level, ts, payload);
                }
            }
            Open::Ring { undo_used, undo_ts } => {
                self.tail().open_last = false;
                if commit {
                    self.stats.entries += 1;
                } else {
                    let page = self.tail();
                    page.events.pop();
                    page.used = undo_used;
                    self.last_ts = undo_ts;
                }
                self.end_outer();
            }
        }
    }

    /// The outermost context ends: staged events go to the ring in timestamp order.
    fn end_outer(&mut self) {
        let mut staged = std::mem::take(&mut self.staged);
        staged.sort_by_key(|s| (s.ts, s.level, s.order));
        for s in staged {
            if self.ring_reserve(s.ts, &s.payload).is_some() {
                self.stats.entries += 1;
            }
        }
        self.lane_words = [0; NEST_LEVELS];
        if self.lane_drops > 0 {
            self.close_tail();
            self.stats.dropped += self.lane_drops;
            self.lane_drops = 0;
        }
    }

    /// A consumer reads up to `k` events: from the reader page, swapping for the next page each
    /// time the current one is used up, and reporting losses as it goes.
    pub fn read(&mut self, k: usize) -> Vec<Seen> {
        let mut out = Vec::new();
        let mut remaining = k;
        loop {
            let available = &self.reader.committed()[self.consumed..];
            let take = available.len().min(remaining);
            out.extend(available[..take].iter().cloned().map(Seen::Event));
            self.consumed += take;
            remaining -= take;
            if let Some(lost) = self.swap() {
                if lost > 0 {
                    out.push(Seen::Lost(lost));
                }
                if remaining > 0 {
                    continue;
                }
            }
            return out;
        }
    }

    /// A swap request after the consumer read `consumed` events. Returns the lost count if the
    /// reader page changed, `None` if it was kept.
    fn swap(&mut self) -> Option<u64> {
        self.reported = self.consumed;
        if self.consumed < self.reader.events.len() || self.writer_on_reader {
            return None;
        }
        let new = self.ring.pop_front().expect("writer in ring means a data page");
        let old = std::mem::replace(&mut self.reader, new);
        self.stats.read += old.events.len() as u64;
        self.consumed = 0;
        self.reported = 0;
        if self.ring.is_empty() {
            self.writer_on_reader = true;
        }
        Some(self.reader.first_seq - old.end_seq)
    }

    /// What a non-consuming snapshot shows: the reader page from the last reported position, then
    /// the ring.
    pub fn snapshot(&self) -> Vec<ModelEvent> {
        let mut out: Vec<ModelEvent> = self.reader.committed()[self.reported..].to_vec();
        for page in &self.ring {
            out.extend(page.committed().iter().cloned());
        }
        out
    }
}
