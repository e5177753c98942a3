//! Saying that a benchmark did not run and why (no tracefs, no LTTng): `perf-report` then shows
//! it as not measured.

/// Prints that benchmark `id` is skipped and why.
pub fn skip(id: &str, why: &str) {
    eprintln!("SKIPPED: {id}: {why}");
}
