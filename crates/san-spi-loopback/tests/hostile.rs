//! Hostile and dying peers.
//!
//! - `hostile_peer_garbage_is_errors_not_panics`: once the victim's endpoint runs and has
//!   posted its work, a peer in the victim's process sends, over 20 connections, 120,000
//!   well-formed but wrong records (RDMA writes and read requests with bad keys, offsets
//!   and lengths, answers to operations never started, messages for the victim's
//!   receives), respecting the ring's flow control so that each one is read; every other
//!   connection then ends in garbage (scribbled bytes and positions, unknown kinds,
//!   impossible flags). The test counts what the victim consumed (at least 10^5 records)
//!   and holds it to exactly once by token: every operation it posted completes once, no
//!   completion names a token never posted. It never writes outside what it registered
//!   for writing; the peer never gets single copy (it refuses it, or shows a bogus probe).
//! - `hostile_peer_in_another_process_gets_single_copy_and_only_errors`: the same from a
//!   child process that negotiates single copy honestly, with mostly single-copy requests
//!   — garbage pieces (near null, wrapping, kernel space, the victim's addresses, its own
//!   memory and past it) and valid ones — and wrong records; again at least 10^5 records
//!   consumed and exactly once by token. The victim serves them with cross-memory attach
//!   into the attacker only; its own memory outside the writable region is never written,
//!   and the valid requests succeed.
//! - `peer_killed_mid_transfer_fails_pending_within_1s`: with the peer process stopped,
//!   the survivor posts RDMA reads and writes of 16 MiB and receives (bounce mode, so each
//!   needs the peer: none completes — checked); then SIGKILL, and every one of them
//!   completes with an error within one second.
//! - `a_write_starting_near_u64_max_is_corruption_not_an_overflow`: a peer's RDMA write
//!   whose sequence would wrap is corruption, in the progress thread and in `poll`.
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

use common::{drain, XorShift};

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
        let rw = {
            // SAFETY: the middle page lies inside `guarded`, which the `Victim` owns and frees
            // only after `deregister` (or its drop) has deregistered this registration, once
            // the connections using it are closed; the bytes are reached only by copy.
            unsafe { t.register(guarded.as_ptr().add(4096), 4096, MemAccess::READ_WRITE) }
        }
        .unwrap();
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

    /// Posts what the victim has outstanding while the attack runs — eight receives, a
    /// send, an RDMA read it never gets an answer to — into `ledger`.
    fn post_work(&self, ep: &LoopbackEndpoint, ledger: &mut Ledger) {
        self.post_receives(ep, ledger, 8);
        let token = ledger.token();
        ledger.post(token, ep.post_send(&[self.send.sge(0..1024)], token));
        let target = RemoteTarget {
            descriptor: &self.d_rw,
            offset: 0,
        };
        let token = ledger.token();
        ledger.post(token, ep.rdma_read(&[self.recv.sge(0..512)], target, token));
    }

    /// Posts `n` more receives.
    fn post_receives(&self, ep: &LoopbackEndpoint, ledger: &mut Ledger, n: usize) {
        for _ in 0..n {
            let token = ledger.token();
            ledger.post(token, ep.post_recv(&[self.recv.sge(0..8192)], token));
        }
    }

    /// Polls until everything in `ledger` completed or 5 s passed (the caller asserts).
    fn settle(ep: &LoopbackEndpoint, ledger: &mut Ledger) {
        let mut c = [Completion::default(); 32];
        let until = Instant::now() + Duration::from_secs(5);
        while ledger.outstanding() > 0 && Instant::now() < until {
            let n = ep.poll(&mut c);
            ledger.absorb(&c[..n]);
            if n == 0 {
                ep.wait(Duration::from_millis(5));
            }
        }
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

#[test]
fn hostile_peer_garbage_is_errors_not_panics() {
    let seed = seed();
    let result = std::panic::catch_unwind(|| hostile_run(seed));
    if let Err(e) = result {
        eprintln!("hostile peer test failed with SAN_SPI_SEED={seed}");
        std::panic::resume_unwind(e);
    }
}

/// Every token the victim posted, and every completion it got: each posted token must
/// complete exactly once, and no completion may name a token never posted.
#[derive(Default)]
struct Ledger {
    posted: std::collections::HashSet<u64>,
    done: std::collections::HashSet<u64>,
    next: u64,
}

impl Ledger {
    /// A fresh token.
    fn token(&mut self) -> u64 {
        self.next += 1;
        self.next
    }

    /// Records a post of `token` that returned `r`.
    fn post(&mut self, token: u64, r: Result<(), san_spi_core::transport::PostError>) -> bool {
        if r.is_ok() {
            self.posted.insert(token);
        }
        r.is_ok()
    }

    /// Records completions; returns how many were receives (to post again).
    fn absorb(&mut self, cs: &[Completion]) -> usize {
        for c in cs {
            assert!(
                self.posted.contains(&c.token),
                "completion for unknown token {c:?}"
            );
            assert!(
                self.done.insert(c.token),
                "token {} completed twice",
                c.token
            );
        }
        cs.iter()
            .filter(|c| c.op == san_spi_core::transport::Op::Recv)
            .count()
    }

    fn outstanding(&self) -> usize {
        self.posted.len() - self.done.len()
    }
}

/// One well-formed record that is wrong — a bad key, offset, length or status, or an answer
/// to nothing — of a kind the victim handles without giving up the connection:
/// `(kind, flags, token, a, b, payload)`.
fn wrong_record(rng: &mut XorShift, keys: &[u64; 2]) -> (u16, u16, u64, u64, u64, Vec<u8>) {
    let key = match rng.below(3) {
        0 => keys[0],
        1 => keys[1],
        _ => rng.next(),
    };
    let offset = match rng.below(4) {
        0 => rng.next(),
        1 => 4096 - rng.below(300),
        2 => u64::MAX - rng.below(4096),
        _ => rng.below(4096),
    };
    let token = rng.next() | 1 << 62; // never one of the victim's operations
    let data =
        |rng: &mut XorShift, n: u64| -> Vec<u8> { (0..n).map(|_| rng.next() as u8).collect() };
    match rng.below(6) {
        // An RDMA write in one record: the declared total at least the data carried (a
        // shorter total is a lie the victim ends the connection for).
        0 | 1 => {
            let n = rng.below(200);
            let total = match rng.below(3) {
                0 => n,
                1 => n + rng.below(1 << 20),
                _ => u64::MAX - rng.below(16),
            };
            let mut payload = total.to_le_bytes().to_vec();
            payload.extend(data(rng, n));
            (WRITE, FIRST | LAST, token, key, offset, payload)
        }
        // A read request of a random length.
        2 => {
            let len = match rng.below(3) {
                0 => rng.below(8192),
                1 => rng.next(),
                _ => u32::MAX as u64 + rng.below(16),
            };
            (READ_REQ, 0, token, key, offset, len.to_le_bytes().to_vec())
        }
        // An acknowledgement and read data for operations the victim never started.
        3 => (ACK, 0, token, rng.below(20_000), rng.next(), Vec::new()),
        4 => {
            let n = rng.below(256);
            (READ_DATA, 0, token, 0, rng.below(1 << 20), data(rng, n))
        }
        // A whole message for one of the victim's receives.
        _ => {
            let n = rng.below(300);
            (SEND, FIRST | LAST, token, 0, n, data(rng, n))
        }
    }
}

const ACK: u16 = 3;
const READ_REQ: u16 = 4;
const READ_DATA: u16 = 5;
const LAST: u16 = 2;
/// Records the in-process attacker sends over the run (the test requires the victim to
/// have consumed at least `MIN_RECORDS`).
const HOSTILE_CONN_RECORDS: usize = 6_000;
const MIN_RECORDS: u64 = 100_000;

/// Pushes one record, waiting (bounded) while the victim's ring is full and draining what
/// the victim sends back, as a peer that wants its records read must.
fn push_patiently(peer: &RawPeer, rec: &(u16, u16, u64, u64, u64, Vec<u8>)) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if peer.push_record(rec.0, rec.1, rec.2, rec.3, rec.4, &rec.5) {
            return true;
        }
        peer.signal();
        peer.drain_acks();
        if Instant::now() > deadline {
            return false; // the victim stopped reading: it gave up on this connection
        }
        std::thread::yield_now();
    }
}

fn hostile_run(seed: u64) {
    const CONNS: usize = 20;
    let ns = format!("hostile-{}", std::process::id());
    let capacity = 64 << 10;
    let t = LoopbackTransport::new(ns.clone()).with_ring_capacity(capacity);
    let addr: SocketAddr = "198.18.0.1:9100".parse().unwrap();
    let listener = block_on(t.listen(addr)).unwrap();

    let victim = Victim::new(&t);
    let keys = victim.keys;
    let victim_addrs = victim.addrs();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<usize>();
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
            // Only once the victim's endpoint runs and has posted its work.
            ready_rx
                .recv_timeout(Duration::from_secs(30))
                .expect("victim ready");
            let mut sent = 0;
            for i in 0..HOSTILE_CONN_RECORDS {
                if !push_patiently(&peer, &wrong_record(&mut rng, &keys)) {
                    break;
                }
                sent += 1;
                if i % 32 == 0 {
                    peer.signal();
                    peer.drain_acks();
                }
            }
            peer.signal();
            // Every other connection ends in garbage: scribbled bytes and positions, records
            // of unknown kinds and impossible flags.
            if conn % 2 == 1 {
                attack(
                    &peer,
                    &mut rng,
                    &keys,
                    &victim_addrs,
                    &mut scratch,
                    50,
                    Mix::RINGS,
                );
            }
            drop(peer);
            done_tx.send(sent).unwrap();
        }
    });

    let mut records = 0u64;
    let mut sent = 0usize;
    for conn in 0..CONNS {
        let ep = block_on(listener.accept()).unwrap();
        assert_eq!(ep.peer_copy_mode(), CopyMode::Bounce);
        let mut ledger = Ledger::default();
        // Work the victim has outstanding while the wrong records arrive.
        victim.post_work(&ep, &mut ledger);
        ready_tx.send(()).unwrap();
        let mut c = [Completion::default(); 32];
        let deadline = Instant::now() + Duration::from_secs(60);
        let conn_sent = loop {
            assert!(
                Instant::now() < deadline,
                "connection {conn}: the attacker never finished"
            );
            let n = ep.poll(&mut c);
            let used = ledger.absorb(&c[..n]);
            victim.post_receives(&ep, &mut ledger, used);
            if let Ok(s) = done_rx.try_recv() {
                break s;
            }
            if n == 0 {
                ep.wait(Duration::from_millis(1));
            }
        };
        sent += conn_sent;
        // The attacker is gone: everything posted completes, once, promptly.
        Victim::settle(&ep, &mut ledger);
        assert_eq!(
            ledger.outstanding(),
            0,
            "connection {conn}: posted operations never completed"
        );
        records += ep.records_received();
        ep.close();
        assert_eq!(
            ep.poll(&mut c),
            0,
            "a completion after everything completed"
        );
    }
    attacker.join().expect("attacker thread");
    eprintln!("hostile: the victim consumed {records} of {sent} wrong records (and the garbage)");
    assert!(
        records >= MIN_RECORDS,
        "the victim consumed only {records} records"
    );
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
    /// A well-formed but wrong record the victim survives ([`wrong_record`]).
    wrong: u64,
    // The rest: a well-formed record of a random kind and flags (often fatal).
}

impl Mix {
    /// Ring garbage: how a connection of the in-process attacker may end.
    const RINGS: Mix = Mix {
        scribble: 400,
        words: 100,
        single_copy: 100,
        malformed: 200,
        wrong: 0,
    };
    /// Single-copy requests (garbage pieces and valid ones) and wrong records, none of
    /// which break the connection, so that the victim handles every one.
    const SINGLE_COPY: Mix = Mix {
        scribble: 0,
        words: 0,
        single_copy: 600,
        malformed: 0,
        wrong: 400,
    };
    /// Only wrong records: for a connection that refuses single copy (where any
    /// single-copy request ends it).
    const WRONG: Mix = Mix {
        scribble: 0,
        words: 0,
        single_copy: 0,
        malformed: 0,
        wrong: 1000,
    };
}

const SC_WRITE: u16 = 7;
const SC_READ: u16 = 8;

/// A single-copy request payload: `total u64` then `(address u64, length u64)` pieces,
/// mostly garbage, sometimes valid (pieces inside `scratch` adding up to the total).
/// With `into_attacker` (a single-copy read: the victim writes what it reads into the
/// attacker at the named addresses) the garbage addresses stay where the attacker can bear
/// a write — inside `scratch` or the guard page after it, near null, wrapping, kernel
/// space — since whatever the victim writes there is the attacker's own doing.
fn single_copy_payload(
    rng: &mut XorShift,
    victim_addrs: &[u64],
    scratch: &mut [u8],
    malformed: bool,
    into_attacker: bool,
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
            let choice = match rng.below(7) {
                0 | 3 | 5 if into_attacker => 2,
                c => c,
            };
            let addr = match choice {
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
            let payload =
                single_copy_payload(rng, victim_addrs, scratch, malformed, kind == SC_READ);
            // Flags as an honest request has them, unless it is meant to be malformed.
            let flags = if malformed { rng.below(8) as u16 } else { 0 };
            let rec = (kind, flags, rng.next() % 64, key, offset, payload);
            push_patiently(peer, &rec);
        } else if roll < mix.scribble + mix.words + mix.single_copy + mix.wrong {
            push_patiently(peer, &wrong_record(rng, keys));
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

/// `len` bytes (a multiple of the page size) of `0x77` followed by one `PROT_NONE` page,
/// mapped for the rest of the process.
fn guarded_scratch(len: usize) -> &'static mut [u8] {
    let page = 4096;
    // SAFETY: a fresh anonymous mapping of `len + page` bytes; the last page is made
    // inaccessible; the rest is handed out once, as the only reference, for the rest of the
    // process (it is never unmapped).
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            len + page,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        assert_ne!(p, libc::MAP_FAILED, "mmap");
        assert_eq!(
            libc::mprotect((p as *mut u8).add(len) as *mut _, page, libc::PROT_NONE),
            0
        );
        std::ptr::write_bytes(p as *mut u8, 0x77, len);
        std::slice::from_raw_parts_mut(p as *mut u8, len)
    }
}

const HOSTILE_CHILD_ENV: &str = "SAN_SPI_LOOPBACK_HOSTILE_CHILD";
const HOSTILE_CONNS: usize = 20;
const HOSTILE_ROUNDS: usize = 6000;

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
    // The scratch memory the victim may write into, with an inaccessible page after it
    // (where a write that runs past stops).
    let guarded = guarded_scratch(16 << 10);
    let scratch = &mut *guarded;
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
        let mix = if peer.victim_serves {
            Mix::SINGLE_COPY
        } else {
            Mix::WRONG
        };
        for _ in 0..HOSTILE_ROUNDS / 100 {
            attack(&peer, &mut rng, &keys, &victim_addrs, scratch, 100, mix);
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
    let mut records = 0u64;
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
        // never answered. Receives are posted again as they complete.
        let mut ledger = Ledger::default();
        victim.post_work(&ep, &mut ledger);
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut c = [Completion::default(); 32];
        while !ep.is_closed() {
            assert!(
                Instant::now() < deadline,
                "SAN_SPI_SEED={seed}: connection {conn} never ended"
            );
            let n = ep.poll(&mut c);
            let used = ledger.absorb(&c[..n]);
            victim.post_receives(&ep, &mut ledger, used);
            if n == 0 {
                ep.wait(Duration::from_millis(1));
            }
        }
        Victim::settle(&ep, &mut ledger);
        assert_eq!(
            ledger.outstanding(),
            0,
            "SAN_SPI_SEED={seed}: connection {conn}: posted operations never completed"
        );
        records += ep.records_received();
        ep.close();
    }
    eprintln!("hostile (two processes): the victim consumed {records} records");
    assert!(
        records >= MIN_RECORDS,
        "the victim consumed only {records} records"
    );
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
    let spawned = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "peer_killed_mid_transfer_fails_pending_within_1s",
            "--nocapture",
        ])
        .env(CHILD_ENV, format!("{ns} {addr}"))
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Killed and reaped however the test ends (a stopped child must not outlive it).
    let mut reap = common::Reap(Some(spawned));
    let child = reap.0.as_mut().expect("the child");
    // Bounce: every byte of the RDMA below needs the child's progress (in single copy a
    // read can be served by this side's own cross-memory attach), so a stopped child
    // provably holds every operation in flight.
    let t = LoopbackTransport::new(ns).with_copy_mode(CopyMode::Bounce);
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
    // Stop the child first, so that nothing posted below can finish before the kill: RDMA
    // reads and writes of 16 MiB (each needs the child's answer) and receives (the child
    // never sends).
    // SAFETY: kill(2) on our own child's pid, which it still is (not yet reaped).
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGSTOP) }, 0);
    let mut ledger = Ledger::default();
    for i in 0..4usize {
        let sge = buf.sge(i * len..(i + 1) * len);
        let target = RemoteTarget {
            descriptor: &desc,
            offset: 0,
        };
        let token = ledger.token();
        let r = if i % 2 == 0 {
            ep.rdma_read(&[sge], target, token)
        } else {
            ep.rdma_write(&[sge], target, token)
        };
        assert!(ledger.post(token, r), "RDMA post {i} refused");
    }
    for _ in 0..3 {
        let token = ledger.token();
        assert!(ledger.post(token, ep.post_recv(&[buf.sge(0..1024)], token)));
    }
    let posted = ledger.outstanding();
    // In flight at the kill: nothing has completed while the child was stopped.
    let early = drain(&ep, 1, Instant::now() + Duration::from_millis(200));
    assert!(early.is_empty(), "completed before the kill: {early:?}");
    child.kill().unwrap();
    let killed = Instant::now();
    let got = drain(&ep, posted, killed + Duration::from_secs(1));
    let took = killed.elapsed();
    let _ = child.wait();
    ledger.absorb(&got);
    assert_eq!(
        got.len(),
        posted,
        "only {} of {posted} completed within 1 s: {got:?}",
        got.len()
    );
    assert!(took <= Duration::from_secs(1), "took {took:?}");
    assert!(
        got.iter().all(|c| c.result.is_err()),
        "every operation in flight at the kill fails: {got:?}"
    );
    assert_eq!(ledger.outstanding(), 0);
    ep.close();
    buf.deregister().unwrap();
    descbuf.deregister().unwrap();
}

const SEND: u16 = 1;
const WRITE: u16 = 2;
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

/// An RDMA write whose start the peer put at `u64::MAX - 3`, continued past it: the
/// sequence check must not overflow (a panic in a debug build, a wrap in release) but call
/// it corruption and fail the connection with errors — in the progress thread and in the
/// application's own `poll`, which runs the same handlers inline.
#[test]
fn a_write_starting_near_u64_max_is_corruption_not_an_overflow() {
    let mut first = 16u64.to_le_bytes().to_vec(); // total
    first.extend_from_slice(&[1u8; 8]); // 8 bytes received: start + 8 wraps
    for (round, polling) in [(0u16, false), (1, true)] {
        let (t, ep, peer) = victim_with_raw_records("wrap", 9180 + round, &[]);
        let (mut buf, sge) = registered_buffer(&t, 64);
        ep.post_recv(&[sge], 1).unwrap();
        let push = || {
            assert!(peer.push_record(WRITE, FIRST, 9, 0x77, u64::MAX - 3, &first));
            // Where a wrapped sum would put the next chunk (what a release build accepted).
            let next = (u64::MAX - 3).wrapping_add(8);
            assert!(peer.push_record(WRITE, 0, 9, 0x77, next, &[2u8; 4]));
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut c = [Completion::default(); 4];
        let got = if polling {
            // The application polls, so its own `poll` runs the handlers (the progress
            // thread stays parked while it does): poll a while, then the records arrive.
            for _ in 0..100 {
                assert_eq!(ep.poll(&mut c), 0);
            }
            push();
            let mut got = Vec::new();
            while got.is_empty() && Instant::now() < deadline {
                let n = ep.poll(&mut c);
                got.extend_from_slice(&c[..n]);
            }
            got
        } else {
            // Only the progress thread works: it parks, the records arrive with a wake-up,
            // and nothing polls until it has consumed them.
            std::thread::sleep(Duration::from_millis(200));
            push();
            peer.signal();
            while peer.victim_consumed() == 0 && Instant::now() < deadline {
                ep.wait(Duration::from_millis(5));
            }
            drain(&ep, 1, Instant::now() + Duration::from_secs(1))
        };
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
