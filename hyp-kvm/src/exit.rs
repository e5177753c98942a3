//! The exits a [`crate::Vcpu`] reports: what the guest did that needed the host.

use kvm_bindings::{
    KVM_EXIT_FAIL_ENTRY, KVM_EXIT_INTERNAL_ERROR, KVM_EXIT_IO, KVM_EXIT_MEMORY_FAULT, KVM_EXIT_SHUTDOWN,
};

/// Which way data moved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// The guest read (`in`, an MMIO load): the host supplied the data.
    Read,
    /// The guest wrote (`out`, an MMIO store): the data is the guest's.
    Write,
}

/// A read the guest is waiting on; the caller of [`crate::Vcpu::run`] answers it with a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReadRequest {
    /// `in` from a port, `size` bytes (1, 2 or 4).
    Io {
        /// The port.
        port: u16,
        /// Bytes read.
        size: u8,
    },
    /// A load from an unbacked guest-physical address, `len` bytes (1 to 8).
    Mmio {
        /// The guest-physical address.
        gpa: u64,
        /// Bytes read.
        len: u8,
    },
}

/// Port I/O of one element (`in`, `out`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PortIo {
    /// The port.
    pub port: u16,
    /// Bytes moved: 1, 2 or 4.
    pub size: u8,
    /// `in` or `out`.
    pub direction: Direction,
    /// The bytes moved (for an `in`, the host's answer), zero-extended.
    pub data: u32,
}

/// An access to guest-physical memory no memory backs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MmioAccess {
    /// The guest-physical address.
    pub gpa: u64,
    /// Bytes moved: 1 to 8.
    pub len: u8,
    /// Load or store.
    pub direction: Direction,
    /// The bytes moved (for a load, the host's answer), zero-extended.
    pub data: u64,
}

/// One VM exit, as the vCPU's thread sees it. Data is little-endian, zero-extended: for a
/// read, the value the host answered, truncated to the access size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Exit {
    /// Port I/O (`KVM_EXIT_IO`) other than the guest program's done and fault ports.
    Io(PortIo),
    /// An access to guest-physical memory no memory backs (`KVM_EXIT_MMIO`).
    Mmio(MmioAccess),
    /// The guest ran `hlt` (`KVM_EXIT_HLT`; KVM has no in-kernel interrupt controller here, so
    /// halts come to user space). Running the vCPU again resumes after the `hlt`.
    Halt,
    /// The guest program ran every step of its plan and reported its final counter on the
    /// done port. The vCPU does not run again.
    Done {
        /// The counter after the last step: `seed + steps`, wrapping.
        counter: u32,
    },
    /// `KVM_RUN` returned early because a signal arrived (`EINTR`, or `KVM_EXIT_INTR`), or the
    /// vCPU is stopped ([`crate::VcpuStop`]) and was not entered; the guest did nothing the host
    /// must handle. Run again to go on, unless the vCPU was stopped.
    Interrupted,
    /// The guest can't go on: the vCPU does not run again.
    Stopped(StopReason),
}

/// Why a vCPU stopped, with KVM's exit reason for each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StopReason {
    /// The guest shut down, e.g. on a triple fault (`KVM_EXIT_SHUTDOWN`).
    Shutdown,
    /// The hardware could not enter the guest (`KVM_EXIT_FAIL_ENTRY`).
    FailEntry {
        /// The hardware's reason code.
        hardware_reason: u64,
    },
    /// KVM could not handle what the guest did, e.g. an instruction it cannot emulate
    /// (`KVM_EXIT_INTERNAL_ERROR`).
    InternalError,
    /// A string port instruction (`rep ins`/`rep outs`) moved several elements in one exit
    /// (`KVM_EXIT_IO` with a count above 1), which this host does not serve.
    StringIo {
        /// The port.
        port: u16,
        /// Bytes per element.
        size: u8,
        /// Elements.
        count: u32,
    },
    /// A guest memory access KVM could not resolve (`KVM_EXIT_MEMORY_FAULT`).
    MemoryFault {
        /// The guest-physical address.
        gpa: u64,
        /// Bytes accessed.
        size: u64,
    },
    /// Any other exit reason: this host does not serve it.
    Unhandled {
        /// KVM's exit reason (`KVM_EXIT_*`).
        exit_reason: u32,
    },
}

impl std::fmt::Display for StopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StopReason::Shutdown => write!(f, "shutdown (triple fault)"),
            StopReason::FailEntry { hardware_reason } => {
                write!(f, "the hardware could not enter the guest (reason {hardware_reason:#x})")
            }
            StopReason::InternalError => write!(f, "KVM internal error (an instruction KVM cannot emulate)"),
            StopReason::StringIo { port, size, count } => {
                write!(f, "string port I/O: {count} elements of {size} bytes at port {port:#x} in one exit")
            }
            StopReason::MemoryFault { gpa, size } => {
                write!(f, "memory fault: {size} bytes at guest-physical {gpa:#x} KVM could not resolve")
            }
            StopReason::Unhandled { exit_reason } => write!(f, "unhandled KVM exit reason {exit_reason}"),
        }
    }
}

impl StopReason {
    /// KVM's exit reason (`KVM_EXIT_*` in `linux/kvm.h`) for this stop.
    pub fn exit_reason(&self) -> u32 {
        match self {
            StopReason::Shutdown => KVM_EXIT_SHUTDOWN,
            StopReason::FailEntry { .. } => KVM_EXIT_FAIL_ENTRY,
            StopReason::InternalError => KVM_EXIT_INTERNAL_ERROR,
            StopReason::StringIo { .. } => KVM_EXIT_IO,
            StopReason::MemoryFault { .. } => KVM_EXIT_MEMORY_FAULT,
            StopReason::Unhandled { exit_reason } => *exit_reason,
        }
    }
}
