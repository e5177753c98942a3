//! `hyp-sim --guest kvm` end to end: real KVM guests' exits, traced by the hypervisor and read
//! through the control socket as `trace-reader` reads them.
//!
//! Each vCPU's guest runs hyp-sim's default exit pattern from the seed, and the hypervisor
//! answers its reads with the exit's number, so every exit is known: the check walks the plan
//! step by step and finds each exit as `hyp_enter`, its `guest_*` event with exactly the
//! planned fields, `hyp_exit`. Fields are read by name, where hyp-sim's event table puts them.

mod common;

use common::{finish_run, int, named, read_until_hangup, start, string};
use hyp_kvm::guest::{abi, mmio_address};
use hyp_sim::events::{COMMON_FIELDS, EventDef, GUEST_HLT, GUEST_MMIO, GUEST_PIO, GUEST_STOP, HYP_ENTER, HYP_EXIT};
use ring_mmap::{Consumer, Record};
use std::collections::VecDeque;
use std::process::Command;
use std::time::{Duration, Instant};

const SEED: u32 = 0x7000_0000;

/// hyp-sim's default exit pattern for KVM guests (`--exits`), step by step.
#[derive(Debug, Clone, Copy)]
enum Step {
    Out,
    In,
    MmioWrite,
    MmioRead,
    Hlt,
}

const DEFAULT_PATTERN: [Step; 5] = [Step::Out, Step::In, Step::MmioWrite, Step::MmioRead, Step::Hlt];

/// One exit as the trace must show it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Expected {
    /// `guest_pio`: port, direction (0 in, 1 out), value.
    Pio(u16, u64, u64),
    /// `guest_mmio`: direction, data (at the vCPU's register, 4 bytes).
    Mmio(u64, u64),
    Hlt,
}

/// Checks one vCPU's stream against its plan.
struct Stream {
    vcpu: u32,
    /// hyp-sim's process id.
    producer: u32,
    /// The host task (`common_pid`) of the vCPU's events.
    task: Option<u64>,
    /// Whether that task's name was checked (while it ran).
    named: bool,
    /// Position of the next event in the stream.
    pos: u64,
    lost: u64,
    /// Steps of the plan expanded into `expected` so far.
    steps: u32,
    expected: VecDeque<Expected>,
    /// The `guest_stop` event's exit reason and text, if one came.
    stop: Option<(u64, String)>,
}

impl Stream {
    fn new(vcpu: u32, producer: u32) -> Self {
        Self {
            vcpu,
            producer,
            task: None,
            named: false,
            pos: 0,
            lost: 0,
            steps: 0,
            expected: VecDeque::new(),
            stop: None,
        }
    }

    /// The exit numbered `n` (the next one) must be: the plan's next step expanded when needed.
    /// Reads are answered with the exit's number, which the guest echoes.
    fn next_expected(&mut self, n: u64) -> Expected {
        if self.expected.is_empty() {
            let counter = u64::from(SEED.wrapping_add(self.steps));
            let answer = u64::from(n as u32);
            let exits = match DEFAULT_PATTERN[self.steps as usize % DEFAULT_PATTERN.len()] {
                Step::Out => vec![Expected::Pio(abi::HYPERCALL_PORT, 1, counter)],
                Step::In => {
                    vec![Expected::Pio(abi::HYPERCALL_PORT, 0, answer), Expected::Pio(abi::ECHO_PORT, 1, answer)]
                }
                Step::MmioWrite => vec![Expected::Mmio(1, counter)],
                Step::MmioRead => vec![Expected::Mmio(0, answer), Expected::Pio(abi::ECHO_PORT, 1, answer)],
                Step::Hlt => vec![Expected::Hlt],
            };
            self.expected.extend(exits);
            self.steps += 1;
        }
        self.expected.pop_front().expect("a step makes an exit")
    }

    /// Checks `common_pid`: every event of the vCPU names one host task, hyp-sim's thread
    /// `vcpuN`, whose name is checked on the first event if the thread still runs (a vCPU that
    /// stops at once ends its thread at once).
    fn check_task(&mut self, pid: u64, what: &str) {
        match self.task {
            Some(task) => assert_eq!(pid, task, "{what}: common_pid"),
            None => {
                assert_ne!(pid, u64::from(self.producer), "{what}: common_pid is a vCPU thread, not the main one");
                let comm = format!("/proc/{}/task/{pid}/comm", self.producer);
                if let Ok(name) = std::fs::read_to_string(&comm) {
                    assert_eq!(
                        name.trim_end(),
                        format!("vcpu{}", self.vcpu),
                        "{what}: common_pid is the vCPU's thread"
                    );
                    self.named = true;
                }
                self.task = Some(pid);
            }
        }
    }

    fn take(&mut self, record: Record<'_>) {
        let event = match record {
            Record::Lost(lost) => {
                self.lost += 1;
                panic!("vCPU {}: drop mode with a consumer reading lost events: {lost:?}", self.vcpu);
            }
            Record::Event(event) => event,
        };
        let p = event.payload.to_vec();
        let n = self.pos / 3;
        let what = format!("vCPU {} event {} (exit {n})", self.vcpu, self.pos);
        // Only the stop's own hyp_exit follows its guest_stop.
        assert!(self.stop.is_none() || self.pos % 3 == 2, "{what}: an event after guest_stop's exit");
        let common_type = int(&p, named(COMMON_FIELDS, "common_type"));
        self.check_task(int(&p, named(COMMON_FIELDS, "common_pid")), &what);
        let field = |def: &EventDef, name| int(&p, named(def.fields, name));
        match self.pos % 3 {
            0 => assert_eq!(common_type, u64::from(HYP_ENTER.id), "{what}: hyp_enter"),
            2 => assert_eq!(common_type, u64::from(HYP_EXIT.id), "{what}: hyp_exit"),
            _ if common_type == u64::from(GUEST_STOP.id) => {
                self.stop =
                    Some((field(&GUEST_STOP, "exit_reason"), string(&p, named(GUEST_STOP.fields, "reason")).into()));
            }
            _ => {
                let got = if common_type == u64::from(GUEST_PIO.id) {
                    assert_eq!(field(&GUEST_PIO, "size"), 4, "{what}");
                    Expected::Pio(
                        field(&GUEST_PIO, "port") as u16,
                        field(&GUEST_PIO, "direction"),
                        field(&GUEST_PIO, "value"),
                    )
                } else if common_type == u64::from(GUEST_MMIO.id) {
                    assert_eq!(
                        field(&GUEST_MMIO, "gpa"),
                        mmio_address(self.vcpu as usize),
                        "{what}: the vCPU's register"
                    );
                    assert_eq!(field(&GUEST_MMIO, "len"), 4, "{what}");
                    Expected::Mmio(field(&GUEST_MMIO, "direction"), field(&GUEST_MMIO, "data"))
                } else {
                    assert_eq!(common_type, u64::from(GUEST_HLT.id), "{what}: a guest exit event");
                    Expected::Hlt
                };
                assert_eq!(got, self.next_expected(n), "{what}");
            }
        }
        self.pos += 1;
    }
}

/// Runs `hyp-sim --guest kvm` on 2 vCPUs flat out for a second in drop mode, with `args`, consumes
/// both CPUs as it runs, and returns each vCPU's stream with its exits from hyp-sim's report, and
/// the report.
fn run(args: &[&str]) -> (Vec<(Stream, u64)>, String) {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("sock");
    let seed = SEED.to_string();
    // 16 MiB per CPU hold the whole second, so that losing nothing does not depend on how the
    // consumer threads are scheduled beside two vCPU threads running flat out.
    let common = ["--guest", "kvm", "--cpus", "2", "--rate", "0", "--duration", "1", "--mode", "drop"];
    let more = ["--nr-subbufs", "4096", "--seed", &seed, "--hypercall-priority", "normal"];
    let (child, conn) = start(&socket, &[&common[..], &more, args].concat());
    let readers: Vec<_> = (0..2)
        .map(|vcpu| {
            let source = conn.open_cpu(vcpu).expect("open_cpu");
            let producer = child.id();
            std::thread::spawn(move || {
                let mut consumer = Consumer::new(source).expect("consumer");
                let mut stream = Stream::new(vcpu, producer);
                read_until_hangup(&mut consumer, Duration::ZERO, |record| stream.take(record));
                consumer.drain_remaining(|record| stream.take(record)).expect("drain after hangup");
                stream
            })
        })
        .collect();
    finish_run(child, readers)
}

#[test]
fn every_real_exit_is_traced_with_the_planned_fields_and_nothing_is_lost() {
    if !test_capabilities::kvm("hyp-sim tracing KVM guests") {
        return;
    }
    let started = Instant::now();
    let (streams, report) = run(&[]);
    for (stream, exits) in streams {
        let vcpu = stream.vcpu;
        assert!(exits > 1000, "vCPU {vcpu}: the guest ran: {exits} exits");
        assert_eq!(stream.lost, 0, "vCPU {vcpu}: a consumer reading loses nothing");
        assert_eq!(stream.pos, 3 * exits, "vCPU {vcpu}: three events for every exit");
        assert!(stream.stop.is_none(), "vCPU {vcpu} stopped: {:?}", stream.stop);
        assert!(stream.named, "vCPU {vcpu}: its thread's name was checked while it ran");
        assert!(report.contains(&format!("hyp-sim: vcpu{vcpu} ran until the run ended")), "{report}");
    }
    println!("kvm guests traced for {:.1} s", started.elapsed().as_secs_f64());
}

#[test]
fn a_triple_faulting_guest_stops_its_vcpu_alone_and_says_why() {
    if !test_capabilities::kvm("a misbehaving KVM guest under hyp-sim") {
        return;
    }
    let (streams, report) = run(&["--triple-fault", "1"]);
    let (running, running_exits) = &streams[0];
    assert!(*running_exits > 1000, "vCPU 0 went on: {running_exits} exits");
    assert_eq!(running.pos, 3 * running_exits);
    assert!(running.stop.is_none() && report.contains("hyp-sim: vcpu0 ran until the run ended"), "{report}");

    let (faulted, faulted_exits) = &streams[1];
    // One round of the pattern (seven exits), then the triple fault's.
    assert_eq!(*faulted_exits, 8, "{report}");
    assert_eq!(faulted.pos, 3 * faulted_exits, "its stop is traced as an exit too");
    let shutdown = u64::from(kvm_bindings::KVM_EXIT_SHUTDOWN);
    assert_eq!(faulted.stop, Some((shutdown, "shutdown (triple fault)".to_string())));
    assert!(report.contains("hyp-sim: vcpu1 stopped: shutdown (triple fault)\n"), "{report}");
    assert_ne!(faulted.task, running.task, "each vCPU's events name its own thread");
}

/// A guest that loops without exits keeps its vCPU thread inside `KVM_RUN`: the run's end
/// stops it there, and the run ends on time with every vCPU accounted for.
#[test]
fn a_guest_that_never_exits_is_stopped_when_the_run_ends() {
    if !test_capabilities::kvm("a KVM guest that never exits under hyp-sim") {
        return;
    }
    let started = Instant::now();
    let (streams, report) = run(&["--spin", "1"]);
    let took = started.elapsed();
    let (running, running_exits) = &streams[0];
    assert!(*running_exits > 1000, "vCPU 0 went on: {running_exits} exits");
    assert!(running.stop.is_none(), "{report}");
    let (spinning, spinning_exits) = &streams[1];
    // One round of the pattern (seven exits), then none while the guest loops.
    assert_eq!(*spinning_exits, 7, "{report}");
    assert_eq!(spinning.pos, 3 * spinning_exits);
    assert!(spinning.stop.is_none(), "stopped by the run's end, not by the guest: {:?}", spinning.stop);
    for vcpu in 0..2 {
        assert!(report.contains(&format!("hyp-sim: vcpu{vcpu} ran until the run ended")), "{report}");
    }
    assert!(!report.contains("still in its guest"), "{report}");
    // The 1 s run and its reading, short of the 1 s + 2 s it takes when hyp-sim waits for a vCPU
    // thread that stayed in its guest.
    assert!(took < Duration::from_millis(2900), "the run took {took:?}");
    println!("a vCPU looping in its guest was stopped at the run's end: the run took {took:?}");
}

#[test]
fn without_kvm_hyp_sim_says_so_in_one_line() {
    // /dev/kvm hidden behind an empty /dev in a mount namespace of this process's own.
    let out = Command::new("unshare")
        .args([
            "--map-root-user",
            "--mount",
            "sh",
            "-c",
            "mount -t tmpfs none /dev && exec \"$0\" --guest kvm --socket /nonexistent/sock",
        ])
        .arg(env!("CARGO_BIN_EXE_hyp-sim"))
        .env("RUST_BACKTRACE", "1")
        .output();
    let out = match out {
        Ok(out) if !String::from_utf8_lossy(&out.stderr).starts_with("unshare:") => out,
        other => {
            test_capabilities::skip(
                format_args!("no mount namespace to hide /dev/kvm in ({other:?})"),
                "hyp-sim without KVM",
            );
            return;
        }
    };
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert_eq!(said.lines().count(), 1, "one line, no backtrace: {said}");
    assert!(said.starts_with("hyp-sim: KVM is unavailable: cannot open /dev/kvm"), "{said}");
}

#[test]
fn a_killed_hyp_sim_leaves_its_kvm_guests_exits_recoverable() {
    if !test_capabilities::kvm("post-mortem reading of a killed hyp-sim's KVM guests") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (socket, buffers) = (dir.path().join("sock"), dir.path().join("buffers"));
    let seed = SEED.to_string();
    // Drop mode, 16 MiB per CPU, nobody reading: the buffers keep every exit of the run.
    let args = ["--guest", "kvm", "--cpus", "2", "--rate", "0", "--duration", "forever", "--mode", "drop"];
    let more = ["--nr-subbufs", "4096", "--seed", &seed, "--dir", buffers.to_str().unwrap()];
    let (mut child, _connection) = start(&socket, &[&args[..], &more].concat());
    std::thread::sleep(Duration::from_millis(500));
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");
    let opened = ring_mmap::BufferDir::open(&buffers).expect("the killed producer's directory");
    assert_eq!(opened.cpus.len(), 2);
    for (vcpu, source) in (0..).zip(opened.cpus) {
        let mut stream = Stream::new(vcpu, child.id());
        Consumer::new(source)
            .expect("a consumer of the file")
            .drain_remaining(|record| stream.take(record))
            .expect("read post-mortem");
        // Every event is the plan's, in order from the first exit; the kill may cut the last
        // exit's events short, nothing else.
        assert!(stream.pos > 3000, "vCPU {vcpu}: thousands of exits' events recovered: {}", stream.pos);
        assert_eq!(stream.lost, 0, "vCPU {vcpu}");
        println!("vCPU {vcpu}: {} exits ({} events) recovered after SIGKILL", stream.pos / 3, stream.pos);
    }
}
