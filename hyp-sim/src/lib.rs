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
//! ## Real guests on KVM (`--guest kvm`)
//!
//! The guests can instead be real guest code on KVM (the `hyp-kvm` crate): one VM, one vCPU per
//! CPU, each owned by that CPU's vCPU thread.
//!
//! ```text
//!  vcpuN thread (pinned to CPU N, owns its hyp_kvm::Vcpu)        kernel (KVM)       guest
//!  ─────────────────────────────────────────────────────        ────────────       ─────
//!  stop flag set? ── yes ─▶ thread ends ("ran until the run ended")
//!  ahead of --rate? ─▶ sleep (vcpu::pace, shared with the simulated loop)
//!  Vcpu::run(answer: the exit's number) ── KVM_RUN ─────────▶ enter ───────────▶ out/in, MMIO,
//!                                                                                hlt (a planned
//!  guest::kvm::outcome(exit) ◀──── Exit::Io / Mmio / Halt / Stopped ◀── exit ◀── pattern)
//!    ├─ a guest exit ─▶ Hyp::handle_exit ─▶ hyp_enter, guest_pio|guest_mmio|guest_hlt, hyp_exit
//!    │                                      ─▶ this CPU's ring (common_pid: this thread)
//!    └─ a stop ─▶ Hyp::handle_exit ─▶ hyp_enter, guest_stop (exit reason, why), hyp_exit;
//!                 one line on stderr; the thread ends, the other vCPUs go on
//! ```
//!
//! Why it is built this way: a real hypervisor handles each exit on the CPU that took it,
//! between the guest leaving and re-entering, so the exit handler runs on the vCPU's own thread
//! after `KVM_RUN` returns and traces into that CPU's buffer, the same
//! one-writer-per-CPU path as the simulated guests. The guest is untrusted: whatever it does
//! (a triple fault, a bad parameter block, an MMIO access outside its register, `KVM_RUN`
//! failing) stops only its own vCPU, traced. The run ends through the stop flag, looked at
//! before every entry into the guest (hyp-kvm's guest program exits every few instructions, so
//! `KVM_RUN` returns within microseconds), and each vCPU's [`hyp_kvm::VcpuStop`], which makes a
//! thread inside a guest that never exits (`--spin`) leave it: a signal interrupts its
//! `KVM_RUN`. A vCPU thread still inside its guest 2 s later (KVM kept it there through the
//! signals) is not waited for: the report says so and the process exits. Each guest's plan has
//! 2^32-1 steps ([`guest::kvm::PLAN_STEPS`]), more than 14 hours at full speed.
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
