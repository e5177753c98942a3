//! Stopping a vCPU from another thread ([`hyp_kvm::VcpuStop`]): out of a guest that never
//! exits, and before it ever enters one.

mod common;

use common::{TIMEOUT, expected_exits, vm_or_skip};
use hyp_kvm::{Exit, ExitPlan, Step};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A guest that makes one exit and then loops without any: its vCPU thread sits in `KVM_RUN`
/// until stopped, and leaves it when stopped.
#[test]
fn a_stopped_vcpu_leaves_a_guest_that_never_exits() {
    if let Some(took) = stop_a_looping_guest(|| {}) {
        println!("a vCPU looping in its guest left it {took:?} after it was stopped");
    }
}

/// The same, from a thread that blocked every signal before it ran its vCPU (as programs do in
/// the threads they start, to take signals on one thread of their own): the kick still reaches
/// it.
#[test]
fn a_vcpu_thread_that_blocked_signals_is_stopped_all_the_same() {
    let block_all = || {
        for signal in 1..=vmm_sys_util::signal::SIGRTMAX() {
            // Some numbers are not signals, or cannot be blocked: those stay as they are.
            let _ = vmm_sys_util::signal::block_signal(signal);
        }
        let blocked = vmm_sys_util::signal::get_blocked_signals().expect("the signal mask");
        assert!(blocked.contains(&vmm_sys_util::signal::SIGRTMIN()), "the kick signal is blocked to begin with");
    };
    stop_a_looping_guest(block_all);
}

/// Runs a guest that makes one exit and then loops, on a thread of its own that runs `prepare`
/// first; stops it once it loops. How long it took to leave, or `None` where there is no KVM.
fn stop_a_looping_guest(prepare: fn()) -> Option<Duration> {
    let plan = ExitPlan::new(2, 9, &[Step::Out, Step::Spin]).unwrap();
    let (_vm, mut vcpus) = vm_or_skip(std::slice::from_ref(&plan))?;
    let mut vcpu = vcpus.pop().unwrap();
    let stopper = vcpu.stopper();
    let (exits_sender, exits) = mpsc::channel();
    let thread = std::thread::spawn(move || {
        prepare();
        loop {
            let exit = vcpu.run(|_read| 0).expect("the guest runs");
            exits_sender.send(exit).unwrap();
            if exit == Exit::Interrupted {
                // Stopped: it never enters the guest again.
                return vcpu.run(|_read| 0).expect("a stopped vCPU runs no more");
            }
        }
    });
    let first = exits.recv_timeout(TIMEOUT).expect("the guest's first exit");
    assert_eq!(vec![first], expected_exits(&plan, 0), "the exit before the loop");
    // The guest spins now; nothing comes until it is stopped.
    assert!(exits.recv_timeout(Duration::from_millis(200)).is_err(), "no exit while the guest loops");
    assert!(!thread.is_finished(), "the vCPU thread is inside its guest");
    let asked = Instant::now();
    stopper.stop().expect("the vCPU leaves its guest");
    let took = asked.elapsed();
    assert_eq!(exits.recv_timeout(TIMEOUT).unwrap(), Exit::Interrupted, "KVM_RUN was interrupted");
    assert_eq!(thread.join().unwrap(), Exit::Interrupted, "and is not entered again");
    Some(took)
}

/// A vCPU stopped before it runs never enters its guest, whose first step would exit.
#[test]
fn a_vcpu_stopped_before_it_runs_never_enters_its_guest() {
    let plan = ExitPlan::new(5, 0, &[Step::Out]).unwrap();
    let Some((_vm, mut vcpus)) = vm_or_skip(std::slice::from_ref(&plan)) else { return };
    let mut vcpu = vcpus.pop().unwrap();
    vcpu.stopper().stop().expect("nothing is in the guest");
    for _ in 0..3 {
        assert_eq!(vcpu.run(|_read| 0).unwrap(), Exit::Interrupted);
    }
}
