//! What can go wrong setting up or running a VM, as one matchable enum.

use crate::guest::GuestFault;

/// An error from [`crate::Vm`] or [`crate::Vcpu`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// This machine cannot run KVM guests: `/dev/kvm` is missing or not accessible, or KVM
    /// refused to create a VM.
    #[error("KVM is unavailable: {reason}; run on a Linux host with KVM enabled and read-write access to /dev/kvm")]
    Unavailable {
        /// What failed, with the OS error.
        reason: String,
    },
    /// The VM was asked for more vCPUs than this guest layout or KVM allows, or for none.
    #[error("a VM here has 1 to {max} vCPUs, not {requested}; pass one exit plan per vCPU")]
    VcpuCount {
        /// How many vCPUs were asked for.
        requested: usize,
        /// The most this VM can have.
        max: usize,
    },
    /// An exit plan's pattern is empty or longer than the parameter block holds.
    #[error("an exit pattern has 1 to {max} steps, not {len}; shorten or fill the pattern")]
    PatternLength {
        /// The pattern's length.
        len: usize,
        /// The longest pattern the parameter block holds.
        max: usize,
    },
    /// The host could not allocate guest memory.
    #[error("allocating {bytes} bytes of guest memory failed: {source}")]
    MemoryAllocation {
        /// How much was asked for.
        bytes: usize,
        /// Why it failed.
        source: vm_memory::mmap::FromRangesError,
    },
    /// The host could not reach guest memory: to find its mapping, or to write the program
    /// or a parameter block.
    #[error("{what} failed: {source}")]
    Memory {
        /// What the host was doing.
        what: &'static str,
        /// Why it failed.
        source: vm_memory::GuestMemoryError,
    },
    /// A KVM ioctl failed while setting the VM up or running a vCPU.
    #[error("KVM refused {operation}: {source}")]
    Kvm {
        /// The operation KVM refused, named after its ioctl.
        operation: &'static str,
        /// The OS error it returned.
        source: kvm_ioctls::Error,
    },
    /// The guest program found its parameter block unusable and reported a fault; the vCPU
    /// does not run again.
    #[error("vCPU {vcpu}'s guest stopped on a bad parameter block: {fault}")]
    GuestFault {
        /// The vCPU whose guest reported it.
        vcpu: usize,
        /// What the guest found wrong.
        fault: GuestFault,
    },
    /// The signal that stops a vCPU inside its guest ([`crate::VcpuStop`]) could not be set up.
    #[error("setting up SIGRTMIN, the signal that stops vCPUs inside their guests, failed: {reason}")]
    KickSignal {
        /// Why it failed.
        reason: String,
    },
    /// A vCPU was stopped but its thread stayed inside `KVM_RUN` through a second of signals.
    #[error("vCPU {vcpu} did not leave its guest when stopped; its thread is still in KVM_RUN")]
    StillInGuest {
        /// The vCPU.
        vcpu: usize,
    },
    /// The vCPU was run after it finished (done, a guest fault, a stop, or a failed run).
    #[error("vCPU {vcpu} has finished and does not run again; create a new VM to run more")]
    Finished {
        /// The vCPU that was run.
        vcpu: usize,
    },
}
