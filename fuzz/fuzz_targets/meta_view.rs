//! A hostile producer: an arbitrary meta area and sub-buffers, and arbitrary GET_READER_PAGE
//! answers. Validating the view, snapshots (live and post-mortem) and a consumer reading
//! pages (in place, by copies, by drains of either scope) must never panic or read outside the
//! mapping; anything wrong is an `Err`.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use ring_core::{SharedView, ShmRegion};
use ring_mmap::{Consumer, CpuSource, DrainScope, Error, Lost, ReaderPage, Wakeup};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Duration;

#[derive(Arbitrary, Debug)]
struct Input {
    /// The meta area's first bytes (the rest of its 4096 are zero).
    meta: Vec<u8>,
    /// Sub-buffer array bytes, repeated to fill it.
    data: Vec<u8>,
    /// Data pages (of 4096 bytes) in the array, at most 8.
    pages: u8,
    /// The producer's answers to GET_READER_PAGE: (id, start, swapped, lost).
    answers: Vec<(u32, u32, bool, u64)>,
    /// Where a post-mortem read starts on the reader page.
    quiescent_start: u32,
}

/// A producer that answers whatever the input says.
struct Hostile {
    meta: ShmRegion,
    data: ShmRegion,
    answers: std::vec::IntoIter<(u32, u32, bool, u64)>,
    fd: OwnedFd,
}

impl CpuSource for Hostile {
    fn cpu(&self) -> u32 {
        0
    }

    fn view(&self) -> Result<SharedView<'_>, Error> {
        Ok(SharedView::new(&self.meta, &self.data)?)
    }

    fn get_reader_page(&mut self, _read: u32) -> Result<ReaderPage, Error> {
        let (id, start, swapped, lost) = self.answers.next().ok_or(Error::Hangup)?;
        let lost = if lost == 0 { Lost::None } else { Lost::Count(lost) };
        Ok(ReaderPage { id, start, swapped, lost })
    }

    fn wait(&mut self, _pages: u32, _timeout: Option<Duration>) -> Result<Wakeup, Error> {
        Ok(Wakeup::Hangup)
    }

    fn arm(&mut self, _pages: u32) -> Result<bool, Error> {
        Ok(true)
    }

    fn wait_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Fills `region` with `bytes` (repeated; zeros if empty).
fn fill(region: &ShmRegion, bytes: &[u8]) {
    if bytes.is_empty() {
        return;
    }
    let mut at = 0;
    while at < region.len() {
        let n = bytes.len().min(region.len() - at);
        region.store_bytes_unaligned(at, &bytes[..n]);
        at += n;
    }
}

fuzz_target!(|input: Input| {
    let meta = ShmRegion::alloc_zeroed(4096);
    meta.store_bytes_unaligned(0, &input.meta[..input.meta.len().min(4096)]);
    let data = ShmRegion::alloc_zeroed(4096 * usize::from(input.pages % 9));
    fill(&data, &input.data);
    let fd = rustix::event::eventfd(0, rustix::event::EventfdFlags::CLOEXEC).expect("eventfd");
    let source = Hostile { meta, data, answers: input.answers.into_iter(), fd };
    if let Ok(view) = source.view() {
        let _ = view.meta().counters();
        for slot in 0..view.meta().nr_slots().min(64) {
            let _ = (view.meta().slot_id(slot), view.meta().slot_cnt(slot));
        }
        if let Ok(snap) = view.snapshot() {
            snap.events().for_each(|e| assert!(e.payload.len() < view.geometry().subbuf_size() as usize));
        }
        if let Ok(snap) = view.snapshot_quiescent(input.quiescent_start) {
            snap.events().for_each(|e| assert!(e.payload.len() < view.geometry().subbuf_size() as usize));
        }
    }
    let Ok(mut consumer) = Consumer::new(source) else { return };
    let Ok(page_len) = consumer.source().view().map(|v| v.geometry().subbuf_size() as usize) else { return };
    let mut out = vec![0u8; page_len];
    // Read, by every path a consumer has, until the answers run out (a hangup) or the producer
    // is caught lying.
    for round in 0..64 {
        let read = match round % 4 {
            0 => consumer.read_page(|r| drop(r)).map(drop),
            1 => consumer.copy_page(&mut out).map(drop),
            2 => consumer.drain_copies(DrainScope::FinishedPages, &mut out, |_, _| {}).map(drop),
            _ => consumer.drain_copies(DrainScope::Everything, &mut out, |_, _| {}).map(drop),
        };
        if read.is_err() {
            break;
        }
    }
    let _ = consumer.drain_remaining(|r| drop(r));
});
