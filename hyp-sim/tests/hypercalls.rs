//! The hypercall interface against a hostile host: every refusal, and a property test of
//! arbitrary hypercall sequences (with traced exits in between) that checks the hypervisor never
//! panics and never writes outside the pages it was given.

use hyp_sim::events::HypEvent;
use hyp_sim::guest;
use hyp_sim::hyp::desc::{CpuDesc, DescHeader, PAGE};
use hyp_sim::hyp::{HvcRet, Hyp, HypError, call};
use hyp_sim::platform::{Platform, PlatformBuilder};
use proptest::prelude::*;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use zerocopy::IntoBytes;

/// The host task the tests' exits are attributed to.
const HOST_TASK: i32 = 1;

const CANARY: u32 = 0xa5a5_a5a5;
const RAM_PAGES: u64 = 64;

/// A 4-CPU machine: 64 pages of RAM full of canaries, and a scratch page for descriptors.
struct Machine {
    platform: Arc<Platform>,
    hyp: Hyp,
    ram: u64,
    scratch: u64,
}

impl Machine {
    fn new() -> Self {
        let mut b = PlatformBuilder::new(4);
        let ram = b.anon((RAM_PAGES * PAGE) as usize).unwrap();
        let scratch = b.anon(4096).unwrap();
        let platform = Arc::new(b.build().unwrap());
        let shm = platform.region(ram).shm();
        for at in (0..shm.len()).step_by(4) {
            shm.store_u32(at, CANARY, Ordering::Relaxed);
        }
        let (ram, scratch) = (platform.region(ram).base(), platform.region(scratch).base());
        let hyp = Hyp::boot(platform.clone(), 64);
        Self { platform, hyp, ram, scratch }
    }

    /// Writes a descriptor into scratch RAM and loads it.
    fn load(&self, header: &DescHeader, cpus: &[CpuDesc]) -> HvcRet {
        let mut bytes = header.as_bytes().to_vec();
        cpus.iter().for_each(|c| bytes.extend_from_slice(c.as_bytes()));
        let scratch = self.platform.find(self.scratch, 1).unwrap();
        scratch.shm().store_bytes(0, &bytes);
        self.hyp.hvc(call::LOAD, [self.scratch, bytes.len() as u64, 0, 0])
    }

    /// A valid descriptor: CPUs 0 and 1, 4 sub-buffers each, from RAM page `first` on.
    fn good(&self, first: u64) -> (DescHeader, Vec<CpuDesc>) {
        let header = DescHeader::new(2, 4096, 4, 0);
        let cpu = |i: u64| {
            let base = self.ram + (first + i * 5) * PAGE;
            CpuDesc {
                cpu: i as u32,
                _reserved: 0,
                meta_addr: base,
                meta_len: PAGE,
                data_addr: base + PAGE,
                data_len: 4 * PAGE,
            }
        };
        (header, vec![cpu(0), cpu(1)])
    }

    /// Pages of RAM whose canaries are intact.
    fn intact(&self, page: u64) -> bool {
        let shm = self.platform.find(self.ram, 1).unwrap().shm();
        (0..PAGE as usize).step_by(4).all(|o| shm.load_u32((page * PAGE) as usize + o) == CANARY)
    }
}

fn errno(e: HypError) -> i64 {
    e.code()
}

#[test]
fn each_hypercall_refuses_bad_input_with_its_errno() {
    let m = Machine::new();
    let hvc = |c, a: [u64; 4]| m.hyp.hvc(c, a).status;
    assert_eq!(hvc(999, [0; 4]), errno(HypError::UnknownCall));
    assert_eq!(hvc(u64::MAX, [u64::MAX; 4]), errno(HypError::UnknownCall));
    assert_eq!(hvc(call::UNLOAD, [0; 4]), errno(HypError::NotLoaded));
    assert_eq!(hvc(call::SWAP_READER, [0, 0, 0, 0]), errno(HypError::NotLoaded));
    assert_eq!(hvc(call::STATS, [1, 0, 0, 0]), errno(HypError::NotLoaded));
    assert_eq!(hvc(call::ENABLE, [2, 0, 0, 0]), errno(HypError::BadArgument));
    assert_eq!(hvc(call::ENABLE_EVENT, [0, 1, 0, 0]), errno(HypError::BadArgument), "no event 0");
    assert_eq!(hvc(call::ENABLE_EVENT, [99, 1, 0, 0]), errno(HypError::BadArgument));
    assert_eq!(hvc(call::ENABLE_EVENT, [3, 7, 0, 0]), errno(HypError::BadArgument));
    assert_eq!(hvc(call::UPDATE_CLOCK, [0, 10, 0, 0]), errno(HypError::BadArgument), "mult 0");
    assert_eq!(hvc(call::UPDATE_CLOCK, [1, 64, 0, 0]), errno(HypError::BadArgument), "shift 64");
    assert_eq!(hvc(call::UPDATE_CLOCK, [1 << 32, 1, 0, 0]), errno(HypError::BadArgument), "mult > u32");
    // LOAD: the descriptor must lie in RAM, be aligned and sized.
    assert_eq!(hvc(call::LOAD, [8, 32, 0, 0]), errno(HypError::DescOutsideRam));
    assert_eq!(hvc(call::LOAD, [m.scratch + 4, 72, 0, 0]), errno(HypError::Misaligned));
    assert_eq!(hvc(call::LOAD, [m.scratch, 1 << 20, 0, 0]), errno(HypError::DescSize));
    assert_eq!(hvc(call::LOAD, [m.scratch, u64::MAX, 0, 0]), errno(HypError::DescSize));
    // Rule by rule refusals of descriptor contents are in hyp::desc's unit tests; one per class
    // through the hypercall shows the errno the host gets.
    let (h, c) = m.good(0);
    assert_eq!(m.load(&DescHeader { magic: 1, ..h }, &c).status, errno(HypError::DescMagic));
    let mut dup = c.clone();
    dup[1].cpu = 0;
    assert_eq!(m.load(&h, &dup).status, -17, "EEXIST");
    let mut out = c.clone();
    out[1].data_addr = m.scratch;
    assert_eq!(m.load(&h, &out).status, -14, "EFAULT");
    // A good load, then what needs a loaded buffer.
    assert_eq!(m.load(&h, &c).status, 0);
    assert_eq!(m.load(&h, &c).status, errno(HypError::AlreadyLoaded));
    assert_eq!(hvc(call::SWAP_READER, [4, 0, 0, 0]), errno(HypError::BadArgument), "no CPU 4");
    assert_eq!(hvc(call::SWAP_READER, [2, 0, 0, 0]), errno(HypError::NotLoaded), "CPU 2 has no buffer");
    assert_eq!(hvc(call::SWAP_READER, [0, 1 << 32, 0, 0]), errno(HypError::BadArgument), "read > u32");
    assert_eq!(hvc(call::SWAP_READER, [0, 5000, 0, 0]), errno(HypError::BadArgument), "read past commit");
    assert_eq!(hvc(call::STATS, [0, 3, 0, 0]), errno(HypError::BadArgument), "no group 3");
    assert_eq!(hvc(call::RESET, [9, 0, 0, 0]), errno(HypError::BadArgument));
    assert_eq!(hvc(call::RESET, [0, 0, 0, 0]), 0);
    assert_eq!(hvc(call::UNLOAD, [0; 4]), 0);
    assert_eq!(m.load(&h, &c).status, 0, "loads again after an unload");
}

#[test]
fn the_descriptor_is_copied_before_it_is_checked() {
    let m = Machine::new();
    let (h, c) = m.good(0);
    assert_eq!(m.load(&h, &c).status, 0);
    // The host rewrites the descriptor afterwards: the hypervisor's buffers are unaffected.
    let scratch = m.platform.find(m.scratch, 1).unwrap();
    for at in (0..64).step_by(4) {
        scratch.shm().store_u32(at, 0xffff_ffff, Ordering::Relaxed);
    }
    m.hyp.hvc(call::ENABLE, [1, 0, 0, 0]);
    m.hyp.trace(0, 0, &HypEvent::Enter);
    assert_eq!(m.hyp.hvc(call::STATS, [0, 0, 0, 0]).ret[0], 1);
}

#[test]
fn tracing_switches_and_event_filters_apply() {
    let m = Machine::new();
    let (h, c) = m.good(0);
    assert_eq!(m.load(&h, &c).status, 0);
    let entries = || m.hyp.hvc(call::STATS, [0, 0, 0, 0]).ret[0];
    m.hyp.handle_exit(0, HOST_TASK, 0, &guest::exit(1, 0, 0));
    assert_eq!(entries(), 0, "tracing starts disabled");
    m.hyp.hvc(call::ENABLE, [1, 0, 0, 0]);
    m.hyp.handle_exit(0, HOST_TASK, 0, &guest::exit(1, 0, 0));
    assert_eq!(entries(), 3, "enter, the exit's event, exit");
    m.hyp.hvc(call::ENABLE_EVENT, [1, 0, 0, 0]);
    m.hyp.hvc(call::ENABLE_EVENT, [2, 0, 0, 0]);
    m.hyp.handle_exit(0, HOST_TASK, 1, &guest::exit(1, 0, 1));
    assert_eq!(entries(), 4, "hyp_enter and hyp_exit filtered out");
}

/// SWAP_READER refuses a `read` inside an event, or behind the last one accepted, as a bad
/// argument, and a reader page the host scribbled on makes reads inside it refused, not a panic:
/// no host call leaves the next consumer to decode from the middle of an event.
#[test]
fn swap_reader_refuses_reads_that_are_not_event_boundaries() {
    let m = Machine::new();
    let (h, c) = m.good(0);
    assert_eq!(m.load(&h, &c).status, 0);
    m.hyp.hvc(call::ENABLE, [1, 0, 0, 0]);
    m.hyp.handle_exit(0, HOST_TASK, 0, &guest::exit(1, 0, 0));
    let swap = |read: u64| m.hyp.hvc(call::SWAP_READER, [0, read, 0, 0]);
    let taken = swap(0);
    assert_eq!(taken.status, 0, "swapped in the page with the exit's events");
    let page = c[0].data_addr + taken.ret[0] * 4096;
    let shm = m.platform.find(page, 4096).unwrap().shm();
    let at = (page - m.platform.find(page, 4096).unwrap().base()) as usize;
    let commit = shm.load_u64(at + 8) & 0x3fff_ffff;
    // The first record's end, from its header's type_len (a small event, or a time record of 8).
    let first = match shm.load_u32(at + 16) & 0x1f {
        t @ 1..=28 => 4 + u64::from(t) * 4,
        _ => 8,
    };
    assert!(first < commit);
    assert_eq!(swap(2).status, errno(HypError::BadArgument), "inside the first record");
    assert_eq!(swap(first + 2).status, errno(HypError::BadArgument), "misaligned");
    assert_eq!(swap(first).ret[1], first, "the end of the first record");
    assert_eq!(swap(0).status, errno(HypError::BadArgument), "behind the last read");
    // The host writes garbage over the rest of the page: a length running past the commit.
    shm.store_u32(at + 16 + first as usize, 0, Ordering::Relaxed);
    shm.store_u32(at + 16 + first as usize + 4, 0x7fff_fff0, Ordering::Relaxed);
    assert_eq!(swap(commit - 4).status, errno(HypError::BadArgument), "cannot be checked: refused");
    assert!(swap(commit).status >= 0, "the whole commit skips the page");
}

/// One step of a hostile host.
#[derive(Debug, Clone)]
enum Step {
    /// An arbitrary hypercall.
    Call(u64, [u64; 4]),
    /// A LOAD of a descriptor whose CPU entries point at arbitrary RAM pages.
    Load { cpus: Vec<(u32, u64, u64, u64, u64)>, nr_subbufs: u32, mode: u32 },
    /// Guest exits traced on CPU `cpu`.
    Exits { cpu: u32, n: u64 },
}

fn step() -> impl Strategy<Value = Step> {
    let arg = prop_oneof![0u64..8, any::<u64>(), (0u64..RAM_PAGES).prop_map(|p| p * PAGE)];
    // Mostly plausible descriptors (one meta page, data matching the sub-buffer count), so that
    // many loads succeed and the buffers get written; the rest arbitrary.
    let load = (2u32..7, 0u32..3).prop_flat_map(|(nr_subbufs, mode)| {
        let data_pages = prop_oneof![3 => Just(u64::from(nr_subbufs)), 1 => 0u64..8];
        let meta_pages = prop_oneof![3 => Just(1u64), 1 => 0u64..3];
        let cpu_entry = (0u32..5, 0u64..RAM_PAGES, meta_pages, 0u64..RAM_PAGES, data_pages);
        proptest::collection::vec(cpu_entry, 1..4).prop_map(move |cpus| Step::Load { cpus, nr_subbufs, mode })
    });
    prop_oneof![
        3 => (0u64..12, [arg.clone(), arg.clone(), arg.clone(), arg]).prop_map(|(c, a)| Step::Call(c, a)),
        3 => load,
        2 => (0u32..5, 1u64..200).prop_map(|(cpu, n)| Step::Exits { cpu, n }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_hypercalls_never_panic_nor_touch_pages_not_donated(steps in proptest::collection::vec(step(), 1..40)) {
        let m = Machine::new();
        // Pages the hypervisor was ever given (by a LOAD that succeeded).
        let mut donated = [false; RAM_PAGES as usize];
        let mut donate = |descs: &[CpuDesc]| {
            for d in descs {
                for range in [(d.meta_addr, d.meta_len), (d.data_addr, d.data_len)] {
                    for page in (range.0 - m.ram) / PAGE..(range.0 - m.ram + range.1) / PAGE {
                        donated[page as usize] = true;
                    }
                }
            }
        };
        // The descriptor last written to the scratch page, which an arbitrary LOAD reads.
        let mut in_scratch: Vec<CpuDesc> = Vec::new();
        for s in &steps {
            match s {
                Step::Call(c, a) => {
                    let mut args = *a;
                    // Relative page numbers become addresses in RAM, to reach the interesting paths.
                    if *c == call::LOAD { args[0] = m.scratch; args[1] %= 512; }
                    // A LOAD that succeeds donates what the descriptor in the scratch page names
                    // (or part of it: what counts as donated is then a superset).
                    if m.hyp.hvc(*c, args).status == 0 && *c == call::LOAD {
                        donate(&in_scratch);
                    }
                }
                Step::Load { cpus, nr_subbufs, mode } => {
                    let header = DescHeader::new(cpus.len() as u32, 4096, *nr_subbufs, *mode);
                    let descs: Vec<CpuDesc> = cpus.iter().map(|&(cpu, meta, meta_pages, data, data_pages)| CpuDesc {
                        cpu, _reserved: 0,
                        meta_addr: m.ram + meta * PAGE, meta_len: meta_pages * PAGE,
                        data_addr: m.ram + data * PAGE, data_len: data_pages * PAGE,
                    }).collect();
                    if m.load(&header, &descs).status == 0 {
                        donate(&descs);
                    }
                    in_scratch = descs;
                }
                Step::Exits { cpu, n } => {
                    m.hyp.hvc(call::ENABLE, [1, 0, 0, 0]);
                    for i in 0..*n {
                        m.hyp.handle_exit(*cpu, HOST_TASK, i, &guest::exit(3, *cpu, i));
                    }
                }
            }
        }
        for page in 0..RAM_PAGES {
            if !donated[page as usize] {
                prop_assert!(m.intact(page), "page {} was never donated but was written", page);
            }
        }
    }
}
