//! `san-spi bench loopback`: the shared-memory loopback transport against its baselines,
//! all measured in the same run.
//!
//! - **Latency** (one-way = round trip / 2, p50 and p99) for 8 B … 64 KiB: ours is a
//!   send/receive ping-pong between two loopback endpoints in this process (two threads,
//!   receives kept posted, spinning on `poll`); the baselines are a Unix-domain-socket
//!   ping-pong, a raw shared-memory spin ping-pong (the floor: an atomic sequence number
//!   and a memcpy of the payload each way), and `fi_pingpong -p shm` when installed
//!   (libfabric reports the mean, not percentiles).
//! - **Bandwidth** (GB/s = 10^9 B/s) for 4 KiB … 16 MiB and 64 MiB: ours is RDMA writes
//!   into the peer's region and sends into posted receives, several in flight, timed from
//!   the first post to the last completion; the baselines are single-thread memcpy of the
//!   same size and `fi_pingpong`'s figure (size / one-way time).
//!
//! Then the ratios, and whether the project's performance targets are met — printed as
//! measured.

mod baselines;
mod buf;
mod ours;
mod plot;

use crate::out::{out, outln};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use san_spi_loopback::CopyMode;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Message sizes of the latency measurements.
pub const LATENCY_SIZES: [usize; 5] = [8, 64, 512, 4 << 10, 64 << 10];
/// Transfer sizes of the bandwidth measurements (64 MiB for the memcpy target).
pub const BANDWIDTH_SIZES: [usize; 5] = [4 << 10, 64 << 10, 1 << 20, 16 << 20, 64 << 20];
/// Largest send/receive bandwidth size.
const SEND_RECV_MAX: usize = 16 << 20;

/// Target: 8-byte one-way latency ≤ this × the raw shared-memory ping-pong.
pub const LATENCY_TARGET: f64 = 1.3;
/// Target: 64 MiB RDMA write bandwidth ≥ this × single-thread memcpy.
pub const MEMCPY_TARGET: f64 = 0.8;

/// Benchmarks.
#[derive(Subcommand, Debug)]
pub enum BenchCmd {
    /// The shared-memory loopback transport against a Unix-socket ping-pong, a raw
    /// shared-memory spin ping-pong, memcpy and (if installed) libfabric's shm provider:
    /// latency p50/p99 for 8 B … 64 KiB, bandwidth for 4 KiB … 64 MiB, ratios and targets.
    Loopback(LoopbackArgs),
}

/// Options of `bench loopback`.
#[derive(Args, Debug)]
pub struct LoopbackArgs {
    /// Few iterations: a smoke test that takes a few seconds (the full run < 2 minutes).
    #[arg(long)]
    pub quick: bool,
    /// Also draw latency and bandwidth against message size (log-log) into this SVG file.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
}

/// How long and how often each measurement runs.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Round trips before measuring.
    pub lat_warmup: usize,
    /// Round trips measured at least.
    pub lat_min_iters: usize,
    /// Round trips measured at most.
    pub lat_max_iters: usize,
    /// Time after which a latency measurement stops (once it has its minimum).
    pub lat_budget: Duration,
    /// Rounds each latency point is measured in, ours and the baselines taking turns: a
    /// change of the machine's state (on a VM, where the host places the two vCPUs) during
    /// the run lands on all of them alike instead of skewing the ratios.
    pub lat_rounds: usize,
    /// Operations measured at least per bandwidth point.
    pub bw_min_ops: u64,
    /// Time after which a bandwidth measurement stops (once it has its minimum).
    pub bw_budget: Duration,
    /// `fi_pingpong` runs: (size, iterations); latency sizes first.
    pub fi_runs: Vec<(usize, u64)>,
    /// Longest one `fi_pingpong` run may take.
    pub fi_timeout: Duration,
    /// Longest all `fi_pingpong` runs together may take; later ones are skipped.
    pub fi_budget: Duration,
}

impl Plan {
    /// The plan of a full run (< 2 minutes) or a quick one (a few seconds).
    pub fn new(quick: bool) -> Plan {
        if quick {
            Plan {
                lat_warmup: 200,
                lat_min_iters: 200,
                lat_max_iters: 20_000,
                lat_budget: Duration::from_millis(80),
                lat_rounds: 2,
                bw_min_ops: 2,
                bw_budget: Duration::from_millis(60),
                fi_runs: vec![(8, 1000), (1 << 20, 20)],
                fi_timeout: Duration::from_secs(3),
                fi_budget: Duration::from_secs(5),
            }
        } else {
            Plan {
                lat_warmup: 2_000,
                lat_min_iters: 2_000,
                lat_max_iters: 500_000,
                lat_budget: Duration::from_millis(1500),
                lat_rounds: 5,
                bw_min_ops: 8,
                bw_budget: Duration::from_millis(1200),
                fi_runs: vec![
                    (8, 20_000),
                    (64, 20_000),
                    (512, 20_000),
                    (4 << 10, 10_000),
                    (64 << 10, 2_000),
                    (1 << 20, 500),
                    (16 << 20, 40),
                ],
                fi_timeout: Duration::from_secs(20),
                fi_budget: Duration::from_secs(45),
            }
        }
    }
}

/// Spinning while nothing happened; the thread never parks.
///
/// [`Idle::yielding`] adds a `sched_yield` every [`YIELD_EVERY`] empty checks: on a machine
/// with fewer CPUs than busy threads (two vCPUs, two application threads plus the
/// loopback's two progress threads moving bulk data) it lets the thread that has work run.
/// [`Idle::pure`] only pauses: for the latency ping-pongs, ours and the raw floor alike,
/// whose two threads have a CPU each (the loopback's progress threads stay parked while the
/// application polls).
#[derive(Debug)]
pub struct Idle {
    empty: u32,
    every: u32,
}

/// Empty checks between two `sched_yield`s of [`Idle::yielding`].
pub const YIELD_EVERY: u32 = 16;

impl Idle {
    /// Pause instructions, and `sched_yield` every [`YIELD_EVERY`] empty checks.
    pub fn yielding() -> Idle {
        Idle {
            empty: 0,
            every: YIELD_EVERY,
        }
    }

    /// Pause instructions only.
    pub fn pure() -> Idle {
        Idle { empty: 0, every: 0 }
    }

    /// Nothing happened: spin once.
    pub fn spin(&mut self) {
        self.empty = self.empty.wrapping_add(1);
        if self.every != 0 && self.empty.is_multiple_of(self.every) {
            std::thread::yield_now();
        } else {
            std::hint::spin_loop();
        }
    }

    /// Something happened.
    pub fn reset(&mut self) {
        self.empty = 0;
    }
}

impl Plan {
    /// The plan of one of [`lat_rounds`](Plan::lat_rounds) latency rounds: the iterations
    /// and time of a latency point shared between them (the warm-up is not).
    pub fn latency_round(&self) -> Plan {
        let rounds = self.lat_rounds.max(1);
        Plan {
            lat_min_iters: self.lat_min_iters.div_ceil(rounds),
            lat_max_iters: self.lat_max_iters.div_ceil(rounds),
            lat_budget: self.lat_budget / rounds as u32,
            lat_rounds: 1,
            ..self.clone()
        }
    }
}

impl Plan {
    /// Whether a ping-pong is done: past the warm-up (`round` is the round trip about to
    /// start, counted from 0), with `measured` round trips kept since `started`, it has its
    /// maximum, or its minimum and its time.
    pub fn latency_done(&self, round: u64, measured: usize, started: Instant) -> bool {
        round >= self.lat_warmup as u64
            && (measured >= self.lat_max_iters
                || (measured >= self.lat_min_iters && started.elapsed() >= self.lat_budget))
    }
}

/// Round-trip times of a ping-pong, ns.
pub type RoundTrips = Vec<u64>;

/// Percentiles of one-way latency.
#[derive(Debug, Clone, Copy)]
pub struct LatencySample {
    /// Median one-way time, ns.
    pub p50_ns: f64,
    /// 99th percentile one-way time, ns.
    pub p99_ns: f64,
    /// Round trips measured.
    pub iterations: u64,
}

impl LatencySample {
    /// From round-trip times in ns (one-way = half).
    pub fn from_round_trips(mut rtts: Vec<u64>) -> LatencySample {
        rtts.sort_unstable();
        let at = |q: usize| {
            if rtts.is_empty() {
                0.0
            } else {
                rtts[(rtts.len() - 1) * q / 100] as f64 / 2.0
            }
        };
        LatencySample {
            p50_ns: at(50),
            p99_ns: at(99),
            iterations: rtts.len() as u64,
        }
    }
}

/// One latency result.
#[derive(Debug, Clone)]
pub struct LatRow {
    /// `ours`, `raw-shm`, `unix-socket` or `libfabric-shm`.
    pub name: &'static str,
    /// Message bytes.
    pub size: usize,
    /// One-way p50 (libfabric: mean), µs.
    pub p50_us: f64,
    /// One-way p99, µs (libfabric reports none).
    pub p99_us: Option<f64>,
    /// Round trips measured.
    pub iterations: u64,
}

/// One bandwidth result.
#[derive(Debug, Clone)]
pub struct BwRow {
    /// `ours-rdma-write` (the transport's defaults: the path chosen per transfer),
    /// `ours-rdma-write-single` (single copy asked for), `ours-rdma-write-bounce` (through
    /// the ring), `ours-send-recv`, `memcpy` or `libfabric-shm`.
    pub name: &'static str,
    /// Transfer bytes.
    pub size: usize,
    /// GB/s (10^9 bytes per second).
    pub gb_per_s: f64,
    /// Bytes moved in the measured part (0 when the tool does not say).
    pub bytes: u64,
    /// Operations in the measured part (0 when the tool does not say).
    pub ops: u64,
    /// Seconds of the measured part (0 when the tool does not say).
    pub seconds: f64,
}

/// The machine the run was on.
#[derive(Debug, Clone)]
pub struct Machine {
    /// CPUs available to this process.
    pub cpus: usize,
    /// `/proc/cpuinfo` model name.
    pub cpu_model: String,
    /// 1-minute load average when the run started.
    pub load_1m: Option<f64>,
    /// Kernel release.
    pub kernel: String,
    /// One line for headers.
    pub summary: String,
}

impl Machine {
    fn probe() -> Machine {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_string())
            })
            .unwrap_or_else(|| "unknown CPU".into());
        let load_1m = std::fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()));
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        let summary = format!(
            "{cpus} CPUs, {cpu_model}{}",
            load_1m.map_or(String::new(), |l| format!(", load {l:.2} at start"))
        );
        Machine {
            cpus,
            cpu_model,
            load_1m,
            kernel,
            summary,
        }
    }
}

/// A performance target of the project, as measured.
#[derive(Debug, Clone)]
pub struct Target {
    /// What is required.
    pub name: String,
    /// Ours / reference.
    pub ratio: Option<f64>,
    /// The bound on the ratio.
    pub threshold: f64,
    /// Whether the ratio must stay at most (latency) or at least (bandwidth) the bound.
    pub at_most: bool,
    /// `None` when it could not be evaluated.
    pub met: Option<bool>,
    /// The figures behind it, or why it was not evaluated.
    pub note: String,
}

/// Everything one run measured.
#[derive(Debug, Clone)]
pub struct Report {
    /// `quick` or `full`.
    pub mode: &'static str,
    /// Where.
    pub machine: Machine,
    /// How the RDMA write rows moved their data: the choice, and what single copy got.
    pub rdma_copy_mode: String,
    /// Latency rows.
    pub latency: Vec<LatRow>,
    /// Bandwidth rows.
    pub bandwidth: Vec<BwRow>,
    /// `Err(reason)` when libfabric's shm provider could not be measured at all.
    pub libfabric: Result<(), String>,
    /// Individual `fi_pingpong` runs that failed or were skipped.
    pub libfabric_errors: Vec<String>,
    /// Targets.
    pub targets: Vec<Target>,
    /// Wall time of the run.
    pub elapsed: Duration,
}

impl Report {
    fn lat(&self, name: &str, size: usize) -> Option<&LatRow> {
        self.latency
            .iter()
            .find(|r| r.name == name && r.size == size)
    }

    fn bw(&self, name: &str, size: usize) -> Option<&BwRow> {
        self.bandwidth
            .iter()
            .find(|r| r.name == name && r.size == size)
    }

    fn lat_ratio(&self, name: &str, size: usize) -> Option<f64> {
        let ours = self.lat("ours", size)?.p50_us;
        let base = self.lat(name, size)?.p50_us;
        (base > 0.0).then(|| ours / base)
    }

    fn bw_ratio(&self, ours: &str, name: &str, size: usize) -> Option<f64> {
        let o = self.bw(ours, size)?.gb_per_s;
        let b = self.bw(name, size)?.gb_per_s;
        (b > 0.0).then(|| o / b)
    }

    fn evaluate_targets(&mut self) {
        let mut targets = Vec::new();
        let r = self.lat_ratio("raw-shm", 8);
        targets.push(Target {
            name: format!(
                "8 B one-way latency p50 ≤ {LATENCY_TARGET}× the raw shared-memory ping-pong"
            ),
            ratio: r,
            threshold: LATENCY_TARGET,
            at_most: true,
            met: r.map(|r| r <= LATENCY_TARGET),
            note: match (self.lat("ours", 8), self.lat("raw-shm", 8)) {
                (Some(o), Some(b)) => format!(
                    "{:.3} µs vs {:.3} µs; the target was set against a floor of ≈ 0.2 µs",
                    o.p50_us, b.p50_us
                ),
                _ => "not measured".into(),
            },
        });
        let r = self.bw_ratio("ours-rdma-write", "libfabric-shm", 1 << 20);
        targets.push(Target {
            name: "1 MiB RDMA write bandwidth ≥ libfabric shm (fi_pingpong) at 1 MiB".into(),
            ratio: r,
            threshold: 1.0,
            at_most: false,
            met: r.map(|r| r >= 1.0),
            note: match (
                self.bw("ours-rdma-write", 1 << 20),
                self.bw("libfabric-shm", 1 << 20),
                &self.libfabric,
            ) {
                (Some(o), Some(b), _) => {
                    format!("{:.2} GB/s vs {:.2} GB/s", o.gb_per_s, b.gb_per_s)
                }
                (_, _, Err(reason)) => format!("not evaluated: libfabric shm {reason}"),
                _ => "not evaluated: a figure is missing".into(),
            },
        });
        let r = self.bw_ratio("ours-rdma-write", "memcpy", 1 << 20);
        targets.push(Target {
            name: format!("1 MiB RDMA write bandwidth ≥ {MEMCPY_TARGET}× single-thread memcpy"),
            ratio: r,
            threshold: MEMCPY_TARGET,
            at_most: false,
            met: r.map(|r| r >= MEMCPY_TARGET),
            note: match (
                self.bw("ours-rdma-write", 1 << 20),
                self.bw("ours-rdma-write-single", 1 << 20),
                self.bw("ours-rdma-write-bounce", 1 << 20),
                self.bw("memcpy", 1 << 20),
            ) {
                (Some(o), Some(sc), Some(bo), Some(m)) => format!(
                    "{:.2} GB/s (single copy alone {:.2}, bounce alone {:.2}) vs {:.2} GB/s",
                    o.gb_per_s, sc.gb_per_s, bo.gb_per_s, m.gb_per_s
                ),
                _ => "not measured".into(),
            },
        });
        let r = self.bw_ratio("ours-rdma-write", "memcpy", 64 << 20);
        targets.push(Target {
            name: format!("64 MiB RDMA write bandwidth ≥ {MEMCPY_TARGET}× single-thread memcpy"),
            ratio: r,
            threshold: MEMCPY_TARGET,
            at_most: false,
            met: r.map(|r| r >= MEMCPY_TARGET),
            note: match (
                self.bw("ours-rdma-write", 64 << 20),
                self.bw("memcpy", 64 << 20),
            ) {
                (Some(o), Some(b)) => {
                    format!("{:.2} GB/s vs {:.2} GB/s", o.gb_per_s, b.gb_per_s)
                }
                _ => "not measured".into(),
            },
        });
        self.targets = targets;
    }

    /// The whole run as one JSON document.
    pub fn to_json(&self) -> Value {
        let latency: Vec<Value> = self
            .latency
            .iter()
            .map(|r| {
                json!({
                    "impl": r.name,
                    "size": r.size,
                    "p50_us": r.p50_us,
                    "p99_us": r.p99_us,
                    "statistic": if r.p99_us.is_some() { "percentiles of round trip / 2" } else { "mean one-way (fi_pingpong usec/xfer)" },
                    "iterations": r.iterations,
                })
            })
            .collect();
        let bandwidth: Vec<Value> = self
            .bandwidth
            .iter()
            .map(|r| {
                json!({
                    "impl": r.name,
                    "size": r.size,
                    "gb_per_s": r.gb_per_s,
                    "bytes": r.bytes,
                    "ops": r.ops,
                    "seconds": r.seconds,
                })
            })
            .collect();
        let mut ratios = Vec::new();
        for &size in &LATENCY_SIZES {
            for base in ["raw-shm", "unix-socket", "libfabric-shm"] {
                if let Some(r) = self.lat_ratio(base, size) {
                    ratios.push(json!({"what": format!("latency p50 ours / {base}"), "size": size, "ratio": r}));
                }
            }
        }
        for &size in &BANDWIDTH_SIZES {
            for (ours, base) in [
                ("ours-rdma-write", "memcpy"),
                ("ours-rdma-write-single", "memcpy"),
                ("ours-rdma-write-bounce", "memcpy"),
                ("ours-send-recv", "memcpy"),
                ("ours-rdma-write", "libfabric-shm"),
            ] {
                if let Some(r) = self.bw_ratio(ours, base, size) {
                    ratios.push(json!({"what": format!("bandwidth {ours} / {base}"), "size": size, "ratio": r}));
                }
            }
        }
        let targets: Vec<Value> = self
            .targets
            .iter()
            .map(|t| {
                json!({
                    "name": t.name,
                    "ratio": t.ratio,
                    "threshold": t.threshold,
                    "bound": if t.at_most { "at most" } else { "at least" },
                    "met": t.met,
                    "note": t.note,
                })
            })
            .collect();
        json!({
            "bench": "loopback",
            "mode": self.mode,
            "machine": {
                "cpus": self.machine.cpus,
                "cpu_model": self.machine.cpu_model,
                "load_1m_at_start": self.machine.load_1m,
                "kernel": self.machine.kernel,
            },
            "elapsed_s": self.elapsed.as_secs_f64(),
            "rdma_copy_mode": self.rdma_copy_mode,
            "latency": latency,
            "bandwidth": bandwidth,
            "libfabric": {
                "command": "fi_pingpong -p shm -e rdm -S SIZE -I N (server and client)",
                "available": self.libfabric.is_ok(),
                "reason": self.libfabric.as_ref().err(),
                "errors": self.libfabric_errors,
            },
            "ratios": ratios,
            "targets": targets,
        })
    }

    /// The run as text tables.
    pub fn to_text(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "san-spi bench loopback — {} run in {:.1} s on {}",
            self.mode,
            self.elapsed.as_secs_f64(),
            self.machine.summary
        );
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "One-way latency (round trip / 2), µs, p50 / p99 (libfabric: mean)"
        );
        let _ = writeln!(
            s,
            "{:>7}  {:>17}  {:>17}  {:>17}  {:>10}  {:>9}  {:>9}  {:>9}",
            "size", "ours", "raw-shm", "unix-socket", "libfabric", "/raw-shm", "/unix", "/libfab"
        );
        let cell = |r: Option<&LatRow>| match r {
            Some(LatRow {
                p50_us,
                p99_us: Some(p99),
                ..
            }) => format!("{p50_us:.3} / {p99:.3}"),
            Some(r) => format!("{:.3}", r.p50_us),
            None => "—".into(),
        };
        let ratio = |r: Option<f64>| r.map_or("—".into(), |r| format!("{r:.2}×"));
        for &size in &LATENCY_SIZES {
            let _ = writeln!(
                s,
                "{:>7}  {:>17}  {:>17}  {:>17}  {:>10}  {:>9}  {:>9}  {:>9}",
                size_name(size),
                cell(self.lat("ours", size)),
                cell(self.lat("raw-shm", size)),
                cell(self.lat("unix-socket", size)),
                cell(self.lat("libfabric-shm", size)),
                ratio(self.lat_ratio("raw-shm", size)),
                ratio(self.lat_ratio("unix-socket", size)),
                ratio(self.lat_ratio("libfabric-shm", size)),
            );
        }
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "Bandwidth, GB/s (10^9 B/s); {}; bounce: through the ring",
            self.rdma_copy_mode
        );
        let _ = writeln!(
            s,
            "{:>7}  {:>10}  {:>8}  {:>8}  {:>9}  {:>8}  {:>9}  {:>12}  {:>13}  {:>11}  {:>12}",
            "size",
            "rdma-write",
            "single",
            "bounce",
            "send-recv",
            "memcpy",
            "libfabric",
            "write/memcpy",
            "bounce/memcpy",
            "send/memcpy",
            "write/libfab"
        );
        let gb = |r: Option<&BwRow>| r.map_or("—".into(), |r| format!("{:.2}", r.gb_per_s));
        for &size in &BANDWIDTH_SIZES {
            let _ = writeln!(
                s,
                "{:>7}  {:>10}  {:>8}  {:>8}  {:>9}  {:>8}  {:>9}  {:>12}  {:>13}  {:>11}  {:>12}",
                size_name(size),
                gb(self.bw("ours-rdma-write", size)),
                gb(self.bw("ours-rdma-write-single", size)),
                gb(self.bw("ours-rdma-write-bounce", size)),
                gb(self.bw("ours-send-recv", size)),
                gb(self.bw("memcpy", size)),
                gb(self.bw("libfabric-shm", size)),
                ratio(self.bw_ratio("ours-rdma-write", "memcpy", size)),
                ratio(self.bw_ratio("ours-rdma-write-bounce", "memcpy", size)),
                ratio(self.bw_ratio("ours-send-recv", "memcpy", size)),
                ratio(self.bw_ratio("ours-rdma-write", "libfabric-shm", size)),
            );
        }
        let _ = writeln!(s);
        match &self.libfabric {
            Ok(()) => {
                let _ = writeln!(
                    s,
                    "libfabric: fi_pingpong -p shm -e rdm (bandwidth = size / one-way time, one message in flight)"
                );
            }
            Err(reason) => {
                let _ = writeln!(s, "libfabric shm: {reason}");
            }
        }
        for e in &self.libfabric_errors {
            let _ = writeln!(s, "  fi_pingpong: {e}");
        }
        let _ = writeln!(s);
        let _ = writeln!(s, "Targets:");
        for t in &self.targets {
            let verdict = match t.met {
                Some(true) => "MET   ",
                Some(false) => "MISSED",
                None => "n/a   ",
            };
            let r = t.ratio.map_or("—".into(), |r| format!("{r:.2}×"));
            let _ = writeln!(s, "  [{verdict}] {}: {r} ({})", t.name, t.note);
        }
        s
    }
}

/// `8 B`, `4 KiB`, `16 MiB`.
pub fn size_name(size: usize) -> String {
    if size >= 1 << 20 && size.is_multiple_of(1 << 20) {
        format!("{} MiB", size >> 20)
    } else if size >= 1 << 10 && size.is_multiple_of(1 << 10) {
        format!("{} KiB", size >> 10)
    } else {
        format!("{size} B")
    }
}

fn progress(steps: u64, json: bool) -> ProgressBar {
    let visible = !json && std::io::stderr().is_terminal();
    let target = if visible {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let pb = ProgressBar::with_draw_target(Some(steps), target);
    pb.set_style(
        ProgressStyle::with_template("{elapsed:>4} [{bar:30}] {pos}/{len} {msg}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    pb
}

/// Runs every measurement of the plan.
pub fn measure(plan: &Plan, mode: &'static str, json: bool) -> Result<Report, String> {
    let started = Instant::now();
    let machine = Machine::probe();
    let fi = baselines::find_fi_pingpong();
    let fi_steps = if fi.is_some() { plan.fi_runs.len() } else { 0 };
    let steps = LATENCY_SIZES.len() * 3
        + BANDWIDTH_SIZES.len() * 4
        + BANDWIDTH_SIZES
            .iter()
            .filter(|&&s| s <= SEND_RECV_MAX)
            .count()
        + fi_steps;
    let pb = progress(steps as u64, json);
    let mut latency = Vec::new();
    let mut bandwidth = Vec::new();
    let mut copy_modes = Vec::new();
    let step = |what: String| pb.set_message(what);

    let round = plan.latency_round();
    for &size in &LATENCY_SIZES {
        let n = size_name(size);
        let (mut raw, mut mine, mut unix) = (Vec::new(), Vec::new(), Vec::new());
        for r in 1..=plan.lat_rounds.max(1) {
            let of = format!("round {r}/{}", plan.lat_rounds.max(1));
            step(format!("latency {n}: raw shared memory, {of}"));
            raw.extend(baselines::raw_shm(size, &round)?);
            step(format!("latency {n}: ours, {of}"));
            mine.extend(
                ours::latency(size, &round).map_err(|e| format!("ours, latency {n}: {e}"))?,
            );
            step(format!("latency {n}: Unix socket, {of}"));
            unix.extend(baselines::unix_socket(size, &round)?);
        }
        latency.push(lat_row(
            "raw-shm",
            size,
            LatencySample::from_round_trips(raw),
        ));
        latency.push(lat_row("ours", size, LatencySample::from_round_trips(mine)));
        latency.push(lat_row(
            "unix-socket",
            size,
            LatencySample::from_round_trips(unix),
        ));
        pb.inc(3);
    }
    for &size in &BANDWIDTH_SIZES {
        let n = size_name(size);
        step(format!("bandwidth {n}: memcpy"));
        let (bytes, elapsed) = baselines::memcpy(size, plan);
        bandwidth.push(BwRow {
            name: "memcpy",
            size,
            gb_per_s: bytes as f64 / elapsed.as_secs_f64().max(1e-9) / 1e9,
            bytes,
            ops: bytes / size as u64,
            seconds: elapsed.as_secs_f64(),
        });
        pb.inc(1);
        step(format!(
            "bandwidth {n}: ours, RDMA write (path chosen per transfer)"
        ));
        let (t, _) =
            ours::rdma_write(size, plan, None).map_err(|e| format!("ours, RDMA write {n}: {e}"))?;
        bandwidth.push(bw_row("ours-rdma-write", size, t));
        pb.inc(1);
        step(format!("bandwidth {n}: ours, RDMA write single copy"));
        let (t, mode) = ours::rdma_write(size, plan, Some(CopyMode::SingleCopy))
            .map_err(|e| format!("ours, RDMA write (single copy) {n}: {e}"))?;
        bandwidth.push(bw_row("ours-rdma-write-single", size, t));
        copy_modes.push(mode);
        pb.inc(1);
        step(format!("bandwidth {n}: ours, RDMA write through the ring"));
        let (t, _) = ours::rdma_write(size, plan, Some(CopyMode::Bounce))
            .map_err(|e| format!("ours, RDMA write (bounce) {n}: {e}"))?;
        bandwidth.push(bw_row("ours-rdma-write-bounce", size, t));
        pb.inc(1);
        if size <= SEND_RECV_MAX {
            step(format!("bandwidth {n}: ours, send/recv"));
            let t = ours::send_recv(size, plan).map_err(|e| format!("ours, send/recv {n}: {e}"))?;
            bandwidth.push(bw_row("ours-send-recv", size, t));
            pb.inc(1);
        }
    }

    let mut libfabric_errors = Vec::new();
    let libfabric = match fi {
        None => {
            Err("unavailable: fi_pingpong is not on PATH (Debian package libfabric-bin)".into())
        }
        Some(exe) => {
            let fi_started = Instant::now();
            let mut rows: BTreeMap<usize, baselines::FiRow> = BTreeMap::new();
            let mut first_error = None;
            for (i, &(size, iters)) in plan.fi_runs.iter().enumerate() {
                let n = size_name(size);
                step(format!("libfabric shm (fi_pingpong) {n}"));
                if fi_started.elapsed() >= plan.fi_budget {
                    libfabric_errors.push(format!("{n}: skipped (time budget of the run spent)"));
                } else {
                    match baselines::fi_pingpong(&exe, size, iters, plan.fi_timeout) {
                        Ok(mut row) => {
                            row.iterations = iters;
                            rows.insert(size, row);
                        }
                        Err(e) if i == 0 => {
                            // The first run failing means the provider does not work here.
                            first_error = Some(e);
                            pb.inc((plan.fi_runs.len() - i) as u64);
                            break;
                        }
                        Err(e) => libfabric_errors.push(format!("{n}: {e}")),
                    }
                }
                pb.inc(1);
            }
            for (&size, row) in &rows {
                if LATENCY_SIZES.contains(&size) {
                    latency.push(LatRow {
                        name: "libfabric-shm",
                        size,
                        p50_us: row.usec_per_xfer,
                        p99_us: None,
                        iterations: row.iterations,
                    });
                }
                if BANDWIDTH_SIZES.contains(&size) && row.usec_per_xfer > 0.0 {
                    bandwidth.push(BwRow {
                        name: "libfabric-shm",
                        size,
                        gb_per_s: size as f64 / row.usec_per_xfer / 1e3,
                        bytes: 0,
                        ops: 0,
                        seconds: 0.0,
                    });
                }
            }
            match first_error {
                Some(e) => Err(format!("unavailable: {e}")),
                None if rows.is_empty() => Err("unavailable: every fi_pingpong run failed".into()),
                None => Ok(()),
            }
        }
    };
    pb.finish_and_clear();
    copy_modes.dedup();
    let chosen = san_spi_loopback::Limits::default().single_copy_max;
    let single = match copy_modes[..] {
        [CopyMode::SingleCopy] => format!(
            "single: single copy (process_vm_readv by the target's owner) up to {} MiB, bounce above",
            san_spi_loopback::DIRECT_MAX_BYTES >> 20
        ),
        [CopyMode::Bounce] => "single: refused at connect, so it bounced".into(),
        _ => format!("single: varied between connections: {copy_modes:?}"),
    };
    let rdma_copy_mode = format!(
        "rdma-write: the path the transport chooses per transfer (single copy up to {chosen} B, \
         bounce above: Limits::single_copy_max); {single}"
    );
    let mut report = Report {
        mode,
        machine,
        rdma_copy_mode,
        latency,
        bandwidth,
        libfabric,
        libfabric_errors,
        targets: Vec::new(),
        elapsed: started.elapsed(),
    };
    report.evaluate_targets();
    Ok(report)
}

fn lat_row(name: &'static str, size: usize, s: LatencySample) -> LatRow {
    LatRow {
        name,
        size,
        p50_us: s.p50_ns / 1e3,
        p99_us: Some(s.p99_ns / 1e3),
        iterations: s.iterations,
    }
}

fn bw_row(name: &'static str, size: usize, t: ours::Transfer) -> BwRow {
    BwRow {
        name,
        size,
        gb_per_s: t.gb_per_s(),
        bytes: t.bytes,
        ops: t.ops,
        seconds: t.elapsed.as_secs_f64(),
    }
}

/// `san-spi bench …`: prints the report (text, or JSON with `json`); exit 0 when every
/// measurement ran (whether the targets are met or not), 1 when one failed, 2 on bad input.
pub fn run(cmd: BenchCmd, json: bool) -> ExitCode {
    match cmd {
        BenchCmd::Loopback(args) => loopback(args, json),
    }
}

fn loopback(args: LoopbackArgs, json: bool) -> ExitCode {
    if let Some(path) = &args.plot {
        let parent = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(std::path::Path::new("."));
        if !parent.is_dir() {
            eprintln!(
                "san-spi: --plot {}: the directory {} does not exist",
                path.display(),
                parent.display()
            );
            return ExitCode::from(2);
        }
    }
    let mode = if args.quick { "quick" } else { "full" };
    let report = match measure(&Plan::new(args.quick), mode, json) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("san-spi: bench loopback: {e}");
            return ExitCode::FAILURE;
        }
    };
    if json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&report.to_json()).expect("JSON values serialize")
        );
    } else {
        out!("{}", report.to_text());
    }
    if let Some(path) = &args.plot {
        let written =
            plot::svg(&report).and_then(|svg| std::fs::write(path, svg).map_err(|e| e.to_string()));
        match written {
            Ok(()) if !json => outln!("\nChart: {}", path.display()),
            Ok(()) => {}
            Err(e) => {
                eprintln!("san-spi: --plot {}: {e}", path.display());
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}
