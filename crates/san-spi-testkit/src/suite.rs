//! The behaviours of the conformance suite, one function each, generic over the
//! [`Harness`]. Each takes a connected [`Pair`]: `x.ep` is the local end (buffers on
//! `x.t`), `x.peer` the far end (its own transport and buffers). The macros
//! [`transport_conformance!`](crate::transport_conformance) and
//! [`transport_conformance_cross_process!`](crate::transport_conformance_cross_process) run
//! them with the far end in this process or in another one.
//!
//! What each behaviour requires is in its doc comment; together they are the contract
//! `docs/transport-guide.md` states for vendors.

use crate::{assert_quiet, checksum, pattern, report, wait_one, Harness, Pair, RegisteredBuf};
use san_spi_core::transport::{
    block_on, Capabilities, Completion, Endpoint, MemAccess, Memory, MemoryHandle, Op, PostError,
    RemoteTarget, Sge, Transport,
};
use san_spi_core::WsaError;
use std::collections::HashSet;
use std::time::{Duration, Instant};

/// A capability a part of a behaviour needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Need {
    /// `Capabilities::rdma_read`.
    RdmaRead,
    /// `Capabilities::max_sge` ≥ 2.
    ManySges,
    /// `Harness::ALLOCATION_FREE`.
    AllocationFree,
}

impl Need {
    /// Why `caps` do not meet the need, or `None` when they do.
    pub(crate) fn lacking(self, caps: &Capabilities, allocation_free: bool) -> Option<String> {
        match self {
            Need::RdmaRead if !caps.rdma_read => Some("Capabilities::rdma_read is false".into()),
            Need::ManySges if caps.max_sge < 2 => {
                Some(format!("Capabilities::max_sge is {}", caps.max_sge))
            }
            Need::AllocationFree if !allocation_free => {
                Some("the harness does not declare an allocation-free data plane".into())
            }
            _ => None,
        }
    }
}

/// Every part of a behaviour that depends on a capability: `(test, need, part)`.
pub(crate) const NEEDS: &[(&str, Need, &str)] = &[
    (
        "rdma_write_read_with_offsets_and_many_sges",
        Need::RdmaRead,
        "the RDMA read (its refusal with PostError::NotSupported is checked instead)",
    ),
    (
        "rdma_write_read_with_offsets_and_many_sges",
        Need::ManySges,
        "SGEs from two registrations in one operation",
    ),
    (
        "access_rights_are_enforced",
        Need::RdmaRead,
        "reading a region exported without READ",
    ),
    (
        "large_transfers_verify_by_checksum",
        Need::RdmaRead,
        "the RDMA read",
    ),
    (
        "posts_racing_a_close_complete_exactly_once",
        Need::RdmaRead,
        "RDMA reads among the racing posts",
    ),
    (
        "data_plane_allocation_free",
        Need::AllocationFree,
        "the whole test",
    ),
];

/// Whether the part of `test` that needs `need` runs for `x`; reports it by name when not.
fn applies<H: Harness>(x: &Pair<H>, test: &'static str, need: Need) -> bool {
    let part = match NEEDS.iter().find(|&&(t, n, _)| t == test && n == need) {
        Some(&(_, _, part)) => part,
        None => panic!("suite::NEEDS lacks ({test}, {need:?})"),
    };
    match need.lacking(&x.caps, H::ALLOCATION_FREE) {
        None => true,
        Some(reason) => {
            if x.round == 0 {
                report(&format!("not applicable: {test}: {part}: {reason}"));
            }
            false
        }
    }
}

/// How many fresh connections a behaviour runs on.
pub fn rounds(test: &str, cross_process: bool) -> u64 {
    match (test, cross_process) {
        ("posts_racing_a_close_complete_exactly_once", false) => 64,
        ("posts_racing_a_close_complete_exactly_once", true) => 16,
        _ => 1,
    }
}

/// A local buffer of `len` bytes of `fill`, registered for `access`.
fn buf<T: Memory>(t: &T, len: usize, fill: u8, access: MemAccess) -> RegisteredBuf<&T> {
    RegisteredBuf::new(t, len, fill, access).unwrap_or_else(|e| panic!("register {len} bytes: {e}"))
}

/// `range` of `b` split into `n` SGEs of (nearly) equal length.
fn split<R>(b: &RegisteredBuf<R>, range: std::ops::Range<usize>, n: usize) -> Vec<Sge>
where
    R: std::ops::Deref,
    R::Target: Memory,
{
    let step = range.len().div_euclid(n.max(1)).max(1);
    let mut out = Vec::new();
    let mut at = range.start;
    while at < range.end {
        let end = if out.len() + 1 == n {
            range.end
        } else {
            (at + step).min(range.end)
        };
        out.push(b.sge(at..end));
        at = end;
    }
    out
}

fn target(descriptor: &[u8], offset: u64) -> RemoteTarget<'_> {
    RemoteTarget { descriptor, offset }
}

fn descriptor(peer: &mut dyn crate::Peer, id: u32) -> Vec<u8> {
    peer.descriptor(id)
        .unwrap_or_else(|e| panic!("the far end cannot export buffer {id}: {e}"))
}

/// Whether an RDMA operation of `sges` into the far end's region `d` is refused: at post
/// (any [`PostError`]) or in its completion (any error). Panics if it succeeds.
fn refused<E: Endpoint>(ep: &E, write: bool, sges: &[Sge], d: &[u8], offset: u64, token: u64) {
    let posted = if write {
        ep.rdma_write(sges, target(d, offset), token)
    } else {
        ep.rdma_read(sges, target(d, offset), token)
    };
    if posted.is_ok() {
        let c = wait_one(ep);
        assert_eq!(c.token, token);
        assert!(c.result.is_err(), "token {token}: {c:?} should have failed");
    }
}

/// Connecting where nothing listens is `WSAECONNREFUSED`; listening where something
/// listens is `WSAEADDRINUSE`, from the same transport or another of the same network;
/// once the listener is gone the address is free again.
pub fn connect_and_listen_errors<H: Harness>() {
    let name = crate::unique_name("connect_and_listen_errors");
    let t = H::transport(&name);
    let other = H::transport(&name);
    let addr = H::listen_addr(&t, crate::next_port());
    assert_eq!(block_on(t.connect(addr)).err(), Some(WsaError::ConnRefused));
    let listener = block_on(t.listen(addr)).expect("listen");
    assert_eq!(block_on(t.listen(addr)).err(), Some(WsaError::AddrInUse));
    assert_eq!(
        block_on(other.listen(addr)).err(),
        Some(WsaError::AddrInUse)
    );
    drop(listener);
    let again =
        block_on(other.listen(addr)).expect("the address is free once the listener is gone");
    drop(again);
}

/// A message each way; the bytes arrive, the completions say how many.
pub fn connect_accept_exchange<H: Harness>(x: &mut Pair<H>) {
    x.peer.register(1, 64, 0, MemAccess::READ_WRITE);
    x.peer.post_recv(1, 0..64, 1).unwrap();
    let a = buf(&x.t, 64, 0, MemAccess::READ_WRITE);
    a.write(0, b"ping");
    x.ep.post_send(&[a.sge(0..4)], 2).unwrap();
    assert_eq!(x.peer.wait(), Completion::new(1, Op::Recv, Ok(4)));
    assert_eq!(wait_one(&x.ep), Completion::new(2, Op::Send, Ok(4)));
    assert_eq!(x.peer.read(1, 0..4), b"ping");
    x.ep.post_recv(&[a.sge(0..64)], 3).unwrap();
    x.peer.write(1, 0, b"pong");
    x.peer.post_send(1, 0..4, 4).unwrap();
    assert_eq!(wait_one(&x.ep), Completion::new(3, Op::Recv, Ok(4)));
    assert_eq!(x.peer.wait(), Completion::new(4, Op::Send, Ok(4)));
    assert_eq!(a.to_vec(0..5), b"pong\0");
}

/// Messages arrive in order with their boundaries, whatever their sizes (0 bytes up to
/// 3 MiB or `max_message`), into receives larger than they are; tokens come back
/// untouched; nothing is written past a message's end.
pub fn messages_keep_order_and_boundaries<H: Harness>(x: &mut Pair<H>) {
    let max = x.caps.max_message;
    let mut sizes: Vec<usize> = [0usize, 1, 7, 64, 4096, 100_000, 3 << 20, 5]
        .iter()
        .copied()
        .filter(|&n| n <= max)
        .collect();
    if max < 3 << 20 {
        sizes.push(max);
    }
    let slot = sizes.iter().max().copied().unwrap_or(0) + 1;
    x.peer
        .register(1, sizes.len() * slot, 0xEE, MemAccess::WRITE);
    for i in 0..sizes.len() {
        x.peer
            .post_recv(1, i * slot..(i + 1) * slot, 100 + i as u64)
            .unwrap();
    }
    let total: usize = sizes.iter().sum();
    let data = pattern(total, 3);
    let src = buf(&x.t, total, 0, MemAccess::READ);
    src.write(0, &data);
    let mut at = 0;
    for (i, &n) in sizes.iter().enumerate() {
        let token = 0xF000_0000_0000_0000 | i as u64;
        x.ep.post_send(&[src.sge(at..at + n)], token).unwrap();
        at += n;
    }
    let mut at = 0;
    for (i, &n) in sizes.iter().enumerate() {
        let r = x.peer.wait();
        assert_eq!(r, Completion::new(100 + i as u64, Op::Recv, Ok(n as u32)));
        let got = x.peer.checksum(1, i * slot..i * slot + n);
        assert_eq!(got, checksum(&data[at..at + n]), "message {i} differs");
        let next = i * slot + n;
        assert_eq!(
            x.peer.read(1, next..next + 1),
            [0xEE],
            "message {i} overran"
        );
        at += n;
    }
    for (i, &n) in sizes.iter().enumerate() {
        let r = wait_one(&x.ep);
        let token = 0xF000_0000_0000_0000 | i as u64;
        assert_eq!(r, Completion::new(token, Op::Send, Ok(n as u32)));
    }
}

/// Sends with no receive posted wait for one: nothing is dropped or reordered.
pub fn send_before_recv_waits<H: Harness>(x: &mut Pair<H>) {
    let src = buf(&x.t, 3, 0, MemAccess::READ);
    src.write(0, b"abc");
    for i in 0..3 {
        x.ep.post_send(&[src.sge(i..i + 1)], i as u64).unwrap();
    }
    assert_eq!(x.peer.quiet(Duration::from_millis(100)), None);
    x.peer.register(1, 3, 0, MemAccess::WRITE);
    for i in 0..3 {
        x.peer.post_recv(1, i..i + 1, 10 + i as u64).unwrap();
    }
    for i in 0..3 {
        assert_eq!(
            x.peer.wait(),
            Completion::new(10 + i as u64, Op::Recv, Ok(1))
        );
    }
    assert_eq!(x.peer.read(1, 0..3), b"abc");
    for i in 0..3 {
        assert_eq!(wait_one(&x.ep), Completion::new(i, Op::Send, Ok(1)));
    }
}

/// A message larger than the receive posted for it fails that receive with
/// `WSAEMSGSIZE`, after filling it with the message's first bytes and without writing
/// past it; the next message goes to the next receive, unaffected.
pub fn oversized_message_fails_the_receive<H: Harness>(x: &mut Pair<H>) {
    x.peer.register(1, 64, 0, MemAccess::WRITE);
    x.peer.post_recv(1, 0..10, 1).unwrap();
    x.peer.post_recv(1, 10..64, 2).unwrap();
    let src = buf(&x.t, 100, 7, MemAccess::READ);
    x.ep.post_send(&[src.sge(0..20)], 3).unwrap();
    x.ep.post_send(&[src.sge(0..5)], 4).unwrap();
    assert_eq!(
        x.peer.wait(),
        Completion::new(1, Op::Recv, Err(WsaError::MsgSize))
    );
    assert_eq!(x.peer.wait(), Completion::new(2, Op::Recv, Ok(5)));
    assert_eq!(
        x.peer.read(1, 0..10),
        [7u8; 10],
        "the first bytes fill the receive"
    );
    assert_eq!(
        x.peer.read(1, 15..64),
        [0u8; 49],
        "written past the receives"
    );
    assert_eq!(wait_one(&x.ep).token, 3);
    assert_eq!(wait_one(&x.ep), Completion::new(4, Op::Send, Ok(5)));
}

/// R-SAN-2, R-SAN-3: through the far end's exported descriptor, RDMA write and read move
/// exactly the bytes addressed, at an offset, through many SGEs from two registrations.
/// Without RDMA read, `rdma_read` is refused with [`PostError::NotSupported`].
pub fn rdma_write_read_with_offsets_and_many_sges<H: Harness>(x: &mut Pair<H>) {
    const TEST: &str = "rdma_write_read_with_offsets_and_many_sges";
    let len = 200_000usize.min(x.caps.max_rdma);
    x.peer.register(1, 1 << 20, 0xAA, MemAccess::READ_WRITE);
    let d = descriptor(&mut *x.peer, 1);
    let data = pattern(len, 9);
    let half = len / 2;
    let a = buf(&x.t, half, 0, MemAccess::READ_WRITE);
    let b = buf(&x.t, len - half, 0, MemAccess::READ_WRITE);
    a.write(0, &data[..half]);
    b.write(0, &data[half..]);
    let whole = buf(&x.t, len, 0, MemAccess::READ);
    whole.write(0, &data);
    let sges = if applies(x, TEST, Need::ManySges) {
        // Up to eight SGEs alternating between the two registrations, in data order.
        let each = (x.caps.max_sge / 2).min(4);
        let mut s = split(&a, 0..half, each);
        s.extend(split(&b, 0..len - half, each));
        s
    } else {
        vec![whole.sge(0..len)]
    };
    x.ep.rdma_write(&sges, target(&d, 4096), 77).unwrap();
    let written = Completion::new(77, Op::RdmaWrite, Ok(len as u32));
    assert_eq!(wait_one(&x.ep), written);
    let end = 4096 + len;
    assert_eq!(
        x.peer.checksum(1, 4096..end),
        checksum(&data),
        "written bytes differ"
    );
    assert_eq!(
        x.peer.read(1, 4095..4096),
        [0xAA],
        "wrote before the offset"
    );
    assert_eq!(
        x.peer.checksum(1, end..1 << 20),
        checksum(&vec![0xAA; (1 << 20) - end]),
        "wrote past the range"
    );
    let back = buf(&x.t, len, 0, MemAccess::WRITE);
    let rsges = split(&back, 0..len, x.caps.max_sge.min(5));
    if applies(x, TEST, Need::RdmaRead) {
        x.ep.rdma_read(&rsges, target(&d, 4096), 78).unwrap();
        let read = Completion::new(78, Op::RdmaRead, Ok(len as u32));
        assert_eq!(wait_one(&x.ep), read);
        assert_eq!(back.checksum(0..len), checksum(&data), "read bytes differ");
    } else {
        let r = x.ep.rdma_read(&rsges, target(&d, 4096), 78);
        assert_eq!(r, Err(PostError::NotSupported));
        assert_quiet(&x.ep, Duration::from_millis(20));
    }
    assert_eq!(
        x.peer.quiet(Duration::from_millis(20)),
        None,
        "RDMA completed at the target"
    );
}

/// R-SAN-5: a region exported without WRITE refuses writes and one without READ refuses
/// reads, moving nothing; the same operations succeed where the rights allow them.
pub fn access_rights_are_enforced<H: Harness>(x: &mut Pair<H>) {
    x.peer.register(1, 4096, 0x11, MemAccess::READ);
    x.peer.register(2, 4096, 0x22, MemAccess::WRITE);
    let (ro, wo) = (descriptor(&mut *x.peer, 1), descriptor(&mut *x.peer, 2));
    let local = buf(&x.t, 4096, 0x33, MemAccess::READ_WRITE);
    refused(&x.ep, true, &[local.sge(0..100)], &ro, 0, 1);
    assert_eq!(
        x.peer.checksum(1, 0..4096),
        checksum(&[0x11; 4096]),
        "read-only region written"
    );
    x.ep.rdma_write(&[local.sge(0..100)], target(&wo, 0), 2)
        .unwrap();
    assert_eq!(wait_one(&x.ep), Completion::new(2, Op::RdmaWrite, Ok(100)));
    assert_eq!(
        x.peer.read(2, 0..101)[..],
        [&[0x33u8; 100][..], &[0x22]].concat()[..]
    );
    if applies(x, "access_rights_are_enforced", Need::RdmaRead) {
        refused(&x.ep, false, &[local.sge(0..100)], &wo, 0, 3);
        assert!(
            local.all(0..4096, 0x33),
            "local buffer written by a refused read"
        );
        x.ep.rdma_read(&[local.sge(0..100)], target(&ro, 0), 4)
            .unwrap();
        assert_eq!(wait_one(&x.ep), Completion::new(4, Op::RdmaRead, Ok(100)));
        assert!(local.all(0..100, 0x11) && local.all(100..4096, 0x33));
    }
}

/// R-SAN-5: out-of-bounds (by one byte, far beyond, wrapping), malformed and stale
/// (deregistered) descriptors are refused with zero bytes touched, even the part of a
/// range that would have been in bounds. A descriptor of the wrong length is refused at
/// post time ([`PostError::BadDescriptor`]).
pub fn bad_remote_accesses_touch_nothing<H: Harness>(x: &mut Pair<H>) {
    x.peer.register(1, 8192, 0x5A, MemAccess::READ_WRITE);
    let d = descriptor(&mut *x.peer, 1);
    let untouched = checksum(&[0x5A; 8192]);
    let src = buf(&x.t, 8192, 0x01, MemAccess::READ_WRITE);
    refused(&x.ep, true, &[src.sge(0..4097)], &d, 4096, 1);
    refused(&x.ep, true, &[src.sge(0..1)], &d, 1 << 40, 2);
    refused(&x.ep, true, &[src.sge(0..10)], &d, u64::MAX - 4, 3);
    assert_eq!(x.peer.checksum(1, 0..8192), untouched, "bytes touched");
    for bad in [&[1u8, 2, 3][..], &[][..]] {
        let r = x.ep.rdma_write(&[src.sge(0..10)], target(bad, 0), 4);
        assert_eq!(r, Err(PostError::BadDescriptor));
    }
    let mut long = d.clone();
    long.push(0);
    assert_eq!(
        x.ep.rdma_write(&[src.sge(0..10)], target(&long, 0), 5),
        Err(PostError::BadDescriptor)
    );
    x.peer.deregister(1);
    refused(&x.ep, true, &[src.sge(0..10)], &d, 0, 6);
    assert_eq!(x.peer.checksum(1, 0..8192), untouched, "bytes touched");
}

/// R-SAN-5: a corrupted descriptor is refused, moving nothing. The harness's forgery if it
/// has one ([`Harness::forge`]); otherwise every byte position flipped in turn and every
/// truncation, each of which must be refused. The genuine descriptor still works after.
pub fn forged_descriptors_are_refused<H: Harness>(x: &mut Pair<H>) {
    x.peer.register(1, 4096, 0x5A, MemAccess::READ_WRITE);
    let d = descriptor(&mut *x.peer, 1);
    let src = buf(&x.t, 64, 0x01, MemAccess::READ);
    let forgeries: Vec<Vec<u8>> = match H::forge(&d) {
        Some(f) => vec![f],
        None => {
            let mut v: Vec<Vec<u8>> = (0..d.len())
                .map(|i| {
                    let mut f = d.clone();
                    f[i] ^= 0xFF;
                    f
                })
                .collect();
            v.extend((0..d.len()).map(|n| d[..n].to_vec()));
            v
        }
    };
    for (i, f) in forgeries.iter().enumerate() {
        assert_ne!(f, &d, "forgery {i} is the genuine descriptor");
        refused(&x.ep, true, &[src.sge(0..64)], f, 0, i as u64);
    }
    assert_eq!(
        x.peer.checksum(1, 0..4096),
        checksum(&[0x5A; 4096]),
        "a forgery moved bytes"
    );
    x.ep.rdma_write(&[src.sge(0..64)], target(&d, 0), 1 << 32)
        .unwrap();
    assert_eq!(wait_one(&x.ep).result, Ok(64), "the genuine descriptor");
    assert_eq!(
        x.peer.read(1, 0..65)[..],
        [&[1u8; 64][..], &[0x5A]].concat()[..]
    );
}

/// R-SAN-1: local SGEs outside their registration, with the wrong rights or an unknown
/// handle are refused at post time (naming the SGE), as are more SGEs than `max_sge`.
pub fn local_sges_are_checked<H: Harness>(x: &mut Pair<H>) {
    let ro = buf(&x.t, 100, 0, MemAccess::READ);
    let mut outside = ro.sge(0..100);
    outside.len = 101;
    assert_eq!(
        x.ep.post_send(&[outside], 1),
        Err(PostError::InvalidSge { index: 0 })
    );
    assert_eq!(
        x.ep.post_recv(&[ro.sge(0..10)], 2),
        Err(PostError::InvalidSge { index: 0 }),
        "receiving into a read-only registration"
    );
    let mut unknown = ro.sge(0..10);
    unknown.handle = MemoryHandle::new(0xDEAD_BEEF).unwrap();
    assert_eq!(
        x.ep.post_send(&[ro.sge(0..10), unknown], 3),
        Err(PostError::InvalidSge { index: 1 })
    );
    if x.caps.max_sge < 4096 {
        let many = vec![ro.sge(0..1); x.caps.max_sge + 1];
        assert_eq!(x.ep.post_send(&many, 4), Err(PostError::TooLarge));
    }
    assert_quiet(&x.ep, Duration::from_millis(20));
    assert_eq!(x.peer.quiet(Duration::from_millis(20)), None);
}

/// Deregistering the target region while an RDMA write streams into it ends the write
/// with success (finished first) or an error, never a crash; later writes fail.
pub fn deregistration_while_in_flight<H: Harness>(x: &mut Pair<H>) {
    let len = (32usize << 20).min(x.caps.max_rdma);
    x.peer.register(1, len, 0, MemAccess::READ_WRITE);
    let d = descriptor(&mut *x.peer, 1);
    let src = buf(&x.t, len, 0x77, MemAccess::READ);
    x.ep.rdma_write(&[src.sge(0..len)], target(&d, 0), 1)
        .unwrap();
    std::thread::sleep(Duration::from_millis(1));
    x.peer.deregister(1);
    let r = wait_one(&x.ep);
    assert_eq!((r.token, r.op), (1, Op::RdmaWrite));
    assert!(r.result == Ok(len as u32) || r.result.is_err(), "{r:?}");
    refused(&x.ep, true, &[src.sge(0..10)], &d, 0, 2);
}

/// R-SAN-4: `WSPMemoryRegistrationCacheCallback` drops every registration overlapping the
/// range, and only those: their descriptors no longer export, the others still work.
pub fn cache_callback_drops_every_overlapping<H: Harness>(x: &mut Pair<H>) {
    x.peer.register(1, 1000, 0, MemAccess::READ_WRITE);
    x.peer.register_part(2, 1, 0..100, MemAccess::READ_WRITE);
    x.peer.register_part(3, 1, 50..150, MemAccess::READ_WRITE);
    x.peer.register_part(4, 1, 600..700, MemAccess::READ_WRITE);
    assert_eq!(
        x.peer.invalidate(1, 60..70),
        3,
        "the buffer itself and two parts overlap"
    );
    for id in 1..=3 {
        assert!(x.peer.descriptor(id).is_err(), "registration {id} survived");
    }
    let d = descriptor(&mut *x.peer, 4);
    let src = buf(&x.t, 10, 1, MemAccess::READ);
    x.ep.rdma_write(&[src.sge(0..10)], target(&d, 0), 1)
        .unwrap();
    assert_eq!(wait_one(&x.ep), Completion::new(1, Op::RdmaWrite, Ok(10)));
    assert_eq!(
        x.peer.read(1, 598..612),
        [0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0]
    );
    assert_eq!(x.peer.invalidate(1, 700..1000), 0, "nothing left there");
}

/// Closing an endpoint completes each pending operation with `WSA_OPERATION_ABORTED`,
/// exactly once; later posts are refused with [`PostError::Closed`].
pub fn close_aborts_pending_exactly_once<H: Harness>(x: &mut Pair<H>) {
    let dst = buf(&x.t, 300, 0, MemAccess::WRITE);
    for i in 0..3 {
        x.ep.post_recv(&[dst.sge(i * 100..(i + 1) * 100)], i as u64)
            .unwrap();
    }
    x.ep.close();
    let mut tokens: Vec<u64> = (0..3)
        .map(|_| {
            let r = wait_one(&x.ep);
            assert_eq!(
                (r.op, r.result),
                (Op::Recv, Err(WsaError::OperationAborted))
            );
            r.token
        })
        .collect();
    tokens.sort_unstable();
    assert_eq!(tokens, vec![0, 1, 2]);
    assert_quiet(&x.ep, Duration::from_millis(50));
    assert_eq!(x.ep.post_recv(&[dst.sge(0..1)], 9), Err(PostError::Closed));
}

/// Posts racing a close — ours from another thread, or the far end's — complete exactly
/// once: every accepted post completes once, a refused one never; sends, receives, RDMA
/// writes and reads, with the close landing at a different moment each round.
pub fn posts_racing_a_close_complete_exactly_once<H: Harness>(x: &mut Pair<H>) {
    let round = x.round;
    let reads = applies(
        x,
        "posts_racing_a_close_complete_exactly_once",
        Need::RdmaRead,
    );
    x.peer.register(1, 4096, 0, MemAccess::READ_WRITE);
    let d = descriptor(&mut *x.peer, 1);
    let local = buf(&x.t, 4096, 1, MemAccess::READ_WRITE);
    let close_ours = round % 2 == 0;
    let go = std::sync::Barrier::new(2);
    let (ep, peer) = (&x.ep, &mut x.peer);
    let (accepted, seen) = std::thread::scope(|scope| {
        let closer = scope.spawn(|| {
            go.wait();
            let until = Instant::now() + Duration::from_micros(round % 16 * 25);
            while Instant::now() < until {
                std::hint::spin_loop();
            }
            if close_ours {
                ep.close();
            } else {
                peer.close();
            }
        });
        let mut accepted = HashSet::new();
        let mut seen = Vec::new();
        let mut cs = [Completion::default(); 32];
        go.wait();
        let deadline = Instant::now() + crate::TIMEOUT;
        for token in 0..20_000u64 {
            assert!(
                Instant::now() < deadline,
                "round {round}: posting never ended"
            );
            let t = target(&d, 0);
            let r = match token % 4 {
                0 => ep.post_send(&[local.sge(0..64)], token),
                1 => ep.post_recv(&[local.sge(64..128)], token),
                2 => ep.rdma_write(&[local.sge(128..192)], t, token),
                _ if reads => ep.rdma_read(&[local.sge(192..256)], t, token),
                _ => ep.rdma_write(&[local.sge(192..256)], t, token),
            };
            match r {
                Ok(()) => {
                    accepted.insert(token);
                }
                Err(PostError::QueueFull) => {}
                Err(PostError::Closed) => break,
                Err(e) => panic!("round {round}: post {token}: {e}"),
            }
            let n = ep.poll(&mut cs);
            seen.extend(cs[..n].iter().map(|c| c.token));
        }
        closer.join().expect("closer");
        if !close_ours {
            // The far end is gone; close ours so that what waits for it ends too.
            ep.close();
        }
        let deadline = Instant::now() + crate::TIMEOUT;
        while seen.len() < accepted.len() && Instant::now() < deadline {
            let n = ep.poll(&mut cs);
            seen.extend(cs[..n].iter().map(|c| c.token));
            if n == 0 {
                ep.wait(Duration::from_millis(5));
            }
        }
        assert_quiet(ep, Duration::from_millis(5));
        (accepted, seen)
    });
    let unique: HashSet<u64> = seen.iter().copied().collect();
    assert_eq!(
        unique.len(),
        seen.len(),
        "round {round}: a completion came twice"
    );
    assert!(
        unique.is_subset(&accepted),
        "round {round}: a refused post completed"
    );
    assert_eq!(
        seen.len(),
        accepted.len(),
        "round {round}: accepted posts never completed"
    );
}

/// The far end closing fails a pending receive promptly (an error within 2 s, not a
/// hang), and sends are soon refused ([`PostError::Closed`]); a send accepted before the
/// close was seen still completes.
pub fn peer_close_fails_pending<H: Harness>(x: &mut Pair<H>) {
    let dst = buf(&x.t, 100, 0, MemAccess::WRITE);
    x.ep.post_recv(&[dst.sge(0..100)], 5).unwrap();
    let start = Instant::now();
    x.peer.close();
    let r = wait_one(&x.ep);
    assert_eq!(r.token, 5);
    assert!(r.result.is_err(), "{r:?}");
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "took {:?}",
        start.elapsed()
    );
    let src = buf(&x.t, 10, 0, MemAccess::READ);
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match x.ep.post_send(&[src.sge(0..10)], 6) {
            Err(PostError::Closed) => break,
            other => {
                if other.is_ok() {
                    assert_eq!(wait_one(&x.ep).token, 6);
                }
                assert!(
                    Instant::now() < deadline,
                    "the far end's close never observed"
                );
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// The far end sends `n` one-byte messages (`first`, `first + 1`, …, tokens `0..n`) and
/// waits until each send completed, in order.
fn peer_sends_one_byte_messages(peer: &mut dyn crate::Peer, n: usize, first: u8) {
    let bytes: Vec<u8> = (0..n).map(|i| first.wrapping_add(i as u8)).collect();
    peer.register(9, n, 0, MemAccess::READ);
    peer.write(9, 0, &bytes);
    for i in 0..n {
        peer.post_send(9, i..i + 1, i as u64).unwrap();
    }
    for i in 0..n {
        assert_eq!(peer.wait(), Completion::new(i as u64, Op::Send, Ok(1)));
    }
}

/// Receives `n` one-byte messages into `dst[..n]`, one receive at a time (tokens `0..n`),
/// and checks they are `first`, `first + 1`, ….
fn receive_one_byte_messages<E: Endpoint, R>(ep: &E, dst: &RegisteredBuf<R>, n: usize, first: u8)
where
    R: std::ops::Deref,
    R::Target: Memory,
{
    for i in 0..n {
        ep.post_recv(&[dst.sge(i..i + 1)], i as u64).unwrap();
        let received = Completion::new(i as u64, Op::Recv, Ok(1));
        assert_eq!(wait_one(ep), received, "message {i}");
    }
    let expect: Vec<u8> = (0..n).map(|i| first.wrapping_add(i as u8)).collect();
    assert_eq!(dst.to_vec(0..n), expect);
}

/// Messages the far end sent just before closing are still delivered, in order, to
/// receives posted before the close; only then do the remaining receives fail.
pub fn messages_sent_before_close_are_delivered<H: Harness>(x: &mut Pair<H>) {
    let n = 50usize;
    let dst = buf(&x.t, n + 1, 0xEE, MemAccess::WRITE);
    for i in 0..=n {
        x.ep.post_recv(&[dst.sge(i..i + 1)], i as u64).unwrap();
    }
    peer_sends_one_byte_messages(&mut *x.peer, n, 0);
    x.peer.close();
    for i in 0..n {
        assert_eq!(
            wait_one(&x.ep),
            Completion::new(i as u64, Op::Recv, Ok(1)),
            "message {i}"
        );
    }
    let last = wait_one(&x.ep);
    assert_eq!(last.token, n as u64);
    assert!(
        last.result.is_err(),
        "the receive after the close fails: {last:?}"
    );
    let expect: Vec<u8> = (0..n as u8).chain([0xEE]).collect();
    assert_eq!(dst.to_vec(0..n + 1), expect);
}

/// A graceful close loses nothing: every message the far end sent before closing is
/// delivered, in order, even to receives posted after the close; then each receive
/// completes with `WSAEDISCON` (a stream socket's zero-byte receive), and sends are
/// refused.
pub fn graceful_close_delivers_everything_then_disconnects<H: Harness>(x: &mut Pair<H>) {
    let n = 20usize;
    peer_sends_one_byte_messages(&mut *x.peer, n, 100);
    x.peer.close();
    // Give the close time to arrive before any receive exists.
    std::thread::sleep(Duration::from_millis(200));
    assert_quiet(&x.ep, Duration::from_millis(20));
    let dst = buf(&x.t, n + 2, 0xEE, MemAccess::WRITE);
    receive_one_byte_messages(&x.ep, &dst, n, 100);
    for token in n as u64..n as u64 + 3 {
        x.ep.post_recv(&[dst.sge(n..n + 1)], token).unwrap();
    }
    for token in n as u64..n as u64 + 3 {
        assert_eq!(
            wait_one(&x.ep),
            Completion::new(token, Op::Recv, Err(WsaError::Discon))
        );
    }
    assert_eq!(
        dst.to_vec(n..n + 1),
        [0xEE],
        "nothing written after the end"
    );
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match x.ep.post_send(&[dst.sge(0..1)], 99) {
            Err(PostError::Closed) => break,
            Err(e) => panic!("send after the far end closed: {e}"),
            Ok(()) => {
                assert_eq!(wait_one(&x.ep).token, 99);
                assert!(Instant::now() < deadline, "the close never refused sends");
            }
        }
    }
    x.ep.close();
    assert_eq!(x.ep.post_recv(&[dst.sge(0..1)], 7), Err(PostError::Closed));
}

/// The largest transfer the suite makes — 64 MiB, or `max_message` / `max_rdma` if less —
/// by message, RDMA write and RDMA read, verified by checksum.
pub fn large_transfers_verify_by_checksum<H: Harness>(x: &mut Pair<H>) {
    let msg = (64usize << 20).min(x.caps.max_message);
    let rdma = (64usize << 20).min(x.caps.max_rdma);
    let len = msg.max(rdma);
    let data = pattern(len, 42);
    let src = buf(&x.t, len, 0, MemAccess::READ);
    src.write(0, &data);
    x.peer.register(1, msg, 0, MemAccess::WRITE);
    x.peer.post_recv(1, 0..msg, 1).unwrap();
    x.ep.post_send(&[src.sge(0..msg)], 2).unwrap();
    assert_eq!(x.peer.wait(), Completion::new(1, Op::Recv, Ok(msg as u32)));
    assert_eq!(
        wait_one(&x.ep),
        Completion::new(2, Op::Send, Ok(msg as u32))
    );
    assert_eq!(
        x.peer.checksum(1, 0..msg),
        checksum(&data[..msg]),
        "message checksum"
    );
    x.peer.register(2, rdma, 0, MemAccess::READ_WRITE);
    let d = descriptor(&mut *x.peer, 2);
    x.ep.rdma_write(&[src.sge(0..rdma)], target(&d, 0), 3)
        .unwrap();
    assert_eq!(
        wait_one(&x.ep),
        Completion::new(3, Op::RdmaWrite, Ok(rdma as u32))
    );
    assert_eq!(
        x.peer.checksum(2, 0..rdma),
        checksum(&data[..rdma]),
        "RDMA write checksum"
    );
    if applies(x, "large_transfers_verify_by_checksum", Need::RdmaRead) {
        let dst = buf(&x.t, rdma, 0, MemAccess::WRITE);
        x.ep.rdma_read(&[dst.sge(0..rdma)], target(&d, 0), 4)
            .unwrap();
        assert_eq!(
            wait_one(&x.ep),
            Completion::new(4, Op::RdmaRead, Ok(rdma as u32))
        );
        assert_eq!(
            dst.checksum(0..rdma),
            checksum(&data[..rdma]),
            "RDMA read checksum"
        );
    }
}

/// Sending to a far end that posts no receives fills the send queue: back-pressure
/// ([`PostError::QueueFull`]), never another error; once it receives, every message
/// arrives, in order, and every send completes, in order.
pub fn full_queue_is_back_pressure<H: Harness>(x: &mut Pair<H>) {
    let len = (64usize << 10).min(x.caps.max_message);
    let src = buf(&x.t, len, 4, MemAccess::READ);
    let mut posted = 0u64;
    loop {
        assert!(posted < 100_000, "the send queue never filled");
        match x.ep.post_send(&[src.sge(0..len)], posted) {
            Ok(()) => posted += 1,
            Err(PostError::QueueFull) => break,
            Err(e) => panic!("post {posted}: {e} instead of back-pressure"),
        }
    }
    x.peer.register(1, len, 0, MemAccess::WRITE);
    let mut sent = 0u64;
    let mut cs = [Completion::default(); 64];
    for i in 0..posted {
        x.peer.post_recv(1, 0..len, i).unwrap();
        assert_eq!(x.peer.wait(), Completion::new(i, Op::Recv, Ok(len as u32)));
        let n = x.ep.poll(&mut cs);
        for c in &cs[..n] {
            assert_eq!(*c, Completion::new(sent, Op::Send, Ok(len as u32)));
            sent += 1;
        }
    }
    while sent < posted {
        assert_eq!(
            wait_one(&x.ep),
            Completion::new(sent, Op::Send, Ok(len as u32))
        );
        sent += 1;
    }
    assert_eq!(x.peer.checksum(1, 0..len), checksum(&vec![4u8; len]));
}

/// The receive queue is bounded: posting past its limit is back-pressure
/// ([`PostError::QueueFull`]), and each receive a message uses up makes room for exactly
/// one more.
pub fn full_receive_queue_is_back_pressure<H: Harness>(x: &mut Pair<H>) {
    let dst = buf(&x.t, 8, 0, MemAccess::WRITE);
    let mut posted = 0u64;
    loop {
        assert!(posted < 100_000, "the receive queue never filled");
        match x.ep.post_recv(&[dst.sge(0..8)], posted) {
            Ok(()) => posted += 1,
            Err(PostError::QueueFull) => break,
            Err(e) => panic!("post_recv {posted}: {e} instead of back-pressure"),
        }
    }
    assert!(posted > 0, "not a single receive could be posted");
    x.peer.register(1, 8, 3, MemAccess::READ);
    for round in 0..3u64 {
        x.peer.post_send(1, 0..8, round).unwrap();
        let got = wait_one(&x.ep);
        assert_eq!(
            got,
            Completion::new(round, Op::Recv, Ok(8)),
            "the oldest receive takes it"
        );
        assert_eq!(x.peer.wait().result, Ok(8));
        x.ep.post_recv(&[dst.sge(0..8)], posted + round)
            .unwrap_or_else(|e| panic!("round {round}: a used-up receive made no room: {e}"));
        assert_eq!(
            x.ep.post_recv(&[dst.sge(0..8)], u64::MAX),
            Err(PostError::QueueFull),
            "round {round}: one message made room for more than one receive"
        );
    }
}

/// R-SAN-2: registration keys chosen by the provider. Where the transport takes them
/// (`Capabilities::requested_keys`) the handle is the key, a key in use or 0 is refused
/// with `WSAEINVAL`, RDMA through the far end's descriptor reaches the region, and once it
/// is deregistered the descriptor is stale and nothing moves; the key is then free again.
/// Where it does not, the call says `WSAEOPNOTSUPP` and registers nothing.
pub fn provider_chosen_keys<H: Harness>(x: &mut Pair<H>) {
    let key = 0x5A4E_0000_0000_0000 | (u64::from(std::process::id()) << 16) | (x.round & 0xFFFF);
    if !x.caps.requested_keys {
        let r = RegisteredBuf::with_key(&x.t, 64, 0, MemAccess::WRITE, key);
        assert_eq!(r.err(), Some(WsaError::OpNotSupp));
        let r = x.peer.register_with_key(1, 64, MemAccess::WRITE, key);
        assert_eq!(r, Err(WsaError::OpNotSupp));
        return;
    }
    let mine =
        RegisteredBuf::with_key(&x.t, 64, 0, MemAccess::WRITE, key ^ 1).expect("register_with_key");
    assert_eq!(mine.handle().raw(), key ^ 1, "the handle is the chosen key");
    x.peer
        .register_with_key(1, 4096, MemAccess::WRITE, key)
        .expect("register_with_key");
    assert_eq!(
        x.peer.register_with_key(2, 64, MemAccess::READ, key),
        Err(WsaError::Inval),
        "a key in use"
    );
    assert_eq!(
        x.peer.register_with_key(2, 64, MemAccess::READ, 0),
        Err(WsaError::Inval),
        "key 0"
    );
    let d = descriptor(&mut *x.peer, 1);
    let src = buf(&x.t, 4096, 0x5A, MemAccess::READ);
    x.ep.rdma_write(&[src.sge(0..4096)], target(&d, 0), 1)
        .unwrap();
    assert_eq!(wait_one(&x.ep), Completion::new(1, Op::RdmaWrite, Ok(4096)));
    assert_eq!(
        x.peer.checksum(1, 0..4096),
        checksum(&[0x5A; 4096]),
        "RDMA through the key"
    );
    x.peer.deregister(1);
    let other = buf(&x.t, 4096, 0xA5, MemAccess::READ);
    refused(&x.ep, true, &[other.sge(0..4096)], &d, 0, 2);
    assert_eq!(
        x.peer.checksum(1, 0..4096),
        checksum(&[0x5A; 4096]),
        "bytes moved through a stale key"
    );
    x.peer
        .register_with_key(3, 64, MemAccess::READ, key)
        .expect("a deregistered key can be chosen again");
}

/// Where the harness declares the data plane allocation-free
/// ([`Harness::ALLOCATION_FREE`]): after a warm-up, sends, receives, RDMA writes and reads,
/// `poll` and `wait` make no allocation on the calling thread (counted by
/// [`CountingAllocator`](crate::CountingAllocator), which the test binary must install).
pub fn data_plane_allocation_free<H: Harness>(x: &mut Pair<H>) {
    if !applies(x, "data_plane_allocation_free", Need::AllocationFree) {
        return;
    }
    let reads = x.caps.rdma_read;
    x.peer.register(1, 4096, 0, MemAccess::READ_WRITE);
    x.peer.register(2, 4096, 0, MemAccess::READ_WRITE);
    let d = descriptor(&mut *x.peer, 2);
    let local = buf(&x.t, 4096, 5, MemAccess::READ_WRITE);
    let (sges, rsges) = ([local.sge(0..64)], [local.sge(64..128)]);
    let mut counted = 0u64;
    let mut operations = 0u64;
    for i in 0..1_280u64 {
        let measure = i >= 256;
        let mut count = |f: &mut dyn FnMut()| {
            let (n, ()) = crate::allocations_during(f).unwrap_or_else(|| {
                panic!(
                    "the harness declares ALLOCATION_FREE, so the test binary must install \
                     #[global_allocator] static A: san_spi_testkit::CountingAllocator = \
                     san_spi_testkit::CountingAllocator;"
                )
            });
            if measure {
                counted += n;
                operations += 1;
            }
        };
        let ep = &x.ep;
        let mut cs = [Completion::default(); 4];
        let mut drain = |count: &mut dyn FnMut(&mut dyn FnMut()), want: usize| {
            let mut got = 0;
            let deadline = Instant::now() + crate::TIMEOUT;
            while got < want {
                assert!(Instant::now() < deadline, "no completion");
                count(&mut || got += ep.poll(&mut cs[..want - got]));
                if got < want {
                    count(&mut || {
                        ep.wait(Duration::from_millis(20));
                    });
                }
            }
        };
        x.peer.post_recv(1, 0..64, i).unwrap();
        count(&mut || ep.post_send(&sges, i).unwrap());
        drain(&mut count, 1);
        assert_eq!(x.peer.wait().result, Ok(64));
        count(&mut || ep.post_recv(&rsges, i).unwrap());
        x.peer.post_send(1, 0..64, i).unwrap();
        drain(&mut count, 1);
        assert_eq!(x.peer.wait().result, Ok(64));
        count(&mut || ep.rdma_write(&sges, target(&d, 0), i).unwrap());
        if reads {
            count(&mut || ep.rdma_read(&rsges, target(&d, 0), i).unwrap());
        }
        drain(&mut count, 1 + reads as usize);
    }
    assert_eq!(
        counted, 0,
        "{counted} allocations in {operations} data-plane calls"
    );
}

/// Only across processes: a far end killed without closing keeps what it sent — its
/// whole messages are delivered to receives posted after its death, in order; then the end
/// is a reset: a receive fails with `WSAECONNRESET` (never the graceful `WSAEDISCON`) or
/// is refused.
pub fn peer_death_keeps_what_it_sent<H: Harness>(x: &mut Pair<H>) {
    let n = 10usize;
    peer_sends_one_byte_messages(&mut *x.peer, n, 17);
    assert!(
        x.peer.kill(),
        "peer_death_keeps_what_it_sent needs a far end in another process"
    );
    let dst = buf(&x.t, n + 1, 0xEE, MemAccess::WRITE);
    receive_one_byte_messages(&x.ep, &dst, n, 17);
    match x.ep.post_recv(&[dst.sge(n..n + 1)], 99) {
        Ok(()) => assert_eq!(
            wait_one(&x.ep),
            Completion::new(99, Op::Recv, Err(WsaError::ConnReset))
        ),
        Err(e) => assert_eq!(e, PostError::Closed),
    }
    assert_eq!(
        x.ep.post_recv(&[dst.sge(n..n + 1)], 100),
        Err(PostError::Closed)
    );
    assert_eq!(dst.to_vec(n..n + 1), [0xEE]);
}
