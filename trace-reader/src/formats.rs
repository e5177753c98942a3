//! Event formats: tracefs `format` descriptions, parsed, and event payloads decoded by them.
//!
//! A format describes one event: its id (the payload's `common_type`), name, the fields with
//! their C types, offsets and sizes, and the `print fmt` line. Producers publish theirs (hyp-sim
//! through FORMATS); the kernel's are in tracefs `events/SYSTEM/EVENT/format`. Payloads come
//! from buffers another process writes, so decoding checks every offset and never panics: a field
//! that does not fit is shown as missing.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;

/// One field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldFormat {
    /// C type, as written (`unsigned long long`, `__data_loc char[]`, `char`...).
    pub ty: String,
    /// Name, without array brackets.
    pub name: String,
    /// Byte offset in the payload.
    pub offset: usize,
    /// Bytes.
    pub size: usize,
    /// Signed integer.
    pub signed: bool,
    /// Element count, for `name[N]` arrays.
    pub array: Option<usize>,
    /// A flexible array (`name[]`): the rest of the payload.
    pub flexible: bool,
}

impl FieldFormat {
    /// A `__data_loc` field: a u32 `(length << 16) | offset` of bytes elsewhere in the payload.
    pub fn is_data_loc(&self) -> bool {
        self.ty.starts_with("__data_loc")
    }

    /// A character array or string.
    pub fn is_string(&self) -> bool {
        self.ty.contains("char") && (self.is_data_loc() || self.array.is_some() || self.flexible)
    }
}

/// One event's format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventFormat {
    /// Event id.
    pub id: u16,
    /// System (`hyp`, `ftrace`, `sched`...).
    pub system: String,
    /// Name.
    pub name: String,
    /// The common fields (`common_type`, ...).
    pub common: Vec<FieldFormat>,
    /// The event's own fields.
    pub fields: Vec<FieldFormat>,
    /// The `print fmt` value.
    pub print_fmt: String,
    /// The text it was parsed from (what a trace.dat stores).
    pub text: String,
    /// Fields the print fmt shows in hexadecimal.
    hex: Vec<String>,
}

/// Why a format text does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// A line the format needs is missing.
    #[error("format has no {0} line")]
    Missing(&'static str),
    /// A field line is malformed.
    #[error("malformed field line: {0}")]
    Field(String),
    /// A producer's formats do not say which system their events belong to.
    #[error("the event formats name no system: the producer must begin them with a `system: NAME` line")]
    NoSystem,
}

/// A decoded field value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// Unsigned integer.
    Unsigned(u64),
    /// Signed integer.
    Signed(i64),
    /// Unsigned integer the event's print format shows in hexadecimal.
    Hex(u64),
    /// A string.
    Str(String),
    /// An array of integers.
    Array(Vec<u64>),
    /// Bytes of an unusual width.
    Bytes(Vec<u8>),
    /// The field does not fit in the payload (a malformed event).
    Missing,
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Unsigned(v) => write!(f, "{v}"),
            Value::Signed(v) => write!(f, "{v}"),
            Value::Hex(v) => write!(f, "0x{v:x}"),
            // Escaped, so that one event is one line whatever a producer puts in its strings (a
            // trace_marker write ends in a newline; a string could forge a line of its own).
            Value::Str(s) => write_escaped(f, s),
            Value::Array(a) => {
                write!(f, "[")?;
                for (i, v) in a.iter().enumerate() {
                    write!(f, "{}{v}", if i == 0 { "" } else { "," })?;
                }
                write!(f, "]")
            }
            Value::Bytes(b) => b.iter().try_for_each(|x| write!(f, "{x:02x}")),
            Value::Missing => write!(f, "<missing>"),
        }
    }
}

impl Value {
    /// The value as JSON.
    /// The value as JSON: an integer a double cannot hold exactly (beyond ±2⁵³, where jq and
    /// JavaScript would round it) as a decimal string, so no reader changes it.
    pub fn to_json(&self) -> serde_json::Value {
        const EXACT: u64 = 1 << 53;
        match self {
            Value::Unsigned(v) | Value::Hex(v) if *v > EXACT => v.to_string().into(),
            Value::Unsigned(v) | Value::Hex(v) => (*v).into(),
            Value::Signed(v) if v.unsigned_abs() > EXACT => v.to_string().into(),
            Value::Signed(v) => (*v).into(),
            Value::Str(s) => s.clone().into(),
            Value::Array(a) => a.iter().map(|v| Value::Unsigned(*v).to_json()).collect(),
            Value::Bytes(_) => self.to_string().into(),
            Value::Missing => serde_json::Value::Null,
        }
    }
}

fn parse_field(line: &str) -> Result<FieldFormat, FormatError> {
    let bad = || FormatError::Field(line.trim().to_string());
    let mut decl = None;
    let (mut offset, mut size, mut signed) = (None, None, false);
    for part in line.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, value) = part.split_once(':').ok_or_else(bad)?;
        match key.trim() {
            "field" | "field special" => decl = Some(value.trim()),
            "offset" => offset = value.trim().parse().ok(),
            "size" => size = value.trim().parse().ok(),
            "signed" => signed = value.trim() == "1",
            _ => {}
        }
    }
    let decl = decl.ok_or_else(bad)?;
    let (ty, name) = decl.rsplit_once(' ').ok_or_else(bad)?;
    let (name, array, flexible) = match name.split_once('[') {
        Some((n, "]")) => (n, None, true),
        Some((n, rest)) => (n, rest.trim_end_matches(']').parse().ok(), false),
        None => (name, None, false),
    };
    // `__data_loc char[] name`: the brackets belong to the type.
    Ok(FieldFormat {
        ty: ty.trim().to_string(),
        name: name.to_string(),
        offset: offset.ok_or_else(bad)?,
        size: size.ok_or_else(bad)?,
        signed,
        array,
        flexible,
    })
}

/// Names of the fields `print_fmt` shows with a hexadecimal conversion (`%x`, `%llx`, `%p`...),
/// matched to its `REC->name` arguments in order.
fn hex_fields(print_fmt: &str) -> Vec<String> {
    let Some(end) = print_fmt.strip_prefix('"').and_then(|s| s.find('"')) else { return Vec::new() };
    let (fmt, args) = (&print_fmt[1..=end], &print_fmt[end + 2..]);
    let mut convs = Vec::new();
    let mut chars = fmt.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            continue;
        }
        if chars.peek() == Some(&'%') {
            chars.next();
            continue;
        }
        let conv = chars.by_ref().find(|c| c.is_ascii_alphabetic() && !matches!(c, 'l' | 'h' | 'z' | 'j' | 't' | 'q'));
        convs.push(conv.unwrap_or(' '));
    }
    // Arguments are separated by top-level commas.
    let (mut depth, mut start, mut parts) = (0, 0, Vec::new());
    for (i, c) in args.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&args[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&args[start..]);
    let args: Vec<&str> = parts.into_iter().map(str::trim).filter(|a| !a.is_empty()).collect();
    convs
        .iter()
        .zip(args)
        .filter(|(c, _)| matches!(c, 'x' | 'X' | 'p'))
        // `REC->name`, possibly behind a cast such as `(void *)REC->ip`.
        .filter_map(|(_, a)| {
            let (_, name) = a.rsplit_once("REC->")?;
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_').then(|| name.to_string())
        })
        .collect()
}

impl EventFormat {
    /// Parses one `format` file's text; `system` is where the event belongs.
    pub fn parse(system: &str, text: &str) -> Result<Self, FormatError> {
        let mut name = None;
        let mut id = None;
        let mut print_fmt = None;
        let (mut common, mut fields) = (Vec::new(), Vec::new());
        for line in text.lines() {
            let trimmed = line.trim();
            if let Some(v) = trimmed.strip_prefix("name:") {
                name = Some(v.trim().to_string());
            } else if let Some(v) = trimmed.strip_prefix("ID:") {
                id = v.trim().parse::<u16>().ok();
            } else if let Some(v) = trimmed.strip_prefix("print fmt:") {
                print_fmt = Some(v.trim().to_string());
            } else if trimmed.starts_with("field") {
                let f = parse_field(trimmed)?;
                if f.name.starts_with("common_") { common.push(f) } else { fields.push(f) }
            }
        }
        let print_fmt = print_fmt.unwrap_or_default();
        Ok(Self {
            id: id.ok_or(FormatError::Missing("ID:"))?,
            system: system.to_string(),
            name: name.ok_or(FormatError::Missing("name:"))?,
            common,
            fields,
            hex: hex_fields(&print_fmt),
            print_fmt,
            text: text.to_string(),
        })
    }

    /// Decodes the event's own fields from `payload`.
    pub fn decode(&self, payload: &[u8]) -> Vec<(String, Value)> {
        self.fields.iter().map(|f| (f.name.clone(), self.value(f, payload))).collect()
    }

    fn value(&self, f: &FieldFormat, payload: &[u8]) -> Value {
        if f.flexible {
            return match payload.get(f.offset..) {
                Some(rest) if f.is_string() => Value::Str(c_string(rest)),
                Some(rest) => Value::Bytes(rest.to_vec()),
                None => Value::Missing,
            };
        }
        let Some(bytes) = payload.get(f.offset..f.offset.saturating_add(f.size)) else { return Value::Missing };
        if f.is_data_loc() {
            let Ok(loc) = <[u8; 4]>::try_from(&bytes[..bytes.len().min(4)]) else { return Value::Missing };
            let loc = u32::from_ne_bytes(loc);
            let (len, at) = ((loc >> 16) as usize, (loc & 0xffff) as usize);
            return match payload.get(at..at.saturating_add(len)) {
                Some(data) if f.is_string() => Value::Str(c_string(data)),
                Some(data) => Value::Bytes(data.to_vec()),
                None => Value::Missing,
            };
        }
        if f.is_string() {
            return Value::Str(c_string(bytes));
        }
        if let Some(n) = f.array.filter(|&n| n > 0 && f.size.is_multiple_of(n)) {
            let width = f.size / n;
            return Value::Array(bytes.chunks(width).map(int).collect());
        }
        match f.size {
            1 | 2 | 4 | 8 if f.signed => {
                let v = int(bytes);
                let shift = 64 - 8 * f.size as u32;
                Value::Signed(((v << shift) as i64) >> shift)
            }
            1 | 2 | 4 | 8 if self.hex.contains(&f.name) => Value::Hex(int(bytes)),
            1 | 2 | 4 | 8 => Value::Unsigned(int(bytes)),
            _ => Value::Bytes(bytes.to_vec()),
        }
    }
}

/// A little-endian-on-x86 (native) integer of 1 to 8 bytes.
fn int(bytes: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    let n = bytes.len().min(8);
    if cfg!(target_endian = "little") {
        b[..n].copy_from_slice(&bytes[..n]);
        u64::from_le_bytes(b)
    } else {
        b[8 - n..].copy_from_slice(&bytes[..n]);
        u64::from_be_bytes(b)
    }
}

/// `s` with backslashes and control characters escaped (`\\`, `\n`, `\t`, `\r`, `\xNN`), the rest
/// as it is.
fn write_escaped(f: &mut std::fmt::Formatter<'_>, s: &str) -> std::fmt::Result {
    use std::fmt::Write as _;
    for c in s.chars() {
        match c {
            '\\' => f.write_str("\\\\")?,
            '\n' => f.write_str("\\n")?,
            '\t' => f.write_str("\\t")?,
            '\r' => f.write_str("\\r")?,
            c if c.is_control() => write!(f, "\\x{:02x}", u32::from(c))?,
            c => f.write_char(c)?,
        }
    }
    Ok(())
}

fn c_string(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// The formats of every event a source may produce, by id.
#[derive(Debug, Clone, Default)]
pub struct Formats {
    by_id: HashMap<u16, EventFormat>,
}

impl Formats {
    /// Parses a producer's FORMATS blob: a `system: NAME` line naming the system all its events
    /// belong to, then `format` files one after the other, each starting with its `name:` line.
    /// A blob without formats needs no system.
    pub fn from_blob(blob: &[u8]) -> Result<Self, FormatError> {
        let text = String::from_utf8_lossy(blob);
        let mut formats = Self::default();
        let mut starts: Vec<usize> = text
            .match_indices("name:")
            .map(|(i, _)| i)
            .filter(|&i| i == 0 || text.as_bytes()[i - 1] == b'\n')
            .collect();
        let preamble = &text[..starts.first().copied().unwrap_or(text.len())];
        let system = preamble.lines().find_map(|line| line.trim().strip_prefix("system:")).map(str::trim);
        starts.push(text.len());
        for w in starts.windows(2) {
            let system = system.filter(|s| !s.is_empty()).ok_or(FormatError::NoSystem)?;
            formats.insert(EventFormat::parse(system, &text[w[0]..w[1]])?);
        }
        Ok(formats)
    }

    /// Reads every `events/SYSTEM/EVENT/format` under a tracefs directory: the formats, and
    /// each one that does not parse (`SYSTEM:EVENT` and why), whose events print raw.
    pub fn from_tracefs(tracing: &Path) -> std::io::Result<(Self, Vec<(String, FormatError)>)> {
        let mut formats = Self::default();
        let mut unparsed = Vec::new();
        for system in std::fs::read_dir(tracing.join("events"))? {
            let system = system?;
            if !system.file_type()?.is_dir() {
                continue;
            }
            let sys_name = system.file_name().to_string_lossy().into_owned();
            for event in std::fs::read_dir(system.path())? {
                let event = event?;
                let Ok(text) = std::fs::read_to_string(event.path().join("format")) else { continue };
                match EventFormat::parse(&sys_name, &text) {
                    Ok(format) => formats.insert(format),
                    Err(e) => unparsed.push((format!("{sys_name}:{}", event.file_name().to_string_lossy()), e)),
                }
            }
        }
        Ok((formats, unparsed))
    }
    /// Adds a format.
    pub fn insert(&mut self, f: EventFormat) {
        self.by_id.insert(f.id, f);
    }

    /// The format of event `id`.
    pub fn get(&self, id: u16) -> Option<&EventFormat> {
        self.by_id.get(&id)
    }

    /// Every format.
    pub fn iter(&self) -> impl Iterator<Item = &EventFormat> {
        self.by_id.values()
    }

    /// Number of formats.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// True if there are none.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

/// An event, decoded for display.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// Event name (`<unknown N>` for an id without a format).
    pub name: String,
    /// `common_pid`.
    pub pid: i32,
    /// Field names and values; for an unknown event, one `raw` field with the payload bytes.
    pub fields: Vec<(String, Value)>,
}

/// Decodes a payload (`common_type` first) with `formats`. Unknown events are kept, raw.
pub fn decode(formats: &Formats, payload: &[u8]) -> Decoded {
    let id = payload.get(0..2).map_or(0, |b| u16::from_ne_bytes([b[0], b[1]]));
    let pid = payload.get(4..8).map_or(-1, |b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
    match formats.get(id) {
        Some(f) => Decoded { name: f.name.clone(), pid, fields: f.decode(payload) },
        None => Decoded {
            name: format!("<unknown {id}>"),
            pid,
            fields: vec![("raw".into(), Value::Bytes(payload.to_vec()))],
        },
    }
}

impl Decoded {
    /// `field=value field=value`.
    pub fn fields_text(&self) -> String {
        let mut out = String::new();
        for (k, v) in &self.fields {
            let _ = write!(out, "{}{k}={v}", if out.is_empty() { "" } else { " " });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HCALL: &str = "name: host_hcall\nID: 3\nformat:\n\
        \tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\
        \tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n\n\
        \tfield:unsigned long long id;\toffset:8;\tsize:8;\tsigned:0;\n\
        \tfield:int delta;\toffset:16;\tsize:4;\tsigned:1;\n\
        \tfield:unsigned short tag[2];\toffset:20;\tsize:4;\tsigned:0;\n\
        \tfield:__data_loc char[] msg;\toffset:24;\tsize:4;\tsigned:0;\n\
        \tfield:char tail[];\toffset:31;\tsize:0;\tsigned:0;\n\n\
        print fmt: \"id=0x%llx delta=%d %s\", REC->id, REC->delta, __get_str(msg)\n";

    fn payload() -> Vec<u8> {
        let mut p = vec![0u8; 32];
        p[0..2].copy_from_slice(&3u16.to_ne_bytes());
        p[4..8].copy_from_slice(&7i32.to_ne_bytes());
        p[8..16].copy_from_slice(&0xc600_0001u64.to_ne_bytes());
        p[16..20].copy_from_slice(&(-5i32).to_ne_bytes());
        p[20..24].copy_from_slice(&[1, 0, 2, 0]);
        p[24..28].copy_from_slice(&((3u32 << 16) | 28).to_ne_bytes());
        p[28..31].copy_from_slice(b"hi\0");
        p[31] = b'!';
        p
    }

    #[test]
    fn formats_parse_and_payloads_decode_by_name() {
        let f = EventFormat::parse("hyp", HCALL).unwrap();
        assert_eq!((f.id, f.name.as_str(), f.common.len(), f.fields.len()), (3, "host_hcall", 2, 5));
        assert!(f.fields[4].flexible && f.fields[4].is_string());
        assert_eq!(f.fields[2].array, Some(2));
        assert!(f.fields[3].is_data_loc() && f.fields[3].is_string());
        let mut formats = Formats::default();
        formats.insert(f);
        let d = decode(&formats, &payload());
        assert_eq!(d.pid, 7);
        assert_eq!(d.fields_text(), "id=0xc6000001 delta=-5 tag=[1,2] msg=hi tail=!");
    }

    #[test]
    fn unknown_and_malformed_events_are_shown_not_dropped() {
        let mut formats = Formats::default();
        formats.insert(EventFormat::parse("hyp", HCALL).unwrap());
        let mut p = payload();
        p[0] = 9;
        assert_eq!(decode(&formats, &p).name, "<unknown 9>");
        let short = &payload()[..12];
        let d = decode(&formats, short);
        assert_eq!(d.fields[0].1, Value::Missing);
        let mut bad_loc = payload();
        bad_loc[24..28].copy_from_slice(&((40u32 << 16) | 60000).to_ne_bytes());
        assert_eq!(decode(&formats, &bad_loc).fields[3].1, Value::Missing);
        assert_eq!(decode(&formats, &[]).name, "<unknown 0>");
    }

    #[test]
    fn a_blob_of_formats_splits_on_name_lines() {
        let blob = format!("system: hyp\n{HCALL}\n{}", HCALL.replace("host_hcall", "other").replace("ID: 3", "ID: 4"));
        let f = Formats::from_blob(blob.as_bytes()).unwrap();
        assert_eq!(f.len(), 2);
        assert_eq!(f.get(4).unwrap().name, "other");
        assert!(f.iter().all(|f| f.system == "hyp"), "the blob's system line names every event's system");
        assert!(Formats::from_blob(b"system: hyp\nname: x\n").is_err(), "no ID line");
    }

    #[test]
    fn a_blob_of_formats_names_its_system() {
        assert_eq!(Formats::from_blob(HCALL.as_bytes()).unwrap_err(), FormatError::NoSystem);
        assert_eq!(Formats::from_blob(format!("system:\n{HCALL}").as_bytes()).unwrap_err(), FormatError::NoSystem);
        let f = Formats::from_blob(format!("system: guest\n{HCALL}").as_bytes()).unwrap();
        assert_eq!(f.get(3).unwrap().system, "guest");
        assert!(Formats::from_blob(b"no formats here").unwrap().is_empty(), "no events, no system needed");
    }

    #[test]
    fn strings_print_on_one_line() {
        let v = Value::Str("hello\n  0 [LOST 5 EVENTS]\t\\ \u{1b} it's".into());
        assert_eq!(v.to_string(), "hello\\n  0 [LOST 5 EVENTS]\\t\\\\ \\x1b it's");
    }

    #[test]
    fn a_kernel_format_that_does_not_parse_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let event = |name: &str, text: &str| {
            let path = dir.path().join("events/sched").join(name);
            std::fs::create_dir_all(&path).unwrap();
            std::fs::write(path.join("format"), text).unwrap();
        };
        event(
            "good",
            "name: good\nID: 7\nformat:\n\tfield:int pid;\toffset:8;\tsize:4;\tsigned:1;\n\nprint fmt: \"\"\n",
        );
        event("garbled", "name: garbled\nID: 8\nformat:\n\tfield:int pid;\toffset:x;\tsize:4;\tsigned:1;\n");
        let (formats, unparsed) = Formats::from_tracefs(dir.path()).unwrap();
        assert_eq!(formats.get(7).map(|f| f.name.as_str()), Some("good"));
        assert!(formats.get(8).is_none());
        assert_eq!(unparsed.len(), 1);
        assert_eq!(unparsed[0].0, "sched:garbled");
    }

    #[test]
    fn json_keeps_every_integer_exact() {
        let func_id = 0x8400_0000_0000_0004u64;
        assert_eq!(Value::Hex(func_id).to_json(), serde_json::json!("9511602413006487556"));
        assert_eq!(Value::Unsigned(1 << 53).to_json(), serde_json::json!(9007199254740992u64), "a double holds it");
        assert_eq!(Value::Signed(-(1 << 60)).to_json(), serde_json::json!("-1152921504606846976"));
        assert_eq!(Value::Signed(-5).to_json(), serde_json::json!(-5));
        assert_eq!(Value::Array(vec![1, u64::MAX]).to_json(), serde_json::json!([1, "18446744073709551615"]));
    }

    #[test]
    fn hex_conversions_are_found_in_print_fmt() {
        let h = hex_fields("\"a=%llx b=%d c=%#x %% d=%p e=%x\", REC->a, REC->b, (int)REC->c, REC->d, REC->e + 1");
        assert_eq!(h, ["a", "c", "d"]);
        assert!(hex_fields("no quotes").is_empty());
    }
}
