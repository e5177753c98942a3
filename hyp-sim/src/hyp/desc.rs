//! The load descriptor: how the host tells the hypervisor which pages it donates for tracing.
//!
//! The host writes it into its RAM and passes its address and length to the `LOAD` hypercall.
//! The hypervisor first copies it into its own memory (so the host cannot change it during the
//! checks), then validates every field before using any. All numbers are host-endian.
//!
//! ```text
//!   header (32 bytes)                       per CPU (40 bytes), nr_cpus of them
//!   0  u32 magic "HYPD"                     0  u32 cpu          physical CPU id
//!   4  u32 version (1)                      4  u32 reserved, 0
//!   8  u32 nr_cpus                          8  u64 meta_addr    page-aligned
//!   12 u32 subbuf_size (power of two)       16 u64 meta_len     page multiple, >= the meta size
//!   16 u32 nr_subbufs (>= 3)                24 u64 data_addr    page-aligned
//!   20 u32 mode (Mode::to_wire)             32 u64 data_len     = subbuf_size * nr_subbufs
//!   24 u64 reserved, 0
//! ```

use super::error::HypError;
use crate::platform::Platform;
use ring_core::{Geometry, Mode};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// `DescHeader::magic`: "HYPD" in little-endian.
pub const DESC_MAGIC: u32 = u32::from_le_bytes(*b"HYPD");
/// `DescHeader::version`.
pub const DESC_VERSION: u32 = 1;
/// The page size donated memory is counted in.
pub const PAGE: u64 = 4096;
/// Most CPUs a descriptor can describe.
pub const MAX_CPUS: usize = 64;
/// Largest descriptor.
pub const MAX_DESC_BYTES: usize = size_of::<DescHeader>() + MAX_CPUS * size_of::<CpuDesc>();
/// Smallest sub-buffer size accepted: a page.
pub const MIN_SUBBUF_SIZE: u32 = 4096;
/// Largest sub-buffer size accepted.
pub const MAX_SUBBUF_SIZE: u32 = 1 << 20;

/// The descriptor's header.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct DescHeader {
    /// [`DESC_MAGIC`].
    pub magic: u32,
    /// [`DESC_VERSION`].
    pub version: u32,
    /// CPU entries following.
    pub nr_cpus: u32,
    /// Bytes per sub-buffer.
    pub subbuf_size: u32,
    /// Sub-buffers per CPU, reader page included.
    pub nr_subbufs: u32,
    /// The buffers' [`Mode`], by [`Mode::to_wire`] (0 overwrite, 1 drop).
    pub mode: u32,
    /// Reserved, 0.
    pub _reserved: u64,
}

const _: () = assert!(size_of::<DescHeader>() == 32);

impl DescHeader {
    /// A header of this version for `nr_cpus` CPU entries of `nr_subbufs` sub-buffers of
    /// `subbuf_size` bytes, in `mode` ([`Mode::to_wire`]).
    pub const fn new(nr_cpus: u32, subbuf_size: u32, nr_subbufs: u32, mode: u32) -> Self {
        Self { magic: DESC_MAGIC, version: DESC_VERSION, nr_cpus, subbuf_size, nr_subbufs, mode, _reserved: 0 }
    }
}
const _: () = assert!(core::mem::offset_of!(DescHeader, mode) == 20);

/// One CPU's donated pages.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct CpuDesc {
    /// Physical CPU id.
    pub cpu: u32,
    /// Reserved, 0.
    pub _reserved: u32,
    /// Address of the meta area.
    pub meta_addr: u64,
    /// Bytes of the meta area.
    pub meta_len: u64,
    /// Address of the sub-buffer array.
    pub data_addr: u64,
    /// Bytes of the sub-buffer array.
    pub data_len: u64,
}

const _: () = assert!(size_of::<CpuDesc>() == 40);
const _: () = assert!(core::mem::offset_of!(CpuDesc, data_len) == 32);

/// A validated descriptor.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    /// Geometry of every CPU's buffer.
    pub geometry: Geometry,
    /// Full-ring behaviour.
    pub mode: Mode,
    /// Entries used in `cpus`.
    pub nr_cpus: usize,
    /// Each CPU's pages, validated; `cpus[..nr_cpus]`.
    pub cpus: [CpuDesc; MAX_CPUS],
}

/// Validates a descriptor copied into hypervisor memory. `links_per_cpu` is how many sub-buffers
/// the hypervisor can track per CPU. Checks, in order: size, magic and version, reserved fields,
/// CPU count, sub-buffer size and count, mode; then per CPU: id, duplicates, alignment, meta and
/// data sizes, RAM; then that no two donated ranges overlap.
pub fn validate(bytes: &[u8], platform: &Platform, links_per_cpu: u32) -> Result<Load, HypError> {
    let (header, rest) = DescHeader::read_from_prefix(bytes).map_err(|_| HypError::DescSize)?;
    let nr_cpus = header.nr_cpus as usize;
    if nr_cpus > MAX_CPUS || rest.len() != nr_cpus * size_of::<CpuDesc>() {
        return Err(HypError::DescSize);
    }
    if header.magic != DESC_MAGIC || header.version != DESC_VERSION {
        return Err(HypError::DescMagic);
    }
    if header._reserved != 0 {
        return Err(HypError::DescReserved);
    }
    if nr_cpus == 0 || nr_cpus > platform.nr_cpus() as usize {
        return Err(HypError::CpuCount);
    }
    let size = header.subbuf_size;
    if !size.is_power_of_two() || !(MIN_SUBBUF_SIZE..=MAX_SUBBUF_SIZE).contains(&size) {
        return Err(HypError::SubBufSize);
    }
    if header.nr_subbufs < 3 || header.nr_subbufs > links_per_cpu {
        return Err(HypError::SubBufCount);
    }
    let geometry = Geometry::new(size, header.nr_subbufs).map_err(|_| HypError::SubBufCount)?;
    let mode = Mode::from_wire(header.mode).ok_or(HypError::Mode)?;
    let mut load = Load { geometry, mode, nr_cpus, cpus: [CpuDesc::default(); MAX_CPUS] };
    let mut seen = [false; MAX_CPUS];
    for (i, chunk) in rest.chunks_exact(size_of::<CpuDesc>()).enumerate() {
        let cpu = CpuDesc::read_from_bytes(chunk).map_err(|_| HypError::DescSize)?;
        if cpu._reserved != 0 {
            return Err(HypError::DescReserved);
        }
        let id = cpu.cpu as usize;
        if id >= platform.nr_cpus() as usize || id >= MAX_CPUS {
            return Err(HypError::CpuId);
        }
        if std::mem::replace(&mut seen[id], true) {
            return Err(HypError::DuplicateCpu);
        }
        if [cpu.meta_addr, cpu.meta_len, cpu.data_addr].iter().any(|v| v % PAGE != 0) {
            return Err(HypError::Misaligned);
        }
        if cpu.meta_len < geometry.meta_size() as u64 {
            return Err(HypError::MetaSize);
        }
        if cpu.data_len != geometry.data_len() as u64 {
            return Err(HypError::DataSize);
        }
        if platform.find(cpu.meta_addr, cpu.meta_len).is_none() || platform.find(cpu.data_addr, cpu.data_len).is_none()
        {
            return Err(HypError::OutsideRam);
        }
        load.cpus[i] = cpu;
    }
    // No two donated ranges may overlap: sort them (in place, no allocation) and compare
    // neighbours.
    let mut ranges = [(0u64, 0u64); 2 * MAX_CPUS];
    for (i, cpu) in load.cpus[..nr_cpus].iter().enumerate() {
        ranges[2 * i] = (cpu.meta_addr, cpu.meta_addr + cpu.meta_len);
        ranges[2 * i + 1] = (cpu.data_addr, cpu.data_addr + cpu.data_len);
    }
    let ranges = &mut ranges[..2 * nr_cpus];
    ranges.sort_unstable();
    if ranges.windows(2).any(|w| w[1].0 < w[0].1) {
        return Err(HypError::Overlap);
    }
    Ok(load)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::PlatformBuilder;

    /// A machine of 4 CPUs with 1 MiB of anonymous RAM at `base`.
    fn machine() -> (Platform, u64) {
        let mut b = PlatformBuilder::new(4);
        let r = b.anon(1 << 20).unwrap();
        let p = b.build().unwrap();
        let base = p.region(r).base();
        (p, base)
    }

    /// A valid descriptor for CPUs 0 and 1: 4 sub-buffers of 4 KiB each, meta then data.
    fn good(base: u64) -> (DescHeader, Vec<CpuDesc>) {
        let header = DescHeader::new(2, 4096, 4, 0);
        let cpu = |i: u64| CpuDesc {
            cpu: i as u32,
            _reserved: 0,
            meta_addr: base + i * 5 * PAGE,
            meta_len: PAGE,
            data_addr: base + i * 5 * PAGE + PAGE,
            data_len: 4 * PAGE,
        };
        (header, vec![cpu(0), cpu(1)])
    }

    fn bytes(header: &DescHeader, cpus: &[CpuDesc]) -> Vec<u8> {
        let mut v = header.as_bytes().to_vec();
        for c in cpus {
            v.extend_from_slice(c.as_bytes());
        }
        v
    }

    fn check(p: &Platform, header: &DescHeader, cpus: &[CpuDesc]) -> Result<Load, HypError> {
        validate(&bytes(header, cpus), p, 64)
    }

    #[test]
    fn a_good_descriptor_passes() {
        let (p, base) = machine();
        let (h, c) = good(base);
        let load = check(&p, &h, &c).unwrap();
        assert_eq!((load.nr_cpus, load.geometry.nr_subbufs(), load.mode), (2, 4, Mode::Overwrite));
        assert_eq!(load.cpus[1], c[1]);
    }

    #[test]
    fn each_rule_rejects_its_violation() {
        let (p, base) = machine();
        let (h, c) = good(base);
        let expect = |h: DescHeader, c: Vec<CpuDesc>, err: HypError| {
            assert_eq!(check(&p, &h, &c).err(), Some(err), "{h:?} {c:?}");
        };
        // Size: truncated, extra bytes, too many CPUs for the size.
        assert_eq!(validate(&bytes(&h, &c)[..40], &p, 64).err(), Some(HypError::DescSize));
        let mut long = bytes(&h, &c);
        long.push(0);
        assert_eq!(validate(&long, &p, 64).err(), Some(HypError::DescSize));
        assert_eq!(validate(&[0u8; 16], &p, 64).err(), Some(HypError::DescSize));
        expect(DescHeader { nr_cpus: 3, ..h }, c.clone(), HypError::DescSize);
        expect(DescHeader { magic: 0, ..h }, c.clone(), HypError::DescMagic);
        expect(DescHeader { version: 2, ..h }, c.clone(), HypError::DescMagic);
        expect(DescHeader { _reserved: 1, ..h }, c.clone(), HypError::DescReserved);
        let mut r = c.clone();
        r[1]._reserved = 9;
        expect(h, r, HypError::DescReserved);
        expect(DescHeader { nr_cpus: 0, ..h }, vec![], HypError::CpuCount);
        let five: Vec<CpuDesc> = (0..5).map(|i| CpuDesc { cpu: i, ..c[0] }).collect();
        expect(DescHeader { nr_cpus: 5, ..h }, five, HypError::CpuCount);
        expect(DescHeader { subbuf_size: 6000, ..h }, c.clone(), HypError::SubBufSize);
        expect(DescHeader { subbuf_size: 2048, ..h }, c.clone(), HypError::SubBufSize);
        expect(DescHeader { subbuf_size: 1 << 21, ..h }, c.clone(), HypError::SubBufSize);
        expect(DescHeader { nr_subbufs: 2, ..h }, c.clone(), HypError::SubBufCount);
        expect(DescHeader { nr_subbufs: 65, ..h }, c.clone(), HypError::SubBufCount);
        expect(DescHeader { mode: 2, ..h }, c.clone(), HypError::Mode);
        let mut bad = c.clone();
        bad[1].cpu = 4;
        expect(h, bad, HypError::CpuId);
        let mut dup = c.clone();
        dup[1].cpu = 0;
        expect(h, dup, HypError::DuplicateCpu);
        for field in 0..3 {
            let mut m = c.clone();
            match field {
                0 => m[0].meta_addr += 8,
                1 => m[0].meta_len += 8,
                _ => m[0].data_addr += 8,
            }
            expect(h, m, HypError::Misaligned);
        }
        let mut small = c.clone();
        small[0].meta_len = 0;
        expect(h, small, HypError::MetaSize);
        let mut data = c.clone();
        data[0].data_len = 3 * PAGE;
        expect(h, data, HypError::DataSize);
        let mut outside = c.clone();
        outside[1].data_addr = base + (1 << 20) - 2 * PAGE; // runs past the end of RAM
        expect(h, outside, HypError::OutsideRam);
        let mut nowhere = c.clone();
        nowhere[0].meta_addr = PAGE;
        expect(h, nowhere, HypError::OutsideRam);
        let mut wraps = c.clone();
        wraps[0].meta_addr = u64::MAX - PAGE + 1;
        expect(h, wraps, HypError::OutsideRam);
        let mut overlap = c.clone();
        overlap[1].meta_addr = c[0].data_addr + 3 * PAGE; // inside CPU 0's data
        expect(h, overlap, HypError::Overlap);
        let mut same = c.clone();
        same[0].meta_addr = c[0].data_addr;
        expect(h, same, HypError::Overlap);
    }

    proptest::proptest! {
        /// Arbitrary descriptor bytes never panic the validator, and whatever it accepts lies in
        /// RAM and does not overlap.
        #[test]
        fn arbitrary_descriptors_never_panic(
            words in proptest::collection::vec(proptest::num::u64::ANY, 0..40),
            nr_cpus in 0u32..6,
            picks in proptest::collection::vec(0u64..300, 8),
        ) {
            let (p, base) = machine();
            let (mut h, c) = good(base);
            h.nr_cpus = nr_cpus;
            let mut raw = bytes(&h, &c);
            // Mix arbitrary words and plausible in-RAM addresses into the CPU entries.
            for (i, w) in words.iter().enumerate() {
                let v = if i % 3 == 0 { base + picks[i % 8] * PAGE } else { *w };
                let at = 32 + 8 * i;
                if at + 8 <= raw.len() {
                    raw[at..at + 8].copy_from_slice(&v.to_ne_bytes());
                } else {
                    raw.extend_from_slice(&v.to_ne_bytes());
                }
            }
            if let Ok(load) = validate(&raw, &p, 64) {
                for cpu in &load.cpus[..load.nr_cpus] {
                    proptest::prop_assert!(p.find(cpu.meta_addr, cpu.meta_len).is_some());
                    proptest::prop_assert!(p.find(cpu.data_addr, cpu.data_len).is_some());
                }
            }
        }
    }
}
