#!/usr/bin/env bash
# Runs every check hyptrace has, the way CI does, and prints one summary line per part.
#
#   bash tests/run-all.sh            # everything
#   PROPTEST_CASES=1000 HYPTRACE_STRESS_MS=500 HYPTRACE_KILLS=200 HYPTRACE_FUZZ_SECONDS=5 \
#       bash tests/run-all.sh        # a quicker pass
#
# Needs: the stable toolchain with clippy and rustfmt, the x86_64-unknown-none target, a
# nightly toolchain with miri and rust-src, cargo-fuzz, a C compiler, trace-cmd, libtraceevent
# and pkg-config: it runs tests/setup.sh first, which installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tests/setup.sh

export PROPTEST_CASES="${PROPTEST_CASES:-10000}"
export HYPTRACE_STRESS_MS="${HYPTRACE_STRESS_MS:-3000}"
export LOOM_MAX_PREEMPTIONS="${LOOM_MAX_PREEMPTIONS:-2}"
export HYPTRACE_KILLS="${HYPTRACE_KILLS:-1000}"
fuzz_seconds="${HYPTRACE_FUZZ_SECONDS:-30}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

summary=()
log=$(mktemp -d)
# The process group of the part running now, if any: it ends with this script, however that ends
# (Ctrl-C reaches only this shell: the part runs in a group of its own).
running=
trap 'rm -rf "$log"; [ -z "$running" ] || kill -KILL -- "-$running" 2>/dev/null' EXIT
trap 'exit 130' INT TERM

# How long one part may run. A part that runs past it is stopped, and fails showing its log
# (libtest names each test running over 60 s) and what its processes were doing
# (tests/show-hang.sh), instead of holding CI until CI's own limit ends it without a word. The
# slowest part, Miri, takes about 10 minutes.
part_limit="${HYPTRACE_PART_LIMIT_SECONDS:-1500}"

# Runs "${@:2}", its output to file $1, for at most $part_limit seconds. Past that, shows (on
# stderr) what its processes are doing, kills them and sets timed_out. timeout(1) puts itself
# and the command in a process group of their own, and ends it should this shell not.
timed_out=
bounded() {
    local output=$1
    shift
    timeout --kill-after=10 $((part_limit + 600)) "$@" >"$output" 2>&1 &
    running=$!
    local start=$SECONDS status=0
    while kill -0 "$running" 2>/dev/null; do
        if [ $((SECONDS - start)) -ge "$part_limit" ]; then
            timed_out=1
            timeout 300 bash tests/show-hang.sh "$running" >&2 || true
            kill -KILL -- "-$running" 2>/dev/null
            running=
            return 1
        fi
        sleep 1
    done
    wait "$running" || status=$?
    running=
    return "$status"
}

# Runs a part, keeps its output in $log/NAME.log, shows the output if it fails.
part() {
    local name=$1
    shift
    local start=$SECONDS
    echo "== $name: $*" >&2
    if ! bounded "$log/$name.log" "$@" 2>"$log/$name.hang"; then
        cat "$log/$name.log" "$log/$name.hang" >&2
        if [ -n "$timed_out" ]; then
            echo "TIMED OUT: $name ran over ${part_limit} s: above, its log and what its processes were doing" >&2
        fi
        echo "FAILED: $name" >&2
        exit 1
    fi
    summary+=("$(printf '%-8s ok  %4ss  %s' "$name" $((SECONDS - start)) "$(summarize "$name")")")
}

# One line about what a part did, from its log.
summarize() {
    local f="$log/$1.log"
    case $1 in
        tests)
            local passed
            passed=$(grep -Eo 'test result: ok\. [0-9]+ passed' "$f" | awk '{s += $4} END {print s + 0}')
            echo "$passed tests passed (proptest model: $PROPTEST_CASES cases; stress: ${HYPTRACE_STRESS_MS} ms per mode)"
            # Headline figures, and any test that could not run here (it says why).
            grep -E '^(stress |kvm exits|SKIPPED|kernel overwrite|kernel record|trace-cmd report agrees|C consumer|killed producer|drop mode cpu|overwrite mode cpu|crash recovery|second uid|one timeline|live one timeline|kernel setup|KVM cross-check|report text|vCPU [0-9]: [0-9]+ exits)' "$f" \
                | sed 's/^/           /' || true
            ;;
        loom) echo "$(grep -Eo 'test result: ok\. [0-9]+ passed' "$f" | awk '{s += $4} END {print s + 0}') loom models (ring and clock latch): every schedule with up to $LOOM_MAX_PREEMPTIONS preemptions explored" ;;
        miri) echo "$(grep -Eo 'test result: ok\. [0-9]+ passed' "$f" | awk '{s += $4} END {print s + 0}') ring-core unit tests clean under Miri" ;;
        no_std) echo "ring-core builds for x86_64-unknown-none without std" ;;
        fuzz)
            local execs each
            execs=$(grep -Eo '^Done [0-9]+ runs' "$f" | awk '{s += $2} END {print s + 0}')
            each=$(awk '/^== fuzzing/ {t = $3} /^Done [0-9]+ runs/ {printf "%s%s %s", sep, t, $2; sep = ", "}' "$f")
            echo "fuzzed ${fuzz_seconds} s per target: $execs execs ($each), 0 crashes"
            ;;
        lint) echo "rustfmt clean, clippy clean with -D warnings" ;;
    esac
}

part lint bash -c 'cargo fmt --all -- --check && cargo clippy --workspace --all-targets --profile ci -- -D warnings'
part no_std cargo build -p ring-core --no-default-features --target x86_64-unknown-none
part tests cargo test --workspace --profile ci -- --nocapture
part loom env RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom \
    cargo test --profile ci -p hyptrace-tests --test loom_ring --test loom_clock
# Optimised, with debug assertions and overflow checks on (-a): an arithmetic overflow on what
# a hostile peer sent is a crash found, not a silently wrapped value.
part fuzz env FUZZ_SECONDS="$fuzz_seconds" bash -c 'cd fuzz && cargo +nightly fuzz build -O -a &&
    for t in $(cargo +nightly fuzz list); do
        echo "== fuzzing $t"; cargo +nightly fuzz run -O -a "$t" -- -max_total_time="$FUZZ_SECONDS" 2>&1 | grep -Ev "^#[0-9]+"
        test "${PIPESTATUS[0]}" -eq 0 || exit 1
    done'
part miri env MIRIFLAGS="-Zmiri-strict-provenance" CARGO_TARGET_DIR=target/miri \
    cargo +nightly miri test -p ring-core

echo
echo "hyptrace test summary"
printf '%s\n' "${summary[@]}"
