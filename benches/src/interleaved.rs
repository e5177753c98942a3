//! Ratios measured interleaved: two workloads, ours and its baseline, timed in alternating
//! batches in one loop (ours first in even rounds, the baseline first in odd ones), so that
//! whatever else the machine does in a given second weighs on both sides alike. Each round gives
//! one ratio; the figure is their median with its spread, beside the machine's load during the
//! rounds ([`MachineLoad`]). More than two workloads are measured in one loop the same way
//! ([`Rounds`]), each pair of them then judged as a pair.
//!
//! The result of a pair, [`Interleaved`], is kept as JSON in `interleaved/NAME.json` under
//! criterion's directory, where `perf-report` reads it.

use crate::command_line::Run;
use crate::machine_load::{LoadMeter, MachineLoad};
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How many rounds, and how long each side's batch runs in a round.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// Rounds, each one batch of ours and one of the baseline.
    pub rounds: usize,
    /// About how long each batch runs.
    pub batch: Duration,
}

impl Plan {
    /// 31 rounds of 20 ms batches (about 1.3 s a pair), or for `--quick` 11 rounds of 5 ms.
    pub fn for_run(run: Run) -> Self {
        match run {
            Run::Full => Self { rounds: 31, batch: Duration::from_millis(20) },
            Run::Quick => Self { rounds: 11, batch: Duration::from_millis(5) },
        }
    }
}

/// What one pair measured: each side's time per event in every round, and the machine's load
/// meanwhile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Interleaved {
    /// Our time per event in each round, in nanoseconds.
    pub ours_ns: Vec<f64>,
    /// The baseline's time per event in the same rounds, in nanoseconds.
    pub baseline_ns: Vec<f64>,
    /// The machine's load during the rounds.
    pub load: MachineLoad,
}

impl Interleaved {
    /// Runs `plan` on a pair: `ours(n)` and `baseline(n)` each record `n` events and say how long
    /// that took ([`Rounds::measure`] of the two).
    pub fn measure(
        plan: Plan,
        mut ours: impl FnMut(u64) -> Duration,
        mut baseline: impl FnMut(u64) -> Duration,
    ) -> Self {
        Rounds::measure(plan, &mut [&mut ours, &mut baseline]).pair(0, 1)
    }

    /// Each round's ratio of our time per event to the baseline's (below 1: ours is faster).
    pub fn time_ratios(&self) -> Vec<f64> {
        self.ours_ns.iter().zip(&self.baseline_ns).map(|(ours, base)| ours / base).collect()
    }

    /// Stores this result as pair `name` under criterion's directory `dir`.
    pub fn write(&self, dir: &Path, name: &str) -> Result<()> {
        let path = path(dir, name);
        let parent = path.parent().expect("the path has the interleaved directory");
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        let text = serde_json::to_string_pretty(self).expect("plain numbers serialize");
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
    }

    /// Pair `name`'s result under criterion's directory `dir`, `None` if it was not measured.
    pub fn read(dir: &Path, name: &str) -> Result<Option<Self>> {
        let path = path(dir, name);
        if !path.exists() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let result = serde_json::from_str(&text)
            .with_context(|| format!("parsing {} (rerun `cargo bench -p benches -- interleaved`)", path.display()))?;
        Ok(Some(result))
    }
}

/// What the rounds of several sides measured, all in one loop: each side's time per event in
/// every round, and the machine's load meanwhile. Any two of the sides make a pair
/// ([`Rounds::pair`]), so that three workloads measured together give two pairs sharing a side.
#[derive(Debug, Clone, PartialEq)]
pub struct Rounds {
    /// Per side, its time per event in each round, in nanoseconds.
    pub ns: Vec<Vec<f64>>,
    /// The machine's load during the rounds.
    pub load: MachineLoad,
}

impl Rounds {
    /// Runs `plan` on `sides`: each `side(n)` records `n` events and says how long that took.
    /// Each is run once to find how many events fill a batch, and once more to warm up, before
    /// the rounds. Round `r` runs every side once, starting from side `r` modulo their number
    /// and going on in turn, so that each side goes first as often as the others (of two: ours
    /// first in even rounds, the baseline in odd ones).
    pub fn measure(plan: Plan, sides: &mut [&mut dyn FnMut(u64) -> Duration]) -> Self {
        let batches: Vec<u64> = sides.iter_mut().map(|side| events_per_batch(side, plan.batch)).collect();
        for (side, &events) in sides.iter_mut().zip(&batches) {
            side(events);
        }
        let meter = LoadMeter::start();
        let mut ns = vec![Vec::with_capacity(plan.rounds); sides.len()];
        for round in 0..plan.rounds {
            for turn in 0..sides.len() {
                let side = (round + turn) % sides.len();
                let events = batches[side];
                ns[side].push(sides[side](events).as_nanos() as f64 / events as f64);
            }
        }
        Self { ns, load: meter.finish() }
    }

    /// Side `ours` against side `baseline`, as a pair.
    pub fn pair(&self, ours: usize, baseline: usize) -> Interleaved {
        Interleaved { ours_ns: self.ns[ours].clone(), baseline_ns: self.ns[baseline].clone(), load: self.load }
    }
}

fn path(dir: &Path, name: &str) -> PathBuf {
    dir.join("interleaved").join(format!("{name}.json"))
}

/// A side that records each event with `record(i)`, `i` counting on from batch to batch (so the
/// payload built from it changes and cannot be hoisted out of the loop), timing each batch.
pub fn per_event(mut record: impl FnMut(u64)) -> impl FnMut(u64) -> Duration {
    let mut next = 0u64;
    move |events| {
        let start = Instant::now();
        for i in next..next + events {
            record(black_box(i));
        }
        next += events;
        start.elapsed()
    }
}

/// How many events `side` records in about `batch`: grows a trial batch fourfold until it takes
/// a quarter of `batch` at least, then scales it up.
fn events_per_batch(side: &mut dyn FnMut(u64) -> Duration, batch: Duration) -> u64 {
    let mut events = 1000u64;
    loop {
        let took = side(events);
        if took >= batch / 4 {
            return ((events as f64 * batch.as_secs_f64() / took.as_secs_f64()) as u64).max(1);
        }
        events *= 4;
    }
}

/// The median of some figures with their quartiles and extremes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    /// The middle figure.
    pub median: f64,
    /// The lowest.
    pub min: f64,
    /// The highest.
    pub max: f64,
    /// The first quartile.
    pub q1: f64,
    /// The third quartile.
    pub q3: f64,
}

impl Spread {
    /// The spread of `figures`, `None` if there are none.
    pub fn of(figures: &[f64]) -> Option<Self> {
        let mut sorted = figures.to_vec();
        sorted.sort_by(f64::total_cmp);
        let (&min, &max) = (sorted.first()?, sorted.last()?);
        let at = |fraction: f64| {
            let position = fraction * (sorted.len() - 1) as f64;
            let (below, above) = (sorted[position.floor() as usize], sorted[position.ceil() as usize]);
            below + (above - below) * position.fract()
        };
        Some(Self { median: at(0.5), min, max, q1: at(0.25), q3: at(0.75) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spread_interpolates_between_figures() {
        let spread = Spread::of(&[4.0, 1.0, 3.0, 2.0, 5.0]).unwrap();
        assert_eq!(spread, Spread { median: 3.0, min: 1.0, max: 5.0, q1: 2.0, q3: 4.0 });
        assert_eq!(Spread::of(&[1.0, 2.0]).unwrap().median, 1.5);
        assert_eq!(Spread::of(&[]), None);
    }

    #[test]
    fn results_read_back_and_ratios_are_per_round() {
        let dir = tempfile::tempdir().unwrap();
        let load = MachineLoad { steal_percent: 0.5, load_average: 1.0, cpus: 2 };
        let result = Interleaved { ours_ns: vec![2.0, 3.0], baseline_ns: vec![4.0, 2.0], load };
        result.write(dir.path(), "pair").unwrap();
        assert_eq!(Interleaved::read(dir.path(), "pair").unwrap(), Some(result.clone()));
        assert_eq!(result.time_ratios(), vec![0.5, 1.5]);
        assert_eq!(Interleaved::read(dir.path(), "missing").unwrap(), None);
    }

    #[test]
    fn a_measurement_alternates_the_sides_round_after_round() {
        let order = std::cell::RefCell::new(Vec::new());
        let side = |name: char| {
            let order = &order;
            move |events: u64| {
                order.borrow_mut().push(name);
                // Calibration's first trial fills the batch at once.
                Duration::from_micros(events)
            }
        };
        let plan = Plan { rounds: 3, batch: Duration::from_millis(1) };
        let result = Interleaved::measure(plan, side('a'), side('b'));
        assert_eq!(result.ours_ns.len(), 3);
        assert_eq!(result.baseline_ns, vec![1000.0; 3]);
        // Calibration (a, b), warm-up (a, b), then rounds a b, b a, a b.
        assert_eq!(order.into_inner().into_iter().collect::<String>(), "abababbaab");
    }

    #[test]
    fn three_sides_take_turns_going_first_and_pair_up() {
        let order = std::cell::RefCell::new(String::new());
        let side = |name: char, micros: u64| {
            let order = &order;
            move |events: u64| {
                order.borrow_mut().push(name);
                Duration::from_micros(events * micros)
            }
        };
        let (mut a, mut b, mut c) = (side('a', 1), side('b', 2), side('c', 4));
        let plan = Plan { rounds: 3, batch: Duration::from_millis(4) };
        let rounds = Rounds::measure(plan, &mut [&mut a, &mut b, &mut c]);
        // Calibration (a, b, c), warm-up (a, b, c), then rounds abc, bca, cab.
        assert_eq!(order.into_inner(), "abcabcabcbcacab");
        let pair = rounds.pair(2, 0);
        assert_eq!((pair.ours_ns, pair.baseline_ns), (vec![4000.0; 3], vec![1000.0; 3]));
    }
}
