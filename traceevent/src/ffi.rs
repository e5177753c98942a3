//! The part of libtraceevent's C interface (`event-parse.h`, `trace-seq.h`, version 1.7) this
//! crate calls, declared by hand: the functions, and the structures whose fields it reads or
//! fills, laid out as the headers declare them (checked below for 64-bit targets).

use std::ffi::{c_char, c_int, c_uint, c_ulong, c_void};
use std::marker::{PhantomData, PhantomPinned};

/// `struct tep_handle`: opaque.
#[repr(C)]
pub struct TepHandle {
    _private: [u8; 0],
    _not_send_sync_or_unpin: PhantomData<(*mut u8, PhantomPinned)>,
}

/// `struct tep_plugin_list`: opaque.
#[repr(C)]
pub struct TepPluginList {
    _private: [u8; 0],
    _not_send_sync_or_unpin: PhantomData<(*mut u8, PhantomPinned)>,
}

/// The first members of `struct tep_event` (the header declares them first, in this order); the
/// rest is never read here.
#[repr(C)]
pub struct TepEventHead {
    /// `struct tep_handle *tep`.
    pub tep: *mut TepHandle,
    /// `char *name`.
    pub name: *const c_char,
    /// `int id`.
    pub id: c_int,
    /// `int flags`: `TEP_EVENT_FL_*`.
    pub flags: c_int,
}

/// `TEP_EVENT_FL_FAILED`: the event's print format did not parse.
pub const TEP_EVENT_FL_FAILED: c_int = 0x8000_0000_u32 as c_int;

/// `struct tep_format_field`.
#[repr(C)]
pub struct TepFormatField {
    /// `struct tep_format_field *next`.
    pub next: *mut TepFormatField,
    /// `struct tep_event *event`.
    pub event: *mut TepEventHead,
    /// `char *type`.
    pub type_: *const c_char,
    /// `char *name`.
    pub name: *const c_char,
    /// `char *alias`.
    pub alias: *const c_char,
    /// `int offset`.
    pub offset: c_int,
    /// `int size`.
    pub size: c_int,
    /// `unsigned int arraylen`.
    pub arraylen: c_uint,
    /// `unsigned int elementsize`.
    pub elementsize: c_uint,
    /// `unsigned long flags`: `TEP_FIELD_IS_*`.
    pub flags: c_ulong,
}

/// `TEP_FIELD_IS_DYNAMIC`: a `__data_loc` field.
pub const TEP_FIELD_IS_DYNAMIC: c_ulong = 16;
/// `TEP_FIELD_IS_RELATIVE`: a `__rel_loc` field (its offset counts from the field's end).
pub const TEP_FIELD_IS_RELATIVE: c_ulong = 256;

/// `struct tep_record` (built without `DEBUG_RECORD`, as Debian's is).
#[repr(C)]
pub struct TepRecord {
    /// `unsigned long long ts`.
    pub ts: u64,
    /// `unsigned long long offset`.
    pub offset: u64,
    /// `long long missed_events`.
    pub missed_events: i64,
    /// `int record_size`.
    pub record_size: c_int,
    /// `int size`.
    pub size: c_int,
    /// `void *data`.
    pub data: *mut c_void,
    /// `int cpu`.
    pub cpu: c_int,
    /// `int ref_count`.
    pub ref_count: c_int,
    /// `int locked`.
    pub locked: c_int,
    /// `void *priv`.
    pub priv_: *mut c_void,
}

/// `struct trace_seq`.
#[repr(C)]
pub struct TraceSeq {
    /// `char *buffer`.
    pub buffer: *mut c_char,
    /// `unsigned int buffer_size`.
    pub buffer_size: c_uint,
    /// `unsigned int len`.
    pub len: c_uint,
    /// `unsigned int readpos`.
    pub readpos: c_uint,
    /// `enum trace_seq_fail state`: 0 is `TRACE_SEQ__GOOD`.
    pub state: c_int,
}

/// `TEP_LITTLE_ENDIAN`, `TEP_BIG_ENDIAN`.
pub const TEP_LITTLE_ENDIAN: c_int = 0;
/// See [`TEP_LITTLE_ENDIAN`].
pub const TEP_BIG_ENDIAN: c_int = 1;

#[cfg(target_pointer_width = "64")]
const _: () = {
    use std::mem::{offset_of, size_of};
    assert!(size_of::<TepRecord>() == 64);
    assert!(offset_of!(TepRecord, size) == 28 && offset_of!(TepRecord, data) == 32);
    assert!(offset_of!(TepRecord, cpu) == 40 && offset_of!(TepRecord, priv_) == 56);
    assert!(size_of::<TraceSeq>() == 24 && offset_of!(TraceSeq, len) == 12 && offset_of!(TraceSeq, state) == 20);
    assert!(size_of::<TepFormatField>() == 64);
    assert!(offset_of!(TepFormatField, offset) == 40 && offset_of!(TepFormatField, flags) == 56);
    assert!(offset_of!(TepEventHead, id) == 16 && offset_of!(TepEventHead, flags) == 20);
};

#[link(name = "traceevent")]
unsafe extern "C" {
    pub fn tep_alloc() -> *mut TepHandle;
    pub fn tep_free(tep: *mut TepHandle);
    pub fn tep_set_file_bigendian(tep: *mut TepHandle, endian: c_int);
    pub fn tep_set_local_bigendian(tep: *mut TepHandle, endian: c_int);
    pub fn tep_set_long_size(tep: *mut TepHandle, long_size: c_int);
    pub fn tep_set_page_size(tep: *mut TepHandle, page_size: c_int);
    pub fn tep_load_plugins(tep: *mut TepHandle) -> *mut TepPluginList;
    pub fn tep_unload_plugins(list: *mut TepPluginList, tep: *mut TepHandle);
    pub fn tep_parse_format(
        tep: *mut TepHandle,
        eventp: *mut *mut TepEventHead,
        buf: *const c_char,
        size: c_ulong,
        sys: *const c_char,
    ) -> c_int;
    pub fn tep_strerror(tep: *mut TepHandle, errnum: c_int, buf: *mut c_char, buflen: usize) -> c_int;
    pub fn tep_parse_kallsyms(tep: *mut TepHandle, kallsyms: *const c_char) -> c_int;
    pub fn tep_parse_printk_formats(tep: *mut TepHandle, buf: *const c_char) -> c_int;
    pub fn tep_parse_saved_cmdlines(tep: *mut TepHandle, buf: *const c_char) -> c_int;
    pub fn tep_data_comm_from_pid(tep: *mut TepHandle, pid: c_int) -> *const c_char;
    pub fn tep_data_type(tep: *mut TepHandle, record: *mut TepRecord) -> c_int;
    pub fn tep_event_fields(event: *mut TepEventHead) -> *mut *mut TepFormatField;
    pub fn tep_event_common_fields(event: *mut TepEventHead) -> *mut *mut TepFormatField;
    pub fn tep_print_event(tep: *mut TepHandle, s: *mut TraceSeq, record: *mut TepRecord, fmt: *const c_char, ...);
    pub fn trace_seq_init(s: *mut TraceSeq);
    pub fn trace_seq_reset(s: *mut TraceSeq);
    pub fn trace_seq_destroy(s: *mut TraceSeq);
}

unsafe extern "C" {
    /// The C library's `free`, for the arrays `tep_event_fields` allocates.
    pub fn free(ptr: *mut c_void);
}
