//! The search every end-to-end benchmark makes for a recording's lossless rate: the highest
//! producer rate, below a ceiling, at which a trial of the recording loses nothing. The rate is
//! halved from the ceiling until a trial loses nothing (at most [`MAX_HALVINGS`] times), then
//! bisected between that rate and the lowest that lost.

use anyhow::Result;

/// Most halvings of the rate while looking for one that loses nothing.
pub const MAX_HALVINGS: u32 = 8;

/// One trial of a recording at a set rate.
pub trait Trial {
    /// Events reaching the file per second of the producer's run.
    fn events_per_sec(&self) -> f64;
    /// True if every event produced reached the file, by every account the trial has.
    fn lossless(&self) -> bool;
    /// What the trial produced, recorded and lost, for the benchmark's output.
    fn describe(&self) -> String;
}

/// The highest rate below `ceiling` at which `trial(rate)` loses nothing, and that trial: halving
/// until a trial loses nothing, then `bisection_steps` bisections. Prints each trial with its rate
/// in `unit`. `None` if even the lowest rate tried lost events.
pub fn highest_lossless<T: Trial>(
    ceiling: u64,
    bisection_steps: u32,
    unit: &str,
    mut trial: impl FnMut(u64) -> Result<T>,
) -> Result<Option<T>> {
    let (mut low, mut high) = (0, ceiling);
    let mut best = None;
    let (mut halvings, mut steps) = (0, 0);
    while steps < bisection_steps && halvings < MAX_HALVINGS {
        let rate = if best.is_none() { high / 2 } else { (low + high) / 2 };
        let tried = trial(rate)?;
        println!("  {rate:>9} {unit}: {}", tried.describe());
        if tried.lossless() {
            low = rate;
            best = Some(tried);
        } else {
            high = rate;
        }
        if best.is_none() {
            halvings += 1;
        } else {
            steps += 1;
        }
    }
    Ok(best)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct AtMost(u64, u64);

    impl Trial for AtMost {
        fn events_per_sec(&self) -> f64 {
            self.0 as f64
        }
        fn lossless(&self) -> bool {
            self.0 <= self.1
        }
        fn describe(&self) -> String {
            format!("rate {}", self.0)
        }
    }

    #[test]
    fn the_search_halves_then_bisects_towards_the_highest_lossless_rate() {
        let mut rates = Vec::new();
        let best = highest_lossless(1000, 4, "events/s", |rate| {
            rates.push(rate);
            Ok(AtMost(rate, 300))
        })
        .unwrap();
        assert_eq!(rates, [500, 250, 375, 312, 281]);
        assert_eq!(best.map(|t| t.0), Some(281));
        let none = highest_lossless(1000, 3, "events/s", |rate| Ok(AtMost(rate, 0))).unwrap();
        assert!(none.is_none());
    }
}
