//! An 8-byte send/receive ping-pong between two loopback endpoints in one process, for
//! profiling the hot path (`perf record -e cpu-clock -g`).
//!
//! ```text
//! cargo run --release -p san-spi-loopback --example pingpong -- [ITERS] [MODE]
//! ```
//!
//! - no MODE: a ping-pong of two threads over one transport; prints one-way percentiles.
//! - `split`: the same with a transport per side (own registrations), as two processes.
//! - `solo`: both ends in one thread, no cache traffic: TSC ticks spent in each call
//!   (send, the poll that receives, the repost, the poll that reaps the send) and the
//!   cost of an empty poll — the software cost of a message.
//! - `trace`: the `split` ping-pong, timed in TSC ticks at each hand-off (a send
//!   starting, the other side's poll returning its receive): medians of each leg, so the
//!   time spent in software on the critical path can be told from the cache-line transfers
//!   (compare the round trip with a bare one-line ping-pong's).
//!
//! Environment: `RING=BYTES` sets the ring capacity; `SLOW=1` lists round trips over 2 µs
//! with their spacing (periodic stalls show up as a fixed stride).

use san_spi_core::transport::{
    block_on, Completion, Endpoint, Listener, MemAccess, Memory, Op, Sge, Transport,
};
use san_spi_loopback::LoopbackTransport;
use std::time::Instant;

fn main() {
    let iters: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200_000);
    let cap: usize = std::env::var("RING")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(san_spi_loopback::DEFAULT_RING_CAPACITY);
    let t =
        LoopbackTransport::new(format!("pingpong-{}", std::process::id())).with_ring_capacity(cap);
    let addr = "198.18.0.1:9900".parse().unwrap();
    let l = block_on(t.listen(addr)).unwrap();
    let s = std::thread::spawn(move || block_on(l.accept()).unwrap());
    // `split`: the client side has its own transport (its own registry), as a second
    // process would.
    let split = matches!(std::env::args().nth(2).as_deref(), Some("split" | "trace"));
    let t2 =
        LoopbackTransport::new(format!("pingpong-{}", std::process::id())).with_ring_capacity(cap);
    let tc = if split { &t2 } else { &t };
    let c = block_on(tc.connect(addr)).unwrap();
    let s = s.join().unwrap();
    // Four 8-byte buffers (client send 0, client receive 16, server receive 32, server send
    // 40), each on a cache line of its own: the two threads share no line through them.
    let mut mem = vec![0u8; 1024].into_boxed_slice();
    // SAFETY: `mem` outlives the registration and every operation below.
    let h = unsafe { t.register(mem.as_mut_ptr(), 1024, MemAccess::READ_WRITE) }.unwrap();
    // SAFETY: as above.
    let hc = unsafe { tc.register(mem.as_mut_ptr(), 1024, MemAccess::READ_WRITE) }.unwrap();
    let sge = |off: u64| Sge {
        handle: if off < 32 { hc } else { h },
        addr: mem.as_ptr() as u64 + off * 16,
        len: 8,
    };
    for i in 0..4 {
        c.post_recv(&[sge(16)], i).unwrap();
        s.post_recv(&[sge(32)], i).unwrap();
    }
    if std::env::args().nth(2).as_deref() == Some("solo") {
        // Both sides in this thread: the software cost of one message, no cache traffic.
        let mut cs = [Completion::default(); 8];
        let t0 = Instant::now();
        let mut each = Vec::with_capacity(iters);
        // TSC ticks spent in each call: send, receive poll, repost, send-completion poll.
        let mut parts = [0u64; 4];
        // SAFETY: rdtsc has no preconditions on x86_64.
        let tsc = || unsafe { core::arch::x86_64::_rdtsc() };
        for _ in 0..iters {
            let t1 = Instant::now();
            let a = tsc();
            c.post_send(&[sge(0)], 0).unwrap();
            let b = tsc();
            'recv: loop {
                let n = s.poll(&mut cs);
                for x in &cs[..n] {
                    if x.op == Op::Recv {
                        break 'recv;
                    }
                }
            }
            let c2 = tsc();
            s.post_recv(&[sge(32)], 0).unwrap();
            let d = tsc();
            while c.poll(&mut cs) == 0 {}
            let e = tsc();
            parts[0] += b - a;
            parts[1] += c2 - b;
            parts[2] += d - c2;
            parts[3] += e - d;
            each.push(t1.elapsed().as_nanos() as u64);
        }
        let n = iters as u64;
        let e0 = tsc();
        for _ in 0..iters {
            std::hint::black_box(s.poll(&mut cs));
        }
        println!("solo TSC ticks per empty poll: {}", (tsc() - e0) / n);
        println!(
            "solo TSC ticks per call: post_send {}, poll (recv) {}, post_recv {}, poll (send) {}",
            parts[0] / n,
            parts[1] / n,
            parts[2] / n,
            parts[3] / n
        );
        println!(
            "solo: {} ns per message",
            t0.elapsed().as_nanos() / iters as u128
        );
        each.sort_unstable();
        println!(
            "solo: p50 {} ns, p99 {} ns, p99.9 {} ns",
            each[iters / 2],
            each[iters * 99 / 100],
            each[iters * 999 / 1000]
        );
        return;
    }
    if std::env::args().nth(2).as_deref() == Some("trace") {
        // Each side stamps (TSC) the moment a send starts and the moment its poll returns a
        // receive; the TSC is synchronised across the vCPUs (constant_tsc, nonstop_tsc).
        // SAFETY: rdtsc has no preconditions on x86_64.
        let tsc = || unsafe { core::arch::x86_64::_rdtsc() };
        let mut srv = vec![(0u64, 0u64, 0u64); iters];
        let mut cli = vec![(0u64, 0u64, 0u64); iters];
        std::thread::scope(|scope| {
            let srv = &mut srv;
            let s = &s;
            let sge = &sge;
            scope.spawn(move || {
                let mut cs = [Completion::default(); 8];
                let mut done = 0;
                while done < iters {
                    let n = s.poll(&mut cs);
                    let t = tsc();
                    for x in &cs[..n] {
                        if x.op == Op::Recv {
                            let t1 = tsc();
                            s.post_send(&[sge(40)], 0).unwrap();
                            let t2 = tsc();
                            s.post_recv(&[sge(32)], 0).unwrap();
                            srv[done] = (t, t1, t2);
                            done += 1;
                        }
                    }
                }
            });
            let mut cs = [Completion::default(); 8];
            for slot in cli.iter_mut() {
                let a = tsc();
                c.post_send(&[sge(0)], 0).unwrap();
                let b = tsc();
                let d = 'wait: loop {
                    let n = c.poll(&mut cs);
                    let t = tsc();
                    for x in &cs[..n] {
                        if x.op == Op::Recv {
                            break 'wait t;
                        }
                    }
                };
                c.post_recv(&[sge(16)], 0).unwrap();
                *slot = (a, b, d);
            }
        });
        // Each leg: (label, ticks of round trip `i`), skipping the first tenth as warm-up.
        type Leg<'a> = (&'a str, &'a dyn Fn(usize) -> i64);
        let legs: [Leg<'_>; 5] = [
            ("client post_send", &|i| (cli[i].1 - cli[i].0) as i64),
            ("client send -> server's poll returns it", &|i| {
                srv[i].0 as i64 - cli[i].0 as i64
            }),
            ("server post_send", &|i| (srv[i].2 - srv[i].1) as i64),
            ("server send -> client's poll returns it", &|i| {
                cli[i].2 as i64 - srv[i].1 as i64
            }),
            ("round trip", &|i| (cli[i].2 - cli[i].0) as i64),
        ];
        println!("trace (TSC ticks, medians):");
        for (label, leg) in legs {
            let mut v: Vec<i64> = (iters / 10..iters).map(leg).collect();
            v.sort_unstable();
            println!("  {label:<40} {}", v[v.len() / 2]);
        }
        return;
    }
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut cs = [Completion::default(); 8];
            let mut done = 0;
            while done < iters {
                let n = s.poll(&mut cs);
                if n == 0 {
                    std::hint::spin_loop();
                }
                for x in &cs[..n] {
                    if x.op == Op::Recv {
                        s.post_recv(&[sge(32)], 0).unwrap();
                        s.post_send(&[sge(40)], 0).unwrap();
                        done += 1;
                    }
                }
            }
        });
        let mut rtts = Vec::with_capacity(iters);
        let mut slow = Vec::new();
        let origin = Instant::now();
        let mut cs = [Completion::default(); 8];
        for i in 0..iters {
            let t0 = Instant::now();
            c.post_send(&[sge(0)], 0).unwrap();
            'wait: loop {
                let n = c.poll(&mut cs);
                if n == 0 {
                    std::hint::spin_loop();
                }
                for x in &cs[..n] {
                    if x.op == Op::Recv {
                        c.post_recv(&[sge(16)], 0).unwrap();
                        break 'wait;
                    }
                }
            }
            let rtt = t0.elapsed().as_nanos() as u64;
            if rtt > 2000 && std::env::var_os("SLOW").is_some() {
                slow.push((i, (t0 - origin).as_nanos() as u64, rtt));
            }
            rtts.push(rtt);
        }
        for w in slow.windows(2).take(40) {
            println!(
                "slow at iter {} (+{} iters, +{} ns): {} ns",
                w[1].0,
                w[1].0 - w[0].0,
                w[1].1 - w[0].1,
                w[1].2
            );
        }
        rtts.sort_unstable();
        println!(
            "one-way p50 {} ns, p90 {} ns, p95 {} ns, p99 {} ns",
            rtts[iters / 2] / 2,
            rtts[iters * 90 / 100] / 2,
            rtts[iters * 95 / 100] / 2,
            rtts[iters * 99 / 100] / 2
        );
    });
    drop((c, s));
    t.deregister(h).unwrap();
    if split {
        tc.deregister(hc).unwrap();
    }
}
