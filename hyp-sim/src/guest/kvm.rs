//! The KVM guests: the plan each vCPU's guest runs (hyp-kvm's guest program), the values the
//! hypervisor answers its reads with, and what each of its real exits is to the hypervisor.
//!
//! A guest is untrusted: whatever it does is an [`Outcome`], never a panic. Besides the stops
//! KVM and hyp-kvm report, the hypervisor checks one thing of its own, cheaply, on every MMIO
//! exit: the guest ABI gives each vCPU one device register, [`MMIO_STRIDE`] bytes at
//! [`mmio_address`], and an access that is not wholly inside it stops the vCPU.

use super::GuestExit;
use hyp_kvm::guest::abi::MMIO_STRIDE;
use hyp_kvm::guest::mmio_address;
use hyp_kvm::{Direction, Error, Exit, ExitPlan, MmioAccess, Step};
use kvm_bindings::{KVM_EXIT_IO, KVM_EXIT_MMIO, KVM_EXIT_UNKNOWN};

/// Steps in every guest's plan: the most a plan holds. At the fastest KVM here delivers exits
/// (about 80,000 a second, one or two per step) that lasts over 14 hours, longer than a run
/// is practically asked to; a guest that does run out reports done and its vCPU stops
/// (`guest_stop`, "done: ...").
pub const PLAN_STEPS: u32 = u32::MAX;

/// The vCPUs whose guests misbehave on purpose, after one round of their exit pattern.
#[derive(Debug, Clone, Copy, Default)]
pub struct Misbehaving<'a> {
    /// These triple fault, which stops their vCPUs.
    pub triple_fault: &'a [u32],
    /// These loop without exits until the run ends, which stops their vCPUs inside the guest
    /// ([`hyp_kvm::VcpuStop`]).
    pub spin: &'a [u32],
}

/// The plans of `vcpus` vCPUs: vCPU `n` runs `pattern` over and over, step `i` carrying the
/// counter `seed + i`, except those `misbehaving` names, which misbehave after one round of it.
pub fn plans(vcpus: u32, seed: u32, pattern: &[Step], misbehaving: Misbehaving<'_>) -> Result<Vec<ExitPlan>, Error> {
    (0..vcpus)
        .map(|vcpu| {
            let mut steps = pattern.to_vec();
            if misbehaving.triple_fault.contains(&vcpu) {
                steps.push(Step::TripleFault);
            }
            if misbehaving.spin.contains(&vcpu) {
                steps.push(Step::Spin);
            }
            ExitPlan::new(PLAN_STEPS, seed, &steps)
        })
        .collect()
}

/// The value the hypervisor answers the guest's read (`in`, an MMIO load) with when it is the
/// vCPU's exit number `exit_number` (counting from 0): that number, truncated to the access size,
/// so the value traced and echoed back is known.
pub fn answer(exit_number: u64) -> u64 {
    exit_number
}

/// What one `KVM_RUN` of a vCPU was to the hypervisor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// An exit the hypervisor handles; the vCPU runs on.
    Exit(GuestExit<'static>),
    /// `KVM_RUN` returned for a signal, or was not entered because the vCPU was stopped
    /// ([`hyp_kvm::VcpuStop`]): the guest did nothing. The vCPU runs on unless it was stopped.
    Interrupted,
    /// The vCPU stopped and does not run again.
    Stop(Stop),
}

/// Why a vCPU stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stop {
    /// KVM's exit reason (`KVM_EXIT_*`) for the exit that stopped it; 0 (`KVM_EXIT_UNKNOWN`)
    /// where `KVM_RUN` itself failed.
    pub exit_reason: u32,
    /// Why, in words.
    pub reason: String,
}

impl Stop {
    /// The exit the hypervisor records for it.
    pub fn exit(&self) -> GuestExit<'_> {
        GuestExit::Stop { exit_reason: self.exit_reason, reason: &self.reason }
    }
}

/// What vCPU `vcpu`'s `KVM_RUN` returning `result` is to the hypervisor.
pub fn outcome(vcpu: usize, result: Result<Exit, Error>) -> Outcome {
    let stop = |exit_reason, reason| Outcome::Stop(Stop { exit_reason, reason });
    match result {
        Ok(Exit::Io(access)) => Outcome::Exit(GuestExit::Pio(access)),
        Ok(Exit::Mmio(access)) => match outside_register(vcpu, &access) {
            None => Outcome::Exit(GuestExit::Mmio(access)),
            Some(reason) => stop(KVM_EXIT_MMIO, reason),
        },
        Ok(Exit::Halt) => Outcome::Exit(GuestExit::Halt),
        Ok(Exit::Interrupted) => Outcome::Interrupted,
        Ok(Exit::Done { counter }) => {
            stop(KVM_EXIT_IO, format!("done: the guest ran its whole plan, final counter {counter:#x}"))
        }
        Ok(Exit::Stopped(reason)) => stop(reason.exit_reason(), reason.to_string()),
        Err(Error::GuestFault { fault, .. }) => stop(KVM_EXIT_IO, format!("guest fault: {fault}")),
        Err(error) => stop(KVM_EXIT_UNKNOWN, error.to_string()),
    }
}

/// Why vCPU `vcpu`'s MMIO `access` is not to its register, if it is not.
fn outside_register(vcpu: usize, access: &MmioAccess) -> Option<String> {
    let MmioAccess { gpa, len, direction, .. } = *access;
    let start = mmio_address(vcpu);
    let end = start + MMIO_STRIDE;
    let inside = gpa >= start && gpa.checked_add(u64::from(len)).is_some_and(|access_end| access_end <= end);
    let access = match direction {
        Direction::Read => "read",
        Direction::Write => "write",
    };
    (!inside).then(|| {
        format!("MMIO {access} of {len} bytes at {gpa:#x}, outside vCPU {vcpu}'s register {start:#x}..{end:#x}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyp_kvm::{GuestFault, PortIo, StopReason};

    #[test]
    fn real_exits_are_the_hypervisors_exits() {
        let out = PortIo { port: 0x510, size: 4, direction: Direction::Write, data: 7 };
        assert_eq!(outcome(0, Ok(Exit::Io(out))), Outcome::Exit(GuestExit::Pio(out)));
        let load = MmioAccess { gpa: mmio_address(1), len: 4, direction: Direction::Read, data: 3 };
        assert_eq!(outcome(1, Ok(Exit::Mmio(load))), Outcome::Exit(GuestExit::Mmio(load)));
        assert_eq!(outcome(0, Ok(Exit::Halt)), Outcome::Exit(GuestExit::Halt));
        assert_eq!(outcome(0, Ok(Exit::Interrupted)), Outcome::Interrupted);
    }

    #[test]
    fn every_stop_has_its_exit_reason_and_says_why() {
        let stop = |result| match outcome(2, result) {
            Outcome::Stop(stop) => (stop.exit_reason, stop.reason),
            other => panic!("expected a stop, got {other:?}"),
        };
        assert_eq!(stop(Ok(Exit::Stopped(StopReason::Shutdown))), (8, "shutdown (triple fault)".to_string()));
        let (reason, text) = stop(Err(Error::GuestFault { vcpu: 2, fault: GuestFault::BadMagic }));
        assert_eq!(reason, KVM_EXIT_IO);
        assert!(text.starts_with("guest fault: the parameter block's magic word is wrong"), "{text}");
        assert_eq!(stop(Ok(Exit::Done { counter: 0x10 })).1, "done: the guest ran its whole plan, final counter 0x10");
        let (reason, text) = stop(Err(Error::Finished { vcpu: 2 }));
        assert_eq!((reason, text.starts_with("vCPU 2 has finished")), (KVM_EXIT_UNKNOWN, true), "{text}");
    }

    #[test]
    fn an_mmio_access_outside_the_vcpus_register_stops_it() {
        let register = mmio_address(1);
        let access = |gpa, len| Exit::Mmio(MmioAccess { gpa, len, direction: Direction::Write, data: 0 });
        for (gpa, len) in [(register, 8), (register + MMIO_STRIDE - 4, 4)] {
            assert!(matches!(outcome(1, Ok(access(gpa, len))), Outcome::Exit(_)), "{gpa:#x} {len}");
        }
        // Another vCPU's register, straddling the end, below the start, wrapping.
        for (gpa, len) in [(mmio_address(0), 4), (register + MMIO_STRIDE - 2, 4), (register - 1, 2), (u64::MAX, 2)] {
            match outcome(1, Ok(access(gpa, len))) {
                Outcome::Stop(Stop { exit_reason: KVM_EXIT_MMIO, reason }) => {
                    assert!(reason.starts_with(&format!("MMIO write of {len} bytes at {gpa:#x}, outside vCPU 1")))
                }
                other => panic!("{gpa:#x} {len}: expected a stop, got {other:?}"),
            }
        }
    }

    #[test]
    fn plans_repeat_the_pattern_and_misbehave_where_asked() {
        let misbehaving = Misbehaving { triple_fault: &[1], spin: &[2] };
        let made = plans(3, 9, &[Step::Out, Step::Halt], misbehaving).unwrap();
        assert_eq!(made.len(), 3);
        assert_eq!(made[0].pattern(), [Step::Out, Step::Halt]);
        assert_eq!(made[1].pattern(), [Step::Out, Step::Halt, Step::TripleFault]);
        assert_eq!(made[2].pattern(), [Step::Out, Step::Halt, Step::Spin]);
        assert!(made.iter().all(|plan| plan.seed() == 9 && plan.steps() == PLAN_STEPS));
        let no_room = plans(1, 0, &[Step::Out; 16], Misbehaving { triple_fault: &[0], spin: &[] });
        assert!(matches!(no_room, Err(Error::PatternLength { len: 17, .. })), "no room for the triple fault");
    }
}
