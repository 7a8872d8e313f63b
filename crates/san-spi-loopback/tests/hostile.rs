//! Hostile and dying peers.
//!
//! - `hostile_peer_garbage_is_errors_not_panics`: a peer writes seeded random garbage —
//!   bytes anywhere in both rings, and well-formed records with random kinds, lengths,
//!   flags and keys (including real descriptors pushed out of bounds) — for 10^5 rounds over
//!   100 connections. The victim must complete every operation it posted exactly once,
//!   never panic or hang, and never write outside what it registered for writing.
//! - `peer_killed_mid_transfer_fails_pending_within_1s`: a peer process serving RDMA under
//!   load is killed with SIGKILL; every pending operation on the survivor completes with an
//!   error within one second.
//!
//! Seeds: `SAN_SPI_SEED` overrides the default; the seed is printed on failure.

use san_spi_core::transport::{
    block_on, Completion, Endpoint, Listener, MemAccess, Memory, RemoteTarget, Sge, Transport,
};
use san_spi_loopback::fault::{connect_raw, RawProbe};
use san_spi_loopback::{LoopbackEndpoint, LoopbackTransport};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn seed() -> u64 {
    std::env::var("SAN_SPI_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5EED_2026_1124)
}

/// Drains completions until `expected` arrived or `deadline`; returns them.
fn drain(ep: &LoopbackEndpoint, expected: usize, deadline: Instant) -> Vec<Completion> {
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

#[test]
fn hostile_peer_garbage_is_errors_not_panics() {
    let seed = seed();
    let result = std::panic::catch_unwind(|| hostile_run(seed));
    if let Err(e) = result {
        eprintln!("hostile peer test failed with SAN_SPI_SEED={seed}");
        std::panic::resume_unwind(e);
    }
}

fn hostile_run(seed: u64) {
    const CONNS: usize = 100;
    const ROUNDS: usize = 1000;
    let ns = format!("hostile-{}", std::process::id());
    let capacity = 64 << 10;
    let t = LoopbackTransport::new(ns.clone()).with_ring_capacity(capacity);
    let addr: SocketAddr = "198.18.0.1:9100".parse().unwrap();
    let listener = block_on(t.listen(addr)).unwrap();

    // Victim memory: a read-only region, a writable region between two guard zones, a
    // receive buffer and a send source.
    let mut ro = vec![0x11u8; 4096].into_boxed_slice();
    let mut guarded = vec![0x99u8; 3 * 4096].into_boxed_slice();
    let mut recv = vec![0u8; 8192].into_boxed_slice();
    let mut send = vec![0x42u8; 1024].into_boxed_slice();
    // SAFETY: every box outlives its registration (deregistered at the end of the test).
    let (h_ro, h_rw, h_recv, h_send) = unsafe {
        (
            t.register(ro.as_mut_ptr(), 4096, MemAccess::READ).unwrap(),
            t.register(guarded.as_mut_ptr().add(4096), 4096, MemAccess::READ_WRITE)
                .unwrap(),
            t.register(recv.as_mut_ptr(), 8192, MemAccess::WRITE)
                .unwrap(),
            t.register(send.as_mut_ptr(), 1024, MemAccess::READ)
                .unwrap(),
        )
    };
    let mut d_ro = [0u8; 32];
    let mut d_rw = [0u8; 32];
    t.export(h_ro, &mut d_ro).unwrap();
    t.export(h_rw, &mut d_rw).unwrap();
    let keys = [
        u64::from_le_bytes(d_ro[8..16].try_into().unwrap()),
        u64::from_le_bytes(d_rw[8..16].try_into().unwrap()),
    ];

    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let attacker = std::thread::spawn(move || {
        let mut rng = XorShift(seed | 1);
        for _ in 0..CONNS {
            let peer = connect_raw(&ns, addr, capacity, RawProbe::Refuse).expect("raw connect");
            for _ in 0..ROUNDS {
                match rng.below(10) {
                    0..=3 => {
                        let mut bytes = [0u8; 64];
                        for b in bytes.iter_mut() {
                            *b = rng.next() as u8;
                        }
                        let n = 1 + rng.below(64) as usize;
                        let at = rng.below(peer.len() as u64) as usize;
                        peer.scribble(at, &bytes[..n]);
                    }
                    4 => {
                        // Head, tail or sleeping word of either ring.
                        let ring = rng.below(2) as usize * (192 + capacity);
                        let word = [0, 64, 128][rng.below(3) as usize];
                        peer.scribble(ring + word, &rng.next().to_le_bytes());
                    }
                    _ => {
                        let kind = rng.below(9) as u16;
                        let flags = rng.below(8) as u16;
                        let key = match rng.below(3) {
                            0 => keys[0],
                            1 => keys[1],
                            _ => rng.next(),
                        };
                        let b = match rng.below(3) {
                            0 => rng.below(8192),
                            1 => rng.next(),
                            _ => 0,
                        };
                        let mut payload = vec![0u8; rng.below(300) as usize];
                        for x in payload.iter_mut() {
                            *x = rng.next() as u8;
                        }
                        if payload.len() >= 8 && rng.below(2) == 0 {
                            payload[..8].copy_from_slice(&rng.below(16384).to_le_bytes());
                        }
                        peer.push_record(kind, flags, rng.next() % 64, key, b, &payload);
                    }
                }
                peer.signal();
            }
            drop(peer);
            done_tx.send(()).unwrap();
        }
    });

    let sge = |h, p: *const u8, len: u32| Sge {
        handle: h,
        addr: p as u64,
        len,
    };
    for conn in 0..CONNS {
        let ep = block_on(listener.accept()).unwrap();
        // Work the victim has outstanding while the garbage arrives.
        let mut posted = 0;
        for i in 0..2u64 {
            if ep
                .post_recv(&[sge(h_recv, recv.as_ptr(), 8192)], conn as u64 * 10 + i)
                .is_ok()
            {
                posted += 1;
            }
        }
        if ep.post_send(&[sge(h_send, send.as_ptr(), 1024)], 7).is_ok() {
            posted += 1;
        }
        let target = RemoteTarget {
            descriptor: &d_rw,
            offset: 0,
        };
        if ep
            .rdma_read(&[sge(h_recv, recv.as_ptr(), 512)], target, 8)
            .is_ok()
        {
            posted += 1;
        }
        done_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("attacker finished the connection");
        // The attacker is gone: everything posted completes, once, promptly.
        let got = drain(&ep, posted, Instant::now() + Duration::from_secs(5));
        assert_eq!(got.len(), posted, "connection {conn}: completions {got:?}");
        ep.close();
        assert_eq!(
            drain(&ep, 1, Instant::now() + Duration::from_millis(20)).len(),
            0
        );
    }
    attacker.join().expect("attacker thread");
    assert!(ro.iter().all(|&b| b == 0x11), "read-only region written");
    assert!(
        guarded[..4096].iter().all(|&b| b == 0x99),
        "guard before the writable region written"
    );
    assert!(
        guarded[8192..].iter().all(|&b| b == 0x99),
        "guard after the writable region written"
    );
    assert!(send.iter().all(|&b| b == 0x42), "send source written");
    for h in [h_ro, h_rw, h_recv, h_send] {
        t.deregister(h).unwrap();
    }
}

const CHILD_ENV: &str = "SAN_SPI_LOOPBACK_KILL_CHILD";

/// The peer process: serves a 64 MiB region and echoes, until killed.
fn child_peer(spec: &str) -> ! {
    let (ns, addr) = spec.split_once(' ').expect("namespace and address");
    let t = LoopbackTransport::new(ns);
    let addr: SocketAddr = addr.parse().unwrap();
    let listener = block_on(t.listen(addr)).unwrap();
    println!("child listening");
    let ep = block_on(listener.accept()).unwrap();
    let len = 64 << 20;
    let mut region = vec![7u8; len].into_boxed_slice();
    let mut desc = vec![0u8; 32];
    // SAFETY: the region lives until the process is killed.
    let h = unsafe { t.register(region.as_mut_ptr(), len, MemAccess::READ_WRITE) }.unwrap();
    t.export(h, &mut desc).unwrap();
    // SAFETY: as above.
    let hd = unsafe { t.register(desc.as_mut_ptr(), 32, MemAccess::READ) }.unwrap();
    ep.post_send(
        &[Sge {
            handle: hd,
            addr: desc.as_ptr() as u64,
            len: 32,
        }],
        1,
    )
    .unwrap();
    loop {
        ep.wait(Duration::from_millis(100));
        let mut c = [Completion::default(); 8];
        let _ = ep.poll(&mut c);
    }
}

#[test]
fn peer_killed_mid_transfer_fails_pending_within_1s() {
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        child_peer(&spec);
    }
    let ns = format!("sigkill-{}", std::process::id());
    let addr = "198.18.0.1:9200";
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "peer_killed_mid_transfer_fails_pending_within_1s",
            "--nocapture",
        ])
        .env(CHILD_ENV, format!("{ns} {addr}"))
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let t = LoopbackTransport::new(ns);
    let deadline = Instant::now() + Duration::from_secs(20);
    let ep = loop {
        match block_on(t.connect(addr.parse().unwrap())) {
            Ok(ep) => break ep,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => {
                let _ = child.kill();
                panic!("cannot connect to the child: {e}");
            }
        }
    };
    let len = 16 << 20;
    let mut buf = vec![0u8; 4 * len].into_boxed_slice();
    let mut desc = [0u8; 32];
    // SAFETY: both live until the end of the test, after every completion.
    let (h, hdesc) = unsafe {
        (
            t.register(buf.as_mut_ptr(), 4 * len, MemAccess::READ_WRITE)
                .unwrap(),
            t.register(desc.as_mut_ptr(), 32, MemAccess::WRITE).unwrap(),
        )
    };
    ep.post_recv(
        &[Sge {
            handle: hdesc,
            addr: desc.as_ptr() as u64,
            len: 32,
        }],
        0,
    )
    .unwrap();
    let first = drain(&ep, 1, Instant::now() + Duration::from_secs(10));
    assert_eq!(first.len(), 1, "descriptor from the child");
    assert_eq!(first[0].result, Ok(32));
    // Load: RDMA reads and writes of 16 MiB, and receives that never complete.
    let mut posted = 0;
    for i in 0..4u64 {
        let sge = Sge {
            handle: h,
            addr: buf.as_ptr() as u64 + i * len as u64,
            len: len as u32,
        };
        let target = RemoteTarget {
            descriptor: &desc,
            offset: 0,
        };
        if i % 2 == 0 {
            ep.rdma_read(&[sge], target, 100 + i).unwrap();
        } else {
            ep.rdma_write(&[sge], target, 100 + i).unwrap();
        }
        posted += 1;
    }
    for i in 0..3u64 {
        ep.post_recv(
            &[Sge {
                handle: h,
                addr: buf.as_ptr() as u64,
                len: 1024,
            }],
            200 + i,
        )
        .unwrap();
        posted += 1;
    }
    std::thread::sleep(Duration::from_millis(5));
    child.kill().unwrap();
    let killed = Instant::now();
    let got = drain(&ep, posted, killed + Duration::from_secs(1));
    let took = killed.elapsed();
    let _ = child.wait();
    assert_eq!(
        got.len(),
        posted,
        "only {} of {posted} completed within 1 s: {got:?}",
        got.len()
    );
    assert!(took <= Duration::from_secs(1), "took {took:?}");
    let errors = got.iter().filter(|c| c.result.is_err()).count();
    assert!(errors >= 3, "the receives at least must fail: {got:?}");
    ep.close();
    t.deregister(h).unwrap();
    t.deregister(hdesc).unwrap();
}
