//! The Wine test runner of the MSRV step: runs the `x86_64-pc-windows-gnu` test binaries
//! built with rustc 1.63 under `/usr/lib/wine/wine64` (Debian package `wine64`).
//!
//! The step sets `CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER` to `<this binary>
//! --wine-runner` ([`runner_value`]); cargo then starts `<this binary> --wine-runner <test
//! exe> <args...>` for unit and integration tests, and rustdoc does the same for each
//! doctest (`--test-runtool` / `--test-runtool-arg`, renamed for rustdoc 1.63 by the
//! step's rustdoc shim). In that mode ([`runner_main`]) this binary:
//!
//! - adds `.exe` to the program path when there is no such file but `<path>.exe` exists
//!   (rustdoc 1.63 names doctest binaries without the suffix);
//! - sets `RUST_BACKTRACE=0` (with backtraces on, a 1.63-built test binary that panics
//!   crashes inside Wine's dbghelp), `WINEDEBUG=-all` and a private `WINEPREFIX`,
//!   `target/msrv/wineprefix`, created on first use (about 5 s, see [`ensure_prefix`]);
//! - waits until the prefix's previous wineserver has exited (`wineserver -w`, see
//!   [`wait_for_server_exit`]);
//! - runs `wine64 <exe> <args...>` and exits with its exit code (a failing test binary
//!   exits 101, as on the host), or 124 after [`TIMEOUT_ENV`] seconds (default
//!   [`DEFAULT_TIMEOUT_SECS`]) so that a test hanging under Wine fails the step instead
//!   of stalling it.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use crate::util;

/// First argument that selects runner mode (after the helper switch
/// [`WRAPPER_ENV`](crate::msrv::WRAPPER_ENV)).
pub const RUNNER_ARG: &str = "--wine-runner";
/// Wine's 64-bit loader. `/usr/bin/wine` is a wrapper that warns about the missing wine32.
pub const WINE64: &str = "/usr/lib/wine/wine64";
/// Seconds one test binary may run under Wine before the runner kills it.
pub const TIMEOUT_ENV: &str = "SAN_SPI_WINE_TIMEOUT_SECS";
/// Default of [`TIMEOUT_ENV`].
pub const DEFAULT_TIMEOUT_SECS: u64 = 300;
/// Written into the prefix once `wineboot --init` has finished.
const READY_MARKER: &str = ".san-spi-prefix-ready";

/// The private Wine prefix, `target/msrv/wineprefix`.
pub fn prefix_dir() -> PathBuf {
    util::workspace_root().join("target/msrv/wineprefix")
}

/// The value of `CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER` that makes `exe` (this
/// binary) the runner. Cargo splits that variable at whitespace, so `exe` must have none.
pub fn runner_value(exe: &Path) -> Result<String, String> {
    let s = exe
        .to_str()
        .ok_or_else(|| format!("the xtask binary's path {exe:?} is not UTF-8"))?;
    if s.chars().any(char::is_whitespace) {
        return Err(format!(
            "the xtask binary's path `{s}` contains whitespace, which cargo's \
             CARGO_TARGET_<triple>_RUNNER cannot carry: build the workspace in a path without it"
        ));
    }
    Ok(format!("{s} {RUNNER_ARG}"))
}

/// The Wine server of Debian's `wine64`.
const WINESERVER: &str = "/usr/lib/wine/wineserver";

/// `wine64` with the environment of every Wine process of ours (no `DISPLAY`: nothing
/// here opens a window).
fn wine_cmd(prefix: &Path) -> Command {
    let mut cmd = Command::new(WINE64);
    cmd.env("WINEPREFIX", prefix)
        .env("WINEDEBUG", "-all")
        .env("RUST_BACKTRACE", "0")
        .env_remove("DISPLAY");
    cmd
}

/// Waits until no wineserver of the prefix runs (`wineserver -w`; at once when none
/// does). A test binary started while the previous binary's server is shutting down
/// connects to the dying server and fails with "wine client error: … Connection reset by
/// peer"; waiting first makes it start its own. (A server kept alive for the whole step
/// instead also keeps Wine's helper processes alive, and they hold cargo's output pipe
/// open, so the step never sees the end of cargo's output.)
fn wait_for_server_exit() -> Result<(), String> {
    let mut cmd = Command::new(WINESERVER);
    cmd.arg("-w")
        .env("WINEPREFIX", prefix_dir())
        .stdin(std::process::Stdio::null());
    util::run_unannounced(&mut cmd)
}

/// Creates the private prefix unless it is ready. Several runners may start at once
/// (rustdoc runs doctests in parallel), so creation holds a lock file. Returns whether
/// this call created it.
pub fn ensure_prefix() -> Result<bool, String> {
    if !Path::new(WINE64).is_file() {
        return Err(format!(
            "{WINE64} not found: install Debian's `wine64` package (cargo xtask install, as root)"
        ));
    }
    let prefix = prefix_dir();
    let marker = prefix.join(READY_MARKER);
    if marker.is_file() {
        return Ok(false);
    }
    let parent = prefix.parent().unwrap_or(&prefix);
    std::fs::create_dir_all(parent).map_err(|e| format!("creating {}: {e}", parent.display()))?;
    let lock_path = parent.join("wineprefix.lock");
    let lock: File = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| format!("opening {}: {e}", lock_path.display()))?;
    lock.lock()
        .map_err(|e| format!("locking {}: {e}", lock_path.display()))?;
    if marker.is_file() {
        return Ok(false); // another runner made it while we waited
    }
    let mut boot = wine_cmd(&prefix);
    boot.args(["wineboot", "--init"]);
    let out = boot
        .output()
        .map_err(|e| format!("cannot start `{}`: {e}", util::show(&boot)))?;
    if !out.status.success() {
        return Err(format!(
            "creating the Wine prefix failed: `{}` exited with {}:\n{}",
            util::show(&boot),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    std::fs::write(&marker, b"").map_err(|e| format!("writing {}: {e}", marker.display()))?;
    Ok(true)
}

/// `path`, or `path.exe` when only that exists (rustdoc 1.63 drops the suffix).
fn windows_exe(path: &Path) -> PathBuf {
    let with_exe = {
        let mut s = path.as_os_str().to_owned();
        s.push(".exe");
        PathBuf::from(s)
    };
    if !path.is_file() && with_exe.is_file() {
        with_exe
    } else {
        path.to_path_buf()
    }
}

/// Runner mode: `args` are the test program and its arguments.
pub fn runner_main(args: &[OsString]) -> ExitCode {
    match run_under_wine(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("xtask wine runner: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run_under_wine(args: &[OsString]) -> Result<ExitCode, String> {
    let (program, rest) = args
        .split_first()
        .ok_or("no test program given (usage: xtask --wine-runner <exe> [args...])")?;
    let exe = windows_exe(Path::new(program));
    ensure_prefix()?;
    wait_for_server_exit()?;
    let timeout = match std::env::var(TIMEOUT_ENV) {
        Ok(s) => s
            .parse::<u64>()
            .map_err(|_| format!("{TIMEOUT_ENV}=`{s}` is not a number of seconds"))?,
        Err(_) => DEFAULT_TIMEOUT_SECS,
    };
    let mut cmd = wine_cmd(&prefix_dir());
    cmd.arg(&exe)
        .args(rest)
        .env_remove(crate::msrv::WRAPPER_ENV)
        .env_remove(crate::msrv::KNOWN_LINTS_ENV);
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start `{}`: {e}", util::show(&cmd)))?;
    let deadline = Instant::now() + Duration::from_secs(timeout);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                eprintln!(
                    "xtask wine runner: {} still running after {timeout} s under Wine: killed \
                     (set {TIMEOUT_ENV} to allow longer)",
                    exe.display()
                );
                return Ok(ExitCode::from(124));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return Err(format!("waiting for wine64: {e}")),
        }
    };
    Ok(match status.code() {
        Some(0) => ExitCode::SUCCESS,
        Some(c) => ExitCode::from(u8::try_from(c).unwrap_or(1)),
        None => {
            eprintln!("xtask wine runner: wine64 was killed by a signal ({status})");
            ExitCode::FAILURE
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_exe_only_when_needed() {
        let dir = std::env::temp_dir().join(format!("xtask-wine-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let bare = dir.join("rust_out");
        std::fs::write(dir.join("rust_out.exe"), b"").unwrap();
        assert_eq!(windows_exe(&bare), dir.join("rust_out.exe"));
        std::fs::write(&bare, b"").unwrap();
        assert_eq!(windows_exe(&bare), bare);
        let missing = dir.join("missing");
        assert_eq!(windows_exe(&missing), missing);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn runner_value_rejects_whitespace() {
        assert_eq!(
            runner_value(Path::new("/x/xtask")).unwrap(),
            "/x/xtask --wine-runner"
        );
        assert!(runner_value(Path::new("/a b/xtask")).is_err());
    }
}
