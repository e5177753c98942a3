//! `report`: print a trace.dat file, merged across CPUs in time order.

use crate::cli::ReportArgs;
use crate::merge::MergedItem;
use crate::output::Printer;
use crate::tracedat::{DatFile, DatPages};
use anyhow::{Context, Result, bail};
use ring_core::EventIter;
use ring_mmap::Lost;
use std::collections::VecDeque;

/// One CPU's pages, decoded a page at a time.
struct CpuItems {
    cpu: u32,
    pages: DatPages,
    page_no: u64,
    queue: VecDeque<MergedItem>,
    /// Pages that did not decode.
    corrupt: u64,
}

impl CpuItems {
    /// Makes sure the queue has an item unless the pages are exhausted.
    fn fill(&mut self) -> Result<()> {
        while self.queue.is_empty() {
            let Some(page) = self.pages.next_page()? else { return Ok(()) };
            self.page_no += 1;
            let mut events = match EventIter::new(page) {
                Ok(it) => it,
                Err(e) => {
                    self.corrupt += 1;
                    eprintln!("trace-reader: cpu {} page {}: {e}; page skipped", self.cpu, self.page_no - 1);
                    continue;
                }
            };
            let lost = events.missed_events();
            if lost != Lost::None {
                self.queue.push_back(MergedItem::Lost { cpu: self.cpu, lost });
            }
            for e in &mut events {
                match e {
                    Ok(e) => self.queue.push_back(MergedItem::Event {
                        cpu: self.cpu,
                        ns: e.timestamp,
                        payload: e.payload.to_vec(),
                    }),
                    Err(e) => {
                        self.corrupt += 1;
                        eprintln!(
                            "trace-reader: cpu {} page {}: {e}; rest of the page skipped",
                            self.cpu,
                            self.page_no - 1
                        );
                        break;
                    }
                }
            }
        }
        Ok(())
    }

    /// Sort key of the next item: losses go out as soon as they are next.
    fn key(&self) -> Option<u64> {
        self.queue.front().map(|i| match i {
            MergedItem::Lost { .. } => 0,
            MergedItem::Event { ns, .. } => *ns,
        })
    }
}

/// Trace clocks whose timestamps are nanoseconds, as the kernel's `trace_clocks[]` marks them
/// (the others, `counter`, `uptime` and `x86-tsc`, count events, jiffies or cycles).
const NANOSECOND_CLOCKS: [&str; 7] = ["local", "global", "perf", "mono", "mono_raw", "boot", "tai"];

/// Runs `report`.
pub fn run(args: &ReportArgs) -> Result<()> {
    let file = DatFile::open(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    if let Some(clock) = file.clock.as_deref().filter(|c| !NANOSECOND_CLOCKS.contains(c)) {
        eprintln!(
            "trace-reader: {} was recorded with the {clock} clock: its timestamps are shown as if they were nanoseconds",
            args.file.display()
        );
    }
    if let Some(bad) = args.cpus.iter().find(|&&c| c as usize >= file.cpus.len()) {
        bail!("there is no cpu {bad} in {} (it has {})", args.file.display(), file.cpus.len());
    }
    let mut cpus = file
        .cpus
        .iter()
        .filter(|c| args.cpus.is_empty() || args.cpus.contains(&c.cpu))
        .map(|c| Ok(CpuItems { cpu: c.cpu, pages: file.pages(c)?, page_no: 0, queue: VecDeque::new(), corrupt: 0 }))
        .collect::<Result<Vec<_>>>()?;
    let mut printer = Printer::new(args.format.style);
    loop {
        for c in &mut cpus {
            c.fill()?;
        }
        let Some(next) = cpus.iter_mut().filter(|c| c.key().is_some()).min_by_key(|c| c.key()) else { break };
        let item = next.queue.pop_front().expect("a front item");
        printer.item(&file.formats, &item);
    }
    printer.flush();
    if args.stats {
        for s in &file.cpustats {
            eprintln!("{}", s.trim_end());
        }
    }
    let corrupt: u64 = cpus.iter().map(|c| c.corrupt).sum();
    if corrupt > 0 {
        bail!("{corrupt} damaged pages in {}", args.file.display());
    }
    Ok(())
}
