//! End to end: a `hyp-sim` process produces; this test consumes through its control socket and
//! read-only mappings, as `trace-reader` does.
//!
//! The guests' exits are deterministic (`hyp_sim::guest::exit`) and each exit records three
//! events, so event `i` of a CPU's stream is known: `hyp_enter`, the exit's own event with its
//! exact field values, `hyp_exit`, for exit `i / 3`. Every event read is checked against that,
//! at the position the losses reported before it put it: so the check proves at once that the
//! fields are right and that every loss is counted exactly. Fields are read by name, where
//! hyp-sim's event table puts them.

mod common;

use common::{finish_run, int, named, read_until_hangup, start, string};
use hyp_sim::events::{COMMON_FIELDS, EventDef, HOST_HCALL, HOST_MEM_ABORT, HOST_SMC, HYP_ENTER, HYP_EXIT, HYP_PRINTK};
use hyp_sim::guest::{self, GuestExit};
use hyp_sim::host::clock::monotonic_ns;
use ring_mmap::{Consumer, Lost, Record};
use std::process::Command;
use std::time::Duration;

const SEED: u64 = 42;

/// Checks one CPU's stream.
#[derive(Debug)]
struct Stream {
    cpu: u32,
    /// hyp-sim's process id.
    producer: u32,
    /// The host task (`common_pid`) of the CPU's events: its vCPU thread.
    task: Option<u64>,
    /// Position of the next event in the CPU's stream.
    pos: u64,
    events: u64,
    lost: u64,
    last_ts: u64,
    /// Events read from the mappings after hyp-sim had gone (not read while it served).
    after_hangup: u64,
}

impl Stream {
    fn new(cpu: u32, producer: u32) -> Self {
        Self { cpu, producer, task: None, pos: 0, events: 0, lost: 0, last_ts: 0, after_hangup: 0 }
    }

    /// Checks an event's `common_pid`: every event of the CPU names one host task, the thread of
    /// hyp-sim that runs the CPU's vCPU (checked on the first event, while hyp-sim runs).
    fn check_task(&mut self, pid: u64, what: &str) {
        match self.task {
            Some(task) => assert_eq!(pid, task, "{what}: common_pid"),
            None => {
                let comm = format!("/proc/{}/task/{pid}/comm", self.producer);
                let name = std::fs::read_to_string(&comm).unwrap_or_else(|e| panic!("{what}: {comm}: {e}"));
                assert_eq!(name.trim_end(), format!("vcpu{}", self.cpu), "{what}: common_pid is the vCPU's thread");
                self.task = Some(pid);
            }
        }
    }

    fn take(&mut self, record: Record<'_>, window: (u64, u64)) {
        match record {
            Record::Lost(Lost::Count(n)) => {
                self.pos += n;
                self.lost += n;
            }
            Record::Lost(other) => panic!("cpu {}: hyp-sim reports exact losses, got {other:?}", self.cpu),
            Record::Event(e) => {
                let p = e.payload.to_vec();
                let (n, j) = (self.pos / 3, self.pos % 3);
                let what = format!("cpu {} event {} (exit {n})", self.cpu, self.pos);
                let common = |name| int(&p, named(COMMON_FIELDS, name));
                let field = |def: &EventDef, name| int(&p, named(def.fields, name));
                let common_type = common("common_type");
                self.check_task(common("common_pid"), &what);
                match j {
                    0 => assert_eq!(common_type, u64::from(HYP_ENTER.id), "{what}"),
                    2 => assert_eq!(common_type, u64::from(HYP_EXIT.id), "{what}"),
                    _ => match guest::exit(SEED, self.cpu, n) {
                        GuestExit::Hcall { id: fid, args } => {
                            assert_eq!(common_type, u64::from(HOST_HCALL.id), "{what}");
                            let got = ["id", "arg0", "arg1", "arg2", "arg3"].map(|name| field(&HOST_HCALL, name));
                            assert_eq!(got, [fid, args[0], args[1], args[2], args[3]], "{what}: host_hcall fields");
                        }
                        GuestExit::Smc { func_id, forwarded } => {
                            assert_eq!(common_type, u64::from(HOST_SMC.id), "{what}");
                            assert_eq!(
                                (field(&HOST_SMC, "func_id"), field(&HOST_SMC, "forwarded")),
                                (func_id, u64::from(forwarded)),
                                "{what}: host_smc fields"
                            );
                        }
                        GuestExit::MemAbort { esr, addr } => {
                            assert_eq!(common_type, u64::from(HOST_MEM_ABORT.id), "{what}");
                            assert_eq!(
                                (field(&HOST_MEM_ABORT, "esr"), field(&HOST_MEM_ABORT, "addr")),
                                (esr, addr),
                                "{what}: host_mem_abort fields"
                            );
                        }
                        GuestExit::Printk => {
                            assert_eq!(common_type, u64::from(HYP_PRINTK.id), "{what}");
                            let mut buf = [0u8; 64];
                            let want = guest::printk_message(self.cpu, n, &mut buf);
                            assert_eq!(string(&p, named(HYP_PRINTK.fields, "msg")), want, "{what}: hyp_printk message");
                        }
                        other => panic!("{what}: a simulated guest makes no KVM exit: {other:?}"),
                    },
                }
                // Timestamps: the hypervisor's clock, in the host's CLOCK_MONOTONIC nanoseconds.
                assert!(e.timestamp >= self.last_ts, "{what}: time went backwards");
                assert!(
                    e.timestamp >= window.0 && e.timestamp <= window.1,
                    "{what}: timestamp {} outside the run",
                    e.timestamp
                );
                self.last_ts = e.timestamp;
                self.pos += 1;
                self.events += 1;
            }
        }
    }
}

/// Runs hyp-sim with `args` on 2 CPUs, consumes both CPUs (starting `late` after connecting,
/// pausing `pause` between reads), and returns each CPU's stream with the number of exits hyp-sim
/// reports for it.
fn run(args: &[&str], late: Duration, pause: Duration) -> Vec<(Stream, u64)> {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("sock");
    let start_ns = monotonic_ns();
    let seed = SEED.to_string();
    let (child, conn) = start(&socket, &[&["--cpus", "2", "--seed", &seed], args].concat());
    let readers: Vec<_> = (0..2)
        .map(|cpu| {
            let source = conn.open_cpu(cpu).expect("open_cpu");
            let producer = child.id();
            std::thread::spawn(move || {
                let mut consumer = Consumer::new(source).expect("consumer");
                std::thread::sleep(late);
                let mut stream = Stream::new(cpu, producer);
                let window = (start_ns, u64::MAX);
                read_until_hangup(&mut consumer, pause, |r| stream.take(r, window));
                let live = stream.events;
                consumer.drain_remaining(|r| stream.take(r, window)).expect("drain after hangup");
                stream.after_hangup = stream.events - live;
                let end = monotonic_ns();
                assert!(stream.last_ts <= end, "cpu {cpu}: an event is stamped after the run ended");
                stream
            })
        })
        .collect();
    finish_run(child, readers).0
}

#[test]
fn drop_mode_with_a_fast_consumer_loses_nothing_and_every_field_is_right() {
    // 2 MiB per CPU hold the whole second (15,000 events), so that losing nothing does not
    // depend on how the consumer threads are scheduled.
    let args = ["--mode", "drop", "--rate", "5000", "--duration", "1", "--nr-subbufs", "512"];
    for (stream, exits) in run(&args, Duration::ZERO, Duration::ZERO) {
        assert!(exits > 1000, "the guests ran: {exits} exits");
        assert_eq!(stream.lost, 0, "cpu {}: a fast consumer loses nothing", stream.cpu);
        assert_eq!(stream.events, 3 * exits, "cpu {}: every event of every exit", stream.cpu);
    }
}

#[test]
fn overwrite_mode_with_a_slow_consumer_counts_every_loss_exactly() {
    let args = ["--mode", "overwrite", "--rate", "0", "--duration", "0.5", "--nr-subbufs", "8"];
    for (stream, exits) in run(&args, Duration::ZERO, Duration::from_millis(25)) {
        assert!(stream.lost > 0, "cpu {}: the slow consumer lost events", stream.cpu);
        // Each event was found at the position the reported losses gave it (checked in `take`);
        // together they account for every event of every exit.
        assert_eq!(stream.events + stream.lost, 3 * exits, "cpu {}: {stream:?}", stream.cpu);
    }
}

#[test]
fn waiting_for_the_consumer_loses_nothing_before_it_starts_reading() {
    // Four 4 KiB sub-buffers fill in about 30 ms at this rate, long before the consumer starts.
    let args = ["--mode", "drop", "--rate", "5000", "--duration", "0.5", "--nr-subbufs", "4", "--wait-for-consumer"];
    for (stream, exits) in run(&args, Duration::from_millis(300), Duration::ZERO) {
        assert!(exits > 500, "the guests ran once the consumer read: {exits} exits");
        assert_eq!(stream.lost, 0, "cpu {}: nothing was recorded before the consumer read", stream.cpu);
        assert_eq!(stream.events, 3 * exits, "cpu {}: every event of every exit", stream.cpu);
    }
}

/// Runs hyp-sim for a tenth of a second on one CPU with `args`; its exit status and stderr.
fn run_briefly(socket: &std::path::Path, args: &[&std::ffi::OsStr]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hyp-sim"))
        .arg("--socket")
        .arg(socket)
        .args(["--cpus", "1", "--duration", "0.1", "--linger", "0", "--hypercall-priority", "normal"])
        .args(args)
        .output()
        .expect("running hyp-sim");
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn a_directory_holding_a_dead_runs_buffers_is_refused_unless_forced() {
    let temporary = tempfile::tempdir().unwrap();
    let socket = temporary.path().join("sock");
    let dir = temporary.path().join("bufs");
    let dir_args = [std::ffi::OsStr::new("--dir"), dir.as_os_str()];
    let (ok, said) = run_briefly(&socket, &dir_args);
    assert!(ok, "the first run failed:\n{said}");
    let buffers = std::fs::read(dir.join("cpu0")).expect("the run's buffer file");

    let (ok, said) = run_briefly(&socket, &dir_args);
    assert!(!ok, "a second run took the dead run's directory over:\n{said}");
    assert!(said.contains("holds the buffers of a producer that has gone"), "{said}");
    assert!(said.contains(&format!("trace-reader recover {}", dir.display())) && said.contains("--force"), "{said}");
    assert!(std::fs::read(dir.join("cpu0")).expect("still there") == buffers, "the dead run's buffers changed");

    let (ok, said) = run_briefly(&socket, &[dir_args[0], dir_args[1], std::ffi::OsStr::new("--force")]);
    assert!(ok, "a run with --force failed:\n{said}");
    let cpus = ring_mmap::BufferDir::open(&dir).expect("the forced run's buffers").cpus;
    assert_eq!(cpus.len(), 1);
    let (ok, said) = run_briefly(&socket, &[std::ffi::OsStr::new("--force")]);
    assert!(!ok && said.contains("--dir"), "--force without --dir is refused:\n{said}");
}

#[test]
fn lingering_serves_until_the_consumers_have_read_everything() {
    // The guests stop with part of a page written on each CPU; hyp-sim lingers (up to 30 s)
    // until its consumers have read that too, so nothing is left for after it exits.
    let args = ["--mode", "drop", "--rate", "5000", "--duration", "0.5", "--nr-subbufs", "64", "--linger", "30"];
    for (stream, exits) in run(&args, Duration::ZERO, Duration::ZERO) {
        assert_eq!(stream.events, 3 * exits, "cpu {}: every event of every exit", stream.cpu);
        assert_eq!(stream.after_hangup, 0, "cpu {}: everything was read while hyp-sim served", stream.cpu);
    }
}
