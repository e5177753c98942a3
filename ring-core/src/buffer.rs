//! One CPU's buffer: the shared memory, the writer-private links, and the writer and swapper state.

use crate::clock::Clock;
use crate::doorbell::{Doorbell, NoDoorbell};
use crate::error::GeometryError;
use crate::format::{SUBBUF_COMMIT_OFFSET, SUBBUF_HEADER_SIZE, SUBBUF_TIMESTAMP_OFFSET};
use crate::geometry::{Geometry, Mode};
use crate::link::{LinkWord, SubBufLink};
use crate::meta::{MetaPage, off};
use crate::nest::NestLanes;
use crate::shm::ShmRegion;
use crate::sync::local::{AtomicBool as LocalBool, AtomicU32 as LocalU32, AtomicU64 as LocalU64};
use crate::sync::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use crate::view::SharedView;
use core::mem::offset_of;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

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

/// Writer state that only the CPU's writer (the outermost context, see [`crate::nest`]) touches,
/// the per-event words first. Other threads only read the counters, as statistics, and store
/// `enabled`; so none of it is a tracked atomic under loom ([`crate::sync::local`]).
///
/// Cache-line aligned, like [`WriterShared`] and [`SwapperState`], so that a swapper polling for
/// pages on another CPU never shares a line with the words the writer stores on every event.
#[derive(Debug)]
#[repr(C, align(64))]
pub(crate) struct WriterState {
    /// Nesting depth of open reservations on this CPU; 0 means no writer is active.
    pub depth: LocalU32,
    /// Set by nested writers when they stage an event or drop one.
    pub nest_pending: LocalU32,
    /// Reservations that ended before one they enclose (out of order), as a bit per depth they
    /// found: see [`CpuBuffer::end_reservation`].
    pub ended_early: LocalU32,
    /// Bytes used in the tail page's data area; `PAGE_CLOSED` once the page is closed.
    pub off: LocalU32,
    pub enabled: LocalBool,
    /// Byte offset, in the sub-buffer array, of the tail page's data area. Only ever holds the
    /// data-area offset of a real sub-buffer (the fast path relies on it for its bounds).
    pub page_data: LocalU64,
    /// Timestamp of the last event written.
    pub last_ts: LocalU64,
    /// Events committed.
    pub entries: LocalU64,
    /// Events dropped.
    pub dropped: LocalU64,
    /// Events lost to overwrite.
    pub overrun: LocalU64,
    pub pages_lost: LocalU64,
    pub pages_touched: LocalU64,
    /// `entries` when the writer moved onto the tail page.
    pub page_entries_base: LocalU64,
    /// An outermost [`crate::Reservation`] is open (reserved in the ring, not yet committed or
    /// discarded), and where to roll the writer back to if its context is found abandoned: see
    /// [`crate::Writer`].
    pub open_outer: LocalBool,
    pub open_undo_off: LocalU32,
    pub open_undo_ts: LocalU64,
    /// Writing contexts found open when their claimed writer was released, and closed.
    pub abandoned: LocalU64,
}

/// The writer's words that swappers and consumers read: written by the writer only when it moves
/// onto a page (`doorbell` also by the consumer arming it), so apart from the per-event
/// [`WriterState`].
#[derive(Debug)]
#[repr(C, align(64))]
pub(crate) struct WriterShared {
    /// Sub-buffer the writer is on.
    pub tail: AtomicU32,
    /// Ring slot of `tail` (the slot it was in when the writer moved onto it); swappers read it to
    /// count full pages, so it is a tracked atomic under loom.
    pub slot: AtomicU32,
    /// Doorbell arming: 0 when no consumer waits, else its watermark in full pages plus one
    /// (see [`crate::doorbell`]).
    pub doorbell: AtomicU32,
    /// During a head push: the pushed page's `next` word as seen before the push, so a swapper can
    /// finish the push for a preempted writer.
    pub push_next: AtomicU64,
    /// A [`crate::Writer`] is claimed ([`CpuBuffer::writer`]); only one exists at a time.
    pub claimed: AtomicBool,
}

/// Swapper state, only touched while holding `lock`.
#[derive(Debug)]
#[repr(C, align(64))]
pub(crate) struct SwapperState {
    pub lock: AtomicBool,
    /// Sub-buffer id of the reader page.
    pub reader: AtomicU32,
    /// Bytes of the reader page's data consumed: the last `read` a swap request gave back for it
    /// (0 for a new reader page). Always a record boundary: requests are checked against it
    /// (`CpuBuffer::check_read`), so the meta area's `reader.read`, a copy of it, is one too.
    pub reader_read: AtomicU32,
    /// A ring page at or before the page preceding the head, where head searches start.
    pub hint: AtomicU32,
    /// Ring slot of `hint`.
    pub hint_slot: AtomicU32,
    /// Events consumed (entries of reader pages given back).
    pub read: AtomicU64,
    pub swaps: AtomicU64,
    /// Ring slot of the head page, moved by the writer (push) and swappers; `ext.head_slot` is a
    /// published copy (see `advance_head_slot`).
    pub head_slot: AtomicU32,
    /// The last even value of the meta area's `reader_seq` (the swapper's own copy, so a corrupted
    /// meta area cannot confuse it).
    pub reader_seq: AtomicU32,
}

/// One CPU's trace buffer: a ring of sub-buffers plus a reader page, in shared memory, with a
/// lockless single writer (nesting allowed) and swappers on any thread.
///
/// Create one per CPU with [`CpuBuffer::new`] over memory handed to it (the hypervisor case), or
/// [`CpuBuffer::with_heap`] (std). Write through its one [`crate::Writer`] ([`CpuBuffer::writer`]);
/// consume with [`CpuBuffer::swap_reader_page`] and [`CpuBuffer::view`].
///
/// Laid out by who writes what: the fields set at construction first, then the writer's per-event
/// state and its clock (which a counter clock advances per event), then what swappers read and
/// write, each group starting on its own cache line.
///
/// # Examples
///
/// Write events, then consume them in the same process, each swap request handing back what the
/// consumer read of its reader page:
///
/// ```
/// use ring_core::{Config, CpuBuffer, Cursor, Geometry, ManualClock, Mode, Record};
///
/// let config = Config { geometry: Geometry::new(4096, 4)?, mode: Mode::Overwrite };
/// let buffer = CpuBuffer::with_heap(config, ManualClock::new(100))?;
/// let writer = buffer.writer()?;
/// writer.write(b"first")?;
/// writer.write(b"second")?;
///
/// let mut payloads = Vec::new();
/// let mut cursor = Cursor::default();
/// let events = cursor.drain(&buffer.view(), |read| buffer.swap_reader_page(read), |record| {
///     if let Record::Event(event) = record {
///         payloads.push(event.payload.to_vec());
///     }
/// })?;
/// assert_eq!(events, 2);
/// // Payloads come back padded with zeros to a multiple of 4 bytes.
/// assert_eq!(payloads, [b"first\0\0\0", b"second\0\0"]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[repr(C)]
pub struct CpuBuffer<'a, C: Clock, D: Doorbell = NoDoorbell> {
    pub(crate) geometry: Geometry,
    pub(crate) mode: Mode,
    pub(crate) meta: ShmRegion,
    pub(crate) data: ShmRegion,
    pub(crate) links: Links<'a>,
    pub(crate) doorbell: D,
    pub(crate) writer_state: WriterState,
    pub(crate) clock: C,
    pub(crate) lanes: NestLanes,
    pub(crate) writer_shared: WriterShared,
    pub(crate) swapper: SwapperState,
}

impl<C: Clock, D: Doorbell> core::fmt::Debug for CpuBuffer<'_, C, D> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("CpuBuffer").field("geometry", &self.geometry).field("mode", &self.mode).finish_non_exhaustive()
    }
}

/// Counters of one CPU's buffer: the one type for them, wherever they come from.
///
/// At any quiescent point (no write or swap in progress) every event handed to the writer is
/// accounted for: `entries + dropped == read + overrun + dropped + in_buffer`, that is
/// `entries == read + overrun + in_buffer`, where `in_buffer` counts events on the reader page
/// and in the ring.
///
/// Who fills what: [`CpuBuffer::stats`] every field, exactly; the meta area
/// ([`crate::meta::MetaPage::counters`]) every field but `full_pages`, which it does not hold
/// (0), with `entries` lagging (docs/abi.md §2.1); a producer's `STATS` answer every field (this
/// is its body's layout, docs/abi.md §5: ring-mmap's `StatsBody` names it); the Linux kernel's
/// tracefs `stats` file (ring-mmap's `KernelStats`) the event counts only.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
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
    /// Pages finished and not yet given back by the consumer ([`CpuBuffer::full_pages`]) when
    /// read: a level, not a count.
    pub full_pages: u64,
}

const _: () = assert!(size_of::<Stats>() == 64);
const _: () = assert!(offset_of!(Stats, entries) == 0);
const _: () = assert!(offset_of!(Stats, overrun) == 8);
const _: () = assert!(offset_of!(Stats, dropped) == 16);
const _: () = assert!(offset_of!(Stats, read) == 24);
const _: () = assert!(offset_of!(Stats, pages_lost) == 32);
const _: () = assert!(offset_of!(Stats, pages_touched) == 40);
const _: () = assert!(offset_of!(Stats, swaps) == 48);
const _: () = assert!(offset_of!(Stats, full_pages) == 56);

impl Stats {
    /// Events committed but neither consumed nor overwritten (0 if counters read while the
    /// buffer was busy, which are not one instant's, say otherwise).
    pub fn in_buffer(&self) -> u64 {
        self.entries.saturating_sub(self.read.saturating_add(self.overrun))
    }
}

impl<'a, C: Clock> CpuBuffer<'a, C> {
    /// Builds a buffer over `meta` (the meta area) and `data` (the sub-buffer array), with one
    /// writer-private link per sub-buffer in `links` (extra links are left unused). Initialises
    /// all of it: the meta area, every sub-buffer header, the ring. It has no doorbell; add one
    /// with [`CpuBuffer::with_doorbell`].
    ///
    /// The links are borrowed exclusively: they name the sub-buffers the writer moves onto, and
    /// a second buffer sharing them could make this one follow ids it does not have.
    pub fn new(
        config: Config,
        meta: ShmRegion,
        data: ShmRegion,
        links: &'a mut [SubBufLink],
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
        let geometry = config.geometry;
        Self::check(geometry, &meta, &data, links.len())?;
        let buf = Self {
            geometry,
            mode: config.mode,
            meta,
            data,
            links,
            clock,
            writer_state: WriterState {
                depth: LocalU32::new(0),
                nest_pending: LocalU32::new(0),
                ended_early: LocalU32::new(0),
                enabled: LocalBool::new(true),
                off: LocalU32::new(0),
                page_data: LocalU64::new(0),
                last_ts: LocalU64::new(0),
                entries: LocalU64::new(0),
                dropped: LocalU64::new(0),
                overrun: LocalU64::new(0),
                pages_lost: LocalU64::new(0),
                pages_touched: LocalU64::new(0),
                page_entries_base: LocalU64::new(0),
                open_outer: LocalBool::new(false),
                open_undo_off: LocalU32::new(0),
                open_undo_ts: LocalU64::new(0),
                abandoned: LocalU64::new(0),
            },
            writer_shared: WriterShared {
                tail: AtomicU32::new(1),
                slot: AtomicU32::new(0),
                doorbell: AtomicU32::new(0),
                push_next: AtomicU64::new(0),
                claimed: AtomicBool::new(false),
            },
            swapper: SwapperState {
                lock: AtomicBool::new(false),
                reader: AtomicU32::new(0),
                reader_read: AtomicU32::new(0),
                hint: AtomicU32::new(0),
                hint_slot: AtomicU32::new(0),
                read: AtomicU64::new(0),
                swaps: AtomicU64::new(0),
                head_slot: AtomicU32::new(0),
                reader_seq: AtomicU32::new(0),
            },
            lanes: NestLanes::new(),
            doorbell: NoDoorbell,
        };
        buf.init_ring();
        Ok(buf)
    }
}

impl<'a, C: Clock, D: Doorbell> CpuBuffer<'a, C, D> {
    /// The same buffer, waking waiting consumers through `doorbell` (see [`crate::doorbell`]).
    pub fn with_doorbell<E: Doorbell>(self, doorbell: E) -> CpuBuffer<'a, C, E> {
        let Self { geometry, mode, meta, data, links, doorbell: _, writer_state, clock, lanes, writer_shared, swapper } =
            self;
        CpuBuffer { geometry, mode, meta, data, links, doorbell, writer_state, clock, lanes, writer_shared, swapper }
    }

    /// The doorbell.
    pub fn doorbell(&self) -> &D {
        &self.doorbell
    }

    /// Whether a buffer of `geometry` can be built over these regions and links.
    fn check(geometry: Geometry, meta: &ShmRegion, data: &ShmRegion, links: usize) -> Result<(), GeometryError> {
        if meta.read_only() || data.read_only() {
            return Err(GeometryError::ReadOnly);
        }
        if meta.len() < geometry.meta_size() {
            return Err(GeometryError::MetaTooSmall { need: geometry.meta_size(), got: meta.len() });
        }
        if data.len() < geometry.data_len() {
            return Err(GeometryError::DataTooSmall { need: geometry.data_len(), got: data.len() });
        }
        if links < geometry.nr_subbufs() as usize {
            return Err(GeometryError::LinkCount { need: geometry.nr_subbufs() as usize, got: links });
        }
        Ok(())
    }

    /// Puts the ring, the meta area and every counter in their initial state.
    fn init_ring(&self) {
        // Ordering: Relaxed throughout. This runs at construction (before the buffer is shared)
        // or from `reset(&mut self)`, so nothing runs concurrently; whoever receives the buffer
        // afterwards synchronises with this thread by the means that handed it over.
        let n = self.geometry.nr_subbufs();
        let last = n - 1;
        self.meta_page().init(self.geometry.meta_size() as u32, self.geometry.subbuf_size(), n);
        for id in 0..n {
            let base = self.geometry.subbuf_offset(id);
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
        let state = &self.writer_state;
        state.depth.store(0, Ordering::Relaxed);
        state.nest_pending.store(0, Ordering::Relaxed);
        state.ended_early.store(0, Ordering::Relaxed);
        state.open_outer.store(false, Ordering::Relaxed);
        self.writer_shared.claimed.store(false, Ordering::Relaxed);
        self.writer_shared.doorbell.store(0, Ordering::Relaxed);
        self.writer_shared.tail.store(1, Ordering::Relaxed);
        self.writer_shared.slot.store(0, Ordering::Relaxed);
        state.off.store(0, Ordering::Relaxed);
        state.page_data.store((self.geometry.subbuf_offset(1) + SUBBUF_HEADER_SIZE) as u64, Ordering::Relaxed);
        state.last_ts.store(0, Ordering::Relaxed);
        for c in [
            &state.entries,
            &state.dropped,
            &state.overrun,
            &state.pages_lost,
            &state.pages_touched,
            &state.page_entries_base,
            &state.abandoned,
        ] {
            c.store(0, Ordering::Relaxed);
        }
        self.swapper.reader.store(0, Ordering::Relaxed);
        self.swapper.reader_read.store(0, Ordering::Relaxed);
        self.swapper.hint.store(last, Ordering::Relaxed);
        self.swapper.hint_slot.store(self.geometry.nr_slots() - 1, Ordering::Relaxed);
        self.swapper.read.store(0, Ordering::Relaxed);
        self.swapper.swaps.store(0, Ordering::Relaxed);
        self.swapper.head_slot.store(0, Ordering::Relaxed);
        self.swapper.reader_seq.store(0, Ordering::Relaxed);
        self.lanes.reset();
    }

    /// Empties the buffer: every page, counter and the meta area return to their initial state.
    /// Takes `&mut self`, so no writer or swapper can be running.
    pub fn reset(&mut self) {
        self.init_ring();
    }

    /// The buffer's geometry.
    pub fn geometry(&self) -> Geometry {
        self.geometry
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
        self.writer_state.enabled.store(enabled, Ordering::Relaxed);
    }

    /// Whether recording is on.
    pub fn is_enabled(&self) -> bool {
        // Ordering: Relaxed, see `set_enabled`.
        self.writer_state.enabled.load(Ordering::Relaxed)
    }

    /// The consumer's view of this buffer's shared memory.
    pub fn view(&self) -> SharedView<'_> {
        SharedView::from_trusted(
            MetaPage::new(&self.meta).expect("meta size checked at construction"),
            &self.data,
            self.geometry,
        )
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
        let state = &self.writer_state;
        Stats {
            entries: state.entries.load(Ordering::Relaxed),
            overrun: state.overrun.load(Ordering::Relaxed),
            dropped: state.dropped.load(Ordering::Relaxed),
            read: self.swapper.read.load(Ordering::Relaxed),
            pages_lost: state.pages_lost.load(Ordering::Relaxed),
            pages_touched: state.pages_touched.load(Ordering::Relaxed),
            swaps: self.swapper.swaps.load(Ordering::Relaxed),
            full_pages: u64::from(self.full_pages()),
        }
    }

    /// Writing contexts found open when their [`crate::Writer`] was released (a
    /// [`crate::Reservation`] forgotten with `mem::forget`) and closed then: each one's reserved
    /// room was given back and the nested events staged behind it were written. A diagnostic of
    /// the producer's own code, so not among the [`Stats`] consumers are told.
    pub fn abandoned(&self) -> u64 {
        // Ordering: Relaxed; a statistic, like `stats`.
        self.writer_state.abandoned.load(Ordering::Relaxed)
    }

    /// Counter stored in the meta area at `field`, bumped by the writer (single writer, so a plain
    /// store of the private mirror's new value).
    #[inline]
    pub(crate) fn publish_counter(&self, field: usize, value: u64) {
        // Ordering: Relaxed; a statistic, read on its own, ordering nothing else.
        self.meta.store_u64(field, value, Ordering::Relaxed);
    }

    /// Advances the head slot by one (the head moved one slot: a push or a swap) and publishes it
    /// in `ext.head_slot`.
    ///
    /// The writer (pushing the head) and a swapper (taking it) both move it, so the count is kept
    /// in private memory, where a host scribbling on the meta area can neither stall the writer
    /// in a compare-and-swap loop nor feed it an out-of-range value; the meta area only receives
    /// copies. Each mover stores its value, then checks with a compare-and-swap that the counter
    /// has not moved meanwhile, and stores again if it has: the other mover's update either
    /// reads-from that check (so its own later store lands after ours) or moved the counter
    /// before it (and we store its value). The last value stored is therefore the newest.
    pub(crate) fn advance_head_slot(&self) {
        let slots = self.geometry.nr_slots();
        // Ordering: AcqRel on the private counter orders the two movers' updates and checks (see
        // above). Release on the meta store: a reader that sees the new head slot (Acquire) also
        // sees what its mover published before it (a push's overrun and pages_lost). Which pages
        // hold data is not ordered by it: a push moves the head before the writer resets the
        // page, and snapshots validate each page by its slot's `cnt` (`crate::snapshot`).
        let mut now =
            match self.swapper.head_slot.fetch_update(Ordering::AcqRel, Ordering::Acquire, |s| Some((s + 1) % slots)) {
                Ok(prev) | Err(prev) => (prev + 1) % slots,
            };
        loop {
            self.meta.store_u32(off::EXT_HEAD_SLOT, now, Ordering::Release);
            match self.swapper.head_slot.compare_exchange(now, now, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return,
                Err(moved) => now = moved,
            }
        }
    }
}

#[cfg(feature = "std")]
impl<C: Clock> CpuBuffer<'static, C> {
    /// Builds a buffer in heap memory (meta area, sub-buffers and links).
    pub fn with_heap(config: Config, clock: C) -> Result<Self, GeometryError> {
        let geometry = config.geometry;
        let meta = ShmRegion::alloc_zeroed(geometry.meta_size());
        let data = ShmRegion::alloc_zeroed(geometry.data_len());
        Self::with_own_links(config, meta, data, clock)
    }

    /// Builds a buffer over `meta` and `data` (shared memory the caller mapped), with its
    /// writer-private links on the heap. See [`CpuBuffer::new`].
    pub fn with_own_links(config: Config, meta: ShmRegion, data: ShmRegion, clock: C) -> Result<Self, GeometryError> {
        let links = (0..config.geometry.nr_subbufs()).map(|_| SubBufLink::new()).collect();
        Self::with_links(config, meta, data, links, clock).map_err(|(e, _)| e)
    }

    /// Builds a buffer whose writer-private links are `links` (at least one per sub-buffer; the
    /// rest are unused), moved in without allocating: a caller that must not allocate once
    /// running (a hypervisor) allocates them at start and gets them back with
    /// [`CpuBuffer::into_links`], or with the error if the buffer cannot be built.
    #[allow(clippy::type_complexity)]
    pub fn with_links(
        config: Config,
        meta: ShmRegion,
        data: ShmRegion,
        links: std::boxed::Box<[SubBufLink]>,
        clock: C,
    ) -> Result<Self, (GeometryError, std::boxed::Box<[SubBufLink]>)> {
        if let Err(e) = Self::check(config.geometry, &meta, &data, links.len()) {
            return Err((e, links));
        }
        Ok(Self::build(config, meta, data, Links::Owned(links), clock).expect("checked just above"))
    }
}

#[cfg(feature = "std")]
impl<C: Clock, D: Doorbell> CpuBuffer<'_, C, D> {
    /// Takes the buffer apart and returns its writer-private links if it owned them
    /// ([`CpuBuffer::with_links`], [`CpuBuffer::with_heap`]), `None` if it borrowed them.
    pub fn into_links(self) -> Option<std::boxed::Box<[SubBufLink]>> {
        match self.links {
            Links::Owned(links) => Some(links),
            Links::Borrowed(_) => None,
        }
    }
}

#[cfg(all(test, feature = "std", not(loom)))]
mod tests {
    use super::*;
    use crate::ManualClock;

    #[test]
    fn links_move_in_and_out_without_reallocating() {
        let geometry = Geometry::new(64, 4).unwrap();
        let pool: std::boxed::Box<[SubBufLink]> = (0..16).map(|_| SubBufLink::new()).collect();
        let at = pool.as_ptr();
        let config = Config { geometry, mode: Mode::Overwrite };
        let make = |links| {
            let meta = ShmRegion::alloc_zeroed(geometry.meta_size());
            let data = ShmRegion::alloc_zeroed(geometry.data_len());
            CpuBuffer::with_links(config, meta, data, links, ManualClock::new(1))
        };
        let buf = make(pool).unwrap();
        buf.write(b"event").unwrap();
        assert_eq!(buf.stats().entries, 1);
        let back = buf.into_links().expect("owned links come back");
        assert_eq!((back.len(), back.as_ptr()), (16, at), "the same allocation, extra links included");
        let short: std::boxed::Box<[SubBufLink]> = (0..3).map(|_| SubBufLink::new()).collect();
        let short_at = short.as_ptr();
        let (error, back) = make(short).expect_err("too few links");
        assert_eq!(error, GeometryError::LinkCount { need: 4, got: 3 });
        assert_eq!(back.as_ptr(), short_at, "the links come back with the error");
    }
}
