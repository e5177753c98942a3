//! What one vCPU's guest is asked to do: the parameter block the host writes for it.

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::{abi, mmio_address, params_address};
use crate::Error;

/// One step of the guest's loop, and the exits it makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Step {
    /// `out` of the counter (4 bytes) to [`abi::HYPERCALL_PORT`]: one exit.
    Out,
    /// `in` (4 bytes) from [`abi::HYPERCALL_PORT`], then `out` of the value read to
    /// [`abi::ECHO_PORT`]: two exits.
    In,
    /// A 4-byte store of the counter to the vCPU's MMIO register: one exit.
    MmioWrite,
    /// A 4-byte load from the vCPU's MMIO register, then `out` of the value read to
    /// [`abi::ECHO_PORT`]: two exits.
    MmioRead,
    /// `hlt`: one exit; the guest goes on when the vCPU runs again.
    Halt,
    /// A triple fault (a `ud2` with an interrupt descriptor table of limit 0): the guest shuts
    /// down, one [`crate::Exit::Stopped`] exit with [`crate::StopReason::Shutdown`], and the vCPU
    /// does not run again. A misbehaving guest, on purpose.
    TripleFault,
    /// A loop without exits: the guest stays in `KVM_RUN` until its vCPU is stopped
    /// ([`crate::VcpuStop`]), and no step after it runs. A misbehaving guest, on purpose.
    Spin,
}

impl Step {
    /// The step's code in the parameter block.
    pub fn code(self) -> u8 {
        match self {
            Step::Out => abi::STEP_OUT,
            Step::In => abi::STEP_IN,
            Step::MmioWrite => abi::STEP_MMIO_WRITE,
            Step::MmioRead => abi::STEP_MMIO_READ,
            Step::Halt => abi::STEP_HALT,
            Step::TripleFault => abi::STEP_TRIPLE_FAULT,
            Step::Spin => abi::STEP_SPIN,
        }
    }
}

/// The guest's parameters for one vCPU: run `steps` steps taken in turn from `pattern`
/// (repeating it), step `i` carrying the counter `seed + i`, then report done.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExitPlan {
    steps: u32,
    seed: u32,
    pattern: Vec<Step>,
}

impl ExitPlan {
    /// A plan of `steps` steps cycling through `pattern`, counting from `seed`. The pattern has
    /// 1 to [`abi::PATTERN_MAX_LEN`] entries.
    pub fn new(steps: u32, seed: u32, pattern: &[Step]) -> Result<ExitPlan, Error> {
        if pattern.is_empty() || pattern.len() > abi::PATTERN_MAX_LEN {
            return Err(Error::PatternLength { len: pattern.len(), max: abi::PATTERN_MAX_LEN });
        }
        Ok(ExitPlan { steps, seed, pattern: pattern.to_vec() })
    }

    /// Steps to run.
    pub fn steps(&self) -> u32 {
        self.steps
    }

    /// The counter's value at the first step.
    pub fn seed(&self) -> u32 {
        self.seed
    }

    /// The pattern the steps cycle through.
    pub fn pattern(&self) -> &[Step] {
        &self.pattern
    }

    /// Writes this plan as vCPU `vcpu`'s parameter block.
    pub(crate) fn write(&self, memory: &GuestMemoryMmap, vcpu: usize) -> Result<(), Error> {
        let mut block = [0u8; abi::PARAMS_STRIDE as usize];
        let mut put = |offset: u64, bytes: &[u8]| {
            let start = offset as usize;
            block[start..start + bytes.len()].copy_from_slice(bytes);
        };
        put(abi::PARAMS_MAGIC_OFFSET, &abi::PARAMS_MAGIC.to_le_bytes());
        put(abi::PARAMS_STEPS_OFFSET, &self.steps.to_le_bytes());
        put(abi::PARAMS_SEED_OFFSET, &self.seed.to_le_bytes());
        // The MMIO window lies below 64 KiB, so every register address fits in 32 bits.
        put(abi::PARAMS_MMIO_OFFSET, &(mmio_address(vcpu) as u32).to_le_bytes());
        put(abi::PARAMS_PATTERN_LEN_OFFSET, &(self.pattern.len() as u32).to_le_bytes());
        let codes: Vec<u8> = self.pattern.iter().map(|step| step.code()).collect();
        put(abi::PARAMS_PATTERN_OFFSET, &codes);
        memory
            .write_slice(&block, GuestAddress(params_address(vcpu)))
            .map_err(|source| Error::Memory { what: "writing a parameter block into guest memory", source })
    }
}
