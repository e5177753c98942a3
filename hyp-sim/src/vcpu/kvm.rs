//! A KVM guest's vCPU thread: it owns its [`Vcpu`] and loops on `KVM_RUN`, handing every real
//! exit to the hypervisor's exit handler, until the run ends or the vCPU stops.

use super::pace::Pacer;
use super::{BATCH, Ending, VcpuRun, current_task, pin_to};
use crate::guest::kvm::{Outcome, answer, outcome};
use crate::hyp::Hyp;
use hyp_kvm::Vcpu;
use std::sync::atomic::{AtomicBool, Ordering};

/// Runs `vcpu` on physical CPU `cpu` until `stop` is set or the vCPU stops, at `rate` exits a
/// second (0: as fast as KVM delivers them), paced by sleeping before re-entering the guest when
/// ahead of schedule.
///
/// Every exit is handed to [`Hyp::handle_exit`] for this thread; reads are answered with
/// [`answer`] of the exit's number. A vCPU that stops ([`Outcome::Stop`]: the guest misbehaved,
/// KVM could not run it, or it ran its whole plan) has that traced as its last exit
/// (`guest_stop`), is named on stderr with the reason, and ends this thread; other vCPUs go on.
///
/// `stop` is looked at before every entry into the guest: hyp-kvm's guest program exits every
/// few instructions, so each `KVM_RUN` returns within microseconds. A guest that makes no exit
/// is left through the vCPU's [`hyp_kvm::VcpuStop`], which whoever ends the run uses after
/// setting `stop`: `KVM_RUN` returns interrupted and this loop sees `stop`.
pub fn run(hyp: &Hyp, cpu: u32, mut vcpu: Vcpu, rate: u64, stop: &AtomicBool) -> VcpuRun {
    pin_to(cpu);
    let task = current_task();
    let index = vcpu.index();
    let pacer = Pacer::start(rate);
    let (mut exits, mut due) = (0u64, 0u64);
    // Ordering: Relaxed; the stop flag carries no data (its partner is the store that ends the
    // run, in the binary).
    while !stop.load(Ordering::Relaxed) {
        if exits == due {
            match pacer.due(exits, BATCH) {
                Some(more) => due = more,
                None => continue,
            }
        }
        let result = vcpu.run(|_read| answer(exits));
        match outcome(index, result) {
            Outcome::Exit(exit) => {
                hyp.handle_exit(cpu, task, exits, &exit);
                exits += 1;
            }
            Outcome::Interrupted => {}
            Outcome::Stop(stopped) => {
                hyp.handle_exit(cpu, task, exits, &stopped.exit());
                eprintln!("hyp-sim: vcpu{cpu} stopped: {}", stopped.reason);
                return VcpuRun { exits: exits + 1, ending: Ending::Stopped(stopped.reason) };
            }
        }
    }
    VcpuRun { exits, ending: Ending::RunEnded }
}
