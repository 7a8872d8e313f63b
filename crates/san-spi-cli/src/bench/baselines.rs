//! The baselines, measured in the same run as ours: a Unix-domain-socket ping-pong, a raw
//! shared-memory spin ping-pong (the floor), single-thread memcpy, and libfabric's own
//! `shm` provider through `fi_pingpong` when it is installed.

use super::buf::AlignedBuf;
use super::{Idle, Plan, RoundTrips};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Ping-pong of `size`-byte messages over a `UnixStream` pair, one thread per end
/// (blocking reads: the kernel wakes the reader).
pub fn unix_socket(size: usize, plan: &Plan) -> Result<RoundTrips, String> {
    let (mut a, mut b) = UnixStream::pair().map_err(|e| format!("socketpair: {e}"))?;
    let len = size.max(1);
    let mut rounds = 0u64;
    let server = std::thread::spawn(move || -> std::io::Result<()> {
        let mut buf = vec![0u8; len];
        loop {
            match b.read_exact(&mut buf[..size]) {
                Ok(()) => b.write_all(&buf[..size])?,
                // The client closed its end: done.
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    });
    let msg = vec![0x5Au8; len];
    let mut back = vec![0u8; len];
    let mut rtts = Vec::with_capacity(plan.lat_max_iters);
    let started = Instant::now();
    let r = (|| -> std::io::Result<()> {
        loop {
            let measuring = rounds >= plan.lat_warmup as u64;
            if plan.latency_done(rounds, rtts.len(), started) {
                return Ok(());
            }
            let t0 = Instant::now();
            a.write_all(&msg[..size])?;
            a.read_exact(&mut back[..size])?;
            let rtt = t0.elapsed().as_nanos() as u64;
            if measuring {
                rtts.push(rtt);
            }
            rounds += 1;
        }
    })();
    drop(a);
    let s = server
        .join()
        .unwrap_or_else(|_| Err(std::io::Error::other("server thread panicked")));
    r.map_err(|e| format!("unix socket: {e}"))?;
    s.map_err(|e| format!("unix socket peer: {e}"))?;
    Ok(rtts)
}

/// One direction of the raw channel: a sequence number alone on its cache line, then the
/// payload.
#[repr(C, align(128))]
struct Seq(AtomicU64);

/// The raw shared-memory spin ping-pong: each direction is a sequence number and a
/// payload buffer; the sender copies the payload in and publishes the sequence number
/// (release), the receiver spins until it sees it (acquire) and copies the payload out.
/// Both threads spin, nothing else runs: the floor any shared-memory transport pays.
/// In one process (the heap is shared memory between the two threads): a cross-process
/// mapping costs the same per access.
pub fn raw_shm(size: usize, plan: &Plan) -> Result<RoundTrips, String> {
    let len = size.max(1);
    let ab = Seq(AtomicU64::new(0));
    let ba = Seq(AtomicU64::new(0));
    let ab_buf = AlignedBuf::new(len, 0);
    let ba_buf = AlignedBuf::new(len, 0);
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut dst = AlignedBuf::new(len, 0);
            let mut idle = Idle::pure();
            let mut seen = 0u64;
            loop {
                let s = ab.0.load(Ordering::Acquire);
                if s == seen {
                    if stop.load(Ordering::Acquire) {
                        return;
                    }
                    idle.spin();
                    continue;
                }
                idle.reset();
                seen = s;
                // SAFETY: message `s` was written before its release (acquired above); the
                // client touches `ab_buf` again, and reads `ba_buf`, only after reply `s`,
                // published below, after these copies.
                unsafe {
                    std::ptr::copy_nonoverlapping(ab_buf.ptr(), dst.ptr(), size);
                    std::ptr::copy_nonoverlapping(dst.ptr(), ba_buf.ptr(), size);
                }
                ba.0.store(s, Ordering::Release);
                dst = std::hint::black_box(dst);
            }
        });
        let src = AlignedBuf::new(len, 3);
        let back = AlignedBuf::new(len, 0);
        let mut idle = Idle::pure();
        let mut rtts = Vec::with_capacity(plan.lat_max_iters);
        let started = Instant::now();
        let mut i = 0u64;
        loop {
            let measuring = i >= plan.lat_warmup as u64;
            if plan.latency_done(i, rtts.len(), started) {
                break;
            }
            i += 1;
            let t0 = Instant::now();
            // SAFETY: the server reads `ab_buf` only after seeing sequence `i`, published
            // below, and has finished with message `i - 1` (we saw its reply).
            unsafe { std::ptr::copy_nonoverlapping(src.ptr(), ab_buf.ptr(), size) };
            ab.0.store(i, Ordering::Release);
            while ba.0.load(Ordering::Acquire) != i {
                idle.spin();
            }
            idle.reset();
            // SAFETY: reply `i` was published (acquire above); the server writes `ba_buf`
            // again only after message `i + 1`, which is not sent yet.
            unsafe { std::ptr::copy_nonoverlapping(ba_buf.ptr(), back.ptr(), size) };
            let rtt = t0.elapsed().as_nanos() as u64;
            if measuring {
                rtts.push(rtt);
            }
        }
        stop.store(true, Ordering::Release);
        std::hint::black_box(&back);
        Ok(rtts)
    })
}

/// Single-thread memcpy of `size` bytes between two page-aligned buffers, repeated.
/// Returns (bytes copied, elapsed).
pub fn memcpy(size: usize, plan: &Plan) -> (u64, Duration) {
    let src = AlignedBuf::new(size, 5);
    let dst = AlignedBuf::new(size, 0);
    // SAFETY: both buffers hold `size` bytes and do not overlap; only this thread uses them.
    let copy = || unsafe {
        std::ptr::copy_nonoverlapping(
            std::hint::black_box(src.ptr()),
            std::hint::black_box(dst.ptr()),
            size,
        )
    };
    copy();
    let start = Instant::now();
    let mut n = 0u64;
    // Check the clock every `batch` copies so timing costs nothing for small sizes.
    let batch = (1 << 20) / size.max(1) + 1;
    loop {
        for _ in 0..batch {
            copy();
        }
        n += batch as u64;
        if n >= plan.bw_min_ops && start.elapsed() >= plan.bw_budget {
            break;
        }
    }
    std::hint::black_box(&dst);
    (n * size as u64, start.elapsed())
}

/// One `fi_pingpong` result row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FiRow {
    /// Message bytes.
    pub size: usize,
    /// Round trips.
    pub iterations: u64,
    /// `usec/xfer`: mean one-way time in µs (fi_pingpong counts two transfers per round trip).
    pub usec_per_xfer: f64,
    /// `MB/sec`: bytes per µs of one-way time, i.e. 10^6 bytes/s.
    pub mb_per_s: f64,
}

/// Parses `fi_pingpong`'s table (`bytes #sent #ack total time MB/sec usec/xfer Mxfers/sec`).
pub fn parse_fi_pingpong(out: &str) -> Vec<FiRow> {
    fn count(s: &str) -> Option<u64> {
        let s = s.trim_start_matches('=');
        let (digits, mult) = match s.chars().last()? {
            'k' => (&s[..s.len() - 1], 1u64 << 10),
            'm' => (&s[..s.len() - 1], 1 << 20),
            'g' => (&s[..s.len() - 1], 1 << 30),
            _ => (s, 1),
        };
        digits.parse::<u64>().ok().map(|d| d * mult)
    }
    out.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 8 {
                return None;
            }
            Some(FiRow {
                size: count(f[0])? as usize,
                iterations: count(f[1])?,
                mb_per_s: f[5].parse().ok()?,
                usec_per_xfer: f[6].parse().ok()?,
            })
        })
        .collect()
}

/// Where `fi_pingpong` is, if on `PATH`.
pub fn find_fi_pingpong() -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("fi_pingpong"))
        .find(|p| p.is_file())
}

/// Whether a TCP socket listens on `port` (from `/proc/net/tcp{,6}`).
fn listening(port: u16) -> bool {
    let want = format!(":{port:04X}");
    ["/proc/net/tcp", "/proc/net/tcp6"].iter().any(|f| {
        std::fs::read_to_string(f).is_ok_and(|s| {
            s.lines().skip(1).any(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                f.len() > 3 && f[1].ends_with(&want) && f[3] == "0A"
            })
        })
    })
}

/// A port nobody listens on right now.
fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("no free port: {e}"))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

/// Waits for `child` until `deadline`; kills it (and reports) if it runs over.
fn wait_output(mut child: Child, deadline: Instant, what: &str) -> Result<String, String> {
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                let mut out = String::new();
                let mut err = String::new();
                if let Some(mut o) = child.stdout.take() {
                    let _ = o.read_to_string(&mut out);
                }
                if let Some(mut e) = child.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                if status.success() {
                    return Ok(out);
                }
                let last = err
                    .lines()
                    .chain(out.lines())
                    .rfind(|l| !l.trim().is_empty())
                    .unwrap_or("no output")
                    .trim()
                    .to_string();
                return Err(format!("{what} exited with {status}: {last}"));
            }
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{what} timed out"));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => return Err(format!("{what}: {e}")),
        }
    }
}

/// Runs `fi_pingpong -p shm -e rdm -S size -I iterations`, server and client, with a
/// control port of its own; gives up at `timeout`.
pub fn fi_pingpong(
    exe: &std::path::Path,
    size: usize,
    iterations: u64,
    timeout: Duration,
) -> Result<FiRow, String> {
    let deadline = Instant::now() + timeout;
    let port = free_port()?.to_string();
    let common = [
        "-p".to_string(),
        "shm".into(),
        "-e".into(),
        "rdm".into(),
        "-S".into(),
        size.to_string(),
        "-I".into(),
        iterations.to_string(),
    ];
    let spawn = |extra: &[&str]| {
        Command::new(exe)
            .args(&common)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start fi_pingpong: {e}"))
    };
    let mut server = spawn(&["-B", &port])?;
    let port_num: u16 = port.parse().expect("a port we formatted");
    while !listening(port_num) {
        if let Ok(Some(status)) = server.try_wait() {
            let mut err = String::new();
            if let Some(mut e) = server.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            let last = err.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("");
            return Err(format!(
                "fi_pingpong server exited with {status}: {}",
                last.trim()
            ));
        }
        if Instant::now() >= deadline {
            let _ = server.kill();
            let _ = server.wait();
            return Err("the fi_pingpong server never listened".into());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let client = match spawn(&["-P", &port, "127.0.0.1"]) {
        Ok(c) => c,
        Err(e) => {
            let _ = server.kill();
            let _ = server.wait();
            return Err(e);
        }
    };
    let c = wait_output(client, deadline, "fi_pingpong client");
    let s = wait_output(
        server,
        deadline + Duration::from_secs(1),
        "fi_pingpong server",
    );
    let out = c?;
    s?;
    parse_fi_pingpong(&out)
        .into_iter()
        .find(|r| r.size == size)
        .ok_or_else(|| {
            format!(
                "no {size}-byte row in fi_pingpong's output: {:?}",
                out.lines().last().unwrap_or("")
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_fi_pingpong_table() {
        let out =
            "bytes   #sent   #ack     total       time     MB/sec    usec/xfer   Mxfers/sec\n\
                   8       2k      =2k      31k         2.11s      0.02     528.64       0.00\n\
                   1m      2k      =2k      3.9g        4.65s    902.01    1162.48       0.00\n";
        let rows = parse_fi_pingpong(out);
        assert_eq!(
            rows,
            vec![
                FiRow {
                    size: 8,
                    iterations: 2048,
                    usec_per_xfer: 528.64,
                    mb_per_s: 0.02
                },
                FiRow {
                    size: 1 << 20,
                    iterations: 2048,
                    usec_per_xfer: 1162.48,
                    mb_per_s: 902.01
                },
            ]
        );
    }
}
