//! Layout of the per-CPU meta area shared with consumers, and typed access to it.
//!
//! The area starts with Linux's `struct trace_buffer_meta` (80 bytes, `uapi/linux/trace_mmap.h`),
//! so a reader written against the kernel header can consume our buffers, followed by the
//! hyptrace extension ([`MetaExt`]) and the `data_index[]` ring map ([`DataIndex`]). A larger
//! `meta_struct_len` and the extension magic announce the extension. This module is the only
//! place that knows these offsets; `docs/abi.md` (ring-mmap) documents them for other languages.
//!
//! Fields are written by one party each (see the table in [`crate`]'s docs) and read by anyone,
//! always through [`ShmRegion`] at the field's own width.

use crate::buffer::Stats;
use crate::shm::ShmRegion;
use crate::sync::Ordering;
use core::mem::offset_of;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// The reader-page part of [`TraceBufferMeta`].
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct MetaReader {
    /// Events lost between the previous reader page and this one.
    pub lost_events: u64,
    /// Sub-buffer id of the reader page.
    pub id: u32,
    /// Bytes of the reader page's data already consumed.
    pub read: u32,
}

/// Linux's `struct trace_buffer_meta`, field for field.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct TraceBufferMeta {
    /// Bytes of the meta area (a multiple of 4096).
    pub meta_page_size: u32,
    /// Bytes of meaningful meta structure; readers use it for forward compatibility.
    pub meta_struct_len: u32,
    /// Bytes per sub-buffer, header included.
    pub subbuf_size: u32,
    /// Sub-buffers in the mapping, reader page included.
    pub nr_subbufs: u32,
    /// The reader page.
    pub reader: MetaReader,
    /// Flags; [`META_FLAG_HYPTRACE_EXT`] marks the extension.
    pub flags: u64,
    /// Events committed since the last reset, as of the last time the writer left a page: it
    /// lags the true count by at most the events on the writer's current page, so
    /// `read + overrun <= entries` always holds.
    pub entries: u64,
    /// Events lost to overwrite.
    pub overrun: u64,
    /// Events consumed (counted when a reader page is given back).
    pub read: u64,
    /// Pages lost to overwrite (the kernel's `Reserved1`).
    pub pages_lost: u64,
    /// Pages the writer moved onto (the kernel's `Reserved2`).
    pub pages_touched: u64,
}

const _: () = assert!(size_of::<TraceBufferMeta>() == 80);
const _: () = assert!(offset_of!(TraceBufferMeta, meta_page_size) == 0);
const _: () = assert!(offset_of!(TraceBufferMeta, meta_struct_len) == 4);
const _: () = assert!(offset_of!(TraceBufferMeta, subbuf_size) == 8);
const _: () = assert!(offset_of!(TraceBufferMeta, nr_subbufs) == 12);
const _: () = assert!(offset_of!(TraceBufferMeta, reader) == 16);
const _: () = assert!(offset_of!(TraceBufferMeta, reader) + offset_of!(MetaReader, lost_events) == 16);
const _: () = assert!(offset_of!(TraceBufferMeta, reader) + offset_of!(MetaReader, id) == 24);
const _: () = assert!(offset_of!(TraceBufferMeta, reader) + offset_of!(MetaReader, read) == 28);
const _: () = assert!(offset_of!(TraceBufferMeta, flags) == 32);
const _: () = assert!(offset_of!(TraceBufferMeta, entries) == 40);
const _: () = assert!(offset_of!(TraceBufferMeta, overrun) == 48);
const _: () = assert!(offset_of!(TraceBufferMeta, read) == 56);
const _: () = assert!(offset_of!(TraceBufferMeta, pages_lost) == 64);
const _: () = assert!(offset_of!(TraceBufferMeta, pages_touched) == 72);

/// The hyptrace extension, right after the Linux base.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct MetaExt {
    /// [`META_EXT_MAGIC`].
    pub magic: u32,
    /// [`META_EXT_VERSION`].
    pub version: u32,
    /// Ring slots (`nr_subbufs - 1`): entries in `data_index[]`.
    pub nr_slots: u32,
    /// Byte offset of `data_index[]` in the meta area.
    pub data_index_offset: u32,
    /// Events dropped because the ring was full in producer/consumer mode (or a nested writer's
    /// staging lane overflowed).
    pub dropped: u64,
    /// Reader-page swaps performed; changes whenever the reader page does.
    pub swaps: u64,
    /// Ring slot of the head page (oldest unread), advanced by the writer (overwrite) and by
    /// swaps; a hint for non-consuming readers, validated through `data_index[].cnt`.
    pub head_slot: u32,
    /// Ring slot of the page the writer is on (the slot it had when the writer moved onto it).
    pub tail_slot: u32,
    /// Sub-buffer id of the page the writer is on. Equal to `reader.id` when the writer is on the
    /// reader page, and then the ring holds nothing unread.
    pub tail_id: u32,
    /// Byte offset in the meta area of `first_seq[nr_subbufs]`: per sub-buffer id, the sequence
    /// number (events handed to the writer before it, dropped ones included) of the first event
    /// on that sub-buffer, written when the writer moves onto it inside the slot's `cnt` seqlock.
    /// Lets a reader without the producer (post-mortem) count the events lost between two pages.
    pub seq_offset: u32,
    /// Seqlock of the reader page, written by swappers: odd from just before a swap hands the
    /// reader page back to the writer until the new reader page is published, even otherwise.
    /// A non-consuming copy of the reader page is valid if it was even and unchanged across it.
    pub reader_seq: u32,
    /// Reserved, zero.
    pub _reserved0: u32,
    /// The sequence number just past the last event of the reader page the latest swap gave back
    /// (read to its end), stored before that swap made `reader_seq` odd: where consumption stood
    /// if the producer died during the swap (see [`crate::swap`]).
    pub swap_consumed_seq: u64,
}

const _: () = assert!(size_of::<MetaExt>() == 64);
const _: () = assert!(offset_of!(MetaExt, magic) == 0);
const _: () = assert!(offset_of!(MetaExt, version) == 4);
const _: () = assert!(offset_of!(MetaExt, nr_slots) == 8);
const _: () = assert!(offset_of!(MetaExt, data_index_offset) == 12);
const _: () = assert!(offset_of!(MetaExt, dropped) == 16);
const _: () = assert!(offset_of!(MetaExt, swaps) == 24);
const _: () = assert!(offset_of!(MetaExt, head_slot) == 32);
const _: () = assert!(offset_of!(MetaExt, tail_slot) == 36);
const _: () = assert!(offset_of!(MetaExt, tail_id) == 40);
const _: () = assert!(offset_of!(MetaExt, seq_offset) == 44);
const _: () = assert!(offset_of!(MetaExt, reader_seq) == 48);
const _: () = assert!(offset_of!(MetaExt, _reserved0) == 52);
const _: () = assert!(offset_of!(MetaExt, swap_consumed_seq) == 56);

/// One `data_index[]` entry: which sub-buffer sits in a ring slot, and how often the writer moved
/// onto that slot.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct DataIndex {
    /// Sub-buffer id in this slot.
    pub id: u32,
    /// Seqlock counter of the writer: odd while it resets the page in this slot, even otherwise;
    /// it grows by 2 every time the writer moves onto the slot.
    pub cnt: u32,
}

const _: () = assert!(size_of::<DataIndex>() == 8);
const _: () = assert!(offset_of!(DataIndex, id) == 0);
const _: () = assert!(offset_of!(DataIndex, cnt) == 4);

/// `MetaExt::magic`: "HYPT" in little-endian.
pub const META_EXT_MAGIC: u32 = u32::from_le_bytes(*b"HYPT");
/// `MetaExt::version` this crate writes.
pub const META_EXT_VERSION: u32 = 2;
/// `TraceBufferMeta::flags` bit saying the hyptrace extension follows the base.
pub const META_FLAG_HYPTRACE_EXT: u64 = 1 << 0;
/// Size of the Linux base structure.
pub const META_BASE_LEN: usize = size_of::<TraceBufferMeta>();
/// Offset of the extension.
pub const META_EXT_OFFSET: usize = META_BASE_LEN;
/// Offset of `data_index[0]`.
pub const DATA_INDEX_OFFSET: usize = META_EXT_OFFSET + size_of::<MetaExt>();
// docs/abi.md fixes these for version 2 of the extension.
const _: () = assert!(META_EXT_OFFSET == 80 && DATA_INDEX_OFFSET == 144);
const _: () = assert!(META_EXT_MAGIC == 0x5450_5948);

/// Granule of the meta area size (a page; tiny under loom so models stay small).
pub const META_PAGE_GRANULE: usize = if cfg!(loom) { 8 } else { 4096 };

/// Offset of `first_seq[0]` for a ring of `nr_slots` slots (right after `data_index[]`).
pub const fn seq_offset(nr_slots: u32) -> usize {
    DATA_INDEX_OFFSET + nr_slots as usize * size_of::<DataIndex>()
}

/// `meta_struct_len` for a ring of `nr_slots` slots: the base, the extension, `data_index[]` and
/// `first_seq[]` (one per sub-buffer, `nr_slots + 1`).
pub const fn meta_struct_len(nr_slots: u32) -> usize {
    seq_offset(nr_slots) + (nr_slots as usize + 1) * size_of::<u64>()
}

/// Bytes of meta area needed for `nr_slots` slots (a multiple of 4096).
pub const fn meta_area_size(nr_slots: u32) -> usize {
    meta_struct_len(nr_slots).next_multiple_of(META_PAGE_GRANULE)
}

macro_rules! base_off {
    ($($f:tt).+) => { offset_of!(TraceBufferMeta, $($f).+) };
}
macro_rules! ext_off {
    ($f:ident) => {
        META_EXT_OFFSET + offset_of!(MetaExt, $f)
    };
}

/// Byte offsets of every meta field, for the one module that turns them into accesses.
pub mod off {
    use super::*;
    /// `meta_page_size`.
    pub const META_PAGE_SIZE: usize = base_off!(meta_page_size);
    /// `meta_struct_len`.
    pub const META_STRUCT_LEN: usize = base_off!(meta_struct_len);
    /// `subbuf_size`.
    pub const SUBBUF_SIZE: usize = base_off!(subbuf_size);
    /// `nr_subbufs`.
    pub const NR_SUBBUFS: usize = base_off!(nr_subbufs);
    /// `reader.lost_events`.
    pub const READER_LOST_EVENTS: usize = base_off!(reader.lost_events);
    /// `reader.id`.
    pub const READER_ID: usize = base_off!(reader.id);
    /// `reader.read`.
    pub const READER_READ: usize = base_off!(reader.read);
    /// `flags`.
    pub const FLAGS: usize = base_off!(flags);
    /// `entries`.
    pub const ENTRIES: usize = base_off!(entries);
    /// `overrun`.
    pub const OVERRUN: usize = base_off!(overrun);
    /// `read`.
    pub const READ: usize = base_off!(read);
    /// `pages_lost`.
    pub const PAGES_LOST: usize = base_off!(pages_lost);
    /// `pages_touched`.
    pub const PAGES_TOUCHED: usize = base_off!(pages_touched);
    /// `ext.magic`.
    pub const EXT_MAGIC: usize = ext_off!(magic);
    /// `ext.version`.
    pub const EXT_VERSION: usize = ext_off!(version);
    /// `ext.nr_slots`.
    pub const EXT_NR_SLOTS: usize = ext_off!(nr_slots);
    /// `ext.data_index_offset`.
    pub const EXT_DATA_INDEX_OFFSET: usize = ext_off!(data_index_offset);
    /// `ext.dropped`.
    pub const EXT_DROPPED: usize = ext_off!(dropped);
    /// `ext.swaps`.
    pub const EXT_SWAPS: usize = ext_off!(swaps);
    /// `ext.head_slot`.
    pub const EXT_HEAD_SLOT: usize = ext_off!(head_slot);
    /// `ext.tail_slot`.
    pub const EXT_TAIL_SLOT: usize = ext_off!(tail_slot);
    /// `ext.tail_id`.
    pub const EXT_TAIL_ID: usize = ext_off!(tail_id);
    /// `ext.seq_offset`.
    pub const EXT_SEQ_OFFSET: usize = ext_off!(seq_offset);
    /// `ext.reader_seq`.
    pub const EXT_READER_SEQ: usize = ext_off!(reader_seq);
    /// `ext.swap_consumed_seq`.
    pub const EXT_SWAP_CONSUMED_SEQ: usize = ext_off!(swap_consumed_seq);

    /// `data_index[slot].id`.
    pub const fn data_index_id(slot: u32) -> usize {
        super::DATA_INDEX_OFFSET + slot as usize * size_of::<DataIndex>() + offset_of!(DataIndex, id)
    }
    /// `data_index[slot].cnt`.
    pub const fn data_index_cnt(slot: u32) -> usize {
        super::DATA_INDEX_OFFSET + slot as usize * size_of::<DataIndex>() + offset_of!(DataIndex, cnt)
    }
}

/// Typed access to a meta area in shared memory.
#[derive(Debug, Clone, Copy)]
pub struct MetaPage<'a> {
    region: &'a ShmRegion,
}

impl<'a> MetaPage<'a> {
    /// Wraps `region`, which must hold at least the base and extension; `None` otherwise.
    pub fn new(region: &'a ShmRegion) -> Option<Self> {
        (region.len() >= DATA_INDEX_OFFSET).then_some(Self { region })
    }

    /// The underlying region.
    pub fn region(&self) -> &'a ShmRegion {
        self.region
    }

    /// Writes the static fields and zeroes the rest (producer, before anyone reads).
    pub(crate) fn init(&self, meta_page_size: u32, subbuf_size: u32, nr_subbufs: u32) {
        // Ordering: Relaxed throughout; see `CpuBuffer::init_ring`, the only caller.
        let r = self.region;
        let nr_slots = nr_subbufs - 1;
        r.store_u32(off::META_PAGE_SIZE, meta_page_size, Ordering::Relaxed);
        r.store_u32(off::META_STRUCT_LEN, meta_struct_len(nr_slots) as u32, Ordering::Relaxed);
        r.store_u32(off::SUBBUF_SIZE, subbuf_size, Ordering::Relaxed);
        r.store_u32(off::NR_SUBBUFS, nr_subbufs, Ordering::Relaxed);
        r.store_u64(off::READER_LOST_EVENTS, 0, Ordering::Relaxed);
        r.store_u32(off::READER_ID, 0, Ordering::Relaxed);
        r.store_u32(off::READER_READ, 0, Ordering::Relaxed);
        r.store_u64(off::FLAGS, META_FLAG_HYPTRACE_EXT, Ordering::Relaxed);
        for f in [off::ENTRIES, off::OVERRUN, off::READ, off::PAGES_LOST, off::PAGES_TOUCHED] {
            r.store_u64(f, 0, Ordering::Relaxed);
        }
        r.store_u32(off::EXT_MAGIC, META_EXT_MAGIC, Ordering::Relaxed);
        r.store_u32(off::EXT_VERSION, META_EXT_VERSION, Ordering::Relaxed);
        r.store_u32(off::EXT_NR_SLOTS, nr_slots, Ordering::Relaxed);
        r.store_u32(off::EXT_DATA_INDEX_OFFSET, DATA_INDEX_OFFSET as u32, Ordering::Relaxed);
        r.store_u64(off::EXT_DROPPED, 0, Ordering::Relaxed);
        r.store_u64(off::EXT_SWAPS, 0, Ordering::Relaxed);
        r.store_u32(off::EXT_HEAD_SLOT, 0, Ordering::Relaxed);
        r.store_u32(off::EXT_TAIL_SLOT, 0, Ordering::Relaxed);
        r.store_u32(off::EXT_TAIL_ID, 1, Ordering::Relaxed);
        r.store_u32(off::EXT_SEQ_OFFSET, seq_offset(nr_slots) as u32, Ordering::Relaxed);
        r.store_u32(off::EXT_READER_SEQ, 0, Ordering::Relaxed);
        r.store_u32(META_EXT_OFFSET + offset_of!(MetaExt, _reserved0), 0, Ordering::Relaxed);
        r.store_u64(off::EXT_SWAP_CONSUMED_SEQ, 0, Ordering::Relaxed);
        for id in 0..nr_subbufs {
            r.store_u64(seq_offset(nr_slots) + id as usize * size_of::<u64>(), 0, Ordering::Relaxed);
        }
        for slot in 0..nr_slots {
            // Slot i starts out holding sub-buffer i + 1; sub-buffer 0 is the first reader page.
            r.store_u32(off::data_index_id(slot), slot + 1, Ordering::Relaxed);
            r.store_u32(off::data_index_cnt(slot), 0, Ordering::Relaxed);
        }
    }

    /// `meta_page_size`.
    pub fn meta_page_size(&self) -> u32 {
        self.region.load_u32(off::META_PAGE_SIZE)
    }
    /// `meta_struct_len`.
    pub fn meta_struct_len(&self) -> u32 {
        self.region.load_u32(off::META_STRUCT_LEN)
    }
    /// `subbuf_size`.
    pub fn subbuf_size(&self) -> u32 {
        self.region.load_u32(off::SUBBUF_SIZE)
    }
    /// `nr_subbufs`.
    pub fn nr_subbufs(&self) -> u32 {
        self.region.load_u32(off::NR_SUBBUFS)
    }
    /// `flags`.
    pub fn flags(&self) -> u64 {
        self.region.load_u64(off::FLAGS)
    }
    /// True if the extension magic and version are present.
    pub fn has_extension(&self) -> bool {
        self.region.load_u32(off::EXT_MAGIC) == META_EXT_MAGIC
            && self.region.load_u32(off::EXT_VERSION) == META_EXT_VERSION
    }
    /// `ext.nr_slots`.
    pub fn nr_slots(&self) -> u32 {
        self.region.load_u32(off::EXT_NR_SLOTS)
    }
    /// The reader fields, read with acquire semantics after a swap answer.
    pub fn reader(&self) -> MetaReader {
        let r = self.region;
        let id = r.load_u32_acquire(off::READER_ID);
        MetaReader { lost_events: r.load_u64(off::READER_LOST_EVENTS), id, read: r.load_u32(off::READER_READ) }
    }
    /// The counters the meta area holds, each loaded on its own (a racy but per-field atomic
    /// snapshot, docs/abi.md §4.5; `entries` lags, §2.1). It holds no `full_pages`: 0.
    pub fn counters(&self) -> Stats {
        let r = self.region;
        Stats {
            entries: r.load_u64(off::ENTRIES),
            overrun: r.load_u64(off::OVERRUN),
            dropped: r.load_u64(off::EXT_DROPPED),
            read: r.load_u64(off::READ),
            pages_lost: r.load_u64(off::PAGES_LOST),
            pages_touched: r.load_u64(off::PAGES_TOUCHED),
            swaps: r.load_u64(off::EXT_SWAPS),
            full_pages: 0,
        }
    }
    /// `ext.head_slot`, with acquire semantics.
    pub fn head_slot(&self) -> u32 {
        self.region.load_u32_acquire(off::EXT_HEAD_SLOT)
    }
    /// `ext.tail_slot`, with acquire semantics.
    pub fn tail_slot(&self) -> u32 {
        self.region.load_u32_acquire(off::EXT_TAIL_SLOT)
    }
    /// `ext.tail_id`, with acquire semantics.
    pub fn tail_id(&self) -> u32 {
        self.region.load_u32_acquire(off::EXT_TAIL_ID)
    }
    /// `ext.reader_seq`, with acquire semantics.
    pub fn reader_seq(&self) -> u32 {
        self.region.load_u32_acquire(off::EXT_READER_SEQ)
    }
    /// `ext.swap_consumed_seq`.
    pub fn swap_consumed_seq(&self) -> u64 {
        self.region.load_u64(off::EXT_SWAP_CONSUMED_SEQ)
    }
    /// `ext.swaps`, with acquire semantics.
    pub fn swaps(&self) -> u64 {
        self.region.load_u64_acquire(off::EXT_SWAPS)
    }
    /// `data_index[slot].cnt` with acquire semantics, or `None` if the slot is outside the area.
    pub fn slot_cnt(&self, slot: u32) -> Option<u32> {
        let at = self.data_index_field(slot, offset_of!(DataIndex, cnt))?;
        self.region.fits(at, 4).then(|| self.region.load_u32_acquire(at))
    }
    /// `data_index[slot].id`, or `None` if the slot is outside the area.
    pub fn slot_id(&self, slot: u32) -> Option<u32> {
        let at = self.data_index_field(slot, offset_of!(DataIndex, id))?;
        self.region.fits(at, 4).then(|| self.region.load_u32(at))
    }
    /// Offset of the field at `field` of `data_index[slot]`, located through the meta area's
    /// `data_index_offset` as readers must (docs/abi.md §2.2; version 2 puts the array at
    /// [`DATA_INDEX_OFFSET`]), or `None` if it overflows.
    fn data_index_field(&self, slot: u32, field: usize) -> Option<usize> {
        (self.region.load_u32(off::EXT_DATA_INDEX_OFFSET) as usize)
            .checked_add(slot as usize * size_of::<DataIndex>() + field)
    }
    /// `first_seq[id]`, or `None` if it lies outside the area (or `seq_offset` is corrupt).
    pub fn first_seq(&self, id: u32) -> Option<u64> {
        let at = (self.region.load_u32(off::EXT_SEQ_OFFSET) as usize).checked_add(id as usize * size_of::<u64>())?;
        self.region.fits(at, 8).then(|| self.region.load_u64(at))
    }
}

#[cfg(all(test, feature = "std", not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn sizes_round_up_to_pages() {
        assert_eq!(meta_struct_len(2), 144 + 16 + 24);
        assert_eq!(meta_area_size(2), 4096);
        assert_eq!(meta_area_size(246), 4096);
        assert_eq!(meta_area_size(247), 8192);
    }

    #[test]
    fn init_writes_a_linux_compatible_base() {
        let region = ShmRegion::alloc_zeroed(meta_area_size(3));
        let meta = MetaPage::new(&region).unwrap();
        meta.init(4096, 4096, 4);
        let mut bytes = std::vec![0u8; region.len()];
        region.load_bytes(0, &mut bytes);
        let base = TraceBufferMeta::read_from_prefix(&bytes).unwrap().0;
        assert_eq!(base.meta_page_size, 4096);
        assert_eq!(base.meta_struct_len as usize, DATA_INDEX_OFFSET + 24 + 32);
        assert_eq!((base.subbuf_size, base.nr_subbufs, base.reader.id), (4096, 4, 0));
        assert!(meta.has_extension());
        assert_eq!(meta.slot_id(2), Some(3));
        assert_eq!(meta.slot_cnt(2), Some(0));
        assert_eq!(meta.slot_id(100_000), None);
        assert_eq!(meta.first_seq(3), Some(0));
        assert_eq!(meta.first_seq(4_000), None);
    }
}
