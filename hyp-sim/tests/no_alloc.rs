//! The hypervisor allocates nothing after it booted: tracing, every hypercall, even unloading
//! and reloading its buffers, run on the memory it set aside at boot. A counting global
//! allocator checks it (this test binary holds this one test, so no other thread allocates).

use hyp_sim::guest;
use hyp_sim::host::{Host, HostConfig};
use hyp_sim::hyp::call;
use ring_core::format::{COMMIT_LEN_MASK, SUBBUF_COMMIT_OFFSET};
use ring_core::{Config, Geometry, Mode};
use ring_mmap::Backing;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

/// The host task the exits are attributed to.
const HOST_TASK: i32 = 1;

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards every call to the system allocator unchanged; it only counts allocations.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract for `alloc` is passed on unchanged.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above, for `dealloc`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn the_hypervisor_allocates_nothing_after_boot() {
    let config = HostConfig {
        nr_cpus: 2,
        buffer: Config { geometry: Geometry::new(4096, 8).unwrap(), mode: Mode::Overwrite },
        backing: Backing::Memfd,
    };
    let geometry = config.buffer.geometry;
    let host = Host::boot(config).expect("boot");
    // CPU 0's buffer file, the first region the host set up, to read each reader page's commit.
    let cpu0 = host.platform().region(0).shm();
    let hyp = host.hyp().clone();
    // The descriptor for reloading is written before counting (that is the host's business).
    let (desc, len) = host.write_descriptor();
    let before = ALLOCATIONS.load(Ordering::Relaxed);

    for n in 0..20_000 {
        hyp.handle_exit((n % 2) as u32, HOST_TASK, n, &guest::exit(5, (n % 2) as u32, n));
    }
    // Consume CPU 0's ring: each page read to its commit, so that every swap but the last hands
    // over a new page.
    let (mut read, mut swaps) = (0, 0);
    for _ in 0..50 {
        let r = hyp.hvc(call::SWAP_READER, [0, read, 0, 0]);
        assert!(r.status >= 0, "{r:?}");
        swaps += u32::from(r.status == 0);
        let page = geometry.meta_size() + geometry.subbuf_offset(r.ret[0] as u32);
        read = cpu0.load_u64(page + SUBBUF_COMMIT_OFFSET) & COMMIT_LEN_MASK;
    }
    assert!(swaps >= geometry.nr_slots(), "a full ring of {} pages took only {swaps} swaps", geometry.nr_slots());
    // Every other hypercall, each answered as it should be (ENOSYS for an unknown one).
    for (c, a, status) in [
        (call::STATS, [0, 0, 0, 0], 0),
        (call::STATS, [1, 2, 0, 0], 0),
        (call::ARM_DOORBELL, [1, 3, 0, 0], 0),
        (call::DISARM_DOORBELL, [1, 0, 0, 0], 0),
        (call::UPDATE_CLOCK, [3 << 30, 32, 1_000, 2_000], 0),
        (call::ENABLE_EVENT, [6, 0, 0, 0], 0),
        (call::RESET, [1, 0, 0, 0], 0),
        (call::UNLOAD, [0; 4], 0),
        (call::LOAD, [desc, len, 0, 0], 0),
        (call::ENABLE, [0, 0, 0, 0], 0),
        (12345, [1, 2, 3, 4], -38),
    ] {
        assert_eq!(hyp.hvc(c, a).status, status, "hypercall {c} {a:?}");
    }
    assert_eq!(hyp.hvc(call::LOAD, [desc, len, 0, 0]).status, -16, "already loaded: refused without allocating");
    let after = ALLOCATIONS.load(Ordering::Relaxed);
    assert_eq!(after - before, 0, "the hypervisor allocated {} times after boot", after - before);
}
