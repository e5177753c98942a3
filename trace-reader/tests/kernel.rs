//! `record` on the Linux kernel's own buffers (a tracefs instance fed through
//! `trace_marker_raw`, read through the kernel's mmap interface), checked against
//! `trace-cmd report`. Needs root and tracefs; otherwise skips with a printed reason.

mod common;

use common::{lines, ok, parse_ours, reader, trace_cmd, trace_cmd_report};
use ring_mmap::TracefsInstance;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

const RECORDS: u32 = 2000;

#[test]
fn record_of_a_kernel_instance_matches_trace_cmd() {
    let tracefs = match ring_mmap::kernel::mount_tracefs() {
        Ok(t) => t,
        Err(e) => {
            println!("SKIPPED: tracefs is not available here ({e}); the kernel record test did not run");
            return;
        }
    };
    let name = format!("trace-reader-test-{}", std::process::id());
    let instance = match TracefsInstance::create(&tracefs, &name) {
        Ok(i) => i,
        Err(e) => {
            println!("SKIPPED: cannot create a tracefs instance ({e}); the kernel record test did not run");
            return;
        }
    };
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
    let report = reader(&["report", file.to_str().unwrap()]);
    ok(&report);
    let ours = parse_ours(&lines(&report));
    assert_eq!(ours.len() as u32, RECORDS, "every marker recorded");
    let ids: Vec<u64> = ours.iter().map(|e| field_hex(&e.3, "id")).collect();
    assert_eq!(ids, (1..=u64::from(RECORDS)).collect::<Vec<_>>(), "in order (one writer thread)");
    assert!(ours.iter().all(|e| e.2 == "raw_data"));
    assert_eq!(ours[0].3, "id=0x1 buf=rec00001");
    // The kernel's symbols are in the file, for trace-cmd to name addresses with.
    let symbols = std::fs::read_to_string("/proc/kallsyms").expect("reading /proc/kallsyms");
    let first = symbols.lines().next().expect("a kernel symbol");
    let bytes = std::fs::read(&file).unwrap();
    assert!(bytes.windows(first.len()).any(|w| w == first.as_bytes()), "kallsyms recorded");
    let Some(tc) = trace_cmd() else { return };
    let theirs = trace_cmd_report(tc, &file);
    assert_eq!(theirs.len(), ours.len(), "trace-cmd sees every event");
    for (a, b) in ours.iter().zip(&theirs) {
        assert_eq!((a.0, a.1, &a.2), (b.0, b.1, &b.2), "cpu, timestamp, name");
        assert_eq!(field_hex(&a.3, "id"), field_hex(&b.3, "id"));
    }
    println!("kernel record: {RECORDS} trace_marker_raw events, trace-cmd report agrees");
}

/// The value of `name=` in a fields text, read as hexadecimal (`0x1f` or `001f`).
fn field_hex(fields: &str, name: &str) -> u64 {
    let v = fields.split_whitespace().find_map(|kv| kv.strip_prefix(&format!("{name}="))).expect("the field");
    u64::from_str_radix(v.trim_start_matches("0x"), 16).unwrap()
}

/// A task that began while `record --kernel` ran is named in the file: the task names are read
/// when the recording ends, as trace-cmd reads them.
#[test]
fn a_task_started_during_the_recording_is_named() {
    let tracefs = match ring_mmap::kernel::mount_tracefs() {
        Ok(t) => t,
        Err(e) => {
            println!("SKIPPED: tracefs is not available here ({e}); the task-name test did not run");
            return;
        }
    };
    let Some(tc) = trace_cmd() else { return };
    let name = format!("trace-reader-names-{}", std::process::id());
    let instance = match TracefsInstance::create(&tracefs, &name) {
        Ok(i) => i,
        Err(e) => {
            println!("SKIPPED: cannot create a tracefs instance ({e}); the task-name test did not run");
            return;
        }
    };
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
