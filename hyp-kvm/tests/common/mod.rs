//! What the hyp-kvm tests share: creating a VM or skipping where there is no KVM, running
//! vCPUs on their own threads under a timeout, and the exit sequence a plan should make.

// Each test binary includes this module and uses only part of it.
#![allow(dead_code)]

use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use hyp_kvm::guest::{abi, mmio_address};
use hyp_kvm::{Direction, Error, Exit, ExitPlan, MmioAccess, PortIo, ReadRequest, Step, StopReason, Vcpu, Vm};

/// Longest any vCPU may take to finish its plan before the test fails instead of hanging.
pub const TIMEOUT: Duration = Duration::from_secs(20);

/// The VM for `plans`, or `None` (having printed `SKIPPED: …`) where this machine has no
/// `/dev/kvm`. Where `/dev/kvm` exists, KVM must work: any error fails the test.
pub fn vm_or_skip(plans: &[ExitPlan]) -> Option<(Vm, Vec<Vcpu>)> {
    if !test_capabilities::kvm("a KVM guest's exits") {
        return None;
    }
    Some(Vm::new(plans).unwrap_or_else(|error| panic!("creating the VM: {error}")))
}

/// The value the tests answer the guest's `n`th exit with when it is a read: distinct for
/// every exit, and unlike any counter the tests use.
pub fn answer_for(exit_number: usize) -> u32 {
    0xA500_0000 | exit_number as u32
}

/// What one vCPU's run ended with.
pub struct Run {
    /// The exits in order, the last one [`Exit::Done`] unless the run ended in an error.
    pub exits: Vec<Exit>,
    /// The error the run ended with, if any.
    pub error: Option<Error>,
    /// How long the exits took.
    pub elapsed: Duration,
}

/// Runs each vCPU on its own thread until its guest is done, stops or fails, answering reads
/// with [`answer_for`]; fails the test if any takes longer than [`TIMEOUT`].
pub fn run_all(vcpus: Vec<Vcpu>) -> Vec<Run> {
    let (sender, receiver) = mpsc::channel();
    let count = vcpus.len();
    for mut vcpu in vcpus {
        let sender = sender.clone();
        thread::spawn(move || {
            let start = Instant::now();
            let mut exits = Vec::new();
            let error = loop {
                let exit_number = exits.len();
                match vcpu.run(|_read: ReadRequest| u64::from(answer_for(exit_number))) {
                    Ok(Exit::Interrupted) => continue,
                    Ok(exit) => {
                        exits.push(exit);
                        if matches!(exit, Exit::Done { .. } | Exit::Stopped(_)) {
                            break None;
                        }
                    }
                    Err(error) => break Some(error),
                }
            };
            let run = Run { exits, error, elapsed: start.elapsed() };
            // The receiver is gone only if the test already failed on a timeout.
            let _ = sender.send((vcpu.index(), run));
        });
    }
    let deadline = Instant::now() + TIMEOUT;
    let mut runs: Vec<Option<Run>> = (0..count).map(|_| None).collect();
    for _ in 0..count {
        let wait = deadline.saturating_duration_since(Instant::now());
        let (index, run) =
            receiver.recv_timeout(wait).unwrap_or_else(|_| panic!("a vCPU did not finish within {TIMEOUT:?}"));
        runs[index] = Some(run);
    }
    runs.into_iter().map(|run| run.expect("every vCPU reported")).collect()
}

/// The exits vCPU `vcpu` must make running `plan` when reads are answered with [`answer_for`]:
/// up to its first triple fault or spin, if it has one (after a spin, none until it is stopped).
pub fn expected_exits(plan: &ExitPlan, vcpu: usize) -> Vec<Exit> {
    let hypercall = |direction, data| Exit::Io(PortIo { port: abi::HYPERCALL_PORT, size: 4, direction, data });
    let echo = |data| Exit::Io(PortIo { port: abi::ECHO_PORT, size: 4, direction: Direction::Write, data });
    let mmio = |direction, data| Exit::Mmio(MmioAccess { gpa: mmio_address(vcpu), len: 4, direction, data });
    let mut exits = Vec::new();
    for step in 0..plan.steps() {
        let counter = plan.seed().wrapping_add(step);
        match plan.pattern()[step as usize % plan.pattern().len()] {
            Step::Out => exits.push(hypercall(Direction::Write, counter)),
            Step::In => {
                let answer = answer_for(exits.len());
                exits.push(hypercall(Direction::Read, answer));
                exits.push(echo(answer));
            }
            Step::MmioWrite => exits.push(mmio(Direction::Write, u64::from(counter))),
            Step::MmioRead => {
                let answer = answer_for(exits.len());
                exits.push(mmio(Direction::Read, u64::from(answer)));
                exits.push(echo(answer));
            }
            Step::Halt => exits.push(Exit::Halt),
            Step::TripleFault => {
                exits.push(Exit::Stopped(StopReason::Shutdown));
                return exits;
            }
            Step::Spin => return exits,
        }
    }
    exits.push(Exit::Done { counter: plan.seed().wrapping_add(plan.steps()) });
    exits
}

/// Checks a run made exactly `expected`, naming the first exit that differs.
pub fn assert_exits(run: &Run, expected: &[Exit], vcpu: usize) {
    assert!(
        run.error.is_none(),
        "vCPU {vcpu} failed: {}",
        run.error.as_ref().map(ToString::to_string).unwrap_or_default()
    );
    let first_difference = run.exits.iter().zip(expected).position(|(got, want)| got != want);
    if let Some(index) = first_difference {
        panic!("vCPU {vcpu}: exit {index} is {:?}, expected {:?}", run.exits[index], expected[index]);
    }
    assert_eq!(run.exits.len(), expected.len(), "vCPU {vcpu}: number of exits");
}
