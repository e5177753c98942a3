//! The guest program and what the host tells it: [`abi`] is the contract, [`ExitPlan`] the
//! parameters the host writes for each vCPU, [`GuestFault`] what the guest reports when it
//! cannot use them.

pub mod abi;
mod fault;
mod plan;

pub use fault::GuestFault;
pub use plan::{ExitPlan, Step};

/// The guest program, assembled by `build.rs` from `guest/program.rs`; loaded at
/// [`abi::PROGRAM_START`].
pub(crate) const PROGRAM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/guest.bin"));

/// Guest-physical address of vCPU `vcpu`'s parameter block.
pub fn params_address(vcpu: usize) -> u64 {
    abi::PARAMS_START + vcpu as u64 * abi::PARAMS_STRIDE
}

/// Guest-physical address of vCPU `vcpu`'s MMIO register, which the host writes into its
/// parameter block.
pub fn mmio_address(vcpu: usize) -> u64 {
    abi::MMIO_WINDOW_START + vcpu as u64 * abi::MMIO_STRIDE
}

// The layout's invariants, checked where the constants are defined for the library.
const _: () = {
    assert!(abi::MMIO_WINDOW_START >= abi::MEMORY_START + abi::MEMORY_SIZE as u64, "MMIO must be unbacked");
    assert!(abi::MMIO_WINDOW_START + abi::MAX_VCPUS as u64 * abi::MMIO_STRIDE <= abi::MMIO_WINDOW_END);
    assert!(abi::PARAMS_PATTERN_OFFSET + abi::PATTERN_MAX_LEN as u64 <= abi::PARAMS_STRIDE);
    assert!(abi::PARAMS_START + (abi::MAX_VCPUS as u64) * abi::PARAMS_STRIDE <= abi::PROGRAM_START);
    assert!(PROGRAM.len() <= abi::PROGRAM_MAX_SIZE);
};
