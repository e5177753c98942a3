//! The criterion settings every benchmark runs with.
//!
//! Warm-up and measurement times are set here, explicitly, so that a full
//! `cargo bench -p benches` fits its budget (docs/perf.md has the count); criterion's
//! own command-line flags still apply on top, `--quick` for smoke runs included.

use criterion::Criterion;
use std::time::Duration;

/// Warm-up before each benchmark.
pub const WARM_UP: Duration = Duration::from_secs(1);
/// Measurement of each benchmark.
pub const MEASUREMENT: Duration = Duration::from_secs(2);

/// Criterion with this crate's warm-up and measurement times.
pub fn criterion() -> Criterion {
    Criterion::default().warm_up_time(WARM_UP).measurement_time(MEASUREMENT)
}
