//! The buffer every writer benchmark writes into: 1 MiB as 256 × 4 KiB sub-buffers on the heap,
//! so a loop keeps crossing pages and, in overwrite mode, pushing the head.

use ring_core::{Clock, Config, CpuBuffer, Geometry, Mode};

/// A 1 MiB buffer of 256 × 4 KiB sub-buffers in `mode`, stamped by `clock`.
pub fn megabyte<C: Clock>(mode: Mode, clock: C) -> CpuBuffer<'static, C> {
    let config = Config { geometry: Geometry::new(4096, 256).expect("valid geometry"), mode };
    CpuBuffer::with_heap(config, clock).expect("heap buffer")
}
