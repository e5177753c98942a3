//! A consumer's view of one CPU's shared memory: the meta area and the sub-buffer array.
//!
//! Everything here reads only the shared regions, so it works the same in the producer's process
//! and in another process that mapped them read-only. Values from the meta area are untrusted:
//! [`SharedView::new`] validates the geometry against the regions, and every id read later is
//! bounds-checked before it becomes an offset.

use crate::decode::ShmPage;
use crate::error::GeometryError;
use crate::geometry::Geometry;
use crate::meta::{MetaPage, META_EXT_MAGIC, META_EXT_VERSION, DATA_INDEX_OFFSET, meta_struct_len};
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
    /// The hyptrace extension is missing or of another version.
    #[error("meta area lacks the hyptrace extension (magic {magic:#x}, version {version})")]
    NoExtension {
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
#[derive(Debug, Clone, Copy)]
pub struct SharedView<'r> {
    meta: MetaPage<'r>,
    data: &'r ShmRegion,
    geo: Geometry,
}

impl<'r> SharedView<'r> {
    /// Validates the meta area in `meta` against the sub-buffer array in `data`.
    pub fn new(meta: &'r ShmRegion, data: &'r ShmRegion) -> Result<Self, ViewError> {
        let page = MetaPage::new(meta).ok_or(ViewError::MetaTooShort(meta.len()))?;
        if !page.has_extension() {
            let r = page.region();
            return Err(ViewError::NoExtension {
                magic: r.load_u32(crate::meta::off::EXT_MAGIC),
                version: r.load_u32(crate::meta::off::EXT_VERSION),
            });
        }
        debug_assert_eq!(META_EXT_MAGIC, u32::from_le_bytes(*b"HYPT"));
        let _ = META_EXT_VERSION;
        let geo = Geometry::new(page.subbuf_size(), page.nr_subbufs())?;
        if page.nr_slots() != geo.nr_slots() {
            return Err(ViewError::Inconsistent("nr_slots is not nr_subbufs - 1"));
        }
        if page.meta_struct_len() as usize != meta_struct_len(geo.nr_slots()) {
            return Err(ViewError::Inconsistent("meta_struct_len does not match nr_subbufs"));
        }
        if meta.len() < geo.meta_size() {
            return Err(GeometryError::MetaTooSmall { need: geo.meta_size(), got: meta.len() }.into());
        }
        if data.len() < geo.data_len() {
            return Err(GeometryError::DataTooSmall { need: geo.data_len(), got: data.len() }.into());
        }
        Ok(Self { meta: page, data, geo })
    }

    /// A view over regions the caller built itself with this geometry.
    pub(crate) fn from_trusted(meta: MetaPage<'r>, data: &'r ShmRegion, geo: Geometry) -> Self {
        Self { meta, data, geo }
    }

    /// The geometry.
    pub fn geometry(&self) -> Geometry {
        self.geo
    }

    /// The meta area.
    pub fn meta(&self) -> MetaPage<'r> {
        self.meta
    }

    /// Sub-buffer `id`, or `None` if there is no such sub-buffer.
    pub fn page(&self, id: u32) -> Option<ShmPage<'r>> {
        if id >= self.geo.nr_subbufs() {
            return None;
        }
        ShmPage::new(self.data, self.geo.subbuf_offset(id), self.geo.subbuf_size() as usize)
    }
}
