//! `san-spi-testkit` — one conformance suite for every [`Transport`], and the fake switch.
//!
//! Each suite function is generic over a [`Harness`] that makes fresh, isolated transports.
//! A new transport gets the whole suite with one line:
//!
//! ```text
//! san_spi_testkit::transport_conformance!(loopback, my_crate::LoopbackHarness);
//! ```
//!
//! Every test creates its own transport (a unique name is passed to the harness), bounds
//! every wait (a missing completion fails the test instead of hanging it), and checks
//! completions exactly: token, operation, bytes or error.
//!
//! The recording fake switch of the core (`san_spi_core::testing`) is re-exported for
//! provider tests.

use san_spi_core::transport::{
    block_on, Completion, Endpoint, Listener, MemAccess, Memory, MemoryHandle, Op, PostError,
    RemoteTarget, Sge, Transport,
};
use san_spi_core::WsaError;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

pub use san_spi_core::testing::{FakeSwitch, FakeTransport, Upcall};

pub mod fault;
pub mod remote;

/// Makes transports for the suite.
pub trait Harness: 'static {
    /// The transport under test.
    type T: Transport + Clone + Send + Sync + 'static;

    /// A fresh transport isolated from every other test (`test` is unique per test).
    fn transport(test: &str) -> Self::T;
}

/// How long any single completion may take before the test fails.
pub const TIMEOUT: Duration = Duration::from_secs(20);

static PORT: AtomicU16 = AtomicU16::new(20_000);

fn next_addr() -> SocketAddr {
    let port = PORT.fetch_add(1, Ordering::Relaxed);
    SocketAddr::from(([198, 18, 0, 1], port))
}

/// A connected pair: `(transport, client, server)`.
pub fn pair<H: Harness>(test: &str) -> (H::T, EndpointOf<H>, EndpointOf<H>) {
    let t = H::transport(test);
    let addr = next_addr();
    let listener = block_on(t.listen(addr)).expect("listen");
    let server = std::thread::spawn(move || block_on(listener.accept()).expect("accept"));
    let client = block_on(t.connect(addr)).expect("connect");
    let server = server.join().expect("accept thread");
    (t, client, server)
}

/// The endpoint type of a harness.
pub type EndpointOf<H> = <<H as Harness>::T as Transport>::Endpoint;

/// A heap buffer registered with a transport; deregistered on drop.
pub struct Buf<'t, T: Memory> {
    t: &'t T,
    /// The bytes (boxed: the address never moves).
    pub bytes: Box<[u8]>,
    /// The registration, until deregistered.
    pub handle: Option<MemoryHandle>,
}

impl<'t, T: Memory> Buf<'t, T> {
    /// `len` bytes of `fill`, registered with `access`.
    pub fn new(t: &'t T, len: usize, fill: u8, access: MemAccess) -> Buf<'t, T> {
        let mut bytes = vec![fill; len].into_boxed_slice();
        // SAFETY: the box is owned by the returned value, never moved or freed before
        // `drop` deregisters it, and tests only look at it once operations completed.
        let handle = unsafe { t.register(bytes.as_mut_ptr(), len, access) }.expect("register");
        Buf {
            t,
            bytes,
            handle: Some(handle),
        }
    }

    /// `len` bytes of `fill`, registered with `access` under `key`, chosen here
    /// ([`Memory::register_with_key`]).
    pub fn with_key(
        t: &'t T,
        len: usize,
        fill: u8,
        access: MemAccess,
        key: u64,
    ) -> Result<Buf<'t, T>, WsaError> {
        let mut bytes = vec![fill; len].into_boxed_slice();
        // SAFETY: as in `new`.
        let handle = unsafe { t.register_with_key(bytes.as_mut_ptr(), len, access, key) }?;
        Ok(Buf {
            t,
            bytes,
            handle: Some(handle),
        })
    }

    /// The registration handle.
    ///
    /// # Panics
    ///
    /// If the buffer was deregistered.
    pub fn handle(&self) -> MemoryHandle {
        self.handle.expect("registered")
    }

    /// One SGE over `range`.
    pub fn sge(&self, range: std::ops::Range<usize>) -> Sge {
        assert!(range.end <= self.bytes.len());
        Sge {
            handle: self.handle(),
            addr: self.bytes.as_ptr() as u64 + range.start as u64,
            len: range.len() as u32,
        }
    }

    /// The exported RDMA descriptor.
    pub fn descriptor(&self) -> Vec<u8> {
        let mut d = vec![0u8; 256];
        let n = self.t.export(self.handle(), &mut d).expect("export");
        d.truncate(n);
        d
    }

    /// Deregisters now.
    pub fn deregister(&mut self) {
        if let Some(h) = self.handle.take() {
            self.t.deregister(h).expect("deregister");
        }
    }
}

impl<'t, T: Memory> Drop for Buf<'t, T> {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            let _ = self.t.deregister(h);
        }
    }
}

/// Waits for exactly one completion; fails the test after [`TIMEOUT`].
pub fn wait_one<E: Endpoint>(ep: &E) -> Completion {
    wait_within(ep, TIMEOUT)
}

/// The next completion of `ep`; panics if none comes within `timeout`.
pub fn wait_within<E: Endpoint>(ep: &E, timeout: Duration) -> Completion {
    let deadline = Instant::now() + timeout;
    let mut c = [Completion::default(); 1];
    loop {
        if ep.poll(&mut c) == 1 {
            return c[0];
        }
        assert!(
            Instant::now() < deadline,
            "no completion within {timeout:?}"
        );
        ep.wait(Duration::from_millis(20));
    }
}

/// Posts an RDMA write (`Op::RdmaWrite`) or read (`Op::RdmaRead`) of `sges` against the
/// region of `descriptor` at `offset`; panics if the post is refused.
pub(crate) fn post_rdma<E: Endpoint>(
    ep: &E,
    op: Op,
    sges: &[Sge],
    descriptor: &[u8],
    offset: u64,
    token: u64,
) {
    let target = RemoteTarget { descriptor, offset };
    let posted = match op {
        Op::RdmaWrite => ep.rdma_write(sges, target, token),
        Op::RdmaRead => ep.rdma_read(sges, target, token),
        other => panic!("{other:?} is not an RDMA operation"),
    };
    posted.expect("post RDMA");
}

/// `descriptor` with its key changed: the same shape, naming no registration.
pub(crate) fn forged(descriptor: &[u8]) -> Vec<u8> {
    let mut forged = descriptor.to_vec();
    for b in forged.iter_mut().skip(8).take(8) {
        *b ^= 0x5C;
    }
    forged
}

/// Asserts no completion arrives within `d`.
pub fn assert_quiet<E: Endpoint>(ep: &E, d: Duration) {
    let deadline = Instant::now() + d;
    let mut c = [Completion::default(); 1];
    while Instant::now() < deadline {
        assert_eq!(ep.poll(&mut c), 0, "unexpected completion {:?}", c[0]);
        ep.wait(Duration::from_millis(10));
    }
}

/// Deterministic test bytes.
pub(crate) fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| {
            (i as u32)
                .wrapping_mul(2_654_435_761)
                .wrapping_add(seed as u32) as u8
        })
        .collect()
}

/// FNV-1a of `b`, to compare buffers across processes.
pub(crate) fn checksum(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &x| {
        (h ^ x as u64).wrapping_mul(0x100_0000_01b3)
    })
}

/// The control plane's errors: connecting where nothing listens is `WSAECONNREFUSED`,
/// listening where something listens is `WSAEADDRINUSE`; once the listener is gone the
/// address is free again.
pub fn connect_and_listen_errors<H: Harness>() {
    let t = H::transport("connect_and_listen_errors");
    let addr = next_addr();
    assert_eq!(block_on(t.connect(addr)).err(), Some(WsaError::ConnRefused));
    let listener = block_on(t.listen(addr)).expect("listen");
    assert_eq!(block_on(t.listen(addr)).err(), Some(WsaError::AddrInUse));
    drop(listener);
    let again = block_on(t.listen(addr)).expect("the address is free once the listener is gone");
    drop(again);
}

/// Connects, accepts, and both ends can exchange a message each way.
pub fn connect_accept_exchange<H: Harness>() {
    let (t, c, s) = pair::<H>("connect_accept_exchange");
    let mut a = Buf::new(&t, 64, 0, MemAccess::READ_WRITE);
    let mut b = Buf::new(&t, 64, 0, MemAccess::READ_WRITE);
    a.bytes[..4].copy_from_slice(b"ping");
    s.post_recv(&[b.sge(0..64)], 1).unwrap();
    c.post_send(&[a.sge(0..4)], 2).unwrap();
    assert_eq!(wait_one(&s), Completion::new(1, Op::Recv, Ok(4)));
    assert_eq!(wait_one(&c), Completion::new(2, Op::Send, Ok(4)));
    assert_eq!(&b.bytes[..4], b"ping");
    b.bytes[..4].copy_from_slice(b"pong");
    c.post_recv(&[a.sge(0..64)], 3).unwrap();
    s.post_send(&[b.sge(0..4)], 4).unwrap();
    assert_eq!(wait_one(&c).result, Ok(4));
    assert_eq!(wait_one(&s).result, Ok(4));
    assert_eq!(&a.bytes[..4], b"pong");
    a.deregister();
    b.deregister();
}

/// Messages arrive in order with their boundaries, whatever their sizes (0 bytes to
/// larger than a ring record), and tokens come back untouched.
pub fn messages_keep_order_and_boundaries<H: Harness>() {
    let (t, c, s) = pair::<H>("messages_keep_order_and_boundaries");
    let sizes = [0usize, 1, 7, 64, 4096, 100_000, 3 << 20, 5];
    let total: usize = sizes.iter().sum();
    let src_bytes = pattern(total, 3);
    let mut src = Buf::new(&t, total, 0, MemAccess::READ);
    src.bytes.copy_from_slice(&src_bytes);
    let dst = Buf::new(&t, sizes.len() * (4 << 20), 0xEE, MemAccess::WRITE);
    for i in 0..sizes.len() {
        s.post_recv(
            &[dst.sge(i * (4 << 20)..(i + 1) * (4 << 20))],
            100 + i as u64,
        )
        .unwrap();
    }
    let mut at = 0;
    for (i, &n) in sizes.iter().enumerate() {
        c.post_send(&[src.sge(at..at + n)], 0xF000_0000_0000_0000 | i as u64)
            .unwrap();
        at += n;
    }
    let mut at = 0;
    for (i, &n) in sizes.iter().enumerate() {
        let r = wait_one(&s);
        assert_eq!(r, Completion::new(100 + i as u64, Op::Recv, Ok(n as u32)));
        let got = &dst.bytes[i * (4 << 20)..i * (4 << 20) + n];
        assert!(got == &src_bytes[at..at + n], "message {i} differs");
        assert_eq!(dst.bytes[i * (4 << 20) + n], 0xEE, "message {i} overran");
        at += n;
    }
    for (i, &n) in sizes.iter().enumerate() {
        let r = wait_one(&c);
        assert_eq!(r.token, 0xF000_0000_0000_0000 | i as u64);
        assert_eq!(r.result, Ok(n as u32));
    }
}

/// A send with no receive posted waits for one: nothing is dropped or reordered.
pub fn send_before_recv_waits<H: Harness>() {
    let (t, c, s) = pair::<H>("send_before_recv_waits");
    let mut src = Buf::new(&t, 3, 0, MemAccess::READ);
    src.bytes.copy_from_slice(b"abc");
    let dst = Buf::new(&t, 3, 0, MemAccess::WRITE);
    for i in 0..3 {
        c.post_send(&[src.sge(i..i + 1)], i as u64).unwrap();
    }
    assert_quiet(&s, Duration::from_millis(100));
    for i in 0..3 {
        s.post_recv(&[dst.sge(i..i + 1)], 10 + i as u64).unwrap();
    }
    for i in 0..3 {
        assert_eq!(
            wait_one(&s),
            Completion::new(10 + i as u64, Op::Recv, Ok(1))
        );
    }
    assert_eq!(&dst.bytes[..], b"abc");
}

/// A message larger than the receive posted for it fails that receive (WSAEMSGSIZE)
/// without overrunning it; the next message is unaffected.
pub fn oversized_message_fails_the_receive<H: Harness>() {
    let (t, c, s) = pair::<H>("oversized_message_fails_the_receive");
    let src = Buf::new(&t, 100, 7, MemAccess::READ);
    let dst = Buf::new(&t, 64, 0, MemAccess::WRITE);
    s.post_recv(&[dst.sge(0..10)], 1).unwrap();
    s.post_recv(&[dst.sge(10..64)], 2).unwrap();
    c.post_send(&[src.sge(0..20)], 3).unwrap();
    c.post_send(&[src.sge(0..5)], 4).unwrap();
    assert_eq!(wait_one(&s).result, Err(WsaError::MsgSize));
    assert_eq!(wait_one(&s), Completion::new(2, Op::Recv, Ok(5)));
    assert!(dst.bytes[..10].iter().all(|&b| b == 7));
    assert!(dst.bytes[15..].iter().all(|&b| b == 0), "overrun");
}

/// R-SAN-2, R-SAN-3: through the exported descriptor, RDMA write and read move exactly the
/// bytes addressed, at an offset, through many SGEs from two registrations.
pub fn rdma_write_read_with_offsets_and_many_sges<H: Harness>() {
    let (t, c, s) = pair::<H>("rdma_write_read_with_offsets_and_many_sges");
    let region = Buf::new(&t, 1 << 20, 0xAA, MemAccess::READ_WRITE);
    let desc = region.descriptor();
    let data = pattern(200_000, 9);
    let mut a = Buf::new(&t, 100_000, 0, MemAccess::READ_WRITE);
    let mut b = Buf::new(&t, 100_000, 0, MemAccess::READ_WRITE);
    a.bytes.copy_from_slice(&data[..100_000]);
    b.bytes.copy_from_slice(&data[100_000..]);
    // Eight SGEs alternating between the two registrations, in data order.
    let mut sges = Vec::new();
    for k in 0..4 {
        sges.push(a.sge(k * 25_000..(k + 1) * 25_000));
    }
    for k in 0..4 {
        sges.push(b.sge(k * 25_000..(k + 1) * 25_000));
    }
    let target = RemoteTarget {
        descriptor: &desc,
        offset: 4096,
    };
    c.rdma_write(&sges, target, 77).unwrap();
    assert_eq!(
        wait_one(&c),
        Completion::new(77, Op::RdmaWrite, Ok(200_000))
    );
    assert!(
        region.bytes[4096..204_096] == data[..],
        "written bytes differ"
    );
    assert!(
        region.bytes[..4096].iter().all(|&x| x == 0xAA),
        "wrote before the offset"
    );
    assert!(
        region.bytes[204_096..].iter().all(|&x| x == 0xAA),
        "wrote past the range"
    );
    // Read it back into five SGEs of a third registration.
    let back = Buf::new(&t, 200_000, 0, MemAccess::WRITE);
    let rsges: Vec<Sge> = (0..5)
        .map(|k| back.sge(k * 40_000..(k + 1) * 40_000))
        .collect();
    c.rdma_read(
        &rsges,
        RemoteTarget {
            descriptor: &desc,
            offset: 4096,
        },
        78,
    )
    .unwrap();
    assert_eq!(wait_one(&c), Completion::new(78, Op::RdmaRead, Ok(200_000)));
    assert!(back.bytes[..] == data[..], "read bytes differ");
    assert_quiet(&s, Duration::from_millis(20));
}

/// R-SAN-5: a region exported read-only rejects writes; write-only rejects reads; nothing
/// moves.
pub fn access_rights_are_enforced<H: Harness>() {
    let (t, c, _s) = pair::<H>("access_rights_are_enforced");
    let ro = Buf::new(&t, 4096, 0x11, MemAccess::READ);
    let wo = Buf::new(&t, 4096, 0x22, MemAccess::WRITE);
    let local = Buf::new(&t, 4096, 0x33, MemAccess::READ_WRITE);
    let d = ro.descriptor();
    post_rdma(&c, Op::RdmaWrite, &[local.sge(0..100)], &d, 0, 1);
    assert!(wait_one(&c).result.is_err());
    assert!(
        ro.bytes.iter().all(|&x| x == 0x11),
        "read-only region written"
    );
    let d = wo.descriptor();
    post_rdma(&c, Op::RdmaRead, &[local.sge(0..100)], &d, 0, 2);
    assert!(wait_one(&c).result.is_err());
    assert!(
        local.bytes.iter().all(|&x| x == 0x33),
        "local buffer written by a refused read"
    );
}

/// R-SAN-2: registration keys chosen by the provider. Where the transport takes them
/// (`Capabilities::requested_keys`), the handle is the key, a key in use or 0 is refused
/// with WSAEINVAL, RDMA through the exported descriptor reaches the region, and once it is
/// deregistered the descriptor is stale and nothing moves; where it does not, the call says
/// WSAEOPNOTSUPP and registers nothing.
pub fn provider_chosen_keys<H: Harness>() {
    let (t, c, _s) = pair::<H>("provider_chosen_keys");
    let key = 0x5A4E_0000_0000_0000 | u64::from(std::process::id());
    let mut spare_buf = vec![0u8; 64].into_boxed_slice();
    let spare = spare_buf.as_mut_ptr();
    // SAFETY: the box outlives every registration made of it (each is undone below).
    let again = |k: u64| unsafe { t.register_with_key(spare, 64, MemAccess::READ, k) };
    if !t.capabilities().requested_keys {
        assert_eq!(
            Buf::with_key(&t, 64, 0, MemAccess::WRITE, key).err(),
            Some(WsaError::OpNotSupp)
        );
        return;
    }
    let mut dst = Buf::with_key(&t, 4096, 0, MemAccess::WRITE, key).expect("register_with_key");
    assert_eq!(dst.handle().raw(), key, "the handle is the chosen key");
    assert_eq!(again(key), Err(WsaError::Inval), "a key in use");
    assert_eq!(again(0), Err(WsaError::Inval), "key 0");
    let src = Buf::new(&t, 4096, 0x5A, MemAccess::READ);
    let d = dst.descriptor();
    let target = RemoteTarget {
        descriptor: &d,
        offset: 0,
    };
    c.rdma_write(&[src.sge(0..4096)], target, 1).unwrap();
    assert_eq!(wait_one(&c).result, Ok(4096));
    assert!(
        dst.bytes.iter().all(|&x| x == 0x5A),
        "RDMA through the chosen key"
    );
    dst.deregister();
    dst.bytes.fill(0);
    c.rdma_write(&[src.sge(0..4096)], target, 2).unwrap();
    assert!(wait_one(&c).result.is_err(), "a deregistered key is stale");
    assert!(
        dst.bytes.iter().all(|&x| x == 0),
        "bytes moved through a stale key"
    );
    // The key is free again.
    let h = again(key).expect("a deregistered key can be chosen again");
    t.deregister(h).unwrap();
}

/// R-SAN-5: out-of-bounds, stale (deregistered) and forged descriptors are rejected with
/// zero bytes touched, even the part of a range that would have been in bounds.
pub fn bad_remote_accesses_touch_nothing<H: Harness>() {
    let (t, c, _s) = pair::<H>("bad_remote_accesses_touch_nothing");
    let mut region = Buf::new(&t, 8192, 0x5A, MemAccess::READ_WRITE);
    let src = Buf::new(&t, 8192, 0x01, MemAccess::READ_WRITE);
    let d = region.descriptor();
    // Runs past the end by one byte.
    post_rdma(&c, Op::RdmaWrite, &[src.sge(0..4097)], &d, 4096, 1);
    assert!(wait_one(&c).result.is_err());
    // Offset beyond the region.
    post_rdma(&c, Op::RdmaRead, &[src.sge(0..1)], &d, 1 << 40, 2);
    assert!(wait_one(&c).result.is_err());
    assert!(region.bytes.iter().all(|&x| x == 0x5A), "bytes touched");
    // Forged: same shape, different key.
    let forged = forged(&d);
    post_rdma(&c, Op::RdmaWrite, &[src.sge(0..10)], &forged, 0, 3);
    assert!(wait_one(&c).result.is_err());
    // Malformed: refused at post time.
    assert_eq!(
        c.rdma_write(
            &[src.sge(0..10)],
            RemoteTarget {
                descriptor: &[1, 2, 3],
                offset: 0
            },
            4
        ),
        Err(PostError::BadDescriptor)
    );
    // Stale.
    region.deregister();
    post_rdma(&c, Op::RdmaWrite, &[src.sge(0..10)], &d, 0, 5);
    assert!(wait_one(&c).result.is_err());
    assert!(region.bytes.iter().all(|&x| x == 0x5A), "bytes touched");
}

/// R-SAN-1: local SGEs outside their registration, with the wrong rights, or with an
/// unknown handle are refused at post time.
pub fn local_sges_are_checked<H: Harness>() {
    let (t, c, _s) = pair::<H>("local_sges_are_checked");
    let ro = Buf::new(&t, 100, 0, MemAccess::READ);
    let mut outside = ro.sge(0..100);
    outside.len = 101;
    assert_eq!(
        c.post_send(&[outside], 1),
        Err(PostError::InvalidSge { index: 0 })
    );
    assert_eq!(
        c.post_recv(&[ro.sge(0..10)], 2),
        Err(PostError::InvalidSge { index: 0 }),
        "receiving into a read-only registration"
    );
    let mut unknown = ro.sge(0..10);
    unknown.handle = MemoryHandle::new(0xDEAD_BEEF).unwrap();
    assert_eq!(
        c.post_send(&[ro.sge(0..10), unknown], 3),
        Err(PostError::InvalidSge { index: 1 })
    );
    assert_quiet(&c, Duration::from_millis(20));
}

/// Deregistering the target region while an RDMA write streams into it ends the write
/// with success (finished first) or an error, never a crash; later writes fail.
pub fn deregistration_while_in_flight<H: Harness>() {
    let (t, c, _s) = pair::<H>("deregistration_while_in_flight");
    let len = 32 << 20;
    let mut region = Buf::new(&t, len, 0, MemAccess::READ_WRITE);
    let src = Buf::new(&t, len, 0x77, MemAccess::READ);
    let d = region.descriptor();
    post_rdma(&c, Op::RdmaWrite, &[src.sge(0..len)], &d, 0, 1);
    std::thread::sleep(Duration::from_millis(1));
    region.deregister();
    let r = wait_one(&c);
    assert_eq!(r.token, 1);
    assert!(r.result == Ok(len as u32) || r.result.is_err());
    post_rdma(&c, Op::RdmaWrite, &[src.sge(0..10)], &d, 0, 2);
    assert!(wait_one(&c).result.is_err());
}

/// R-SAN-4: `WSPMemoryRegistrationCacheCallback` drops every overlapping registration,
/// and only those.
pub fn cache_callback_drops_every_overlapping<H: Harness>() {
    let (t, c, _s) = pair::<H>("cache_callback_drops_every_overlapping");
    let mut mem = vec![0u8; 400].into_boxed_slice();
    let base = mem.as_mut_ptr();
    let reg = |off: usize, len: usize| {
        // SAFETY: `mem` outlives the registrations (dropped or invalidated below).
        unsafe { t.register(base.add(off), len, MemAccess::READ_WRITE) }.unwrap()
    };
    let r1 = reg(0, 100);
    let r2 = reg(50, 100);
    let r3 = reg(200, 100);
    assert_eq!(t.invalidate(base as u64 + 60, 10), 2);
    let mut d = vec![0u8; 256];
    assert!(t.export(r1, &mut d).is_err());
    assert!(t.export(r2, &mut d).is_err());
    let n = t.export(r3, &mut d).unwrap();
    let src = Buf::new(&t, 10, 1, MemAccess::READ);
    post_rdma(&c, Op::RdmaWrite, &[src.sge(0..10)], &d[..n], 0, 1);
    assert_eq!(wait_one(&c).result, Ok(10));
    assert_eq!(&mem[200..210], &[1u8; 10]);
    t.deregister(r3).unwrap();
    drop(mem);
}

/// Closing an endpoint completes each pending operation with WSA_OPERATION_ABORTED,
/// exactly once, and later posts are refused.
pub fn close_aborts_pending_exactly_once<H: Harness>() {
    let (t, c, s) = pair::<H>("close_aborts_pending_exactly_once");
    let dst = Buf::new(&t, 300, 0, MemAccess::WRITE);
    for i in 0..3 {
        s.post_recv(&[dst.sge(i * 100..(i + 1) * 100)], i as u64)
            .unwrap();
    }
    s.close();
    let mut tokens: Vec<u64> = (0..3)
        .map(|_| {
            let r = wait_one(&s);
            assert_eq!(
                (r.op, r.result),
                (Op::Recv, Err(WsaError::OperationAborted))
            );
            r.token
        })
        .collect();
    tokens.sort_unstable();
    assert_eq!(tokens, vec![0, 1, 2]);
    assert_quiet(&s, Duration::from_millis(50));
    assert_eq!(s.post_recv(&[dst.sge(0..1)], 9), Err(PostError::Closed));
    drop(c);
}

/// Posts racing a close — ours from another thread, or the peer's — complete exactly once:
/// every post that was accepted completes once, and a post that was refused never
/// completes. Sends, receives, RDMA writes and reads, over many rounds with the close
/// landing at different moments.
pub fn posts_racing_a_close_complete_exactly_once<H: Harness>() {
    for round in 0..64u64 {
        let (t, c, s) = pair::<H>("posts_racing_a_close_complete_exactly_once");
        let region = Buf::new(&t, 4096, 0, MemAccess::READ_WRITE);
        let d = region.descriptor();
        let local = Buf::new(&t, 4096, 1, MemAccess::READ_WRITE);
        let target = RemoteTarget {
            descriptor: &d,
            offset: 0,
        };
        let close_ours = round % 2 == 0;
        let go = std::sync::Barrier::new(2);
        let (accepted, seen) = std::thread::scope(|scope| {
            let closer = scope.spawn(|| {
                go.wait();
                // Land the close at a different moment each round.
                let until = Instant::now() + Duration::from_micros(round % 16 * 25);
                while Instant::now() < until {
                    std::hint::spin_loop();
                }
                if close_ours {
                    c.close();
                } else {
                    s.close();
                }
            });
            let mut accepted = std::collections::HashSet::new();
            let mut seen = Vec::new();
            let mut cs = [Completion::default(); 32];
            go.wait();
            let deadline = Instant::now() + TIMEOUT;
            for token in 0..20_000u64 {
                assert!(
                    Instant::now() < deadline,
                    "round {round}: posting never ended"
                );
                let r = match token % 4 {
                    0 => c.post_send(&[local.sge(0..64)], token),
                    1 => c.post_recv(&[local.sge(64..128)], token),
                    2 => c.rdma_write(&[local.sge(128..192)], target, token),
                    _ => c.rdma_read(&[local.sge(192..256)], target, token),
                };
                match r {
                    Ok(()) => {
                        accepted.insert(token);
                    }
                    Err(PostError::QueueFull) => {}
                    Err(PostError::Closed) => break,
                    Err(e) => panic!("round {round}: post {token}: {e}"),
                }
                let n = c.poll(&mut cs);
                seen.extend(cs[..n].iter().map(|x| x.token));
            }
            closer.join().expect("closer");
            // Whatever was accepted completes, promptly, once.
            let deadline = Instant::now() + TIMEOUT;
            while seen.len() < accepted.len() && Instant::now() < deadline {
                let n = c.poll(&mut cs);
                seen.extend(cs[..n].iter().map(|x| x.token));
                if n == 0 {
                    c.wait(Duration::from_millis(5));
                }
            }
            assert_quiet(&c, Duration::from_millis(5));
            (accepted, seen)
        });
        let mut unique = seen.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(
            unique.len(),
            seen.len(),
            "round {round}: a completion came twice"
        );
        for tok in &seen {
            assert!(
                accepted.contains(tok),
                "round {round}: refused post {tok} completed"
            );
        }
        assert_eq!(
            seen.len(),
            accepted.len(),
            "round {round}: accepted posts never completed"
        );
        c.close();
        s.close();
    }
}

/// The peer closing (or going away) fails pending operations promptly: errors, not hangs.
pub fn peer_close_fails_pending<H: Harness>() {
    let (t, c, s) = pair::<H>("peer_close_fails_pending");
    let dst = Buf::new(&t, 100, 0, MemAccess::WRITE);
    s.post_recv(&[dst.sge(0..100)], 5).unwrap();
    let start = Instant::now();
    c.close();
    let r = wait_one(&s);
    assert_eq!(r.token, 5);
    assert!(r.result.is_err());
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "took {:?}",
        start.elapsed()
    );
    let src = Buf::new(&t, 10, 0, MemAccess::READ);
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match s.post_send(&[src.sge(0..10)], 6) {
            Err(PostError::Closed) => break,
            other => {
                // Posted before the close was seen: it must still complete (with any result).
                if other.is_ok() {
                    let _ = wait_one(&s);
                }
                assert!(Instant::now() < deadline, "peer close never observed");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// Sends `n` one-byte messages, bytes `first`, `first + 1`, …, tokens `0..n`, and waits
/// until each send completed, in order.
fn send_one_byte_messages<T: Memory, E: Endpoint>(t: &T, c: &E, n: usize, first: u8) {
    let mut src = Buf::new(t, n, 0, MemAccess::READ);
    for (i, b) in src.bytes.iter_mut().enumerate() {
        *b = first.wrapping_add(i as u8);
    }
    for i in 0..n {
        c.post_send(&[src.sge(i..i + 1)], i as u64).unwrap();
    }
    for i in 0..n {
        let sent = Completion::new(i as u64, Op::Send, Ok(1));
        assert_eq!(wait_one(c), sent);
    }
}

/// `r` is the receive of one-byte message `i` (token `i`).
pub(crate) fn expect_one_byte_message(r: &Completion, i: usize) {
    let received = Completion::new(i as u64, Op::Recv, Ok(1));
    assert_eq!(*r, received, "message {i}");
}

/// Messages sent just before the sender closes are still delivered, in order; only then do
/// the receiver's remaining receives fail.
pub fn messages_sent_before_close_are_delivered<H: Harness>() {
    let (t, c, s) = pair::<H>("messages_sent_before_close_are_delivered");
    let n = 50usize;
    let dst = Buf::new(&t, n + 1, 0xEE, MemAccess::WRITE);
    for i in 0..=n {
        s.post_recv(&[dst.sge(i..i + 1)], i as u64).unwrap();
    }
    send_one_byte_messages(&t, &c, n, 0);
    c.close();
    for i in 0..n {
        expect_one_byte_message(&wait_one(&s), i);
    }
    let last = wait_one(&s);
    assert_eq!(last.token, n as u64);
    assert!(last.result.is_err(), "the receive after the close fails");
    assert!(dst.bytes[..n]
        .iter()
        .enumerate()
        .all(|(i, &b)| b == i as u8));
}

/// A graceful close loses nothing: every message the peer sent before closing is delivered,
/// in order, even to receives posted after the close; then each receive completes with
/// WSAEDISCON (a stream socket's zero-byte receive), and sends are refused.
pub fn graceful_close_delivers_everything_then_disconnects<H: Harness>() {
    let (t, c, s) = pair::<H>("graceful_close_delivers_everything_then_disconnects");
    let n = 20usize;
    send_one_byte_messages(&t, &c, n, 100);
    c.close();
    drop(c);
    // Give the close time to arrive before any receive exists.
    std::thread::sleep(Duration::from_millis(200));
    assert_quiet(&s, Duration::from_millis(20));
    let dst = Buf::new(&t, n + 2, 0xEE, MemAccess::WRITE);
    for i in 0..n {
        s.post_recv(&[dst.sge(i..i + 1)], i as u64).unwrap();
        expect_one_byte_message(&wait_one(&s), i);
    }
    assert!(dst.bytes[..n]
        .iter()
        .enumerate()
        .all(|(i, &b)| b == 100 + i as u8));
    // The receives after the last message report the end, in the order they were posted.
    for token in n as u64..n as u64 + 3 {
        s.post_recv(&[dst.sge(n..n + 1)], token).unwrap();
    }
    for token in n as u64..n as u64 + 3 {
        let end = Completion::new(token, Op::Recv, Err(WsaError::Discon));
        assert_eq!(wait_one(&s), end);
    }
    assert_eq!(dst.bytes[n], 0xEE, "nothing written after the end");
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match s.post_send(&[dst.sge(0..1)], 99) {
            Err(PostError::Closed) => break,
            Err(e) => panic!("send after the peer closed: {e}"),
            Ok(()) => {
                // Posted before the close was seen: it completes, with any result.
                assert_eq!(wait_one(&s).token, 99);
                assert!(Instant::now() < deadline, "the close never refused sends");
            }
        }
    }
    s.close();
    assert_eq!(s.post_recv(&[dst.sge(0..1)], 7), Err(PostError::Closed));
}

/// 64 MiB by message and by RDMA write and read, verified by checksum.
pub fn large_transfers_verify_by_checksum<H: Harness>() {
    let (t, c, s) = pair::<H>("large_transfers_verify_by_checksum");
    let len = 64 << 20;
    let data = pattern(len, 42);
    let sum = checksum(&data);
    let mut src = Buf::new(&t, len, 0, MemAccess::READ);
    src.bytes.copy_from_slice(&data);
    let dst = Buf::new(&t, len, 0, MemAccess::READ_WRITE);
    s.post_recv(&[dst.sge(0..len)], 1).unwrap();
    c.post_send(&[src.sge(0..len)], 2).unwrap();
    assert_eq!(wait_one(&s).result, Ok(len as u32));
    assert_eq!(wait_one(&c).result, Ok(len as u32));
    assert_eq!(checksum(&dst.bytes), sum, "message checksum");
    let region = Buf::new(&t, len, 0, MemAccess::READ_WRITE);
    let d = region.descriptor();
    post_rdma(&c, Op::RdmaWrite, &[src.sge(0..len)], &d, 0, 3);
    assert_eq!(wait_one(&c).result, Ok(len as u32));
    assert_eq!(checksum(&region.bytes), sum, "RDMA write checksum");
    post_rdma(&c, Op::RdmaRead, &[dst.sge(0..len)], &d, 0, 4);
    assert_eq!(wait_one(&c).result, Ok(len as u32));
    assert_eq!(checksum(&dst.bytes), sum, "RDMA read checksum");
}

/// A full queue is back-pressure (`QueueFull`), never another error; everything queued is
/// delivered once the receiver catches up.
pub fn full_queue_is_back_pressure<H: Harness>() {
    let (t, c, s) = pair::<H>("full_queue_is_back_pressure");
    let src = Buf::new(&t, 64 << 10, 3, MemAccess::READ);
    let dst = Buf::new(&t, 64 << 10, 0, MemAccess::WRITE);
    let mut posted = 0u64;
    let mut full = false;
    for i in 0..100_000u64 {
        match c.post_send(&[src.sge(0..64 << 10)], i) {
            Ok(()) => posted += 1,
            Err(PostError::QueueFull) => {
                full = true;
                break;
            }
            Err(e) => panic!("post {i}: {e} instead of back-pressure"),
        }
    }
    assert!(full, "the send queue never filled");
    let mut received = 0u64;
    let mut sent = 0u64;
    let deadline = Instant::now() + TIMEOUT;
    let mut cs = [Completion::default(); 64];
    while received < posted || sent < posted {
        assert!(Instant::now() < deadline, "received {received} of {posted}");
        if received < posted {
            if let Ok(()) = s.post_recv(&[dst.sge(0..64 << 10)], received) {
                let r = wait_one(&s);
                assert_eq!(r, Completion::new(received, Op::Recv, Ok(64 << 10)));
                received += 1;
            }
        }
        let n = c.poll(&mut cs);
        for x in &cs[..n] {
            assert_eq!(x.token, sent);
            assert_eq!(x.result, Ok(64 << 10));
            sent += 1;
        }
    }
}

/// The receive queue is bounded: posting past its limit is back-pressure (`QueueFull`),
/// and each receive a message uses up makes room for exactly one more, whatever thread
/// took the receives over.
pub fn full_receive_queue_is_back_pressure<H: Harness>() {
    let (t, c, s) = pair::<H>("full_receive_queue_is_back_pressure");
    let src = Buf::new(&t, 8, 3, MemAccess::READ);
    let dst = Buf::new(&t, 8, 0, MemAccess::WRITE);
    let mut posted = 0u64;
    loop {
        assert!(posted < 100_000, "the receive queue never filled");
        match s.post_recv(&[dst.sge(0..8)], posted) {
            Ok(()) => posted += 1,
            Err(PostError::QueueFull) => break,
            Err(e) => panic!("post_recv {posted}: {e} instead of back-pressure"),
        }
    }
    assert!(posted > 0, "not a single receive could be posted");
    for round in 0..3u64 {
        c.post_send(&[src.sge(0..8)], round).unwrap();
        let got = wait_one(&s);
        assert_eq!(
            (got.token, got.op, got.result),
            (round, Op::Recv, Ok(8)),
            "round {round}: the oldest receive takes the message"
        );
        assert_eq!(wait_one(&c).result, Ok(8));
        s.post_recv(&[dst.sge(0..8)], posted + round)
            .unwrap_or_else(|e| panic!("round {round}: a used-up receive made no room: {e}"));
        assert_eq!(
            s.post_recv(&[dst.sge(0..8)], u64::MAX),
            Err(PostError::QueueFull),
            "round {round}: one message made room for more than one receive"
        );
    }
}

/// Instantiates the whole suite for a harness: `transport_conformance!(name, Harness);`.
#[macro_export]
macro_rules! transport_conformance {
    ($name:ident, $harness:ty) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            $crate::transport_conformance!(@tests $harness;
                connect_and_listen_errors,
                connect_accept_exchange,
                messages_keep_order_and_boundaries,
                send_before_recv_waits,
                oversized_message_fails_the_receive,
                rdma_write_read_with_offsets_and_many_sges,
                access_rights_are_enforced,
                bad_remote_accesses_touch_nothing,
                local_sges_are_checked,
                deregistration_while_in_flight,
                cache_callback_drops_every_overlapping,
                close_aborts_pending_exactly_once,
                posts_racing_a_close_complete_exactly_once,
                peer_close_fails_pending,
                messages_sent_before_close_are_delivered,
                graceful_close_delivers_everything_then_disconnects,
                large_transfers_verify_by_checksum,
                full_queue_is_back_pressure,
                full_receive_queue_is_back_pressure,
                provider_chosen_keys,
            );
        }
    };
    (@tests $harness:ty; $($test:ident),* $(,)?) => {
        $(
            #[test]
            fn $test() {
                $crate::$test::<$harness>();
            }
        )*
    };
}
