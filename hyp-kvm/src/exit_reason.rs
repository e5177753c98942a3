//! KVM's numeric exit reason (`KVM_EXIT_*`) for each exit kvm-ioctls decodes, so an exit this
//! crate does not serve is still reported by its number.

use kvm_bindings::*;
use kvm_ioctls::VcpuExit;

/// The `KVM_EXIT_*` value the kernel set for `exit`.
pub(crate) fn of(exit: &VcpuExit<'_>) -> u32 {
    match exit {
        VcpuExit::IoOut(..) | VcpuExit::IoIn(..) => KVM_EXIT_IO,
        VcpuExit::MmioRead(..) | VcpuExit::MmioWrite(..) => KVM_EXIT_MMIO,
        VcpuExit::Unknown => KVM_EXIT_UNKNOWN,
        VcpuExit::Exception => KVM_EXIT_EXCEPTION,
        VcpuExit::Hypercall(_) => KVM_EXIT_HYPERCALL,
        VcpuExit::Debug(_) => KVM_EXIT_DEBUG,
        VcpuExit::Hlt => KVM_EXIT_HLT,
        VcpuExit::IrqWindowOpen => KVM_EXIT_IRQ_WINDOW_OPEN,
        VcpuExit::Shutdown => KVM_EXIT_SHUTDOWN,
        VcpuExit::FailEntry(..) => KVM_EXIT_FAIL_ENTRY,
        VcpuExit::Intr => KVM_EXIT_INTR,
        VcpuExit::SetTpr => KVM_EXIT_SET_TPR,
        VcpuExit::TprAccess => KVM_EXIT_TPR_ACCESS,
        VcpuExit::S390Sieic => KVM_EXIT_S390_SIEIC,
        VcpuExit::S390Reset => KVM_EXIT_S390_RESET,
        VcpuExit::Dcr => KVM_EXIT_DCR,
        VcpuExit::Nmi => KVM_EXIT_NMI,
        VcpuExit::InternalError => KVM_EXIT_INTERNAL_ERROR,
        VcpuExit::Osi => KVM_EXIT_OSI,
        VcpuExit::PaprHcall => KVM_EXIT_PAPR_HCALL,
        VcpuExit::S390Ucontrol => KVM_EXIT_S390_UCONTROL,
        VcpuExit::Watchdog => KVM_EXIT_WATCHDOG,
        VcpuExit::S390Tsch => KVM_EXIT_S390_TSCH,
        VcpuExit::Epr => KVM_EXIT_EPR,
        VcpuExit::SystemEvent(..) => KVM_EXIT_SYSTEM_EVENT,
        VcpuExit::S390Stsi => KVM_EXIT_S390_STSI,
        VcpuExit::IoapicEoi(_) => KVM_EXIT_IOAPIC_EOI,
        VcpuExit::Hyperv => KVM_EXIT_HYPERV,
        VcpuExit::X86Rdmsr(_) => KVM_EXIT_X86_RDMSR,
        VcpuExit::X86Wrmsr(_) => KVM_EXIT_X86_WRMSR,
        VcpuExit::MemoryFault { .. } => KVM_EXIT_MEMORY_FAULT,
        VcpuExit::Unsupported(reason) => *reason,
    }
}
