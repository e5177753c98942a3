//! Printing events: ftrace-style text lines or one JSON object per line.
//!
//! ```text
//!   <cpu> [<seconds>.<nanoseconds>] <event>: <field>=<value> ...
//!   <cpu> [LOST <n> EVENTS]
//! ```

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
    /// "fields"} or {"cpu", "lost"}, lost null when the count is unknown); `stats` prints one
    /// JSON array of per-CPU objects.
    Json,
}

/// One item as a line (without the newline).
pub fn line(style: Style, formats: &Formats, item: &MergedItem) -> String {
    match (style, item) {
        (Style::Text, MergedItem::Event { cpu, ns, payload }) => {
            let d = decode(formats, payload);
            format!("{cpu:>3} [{}.{:09}] {}", ns / 1_000_000_000, ns % 1_000_000_000, d.text())
        }
        (Style::Text, MergedItem::Lost { cpu, lost }) => match lost {
            Lost::Count(n) => format!("{cpu:>3} [LOST {n} EVENTS]"),
            Lost::Unknown | Lost::None => format!("{cpu:>3} [LOST EVENTS]"),
        },
        (Style::Json, MergedItem::Event { cpu, ns, payload }) => {
            let d = decode(formats, payload);
            let fields: serde_json::Map<String, serde_json::Value> =
                d.fields.iter().map(|(k, v)| (k.clone(), v.to_json())).collect();
            serde_json::json!({ "cpu": cpu, "ts_ns": ns, "event": d.name, "pid": d.pid, "fields": fields }).to_string()
        }
        (Style::Json, MergedItem::Lost { cpu, lost }) => {
            let n = match lost {
                Lost::Count(n) => serde_json::Value::from(*n),
                Lost::Unknown | Lost::None => serde_json::Value::Null,
            };
            serde_json::json!({ "cpu": cpu, "lost": n }).to_string()
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

    /// Prints one item.
    pub fn item(&mut self, formats: &Formats, item: &MergedItem) {
        let text = line(self.style, formats, item);
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
        assert_eq!(line(Style::Text, &formats, &ev), "  1 [12.000000345] <unknown 9>: raw=0900000007000000");
        let lost = MergedItem::Lost { cpu: 0, lost: Lost::Count(4) };
        assert_eq!(line(Style::Text, &formats, &lost), "  0 [LOST 4 EVENTS]");
        let json: serde_json::Value = serde_json::from_str(&line(Style::Json, &formats, &ev)).unwrap();
        assert_eq!(
            (json["cpu"].as_u64(), json["ts_ns"].as_u64(), json["pid"].as_i64()),
            (Some(1), Some(12_000_000_345), Some(7))
        );
        assert_eq!(
            line(Style::Json, &formats, &MergedItem::Lost { cpu: 2, lost: Lost::Unknown }),
            r#"{"cpu":2,"lost":null}"#
        );
    }
}
