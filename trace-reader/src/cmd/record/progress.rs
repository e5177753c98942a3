//! The progress line `record` shows while its readers run, from what each publishes.

use super::writing::CpuRecording;
use indicatif::{HumanBytes, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// What one reader thread has done so far, for the progress line.
#[derive(Debug, Default)]
pub(super) struct Progress {
    events: AtomicU64,
    lost: AtomicU64,
    pages: AtomicU64,
}

impl Progress {
    /// Shows what the thread's CPUs have recorded so far.
    pub(super) fn publish(&self, recs: &[RefCell<CpuRecording<'_>>]) {
        let (mut events, mut lost, mut pages) = (0, 0, 0);
        for r in recs {
            let r = r.borrow();
            (events, lost, pages) = (events + r.tally.events, lost + r.tally.lost, pages + r.spool.pages());
        }
        // Ordering: Relaxed; the counts are only shown, and each is exact on its own.
        self.events.store(events, Ordering::Relaxed);
        self.lost.store(lost, Ordering::Relaxed);
        self.pages.store(pages, Ordering::Relaxed);
    }
}

/// The progress line on stderr while the readers run: events, bytes and losses so far.
pub(super) struct ProgressLine<'p> {
    bar: ProgressBar,
    /// The reader threads' counts.
    pub(super) progress: &'p [Progress],
    /// Bytes per page.
    page_size: u64,
    /// The events recorded at the start of the last full second, and when: the rate shown is
    /// that second's, not an average since the start (which a backlog read at once inflates).
    second: Cell<(Instant, u64)>,
    /// The rate of the last full second.
    rate: Cell<f64>,
    started: Instant,
}

impl<'p> ProgressLine<'p> {
    /// A line showing `progress`, read from now on.
    pub(super) fn new(progress: &'p [Progress], page_size: u64) -> Self {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{spinner} recording [{elapsed_precise}] {msg}").expect("a valid template"),
        );
        let now = Instant::now();
        Self { bar, progress, page_size, second: Cell::new((now, 0)), rate: Cell::new(0.0), started: now }
    }

    /// Shows the counts the reader threads published last.
    pub(super) fn show(&self) {
        let sum = |f: fn(&Progress) -> &AtomicU64| -> u64 {
            // Ordering: Relaxed; see `Progress::publish`.
            self.progress.iter().map(|p| f(p).load(Ordering::Relaxed)).sum()
        };
        let (events, lost, pages) = (sum(|p| &p.events), sum(|p| &p.lost), sum(|p| &p.pages));
        let (since, at_start) = self.second.get();
        let elapsed = since.elapsed();
        if elapsed >= Duration::from_secs(1) {
            self.rate.set(events.saturating_sub(at_start) as f64 / elapsed.as_secs_f64());
            self.second.set((Instant::now(), events));
        }
        let rate = self.rate.get();
        let bytes = HumanBytes(pages * self.page_size);
        self.bar.set_message(format!("{events} events, {bytes}, {rate:.0} events/s, {lost} lost"));
        self.bar.tick();
    }

    /// Clears the line: the seconds the reading took.
    pub(super) fn finish(self) -> f64 {
        self.bar.finish_and_clear();
        self.started.elapsed().as_secs_f64()
    }
}
