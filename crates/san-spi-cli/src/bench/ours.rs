//! Ours: the shared-memory loopback transport, two endpoints in this process.
//!
//! Latency is a ping-pong of sends between a client and a server thread; each side keeps
//! four receives posted, spins on `poll` (never `wait`, which parks) and puts a used receive
//! back after its part of the round trip: the server after replying, the client after
//! stopping the clock. Only the round trip's own clock is read per message. Bandwidth is
//! RDMA writes into a region registered by the peer, and sends into posted receives,
//! several in flight, timed from the first post to the last completion.

use super::buf::{registered, RegBuf};
use super::{Idle, Plan, RoundTrips};
use san_spi_core::transport::{
    block_on, Completion, Endpoint, Listener, MemAccess, Op, PostError, RemoteTarget, Sge,
    Transport,
};
use san_spi_loopback::{CopyMode, LoopbackEndpoint, LoopbackTransport};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Receives each side keeps posted in the ping-pong.
const RECV_SLOTS: usize = 4;
/// A completion that does not come within this is a failure, not a hang.
const STALL: Duration = Duration::from_secs(20);

/// A connected pair of loopback endpoints in a fresh namespace. Each side has its own
/// transport (its own registrations), as two processes would: the two threads share no
/// lock, only the rings.
struct Pair {
    /// The client's transport: registrations the client posts.
    ct: LoopbackTransport,
    /// The server's transport: registrations the server posts or exports.
    st: LoopbackTransport,
    client: LoopbackEndpoint,
    server: LoopbackEndpoint,
}

impl Pair {
    /// A pair whose RDMA asks for `copy` (what it gets is settled at connect); `None`: the
    /// transport's defaults, which choose the path per transfer.
    fn new(copy: Option<CopyMode>) -> Result<Pair, String> {
        static N: AtomicU32 = AtomicU32::new(0);
        let ns = format!(
            "san-spi-bench-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let (mut st, mut ct) = (
            LoopbackTransport::new(ns.clone()),
            LoopbackTransport::new(ns),
        );
        if let Some(copy) = copy {
            st = st.with_copy_mode(copy);
            ct = ct.with_copy_mode(copy);
        }
        let addr: SocketAddr = "198.18.0.1:7100".parse().expect("literal");
        let listener = block_on(st.listen(addr)).map_err(|e| format!("listen: {e}"))?;
        let server = std::thread::spawn(move || block_on(listener.accept()));
        let client = block_on(ct.connect(addr)).map_err(|e| format!("connect: {e}"));
        let server = server
            .join()
            .map_err(|_| "the accepting thread panicked".to_string())?
            .map_err(|e| format!("accept: {e}"))?;
        Ok(Pair {
            ct,
            st,
            client: client?,
            server,
        })
    }

    fn close(&self) {
        self.client.close();
        self.server.close();
    }
}

/// Posts, retrying while the transport pushes back (a full queue is not an error).
///
/// The clock is read only once the queue pushed back: a post that goes through at once (every
/// post of a ping-pong) costs the transport's time alone, as the raw floor's copy does.
fn post(mut f: impl FnMut() -> Result<(), PostError>, what: &str) -> Result<(), String> {
    let mut since: Option<Instant> = None;
    loop {
        match f() {
            Ok(()) => return Ok(()),
            Err(PostError::QueueFull)
                if since.get_or_insert_with(Instant::now).elapsed() < STALL =>
            {
                std::hint::spin_loop()
            }
            Err(e) => return Err(format!("{what}: {e}")),
        }
    }
}

fn failed(c: &Completion) -> String {
    format!(
        "{:?} (token {}) completed with {:?}",
        c.op, c.token, c.result
    )
}

/// One-way latency of `size`-byte messages: round trips of send → receive → send back.
pub fn latency(size: usize, plan: &Plan) -> Result<RoundTrips, String> {
    let p = Pair::new(None)?;
    let r = latency_on(&p, size, plan);
    p.close();
    r
}

fn latency_on(p: &Pair, size: usize, plan: &Plan) -> Result<RoundTrips, String> {
    let len = size.max(1);
    let c_src = registered(&p.ct, len, 1, MemAccess::READ)?;
    let c_dst = registered(&p.ct, len * RECV_SLOTS, 0, MemAccess::WRITE)?;
    let s_src = registered(&p.st, len, 2, MemAccess::READ)?;
    let s_dst = registered(&p.st, len * RECV_SLOTS, 0, MemAccess::WRITE)?;
    for slot in 0..RECV_SLOTS {
        p.client
            .post_recv(&[c_dst.sge(slot * len..slot * len + size)], slot as u64)
            .map_err(|e| format!("post_recv: {e}"))?;
        p.server
            .post_recv(&[s_dst.sge(slot * len..slot * len + size)], slot as u64)
            .map_err(|e| format!("post_recv: {e}"))?;
    }
    let stop = AtomicBool::new(false);
    let c_send = c_src.sge(0..size);
    let s_send = s_src.sge(0..size);
    std::thread::scope(|scope| {
        let server = scope.spawn(|| {
            let r = serve_pingpong(&p.server, &s_dst, s_send, size, len, &stop);
            if r.is_err() {
                stop.store(true, Ordering::Release);
            }
            r
        });
        let r = client_pingpong(&p.client, &c_dst, c_send, size, len, plan, &stop);
        stop.store(true, Ordering::Release);
        let s = server
            .join()
            .unwrap_or_else(|_| Err("server thread panicked".into()));
        let rtts = r?;
        s?;
        Ok(rtts)
    })
}

fn serve_pingpong(
    ep: &LoopbackEndpoint,
    dst: &RegBuf<'_>,
    send: Sge,
    size: usize,
    len: usize,
    stop: &AtomicBool,
) -> Result<(), String> {
    let mut comps = [Completion::default(); 16];
    // Pure spinning, as the raw floor does: while the application polls, the progress
    // threads stay parked, so each spinning thread has a CPU.
    let mut idle = Idle::pure();
    let mut token = 0u64;
    loop {
        let n = ep.poll(&mut comps);
        if n == 0 {
            if stop.load(Ordering::Acquire) {
                return Ok(());
            }
            idle.spin();
            continue;
        }
        idle.reset();
        for c in &comps[..n] {
            match (c.op, c.result) {
                (Op::Recv, Ok(got)) if got as usize == size => {
                    // Reply first, repost second: the other receives posted cover the next
                    // message, so the repost stays off the round trip.
                    token += 1;
                    post(|| ep.post_send(&[send], 1 << 32 | token), "post_send")?;
                    let slot = c.token as usize;
                    post(
                        || ep.post_recv(&[dst.sge(slot * len..slot * len + size)], slot as u64),
                        "post_recv",
                    )?;
                }
                (Op::Send, Ok(_)) => {}
                _ => return Err(failed(c)),
            }
        }
    }
}

fn client_pingpong(
    ep: &LoopbackEndpoint,
    dst: &RegBuf<'_>,
    send: Sge,
    size: usize,
    len: usize,
    plan: &Plan,
    stop: &AtomicBool,
) -> Result<Vec<u64>, String> {
    let mut comps = [Completion::default(); 16];
    let mut rtts = Vec::with_capacity(plan.lat_max_iters);
    let mut idle = Idle::pure();
    let started = Instant::now();
    let mut i = 0u64;
    loop {
        let measuring = i >= plan.lat_warmup as u64;
        if plan.latency_done(i, rtts.len(), started) {
            return Ok(rtts);
        }
        let t0 = Instant::now();
        post(|| ep.post_send(&[send], 1 << 32 | i), "post_send")?;
        let mut got = None;
        let mut empty = 0u32;
        while got.is_none() {
            let n = ep.poll(&mut comps);
            if n == 0 {
                if stop.load(Ordering::Acquire) {
                    return Err("the server side stopped".into());
                }
                // The clock is read once per 1024 empty polls: reading it on each would
                // lengthen every poll of the spin (the raw floor reads none).
                empty = empty.wrapping_add(1);
                if empty.is_multiple_of(1024) && t0.elapsed() > STALL {
                    return Err(format!("no reply within {STALL:?}"));
                }
                idle.spin();
                continue;
            }
            idle.reset();
            for c in &comps[..n] {
                match (c.op, c.result) {
                    (Op::Recv, Ok(g)) if g as usize == size => got = Some(c.token as usize),
                    (Op::Send, Ok(_)) => {}
                    _ => return Err(failed(c)),
                }
            }
        }
        let rtt = t0.elapsed().as_nanos() as u64;
        // The reply is in; the receive it used goes back after the clock stopped, as the
        // server reposts after replying (the other receives posted cover the next message).
        let slot = got.expect("loop ends with a reply");
        post(
            || ep.post_recv(&[dst.sge(slot * len..slot * len + size)], slot as u64),
            "post_recv",
        )?;
        if measuring {
            rtts.push(rtt);
        }
        i += 1;
    }
}

/// One poll of a bandwidth client: how many operations of `op` completed, each with `size`
/// bytes (any other completion is an error). Spins once when there are none, failing after
/// [`STALL`] without progress, or as soon as `peer_failed` is set; `last` is when the last
/// completion came.
fn reap(
    ep: &LoopbackEndpoint,
    comps: &mut [Completion],
    op: Op,
    size: usize,
    idle: &mut Idle,
    last: &mut Instant,
    peer_failed: Option<&AtomicBool>,
) -> Result<u64, String> {
    let n = ep.poll(comps);
    if n == 0 {
        if peer_failed.is_some_and(|f| f.load(Ordering::Acquire)) {
            return Err("the server side stopped".into());
        }
        if last.elapsed() > STALL {
            return Err(format!("no {op:?} completion within {STALL:?}"));
        }
        idle.spin();
        return Ok(0);
    }
    idle.reset();
    for c in &comps[..n] {
        match (c.op, c.result) {
            (o, Ok(b)) if o == op && b as usize == size => {}
            _ => return Err(failed(c)),
        }
    }
    *last = Instant::now();
    Ok(n as u64)
}

/// Operations kept in flight for a bandwidth measurement of `size`-byte transfers.
fn depth(size: usize) -> usize {
    match size {
        0..=65536 => 16,
        65537..=1048576 => 8,
        1048577..=16777216 => 4,
        _ => 2,
    }
}

/// A bandwidth measurement: bytes moved and the time it took.
#[derive(Debug, Clone, Copy)]
pub struct Transfer {
    /// Bytes moved (after warm-up).
    pub bytes: u64,
    /// Operations completed (after warm-up).
    pub ops: u64,
    /// From the first post to the last completion.
    pub elapsed: Duration,
}

impl Transfer {
    /// GB/s (10^9 bytes per second).
    pub fn gb_per_s(&self) -> f64 {
        // A clock that did not move (never in practice) reads as 1 ns, not as infinity.
        self.bytes as f64 / self.elapsed.as_secs_f64().max(1e-9) / 1e9
    }
}

/// RDMA writes of `size` bytes into a region of the peer, [`depth`] in flight, on a
/// connection that asked for `copy`; the data that landed is compared with the source
/// afterwards. Also returns the copy mode the connection settled on.
pub fn rdma_write(
    size: usize,
    plan: &Plan,
    copy: Option<CopyMode>,
) -> Result<(Transfer, CopyMode), String> {
    let p = Pair::new(copy)?;
    let mode = p.client.copy_mode();
    let r = rdma_write_on(&p, size, plan);
    p.close();
    r.map(|t| (t, mode))
}

fn rdma_write_on(p: &Pair, size: usize, plan: &Plan) -> Result<Transfer, String> {
    let src = registered(&p.ct, size, 7, MemAccess::READ)?;
    let dst = registered(&p.st, size, 0, MemAccess::WRITE)?;
    let desc = dst.descriptor().map_err(|e| format!("export: {e}"))?;
    let target = RemoteTarget {
        descriptor: &desc,
        offset: 0,
    };
    let sge = [src.sge(0..size)];
    let depth = depth(size);
    let mut comps = [Completion::default(); 32];
    let mut idle = Idle::yielding();
    // Warm-up: one window of writes (faults in the ring and the pages on both sides).
    let mut run = |ops_min: u64, budget: Duration| -> Result<Transfer, String> {
        let start = Instant::now();
        let (mut posted, mut done) = (0u64, 0u64);
        let mut last = start;
        loop {
            let time_up = done >= ops_min && start.elapsed() >= budget;
            while !time_up && posted - done < depth as u64 {
                post(|| p.client.rdma_write(&sge, target, posted), "rdma_write")?;
                posted += 1;
            }
            if time_up && done == posted {
                return Ok(Transfer {
                    bytes: done * size as u64,
                    ops: done,
                    elapsed: last - start,
                });
            }
            done += reap(
                &p.client,
                &mut comps,
                Op::RdmaWrite,
                size,
                &mut idle,
                &mut last,
                None,
            )?;
        }
    };
    run(1, Duration::ZERO)?;
    let t = run(plan.bw_min_ops, plan.bw_budget)?;
    if dst.checksum(0..size) != src.checksum(0..size) {
        return Err("the RDMA-written region differs from the source".into());
    }
    Ok(t)
}

/// Sends of `size` bytes into receives the server thread keeps posted, [`depth`] in
/// flight; timed from the first send to the last receive completion.
pub fn send_recv(size: usize, plan: &Plan) -> Result<Transfer, String> {
    let p = Pair::new(None)?;
    let r = send_recv_on(&p, size, plan);
    p.close();
    r
}

fn send_recv_on(p: &Pair, size: usize, plan: &Plan) -> Result<Transfer, String> {
    let depth = depth(size);
    let src = registered(&p.ct, size, 9, MemAccess::READ)?;
    let dst = registered(&p.st, size * depth, 0, MemAccess::WRITE)?;
    for slot in 0..depth {
        p.server
            .post_recv(&[dst.sge(slot * size..slot * size + size)], slot as u64)
            .map_err(|e| format!("post_recv: {e}"))?;
    }
    let sge = [src.sge(0..size)];
    // Total messages, once the client knows it; u64::MAX until then.
    let total = AtomicU64::new(u64::MAX);
    let failed_flag = AtomicBool::new(false);
    let warmup = depth as u64;
    std::thread::scope(|scope| {
        let server = scope.spawn(|| -> Result<(Instant, Instant), String> {
            let mut comps = [Completion::default(); 32];
            let mut idle = Idle::yielding();
            let mut received = 0u64;
            let mut first = None;
            let mut last = Instant::now();
            while received < total.load(Ordering::Acquire) {
                let n = p.server.poll(&mut comps);
                if n == 0 {
                    if failed_flag.load(Ordering::Acquire) {
                        return Err("the client side stopped".into());
                    }
                    if last.elapsed() > STALL {
                        return Err(format!("no receive completion within {STALL:?}"));
                    }
                    idle.spin();
                    continue;
                }
                idle.reset();
                for c in &comps[..n] {
                    match (c.op, c.result) {
                        (Op::Recv, Ok(b)) if b as usize == size => {
                            received += 1;
                            if received == warmup {
                                // The measured part starts after the warm-up messages.
                                first = Some(Instant::now());
                            }
                            let slot = c.token as usize;
                            post(
                                || {
                                    p.server.post_recv(
                                        &[dst.sge(slot * size..slot * size + size)],
                                        slot as u64,
                                    )
                                },
                                "post_recv",
                            )?;
                        }
                        _ => {
                            failed_flag.store(true, Ordering::Release);
                            return Err(failed(c));
                        }
                    }
                }
                last = Instant::now();
            }
            Ok((first.unwrap_or(last), last))
        });
        let client = (|| -> Result<u64, String> {
            let mut comps = [Completion::default(); 32];
            let mut idle = Idle::yielding();
            let start = Instant::now();
            let (mut posted, mut done) = (0u64, 0u64);
            let mut last = start;
            loop {
                let measured = posted.saturating_sub(warmup);
                let time_up = posted >= warmup
                    && measured >= plan.bw_min_ops
                    && start.elapsed() >= plan.bw_budget;
                if time_up {
                    total.store(posted, Ordering::Release);
                }
                while !time_up && posted - done < depth as u64 {
                    post(|| p.client.post_send(&sge, posted), "post_send")?;
                    posted += 1;
                }
                if time_up && done == posted {
                    return Ok(posted);
                }
                let server_failed = Some(&failed_flag);
                done += reap(
                    &p.client,
                    &mut comps,
                    Op::Send,
                    size,
                    &mut idle,
                    &mut last,
                    server_failed,
                )?;
            }
        })();
        if client.is_err() {
            failed_flag.store(true, Ordering::Release);
        }
        let server = server
            .join()
            .unwrap_or_else(|_| Err("server thread panicked".into()));
        let posted = client?;
        let (first, last) = server?;
        let ops = posted - warmup;
        Ok(Transfer {
            bytes: ops * size as u64,
            ops,
            elapsed: last - first,
        })
    })
}
