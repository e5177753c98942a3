//! # hyp-kvm: real guest code on KVM vCPUs, every VM exit reported to the vCPU's thread
//!
//! [`Vm::new`] creates a KVM VM (through the rust-vmm crates `kvm-ioctls`, `kvm-bindings` and
//! `vm-memory`), loads a small guest program and one parameter block per vCPU into its memory,
//! and hands back one [`Vcpu`] per vCPU. A thread owning a `Vcpu` calls [`Vcpu::run`] in a
//! loop: each call enters the guest, which runs until it does something only the host can
//! handle, and returns that VM exit as an [`Exit`]; the caller handles it (traces it, later)
//! and runs again, which resumes the guest.
//!
//! ## The guest
//!
//! The program (`guest/program.rs`) is source: assembler calls in Rust, which `build.rs`
//! assembles with iced-x86 when the crate builds. Writing it that way needs no cross toolchain,
//! linker script or target install, and builds wherever the crate's dependencies build. It runs
//! in real mode, which needs no descriptor tables, page tables or mode switch: KVM starts a vCPU
//! in real mode and the host only sets segment bases to 0 and the registers. Real-mode guests
//! run under KVM on VMX (through unrestricted guest, or KVM's real-mode emulation where that
//! is missing, which is why the VM sets a TSS address), on SVM, and on PVM.
//!
//! The program reads its vCPU's parameter block ([`ExitPlan`]: steps, seed, a pattern of up to
//! 16 [`Step`]s), checks it, and loops: each step makes one or two exits, carrying the counter
//! `seed + step` where the step writes one, with about ten instructions between exits (every one
//! is emulated on PVM, where that matters). After the last step it writes the counter to the
//! done port ([`Exit::Done`]); a parameter block it cannot use is reported on the fault port
//! ([`Error::GuestFault`]).
//!
//! ## Guest-physical memory ([`guest::abi`] has the numbers)
//!
//! ```text
//!  0x0000 ┌──────────────────────────────┐ ─┐
//!         │ zero (real-mode IVT area; the│  │
//!         │ triple-fault step's IDT      │  │
//!         │ descriptor: limit 0)         │  │
//!  0x1000 ├──────────────────────────────┤  │
//!         │ parameter blocks, 64 B each: │  │ backed: one vm-memory region,
//!         │ vCPU 0, vCPU 1, … (≤ 64)     │  │ KVM memory slot 0 (32 KiB)
//!  0x2000 ├──────────────────────────────┤  │
//!         │ guest program + jump table   │  │
//!         │ (entry point, all vCPUs)     │  │
//!  0x8000 ├──────────────────────────────┤ ─┘
//!         │ nothing                      │
//!  0xF000 ├──────────────────────────────┤ ─┐ unbacked: every access is an MMIO exit
//!         │ MMIO registers, 16 B apart:  │  │
//!         │ vCPU 0, vCPU 1, …            │  │
//! 0x10000 └──────────────────────────────┘ ─┘
//!          (0xfffb_d000: 3 pages KVM keeps for a real-mode TSS on Intel; not guest memory)
//! ```
//!
//! ## The exit path
//!
//! ```text
//!  vCPU thread (owns the Vcpu)                    kernel (KVM)              guest (real mode)
//!  ───────────────────────────                    ────────────              ─────────────────
//!  Vcpu::run(answer) ── ioctl(KVM_RUN) ─────────▶ enter guest ────────────▶ step loop:
//!                                                                           out/in  dx (ports)
//!                                                                           mov [ebp] (MMIO)
//!                                                                           hlt
//!                                                  exit to user space ◀──── (exit)
//!  kvm_run: exit_reason, io/mmio data ◀──────────  (KVM_EXIT_IO/MMIO/HLT…)
//!  read (in, MMIO load)? answer(ReadRequest) → value written into kvm_run
//!  done/fault port? → Exit::Done / Err(GuestFault)
//!  ◀── Ok(Exit::Io | Mmio | Halt | …)
//!  handle it, then Vcpu::run again ─────────────▶ re-enter: the read completes with the value,
//!                                                  the guest goes on after the exiting instruction
//! ```
//!
//! - [`vm`]: creating the VM, its memory and its vCPUs.
//! - [`vcpu`]: running a vCPU and decoding its exits.
//! - [`exit`]: the exits, reads and stop reasons.
//! - [`stop`]: stopping a vCPU from another thread, inside its guest or not.
//! - [`guest`]: the guest program's contract and parameters.
//! - [`error`]: what can go wrong.

pub mod error;
pub mod exit;
mod exit_reason;
pub mod guest;
pub mod stop;
pub mod vcpu;
pub mod vm;

pub use error::Error;
pub use exit::{Direction, Exit, MmioAccess, PortIo, ReadRequest, StopReason};
pub use guest::{ExitPlan, GuestFault, Step};
pub use stop::VcpuStop;
pub use vcpu::Vcpu;
pub use vm::Vm;
