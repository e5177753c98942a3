//! ring-mmap's kernel backend against the real Linux ring buffer: a fresh tracefs instance is fed
//! through `trace_marker_raw` from a thread pinned to CPU 0, then read back through the
//! memory-mapped `trace_pipe_raw` with the same `Consumer` that reads hyptrace buffers.
//!
//! Needs root and tracefs (mounted here if absent). Where that is impossible the tests say so on
//! stderr and return without checking anything.
#![cfg(not(loom))]

use hyptrace_tests::payload;
use ring_mmap::{Consumer, CpuSource, KernelCpu, Lost, Record, TracefsInstance};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Tracefs, or `None` (with the reason printed) if it cannot be had here.
fn tracefs() -> Option<PathBuf> {
    let dir = test_capabilities::tracefs("the kernel backend's test")?;
    if !dir.join("instances").is_dir() {
        test_capabilities::skip(
            format_args!("{} has no instances/ directory", dir.display()),
            "the kernel backend's test",
        );
        return None;
    }
    Some(dir)
}

/// A fresh instance with `buffer_kb` per CPU, waking pollers on any data.
fn instance(root: &Path, tag: &str, buffer_kb: u32) -> TracefsInstance {
    let name = format!("hyptrace-test-{tag}-{}", std::process::id());
    let inst = TracefsInstance::create(root, &name).expect("creating the instance");
    inst.set("buffer_size_kb", &buffer_kb.to_string()).expect("buffer_size_kb");
    inst.set("buffer_percent", "0").expect("buffer_percent");
    inst
}

/// The event id of `ftrace/raw_data`, from its format file.
fn raw_data_id(inst: &Path) -> u16 {
    let format = std::fs::read_to_string(inst.join("events/ftrace/raw_data/format")).expect("raw_data format");
    format.lines().find_map(|l| l.strip_prefix("ID:")).and_then(|id| id.trim().parse().ok()).expect("an ID line")
}

/// Writes records `0..n` to the instance's `trace_marker_raw` from CPU 0: each is a 4-byte id
/// (the record number) followed by a self-checking payload of `len` bytes.
fn write_records(inst: &Path, n: u32, len: usize) {
    let mut set = rustix::thread::CpuSet::new();
    set.set(0);
    rustix::thread::sched_setaffinity(None, &set).expect("pinning to CPU 0");
    let mut marker =
        std::fs::OpenOptions::new().write(true).open(inst.join("trace_marker_raw")).expect("trace_marker_raw");
    for i in 0..n {
        let mut record = i.to_ne_bytes().to_vec();
        record.extend(payload::make(i, len));
        // One write(2) is one record.
        assert_eq!(marker.write(&record).expect("writing a record"), record.len());
    }
}

/// A decoded `raw_data` event: (common_type, id, the payload after the id).
fn parse_raw(bytes: &[u8]) -> (u16, u32, &[u8]) {
    let common_type = u16::from_ne_bytes(bytes[0..2].try_into().expect("2 bytes"));
    let id = u32::from_ne_bytes(bytes[8..12].try_into().expect("4 bytes"));
    (common_type, id, &bytes[12..])
}

#[test]
fn records_written_to_trace_marker_raw_come_back_through_the_mapping() {
    let Some(root) = tracefs() else { return };
    let inst = instance(&root, "roundtrip", 64);
    let raw_data = raw_data_id(inst.path());
    let n = 500;
    write_records(inst.path(), n, 20);
    let before = KernelCpu::stats_file(inst.path(), 0).expect("stats");
    assert_eq!((before.unread, before.stats.overrun), (u64::from(n), 0), "{before:?}");

    let mut consumer = Consumer::new(KernelCpu::open(inst.path(), 0).expect("mapping cpu0")).expect("consumer");
    let mut ids = Vec::new();
    consumer
        .drain(|r| match r {
            Record::Event(e) => {
                let bytes = e.payload.to_vec();
                let (common_type, id, rest) = parse_raw(&bytes);
                assert_eq!(common_type, raw_data, "every event is a raw_data record");
                assert_eq!(payload::check(rest), Ok(id), "record {id}'s payload");
                ids.push(id);
            }
            Record::Lost(l) => panic!("nothing was lost, but {l:?} was reported"),
        })
        .expect("drain");
    assert_eq!(ids, (0..n).collect::<Vec<_>>(), "every record, in order");

    let after = KernelCpu::stats_file(inst.path(), 0).expect("stats");
    assert_eq!((after.unread, after.stats.read), (0, u64::from(n)), "{after:?}");
    let counters = consumer.source().view().expect("view").meta().counters();
    assert_eq!((counters.entries, counters.read, counters.overrun), (u64::from(n), u64::from(n), 0));
    drop(consumer); // the instance can only be removed once nothing has it open
    drop(inst);
}

#[test]
fn kernel_losses_are_reported_from_the_page_flags() {
    let Some(root) = tracefs() else { return };
    let inst = instance(&root, "overrun", 8);
    let n = 3000;
    write_records(inst.path(), n, 40);
    let stats = KernelCpu::stats_file(inst.path(), 0).expect("stats").stats;
    assert!(stats.overrun > 0, "the small buffer overflowed: {stats:?}");

    let mut consumer = Consumer::new(KernelCpu::open(inst.path(), 0).expect("mapping cpu0")).expect("consumer");
    let (mut ids, mut lost, mut unknown) = (Vec::new(), 0, false);
    consumer
        .drain(|r| match r {
            Record::Event(e) => ids.push(parse_raw(&e.payload.to_vec()).1),
            Record::Lost(Lost::Count(k)) => lost += k,
            Record::Lost(Lost::Unknown) => unknown = true,
            Record::Lost(Lost::None) => {}
        })
        .expect("drain");
    assert_eq!(*ids.last().expect("the newest records survive"), n - 1);
    assert!(ids.windows(2).all(|w| w[1] == w[0] + 1), "the survivors are contiguous");
    assert!(unknown || lost == u64::from(ids[0]), "losses reported ({lost}) = records before the first survivor");
    assert_eq!(u64::from(ids[0]), stats.overrun, "the kernel's overrun counts exactly the lost records");
    println!("kernel overwrite: {} records read, {lost} reported lost (count unknown: {unknown})", ids.len());
    drop(consumer);
    drop(inst);
}

#[test]
fn a_buffer_reset_under_the_consumer_starts_its_reader_page_over() {
    let Some(root) = tracefs() else { return };
    let inst = instance(&root, "reset", 64);
    write_records(inst.path(), 20, 20);
    let mut consumer = Consumer::new(KernelCpu::open(inst.path(), 0).expect("mapping cpu0")).expect("consumer");
    let mut got = Vec::new();
    let mut take = |r: Record<'_>| match r {
        Record::Event(e) => got.push(Ok(parse_raw(&e.payload.to_vec()).1)),
        Record::Lost(l) => got.push(Err(l)),
    };
    consumer.drain(&mut take).expect("drain before the reset");
    // `echo > trace`: the reader page is emptied in place, behind the consumer's position, and
    // until a new event arrives the kernel keeps it as the reader page.
    inst.set("trace", "").expect("resetting the buffer");
    consumer.drain(&mut take).expect("a reset is not the producer's error");
    write_records(inst.path(), 1, 20);
    consumer.drain(&mut take).expect("drain after the reset");
    let mut expected: Vec<Result<u32, Lost>> = (0..20).map(Ok).collect();
    expected.extend([Err(Lost::Unknown), Ok(0)]);
    assert_eq!(got, expected, "the record written after the reset, after a loss of unknown size");
    drop(consumer);
    drop(inst);
}
