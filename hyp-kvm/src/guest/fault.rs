//! The faults the guest program reports on its fault port.

use super::abi;

/// What the guest program found wrong with its parameter block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum GuestFault {
    /// The magic word is not [`abi::PARAMS_MAGIC`]: the block was not written, or was
    /// overwritten.
    #[error("the parameter block's magic word is wrong (the host did not write it, or it was overwritten)")]
    BadMagic,
    /// The pattern is empty or longer than [`abi::PATTERN_MAX_LEN`].
    #[error("the pattern length is 0 or above {}", abi::PATTERN_MAX_LEN)]
    BadPatternLength,
    /// A pattern entry is not a step code.
    #[error("a pattern entry is not a step code (0 to {})", abi::STEP_COUNT - 1)]
    BadStep,
    /// The MMIO register address is outside the MMIO window.
    #[error("the MMIO register address is outside the MMIO window")]
    BadMmioAddress,
    /// A fault code this host does not know.
    #[error("unknown fault code {0}")]
    Unknown(u32),
}

impl GuestFault {
    /// The fault a code written to [`abi::FAULT_PORT`] stands for.
    pub fn from_code(code: u32) -> GuestFault {
        match code {
            abi::FAULT_BAD_MAGIC => GuestFault::BadMagic,
            abi::FAULT_BAD_PATTERN_LEN => GuestFault::BadPatternLength,
            abi::FAULT_BAD_STEP => GuestFault::BadStep,
            abi::FAULT_BAD_MMIO_ADDRESS => GuestFault::BadMmioAddress,
            other => GuestFault::Unknown(other),
        }
    }
}
