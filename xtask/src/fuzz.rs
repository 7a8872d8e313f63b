//! `cargo xtask fuzz`: cargo-fuzz on the targets in `fuzz/`, with the nightly toolchain
//! (or, where there is none, the default one with `RUSTC_BOOTSTRAP=1`).
//!
//! - `--smoke` builds every target once (AddressSanitizer, debug assertions) and runs each
//!   for a bounded time; a crash (or a build failure) fails it. CI runs this.
//! - `--long` runs every target (or the ones named) one after another until it has made
//!   `--runs` executions (default 10^7) or `--seconds` have passed (default 900), and
//!   prints per-target figures: executions, exec/s, coverage and features (libFuzzer's
//!   `cov:` / `ft:`), corpus size and crashes. It builds without a sanitizer by default
//!   (`--sanitizer address` to keep ASan): the core has no `unsafe` block, and ASan would
//!   cut the executions per second three- to tenfold. Overflow checks stay on.
//!
//! Every run reads the committed seeds `fuzz/seeds/<target>/` (written by
//! `fuzz/seeds/make_seeds.py`) after the working corpus `fuzz/corpus/<target>/`, where new
//! inputs go. Corpora and crash artifacts stay under `fuzz/` (git-ignored). Every build
//! first checks that `fuzz/Cargo.lock` is current (`cargo fetch --locked`; cargo-fuzz has
//! no `--locked` of its own) and fails if the build changed it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Instant;

use crate::util;

/// Seconds per target for `--smoke` unless `--seconds` or `$SAN_SPI_FUZZ_SECONDS` says:
/// eight targets then take about 100 s on two cores.
const DEFAULT_SMOKE_SECONDS: u64 = 10;

/// Executions per target for `--long`.
const DEFAULT_LONG_RUNS: u64 = 10_000_000;

/// Time cap per target for `--long`, in seconds.
const DEFAULT_LONG_SECONDS: u64 = 900;

/// Where `--long` builds (apart from the smoke's ASan build in `fuzz/target`).
const LONG_TARGET_DIR: &str = "fuzz/target/long";

/// `cargo xtask fuzz ...`.
pub fn main(args: &[String]) -> Result<(), String> {
    match args.first().map(String::as_str) {
        Some("--smoke") => {
            let seconds = match &args[1..] {
                [] => smoke_seconds(),
                [flag, n] if flag == "--seconds" => number(flag, n)?,
                other => return Err(format!("unexpected arguments after --smoke: {other:?}")),
            };
            smoke(seconds)
        }
        Some("--long") => long(&args[1..]),
        Some("--list") => {
            for t in targets()? {
                println!("{t}");
            }
            Ok(())
        }
        Some(target) if !target.starts_with('-') => {
            check_target(target)?;
            let lock = LockGuard::check()?;
            let mut cmd = cargo_fuzz("run");
            cmd.arg(target).args(&args[1..]);
            util::run(&mut cmd)?;
            lock.unchanged()
        }
        _ => Err(
            "usage: cargo xtask fuzz --smoke [--seconds N] | --long [--seconds N] \
                  [--runs N] [--sanitizer S] [TARGET...] | --list | <target> [args]"
                .into(),
        ),
    }
}

fn number(flag: &str, n: &str) -> Result<u64, String> {
    n.parse()
        .map_err(|_| format!("{flag} wants a number, got `{n}`"))
}

/// Seconds per target for a smoke run: `$SAN_SPI_FUZZ_SECONDS`, else 10.
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

/// `cargo +nightly` (or `RUSTC_BOOTSTRAP=1 cargo`) in the workspace root.
///
/// Without a nightly toolchain (a new machine has only rustup's one toolchain and cannot
/// download another), the default toolchain is used with `RUSTC_BOOTSTRAP=1`, which
/// lets it accept the `-Z` flags cargo-fuzz passes (sanitizer, coverage). A
/// `CARGO_TARGET_DIR` of the caller is dropped: fuzz builds live under `fuzz/target`.
fn nightly_cargo() -> Command {
    let mut cmd = util::rustup_cargo_cmd();
    cmd.env_remove("CARGO_TARGET_DIR");
    if have_nightly() {
        cmd.arg("+nightly");
    } else {
        cmd.env("RUSTC_BOOTSTRAP", "1");
    }
    cmd
}

/// `cargo +nightly fuzz <sub> --fuzz-dir fuzz`, run from the workspace root.
fn cargo_fuzz(sub: &str) -> Command {
    let mut cmd = nightly_cargo();
    cmd.args(["fuzz", sub, "--fuzz-dir", "fuzz"]);
    cmd
}

fn fuzz_dir() -> PathBuf {
    util::workspace_root().join("fuzz")
}

/// `fuzz/Cargo.lock` as it was before a build: the build must neither need nor make a
/// change to it (the `--locked` that cargo-fuzz lacks).
struct LockGuard {
    before: Vec<u8>,
}

impl LockGuard {
    /// `cargo fetch --locked` for the fuzz crate: fails if `fuzz/Cargo.lock` is missing or
    /// out of date.
    fn check() -> Result<LockGuard, String> {
        let lock = fuzz_dir().join("Cargo.lock");
        let before = std::fs::read(&lock).map_err(|e| {
            format!(
                "{}: {e} (the fuzz crate needs its lock file)",
                util::rel(&lock)
            )
        })?;
        util::run(nightly_cargo().args([
            "fetch",
            "--locked",
            "--manifest-path",
            "fuzz/Cargo.toml",
        ]))
        .map_err(|e| {
            format!("{e}: fuzz/Cargo.lock is out of date; update it with `cargo +nightly update --manifest-path fuzz/Cargo.toml` and commit it")
        })?;
        Ok(LockGuard { before })
    }

    fn unchanged(&self) -> Result<(), String> {
        let lock = fuzz_dir().join("Cargo.lock");
        match std::fs::read(&lock) {
            Ok(now) if now == self.before => Ok(()),
            _ => Err("the fuzz build changed fuzz/Cargo.lock (it must build --locked)".into()),
        }
    }
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

fn check_target(target: &str) -> Result<(), String> {
    let known = targets()?;
    if known.iter().any(|t| t == target) {
        Ok(())
    } else {
        Err(format!(
            "no fuzz target `{target}`; targets: {}",
            known.join(", ")
        ))
    }
}

/// How a batch of runs builds and bounds each target.
struct Plan {
    /// `cargo fuzz` build options (sanitizer, target dir), for `build` and `run` alike.
    build_args: Vec<String>,
    /// `-max_total_time`.
    seconds: u64,
    /// `-runs`, if bounded by executions.
    runs: Option<u64>,
}

/// What one target's run showed, from libFuzzer's output and the artifact directory.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RunStats {
    /// `stat::number_of_executed_units`.
    pub executions: Option<u64>,
    /// `stat::average_exec_per_sec`.
    pub exec_per_sec: Option<u64>,
    /// `cov:` of the last status line (coverage counters hit).
    pub cov: Option<u64>,
    /// `ft:` of the last status line (features).
    pub features: Option<u64>,
    /// `corp:` of the last status line: inputs in the corpus, and their size as printed.
    pub corpus: Option<(u64, String)>,
    /// `stat::new_units_added`.
    pub new_units: Option<u64>,
    /// `stat::peak_rss_mb`.
    pub peak_rss_mb: Option<u64>,
}

/// Reads libFuzzer's final statistics (`-print_final_stats=1`) and its last status line
/// (`#N DONE cov: C ft: F corp: U/Sb ...`).
pub fn parse_stats(output: &str) -> RunStats {
    let mut s = RunStats::default();
    for line in output.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("stat::") {
            let Some((key, value)) = rest.split_once(':') else {
                continue;
            };
            let value = value.trim().parse().ok();
            match key.trim() {
                "number_of_executed_units" => s.executions = value,
                "average_exec_per_sec" => s.exec_per_sec = value,
                "new_units_added" => s.new_units = value,
                "peak_rss_mb" => s.peak_rss_mb = value,
                _ => {}
            }
            continue;
        }
        if !line.starts_with('#') || !line.contains(" cov: ") {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        let after = |key: &str| {
            words
                .iter()
                .position(|w| *w == key)
                .and_then(|i| words.get(i + 1))
                .copied()
        };
        s.cov = after("cov:").and_then(|v| v.parse().ok()).or(s.cov);
        s.features = after("ft:").and_then(|v| v.parse().ok()).or(s.features);
        if let Some((units, size)) = after("corp:").and_then(|c| c.split_once('/')) {
            if let Ok(units) = units.parse() {
                s.corpus = Some((units, size.to_owned()));
            }
        }
    }
    s
}

/// Crash, leak, timeout and out-of-memory inputs saved for `target`.
fn artifacts(target: &str) -> Vec<PathBuf> {
    let dir = fuzz_dir().join("artifacts").join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                ["crash-", "leak-", "timeout-", "oom-"]
                    .iter()
                    .any(|k| n.starts_with(k))
            })
        })
        .collect();
    found.sort();
    found
}

fn count_files(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| d.filter_map(Result::ok).count())
}

/// One target's result.
struct Outcome {
    target: String,
    stats: RunStats,
    seeds: usize,
    crashes: Vec<PathBuf>,
    ok: bool,
    seconds: f64,
}

/// Runs one target once under `plan`, with its working corpus and its seeds.
fn run_target(target: &str, plan: &Plan) -> Result<Outcome, String> {
    let corpus = fuzz_dir().join("corpus").join(target);
    std::fs::create_dir_all(&corpus)
        .map_err(|e| format!("cannot create {}: {e}", util::rel(&corpus)))?;
    let seeds = fuzz_dir().join("seeds").join(target);
    let before = artifacts(target);
    let mut cmd = cargo_fuzz("run");
    cmd.args(&plan.build_args).arg(target).arg(&corpus);
    let seed_count = if seeds.is_dir() {
        cmd.arg(&seeds);
        count_files(&seeds)
    } else {
        println!("fuzz: NOTE: {target} has no seeds in {}", util::rel(&seeds));
        0
    };
    cmd.arg("--").args([
        format!("-max_total_time={}", plan.seconds),
        "-timeout=10".to_string(),
        "-rss_limit_mb=2048".to_string(),
        "-print_final_stats=1".to_string(),
    ]);
    if let Some(runs) = plan.runs {
        cmd.arg(format!("-runs={runs}"));
    }
    let started = Instant::now();
    let (ok, out, err) = util::run_tee(&mut cmd)?;
    let crashes: Vec<PathBuf> = artifacts(target)
        .into_iter()
        .filter(|a| !before.contains(a))
        .collect();
    Ok(Outcome {
        target: target.to_owned(),
        stats: parse_stats(&format!("{out}\n{err}")),
        seeds: seed_count,
        ok: ok && crashes.is_empty(),
        crashes,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Builds every target under `plan` (lock file checked), then runs those in `which`.
fn run_all(which: &[String], plan: &Plan) -> Result<Vec<Outcome>, String> {
    if !have_nightly() {
        println!("fuzz: NOTE: no nightly toolchain; using the default one with RUSTC_BOOTSTRAP=1");
    }
    let lock = LockGuard::check()?;
    let mut build = cargo_fuzz("build");
    build.args(&plan.build_args);
    util::run(&mut build)?;
    lock.unchanged()?;
    let mut outcomes = Vec::new();
    for t in which {
        let bound = match plan.runs {
            Some(r) => format!("{r} runs or {}s", plan.seconds),
            None => format!("{}s", plan.seconds),
        };
        util::banner(&format!("fuzz: {t} ({bound})"));
        let o = run_target(t, plan)?;
        if !o.ok {
            println!(
                "fuzz: {t} FAILED (crash input under fuzz/artifacts/{t}/; reproduce with \
                 `cargo xtask fuzz {t} fuzz/artifacts/{t}/<file>`)"
            );
        }
        outcomes.push(o);
    }
    lock.unchanged()?;
    Ok(outcomes)
}

fn show(v: Option<u64>) -> String {
    v.map_or_else(|| "?".to_string(), |v| v.to_string())
}

/// The per-target figures, as a Markdown table (pasted into `docs/reliability.md`).
fn print_table(outcomes: &[Outcome], runs: Option<u64>) {
    println!();
    println!("| target | executions | exec/s | cov | ft | corpus (inputs/bytes) | seeds | crashes | time |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for o in outcomes {
        let s = &o.stats;
        let mut executions = show(s.executions);
        if let (Some(want), Some(got)) = (runs, s.executions) {
            if got < want {
                executions.push_str(" (time cap)");
            }
        }
        let corpus = s
            .corpus
            .as_ref()
            .map_or_else(|| "?".to_string(), |(u, b)| format!("{u} / {b}"));
        let crashes = if o.ok {
            "0".to_string()
        } else if o.crashes.is_empty() {
            "FAILED".to_string()
        } else {
            o.crashes
                .iter()
                .map(|c| util::rel(c))
                .collect::<Vec<_>>()
                .join(", ")
        };
        println!(
            "| {} | {executions} | {} | {} | {} | {corpus} | {} | {crashes} | {:.0}s |",
            o.target,
            show(s.exec_per_sec),
            show(s.cov),
            show(s.features),
            o.seeds,
            o.seconds
        );
    }
    println!();
}

fn failures(outcomes: &[Outcome]) -> Vec<String> {
    outcomes
        .iter()
        .filter(|o| !o.ok)
        .map(|o| o.target.clone())
        .collect()
}

/// Builds all targets (with ASan), then runs each for `seconds`, starting from its seeds.
pub fn smoke(seconds: u64) -> Result<(), String> {
    let targets = targets()?;
    if targets.is_empty() {
        return Err("no fuzz targets in fuzz/".into());
    }
    let plan = Plan {
        build_args: Vec::new(),
        seconds,
        runs: None,
    };
    let outcomes = run_all(&targets, &plan)?;
    print_table(&outcomes, None);
    let failed = failures(&outcomes);
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

/// `--long [--seconds N] [--runs N] [--sanitizer S] [TARGET...]`.
fn long(args: &[String]) -> Result<(), String> {
    let mut seconds = DEFAULT_LONG_SECONDS;
    let mut runs = DEFAULT_LONG_RUNS;
    let mut sanitizer = "none".to_string();
    let mut which = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--seconds" | "--runs" | "--sanitizer" => {
                let v = it.next().ok_or_else(|| format!("{a} needs a value"))?;
                match a.as_str() {
                    "--seconds" => seconds = number(a, v)?,
                    "--runs" => runs = number(a, v)?,
                    _ => sanitizer = v.clone(),
                }
            }
            t if !t.starts_with('-') => which.push(t.to_owned()),
            other => return Err(format!("unknown --long option `{other}`")),
        }
    }
    let all = targets()?;
    for t in &which {
        check_target(t)?;
    }
    if which.is_empty() {
        which = all;
    }
    let plan = Plan {
        build_args: vec![
            "--sanitizer".into(),
            sanitizer.clone(),
            "--target-dir".into(),
            LONG_TARGET_DIR.into(),
        ],
        seconds,
        runs: Some(runs),
    };
    let outcomes = run_all(&which, &plan)?;
    let date = util::output(Command::new("date").args(["-u", "+%Y-%m-%d"]))
        .map_or_else(|| "?".to_string(), |d| d.trim().to_owned());
    util::banner("fuzz --long summary");
    println!(
        "{date}: up to {runs} executions or {seconds}s per target, sanitizer {sanitizer}, one job"
    );
    print_table(&outcomes, Some(runs));
    let failed = failures(&outcomes);
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("fuzz targets failed: {}", failed.join(", ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_final_stats_and_the_last_status_line() {
        let out = "\
INFO: Seed: 123
#2\tINITED cov: 12 ft: 13 corp: 1/1b exec/s: 0 rss: 30Mb
#4096\tpulse  cov: 40 ft: 80 corp: 9/99b lim: 4 exec/s: 2048 rss: 31Mb
#301489\tDONE   cov: 490 ft: 1800 corp: 354/5543b lim: 1440 exec/s: 33498 rss: 549Mb
Done 301489 runs in 9 second(s)
stat::number_of_executed_units: 301489
stat::average_exec_per_sec:     33498
stat::new_units_added:          60
stat::slowest_unit_time_sec:    0
stat::peak_rss_mb:              549
";
        assert_eq!(
            parse_stats(out),
            RunStats {
                executions: Some(301_489),
                exec_per_sec: Some(33_498),
                cov: Some(490),
                features: Some(1800),
                corpus: Some((354, "5543b".to_string())),
                new_units: Some(60),
                peak_rss_mb: Some(549),
            }
        );
        assert_eq!(parse_stats("nothing here"), RunStats::default());
    }
}
