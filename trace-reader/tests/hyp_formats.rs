//! hyp-sim's payloads against the formats it publishes: every event the hypervisor encodes,
//! decoded by this crate's parser of the published `format` texts, gives back the values the
//! event carried, under the name and in the system the formats give. The offsets the encoder writes at and those the texts state come from one
//! table; this checks them from the reader's side, with a parser that knows nothing of it.

use hyp_kvm::{Direction, MmioAccess, PortIo};
use hyp_sim::events::{self, HypEvent, MAX_PAYLOAD};
use trace_reader::formats::{Formats, Value, decode};

/// One event of each kind, with the fields a reader must decode from it.
fn every_event() -> Vec<(HypEvent<'static>, Vec<(&'static str, Value)>)> {
    vec![
        (HypEvent::Enter, vec![]),
        (HypEvent::Exit, vec![]),
        (
            HypEvent::HostHcall { id: 0xc600_0001, args: [1, 2, u64::MAX, 0x8000_0000_0000_0000] },
            vec![
                ("id", Value::Hex(0xc600_0001)),
                ("arg0", Value::Hex(1)),
                ("arg1", Value::Hex(2)),
                ("arg2", Value::Hex(u64::MAX)),
                ("arg3", Value::Hex(0x8000_0000_0000_0000)),
            ],
        ),
        (
            HypEvent::HostSmc { func_id: 0x8400_0000, forwarded: true },
            vec![("func_id", Value::Hex(0x8400_0000)), ("forwarded", Value::Unsigned(1))],
        ),
        (
            HypEvent::HostMemAbort { esr: 0x9200_0046, addr: 0xdead_b000 },
            vec![("esr", Value::Hex(0x9200_0046)), ("addr", Value::Hex(0xdead_b000))],
        ),
        (HypEvent::Printk("vcpu 3 handled 7 exits"), vec![("msg", Value::Str("vcpu 3 handled 7 exits".into()))]),
        (
            HypEvent::GuestPio(PortIo { port: 0x510, size: 4, direction: Direction::Read, data: 0xA500_0007 }),
            vec![
                ("port", Value::Hex(0x510)),
                ("size", Value::Unsigned(4)),
                ("direction", Value::Unsigned(0)),
                ("value", Value::Hex(0xA500_0007)),
            ],
        ),
        (
            HypEvent::GuestMmio(MmioAccess { gpa: 0xf010, len: 8, direction: Direction::Write, data: u64::MAX }),
            vec![
                ("gpa", Value::Hex(0xf010)),
                ("len", Value::Unsigned(8)),
                ("direction", Value::Unsigned(1)),
                ("data", Value::Hex(u64::MAX)),
            ],
        ),
        (HypEvent::GuestHlt, vec![]),
        (
            HypEvent::GuestStop { exit_reason: 8, reason: "shutdown (triple fault)" },
            vec![("exit_reason", Value::Unsigned(8)), ("reason", Value::Str("shutdown (triple fault)".into()))],
        ),
    ]
}

#[test]
fn every_event_decodes_by_its_published_format() {
    let formats = Formats::from_blob(&events::formats_blob()).expect("hyp-sim's formats parse");
    assert_eq!(formats.len(), events::EVENTS.len(), "a format for every event");
    let every = every_event();
    let mut ids: Vec<u16> = every.iter().map(|(event, _)| event.id()).collect();
    ids.sort_unstable();
    assert_eq!(ids, events::EVENTS.iter().map(|def| def.id).collect::<Vec<_>>(), "one of each event");
    let mut payload = [0u8; MAX_PAYLOAD];
    for (event, fields) in every {
        for pid in [0, 3, -1] {
            let len = event.encode(pid, &mut payload);
            let decoded = decode(&formats, &payload[..len]);
            let what = format!("{event:?} pid {pid}");
            assert_eq!(decoded.name, event.def().name, "{what}");
            assert_eq!(decoded.pid, pid, "{what}");
            let want: Vec<(String, Value)> =
                fields.iter().map(|(name, value)| (name.to_string(), value.clone())).collect();
            assert_eq!(decoded.fields, want, "{what}");
            let format = formats.get(event.id()).expect("a format for the event");
            assert_eq!(format.system, events::SYSTEM, "{what}");
            let end = format.fields.iter().map(|f| f.offset + f.size).max().unwrap_or(events::COMMON_SIZE);
            assert!(len >= end, "{what}: the payload ({len} bytes) holds every field (up to {end})");
        }
    }
}

#[test]
fn a_message_too_long_is_cut_and_still_decodes() {
    let formats = Formats::from_blob(&events::formats_blob()).expect("hyp-sim's formats parse");
    let long = "0123456789".repeat(50);
    let mut payload = [0u8; MAX_PAYLOAD];
    let len = HypEvent::Printk(&long).encode(1, &mut payload);
    let decoded = decode(&formats, &payload[..len]);
    let kept = events::STRING_MAX - 1;
    assert_eq!(decoded.fields, [("msg".to_string(), Value::Str(long[..kept].to_string()))]);
}
