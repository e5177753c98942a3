//! Files with several buffers: a top-level buffer and a named one of more CPUs written through
//! `DatWriter`, as `trace-cmd report` and `trace-reader report` read them; and trace-cmd's own
//! files of tracefs instances, as `trace-reader report` reads them.

mod common;

use common::{
    BufferEventLine, lines, ok, parse_ours, reader, split_buffer, trace_cmd, trace_cmd_report_buffers, tracefs_instance,
};
use std::path::Path;
use std::process::Command;
use trace_reader::formats::{EventFormat, Formats};
use trace_reader::tracedat::{BufferSpec, DatError, DatInfo, DatWriter, PageBuilder, SpoolIo};

/// The two events: one for each buffer, with distinct ids (the file has one set of formats).
const FORMATS: [&str; 2] = [
    "name: ping\nID: 5\nformat:\n\
     \tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\
     \tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n\n\
     \tfield:unsigned int n;\toffset:8;\tsize:4;\tsigned:0;\n\n\
     print fmt: \"n=%u\", REC->n\n",
    "name: pong\nID: 6\nformat:\n\
     \tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\
     \tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n\n\
     \tfield:unsigned int n;\toffset:8;\tsize:4;\tsigned:0;\n\n\
     print fmt: \"n=%u\", REC->n\n",
];

/// The named buffer.
const NAMED: &str = "hyp";

/// Events per recorded CPU.
const EVENTS: u32 = 300;

/// Writes a file whose top-level buffer has 2 CPUs, both recorded, with `ping` events, and whose
/// buffer `hyp` has 4 CPUs, 0 and 3 recorded, with `pong` events; timestamps interleave across
/// all of them and are distinct. Returns the events written, in time order.
fn write_two_buffers(path: &Path) -> Result<Vec<BufferEventLine>, DatError> {
    let mut formats = Formats::default();
    for text in FORMATS {
        formats.insert(EventFormat::parse("demo", text).unwrap());
    }
    let info = DatInfo::new(4096, &formats, Some("mono".into()));
    let buffers = [BufferSpec::top(2, &[0, 1]), BufferSpec::named(NAMED, 4, &[0, 3])];
    let mut writer = DatWriter::create(path, info, &buffers, SpoolIo::Buffered)?;
    let mut expected = Vec::new();
    for (lane, (at, spool)) in writer.spools().enumerate() {
        let (id, name, buffer) = match at.buffer {
            0 => (5u16, "ping", None),
            _ => (6, "pong", Some(NAMED.to_string())),
        };
        let mut builder = PageBuilder::new(4096);
        let mut out = |page: &[u8]| spool.write_page(page);
        for n in 0..EVENTS {
            // A second and a bit into the trace, each CPU a microsecond after the one before.
            let ns = 1_000_000_000 + u64::from(n) * 10_000 + lane as u64 * 1_000;
            let mut payload = [0u8; 12];
            payload[0..2].copy_from_slice(&id.to_ne_bytes());
            payload[8..12].copy_from_slice(&n.to_ne_bytes());
            builder.push(ns, 12, |d| d.copy_from_slice(&payload), &mut out)?.expect("an event fits a page");
            expected.push((buffer.clone(), (at.cpu, ns, name.to_string(), format!("n={n}"))));
        }
        builder.flush(&mut out)?;
    }
    writer
        .finish(&[vec!["CPU: 0\n".into(), "CPU: 1\n".into()], vec!["CPU: 0\n".into(), "CPU: 3\n".into()]], |_, _| {})?;
    expected.sort_by_key(|(_, event)| event.1);
    Ok(expected)
}

#[test]
fn trace_cmd_reports_both_buffers_events_with_their_names_and_times() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("two.dat");
    let expected = write_two_buffers(&file).unwrap();
    let Some(tc) = trace_cmd() else { return };
    let theirs = trace_cmd_report_buffers(tc, &file, &[NAMED]);
    assert_eq!(theirs.len(), expected.len(), "trace-cmd sees every event of both buffers");
    assert_eq!(theirs, expected, "each with its buffer, CPU, nanosecond time, name and fields, in time order");
    println!("trace-cmd report: {} events of two buffers as written", theirs.len());
}

#[test]
fn trace_cmd_finds_the_clock_of_every_buffer() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("two.dat");
    write_two_buffers(&file).unwrap();
    let Some(tc) = trace_cmd() else { return };
    // `dump --clock` prints the clock text that follows the top-level buffer's CPU table, which
    // is where trace-cmd takes a version 6 file's clock from.
    let dump = Command::new(tc).args(["dump", "--clock", "-i"]).arg(&file).output().unwrap();
    let text = String::from_utf8_lossy(&dump.stdout);
    let after_table = text.split("[Tracing clock]").nth(1).unwrap_or_default();
    assert!(dump.status.success() && after_table.trim() == "[mono]", "trace-cmd dump --clock: {text}");
    // Every buffer's section is read with its clock: a wrong size there would make trace-cmd
    // warn of a corrupt clock and fall back to `local`.
    let report = Command::new(tc).arg("report").arg(&file).output().unwrap();
    let stderr = String::from_utf8_lossy(&report.stderr);
    assert!(report.status.success() && !stderr.contains("clock"), "trace-cmd report: {stderr}");
    println!("trace-cmd: the clock after the CPU table is {:?}", after_table.trim());
}

/// `trace-reader report FILE` (text), its events with their buffers, for a file of the buffers
/// `names` besides the top-level one.
fn report_buffers(file: &Path, names: &[&str]) -> Vec<BufferEventLine> {
    let out = reader(&["report", "-t", file.to_str().unwrap()]);
    ok(&out);
    lines(&out)
        .iter()
        .map(|line| {
            let (buffer, rest) = split_buffer(line, names);
            (buffer, parse_ours(&[rest.to_string()]).pop().expect("an event line"))
        })
        .collect()
}

#[test]
fn report_merges_both_buffers_in_time_order_naming_each() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("two.dat");
    let expected = write_two_buffers(&file).unwrap();
    assert_eq!(report_buffers(&file, &[NAMED]), expected);
    let json_of_cpu = |cpu: &str| -> Vec<serde_json::Value> {
        let out = reader(&["report", "--format", "json", "--cpu", cpu, file.to_str().unwrap()]);
        ok(&out);
        lines(&out).iter().map(|l| serde_json::from_str(l).unwrap()).collect()
    };
    let named = json_of_cpu("3");
    assert_eq!(named.len() as u32, EVENTS, "cpu 3 is the named buffer's only");
    assert!(named.iter().all(|o| o["buffer"] == NAMED && o["event"] == "pong"), "{:?}", named[0]);
    let top = json_of_cpu("1");
    assert_eq!(top.len() as u32, EVENTS, "cpu 1 is the top-level buffer's only");
    assert!(top.iter().all(|o| o["buffer"].is_null() && o["event"] == "ping"), "{:?}", top[0]);
}

/// Markers written into each instance.
const MARKERS: u32 = 40;

#[test]
fn a_trace_cmd_file_of_two_instances_reads_as_trace_cmd_reports_it() {
    // Two instances with names of different lengths, so that the labels' alignment shows.
    let names =
        [format!("trace-reader-test-a-{}", std::process::id()), format!("trace-reader-test-bb-{}", std::process::id())];
    let mut instances = Vec::new();
    for name in &names {
        let Some(instance) = tracefs_instance(name, "the trace-cmd instances test") else { return };
        instances.push(instance);
    }
    for i in 0..MARKERS {
        for (instance, name) in instances.iter().zip(&names) {
            std::fs::write(instance.path().join("trace_marker"), format!("{name} {i}")).unwrap();
        }
    }
    let Some(tc) = trace_cmd() else { return };
    // `trace-cmd record` needs the function tracer's switches, which not every kernel lets it
    // turn; `extract` reads the instances as they are (`-k`: and leaves tracing as it is).
    // It writes version 7, compressed; `convert` makes the version 6 file this reader reads.
    let dir = tempfile::tempdir().unwrap();
    let (extracted, file) = (dir.path().join("extracted.dat"), dir.path().join("instances.dat"));
    let run = |args: &[&str]| {
        let out = Command::new(tc).args(args).output().unwrap();
        assert!(out.status.success(), "trace-cmd {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    run(&["extract", "-k", "-B", &names[0], "-B", &names[1], "-o", extracted.to_str().unwrap()]);
    run(&[
        "convert",
        "--file-version",
        "6",
        "--compression",
        "none",
        "-i",
        extracted.to_str().unwrap(),
        "-o",
        file.to_str().unwrap(),
    ]);
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let theirs = trace_cmd_report_buffers(tc, &file, &names);
    let ours = report_buffers(&file, &names);
    // Buffer, CPU, nanosecond time and name of every event, in time order (events of equal
    // times may come in either order).
    let key = |events: &[BufferEventLine]| {
        let mut keys: Vec<_> = events.iter().map(|(buffer, e)| (e.1, buffer.clone(), e.0, e.2.clone())).collect();
        keys.sort();
        keys
    };
    assert_eq!(key(&ours), key(&theirs));
    for name in &names {
        let markers = ours.iter().filter(|(buffer, e)| buffer.as_deref() == Some(*name) && e.2 == "print").count();
        assert_eq!(markers as u32, MARKERS, "every marker of {name}, in its own buffer");
    }
    println!(
        "trace-cmd instances file: {} events of {} buffers, as trace-cmd reports them",
        ours.len(),
        names.len() + 1
    );
}
