//! Thousands of real exits per vCPU, one exit kind at a time and on two vCPUs at once, at the
//! rate this machine's KVM delivers them. Prints exits per second; asserts only that every run
//! made its exits, since the rate depends on the machine.

mod common;

use common::{assert_exits, expected_exits, run_all, vm_or_skip};
use hyp_kvm::{ExitPlan, Step};

/// Steps per run: thousands of exits, still well under a second at an emulated ~13 µs each.
const STEPS: u32 = 4000;

#[test]
fn thousands_of_exits_of_each_kind_then_on_two_vcpus_at_once() {
    let kinds = [
        ("out", Step::Out),
        ("in+echo", Step::In),
        ("mmio write", Step::MmioWrite),
        ("mmio read+echo", Step::MmioRead),
        ("hlt", Step::Halt),
    ];
    let mut rates = Vec::new();
    for (name, step) in kinds {
        let plan = ExitPlan::new(STEPS, 0, &[step]).unwrap();
        let Some((_vm, vcpus)) = vm_or_skip(std::slice::from_ref(&plan)) else { return };
        let runs = run_all(vcpus);
        assert_exits(&runs[0], &expected_exits(&plan, 0), 0);
        let per_second = runs[0].exits.len() as f64 / runs[0].elapsed.as_secs_f64();
        rates.push(format!("{name} {per_second:.0}"));
    }
    println!("kvm exits/s on one vCPU, by kind: {}", rates.join(", "));

    // In the same test, so that the two runs do not share the CPUs with the runs above.
    let plans: Vec<ExitPlan> = (0..2).map(|vcpu| ExitPlan::new(STEPS, vcpu << 24, &[Step::Out]).unwrap()).collect();
    let Some((_vm, vcpus)) = vm_or_skip(&plans) else { return };
    let runs = run_all(vcpus);
    let mut rates = Vec::new();
    for (vcpu, (plan, run)) in plans.iter().zip(&runs).enumerate() {
        assert_exits(run, &expected_exits(plan, vcpu), vcpu);
        rates.push(format!("vCPU {vcpu} {:.0}", run.exits.len() as f64 / run.elapsed.as_secs_f64()));
    }
    println!("kvm exits/s with two vCPUs on their own threads (out): {}", rates.join(", "));
}
