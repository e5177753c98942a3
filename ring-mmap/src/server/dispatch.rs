//! A well-formed request turned into a call of the [`Producer`](crate::Producer) and the answer to send: the
//! server's half of the protocol in `docs/abi.md`.

use super::Shared;
use super::messages::OutgoingAnswer;
use crate::backing::CpuLayout;
use crate::wire::{CpuBody, HelloBody, MAX_BODY, Op, ReaderBody, Request, WaitBody, status};
use ring_core::{SwapStatus, TraceClock};

/// Answers a well-formed request of `client`; true with it if the client began consuming a CPU.
pub(super) fn answer<'p>(shared: &'p Shared, client: u64, req: &Request) -> (OutgoingAnswer<'p>, bool) {
    let producer = &*shared.producer;
    let Some(op) = Op::from_wire(req.op) else {
        return (OutgoingAnswer::status(status::ENOTTY), false);
    };
    let cpu_ok = req.cpu < producer.nr_cpus();
    let answer = match op {
        Op::Hello => {
            let hello = HelloBody::new(producer.nr_cpus(), producer.config(), producer.formats().len());
            let mut answer = OutgoingAnswer::body(&hello);
            if req.arg != u64::from(hello.version) {
                answer.status = status::EPROTO;
            }
            answer
        }
        Op::Clock => match TraceClock::from_wire(req.arg) {
            Some(target) => {
                producer.clock(target).map_or(OutgoingAnswer::status(status::EOPNOTSUPP), |c| OutgoingAnswer::body(&c))
            }
            None => OutgoingAnswer::status(status::EINVAL),
        },
        Op::Formats => {
            let formats = producer.formats();
            match usize::try_from(req.arg).ok().filter(|&at| at <= formats.len()) {
                Some(at) => OutgoingAnswer::bytes(formats[at..].iter().take(MAX_BODY).copied().collect()),
                None => OutgoingAnswer::status(status::EINVAL),
            }
        }
        _ if !cpu_ok => OutgoingAnswer::status(status::EINVAL),
        Op::GetCpu => {
            let (file, doorbell) = producer.cpu_fds(req.cpu);
            let layout = CpuLayout { geometry: producer.config().geometry };
            let mut answer = OutgoingAnswer::body(&CpuBody { file_size: layout.file_size() as u64, _reserved: 0 });
            answer.fds = vec![file, doorbell];
            answer
        }
        Op::Stats => {
            producer.stats(req.cpu).map_or(OutgoingAnswer::status(status::EBUSY), |s| OutgoingAnswer::body(&s))
        }
        Op::GetReaderPage | Op::Wait => {
            let Some(newly) = shared.owners.claim(req.cpu, client) else {
                return (OutgoingAnswer::status(status::EBUSY), false);
            };
            if op == Op::Wait {
                let pages = u32::try_from(req.arg).unwrap_or(u32::MAX);
                let arming = producer.arm_doorbell(req.cpu, pages);
                return (
                    OutgoingAnswer { sleeps: !arming.ready, ..OutgoingAnswer::body(&WaitBody::from(arming)) },
                    newly,
                );
            }
            let Ok(read) = u32::try_from(req.arg) else {
                return (OutgoingAnswer::status(status::EINVAL), newly);
            };
            let answer = match producer.swap_reader_page(req.cpu, read) {
                Ok(update) => OutgoingAnswer {
                    swapped: update.status == SwapStatus::Swapped,
                    ..OutgoingAnswer::body(&ReaderBody::from(update))
                },
                Err(e) if e.is_bad_read() => OutgoingAnswer::status(status::EINVAL),
                Err(_) => OutgoingAnswer::status(status::EBUSY),
            };
            return (answer, newly);
        }
    };
    (answer, false)
}
