//! Files with several buffers: a top-level buffer and a named one of more CPUs, written through
//! `DatWriter`, as `trace-cmd report` reads them.

mod common;

use common::{BufferEventLine, trace_cmd, trace_cmd_report_buffers};
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
fn write_two_buffers(path: &std::path::Path) -> Result<Vec<BufferEventLine>, DatError> {
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
