//! What the tests that consume a hyp-sim process share: starting it and connecting to its
//! control socket, reading fields by name where hyp-sim's event table puts them, and the exits
//! column of its report.

// Each test binary includes this module and uses only part of it.
#![allow(dead_code)]

use hyp_sim::events::Field;
use ring_mmap::{Connection, Consumer, CpuSource, Error, Record, Wakeup};
use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Starts hyp-sim serving `socket` with `args`, its stderr piped, and connects to it.
pub fn start(socket: &Path, args: &[&str]) -> (Child, Arc<Connection>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hyp-sim"))
        .arg("--socket")
        .arg(socket)
        .args(args)
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning hyp-sim");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match Connection::connect(socket) {
            Ok(conn) => return (child, conn),
            Err(_) if Instant::now() < deadline && child.try_wait().ok().flatten().is_none() => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(e) => panic!("hyp-sim did not serve: {e}"),
        }
    }
}

/// The field of `fields` named `name`.
pub fn named<'t>(fields: &'t [Field], name: &str) -> &'t Field {
    fields.iter().find(|f| f.name == name).unwrap_or_else(|| panic!("hyp-sim's event table has no field {name}"))
}

/// The integer in `field`'s place in `payload`, sign-extended if the field is signed.
pub fn int(payload: &[u8], field: &Field) -> u64 {
    let bytes = &payload[field.offset..field.offset + field.kind.size()];
    match (bytes.len(), field.kind.signed()) {
        (1, _) => u64::from(bytes[0]),
        (2, _) => u64::from(u16::from_ne_bytes(bytes.try_into().unwrap())),
        (4, false) => u64::from(u32::from_ne_bytes(bytes.try_into().unwrap())),
        (4, true) => i64::from(i32::from_ne_bytes(bytes.try_into().unwrap())) as u64,
        (8, _) => u64::from_ne_bytes(bytes.try_into().unwrap()),
        (size, _) => panic!("{}: no integer of {size} bytes", field.name),
    }
}

/// The string a `__data_loc` field points at: `(length << 16) | offset` of the NUL-terminated
/// text.
pub fn string<'p>(payload: &'p [u8], field: &Field) -> &'p str {
    let loc = int(payload, field);
    let (len, at) = ((loc >> 16) as usize, (loc & 0xffff) as usize);
    std::str::from_utf8(&payload[at..at + len - 1]).expect("a UTF-8 string")
}

/// The exits column of hyp-sim's report ("cpu exits entries overrun dropped read discarded swaps
/// events/s"), for its first `cpus` CPUs.
pub fn exits_column(report: &str, cpus: usize) -> Vec<u64> {
    report
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("cpu"))
        .skip(1)
        .take(cpus)
        .map(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()).expect("an exits column"))
        .collect()
}

/// Reads `consumer` live until its producer hangs up, handing every record to `take`: drains,
/// then waits up to 20 ms for a finished page (or, with a nonzero `pause`, sleeps that long
/// between drains). What the producer left after hanging up is the caller's to drain.
pub fn read_until_hangup<S: CpuSource>(consumer: &mut Consumer<S>, pause: Duration, mut take: impl FnMut(Record<'_>)) {
    loop {
        match consumer.drain(&mut take) {
            Ok(_) => {}
            Err(Error::Hangup) => return,
            Err(e) => panic!("cpu {}: {e}", consumer.source().cpu()),
        }
        if !pause.is_zero() {
            std::thread::sleep(pause);
        } else if consumer.wait(1, Some(Duration::from_millis(20))).expect("wait") == Wakeup::Hangup {
            return;
        }
    }
}

/// Waits for the consumer threads `readers`, one per CPU, and for hyp-sim (`child`, its stderr
/// piped), which must succeed; returns what each reader returned with the exits hyp-sim reports
/// for its CPU, and hyp-sim's report (also printed).
pub fn finish_run<T>(mut child: Child, readers: Vec<JoinHandle<T>>) -> (Vec<(T, u64)>, String) {
    let streams: Vec<T> = readers.into_iter().map(|r| r.join().expect("a consumer panicked")).collect();
    let mut report = String::new();
    child.stderr.take().unwrap().read_to_string(&mut report).unwrap();
    assert!(child.wait().unwrap().success(), "hyp-sim failed:\n{report}");
    println!("{}", report.trim_end());
    let exits = exits_column(&report, streams.len());
    (streams.into_iter().zip(exits).collect(), report)
}
