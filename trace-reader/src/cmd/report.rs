//! `report`: print a trace.dat file, merged across its buffers and CPUs in time order.

use crate::cli::ReportArgs;
use crate::event_text::EventText;
use crate::merge::MergedItem;
use crate::output::{BufferLabel, Printer, Timestamps};
use crate::tracedat::{DatFile, DatPages};
use anyhow::{Context, Result, bail};
use ring_core::EventIter;
use ring_mmap::Lost;
use std::collections::VecDeque;

/// One CPU's pages, of one buffer, decoded a page at a time.
struct CpuItems {
    /// Index of the buffer in the file's.
    buffer: usize,
    /// How messages name it: `cpu N`, or `buffer NAME cpu N`.
    whose: String,
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
                    eprintln!("trace-reader: {} page {}: {e}; page skipped", self.whose, self.page_no - 1);
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
                            "trace-reader: {} page {}: {e}; rest of the page skipped",
                            self.whose,
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

/// Runs `report`.
pub fn run(args: &ReportArgs) -> Result<()> {
    let file = DatFile::open(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let nr_cpus = file.buffers.iter().map(|b| b.cpus.len()).max().unwrap_or(0);
    let only = args.cpus.list();
    if let Some(bad) = only.iter().find(|&&c| c as usize >= nr_cpus) {
        bail!("there is no cpu {bad} in {} (it has {nr_cpus})", args.file.display());
    }
    let mut cpus = Vec::new();
    for (buffer, b) in file.buffers.iter().enumerate() {
        for c in b.cpus.iter().filter(|c| only.is_empty() || only.contains(&c.cpu)) {
            let whose = match &b.name {
                Some(name) => format!("buffer {name} cpu {}", c.cpu),
                None => format!("cpu {}", c.cpu),
            };
            let pages = file.pages(c)?;
            cpus.push(CpuItems { buffer, whose, cpu: c.cpu, pages, page_no: 0, queue: VecDeque::new(), corrupt: 0 });
        }
    }
    // Items say which buffer they are from only where there are several.
    let width = file.buffers.iter().filter_map(|b| b.name.as_ref()).map(String::len).max().unwrap_or(0);
    let labels: Vec<Option<BufferLabel<'_>>> = file
        .buffers
        .iter()
        .map(|b| (file.buffers.len() > 1).then_some(BufferLabel { name: b.name.as_deref(), width }))
        .collect();
    let events = EventText::new(file.formats.clone(), &file.symbols, file.page_size);
    let times = Timestamps::new(file.clock.as_deref(), args.times.ns);
    let mut printer = Printer::new(args.format.style, times, events);
    loop {
        for c in &mut cpus {
            c.fill()?;
        }
        let Some(next) = cpus.iter_mut().filter(|c| c.key().is_some()).min_by_key(|c| c.key()) else { break };
        let item = next.queue.pop_front().expect("a front item");
        printer.item(labels[next.buffer], &item);
    }
    printer.flush();
    if args.stats {
        for b in &file.buffers {
            if let Some(name) = &b.name {
                eprintln!("\nBuffer: {name}\n");
            }
            for s in &b.cpustats {
                eprintln!("{}", s.trim_end());
            }
        }
    }
    let corrupt: u64 = cpus.iter().map(|c| c.corrupt).sum();
    if corrupt > 0 {
        bail!("{corrupt} damaged pages in {}", args.file.display());
    }
    Ok(())
}
