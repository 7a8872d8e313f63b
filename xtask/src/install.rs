//! Step `install`: make a fresh machine able to run every other step.
//!
//! - Debian packages (installed with apt-get when root, else a clear error naming them):
//!   Debian's `rustc` 1.63 for the MSRV build, the mingw-w64 compilers (the header probe and
//!   Windows linking), `libstd-rust-dev-windows` (the 1.63 Windows std), `wine64` (runs the
//!   MSRV step's Windows test binaries), `g++` (libFuzzer),
//!   `libfabric-bin` (`fi_pingpong`, so the bench smoke test covers the libfabric
//!   comparison) and `git` (the advisory-db mirror).
//! - Cargo tools: `cargo-deny`, `cargo-fuzz` (`cargo install --locked`).
//! - Rustup: `rustfmt` and `clippy` on the default toolchain (added if missing), and a
//!   `nightly` toolchain for cargo fuzz; without one, cargo fuzz runs on the default
//!   toolchain with `RUSTC_BOOTSTRAP=1` and the summary says so.

use std::path::Path;
use std::process::Command;

use crate::{fuzz, util, wine};

/// Where `libstd-rust-dev-windows` puts the Windows standard library of Debian's rustc.
pub const WINDOWS_STD_DIR: &str = "/usr/lib/rustlib/x86_64-pc-windows-gnu/lib";

/// A Debian package this project needs, and how to tell whether it is there.
struct AptNeed {
    /// What is checked, for messages.
    what: &'static str,
    /// Debian package providing it.
    package: &'static str,
    /// If false, a non-root run only notes its absence (the step that needs it adapts).
    required: bool,
    present: fn() -> bool,
}

const APT_NEEDS: &[AptNeed] = &[
    AptNeed {
        what: "/usr/bin/rustc (Debian's rustc 1.63, for the MSRV build)",
        package: "rustc",
        required: true,
        present: || Path::new("/usr/bin/rustc").is_file(),
    },
    AptNeed {
        what: "x86_64-w64-mingw32-gcc",
        package: "gcc-mingw-w64-x86-64",
        required: true,
        present: || util::on_path("x86_64-w64-mingw32-gcc"),
    },
    AptNeed {
        what: "i686-w64-mingw32-gcc",
        package: "gcc-mingw-w64-i686",
        required: true,
        present: || util::on_path("i686-w64-mingw32-gcc"),
    },
    AptNeed {
        what: "the Windows std of rustc 1.63 (/usr/lib/rustlib/x86_64-pc-windows-gnu)",
        package: "libstd-rust-dev-windows",
        required: true,
        present: || Path::new(WINDOWS_STD_DIR).is_dir(),
    },
    AptNeed {
        what: "/usr/lib/wine/wine64 (runs the Windows test binaries)",
        package: "wine64",
        required: true,
        present: || Path::new(wine::WINE64).is_file(),
    },
    AptNeed {
        what: "a C++ compiler (c++, for libFuzzer)",
        package: "g++",
        required: true,
        present: || util::on_path("c++"),
    },
    AptNeed {
        what: "fi_pingpong (libfabric's shm provider, the peer `san-spi bench loopback` compares with)",
        package: "libfabric-bin",
        required: false,
        present: || util::on_path("fi_pingpong"),
    },
    AptNeed {
        what: "git (advisory-db mirror)",
        package: "git",
        required: false,
        present: || util::on_path("git"),
    },
];

/// Cargo subcommands installed with `cargo install --locked <crate>` when missing.
const CARGO_TOOLS: &[(&str, &str)] = &[("deny", "cargo-deny"), ("fuzz", "cargo-fuzz")];

/// Installs what is missing. Returns notes worth repeating in the CI summary.
pub fn run() -> Result<Vec<String>, String> {
    let mut notes = Vec::new();
    apt(&mut notes)?;
    rustup(&mut notes)?;
    cargo_tools()?;
    Ok(notes)
}

fn apt(notes: &mut Vec<String>) -> Result<(), String> {
    let missing: Vec<&AptNeed> = APT_NEEDS.iter().filter(|n| !(n.present)()).collect();
    if missing.is_empty() {
        println!("apt: all needed Debian packages present");
        return Ok(());
    }
    for n in &missing {
        println!("apt: missing {} (package `{}`)", n.what, n.package);
    }
    let packages: Vec<&str> = missing.iter().map(|n| n.package).collect();
    if util::is_root() {
        let mut update = Command::new("apt-get");
        update
            .arg("update")
            .env("DEBIAN_FRONTEND", "noninteractive");
        util::run(&mut update)?;
        let mut install = Command::new("apt-get");
        install
            .args(["install", "-y", "--no-install-recommends"])
            .args(&packages)
            .env("DEBIAN_FRONTEND", "noninteractive");
        util::run(&mut install)?;
        let still: Vec<&str> = missing
            .iter()
            .filter(|n| !(n.present)())
            .map(|n| n.package)
            .collect();
        if !still.is_empty() {
            return Err(format!(
                "apt-get install did not provide: {}",
                still.join(" ")
            ));
        }
        return Ok(());
    }
    let required: Vec<&str> = missing
        .iter()
        .filter(|n| n.required)
        .map(|n| n.package)
        .collect();
    for n in missing.iter().filter(|n| !n.required) {
        notes.push(format!(
            "{} missing (Debian package `{}`); the steps that need it are reduced",
            n.what, n.package
        ));
    }
    if required.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "missing Debian package(s) and not root, so cannot install them: {p}\n  \
             run as root: apt-get update && apt-get install -y --no-install-recommends {p}",
            p = required.join(" ")
        ))
    }
}

fn rustup(notes: &mut Vec<String>) -> Result<(), String> {
    for (sub, component) in [("fmt", "rustfmt"), ("clippy", "clippy")] {
        if !util::succeeds(util::cargo_cmd().args([sub, "--version"])) {
            println!("rustup: `cargo {sub}` missing, adding component {component}");
            util::run(Command::new("rustup").args(["component", "add", component]))
                .map_err(|e| format!("`cargo {sub}` is missing and {e}"))?;
        }
    }
    if fuzz::have_nightly() {
        println!("rustup: rustfmt, clippy and a nightly toolchain present");
    } else {
        // A new machine has rustup's one toolchain and cannot download another.
        let n = "NOTE: no nightly toolchain in `rustup toolchain list` (install one with \
                 `rustup toolchain install nightly` where possible); cargo fuzz runs on the \
                 default toolchain with RUSTC_BOOTSTRAP=1";
        println!("rustup: {n}");
        notes.push(n.to_owned());
    }
    Ok(())
}

fn cargo_tools() -> Result<(), String> {
    for (sub, krate) in CARGO_TOOLS {
        if util::succeeds(util::cargo_cmd().args([sub, "--version"])) {
            println!("cargo: `cargo {sub}` present");
            continue;
        }
        println!("cargo: `cargo {sub}` missing, installing {krate}");
        util::run(util::cargo_cmd().args(["install", "--locked", krate]))?;
    }
    Ok(())
}
