//! `record`: consume events into a trace.dat file.

use super::{interrupt_flag, rows};
use crate::cli::RecordArgs;
use crate::live::{self, Tally};
use crate::source::{Session, Target, to_ns};
use crate::table;
use crate::tracedat::{DatInfo, DatWriter, PageBuilder};
use anyhow::{Context, Result, anyhow};
use indicatif::{HumanBytes, ProgressBar, ProgressDrawTarget, ProgressStyle};
use ring_mmap::Record;
use ring_mmap::wire::ClockBody;
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

    fn finish_pages(&mut self) -> Result<()> {
        for (slot, b) in self.builders.iter_mut().enumerate() {
            let (cpu, writer) = (self.cpus[slot], &mut self.writer);
            b.flush(&mut |page: &[u8]| writer.write_page(cpu, page))?;
        }
        Ok(())
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
    let why = live::run(
        &mut session,
        args.live.options(),
        &stop,
        |slot, record| rec.borrow_mut().take(slot, record),
        |_, _| {
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
        },
    );
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
