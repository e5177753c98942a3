//! One event as the hypervisor records it, and its payload: each value written where its field
//! in the table ([`super::EVENTS`]) says.

use super::{
    COMMON_FIELDS, EVENTS, EventDef, Field, GUEST_HLT, GUEST_MMIO, GUEST_PIO, GUEST_STOP, HOST_HCALL, HOST_MEM_ABORT,
    HOST_SMC, HYP_ENTER, HYP_EXIT, HYP_PRINTK, Kind,
};
use hyp_kvm::{Direction, MmioAccess, PortIo};

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
    /// `hyp_printk` (at most [`STRING_MAX`] bytes kept, the NUL included).
    Printk(&'a str),
    /// `guest_pio` (its `value` field is the access's data).
    GuestPio(PortIo),
    /// `guest_mmio`.
    GuestMmio(MmioAccess),
    /// `guest_hlt`.
    GuestHlt,
    /// `guest_stop` (at most [`STRING_MAX`] bytes of `reason` kept, the NUL included).
    GuestStop {
        /// KVM's exit reason (`KVM_EXIT_*`), 0 where `KVM_RUN` failed.
        exit_reason: u32,
        /// Why the vCPU stopped.
        reason: &'a str,
    },
}

/// A direction as the `direction` fields store it: KVM's `KVM_EXIT_IO_IN` (0) and
/// `KVM_EXIT_IO_OUT` (1), for MMIO too.
fn direction_code(direction: Direction) -> u64 {
    match direction {
        Direction::Read => 0,
        Direction::Write => 1,
    }
}

/// Most bytes a string field stores, its NUL included: longer strings are cut.
pub const STRING_MAX: usize = 120;

/// Room for the largest payload of any event.
pub const MAX_PAYLOAD: usize = {
    let (mut max, mut i) = (0, 0);
    while i < EVENTS.len() {
        if max_size(&EVENTS[i]) > max {
            max = max_size(&EVENTS[i]);
        }
        i += 1;
    }
    max
};

/// Bytes of the largest payload of `def`: its strings at their longest.
const fn max_size(def: &EventDef) -> usize {
    let mut size = def.fixed_size();
    let mut i = 0;
    while i < def.fields.len() {
        if matches!(def.fields[i].kind, Kind::Str) {
            size += STRING_MAX;
        }
        i += 1;
    }
    size
}

// A `__data_loc` word holds a string's offset and length in 16 bits each.
const _: () = assert!(MAX_PAYLOAD <= u16::MAX as usize, "payloads too large for `__data_loc` offsets");

/// A field's value, as an event carries it.
#[derive(Debug, Clone, Copy)]
enum Value<'a> {
    /// An integer, stored as its low [`Kind::size`] bytes in native byte order (two's complement
    /// for a signed field).
    Int(u64),
    /// A string, stored after the fixed fields.
    Str(&'a str),
}

/// A payload being written.
struct Encoder<'o> {
    out: &'o mut [u8; MAX_PAYLOAD],
    /// Where the next string goes; at the end, the payload's length.
    end: usize,
}

impl Encoder<'_> {
    /// Stores `values` into `fields`, the first value into the first field and so on.
    #[inline(always)]
    fn put_all(&mut self, fields: &[Field], values: &[Value<'_>]) {
        debug_assert_eq!(fields.len(), values.len(), "a value for every field");
        for (field, value) in fields.iter().zip(values) {
            self.put(field, *value);
        }
    }

    /// Stores `value` in `field`: an integer in its place; a string after the fixed fields and
    /// the strings before it, with its `__data_loc` word in the field's place.
    #[inline(always)]
    fn put(&mut self, field: &Field, value: Value<'_>) {
        match value {
            Value::Int(value) => {
                debug_assert!(field.kind != Kind::Str, "{}: an integer for a string field", field.name);
                self.store(field, value);
            }
            Value::Str(text) => {
                debug_assert!(field.kind == Kind::Str, "{}: a string for an integer field", field.name);
                let text = &text.as_bytes()[..text.len().min(STRING_MAX - 1)];
                let at = self.end;
                self.out[at..at + text.len()].copy_from_slice(text);
                self.out[at + text.len()] = 0;
                let len = text.len() + 1;
                self.end += len;
                // Both halves fit in 16 bits: `at` and `len` are below MAX_PAYLOAD (checked above).
                self.store(field, u64::from(((len as u32) << 16) | at as u32));
            }
        }
    }

    /// Stores the low bytes of `value` in `field`'s place, in native byte order.
    #[inline(always)]
    fn store(&mut self, field: &Field, value: u64) {
        let bytes = value.to_ne_bytes();
        let size = field.kind.size();
        let low = if cfg!(target_endian = "little") { &bytes[..size] } else { &bytes[8 - size..] };
        self.out[field.offset..field.offset + size].copy_from_slice(low);
    }
}

/// What is done with an event's entry in [`EVENTS`] and its values ([`HypEvent::visit`]).
trait Visitor {
    /// What it gives.
    type Out;
    /// Called with the entry and one value per field of the entry, in order.
    fn visit(self, def: &'static EventDef, values: &[Value<'_>]) -> Self::Out;
}

/// Finds an event's entry.
struct DefOf;

impl Visitor for DefOf {
    type Out = &'static EventDef;

    #[inline(always)]
    fn visit(self, def: &'static EventDef, _: &[Value<'_>]) -> &'static EventDef {
        def
    }
}

/// Encodes an event for `pid` into `out`; gives the payload's length.
struct Encode<'o> {
    pid: i32,
    out: &'o mut [u8; MAX_PAYLOAD],
}

impl Visitor for Encode<'_> {
    type Out = usize;

    // Inlined into each event's arm of `HypEvent::visit`, where its entry is a constant: the
    // loops over the fields unroll into fixed stores, as fast as hand-written offsets.
    #[inline(always)]
    fn visit(self, def: &'static EventDef, values: &[Value<'_>]) -> usize {
        let mut payload = Encoder { out: self.out, end: def.fixed_size() };
        // `common_pid` is signed: its two's complement, of which `store` keeps the low bytes.
        let common =
            [Value::Int(u64::from(def.id)), Value::Int(0), Value::Int(0), Value::Int(i64::from(self.pid) as u64)];
        payload.put_all(COMMON_FIELDS, &common);
        payload.put_all(def.fields, values);
        payload.end
    }
}

impl HypEvent<'_> {
    /// Gives `visitor` the event's entry in [`EVENTS`] and its values: the one place that says
    /// which entry an event is and what it carries in each field.
    #[inline(always)]
    fn visit<V: Visitor>(&self, visitor: V) -> V::Out {
        match *self {
            HypEvent::Enter => visitor.visit(&HYP_ENTER, &[]),
            HypEvent::Exit => visitor.visit(&HYP_EXIT, &[]),
            HypEvent::HostHcall { id, args: [arg0, arg1, arg2, arg3] } => visitor.visit(
                &HOST_HCALL,
                &[Value::Int(id), Value::Int(arg0), Value::Int(arg1), Value::Int(arg2), Value::Int(arg3)],
            ),
            HypEvent::HostSmc { func_id, forwarded } => {
                visitor.visit(&HOST_SMC, &[Value::Int(func_id), Value::Int(u64::from(forwarded))])
            }
            HypEvent::HostMemAbort { esr, addr } => {
                visitor.visit(&HOST_MEM_ABORT, &[Value::Int(esr), Value::Int(addr)])
            }
            HypEvent::Printk(msg) => visitor.visit(&HYP_PRINTK, &[Value::Str(msg)]),
            HypEvent::GuestPio(PortIo { port, size, direction, data }) => visitor.visit(
                &GUEST_PIO,
                &[
                    Value::Int(u64::from(port)),
                    Value::Int(u64::from(size)),
                    Value::Int(direction_code(direction)),
                    Value::Int(u64::from(data)),
                ],
            ),
            HypEvent::GuestMmio(MmioAccess { gpa, len, direction, data }) => visitor.visit(
                &GUEST_MMIO,
                &[Value::Int(gpa), Value::Int(u64::from(len)), Value::Int(direction_code(direction)), Value::Int(data)],
            ),
            HypEvent::GuestHlt => visitor.visit(&GUEST_HLT, &[]),
            HypEvent::GuestStop { exit_reason, reason } => {
                visitor.visit(&GUEST_STOP, &[Value::Int(u64::from(exit_reason)), Value::Str(reason)])
            }
        }
    }

    /// The event's entry in [`EVENTS`].
    pub fn def(&self) -> &'static EventDef {
        self.visit(DefOf)
    }

    /// The event id.
    pub fn id(&self) -> u16 {
        self.def().id
    }

    /// Writes the payload into `out`, each value at the offset its [`Field`] in [`EVENTS`] gives,
    /// and returns its length. No allocation.
    pub fn encode(&self, pid: i32, out: &mut [u8; MAX_PAYLOAD]) -> usize {
        self.visit(Encode { pid, out })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{COMMON_SIZE, by_id};

    #[test]
    fn payloads_match_their_formats() {
        let mut out = [0u8; MAX_PAYLOAD];
        let every = [
            HypEvent::Enter,
            HypEvent::Exit,
            HypEvent::HostHcall { id: 0xc600_0001, args: [1, 2, 3, 4] },
            HypEvent::HostSmc { func_id: 0x8400_0000, forwarded: true },
            HypEvent::HostMemAbort { esr: 0x9200_0046, addr: 0xdead_b000 },
            HypEvent::Printk("vcpu 3 handled 7 exits"),
            HypEvent::GuestPio(PortIo { port: 0x510, size: 4, direction: Direction::Read, data: 7 }),
            HypEvent::GuestMmio(MmioAccess { gpa: 0xf010, len: 4, direction: Direction::Write, data: 9 }),
            HypEvent::GuestHlt,
            HypEvent::GuestStop { exit_reason: 8, reason: "shutdown (triple fault)" },
        ];
        let ids: Vec<u16> = every.iter().map(HypEvent::id).collect();
        assert_eq!(ids, EVENTS.iter().map(|def| def.id).collect::<Vec<_>>(), "one of each event, in table order");
        for ev in every {
            let n = ev.encode(3, &mut out);
            let def = by_id(ev.id()).unwrap();
            assert_eq!(def, ev.def());
            let end = def.fields.iter().map(|f| f.offset + f.kind.size()).max().unwrap_or(COMMON_SIZE);
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
        assert_eq!(n, HYP_PRINTK.fixed_size() + STRING_MAX, "long messages are cut to fit");
        let pio = HypEvent::GuestPio(PortIo { port: 0x511, size: 4, direction: Direction::Write, data: 0xA500_0003 });
        assert_eq!(pio.encode(0, &mut out), 16);
        let value = u32::from_ne_bytes(out[12..16].try_into().unwrap());
        assert_eq!((u16::from_ne_bytes([out[8], out[9]]), out[10], out[11], value), (0x511, 4, 1, 0xA500_0003));
        let stop = HypEvent::GuestStop { exit_reason: 8, reason: &long };
        assert_eq!(stop.encode(0, &mut out), MAX_PAYLOAD, "the longest payload: a reason cut to fit");
        assert_eq!(u32::from_ne_bytes(out[8..12].try_into().unwrap()), 8);
    }
}
