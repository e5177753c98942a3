#!/usr/bin/env bash
# Installs what tests/run-all.sh needs and this machine lacks: a C compiler (the test that builds
# a consumer written from docs/abi.md in C; cargo-fuzz's libFuzzer), trace-cmd (the judge of the
# trace.dat files trace-reader records), libtraceevent, its plugins and pkg-config (which
# trace-reader prints events with, as trace-cmd does; the build needs them), LTTng (lttng-tools,
# lttng-ust's headers, babeltrace2: the peer tracer of the benchmarks, whose tracepoint provider
# the benches crate builds), gdb (the backtraces tests/show-hang.sh prints of a part that ran past
# its time), clippy and rustfmt, the x86_64-unknown-none target (the no_std build), a nightly
# toolchain with Miri, and cargo-fuzz. What is there already is left alone, so running it again
# costs a few seconds.
set -euo pipefail

missing=()
command -v cc >/dev/null 2>&1 || missing+=(gcc libc6-dev)
command -v c++ >/dev/null 2>&1 || missing+=(g++)
command -v trace-cmd >/dev/null 2>&1 || missing+=(trace-cmd)
command -v lttng >/dev/null 2>&1 || missing+=(lttng-tools)
command -v babeltrace2 >/dev/null 2>&1 || missing+=(babeltrace2)
[ -e /usr/include/lttng/tracepoint.h ] || [ -e "/usr/include/$(uname -m)-linux-gnu/lttng/tracepoint.h" ] ||
    missing+=(liblttng-ust-dev)
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
command -v gdb >/dev/null 2>&1 || missing+=(gdb)
pkg-config --exists libtraceevent 2>/dev/null || missing+=(libtraceevent-dev)
compgen -G "/usr/lib/*/traceevent/plugins/plugin_sched_switch.so" >/dev/null || missing+=(libtraceevent1-plugin)
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -eq 0 ]; then
        echo "== installing system packages: ${missing[*]}" >&2
        apt-get update
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
    else
        # The tests that need them say SKIPPED (outside CI, where they are required).
        echo "== not root: install ${missing[*]} yourself for the tests that need them" >&2
    fi
fi

echo "== installing toolchain components" >&2
rustup component add clippy rustfmt
rustup target add x86_64-unknown-none
rustup toolchain install nightly --profile minimal --component miri,rust-src
cargo +nightly miri setup
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
