//! `show`: what the buffers hold now, read without consuming it.

use crate::cli::ShowArgs;
use crate::merge::{MergedItem, Merger};
use crate::source::Session;
use anyhow::{Context, Result, bail};
use ring_mmap::{Lost, PageLosses};

/// Runs `show`.
pub fn run(args: &ShowArgs) -> Result<()> {
    let session = Session::open(&args.source.target()?, &args.source.cpus.list())?;
    let mut merger = Merger::new(session.cpus.len());
    let (mut report, mut damage) = (Vec::new(), Vec::new());
    for (cpu_index, reader) in session.cpus.iter().enumerate() {
        let cpu = reader.cpu();
        if !reader.view()?.has_extension() {
            bail!(
                "show walks the ring through hyptrace's data_index[] map, which the Linux kernel's \
                 meta page does not have; read the kernel's buffers with `stream` or `record`"
            );
        }
        let snap = reader.snapshot().with_context(|| format!("taking a snapshot of cpu {cpu}"))?;
        let mut events = 0u64;
        let mut losses = PageLosses::new(snap.from_seq);
        for page in &snap.pages {
            // A gap in the sequence numbers between two pages: what lay there was overwritten.
            if let Some(lost) = losses.before(page) {
                merger.push(cpu_index, MergedItem::Lost { cpu, lost: Lost::Count(lost) });
            }
            if let Some(error) = page.decode_error() {
                losses.malformed(page.id, error);
            }
            for e in page.events() {
                events += 1;
                merger.push(
                    cpu_index,
                    MergedItem::Event { cpu, ns: session.clock.convert(e.timestamp), payload: e.payload.to_vec() },
                );
            }
        }
        let counters = reader.view()?.meta().counters();
        damage.extend(losses.finish(&counters).into_iter().map(|d| (cpu, d)));
        report.push((cpu, events, snap.pages.len(), snap.discarded));
    }
    let mut printer = super::session_printer(&session, args.format.style, args.times.ns);
    merger.release(true, |item| printer.item(None, &item));
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
