//! One timeline: `record --kernel --socket` records the host's scheduler and the hypervisor's
//! exits into one file, on one clock, and `stream --kernel --socket` prints them live. Checked
//! from what they wrote alone: every hypervisor event lies inside a time the host thread it
//! names (its vCPU thread) was running, by the kernel's own `sched_switch` events; trace-cmd
//! reports both buffers of the file; the stream is in time order across both sources. Needs root and tracefs; otherwise
//! skips with a printed reason.

mod common;

use common::{Sim, ok, reader, trace_cmd};
use ring_core::Mode;
use std::collections::BTreeMap;
use std::time::Duration;

/// An event of the file, as `report --format json` prints it.
struct Event {
    hyp: bool,
    cpu: u64,
    ns: u64,
    name: String,
    pid: i64,
    fields: serde_json::Value,
}

/// When each host task ran: intervals `[from, to)` by pid, from the `sched_switch` events (a
/// task running when the recording began runs from 0; one running when it ended, to the end).
fn run_intervals(events: &[Event]) -> BTreeMap<i64, Vec<(u64, u64)>> {
    let mut running: BTreeMap<u64, (i64, u64)> = BTreeMap::new();
    let mut intervals: BTreeMap<i64, Vec<(u64, u64)>> = BTreeMap::new();
    for e in events.iter().filter(|e| !e.hyp && e.name == "sched_switch") {
        let prev = e.fields["prev_pid"].as_i64().expect("prev_pid");
        let next = e.fields["next_pid"].as_i64().expect("next_pid");
        let from = running.get(&e.cpu).map_or(0, |&(_, since)| since);
        intervals.entry(prev).or_default().push((from, e.ns));
        running.insert(e.cpu, (next, e.ns));
    }
    for (pid, since) in running.into_values() {
        intervals.entry(pid).or_default().push((since, u64::MAX));
    }
    intervals
}

/// Runs `trace-reader COMMAND ARGS` (`command_and_args`) on the kernel's `sched_switch` and
/// `sched_wakeup` beside `sim`'s hypervisor for two seconds, with the default options (the
/// kernel's clock, the events' ids and buffers are trace-reader's business), then stops the
/// guests; returns the stopped `sim` (its directory holds what was written) and the run.
fn beside_the_scheduler(mut sim: Sim, command_and_args: &[&str]) -> (Sim, std::process::Output) {
    let socket = sim.socket.to_str().unwrap().to_string();
    let (command, args) = command_and_args.split_first().expect("a command");
    let sources = ["--kernel", "-e", "sched:sched_switch", "-e", "sched:sched_wakeup", "--socket", &socket];
    let out = reader(&[&[*command], &sources[..], &["--duration", "2"], args].concat());
    sim.finish(Duration::ZERO);
    (sim, out)
}

/// Instances trace-reader made (`trace-reader-<pid>`) whose process has gone: it should have
/// removed them.
fn leaked_instances() -> Vec<String> {
    let tracefs = std::path::Path::new(ring_mmap::kernel::TRACEFS);
    let Ok(instances) = std::fs::read_dir(tracefs.join("instances")) else { return Vec::new() };
    instances
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| {
            name.strip_prefix("trace-reader-")
                .and_then(|pid| pid.parse::<u32>().ok())
                .is_some_and(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists())
        })
        .collect()
}

/// The events of `out`, `report` or `stream` output in JSON.
fn events_of(out: &std::process::Output) -> Vec<Event> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).expect("a JSON line"))
        .filter(|json| json.get("event").is_some())
        .map(|json| Event {
            hyp: json["buffer"] == "hyp",
            cpu: json["cpu"].as_u64().unwrap(),
            ns: json["ts_ns"].as_u64().unwrap(),
            name: json["event"].as_str().unwrap().to_string(),
            pid: json["pid"].as_i64().unwrap(),
            fields: json["fields"].clone(),
        })
        .collect()
}

/// Checks that every hypervisor event of `events` within the time the kernel's cover lies
/// inside a run of the host thread it names; returns how many were placed.
fn check_placement(events: &[Event]) -> usize {
    // The time every CPU's kernel events cover: each CPU's are recorded from its first to its
    // last, and a task running in that time was switched to on some CPU inside it.
    let mut per_cpu: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
    for e in events.iter().filter(|e| !e.hyp) {
        let span = per_cpu.entry(e.cpu).or_insert((e.ns, e.ns));
        *span = (span.0.min(e.ns), span.1.max(e.ns));
    }
    let first = per_cpu.values().map(|span| span.0).max().expect("kernel events");
    let covered = first..=per_cpu.values().map(|span| span.1).min().unwrap_or(first);
    let intervals = run_intervals(events);
    // The hypervisor's buffer holds events from before the kernel's recording began, and the
    // two end a little apart: events outside the covered time are left out.
    let hyp: Vec<&Event> = events.iter().filter(|e| e.hyp && covered.contains(&e.ns)).collect();
    let outside: Vec<&&Event> = hyp
        .iter()
        .filter(|e| {
            !intervals.get(&e.pid).is_some_and(|runs| runs.iter().any(|&(from, to)| (from..to).contains(&e.ns)))
        })
        .collect();
    assert!(hyp.len() > 2000, "thousands of hypervisor events to place: {}", hyp.len());
    assert!(hyp.iter().all(|e| e.pid > 0), "each names its host thread, none the idle task");
    if let Some(e) = outside.first() {
        panic!(
            "{} of {} hypervisor events lie outside every run of their host thread; the first: {} at {} ns, \
             pid {}, whose runs within 2 ms are {:?}",
            outside.len(),
            hyp.len(),
            e.name,
            e.ns,
            e.pid,
            intervals
                .get(&e.pid)
                .map(|runs| runs.iter().filter(|r| r.0.abs_diff(e.ns) < 2_000_000).collect::<Vec<_>>())
        );
    }
    hyp.len()
}

#[test]
fn every_hypervisor_event_lies_inside_a_run_of_its_host_thread() {
    if test_capabilities::tracefs("the one-timeline test").is_none() {
        return;
    }
    let sim = Sim::start(2, Mode::Drop, 2000, 256);
    let file = sim.dir.path().join("timeline.dat");
    let (_sim, recorded) = beside_the_scheduler(sim, &["record", "-o", file.to_str().unwrap()]);
    ok(&recorded);
    assert_eq!(leaked_instances(), Vec::<String>::new(), "record removes its kernel instance");
    let report = reader(&["report", "--format", "json", file.to_str().unwrap()]);
    ok(&report);
    let events = events_of(&report);
    let placed = check_placement(&events);
    let Some(tc) = trace_cmd() else { return };
    let out = std::process::Command::new(tc).arg("report").arg(&file).output().unwrap();
    assert!(out.status.success(), "trace-cmd report: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let hyp_lines = text.lines().filter(|l| l.starts_with("hyp:")).count();
    let switches = text.lines().filter(|l| !l.starts_with("hyp:") && l.contains("sched_switch:")).count();
    assert_eq!(hyp_lines, events.iter().filter(|e| e.hyp).count(), "trace-cmd reports every hypervisor event");
    assert!(switches > 0, "and the kernel's");
    println!(
        "one timeline: {} hypervisor events inside runs of their host threads, {} kernel events; trace-cmd \
         reports both buffers",
        placed,
        events.len() - events.iter().filter(|e| e.hyp).count()
    );
}

#[test]
fn stream_merges_the_kernel_and_the_hypervisor_live_on_one_clock() {
    if test_capabilities::tracefs("the live one-timeline test").is_none() {
        return;
    }
    let sim = Sim::start(2, Mode::Drop, 2000, 256);
    let (_sim, streamed) = beside_the_scheduler(sim, &["stream", "--format", "json"]);
    ok(&streamed);
    assert_eq!(leaked_instances(), Vec::<String>::new(), "stream removes its kernel instance");
    let events = events_of(&streamed);
    let placed = check_placement(&events);
    // Live, the order across sources is exact up to the moment an event stamped before a pass
    // over its CPUs is committed after its CPU was read: a few events at most, never a page.
    let late: Vec<(u64, u64)> =
        events.windows(2).filter(|pair| pair[1].ns < pair[0].ns).map(|pair| (pair[0].ns, pair[1].ns)).collect();
    let worst = late.iter().map(|(before, after)| before - after).max().unwrap_or(0);
    assert!(
        late.len() * 1000 <= events.len() && worst < 1_000_000,
        "{} of {} events printed after a later one (by up to {worst} ns): {:?}",
        late.len(),
        events.len(),
        &late[..late.len().min(5)]
    );
    let hyp = events.iter().filter(|e| e.hyp).count() as u64;
    assert!(hyp > 0 && hyp < events.len() as u64, "both sources streamed");
    let stderr = String::from_utf8_lossy(&streamed.stderr);
    assert!(stderr.contains("buffer hyp:") && stderr.contains("the kernel"), "a table per source: {stderr}");
    println!(
        "live one timeline: {} events ({hyp} hypervisor events, {placed} placed inside runs of their host \
         threads), {} printed after a later one (by up to {worst} ns)",
        events.len(),
        late.len()
    );
}
