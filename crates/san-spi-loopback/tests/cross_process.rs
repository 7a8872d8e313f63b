//! The loopback transport between two processes, in both copy modes.
//!
//! Each test re-executes this binary (`--exact <test>`, with `SAN_SPI_LOOPBACK_XP_CHILD`
//! naming the mode, namespace and address) as the peer. The child listens, registers a
//! read-write region, a read-only region and a write-only region, sends their descriptors
//! and its view of the copy modes in a first message, and then echoes every message back
//! until told otherwise by a command message:
//!
//! - `CMD:PUSH` + descriptor (32 B) + length (u64) + seed (u64): the child RDMA-writes a
//!   pattern into the parent's region and reads it back (so the parent serves single-copy
//!   requests too), then answers `PUSH:OK` or `PUSH:ER`;
//! - `CMD:CLOS`: the child closes its endpoint and stays alive for a while;
//! - `CMD:EXIT`: the child exits without closing.
//!
//! Every wait is bounded, the child has a watchdog, and the parent kills and reaps it on
//! every path (including panics).

mod common;

use common::{checksum, pattern, Reap};
use san_spi_core::transport::{
    block_on, Completion, Endpoint, Listener, MemAccess, Op, PostError, RemoteTarget, Sge,
    Transport,
};
use san_spi_core::WsaError;
use san_spi_loopback::{CopyMode, LoopbackEndpoint, LoopbackTransport};
use san_spi_testkit::{wait_within, RegisteredBuf};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CHILD_ENV: &str = "SAN_SPI_LOOPBACK_XP_CHILD";
/// Bound on any one completion.
const STEP: Duration = Duration::from_secs(20);

/// The child's read-write region.
const RW_LEN: usize = 24 << 20;
const RW_FILL: u8 = 0xA5;
/// The child's read-only region.
const RO_LEN: usize = 64 << 10;
const RO_FILL: u8 = 0xC3;
/// The child's write-only region.
const WO_LEN: usize = 64 << 10;
/// Receive slots of the echoing child.
const SLOTS: usize = 8;
const SLOT: usize = 4 << 20;

const CMD_PUSH: &[u8; 8] = b"CMD:PUSH";
const CMD_CLOSE: &[u8; 8] = b"CMD:CLOS";
const CMD_EXIT: &[u8; 8] = b"CMD:EXIT";

fn mode_name(mode: CopyMode) -> &'static str {
    match mode {
        CopyMode::SingleCopy => "single",
        CopyMode::Bounce => "bounce",
    }
}

fn mode_byte(mode: CopyMode) -> u8 {
    (mode == CopyMode::SingleCopy) as u8
}

/// The testkit's registered buffer (bytes reached only by copy), holding its transport.
type Buf = RegisteredBuf<Arc<LoopbackTransport>>;

/// `len` bytes of `fill`, registered with `access` (a clone shares the transport's
/// registrations).
fn buf(t: &LoopbackTransport, len: usize, fill: u8, access: MemAccess) -> Buf {
    RegisteredBuf::new(Arc::new(t.clone()), len, fill, access).expect("register")
}

/// The exported descriptor of `b`, which the loopback makes 32 bytes long.
fn descriptor32(b: &Buf) -> [u8; 32] {
    let d = b.descriptor().expect("export");
    d[..].try_into().expect("a 32-byte descriptor")
}

// ---------------------------------------------------------------------------------------
// The child.
// ---------------------------------------------------------------------------------------

/// Set for a child that must make itself non-dumpable before it connects.
const NONDUMPABLE_ENV: &str = "SAN_SPI_TEST_CHILD_NONDUMPABLE";

fn child_main(spec: &str) -> ! {
    common::watchdog(Duration::from_secs(90));
    if std::env::var_os(NONDUMPABLE_ENV).is_some() {
        // SAFETY: prctl(PR_SET_DUMPABLE) takes plain integers and touches no memory of ours.
        let r = unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
        assert_eq!(r, 0, "prctl(PR_SET_DUMPABLE, 0)");
    }
    let f: Vec<&str> = spec.split(' ').collect();
    let mode = if f[0] == "single" {
        CopyMode::SingleCopy
    } else {
        CopyMode::Bounce
    };
    let t = LoopbackTransport::new(f[1]).with_copy_mode(mode);
    let addr: SocketAddr = f[2].parse().unwrap();
    let listener = block_on(t.listen(addr)).unwrap();
    let ep = block_on(listener.accept()).unwrap();
    let code = match serve(&t, &ep) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("child: {e}");
            1
        }
    };
    std::process::exit(code);
}

/// What the child's completion loop saw.
enum Event {
    /// A message in receive slot `i`, `len` bytes.
    Message(usize, usize),
    /// One of the child's own RDMA operations finished.
    Rdma(u64, Result<u32, WsaError>),
    /// The connection ended.
    End,
}

struct ChildState<'e> {
    ep: &'e LoopbackEndpoint,
    slots: Buf,
}

impl ChildState<'_> {
    /// Posts receive slot `i` again. A connection that ended meanwhile is not an error:
    /// [`next`](Self::next) reports the end.
    fn repost(&self, i: usize) -> Result<(), String> {
        match self
            .ep
            .post_recv(&[self.slots.sge(i * SLOT..(i + 1) * SLOT)], i as u64)
        {
            Ok(()) | Err(PostError::Closed) => Ok(()),
            Err(e) => Err(format!("repost: {e}")),
        }
    }

    /// The next event, handling routine completions (echo sends: repost their slot).
    fn next(&self, deadline: Instant) -> Result<Event, String> {
        loop {
            if Instant::now() > deadline {
                return Err("timed out".into());
            }
            let mut c = [Completion::default(); 1];
            if self.ep.poll(&mut c) == 0 {
                if self.ep.is_closed() {
                    return Ok(Event::End); // and nothing left to complete
                }
                self.ep.wait(Duration::from_millis(20));
                continue;
            }
            let done = c[0];
            match (done.op, done.result) {
                (Op::Send, Ok(_)) if done.token >= 100 && done.token < 100 + SLOTS as u64 => {
                    self.repost((done.token - 100) as usize)?;
                }
                (Op::Send, Ok(_)) if done.token >= 1000 => {} // hello and replies
                (Op::Recv, Ok(len)) => {
                    return Ok(Event::Message(done.token as usize, len as usize))
                }
                (Op::Recv, Err(_)) => return Ok(Event::End),
                (Op::RdmaWrite | Op::RdmaRead, r) => return Ok(Event::Rdma(done.token, r)),
                (op, r) => return Err(format!("unexpected completion {op:?} {r:?}")),
            }
        }
    }

    /// The completion of the child's own RDMA operation `token`.
    fn rdma(&self, token: u64, deadline: Instant) -> Result<Result<u32, WsaError>, String> {
        match self.next(deadline)? {
            Event::Rdma(t, r) if t == token => Ok(r),
            Event::Rdma(t, r) => Err(format!("RDMA completion {t} {r:?}, expected {token}")),
            Event::Message(..) => Err("a message during the child's RDMA".into()),
            Event::End => Err("the connection ended during the child's RDMA".into()),
        }
    }
}

/// Echoes until the connection ends or a command says otherwise. Returns the exit code.
fn serve(t: &LoopbackTransport, ep: &LoopbackEndpoint) -> Result<i32, String> {
    let rw = buf(t, RW_LEN, RW_FILL, MemAccess::READ_WRITE);
    let ro = buf(t, RO_LEN, RO_FILL, MemAccess::READ);
    let wo = buf(t, WO_LEN, 0, MemAccess::WRITE);
    let hello = buf(t, 98, 0, MemAccess::READ);
    hello.write(0, &descriptor32(&rw));
    hello.write(32, &descriptor32(&ro));
    hello.write(64, &descriptor32(&wo));
    hello.write(
        96,
        &[mode_byte(ep.copy_mode()), mode_byte(ep.peer_copy_mode())],
    );
    let st = ChildState {
        ep,
        slots: buf(t, SLOTS * SLOT, 0, MemAccess::READ_WRITE),
    };
    // Receives first: the parent may be done and gone soon after the hello.
    for i in 0..SLOTS {
        st.repost(i)?;
    }
    ep.post_send(&[hello.sge(0..98)], 1000)
        .map_err(|e| e.to_string())?;
    // For the child's own RDMA (CMD:PUSH).
    let src = buf(t, 1 << 20, 0, MemAccess::READ);
    let back = buf(t, 1 << 20, 0, MemAccess::WRITE);
    let reply = buf(t, 8, 0, MemAccess::READ);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut replies = 0;
    loop {
        let (i, len) = match st.next(deadline)? {
            Event::Message(i, len) => (i, len),
            Event::End => return Ok(0),
            Event::Rdma(t, r) => return Err(format!("stray RDMA completion {t} {r:?}")),
        };
        let msg = st.slots.to_vec(i * SLOT..i * SLOT + len);
        if msg == CMD_CLOSE {
            ep.close();
            std::thread::sleep(Duration::from_secs(3));
            return Ok(0);
        }
        if msg == CMD_EXIT {
            return Ok(0); // without closing: the kernel closes the socket
        }
        if len == 56 && &msg[..8] == CMD_PUSH {
            let desc: [u8; 32] = msg[8..40].try_into().unwrap();
            let n = u64::from_le_bytes(msg[40..48].try_into().unwrap()) as usize;
            let seed = u64::from_le_bytes(msg[48..56].try_into().unwrap());
            st.repost(i)?;
            let n = n.min(src.len());
            src.write(0, &pattern(n, seed));
            let target = RemoteTarget {
                descriptor: &desc,
                offset: 0,
            };
            // Four SGEs each way.
            let q = n / 4;
            let wsges: Vec<Sge> = (0..4).map(|k| src.sge(k * q..(k + 1) * q)).collect();
            ep.rdma_write(&wsges, target, 300)
                .map_err(|e| e.to_string())?;
            let w = st.rdma(300, deadline)?;
            let rsges: Vec<Sge> = (0..4).map(|k| back.sge(k * q..(k + 1) * q)).collect();
            ep.rdma_read(&rsges, target, 301)
                .map_err(|e| e.to_string())?;
            let r = st.rdma(301, deadline)?;
            let ok = w == Ok(4 * q as u32)
                && r == Ok(4 * q as u32)
                && back.to_vec(0..4 * q) == src.to_vec(0..4 * q);
            reply.write(0, if ok { b"PUSH:OK " } else { b"PUSH:ER " });
            replies += 1;
            ep.post_send(&[reply.sge(0..8)], 1000 + replies)
                .map_err(|e| e.to_string())?;
            continue;
        }
        match ep.post_send(&[st.slots.sge(i * SLOT..i * SLOT + len)], 100 + i as u64) {
            Ok(()) => {}
            Err(PostError::Closed) => return Ok(0),
            Err(e) => return Err(format!("echo: {e}")),
        }
    }
}

// ---------------------------------------------------------------------------------------
// The parent.
// ---------------------------------------------------------------------------------------

static PORT: AtomicU16 = AtomicU16::new(9800);

/// A connection to a child process.
struct Session {
    t: LoopbackTransport,
    ep: LoopbackEndpoint,
    child: Reap,
    /// The child's read-write, read-only and write-only regions.
    rw: [u8; 32],
    ro: [u8; 32],
    wo: [u8; 32],
    /// The child's `copy_mode()` and `peer_copy_mode()`.
    child_modes: (CopyMode, CopyMode),
}

/// Starts the child for `test` (the full test name) in `mode`, connects, takes its hello.
fn session(
    test: &str,
    mode: CopyMode,
    configure: impl FnOnce(&mut std::process::Command),
) -> Session {
    session_with(&std::env::current_exe().unwrap(), test, mode, configure)
}

fn session_with(
    exe: &std::path::Path,
    test: &str,
    mode: CopyMode,
    configure: impl FnOnce(&mut std::process::Command),
) -> Session {
    let port = PORT.fetch_add(1, Ordering::Relaxed);
    let ns = format!("xp-{}-{port}", std::process::id());
    let addr = SocketAddr::from(([198, 18, 0, 1], port));
    let spec = format!("{} {ns} {addr}", mode_name(mode));
    let mut child = common::spawn_exe(exe, test, CHILD_ENV, &spec, configure);
    let t = LoopbackTransport::new(ns).with_copy_mode(mode);
    let ep = common::connect_to_child(&t, addr, &mut child, STEP);
    let hello = buf(&t, 128, 0, MemAccess::WRITE);
    ep.post_recv(&[hello.sge(0..128)], 1).unwrap();
    assert_eq!(wait_within(&ep, STEP).result, Ok(98), "the child's hello");
    let mode_of = |b: u8| {
        if b == 1 {
            CopyMode::SingleCopy
        } else {
            CopyMode::Bounce
        }
    };
    let s = Session {
        rw: hello.to_vec(0..32).try_into().unwrap(),
        ro: hello.to_vec(32..64).try_into().unwrap(),
        wo: hello.to_vec(64..96).try_into().unwrap(),
        child_modes: (
            mode_of(hello.to_vec(96..97)[0]),
            mode_of(hello.to_vec(97..98)[0]),
        ),
        t,
        ep,
        child,
    };
    // Both ends agree on what the handshake settled.
    assert_eq!(
        s.ep.copy_mode(),
        s.child_modes.1,
        "parent's requests vs the child's service"
    );
    assert_eq!(
        s.ep.peer_copy_mode(),
        s.child_modes.0,
        "child's requests vs the parent's service"
    );
    s
}

impl Session {
    /// The modes a symmetric session in `mode` must have settled on.
    fn assert_modes(&self, mode: CopyMode) {
        let expected = match mode {
            CopyMode::Bounce => Some(CopyMode::Bounce),
            CopyMode::SingleCopy if common::ptrace_unrestricted() => Some(CopyMode::SingleCopy),
            // Yama or missing privileges may forbid one direction: whatever was settled.
            CopyMode::SingleCopy => None,
        };
        if let Some(m) = expected {
            assert_eq!((self.ep.copy_mode(), self.ep.peer_copy_mode()), (m, m));
        } else {
            eprintln!(
                "cross-memory attach restricted here: modes {:?} / {:?}",
                self.ep.copy_mode(),
                self.ep.peer_copy_mode()
            );
        }
    }

    fn target<'d>(&self, descriptor: &'d [u8], offset: u64) -> RemoteTarget<'d> {
        RemoteTarget { descriptor, offset }
    }

    /// Sends `bytes` as one message and waits for the send to complete.
    fn send(&self, bytes: &[u8]) {
        let b = buf(&self.t, bytes.len().max(1), 0, MemAccess::READ);
        b.write(0, bytes);
        self.ep.post_send(&[b.sge(0..bytes.len())], 0xC0DE).unwrap();
        let c = wait_within(&self.ep, STEP);
        assert_eq!((c.token, c.result), (0xC0DE, Ok(bytes.len() as u32)));
    }

    /// Closes the connection and waits for the child to exit successfully.
    fn finish(self) {
        self.ep.close();
        let status = self.child.wait_exit(Duration::from_secs(15));
        assert!(status.success(), "child: {status}");
    }
}

/// Entry of every test: the child role when this process is a child.
fn run(test: &str, mode: CopyMode, body: fn(&str, CopyMode)) {
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        child_main(&spec);
    }
    body(test, mode);
}

/// Connect and accept across processes; messages of many sizes (0 B to the child's 4 MiB
/// receive size) come back echoed in order, each with its own boundaries and content.
fn echo_keeps_order_and_boundaries(test: &str, mode: CopyMode) {
    let s = session(test, mode, |_| {});
    s.assert_modes(mode);
    // No 8- or 56-byte message: those could be commands.
    let sizes = [
        0usize,
        1,
        7,
        64,
        4096,
        100_000,
        3 << 20,
        5,
        65_536,
        1 << 20,
        9,
        2 << 20,
        33,
        0,
        SLOT,
        12_345,
        1,
        300_001,
    ];
    let total: usize = sizes.iter().sum();
    let src = buf(&s.t, total, 0, MemAccess::READ);
    let mut at = 0;
    for (i, &n) in sizes.iter().enumerate() {
        src.write(at, &pattern(n, i as u64 + 1));
        at += n;
    }
    // Each echo gets a receive one byte larger than expected: a longer or merged message
    // would show, and the spare byte must stay untouched.
    let slots: Vec<usize> = sizes.iter().map(|n| n + 1).collect();
    let dst = buf(&s.t, slots.iter().sum(), 0xEE, MemAccess::WRITE);
    let mut at = 0;
    for (i, &n) in slots.iter().enumerate() {
        s.ep.post_recv(&[dst.sge(at..at + n)], 500 + i as u64)
            .unwrap();
        at += n;
    }
    let mut at = 0;
    for (i, &n) in sizes.iter().enumerate() {
        s.ep.post_send(&[src.sge(at..at + n)], i as u64).unwrap();
        at += n;
    }
    let (mut sent, mut received) = (0usize, 0usize);
    let mut src_at = 0;
    let mut dst_at = 0;
    while sent < sizes.len() || received < sizes.len() {
        let c = wait_within(&s.ep, STEP);
        match c.op {
            Op::Send => {
                assert_eq!((c.token, c.result), (sent as u64, Ok(sizes[sent] as u32)));
                sent += 1;
            }
            Op::Recv => {
                let i = received;
                let n = sizes[i];
                assert_eq!(
                    (c.token, c.result),
                    (500 + i as u64, Ok(n as u32)),
                    "echo {i}"
                );
                assert!(
                    dst.to_vec(dst_at..dst_at + n) == src.to_vec(src_at..src_at + n),
                    "echo {i} ({n} bytes) differs"
                );
                assert_eq!(
                    dst.to_vec(dst_at + n..dst_at + n + 1),
                    [0xEE],
                    "echo {i} overran"
                );
                src_at += n;
                dst_at += n + 1;
                received += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    drop((src, dst));
    s.finish();
}

/// 16 MiB and more written into the child's region at an offset through six SGEs of two
/// registrations, read back through five, verified by checksum; the bytes around the
/// range untouched; and the child's own single-copy (or bounce) RDMA into our memory.
fn rdma_write_read_back_by_checksum(test: &str, mode: CopyMode) {
    let s = session(test, mode, |_| {});
    s.assert_modes(mode);
    rdma_round_trip(&s);
    s.finish();
}

fn rdma_round_trip(s: &Session) {
    let total = (16 << 20) + 4321;
    let offset = (1 << 20) + 77;
    let data = pattern(total, 42);
    let sum = checksum(&data);
    let split = 9 << 20;
    let a = buf(&s.t, split, 0, MemAccess::READ);
    let b = buf(&s.t, total - split, 0, MemAccess::READ);
    a.write(0, &data[..split]);
    b.write(0, &data[split..]);
    let bl = total - split;
    let wsges = [
        a.sge(0..1000),
        a.sge(1000..(4 << 20)),
        a.sge((4 << 20)..split),
        b.sge(0..12_345),
        b.sge(12_345..(3 << 20)),
        b.sge((3 << 20)..bl),
    ];
    s.ep.rdma_write(&wsges, s.target(&s.rw, offset as u64), 10)
        .unwrap();
    let c = wait_within(&s.ep, STEP);
    assert_eq!(
        (c.token, c.op, c.result),
        (10, Op::RdmaWrite, Ok(total as u32))
    );
    let back = buf(&s.t, total, 0, MemAccess::WRITE);
    let q = total / 5;
    let rsges: Vec<Sge> = (0..5)
        .map(|k| back.sge(k * q..if k == 4 { total } else { (k + 1) * q }))
        .collect();
    s.ep.rdma_read(&rsges, s.target(&s.rw, offset as u64), 11)
        .unwrap();
    let c = wait_within(&s.ep, STEP);
    assert_eq!(
        (c.token, c.op, c.result),
        (11, Op::RdmaRead, Ok(total as u32))
    );
    assert_eq!(back.checksum(0..total), sum, "read-back checksum");
    // The whole region: untouched around the range.
    let whole = buf(&s.t, RW_LEN, 0, MemAccess::WRITE);
    let third = RW_LEN / 3;
    let sges = [
        whole.sge(0..third),
        whole.sge(third..2 * third),
        whole.sge(2 * third..RW_LEN),
    ];
    s.ep.rdma_read(&sges, s.target(&s.rw, 0), 12).unwrap();
    assert_eq!(wait_within(&s.ep, STEP).result, Ok(RW_LEN as u32));
    assert!(whole.all(0..offset, RW_FILL), "written before the offset");
    assert_eq!(whole.checksum(offset..offset + total), sum);
    assert!(
        whole.all(offset + total..whole.len(), RW_FILL),
        "written past the range"
    );
    // The other direction: the child writes into our region and reads it back.
    let mine = buf(&s.t, 2 << 20, 0x5A, MemAccess::READ_WRITE);
    let len = 1 << 20;
    let mut cmd = Vec::with_capacity(56);
    cmd.extend_from_slice(CMD_PUSH);
    cmd.extend_from_slice(&descriptor32(&mine));
    cmd.extend_from_slice(&(len as u64).to_le_bytes());
    cmd.extend_from_slice(&7u64.to_le_bytes());
    let reply = buf(&s.t, 8, 0, MemAccess::WRITE);
    s.ep.post_recv(&[reply.sge(0..8)], 13).unwrap();
    s.send(&cmd);
    let c = wait_within(&s.ep, STEP);
    assert_eq!((c.token, c.result), (13, Ok(8)));
    assert_eq!(reply.to_vec(0..8), b"PUSH:OK ", "the child's RDMA");
    assert!(mine.to_vec(0..len) == pattern(len, 7), "the child's bytes");
    assert!(
        mine.all(len..mine.len(), 0x5A),
        "the child wrote past its range"
    );
}

/// Out-of-bounds, wrong-rights and forged accesses fail, each on its own (the connection
/// stays usable), and reading the regions back shows nothing was written.
fn bad_accesses_touch_nothing(test: &str, mode: CopyMode) {
    let s = session(test, mode, |_| {});
    s.assert_modes(mode);
    let src = buf(&s.t, 128 << 10, 0x01, MemAccess::READ_WRITE);
    let local = buf(&s.t, 128 << 10, 0x33, MemAccess::READ_WRITE);
    let fails = |what: &str, token: u64| {
        let c = wait_within(&s.ep, STEP);
        assert_eq!(c.token, token, "{what}");
        assert!(c.result.is_err(), "{what}: {:?}", c.result);
    };
    s.ep.rdma_write(&[src.sge(0..4096)], s.target(&s.ro, 0), 1)
        .unwrap();
    fails("write into the read-only region", 1);
    s.ep.rdma_write(&[src.sge(0..101)], s.target(&s.rw, RW_LEN as u64 - 100), 2)
        .unwrap();
    fails("write one byte past the end", 2);
    s.ep.rdma_write(
        &[src.sge(0..10), src.sge(10..20)],
        s.target(&s.rw, 1 << 40),
        3,
    )
    .unwrap();
    fails("write far beyond the region", 3);
    let mut forged = s.rw;
    forged[8] ^= 0x40;
    s.ep.rdma_write(&[src.sge(0..64)], s.target(&forged, 0), 4)
        .unwrap();
    fails("write with a forged key", 4);
    s.ep.rdma_read(&[local.sge(0..4096)], s.target(&s.wo, 0), 5)
        .unwrap();
    fails("read from the write-only region", 5);
    s.ep.rdma_read(&[local.sge(0..11)], s.target(&s.ro, RO_LEN as u64 - 10), 6)
        .unwrap();
    fails("read one byte past the end", 6);
    assert!(
        local.all(0..local.len(), 0x33),
        "a refused read wrote locally"
    );
    // Read back: the read-only region and both ends of the read-write region.
    let back = buf(&s.t, RO_LEN, 0, MemAccess::WRITE);
    s.ep.rdma_read(&[back.sge(0..RO_LEN)], s.target(&s.ro, 0), 7)
        .unwrap();
    assert_eq!(wait_within(&s.ep, STEP).result, Ok(RO_LEN as u32));
    assert!(back.all(0..back.len(), RO_FILL), "read-only region written");
    let edge = 64 << 10;
    for (token, offset) in [(8, 0u64), (9, (RW_LEN - edge) as u64)] {
        s.ep.rdma_read(&[back.sge(0..edge)], s.target(&s.rw, offset), token)
            .unwrap();
        assert_eq!(wait_within(&s.ep, STEP).result, Ok(edge as u32));
        assert!(
            back.all(0..edge, RW_FILL),
            "read-write region written at {offset}"
        );
    }
    // Still usable: a good write lands.
    s.ep.rdma_write(&[src.sge(0..100)], s.target(&s.rw, RW_LEN as u64 - 100), 10)
        .unwrap();
    assert_eq!(wait_within(&s.ep, STEP).result, Ok(100));
    s.ep.rdma_read(
        &[back.sge(0..100)],
        s.target(&s.rw, RW_LEN as u64 - 100),
        11,
    )
    .unwrap();
    assert_eq!(wait_within(&s.ep, STEP).result, Ok(100));
    assert!(back.all(0..100, 0x01));
    drop((src, local, back));
    s.finish();
}

/// Receives pending when the peer goes away (`command`) fail promptly, with `end`:
/// WSAEDISCON when it closed, WSAECONNRESET when it exited without closing. A receive
/// posted afterwards ends the same way (graceful close) or is refused (reset).
fn pending_receives_fail_when(test: &str, mode: CopyMode, command: &[u8; 8], end: WsaError) {
    let s = session(test, mode, |_| {});
    s.assert_modes(mode);
    let dst = buf(&s.t, 300, 0, MemAccess::WRITE);
    for i in 0..3 {
        s.ep.post_recv(&[dst.sge(i * 100..(i + 1) * 100)], 20 + i as u64)
            .unwrap();
    }
    s.send(command);
    let start = Instant::now();
    let mut tokens = Vec::new();
    for _ in 0..3 {
        let c = wait_within(&s.ep, Duration::from_secs(2));
        assert_eq!((c.op, c.result), (Op::Recv, Err(end)), "{c:?}");
        tokens.push(c.token);
    }
    let took = start.elapsed();
    assert!(
        took < Duration::from_secs(1),
        "pending receives took {took:?} to fail"
    );
    tokens.sort_unstable();
    assert_eq!(tokens, [20, 21, 22]);
    assert!(s.ep.is_closed());
    match s.ep.post_recv(&[dst.sge(0..1)], 30) {
        Ok(()) => {
            assert_eq!(end, WsaError::Discon, "accepted a receive after a reset");
            assert_eq!(wait_within(&s.ep, STEP).result, Err(WsaError::Discon));
        }
        Err(e) => assert_eq!(
            (e, end),
            (PostError::Closed, WsaError::ConnReset),
            "refused a receive after a graceful close"
        ),
    }
    drop(dst);
    s.finish();
}

fn peer_close_fails_pending_receives(test: &str, mode: CopyMode) {
    pending_receives_fail_when(test, mode, CMD_CLOSE, WsaError::Discon);
}

fn peer_exit_fails_pending_receives(test: &str, mode: CopyMode) {
    pending_receives_fail_when(test, mode, CMD_EXIT, WsaError::ConnReset);
}

macro_rules! cross_process_suite {
    ($module:ident, $mode:expr) => {
        mod $module {
            cross_process_suite!(@tests $module, $mode;
                echo_keeps_order_and_boundaries,
                rdma_write_read_back_by_checksum,
                bad_accesses_touch_nothing,
                peer_close_fails_pending_receives,
                peer_exit_fails_pending_receives,
            );
        }
    };
    (@tests $module:ident, $mode:expr; $($test:ident),* $(,)?) => {
        $(
            #[test]
            fn $test() {
                super::run(
                    concat!(stringify!($module), "::", stringify!($test)),
                    $mode,
                    super::$test,
                );
            }
        )*
    };
}

cross_process_suite!(single_copy, san_spi_loopback::CopyMode::SingleCopy);
cross_process_suite!(bounce, san_spi_loopback::CopyMode::Bounce);

/// When only one side can attach to the other, each direction settles on its own: RDMA
/// served by the side that can attach is single copy, the other bounces, and both work.
/// As root (CAP_SYS_PTRACE attaches to anything) the child runs as `nobody`, which cannot
/// attach to root; otherwise the child makes itself non-dumpable, so the parent (same user,
/// no CAP_SYS_PTRACE) cannot attach to it. Runs either way: nothing is skipped.
#[test]
fn asymmetric_when_only_one_side_can_attach() {
    const TEST: &str = "asymmetric_when_only_one_side_can_attach";
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        child_main(&spec);
    }
    // (session, our copy mode, the child's, why)
    let (s, ours, childs, why) = if common::is_root() {
        // `nobody` may not reach the build directory: run a copy it can execute.
        let (exe, _dir) = common::world_executable_copy();
        let s = session_with(&exe, TEST, CopyMode::SingleCopy, |cmd| {
            cmd.uid(65534).gid(65534);
        });
        let why = "nobody cannot attach to root; root attaches to nobody";
        (s, CopyMode::Bounce, CopyMode::SingleCopy, why)
    } else {
        let exe = std::env::current_exe().unwrap();
        let s = session_with(&exe, TEST, CopyMode::SingleCopy, |cmd| {
            cmd.env(NONDUMPABLE_ENV, "1");
        });
        let why = "the child attaches to us; we cannot attach to a non-dumpable child";
        (s, CopyMode::SingleCopy, CopyMode::Bounce, why)
    };
    // A side's RDMA is single copy when the other side can attach to it.
    assert_eq!(s.ep.copy_mode(), ours, "our RDMA: {why}");
    assert_eq!(s.ep.peer_copy_mode(), childs, "the child's RDMA: {why}");
    rdma_round_trip(&s);
    s.finish();
}
