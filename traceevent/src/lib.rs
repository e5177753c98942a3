//! # traceevent: kernel trace events printed by libtraceevent
//!
//! A safe wrapper over libtraceevent, the library `trace-cmd report` and `perf` print events
//! with. A [`Tep`] is given event formats (tracefs `format` texts, or a producer's in the same
//! form), kernel symbols, `printk` formats and task names, and gives back an event's text as
//! the event's `print fmt` says (`prev_state=R`, addresses as symbols), through the plugins
//! libtraceevent has installed, as trace-cmd does:
//!
//! ```text
//!   Tep::new(page_size) ─► load_plugins ─► parse_event(system, format)*
//!                          parse_kallsyms, parse_printk_formats, parse_saved_cmdlines
//!   info(Record { data, cpu, ts }) ─► "prev_comm=... prev_pid=... ==> next_comm=..."
//!   comm(pid)                      ─► "bash", "<idle>", "<...>"
//! ```
//!
//! Records may come from anywhere (a file, another process): one is handed to libtraceevent only
//! when what libtraceevent reads of it lies inside it ([`extents`]); otherwise [`Tep::info`] is
//! an error and the caller prints the event some other way.

mod extents;
mod ffi;

use std::collections::{HashMap, HashSet};
use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::ptr::NonNull;

/// What libtraceevent could not do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// libtraceevent could not allocate its state.
    #[error("libtraceevent could not allocate its state (out of memory)")]
    Alloc,
    /// A text to hand over holds a NUL byte, which would end it early.
    #[error("{0} holds a NUL byte")]
    Nul(&'static str),
    /// libtraceevent did not parse an event format.
    #[error("libtraceevent does not parse the format of {system}:{name}: {reason}")]
    Format {
        /// The event's system.
        system: String,
        /// The event's name (as the format's `name:` line gives it).
        name: String,
        /// libtraceevent's reason.
        reason: String,
    },
    /// libtraceevent did not parse a list (kallsyms, printk formats, task names).
    #[error("libtraceevent does not parse the {0}")]
    List(&'static str),
    /// libtraceevent finds no `common_type` field where it looks: in its lowest-numbered event
    /// format, which did not parse.
    #[error("the lowest-numbered event format has no common_type field")]
    NoCommonType,
    /// No parsed format has the record's event id.
    #[error("no parsed format for event id {0}")]
    UnknownEvent(i32),
    /// The record is too short for its format's fields.
    #[error("{name}: the event is {len} bytes, its format's fields need {need}")]
    TooShort {
        /// The event's name.
        name: String,
        /// The record's size.
        len: usize,
        /// The bytes its fields span.
        need: usize,
    },
    /// A `__data_loc` field or a print function's count points outside the record.
    #[error("{name}: field {field} points outside the event")]
    OutOfBounds {
        /// The event's name.
        name: String,
        /// The field.
        field: String,
    },
    /// libtraceevent's output buffer failed (out of memory).
    #[error("libtraceevent's output buffer failed")]
    Output,
}

/// One event record: its bytes (starting with `common_type`), CPU and timestamp.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    /// The event's payload, as the ring buffer holds it.
    pub data: &'a [u8],
    /// The CPU it was recorded on.
    pub cpu: u32,
    /// Its timestamp.
    pub ts: u64,
}

/// A field's place, as libtraceevent parsed it.
#[derive(Debug, Clone)]
struct Field {
    name: String,
    offset: usize,
    size: usize,
    /// `__data_loc` (`Some(false)`) or `__rel_loc` (`Some(true)`).
    dynamic: Option<bool>,
}

/// What must hold of a record of one event before libtraceevent reads it.
#[derive(Debug, Clone)]
struct Extent {
    name: String,
    /// Bytes every field spans.
    fixed: usize,
    /// Its `__data_loc` and `__rel_loc` fields.
    dynamic: Vec<Field>,
    /// Fields whose values are counts of bytes or elements a print function reads.
    counts: Vec<Field>,
}

/// A libtraceevent handle: its event formats, symbols and task names, and a buffer for text.
///
/// Neither `Send` nor `Sync`: libtraceevent keeps caches in it as it prints.
pub struct Tep {
    raw: NonNull<ffi::TepHandle>,
    plugins: Option<NonNull<ffi::TepPluginList>>,
    seq: ffi::TraceSeq,
    /// Each parsed event's extent, by id: the events it may print.
    extents: HashMap<i32, Extent>,
    /// The id of every event libtraceevent holds, parsed or not.
    ids: HashSet<i32>,
    /// Bytes the common fields of every parsed event span: libtraceevent finds `common_type`
    /// and `common_pid` with the first event's.
    common: usize,
    /// A copy of the record being printed, followed by at least [`extents::PADDING`] zeros.
    scratch: Vec<u8>,
    /// The length of the record copied last: the bytes past it are zeros.
    dirty: usize,
}

impl std::fmt::Debug for Tep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tep").field("events", &self.extents.len()).finish_non_exhaustive()
    }
}

impl Tep {
    /// A handle for records of this machine's byte order and word size, from ring-buffer pages
    /// of `page_size` bytes.
    pub fn new(page_size: u32) -> Result<Self, Error> {
        // SAFETY: tep_alloc takes nothing and returns a new handle or NULL.
        let raw = NonNull::new(unsafe { ffi::tep_alloc() }).ok_or(Error::Alloc)?;
        let endian = if cfg!(target_endian = "big") { ffi::TEP_BIG_ENDIAN } else { ffi::TEP_LITTLE_ENDIAN };
        let mut seq = ffi::TraceSeq { buffer: std::ptr::null_mut(), buffer_size: 0, len: 0, readpos: 0, state: 0 };
        // SAFETY: `raw` is a live handle; these setters store plain values in it. `seq` is a
        // trace_seq for trace_seq_init to fill (it allocates its buffer, freed in Drop).
        unsafe {
            ffi::tep_set_file_bigendian(raw.as_ptr(), endian);
            ffi::tep_set_local_bigendian(raw.as_ptr(), endian);
            ffi::tep_set_long_size(raw.as_ptr(), std::mem::size_of::<usize>() as c_int);
            ffi::tep_set_page_size(raw.as_ptr(), c_int::try_from(page_size).unwrap_or(c_int::MAX));
            ffi::trace_seq_init(&mut seq);
        }
        let tep = Self {
            raw,
            plugins: None,
            seq,
            extents: HashMap::new(),
            ids: HashSet::new(),
            common: 0,
            scratch: Vec::new(),
            dirty: 0,
        };
        if tep.seq.buffer.is_null() {
            return Err(Error::Alloc);
        }
        Ok(tep)
    }

    /// Loads libtraceevent's installed plugins, which print some events their own way (as
    /// trace-cmd shows `sched_switch`: `bash:12 [120] S ==> swapper/0:0 [120]`). Call it before
    /// the formats are parsed, as trace-cmd does.
    pub fn load_plugins(&mut self) {
        if self.plugins.is_none() {
            // SAFETY: `raw` is a live handle; the list returned is unloaded in Drop.
            self.plugins = NonNull::new(unsafe { ffi::tep_load_plugins(self.raw.as_ptr()) });
        }
    }

    /// Parses the format text of an event of `system` (a tracefs `format` file's contents).
    pub fn parse_event(&mut self, system: &str, format: &str) -> Result<(), Error> {
        let name = format.lines().find_map(|l| l.trim().strip_prefix("name:")).unwrap_or("?").trim().to_string();
        let fail = |reason: String| Error::Format { system: system.to_string(), name: name.clone(), reason };
        let c_system = CString::new(system).map_err(|_| Error::Nul("an event's system"))?;
        let mut event: *mut ffi::TepEventHead = std::ptr::null_mut();
        // SAFETY: `raw` is live; `format` is passed with its length (libtraceevent copies what it
        // keeps), `c_system` is NUL-terminated, `event` receives a pointer the handle owns.
        let err = unsafe {
            ffi::tep_parse_format(
                self.raw.as_ptr(),
                &mut event,
                format.as_ptr().cast::<c_char>(),
                format.len() as std::ffi::c_ulong,
                c_system.as_ptr(),
            )
        };
        // libtraceevent adds every event whose name and id it read, returning 0, even one whose
        // fields or print format it did not parse (marked FAILED); any other result added none.
        let event = match NonNull::new(event) {
            Some(event) if err == 0 => event,
            _ => return Err(fail(self.strerror(err))),
        };
        // SAFETY: an added event lives as long as the handle.
        let (id, flags) = unsafe { ((*event.as_ptr()).id, (*event.as_ptr()).flags) };
        let common = fields(event, true);
        let end = |fs: &[Field]| fs.iter().map(|f| f.offset.saturating_add(f.size)).max().unwrap_or(0);
        // Every event it holds counts: it finds the common fields with its lowest-numbered one.
        self.common = self.common.max(end(&common));
        if !self.ids.insert(id) {
            // Which of the two it would print an event of this id with is its choice: neither.
            self.extents.remove(&id);
            return Err(fail(format!("another format has id {id}")));
        }
        if flags & ffi::TEP_EVENT_FL_FAILED != 0 {
            return Err(fail("its fields or its print format do not parse".into()));
        }
        let own = fields(event, false);
        let print_fmt = format.split_once("print fmt:").map_or("", |(_, p)| p);
        let counts = extents::counts(print_fmt).map_err(|e| fail(format!("{}: its reads cannot be bounded", e.0)))?;
        let counts = counts
            .into_iter()
            .map(|extents::Count::Field(f)| {
                own.iter()
                    .chain(&common)
                    .find(|field| field.name == f)
                    .cloned()
                    .ok_or_else(|| fail(format!("no field {f}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let dynamic = own.iter().chain(&common).filter(|f| f.dynamic.is_some()).cloned().collect();
        let extent = Extent { name, fixed: end(&common).max(end(&own)), dynamic, counts };
        self.extents.insert(id, extent);
        Ok(())
    }

    /// Parses `/proc/kallsyms` text: what addresses are named with (`%pS`, function events).
    pub fn parse_kallsyms(&mut self, text: &str) -> Result<(), Error> {
        self.parse_list(text, "kernel symbols", ffi::tep_parse_kallsyms)
    }

    /// Parses tracefs `printk_formats` text: the format strings `bprint` events point to.
    pub fn parse_printk_formats(&mut self, text: &str) -> Result<(), Error> {
        self.parse_list(text, "printk formats", ffi::tep_parse_printk_formats)
    }

    /// Parses tracefs `saved_cmdlines` text (`pid comm` lines): task names.
    pub fn parse_saved_cmdlines(&mut self, text: &str) -> Result<(), Error> {
        self.parse_list(text, "saved task names", ffi::tep_parse_saved_cmdlines)
    }

    fn parse_list(
        &mut self,
        text: &str,
        what: &'static str,
        parse: unsafe extern "C" fn(*mut ffi::TepHandle, *const c_char) -> c_int,
    ) -> Result<(), Error> {
        if text.is_empty() {
            return Ok(());
        }
        let text = CString::new(text).map_err(|_| Error::Nul(what))?;
        // SAFETY: `raw` is live and `text` NUL-terminated; the parsers copy what they keep.
        match unsafe { parse(self.raw.as_ptr(), text.as_ptr()) } {
            0 => Ok(()),
            _ => Err(Error::List(what)),
        }
    }

    /// The name of task `pid`, as trace-cmd shows it: from the saved task names, `<idle>` for
    /// 0, `<...>` for a task not among them.
    pub fn comm(&self, pid: i32) -> String {
        // SAFETY: `raw` is live; the result is NULL or a string the handle owns (or a static).
        let comm = unsafe { ffi::tep_data_comm_from_pid(self.raw.as_ptr(), pid) };
        if comm.is_null() {
            return "<...>".to_string();
        }
        // SAFETY: a NUL-terminated string that lives as long as the handle, unchanged meanwhile.
        unsafe { CStr::from_ptr(comm) }.to_string_lossy().into_owned()
    }

    /// The event's text as its print format (or a plugin) makes it: what `trace-cmd report`
    /// prints after the event's name. An error when the record is not one libtraceevent can read
    /// safely: an event it did not parse, or fields outside the record.
    pub fn info(&mut self, record: Record<'_>) -> Result<String, Error> {
        let data = record.data;
        if self.ids.is_empty() || data.len() < self.common {
            return Err(Error::TooShort { name: "an event".into(), len: data.len(), need: self.common });
        }
        // The zeros after the record: those past the last record's end are zeros already.
        let dirty = self.dirty;
        if self.scratch.len() < data.len() + extents::PADDING {
            self.scratch.resize(data.len() + extents::PADDING, 0);
        }
        self.scratch[..data.len()].copy_from_slice(data);
        if dirty > data.len() {
            self.scratch[data.len()..dirty].fill(0);
        }
        self.dirty = data.len();
        let mut rec = ffi::TepRecord {
            ts: record.ts,
            offset: 0,
            missed_events: 0,
            record_size: c_int::try_from(data.len()).map_err(|_| Error::UnknownEvent(-1))?,
            size: c_int::try_from(data.len()).map_err(|_| Error::UnknownEvent(-1))?,
            data: self.scratch.as_mut_ptr().cast::<c_void>(),
            cpu: c_int::try_from(record.cpu).unwrap_or(c_int::MAX),
            ref_count: 1,
            locked: 1,
            priv_: std::ptr::null_mut(),
        };
        // SAFETY: libtraceevent holds an event and the record holds the common fields of every
        // one (it reads `common_type` where its lowest-numbered event has it).
        let id = unsafe { ffi::tep_data_type(self.raw.as_ptr(), &mut rec) };
        if id < 0 {
            return Err(Error::NoCommonType);
        }
        let extent = self.extents.get(&id).ok_or(Error::UnknownEvent(id))?;
        check(extent, data)?;
        // SAFETY: the record's event is one parsed here, every field it has, every range its
        // `__data_loc` fields give and every count its print functions take lie inside the
        // record, followed by zeros (see `extents`); `seq` is initialised.
        unsafe {
            ffi::trace_seq_reset(&mut self.seq);
            ffi::tep_print_event(self.raw.as_ptr(), &mut self.seq, &mut rec, c"%s".as_ptr(), c"INFO".as_ptr());
        }
        if self.seq.state != 0 || self.seq.buffer.is_null() {
            return Err(Error::Output);
        }
        // SAFETY: `buffer` holds `len` bytes libtraceevent wrote; nothing changes it meanwhile.
        let text = unsafe { std::slice::from_raw_parts(self.seq.buffer.cast::<u8>(), self.seq.len as usize) };
        Ok(String::from_utf8_lossy(text).into_owned())
    }

    fn strerror(&self, err: c_int) -> String {
        let mut buf = [0u8; 256];
        // SAFETY: `raw` is live; tep_strerror writes at most `buf.len()` bytes, NUL-terminated.
        let ok = unsafe { ffi::tep_strerror(self.raw.as_ptr(), err, buf.as_mut_ptr().cast(), buf.len()) };
        match CStr::from_bytes_until_nul(&buf) {
            Ok(s) if ok == 0 => s.to_string_lossy().into_owned(),
            _ => format!("error {err}"),
        }
    }
}

/// Checks that every byte libtraceevent reads of `data` for an event of `extent` lies inside it
/// or in the zeros after it.
fn check(extent: &Extent, data: &[u8]) -> Result<(), Error> {
    if data.len() < extent.fixed {
        return Err(Error::TooShort { name: extent.name.clone(), len: data.len(), need: extent.fixed });
    }
    let outside = |f: &Field| Error::OutOfBounds { name: extent.name.clone(), field: f.name.clone() };
    let value = |f: &Field| -> u64 {
        let bytes = &data[f.offset..f.offset + f.size.min(8)];
        let mut b = [0u8; 8];
        if cfg!(target_endian = "big") {
            b[8 - bytes.len()..].copy_from_slice(bytes);
            u64::from_be_bytes(b)
        } else {
            b[..bytes.len()].copy_from_slice(bytes);
            u64::from_le_bytes(b)
        }
    };
    for f in &extent.dynamic {
        let v = value(f);
        let (mut offset, len) = match f.size {
            2 => (v as usize, 0),
            _ => ((v & 0xffff) as usize, (v >> 16 & 0xffff) as usize),
        };
        if f.dynamic == Some(true) {
            offset += f.offset + f.size;
        }
        if offset + len > data.len() {
            return Err(outside(f));
        }
    }
    for f in &extent.counts {
        if value(f) > extents::MAX_LENGTH {
            return Err(outside(f));
        }
    }
    Ok(())
}

/// The common (`common`) or own fields of a parsed event, as libtraceevent parsed them.
fn fields(event: NonNull<ffi::TepEventHead>, common: bool) -> Vec<Field> {
    // SAFETY: the event is a parsed one of a live handle; the result is NULL or a
    // NULL-terminated array of its fields, which the caller frees.
    let array = unsafe {
        match common {
            true => ffi::tep_event_common_fields(event.as_ptr()),
            false => ffi::tep_event_fields(event.as_ptr()),
        }
    };
    let mut out = Vec::new();
    if array.is_null() {
        return out;
    }
    for i in 0.. {
        // SAFETY: the array is NULL-terminated; `i` has not passed the terminator.
        let field = unsafe { *array.add(i) };
        if field.is_null() {
            break;
        }
        // SAFETY: each entry is a field the event owns.
        let f = unsafe { &*field };
        let name = match f.name.is_null() {
            true => String::new(),
            // SAFETY: a field's name is a NUL-terminated string it owns.
            false => unsafe { CStr::from_ptr(f.name) }.to_string_lossy().into_owned(),
        };
        let dynamic = (f.flags & ffi::TEP_FIELD_IS_DYNAMIC != 0).then_some(f.flags & ffi::TEP_FIELD_IS_RELATIVE != 0);
        // A negative offset or size would not be read as such: such a field spans everything.
        let offset = usize::try_from(f.offset).unwrap_or(usize::MAX / 2);
        let size = usize::try_from(f.size).unwrap_or(usize::MAX / 2);
        out.push(Field { name, offset, size, dynamic });
    }
    // SAFETY: tep_event_fields allocated the array with malloc, and nothing refers to it now.
    unsafe { ffi::free(array.cast()) };
    out
}

impl Drop for Tep {
    fn drop(&mut self) {
        // SAFETY: the plugins were loaded into this handle, which is freed last; the trace_seq
        // was initialised in `new`; nothing uses any of them after this.
        unsafe {
            if let Some(plugins) = self.plugins.take() {
                ffi::tep_unload_plugins(plugins.as_ptr(), self.raw.as_ptr());
            }
            ffi::trace_seq_destroy(&mut self.seq);
            ffi::tep_free(self.raw.as_ptr());
        }
    }
}
