//! What a reader thread writes: each CPU's events into its spool of the file, in pages of the
//! file's size, with the ids the file gives them.

use super::progress::Progress;
use crate::event_ids::EventIds;
use crate::live::{self, Finished, LiveOptions, Tally};
use crate::source::{CpuReader, Session};
use crate::tracedat::{DatError, PageBuilder, Spool};
use anyhow::{Context, Result, anyhow};
use ring_core::{ClockParams, EventIter};
use ring_mmap::{DrainScope, Error, PageCopy, Record, Remaining};
use std::cell::RefCell;
use std::sync::atomic::AtomicBool;

/// What one CPU's reader thread writes.
pub(super) struct CpuRecording<'s> {
    cpu: u32,
    pub(super) spool: &'s mut Spool,
    builder: PageBuilder,
    pub(super) tally: Tally,
    clock: ClockParams,
    /// The file's ids of the source's events, where they differ.
    ids: Option<&'s EventIds>,
    /// The source's pages are the file's size: one that needs no other change is stored as it is.
    same_page_size: bool,
    /// The first write error: recording stops at the next round.
    error: Option<anyhow::Error>,
}

impl CpuRecording<'_> {
    fn take(&mut self, record: Record<'_>) {
        if self.error.is_some() {
            return;
        }
        self.tally.count(&record);
        let Self { cpu, spool, builder, clock, ids, .. } = self;
        let mut out = |page: &[u8]| spool.write_page(page);
        let result = match record {
            Record::Lost(lost) => builder.lost(lost, &mut out).map_err(anyhow::Error::from),
            Record::Event(e) => {
                let ns = clock.convert(e.timestamp);
                let fill = |d: &mut [u8]| {
                    e.payload.copy_to(d);
                    renumber(*ids, d);
                };
                match builder.push(ns, e.payload.len(), fill, &mut out) {
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
    /// page, of the file's page size, is stored as it is (its events renumbered in place where
    /// the file numbers them otherwise) when its timestamps are nanoseconds already (the
    /// producer's clock is the identity): one page write instead of re-encoding every event.
    /// Otherwise, and when a loss count would not fit on it, its events go through the page
    /// builder one by one.
    fn take_copy(&mut self, copy: &PageCopy, page: &mut [u8]) {
        if self.error.is_some() {
            return;
        }
        self.tally.count_copy(copy);
        let Self { cpu, spool, builder, clock, ids, same_page_size, .. } = self;
        let mut out = |page: &[u8]| spool.write_page(page);
        let whole = *same_page_size && *clock == ClockParams::IDENTITY && copy.page.start == 0;
        if whole && let Some(ids) = ids {
            renumber_page(ids, page);
        }
        let stored = if whole { builder.put_page(page, copy.events, copy.page.lost, &mut out) } else { Ok(false) };
        let result = match stored {
            Ok(true) => Ok(()),
            Ok(false) => {
                // A page stored whole had its events renumbered already.
                let ids = if whole { None } else { *ids };
                Self::push_events(builder, clock, ids, copy, page, &mut out).context(format!("cpu {cpu}"))
            }
            Err(e) => Err(e.into()),
        };
        if let Err(e) = result {
            self.error = Some(e.context("writing the trace file"));
        }
    }

    /// The events of `copy` from its start, pushed into `builder` one by one.
    fn push_events(
        builder: &mut PageBuilder,
        clock: &ClockParams,
        ids: Option<&EventIds>,
        copy: &PageCopy,
        page: &[u8],
        out: &mut impl FnMut(&[u8]) -> Result<(), DatError>,
    ) -> Result<()> {
        builder.lost(copy.page.lost, out)?;
        for event in EventIter::starting_at(page, copy.page.start as usize)? {
            let event = event?;
            let payload = event.payload;
            let fill = |d: &mut [u8]| {
                d.copy_from_slice(payload);
                renumber(ids, d);
            };
            builder.push(clock.convert(event.timestamp), payload.len(), fill, out)??;
        }
        Ok(())
    }

    /// Writes the page being built.
    fn finish(&mut self) -> Result<(), DatError> {
        let spool = &mut *self.spool;
        self.builder.flush(&mut |page: &[u8]| spool.write_page(page))
    }
}

/// How `record` reads a session's CPUs (`recs[cpu_index]` records `session.cpus[cpu_index]`):
/// live, by page copies into `page` (one sub-buffer); after the producer went away, record by
/// record from what it left.
struct Copies<'r, 's> {
    recs: &'r [RefCell<CpuRecording<'s>>],
    page: Vec<u8>,
}

impl live::Reading for Copies<'_, '_> {
    fn live(&mut self, cpu_index: usize, cpu: &mut CpuReader, scope: DrainScope) -> Result<u64, Error> {
        let rec = &self.recs[cpu_index];
        cpu.drain_copies(scope, &mut self.page, |copy, page| rec.borrow_mut().take_copy(copy, page))
    }

    fn remaining(&mut self, cpu_index: usize, cpu: &mut CpuReader) -> Result<Remaining, Error> {
        let rec = &self.recs[cpu_index];
        cpu.drain_remaining(|record| rec.borrow_mut().take(record))
    }
}

/// Where a session's events go: the file's page size, and the file's ids of the source's
/// events where they differ.
#[derive(Debug, Clone, Copy)]
pub(super) struct Destination<'s> {
    /// Bytes per page of the file.
    pub page_size: u32,
    /// The file's ids of the source's events.
    pub ids: Option<&'s EventIds>,
}

/// Where a reader thread's session goes: each CPU's spool, the file's page size and ids, the
/// stop flag all threads share and the thread's progress counts.
pub(super) struct Recording<'r, 's> {
    /// `spools[cpu_index]` for `session.cpus[cpu_index]`.
    pub spools: Vec<&'s mut Spool>,
    /// The file's page size and ids.
    pub to: Destination<'r>,
    /// Set to stop every reader.
    pub stop: &'r AtomicBool,
    /// This thread's counts, for the progress line.
    pub progress: &'r Progress,
}

/// Records the CPUs of `session` as `recording` says, until a stop condition: why it stopped
/// and what was read from each CPU.
pub(super) fn record_session(
    session: &mut Session,
    recording: Recording<'_, '_>,
    opts: LiveOptions,
) -> Result<(Finished, Vec<Tally>)> {
    let Recording { spools, to, stop, progress } = recording;
    let recs: Vec<RefCell<CpuRecording<'_>>> = session
        .cpus
        .iter()
        .zip(spools)
        .map(|(cpu, spool)| {
            RefCell::new(CpuRecording {
                cpu: cpu.cpu(),
                spool,
                builder: PageBuilder::new(to.page_size as usize),
                tally: Tally::default(),
                clock: session.clock,
                ids: to.ids,
                same_page_size: session.subbuf_size == to.page_size,
                error: None,
            })
        })
        .collect();
    let mut reading = Copies { recs: &recs, page: vec![0; session.subbuf_size as usize] };
    // What a dead producer's damaged buffer could not give is printed as warnings by `run`; the
    // file holds what could be read, so the recording goes on and says so at the end.
    let finished = live::run(session, opts, stop, &mut reading, |_, _| {
        if let Some(e) = recs.iter().find_map(|r| r.borrow_mut().error.take()) {
            return Err(e);
        }
        progress.publish(&recs);
        Ok(())
    })?;
    for r in &recs {
        let mut r = r.borrow_mut();
        let cpu = r.cpu;
        r.finish().with_context(|| format!("writing the trace file (cpu {cpu})"))?;
    }
    progress.publish(&recs);
    Ok((finished, recs.into_iter().map(|r| r.into_inner().tally).collect()))
}

/// `payload`'s event id as the file numbers it, where `ids` says the file numbers it otherwise.
fn renumber(ids: Option<&EventIds>, payload: &mut [u8]) {
    if let Some(ids) = ids {
        ids.renumber(payload);
    }
}

/// Renumbers, in place, the events of `page` (a sub-buffer as the source wrote it) as `ids`
/// says. Decoding stops at the first record it cannot read, as storing the page leaves it.
fn renumber_page(ids: &EventIds, page: &mut [u8]) {
    let Ok(events) = EventIter::starting_at(&*page, 0) else { return };
    let base = page.as_ptr() as usize;
    // Where each payload lies in the page: their bytes are rewritten once the reading is done.
    let payloads: Vec<(usize, usize)> =
        events.map_while(Result::ok).map(|e| (e.payload.as_ptr() as usize - base, e.payload.len())).collect();
    for (at, len) in payloads {
        ids.renumber(&mut page[at..at + len]);
    }
}
