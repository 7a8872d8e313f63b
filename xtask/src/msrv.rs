//! Step `msrv`: build `san-spi-core` (lib) with Debian's `/usr/bin/rustc` 1.63, driven
//! by rustup's cargo, for the host and (when `libstd-rust-dev-windows` is installed) for
//! `x86_64-pc-windows-gnu`, the provider DLL's target. Target dir: `target/msrv`.
//!
//! Today's cargo passes arguments rustc 1.63 does not know. This binary doubles as the
//! `RUSTC_WRAPPER` that drops them (see [`filter_args`]): it is in wrapper mode when
//! [`WRAPPER_ENV`] is set, which only this step does.

use std::collections::HashSet;
use std::path::Path;
use std::process::{Command, ExitCode};

use crate::install::WINDOWS_STD_DIR;
use crate::util;

/// Set (to anything) in the environment of the nested cargo: this binary is then the
/// rustc wrapper instead of the xtask command line.
pub const WRAPPER_ENV: &str = "SAN_SPI_XTASK_RUSTC_WRAPPER";
/// Comma-separated lint names rustc 1.63 knows (from `rustc -W help`), computed once by
/// the parent so that the wrapper does not ask for every crate.
const KNOWN_LINTS_ENV: &str = "SAN_SPI_XTASK_MSRV_KNOWN_LINTS";
/// Debian's rustc.
const MSRV_RUSTC: &str = "/usr/bin/rustc";
/// The version it must be.
const MSRV: &str = "1.63";
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

/// Runs the MSRV build.
pub fn run() -> Result<(), String> {
    if !Path::new(MSRV_RUSTC).is_file() {
        return Err(format!(
            "{MSRV_RUSTC} not found: install Debian's `rustc` package (cargo xtask install, as root)"
        ));
    }
    let version = util::output(Command::new(MSRV_RUSTC).arg("--version"))
        .ok_or_else(|| format!("`{MSRV_RUSTC} --version` failed"))?;
    println!("msrv: {MSRV_RUSTC}: {}", version.trim());
    if !version.starts_with(&format!("rustc {MSRV}.")) {
        return Err(format!(
            "{MSRV_RUSTC} is `{}`, expected rustc {MSRV}.x",
            version.trim()
        ));
    }
    let lints = util::output(Command::new(MSRV_RUSTC).args(["-W", "help"]))
        .ok_or_else(|| format!("`{MSRV_RUSTC} -W help` failed"))?;
    let known = parse_lint_help(&lints);
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let target_dir = util::workspace_root().join("target/msrv");

    let mut targets: Vec<Option<&str>> = vec![None];
    if Path::new(WINDOWS_STD_DIR).is_dir() {
        targets.push(Some("x86_64-pc-windows-gnu"));
    } else {
        println!(
            "msrv: NOTE: {WINDOWS_STD_DIR} missing (Debian package libstd-rust-dev-windows): \
             skipping the x86_64-pc-windows-gnu build"
        );
    }
    for target in targets {
        let mut cmd = util::rustup_cargo_cmd();
        cmd.args(["build", "-p", "san-spi-core", "--lib"]);
        if let Some(t) = target {
            cmd.args(["--target", t]);
        }
        cmd.env("RUSTC", MSRV_RUSTC)
            .env("RUSTC_WRAPPER", &exe)
            .env_remove("RUSTC_WORKSPACE_WRAPPER")
            .env("CARGO_TARGET_DIR", &target_dir)
            .env(
                "CARGO_TARGET_X86_64_PC_WINDOWS_GNU_LINKER",
                "x86_64-w64-mingw32-gcc",
            )
            .env(WRAPPER_ENV, "1")
            .env(KNOWN_LINTS_ENV, known.join(","));
        let label = target.unwrap_or("host");
        util::run(&mut cmd).map_err(|e| format!("MSRV build ({label}) failed: {e}"))?;
        println!("msrv: san-spi-core builds with rustc {MSRV} for {label}");
    }
    Ok(())
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

/// Wrapper mode: `argv[1]` is the real rustc, the rest its arguments.
pub fn wrapper_main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let Some(rustc) = args.next() else {
        eprintln!("xtask rustc wrapper: no rustc given");
        return ExitCode::from(2);
    };
    let args: Vec<String> = match args.map(|a| a.into_string()).collect() {
        Ok(a) => a,
        Err(bad) => {
            eprintln!("xtask rustc wrapper: non-UTF-8 argument {bad:?}");
            return ExitCode::from(2);
        }
    };
    let known: Option<HashSet<String>> = std::env::var(KNOWN_LINTS_ENV)
        .ok()
        .map(|s| s.split(',').map(str::to_owned).collect());
    let filtered = filter_args(&args, known.as_ref());
    let mut cmd = Command::new(rustc);
    cmd.args(&filtered).env_remove(WRAPPER_ENV);
    match cmd.status() {
        Ok(s) => match s.code() {
            Some(0) => ExitCode::SUCCESS,
            Some(c) => ExitCode::from(u8::try_from(c).unwrap_or(1)),
            None => ExitCode::FAILURE,
        },
        Err(e) => {
            eprintln!("xtask rustc wrapper: cannot run rustc: {e}");
            ExitCode::FAILURE
        }
    }
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
