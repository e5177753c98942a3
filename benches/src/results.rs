//! Criterion's result files: where they are, reading one, and writing one for a measurement
//! criterion did not take itself (the end-to-end benchmark), so that `perf-report` reads every
//! figure the same way.
//!
//! A benchmark `group/function` keeps `group/function/new/estimates.json` (the mean time per
//! iteration, in nanoseconds, at `mean.point_estimate`) and `group/function/new/benchmark.json`
//! (the work per iteration declared with `Throughput`, under `throughput`).

use anyhow::{Context, Result};
use criterion::Throughput;
use serde_json::json;
use std::path::{Path, PathBuf};

/// Where criterion writes its results when run from this executable: `$CRITERION_HOME`, else
/// `$CARGO_TARGET_DIR/criterion`, else `criterion/` in the target directory this executable was
/// built into (`target/release/deps/NAME` → `target/criterion`).
pub fn criterion_dir() -> PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return home.into();
    }
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(target).join("criterion");
    }
    let exe = std::env::current_exe().unwrap_or_default();
    exe.ancestors().nth(3).map_or_else(|| PathBuf::from("target/criterion"), |target| target.join("criterion"))
}

/// One benchmark's result.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Figure {
    /// Mean time per iteration, in nanoseconds.
    pub ns_per_iter: f64,
    /// Events per iteration, if the benchmark declared them.
    pub elements: Option<f64>,
    /// Bytes per iteration, if the benchmark declared them.
    pub bytes: Option<f64>,
}

impl Figure {
    /// Time per event (per iteration if the benchmark declared no events), in nanoseconds.
    pub fn ns_per_event(&self) -> f64 {
        self.ns_per_iter / self.elements.unwrap_or(1.0)
    }

    /// Events per second, if the benchmark declared events.
    pub fn events_per_sec(&self) -> Option<f64> {
        self.elements.map(|e| e * 1e9 / self.ns_per_iter)
    }

    /// Bytes per second, if the benchmark declared bytes.
    pub fn bytes_per_sec(&self) -> Option<f64> {
        self.bytes.map(|b| b * 1e9 / self.ns_per_iter)
    }
}

/// The result of benchmark `id` (`group/function`) in `dir`, or `None` if it was not measured.
pub fn read(dir: &Path, id: &str) -> Result<Option<Figure>> {
    let new = dir.join(id).join("new");
    let estimates = new.join("estimates.json");
    if !estimates.exists() {
        return Ok(None);
    }
    let estimates = json_file(&estimates)?;
    let ns_per_iter =
        estimates["mean"]["point_estimate"].as_f64().with_context(|| format!("{id}: no mean estimate"))?;
    let throughput = json_file(&new.join("benchmark.json"))?["throughput"].take();
    let (elements, bytes) = match (&throughput["Elements"], &throughput["Bytes"], &throughput["ElementsAndBytes"]) {
        (e, _, _) if e.is_number() => (e.as_f64(), None),
        (_, b, _) if b.is_number() => (None, b.as_f64()),
        (_, _, both) if both.is_object() => (both["elements"].as_f64(), both["bytes"].as_f64()),
        _ => (None, None),
    };
    Ok(Some(Figure { ns_per_iter, elements, bytes }))
}

/// Records `ns_per_iter` for `group/function` in `dir` as criterion would, with the work per
/// iteration `throughput`.
pub fn write(dir: &Path, group: &str, function: &str, ns_per_iter: f64, throughput: Throughput) -> Result<()> {
    let new = dir.join(group).join(function).join("new");
    std::fs::create_dir_all(&new).with_context(|| format!("creating {}", new.display()))?;
    let estimate = json!({ "point_estimate": ns_per_iter, "standard_error": 0.0,
        "confidence_interval": { "confidence_level": 0.95, "lower_bound": ns_per_iter, "upper_bound": ns_per_iter } });
    let estimates = json!({ "mean": estimate, "median": estimate });
    let full_id = format!("{group}/{function}");
    let benchmark = json!({ "group_id": group, "function_id": function, "value_str": null,
        "throughput": throughput, "full_id": full_id, "directory_name": full_id, "title": full_id });
    for (name, value) in [("estimates.json", estimates), ("benchmark.json", benchmark)] {
        let path = new.join(name);
        std::fs::write(&path, value.to_string()).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

fn json_file(path: &Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_results_read_back() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "g", "f", 50.0, Throughput::ElementsAndBytes { elements: 2, bytes: 100 }).unwrap();
        let f = read(dir.path(), "g/f").unwrap().unwrap();
        assert_eq!(f, Figure { ns_per_iter: 50.0, elements: Some(2.0), bytes: Some(100.0) });
        assert_eq!(f.ns_per_event(), 25.0);
        assert_eq!(f.events_per_sec(), Some(4e7));
        assert_eq!(f.bytes_per_sec(), Some(2e9));
        write(dir.path(), "g", "e", 4.0, Throughput::Elements(1)).unwrap();
        assert_eq!(read(dir.path(), "g/e").unwrap().unwrap().events_per_sec(), Some(2.5e8));
        assert_eq!(read(dir.path(), "g/missing").unwrap(), None);
    }
}
