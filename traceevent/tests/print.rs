//! Events printed through libtraceevent: as their print formats say, with symbols and task
//! names; and records it must not read (too short, pointing outside themselves) refused.

use traceevent::{Error, Record, Tep};

const COMMON: &str = "\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\
    \tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;\n\
    \tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;\n\
    \tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n\n";

fn format(name: &str, id: u16, fields: &str, print_fmt: &str) -> String {
    format!("name: {name}\nID: {id}\nformat:\n{COMMON}{fields}\nprint fmt: {print_fmt}\n")
}

/// `wake`: a pid, a state shown by flags, an address shown as a symbol, a `__data_loc` string.
fn wake() -> String {
    format(
        "wake",
        7,
        "\tfield:int pid;\toffset:8;\tsize:4;\tsigned:1;\n\
         \tfield:long state;\toffset:16;\tsize:8;\tsigned:1;\n\
         \tfield:unsigned long ip;\toffset:24;\tsize:8;\tsigned:0;\n\
         \tfield:__data_loc char[] why;\toffset:32;\tsize:4;\tsigned:0;\n",
        r#""pid=%d state=%s ip=%pS why=%s", REC->pid, REC->state ? __print_flags(REC->state, "|", { 1, "S" }, { 2, "D" }) : "R", (void *)REC->ip, __get_str(why)"#,
    )
}

/// `insn`: a count of bytes from a field, as kvm_emulate_insn's.
fn insn() -> String {
    format(
        "insn",
        8,
        "\tfield:__u8 len;\toffset:8;\tsize:1;\tsigned:0;\n\tfield:__u8 insn[15];\toffset:9;\tsize:15;\tsigned:0;\n",
        r#""%s", __print_hex(REC->insn, REC->len)"#,
    )
}

fn wake_record(pid: i32, state: i64, ip: u64, why: &[u8]) -> Vec<u8> {
    let mut d = vec![0u8; 36];
    d[0..2].copy_from_slice(&7u16.to_ne_bytes());
    d[4..8].copy_from_slice(&pid.to_ne_bytes());
    d[8..12].copy_from_slice(&pid.to_ne_bytes());
    d[16..24].copy_from_slice(&state.to_ne_bytes());
    d[24..32].copy_from_slice(&ip.to_ne_bytes());
    d[32..36].copy_from_slice(&(((why.len() as u32) << 16) | 36).to_ne_bytes());
    d.extend_from_slice(why);
    d
}

fn tep() -> Tep {
    let mut tep = Tep::new(4096).unwrap();
    tep.parse_event("demo", &wake()).unwrap();
    tep.parse_event("demo", &insn()).unwrap();
    tep.parse_kallsyms("ffffffff81000000 T _stext\nffffffff81001000 T do_work\nffffffff81002000 T after\n").unwrap();
    tep.parse_saved_cmdlines("42 worker\n7 sh\n").unwrap();
    tep
}

fn info(tep: &mut Tep, data: &[u8]) -> Result<String, Error> {
    tep.info(Record { data, cpu: 1, ts: 1_000 })
}

#[test]
fn events_print_as_their_formats_say_with_symbols_and_task_names() {
    let mut tep = tep();
    let d = wake_record(42, 2, 0xffff_ffff_8100_1010, b"io\0");
    assert_eq!(info(&mut tep, &d).unwrap(), "pid=42 state=D ip=do_work+0x10 why=io");
    let d = wake_record(42, 0, 0xffff_ffff_8100_1000, b"run\0");
    assert_eq!(info(&mut tep, &d).unwrap(), "pid=42 state=R ip=do_work+0x0 why=run");
    assert_eq!((tep.comm(42), tep.comm(0), tep.comm(9999)), ("worker".into(), "<idle>".into(), "<...>".into()));
    let mut d = vec![0u8; 24];
    d[0..2].copy_from_slice(&8u16.to_ne_bytes());
    d[8] = 3;
    d[9..12].copy_from_slice(&[0x0f, 0x01, 0xc1]);
    assert_eq!(info(&mut tep, &d).unwrap(), "0f 01 c1");
}

#[test]
fn records_libtraceevent_would_read_past_are_refused() {
    let mut tep = tep();
    let d = wake_record(42, 0, 0, b"run\0");
    for cut in 0..36 {
        assert!(info(&mut tep, &d[..cut]).is_err(), "{cut} bytes");
    }
    let mut out_of_bounds = d.clone();
    out_of_bounds[32..36].copy_from_slice(&((200u32 << 16) | 36).to_ne_bytes());
    assert!(matches!(info(&mut tep, &out_of_bounds), Err(Error::OutOfBounds { field, .. }) if field == "why"));
    // A string without its NUL ends at the record's end, even after a longer record.
    assert!(info(&mut tep, &wake_record(42, 0, 0, b"abcdefgh-longer\0")).unwrap().ends_with("why=abcdefgh-longer"));
    let unterminated = wake_record(42, 0, 0, b"abc");
    assert_eq!(info(&mut tep, &unterminated).unwrap(), "pid=42 state=R ip=0x0 why=abc");
    let mut unknown = d.clone();
    unknown[0] = 99;
    assert_eq!(info(&mut tep, &unknown), Err(Error::UnknownEvent(99)));
    // A count as large as a byte holds stays within what is read safely.
    let mut d = vec![0u8; 24];
    d[0..2].copy_from_slice(&8u16.to_ne_bytes());
    d[8] = 255;
    assert_eq!(info(&mut tep, &d).unwrap().len(), 255 * 3 - 1);
}

#[test]
fn formats_libtraceevent_cannot_read_safely_are_errors() {
    let mut tep = Tep::new(4096).unwrap();
    let unbounded = format(
        "dump",
        9,
        "\tfield:u32 len;\toffset:8;\tsize:4;\tsigned:0;\n\tfield:__data_loc u8[] buf;\toffset:12;\tsize:4;\tsigned:0;\n",
        r#""%s", __print_hex(__get_dynamic_array(buf), REC->len * 2)"#,
    );
    assert!(matches!(tep.parse_event("demo", &unbounded), Err(Error::Format { name, .. }) if name == "dump"));
    assert!(tep.parse_event("demo", "name: x\nID: 3\nformat:\n\tgarbage\n").is_err());
    assert!(tep.parse_event("demo", &wake().replace("ID: 7", "ID: 3")).is_err(), "a second format of id 3");
    assert!(tep.parse_event("demo", "").is_err());
    assert!(tep.parse_event("de\0mo", &wake()).is_err());
    // The lowest-numbered format, which did not parse, has no common_type: nothing prints.
    let d = wake_record(42, 0, 0, b"run\0");
    assert_eq!(tep.info(Record { data: &d, cpu: 0, ts: 0 }), Err(Error::NoCommonType));
    // A count from a wide field is checked in each record.
    let mut tep = Tep::new(4096).unwrap();
    let wide = format(
        "dump",
        10,
        "\tfield:u32 len;\toffset:8;\tsize:4;\tsigned:0;\n\tfield:__data_loc u8[] buf;\toffset:12;\tsize:4;\tsigned:0;\n",
        r#""%s", __print_hex(__get_dynamic_array(buf), REC->len)"#,
    );
    tep.parse_event("demo", &wide).unwrap();
    let mut d = vec![0u8; 20];
    d[0..2].copy_from_slice(&10u16.to_ne_bytes());
    d[8..12].copy_from_slice(&2u32.to_ne_bytes());
    d[12..16].copy_from_slice(&((4u32 << 16) | 16).to_ne_bytes());
    d[16..20].copy_from_slice(&[0xab, 0xcd, 0xef, 0x01]);
    assert_eq!(tep.info(Record { data: &d, cpu: 0, ts: 0 }).unwrap(), "ab cd");
    d[8..12].copy_from_slice(&0x1_0000u32.to_ne_bytes());
    assert!(
        matches!(tep.info(Record { data: &d, cpu: 0, ts: 0 }), Err(Error::OutOfBounds { field, .. }) if field == "len")
    );
}
