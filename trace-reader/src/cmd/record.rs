//! `record`: consume events into a trace.dat file.

use super::{interrupt_flag, rows};
use crate::cli::RecordArgs;
use crate::live::{self, Tally};
use crate::source::{CpuReader, Session, Target, to_ns};
use crate::table;
use crate::tracedat::{DatError, DatInfo, DatWriter, PageBuilder};
use anyhow::{Context, Result, anyhow};
use indicatif::{HumanBytes, ProgressBar, ProgressDrawTarget, ProgressStyle};
use ring_core::EventIter;
use ring_mmap::producer::IDENTITY_CLOCK;
use ring_mmap::wire::ClockBody;
use ring_mmap::{Error, PageCopy, Record};
use std::cell::RefCell;
use std::time::Instant;

/// Everything being written.
struct Recording {
    writer: DatWriter,
    builders: Vec<PageBuilder>,
    cpus: Vec<u32>,
    tallies: Vec<Tally>,
    clock: ClockBody,
    /// The first write error: recording stops at the next round.
    error: Option<anyhow::Error>,
}

impl Recording {
    fn take(&mut self, slot: usize, record: Record<'_>) {
        if self.error.is_some() {
            return;
        }
        self.tallies[slot].count(&record);
        let cpu = self.cpus[slot];
        let Self { writer, builders, .. } = self;
        let mut out = |page: &[u8]| writer.write_page(cpu, page);
        let result = match record {
            Record::Lost(lost) => builders[slot].lost(lost, &mut out).map_err(anyhow::Error::from),
            Record::Event(e) => {
                let ns = to_ns(&self.clock, e.timestamp);
                match builders[slot].push(ns, e.payload.len(), |d| _ = e.payload.copy_to(d), &mut out) {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => Err(anyhow!(e).context(format!("cpu {cpu}"))),
                    Err(e) => Err(e.into()),
                }
            }
        };
        if let Err(e) = result {
            self.error = Some(e.context("writing the trace file"));
        }
    }

    /// Takes a reader page copied whole ([`PageCopy`]). A copy that begins at the start of its
    /// page is stored as it is when its timestamps are nanoseconds already (the producer's clock
    /// is the identity): one page write instead of re-encoding every event. Otherwise, and when
    /// a loss count would not fit on it, its events go through the page builder one by one.
    fn take_copy(&mut self, slot: usize, copy: &PageCopy, page: &mut [u8]) {
        if self.error.is_some() {
            return;
        }
        self.tallies[slot].count_copy(copy);
        let cpu = self.cpus[slot];
        let Self { writer, builders, clock, .. } = self;
        let builder = &mut builders[slot];
        let mut out = |page: &[u8]| writer.write_page(cpu, page);
        let whole = *clock == IDENTITY_CLOCK && copy.page.start == 0;
        let stored = if whole { builder.put_page(page, copy.events, copy.page.lost, &mut out) } else { Ok(false) };
        let result = match stored {
            Ok(true) => Ok(()),
            Ok(false) => Self::push_events(builder, clock, copy, page, &mut out).context(format!("cpu {cpu}")),
            Err(e) => Err(e.into()),
        };
        if let Err(e) = result {
            self.error = Some(e.context("writing the trace file"));
        }
    }

    /// The events of `copy` from its start, pushed into `builder` one by one.
    fn push_events(
        builder: &mut PageBuilder,
        clock: &ClockBody,
        copy: &PageCopy,
        page: &[u8],
        out: &mut impl FnMut(&[u8]) -> Result<(), DatError>,
    ) -> Result<()> {
        builder.lost(copy.page.lost, out)?;
        for event in EventIter::starting_at(page, copy.page.start as usize)? {
            let event = event?;
            let payload = event.payload;
            builder.push(to_ns(clock, event.timestamp), payload.len(), |d| d.copy_from_slice(payload), out)??;
        }
        Ok(())
    }

    fn finish_pages(&mut self) -> Result<()> {
        for (slot, b) in self.builders.iter_mut().enumerate() {
            let (cpu, writer) = (self.cpus[slot], &mut self.writer);
            b.flush(&mut |page: &[u8]| writer.write_page(cpu, page))?;
        }
        Ok(())
    }
}

/// How `record` reads: live, by page copies into `page` (one sub-buffer); after the producer
/// went away, record by record from what it left.
struct Copies<'r> {
    rec: &'r RefCell<Recording>,
    page: Vec<u8>,
}

impl live::Reading for Copies<'_> {
    fn live(&mut self, slot: usize, cpu: &mut CpuReader) -> Result<u64, Error> {
        let rec = self.rec;
        cpu.drain_copies(&mut self.page, |copy, page| rec.borrow_mut().take_copy(slot, copy, page))
    }

    fn remaining(&mut self, slot: usize, cpu: &mut CpuReader) -> Result<u64, Error> {
        let rec = self.rec;
        cpu.drain_remaining(|record| rec.borrow_mut().take(slot, record))
    }
}

/// The trace clock's name: the kernel's from `trace_clock`; a producer's timestamps are
/// converted to nanoseconds, and trace-cmd shows nanoseconds when no clock is named.
fn clock_name(target: &Target) -> Option<String> {
    let Target::Kernel { tracing } = target else { return None };
    let text = std::fs::read_to_string(tracing.join("trace_clock")).ok()?;
    Some(text.split('[').nth(1)?.split(']').next()?.to_string())
}

/// Runs `record`.
pub fn run(args: &RecordArgs) -> Result<()> {
    let stop = interrupt_flag()?;
    let target = args.source.target()?;
    let mut session = Session::open(&target, &args.source.cpus)?;
    let cpus: Vec<u32> = session.cpus.iter().map(|c| c.cpu()).collect();
    let info = DatInfo::new(session.subbuf_size, &session.formats, clock_name(&target));
    let writer = DatWriter::create(&args.output, info, session.nr_cpus, &cpus)
        .with_context(|| format!("creating {}", args.output.display()))?;
    let rec = RefCell::new(Recording {
        writer,
        builders: cpus.iter().map(|_| PageBuilder::new(session.subbuf_size as usize)).collect(),
        tallies: vec![Tally::default(); cpus.len()],
        cpus: cpus.clone(),
        clock: session.clock,
        error: None,
    });
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{spinner} recording [{elapsed_precise}] {msg}").expect("a valid template"),
    );
    let started = Instant::now();
    let mut reading = Copies { rec: &rec, page: vec![0; session.subbuf_size as usize] };
    let why = live::run(&mut session, args.live.options(), &stop, &mut reading, |_, _| {
        let mut r = rec.borrow_mut();
        if let Some(e) = r.error.take() {
            return Err(e);
        }
        let events: u64 = r.tallies.iter().map(|t| t.events).sum();
        let lost: u64 = r.tallies.iter().map(|t| t.lost).sum();
        let rate = events as f64 / started.elapsed().as_secs_f64().max(1e-9);
        let bytes = r.writer.pages() * r.writer.page_size() as u64;
        bar.set_message(format!("{events} events, {}, {rate:.0} events/s, {lost} lost", HumanBytes(bytes)));
        bar.tick();
        Ok(())
    });
    bar.finish_and_clear();
    let why = why?;
    let secs = started.elapsed().as_secs_f64();
    let mut rec = rec.into_inner();
    rec.finish_pages()?;
    let rows = rows(&session, &rec.tallies, secs)?;
    let stats: Vec<String> = rows.iter().map(table::cpustat).collect();
    let events: u64 = rec.tallies.iter().map(|t| t.events).sum();
    let pages = rec.writer.pages();
    let size = rec.writer.finish(&stats).with_context(|| format!("writing {}", args.output.display()))?;
    eprint!("{}", table::summary(&rows));
    eprintln!(
        "trace-reader: {}; wrote {}: {events} events in {} pages, {}",
        why.reason(),
        args.output.display(),
        pages,
        HumanBytes(size)
    );
    Ok(())
}
