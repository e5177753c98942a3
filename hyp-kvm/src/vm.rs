//! Creating a VM: guest memory, the guest program and each vCPU's parameter block loaded, and
//! one [`Vcpu`] per exit plan, ready to run.

use std::sync::Arc;

use kvm_bindings::kvm_userspace_memory_region;
use kvm_ioctls::Kvm;
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

use crate::Error;
use crate::guest::{self, ExitPlan, abi};
use crate::vcpu::Vcpu;

/// Where KVM on Intel places the real-mode TSS it needs for guests in real mode: three pages
/// that must not overlap guest memory or the MMIO window. Firecracker uses the same address.
const TSS_ADDRESS: usize = 0xfffb_d000;

/// A KVM VM running the guest program on one vCPU per exit plan.
///
/// The kernel's VM lives as long as any of its [`Vcpu`]s, each of which keeps the guest memory
/// mapped; the `Vm` is the host's view of that memory, and dropping it leaves the vCPUs
/// runnable.
#[derive(Debug)]
pub struct Vm {
    memory: Arc<GuestMemoryMmap>,
    vcpus: usize,
}

impl Vm {
    /// Creates a VM with one vCPU per plan in `plans` (vCPU `n` runs `plans[n]`), guest
    /// memory holding the program and each vCPU's parameter block, and every vCPU in real mode
    /// at the program's start.
    ///
    /// Fails with [`Error::Unavailable`] when `/dev/kvm` cannot be opened or KVM refuses to
    /// create a VM.
    pub fn new(plans: &[ExitPlan]) -> Result<(Vm, Vec<Vcpu>), Error> {
        // Before any vCPU exists, so that a `VcpuStop` never signals a thread without it.
        crate::stop::install_handler()?;
        let kvm =
            Kvm::new().map_err(|error| Error::Unavailable { reason: format!("cannot open /dev/kvm: {error}") })?;
        let max = abi::MAX_VCPUS.min(kvm.get_max_vcpus());
        if plans.is_empty() || plans.len() > max {
            return Err(Error::VcpuCount { requested: plans.len(), max });
        }
        let memory = GuestMemoryMmap::from_ranges(&[(GuestAddress(abi::MEMORY_START), abi::MEMORY_SIZE)])
            .map(Arc::new)
            .map_err(|source| Error::MemoryAllocation { bytes: abi::MEMORY_SIZE, source })?;
        // Created after `memory`, so that on an early return the VM is closed first.
        let vm = kvm
            .create_vm()
            .map_err(|error| Error::Unavailable { reason: format!("KVM_CREATE_VM was refused: {error}") })?;
        vm.set_tss_address(TSS_ADDRESS).map_err(|source| Error::Kvm { operation: "KVM_SET_TSS_ADDR", source })?;
        let host_address = memory
            .get_host_address(GuestAddress(abi::MEMORY_START))
            .map_err(|source| Error::Memory { what: "finding guest memory's host address", source })?;
        let region = kvm_userspace_memory_region {
            slot: 0,
            flags: 0,
            guest_phys_addr: abi::MEMORY_START,
            memory_size: abi::MEMORY_SIZE as u64,
            userspace_addr: host_address as u64,
        };
        // SAFETY: `region` describes exactly the one mapping `memory` made, MEMORY_SIZE bytes at
        // `host_address`, and that mapping outlives every fd through which KVM can use it: here
        // `vm` is dropped before `memory`, and each Vcpu holds a share (Arc) of the memory and
        // closes its vCPU fd before dropping that share; the kernel's VM is destroyed when its
        // last fd closes.
        unsafe { vm.set_user_memory_region(region) }
            .map_err(|source| Error::Kvm { operation: "KVM_SET_USER_MEMORY_REGION", source })?;

        memory
            .write_slice(guest::PROGRAM, GuestAddress(abi::PROGRAM_START))
            .map_err(|source| Error::Memory { what: "writing the guest program into guest memory", source })?;
        for (index, plan) in plans.iter().enumerate() {
            plan.write(&memory, index)?;
        }

        let vcpus = plans
            .iter()
            .enumerate()
            .map(|(index, _)| Vcpu::new(&vm, index, Arc::clone(&memory)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((Vm { memory, vcpus: plans.len() }, vcpus))
    }

    /// The guest's memory, to read what the guest wrote or to change what it will read;
    /// accessed through vm-memory's bounds-checked [`Bytes`] methods.
    pub fn memory(&self) -> &GuestMemoryMmap {
        &self.memory
    }

    /// How many vCPUs the VM has.
    pub fn vcpu_count(&self) -> usize {
        self.vcpus
    }
}
