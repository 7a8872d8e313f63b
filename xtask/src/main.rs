//! Project automation for the san-spi workspace (`cargo xtask <command>`).
//!
//! Plain std, no dependencies, so that it builds on a fresh machine before any
//! other tool is installed. Commands:
//!
//! - `cargo xtask ci` — everything CI checks, in order (see [`ci`]).
//! - `cargo xtask fuzz --smoke` / `--long` / `cargo xtask fuzz <target> [args]` (see [`fuzz`]).
//! - `cargo xtask msrv` — build `san-spi-core` and `san-spi-inproc` with Debian's rustc 1.63,
//!   and run san-spi-inproc's tests for Windows under Wine (see [`msrv`], [`wine`]).
//! - `cargo xtask deny` — `cargo deny check`, with the offline advisory-db fallback (see [`deny`]).
//! - `cargo xtask install` — install missing tools only (see [`install`]).
//! - `cargo xtask bench core|overlapped` — run a core benchmark (ours and its baseline in one run).

mod ci;
mod deny;
mod fuzz;
mod install;
mod msrv;
mod util;
mod wine;

use std::process::ExitCode;

const USAGE: &str = "\
usage: cargo xtask <command> [options]

commands:
  ci [--skip STEP]... [--only STEP]...
                        install missing tools, then fmt, clippy, test, deny, fuzz smoke
                        and MSRV build; stops at the first failing step.
                        steps: install fmt clippy test deny fuzz msrv
  fuzz --smoke [--seconds N]
                        build every fuzz target (ASan) and run each for N seconds from its
                        seeds in fuzz/seeds/ (default 10, or $SAN_SPI_FUZZ_SECONDS)
  fuzz --long [--seconds N] [--runs N] [--sanitizer S] [TARGET...]
                        run every target (or those named) one after another until 10^7
                        executions (--runs) or 900 s (--seconds), built without a
                        sanitizer unless --sanitizer address; prints executions, exec/s,
                        cov/ft, corpus size and crashes per target
  fuzz --list           list the fuzz targets
  fuzz <target> [args]  run one fuzz target (args go to `cargo fuzz run`; libFuzzer
                        options after `--`)
  msrv                  build san-spi-core and san-spi-inproc (libs) with /usr/bin/rustc
                        1.63, host and x86_64-pc-windows-gnu, and run san-spi-inproc's
                        unit, integration and doc tests for Windows under wine64
  deny                  cargo deny check, with the offline advisory-db fallback
  install               install missing tools only (apt packages when root, cargo tools)
  bench [NAME] [args]   cargo bench -p san-spi-core --bench NAME (default NAME: core)
  help                  this text

environment:
  SAN_SPI_ADVISORY_DB   git mirror of the RustSec advisory-db used when it cannot be fetched
                        (default ../shared/data/advisory-db.bundle beside the repository)
  SAN_SPI_FUZZ_SECONDS  seconds per target for `fuzz --smoke` (and the CI fuzz step)
  SAN_SPI_WINE_TIMEOUT_SECS
                        seconds one Windows test binary may run under Wine (default 300)
";

fn main() -> ExitCode {
    // When the MSRV step uses this very binary as RUSTC_WRAPPER, RUSTDOC or the Wine test
    // runner, act as that helper.
    if std::env::var_os(msrv::WRAPPER_ENV).is_some() {
        return msrv::wrapper_main();
    }

    let args: Vec<String> = std::env::args().skip(1).collect();
    let (cmd, rest) = match args.split_first() {
        Some((cmd, rest)) => (cmd.as_str(), rest),
        None => {
            eprint!("{USAGE}");
            return ExitCode::from(2);
        }
    };

    let result = match cmd {
        "ci" => ci::main(rest),
        "fuzz" => fuzz::main(rest),
        "msrv" => no_args(cmd, rest).and_then(|()| msrv::run().map(|_| ())),
        "deny" => no_args(cmd, rest).and_then(|()| deny::run().map(|_| ())),
        "install" => no_args(cmd, rest).and_then(|()| install::run().map(|_| ())),
        "bench" => bench(rest),
        "help" | "-h" | "--help" => {
            print!("{USAGE}");
            Ok(())
        }
        other => {
            eprintln!("xtask: unknown command `{other}`\n");
            eprint!("{USAGE}");
            return ExitCode::from(2);
        }
    };

    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("\nxtask {cmd}: FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Rejects extra arguments for commands that take none.
fn no_args(cmd: &str, rest: &[String]) -> Result<(), String> {
    if rest.is_empty() {
        Ok(())
    } else {
        Err(format!("`{cmd}` takes no arguments, got {rest:?}"))
    }
}

/// `cargo xtask bench [NAME] [args]`: runs a `harness = false` bench of san-spi-core.
fn bench(rest: &[String]) -> Result<(), String> {
    let (name, extra) = match rest.split_first() {
        Some((n, extra)) if !n.starts_with('-') => (n.as_str(), extra),
        _ => ("core", rest),
    };
    let root = util::workspace_root();
    let file = root
        .join("crates/san-spi-core/benches")
        .join(format!("{name}.rs"));
    if !file.exists() {
        return Err(format!(
            "no bench `{name}` ({} does not exist); benches: core, overlapped",
            util::rel(&file)
        ));
    }
    let mut cmd = util::cargo_cmd();
    cmd.args(["bench", "-p", "san-spi-core", "--bench", name]);
    if !extra.is_empty() {
        cmd.arg("--").args(extra);
    }
    util::run(&mut cmd)
}
