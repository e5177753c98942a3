//! The LTTng-UST tracepoint `hyptrace_bench:payload_16B` (`benches/lttng/`, built by `build.rs`
//! where lttng-ust is installed): one event carrying the same 16-byte payload hyptrace's writer
//! records, through one call into C.

unsafe extern "C" {
    fn hyptrace_bench_lttng_payload_16B(payload: *const u8);
    fn hyptrace_bench_lttng_enabled() -> bool;
}

/// Records `payload` as one `hyptrace_bench:payload_16B` event (a no-op while no session has
/// the event enabled).
#[inline]
pub fn record(payload: &[u8; 16]) {
    // SAFETY: the C function reads exactly 16 bytes from `payload` (the tracepoint's
    // `ctf_array(uint8_t, payload, payload, 16)`), which the reference keeps valid for the call,
    // and keeps no pointer to them.
    unsafe { hyptrace_bench_lttng_payload_16B(payload.as_ptr()) }
}

/// Whether a tracing session has enabled the event in this process (lttng-ust has registered
/// the process with the session daemon and the event's probe is armed).
#[inline]
pub fn enabled() -> bool {
    // SAFETY: the C function takes no arguments and only loads the tracepoint's state word.
    unsafe { hyptrace_bench_lttng_enabled() }
}
