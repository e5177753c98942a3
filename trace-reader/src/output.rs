//! Printing events: ftrace-style text lines or one JSON object per line.
//!
//! ```text
//!   <cpu> [<seconds>.<nanoseconds>] <event>: <field>=<value> ...
//!   <cpu> [LOST <n> EVENTS]
//! ```
//!
//! The items of a file of several buffers say which buffer they are from, as `trace-cmd report`
//! does: a text line starts with the buffer's name and `": "`, right-aligned to the longest name
//! (blanks for the top-level buffer); a JSON object has a `"buffer"` (null for the top-level
//! buffer).

use crate::formats::{Formats, decode};
use crate::merge::MergedItem;
use ring_mmap::Lost;
use std::io::Write;

/// How events are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Style {
    /// ftrace-style text.
    Text,
    /// One JSON object per line for events and losses ({"cpu", "ts_ns", "event", "pid",
    /// "fields"} or {"cpu", "lost"}, lost null when the count is unknown; with a "buffer" in a
    /// file of several buffers); `stats` prints one JSON array of per-CPU objects.
    Json,
}

/// The buffer an item of a file of several buffers is from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferLabel<'a> {
    /// `None` for the top-level buffer.
    pub name: Option<&'a str>,
    /// The length of the file's longest buffer name, which text lines align the names to.
    pub width: usize,
}

/// One item as a line (without the newline), labelled with its buffer if it has a `label`.
pub fn line(style: Style, formats: &Formats, label: Option<BufferLabel<'_>>, item: &MergedItem) -> String {
    match style {
        Style::Text => {
            let prefix = match label {
                Some(BufferLabel { name: Some(name), width }) => format!("{name:>width$}: "),
                Some(BufferLabel { name: None, width }) => " ".repeat(width + 2),
                None => String::new(),
            };
            prefix + &text(formats, item)
        }
        Style::Json => {
            let mut object = json(formats, item);
            if let Some(label) = label {
                object["buffer"] = label.name.into();
            }
            object.to_string()
        }
    }
}

/// An item as ftrace-style text.
fn text(formats: &Formats, item: &MergedItem) -> String {
    match item {
        MergedItem::Event { cpu, ns, payload } => {
            let d = decode(formats, payload);
            format!("{cpu:>3} [{}.{:09}] {}", ns / 1_000_000_000, ns % 1_000_000_000, d.text())
        }
        MergedItem::Lost { cpu, lost } => match lost {
            Lost::Count(n) => format!("{cpu:>3} [LOST {n} EVENTS]"),
            Lost::Unknown | Lost::None => format!("{cpu:>3} [LOST EVENTS]"),
        },
    }
}

/// An item as a JSON object.
fn json(formats: &Formats, item: &MergedItem) -> serde_json::Value {
    match item {
        MergedItem::Event { cpu, ns, payload } => {
            let d = decode(formats, payload);
            let fields: serde_json::Map<String, serde_json::Value> =
                d.fields.iter().map(|(k, v)| (k.clone(), v.to_json())).collect();
            serde_json::json!({ "cpu": cpu, "ts_ns": ns, "event": d.name, "pid": d.pid, "fields": fields })
        }
        MergedItem::Lost { cpu, lost } => {
            let n = match lost {
                Lost::Count(n) => serde_json::Value::from(*n),
                Lost::Unknown | Lost::None => serde_json::Value::Null,
            };
            serde_json::json!({ "cpu": cpu, "lost": n })
        }
    }
}

/// Writes lines to stdout; a closed pipe (the reader of our output went away) ends the program
/// quietly, as for any Unix filter.
pub struct Printer {
    out: std::io::BufWriter<std::io::Stdout>,
    style: Style,
}

impl Printer {
    /// A printer of `style` lines.
    pub fn new(style: Style) -> Self {
        Self { out: std::io::BufWriter::new(std::io::stdout()), style }
    }

    /// Prints one item, labelled with its buffer if it has a `label`.
    pub fn item(&mut self, formats: &Formats, label: Option<BufferLabel<'_>>, item: &MergedItem) {
        let text = line(self.style, formats, label, item);
        self.write(&text);
    }

    /// Prints a line.
    pub fn write(&mut self, text: &str) {
        if let Err(e) = writeln!(self.out, "{text}") {
            output_failed(e);
        }
    }

    /// Flushes what was printed.
    pub fn flush(&mut self) {
        if let Err(e) = self.out.flush() {
            output_failed(e);
        }
    }
}

/// Ends the process on an output error: quietly and successfully when the reader of a pipe went
/// away (`trace-reader stream | head`), with the error and status 1 otherwise (a full disk).
fn output_failed(e: std::io::Error) -> ! {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    eprintln!("trace-reader: writing the output: {e}");
    std::process::exit(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_look_like_ftrace_and_unknown_events_are_raw() {
        let formats = Formats::default();
        let ev = MergedItem::Event { cpu: 1, ns: 12_000_000_345, payload: vec![9, 0, 0, 0, 7, 0, 0, 0] };
        assert_eq!(line(Style::Text, &formats, None, &ev), "  1 [12.000000345] <unknown 9>: raw=0900000007000000");
        let lost = MergedItem::Lost { cpu: 0, lost: Lost::Count(4) };
        assert_eq!(line(Style::Text, &formats, None, &lost), "  0 [LOST 4 EVENTS]");
        let json: serde_json::Value = serde_json::from_str(&line(Style::Json, &formats, None, &ev)).unwrap();
        assert_eq!(
            (json["cpu"].as_u64(), json["ts_ns"].as_u64(), json["pid"].as_i64()),
            (Some(1), Some(12_000_000_345), Some(7))
        );
        assert_eq!(
            line(Style::Json, &formats, None, &MergedItem::Lost { cpu: 2, lost: Lost::Unknown }),
            r#"{"cpu":2,"lost":null}"#
        );
    }

    #[test]
    fn items_of_several_buffers_say_which_as_trace_cmd_report_does() {
        let formats = Formats::default();
        let ev = MergedItem::Event { cpu: 1, ns: 12_000_000_345, payload: vec![9, 0, 0, 0, 7, 0, 0, 0] };
        let hyp = Some(BufferLabel { name: Some("hyp"), width: 5 });
        let top = Some(BufferLabel { name: None, width: 5 });
        assert_eq!(
            line(Style::Text, &formats, hyp, &ev),
            "  hyp:   1 [12.000000345] <unknown 9>: raw=0900000007000000"
        );
        assert_eq!(
            line(Style::Text, &formats, top, &ev),
            "         1 [12.000000345] <unknown 9>: raw=0900000007000000"
        );
        let lost = MergedItem::Lost { cpu: 0, lost: Lost::Count(4) };
        assert_eq!(line(Style::Text, &formats, hyp, &lost), "  hyp:   0 [LOST 4 EVENTS]");
        let json =
            |label, item| serde_json::from_str::<serde_json::Value>(&line(Style::Json, &formats, label, item)).unwrap();
        assert_eq!(json(hyp, &ev)["buffer"], "hyp");
        assert_eq!(json(top, &ev)["buffer"], serde_json::Value::Null);
        assert_eq!(json(hyp, &lost)["buffer"], "hyp");
        assert!(json(None, &ev).get("buffer").is_none(), "no buffer where there is one");
    }
}
