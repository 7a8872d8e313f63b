//! Step `msrv`: Debian's `/usr/bin/rustc` 1.63, driven by rustup's cargo, for the host
//! and for `x86_64-pc-windows-gnu` (the provider DLL's target, Windows std from
//! `libstd-rust-dev-windows`). Target dir: `target/msrv`. It
//!
//! 1. builds `san-spi-core`, `san-spi-inproc` and `san-spi-shim` (libs; the shim's cdylib is
//!    the provider DLL) for both targets;
//! 2. builds the tests of `san-spi-inproc` (unit, integration and doc tests, with its
//!    dev-dependency `san-spi-testkit`) for `x86_64-pc-windows-gnu` and runs them under
//!    Wine ([`crate::wine`]), failing on any failed test, and prints how many passed.
//!
//! Anything missing (rustc/rustdoc 1.63, the Windows std, the mingw linker, wine64) fails
//! the step with a message naming the Debian package; `cargo xtask install` installs them.
//!
//! Today's cargo passes arguments rustc 1.63 does not know. This binary doubles as the
//! helpers that fix that, selected by [`WRAPPER_ENV`] (which only this step sets):
//! - `RUSTC_WRAPPER`: drops them (see [`filter_args`]);
//! - `RUSTDOC`, invoked through a link named `rustdoc` ([`RUSTDOC_SHIM`]): the same for
//!   rustdoc, plus `--test-runtool[-arg]` renamed to 1.63's unstable `--runtool[-arg]`
//!   with `-Z unstable-options` and `RUSTC_BOOTSTRAP=1` (see [`rustdoc_args`]);
//! - the Wine runner, when the first argument is [`wine::RUNNER_ARG`].

use std::collections::HashSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use crate::ci::count_tests;
use crate::install::WINDOWS_STD_DIR;
use crate::{util, wine};

/// Set (to anything) in the environment of the nested cargo: this binary is then one of
/// the step's helpers (rustc wrapper, rustdoc shim, Wine runner) instead of the xtask
/// command line.
pub const WRAPPER_ENV: &str = "SAN_SPI_XTASK_RUSTC_WRAPPER";
/// Comma-separated lint names rustc 1.63 knows (from `rustc -W help`), computed once by
/// the parent so that the wrapper does not ask for every crate.
pub const KNOWN_LINTS_ENV: &str = "SAN_SPI_XTASK_MSRV_KNOWN_LINTS";
/// Debian's rustc.
const MSRV_RUSTC: &str = "/usr/bin/rustc";
/// Debian's rustdoc (same package).
const MSRV_RUSTDOC: &str = "/usr/bin/rustdoc";
/// The version it must be.
const MSRV: &str = "1.63";
/// The Windows target of the provider DLL.
const WINDOWS_TARGET: &str = "x86_64-pc-windows-gnu";
/// Its linker (Debian package `gcc-mingw-w64-x86-64`).
const WINDOWS_LINKER: &str = "x86_64-w64-mingw32-gcc";
/// File name of the link to this binary that cargo runs as `RUSTDOC` (in
/// `target/msrv/bin`); being called by that name selects the rustdoc shim.
pub const RUSTDOC_SHIM: &str = "rustdoc";
/// `--print` requests rustc 1.63 knows (from `rustc --help -v`).
const KNOWN_PRINTS: &[&str] = &[
    "crate-name",
    "file-names",
    "sysroot",
    "target-libdir",
    "cfg",
    "target-list",
    "target-cpus",
    "target-features",
    "relocation-models",
    "code-models",
    "tls-models",
    "target-spec-json",
    "native-static-libs",
    "stack-protector-strategies",
    "link-args",
];
/// Options newer than 1.63 that cargo may pass, with whether they take a separate value.
const DROPPED_OPTIONS: &[(&str, bool)] = &[("--check-cfg", true), ("--diagnostic-width", true)];

/// Runs the MSRV step. Returns notes for the CI summary.
pub fn run() -> Result<Vec<String>, String> {
    let version = check_tool(MSRV_RUSTC)?;
    println!("msrv: {MSRV_RUSTC}: {version}");
    let rustdoc_version = check_tool(MSRV_RUSTDOC)?;
    println!("msrv: {MSRV_RUSTDOC}: {rustdoc_version}");
    if !Path::new(WINDOWS_STD_DIR).is_dir() {
        return Err(format!(
            "{WINDOWS_STD_DIR} missing: install Debian's `libstd-rust-dev-windows` package \
             (cargo xtask install, as root)"
        ));
    }
    if !util::on_path(WINDOWS_LINKER) {
        return Err(format!(
            "{WINDOWS_LINKER} not on PATH: install Debian's `gcc-mingw-w64-x86-64` package \
             (cargo xtask install, as root)"
        ));
    }
    if !Path::new(wine::WINE64).is_file() {
        return Err(format!(
            "{} not found: install Debian's `wine64` package (cargo xtask install, as root)",
            wine::WINE64
        ));
    }
    let lints = util::output(Command::new(MSRV_RUSTC).args(["-W", "help"]))
        .ok_or_else(|| format!("`{MSRV_RUSTC} -W help` failed"))?;
    let known = parse_lint_help(&lints).join(",");
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let target_dir = util::workspace_root().join("target/msrv");
    let rustdoc_shim = link_rustdoc_shim(&exe, &target_dir.join("bin"))?;
    let runner = wine::runner_value(&exe)?;

    // A cargo driving rustc/rustdoc 1.63 through this binary.
    let cargo = |args: &[&str]| {
        let mut cmd = util::rustup_cargo_cmd();
        cmd.args(args)
            .env("RUSTC", MSRV_RUSTC)
            .env("RUSTC_WRAPPER", &exe)
            .env("RUSTDOC", &rustdoc_shim)
            .env_remove("RUSTC_WORKSPACE_WRAPPER")
            .env_remove("RUSTDOCFLAGS")
            .env("CARGO_TARGET_DIR", &target_dir)
            .env("CARGO_TARGET_X86_64_PC_WINDOWS_GNU_LINKER", WINDOWS_LINKER)
            .env("CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER", &runner)
            .env(WRAPPER_ENV, "1")
            .env(KNOWN_LINTS_ENV, &known);
        cmd
    };

    for target in [None, Some(WINDOWS_TARGET)] {
        let mut args = vec![
            "build",
            "-p",
            "san-spi-core",
            "-p",
            "san-spi-inproc",
            "-p",
            "san-spi-shim",
            "--lib",
        ];
        if let Some(t) = target {
            args.extend(["--target", t]);
        }
        let label = target.unwrap_or("host");
        util::run(&mut cargo(&args)).map_err(|e| format!("MSRV build ({label}) failed: {e}"))?;
        println!(
            "msrv: san-spi-core, san-spi-inproc and san-spi-shim (the DLL) build with rustc {MSRV} for {label}"
        );
    }

    let t = Instant::now();
    if wine::ensure_prefix()? {
        println!(
            "msrv: created the Wine prefix {} in {}",
            util::rel(&wine::prefix_dir()),
            util::fmt_duration(t.elapsed())
        );
    }
    let t = Instant::now();
    let run = util::run_tee(&mut cargo(&[
        "test",
        "-p",
        "san-spi-inproc",
        "--target",
        WINDOWS_TARGET,
        "--no-fail-fast",
    ]));
    let (ok, out, err) = run?;
    let counts = count_tests(&out);
    let line = format!(
        "msrv: {} tests passed under Wine ({} failed, {} ignored, {} test runs: unit, \
         integration and doc tests of san-spi-inproc, rustc {MSRV}, {WINDOWS_TARGET}) in {}",
        counts.passed,
        counts.failed,
        counts.ignored,
        counts.suites,
        util::fmt_duration(t.elapsed())
    );
    println!("{line}");
    if !ok || counts.failed > 0 {
        return Err(format!(
            "san-spi-inproc tests under Wine failed ({} failed; see `failures:` above)",
            counts.failed
        ));
    }
    if counts.passed == 0 {
        return Err("no san-spi-inproc test ran under Wine (no `test result:` line)".into());
    }
    if !err.contains("Doc-tests san_spi_inproc") {
        return Err("the doctests of san-spi-inproc did not run under Wine".into());
    }
    Ok(vec![line])
}

/// Checks that `tool --version` is `<name> 1.63.x`; returns that line.
fn check_tool(tool: &str) -> Result<String, String> {
    if !Path::new(tool).is_file() {
        return Err(format!(
            "{tool} not found: install Debian's `rustc` package (cargo xtask install, as root)"
        ));
    }
    let version = util::output(Command::new(tool).arg("--version"))
        .ok_or_else(|| format!("`{tool} --version` failed"))?;
    let version = version.trim().to_owned();
    let name = Path::new(tool)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or(tool);
    if !version.starts_with(&format!("{name} {MSRV}.")) {
        return Err(format!("{tool} is `{version}`, expected {name} {MSRV}.x"));
    }
    Ok(version)
}

/// (Re)creates `dir/rustdoc` as a link to this binary (a copy where linking fails).
fn link_rustdoc_shim(exe: &Path, dir: &Path) -> Result<PathBuf, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let shim = dir.join(RUSTDOC_SHIM);
    match std::fs::remove_file(&shim) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("removing {}: {e}", shim.display())),
    }
    if std::fs::hard_link(exe, &shim).is_err() {
        std::fs::copy(exe, &shim)
            .map_err(|e| format!("copying {} to {}: {e}", exe.display(), shim.display()))?;
    }
    Ok(shim)
}

/// Lint and lint-group names (underscored) from `rustc -W help` output.
fn parse_lint_help(text: &str) -> Vec<String> {
    let mut names: Vec<String> = text
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| {
            w.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && w.chars().any(|c| c.is_ascii_lowercase())
        })
        .map(|w| w.replace('-', "_"))
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Helper mode ([`WRAPPER_ENV`] set): the Wine runner when the first argument is
/// [`wine::RUNNER_ARG`], the rustdoc shim when called as [`RUSTDOC_SHIM`], else the rustc
/// wrapper (`argv[1]` is the real rustc, the rest its arguments).
pub fn wrapper_main() -> ExitCode {
    let mut argv = std::env::args_os();
    let argv0 = argv.next().map(PathBuf::from);
    let args: Vec<OsString> = argv.collect();
    if args.first().is_some_and(|a| a == wine::RUNNER_ARG) {
        return wine::runner_main(&args[1..]);
    }
    let as_rustdoc = argv0
        .as_deref()
        .and_then(Path::file_name)
        .is_some_and(|n| n == RUSTDOC_SHIM);
    let who = if as_rustdoc {
        "xtask rustdoc shim"
    } else {
        "xtask rustc wrapper"
    };
    let (tool, args) = if as_rustdoc {
        (OsString::from(MSRV_RUSTDOC), args)
    } else {
        match args.split_first() {
            Some((rustc, rest)) => (rustc.clone(), rest.to_vec()),
            None => {
                eprintln!("xtask rustc wrapper: no rustc given");
                return ExitCode::from(2);
            }
        }
    };
    let args: Vec<String> = match args.into_iter().map(|a| a.into_string()).collect() {
        Ok(a) => a,
        Err(bad) => {
            eprintln!("{who}: non-UTF-8 argument {bad:?}");
            return ExitCode::from(2);
        }
    };
    let known: Option<HashSet<String>> = std::env::var(KNOWN_LINTS_ENV)
        .ok()
        .map(|s| s.split(',').map(str::to_owned).collect());
    let filtered = filter_args(&args, known.as_ref());
    let mut cmd = Command::new(&tool);
    if as_rustdoc {
        // rustdoc starts the Wine runner for each doctest: it keeps WRAPPER_ENV.
        cmd.args(rustdoc_args(filtered)).env("RUSTC_BOOTSTRAP", "1");
    } else {
        cmd.args(&filtered).env_remove(WRAPPER_ENV);
    }
    match cmd.status() {
        Ok(s) => match s.code() {
            Some(0) => ExitCode::SUCCESS,
            Some(c) => ExitCode::from(u8::try_from(c).unwrap_or(1)),
            None => ExitCode::FAILURE,
        },
        Err(e) => {
            eprintln!("{who}: cannot run {tool:?}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// rustdoc 1.63 has today's stable `--test-runtool[-arg]` (how cargo passes the target
/// runner for doctests) as the unstable `--runtool[-arg]`, and `--test-run-directory` is
/// unstable there too: rename, and add `-Z unstable-options` when any is present (the
/// shim runs rustdoc with `RUSTC_BOOTSTRAP=1`).
fn rustdoc_args(args: Vec<String>) -> Vec<String> {
    let mut unstable = false;
    let mut out: Vec<String> = args
        .into_iter()
        .map(|a| {
            let renamed = if let Some(rest) = a.strip_prefix("--test-runtool") {
                (rest.is_empty() || rest.starts_with('=') || rest.starts_with("-arg"))
                    .then(|| format!("--runtool{rest}"))
            } else {
                None
            };
            if renamed.is_some()
                || a == "--test-run-directory"
                || a.starts_with("--test-run-directory=")
            {
                unstable = true;
            }
            renamed.unwrap_or(a)
        })
        .collect();
    let already = out
        .windows(2)
        .any(|w| w[0] == "-Z" && w[1] == "unstable-options")
        || out.iter().any(|a| a == "-Zunstable-options");
    if unstable && !already {
        out.splice(0..0, ["-Z".to_owned(), "unstable-options".to_owned()]);
    }
    out
}

/// Lint-level flags: short form, long form.
const LINT_FLAGS: &[(&str, &str)] = &[
    ("-W", "--warn"),
    ("-A", "--allow"),
    ("-D", "--deny"),
    ("-F", "--forbid"),
    ("", "--force-warn"),
];

/// Drops the arguments rustc 1.63 rejects:
/// - options it does not have ([`DROPPED_OPTIONS`], `--opt V` or `--opt=V`);
/// - `--print` requests it does not know (`split-debuginfo`: cargo then reads an empty
///   answer, i.e. no `-C split-debuginfo` support, which is right for 1.63 on Linux);
/// - lint-level flags for lints it does not know, when `known` is given (tool lints
///   such as `clippy::all` are kept: rustc ignores them).
fn filter_args(args: &[String], known: Option<&HashSet<String>>) -> Vec<String> {
    let mut out = Vec::with_capacity(args.len());
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_str();
        let next = args.get(i + 1).map(String::as_str);

        // (number of args consumed, whether to keep them)
        let (consumed, keep) =
            if let Some((_, takes_value)) = DROPPED_OPTIONS.iter().find(|(o, _)| a == *o) {
                (if *takes_value { 2 } else { 1 }, false)
            } else if DROPPED_OPTIONS
                .iter()
                .any(|(o, _)| a.starts_with(&format!("{o}=")))
            {
                (1, false)
            } else if let Some(what) = a.strip_prefix("--print=") {
                (1, KNOWN_PRINTS.contains(&what))
            } else if a == "--print" {
                (2, next.is_none_or(|w| KNOWN_PRINTS.contains(&w)))
            } else if let Some((consumed, lint)) = lint_flag(a, next) {
                (consumed, known.is_none_or(|k| lint_known(k, lint)))
            } else {
                (1, true)
            };
        let end = (i + consumed).min(args.len());
        if keep {
            out.extend_from_slice(&args[i..end]);
        }
        i = end;
    }
    out
}

/// If `a` is a lint-level flag, how many args it spans and the lint name.
fn lint_flag<'a>(a: &'a str, next: Option<&'a str>) -> Option<(usize, &'a str)> {
    for (short, long) in LINT_FLAGS {
        if a == *long || (!short.is_empty() && a == *short) {
            return next.map(|n| (2, n));
        }
        if let Some(l) = a.strip_prefix(&format!("{long}=")) {
            return Some((1, l));
        }
        if !short.is_empty() && a.len() > 2 {
            if let Some(l) = a.strip_prefix(short) {
                return Some((1, l));
            }
        }
    }
    None
}

fn lint_known(known: &HashSet<String>, lint: &str) -> bool {
    lint.contains("::") || lint == "warnings" || known.contains(&lint.replace('-', "_"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn drops_check_cfg_and_new_prints() {
        let args = s(&[
            "-",
            "--crate-name",
            "___",
            "--print=file-names",
            "--print=sysroot",
            "--print=split-debuginfo",
            "--print",
            "split-debuginfo",
            "--print=crate-name",
            "--check-cfg",
            "cfg(docsrs,test)",
            "--check-cfg=cfg(feature, values())",
            "--diagnostic-width=80",
            "--cfg",
            "feature=\"std\"",
        ]);
        assert_eq!(
            filter_args(&args, None),
            s(&[
                "-",
                "--crate-name",
                "___",
                "--print=file-names",
                "--print=sysroot",
                "--print=crate-name",
                "--cfg",
                "feature=\"std\"",
            ])
        );
    }

    #[test]
    fn drops_unknown_lints_only() {
        let known: HashSet<String> = ["missing_docs", "unsafe_op_in_unsafe_fn"]
            .iter()
            .map(|x| x.to_string())
            .collect();
        let args = s(&[
            "--warn=missing_docs",
            "--warn=missing_unsafe_on_extern",
            "-W",
            "unexpected_cfgs",
            "-Dunsafe-op-in-unsafe-fn",
            "--deny",
            "warnings",
            "--warn=clippy::all",
            "-Cdebuginfo=2",
            "--cap-lints",
            "allow",
        ]);
        assert_eq!(
            filter_args(&args, Some(&known)),
            s(&[
                "--warn=missing_docs",
                "-Dunsafe-op-in-unsafe-fn",
                "--deny",
                "warnings",
                "--warn=clippy::all",
                "-Cdebuginfo=2",
                "--cap-lints",
                "allow",
            ])
        );
    }

    #[test]
    fn rustdoc_runtool_renamed() {
        let args = s(&[
            "--test",
            "src/lib.rs",
            "--test-run-directory",
            "/w",
            "--test-runtool",
            "/x/xtask",
            "--test-runtool-arg",
            "--wine-runner",
            "--test-runtool-arg=-v",
        ]);
        assert_eq!(
            rustdoc_args(args),
            s(&[
                "-Z",
                "unstable-options",
                "--test",
                "src/lib.rs",
                "--test-run-directory",
                "/w",
                "--runtool",
                "/x/xtask",
                "--runtool-arg",
                "--wine-runner",
                "--runtool-arg=-v",
            ])
        );
        assert_eq!(rustdoc_args(s(&["-vV"])), s(&["-vV"]));
    }

    #[test]
    fn lint_help_parsing() {
        let text = "\nLint checks provided by rustc:\n\n    name  default  meaning\n    \
                    ----  -------  -------\n    absolute-paths-not-starting-with-crate  allow  x\n    \
                    missing-docs  allow  detects\n\nLint groups provided by rustc:\n\n    \
                    warnings  all lints\n    rust-2018-idioms  a, b\n";
        let names = parse_lint_help(text);
        for want in [
            "absolute_paths_not_starting_with_crate",
            "missing_docs",
            "warnings",
            "rust_2018_idioms",
        ] {
            assert!(names.iter().any(|n| n == want), "{want} in {names:?}");
        }
        assert!(!names.iter().any(|n| n.starts_with('-')));
    }
}
