//! `cargo xtask fuzz`: cargo-fuzz on the targets in `fuzz/`, with the nightly toolchain
//! (or, where there is none, the default one with `RUSTC_BOOTSTRAP=1`).
//!
//! `--smoke` builds every target once and runs each for a bounded time; a crash (or a
//! build failure) fails it. Corpora and crash artifacts stay under `fuzz/` (git-ignored).

use std::process::Command;
use std::sync::OnceLock;

use crate::util;

/// Seconds per target for `--smoke` unless `--seconds` or `$SAN_SPI_FUZZ_SECONDS` says.
const DEFAULT_SMOKE_SECONDS: u64 = 15;

/// `cargo xtask fuzz ...`.
pub fn main(args: &[String]) -> Result<(), String> {
    match args.first().map(String::as_str) {
        Some("--smoke") => {
            let seconds = match &args[1..] {
                [] => smoke_seconds(),
                [flag, n] if flag == "--seconds" => n
                    .parse()
                    .map_err(|_| format!("--seconds wants a number, got `{n}`"))?,
                other => return Err(format!("unexpected arguments after --smoke: {other:?}")),
            };
            smoke(seconds)
        }
        Some("--list") => {
            for t in targets()? {
                println!("{t}");
            }
            Ok(())
        }
        Some(target) if !target.starts_with('-') => {
            let known = targets()?;
            if !known.iter().any(|t| t == target) {
                return Err(format!(
                    "no fuzz target `{target}`; targets: {}",
                    known.join(", ")
                ));
            }
            let mut cmd = cargo_fuzz("run");
            cmd.arg(target).args(&args[1..]);
            util::run(&mut cmd)
        }
        _ => Err("usage: cargo xtask fuzz --smoke [--seconds N] | --list | <target> [args]".into()),
    }
}

/// Seconds per target for a smoke run: `$SAN_SPI_FUZZ_SECONDS`, else 15.
pub fn smoke_seconds() -> u64 {
    std::env::var("SAN_SPI_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_SMOKE_SECONDS)
}

/// Whether rustup has a nightly toolchain.
pub fn have_nightly() -> bool {
    static NIGHTLY: OnceLock<bool> = OnceLock::new();
    *NIGHTLY.get_or_init(|| {
        util::output(Command::new("rustup").args(["toolchain", "list"]))
            .is_some_and(|list| list.lines().any(|l| l.starts_with("nightly")))
    })
}

/// `cargo +nightly fuzz <sub> --fuzz-dir fuzz`, run from the workspace root.
///
/// Without a nightly toolchain (a new machine has only rustup's one toolchain and cannot
/// download another), the default toolchain is used with `RUSTC_BOOTSTRAP=1`, which
/// lets it accept the `-Z` flags cargo-fuzz passes (sanitizer, coverage).
fn cargo_fuzz(sub: &str) -> Command {
    let mut cmd = util::rustup_cargo_cmd();
    if have_nightly() {
        cmd.arg("+nightly");
    } else {
        cmd.env("RUSTC_BOOTSTRAP", "1");
    }
    cmd.args(["fuzz", sub, "--fuzz-dir", "fuzz"]);
    cmd
}

/// The fuzz targets, from `cargo fuzz list`.
fn targets() -> Result<Vec<String>, String> {
    let out = util::output(&mut cargo_fuzz("list"))
        .ok_or("`cargo fuzz list --fuzz-dir fuzz` failed (is cargo-fuzz installed?)")?;
    Ok(out
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect())
}

/// Builds all targets, then runs each for `seconds`.
pub fn smoke(seconds: u64) -> Result<(), String> {
    if !have_nightly() {
        println!("fuzz: NOTE: no nightly toolchain; using the default one with RUSTC_BOOTSTRAP=1");
    }
    let targets = targets()?;
    if targets.is_empty() {
        return Err("no fuzz targets in fuzz/".into());
    }
    util::run(&mut cargo_fuzz("build"))?;
    let mut failed = Vec::new();
    for t in &targets {
        println!("\n--- fuzz smoke: {t} for {seconds}s ---");
        let mut cmd = cargo_fuzz("run");
        cmd.arg(t).args([
            "--".to_string(),
            format!("-max_total_time={seconds}"),
            "-timeout=10".to_string(),
            "-rss_limit_mb=2048".to_string(),
            "-print_final_stats=1".to_string(),
        ]);
        if let Err(e) = util::run(&mut cmd) {
            println!("fuzz smoke: {t} FAILED: {e} (crash input under fuzz/artifacts/{t}/)");
            failed.push(t.clone());
        }
    }
    if failed.is_empty() {
        println!(
            "fuzz smoke: {} targets ran {seconds}s each without a crash",
            targets.len()
        );
        Ok(())
    } else {
        Err(format!("fuzz targets failed: {}", failed.join(", ")))
    }
}
