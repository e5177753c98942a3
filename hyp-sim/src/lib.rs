//! # hyp-sim: a simulated hypervisor that traces into host-donated memory
//!
//! Two privilege domains in one process, modelled on pKVM's hypervisor tracing:
//!
//! ```text
//!   vCPU threads ──exit──▶ ┌─────────────── hypervisor (trusted) ───────────────┐
//!                          │ handle_exit: hyp_enter, host_hcall/smc/mem_abort/    │
//!                          │ printk, hyp_exit ─▶ CpuBuffer per CPU (ring-core)    │
//!                          │ trace clock: raw counter ─▶ ns (two-bank latch)      │
//!                          └──▲────────────────────────────────┬───────────────────┘
//!              hvc(call, args)│ status, results                │ writes into
//!                          ┌──┴────────── host (untrusted) ─────▼───────────────────┐
//!                          │ RAM: per-CPU buffer files it donated (LOAD)           │
//!                          │ clock calibration ─▶ UPDATE_CLOCK                     │
//!                          │ ring-mmap Producer: GET_READER_PAGE ─▶ SWAP_READER    │
//!                          └──────────────┬─────────────────────────────────────────┘
//!                                         │ control socket + read-only mappings
//!                                  consumers (trace-reader) in other processes
//! ```
//!
//! - [`platform`]: the machine both domains are given: CPUs, RAM, interrupt lines.
//! - [`hyp`]: the hypervisor and its hypercalls; [`hyp::desc`] the load descriptor and its
//!   validation; [`hyp::clock`] the trace clock.
//! - [`host`]: the host; [`host::clock`] its calibration of the trace clock.
//! - [`events`]: the event ids, payloads and tracefs-style formats published to readers.
//! - [`guest`] and [`vcpu`]: the guests (simulated, or real on KVM) and the threads running them.

pub mod events;
pub mod guest;
pub mod host;
pub mod hyp;
pub mod platform;
pub mod vcpu;
