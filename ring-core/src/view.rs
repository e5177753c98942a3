//! A consumer's view of one CPU's shared memory: the meta area and the sub-buffer array.
//!
//! Everything here reads only the shared regions, so it works the same in the producer's process
//! and in another process that mapped them read-only. Values from the meta area are untrusted:
//! [`SharedView::new`] validates the geometry against the regions, and every id read later is
//! bounds-checked before it becomes an offset.

use crate::decode::ShmPage;
use crate::error::GeometryError;
use crate::geometry::Geometry;
use crate::meta::{
    DATA_INDEX_OFFSET, DataIndex, META_BASE_LEN, META_EXT_MAGIC, META_FLAG_HYPTRACE_EXT, MetaPage, meta_struct_len,
};
use crate::shm::ShmRegion;

/// Why a meta area cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ViewError {
    /// The meta area is smaller than its fixed part.
    #[error("meta area of {0} bytes is smaller than its {DATA_INDEX_OFFSET}-byte header")]
    MetaTooShort(usize),
    /// The geometry in the meta area is invalid or does not fit the regions.
    #[error("meta area describes an unusable buffer: {0}")]
    Geometry(#[from] GeometryError),
    /// The meta area announces the hyptrace extension but it is of another version or broken.
    #[error("meta area has a hyptrace extension of unknown kind (magic {magic:#x}, version {version})")]
    BadExtension {
        /// Magic found.
        magic: u32,
        /// Version found.
        version: u32,
    },
    /// `meta_struct_len` or `nr_slots` disagree with the geometry.
    #[error("meta area is inconsistent: {0}")]
    Inconsistent(&'static str),
}

/// Read-only access to one CPU's buffer through its shared memory.
///
/// Works on hyptrace's meta areas and on the Linux kernel's (the 80-byte `trace_buffer_meta`
/// without the extension): consuming reads need only the base; non-consuming reads through
/// `data_index[]` ([`crate::snapshot`]) need the extension ([`SharedView::has_extension`]).
#[derive(Debug, Clone, Copy)]
pub struct SharedView<'r> {
    meta: MetaPage<'r>,
    data: &'r ShmRegion,
    geometry: Geometry,
    extension: bool,
}

impl<'r> SharedView<'r> {
    /// Validates the meta area in `meta` against the sub-buffer array in `data`.
    pub fn new(meta: &'r ShmRegion, data: &'r ShmRegion) -> Result<Self, ViewError> {
        let page = MetaPage::new(meta).ok_or(ViewError::MetaTooShort(meta.len()))?;
        let geometry = Geometry::new(page.subbuf_size(), page.nr_subbufs())?;
        let r = page.region();
        let magic = r.load_u32(crate::meta::off::EXT_MAGIC);
        let announced = page.flags() & META_FLAG_HYPTRACE_EXT != 0 || magic == META_EXT_MAGIC;
        let extension = if announced {
            if !page.has_extension() {
                return Err(ViewError::BadExtension { magic, version: r.load_u32(crate::meta::off::EXT_VERSION) });
            }
            if page.nr_slots() != geometry.nr_slots() {
                return Err(ViewError::Inconsistent("nr_slots is not nr_subbufs - 1"));
            }
            // The arrays are found where the meta area says, inside `meta_struct_len`, which a
            // later compatible revision may make larger than version 2's (docs/abi.md §7).
            let struct_len = page.meta_struct_len() as usize;
            let index_at = r.load_u32(crate::meta::off::EXT_DATA_INDEX_OFFSET) as usize;
            let seq_at = r.load_u32(crate::meta::off::EXT_SEQ_OFFSET) as usize;
            // Saturating: on a 32-bit target a hostile offset could overflow (and then fail below).
            let index_end = index_at.saturating_add(geometry.nr_slots() as usize * size_of::<DataIndex>());
            let seq_end = seq_at.saturating_add(geometry.nr_subbufs() as usize * size_of::<u64>());
            if struct_len < meta_struct_len(geometry.nr_slots()) || struct_len > meta.len() {
                return Err(ViewError::Inconsistent("meta_struct_len does not match nr_subbufs"));
            }
            if index_at < DATA_INDEX_OFFSET || !index_at.is_multiple_of(4) || index_end > struct_len {
                return Err(ViewError::Inconsistent("data_index[] is not inside the meta structure"));
            }
            if seq_at < DATA_INDEX_OFFSET || !seq_at.is_multiple_of(8) || seq_end > struct_len {
                return Err(ViewError::Inconsistent("first_seq[] is not inside the meta structure"));
            }
            if meta.len() < geometry.meta_size() {
                return Err(GeometryError::MetaTooSmall { need: geometry.meta_size(), got: meta.len() }.into());
            }
            true
        } else {
            if (page.meta_struct_len() as usize) < META_BASE_LEN {
                return Err(ViewError::Inconsistent("meta_struct_len is shorter than trace_buffer_meta"));
            }
            false
        };
        if data.len() < geometry.data_len() {
            return Err(GeometryError::DataTooSmall { need: geometry.data_len(), got: data.len() }.into());
        }
        Ok(Self { meta: page, data, geometry, extension })
    }

    /// True if the meta area carries the hyptrace extension (`data_index[]`, tail and head slots),
    /// which non-consuming reads need; a kernel meta page has only the base.
    pub fn has_extension(&self) -> bool {
        self.extension
    }

    /// A view over regions the caller built itself with this geometry.
    pub(crate) fn from_trusted(meta: MetaPage<'r>, data: &'r ShmRegion, geometry: Geometry) -> Self {
        Self { meta, data, geometry, extension: true }
    }

    /// The geometry.
    pub fn geometry(&self) -> Geometry {
        self.geometry
    }

    /// The meta area.
    pub fn meta(&self) -> MetaPage<'r> {
        self.meta
    }

    /// Sub-buffer `id`, or `None` if there is no such sub-buffer.
    pub fn page(&self, id: u32) -> Option<ShmPage<'r>> {
        if id >= self.geometry.nr_subbufs() {
            return None;
        }
        ShmPage::new(self.data, self.geometry.subbuf_offset(id), self.geometry.subbuf_size() as usize)
    }
}

#[cfg(all(test, feature = "std", not(loom)))]
mod tests {
    use super::*;
    use crate::meta::{TraceBufferMeta, off};
    use crate::snapshot::SnapshotError;
    use crate::sync::Ordering;
    use std::vec;
    use std::vec::Vec;
    use zerocopy::IntoBytes;

    /// A meta page as the kernel fills it: the 80-byte base, zeros after.
    fn kernel_meta(nr_subbufs: u32) -> ShmRegion {
        let region = ShmRegion::alloc_zeroed(4096);
        let base = TraceBufferMeta {
            meta_page_size: 4096,
            meta_struct_len: 80,
            subbuf_size: 4096,
            nr_subbufs,
            entries: 16,
            ..Default::default()
        };
        region.store_bytes(0, base.as_bytes());
        region
    }

    #[test]
    fn a_kernel_meta_page_gives_a_consuming_view_without_snapshots() {
        let meta = kernel_meta(4);
        let data = ShmRegion::alloc_zeroed(4 * 4096);
        let view = SharedView::new(&meta, &data).unwrap();
        assert!(!view.has_extension());
        assert_eq!(view.geometry().nr_subbufs(), 4);
        assert!(view.page(3).is_some() && view.page(4).is_none());
        assert_eq!(view.meta().counters().entries, 16);
        assert_eq!(view.snapshot().err(), Some(SnapshotError::NoExtension));
        assert_eq!(view.copy_slot(0, &mut [0; 4096]).err(), Some(SnapshotError::NoExtension));
    }

    #[test]
    fn broken_meta_pages_are_refused() {
        let data = ShmRegion::alloc_zeroed(4 * 4096);
        let meta = kernel_meta(4);
        meta.store_u64(off::FLAGS, META_FLAG_HYPTRACE_EXT, Ordering::Relaxed);
        assert_eq!(SharedView::new(&meta, &data).err(), Some(ViewError::BadExtension { magic: 0, version: 0 }));
        let meta = kernel_meta(2);
        assert_eq!(SharedView::new(&meta, &data).err(), Some(ViewError::Geometry(GeometryError::TooFewSubBufs(2))));
        let meta = kernel_meta(5);
        assert!(matches!(SharedView::new(&meta, &data), Err(ViewError::Geometry(GeometryError::DataTooSmall { .. }))));
        let meta = kernel_meta(4);
        meta.store_u32(off::META_STRUCT_LEN, 40, Ordering::Relaxed);
        assert!(matches!(SharedView::new(&meta, &data), Err(ViewError::Inconsistent(_))));
    }

    /// A copy of `meta`'s bytes in a region of its own, to rewrite.
    fn copy_of(meta: &ShmRegion) -> ShmRegion {
        let mut bytes = vec![0u8; meta.len()];
        meta.load_bytes(0, &mut bytes);
        let copy = ShmRegion::alloc_zeroed(meta.len());
        copy.store_bytes(0, &bytes);
        copy
    }

    #[test]
    fn data_index_is_found_where_the_meta_area_says() {
        let config = crate::Config { geometry: Geometry::new(4096, 4).unwrap(), mode: crate::Mode::Overwrite };
        let buf = crate::CpuBuffer::with_heap(config, crate::CounterClock::default()).unwrap();
        for i in 0u32..600 {
            buf.write(&i.to_ne_bytes()).unwrap();
        }
        let (meta, data) = buf.regions();
        let events = |view: &SharedView<'_>| -> Vec<(u64, Vec<u8>)> {
            view.snapshot().unwrap().events().map(|e| (e.timestamp, e.payload.to_vec())).collect()
        };
        let expected = events(&SharedView::new(meta, data).unwrap());
        assert!(!expected.is_empty());

        // A later revision that moves data_index[] to 2048 and says so, with a longer structure:
        // the array found there, the old place ignored.
        let moved = copy_of(meta);
        let mut index = [0u8; 24];
        meta.load_bytes(DATA_INDEX_OFFSET, &mut index);
        moved.store_bytes(2048, &index);
        moved.store_bytes(DATA_INDEX_OFFSET, &[0xff; 24]);
        moved.store_u32(off::EXT_DATA_INDEX_OFFSET, 2048, Ordering::Relaxed);
        moved.store_u32(off::META_STRUCT_LEN, 2048 + 24, Ordering::Relaxed);
        let view = SharedView::new(&moved, data).unwrap();
        assert_eq!(view.meta().slot_id(0), SharedView::new(meta, data).unwrap().meta().slot_id(0));
        assert_eq!(events(&view), expected);

        // Arrays outside the structure, misaligned, or a structure longer than the area: refused.
        for (field, value) in [
            (off::EXT_DATA_INDEX_OFFSET, 2060),
            (off::EXT_DATA_INDEX_OFFSET, 8),
            (off::EXT_DATA_INDEX_OFFSET, 2050),
            (off::EXT_SEQ_OFFSET, 2052),
            (off::EXT_SEQ_OFFSET, 172),
            (off::META_STRUCT_LEN, 4097),
            (off::META_STRUCT_LEN, 199),
        ] {
            let bad = copy_of(&moved);
            bad.store_u32(field, value, Ordering::Relaxed);
            assert!(
                matches!(SharedView::new(&bad, data), Err(ViewError::Inconsistent(_))),
                "field at {field} = {value} accepted"
            );
        }
    }
}
