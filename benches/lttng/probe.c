/*
 * The tracepoint provider of hyptrace_bench_tp.h (its probes and its registration with
 * lttng-ust, by constructors) and the two functions the Rust benchmarks call through FFI
 * (benches/src/lttng_probe.rs).
 */
#define TRACEPOINT_CREATE_PROBES
#define TRACEPOINT_DEFINE
#include "hyptrace_bench_tp.h"

#include <stdbool.h>

/* Records one hyptrace_bench:payload_16B event carrying the 16 bytes at `payload`. */
void hyptrace_bench_lttng_payload_16B(const uint8_t *payload)
{
	tracepoint(hyptrace_bench, payload_16B, payload);
}

/* Whether a tracing session has enabled hyptrace_bench:payload_16B in this process. */
bool hyptrace_bench_lttng_enabled(void)
{
	return tracepoint_enabled(hyptrace_bench, payload_16B);
}
