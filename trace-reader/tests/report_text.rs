//! `trace-reader report` prints a kernel recording as `trace-cmd report` does: a recording of
//! scheduler, interrupt, system call and KVM events made by `record --kernel -e ...` while a
//! workload runs (files opened, a KVM guest run), every event line compared with trace-cmd's;
//! and the task names of its events compared with those of `trace-cmd extract` of an identical
//! instance. Needs root and tracefs; otherwise skips with a printed reason.

mod common;

use common::{ns, ok, reader, split_buffer, trace_cmd, tracefs_instance};
use hyp_kvm::{Exit, ExitPlan, Step, Vm};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// Held by each test: one kernel recording at a time, so that none records another's work.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The events recorded: `-e` arguments, each of which must be among the kernel's events.
const EVENTS: [&str; 6] = [
    "sched:sched_switch",
    "sched:sched_wakeup",
    "irq:*",
    "syscalls:sys_enter_openat",
    "syscalls:sys_exit_openat",
    "kvm:*",
];

/// Whether the kernel has tracefs with every event of [`EVENTS`]; if not, `test` is skipped
/// ([`test_capabilities`]).
fn kernel_events_or_skip(test: &str) -> Option<PathBuf> {
    let tracefs = test_capabilities::tracefs(test)?;
    let available = std::fs::read_to_string(tracefs.join("available_events")).unwrap_or_default();
    for event in EVENTS {
        let (system, name) = event.split_once(':').unwrap();
        let found = available
            .lines()
            .any(|l| l.split_once(':').is_some_and(|(s, n)| s == system && (name == "*" || n == name)));
        if !found {
            test_capabilities::skip(format_args!("this kernel has no {event} events"), test);
            return None;
        }
    }
    Some(tracefs)
}

/// Starts `trace-reader record --kernel` of [`EVENTS`] (its own tasks too, so that an instance
/// set up by hand records the same events) into `file`, for `seconds`.
fn start_recording(file: &Path, seconds: &str) -> Child {
    let mut args = vec!["record", "--kernel", "--trace-self", "--duration", seconds, "-o", file.to_str().unwrap()];
    for event in EVENTS {
        args.extend(["-e", event]);
    }
    Command::new(env!("CARGO_BIN_EXE_trace-reader")).args(&args).stderr(Stdio::piped()).spawn().unwrap()
}

/// Makes events of every kind recorded: opens files (system calls, and the scheduling and
/// interrupts that come with them) and runs a KVM guest through a few hundred exits.
fn workload() {
    let until = Instant::now() + Duration::from_millis(300);
    while Instant::now() < until {
        for path in ["/proc/self/stat", "/proc/uptime", "/etc/hostname"] {
            drop(std::fs::read(path));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    if !test_capabilities::kvm("KVM exits in the recording") {
        return;
    }
    let plan = ExitPlan::new(200, 1, &[Step::Out, Step::In, Step::MmioWrite, Step::MmioRead, Step::Halt]).unwrap();
    let (_vm, mut vcpus) = Vm::new(std::slice::from_ref(&plan)).expect("creating a KVM guest");
    let vcpu = &mut vcpus[0];
    loop {
        match vcpu.run(|_| 0).expect("running the KVM guest") {
            Exit::Done { .. } => break,
            _ => continue,
        }
    }
}

/// Lines of `trace-cmd ARGS`' standard output.
fn trace_cmd_lines(tc: &str, args: &[&str]) -> Vec<String> {
    let out = Command::new(tc).args(args).output().unwrap();
    assert!(out.status.success(), "trace-cmd {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
}

/// The event's name in a report line (`comm-pid [cpu] time: name: text`).
fn event_name(line: &str) -> Option<&str> {
    let (_, rest) = line.split_once("]")?;
    let (_, rest) = rest.split_once(": ")?;
    Some(rest.split_once(':')?.0.trim())
}

#[test]
fn every_kernel_event_prints_as_trace_cmd_report_prints_it() {
    let _kernel = one_at_a_time();
    let test = "the report text test";
    if kernel_events_or_skip(test).is_none() {
        return;
    }
    let Some(tc) = trace_cmd() else { return };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("kernel.dat");
    let recording = start_recording(&file, "1.5");
    std::thread::sleep(Duration::from_millis(400));
    workload();
    ok(&recording.wait_with_output().unwrap());
    let path = file.to_str().unwrap();
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    for (ours, theirs) in
        [(vec!["report", path], vec!["report", path]), (vec!["report", "-t", path], vec!["report", "-t", path])]
    {
        let out = reader(&ours);
        ok(&out);
        let ours: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect();
        // trace-cmd starts with the file's CPU count, a line trace-reader does not print.
        let theirs: Vec<String> =
            trace_cmd_lines(tc, &theirs).into_iter().filter(|l| !l.starts_with("cpus=")).collect();
        let differences: Vec<_> = ours.iter().zip(&theirs).filter(|(a, b)| a != b).collect();
        assert!(differences.is_empty(), "{} lines differ, the first: {:#?}", differences.len(), &differences[..1]);
        assert_eq!(ours.len(), theirs.len(), "as many lines as trace-cmd");
        kinds.clear();
        for line in &ours {
            let system = match event_name(line).expect("an event line") {
                "sched_switch" | "sched_wakeup" => "sched",
                n if n.starts_with("irq") || n.starts_with("softirq") => "irq",
                n if n.starts_with("sys_") => "syscalls",
                n if n.starts_with("kvm") => "kvm",
                _ => "other",
            };
            *kinds.entry(system.to_string()).or_default() += 1;
        }
    }
    for system in ["sched", "irq", "syscalls"] {
        assert!(kinds.get(system).is_some_and(|&n| n > 0), "{system} events recorded: {kinds:?}");
    }
    if Path::new("/dev/kvm").exists() {
        assert!(kinds.get("kvm").is_some_and(|&n| n > 0), "kvm events recorded: {kinds:?}");
    }
    let total: usize = kinds.values().sum();
    println!("report text: {total} kernel events {kinds:?}, 0 lines differ from trace-cmd report (-t and not)");
}

/// One event of a report: its CPU, task, name and text (timestamps differ between instances).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Event {
    cpu: u32,
    /// Nanoseconds (`-t`).
    ns: u64,
    comm: String,
    pid: u32,
    name: String,
    text: String,
}

/// Parses a report line of `trace-cmd report -t` or `trace-reader report -t`.
fn parse_event(line: &str) -> Option<Event> {
    let (task, rest) = line.split_once(" [")?;
    let (comm, pid) = task.trim_start().rsplit_once('-')?;
    let (cpu, rest) = rest.split_once(']')?;
    let (ts, rest) = rest.trim_start().split_once(": ")?;
    let (name, text) = rest.split_once(':')?;
    Some(Event {
        cpu: cpu.parse().ok()?,
        ns: ns(ts),
        comm: comm.to_string(),
        pid: pid.trim().parse().ok()?,
        name: name.trim().to_string(),
        text: text.trim().to_string(),
    })
}

#[test]
fn task_names_are_those_trace_cmd_extract_gives() {
    let _kernel = one_at_a_time();
    let test = "the task names test";
    if kernel_events_or_skip(test).is_none() {
        return;
    }
    let Some(tc) = trace_cmd() else { return };
    let name = format!("trace-reader-test-names-{}", std::process::id());
    let Some(twin) = tracefs_instance(&name, test) else { return };
    // The twin instance records the same events from before the recording starts, into buffers
    // large enough to keep them all on a busy machine (it is not read until the end).
    std::fs::write(twin.path().join("buffer_size_kb"), "32768").unwrap();
    for event in EVENTS {
        let (system, event) = event.split_once(':').unwrap();
        let path = match event {
            "*" => twin.path().join("events").join(system).join("enable"),
            _ => twin.path().join("events").join(system).join(event).join("enable"),
        };
        std::fs::write(path, "1").unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ours.dat");
    let recording = start_recording(&file, "1.5");
    std::thread::sleep(Duration::from_millis(400));
    let recorder = recording.id();
    let threads_of_recorder = || -> Vec<u32> {
        let threads = trace_reader::symbols::producer_thread_names(recorder);
        threads.into_iter().filter_map(|(tid, _name)| u32::try_from(tid).ok()).collect()
    };
    let mut recorder_threads = threads_of_recorder();
    workload();
    recorder_threads.extend(threads_of_recorder());
    ok(&recording.wait_with_output().unwrap());
    std::fs::write(twin.path().join("tracing_on"), "0").unwrap();
    let extracted = dir.path().join("theirs.dat");
    trace_cmd_lines(tc, &["extract", "-k", "-B", &name, "-o", extracted.to_str().unwrap()]);
    let theirs: Vec<Event> = trace_cmd_lines(tc, &["report", "-t", extracted.to_str().unwrap()])
        .iter()
        .filter_map(|l| match split_buffer(l, &[&name]) {
            (Some(_), rest) => parse_event(rest),
            (None, _) => None,
        })
        .collect();
    let out = reader(&["report", "-t", file.to_str().unwrap()]);
    ok(&out);
    let ours: Vec<Event> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| parse_event(l).expect("an event line")).collect();
    // Each of our events is the same tracepoint hit as an event of the twin on the same CPU: the
    // one of the same name and text whose time is nearest, within what two buffers reading the
    // clock one after the other can differ by (up to a couple of hundred microseconds on a busy
    // machine). Ours from before the twin's oldest kept event on a CPU are not compared.
    const APART_NS: u64 = 200_000;
    const TAIL_NS: u64 = 100_000_000;
    let last_ns = ours.iter().map(|e| e.ns).max().unwrap_or(0);
    let (mut matched, mut comparable, mut mismatches) = (0usize, 0usize, Vec::new());
    let cpus: std::collections::BTreeSet<u32> = ours.iter().map(|e| e.cpu).collect();
    for cpu in cpus {
        let twin_events: Vec<&Event> = theirs.iter().filter(|e| e.cpu == cpu).collect();
        let kept_from = twin_events.first().map_or(u64::MAX, |e| e.ns);
        let mut used = vec![false; twin_events.len()];
        for event in ours.iter().filter(|e| e.cpu == cpu && e.ns >= kept_from) {
            comparable += 1;
            let from = twin_events.partition_point(|e| e.ns + APART_NS < event.ns);
            let nearest = twin_events[from..]
                .iter()
                .enumerate()
                .take_while(|(_, e)| e.ns <= event.ns + APART_NS)
                .filter(|&(i, e)| !used[from + i] && e.name == event.name && e.text == event.text)
                .min_by_key(|(_, e)| e.ns.abs_diff(event.ns));
            let Some((i, twin)) = nearest else { continue };
            used[from + i] = true;
            matched += 1;
            // A task first seen in the recording's last moments may have no saved name yet when
            // the recording reads them at its end (trace-cmd record has the same window), while
            // the twin is read later: unnamed there is not a wrong name.
            let named_too_late = event.comm == "<...>" && event.ns + TAIL_NS >= last_ns;
            // A thread starts with its creator's name and then names itself; the kernel saves
            // the new name when the thread next switches, which for the recorder's own threads
            // (--trace-self) that sleep until it ends may be only at its exit, after it read the
            // names: saved under "trace-reader" there is not a wrong name either.
            let renamed_after = event.comm == "trace-reader" && recorder_threads.contains(&event.pid);
            if twin.comm != event.comm && !named_too_late && !renamed_after {
                mismatches.push((event.clone(), twin.comm.clone()));
            }
        }
    }
    let named = ours.iter().filter(|e| e.comm != "<...>").count();
    assert!(named * 2 > ours.len(), "most events' tasks are named: {named} of {}", ours.len());
    assert!(comparable * 2 > ours.len(), "the twin kept most of the recording's time: {comparable} of {}", ours.len());
    assert!(matched * 10 >= comparable * 9, "{matched} of {comparable} events found in the twin instance");
    assert!(mismatches.is_empty(), "{} task names differ, the first: {:?}", mismatches.len(), mismatches.first());
    println!("report text: task names of {matched} kernel events as trace-cmd extract gives them, 0 mismatches");
}
