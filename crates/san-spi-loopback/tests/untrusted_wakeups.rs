//! A peer cannot hang the victim through the objects it shares with it.
//!
//! The victim shares only the ring memory and the connection's socket with its peer. Its
//! own wake-up is an eventfd it never passes on; it wakes the peer with single bytes sent
//! with `MSG_DONTWAIT` on the call, and reads the peer's wake-ups the same way. These tests
//! play the two attacks that hung earlier versions (which parked on eventfds the peer also
//! held): a peer that makes everything it holds blocking and dies, and a peer that asks to
//! be woken for every record and never reads its wake-ups.

mod common;

use common::drain;
use san_spi_core::transport::{block_on, Endpoint, Listener, MemAccess, PostError, Transport};
use san_spi_loopback::fault::{connect_raw, RawPeer, RawProbe};
use san_spi_loopback::{LoopbackEndpoint, LoopbackTransport};
use san_spi_testkit::RegisteredBuf;
use std::io::Write;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

fn victim_and_raw_peer(test: &str, port: u16) -> (LoopbackTransport, LoopbackEndpoint, RawPeer) {
    let ns = format!("{test}-{}", std::process::id());
    let capacity = 64 << 10;
    let t = LoopbackTransport::new(ns.clone()).with_ring_capacity(capacity);
    let addr = SocketAddr::from(([198, 18, 0, 1], port));
    let listener = block_on(t.listen(addr)).unwrap();
    let peer = std::thread::spawn(move || {
        // SAFETY: `Refuse`: the victim serves no single-copy request of this peer.
        unsafe { connect_raw(&ns, addr, capacity, RawProbe::Refuse) }.expect("raw connect")
    });
    let ep = block_on(listener.accept()).unwrap();
    (t, ep, peer.join().unwrap())
}

/// Bytes queued for sending on `fd` and not yet read by the other end (`SIOCOUTQ`).
fn unread_by_the_other_end(fd: i32) -> i32 {
    let mut n: libc::c_int = 0;
    // SAFETY: TIOCOUTQ (SIOCOUTQ) writes one int into the live local.
    assert_eq!(unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &mut n) }, 0);
    n
}

/// Bytes waiting to be read on `fd` (`FIONREAD`).
fn waiting_on(fd: i32) -> i32 {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int into the live local.
    assert_eq!(unsafe { libc::ioctl(fd, libc::FIONREAD, &mut n) }, 0);
    n
}

/// Runs `f` on a thread of its own and returns its result, failing the test if it takes
/// longer than `limit` (a regression here is a hang: it must fail, not stall the run).
fn within<R: Send + 'static>(
    limit: Duration,
    what: &str,
    f: impl FnOnce() -> R + Send + 'static,
) -> R {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit)
        .unwrap_or_else(|_| panic!("{what} did not return within {limit:?}: the victim hangs"))
}

/// The first attack: with three receives pending and the victim's progress thread parked,
/// the peer clears `O_NONBLOCK` on what it holds, floods the socket with wake-ups (which
/// the victim must read, and does — the socket drains), and dies. All three receives fail
/// within 1 s.
#[test]
fn a_peer_that_makes_its_descriptors_blocking_and_dies_cannot_hang_the_victim() {
    let (t, ep, peer) = victim_and_raw_peer("blocking-dies", 9310);
    let dst = RegisteredBuf::new(&t, 3 * 64, 0, MemAccess::WRITE).unwrap();
    for i in 0..3 {
        ep.post_recv(&[dst.sge(i * 64..(i + 1) * 64)], i as u64)
            .unwrap();
    }
    // Let the victim's progress thread park (it spins, then sleeps).
    std::thread::sleep(Duration::from_millis(300));
    let sock = peer.socket();
    sock.set_nonblocking(false).unwrap();
    // SAFETY: F_GETFL on our own open descriptor.
    let flags = unsafe { libc::fcntl(sock.as_raw_fd(), libc::F_GETFL) };
    assert_eq!(
        flags & libc::O_NONBLOCK,
        0,
        "the attacker's socket is blocking"
    );
    let flood = vec![0xA5u8; 32 << 10];
    (&mut &*sock).write_all(&flood).unwrap();
    // The victim reads what reaches it, whatever the peer did to its own end.
    let deadline = Instant::now() + Duration::from_secs(2);
    while unread_by_the_other_end(sock.as_raw_fd()) > 0 {
        assert!(
            Instant::now() < deadline,
            "the victim never read the wake-ups"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    drop(peer);
    let died = Instant::now();
    let got = drain(&ep, 3, died + Duration::from_secs(1));
    assert_eq!(
        got.len(),
        3,
        "{} of 3 pending receives completed within 1 s",
        got.len()
    );
    assert!(got.iter().all(|c| c.result.is_err()), "{got:?}");
    let start = Instant::now();
    ep.close();
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "close took {:?}",
        start.elapsed()
    );
}

/// The second attack: the peer says it is parked (so the victim wakes it for every record)
/// and never reads a wake-up, until its socket buffer is full. Every post still returns at
/// once — more posts were made than wake-ups fit — and close is prompt.
#[test]
fn a_peer_that_never_reads_its_wake_ups_cannot_block_the_victims_posts() {
    let (t, ep, peer) = victim_and_raw_peer("never-reads", 9311);
    peer.claim_to_sleep();
    peer.socket().set_nonblocking(false).unwrap();
    let ep = std::sync::Arc::new(ep);
    let poster = ep.clone();
    let (posted, slowest, took) = within(Duration::from_secs(5), "posting", move || {
        let src = RegisteredBuf::new(&t, 64, 7, MemAccess::READ).unwrap();
        let start = Instant::now();
        let mut slowest = Duration::ZERO;
        let mut posted = 0u64;
        loop {
            let t0 = Instant::now();
            let r = poster.post_send(&[src.sge(0..8)], posted);
            slowest = slowest.max(t0.elapsed());
            match r {
                Ok(()) => posted += 1,
                Err(PostError::QueueFull) => break,
                Err(e) => panic!("post {posted}: {e}"),
            }
            assert!(posted < 1_000_000, "the send queue never filled");
        }
        // The source stays registered until the sends are aborted by the close below.
        std::mem::forget(src);
        (posted, slowest, start.elapsed())
    });
    let woken = waiting_on(peer.socket().as_raw_fd()) as u64;
    assert!(woken > 0, "the victim never woke the peer");
    assert!(
        posted > woken,
        "{posted} posts, {woken} wake-ups: the peer's socket never filled, the attack did not \
         reach the full-buffer path"
    );
    assert!(
        slowest < Duration::from_millis(200),
        "a post took {slowest:?}"
    );
    assert!(
        took < Duration::from_secs(2),
        "{posted} posts took {took:?}"
    );
    let start = Instant::now();
    ep.close();
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "close took {:?}",
        start.elapsed()
    );
    let aborted = drain(
        &ep,
        posted as usize,
        Instant::now() + Duration::from_secs(2),
    );
    assert_eq!(
        aborted.len() as u64,
        posted,
        "every accepted send completes once"
    );
    drop(peer);
}

/// Ten connectors that never send their hello do not delay an honest one: its connect
/// returns in under 100 ms and `accept` hands over its endpoint while the ten still stall
/// (each handshake runs on its own, under its own deadline).
#[test]
fn silent_connectors_do_not_stall_the_listener() {
    use san_spi_loopback::fault::connect_silent;
    let ns = format!("silent-{}", std::process::id());
    let t = LoopbackTransport::new(ns.clone());
    let addr: SocketAddr = "198.18.0.1:9312".parse().unwrap();
    let listener = block_on(t.listen(addr)).unwrap();
    let silent: Vec<_> = (0..10)
        .map(|_| connect_silent(&ns, addr).expect("silent connect"))
        .collect();
    let acceptor = std::thread::spawn(move || {
        let ep = block_on(listener.accept());
        (listener, ep)
    });
    // The acceptor has taken the ten (they are in its handshakes) before the honest one.
    std::thread::sleep(Duration::from_millis(100));
    let honest = LoopbackTransport::new(ns);
    let start = Instant::now();
    let client = block_on(honest.connect(addr)).expect("the honest connect");
    let took = start.elapsed();
    let (listener, server) = within(Duration::from_secs(2), "accept", move || {
        acceptor.join().unwrap()
    });
    let server = server.expect("accepted");
    assert!(
        took < Duration::from_millis(100),
        "the honest connect took {took:?}"
    );
    // The silent ten are still connected, still stalled: the honest one overtook them.
    for s in &silent {
        s.set_nonblocking(true).unwrap();
        let mut b = [0u8; 1];
        let r = std::io::Read::read(&mut &*s, &mut b);
        assert!(
            matches!(&r, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
            "a silent connector was answered or dropped: {r:?}"
        );
    }
    drop((client, server, listener, silent));
}
