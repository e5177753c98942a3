//! The targeted ratios, each measured interleaved (`hyptrace_benches::interleaved`): hyptrace's
//! workload and its baseline timed in alternating batches in one loop, the median ratio of the
//! rounds reported with its spread and the machine's steal time and load average meanwhile.
//!
//! - `tsc_16B_vs_floor`, `counter_16B_vs_floor`: `CpuBuffer::write` of a 16-byte payload into a
//!   1 MiB overwrite-mode buffer, no reader, against the floor with the same clock (cycle counter
//!   or per-CPU counter) and payload.
//! - `tsc_16B_vs_rtrb`: the same write against rtrb's `push` of the same record.
//! - `tsc_16B_vs_trace_marker_raw`: against one `write(2)` to the kernel's `trace_marker_raw`
//!   (skipped, with the reason printed, where tracefs is unavailable).
//! - `tsc_16B_vs_lttng_ust`: against an enabled LTTng-UST tracepoint with the same payload,
//!   recorded by a snapshot-mode session (overwrite, no reader) into per-UID buffers of
//!   256 × 4 KiB per CPU (skipped, with the reason printed, where LTTng cannot run).
//! - `scaling_2_vs_1`: two writer threads pinned to CPUs 0 and 1, each on a buffer of its own,
//!   against one (aggregate time per event; only with two CPUs or more).
//!
//! Not a criterion benchmark: its results go to `interleaved/NAME.json` under criterion's
//! directory, for `perf-report`. `--quick` runs fewer, shorter rounds; name filters select pairs.
#![forbid(unsafe_code)]

use anyhow::Result;
use hyptrace_benches::floor::Floor;
use hyptrace_benches::interleaved::{Interleaved, Plan, Spread, per_event};
use hyptrace_benches::payload::{Record, payload};
use hyptrace_benches::tracefs::RawMarker;
use hyptrace_benches::writer_buffer::megabyte;
use hyptrace_benches::{command_line, cpus, pinned_writers, results, skipped};
use ring_core::{Clock, CounterClock, CycleClock, Mode};
use std::time::Duration;

/// Bytes the floor and rtrb hold, as hyptrace's buffers do.
const BYTES: usize = 1 << 20;

const PAIRS: &[&str] = &[
    "tsc_16B_vs_floor",
    "counter_16B_vs_floor",
    "tsc_16B_vs_rtrb",
    "tsc_16B_vs_trace_marker_raw",
    "tsc_16B_vs_lttng_ust",
    "scaling_2_vs_1",
];

/// Measures pair `name` with `plan`, or says why it cannot run here.
fn measure(name: &str, plan: Plan) -> Result<Interleaved, String> {
    let tsc = megabyte(Mode::Overwrite, CycleClock);
    let tsc_writer = || {
        let writer = tsc.writer().expect("the benchmark is the buffer's only writer");
        per_event(move |i| {
            let _ = writer.write(&payload::<16>(i));
        })
    };
    Ok(match name {
        "tsc_16B_vs_floor" => {
            let mut floor = Floor::<_, 16>::new(BYTES, CycleClock);
            Interleaved::measure(plan, tsc_writer(), per_event(|i| floor.record(&payload::<16>(i))))
        }
        "counter_16B_vs_floor" => {
            let buf = megabyte(Mode::Overwrite, CounterClock::default());
            let writer = buf.writer().expect("the benchmark is the buffer's only writer");
            let mut floor = Floor::<_, 16>::new(BYTES, CounterClock::default());
            let counter_writer = per_event(|i| {
                let _ = writer.write(&payload::<16>(i));
            });
            Interleaved::measure(plan, counter_writer, per_event(|i| floor.record(&payload::<16>(i))))
        }
        "tsc_16B_vs_rtrb" => {
            let (mut tx, mut rx) =
                rtrb::RingBuffer::<Record<16>>::new((BYTES / size_of::<Record<16>>()).next_power_of_two());
            let push = per_event(|i| {
                let record = (CycleClock.now(), payload::<16>(i));
                // rtrb cannot overwrite: drained in place when full, as in `peers`.
                if let Err(rtrb::PushError::Full(record)) = tx.push(record) {
                    while rx.pop().is_ok() {}
                    let _ = tx.push(record);
                }
            });
            Interleaved::measure(plan, tsc_writer(), push)
        }
        "tsc_16B_vs_trace_marker_raw" => {
            let mut marker = RawMarker::open("interleaved")?;
            Interleaved::measure(plan, tsc_writer(), per_event(|i| marker.write(&payload::<16>(i))))
        }
        "tsc_16B_vs_lttng_ust" => lttng_ust(plan, tsc_writer())?,
        "scaling_2_vs_1" => {
            if cpus::available() < 2 {
                return Err("one CPU only".into());
            }
            let two = [megabyte(Mode::Overwrite, CycleClock), megabyte(Mode::Overwrite, CycleClock)];
            let one = [megabyte(Mode::Overwrite, CycleClock)];
            // Two threads write half the events each: the aggregate's time per event.
            Interleaved::measure(
                plan,
                |events| pinned_writers::run(&two, events / 2),
                |events| pinned_writers::run(&one, events),
            )
        }
        _ => unreachable!("{name} is one of PAIRS"),
    })
}

/// `ours` against the LTTng-UST tracepoint, recorded by a session of this benchmark's own.
#[cfg(lttng_ust)]
fn lttng_ust(plan: Plan, ours: impl FnMut(u64) -> Duration) -> Result<Interleaved, String> {
    use hyptrace_benches::{lttng, lttng_probe};
    let session = lttng::Session::start("interleaved", lttng_probe::enabled)?;
    let result = Interleaved::measure(plan, ours, per_event(|i| lttng_probe::record(&payload::<16>(i))));
    drop(session);
    Ok(result)
}

#[cfg(not(lttng_ust))]
fn lttng_ust(_: Plan, _: impl FnMut(u64) -> Duration) -> Result<Interleaved, String> {
    Err(hyptrace_benches::lttng::NOT_BUILT.into())
}

fn report(name: &str, result: &Interleaved) {
    let ratios = Spread::of(&result.time_ratios()).expect("at least one round");
    let ours = Spread::of(&result.ours_ns).expect("at least one round");
    let baseline = Spread::of(&result.baseline_ns).expect("at least one round");
    println!(
        "interleaved/{name:<28} {:>8.2} ns vs {:>8.2} ns per event: {:.3}× (IQR {:.3}–{:.3}, {:.3}–{:.3} over {} rounds); {}{}",
        ours.median,
        baseline.median,
        ratios.median,
        ratios.q1,
        ratios.q3,
        ratios.min,
        ratios.max,
        result.ours_ns.len(),
        result.load,
        if result.load.busy() { ": busy" } else { "" },
    );
}

fn main() -> Result<()> {
    let Some((run, selected)) = command_line::selection("interleaved", PAIRS) else { return Ok(()) };
    let plan = Plan::for_run(run);
    cpus::pin_or_warn(0);
    let dir = results::criterion_dir();
    for name in selected {
        let result = match measure(name, plan) {
            Ok(result) => result,
            Err(why) => {
                skipped::skip(&format!("interleaved/{name}"), &why);
                continue;
            }
        };
        report(name, &result);
        result.write(&dir, name)?;
    }
    Ok(())
}
