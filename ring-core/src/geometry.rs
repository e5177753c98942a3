//! Sizes of one CPU's buffer and where things are in its memory.

use crate::error::GeometryError;
use crate::format::{DataLayout, SMALL_DATA_MAX, SUBBUF_HEADER_SIZE};
use crate::meta::meta_area_size;

/// How the writer behaves when the ring is full. Its discriminant is its number on the wire
/// ([`Mode::to_wire`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(u32)]
pub enum Mode {
    /// Flight recorder: the writer pushes the head forward and the oldest page is lost
    /// (counted in `overrun` and `pages_lost`).
    #[default]
    Overwrite = 0,
    /// Producer/consumer: the writer drops the new event (counted in `dropped`).
    Drop = 1,
}

impl Mode {
    /// Every mode.
    const ALL: [Self; 2] = [Self::Overwrite, Self::Drop];

    /// The mode's number wherever it is carried as one: the `mode` of a HELLO answer
    /// (docs/abi.md §5.2) and of a hypervisor's load descriptor.
    pub const fn to_wire(self) -> u32 {
        self as u32
    }

    /// The mode numbered `n` ([`Mode::to_wire`]), if there is one.
    pub fn from_wire(n: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.to_wire() == n)
    }
}

/// Sub-buffer size and count of one CPU's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Geometry {
    subbuf_size: u32,
    nr_subbufs: u32,
}

impl Geometry {
    /// The kernel's default sub-buffer size.
    pub const DEFAULT_SUBBUF_SIZE: u32 = 4096;
    /// Smallest sub-buffer size accepted (only useful for tests and models).
    pub const MIN_SUBBUF_SIZE: u32 = 32;
    /// Largest sub-buffer size accepted (`commit` keeps lengths in 30 bits).
    pub const MAX_SUBBUF_SIZE: u32 = 1 << 24;
    /// Fewest sub-buffers: the reader page plus two in the ring.
    pub const MIN_SUBBUFS: u32 = 3;
    /// Most sub-buffers: the meta area, 16 bytes per sub-buffer, must keep its size in the u32
    /// fields `meta_page_size` and `meta_struct_len` (and ids fit the 30 bits of a link word).
    pub const MAX_SUBBUFS: u32 = 1 << 27;

    /// Validates a geometry: `subbuf_size` a power of two within bounds, at least 3 sub-buffers.
    pub fn new(subbuf_size: u32, nr_subbufs: u32) -> Result<Self, GeometryError> {
        if !subbuf_size.is_power_of_two() {
            return Err(GeometryError::SubBufSizeNotPowerOfTwo(subbuf_size));
        }
        if !(Self::MIN_SUBBUF_SIZE..=Self::MAX_SUBBUF_SIZE).contains(&subbuf_size) {
            return Err(GeometryError::SubBufSizeOutOfRange(subbuf_size));
        }
        if nr_subbufs < Self::MIN_SUBBUFS {
            return Err(GeometryError::TooFewSubBufs(nr_subbufs));
        }
        if nr_subbufs > Self::MAX_SUBBUFS {
            return Err(GeometryError::TooManySubBufs(nr_subbufs));
        }
        u64::from(subbuf_size)
            .checked_mul(u64::from(nr_subbufs))
            .and_then(|n| usize::try_from(n).ok())
            .ok_or(GeometryError::TooManySubBufs(nr_subbufs))?;
        Ok(Self { subbuf_size, nr_subbufs })
    }

    /// Bytes per sub-buffer, header included.
    #[inline]
    pub const fn subbuf_size(&self) -> u32 {
        self.subbuf_size
    }

    /// Sub-buffers, reader page included.
    #[inline]
    pub const fn nr_subbufs(&self) -> u32 {
        self.nr_subbufs
    }

    /// Ring slots (sub-buffers minus the reader page).
    #[inline]
    pub const fn nr_slots(&self) -> u32 {
        self.nr_subbufs - 1
    }

    /// Bytes of event data a sub-buffer holds.
    #[inline]
    pub const fn data_size(&self) -> u32 {
        self.subbuf_size - SUBBUF_HEADER_SIZE as u32
    }

    /// Bytes of the meta area.
    #[inline]
    pub const fn meta_size(&self) -> usize {
        meta_area_size(self.nr_slots())
    }

    /// Bytes of the sub-buffer array.
    #[inline]
    pub const fn data_len(&self) -> usize {
        self.subbuf_size as usize * self.nr_subbufs as usize
    }

    /// Byte offset of sub-buffer `id` in the sub-buffer array.
    #[inline]
    pub const fn subbuf_offset(&self, id: u32) -> usize {
        id as usize * self.subbuf_size as usize
    }

    /// Largest payload one event can carry (it must fit in an empty page).
    pub const fn max_payload(&self) -> usize {
        let data = self.data_size() as usize;
        // Small payloads take a 4-byte header, large ones (type_len 0) 8; payloads are stored
        // rounded up to 4.
        let small = (data - 4) & !3;
        let large = (data - 8) & !3;
        if small <= SMALL_DATA_MAX {
            small
        } else if large > SMALL_DATA_MAX {
            large
        } else {
            SMALL_DATA_MAX
        }
    }

    /// Layout of an event with `len` payload bytes, if it fits in a sub-buffer.
    #[inline]
    pub const fn layout(&self, len: usize) -> Option<DataLayout> {
        match DataLayout::for_payload(len) {
            Some(l) if l.size <= self.data_size() => Some(l),
            _ => None,
        }
    }
}

const _: () = assert!(meta_area_size(Geometry::MAX_SUBBUFS - 1) <= u32::MAX as usize);

impl Default for Geometry {
    /// 4 KiB sub-buffers, 256 of them (1 MiB per CPU).
    fn default() -> Self {
        Self { subbuf_size: Self::DEFAULT_SUBBUF_SIZE, nr_subbufs: 256 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_are_numbered_as_the_abi_says() {
        assert_eq!((Mode::Overwrite.to_wire(), Mode::Drop.to_wire()), (0, 1));
        assert_eq!([0, 1, 2].map(Mode::from_wire), [Some(Mode::Overwrite), Some(Mode::Drop), None]);
    }

    #[test]
    fn validates_sizes() {
        assert_eq!(Geometry::new(4000, 4), Err(GeometryError::SubBufSizeNotPowerOfTwo(4000)));
        assert_eq!(Geometry::new(16, 4), Err(GeometryError::SubBufSizeOutOfRange(16)));
        assert_eq!(Geometry::new(1 << 25, 4), Err(GeometryError::SubBufSizeOutOfRange(1 << 25)));
        assert_eq!(Geometry::new(4096, 2), Err(GeometryError::TooFewSubBufs(2)));
        let g = Geometry::new(4096, 3).unwrap();
        assert_eq!((g.nr_slots(), g.data_size(), g.data_len(), g.subbuf_offset(2)), (2, 4080, 12288, 8192));
        assert_eq!(g.meta_size(), 4096);
    }

    /// The meta area describes its own size in u32 fields: every geometry accepted fits them,
    /// and those that would not are refused rather than wrapped.
    #[test]
    fn meta_sizes_of_every_accepted_geometry_fit_their_fields() {
        let most = Geometry::new(32, Geometry::MAX_SUBBUFS).unwrap();
        assert!(u32::try_from(most.meta_size()).is_ok());
        assert!(u32::try_from(crate::meta::meta_struct_len(most.nr_slots())).is_ok());
        for too_many in [Geometry::MAX_SUBBUFS + 1, 1 << 28, 1 << 30] {
            assert_eq!(Geometry::new(32, too_many), Err(GeometryError::TooManySubBufs(too_many)));
        }
    }

    #[test]
    fn largest_payload_fits_exactly() {
        for size in [32u32, 64, 128, 256, 4096, 65536] {
            let g = Geometry::new(size, 3).unwrap();
            let max = g.max_payload();
            assert!(g.layout(max).is_some(), "{size}");
            assert!(g.layout(max + 1).is_none(), "{size}");
        }
    }
}
