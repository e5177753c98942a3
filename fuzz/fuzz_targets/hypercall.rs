//! The hypercall interface against a hostile host: arbitrary sequences of hypercalls with
//! arbitrary arguments and descriptors (well-formed ones with arbitrary addresses, or raw
//! bytes), with traced exits in between. The hypervisor must never panic, and never write RAM
//! outside the pages a successful LOAD donated (every other page keeps its canaries).
#![no_main]

use arbitrary::Arbitrary;
use hyp_sim::events::HypEvent;
use hyp_sim::hyp::desc::{CpuDesc, DescHeader, PAGE};
use hyp_sim::hyp::{Hyp, call};
use hyp_sim::platform::{Platform, PlatformBuilder};
use libfuzzer_sys::fuzz_target;
use ring_core::Mode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use zerocopy::{FromBytes, IntoBytes};

const CANARY: u32 = 0xa5a5_a5a5;
const RAM_PAGES: u64 = 24;

#[derive(Arbitrary, Debug)]
struct CpuPages {
    cpu: u8,
    meta_page: u8,
    meta_pages: u8,
    data_page: u8,
    data_pages: u8,
}

#[derive(Arbitrary, Debug)]
enum Step {
    /// LOAD of a well-formed descriptor whose pages are RAM page numbers (any of them).
    Load { nr_subbufs: u8, big_pages: bool, drop_mode: bool, cpus: Vec<CpuPages> },
    /// LOAD of arbitrary descriptor bytes at an arbitrary offset of scratch RAM.
    RawLoad { bytes: Vec<u8>, offset: u16, len: u64 },
    /// Any hypercall (numbers near the real ones) with any arguments.
    Hvc { call: u8, args: [u64; 4] },
    /// Exits traced on a CPU.
    Trace { cpu: u8, exits: u8 },
}

struct Machine {
    platform: Arc<Platform>,
    hyp: Hyp,
    ram: u64,
    scratch: u64,
    /// RAM pages a successful LOAD handed to the hypervisor.
    donated: [bool; RAM_PAGES as usize],
}

impl Machine {
    fn new() -> Self {
        let mut b = PlatformBuilder::new(4);
        let ram = b.anon((RAM_PAGES * PAGE) as usize).expect("ram");
        let scratch = b.anon(PAGE as usize).expect("scratch");
        let platform = Arc::new(b.build().expect("platform"));
        let shm = platform.region(ram).shm();
        for at in (0..shm.len()).step_by(4) {
            shm.store_u32(at, CANARY, Ordering::Relaxed);
        }
        let (ram, scratch) = (platform.region(ram).base(), platform.region(scratch).base());
        let hyp = Hyp::boot(platform.clone(), 16);
        Self { platform, hyp, ram, scratch, donated: [false; RAM_PAGES as usize] }
    }

    /// Puts `bytes` at `offset` of scratch RAM and loads `len` bytes from there; on success,
    /// notes the RAM pages the accepted descriptor donated.
    fn load(&mut self, bytes: &[u8], offset: u64, len: u64) {
        let scratch = self.platform.find(self.scratch, 1).expect("scratch").shm();
        let offset = (offset % PAGE) as usize;
        let bytes = &bytes[..bytes.len().min(PAGE as usize - offset)];
        scratch.store_bytes_unaligned(offset, bytes);
        // The descriptor as the hypervisor read it, taken before the call: the scratch page
        // itself may be among the pages it donates (the regions can lie next to each other in
        // the address space), and then the hypervisor writes over it.
        let mut page = vec![0u8; PAGE as usize];
        scratch.load_bytes(0, &mut page);
        let copy = &page[offset..offset + (len as usize).min(PAGE as usize - offset)];
        if self.hyp.hvc(call::LOAD, [self.scratch + offset as u64, len, 0, 0]).status != 0 {
            return;
        }
        let (header, rest) = DescHeader::read_from_prefix(copy).expect("an accepted descriptor has a header");
        for i in 0..header.nr_cpus as usize {
            let cpu = CpuDesc::read_from_prefix(&rest[i * size_of::<CpuDesc>()..]).expect("and its CPUs").0;
            for (addr, len) in [(cpu.meta_addr, cpu.meta_len), (cpu.data_addr, cpu.data_len)] {
                // Pages outside RAM (scratch, when it lies next to RAM) carry no canary.
                let Some(from) = addr.checked_sub(self.ram) else { continue };
                for page in from / PAGE..(from + len).div_ceil(PAGE).min(RAM_PAGES) {
                    self.donated[page as usize] = true;
                }
            }
        }
    }

    fn intact(&self, page: u64) -> bool {
        let shm = self.platform.find(self.ram, 1).expect("ram").shm();
        (0..PAGE as usize).step_by(4).all(|o| shm.load_u32((page * PAGE) as usize + o) == CANARY)
    }
}

fuzz_target!(|steps: Vec<Step>| {
    let mut m = Machine::new();
    for step in steps.into_iter().take(24) {
        match step {
            Step::Load { nr_subbufs, big_pages, drop_mode, cpus } => {
                let subbuf = if big_pages { 2 * PAGE as u32 } else { PAGE as u32 };
                let mode = if drop_mode { Mode::Drop } else { Mode::Overwrite };
                let header = DescHeader::new(cpus.len() as u32, subbuf, u32::from(nr_subbufs % 8), mode.to_wire());
                let mut bytes = header.as_bytes().to_vec();
                for c in cpus.iter().take(6) {
                    let at = |page: u8| m.ram + u64::from(page) % (RAM_PAGES + 2) * PAGE;
                    let desc = CpuDesc {
                        cpu: u32::from(c.cpu % 6),
                        _reserved: 0,
                        meta_addr: at(c.meta_page),
                        meta_len: u64::from(c.meta_pages % 3) * PAGE,
                        data_addr: at(c.data_page),
                        data_len: u64::from(c.data_pages % 10) * PAGE,
                    };
                    bytes.extend_from_slice(desc.as_bytes());
                }
                let len = bytes.len() as u64;
                m.load(&bytes, 0, len);
            }
            Step::RawLoad { bytes, offset, len } => m.load(&bytes, u64::from(offset), len),
            Step::Hvc { call, args } => {
                m.hyp.hvc(u64::from(call % 13), args);
            }
            Step::Trace { cpu, exits } => {
                for n in 0..u64::from(exits) {
                    m.hyp.trace(u32::from(cpu % 5), 0, &HypEvent::Enter);
                    m.hyp.trace(u32::from(cpu % 5), 0, &HypEvent::HostHcall { id: n, args: [n; 4] });
                }
            }
        }
    }
    for page in 0..RAM_PAGES {
        assert!(m.donated[page as usize] || m.intact(page), "RAM page {page} was never donated but was written");
    }
});
