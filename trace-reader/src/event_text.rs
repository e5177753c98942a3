//! An event's name, task and text as `trace-cmd report` prints them: the text is what
//! libtraceevent (the library trace-cmd prints with, [`traceevent`]) makes of the event by its
//! `print fmt` and plugins, with the recording's kernel symbols and task names.
//!
//! An event libtraceevent cannot print (its format did not parse there, or the record does not
//! hold what its format says) is printed field by field, `field=value ...`, as [`decode`] reads
//! it, with a warning the first time for each event.

use crate::formats::{Formats, decode};
use crate::symbols::Symbols;
use std::collections::{HashMap, HashSet};
use traceevent::{Record, Tep};

/// An event, ready to print.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventLine {
    /// The event's name (`<unknown N>` for an id without a format).
    pub name: String,
    /// `common_pid`: the task it was recorded in.
    pub pid: i32,
    /// The task's name: `<idle>` for 0, `<...>` for a task the recording did not name.
    pub comm: String,
    /// Its text, on one line.
    pub info: String,
}

/// Prints events of one source or file.
#[derive(Debug)]
pub struct EventText {
    formats: Formats,
    /// None where libtraceevent could not be set up (every event prints field by field).
    tep: Option<Tep>,
    /// Why libtraceevent did not take the format of each id it did not.
    refused: HashMap<u16, String>,
    /// Ids of the events printed field by field, with a warning, so far.
    warned: HashSet<u16>,
    /// The running producer whose threads the events name, if they come from one live.
    live_producer: Option<LiveProducer>,
}

/// A running producer whose threads are named from `/proc` as its events come.
#[derive(Debug)]
struct LiveProducer {
    /// Its process id, in this pid namespace.
    pid: u32,
    /// The thread ids looked up so far, named or not: each is looked up once.
    looked_up: HashSet<i32>,
}

impl EventText {
    /// The printer of events of `formats`, named with `symbols`, from ring-buffer pages of
    /// `page_size` bytes.
    pub fn new(formats: Formats, symbols: &Symbols, page_size: u32) -> Self {
        let mut refused = HashMap::new();
        let tep = match Tep::new(page_size) {
            Ok(mut tep) => {
                // Plugins first, as trace-cmd loads them: they attach to the events parsed after.
                tep.load_plugins();
                let mut ordered: Vec<_> = formats.iter().collect();
                ordered.sort_by_key(|f| f.id);
                for f in ordered {
                    if let Err(e) = tep.parse_event(&f.system, &f.text) {
                        refused.insert(f.id, e.to_string());
                    }
                }
                let lists = [
                    (&symbols.kallsyms, Tep::parse_kallsyms as fn(&mut Tep, &str) -> _),
                    (&symbols.printk_formats, Tep::parse_printk_formats),
                    (&symbols.cmdlines, Tep::parse_saved_cmdlines),
                ];
                for (text, parse) in lists {
                    if let Err(e) = parse(&mut tep, text) {
                        eprintln!("trace-reader: warning: {e}: what it names is left unnamed");
                    }
                }
                Some(tep)
            }
            Err(e) => {
                eprintln!("trace-reader: warning: {e}; events are printed field by field");
                None
            }
        };
        Self { formats, tep, refused, warned: HashSet::new(), live_producer: None }
    }

    /// Also names the threads of the running producer `pid` (in this pid namespace), if there
    /// is one, that the events name and the symbols do not, from `/proc` (see
    /// [`crate::symbols::producer_thread_name`]), each when its first event comes: for events
    /// read live from that producer, whose threads exist while they make them.
    pub fn naming_threads_of(mut self, producer: Option<u32>) -> Self {
        self.live_producer = producer.map(|pid| LiveProducer { pid, looked_up: HashSet::new() });
        self
    }

    /// The event formats.
    pub fn formats(&self) -> &Formats {
        &self.formats
    }

    /// The name of task `pid`.
    pub fn comm(&mut self, pid: i32) -> String {
        self.look_up(pid);
        match &self.tep {
            Some(tep) => tep.comm(pid),
            None if pid == 0 => "<idle>".to_string(),
            None => "<...>".to_string(),
        }
    }

    /// Names `pid` from `/proc` if it is a thread of the live producer the symbols do not name,
    /// the first time it is asked for.
    fn look_up(&mut self, pid: i32) {
        let (Some(producer), Some(tep)) = (&mut self.live_producer, &mut self.tep) else { return };
        if pid <= 0 || !producer.looked_up.insert(pid) || tep.comm(pid) != "<...>" {
            return;
        }
        if let Some(name) = crate::symbols::producer_thread_name(producer.pid, pid)
            && let Err(e) = tep.parse_saved_cmdlines(&format!("{pid} {name}\n"))
        {
            eprintln!("trace-reader: warning: naming task {pid} {name}: {e}");
        }
    }

    /// The event recorded on `cpu` at `ts` with `payload`.
    pub fn line(&mut self, cpu: u32, ts: u64, payload: &[u8]) -> EventLine {
        let id = payload.get(0..2).map(|b| u16::from_ne_bytes([b[0], b[1]]));
        let pid = payload.get(4..8).map_or(-1, |b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
        let comm = self.comm(pid);
        let format = id.and_then(|id| self.formats.get(id));
        // Err(why) where libtraceevent could have printed it and did not.
        let printed = match (&mut self.tep, format) {
            (Some(tep), Some(f)) => match self.refused.get(&f.id) {
                Some(why) => Some(Err(why.clone())),
                None => Some(tep.info(Record { data: payload, cpu, ts }).map_err(|e| e.to_string())),
            },
            _ => None,
        };
        if let (Some(Ok(text)), Some(f)) = (&printed, format) {
            return EventLine { name: f.name.clone(), pid, comm, info: one_line(text) };
        }
        if let (Some(Err(why)), Some(f)) = (printed, format)
            && self.warned.insert(f.id)
        {
            eprintln!("trace-reader: warning: {}:{}: {why}; its events are printed field by field", f.system, f.name);
        }
        let decoded = decode(&self.formats, payload);
        let info = decoded.fields_text();
        EventLine { name: decoded.name, pid, comm, info }
    }
}

/// `text` as one line: without the newline it may end with (trace-cmd drops it too), other line
/// breaks and control characters but tabs escaped (`\n`, `\r`, `\xNN`), so that a string in an
/// event cannot start a line of its own.
fn one_line(text: &str) -> String {
    let text = text.strip_suffix('\n').unwrap_or(text);
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push('\t'),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::EventFormat;

    const SWITCH: &str = "name: switch\nID: 3\nformat:\n\
        \tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\
        \tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n\n\
        \tfield:long state;\toffset:8;\tsize:8;\tsigned:1;\n\
        \tfield:__data_loc char[] msg;\toffset:16;\tsize:4;\tsigned:0;\n\n\
        print fmt: \"state=%s msg=%s\", REC->state ? __print_flags(REC->state, \"|\", { 1, \"S\" }) : \"R\", __get_str(msg)\n";

    fn payload(pid: i32, state: i64, msg: &[u8]) -> Vec<u8> {
        let mut p = vec![0u8; 20];
        p[0..2].copy_from_slice(&3u16.to_ne_bytes());
        p[4..8].copy_from_slice(&pid.to_ne_bytes());
        p[8..16].copy_from_slice(&state.to_ne_bytes());
        p[16..20].copy_from_slice(&(((msg.len() as u32) << 16) | 20).to_ne_bytes());
        p.extend_from_slice(msg);
        p
    }

    fn text() -> EventText {
        let mut formats = Formats::default();
        formats.insert(EventFormat::parse("demo", SWITCH).unwrap());
        let symbols = Symbols { cmdlines: "12 bash\n".into(), ..Symbols::default() };
        EventText::new(formats, &symbols, 4096)
    }

    #[test]
    fn events_print_as_their_print_format_says_with_their_task() {
        let mut t = text();
        let line = t.line(0, 5, &payload(12, 0, b"hi\n\0"));
        assert_eq!(
            line,
            EventLine { name: "switch".into(), pid: 12, comm: "bash".into(), info: "state=R msg=hi".into() }
        );
        let line = t.line(0, 5, &payload(0, 1, b"a\nb\x1b\0"));
        assert_eq!((line.comm.as_str(), line.info.as_str()), ("<idle>", "state=S msg=a\\nb\\x1b"));
    }

    #[test]
    fn events_libtraceevent_cannot_print_are_printed_field_by_field() {
        let mut t = text();
        let short = &payload(12, 0, b"hi\0")[..12];
        assert_eq!(t.line(0, 5, short).info, "state=<missing> msg=<missing>");
        let mut outside = payload(12, 1, b"hi\0");
        outside[16..20].copy_from_slice(&((200u32 << 16) | 20).to_ne_bytes());
        assert_eq!(t.line(0, 5, &outside).info, "state=1 msg=<missing>");
        let line = t.line(0, 5, &[9, 0, 0, 0, 7, 0, 0, 0]);
        assert_eq!((line.name.as_str(), line.info.as_str()), ("<unknown 9>", "raw=0900000007000000"));
    }
}
