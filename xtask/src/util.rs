//! Small helpers: locating the workspace, running commands, banners and durations.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The workspace root (the parent of this crate's directory).
pub fn workspace_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| manifest_dir.to_path_buf())
}

/// `path` relative to the workspace root when it is inside it, for messages.
pub fn rel(path: &Path) -> String {
    let root = workspace_root();
    path.strip_prefix(&root)
        .unwrap_or(path)
        .display()
        .to_string()
}

/// The cargo that runs us (`$CARGO`), else `cargo` from `PATH`, in the workspace root.
pub fn cargo_cmd() -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace_root());
    cmd
}

/// `cargo` from `PATH` (the rustup proxy, which understands `+toolchain`), in the
/// workspace root, without the toolchain pinning that `cargo run` leaves in the
/// environment.
pub fn rustup_cargo_cmd() -> Command {
    let mut cmd = Command::new("cargo");
    cmd.current_dir(workspace_root());
    cmd.env_remove("RUSTUP_TOOLCHAIN");
    cmd.env_remove("RUSTC");
    cmd.env_remove("RUSTDOC");
    cmd
}

/// Renders a command line for logs.
pub fn show(cmd: &Command) -> String {
    let mut s = String::new();
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) if v.len() > 100 => {
                s.push_str(&format!("{}=<{} bytes> ", k.to_string_lossy(), v.len()));
            }
            Some(v) => s.push_str(&format!("{}={} ", k.to_string_lossy(), quote(v))),
            None => {}
        }
    }
    s.push_str(&quote(cmd.get_program()));
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&quote(a));
    }
    s
}

fn quote(s: &OsStr) -> String {
    let s = s.to_string_lossy();
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:+,@%".contains(c))
    {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Runs a command with inherited stdio; error unless it exits 0.
pub fn run(cmd: &mut Command) -> Result<(), String> {
    println!("$ {}", show(cmd));
    flush();
    run_unannounced(cmd)
}

/// [`run`] without printing the command line first (for commands run inside another
/// command's output, such as the Wine runner's).
pub fn run_unannounced(cmd: &mut Command) -> Result<(), String> {
    let status = cmd
        .status()
        .map_err(|e| format!("cannot start `{}`: {e}", show(cmd)))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{}` exited with {status}", show(cmd)))
    }
}

/// Runs a command quietly, true if it started and exited 0.
pub fn succeeds(cmd: &mut Command) -> bool {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Runs a command quietly and returns its stdout when it exits 0.
pub fn output(cmd: &mut Command) -> Option<String> {
    let out = cmd
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if out.status.success() {
        Some(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        None
    }
}

/// Runs a command, streaming its stdout and stderr to ours while also capturing
/// both. Returns whether it exited 0 and the captured text (stdout then stderr).
pub fn run_tee(cmd: &mut Command) -> Result<(bool, String, String), String> {
    println!("$ {}", show(cmd));
    flush();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start `{}`: {e}", show(cmd)))?;
    let stderr = child.stderr.take().expect("piped stderr");
    let err_thread = std::thread::spawn(move || {
        let mut captured = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("{line}");
            captured.push_str(&line);
            captured.push('\n');
        }
        captured
    });
    let mut out_captured = String::new();
    let stdout = child.stdout.take().expect("piped stdout");
    for line in BufReader::new(stdout).lines().map_while(Result::ok) {
        println!("{line}");
        out_captured.push_str(&line);
        out_captured.push('\n');
    }
    let err_captured = err_thread.join().unwrap_or_default();
    let status = child
        .wait()
        .map_err(|e| format!("waiting for `{}`: {e}", show(cmd)))?;
    Ok((status.success(), out_captured, err_captured))
}

/// Whether `name` is an executable on `PATH` (or an existing path if it has a `/`).
pub fn on_path(name: &str) -> bool {
    if name.contains('/') {
        return Path::new(name).is_file();
    }
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(name).is_file()))
        .unwrap_or(false)
}

/// Whether we run as root (uid 0), read from `/proc/self/status`.
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// A step banner.
pub fn banner(title: &str) {
    println!();
    println!("==================== {title} ====================");
    flush();
}

/// Flushes stdout so that our lines and children's interleave in order.
pub fn flush() {
    let _ = std::io::stdout().flush();
}

/// `1m02.3s` / `4.5s`.
pub fn fmt_duration(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs >= 60.0 {
        let m = (secs / 60.0).floor();
        format!("{}m{:04.1}s", m as u64, secs - m * 60.0)
    } else {
        format!("{secs:.1}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_short_and_readable() {
        assert_eq!(fmt_duration(Duration::from_millis(4_500)), "4.5s");
        assert_eq!(fmt_duration(Duration::from_millis(62_300)), "1m02.3s");
    }

    #[test]
    fn quoting_only_when_needed() {
        assert_eq!(quote(OsStr::new("--cfg")), "--cfg");
        assert_eq!(quote(OsStr::new("a b")), "'a b'");
        assert_eq!(quote(OsStr::new("")), "''");
    }
}
