//! A real KVM guest for a benchmark, run in batches of exits on the benchmark's own thread:
//! hyp-sim's hypervisor (a [`Host`] with one CPU's buffer, 1 MiB in overwrite mode, no reader)
//! and one vCPU of hyp-kvm's guest program running hyp-sim's default exit pattern, every exit
//! handed to [`Hyp::handle_exit`] as `hyp-sim --guest kvm` does (`hyp_sim::vcpu::kvm::run`).
//! The vCPU is kept from batch to batch and hyptrace's tracing switched on or off between them
//! (the `ENABLE` hypercall), so that the same guest measures its exits traced and untraced.

use hyp_kvm::{Step, Vcpu, Vm};
use hyp_sim::guest::kvm::{Misbehaving, Outcome, answer, outcome, plans};
use hyp_sim::host::{Host, HostConfig};
use ring_core::{Config, Geometry, Mode};
use ring_mmap::Backing;
use std::time::{Duration, Instant};

/// The exit pattern `hyp-sim --guest kvm` runs by default: every kind of exit.
const PATTERN: [Step; 5] = [Step::Out, Step::In, Step::MmioWrite, Step::MmioRead, Step::Halt];

/// The hypervisor's CPU the vCPU traces into.
const CPU: u32 = 0;

/// Whether this machine runs KVM guests: `Err` says why not (no `/dev/kvm`, KVM refusing to
/// create a VM), for a benchmark to print as the reason it is skipped.
pub fn available() -> Result<(), String> {
    vm().map(drop)
}

/// A VM of one vCPU running [`PATTERN`], or why there is none.
fn vm() -> Result<(Vm, Vcpu), String> {
    let plans = plans(1, 0, &PATTERN, Misbehaving::default()).map_err(|e| e.to_string())?;
    let (vm, mut vcpus) = Vm::new(&plans).map_err(|e| e.to_string())?;
    Ok((vm, vcpus.pop().expect("one plan, one vCPU")))
}

/// One KVM vCPU and the hypervisor handling its exits.
pub struct KvmGuest {
    // Declared before the VM, so the vCPU is closed first.
    vcpu: Vcpu,
    _vm: Vm,
    host: Host,
    /// The thread running the vCPU, to which the hypervisor attributes its exits.
    task: i32,
    /// Exits handled so far (the number of the next one).
    exits: u64,
}

impl KvmGuest {
    /// The hypervisor and the VM, for the calling thread to run, tracing off; `Err` says why
    /// there is none here (no `/dev/kvm`, KVM refusing the VM), for the benchmark to print as
    /// the reason it is skipped.
    pub fn start() -> Result<Self, String> {
        let (vm, vcpu) = vm()?;
        let config = HostConfig {
            nr_cpus: 1,
            buffer: Config {
                geometry: Geometry::new(4096, 256).expect("1 MiB is a valid geometry"),
                mode: Mode::Overwrite,
            },
            backing: Backing::Memfd,
        };
        let host = Host::boot(config).map_err(|e| format!("booting the hypervisor: {e}"))?;
        let guest = Self { vcpu, _vm: vm, host, task: rustix::thread::gettid().as_raw_nonzero().get(), exits: 0 };
        guest.set_tracing(false);
        Ok(guest)
    }

    /// Switches hyptrace's tracing on or off for the batches that follow.
    pub fn set_tracing(&self, on: bool) {
        self.host.set_tracing(on).expect("the ENABLE hypercall takes 0 and 1");
    }

    /// Events hyptrace has recorded so far (overwritten ones included).
    pub fn recorded(&self) -> u64 {
        self.host.cpu_stats(CPU).expect("STATS of the hypervisor's only CPU").stats.entries
    }

    /// Runs the guest for `exits` exits, each handled by the hypervisor, and says how long that
    /// took. Panics if the vCPU stops: the guest's plan outlasts any benchmark, and the guest
    /// program does nothing that stops it.
    pub fn run(&mut self, exits: u64) -> Duration {
        let hyp = self.host.hyp();
        let start = Instant::now();
        let end = self.exits + exits;
        while self.exits < end {
            let number = self.exits;
            match outcome(self.vcpu.index(), self.vcpu.run(|_read| answer(number))) {
                Outcome::Exit(exit) => {
                    hyp.handle_exit(CPU, self.task, number, &exit);
                    self.exits += 1;
                }
                Outcome::Interrupted => {}
                Outcome::Stop(stop) => panic!("the benchmark's vCPU stopped: {}", stop.reason),
            }
        }
        start.elapsed()
    }
}
