//! One CPU of a hyptrace producer, consumed through its control socket and read-only mapping.

use crate::backing::ReadOnlyMapping;
use crate::client::{Connection, HANGUP_POLL, is_hangup};
use crate::consumer::{CpuSource, Lost, ReaderPage, Wakeup};
use crate::error::{AnswerProblem, BufferProblem, Error, PageRole};
use crate::wire::{Op, ReaderBody, WaitBody, parse_body};
use ring_core::{SharedView, Stats, SwapStatus};
use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::io::Errno;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One CPU of a producer: its buffer mapped read-only, its doorbell, and requests about it.
#[derive(Debug)]
pub struct SocketCpu {
    connection: Arc<Connection>,
    cpu: u32,
    mapping: ReadOnlyMapping,
    doorbell: OwnedFd,
}

impl SocketCpu {
    pub(crate) fn new(
        connection: Arc<Connection>,
        cpu: u32,
        mapping: ReadOnlyMapping,
        doorbell: OwnedFd,
    ) -> Result<Self, Error> {
        let cpu = Self { connection, cpu, mapping, doorbell };
        let view = cpu.view()?;
        let (geometry, announced) = (view.geometry(), cpu.connection.geometry());
        if !view.has_extension() {
            return Err(Error::BadBuffer(BufferProblem::NoExtension { cpu: cpu.cpu }));
        }
        if geometry != announced {
            return Err(Error::BadBuffer(BufferProblem::NotAsAnnounced { cpu: cpu.cpu, geometry, announced }));
        }
        Ok(cpu)
    }

    /// The connection.
    pub fn connection(&self) -> &Arc<Connection> {
        &self.connection
    }

    /// The mapping.
    pub fn mapping(&self) -> &ReadOnlyMapping {
        &self.mapping
    }

    /// This CPU's counters, as the producer sees them.
    pub fn stats(&self) -> Result<Stats, Error> {
        self.connection.stats(self.cpu)
    }
}

impl CpuSource for SocketCpu {
    fn cpu(&self) -> u32 {
        self.cpu
    }

    fn view(&self) -> Result<SharedView<'_>, Error> {
        self.mapping.view()
    }

    fn get_reader_page(&mut self, read: u32) -> Result<ReaderPage, Error> {
        let answer = self.connection.call(Op::GetReaderPage, self.cpu, u64::from(read))?;
        let body: ReaderBody = parse_body(&answer.body)?;
        let nr_subbufs = self.connection.geometry().nr_subbufs();
        if body.id >= nr_subbufs {
            return Err(Error::NoSuchPage { cpu: self.cpu, id: body.id, nr_subbufs, role: PageRole::Reader });
        }
        let Some(status) = SwapStatus::from_wire(body.swap_status) else {
            let problem = AnswerProblem::SwapStatus { cpu: self.cpu, status: body.swap_status };
            return Err(Error::BadAnswer { op: Op::GetReaderPage, problem });
        };
        let swapped = status == SwapStatus::Swapped;
        let lost = if swapped && body.lost_events > 0 { Lost::Count(body.lost_events) } else { Lost::None };
        Ok(ReaderPage { id: body.id, start: body.read, swapped, lost })
    }

    fn wait(&mut self, pages: u32, timeout: Option<Duration>) -> Result<Wakeup, Error> {
        match self.arm(pages) {
            Ok(true) => return Ok(Wakeup::Ready),
            Ok(false) => {}
            Err(Error::Hangup) => return Ok(Wakeup::Hangup),
            Err(e) => return Err(e),
        }
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            let ts = left.map(|d| Timespec { tv_sec: d.as_secs() as i64, tv_nsec: i64::from(d.subsec_nanos()) });
            let hangup = self.connection.hangup_fd();
            let mut fds = [PollFd::new(&self.doorbell, PollFlags::IN), PollFd::new(&hangup, HANGUP_POLL)];
            match rustix::event::poll(&mut fds, ts.as_ref()) {
                Ok(_) | Err(Errno::INTR) => {}
                Err(e) => return Err(Error::io("poll", e)),
            }
            if is_hangup(fds[1].revents()) {
                return Ok(Wakeup::Hangup);
            }
            if !fds[0].revents().is_empty() {
                crate::doorbell::clear(self.doorbell.as_fd());
                return Ok(Wakeup::Ready);
            }
            if left.is_some_and(|l| l.is_zero()) {
                return Ok(Wakeup::TimedOut);
            }
        }
    }

    fn arm(&mut self, pages: u32) -> Result<bool, Error> {
        let answer = self.connection.call(Op::Wait, self.cpu, u64::from(pages))?;
        let body: WaitBody = parse_body(&answer.body)?;
        // A count left on the eventfd from an earlier arming only wakes the caller early.
        Ok(body.ready != 0)
    }

    fn check_mapping(&self) -> Result<(), Error> {
        self.mapping.check_intact()
    }

    fn wait_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.doorbell.as_fd()
    }
}
