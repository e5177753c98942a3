//! What goes wrong is an error the caller can match, never a panic or a hang: parameter blocks
//! the guest cannot use, plans and VMs the host refuses, and a vCPU run after it finished.

mod common;

use common::{run_all, vm_or_skip};
use hyp_kvm::guest::{abi, params_address};
use hyp_kvm::{Error, Exit, ExitPlan, GuestFault, Step, Vm};
use vm_memory::{Bytes, GuestAddress};

/// Creates a one-vCPU VM, lets `corrupt` change its guest memory before the vCPU runs, and
/// returns the fault the guest reports.
fn fault_after(corrupt: impl FnOnce(&Vm)) -> Option<GuestFault> {
    let plan = ExitPlan::new(10, 0, &[Step::Out, Step::In]).unwrap();
    let (vm, vcpus) = vm_or_skip(std::slice::from_ref(&plan))?;
    corrupt(&vm);
    let mut runs = run_all(vcpus);
    let run = runs.remove(0);
    assert_eq!(run.exits, [], "the guest checks its parameter block before any step");
    match run.error {
        Some(Error::GuestFault { vcpu: 0, fault }) => Some(fault),
        other => panic!("expected a guest fault, got {other:?}"),
    }
}

/// Overwrites the 4-byte field at `offset` in vCPU 0's parameter block.
fn write_param(vm: &Vm, offset: u64, value: u32) {
    vm.memory().write_slice(&value.to_le_bytes(), GuestAddress(params_address(0) + offset)).unwrap();
}

#[test]
fn a_wrong_magic_word_is_a_guest_fault() {
    if let Some(fault) = fault_after(|vm| write_param(vm, abi::PARAMS_MAGIC_OFFSET, 0xDEAD_BEEF)) {
        assert_eq!(fault, GuestFault::BadMagic);
    }
}

#[test]
fn a_bad_pattern_length_is_a_guest_fault() {
    for length in [0, abi::PATTERN_MAX_LEN as u32 + 1, u32::MAX] {
        if let Some(fault) = fault_after(|vm| write_param(vm, abi::PARAMS_PATTERN_LEN_OFFSET, length)) {
            assert_eq!(fault, GuestFault::BadPatternLength, "pattern length {length}");
        }
    }
}

#[test]
fn an_unknown_step_code_is_a_guest_fault() {
    let bad_code = |vm: &Vm| {
        vm.memory()
            .write_obj(abi::STEP_COUNT, GuestAddress(params_address(0) + abi::PARAMS_PATTERN_OFFSET + 1))
            .unwrap()
    };
    if let Some(fault) = fault_after(bad_code) {
        assert_eq!(fault, GuestFault::BadStep);
    }
}

#[test]
fn an_mmio_address_outside_the_window_is_a_guest_fault() {
    // Inside guest memory (the program itself), and past the window's end.
    for address in [abi::PROGRAM_START as u32, abi::MMIO_WINDOW_END as u32 - 2] {
        if let Some(fault) = fault_after(|vm| write_param(vm, abi::PARAMS_MMIO_OFFSET, address)) {
            assert_eq!(fault, GuestFault::BadMmioAddress, "MMIO address {address:#x}");
        }
    }
}

#[test]
fn a_vcpu_run_after_it_finished_is_an_error() {
    let plan = ExitPlan::new(1, 0, &[Step::Halt]).unwrap();
    let Some((_vm, mut vcpus)) = vm_or_skip(std::slice::from_ref(&plan)) else { return };
    let mut vcpu = vcpus.remove(0);
    // One step: a halt and done, well within the tests' timeout even where emulated.
    assert_eq!(vcpu.run(|_| 0).unwrap(), Exit::Halt);
    assert_eq!(vcpu.run(|_| 0).unwrap(), Exit::Done { counter: 1 });
    assert!(matches!(vcpu.run(|_| 0), Err(Error::Finished { vcpu: 0 })));
}

#[test]
fn the_host_refuses_bad_plans_and_vcpu_counts() {
    assert!(matches!(ExitPlan::new(1, 0, &[]), Err(Error::PatternLength { len: 0, .. })));
    let too_long = [Step::Out; abi::PATTERN_MAX_LEN + 1];
    assert!(matches!(ExitPlan::new(1, 0, &too_long), Err(Error::PatternLength { len: 17, .. })));
    if !test_capabilities::kvm("refusing a VM of no or too many vCPUs") {
        return;
    }
    assert!(matches!(Vm::new(&[]), Err(Error::VcpuCount { requested: 0, .. })));
    let plans = vec![ExitPlan::new(1, 0, &[Step::Out]).unwrap(); abi::MAX_VCPUS + 1];
    assert!(matches!(Vm::new(&plans), Err(Error::VcpuCount { requested, .. }) if requested == abi::MAX_VCPUS + 1));
}

#[test]
fn kvm_being_unavailable_is_said_in_one_line() {
    let error = Error::Unavailable { reason: "cannot open /dev/kvm: No such file or directory (os error 2)".into() };
    let message = error.to_string();
    assert!(!message.contains('\n'), "{message}");
    assert!(message.starts_with("KVM is unavailable: cannot open /dev/kvm"), "{message}");
}
