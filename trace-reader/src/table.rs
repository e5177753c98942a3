//! Per-CPU tables: the summary `stream` and `record` end with, and `stats`.

use crate::live::Tally;
use crate::source::Counters;
use std::fmt::Write as _;

/// One CPU's figures.
#[derive(Debug, Clone, Copy)]
pub struct Row {
    /// CPU.
    pub cpu: u32,
    /// The buffer's counters.
    pub counters: Counters,
    /// What this reader read, for a consuming read.
    pub tally: Option<Tally>,
    /// Seconds the read lasted.
    pub secs: f64,
}

/// The end-of-run table: the buffer's counters next to what this reader consumed (`consumed`,
/// not `read`: the buffer's `read` counter, in [`stats_text`], counts every reader's).
pub fn summary(rows: &[Row]) -> String {
    let mut out = format!(
        "{:>4} {:>12} {:>10} {:>10} {:>10} {:>12} {:>12}\n",
        "cpu", "entries", "overrun", "dropped", "lost", "consumed", "events/s"
    );
    for r in rows {
        let t = r.tally.unwrap_or_default();
        let rate = if r.secs > 0.0 { t.events as f64 / r.secs } else { 0.0 };
        let lost = if t.lost_unknown > 0 { format!("{}+?", t.lost) } else { t.lost.to_string() };
        let c = &r.counters.stats;
        let _ = writeln!(
            out,
            "{:>4} {:>12} {:>10} {:>10} {:>10} {:>12} {:>12.0}",
            r.cpu, c.entries, c.overrun, c.dropped, lost, t.events, rate
        );
    }
    out
}

/// The `stats` table, like tracefs `per_cpu/cpuN/stats` side by side.
pub fn stats_text(rows: &[Row]) -> String {
    let mut out = format!(
        "{:>4} {:>12} {:>10} {:>10} {:>12} {:>10} {:>10} {:>10} {:>12}\n",
        "cpu", "entries", "overrun", "dropped", "read", "unread", "touched", "pages_lost", "bytes"
    );
    for r in rows {
        let (c, s) = (&r.counters, &r.counters.stats);
        let bytes = c.bytes.map_or("-".to_string(), |b| b.to_string());
        let _ = writeln!(
            out,
            "{:>4} {:>12} {:>10} {:>10} {:>12} {:>10} {:>10} {:>10} {:>12}",
            r.cpu, s.entries, s.overrun, s.dropped, s.read, c.unread, s.pages_touched, s.pages_lost, bytes
        );
    }
    out
}

/// The `stats` figures as JSON: one object per CPU.
pub fn stats_json(rows: &[Row]) -> serde_json::Value {
    rows.iter()
        .map(|r| {
            let (c, s) = (&r.counters, &r.counters.stats);
            serde_json::json!({
                "cpu": r.cpu,
                "entries": s.entries,
                "overrun": s.overrun,
                "dropped": s.dropped,
                "read": s.read,
                "unread": c.unread,
                "pages_touched": s.pages_touched,
                "pages_lost": s.pages_lost,
                "bytes": c.bytes,
            })
        })
        .collect()
}

/// A CPU's counters as the text of a trace.dat CPUSTAT option (tracefs `stats` lines).
pub fn cpustat(r: &Row) -> String {
    let (c, s) = (&r.counters, &r.counters.stats);
    format!(
        "CPU: {}\nentries: {}\noverrun: {}\ncommit overrun: 0\nbytes: {}\ndropped events: {}\nread events: {}\n",
        r.cpu,
        c.unread,
        s.overrun,
        c.bytes.unwrap_or(0),
        s.dropped,
        s.read
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_line_up_and_show_unknown_losses() {
        let stats = ring_core::Stats { entries: 10, overrun: 2, dropped: 1, read: 5, ..Default::default() };
        let counters = Counters { stats, unread: 3, bytes: None };
        let tally = Tally { events: 8, lost: 2, lost_unknown: 1, bytes: 64 };
        let rows = [Row { cpu: 0, counters, tally: Some(tally), secs: 2.0 }];
        let s = summary(&rows);
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(
            lines[0].split_whitespace().collect::<Vec<_>>(),
            ["cpu", "entries", "overrun", "dropped", "lost", "consumed", "events/s"]
        );
        assert_eq!(lines[1].split_whitespace().collect::<Vec<_>>(), ["0", "10", "2", "1", "2+?", "8", "4"]);
        assert_eq!(stats_json(&rows)[0]["unread"], 3);
        assert!(stats_text(&rows).lines().nth(1).unwrap().ends_with(" -"), "unknown bytes");
        assert!(cpustat(&rows[0]).starts_with("CPU: 0\nentries: 3\n"));
    }
}
