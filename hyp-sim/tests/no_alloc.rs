//! The hypervisor allocates nothing after it booted: tracing, every hypercall, even unloading
//! and reloading its buffers, run on the memory it set aside at boot. A counting global
//! allocator checks it (this test binary holds this one test, so no other thread allocates).

use hyp_sim::guest;
use hyp_sim::host::{Host, HostConfig};
use hyp_sim::hyp::call;
use ring_core::{Config, Geometry, Mode};
use ring_mmap::Backing;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

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
    let host = Host::boot(config).expect("boot");
    let hyp = host.hyp().clone();
    // The descriptor for reloading is written before counting (that is the host's business).
    let (desc, len) = host.write_descriptor();
    let before = ALLOCATIONS.load(Ordering::Relaxed);

    for n in 0..20_000 {
        hyp.handle_exit((n % 2) as u32, n, &guest::exit(5, (n % 2) as u32, n));
    }
    let mut read = 0;
    for _ in 0..50 {
        let r = hyp.hvc(call::SWAP_READER, [0, read, 0, 0]);
        assert!(r.status >= 0, "{r:?}");
        read = 0;
    }
    for (c, a) in [
        (call::STATS, [0, 0, 0, 0]),
        (call::STATS, [1, 2, 0, 0]),
        (call::ARM_DOORBELL, [1, 3, 0, 0]),
        (call::DISARM_DOORBELL, [1, 0, 0, 0]),
        (call::UPDATE_CLOCK, [3 << 30, 32, 1_000, 2_000]),
        (call::ENABLE_EVENT, [6, 0, 0, 0]),
        (call::RESET, [1, 0, 0, 0]),
        (call::UNLOAD, [0; 4]),
        (call::LOAD, [desc, len, 0, 0]),
        (call::ENABLE, [0, 0, 0, 0]),
        (12345, [1, 2, 3, 4]),
    ] {
        assert!(hyp.hvc(c, a).status >= -200);
    }
    assert_eq!(hyp.hvc(call::LOAD, [desc, len, 0, 0]).status, -16, "already loaded: refused without allocating");
    let after = ALLOCATIONS.load(Ordering::Relaxed);
    assert_eq!(after - before, 0, "the hypervisor allocated {} times after boot", after - before);
}
