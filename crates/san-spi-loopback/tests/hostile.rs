//! Hostile and dying peers.
//!
//! - `hostile_peer_garbage_is_errors_not_panics`: a peer writes seeded random garbage —
//!   bytes anywhere in both rings, and well-formed records with random kinds, lengths,
//!   flags and keys (including real descriptors pushed out of bounds, and single-copy
//!   requests with garbage addresses and lengths) — for 10^5 rounds over 100 connections.
//!   The peer runs in the victim's process, so it never gets single copy (it refuses it,
//!   or shows a bogus probe): its single-copy requests must be refused. The victim must
//!   complete every operation it posted exactly once, never panic or hang, and never write
//!   outside what it registered for writing.
//! - `hostile_peer_in_another_process_gets_single_copy_and_only_errors`: the same, from a
//!   child process that negotiates single copy honestly, with mostly single-copy requests:
//!   garbage pieces (anywhere in its own address space, the victim's addresses, wrapping,
//!   unmapped, lengths that do not add up) and some valid ones. The victim serves them with
//!   cross-memory attach into the attacker only; its own memory outside the writable
//!   region is never written, and the valid requests succeed.
//! - `peer_killed_mid_transfer_fails_pending_within_1s`: a peer process serving RDMA under
//!   load is killed with SIGKILL; every pending operation on the survivor completes with an
//!   error within one second.
//! - `a_message_cut_by_the_close_is_a_reset`: a peer closes in the middle of a message;
//!   the receive holding its first part fails with WSAECONNRESET, never the clean
//!   WSAEDISCON.
//! - `corruption_after_the_peer_left_still_fails_everything`: garbage met while draining
//!   what a departed peer left fails the receive that met it; nothing waits forever.
//!
//! Seeds: `SAN_SPI_SEED` overrides the default; the seed is printed on failure.

mod common;

use san_spi_core::transport::{
    block_on, Completion, Endpoint, Listener, MemAccess, Memory, MemoryHandle, RemoteTarget, Sge,
    Transport,
};
use san_spi_loopback::fault::{connect_raw, RawPeer, RawProbe};
use san_spi_loopback::{CopyMode, LoopbackEndpoint, LoopbackTransport};
use san_spi_testkit::RegisteredBuf;
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

/// The victim's memory: a read-only region, a writable region between two guard zones, a
/// receive buffer and a send source, registered with its transport (the guarded buffer as
/// a whole read-only, its middle page again, writable).
struct Victim<'t> {
    t: &'t LoopbackTransport,
    ro: RegisteredBuf<&'t LoopbackTransport>,
    guarded: RegisteredBuf<&'t LoopbackTransport>,
    recv: RegisteredBuf<&'t LoopbackTransport>,
    send: RegisteredBuf<&'t LoopbackTransport>,
    /// The writable middle page of `guarded`.
    rw: MemoryHandle,
    /// The writable region's descriptor.
    d_rw: [u8; 32],
    /// The keys of the read-only and the writable region.
    keys: [u64; 2],
}

impl<'t> Victim<'t> {
    fn new(t: &'t LoopbackTransport) -> Victim<'t> {
        let reg = |len, fill, access| RegisteredBuf::new(t, len, fill, access).unwrap();
        let ro = reg(4096, 0x11, MemAccess::READ);
        let guarded = reg(3 * 4096, 0x99, MemAccess::READ);
        let recv = reg(8192, 0, MemAccess::WRITE);
        let send = reg(1024, 0x42, MemAccess::READ);
        // SAFETY: the middle page lies inside `guarded`, which the `Victim` owns and frees
        // only after `deregister` (or its drop) has deregistered this registration, once
        // the connections using it are closed; the bytes are reached only by copy.
        let rw =
            unsafe { t.register(guarded.as_ptr().add(4096), 4096, MemAccess::READ_WRITE) }.unwrap();
        let d_ro: [u8; 32] = ro.descriptor().unwrap()[..].try_into().unwrap();
        let mut d_rw = [0u8; 32];
        t.export(rw, &mut d_rw).unwrap();
        let key = |d: &[u8; 32]| u64::from_le_bytes(d[8..16].try_into().unwrap());
        Victim {
            t,
            keys: [key(&d_ro), key(&d_rw)],
            ro,
            guarded,
            recv,
            send,
            rw,
            d_rw,
        }
    }

    /// Process addresses of the read-only and the writable region.
    fn addrs(&self) -> [u64; 2] {
        [self.ro.addr(), self.guarded.addr() + 4096]
    }

    /// Posts what the victim has outstanding while garbage arrives — two receives, a send,
    /// an RDMA read — and returns how many were accepted.
    fn post_work(&self, ep: &LoopbackEndpoint, conn: usize) -> usize {
        let target = RemoteTarget {
            descriptor: &self.d_rw,
            offset: 0,
        };
        let recv = |i: u64| ep.post_recv(&[self.recv.sge(0..8192)], conn as u64 * 10 + i);
        [
            recv(0),
            recv(1),
            ep.post_send(&[self.send.sge(0..1024)], 7),
            ep.rdma_read(&[self.recv.sge(0..512)], target, 8),
        ]
        .iter()
        .filter(|r| r.is_ok())
        .count()
    }

    /// Nothing outside the writable region was written.
    fn assert_untouched(&self) {
        assert!(self.ro.all(0..4096, 0x11), "read-only region written");
        assert!(
            self.guarded.all(0..4096, 0x99),
            "guard before the writable region written"
        );
        assert!(
            self.guarded.all(8192..3 * 4096, 0x99),
            "guard after the writable region written"
        );
        assert!(self.send.all(0..1024, 0x42), "send source written");
    }

    fn deregister(mut self) {
        self.t.deregister(self.rw).unwrap();
        for b in [
            &mut self.ro,
            &mut self.guarded,
            &mut self.recv,
            &mut self.send,
        ] {
            b.deregister().unwrap();
        }
    }
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

    let victim = Victim::new(&t);
    let keys = victim.keys;
    let victim_addrs = victim.addrs();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let attacker = std::thread::spawn(move || {
        let mut rng = XorShift(seed | 1);
        let mut scratch = vec![0u8; 16 << 10];
        for conn in 0..CONNS {
            // Never an honest single-copy probe from inside the victim's process.
            let probe = if conn % 4 == 3 {
                RawProbe::Bogus(rng.next() % (1 << 47))
            } else {
                RawProbe::Refuse
            };
            // SAFETY: `probe` is `Refuse` or `Bogus`, never `Honest`: the victim in this
            // process refuses this peer's single-copy requests (connect_raw's promise).
            let peer = unsafe { connect_raw(&ns, addr, capacity, probe) }.expect("raw connect");
            assert!(!peer.victim_serves, "single copy served to {probe:?}");
            attack(
                &peer,
                &mut rng,
                &keys,
                &victim_addrs,
                &mut scratch,
                ROUNDS,
                Mix::RINGS,
            );
            drop(peer);
            done_tx.send(()).unwrap();
        }
    });

    for conn in 0..CONNS {
        let ep = block_on(listener.accept()).unwrap();
        assert_eq!(ep.peer_copy_mode(), CopyMode::Bounce);
        // Work the victim has outstanding while the garbage arrives.
        let posted = victim.post_work(&ep, conn);
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
    victim.assert_untouched();
    victim.deregister();
}

/// How an attack round is chosen, in parts per thousand.
#[derive(Clone, Copy)]
struct Mix {
    /// Random bytes anywhere in both rings.
    scribble: u64,
    /// A random head, tail or sleeping word.
    words: u64,
    /// A single-copy request with a structured (mostly garbage) payload.
    single_copy: u64,
    /// Of those, malformed ones (too many pieces, ragged): they end the connection.
    malformed: u64,
    // The rest: a well-formed record of a random kind.
}

impl Mix {
    /// Mostly ring garbage: the in-process attacker.
    const RINGS: Mix = Mix {
        scribble: 400,
        words: 100,
        single_copy: 100,
        malformed: 200,
    };
    /// Mostly single-copy requests, rarely breaking the connection (so many get served).
    const SINGLE_COPY: Mix = Mix {
        scribble: 1,
        words: 1,
        single_copy: 990,
        malformed: 5,
    };
}

const SC_WRITE: u16 = 7;
const SC_READ: u16 = 8;

/// A single-copy request payload: `total u64` then `(address u64, length u64)` pieces,
/// mostly garbage, sometimes valid (pieces inside `scratch` adding up to the total).
fn single_copy_payload(
    rng: &mut XorShift,
    victim_addrs: &[u64],
    scratch: &mut [u8],
    malformed: bool,
) -> Vec<u8> {
    let own = scratch.as_mut_ptr() as u64;
    let own_len = scratch.len() as u64;
    let valid = !malformed && rng.below(3) == 0;
    let n = match rng.below(8) {
        _ if malformed && rng.below(2) == 0 => 65 + rng.below(20) as usize, // too many
        _ if valid => 1 + rng.below(4) as usize,
        0 => 0,
        1..=3 => 1,
        _ => 1 + rng.below(64) as usize,
    };
    let mut pieces = Vec::with_capacity(n);
    let mut sum = 0u64;
    for _ in 0..n {
        let (addr, len) = if valid {
            let len = rng.below(256);
            (own + rng.below(own_len - 256), len)
        } else {
            let addr = match rng.below(7) {
                0 => rng.next(),
                1 => rng.below(1 << 16),              // near null
                2 => own + rng.below(own_len + 4096), // own memory, or just past it
                3 => victim_addrs[rng.below(victim_addrs.len() as u64) as usize] + rng.below(8192),
                4 => u64::MAX - rng.below(4096),            // wraps
                5 => 0x7fff_ffff_0000 + rng.below(1 << 16), // top of user space
                _ => 0xffff_8000_0000_0000 + rng.below(1 << 30), // kernel space
            };
            let len = match rng.below(4) {
                0 => rng.below(64),
                1 => rng.below(8192),
                2 => rng.next(),
                _ => u64::MAX - rng.below(16),
            };
            (addr, len)
        };
        sum = sum.wrapping_add(len);
        pieces.push((addr, len));
    }
    let total = if valid || rng.below(2) == 0 {
        sum
    } else {
        rng.below(8192)
    };
    let mut payload = total.to_le_bytes().to_vec();
    for (a, l) in pieces {
        payload.extend_from_slice(&a.to_le_bytes());
        payload.extend_from_slice(&l.to_le_bytes());
    }
    if malformed && n <= 64 {
        // Ragged: not a whole number of pieces.
        payload.truncate(rng.below(payload.len() as u64) as usize);
        payload.extend_from_slice(&[0xAB; 3]);
    }
    payload
}

/// `rounds` rounds of garbage against the victim behind `peer`.
fn attack(
    peer: &RawPeer,
    rng: &mut XorShift,
    keys: &[u64; 2],
    victim_addrs: &[u64],
    scratch: &mut [u8],
    rounds: usize,
    mix: Mix,
) {
    let capacity = peer.capacity;
    for _ in 0..rounds {
        let roll = rng.below(1000);
        let key = match rng.below(3) {
            0 => keys[0],
            1 => keys[1],
            _ => rng.next(),
        };
        if roll < mix.scribble {
            let mut bytes = [0u8; 64];
            for b in bytes.iter_mut() {
                *b = rng.next() as u8;
            }
            let n = 1 + rng.below(64) as usize;
            let at = rng.below(peer.len() as u64) as usize;
            peer.scribble(at, &bytes[..n]);
        } else if roll < mix.scribble + mix.words {
            // Head, tail or sleeping word of either ring.
            let ring = rng.below(2) as usize * (192 + capacity);
            let word = [0, 64, 128][rng.below(3) as usize];
            peer.scribble(ring + word, &rng.next().to_le_bytes());
        } else if roll < mix.scribble + mix.words + mix.single_copy {
            let kind = if rng.below(2) == 0 { SC_WRITE } else { SC_READ };
            let offset = match rng.below(4) {
                0 => rng.next(),
                1 => 4096 - rng.below(300),
                _ => rng.below(4096),
            };
            let malformed = rng.below(1000) < mix.malformed;
            let payload = single_copy_payload(rng, victim_addrs, scratch, malformed);
            peer.push_record(
                kind,
                rng.below(8) as u16,
                rng.next() % 64,
                key,
                offset,
                &payload,
            );
        } else {
            let kind = rng.below(10) as u16; // includes the single-copy kinds and an unknown one
            let flags = rng.below(8) as u16;
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
        peer.signal();
    }
}

const HOSTILE_CHILD_ENV: &str = "SAN_SPI_LOOPBACK_HOSTILE_CHILD";
const HOSTILE_CONNS: usize = 20;
const HOSTILE_ROUNDS: usize = 2000;

/// The attacker process: `HOSTILE_CONNS` connections of single-copy garbage. Exits 0 when
/// the honest connections got some valid requests served, 2 otherwise.
fn hostile_child(spec: &str) -> ! {
    common::watchdog(Duration::from_secs(120));
    let f: Vec<&str> = spec.split(' ').collect();
    let (ns, addr) = (f[0], f[1].parse::<SocketAddr>().unwrap());
    let seed: u64 = f[2].parse().unwrap();
    let keys = [f[3].parse().unwrap(), f[4].parse().unwrap()];
    let victim_addrs = [f[5].parse().unwrap(), f[6].parse().unwrap()];
    let capacity = 64 << 10;
    let mut rng = XorShift(seed | 1);
    let mut scratch = vec![0x77u8; 16 << 10];
    let (mut served, mut refused) = (0, 0);
    for conn in 0..HOSTILE_CONNS {
        let probe = if conn % 5 == 4 {
            RawProbe::Bogus(rng.next() % (1 << 47))
        } else {
            RawProbe::Honest
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        let peer = loop {
            // SAFETY: this is the attacker child process (`hostile_child`), not the
            // victim's: the kernel confines the victim's single-copy transfers for this
            // `Honest` peer to this process (connect_raw's promise).
            match unsafe { connect_raw(ns, addr, capacity, probe) } {
                Ok(p) => break p,
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                Err(e) => panic!("raw connect: {e}"),
            }
        };
        for _ in 0..HOSTILE_ROUNDS / 100 {
            attack(
                &peer,
                &mut rng,
                &keys,
                &victim_addrs,
                &mut scratch,
                100,
                Mix::SINGLE_COPY,
            );
            // Keep the victim's outbound ring draining, so its ACKs never stall it.
            std::thread::sleep(Duration::from_micros(200));
            let (ok, err) = peer.drain_acks();
            if peer.victim_serves {
                served += ok;
            }
            refused += err;
        }
        drop(peer);
    }
    eprintln!("hostile child: {served} single-copy requests served, {refused} refused");
    std::process::exit(if served > 0 && refused > 0 { 0 } else { 2 });
}

#[test]
fn hostile_peer_in_another_process_gets_single_copy_and_only_errors() {
    if let Ok(spec) = std::env::var(HOSTILE_CHILD_ENV) {
        hostile_child(&spec);
    }
    let seed = seed();
    let ns = format!("hostile-x-{}", std::process::id());
    let capacity = 64 << 10;
    let t = LoopbackTransport::new(ns.clone()).with_ring_capacity(capacity);
    let addr: SocketAddr = "198.18.0.1:9101".parse().unwrap();
    let listener = block_on(t.listen(addr)).unwrap();
    let victim = Victim::new(&t);
    let [k_ro, k_rw] = victim.keys;
    let [a_ro, a_rw] = victim.addrs();
    let spec = format!("{ns} {addr} {seed} {k_ro} {k_rw} {a_ro} {a_rw}");
    let test = "hostile_peer_in_another_process_gets_single_copy_and_only_errors";
    let mut child = common::spawn_self(test, HOSTILE_CHILD_ENV, &spec, |_| {});
    // Accept on a thread, so that a dead child fails the test instead of hanging it.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for _ in 0..HOSTILE_CONNS {
            if tx.send(block_on(listener.accept())).is_err() {
                return;
            }
        }
    });
    let mut single_copy = 0;
    for conn in 0..HOSTILE_CONNS {
        let ep = loop {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(ep) => break ep.unwrap(),
                Err(_) => {
                    if let Some(status) = child.exited() {
                        panic!("SAN_SPI_SEED={seed}: the attacker exited early: {status}");
                    }
                }
            }
        };
        if conn % 5 == 4 {
            assert_eq!(
                ep.peer_copy_mode(),
                CopyMode::Bounce,
                "bogus probe accepted"
            );
        } else if ep.peer_copy_mode() == CopyMode::SingleCopy {
            single_copy += 1;
        }
        // Its RDMA read goes single copy towards the attacker when it claims to serve it:
        // never answered.
        let posted = victim.post_work(&ep, conn);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !ep.is_closed() {
            assert!(
                Instant::now() < deadline,
                "SAN_SPI_SEED={seed}: connection {conn} never ended"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        let got = drain(&ep, posted, Instant::now() + Duration::from_secs(5));
        assert_eq!(
            got.len(),
            posted,
            "SAN_SPI_SEED={seed}: connection {conn}: completions {got:?}"
        );
        ep.close();
    }
    let status = child.wait_exit(Duration::from_secs(30));
    victim.assert_untouched();
    if common::ptrace_unrestricted() || single_copy > 0 {
        assert_eq!(single_copy, HOSTILE_CONNS - HOSTILE_CONNS / 5);
        assert!(
            status.success(),
            "SAN_SPI_SEED={seed}: no valid single-copy request was served ({status})"
        );
    } else {
        eprintln!("cross-memory attach to the child is not permitted here: single copy untested");
    }
    victim.deregister();
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
    let region = RegisteredBuf::new(&t, len, 7, MemAccess::READ_WRITE).unwrap();
    let desc = RegisteredBuf::new(&t, 32, 0, MemAccess::READ).unwrap();
    desc.write(0, &region.descriptor().unwrap());
    ep.post_send(&[desc.sge(0..32)], 1).unwrap();
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
    let mut buf = RegisteredBuf::new(&t, 4 * len, 0, MemAccess::READ_WRITE).unwrap();
    let mut descbuf = RegisteredBuf::new(&t, 32, 0, MemAccess::WRITE).unwrap();
    ep.post_recv(&[descbuf.sge(0..32)], 0).unwrap();
    let first = drain(&ep, 1, Instant::now() + Duration::from_secs(10));
    assert_eq!(first.len(), 1, "descriptor from the child");
    assert_eq!(first[0].result, Ok(32));
    let desc = descbuf.to_vec(0..32);
    // Load: RDMA reads and writes of 16 MiB, and receives that never complete.
    let mut posted = 0;
    for i in 0..4u64 {
        let sge = buf.sge(i as usize * len..(i as usize + 1) * len);
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
        ep.post_recv(&[buf.sge(0..1024)], 200 + i).unwrap();
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
    buf.deregister().unwrap();
    descbuf.deregister().unwrap();
}

const SEND: u16 = 1;
const CLOSE: u16 = 6;
const FIRST: u16 = 1;

/// A victim listening at `port` and a raw peer connected to it that has written
/// `records` — `(kind, flags, b, payload)` each — into the victim's ring, unsignalled.
fn victim_with_raw_records(
    test: &str,
    port: u16,
    records: &'static [(u16, u16, u64, &'static [u8])],
) -> (LoopbackTransport, LoopbackEndpoint, RawPeer) {
    let ns = format!("{test}-{}", std::process::id());
    let capacity = 64 << 10;
    let t = LoopbackTransport::new(ns.clone()).with_ring_capacity(capacity);
    let addr = SocketAddr::from(([198, 18, 0, 1], port));
    let listener = block_on(t.listen(addr)).unwrap();
    let peer = std::thread::spawn(move || {
        // SAFETY: `Refuse`: the victim serves no single-copy request of this peer.
        let peer =
            unsafe { connect_raw(&ns, addr, capacity, RawProbe::Refuse) }.expect("raw connect");
        for &(kind, flags, b, payload) in records {
            assert!(peer.push_record(kind, flags, 0, 0, b, payload));
        }
        peer
    });
    let ep = block_on(listener.accept()).unwrap();
    (t, ep, peer.join().unwrap())
}

/// A zeroed `len`-byte buffer registered READ_WRITE with `t`, and its SGE.
fn registered_buffer(
    t: &LoopbackTransport,
    len: usize,
) -> (RegisteredBuf<&LoopbackTransport>, Sge) {
    let buf = RegisteredBuf::new(t, len, 0, MemAccess::READ_WRITE).expect("register");
    let sge = buf.sge(0..len);
    (buf, sge)
}

/// A close that cuts a message short is a reset, not an end of stream: the receive that
/// held the first part fails with WSAECONNRESET (never WSAEDISCON, which the socket layer
/// would report as a clean zero-byte end), and so does the next; nothing is written past
/// the part that arrived.
#[test]
fn a_message_cut_by_the_close_is_a_reset() {
    // The first 100 bytes of a 200-byte message, then the close.
    let (t, ep, peer) = victim_with_raw_records(
        "cut",
        9160,
        &[(SEND, FIRST, 200, &[7u8; 100]), (CLOSE, 0, 0, &[])],
    );
    let (mut buf, sge) = registered_buffer(&t, 256);
    ep.post_recv(&[sge], 1).unwrap();
    peer.signal();
    let got = drain(&ep, 1, Instant::now() + Duration::from_secs(5));
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(
        (got[0].token, got[0].result),
        (1, Err(san_spi_core::WsaError::ConnReset))
    );
    match ep.post_recv(&[sge], 2) {
        Ok(()) => {
            let next = drain(&ep, 1, Instant::now() + Duration::from_secs(5));
            assert_eq!(
                next.first().map(|c| c.result),
                Some(Err(san_spi_core::WsaError::ConnReset)),
                "{next:?}"
            );
        }
        Err(e) => assert_eq!(e, san_spi_core::transport::PostError::Closed),
    }
    assert!(buf.all(100..256, 0), "written past the part");
    drop(peer);
    ep.close();
    buf.deregister().unwrap();
}

/// Corruption met while draining what a departed peer left still fails everything: the
/// receive that found it completes (with an error), nothing waits forever.
#[test]
fn corruption_after_the_peer_left_still_fails_everything() {
    // Half a message, then a record of no known kind; then the peer is gone.
    let (t, ep, peer) = victim_with_raw_records(
        "leftbad",
        9170,
        &[(SEND, FIRST, 200, &[7u8; 100]), (0x77, 0, 0, &[])],
    );
    peer.signal();
    drop(peer);
    // Let the hang-up be seen before any receive exists (the message waits for one).
    std::thread::sleep(Duration::from_millis(100));
    let (mut buf, sge) = registered_buffer(&t, 256);
    ep.post_recv(&[sge], 1).unwrap();
    let got = drain(&ep, 1, Instant::now() + Duration::from_secs(5));
    assert_eq!(got.len(), 1, "the receive never completed");
    assert_eq!(
        (got[0].token, got[0].result),
        (1, Err(san_spi_core::WsaError::ConnReset))
    );
    ep.close();
    buf.deregister().unwrap();
}

/// A peer that hands over memory whose ring positions are off the record grid: the victim
/// accepts, and every operation it posts fails promptly; nothing panics.
#[test]
fn peer_memory_off_the_record_grid_is_corruption_not_a_panic() {
    use san_spi_loopback::fault::connect_raw_off_grid;
    let ns = format!("offgrid-{}", std::process::id());
    let capacity = 64 << 10;
    let t = LoopbackTransport::new(ns.clone()).with_ring_capacity(capacity);
    let addr: SocketAddr = "198.18.0.1:9150".parse().unwrap();
    let listener = block_on(t.listen(addr)).unwrap();
    let attacker = std::thread::spawn(move || {
        // SAFETY: an off-grid peer refuses single copy; nothing else is promised.
        let peer = unsafe { connect_raw_off_grid(&ns, addr, capacity) }.expect("raw connect");
        peer.signal();
        std::thread::sleep(Duration::from_millis(300));
        drop(peer);
    });
    let ep = block_on(listener.accept()).unwrap();
    let (mut buf, sge) = registered_buffer(&t, 64);
    let mut posted = 0;
    if ep.post_recv(&[sge], 1).is_ok() {
        posted += 1;
    }
    if ep.post_send(&[sge], 2).is_ok() {
        posted += 1;
    }
    let got = drain(&ep, posted, Instant::now() + Duration::from_secs(5));
    assert_eq!(got.len(), posted, "{got:?}");
    assert!(got.iter().all(|c| c.result.is_err()), "{got:?}");
    attacker.join().expect("attacker");
    ep.close();
    buf.deregister().unwrap();
}

const WRITE: u16 = 2;

/// An RDMA write whose start the peer put at `u64::MAX - 3`, continued past it: the
/// sequence check must not overflow (a panic in a debug build, a wrap in release) but call
/// it corruption and fail the connection with errors — in the progress thread and in the
/// application's own `poll`, which runs the same handlers inline.
#[test]
fn a_write_starting_near_u64_max_is_corruption_not_an_overflow() {
    for (round, polling) in [(0u16, false), (1, true)] {
        let mut first = 16u64.to_le_bytes().to_vec(); // total
        first.extend_from_slice(&[1u8; 8]); // 8 bytes received: start + 8 wraps
        let records: &'static [(u16, u16, u64, &'static [u8])] = Box::leak(
            vec![
                (
                    WRITE,
                    FIRST,
                    u64::MAX - 3,
                    &*Box::leak(first.into_boxed_slice()),
                ),
                // Where a wrapped sum would put the next chunk (what a release build accepted).
                (WRITE, 0, (u64::MAX - 3).wrapping_add(8), &[2u8; 4][..]),
            ]
            .into_boxed_slice(),
        );
        let (t, ep, peer) = victim_with_raw_records("wrap", 9180 + round, records);
        let (mut buf, sge) = registered_buffer(&t, 64);
        ep.post_recv(&[sge], 1).unwrap();
        peer.signal();
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut got = Vec::new();
        while got.is_empty() && Instant::now() < deadline {
            if polling {
                let mut c = [Completion::default(); 4];
                let n = ep.poll(&mut c);
                got.extend_from_slice(&c[..n]);
            } else {
                // Only the progress thread works: no poll until it has failed the receive.
                ep.wait(Duration::from_millis(5));
                if peer.victim_consumed() > 0 {
                    got = drain(&ep, 1, Instant::now() + Duration::from_secs(1));
                }
            }
        }
        assert_eq!(got.len(), 1, "round {round}: the receive never failed");
        assert!(got[0].result.is_err(), "round {round}: {got:?}");
        // The attack reached the handler: the first record was consumed.
        assert!(
            peer.victim_consumed() >= RawPeer::record_bytes(16),
            "round {round}: the victim consumed {} bytes",
            peer.victim_consumed()
        );
        drop(peer);
        ep.close();
        buf.deregister().unwrap();
    }
}
