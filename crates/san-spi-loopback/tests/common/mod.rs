//! Helpers for tests whose peer is another process: the test binary re-executes itself
//! with `--exact <test>` and an environment variable naming the child's role.
#![allow(dead_code)]

use san_spi_core::transport::{block_on, Transport};
use san_spi_loopback::{LoopbackEndpoint, LoopbackTransport};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A child process that is killed and reaped when dropped, whatever happened.
pub struct Reap(pub Option<Child>);

impl Reap {
    /// Waits up to `timeout` for the child to exit by itself; kills it and fails if not.
    pub fn wait_exit(mut self, timeout: Duration) -> std::process::ExitStatus {
        let mut child = self.0.take().expect("child");
        let deadline = Instant::now() + timeout;
        loop {
            match child.try_wait().expect("try_wait") {
                Some(status) => return status,
                None if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
                None => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("the child did not exit within {timeout:?}");
                }
            }
        }
    }

    /// Whether the child already exited (then it is reaped).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.0.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }

    /// The child's pid.
    pub fn id(&self) -> u32 {
        self.0.as_ref().expect("child").id()
    }
}

impl Drop for Reap {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Starts this test binary again, running only `test`, with `env` set to `value`.
pub fn spawn_self(
    test: &str,
    env: &str,
    value: &str,
    configure: impl FnOnce(&mut Command),
) -> Reap {
    spawn_exe(
        &std::env::current_exe().expect("current_exe"),
        test,
        env,
        value,
        configure,
    )
}

/// A copy of this test binary that any user can execute (for a child running as another
/// user: the build directory may not be reachable for it). Removed with the returned guard.
pub fn world_executable_copy() -> (std::path::PathBuf, TempDir) {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("san-spi-exe-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod dir");
    let exe = dir.join("test-child");
    std::fs::copy(std::env::current_exe().expect("current_exe"), &exe).expect("copy the binary");
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).expect("chmod exe");
    (exe, TempDir(dir))
}

/// Removes a directory on drop.
pub struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Starts `exe` (a copy of this test binary), running only `test`, with `env` set to `value`.
pub fn spawn_exe(
    exe: &std::path::Path,
    test: &str,
    env: &str,
    value: &str,
    configure: impl FnOnce(&mut Command),
) -> Reap {
    let mut cmd = Command::new(exe);
    cmd.args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(env, value)
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    configure(&mut cmd);
    // A copy of the binary made a moment ago can be briefly "text file busy": a child
    // forked by another test thread at the same time holds the copy's write descriptor
    // until it execs. That passes; retry a bounded number of times.
    let mut tries = 0;
    loop {
        match cmd.spawn() {
            Ok(child) => return Reap(Some(child)),
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy && tries < 100 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("spawn the child: {e}"),
        }
    }
}

/// Connects to the child's listener, retrying until it listens; fails if the child exits
/// or `timeout` passes.
pub fn connect_to_child(
    t: &LoopbackTransport,
    addr: SocketAddr,
    child: &mut Reap,
    timeout: Duration,
) -> LoopbackEndpoint {
    let deadline = Instant::now() + timeout;
    loop {
        match block_on(t.connect(addr)) {
            Ok(ep) => return ep,
            Err(e) => {
                if let Some(status) = child.exited() {
                    panic!("the child exited before accepting: {status}");
                }
                assert!(
                    Instant::now() < deadline,
                    "cannot connect to the child: {e}"
                );
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// A child's watchdog: exits the process with status 3 after `limit`, so that no child
/// outlives a parent that died without reaping it.
pub fn watchdog(limit: Duration) {
    std::thread::spawn(move || {
        std::thread::sleep(limit);
        eprintln!("child watchdog: giving up after {limit:?}");
        std::process::exit(3);
    });
}

/// Whether this process may attach to processes of its own user that are not its
/// descendants (so both directions of a parent–child pair can be single copy): Yama absent
/// or at 0, or we are root with Yama below 3.
pub fn ptrace_unrestricted() -> bool {
    let scope = std::fs::read_to_string("/proc/sys/kernel/yama/ptrace_scope")
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .unwrap_or(0);
    scope == 0 || (is_root() && scope < 3)
}

/// Whether the effective uid is 0.
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// Deterministic bytes for `len` and `seed`.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// FNV-1a of `b`.
pub fn checksum(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &x| {
        (h ^ x as u64).wrapping_mul(0x100_0000_01b3)
    })
}

/// `Harness::forge` for the loopback: its descriptor carries the key at bytes 8..16 and, by
/// design, trusts only the key (address and length are informational), so a forgery is a
/// different key.
pub fn forge_key(descriptor: &[u8]) -> Option<Vec<u8>> {
    let mut forged = descriptor.to_vec();
    for b in forged.get_mut(8..16)? {
        *b ^= 0x5C;
    }
    Some(forged)
}

/// A seeded xorshift generator (reproducible test input).
pub struct XorShift(pub u64);

impl XorShift {
    /// The next number.
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A number below `n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Drains completions until `expected` arrived or `deadline`; returns them.
pub fn drain(
    ep: &LoopbackEndpoint,
    expected: usize,
    deadline: Instant,
) -> Vec<san_spi_core::transport::Completion> {
    use san_spi_core::transport::{Completion, Endpoint};
    let mut got = Vec::new();
    let mut c = [Completion::default(); 16];
    while got.len() < expected && Instant::now() < deadline {
        let n = ep.poll(&mut c);
        got.extend_from_slice(&c[..n]);
        if n == 0 {
            ep.wait(Duration::from_millis(5));
        }
    }
    got
}
