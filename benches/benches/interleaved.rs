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
//! - `kvm_exits`: a real KVM guest's exits (`hyptrace_benches::kvm_guest`: one vCPU on this
//!   thread, hyp-sim's hypervisor handling every exit) in three sides of one loop: traced by
//!   hyptrace (1 MiB, overwrite, no reader), untraced, and untraced by hyptrace but traced by
//!   the kernel's KVM tracepoints (`hyptrace_benches::tracefs::KvmTracepoints`) into a tracefs
//!   instance of 1 MiB per CPU, in 311 rounds of 5 ms batches (`--quick`: 111 of 1.25 ms).
//!   Stored as two pairs, time per exit: `kvm_exits_traced_vs_untraced` and
//!   `kvm_exits_traced_vs_kernel_tracepoints` (skipped, with the reason printed, where KVM
//!   cannot run; the second where tracefs cannot).
//!
//! Not a criterion benchmark: its results go to `interleaved/NAME.json` under criterion's
//! directory, for `perf-report`. `--quick` runs fewer, shorter rounds; name filters select pairs.
#![forbid(unsafe_code)]

use anyhow::Result;
use hyptrace_benches::floor::Floor;
use hyptrace_benches::interleaved::{Interleaved, Plan, Rounds, Spread, per_event};
use hyptrace_benches::kvm_guest::KvmGuest;
use hyptrace_benches::payload::{Record, payload};
use hyptrace_benches::tracefs::{KvmTracepoints, RawMarker};
use hyptrace_benches::writer_buffer::megabyte;
use hyptrace_benches::{command_line, cpus, pinned_writers, results, skipped};
use ring_core::{Clock, CounterClock, CycleClock, Mode};
use std::cell::{Cell, RefCell};
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
    "kvm_exits",
];

/// What an entry of [`PAIRS`] measured: its pairs, each with the name it is stored under.
type Measured = Vec<(String, Interleaved)>;

/// Measures the pairs of entry `name` with `plan`, or says why it cannot run here.
fn measure(name: &str, plan: Plan) -> Result<Measured, String> {
    if name == "kvm_exits" {
        return kvm_exits(plan);
    }
    Ok(vec![(name.to_string(), measure_pair(name, plan)?)])
}

/// Measures pair `name` with `plan`, or says why it cannot run here.
fn measure_pair(name: &str, plan: Plan) -> Result<Interleaved, String> {
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

/// A KVM guest's exits traced by hyptrace, untraced, and traced by the kernel's KVM tracepoints
/// instead, in one loop; the pair against the kernel is left out, with the reason printed, where
/// its tracepoints cannot be recorded here.
fn kvm_exits(plan: Plan) -> Result<Measured, String> {
    // Exits are tens of microseconds, each a system call and a trip through the guest, and the
    // VM's other work hits one batch of them more often than a batch of writes: batches of a
    // quarter the length, ten times as many rounds (5 ms, 311 in a full run, 5 s in all), whose
    // median ignores the rounds a preemption hit.
    let plan = Plan { rounds: 10 * plan.rounds + 1, batch: plan.batch / 4 };
    let guest = RefCell::new(KvmGuest::start()?);
    let traced_exits = Cell::new(0);
    let mut traced = |exits| {
        let mut guest = guest.borrow_mut();
        guest.set_tracing(true);
        let took = guest.run(exits);
        guest.set_tracing(false);
        traced_exits.set(traced_exits.get() + exits);
        took
    };
    let mut untraced = |exits| guest.borrow_mut().run(exits);
    let kernel = match KvmTracepoints::open("interleaved") {
        Ok(kernel) => kernel,
        Err(why) => {
            skipped::skip("interleaved/kvm_exits_traced_vs_kernel_tracepoints", &why);
            let rounds = Rounds::measure(plan, &mut [&mut traced, &mut untraced]);
            return Ok(vec![("kvm_exits_traced_vs_untraced".into(), rounds.pair(0, 1))]);
        }
    };
    let kernel_exits = Cell::new(0);
    let mut by_kernel = |exits| {
        kernel.set(true);
        let took = guest.borrow_mut().run(exits);
        kernel.set(false);
        kernel_exits.set(kernel_exits.get() + exits);
        took
    };
    let rounds = Rounds::measure(plan, &mut [&mut traced, &mut untraced, &mut by_kernel]);
    let per_exit = |events: u64, exits: u64| events as f64 / exits.max(1) as f64;
    println!(
        "interleaved/kvm_exits: {:.2} events recorded per exit by hyptrace, {:.2} by the kernel's tracepoints",
        per_exit(guest.borrow().recorded(), traced_exits.get()),
        per_exit(kernel.recorded(), kernel_exits.get()),
    );
    Ok(vec![
        ("kvm_exits_traced_vs_untraced".into(), rounds.pair(0, 1)),
        ("kvm_exits_traced_vs_kernel_tracepoints".into(), rounds.pair(0, 2)),
    ])
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
        let measured = match measure(name, plan) {
            Ok(measured) => measured,
            Err(why) => {
                skipped::skip(&format!("interleaved/{name}"), &why);
                continue;
            }
        };
        for (name, result) in measured {
            report(&name, &result);
            result.write(&dir, &name)?;
        }
    }
    Ok(())
}
