//! docs/abi.md is precise enough to interoperate: `tests/c/abi_consumer.c` follows that document
//! alone (it takes nothing from the Rust sources). It is compiled here and consumes a `test-producer`
//! process through the control socket and the mapping, checking every event's payload, order and
//! reported losses itself; this test then compares its totals with the producer's counters.
//!
//! Needs a C compiler (`cc`); without one the test says so on stderr and checks nothing.
#![cfg(not(loom))]

use ring_mmap::Connection;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Compiles the C consumer into `dir`, or `None` (reason printed) without a C compiler.
fn compile(dir: &Path) -> Option<PathBuf> {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("c/abi_consumer.c");
    let exe = dir.join("abi_consumer");
    let status = Command::new("cc")
        .args(["-std=c11", "-O2", "-Wall", "-Wextra", "-Werror", "-o"])
        .arg(&exe)
        .arg(&source)
        .status();
    match status {
        Ok(s) if s.success() => Some(exe),
        Ok(s) => panic!("abi_consumer.c does not compile ({s})"),
        Err(e) => {
            test_capabilities::skip(format_args!("no C compiler ('cc'): {e}"), "the C consumer's test");
            None
        }
    }
}

/// Runs a producer of `events` events on one CPU and the C consumer against it; returns the C
/// consumer's `(events, lost, next)` and the producer's counters.
fn run(mode: &str, events: u64, extra: &[&str]) -> Option<((u64, u64, u64), ring_core::Stats)> {
    let dir = tempfile::tempdir().expect("tempdir");
    let exe = compile(dir.path())?;
    let socket = dir.path().join("sock");
    let events_arg = events.to_string();
    let mut producer = Command::new(env!("CARGO_BIN_EXE_test-producer"))
        .arg("--socket")
        .arg(&socket)
        .args(["--cpus", "1", "--mode", mode, "--events", &events_arg])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawning test-producer");
    let mut out = BufReader::new(producer.stdout.take().expect("stdout"));
    let mut line = String::new();
    out.read_line(&mut line).expect("ready line");
    assert_eq!(line.trim(), "ready");
    let consumer = Command::new(&exe).arg(&socket).arg("0").arg(&events_arg).output().expect("running abi_consumer");
    let stdout = String::from_utf8_lossy(&consumer.stdout);
    assert!(
        consumer.status.success(),
        "abi_consumer failed: {}\nstdout: {stdout}\nstderr: {}",
        consumer.status,
        String::from_utf8_lossy(&consumer.stderr)
    );
    let field = |name: &str| -> u64 {
        stdout
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("abi_consumer printed no {name}=: {stdout}"))
    };
    let totals = (field("events"), field("lost"), field("next"));
    let stats = Connection::connect(&socket).expect("connect").stats(0).expect("stats");
    drop(producer.stdin.take());
    assert!(producer.wait().expect("producer exit").success());
    println!("C consumer, {mode} mode: {totals:?}, producer {stats:?}");
    Some((totals, stats))
}

#[test]
fn a_c_consumer_written_from_the_abi_document_reads_drop_mode_buffers() {
    let events = 50_000;
    let Some(((read, lost, next), stats)) = run("drop", events, &["--pause-us", "0"]) else { return };
    assert_eq!(read, stats.entries, "it read every committed event");
    assert_eq!(lost + (events - next), stats.dropped, "losses it saw plus trailing drops = dropped");
    assert_eq!(read + stats.dropped, events);
}

#[test]
fn a_c_consumer_written_from_the_abi_document_reads_overwrite_mode_buffers() {
    let events = 50_000;
    let Some(((read, lost, next), stats)) = run("overwrite", events, &["--nr-subbufs", "4"]) else { return };
    assert_eq!(next, events, "the newest event survives");
    assert_eq!(read + lost, events, "every event read or reported lost");
    assert_eq!(lost, stats.overrun);
}
