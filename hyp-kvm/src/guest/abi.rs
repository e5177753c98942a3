//! The contract between the host and the guest program: where things are in guest memory, the
//! layout of the parameter block, the step codes, the ports and the fault codes.
//!
//! This one file is compiled twice: into the library, and into `build.rs`, which assembles the
//! guest program against the same constants, so the two sides cannot disagree.

/// Guest-physical address where guest memory starts.
pub const MEMORY_START: u64 = 0;
/// Bytes of guest memory backed by host memory: `[MEMORY_START, MEMORY_START + MEMORY_SIZE)`.
pub const MEMORY_SIZE: usize = 0x8000;

/// Guest-physical address of vCPU 0's parameter block; vCPU `n`'s is `n * PARAMS_STRIDE` above.
pub const PARAMS_START: u64 = 0x1000;
/// Bytes between consecutive vCPUs' parameter blocks.
pub const PARAMS_STRIDE: u64 = 0x40;
/// Most vCPUs a VM has: their parameter blocks fill the page at [`PARAMS_START`].
pub const MAX_VCPUS: usize = 0x1000 / PARAMS_STRIDE as usize;

/// Guest-physical address the guest program is loaded at and starts running from.
pub const PROGRAM_START: u64 = 0x2000;
/// Most bytes the guest program may take: it must end before the end of guest memory.
pub const PROGRAM_MAX_SIZE: usize = MEMORY_SIZE - PROGRAM_START as usize;

/// First guest-physical address of the MMIO window: unbacked, so every access exits.
pub const MMIO_WINDOW_START: u64 = 0xF000;
/// Bytes between consecutive vCPUs' device registers in the MMIO window.
pub const MMIO_STRIDE: u64 = 0x10;
/// End (exclusive) of the MMIO window: real-mode offsets reach at most 0xFFFF, and the guest's
/// 4-byte accesses must fit.
pub const MMIO_WINDOW_END: u64 = 0x1_0000;

/// Offset in the parameter block of the magic word, [`PARAMS_MAGIC`] (u32).
pub const PARAMS_MAGIC_OFFSET: u64 = 0;
/// Offset of the number of steps the guest runs before it reports done (u32).
pub const PARAMS_STEPS_OFFSET: u64 = 4;
/// Offset of the counter's starting value (u32): step `i` carries `seed + i` (wrapping).
pub const PARAMS_SEED_OFFSET: u64 = 8;
/// Offset of the guest-physical address of this vCPU's MMIO register (u32).
pub const PARAMS_MMIO_OFFSET: u64 = 12;
/// Offset of the number of entries in the pattern (u32), 1 to [`PATTERN_MAX_LEN`].
pub const PARAMS_PATTERN_LEN_OFFSET: u64 = 16;
/// Offset of the pattern: one step code (u8) per entry, repeated in order.
pub const PARAMS_PATTERN_OFFSET: u64 = 20;
/// Most entries a pattern has.
pub const PATTERN_MAX_LEN: usize = 16;
/// The magic word the guest checks before it trusts the rest of its parameter block: "HKVM".
pub const PARAMS_MAGIC: u32 = u32::from_le_bytes(*b"HKVM");

/// Step code: `out` of the counter (4 bytes) to [`HYPERCALL_PORT`].
pub const STEP_OUT: u8 = 0;
/// Step code: `in` (4 bytes) from [`HYPERCALL_PORT`], then `out` of the value read to
/// [`ECHO_PORT`].
pub const STEP_IN: u8 = 1;
/// Step code: 4-byte MMIO write of the counter to the vCPU's MMIO register.
pub const STEP_MMIO_WRITE: u8 = 2;
/// Step code: 4-byte MMIO read of the vCPU's MMIO register, then `out` of the value read to
/// [`ECHO_PORT`].
pub const STEP_MMIO_READ: u8 = 3;
/// Step code: `hlt`; the guest goes on with the next step when the host runs it again.
pub const STEP_HALT: u8 = 4;
/// Step code: load an interrupt descriptor table of limit 0 from [`NULL_IDT_ADDRESS`] and run
/// `ud2`: the invalid-opcode exception, the general-protection fault and the double fault its
/// delivery raises each find no entry, which is a triple fault: the guest shuts down.
pub const STEP_TRIPLE_FAULT: u8 = 5;
/// Step code: jump to itself, for good: the guest runs without another exit until the host
/// stops its vCPU.
pub const STEP_SPIN: u8 = 6;
/// Number of step codes; a pattern entry at or above it is a fault.
pub const STEP_COUNT: u8 = 7;

/// Guest-physical address of the 6-byte IDT descriptor (limit 0, base 0) the triple-fault step
/// loads: the start of guest memory, which the host leaves zero.
pub const NULL_IDT_ADDRESS: u64 = MEMORY_START;

/// Port of the guest's hypercalls (`STEP_OUT`, `STEP_IN`).
pub const HYPERCALL_PORT: u16 = 0x0510;
/// Port the guest writes each value it read back to, so the host sees what the guest got.
pub const ECHO_PORT: u16 = 0x0511;
/// Port the guest writes its final counter (`seed + steps`) to when it has run every step.
pub const DONE_PORT: u16 = 0x0512;
/// Port the guest writes a fault code to when its parameter block is unusable.
pub const FAULT_PORT: u16 = 0x0513;

/// Fault code: the parameter block's magic word is not [`PARAMS_MAGIC`].
pub const FAULT_BAD_MAGIC: u32 = 1;
/// Fault code: the pattern length is 0 or above [`PATTERN_MAX_LEN`].
pub const FAULT_BAD_PATTERN_LEN: u32 = 2;
/// Fault code: a pattern entry is not a step code.
pub const FAULT_BAD_STEP: u32 = 3;
/// Fault code: the MMIO register address is outside the MMIO window.
pub const FAULT_BAD_MMIO_ADDRESS: u32 = 4;
