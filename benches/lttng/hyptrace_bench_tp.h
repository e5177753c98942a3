/*
 * The LTTng-UST tracepoint the benchmarks compare hyptrace's writer with: one event carrying the
 * same 16-byte payload hyptrace records (benches/src/payload.rs), stamped by LTTng's own clock.
 * Built with probe.c by benches/build.rs.
 */
#undef TRACEPOINT_PROVIDER
#define TRACEPOINT_PROVIDER hyptrace_bench

#undef TRACEPOINT_INCLUDE
#define TRACEPOINT_INCLUDE "./hyptrace_bench_tp.h"

#if !defined(HYPTRACE_BENCH_TP_H) || defined(TRACEPOINT_HEADER_MULTI_READ)
#define HYPTRACE_BENCH_TP_H

#include <lttng/tracepoint.h>
#include <stdint.h>

TRACEPOINT_EVENT(
    hyptrace_bench,
    payload_16B,
    TP_ARGS(const uint8_t *, payload),
    TP_FIELDS(ctf_array(uint8_t, payload, payload, 16))
)

#endif /* HYPTRACE_BENCH_TP_H */

#include <lttng/tracepoint-event.h>
