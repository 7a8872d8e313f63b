//! Fuzz entries (feature `fuzz`, off by default): the loopback's parsers of peer input,
//! reachable from the fuzz targets in `fuzz/` without a second process.
//!
//! - [`handshake`]: the three handshake messages;
//! - [`descriptor`]: an RDMA descriptor coming back from the application;
//! - [`window`]: the single-copy window over a peer's pieces;
//! - [`records`]: the ring reader and every record handler, on a connection whose peer is
//!   the fuzz input — each input becomes a sequence of records pushed with valid seals (and
//!   a few raw scribbles), consumed by the endpoint as its progress would.
//!
//! Each returns something derived from what it parsed, so the work cannot be optimised
//! away, and none may panic: a panic is a bug the fuzzer reports.

use crate::endpoint::{Directions, Shared};
use crate::registry::Registry;
use crate::LoopbackEndpoint;
use crate::{direct, handshake, registry, ring, sys, Limits};
use san_spi_core::transport::{Completion, Endpoint, MemAccess, Op, Sge};
use std::sync::Arc;

/// Parses `bytes` as a hello, a reply and a final message.
pub fn handshake(bytes: &[u8]) -> [bool; 3] {
    handshake::parse_any(bytes)
}

/// The key `bytes` names as a descriptor, if it is well-formed.
pub fn descriptor(bytes: &[u8]) -> Option<u64> {
    registry::descriptor_key(bytes)
}

/// The single-copy window over `pieces` (at most [`direct::MAX_PIECES`] are taken) for
/// bytes `from..from + len`: `(pieces covered, bytes covered)`.
pub fn window(pieces: &[(u64, u64)], from: u64, len: u64) -> (usize, u64) {
    let pieces = &pieces[..pieces.len().min(direct::MAX_PIECES)];
    let (w, n) = direct::window(pieces, from, len);
    (n, w[..n].iter().map(|&(_, l)| l as u64).sum())
}

/// A little reader over the fuzz input: missing bytes read as zero.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn bytes(&mut self, n: usize) -> &[u8] {
        let n = n.min(self.0.len());
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        a
    }

    fn u8(&mut self) -> u8 {
        self.bytes(1).first().copied().unwrap_or(0)
    }

    fn u64(&mut self) -> u64 {
        let mut v = [0u8; 8];
        let b = self.bytes(8);
        v[..b.len()].copy_from_slice(b);
        u64::from_le_bytes(v)
    }
}

/// Feeds the records `input` describes to a fresh endpoint (on this thread's shared memory,
/// zeroed first) and lets it consume them; returns
/// how many it consumed. The endpoint has two registrations of its own (read-only and
/// read-write, whose keys the input may name by index) and receives posted, as a victim
/// under attack would; there is no progress thread (this thread consumes) and no peer
/// process (the input is the peer).
pub fn records(input: &[u8]) -> u64 {
    STAGE.with(|stage| records_on(stage, input))
}

const CAPACITY: usize = 64 << 10;

/// What every input reuses: the shared memory, the registry with the victim's two
/// registrations and the descriptors, made once per thread (fresh ones per input cost most
/// of a run in system calls). Each input starts from zeroed rings, so inputs stay
/// independent of one another.
struct Stage {
    _fd: std::os::fd::OwnedFd,
    map: Arc<sys::Mapping>,
    registry: Arc<Registry>,
    /// The registered bytes: reached only by the transport.
    memory: Box<[u8]>,
    keys: [san_spi_core::transport::MemoryHandle; 2],
    efd: std::os::fd::OwnedFd,
    socket: std::os::unix::net::UnixStream,
    _peer_socket: std::os::unix::net::UnixStream,
}

thread_local! {
    static STAGE: Stage = Stage::new();
}

impl Stage {
    fn new() -> Stage {
        let ring_len = ring::ring_bytes(CAPACITY);
        let fd = sys::memfd("san-spi-fuzz", 2 * ring_len).expect("memfd");
        let map = Arc::new(sys::Mapping::new(&fd, 2 * ring_len).expect("mmap"));
        let registry = Arc::new(Registry::new());
        let mut memory = vec![0u8; 2 * 4096].into_boxed_slice();
        let base = memory.as_mut_ptr() as u64;
        let keys = [
            registry
                .register(base, 4096, MemAccess::READ)
                .expect("register"),
            registry
                .register(base + 4096, 4096, MemAccess::READ_WRITE)
                .expect("register"),
        ];
        let (socket, peer_socket) = std::os::unix::net::UnixStream::pair().expect("socketpair");
        Stage {
            _fd: fd,
            map,
            registry,
            memory,
            keys,
            efd: sys::eventfd().expect("eventfd"),
            socket,
            _peer_socket: peer_socket,
        }
    }
}

fn records_on(stage: &Stage, input: &[u8]) -> u64 {
    let ring_len = ring::ring_bytes(CAPACITY);
    let map = &stage.map;
    // SAFETY: the whole mapping, which this thread's stage owns; no endpoint uses it now
    // (the previous input's was closed and dropped).
    unsafe { std::ptr::write_bytes(map.ptr(), 0, map.len()) };
    ring::init(map, 0, CAPACITY).expect("ring");
    ring::init(map, ring_len, CAPACITY).expect("ring");
    let keys = stage.keys;
    let base = stage.memory.as_ptr() as u64;
    // The victim is the acceptor: it produces into the second ring and consumes the first.
    let producer = ring::Producer::new(map.clone(), ring_len, CAPACITY).expect("ring");
    let consumer = ring::Consumer::new(map.clone(), 0, CAPACITY).expect("ring");
    let ep = LoopbackEndpoint::unstarted(Shared::new(
        stage.registry.clone(),
        Limits::default(),
        (producer, consumer),
        stage.efd.try_clone().expect("dup"),
        stage.socket.try_clone().expect("dup"),
        Directions {
            out: false,
            peer: None,
        },
    ));
    let recv = Sge {
        handle: keys[1],
        addr: base + 4096,
        len: 4096,
    };
    let mut token = 0u64;
    for _ in 0..4 {
        token += 1;
        let _ = ep.post_recv(&[recv], token);
    }
    let mut attacker = ring::Producer::new(map.clone(), 0, CAPACITY).expect("ring");
    let mut replies = ring::Consumer::new(map.clone(), ring_len, CAPACITY).expect("ring");
    let mut input = Input(input);
    let mut scratch = [0u8; 64];
    let mut cs = [Completion::default(); 16];
    for _ in 0..256 {
        if input.0.is_empty() {
            break;
        }
        match input.u8() {
            // A raw scribble somewhere in the ring the victim reads (rare opcodes).
            0xF0..=0xFF => {
                let at = (input.u64() as usize) % ring_len;
                let b = input.bytes(16);
                let n = b.len().min(ring_len - at);
                scratch[..n].copy_from_slice(&b[..n]);
                // SAFETY: `at..at + n` lies inside the first ring of the mapping (n is
                // clamped to its end); the victim treats this memory as hostile input.
                unsafe { std::ptr::copy_nonoverlapping(scratch.as_ptr(), map.ptr().add(at), n) };
            }
            op => {
                let kind = u16::from(op % 10);
                let flags = u16::from(input.u8() % 8);
                let token = input.u64() % 64;
                let a = match input.u8() % 4 {
                    0 => keys[0].raw(),
                    1 => keys[1].raw(),
                    _ => input.u64(),
                };
                let b = input.u64();
                let len = usize::from(input.u8()) * 2;
                let payload = input.bytes(len).to_vec();
                let h = ring::Header {
                    kind,
                    flags,
                    len: 0,
                    token,
                    a,
                    b,
                };
                let _ = attacker.push(h, &[&payload]);
            }
        }
        // Progress as the application's poll drives it; receives posted again as they
        // complete; what the victim sends back drained, as a live peer would.
        let n = ep.poll(&mut cs);
        for c in &cs[..n] {
            if c.op == Op::Recv {
                token += 1;
                let _ = ep.post_recv(&[recv], token);
            }
        }
        while let Ok(Some(h)) = replies.peek() {
            replies.consume(&h);
        }
    }
    let _ = ep.poll(&mut cs);
    let n = ep.records_received();
    ep.close();
    n
}
