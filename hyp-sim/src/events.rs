//! The hypervisor's trace events: their ids, payload layouts and tracefs-style `format`
//! descriptions, from one table, so the bytes the hypervisor writes and the descriptions readers
//! decode them with cannot disagree.
//!
//! Every payload starts with the common fields of Linux trace events, then the event's own:
//!
//! ```text
//!   0  u16 common_type            the event id
//!   2  u8  common_flags           0
//!   3  u8  common_preempt_count   0
//!   4  i32 common_pid             the vCPU that exited (-1: none)
//!   8  ... fields below
//! ```

use std::fmt::Write as _;

/// One field of an event, as a `format` file describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    /// C type, as tracefs writes it.
    pub ty: &'static str,
    /// Name.
    pub name: &'static str,
    /// Byte offset in the payload.
    pub offset: u32,
    /// Bytes.
    pub size: u32,
    /// Signedness.
    pub signed: bool,
}

/// One event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventDef {
    /// Event id (`common_type`).
    pub id: u16,
    /// Name (in the `hyp` system).
    pub name: &'static str,
    /// The event's own fields, after the common ones.
    pub fields: &'static [Field],
    /// The `print fmt` line's value.
    pub print_fmt: &'static str,
}

const fn field(ty: &'static str, name: &'static str, offset: u32, size: u32, signed: bool) -> Field {
    Field { ty, name, offset, size, signed }
}

/// The common fields every payload starts with.
pub const COMMON_FIELDS: &[Field] = &[
    field("unsigned short", "common_type", 0, 2, false),
    field("unsigned char", "common_flags", 2, 1, false),
    field("unsigned char", "common_preempt_count", 3, 1, false),
    field("int", "common_pid", 4, 4, true),
];

/// Bytes of the common fields.
pub const COMMON_SIZE: usize = 8;

/// Event ids.
pub mod id {
    /// Entering the hypervisor from the host or a guest.
    pub const HYP_ENTER: u16 = 1;
    /// Leaving the hypervisor.
    pub const HYP_EXIT: u16 = 2;
    /// A hypercall from the host.
    pub const HOST_HCALL: u16 = 3;
    /// An SMC (firmware call) from the host.
    pub const HOST_SMC: u16 = 4;
    /// A stage-2 memory abort of the host.
    pub const HOST_MEM_ABORT: u16 = 5;
    /// A message printed by the hypervisor.
    pub const HYP_PRINTK: u16 = 6;
}

/// Every event, in id order.
pub const EVENTS: &[EventDef] = &[
    EventDef { id: id::HYP_ENTER, name: "hyp_enter", fields: &[], print_fmt: "\" \"" },
    EventDef { id: id::HYP_EXIT, name: "hyp_exit", fields: &[], print_fmt: "\" \"" },
    EventDef {
        id: id::HOST_HCALL,
        name: "host_hcall",
        fields: &[
            field("unsigned long long", "id", 8, 8, false),
            field("unsigned long long", "arg0", 16, 8, false),
            field("unsigned long long", "arg1", 24, 8, false),
            field("unsigned long long", "arg2", 32, 8, false),
            field("unsigned long long", "arg3", 40, 8, false),
        ],
        print_fmt: "\"id=0x%llx args=0x%llx 0x%llx 0x%llx 0x%llx\", REC->id, REC->arg0, REC->arg1, REC->arg2, REC->arg3",
    },
    EventDef {
        id: id::HOST_SMC,
        name: "host_smc",
        fields: &[
            field("unsigned long long", "func_id", 8, 8, false),
            field("unsigned char", "forwarded", 16, 1, false),
        ],
        print_fmt: "\"func_id=0x%llx forwarded=%u\", REC->func_id, REC->forwarded",
    },
    EventDef {
        id: id::HOST_MEM_ABORT,
        name: "host_mem_abort",
        fields: &[field("unsigned long long", "esr", 8, 8, false), field("unsigned long long", "addr", 16, 8, false)],
        print_fmt: "\"esr=0x%llx addr=0x%llx\", REC->esr, REC->addr",
    },
    EventDef {
        id: id::HYP_PRINTK,
        name: "hyp_printk",
        fields: &[field("__data_loc char[]", "msg", 8, 4, false)],
        print_fmt: "\"%s\", __get_str(msg)",
    },
];

/// Longest `hyp_printk` message stored (longer ones are cut).
pub const PRINTK_MAX: usize = 120;

/// The system every event belongs to.
pub const SYSTEM: &str = "hyp";

/// The event whose id is `id`.
pub fn by_id(id: u16) -> Option<&'static EventDef> {
    EVENTS.iter().find(|e| e.id == id)
}

impl EventDef {
    /// The event's tracefs `format` file.
    pub fn format(&self) -> String {
        let mut out = format!("name: {}\nID: {}\nformat:\n", self.name, self.id);
        let line = |out: &mut String, f: &Field| {
            let _ = writeln!(
                out,
                "\tfield:{} {};\toffset:{};\tsize:{};\tsigned:{};",
                f.ty,
                f.name,
                f.offset,
                f.size,
                u8::from(f.signed)
            );
        };
        COMMON_FIELDS.iter().for_each(|f| line(&mut out, f));
        out.push('\n');
        self.fields.iter().for_each(|f| line(&mut out, f));
        let _ = write!(out, "\nprint fmt: {}\n", self.print_fmt);
        out
    }
}

/// What readers are given to decode events (ring-mmap's FORMATS): every event's `format` file,
/// in id order, each starting with its `name:` line; all events are in the [`SYSTEM`] system.
pub fn formats_blob() -> Vec<u8> {
    EVENTS.iter().map(EventDef::format).collect::<Vec<_>>().join("\n").into_bytes()
}

/// One event as the hypervisor records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HypEvent<'a> {
    /// `hyp_enter`.
    Enter,
    /// `hyp_exit`.
    Exit,
    /// `host_hcall`.
    HostHcall {
        /// Hypercall function id.
        id: u64,
        /// Its arguments.
        args: [u64; 4],
    },
    /// `host_smc`.
    HostSmc {
        /// SMC function id.
        func_id: u64,
        /// Whether it was forwarded to firmware.
        forwarded: bool,
    },
    /// `host_mem_abort`.
    HostMemAbort {
        /// Exception syndrome.
        esr: u64,
        /// Faulting address.
        addr: u64,
    },
    /// `hyp_printk` (at most [`PRINTK_MAX`] bytes kept).
    Printk(&'a str),
}

/// Room for the largest payload.
pub const MAX_PAYLOAD: usize = COMMON_SIZE + 4 + PRINTK_MAX;

impl HypEvent<'_> {
    /// The event id.
    pub fn id(&self) -> u16 {
        match self {
            HypEvent::Enter => id::HYP_ENTER,
            HypEvent::Exit => id::HYP_EXIT,
            HypEvent::HostHcall { .. } => id::HOST_HCALL,
            HypEvent::HostSmc { .. } => id::HOST_SMC,
            HypEvent::HostMemAbort { .. } => id::HOST_MEM_ABORT,
            HypEvent::Printk(_) => id::HYP_PRINTK,
        }
    }

    /// Writes the payload into `out` and returns its length. No allocation.
    pub fn encode(&self, pid: i32, out: &mut [u8; MAX_PAYLOAD]) -> usize {
        out[0..2].copy_from_slice(&self.id().to_ne_bytes());
        out[2] = 0;
        out[3] = 0;
        out[4..8].copy_from_slice(&pid.to_ne_bytes());
        let put = |out: &mut [u8; MAX_PAYLOAD], at: usize, v: u64| out[at..at + 8].copy_from_slice(&v.to_ne_bytes());
        match *self {
            HypEvent::Enter | HypEvent::Exit => COMMON_SIZE,
            HypEvent::HostHcall { id, args } => {
                put(out, 8, id);
                for (i, a) in args.iter().enumerate() {
                    put(out, 16 + 8 * i, *a);
                }
                48
            }
            HypEvent::HostSmc { func_id, forwarded } => {
                put(out, 8, func_id);
                out[16] = u8::from(forwarded);
                17
            }
            HypEvent::HostMemAbort { esr, addr } => {
                put(out, 8, esr);
                put(out, 16, addr);
                24
            }
            HypEvent::Printk(msg) => {
                // __data_loc: (length << 16) | offset of the NUL-terminated string.
                let text = &msg.as_bytes()[..msg.len().min(PRINTK_MAX - 1)];
                let at = COMMON_SIZE + 4;
                out[at..at + text.len()].copy_from_slice(text);
                out[at + text.len()] = 0;
                let len = text.len() as u32 + 1;
                out[8..12].copy_from_slice(&((len << 16) | at as u32).to_ne_bytes());
                at + len as usize
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_look_like_tracefs() {
        let f = by_id(id::HOST_MEM_ABORT).unwrap().format();
        assert!(f.starts_with("name: host_mem_abort\nID: 5\nformat:\n"));
        assert!(f.contains("\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n"));
        assert!(f.contains("\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n\n"));
        assert!(f.contains("\tfield:unsigned long long addr;\toffset:16;\tsize:8;\tsigned:0;\n"));
        assert!(f.ends_with("print fmt: \"esr=0x%llx addr=0x%llx\", REC->esr, REC->addr\n"));
        let blob = String::from_utf8(formats_blob()).unwrap();
        assert_eq!(blob.matches("name: ").count(), EVENTS.len());
    }

    #[test]
    fn payloads_match_their_formats() {
        let mut out = [0u8; MAX_PAYLOAD];
        for ev in [
            HypEvent::Enter,
            HypEvent::HostHcall { id: 0xc600_0001, args: [1, 2, 3, 4] },
            HypEvent::HostSmc { func_id: 0x8400_0000, forwarded: true },
            HypEvent::HostMemAbort { esr: 0x9200_0046, addr: 0xdead_b000 },
            HypEvent::Printk("vcpu 3 handled 7 exits"),
        ] {
            let n = ev.encode(3, &mut out);
            let def = by_id(ev.id()).unwrap();
            let end = def.fields.iter().map(|f| f.offset + f.size).max().unwrap_or(COMMON_SIZE as u32) as usize;
            assert!(n >= end, "{}: payload {n} < fields end {end}", def.name);
            assert_eq!(u16::from_ne_bytes([out[0], out[1]]), def.id);
            assert_eq!(i32::from_ne_bytes(out[4..8].try_into().unwrap()), 3);
        }
        let n = HypEvent::Printk("hi").encode(0, &mut out);
        let loc = u32::from_ne_bytes(out[8..12].try_into().unwrap());
        assert_eq!((loc >> 16, loc & 0xffff, n), (3, 12, 15));
        assert_eq!(&out[12..15], b"hi\0");
        let long = "x".repeat(500);
        let n = HypEvent::Printk(&long).encode(0, &mut out);
        assert_eq!(n, MAX_PAYLOAD, "long messages are cut to fit");
    }
}
