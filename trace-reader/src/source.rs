//! Where events come from: a hyptrace producer's control socket, or the Linux kernel's tracefs,
//! opened the same way and read with the same [`Consumer`].

use crate::formats::Formats;
use anyhow::{Context, Result, bail};
use ring_core::format::{COMMIT_LEN_MASK, SUBBUF_COMMIT_OFFSET, SUBBUF_HEADER_SIZE};
use ring_core::{ClockParams, SharedView, Snapshot, Stats, TraceClock};
use ring_mmap::{
    BufferDir, Connection, Consumer, CpuSource, DirCpu, DrainScope, Error, KernelCpu, KernelStats, PageCopy, Record,
    Remaining, SocketCpu,
};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A hyptrace producer serving `socket`; wait up to `wait` for it to appear.
    Producer {
        /// Control socket.
        socket: PathBuf,
        /// How long to wait for the producer to start serving.
        wait: Duration,
        /// The clock its timestamps are converted to.
        clock: TraceClock,
    },
    /// The kernel's trace buffer in `tracing` (tracefs, or one of its instances).
    Kernel {
        /// The tracefs directory.
        tracing: PathBuf,
    },
    /// The buffer directory a hyptrace producer left behind (`--dir`), read post-mortem.
    Dir {
        /// The directory.
        dir: PathBuf,
    },
}

impl Target {
    /// The name of the trace clock its timestamps are on: the kernel's from `trace_clock`; a
    /// producer's are converted to nanoseconds, and trace-cmd shows nanoseconds when no clock is
    /// named.
    pub fn trace_clock(&self) -> Option<String> {
        let Target::Kernel { tracing } = self else { return None };
        let text = std::fs::read_to_string(tracing.join("trace_clock")).ok()?;
        crate::tracedat::clock_in_use(&text)
    }
}

/// One CPU being consumed.
#[derive(Debug)]
pub enum CpuReader {
    /// From a hyptrace producer.
    Socket(Consumer<SocketCpu>),
    /// From the kernel.
    Kernel(Consumer<KernelCpu>),
    /// From a dead producer's buffer directory.
    Dir(Consumer<DirCpu>),
}

/// The counters of one CPU, from wherever the source keeps them: ring-core's [`Stats`] (those
/// the source has, the others 0), and what the reader tells besides.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// The buffer's counters.
    pub stats: Stats,
    /// Unread events still in the buffer.
    pub unread: u64,
    /// Bytes of unread event data, when the source can tell.
    pub bytes: Option<u64>,
}

macro_rules! each {
    ($self:ident, $c:ident => $e:expr) => {
        match $self {
            CpuReader::Socket($c) => $e,
            CpuReader::Kernel($c) => $e,
            CpuReader::Dir($c) => $e,
        }
    };
}

impl CpuReader {
    /// The CPU.
    pub fn cpu(&self) -> u32 {
        each!(self, c => c.source().cpu())
    }

    /// Reads everything available now (see [`Consumer::drain`]).
    pub fn drain(&mut self, sink: impl FnMut(Record<'_>)) -> Result<u64, Error> {
        each!(self, c => c.drain(sink))
    }

    /// Reads what `scope` says of what is available now by page copies into `out` (see
    /// [`Consumer::drain_copies`]).
    pub fn drain_copies(
        &mut self,
        scope: DrainScope,
        out: &mut [u8],
        sink: impl FnMut(&PageCopy, &mut [u8]),
    ) -> Result<u64, Error> {
        each!(self, c => c.drain_copies(scope, out, sink))
    }

    /// After the producer went away: reads what it left ([`Consumer::drain_remaining`]); a kernel
    /// buffer never goes away, so there is nothing to do.
    pub fn drain_remaining(&mut self, sink: impl FnMut(Record<'_>)) -> Result<Remaining, Error> {
        match self {
            CpuReader::Socket(c) => c.drain_remaining(sink),
            CpuReader::Dir(c) => c.drain_remaining(sink),
            CpuReader::Kernel(_) => Ok(Remaining::default()),
        }
    }

    /// Arms this CPU's wakeup; true if data is ready already.
    pub fn arm(&mut self, pages: u32) -> Result<bool, Error> {
        each!(self, c => c.source_mut().arm(pages))
    }

    /// The descriptor to poll after [`CpuReader::arm`].
    pub fn wait_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        each!(self, c => c.source().wait_fd())
    }

    /// Resets the wakeup after it fired (empties a doorbell eventfd; a kernel file needs nothing).
    pub fn clear_wakeup(&self) {
        if let CpuReader::Socket(c) = self {
            ring_mmap::doorbell::clear(c.source().wait_fd());
        }
    }

    /// Everything unread in the buffer, without consuming it: a dead producer's buffer is read
    /// as it was left ([`SharedView::snapshot_quiescent`]), a live one's validated against the
    /// writer ([`SharedView::snapshot`]).
    pub fn snapshot(&self) -> Result<Snapshot, Error> {
        let view = self.view()?;
        let snapshot = match self.producer_gone() {
            true => view.snapshot_quiescent(view.meta().reader().read),
            false => view.snapshot(),
        };
        // A buffer file truncated while it was copied reads as zeros: say so rather than show them.
        self.check_mapping()?;
        Ok(snapshot?)
    }

    /// Whether the buffer's producer is gone, so that nothing changes in it any more: always for
    /// a buffer directory, once the connection hung up for a producer's socket, never for the
    /// kernel's buffers.
    pub fn producer_gone(&self) -> bool {
        match self {
            CpuReader::Dir(_) => true,
            CpuReader::Kernel(_) => false,
            CpuReader::Socket(c) => c.source().connection().hung_up(),
        }
    }

    /// [`Error::Truncated`] if the buffer's file shrank while mapped ([`CpuSource::check_mapping`]).
    pub fn check_mapping(&self) -> Result<(), Error> {
        each!(self, c => c.source().check_mapping())
    }

    /// The buffer's mapping.
    pub fn view(&self) -> Result<SharedView<'_>, Error> {
        each!(self, c => c.source().view())
    }

    /// The CPU's counters. A live hyptrace producer's exact ones (`STATS`). Once it has gone, or
    /// for a buffer directory, the meta page's, except `entries`, which the writer refreshes only
    /// as it leaves a page or lets go of the buffer (a killed one did not): the unread events are
    /// counted on the pages, and `entries` is at least what was read, overwritten and left.
    /// The kernel's from the meta page and tracefs `stats`.
    pub fn counters(&self, tracing: Option<&std::path::Path>) -> Result<Counters> {
        let view = self.view()?;
        let meta = view.meta().counters();
        self.check_mapping()?;
        let exact = match self {
            CpuReader::Socket(c) => c.source().stats().ok(),
            CpuReader::Kernel(_) | CpuReader::Dir(_) => None,
        };
        let mut m = exact.unwrap_or(meta);
        match self {
            CpuReader::Socket(_) | CpuReader::Dir(_) => {
                let snapshot = self.snapshot().ok();
                let unread = match (exact, &snapshot) {
                    (None, Some(snap)) => snap.events().count() as u64,
                    _ => m.in_buffer(),
                };
                m.entries = m.entries.max(m.read.saturating_add(m.overrun).saturating_add(unread));
                Ok(Counters { stats: m, unread, bytes: snapshot.map(|snap| unread_bytes(&snap)) })
            }
            CpuReader::Kernel(c) => {
                let dir = tracing.context("kernel counters need the tracefs directory")?;
                let k: KernelStats = KernelCpu::stats_file(dir, c.source().cpu())?;
                let stats = Stats {
                    entries: m.entries.max(k.stats.entries),
                    pages_lost: m.pages_lost,
                    pages_touched: m.pages_touched,
                    ..k.stats
                };
                Ok(Counters { stats, unread: k.unread, bytes: Some(k.bytes) })
            }
        }
    }
}

/// Bytes of committed, unread event data in a hyptrace buffer's snapshot.
fn unread_bytes(snap: &Snapshot) -> u64 {
    snap.pages
        .iter()
        .map(|p| {
            let commit = p
                .bytes
                .get(SUBBUF_COMMIT_OFFSET..SUBBUF_HEADER_SIZE)
                .map_or(0, |b| u64::from_ne_bytes(b.try_into().expect("8 bytes")) & COMMIT_LEN_MASK);
            commit.saturating_sub(u64::from(p.start))
        })
        .sum()
}

/// An opened source: its CPUs, the formats to decode their events and the clock conversion.
#[derive(Debug)]
pub struct Session {
    /// What was opened.
    pub target: Target,
    /// The producer's connection, for a socket target.
    pub connection: Option<Arc<Connection>>,
    /// The CPUs read, in CPU order.
    pub cpus: Vec<CpuReader>,
    /// Event formats.
    pub formats: Formats,
    /// Raw timestamps to nanoseconds.
    pub clock: ClockParams,
    /// Bytes per sub-buffer.
    pub subbuf_size: u32,
    /// CPUs the source has (all of them, read or not).
    pub nr_cpus: u32,
}

impl Session {
    /// Opens `target`, reading the CPUs in `only` (all if empty).
    pub fn open(target: &Target, only: &[u32]) -> Result<Self> {
        match target {
            Target::Producer { socket, wait, clock } => {
                let connection = connect(socket, *wait)?;
                let cpus = select(connection.hello().nr_cpus, only)?;
                Self::producer(target.clone(), connection, &cpus, *clock)
            }
            Target::Kernel { tracing } => Self::open_kernel(target.clone(), tracing, only),
            Target::Dir { dir } => Self::open_dir(target.clone(), dir, only),
        }
    }

    fn open_dir(target: Target, dir: &std::path::Path, only: &[u32]) -> Result<Self> {
        // Its errors name the directory or file.
        let opened = BufferDir::open(dir)?;
        let nr_cpus = opened.cpus.len() as u32;
        let wanted = select(nr_cpus, only)?;
        let subbuf_size = opened.cpus[0].view()?.geometry().subbuf_size();
        let cpus = opened
            .cpus
            .into_iter()
            .filter(|c| wanted.contains(&c.cpu()))
            .map(|c| Ok(CpuReader::Dir(Consumer::new(c)?)))
            .collect::<Result<Vec<_>>>()?;
        let formats = match &opened.formats {
            Some(blob) => Formats::from_blob(blob).context("the producer's event formats")?,
            None => bail!("{} has no formats file: its events cannot be decoded", dir.display()),
        };
        Ok(Self {
            target,
            connection: None,
            cpus,
            formats,
            clock: opened.clock.unwrap_or(ClockParams::IDENTITY),
            subbuf_size,
            nr_cpus,
        })
    }

    /// Opens `target` as up to `groups` sessions, each to be read on a thread of its own: the
    /// CPUs in `only` (all if empty) dealt out in turn, so a session holds CPUs `g`,
    /// `g + groups`, ... of the selection, in CPU order. A producer's sessions get a connection
    /// each: one connection's calls take turns, and the producer serves connections side by
    /// side.
    pub fn open_groups(target: &Target, only: &[u32], groups: usize) -> Result<Vec<Self>> {
        let Target::Producer { socket, wait, clock } = target else {
            return Ok(Self::open(target, only)?.split(groups));
        };
        let first = connect(socket, *wait)?;
        let groups = deal(select(first.hello().nr_cpus, only)?, groups);
        let mut sessions = Vec::with_capacity(groups.len());
        let mut connection = Some(first);
        for group in groups {
            let c = match connection.take() {
                Some(c) => c,
                None => connect(socket, *wait)?,
            };
            sessions.push(
                Self::producer(target.clone(), c, &group, *clock).with_context(|| format!("opening cpus {group:?}"))?,
            );
        }
        Ok(sessions)
    }

    /// This session's CPUs dealt out in turn into up to `groups` sessions.
    fn split(self, groups: usize) -> Vec<Self> {
        let Self { target, connection, cpus, formats, clock, subbuf_size, nr_cpus } = self;
        deal(cpus, groups)
            .into_iter()
            .map(|cpus| Self {
                target: target.clone(),
                connection: connection.clone(),
                cpus,
                formats: formats.clone(),
                clock,
                subbuf_size,
                nr_cpus,
            })
            .collect()
    }

    /// The session reading `cpus` over `connection`, their timestamps converted to `clock`.
    fn producer(target: Target, connection: Arc<Connection>, cpus: &[u32], clock: TraceClock) -> Result<Self> {
        let hello = *connection.hello();
        let cpus = cpus
            .iter()
            .map(|&cpu| Ok(CpuReader::Socket(Consumer::new(connection.open_cpu(cpu)?)?)))
            .collect::<Result<Vec<_>>>()?;
        let formats = Formats::from_blob(&connection.formats()?).context("the producer's event formats")?;
        let clock = connection.clock(clock).with_context(|| match clock.tracefs_name() {
            Some(name) => format!("asking for the producer's timestamps on the host's `{name}` clock"),
            None => "asking for the producer's clock".to_string(),
        })?;
        Ok(Self {
            target,
            connection: Some(connection),
            cpus,
            formats,
            clock,
            subbuf_size: hello.subbuf_size,
            nr_cpus: hello.nr_cpus,
        })
    }

    fn open_kernel(target: Target, tracing: &std::path::Path, only: &[u32]) -> Result<Self> {
        let nr_cpus = std::fs::read_dir(tracing.join("per_cpu"))
            .with_context(|| format!("{} is not a tracefs buffer", tracing.display()))?
            .filter_map(|e| e.ok()?.file_name().to_str()?.strip_prefix("cpu")?.parse::<u32>().ok())
            .max()
            .map_or(0, |m| m + 1);
        let cpus = select(nr_cpus, only)?
            .into_iter()
            .map(|cpu| {
                let source = KernelCpu::open(tracing, cpu)
                    .with_context(|| format!("mapping cpu {cpu} of {}", tracing.display()))?;
                Ok(CpuReader::Kernel(Consumer::new(source)?))
            })
            .collect::<Result<Vec<_>>>()?;
        // Instances have no events/ of their own on every kernel: fall back to the top level.
        let root = if tracing.join("events").is_dir() {
            tracing.to_path_buf()
        } else {
            PathBuf::from(ring_mmap::kernel::TRACEFS)
        };
        let (formats, unparsed) = Formats::from_tracefs(&root).context("reading the kernel's event formats")?;
        for (event, why) in &unparsed {
            eprintln!(
                "trace-reader: warning: the kernel's format of {event} does not parse ({why}): its events print raw"
            );
        }
        let subbuf_size = cpus.first().map_or(Ok(4096), |c| c.view().map(|v| v.geometry().subbuf_size()))?;
        Ok(Self { target, connection: None, cpus, formats, clock: ClockParams::IDENTITY, subbuf_size, nr_cpus })
    }

    /// The process id of the producer this session reads live, in this pid namespace (where its
    /// threads are named in `/proc`); `None` for the kernel and a dead producer's directory.
    pub fn producer_pid(&self) -> Option<u32> {
        self.connection.as_ref().map(|connection| connection.producer_pid())
    }

    /// The tracefs directory, for a kernel target.
    pub fn tracing(&self) -> Option<&std::path::Path> {
        match &self.target {
            Target::Kernel { tracing } => Some(tracing),
            Target::Producer { .. } | Target::Dir { .. } => None,
        }
    }
}

/// `items` dealt out in turn into up to `groups` groups (at least one), each in the items' order:
/// group `g` holds items `g`, `g + groups`, ...; no group is empty.
fn deal<T>(items: Vec<T>, groups: usize) -> Vec<Vec<T>> {
    let groups = groups.max(1).min(items.len());
    let mut dealt: Vec<Vec<T>> = (0..groups).map(|_| Vec::new()).collect();
    for (i, item) in items.into_iter().enumerate() {
        dealt[i % groups].push(item);
    }
    dealt
}

/// Connects to the producer serving `socket`, waiting up to `wait` for it to serve: while the
/// socket (or its directory) does not exist, nobody listens on it, or the producer closes the
/// connection (it may be starting, or serving as many clients as it takes). Anything else fails
/// at once: a directory or a listening process that is not trusted, a listen backlog that stayed
/// full ([`Connection::connect`] waits for room a bounded time), a refused handshake.
fn connect(socket: &std::path::Path, wait: Duration) -> Result<Arc<Connection>> {
    let deadline = Instant::now() + wait;
    loop {
        match Connection::connect(socket) {
            Ok(c) => return Ok(c),
            // A producer is serving, but no more clients: wait for a place as long as asked.
            Err(e @ ring_mmap::Error::TooManyClients) if Instant::now() >= deadline => return Err(e.into()),
            Err(ring_mmap::Error::TooManyClients) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) if !not_serving_yet(&e) => {
                return Err(e).with_context(|| format!("connecting to the producer at {}", socket.display()));
            }
            Err(e) if Instant::now() >= deadline => {
                return Err(e).with_context(|| format!("no producer is serving {}", socket.display()));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// True if `error` of a connection attempt means the producer is not serving yet.
fn not_serving_yet(error: &Error) -> bool {
    use std::io::ErrorKind;
    match error {
        Error::Path { source, .. } => matches!(source.kind(), ErrorKind::NotFound | ErrorKind::ConnectionRefused),
        Error::Hangup => true,
        _ => false,
    }
}

/// The CPUs to read, in CPU order: `only` (checked against `nr_cpus`, each once), or all.
fn select(nr_cpus: u32, only: &[u32]) -> Result<Vec<u32>> {
    if nr_cpus == 0 {
        bail!("the source has no CPUs");
    }
    if let Some(bad) = only.iter().find(|&&c| c >= nr_cpus) {
        bail!("there is no cpu {bad} (the source has {nr_cpus})");
    }
    if only.is_empty() {
        return Ok((0..nr_cpus).collect());
    }
    let mut cpus = only.to_vec();
    cpus.sort_unstable();
    cpus.dedup();
    Ok(cpus)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A producer killed mid-page never published its last events in `entries`: the counters
    /// of its directory count them on the pages, so `entries >= read + overrun + unread`.
    #[test]
    fn a_dead_producers_entries_are_counted_from_its_pages() {
        use ring_core::{Config, CounterClock, Geometry, Mode};
        use ring_mmap::{Backing, ProducerConfig, ShmProducer};
        let temporary = tempfile::tempdir().unwrap();
        let dir = temporary.path().join("bufs");
        let config = ProducerConfig {
            nr_cpus: 1,
            buffer: Config { geometry: Geometry::new(4096, 4).unwrap(), mode: Mode::Overwrite },
            backing: Backing::Dir { path: dir.clone(), overwrite: false },
            formats: Vec::new(),
        };
        let producer = ShmProducer::new(config, |_| CounterClock::new(1)).unwrap();
        let writer = producer.cpu(0).writer().unwrap();
        for i in 0u32..2000 {
            writer.write(&i.to_le_bytes()).unwrap();
        }
        // Killed: the writer never lets go, so the meta area's `entries` stops at its last page.
        std::mem::forget(writer);
        let lagging = producer.cpu(0).view().meta().counters().entries;
        drop(producer);
        let opened = BufferDir::open(&dir).unwrap();
        let cpu = CpuReader::Dir(Consumer::new(opened.cpus.into_iter().next().unwrap()).unwrap());
        let counters = cpu.counters(None).unwrap();
        assert!(lagging < 2000, "the meta area lags: {lagging}");
        assert_eq!(counters.stats.entries, 2000);
        assert_eq!(counters.stats.read + counters.stats.overrun + counters.unread, 2000, "{counters:?}");
    }

    #[test]
    fn cpus_are_dealt_out_in_turn_into_non_empty_groups() {
        assert_eq!(deal(vec![0, 1, 2, 3, 4], 2), [vec![0, 2, 4], vec![1, 3]]);
        assert_eq!(deal(vec![5, 7], 4), [vec![5], vec![7]], "no empty group");
        assert_eq!(deal(vec![1, 2], 0), [vec![1, 2]], "at least one group");
    }

    #[test]
    fn cpus_are_selected_in_cpu_order_each_once() {
        assert_eq!(select(3, &[]).unwrap(), [0, 1, 2], "all by default");
        assert_eq!(select(4, &[2, 0, 2]).unwrap(), [0, 2], "sorted, duplicates dropped");
        assert!(select(2, &[2]).unwrap_err().to_string().contains("no cpu 2"));
        assert!(select(0, &[]).is_err(), "a source without CPUs");
    }
}
