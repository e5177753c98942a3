//! Links libtraceevent where pkg-config says it is (Debian: `libtraceevent-dev`).

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");
    let libs = Command::new("pkg-config").args(["--libs", "libtraceevent"]).output();
    let libs = match libs {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).into_owned(),
        Ok(out) => panic!(
            "pkg-config does not know libtraceevent ({}): install libtraceevent-dev (bash tests/setup.sh does)",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => {
            panic!("running pkg-config ({e}): install pkg-config and libtraceevent-dev (bash tests/setup.sh does)")
        }
    };
    for flag in libs.split_whitespace() {
        if let Some(dir) = flag.strip_prefix("-L") {
            println!("cargo:rustc-link-search=native={dir}");
        } else if let Some(lib) = flag.strip_prefix("-l") {
            println!("cargo:rustc-link-lib={lib}");
        }
    }
}
