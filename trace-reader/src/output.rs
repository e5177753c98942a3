//! Printing events: as `trace-cmd report` prints them, or one JSON object per line.
//!
//! ```text
//!   <task>-<pid> [<cpu>] <seconds>.<microseconds>: <event>: <text>
//!   CPU:<cpu> [<n> EVENTS DROPPED]
//! ```
//!
//! trace-cmd's columns: the task's name right-aligned in 16 columns, its pid left-aligned in 5,
//! the CPU in 3 digits, the event's name followed by blanks up to 20 columns; the text is
//! libtraceevent's ([`crate::event_text`]). Timestamps are shown in seconds with microseconds
//! (rounded), or nanoseconds with `-t`, as trace-cmd shows them; on a trace clock that does not
//! count nanoseconds (`counter`, `uptime`, `x86-tsc`), as the count itself, 12 columns wide.
//!
//! The items of a file of several buffers say which buffer they are from, as `trace-cmd report`
//! does: a text line starts with the buffer's name and `": "`, right-aligned to the longest name
//! (blanks for the top-level buffer); a JSON object has a `"buffer"` (null for the top-level
//! buffer).

use crate::event_text::EventText;
use crate::formats::decode;
use crate::merge::MergedItem;
use ring_mmap::Lost;
use std::io::Write;

/// How events are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Style {
    /// As `trace-cmd report` prints them.
    Text,
    /// One JSON object per line for events and losses ({"cpu", "ts_ns", "event", "pid",
    /// "comm", "fields"} or {"cpu", "lost"}, lost null when the count is unknown; with a
    /// "buffer" in a file of several buffers); `stats` prints one JSON array of per-CPU objects.
    Json,
}

/// Trace clocks whose timestamps are nanoseconds, as the kernel's `trace_clocks[]` marks them
/// (the others, `counter`, `uptime` and `x86-tsc`, count events, jiffies or cycles).
const NANOSECOND_CLOCKS: [&str; 7] = ["local", "global", "perf", "mono", "mono_raw", "boot", "tai"];

/// How text lines show timestamps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timestamps {
    /// Seconds and microseconds, rounded (`trace-cmd report`).
    Micro,
    /// Seconds and nanoseconds (`trace-cmd report -t`).
    Nano,
    /// The clock's count, which is not nanoseconds.
    Count,
}

impl Timestamps {
    /// How to show timestamps of the trace clock `clock` (`None`: nanoseconds), in nanoseconds
    /// if `ns`.
    pub fn new(clock: Option<&str>, ns: bool) -> Self {
        match clock {
            Some(clock) if !NANOSECOND_CLOCKS.contains(&clock) => Self::Count,
            _ if ns => Self::Nano,
            _ => Self::Micro,
        }
    }

    /// `ts` as trace-cmd shows it, with the blank before it (none before a count) and the colon.
    fn text(self, ts: u64) -> String {
        match self {
            Self::Micro => {
                let us = ts.saturating_add(500) / 1000;
                format!(" {:5}.{:06}:", us / 1_000_000, us % 1_000_000)
            }
            Self::Nano => format!(" {:5}.{:09}:", ts / 1_000_000_000, ts % 1_000_000_000),
            Self::Count => format!("{ts:12}:"),
        }
    }
}

/// The buffer an item of a file of several buffers is from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferLabel<'a> {
    /// `None` for the top-level buffer.
    pub name: Option<&'a str>,
    /// The length of the file's longest buffer name, which text lines align the names to.
    pub width: usize,
}

/// `text` after blanks up to `width` bytes (C's `%*s`, which counts bytes).
fn right_aligned(text: &str, width: usize) -> String {
    format!("{}{text}", " ".repeat(width.saturating_sub(text.len())))
}

/// `text` before blanks up to `width` bytes.
fn left_aligned(text: &str, width: usize) -> String {
    format!("{text}{}", " ".repeat(width.saturating_sub(text.len())))
}

/// One item as a line (without the newline), labelled with its buffer if it has a `label`.
pub fn line(
    events: &mut EventText,
    style: Style,
    times: Timestamps,
    label: Option<BufferLabel<'_>>,
    item: &MergedItem,
) -> String {
    match style {
        Style::Text => {
            let prefix = match label {
                Some(BufferLabel { name: Some(name), width }) => format!("{}: ", right_aligned(name, width)),
                Some(BufferLabel { name: None, width }) => " ".repeat(width + 2),
                None => String::new(),
            };
            prefix + &text(events, times, item)
        }
        Style::Json => {
            let mut object = json(events, item);
            if let Some(label) = label {
                object["buffer"] = label.name.into();
            }
            object.to_string()
        }
    }
}

/// An item as `trace-cmd report` prints it.
fn text(events: &mut EventText, times: Timestamps, item: &MergedItem) -> String {
    match item {
        MergedItem::Event { cpu, ns, payload } => {
            let e = events.line(*cpu, *ns, payload);
            format!(
                "{}-{} [{cpu:03}]{} {}: {}{}",
                right_aligned(&e.comm, 16),
                left_aligned(&e.pid.to_string(), 5),
                times.text(*ns),
                e.name,
                " ".repeat(20usize.saturating_sub(e.name.len())),
                e.info
            )
        }
        MergedItem::Lost { cpu, lost } => match lost {
            Lost::Count(n) => format!("CPU:{cpu} [{n} EVENTS DROPPED]"),
            Lost::Unknown | Lost::None => format!("CPU:{cpu} [EVENTS DROPPED]"),
        },
    }
}

/// An item as a JSON object.
fn json(events: &mut EventText, item: &MergedItem) -> serde_json::Value {
    match item {
        MergedItem::Event { cpu, ns, payload } => {
            let d = decode(events.formats(), payload);
            let fields: serde_json::Map<String, serde_json::Value> =
                d.fields.iter().map(|(k, v)| (k.clone(), v.to_json())).collect();
            let comm = events.comm(d.pid);
            serde_json::json!({ "cpu": cpu, "ts_ns": ns, "event": d.name, "pid": d.pid, "comm": comm, "fields": fields })
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
    times: Timestamps,
    events: EventText,
}

impl Printer {
    /// A printer of `style` lines of `events`, their timestamps shown as `times` says.
    pub fn new(style: Style, times: Timestamps, events: EventText) -> Self {
        Self { out: std::io::BufWriter::new(std::io::stdout()), style, times, events }
    }

    /// Prints one item, labelled with its buffer if it has a `label`.
    pub fn item(&mut self, label: Option<BufferLabel<'_>>, item: &MergedItem) {
        let text = line(&mut self.events, self.style, self.times, label, item);
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
    use crate::formats::{EventFormat, Formats};
    use crate::symbols::Symbols;

    const PING: &str = "name: ping\nID: 5\nformat:\n\
        \tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\
        \tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n\n\
        \tfield:unsigned int n;\toffset:8;\tsize:4;\tsigned:0;\n\n\
        print fmt: \"n=%u\", REC->n\n";

    fn events() -> EventText {
        let mut formats = Formats::default();
        formats.insert(EventFormat::parse("demo", PING).unwrap());
        EventText::new(formats, &Symbols { cmdlines: "7 worker\n".into(), ..Symbols::default() }, 4096)
    }

    fn ping(cpu: u32, ns: u64) -> MergedItem {
        MergedItem::Event { cpu, ns, payload: vec![5, 0, 0, 0, 7, 0, 0, 0, 42, 0, 0, 0] }
    }

    #[test]
    fn lines_look_like_trace_cmd_reports() {
        let mut e = events();
        let us = Timestamps::new(Some("mono"), false);
        assert_eq!(
            line(&mut e, Style::Text, us, None, &ping(1, 12_000_000_500)),
            "          worker-7     [001]    12.000001: ping:                 n=42"
        );
        let ns = Timestamps::new(None, true);
        assert_eq!(
            line(&mut e, Style::Text, ns, None, &ping(1, 12_000_000_345)),
            "          worker-7     [001]    12.000000345: ping:                 n=42"
        );
        let count = Timestamps::new(Some("counter"), true);
        assert_eq!(
            line(&mut e, Style::Text, count, None, &ping(0, 345)),
            "          worker-7     [000]         345: ping:                 n=42"
        );
        let unknown = MergedItem::Event { cpu: 1, ns: 0, payload: vec![9, 0, 0, 0, 0, 0, 0, 0] };
        assert_eq!(
            line(&mut e, Style::Text, us, None, &unknown),
            "          <idle>-0     [001]     0.000000: <unknown 9>:          raw=0900000000000000"
        );
        let lost = MergedItem::Lost { cpu: 0, lost: Lost::Count(4) };
        assert_eq!(line(&mut e, Style::Text, us, None, &lost), "CPU:0 [4 EVENTS DROPPED]");
        let json: serde_json::Value = serde_json::from_str(&line(&mut e, Style::Json, us, None, &ping(1, 12))).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"cpu": 1, "ts_ns": 12, "event": "ping", "pid": 7, "comm": "worker", "fields": {"n": 42}})
        );
        assert_eq!(
            line(&mut e, Style::Json, us, None, &MergedItem::Lost { cpu: 2, lost: Lost::Unknown }),
            r#"{"cpu":2,"lost":null}"#
        );
    }

    #[test]
    fn items_of_several_buffers_say_which_as_trace_cmd_report_does() {
        let mut e = events();
        let us = Timestamps::Micro;
        let hyp = Some(BufferLabel { name: Some("hyp"), width: 5 });
        let top = Some(BufferLabel { name: None, width: 5 });
        let ev = ping(1, 12_000_000_345);
        assert_eq!(
            line(&mut e, Style::Text, us, hyp, &ev),
            "  hyp:           worker-7     [001]    12.000000: ping:                 n=42"
        );
        assert_eq!(
            line(&mut e, Style::Text, us, top, &ev),
            "                 worker-7     [001]    12.000000: ping:                 n=42"
        );
        let lost = MergedItem::Lost { cpu: 0, lost: Lost::Count(4) };
        assert_eq!(line(&mut e, Style::Text, us, hyp, &lost), "  hyp: CPU:0 [4 EVENTS DROPPED]");
        let mut json = |label, item| {
            serde_json::from_str::<serde_json::Value>(&line(&mut e, Style::Json, us, label, item)).unwrap()
        };
        assert_eq!(json(hyp, &ev)["buffer"], "hyp");
        assert_eq!(json(top, &ev)["buffer"], serde_json::Value::Null);
        assert_eq!(json(hyp, &lost)["buffer"], "hyp");
        assert!(json(None, &ev).get("buffer").is_none(), "no buffer where there is one");
    }
}
