//! The `trace-reader` binary against a running hyp-sim producer: every subcommand, and the
//! trace.dat it records checked against `trace-cmd report`.

mod common;

use common::{Sim, lines, ok, parse_ours, reader, trace_cmd, trace_cmd_report};
use ring_core::Mode;
use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Events per CPU and per name.
fn census(events: &[common::EventLine]) -> BTreeMap<(u32, String), u64> {
    let mut m = BTreeMap::new();
    for (cpu, _, name, _) in events {
        *m.entry((*cpu, name.clone())).or_insert(0) += 1;
    }
    m
}

#[test]
fn stream_prints_every_event_in_time_order_then_the_table() {
    // A megabyte per CPU holds the whole run, so nothing is lost even if the reader is kept
    // from its CPU (the other tests run flat-out producers meanwhile).
    let mut sim = Sim::start(2, Mode::Drop, 2000, 256);
    let reader = {
        let socket = sim.socket.clone();
        std::thread::spawn(move || common::reader(&["stream", "-t", "--socket", socket.to_str().unwrap()]))
    };
    std::thread::sleep(Duration::from_millis(800));
    let exits = sim.finish(Duration::from_secs(2));
    let out = reader.join().unwrap();
    ok(&out);
    let events = parse_ours(&lines(&out));
    assert!(!lines(&out).iter().any(|l| l.contains("EVENTS DROPPED]")), "drop mode with a live reader loses nothing");
    for (cpu, n) in exits.iter().enumerate() {
        let mine: Vec<_> = events.iter().filter(|e| e.0 == cpu as u32).collect();
        assert_eq!(mine.len() as u64, 3 * n, "cpu {cpu}: every event of every exit");
        assert_eq!(mine[0].2, "hyp_enter");
        assert!(mine.windows(2).all(|w| w[0].1 <= w[1].1), "cpu {cpu}: in order");
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let header = stderr.lines().find(|l| l.trim_start().starts_with("cpu")).expect("the stats table");
    assert_eq!(
        header.split_whitespace().collect::<Vec<_>>(),
        ["cpu", "entries", "overrun", "dropped", "lost", "consumed", "events/s"]
    );
    assert!(stderr.contains("the producer exited"), "{stderr}");
}

#[test]
fn stream_json_and_cpu_selection() {
    let mut sim = Sim::start(2, Mode::Overwrite, 1000, 16);
    std::thread::sleep(Duration::from_millis(200));
    let out = sim.reader(&["stream", "--format", "json", "--cpu", "1", "--duration", "0.5"]);
    sim.finish(Duration::ZERO);
    ok(&out);
    let objs: Vec<serde_json::Value> =
        lines(&out).iter().map(|l| serde_json::from_str(l).expect("a JSON line")).collect();
    assert!(objs.len() > 100, "{} events", objs.len());
    for o in &objs {
        assert_eq!(o["cpu"], 1, "only cpu 1: {o}");
        assert!(o["ts_ns"].as_u64().is_some() && o["event"].is_string() && o["fields"].is_object(), "{o}");
    }
    assert!(
        objs.iter().any(|o| o["event"] == "host_hcall" || o["event"] == "host_smc" || o["event"] == "host_mem_abort")
    );
    // Every event names the host thread that ran vCPU 1, by its name in the running hyp-sim.
    let tid = objs[0]["pid"].as_i64().expect("a pid");
    assert!(objs.iter().all(|o| o["pid"] == tid && o["comm"] == "vcpu1"), "{}", objs[0]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("stopped after --duration"));
}

#[test]
fn show_reads_without_consuming_and_stats_count() {
    let mut sim = Sim::start(2, Mode::Overwrite, 1000, 8);
    std::thread::sleep(Duration::from_millis(300));
    let shown = sim.reader(&["show", "-t"]);
    ok(&shown);
    let events = parse_ours(&lines(&shown));
    assert!(events.len() > 50, "{} events shown", events.len());
    assert!(events.windows(2).all(|w| w[0].1 <= w[1].1), "merged in time order");
    let stderr = String::from_utf8_lossy(&shown.stderr);
    assert!(stderr.contains("cpu 0: ") && stderr.contains("cpu 1: "), "{stderr}");
    // Nothing was consumed: a second show starts from the same oldest event or later.
    let again = parse_ours(&lines(&sim.reader(&["show", "-t"])));
    assert!(again[0].1 >= events[0].1);

    let text = sim.reader(&["stats"]);
    ok(&text);
    let table = lines(&text);
    assert_eq!(table[0].split_whitespace().next(), Some("cpu"));
    assert_eq!(table.len(), 3, "a header and a row per CPU");
    let json = sim.reader(&["stats", "--format", "json"]);
    ok(&json);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 2);
    assert!(v[0]["entries"].as_u64().unwrap() > 0);
    assert_eq!(v[0]["read"], 0, "show and stats consume nothing");
    sim.finish(Duration::ZERO);
}

#[test]
fn record_writes_a_file_trace_cmd_reports_identically() {
    record_and_compare_with_trace_cmd(&[]);
}

#[test]
fn record_with_direct_io_and_realtime_readers_writes_the_same() {
    record_and_compare_with_trace_cmd(&["--direct-io", "--realtime"]);
}

/// Records hyp-sim with `record` given `options`, and checks the file holds every event, as
/// `trace-cmd report` reads it too.
fn record_and_compare_with_trace_cmd(options: &'static [&'static str]) {
    // Three CPUs: more than the reader threads on a 2-core machine, so one thread reads two.
    // A megabyte per CPU holds the whole run, however the reader threads are scheduled.
    let mut sim = Sim::start(3, Mode::Drop, 3000, 256);
    let file = sim.dir.path().join("trace.dat");
    let recorder = {
        let (socket, file) = (sim.socket.clone(), file.clone());
        std::thread::spawn(move || {
            let mut args = vec!["record", "--socket", socket.to_str().unwrap(), "-o", file.to_str().unwrap()];
            args.extend(options);
            common::reader(&args)
        })
    };
    std::thread::sleep(Duration::from_millis(800));
    let exits = sim.finish(Duration::from_secs(2));
    let out = recorder.join().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if let Some(refusal) = ["does not take O_DIRECT", "taking SCHED_FIFO"].iter().find(|r| stderr.contains(*r)) {
        test_capabilities::skip(
            format_args!("this machine refuses {options:?} ({refusal}): {stderr}"),
            "recording with them",
        );
        return;
    }
    ok(&out);
    let ours = reader(&["report", "-t", file.to_str().unwrap()]);
    ok(&ours);
    let ours = parse_ours(&lines(&ours));
    for (cpu, n) in exits.iter().enumerate() {
        assert_eq!(ours.iter().filter(|e| e.0 == cpu as u32).count() as u64, 3 * n, "cpu {cpu}: all recorded");
    }
    let Some(tc) = trace_cmd() else { return };
    let theirs = trace_cmd_report(tc, &file);
    assert_eq!(census(&theirs), census(&ours), "per CPU and name counts");
    // The same events, fields and timestamps (each CPU's in order; CPUs interleave the same way
    // up to events with equal timestamps).
    for cpu in 0..exits.len() as u32 {
        let a: Vec<_> = ours.iter().filter(|e| e.0 == cpu).collect();
        let b: Vec<_> = theirs.iter().filter(|e| e.0 == cpu).collect();
        assert_eq!(a, b, "cpu {cpu}");
    }
    // Each event names the producer's thread that made it, by name: vCPU N's thread is vcpuN.
    let report = std::process::Command::new(tc).args(["report", "-t"]).arg(&file).output().unwrap();
    let report = String::from_utf8_lossy(&report.stdout);
    for cpu in 0..exits.len() {
        let events = report.lines().filter(|l| l.contains(&format!("[{cpu:03}]")));
        assert!(
            events.clone().count() > 0 && events.clone().all(|l| l.trim_start().starts_with(&format!("vcpu{cpu}-")))
        );
    }
    println!("trace-cmd report agrees on {} recorded events", theirs.len());
}

#[test]
fn an_interrupted_record_leaves_a_valid_file() {
    interrupted_record_leaves_a_valid_file("-INT");
}

#[test]
fn a_terminated_record_leaves_a_valid_file() {
    interrupted_record_leaves_a_valid_file("-TERM");
}

/// `record` stopped by `signal` (a `kill` option) finishes its file.
fn interrupted_record_leaves_a_valid_file(signal: &str) {
    let mut sim = Sim::start(2, Mode::Overwrite, 0, 32);
    let file = sim.dir.path().join("int.dat");
    // Reader threads left to the scheduler (the other record test runs them on their CPUs).
    let child = Command::new(env!("CARGO_BIN_EXE_trace-reader"))
        .args(["record", "--no-pin", "--socket", sim.socket.to_str().unwrap(), "-o", file.to_str().unwrap()])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(Command::new("kill").args([signal, &child.id().to_string()]).status().unwrap().success());
    let out = child.wait_with_output().unwrap();
    sim.finish(Duration::ZERO);
    ok(&out);
    assert!(String::from_utf8_lossy(&out.stderr).contains("interrupted; wrote"));
    let ours = reader(&["report", "-t", file.to_str().unwrap()]);
    ok(&ours);
    let ours = parse_ours(&lines(&ours));
    assert!(ours.len() > 1000, "{} events recorded flat out", ours.len());
    if let Some(tc) = trace_cmd() {
        assert_eq!(census(&trace_cmd_report(tc, &file)), census(&ours));
    }
}

#[test]
fn recover_reads_everything_a_dead_producer_left_in_its_directory() {
    let bufs = tempfile::tempdir().unwrap();
    let dir = bufs.path().join("hyp");
    let dir_arg = dir.to_str().unwrap();
    let mut sim =
        Sim::start_in(2, Mode::Overwrite, 0, 8, ring_mmap::Backing::Dir { path: dir.clone(), overwrite: false });
    std::thread::sleep(Duration::from_millis(300));
    let refused = reader(&["recover", dir_arg]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("a running producer is using"), "{refused:?}");
    sim.finish(Duration::ZERO);
    let stats: Vec<_> = (0..2).map(|cpu| sim.stats(cpu)).collect();
    sim.exit();

    let out = reader(&["recover", "-t", dir_arg]);
    ok(&out);
    let text = lines(&out);
    let events = parse_ours(&text);
    assert!(events.windows(2).all(|w| w[0].1 <= w[1].1), "merged in time order");
    for (cpu, s) in stats.iter().enumerate() {
        assert!(s.overrun > 0, "cpu {cpu} wrapped: {s:?}");
        let recovered = events.iter().filter(|e| e.0 == cpu as u32).count() as u64;
        assert_eq!(recovered, s.entries - s.overrun, "cpu {cpu}: everything not overwritten");
        let lost = format!("CPU:{cpu} [{} EVENTS DROPPED]", s.overrun);
        assert_eq!(text.iter().filter(|l| l.contains("EVENTS DROPPED]")).filter(|l| **l == lost).count(), 1, "{lost}");
    }
    // The same directory through the other commands.
    let json = reader(&["stream", "--dir", dir_arg, "--format", "json", "--cpu", "1"]);
    ok(&json);
    let objs: Vec<serde_json::Value> =
        String::from_utf8_lossy(&json.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(objs.iter().filter(|o| o.get("event").is_some()).count() as u64, stats[1].entries - stats[1].overrun);
    ok(&reader(&["stats", "--dir", dir_arg]));
    let empty = tempfile::tempdir().unwrap();
    let out = reader(&["recover", empty.path().to_str().unwrap()]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("no buffer files"), "{out:?}");
}

/// A damaged page in a dead producer's directory: `recover` prints every event it can read,
/// warns about the page, and exits with an error, instead of printing nothing.
#[test]
fn recover_salvages_around_a_malformed_page_and_says_so() {
    let bufs = tempfile::tempdir().unwrap();
    let dir = bufs.path().join("hyp");
    let dir_arg = dir.to_str().unwrap();
    let mut sim = Sim::start_in(1, Mode::Drop, 0, 8, ring_mmap::Backing::Dir { path: dir.clone(), overwrite: false });
    std::thread::sleep(Duration::from_millis(200));
    sim.finish(Duration::ZERO);
    let entries = sim.stats(0).entries;
    sim.exit();
    let intact = reader(&["recover", "-t", dir_arg]);
    ok(&intact);
    assert_eq!(parse_ours(&lines(&intact)).len() as u64, entries);
    // The first event header of sub-buffer 2 claims a length past the end of the page.
    let path = dir.join("cpu0");
    let mut bytes = std::fs::read(&path).unwrap();
    let meta_size = u32::from_ne_bytes(bytes[0..4].try_into().unwrap()) as usize;
    let at = meta_size + 2 * 4096 + 16;
    bytes[at..at + 8].copy_from_slice(&[0, 0, 0, 0, 0xf0, 0xff, 0xff, 0x7f]);
    std::fs::write(&path, &bytes).unwrap();
    let out = reader(&["recover", "-t", dir_arg]);
    assert!(!out.status.success(), "damage is an error: {out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("warning: cpu 0: page 2 is malformed"), "{stderr}");
    assert!(stderr.contains("every event that could be read was read"), "{stderr}");
    let text = lines(&out);
    let salvaged = parse_ours(&text).len() as u64;
    assert!(salvaged > entries / 2 && salvaged < entries, "{salvaged} of {entries} events salvaged");
    assert_eq!(text.iter().filter(|l| l.contains("EVENTS DROPPED]")).count(), 1, "the unreadable rest is counted lost");
}

#[test]
fn bad_input_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.dat");
    std::fs::write(&junk, b"not a trace").unwrap();
    let out = reader(&["report", junk.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a trace.dat file"));
    let sock = dir.path().join("nobody.sock");
    let out = reader(&["stream", "--socket", sock.to_str().unwrap(), "--wait", "0.1"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no producer is serving"), "{stderr}");
    assert_eq!(stderr.matches("No such file or directory").count(), 1, "each cause said once: {stderr}");
    let out = reader(&["stream", "--duration", "forever"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("not a number of seconds"));
    // A user's mistake is one line naming each cause once, backtraces or not.
    let out = Command::new(env!("CARGO_BIN_EXE_trace-reader"))
        .args(["recover", dir.path().join("no-such-dir").to_str().unwrap()])
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("trace-reader: error: ") && stderr.contains("no-such-dir"), "{stderr}");
}

#[test]
fn an_untrusted_socket_directory_is_refused_at_once() {
    use std::os::unix::fs::PermissionsExt;
    let mut sim = Sim::start(1, Mode::Drop, 1000, 4);
    let chmod = |mode| std::fs::set_permissions(sim.dir.path(), std::fs::Permissions::from_mode(mode)).unwrap();
    chmod(0o777);
    let started = std::time::Instant::now();
    let out = sim.reader(&["stats", "--wait", "5"]);
    let took = started.elapsed();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not trusting the socket directory") && stderr.contains("0777"), "{stderr}");
    assert!(took < Duration::from_secs(4), "refused without waiting for --wait to run out ({took:?})");
    chmod(0o700);
    ok(&sim.reader(&["stats"]));
    sim.finish(Duration::ZERO);
}
