//! The conformance suite across two processes.
//!
//! Each test re-executes its own test binary as the peer process (selected by the
//! `SAN_SPI_XP_PEER` environment variable), which listens, accepts, and then obeys a small
//! line protocol on its standard input — register, post, wait, checksum — printing one
//! answer line per command. The parent holds the other endpoint and drives both sides, so
//! the same behaviours as the in-process suite are checked with the endpoints (and their
//! memory) in different address spaces.
//!
//! `transport_conformance_cross_process!(name, Harness)` instantiates it; the peer must be
//! reachable from the parent under the address the harness listens on.

use crate::{
    checksum, expect_one_byte_message, forged, pattern, post_rdma, wait_one, Buf, Harness, TIMEOUT,
};
use san_spi_core::transport::{
    block_on, Completion, Endpoint, Listener, MemAccess, Memory, Op, PostError, RemoteTarget, Sge,
    Transport,
};
use san_spi_core::WsaError;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

/// The environment variable that makes a test binary play the peer.
pub const PEER_ENV: &str = "SAN_SPI_XP_PEER";

static PORT: AtomicU16 = AtomicU16::new(31_000);

fn access(s: &str) -> MemAccess {
    match s {
        "r" => MemAccess::READ,
        "w" => MemAccess::WRITE,
        _ => MemAccess::READ_WRITE,
    }
}

fn op_name(op: Op) -> &'static str {
    match op {
        Op::Send => "send",
        Op::Recv => "recv",
        Op::RdmaWrite => "write",
        Op::RdmaRead => "read",
        _ => "unknown",
    }
}

fn show(c: &Completion) -> String {
    match c.result {
        Ok(n) => format!("{} {} ok {}", c.token, op_name(c.op), n),
        Err(e) => format!("{} {} err {}", c.token, op_name(c.op), e.code()),
    }
}

/// The peer process: `spec` is `<namespace-test> <address>`. Never returns.
pub fn serve<H: Harness>(spec: &str) -> ! {
    let (test, addr) = spec.split_once(' ').expect("test and address");
    let t = H::transport(test);
    let addr: SocketAddr = addr.parse().expect("address");
    let listener = block_on(t.listen(addr)).expect("listen");
    println!("listening");
    let ep = block_on(listener.accept()).expect("accept");
    let mut bufs: HashMap<u32, Buf<'_, H::T>> = HashMap::new();
    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
        let line = match line {
            Ok(l) => l,
            Err(_) => break,
        };
        let w: Vec<&str> = line.split_whitespace().collect();
        let num = |i: usize| w[i].parse::<u64>().expect("number");
        let answer = match w[0] {
            "reg" => {
                let b = Buf::new(&t, num(2) as usize, num(3) as u8, access(w[4]));
                bufs.insert(num(1) as u32, b);
                "ok".to_string()
            }
            "regkey" => {
                match Buf::with_key(&t, num(2) as usize, num(3) as u8, access(w[4]), num(5)) {
                    Ok(b) => {
                        bufs.insert(num(1) as u32, b);
                        "ok".to_string()
                    }
                    Err(e) => format!("error {}", e.code()),
                }
            }
            "inval" => {
                let b = &bufs[&(num(1) as u32)];
                let addr = b.bytes.as_ptr() as u64 + num(2);
                format!("{}", t.invalidate(addr, num(3)))
            }
            "pattern" => {
                let b = bufs.get_mut(&(num(1) as u32)).expect("buffer");
                let p = pattern(b.bytes.len(), num(2) as u8);
                b.bytes.copy_from_slice(&p);
                format!("{}", checksum(&p))
            }
            "desc" => {
                let d = bufs[&(num(1) as u32)].descriptor();
                d.iter().map(|x| format!("{x:02x}")).collect()
            }
            "dereg" => {
                bufs.get_mut(&(num(1) as u32)).expect("buffer").deregister();
                "ok".to_string()
            }
            "recv" | "send" => {
                let b = &bufs[&(num(1) as u32)];
                let (off, len) = (num(2) as usize, num(3) as usize);
                let sge = b.sge(off..off + len);
                let r = if w[0] == "recv" {
                    ep.post_recv(&[sge], num(4))
                } else {
                    ep.post_send(&[sge], num(4))
                };
                match r {
                    Ok(()) => "ok".to_string(),
                    Err(e) => format!("error {e}"),
                }
            }
            "wait" => {
                let deadline = Instant::now() + TIMEOUT;
                let mut c = [Completion::default(); 1];
                loop {
                    if ep.poll(&mut c) == 1 {
                        break show(&c[0]);
                    }
                    if Instant::now() >= deadline {
                        break "timeout".to_string();
                    }
                    ep.wait(Duration::from_millis(20));
                }
            }
            "quiet" => {
                let mut c = [Completion::default(); 1];
                std::thread::sleep(Duration::from_millis(num(1)));
                if ep.poll(&mut c) == 1 {
                    show(&c[0])
                } else {
                    "quiet".to_string()
                }
            }
            "sum" => {
                let b = &bufs[&(num(1) as u32)];
                let (off, len) = (num(2) as usize, num(3) as usize);
                format!("{}", checksum(&b.bytes[off..off + len]))
            }
            "close" => {
                ep.close();
                "ok".to_string()
            }
            "exit" => {
                println!("bye");
                std::process::exit(0);
            }
            other => format!("unknown command {other}"),
        };
        println!("{answer}");
        let _ = std::io::stdout().flush();
    }
    std::process::exit(0);
}

/// The parent's handle on the peer process.
pub struct Peer {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Peer {
    /// Sends one command and returns its answer line.
    pub fn cmd(&mut self, line: &str) -> String {
        writeln!(self.stdin, "{line}").expect("peer stdin");
        self.stdin.flush().expect("peer stdin");
        let mut answer = String::new();
        self.stdout.read_line(&mut answer).expect("peer stdout");
        assert!(!answer.is_empty(), "the peer exited during `{line}`");
        answer.trim().to_string()
    }

    /// `cmd`, asserting the answer is `ok`.
    pub fn ok(&mut self, line: &str) {
        let a = self.cmd(line);
        assert_eq!(a, "ok", "peer answered `{a}` to `{line}`");
    }

    /// The peer's descriptor of buffer `id`.
    pub fn descriptor(&mut self, id: u32) -> Vec<u8> {
        let hex = self.cmd(&format!("desc {id}"));
        (0..hex.len() / 2)
            .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("hex"))
            .collect()
    }

    /// Kills the peer process (SIGKILL): it closes nothing, the kernel tears it down.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The checksum of a range of the peer's buffer `id`.
    pub fn sum(&mut self, id: u32, off: usize, len: usize) -> u64 {
        self.cmd(&format!("sum {id} {off} {len}"))
            .parse()
            .expect("checksum")
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "exit");
        let _ = self.stdin.flush();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) => return,
                _ if Instant::now() >= deadline => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    return;
                }
                _ => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    }
}

/// Starts the peer process for the test at `path` (its `module_path!()::name`) and connects
/// to it: `(transport, endpoint, peer)`.
pub fn connect<H: Harness>(path: &str) -> (H::T, <H::T as Transport>::Endpoint, Peer) {
    // libtest filters without the crate's own name.
    let exact = path.split_once("::").map_or(path, |x| x.1);
    let port = PORT.fetch_add(1, Ordering::Relaxed);
    let addr = SocketAddr::from(([198, 18, 0, 1], port));
    let name = format!("xp-{}-{}", std::process::id(), exact.replace("::", "-"));
    let mut child = Command::new(std::env::current_exe().expect("current_exe"))
        .args(["--exact", exact, "--nocapture", "--test-threads=1"])
        .env(PEER_ENV, format!("{name} {addr}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn the peer");
    let stdin = child.stdin.take().expect("stdin");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    // Skip the test harness's own lines until the peer says it listens.
    loop {
        let mut line = String::new();
        let n = stdout.read_line(&mut line).unwrap_or(0);
        if n == 0 {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the peer exited before listening");
        }
        if line.trim().ends_with("listening") {
            break;
        }
    }
    let peer = Peer {
        child,
        stdin,
        stdout,
    };
    let t = H::transport(&name);
    let ep = block_on(t.connect(addr)).expect("connect to the peer");
    (t, ep, peer)
}

/// Connects across processes and exchanges a message each way.
pub fn xp_exchange<H: Harness>(path: &str) {
    let (t, ep, mut peer) = connect::<H>(path);
    peer.ok("reg 1 64 0 rw");
    peer.ok("recv 1 0 64 7");
    let mut a = Buf::new(&t, 64, 0, MemAccess::READ_WRITE);
    a.bytes[..4].copy_from_slice(b"ping");
    ep.post_send(&[a.sge(0..4)], 1).unwrap();
    assert_eq!(wait_one(&ep).result, Ok(4));
    assert_eq!(peer.cmd("wait"), "7 recv ok 4");
    assert_eq!(peer.sum(1, 0, 4), checksum(b"ping"));
    ep.post_recv(&[a.sge(0..64)], 2).unwrap();
    peer.ok("send 1 0 4 8");
    assert_eq!(peer.cmd("wait"), "8 send ok 4");
    assert_eq!(wait_one(&ep), Completion::new(2, Op::Recv, Ok(4)));
    assert_eq!(&a.bytes[..4], b"ping");
}

/// Messages of every size arrive across processes in order, with their boundaries.
pub fn xp_order_and_boundaries<H: Harness>(path: &str) {
    let (t, ep, mut peer) = connect::<H>(path);
    let sizes = [0usize, 1, 7, 4096, 100_000, 3 << 20, 5];
    let slot = 4 << 20;
    peer.ok(&format!("reg 1 {} 238 w", sizes.len() * slot));
    for i in 0..sizes.len() {
        peer.ok(&format!("recv 1 {} {} {}", i * slot, slot, 100 + i));
    }
    let total: usize = sizes.iter().sum();
    let data = pattern(total, 3);
    let mut src = Buf::new(&t, total, 0, MemAccess::READ);
    src.bytes.copy_from_slice(&data);
    let mut at = 0;
    for (i, &n) in sizes.iter().enumerate() {
        ep.post_send(&[src.sge(at..at + n)], i as u64).unwrap();
        at += n;
    }
    let mut at = 0;
    for (i, &n) in sizes.iter().enumerate() {
        assert_eq!(peer.cmd("wait"), format!("{} recv ok {}", 100 + i, n));
        assert_eq!(
            peer.sum(1, i * slot, n),
            checksum(&data[at..at + n]),
            "message {i}"
        );
        at += n;
    }
    for (i, &n) in sizes.iter().enumerate() {
        assert_eq!(
            wait_one(&ep),
            Completion::new(i as u64, Op::Send, Ok(n as u32))
        );
    }
}

/// A message sent before the peer posts a receive waits for it across processes.
pub fn xp_send_before_recv_waits<H: Harness>(path: &str) {
    let (t, ep, mut peer) = connect::<H>(path);
    let mut src = Buf::new(&t, 3, 0, MemAccess::READ);
    src.bytes.copy_from_slice(b"xyz");
    peer.ok("reg 1 3 0 w");
    for i in 0..3 {
        ep.post_send(&[src.sge(i..i + 1)], i as u64).unwrap();
    }
    assert_eq!(peer.cmd("quiet 100"), "quiet");
    for i in 0..3 {
        peer.ok(&format!("recv 1 {i} 1 {}", 10 + i));
    }
    for i in 0..3 {
        assert_eq!(peer.cmd("wait"), format!("{} recv ok 1", 10 + i));
    }
    assert_eq!(peer.sum(1, 0, 3), checksum(b"xyz"));
}

/// RDMA write and read across processes, at an offset, through many SGEs.
pub fn xp_rdma_write_read<H: Harness>(path: &str) {
    let (t, ep, mut peer) = connect::<H>(path);
    peer.ok("reg 1 1048576 170 rw");
    let d = peer.descriptor(1);
    let data = pattern(200_000, 9);
    let mut a = Buf::new(&t, 200_000, 0, MemAccess::READ);
    a.bytes.copy_from_slice(&data);
    let sges: Vec<Sge> = (0..8)
        .map(|k| a.sge(k * 25_000..(k + 1) * 25_000))
        .collect();
    let target = RemoteTarget {
        descriptor: &d,
        offset: 4096,
    };
    ep.rdma_write(&sges, target, 1).unwrap();
    assert_eq!(
        wait_one(&ep),
        Completion::new(1, Op::RdmaWrite, Ok(200_000))
    );
    assert_eq!(peer.sum(1, 4096, 200_000), checksum(&data));
    assert_eq!(
        peer.sum(1, 0, 4096),
        checksum(&[170u8; 4096]),
        "written before the offset"
    );
    let back = Buf::new(&t, 200_000, 0, MemAccess::WRITE);
    let rs: Vec<Sge> = (0..5)
        .map(|k| back.sge(k * 40_000..(k + 1) * 40_000))
        .collect();
    ep.rdma_read(&rs, target, 2).unwrap();
    assert_eq!(wait_one(&ep), Completion::new(2, Op::RdmaRead, Ok(200_000)));
    assert!(back.bytes[..] == data[..]);
}

/// Across processes, wrong rights, out-of-bounds, forged and stale descriptors fail and
/// touch nothing.
pub fn xp_bad_accesses_touch_nothing<H: Harness>(path: &str) {
    let (t, ep, mut peer) = connect::<H>(path);
    peer.ok("reg 1 4096 17 r");
    peer.ok("reg 2 8192 90 rw");
    let ro = peer.descriptor(1);
    let rw = peer.descriptor(2);
    let src = Buf::new(&t, 8192, 1, MemAccess::READ_WRITE);
    let tries: [(&[u8], u64, usize); 3] = [(&ro, 0, 100), (&rw, 4096, 4097), (&rw, 1 << 40, 1)];
    for (i, (d, off, len)) in tries.iter().enumerate() {
        let target = RemoteTarget {
            descriptor: d,
            offset: *off,
        };
        ep.rdma_write(&[src.sge(0..*len)], target, i as u64)
            .unwrap();
        assert!(wait_one(&ep).result.is_err(), "attempt {i} succeeded");
    }
    let forged = forged(&rw);
    post_rdma(&ep, Op::RdmaWrite, &[src.sge(0..10)], &forged, 0, 9);
    assert!(wait_one(&ep).result.is_err());
    assert_eq!(peer.sum(1, 0, 4096), checksum(&[17u8; 4096]));
    assert_eq!(peer.sum(2, 0, 8192), checksum(&[90u8; 8192]));
    peer.ok("dereg 2");
    post_rdma(&ep, Op::RdmaWrite, &[src.sge(0..10)], &rw, 0, 10);
    assert!(wait_one(&ep).result.is_err(), "stale descriptor accepted");
}

/// The peer closing fails our pending receive promptly; our close aborts the peer's.
pub fn xp_close_fails_pending_both_ways<H: Harness>(path: &str) {
    let (t, ep, mut peer) = connect::<H>(path);
    let dst = Buf::new(&t, 64, 0, MemAccess::WRITE);
    ep.post_recv(&[dst.sge(0..64)], 5).unwrap();
    peer.ok("reg 1 300 0 w");
    for i in 0..3 {
        peer.ok(&format!("recv 1 {} 100 {i}", i * 100));
    }
    let start = Instant::now();
    peer.ok("close");
    for i in 0..3 {
        assert_eq!(peer.cmd("wait"), format!("{i} recv err 995"));
    }
    let r = wait_one(&ep);
    assert_eq!(r.token, 5);
    assert!(r.result.is_err());
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "took {:?}",
        start.elapsed()
    );
}

/// 64 MiB by message and by RDMA write across processes, verified by checksum.
pub fn xp_large_transfers<H: Harness>(path: &str) {
    let (t, ep, mut peer) = connect::<H>(path);
    let len = 64 << 20;
    let data = pattern(len, 42);
    let mut src = Buf::new(&t, len, 0, MemAccess::READ);
    src.bytes.copy_from_slice(&data);
    peer.ok(&format!("reg 1 {len} 0 rw"));
    peer.ok(&format!("recv 1 0 {len} 1"));
    ep.post_send(&[src.sge(0..len)], 2).unwrap();
    assert_eq!(wait_one(&ep).result, Ok(len as u32));
    assert_eq!(peer.cmd("wait"), format!("1 recv ok {len}"));
    assert_eq!(peer.sum(1, 0, len), checksum(&data));
    peer.ok(&format!("reg 2 {len} 0 rw"));
    let d = peer.descriptor(2);
    post_rdma(&ep, Op::RdmaWrite, &[src.sge(0..len)], &d, 0, 3);
    assert_eq!(wait_one(&ep).result, Ok(len as u32));
    assert_eq!(peer.sum(2, 0, len), checksum(&data));
}

/// A message longer than the peer's receive fails that receive with WSAEMSGSIZE, fills it
/// and no more, and the next message lands in the next receive.
pub fn xp_oversized_message_fails_the_receive<H: Harness>(path: &str) {
    let (t, ep, mut peer) = connect::<H>(path);
    let src = Buf::new(&t, 100, 7, MemAccess::READ);
    peer.ok("reg 1 64 0 w");
    peer.ok("recv 1 0 10 1");
    peer.ok("recv 1 10 54 2");
    ep.post_send(&[src.sge(0..20)], 3).unwrap();
    ep.post_send(&[src.sge(0..5)], 4).unwrap();
    assert_eq!(
        peer.cmd("wait"),
        format!("1 recv err {}", WsaError::MsgSize.code())
    );
    assert_eq!(peer.cmd("wait"), "2 recv ok 5");
    assert_eq!(peer.sum(1, 0, 15), checksum(&[7u8; 15]));
    assert_eq!(peer.sum(1, 15, 49), checksum(&[0u8; 49]), "overrun");
}

/// The peer deregisters the target of our RDMA write while it is in flight: the write
/// completes (whole or with an error), and the next one through the descriptor fails.
pub fn xp_deregistration_while_in_flight<H: Harness>(path: &str) {
    let (t, ep, mut peer) = connect::<H>(path);
    let len = 32 << 20;
    let src = Buf::new(&t, len, 0x77, MemAccess::READ);
    peer.ok(&format!("reg 1 {len} 0 rw"));
    let d = peer.descriptor(1);
    let target = RemoteTarget {
        descriptor: &d,
        offset: 0,
    };
    ep.rdma_write(&[src.sge(0..len)], target, 1).unwrap();
    peer.ok("dereg 1");
    let r = wait_one(&ep);
    assert_eq!(r.token, 1);
    assert!(r.result == Ok(len as u32) || r.result.is_err(), "{r:?}");
    ep.rdma_write(&[src.sge(0..10)], target, 2).unwrap();
    assert!(
        wait_one(&ep).result.is_err(),
        "a deregistered target was written"
    );
}

/// The peer's registration-cache callback drops the registrations overlapping the range it
/// names, and only those: RDMA through their descriptors fails, through the others works.
pub fn xp_cache_callback_drops_overlapping<H: Harness>(path: &str) {
    let (t, ep, mut peer) = connect::<H>(path);
    let src = Buf::new(&t, 64, 3, MemAccess::READ);
    for id in 1..=3 {
        peer.ok(&format!("reg {id} 4096 0 rw"));
    }
    let ds: Vec<Vec<u8>> = (1..=3).map(|id| peer.descriptor(id)).collect();
    assert_eq!(peer.cmd("inval 2 100 10"), "1", "one registration overlaps");
    for (i, d) in ds.iter().enumerate() {
        let target = RemoteTarget {
            descriptor: d,
            offset: 0,
        };
        ep.rdma_write(&[src.sge(0..64)], target, i as u64).unwrap();
        let r = wait_one(&ep);
        if i == 1 {
            assert!(r.result.is_err(), "an invalidated registration was written");
            assert_eq!(peer.sum(2, 0, 64), checksum(&[0u8; 64]));
        } else {
            assert_eq!(r.result, Ok(64), "registration {} was dropped too", i + 1);
            assert_eq!(peer.sum(i as u32 + 1, 0, 64), checksum(&[3u8; 64]));
        }
    }
}

/// The peer sends `n` one-byte messages of pattern `seed` (bytes `0..n` of its buffer 1, one
/// each) and waits until every send completed.
fn peer_sends_one_byte_messages(peer: &mut Peer, n: usize, seed: u8) {
    peer.ok(&format!("reg 1 {n} 5 r"));
    peer.cmd(&format!("pattern 1 {seed}"));
    for i in 0..n {
        peer.ok(&format!("send 1 {i} 1 {i}"));
    }
    for i in 0..n {
        assert_eq!(peer.cmd("wait"), format!("{i} send ok 1"));
    }
}

/// Receives the `n` one-byte messages of `peer_sends_one_byte_messages(.., seed)` into
/// `dst[..n]`, each posted only once the one before it completed, and checks them.
fn receive_one_byte_messages<E: Endpoint, T: Memory>(ep: &E, dst: &Buf<'_, T>, n: usize, seed: u8) {
    for i in 0..n {
        ep.post_recv(&[dst.sge(i..i + 1)], i as u64).unwrap();
        expect_one_byte_message(&wait_one(ep), i);
    }
    assert_eq!(checksum(&dst.bytes[..n]), checksum(&pattern(n, seed)));
}

/// Messages the peer sent before it closed all arrive, in order; the receive after them
/// fails.
pub fn xp_messages_sent_before_close_are_delivered<H: Harness>(path: &str) {
    let (t, ep, mut peer) = connect::<H>(path);
    let n = 20usize;
    let dst = Buf::new(&t, n + 1, 0xEE, MemAccess::WRITE);
    for i in 0..=n {
        ep.post_recv(&[dst.sge(i..i + 1)], i as u64).unwrap();
    }
    peer_sends_one_byte_messages(&mut peer, n, 11);
    peer.ok("close");
    for i in 0..n {
        expect_one_byte_message(&wait_one(&ep), i);
    }
    let last = wait_one(&ep);
    assert_eq!(last.token, n as u64);
    assert!(last.result.is_err(), "the receive after the close fails");
    assert_eq!(checksum(&dst.bytes[..n]), checksum(&pattern(n, 11)));
}

/// A peer that closes and exits loses nothing it sent: its messages are delivered, in
/// order, to receives posted after it is gone; then each receive completes with WSAEDISCON.
pub fn xp_graceful_close_delivers_everything_then_disconnects<H: Harness>(path: &str) {
    let (t, ep, mut peer) = connect::<H>(path);
    let n = 20usize;
    peer_sends_one_byte_messages(&mut peer, n, 13);
    peer.ok("close");
    drop(peer); // the process exits: only we hold the shared memory now
    let dst = Buf::new(&t, n + 1, 0xEE, MemAccess::WRITE);
    receive_one_byte_messages(&ep, &dst, n, 13);
    ep.post_recv(&[dst.sge(n..n + 1)], 99).unwrap();
    let r = wait_one(&ep);
    assert_eq!((r.token, r.result), (99, Err(WsaError::Discon)));
    assert_eq!(dst.bytes[n], 0xEE);
}

/// A peer killed without closing keeps what it sent: its whole messages are delivered to
/// receives posted after its death, in order; then the end is a reset — a receive fails
/// with WSAECONNRESET (never the graceful WSAEDISCON) or is refused.
pub fn xp_peer_death_keeps_what_it_sent<H: Harness>(path: &str) {
    let (t, ep, mut peer) = connect::<H>(path);
    let n = 10usize;
    peer_sends_one_byte_messages(&mut peer, n, 17);
    peer.kill();
    let dst = Buf::new(&t, n + 1, 0xEE, MemAccess::WRITE);
    receive_one_byte_messages(&ep, &dst, n, 17);
    // The end may already be known (the last message consumed after the death was seen):
    // then the receive is refused; otherwise it completes with the reset.
    match ep.post_recv(&[dst.sge(n..n + 1)], 99) {
        Ok(()) => {
            let r = wait_one(&ep);
            assert_eq!((r.token, r.result), (99, Err(WsaError::ConnReset)));
        }
        Err(e) => assert_eq!(e, PostError::Closed),
    }
    assert_eq!(
        ep.post_recv(&[dst.sge(n..n + 1)], 100),
        Err(PostError::Closed)
    );
    assert_eq!(dst.bytes[n], 0xEE);
}

/// Sending to a peer that posts no receives fills our queue: back-pressure (`QueueFull`),
/// never another error; once the peer receives, every message arrives, in order.
pub fn xp_full_queue_is_back_pressure<H: Harness>(path: &str) {
    let (t, ep, mut peer) = connect::<H>(path);
    let len = 64 << 10;
    let src = Buf::new(&t, len, 4, MemAccess::READ);
    let mut posted = 0u64;
    loop {
        assert!(posted < 100_000, "the send queue never filled");
        match ep.post_send(&[src.sge(0..len)], posted) {
            Ok(()) => posted += 1,
            Err(PostError::QueueFull) => break,
            Err(e) => panic!("post {posted}: {e} instead of back-pressure"),
        }
    }
    peer.ok(&format!("reg 1 {len} 0 w"));
    let mut sent = 0u64;
    let mut cs = [Completion::default(); 64];
    for i in 0..posted {
        peer.ok(&format!("recv 1 0 {len} {i}"));
        assert_eq!(peer.cmd("wait"), format!("{i} recv ok {len}"));
        let n = ep.poll(&mut cs);
        for c in &cs[..n] {
            assert_eq!((c.token, c.result), (sent, Ok(len as u32)));
            sent += 1;
        }
    }
    while sent < posted {
        let c = wait_one(&ep);
        assert_eq!((c.token, c.result), (sent, Ok(len as u32)));
        sent += 1;
    }
    assert_eq!(peer.sum(1, 0, len), checksum(&vec![4u8; len]));
}

/// Keys the peer's provider chose ([`Memory::register_with_key`]) work across processes:
/// our RDMA reaches the region through its descriptor, and fails once the peer deregisters
/// it. Where the transport does not take chosen keys, the peer's call says WSAEOPNOTSUPP.
pub fn xp_provider_chosen_keys<H: Harness>(path: &str) {
    let (t, ep, mut peer) = connect::<H>(path);
    let key = 0x5A4E_1000_0000_0000 | u64::from(std::process::id());
    let answer = peer.cmd(&format!("regkey 1 4096 0 w {key}"));
    if !t.capabilities().requested_keys {
        assert_eq!(answer, format!("error {}", WsaError::OpNotSupp.code()));
        return;
    }
    assert_eq!(answer, "ok");
    let d = peer.descriptor(1);
    let src = Buf::new(&t, 4096, 0x3C, MemAccess::READ);
    let target = RemoteTarget {
        descriptor: &d,
        offset: 0,
    };
    ep.rdma_write(&[src.sge(0..4096)], target, 1).unwrap();
    assert_eq!(wait_one(&ep).result, Ok(4096));
    assert_eq!(peer.sum(1, 0, 4096), checksum(&[0x3Cu8; 4096]));
    peer.ok("dereg 1");
    ep.rdma_write(&[src.sge(0..4096)], target, 2).unwrap();
    assert!(
        wait_one(&ep).result.is_err(),
        "a deregistered key was written"
    );
}

/// Instantiates the cross-process suite: `transport_conformance_cross_process!(name, Harness);`.
/// The harness must give both processes the same transport for the same name (no pid in
/// it).
#[macro_export]
macro_rules! transport_conformance_cross_process {
    ($name:ident, $harness:ty) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            $crate::transport_conformance_cross_process!(@tests $harness;
                xp_exchange,
                xp_order_and_boundaries,
                xp_send_before_recv_waits,
                xp_rdma_write_read,
                xp_bad_accesses_touch_nothing,
                xp_close_fails_pending_both_ways,
                xp_large_transfers,
                xp_oversized_message_fails_the_receive,
                xp_deregistration_while_in_flight,
                xp_cache_callback_drops_overlapping,
                xp_messages_sent_before_close_are_delivered,
                xp_graceful_close_delivers_everything_then_disconnects,
                xp_peer_death_keeps_what_it_sent,
                xp_full_queue_is_back_pressure,
                xp_provider_chosen_keys,
            );
        }
    };
    (@tests $harness:ty; $($test:ident),* $(,)?) => {
        $(
            #[test]
            fn $test() {
                if let Ok(spec) = std::env::var($crate::remote::PEER_ENV) {
                    $crate::remote::serve::<$harness>(&spec);
                }
                $crate::remote::$test::<$harness>(concat!(module_path!(), "::", stringify!($test)));
            }
        )*
    };
}
