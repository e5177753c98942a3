//! The hypervisor's trace events: their ids, payload layouts and tracefs-style `format`
//! descriptions, from one table ([`EVENTS`]), so the bytes the hypervisor writes and the
//! descriptions readers decode them with cannot disagree: [`HypEvent::encode`] writes each value
//! at the offset its [`Field`] gives, and [`EventDef::format`] publishes that same offset.
//!
//! Every payload starts with the common fields of Linux trace events, then the event's own:
//!
//! ```text
//!   0  u16 common_type            the event id
//!   2  u8  common_flags           0
//!   3  u8  common_preempt_count   0
//!   4  i32 common_pid             the host task (thread id) running the vCPU that exited
//!   8  ... the event's fields, each at the next offset aligned to its size, as a C struct's
//!      ... then the strings of its `__data_loc` fields, one after the other
//! ```

mod payload;

pub use payload::{HypEvent, MAX_PAYLOAD, STRING_MAX};
use std::fmt::Write as _;

/// How a field is stored: its C type, size and signedness, as tracefs describes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `unsigned char`.
    U8,
    /// `unsigned short`.
    U16,
    /// `unsigned int`.
    U32,
    /// `int`.
    I32,
    /// `unsigned long long`.
    U64,
    /// `__data_loc char[]`: a u32 whose low 16 bits are the offset in the payload of a
    /// NUL-terminated string, and whose high 16 bits are its length, the NUL included.
    Str,
}

impl Kind {
    /// The C type, as tracefs writes it.
    pub const fn c_type(self) -> &'static str {
        match self {
            Kind::U8 => "unsigned char",
            Kind::U16 => "unsigned short",
            Kind::U32 => "unsigned int",
            Kind::I32 => "int",
            Kind::U64 => "unsigned long long",
            Kind::Str => "__data_loc char[]",
        }
    }

    /// Bytes the field takes at its offset (for a string, its `__data_loc` word).
    pub const fn size(self) -> usize {
        match self {
            Kind::U8 => 1,
            Kind::U16 => 2,
            Kind::U32 | Kind::I32 | Kind::Str => 4,
            Kind::U64 => 8,
        }
    }

    /// Whether the field is a signed integer.
    pub const fn signed(self) -> bool {
        matches!(self, Kind::I32)
    }
}

/// One field of an event, as a `format` file describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    /// Name.
    pub name: &'static str,
    /// How it is stored.
    pub kind: Kind,
    /// Byte offset in the payload.
    pub offset: usize,
}

/// One event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventDef {
    /// Event id (`common_type`).
    pub id: u16,
    /// Name (in the [`SYSTEM`] system).
    pub name: &'static str,
    /// The event's own fields, after the common ones.
    pub fields: &'static [Field],
    /// The `print fmt` line's value.
    pub print_fmt: &'static str,
}

/// Lays `fields` out from byte `start` on, as a C struct does: each at the first offset after the
/// previous one that is a multiple of its size.
const fn layout<const N: usize>(start: usize, fields: [(&'static str, Kind); N]) -> [Field; N] {
    let mut out = [Field { name: "", kind: Kind::U8, offset: 0 }; N];
    let mut end = start;
    let mut i = 0;
    while i < N {
        let (name, kind) = fields[i];
        let offset = end.next_multiple_of(kind.size());
        out[i] = Field { name, kind, offset };
        end = offset + kind.size();
        i += 1;
    }
    out
}

/// The common fields every payload starts with.
pub const COMMON_FIELDS: &[Field] = &layout(
    0,
    [
        ("common_type", Kind::U16),
        ("common_flags", Kind::U8),
        ("common_preempt_count", Kind::U8),
        ("common_pid", Kind::I32),
    ],
);

/// Bytes of the common fields.
pub const COMMON_SIZE: usize = end_of(COMMON_FIELDS, 0);

/// Where the last of `fields` ends (`start` if there are none).
const fn end_of(fields: &[Field], start: usize) -> usize {
    match fields.len() {
        0 => start,
        n => fields[n - 1].offset + fields[n - 1].kind.size(),
    }
}

/// `hyp_enter`: entering the hypervisor from the host or a guest.
pub const HYP_ENTER: EventDef = EventDef { id: 1, name: "hyp_enter", fields: &[], print_fmt: "\" \"" };

/// `hyp_exit`: leaving the hypervisor.
pub const HYP_EXIT: EventDef = EventDef { id: 2, name: "hyp_exit", fields: &[], print_fmt: "\" \"" };

/// `host_hcall`: a hypercall from the host.
pub const HOST_HCALL: EventDef = EventDef {
    id: 3,
    name: "host_hcall",
    fields: &layout(
        COMMON_SIZE,
        [("id", Kind::U64), ("arg0", Kind::U64), ("arg1", Kind::U64), ("arg2", Kind::U64), ("arg3", Kind::U64)],
    ),
    print_fmt: "\"id=0x%llx args=0x%llx 0x%llx 0x%llx 0x%llx\", REC->id, REC->arg0, REC->arg1, REC->arg2, REC->arg3",
};

/// `host_smc`: an SMC (firmware call) from the host.
pub const HOST_SMC: EventDef = EventDef {
    id: 4,
    name: "host_smc",
    fields: &layout(COMMON_SIZE, [("func_id", Kind::U64), ("forwarded", Kind::U8)]),
    print_fmt: "\"func_id=0x%llx forwarded=%u\", REC->func_id, REC->forwarded",
};

/// `host_mem_abort`: a stage-2 memory abort of the host.
pub const HOST_MEM_ABORT: EventDef = EventDef {
    id: 5,
    name: "host_mem_abort",
    fields: &layout(COMMON_SIZE, [("esr", Kind::U64), ("addr", Kind::U64)]),
    print_fmt: "\"esr=0x%llx addr=0x%llx\", REC->esr, REC->addr",
};

/// `hyp_printk`: a message printed by the hypervisor.
pub const HYP_PRINTK: EventDef = EventDef {
    id: 6,
    name: "hyp_printk",
    fields: &layout(COMMON_SIZE, [("msg", Kind::Str)]),
    print_fmt: "\"%s\", __get_str(msg)",
};

/// `guest_pio`: a KVM guest's port I/O exit (`in`, `out`). `direction` is KVM's: 0 the guest
/// read (`in`; `value` is what the hypervisor answered), 1 it wrote (`out`; `value` is the
/// guest's). `size` is 1, 2 or 4 bytes; `value` is zero-extended.
pub const GUEST_PIO: EventDef = EventDef {
    id: 7,
    name: "guest_pio",
    fields: &layout(
        COMMON_SIZE,
        [("port", Kind::U16), ("size", Kind::U8), ("direction", Kind::U8), ("value", Kind::U32)],
    ),
    print_fmt: "\"%s port=0x%x size=%u value=0x%x\", REC->direction ? \"out\" : \"in\", REC->port, REC->size, REC->value",
};

/// `guest_mmio`: a KVM guest's access to guest-physical memory no memory backs. `direction` as
/// in [`GUEST_PIO`]: 0 a load (`data` is what the hypervisor answered), 1 a store; `len` is 1 to
/// 8 bytes; `data` is zero-extended.
pub const GUEST_MMIO: EventDef = EventDef {
    id: 8,
    name: "guest_mmio",
    fields: &layout(COMMON_SIZE, [("gpa", Kind::U64), ("len", Kind::U8), ("direction", Kind::U8), ("data", Kind::U64)]),
    print_fmt: "\"%s gpa=0x%llx len=%u data=0x%llx\", REC->direction ? \"write\" : \"read\", REC->gpa, REC->len, REC->data",
};

/// `guest_hlt`: a KVM guest ran `hlt`.
pub const GUEST_HLT: EventDef = EventDef { id: 9, name: "guest_hlt", fields: &[], print_fmt: "\" \"" };

/// `guest_stop`: a KVM guest's vCPU stopped and does not run again: the guest misbehaved, KVM
/// could not run it, or it ran its whole plan. `exit_reason` is KVM's (`KVM_EXIT_*`) for the exit
/// that stopped it, 0 (`KVM_EXIT_UNKNOWN`) where `KVM_RUN` itself failed; `reason` says why.
pub const GUEST_STOP: EventDef = EventDef {
    id: 10,
    name: "guest_stop",
    fields: &layout(COMMON_SIZE, [("exit_reason", Kind::U32), ("reason", Kind::Str)]),
    print_fmt: "\"exit_reason=%u %s\", REC->exit_reason, __get_str(reason)",
};

/// Every event, in rising id order (checked at compile time).
pub const EVENTS: &[EventDef] = &[
    HYP_ENTER,
    HYP_EXIT,
    HOST_HCALL,
    HOST_SMC,
    HOST_MEM_ABORT,
    HYP_PRINTK,
    GUEST_PIO,
    GUEST_MMIO,
    GUEST_HLT,
    GUEST_STOP,
];

/// The largest event id.
pub const MAX_ID: u16 = {
    let mut i = 1;
    while i < EVENTS.len() {
        assert!(EVENTS[i - 1].id < EVENTS[i].id, "EVENTS lists each id once, in rising order");
        i += 1;
    }
    EVENTS[EVENTS.len() - 1].id
};

/// The system every event belongs to.
pub const SYSTEM: &str = "hyp";

/// The event whose id is `id`.
pub fn by_id(id: u16) -> Option<&'static EventDef> {
    EVENTS.iter().find(|e| e.id == id)
}

impl EventDef {
    /// Bytes of the payload before its strings: the common fields and the event's own.
    pub const fn fixed_size(&self) -> usize {
        end_of(self.fields, COMMON_SIZE)
    }

    /// The event's tracefs `format` file.
    pub fn format(&self) -> String {
        let mut out = format!("name: {}\nID: {}\nformat:\n", self.name, self.id);
        let line = |out: &mut String, f: &Field| {
            let _ = writeln!(
                out,
                "\tfield:{} {};\toffset:{};\tsize:{};\tsigned:{};",
                f.kind.c_type(),
                f.name,
                f.offset,
                f.kind.size(),
                u8::from(f.kind.signed())
            );
        };
        COMMON_FIELDS.iter().for_each(|f| line(&mut out, f));
        out.push('\n');
        self.fields.iter().for_each(|f| line(&mut out, f));
        let _ = write!(out, "\nprint fmt: {}\n", self.print_fmt);
        out
    }
}

/// What readers are given to decode events (ring-mmap's FORMATS): a `system:` line naming the
/// system all events belong to ([`SYSTEM`]), then every event's `format` file, in id order, each
/// starting with its `name:` line.
pub fn formats_blob() -> Vec<u8> {
    let formats = EVENTS.iter().map(EventDef::format).collect::<Vec<_>>().join("\n");
    format!("system: {SYSTEM}\n{formats}").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_look_like_tracefs() {
        let f = HOST_MEM_ABORT.format();
        assert!(f.starts_with("name: host_mem_abort\nID: 5\nformat:\n"));
        assert!(f.contains("\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n"));
        assert!(f.contains("\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n\n"));
        assert!(f.contains("\tfield:unsigned long long addr;\toffset:16;\tsize:8;\tsigned:0;\n"));
        assert!(f.ends_with("print fmt: \"esr=0x%llx addr=0x%llx\", REC->esr, REC->addr\n"));
        let blob = String::from_utf8(formats_blob()).unwrap();
        assert!(blob.starts_with("system: hyp\nname: hyp_enter\n"), "{blob}");
        assert_eq!(blob.matches("name: ").count(), EVENTS.len());
    }
}
