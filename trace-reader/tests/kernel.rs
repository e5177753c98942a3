//! `record` on the Linux kernel's own buffers (a tracefs instance fed through
//! `trace_marker_raw`, read through the kernel's mmap interface), checked against
//! `trace-cmd report`. Needs root and tracefs; otherwise skips with a printed reason.

mod common;

use common::{lines, ok, parse_ours, reader, trace_cmd, trace_cmd_report, tracefs_instance};
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

const RECORDS: u32 = 2000;

/// Held by each test: one kernel recording at a time, so that none records another's
/// trace-reader processes.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner)
}

#[test]
fn record_of_a_kernel_instance_matches_trace_cmd() {
    let _kernel = one_at_a_time();
    let name = format!("trace-reader-test-{}", std::process::id());
    let Some(instance) = tracefs_instance(&name, "the kernel record test") else { return };
    let mut marker = std::fs::OpenOptions::new().write(true).open(instance.path().join("trace_marker_raw")).unwrap();
    for i in 1..=RECORDS {
        // One write per record: a 4-byte id, then the payload.
        let mut rec = i.to_ne_bytes().to_vec();
        rec.extend_from_slice(format!("rec{i:05}").as_bytes());
        marker.write_all(&rec).unwrap();
    }
    // An open file keeps the instance from being removed.
    drop(marker);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("kernel.dat");
    let out = reader(&["record", "--kernel", "--instance", &name, "-o", file.to_str().unwrap(), "--duration", "0.3"]);
    ok(&out);
    let report = reader(&["report", "-t", file.to_str().unwrap()]);
    ok(&report);
    let ours = parse_ours(&lines(&report));
    assert_eq!(ours.len() as u32, RECORDS, "every marker recorded");
    let ids: Vec<u64> = ours.iter().map(|e| marker_id(&e.3)).collect();
    assert_eq!(ids, (1..=u64::from(RECORDS)).collect::<Vec<_>>(), "in order (one writer thread)");
    assert!(ours.iter().all(|e| e.2 == "raw_data"));
    // As libtraceevent's plugin shows raw_data: the id, then the data's bytes.
    assert_eq!(ours[0].3, "# 1 72 65 63 30 30 30 30 31", "rec00001");
    // The kernel's symbols are in the file, for trace-cmd to name addresses with.
    let symbols = std::fs::read_to_string("/proc/kallsyms").expect("reading /proc/kallsyms");
    let first = symbols.lines().next().expect("a kernel symbol");
    let bytes = std::fs::read(&file).unwrap();
    assert!(bytes.windows(first.len()).any(|w| w == first.as_bytes()), "kallsyms recorded");
    let Some(tc) = trace_cmd() else { return };
    let theirs = trace_cmd_report(tc, &file);
    assert_eq!(theirs, ours, "cpu, timestamp, name and text of every event as trace-cmd reports them");
    println!("kernel record: {RECORDS} trace_marker_raw events, trace-cmd report agrees");
}

/// The id of a `raw_data` event's text (`# 1f 72 65 ...`).
fn marker_id(text: &str) -> u64 {
    let id = text.strip_prefix("# ").and_then(|t| t.split_whitespace().next()).expect("an id");
    u64::from_str_radix(id, 16).unwrap()
}

/// A task that began while `record --kernel` ran is named in the file: the task names are read
/// when the recording ends, as trace-cmd reads them.
#[test]
fn a_task_started_during_the_recording_is_named() {
    let _kernel = one_at_a_time();
    let name = format!("trace-reader-names-{}", std::process::id());
    let Some(instance) = tracefs_instance(&name, "the task-name test") else { return };
    let Some(tc) = trace_cmd() else { return };
    // The kernel saves task names while an event that records them is enabled.
    std::fs::write(instance.path().join("events/sched/sched_switch/enable"), "1").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("names.dat");
    let record = Command::new(env!("CARGO_BIN_EXE_trace-reader"))
        .args(["record", "--kernel", "--instance", &name, "--duration", "2", "-o", file.to_str().unwrap()])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    // A shell under a name of its own writes one marker: a task that did not exist when the
    // recording began.
    let task = dir.path().join("hyptrace-marker");
    std::os::unix::fs::symlink("/bin/sh", &task).unwrap();
    let marker = instance.path().join("trace_marker_raw");
    let child = Command::new(&task).arg("-c").arg(format!("printf 'ABCDmark' > {}", marker.display())).status();
    assert!(child.unwrap().success(), "the marker was written");
    let recorded = record.wait_with_output().unwrap();
    ok(&recorded);
    let out = Command::new(tc).args(["report", "-R", "-t"]).arg(&file).output().unwrap();
    assert!(out.status.success(), "trace-cmd report failed: {}", String::from_utf8_lossy(&out.stderr));
    let report = String::from_utf8_lossy(&out.stdout);
    let marks: Vec<&str> = report.lines().filter(|l| l.contains("raw_data:")).collect();
    assert_eq!(marks.len(), 1, "one marker recorded:\n{report}");
    assert!(marks[0].trim_start().starts_with("hyptrace-marker-"), "named by its task: {}", marks[0]);
    println!("kernel record: a task begun during the recording is named: {}", marks[0].trim());
}

/// `record --kernel -e ...` records the chosen events in an instance of its own, removed at the
/// end, and leaves its own tasks out: with --trace-self the system calls its threads make are in
/// the file, without it none.
#[test]
fn record_sets_up_an_instance_of_its_own_and_leaves_itself_out() {
    let _kernel = one_at_a_time();
    let Some(tracefs) = test_capabilities::tracefs("the kernel setup test") else { return };
    let Some(tc) = trace_cmd() else { return };
    let dir = tempfile::tempdir().unwrap();
    // How many system calls were recorded, and how many of them trace-reader's own, per run.
    let own_events = |extra: &[&str]| {
        let file = dir.path().join("setup.dat");
        let args = [&["record", "--kernel", "-e", "raw_syscalls:sys_ent*"][..], extra];
        let args = [&args.concat()[..], &["--duration", "0.5", "-o", file.to_str().unwrap()]].concat();
        let mut child = Command::new(env!("CARGO_BIN_EXE_trace-reader"))
            .args(&args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Its own instance is named after it, and its main thread (whose id is the process's)
        // after it too: other trace-readers this machine runs meanwhile are not its business.
        let pid = child.id();
        // System calls of a task other than trace-reader, made while it records: a quiet machine
        // may make none of its own in half a second.
        while child.try_wait().unwrap().is_none() {
            std::thread::sleep(Duration::from_millis(1));
        }
        let recorded = child.wait_with_output().unwrap();
        ok(&recorded);
        let stderr = String::from_utf8_lossy(&recorded.stderr).to_string();
        let leftover = usize::from(tracefs.join("instances").join(format!("trace-reader-{pid}")).exists());
        let out = Command::new(tc).args(["report", "-R"]).arg(&file).output().unwrap();
        assert!(out.status.success(), "trace-cmd report failed: {}", String::from_utf8_lossy(&out.stderr));
        let report = String::from_utf8_lossy(&out.stdout).to_string();
        let events = report.lines().filter(|l| l.contains("sys_enter:")).count();
        let own = report.lines().filter(|l| l.trim_start().starts_with(&format!("trace-reader-{pid} "))).count();
        (events, own, leftover, stderr)
    };
    let (events, own, leftover, stderr) = own_events(&[]);
    assert!(events > 0, "the chosen events were recorded: {stderr}");
    assert_eq!(own, 0, "none of trace-reader's own system calls");
    assert_eq!(leftover, 0, "trace-reader's instance is removed at the end");
    let (_, own_with_self, _, _) = own_events(&["--trace-self"]);
    assert!(own_with_self > 0, "--trace-self records trace-reader's own system calls");
    println!("kernel setup: {events} system calls; trace-reader's own: 0, {own_with_self} with --trace-self");
}

/// What `record --kernel` says when what it is asked cannot be set up.
#[test]
fn kernel_choices_that_cannot_work_are_refused_with_what_to_do() {
    let _kernel = one_at_a_time();
    if test_capabilities::tracefs("the kernel setup errors test").is_none() {
        return;
    }
    let refused = |args: &[&str]| {
        let out = reader(&[&["record", "--kernel", "--duration", "0"][..], args].concat());
        assert!(!out.status.success(), "refused: {args:?}");
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    assert!(refused(&[]).contains("add -e SYSTEM[:EVENT]"));
    assert!(refused(&["-e", "no_such_system:*"]).contains("no kernel event matches it"));
    assert!(refused(&["-e", "sched", "-C", "no-such-clock"]).contains("this kernel's trace clocks are"));
    assert!(refused(&["-e", "sched:sched_switch", "-f", "no_such_field == 1"]).contains("the kernel refused it"));
}
