//! The simulated machine: physical CPUs, RAM and interrupt lines. It belongs to neither
//! privilege domain; both the hypervisor and the host are given it at boot, and it does not
//! change afterwards.
//!
//! RAM is a set of regions of this process's address space standing in for physical memory:
//! per-CPU buffer files (memfds or files in a directory, so the host can hand them to consumers in
//! other processes) and anonymous scratch memory (where the host writes hypercall descriptors).
//! An address is a `u64`, as a physical address would be; the hypervisor only ever touches RAM
//! at addresses it validated against these regions.

use memmap2::{MmapOptions, MmapRaw};
use ring_core::ShmRegion;
use ring_mmap::backing::{CpuBacking, CpuLayout, OpenBacking};
use ring_mmap::doorbell::EventFdDoorbell;
use std::os::fd::BorrowedFd;
use std::ptr::NonNull;

/// The memory behind a RAM region.
#[derive(Debug)]
enum Memory {
    /// A per-CPU buffer file, shareable with consumers.
    Buffer(CpuBacking),
    /// Anonymous memory.
    Anon(MmapRaw),
}

/// One region of RAM.
#[derive(Debug)]
pub struct RamRegion {
    /// Atomic access to the whole region, for the host (and for the hypervisor's checked copies).
    shm: ShmRegion,
    base: u64,
    len: u64,
    // Declared last: the views above point into it.
    memory: Memory,
}

impl RamRegion {
    fn new(memory: Memory) -> Self {
        let (ptr, len) = match &memory {
            Memory::Buffer(b) => (b.as_ptr(), b.layout().file_size()),
            Memory::Anon(m) => (m.as_mut_ptr(), m.len()),
        };
        let base = NonNull::new(ptr).expect("mmap never returns null");
        // SAFETY: `memory` is a page-aligned read-write mapping of `len` bytes owned by this
        // region, which drops `shm` first; all access in this process goes through ShmRegions.
        let shm = unsafe { ShmRegion::from_raw_parts(base, len) };
        Self { shm, base: ptr as u64, len: len as u64, memory }
    }

    /// First address.
    pub fn base(&self) -> u64 {
        self.base
    }

    /// Bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True for an empty region (never: regions have at least a page).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The region's bytes, accessed atomically.
    pub fn shm(&self) -> &ShmRegion {
        &self.shm
    }

    /// A read-only descriptor of a buffer region's file, for consumers.
    pub fn read_only_fd(&self) -> Option<BorrowedFd<'_>> {
        match &self.memory {
            Memory::Buffer(b) => Some(b.read_only_fd()),
            Memory::Anon(_) => None,
        }
    }

    /// True if `addr..addr + len` lies inside this region (and does not wrap).
    pub fn contains(&self, addr: u64, len: u64) -> bool {
        addr >= self.base && addr.checked_add(len).is_some_and(|end| end <= self.base + self.len)
    }
}

/// The machine.
#[derive(Debug)]
pub struct Platform {
    nr_cpus: u32,
    ram: Vec<RamRegion>,
    irqs: Vec<EventFdDoorbell>,
}

/// Builds a [`Platform`].
#[derive(Debug)]
pub struct PlatformBuilder {
    nr_cpus: u32,
    ram: Vec<RamRegion>,
}

impl PlatformBuilder {
    /// A machine of `nr_cpus` CPUs, no RAM yet.
    pub fn new(nr_cpus: u32) -> Self {
        Self { nr_cpus, ram: Vec::new() }
    }

    /// Adds a per-CPU buffer file laid out as `layout`; returns its region number.
    pub fn buffer(&mut self, backing: &OpenBacking, cpu: u32, layout: CpuLayout) -> Result<usize, ring_mmap::Error> {
        let file = CpuBacking::create(backing, cpu, layout)?;
        self.ram.push(RamRegion::new(Memory::Buffer(file)));
        Ok(self.ram.len() - 1)
    }

    /// Adds `len` bytes of anonymous RAM (rounded up to a page); returns its region number.
    pub fn anon(&mut self, len: usize) -> std::io::Result<usize> {
        let map = MmapOptions::new().len(len.max(1).next_multiple_of(4096)).map_anon()?;
        self.ram.push(RamRegion::new(Memory::Anon(map.into())));
        Ok(self.ram.len() - 1)
    }

    /// The finished machine, with one interrupt line per CPU.
    pub fn build(self) -> std::io::Result<Platform> {
        let irqs = (0..self.nr_cpus)
            .map(|_| EventFdDoorbell::new().map_err(|e| std::io::Error::other(e.to_string())))
            .collect::<Result<_, _>>()?;
        Ok(Platform { nr_cpus: self.nr_cpus, ram: self.ram, irqs })
    }
}

impl Platform {
    /// Physical CPUs.
    pub fn nr_cpus(&self) -> u32 {
        self.nr_cpus
    }

    /// RAM region `i`. Panics if there is none (a host-side programming error).
    pub fn region(&self, i: usize) -> &RamRegion {
        &self.ram[i]
    }

    /// The RAM region holding all of `addr..addr + len`, if one does.
    pub fn find(&self, addr: u64, len: u64) -> Option<&RamRegion> {
        self.ram.iter().find(|r| r.contains(addr, len))
    }

    /// CPU `cpu`'s interrupt line (an eventfd the hypervisor signals).
    pub fn irq(&self, cpu: u32) -> &EventFdDoorbell {
        &self.irqs[cpu as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_are_found_by_the_range_they_contain() {
        let mut b = PlatformBuilder::new(2);
        let a = b.anon(10_000).unwrap();
        let p = b.build().unwrap();
        let r = p.region(a);
        assert_eq!(r.len(), 12_288);
        assert!(p.find(r.base(), r.len()).is_some());
        assert!(p.find(r.base() + 4096, 4096).is_some());
        assert!(p.find(r.base() + 4096, r.len()).is_none(), "runs past the end");
        assert!(p.find(r.base().wrapping_sub(8), 16).is_none(), "starts before");
        assert!(p.find(u64::MAX - 4, 16).is_none(), "wraps");
        assert!(r.read_only_fd().is_none());
        assert_eq!(p.nr_cpus(), 2);
    }
}
