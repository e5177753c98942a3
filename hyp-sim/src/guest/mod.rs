//! What the guests do: why each exits to the hypervisor ([`GuestExit`]). Two kinds of guest
//! make those exits:
//!
//! - `sim` ([`exit`]): simulated guests, a deterministic stream of hypercalls, SMCs, memory aborts and
//!   printks per vCPU, made in-process.
//! - [`kvm`]: real guests on KVM (hyp-kvm's guest program), whose real VM exits (port I/O, MMIO,
//!   `hlt`) the vCPU threads hand to the hypervisor.

pub mod kvm;
mod sim;

use hyp_kvm::{MmioAccess, PortIo};
pub use sim::{exit, printk_message};

/// Why a guest exits to the hypervisor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestExit<'a> {
    /// A hypercall (HVC): function id and four arguments; `args[3]` is the exit number.
    Hcall {
        /// Function id.
        id: u64,
        /// Arguments.
        args: [u64; 4],
    },
    /// An SMC to firmware; the low 24 bits of `func_id` are the exit number's.
    Smc {
        /// SMC function id.
        func_id: u64,
        /// Whether the hypervisor forwards it to firmware.
        forwarded: bool,
    },
    /// A stage-2 memory abort at `addr` (the exit number times the page size).
    MemAbort {
        /// Exception syndrome register.
        esr: u64,
        /// Faulting address.
        addr: u64,
    },
    /// The hypervisor prints a message about this exit.
    Printk,
    /// A KVM guest's port I/O (`in`, `out`); for an `in`, the data is the hypervisor's answer.
    Pio(PortIo),
    /// A KVM guest's access to guest-physical memory no memory backs; for a load, the data is
    /// the hypervisor's answer.
    Mmio(MmioAccess),
    /// A KVM guest ran `hlt`.
    Halt,
    /// A KVM guest's vCPU stopped and does not run again ([`kvm::Stop`]).
    Stop {
        /// KVM's exit reason (`KVM_EXIT_*`) for the exit that stopped it; 0 (`KVM_EXIT_UNKNOWN`)
        /// where `KVM_RUN` itself failed.
        exit_reason: u32,
        /// Why it stopped.
        reason: &'a str,
    },
}
