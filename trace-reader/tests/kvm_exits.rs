//! The hypervisor's trace of real KVM exits, checked against the kernel's own: hyp-sim's KVM
//! guests run while `record --kernel -e kvm:kvm_userspace_exit -e kvm:kvm_pio -e kvm:kvm_mmio
//! --socket` records both on one clock, and, for each vCPU thread, every `kvm_userspace_exit`
//! the kernel traced must be followed by exactly one exit event of the hypervisor's (guest_pio,
//! guest_mmio, guest_hlt) before that thread's next one, of the kind the exit reason says, with
//! the port, address, size and value the kernel's `kvm_pio` and `kvm_mmio` show. In both buffer
//! modes. Needs root, tracefs and `/dev/kvm`; skips with a printed reason where one is missing
//! (in CI, where the machines have them, a missing `/dev/kvm` fails).

mod common;

use common::{Sim, ok};
use ring_core::Mode;
use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// `KVM_EXIT_IO`, `KVM_EXIT_HLT` and `KVM_EXIT_MMIO` (linux/kvm.h): `kvm_userspace_exit`'s reason.
const EXIT_IO: u64 = 2;
const EXIT_HLT: u64 = 5;
const EXIT_MMIO: u64 = 6;
/// `kvm_mmio`'s type (linux/kvm_host.h `KVM_TRACE_MMIO_*`).
const MMIO_READ_UNSATISFIED: u64 = 0;
const MMIO_READ: u64 = 1;
const MMIO_WRITE: u64 = 2;

/// Exits a second per vCPU, and for how long: thousands of exits per vCPU.
const RATE: u64 = 5000;
const RUN: Duration = Duration::from_millis(1200);

/// An event of the recording, as `report --format json` prints it.
#[derive(Debug, Clone)]
struct Event {
    hyp: bool,
    ns: u64,
    name: String,
    fields: serde_json::Value,
}

impl Event {
    fn field(&self, name: &str) -> u64 {
        self.fields[name].as_u64().unwrap_or_else(|| panic!("{} has no integer {name}: {:?}", self.name, self.fields))
    }
}

/// One vCPU thread's exits, checked in order; what disagrees is described in `mismatches`.
#[derive(Default)]
struct Thread {
    /// The kernel's exit that awaits the hypervisor's event, and the kernel's access events
    /// since the exit before it (for an `out` or an MMIO access they come before the exit).
    open_exit: Option<Event>,
    accesses: Vec<Event>,
    /// A read the hypervisor answered: the kernel shows its value when the vCPU re-enters.
    awaiting_read: Option<Event>,
    exits: u64,
    mismatches: Vec<String>,
}

impl Thread {
    fn kernel(&mut self, e: Event) {
        match e.name.as_str() {
            "kvm_userspace_exit" => {
                if let Some(open) = self.open_exit.replace(e.clone()) {
                    self.mismatches.push(format!("kernel exit at {} has no hypervisor event", open.ns));
                }
                if e.field("errno") != 0 {
                    self.mismatches.push(format!("KVM_RUN failed at {}: {:?}", e.ns, e.fields));
                }
            }
            _ if self.awaiting_read.is_some() && is_read_completion(&e) => {
                let read = self.awaiting_read.take().expect("checked");
                let (value, got) = match read.name.as_str() {
                    "guest_pio" => (read.field("value"), e.field("val")),
                    _ => (read.field("data"), e.field("val")),
                };
                if value != got {
                    self.mismatches
                        .push(format!("{} answered {value:#x}, the kernel gave the guest {got:#x}", read.name));
                }
            }
            _ => self.accesses.push(e),
        }
    }

    fn hypervisor(&mut self, e: Event) {
        let Some(exit) = self.open_exit.take() else {
            self.mismatches.push(format!("{} at {} follows no kernel exit", e.name, e.ns));
            return;
        };
        self.exits += 1;
        let accesses = std::mem::take(&mut self.accesses);
        let reason = exit.field("reason");
        let expected = match e.name.as_str() {
            "guest_pio" => EXIT_IO,
            "guest_mmio" => EXIT_MMIO,
            "guest_hlt" => EXIT_HLT,
            other => {
                self.mismatches.push(format!("{other} at {}: not an exit of these guests", e.ns));
                return;
            }
        };
        if reason != expected {
            self.mismatches.push(format!("{} at {} for a kernel exit of reason {reason}", e.name, e.ns));
            return;
        }
        if e.name == "guest_hlt" {
            return;
        }
        let write = e.field("direction") == 1;
        match (e.name.as_str(), write) {
            ("guest_pio", true) => {
                let seen = accesses.iter().rev().find(|a| a.name == "kvm_pio" && a.field("rw") == 1);
                let agrees = seen.is_some_and(|a| {
                    (a.field("port"), a.field("size"), a.field("val"))
                        == (e.field("port"), e.field("size"), e.field("value"))
                });
                if !agrees {
                    self.mismatches.push(format!("out {:?} vs the kernel's {seen:?}", e.fields));
                }
            }
            ("guest_mmio", true) => {
                let seen = accesses.iter().rev().find(|a| a.name == "kvm_mmio" && a.field("type") == MMIO_WRITE);
                let agrees = seen.is_some_and(|a| {
                    (a.field("gpa"), a.field("len"), a.field("val"))
                        == (e.field("gpa"), e.field("len"), e.field("data"))
                });
                if !agrees {
                    self.mismatches.push(format!("MMIO store {:?} vs the kernel's {seen:?}", e.fields));
                }
            }
            ("guest_mmio", false) => {
                let seen =
                    accesses.iter().rev().find(|a| a.name == "kvm_mmio" && a.field("type") == MMIO_READ_UNSATISFIED);
                let agrees = seen.is_some_and(|a| (a.field("gpa"), a.field("len")) == (e.field("gpa"), e.field("len")));
                if !agrees {
                    self.mismatches.push(format!("MMIO load {:?} vs the kernel's {seen:?}", e.fields));
                }
                self.awaiting_read = Some(e);
            }
            _ => self.awaiting_read = Some(e),
        }
    }

    fn end(&mut self) {
        if let Some(open) = self.open_exit.take() {
            self.mismatches.push(format!("the last kernel exit, at {}, has no hypervisor event", open.ns));
        }
    }
}

/// Whether `e` is the kernel's completion of a read (its value, when the vCPU re-enters).
fn is_read_completion(e: &Event) -> bool {
    (e.name == "kvm_pio" && e.field("rw") == 0) || (e.name == "kvm_mmio" && e.field("type") == MMIO_READ)
}

/// Records hyp-sim's KVM guests in `mode` beside the kernel's KVM events and checks every exit;
/// `None` if a capability is missing.
fn cross_check(mode: Mode) -> Option<BTreeMap<i64, u64>> {
    test_capabilities::tracefs("the KVM cross-check")?;
    let mut sim = Sim::start_kvm(2, mode, RATE, 256, "the KVM cross-check")?;
    let file = sim.dir.path().join("kvm.dat");
    let recording = Command::new(env!("CARGO_BIN_EXE_trace-reader"))
        .args(["record", "--kernel", "-e", "kvm:kvm_userspace_exit", "-e", "kvm:kvm_pio", "-e", "kvm:kvm_mmio"])
        .args(["-b", "8192", "--socket", sim.socket.to_str().unwrap(), "-o", file.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running trace-reader");
    // The guests start once the recording reads every CPU; they are stopped before the producer
    // goes, so every exit is complete in both traces when the recording ends.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !sim.every_cpu_consumed() {
        assert!(Instant::now() < deadline, "the recording never read every CPU");
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(RUN);
    let exits = sim.finish(Duration::from_secs(2));
    let recorded = recording.wait_with_output().expect("trace-reader");
    ok(&recorded);
    let report = common::reader(&["report", "--format", "json", file.to_str().unwrap()]);
    ok(&report);
    let mut threads: BTreeMap<i64, Thread> = BTreeMap::new();
    for line in String::from_utf8_lossy(&report.stdout).lines() {
        let json: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
        let Some(name) = json["event"].as_str() else {
            panic!("the recording lost events: {line}");
        };
        let event = Event {
            hyp: json["buffer"] == "hyp",
            ns: json["ts_ns"].as_u64().unwrap(),
            name: name.to_string(),
            fields: json["fields"].clone(),
        };
        let thread = threads.entry(json["pid"].as_i64().unwrap()).or_default();
        match (event.hyp, event.name.as_str()) {
            (true, "hyp_enter" | "hyp_exit") => {}
            (true, _) => thread.hypervisor(event),
            (false, _) => thread.kernel(event),
        }
    }
    threads.values_mut().for_each(Thread::end);
    // Kernel events of other tasks (none here: only KVM's, of the vCPU threads) would show as
    // threads without hypervisor events.
    for (pid, thread) in &threads {
        assert!(
            thread.mismatches.is_empty(),
            "{mode:?} mode, thread {pid}: {} mismatches of {} exits; the first: {:?}",
            thread.mismatches.len(),
            thread.exits,
            &thread.mismatches[..thread.mismatches.len().min(5)]
        );
    }
    let per_thread: BTreeMap<i64, u64> = threads.iter().map(|(pid, t)| (*pid, t.exits)).collect();
    assert_eq!(per_thread.len(), 2, "one thread per vCPU: {per_thread:?}");
    assert_eq!(per_thread.values().sum::<u64>(), exits.iter().sum::<u64>(), "every exit the vCPUs made");
    assert!(per_thread.values().all(|&n| n >= 2000), "thousands of exits per vCPU: {per_thread:?}");
    Some(per_thread)
}

#[test]
fn every_real_exit_is_traced_as_the_kernel_saw_it() {
    for mode in [Mode::Drop, Mode::Overwrite] {
        let Some(per_thread) = cross_check(mode) else { return };
        println!(
            "KVM cross-check, {mode:?} mode: {:?} exits per vCPU thread, each the kernel's kvm_userspace_exit \
             followed by the hypervisor's event of its kind before the thread's next, ports, addresses and values \
             as kvm_pio and kvm_mmio show them: 0 mismatches",
            per_thread.values().collect::<Vec<_>>()
        );
    }
}
