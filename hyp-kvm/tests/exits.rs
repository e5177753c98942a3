//! The guest's real VM exits, on real KVM vCPUs: exactly the sequence its plan asks for, on one
//! and on two vCPUs, with the values the host answers reaching the guest.

mod common;

use common::{assert_exits, expected_exits, run_all, vm_or_skip};
use hyp_kvm::guest::abi;
use hyp_kvm::{Direction, Exit, ExitPlan, MmioAccess, PortIo, Step, StopReason};

/// Every step kind, in an order that puts each kind after each other kind somewhere.
const EVERY_KIND: [Step; 7] = [Step::Out, Step::In, Step::MmioWrite, Step::MmioRead, Step::Halt, Step::Out, Step::Halt];

#[test]
fn one_vcpu_makes_exactly_the_planned_exits() {
    // A seed near the top checks the counter wraps as the host expects.
    let plan = ExitPlan::new(40, u32::MAX - 20, &EVERY_KIND).unwrap();
    let Some((_vm, vcpus)) = vm_or_skip(std::slice::from_ref(&plan)) else { return };
    let runs = run_all(vcpus);
    assert_exits(&runs[0], &expected_exits(&plan, 0), 0);
}

#[test]
fn two_vcpus_each_make_their_own_plans_exits() {
    let plans = [
        ExitPlan::new(300, 0x1000_0000, &EVERY_KIND).unwrap(),
        ExitPlan::new(250, 0x2000_0000, &[Step::MmioRead, Step::Out, Step::In, Step::Halt, Step::MmioWrite]).unwrap(),
    ];
    let Some((vm, vcpus)) = vm_or_skip(&plans) else { return };
    assert_eq!(vm.vcpu_count(), 2);
    let runs = run_all(vcpus);
    for (vcpu, (plan, run)) in plans.iter().zip(&runs).enumerate() {
        assert_exits(run, &expected_exits(plan, vcpu), vcpu);
    }
}

#[test]
fn a_value_read_reaches_the_guest_which_echoes_it() {
    let plan = ExitPlan::new(20, 7, &[Step::In, Step::MmioRead]).unwrap();
    let Some((_vm, vcpus)) = vm_or_skip(std::slice::from_ref(&plan)) else { return };
    let runs = run_all(vcpus);
    let exits = &runs[0].exits;
    let mut echoes = 0;
    for pair in exits.windows(2) {
        let read = match pair[0] {
            Exit::Io(PortIo { port: abi::HYPERCALL_PORT, direction: Direction::Read, data, .. }) => data,
            Exit::Mmio(MmioAccess { direction: Direction::Read, data, .. }) => data as u32,
            _ => continue,
        };
        assert_eq!(
            pair[1],
            Exit::Io(PortIo { port: abi::ECHO_PORT, size: 4, direction: Direction::Write, data: read })
        );
        echoes += 1;
    }
    assert_eq!(echoes, 20, "every read was echoed");
}

#[test]
fn a_plan_of_no_steps_is_done_at_once() {
    let plan = ExitPlan::new(0, 99, &[Step::Out]).unwrap();
    let Some((_vm, vcpus)) = vm_or_skip(std::slice::from_ref(&plan)) else { return };
    let runs = run_all(vcpus);
    assert_eq!(runs[0].exits, [Exit::Done { counter: 99 }]);
}

#[test]
fn a_triple_fault_stops_the_vcpu_with_a_shutdown() {
    let plan = ExitPlan::new(10, 5, &[Step::Out, Step::TripleFault]).unwrap();
    let Some((_vm, vcpus)) = vm_or_skip(std::slice::from_ref(&plan)) else { return };
    let runs = run_all(vcpus);
    assert!(runs[0].error.is_none(), "{:?}", runs[0].error);
    let hypercall = Exit::Io(PortIo { port: abi::HYPERCALL_PORT, size: 4, direction: Direction::Write, data: 5 });
    assert_eq!(runs[0].exits, [hypercall, Exit::Stopped(StopReason::Shutdown)]);
    assert_eq!(StopReason::Shutdown.exit_reason(), kvm_bindings::KVM_EXIT_SHUTDOWN);
    assert_eq!(StopReason::Shutdown.to_string(), "shutdown (triple fault)");
}
