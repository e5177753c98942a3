//! One CPU's buffer: the shared memory, the writer-private links, and the writer and swapper state.

use crate::clock::Clock;
use crate::error::GeometryError;
use crate::format::{SUBBUF_COMMIT_OFFSET, SUBBUF_HEADER_SIZE, SUBBUF_TIMESTAMP_OFFSET};
use crate::geometry::{Geometry, Mode};
use crate::link::{LinkWord, SubBufLink};
use crate::meta::{MetaPage, off};
use crate::nest::NestLanes;
use crate::shm::ShmRegion;
use crate::sync::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use crate::view::SharedView;

/// Geometry and full-ring behaviour of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Config {
    /// Sub-buffer size and count.
    pub geometry: Geometry,
    /// What happens when the ring is full.
    pub mode: Mode,
}

/// Where the writer-private links live.
#[derive(Debug)]
pub(crate) enum Links<'a> {
    Borrowed(&'a [SubBufLink]),
    #[cfg(feature = "std")]
    Owned(std::boxed::Box<[SubBufLink]>),
}

impl core::ops::Deref for Links<'_> {
    type Target = [SubBufLink];
    fn deref(&self) -> &[SubBufLink] {
        match self {
            Links::Borrowed(l) => l,
            #[cfg(feature = "std")]
            Links::Owned(l) => l,
        }
    }
}

/// Writer state. Written only by the CPU's writer (the outermost context, see [`crate::nest`]);
/// `tail` and `push_next` are also read by swappers.
#[derive(Debug)]
pub(crate) struct WriterState {
    /// Nesting depth of open reservations on this CPU; 0 means no writer is active.
    pub depth: AtomicU32,
    /// Set by nested writers when they stage an event or drop one.
    pub nest_pending: AtomicU32,
    pub enabled: AtomicBool,
    /// Sub-buffer the writer is on.
    pub tail: AtomicU32,
    /// Ring slot of `tail` (the slot it was in when the writer moved onto it).
    pub slot: AtomicU32,
    /// Bytes used in the tail page's data area; `PAGE_CLOSED` once the page is closed.
    pub off: AtomicU32,
    /// Byte offset, in the sub-buffer array, of the tail page's data area. Only ever holds the
    /// data-area offset of a real sub-buffer (the fast path relies on it for its bounds).
    pub page_data: AtomicU64,
    /// Timestamp of the last event written.
    pub last_ts: AtomicU64,
    /// Events committed.
    pub entries: AtomicU64,
    /// Events dropped.
    pub dropped: AtomicU64,
    /// Events lost to overwrite.
    pub overrun: AtomicU64,
    pub pages_lost: AtomicU64,
    pub pages_touched: AtomicU64,
    /// `entries` when the writer moved onto the tail page.
    pub page_entries_base: AtomicU64,
    /// During a head push: the pushed page's `next` word as seen before the push, so a swapper can
    /// finish the push for a preempted writer.
    pub push_next: AtomicU64,
}

/// Swapper state, only touched while holding `lock`.
#[derive(Debug)]
pub(crate) struct SwapperState {
    pub lock: AtomicBool,
    /// Sub-buffer id of the reader page.
    pub reader: AtomicU32,
    /// A ring page at or before the page preceding the head, where head searches start.
    pub hint: AtomicU32,
    /// Ring slot of `hint`.
    pub hint_slot: AtomicU32,
    /// Events consumed (entries of reader pages given back).
    pub read: AtomicU64,
    pub swaps: AtomicU64,
}

/// One CPU's trace buffer: a ring of sub-buffers plus a reader page, in shared memory, with a
/// lockless single writer (nesting allowed) and swappers on any thread.
///
/// Create one per CPU with [`CpuBuffer::new`] over memory handed to it (the hypervisor case), or
/// [`CpuBuffer::with_heap`] (std). Write with [`CpuBuffer::write`] or [`CpuBuffer::reserve`];
/// consume with [`CpuBuffer::swap_reader_page`] and [`CpuBuffer::view`].
pub struct CpuBuffer<'a, C: Clock> {
    pub(crate) geo: Geometry,
    pub(crate) mode: Mode,
    pub(crate) meta: ShmRegion,
    pub(crate) data: ShmRegion,
    pub(crate) links: Links<'a>,
    pub(crate) clock: C,
    pub(crate) w: WriterState,
    pub(crate) sw: SwapperState,
    pub(crate) lanes: NestLanes,
}

impl<C: Clock> core::fmt::Debug for CpuBuffer<'_, C> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("CpuBuffer").field("geometry", &self.geo).field("mode", &self.mode).finish_non_exhaustive()
    }
}

/// Counters of one CPU's buffer.
///
/// At any quiescent point (no write or swap in progress) every event handed to the writer is
/// accounted for: `entries + dropped == read + overrun + dropped + in_buffer`, that is
/// `entries == read + overrun + in_buffer`, where `in_buffer` counts events on the reader page
/// and in the ring.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Events committed to the ring.
    pub entries: u64,
    /// Events lost to overwrite.
    pub overrun: u64,
    /// Events refused because the ring was full (producer/consumer mode) or a nested staging lane
    /// was full.
    pub dropped: u64,
    /// Events consumed through reader-page swaps.
    pub read: u64,
    /// Pages lost to overwrite.
    pub pages_lost: u64,
    /// Pages the writer moved onto.
    pub pages_touched: u64,
    /// Reader-page swaps.
    pub swaps: u64,
}

impl Stats {
    /// Events committed but neither consumed nor overwritten.
    pub fn in_buffer(&self) -> u64 {
        self.entries.saturating_sub(self.read + self.overrun)
    }
}

impl<'a, C: Clock> CpuBuffer<'a, C> {
    /// Builds a buffer over `meta` (the meta area) and `data` (the sub-buffer array), with one
    /// writer-private link per sub-buffer in `links`. Initialises all of it: the meta area, every
    /// sub-buffer header, the ring.
    pub fn new(
        config: Config,
        meta: ShmRegion,
        data: ShmRegion,
        links: &'a [SubBufLink],
        clock: C,
    ) -> Result<Self, GeometryError> {
        Self::build(config, meta, data, Links::Borrowed(links), clock)
    }

    pub(crate) fn build(
        config: Config,
        meta: ShmRegion,
        data: ShmRegion,
        links: Links<'a>,
        clock: C,
    ) -> Result<Self, GeometryError> {
        let geo = config.geometry;
        if meta.read_only() || data.read_only() {
            return Err(GeometryError::ReadOnly);
        }
        if meta.len() < geo.meta_size() {
            return Err(GeometryError::MetaTooSmall { need: geo.meta_size(), got: meta.len() });
        }
        if data.len() < geo.data_len() {
            return Err(GeometryError::DataTooSmall { need: geo.data_len(), got: data.len() });
        }
        if links.len() != geo.nr_subbufs() as usize {
            return Err(GeometryError::LinkCount { need: geo.nr_subbufs() as usize, got: links.len() });
        }
        let buf = Self {
            geo,
            mode: config.mode,
            meta,
            data,
            links,
            clock,
            w: WriterState {
                depth: AtomicU32::new(0),
                nest_pending: AtomicU32::new(0),
                enabled: AtomicBool::new(true),
                tail: AtomicU32::new(1),
                slot: AtomicU32::new(0),
                off: AtomicU32::new(0),
                page_data: AtomicU64::new(0),
                last_ts: AtomicU64::new(0),
                entries: AtomicU64::new(0),
                dropped: AtomicU64::new(0),
                overrun: AtomicU64::new(0),
                pages_lost: AtomicU64::new(0),
                pages_touched: AtomicU64::new(0),
                page_entries_base: AtomicU64::new(0),
                push_next: AtomicU64::new(0),
            },
            sw: SwapperState {
                lock: AtomicBool::new(false),
                reader: AtomicU32::new(0),
                hint: AtomicU32::new(0),
                hint_slot: AtomicU32::new(0),
                read: AtomicU64::new(0),
                swaps: AtomicU64::new(0),
            },
            lanes: NestLanes::new(),
        };
        buf.init_ring();
        Ok(buf)
    }

    /// Puts the ring, the meta area and every counter in their initial state.
    fn init_ring(&self) {
        let n = self.geo.nr_subbufs();
        let last = n - 1;
        self.meta_page().init(self.geo.meta_size() as u32, self.geo.subbuf_size(), n);
        for id in 0..n {
            let base = self.geo.subbuf_offset(id);
            self.data.store_u64(base + SUBBUF_TIMESTAMP_OFFSET, 0, Ordering::Relaxed);
            self.data.store_u64(base + SUBBUF_COMMIT_OFFSET, 0, Ordering::Relaxed);
            let link = &self.links[id as usize];
            // Ring: 1 -> 2 -> ... -> n-1 -> 1, head at 1 (flag on n-1's link). Page 0 is the reader.
            let next = match id {
                0 => LinkWord::to(0),
                i if i == last => LinkWord::to(1).as_head(),
                i => LinkWord::to(i + 1),
            };
            link.store_next(next, Ordering::Relaxed);
            link.first_seq.store(0, Ordering::Relaxed);
            link.end_seq.store(0, Ordering::Relaxed);
            link.entries.store(0, Ordering::Relaxed);
        }
        let w = &self.w;
        w.depth.store(0, Ordering::Relaxed);
        w.nest_pending.store(0, Ordering::Relaxed);
        w.tail.store(1, Ordering::Relaxed);
        w.slot.store(0, Ordering::Relaxed);
        w.off.store(0, Ordering::Relaxed);
        w.page_data.store((self.geo.subbuf_offset(1) + SUBBUF_HEADER_SIZE) as u64, Ordering::Relaxed);
        w.last_ts.store(0, Ordering::Relaxed);
        for c in [&w.entries, &w.dropped, &w.overrun, &w.pages_lost, &w.pages_touched, &w.page_entries_base] {
            c.store(0, Ordering::Relaxed);
        }
        self.sw.reader.store(0, Ordering::Relaxed);
        self.sw.hint.store(last, Ordering::Relaxed);
        self.sw.hint_slot.store(self.geo.nr_slots() - 1, Ordering::Relaxed);
        self.sw.read.store(0, Ordering::Relaxed);
        self.sw.swaps.store(0, Ordering::Relaxed);
        self.lanes.reset();
    }

    /// Empties the buffer: every page, counter and the meta area return to their initial state.
    /// Takes `&mut self`, so no writer or swapper can be running.
    pub fn reset(&mut self) {
        self.init_ring();
    }

    /// The buffer's geometry.
    pub fn geometry(&self) -> Geometry {
        self.geo
    }

    /// The buffer's full-ring behaviour.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The clock events are stamped with.
    pub fn clock(&self) -> &C {
        &self.clock
    }

    /// Turns recording on or off. Writes started before the change may still complete.
    pub fn set_enabled(&self, enabled: bool) {
        // Ordering: Relaxed; enabling is advisory and carries no data.
        self.w.enabled.store(enabled, Ordering::Relaxed);
    }

    /// Whether recording is on.
    pub fn is_enabled(&self) -> bool {
        // Ordering: Relaxed, see `set_enabled`.
        self.w.enabled.load(Ordering::Relaxed)
    }

    /// The consumer's view of this buffer's shared memory.
    pub fn view(&self) -> SharedView<'_> {
        SharedView::from_trusted(MetaPage::new(&self.meta).expect("meta size checked at construction"), &self.data, self.geo)
    }

    /// The meta area.
    pub(crate) fn meta_page(&self) -> MetaPage<'_> {
        MetaPage::new(&self.meta).expect("meta size checked at construction")
    }

    /// The shared regions (meta, sub-buffers), e.g. to hand their backing to another process.
    pub fn regions(&self) -> (&ShmRegion, &ShmRegion) {
        (&self.meta, &self.data)
    }

    /// Current counters. Exact at a quiescent point; during activity each field is a recent value.
    pub fn stats(&self) -> Stats {
        // Ordering: Relaxed throughout; these are statistics, exact only when quiescent (which the
        // caller establishes by joining threads, i.e. with its own happens-before).
        let w = &self.w;
        Stats {
            entries: w.entries.load(Ordering::Relaxed),
            overrun: w.overrun.load(Ordering::Relaxed),
            dropped: w.dropped.load(Ordering::Relaxed),
            read: self.sw.read.load(Ordering::Relaxed),
            pages_lost: w.pages_lost.load(Ordering::Relaxed),
            pages_touched: w.pages_touched.load(Ordering::Relaxed),
            swaps: self.sw.swaps.load(Ordering::Relaxed),
        }
    }

    /// Counter stored in the meta area at `field`, bumped by the writer (single writer, so a plain
    /// store of the private mirror's new value).
    #[inline]
    pub(crate) fn publish_counter(&self, field: usize, value: u64) {
        self.meta.store_u64(field, value, Ordering::Relaxed);
    }

    /// Advances `ext.head_slot` by one (the head moved one slot: a push or a swap).
    pub(crate) fn advance_head_slot(&self) {
        let slots = self.geo.nr_slots();
        // Ordering: Release, so a snapshot reader that sees the new head slot (Acquire) also sees
        // the page changes that made the old head invalid.
        self.meta.update_u32(off::EXT_HEAD_SLOT, Ordering::Release, |s| (s + 1) % slots);
    }
}

#[cfg(feature = "std")]
impl<C: Clock> CpuBuffer<'static, C> {
    /// Builds a buffer in heap memory (meta area, sub-buffers and links).
    pub fn with_heap(config: Config, clock: C) -> Result<Self, GeometryError> {
        let geo = config.geometry;
        let meta = ShmRegion::alloc_zeroed(geo.meta_size());
        let data = ShmRegion::alloc_zeroed(geo.data_len());
        let links = (0..geo.nr_subbufs()).map(|_| SubBufLink::new()).collect();
        Self::build(config, meta, data, Links::Owned(links), clock)
    }
}
