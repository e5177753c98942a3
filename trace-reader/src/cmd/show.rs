//! `show`: what the buffers hold now, read without consuming it.

use crate::cli::ShowArgs;
use crate::merge::{Item, Merger};
use crate::output::Printer;
use crate::source::{Session, to_ns};
use anyhow::{Context, Result, bail};
use ring_mmap::{Damage, Lost};

/// Runs `show`.
pub fn run(args: &ShowArgs) -> Result<()> {
    let session = Session::open(&args.source.target()?, &args.source.cpus)?;
    let mut merger = Merger::new(session.cpus.len());
    let (mut report, mut damage) = (Vec::new(), Vec::new());
    for (slot, reader) in session.cpus.iter().enumerate() {
        let cpu = reader.cpu();
        if !reader.view()?.has_extension() {
            bail!(
                "show walks the ring through hyptrace's data_index[] map, which the Linux kernel's \
                 meta page does not have; read the kernel's buffers with `stream` or `record`"
            );
        }
        let snap = reader.snapshot().with_context(|| format!("taking a snapshot of cpu {cpu}"))?;
        let (mut events, mut expected, mut lost) = (0u64, None, 0u64);
        let mut found = Vec::new();
        for page in &snap.pages {
            // A gap in the sequence numbers between two pages: what lay there was overwritten.
            if let (Some(want), Some(first)) = (expected, page.start_seq())
                && first > want
            {
                lost = lost.saturating_add(first - want);
                merger.push(slot, Item::Lost { cpu, lost: Lost::Count(first - want) });
            }
            expected = page.end_seq();
            if let Some(error) = page.decode_error() {
                found.push(Damage::MalformedPage { id: page.id, error });
            }
            for e in page.events() {
                events += 1;
                merger.push(
                    slot,
                    Item::Event { cpu, ns: to_ns(&session.clock, e.timestamp), payload: e.payload.to_vec() },
                );
            }
        }
        let counters = reader.view()?.meta().counters();
        let counted = counters.overrun.saturating_add(counters.dropped);
        if found.is_empty() && lost > counted {
            found.push(Damage::ImplausibleLoss { reported: lost, counted });
        }
        damage.extend(found.into_iter().map(|d| (cpu, d)));
        report.push((cpu, events, snap.pages.len(), snap.discarded));
    }
    let mut printer = Printer::new(args.format);
    merger.release(true, |item| printer.item(&session.formats, &item));
    printer.flush();
    for (cpu, events, pages, discarded) in report {
        eprint!("cpu {cpu}: {events} events in {pages} pages");
        if discarded > 0 {
            eprint!("; {discarded} pages were overwritten while being read and are left out");
        }
        eprintln!();
    }
    for (cpu, problem) in &damage {
        eprintln!("trace-reader: warning: cpu {cpu}: {problem}");
    }
    super::fail_if_damaged(damage.len())
}
