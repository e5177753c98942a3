//! Builds the LTTng-UST tracepoint provider the LTTng peer benchmarks call (`lttng/probe.c`),
//! where lttng-ust's headers are installed (Debian `liblttng-ust-dev`, which `tests/setup.sh`
//! installs), and then sets `cfg(lttng_ust)`. Without them the crate builds all the same and
//! those benchmarks say they were skipped and why.
//!
//! Only executables that call the provider pull its object out of the static archive, and with
//! it `liblttng-ust` (linked `--as-needed`, as rustc links every library): the others neither
//! load lttng-ust nor register with a session daemon.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(lttng_ust)");
    println!("cargo::rerun-if-changed=lttng/probe.c");
    println!("cargo::rerun-if-changed=lttng/hyptrace_bench_tp.h");
    let built = cc::Build::new()
        .file("lttng/probe.c")
        .include("lttng")
        .warnings(true)
        .cargo_warnings(false)
        .try_compile("hyptrace_bench_lttng_probe");
    match built {
        Ok(()) => {
            println!("cargo::rustc-link-lib=dylib=lttng-ust");
            // lttng-ust finds a program's tracepoints through the `__start_`/`__stop_` symbols
            // of their section, which the linker's section garbage collection would discard
            // (leaving the probe registered but its call site never armed).
            println!("cargo::rustc-link-arg-benches=-Wl,-z,nostart-stop-gc");
            println!("cargo::rustc-cfg=lttng_ust");
        }
        Err(e) => println!(
            "cargo::warning=LTTng peer benchmarks left out: cannot build lttng/probe.c ({e}); install liblttng-ust-dev (tests/setup.sh does)"
        ),
    }
}
