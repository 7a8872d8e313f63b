//! `san-spi-loopback` — a shared-memory [`Transport`] between endpoints on one host, in one
//! process or in two.
//!
//! - **Rendezvous**: a listener is an abstract-namespace Unix socket named after the
//!   transport's namespace and the listening address. The connecting side creates a
//!   sealed memfd holding two rings (one per direction) and passes it with `SCM_RIGHTS`.
//!   The socket stays open: the two sides wake each other with single bytes on it (sent
//!   with `MSG_DONTWAIT`, so a peer can never make a wake-up block), and its hang-up is how
//!   each side learns the other died. No other descriptor is shared: each side parks on
//!   an eventfd of its own, whose file state no peer can touch.
//! - **Rings**: single-producer single-consumer, bounded, wrap-safe; each record is sealed
//!   in place (the consumer polls the record itself, not a shared tail) and the consumer's
//!   head is published on a cache line of its own; acquire/release (see `ring`).
//! - **Progress**: each endpoint runs a progress thread that consumes the inbound ring,
//!   serves RDMA requests against its registrations and pumps queued outbound work. It
//!   spins briefly, then parks on its own eventfd and the socket; a producer sends a
//!   wake-up byte only when the consumer announced it is parking, so an idle connection
//!   burns no CPU and a busy one makes no syscalls.
//! - **The peer is untrusted**: every index, length and key read from shared memory is
//!   validated; payload is copied once; remote accesses are checked against the
//!   registration (key with generation, bounds, rights) before a byte moves; a violation
//!   or a dead peer fails every pending operation with an error.
//! - **RDMA** is single copy where the kernel allows it: the owner of the target region
//!   validates the request, then copies straight between its region and the initiator's
//!   memory with `process_vm_readv` / `process_vm_writev` (see `direct`). Where it does
//!   not (Yama `ptrace_scope`, another user, pid namespaces) — or when
//!   [`LoopbackTransport::with_copy_mode`] asks for it — RDMA bounces through the ring,
//!   the owner again copying after validation. The mode is settled at connect, per
//!   direction, and reported by [`LoopbackEndpoint::copy_mode`].
//! - **Handshake** (over the Unix socket; version 4: sealed records, wake-ups on the
//!   socket): the connector sends `magic u32 | version u32 | ring capacity u64 | flags u32
//!   | 0 u32 | probe address u64 | probe bytes [16]` with the memfd; the acceptor answers
//!   `magic | version | flags u32 | 0 u32 | probe address | probe bytes`, the connector
//!   closes with `magic | flags u32`. Flags: 1 = wants single copy, 2 = serves single
//!   copy (it read the other side's 16 random probe bytes back from the other side's
//!   memory, at the pid the kernel names for the socket). A side sends single-copy
//!   requests only if both want it and the other serves them; a side serves them only if
//!   it said so. Each handshake has 10 s in all; the listener runs them concurrently, so
//!   a connector that stalls delays only itself.
//!
//! ```
//! use san_spi_core::transport::{block_on, Endpoint, Listener, MemAccess, Memory, Sge, Transport};
//! use san_spi_loopback::LoopbackTransport;
//!
//! let t = LoopbackTransport::new("doc-example");
//! let addr = "198.18.0.1:7000".parse().unwrap();
//! let listener = block_on(t.listen(addr)).unwrap();
//! let server = std::thread::spawn(move || block_on(listener.accept()).unwrap());
//! let client = block_on(t.connect(addr)).unwrap();
//! let server = server.join().unwrap();
//!
//! let mut src = *b"hello";
//! let mut dst = [0u8; 16];
//! // SAFETY: both buffers outlive their registrations and the operations below.
//! let (hs, hd) = unsafe {
//!     (t.register(src.as_mut_ptr(), 5, MemAccess::READ).unwrap(),
//!      t.register(dst.as_mut_ptr(), 16, MemAccess::WRITE).unwrap())
//! };
//! server.post_recv(&[Sge { handle: hd, addr: dst.as_ptr() as u64, len: 16 }], 1).unwrap();
//! client.post_send(&[Sge { handle: hs, addr: src.as_ptr() as u64, len: 5 }], 2).unwrap();
//! let mut c = [Default::default(); 1];
//! while server.poll(&mut c) == 0 { server.wait(std::time::Duration::from_millis(100)); }
//! assert_eq!(c[0].result, Ok(5));
//! assert_eq!(&dst[..5], b"hello");
//! ```

mod direct;
mod endpoint;
#[cfg(feature = "fuzz")]
pub mod fuzzing;
mod handshake;
mod registry;
mod ring;
mod sys;
mod wire;

pub use endpoint::{CopyMode, Limits, LoopbackEndpoint, DIRECT_MAX_BYTES, SINGLE_COPY_MAX_DEFAULT};
pub use registry::DESCRIPTOR_LEN;

use endpoint::{Directions, Shared};
use registry::Registry;
use san_spi_core::guid::ExtensionFunction;
use san_spi_core::transport::{
    Capabilities, LocalAddress, MemAccess, Memory, MemoryHandle, Transport, TransportControl,
};
use san_spi_core::WsaError;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr as UnixAddr, UnixListener, UnixStream};
use std::sync::Arc;
use std::time::Duration;

use handshake::{field::HELLO_LEN, Final, Hello, Reply, SERVES_DIRECT, WANTS_DIRECT};
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest abstract socket name: `sun_path` (108 bytes) less the leading NUL.
const MAX_SOCKET_NAME: usize = 107;

/// Default data bytes of each ring.
pub const DEFAULT_RING_CAPACITY: usize = 4 << 20;

/// The shared-memory transport.
///
/// ```
/// use san_spi_core::transport::{Transport, TransportControl};
/// use san_spi_loopback::LoopbackTransport;
///
/// let t = LoopbackTransport::new("caps");
/// assert!(t.capabilities().rdma_read);
/// assert_eq!(t.local_addresses().unwrap().len(), 2);
/// ```
#[derive(Debug, Clone)]
pub struct LoopbackTransport {
    namespace: String,
    registry: Arc<Registry>,
    limits: Limits,
    ring_capacity: usize,
    copy_mode: CopyMode,
    addresses: Vec<LocalAddress>,
}

impl LoopbackTransport {
    /// A transport whose listeners live in `namespace` (endpoints meet only within one
    /// namespace, so tests and demos never collide). It serves a virtual NIC with the
    /// addresses 198.18.0.1 and fd53:414e::1.
    pub fn new(namespace: impl Into<String>) -> LoopbackTransport {
        LoopbackTransport {
            namespace: namespace.into(),
            registry: Arc::new(Registry::new()),
            limits: Limits::default(),
            ring_capacity: DEFAULT_RING_CAPACITY,
            copy_mode: CopyMode::SingleCopy,
            addresses: vec![
                LocalAddress::new("198.18.0.1:0".parse().expect("literal")),
                LocalAddress::new("[fd53:414e::1]:0".parse().expect("literal")),
            ],
        }
    }

    /// Sets the data bytes of each ring for new connections (a power of two, ≥ 64 KiB).
    ///
    /// # Panics
    ///
    /// If `capacity` is not a power of two of at least 64 KiB.
    pub fn with_ring_capacity(mut self, capacity: usize) -> LoopbackTransport {
        assert!(capacity.is_power_of_two() && capacity >= 64 << 10);
        self.ring_capacity = capacity;
        self
    }

    /// Sets how new connections move RDMA data: [`CopyMode::SingleCopy`] (the default)
    /// where the kernel allows it and bounce otherwise, or [`CopyMode::Bounce`] always.
    /// Either side choosing bounce makes the whole connection bounce.
    ///
    /// Without this call a single-copy connection still bounces each transfer larger than
    /// [`Limits::single_copy_max`] — by default all of them, bouncing being the faster path
    /// where measured ([`SINGLE_COPY_MAX_DEFAULT`]). Asking for `SingleCopy` explicitly
    /// also sends every transfer it can single copy (`single_copy_max` =
    /// [`DIRECT_MAX_BYTES`]); a later [`with_limits`](Self::with_limits) sets it again.
    ///
    /// ```
    /// use san_spi_loopback::{CopyMode, LoopbackTransport};
    ///
    /// let t = LoopbackTransport::new("bounce-only").with_copy_mode(CopyMode::Bounce);
    /// assert_eq!(t.copy_mode(), CopyMode::Bounce);
    /// ```
    pub fn with_copy_mode(mut self, mode: CopyMode) -> LoopbackTransport {
        self.copy_mode = mode;
        if mode == CopyMode::SingleCopy {
            self.limits.single_copy_max = DIRECT_MAX_BYTES;
        }
        self
    }

    /// The copy mode new connections ask for (see [`with_copy_mode`](Self::with_copy_mode)).
    pub fn copy_mode(&self) -> CopyMode {
        self.copy_mode
    }

    /// Sets the queue limits of new endpoints.
    pub fn with_limits(mut self, limits: Limits) -> LoopbackTransport {
        self.limits = limits;
        self
    }

    /// The listener's abstract socket name. A name longer than a socket address holds
    /// (107 bytes) is replaced by a 64-bit FNV-1a digest of it: any namespace works, and
    /// every process computes the same name for the same namespace and address.
    fn socket_name(&self, addr: &SocketAddr) -> Result<UnixAddr, WsaError> {
        let name = format!("san-spi-loopback/{}/{}", self.namespace, addr);
        let name = if name.len() <= MAX_SOCKET_NAME {
            name
        } else {
            let digest = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
            });
            format!("san-spi-loopback/#{digest:016x}")
        };
        UnixAddr::from_abstract_name(name.as_bytes()).map_err(|_| WsaError::Inval)
    }

    fn endpoint(
        &self,
        socket: UnixStream,
        fd: &OwnedFd,
        capacity: usize,
        connector: bool,
        directions: Directions,
    ) -> Result<LoopbackEndpoint, WsaError> {
        let ring = ring::ring_bytes(capacity);
        let map = Arc::new(sys::Mapping::new(fd, 2 * ring).map_err(|_| WsaError::NoBufs)?);
        let (out_base, in_base) = if connector { (0, ring) } else { (ring, 0) };
        let producer =
            ring::Producer::new(map.clone(), out_base, capacity).ok_or(WsaError::Inval)?;
        let consumer = ring::Consumer::new(map, in_base, capacity).ok_or(WsaError::Inval)?;
        // Our own wake-up, never shared: the peer wakes us over the socket.
        let my_efd = sys::eventfd().map_err(|_| WsaError::NoBufs)?;
        Ok(LoopbackEndpoint::start(Shared::new(
            self.registry.clone(),
            self.limits,
            (producer, consumer),
            my_efd,
            socket,
            directions,
        )))
    }

    fn wants_direct(&self) -> bool {
        self.copy_mode == CopyMode::SingleCopy
    }
}

impl TransportControl for LoopbackTransport {
    fn local_addresses(&self) -> Result<Vec<LocalAddress>, WsaError> {
        Ok(self.addresses.clone())
    }

    fn offers(&self, _socket: u64, f: ExtensionFunction) -> bool {
        self.capabilities().offers(f)
    }
}

impl Memory for LoopbackTransport {
    unsafe fn register(
        &self,
        addr: *mut u8,
        len: usize,
        access: MemAccess,
    ) -> Result<MemoryHandle, WsaError> {
        self.registry.register(addr as u64, len as u64, access)
    }

    unsafe fn register_with_key(
        &self,
        addr: *mut u8,
        len: usize,
        access: MemAccess,
        key: u64,
    ) -> Result<MemoryHandle, WsaError> {
        self.registry
            .register_with_key(addr as u64, len as u64, access, key)
    }

    fn deregister(&self, handle: MemoryHandle) -> Result<(), WsaError> {
        self.registry.deregister(handle)
    }

    fn export(&self, handle: MemoryHandle, out: &mut [u8]) -> Result<usize, WsaError> {
        self.registry.export(handle, out)
    }

    fn invalidate(&self, addr: u64, len: u64) -> usize {
        self.registry.invalidate(addr, len)
    }
}

/// Handshakes run at once, each on a thread of its own, before the listener stops taking
/// new connections from the kernel's backlog until one ends.
const MAX_HANDSHAKES: usize = 64;

/// A listening loopback endpoint.
///
/// Each connection's handshake runs on a thread of its own, under one deadline for the whole
/// handshake (10 s), so a connector that stalls delays nobody but itself:
/// `accept` returns the first connection whose handshake succeeds.
#[derive(Debug)]
pub struct LoopbackListener {
    transport: LoopbackTransport,
    /// Nonblocking: `accept` polls it together with `handshakes.wake`.
    listener: UnixListener,
    addr: SocketAddr,
    handshakes: Arc<Handshakes>,
}

/// The handshakes in progress and the endpoints they made, not yet accepted.
#[derive(Debug)]
struct Handshakes {
    state: std::sync::Mutex<HandshakeState>,
    /// Signalled (our own eventfd) when a handshake ends.
    wake: OwnedFd,
}

#[derive(Debug, Default)]
struct HandshakeState {
    ready: std::collections::VecDeque<LoopbackEndpoint>,
    running: usize,
}

impl Handshakes {
    fn lock(&self) -> std::sync::MutexGuard<'_, HandshakeState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs the acceptor's handshake on `socket` on a thread of its own; a good one's
    /// endpoint joins `ready`. `false` when no thread could be started.
    fn start(self: &Arc<Self>, transport: &LoopbackTransport, socket: UnixStream) -> bool {
        let (me, transport) = (self.clone(), transport.clone());
        self.lock().running += 1;
        let spawned = std::thread::Builder::new()
            .name("san-spi-loopback-handshake".into())
            .spawn(move || {
                let deadline = std::time::Instant::now() + HANDSHAKE_TIMEOUT;
                // A malformed or stalled handshake, or memory the peer prepared badly, is
                // the peer's problem: drop it.
                let ep = accept_handshake(&socket, transport.wants_direct(), deadline)
                    .ok()
                    .and_then(|h| {
                        transport
                            .endpoint(socket, &h.fd, h.capacity, false, h.directions)
                            .ok()
                    });
                let mut st = me.lock();
                st.running -= 1;
                st.ready.extend(ep);
                drop(st);
                sys::eventfd_signal(me.wake.as_raw_fd());
            });
        if spawned.is_err() {
            self.lock().running -= 1;
        }
        spawned.is_ok()
    }
}

#[async_trait::async_trait]
impl san_spi_core::transport::Listener for LoopbackListener {
    type Endpoint = LoopbackEndpoint;

    /// Blocks the calling thread until a peer connects (the loopback has no reactor).
    async fn accept(&self) -> Result<LoopbackEndpoint, WsaError> {
        loop {
            let (ready, room) = {
                let mut st = self.handshakes.lock();
                (st.ready.pop_front(), st.running < MAX_HANDSHAKES)
            };
            if let Some(ep) = ready {
                return Ok(ep);
            }
            if room {
                match self.listener.accept() {
                    Ok((socket, _)) => {
                        if socket.set_nonblocking(false).is_ok() {
                            self.handshakes.start(&self.transport, socket);
                        }
                        continue;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(_) => return Err(WsaError::NetDown),
                }
            }
            let wake = self.handshakes.wake.as_raw_fd();
            if room {
                sys::wait_readable(&[self.listener.as_raw_fd(), wake], 100);
            } else {
                sys::wait_readable(&[wake], 100);
            }
            sys::eventfd_drain(wake);
        }
    }

    fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

/// 16 random bytes in memory of their own, for the other side to read back.
fn new_probe() -> Box<[u8; 16]> {
    let mut p = Box::new([0u8; 16]);
    p[..8].copy_from_slice(&sys::random_u64().to_le_bytes());
    p[8..].copy_from_slice(&sys::random_u64().to_le_bytes());
    p
}

/// Whether this side serves the other's single-copy requests: both want it, and the
/// process the socket names shows `probe` at `addr`.
fn probe_peer(
    socket: &UnixStream,
    both_want: bool,
    addr: u64,
    probe: &[u8; 16],
) -> Option<direct::Peer> {
    if !both_want {
        return None;
    }
    direct::Peer::of_socket(socket.as_raw_fd()).filter(|p| p.probe(addr, probe))
}

/// The connector's side of the handshake after the hello went out: reads the reply,
/// probes, sends the last word. `probe` must stay alive until this returns.
fn connect_handshake(
    socket: &UnixStream,
    wants: bool,
    probe: &[u8; 16],
) -> std::io::Result<Directions> {
    use std::io::{Read, Write};
    let bad = || std::io::Error::from(std::io::ErrorKind::InvalidData);
    socket.set_read_timeout(Some(HANDSHAKE_TIMEOUT))?;
    let mut bytes = [0u8; handshake::field::REPLY_LEN];
    (&mut &*socket).read_exact(&mut bytes)?;
    let reply = Reply::parse(&bytes).map_err(|_| bad())?;
    let flags = reply.flags;
    let both_want = wants && flags & WANTS_DIRECT != 0;
    let peer = probe_peer(socket, both_want, reply.probe_addr, &reply.probe);
    let mine =
        if wants { WANTS_DIRECT } else { 0 } | if peer.is_some() { SERVES_DIRECT } else { 0 };
    (&mut &*socket).write_all(&Final { flags: mine }.encode())?;
    socket.set_read_timeout(None)?;
    // The acceptor has read our probe bytes (or given up) before replying.
    std::hint::black_box(probe);
    Ok(Directions {
        out: both_want && flags & SERVES_DIRECT != 0,
        peer,
    })
}

/// What an acceptor learnt from a good handshake.
struct Accepted {
    fd: OwnedFd,
    capacity: usize,
    directions: Directions,
}

/// The acceptor's side of the handshake: reads and validates the hello (the memfd and the
/// ring capacity), probes, replies, reads the last word. Exactly one descriptor is taken:
/// no wake-up object of the peer's is ever used.
fn accept_handshake(
    socket: &UnixStream,
    wants: bool,
    deadline: std::time::Instant,
) -> Result<Accepted, WsaError> {
    use std::io::{Read, Write};
    // One deadline for the whole handshake: each read may wait only for what is left.
    let until_deadline = || {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err(WsaError::ConnReset);
        }
        socket
            .set_read_timeout(Some(left))
            .map_err(|_| WsaError::ConnReset)
    };
    until_deadline()?;
    let mut hello = [0u8; HELLO_LEN];
    let (n, mut fds) =
        sys::recv_fds(socket.as_raw_fd(), &mut hello, 1).map_err(|_| WsaError::ConnReset)?;
    if fds.len() != 1 {
        return Err(WsaError::ConnReset);
    }
    let hello = Hello::parse(&hello[..n]).map_err(|_| WsaError::ConnReset)?;
    let capacity = hello.capacity as usize;
    let fd = fds.pop().expect("1 fd");
    let len = sys::file_len(&fd).map_err(|_| WsaError::ConnReset)?;
    if !sys::is_size_sealed(&fd) || len < 2 * ring::ring_bytes(capacity) {
        return Err(WsaError::ConnReset);
    }
    let both_want = wants && hello.flags & WANTS_DIRECT != 0;
    let peer = probe_peer(socket, both_want, hello.probe_addr, &hello.probe);
    let probe = new_probe();
    let mine =
        if wants { WANTS_DIRECT } else { 0 } | if peer.is_some() { SERVES_DIRECT } else { 0 };
    let mut s = socket;
    let reply = Reply {
        flags: mine,
        probe_addr: probe.as_ptr() as u64,
        probe: *probe,
    };
    s.write_all(&reply.encode())
        .map_err(|_| WsaError::ConnReset)?;
    let mut last = [0u8; handshake::field::FINAL_LEN];
    until_deadline()?;
    s.read_exact(&mut last).map_err(|_| WsaError::ConnReset)?;
    // The connector has read our probe bytes (or given up) before its last word.
    std::hint::black_box(&probe);
    let last = Final::parse(&last).map_err(|_| WsaError::ConnReset)?;
    socket
        .set_read_timeout(None)
        .map_err(|_| WsaError::ConnReset)?;
    Ok(Accepted {
        fd,
        capacity,
        directions: Directions {
            out: both_want && last.flags & SERVES_DIRECT != 0,
            peer,
        },
    })
}

#[async_trait::async_trait]
impl Transport for LoopbackTransport {
    type Endpoint = LoopbackEndpoint;
    type Listener = LoopbackListener;

    fn capabilities(&self) -> Capabilities {
        Capabilities::new(
            self.limits.max_sge,
            u32::MAX as usize,
            u32::MAX as usize,
            DESCRIPTOR_LEN,
        )
        .with_rdma_read(true)
        .with_requested_keys(true)
    }

    async fn listen(&self, addr: SocketAddr) -> Result<LoopbackListener, WsaError> {
        let name = self.socket_name(&addr)?;
        let listener = UnixListener::bind_addr(&name).map_err(|e| match e.kind() {
            std::io::ErrorKind::AddrInUse => WsaError::AddrInUse,
            _ => WsaError::NetDown,
        })?;
        listener
            .set_nonblocking(true)
            .map_err(|_| WsaError::NetDown)?;
        Ok(LoopbackListener {
            transport: self.clone(),
            listener,
            addr,
            handshakes: Arc::new(Handshakes {
                state: std::sync::Mutex::new(HandshakeState::default()),
                wake: sys::eventfd().map_err(|_| WsaError::NoBufs)?,
            }),
        })
    }

    async fn connect(&self, addr: SocketAddr) -> Result<LoopbackEndpoint, WsaError> {
        let name = self.socket_name(&addr)?;
        let socket = UnixStream::connect_addr(&name).map_err(|e| match e.kind() {
            std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::NotFound => {
                WsaError::ConnRefused
            }
            _ => WsaError::NetDown,
        })?;
        let capacity = self.ring_capacity;
        let ring = ring::ring_bytes(capacity);
        let fd = sys::memfd("san-spi-loopback", 2 * ring).map_err(|_| WsaError::NoBufs)?;
        {
            let map = Arc::new(sys::Mapping::new(&fd, 2 * ring).map_err(|_| WsaError::NoBufs)?);
            ring::init(&map, 0, capacity).ok_or(WsaError::Inval)?;
            ring::init(&map, ring, capacity).ok_or(WsaError::Inval)?;
        }
        let wants = self.wants_direct();
        let probe = new_probe();
        let hello = Hello {
            capacity: capacity as u64,
            flags: if wants { WANTS_DIRECT } else { 0 },
            probe_addr: probe.as_ptr() as u64,
            probe: *probe,
        }
        .encode();
        sys::send_fds(socket.as_raw_fd(), &hello, &[fd.as_raw_fd()])
            .map_err(|_| WsaError::ConnReset)?;
        let directions =
            connect_handshake(&socket, wants, &probe).map_err(|_| WsaError::ConnReset)?;
        self.endpoint(socket, &fd, capacity, true, directions)
    }
}

/// Fault injection for tests (feature `fault`, off by default): the connecting side of
/// the handshake without an endpoint, with raw access to the shared memory, to play a
/// hostile or dying peer.
///
/// The functions that make a raw peer are `unsafe`: such a peer can ask the victim for
/// single-copy transfers, and a victim in the same process trusts the addresses they name
/// (see [`connect_raw`](fault::connect_raw)).
#[cfg(feature = "fault")]
pub mod fault {
    use super::*;

    /// A raw connection to a listener.
    pub struct RawPeer {
        map: Arc<sys::Mapping>,
        socket: UnixStream,
        /// The producer of the ring the victim reads, kept across records so that it
        /// respects the victim's head like an honest peer's.
        producer: std::sync::Mutex<ring::Producer>,
        /// Data bytes of each ring.
        pub capacity: usize,
        /// Whether the victim said it serves this peer's single-copy requests.
        pub victim_serves: bool,
    }

    /// What a raw peer shows the victim's single-copy probe.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum RawProbe {
        /// Does not want single copy: the victim must refuse single-copy requests.
        Refuse,
        /// Wants single copy, shows its probe bytes honestly and claims to serve the
        /// victim's requests (which it never answers): the victim serves single-copy
        /// requests if the kernel lets it reach this process, and sends its own. Use it
        /// only from another process: a peer in the victim's own process shares its
        /// address space, so the victim trusts the addresses it names.
        Honest,
        /// Wants single copy but names this address (not its probe bytes): the victim
        /// must refuse single-copy requests.
        Bogus(u64),
    }

    impl std::fmt::Debug for RawPeer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("RawPeer")
                .field("len", &self.map.len())
                .field("victim_serves", &self.victim_serves)
                .finish()
        }
    }

    /// Connects to `addr` in `namespace` like [`Transport::connect`], but returns the raw
    /// shared memory instead of an endpoint.
    ///
    /// # Safety
    ///
    /// With [`RawProbe::Honest`] the victim serves the single-copy requests that the
    /// records pushed or scribbled through the returned peer make, and it copies to and
    /// from the addresses they name in the *peer's* process. The caller promises that the
    /// victim runs in another process than this one (the kernel then confines those copies
    /// to this process's memory, which the victim never trusted); in the victim's own
    /// process such a record could make it write to any of its addresses. With
    /// [`RawProbe::Refuse`] or [`RawProbe::Bogus`] the victim refuses single-copy
    /// requests and nothing is promised beyond the function's preconditions.
    pub unsafe fn connect_raw(
        namespace: &str,
        addr: SocketAddr,
        capacity: usize,
        probe: RawProbe,
    ) -> std::io::Result<RawPeer> {
        connect_raw_prepared(namespace, addr, capacity, probe, false)
    }

    /// Connects to the listener at `addr` in `namespace` and sends nothing: a connector
    /// that stalls its handshake. Harmless to the victim by design (it only waits), so
    /// not `unsafe`.
    pub fn connect_silent(namespace: &str, addr: SocketAddr) -> std::io::Result<UnixStream> {
        let name = LoopbackTransport::new(namespace)
            .socket_name(&addr)
            .map_err(|_| std::io::ErrorKind::InvalidInput)?;
        UnixStream::connect_addr(&name)
    }

    /// [`connect_raw`], with every ring position set off the record grid before the
    /// victim first sees the memory, and the victim told not to use single copy.
    ///
    /// # Safety
    ///
    /// As for [`connect_raw`] with [`RawProbe::Refuse`]: nothing beyond the preconditions
    /// (the function is `unsafe` because every raw peer is an attack tool).
    pub unsafe fn connect_raw_off_grid(
        namespace: &str,
        addr: SocketAddr,
        capacity: usize,
    ) -> std::io::Result<RawPeer> {
        connect_raw_prepared(namespace, addr, capacity, RawProbe::Refuse, true)
    }

    fn connect_raw_prepared(
        namespace: &str,
        addr: SocketAddr,
        capacity: usize,
        probe: RawProbe,
        off_grid: bool,
    ) -> std::io::Result<RawPeer> {
        use std::io::{Read, Write};
        let t = LoopbackTransport::new(namespace);
        let name = t
            .socket_name(&addr)
            .map_err(|_| std::io::ErrorKind::InvalidInput)?;
        let socket = UnixStream::connect_addr(&name)?;
        let ring = ring::ring_bytes(capacity);
        let fd = sys::memfd("san-spi-fault", 2 * ring)?;
        let map = Arc::new(sys::Mapping::new(&fd, 2 * ring)?);
        ring::init(&map, 0, capacity).ok_or(std::io::ErrorKind::InvalidInput)?;
        ring::init(&map, ring, capacity).ok_or(std::io::ErrorKind::InvalidInput)?;
        if off_grid {
            for base in [0, ring] {
                for word in [0usize, 64] {
                    // SAFETY: head (0) and tail (64) of each ring lie inside the mapping.
                    unsafe { std::ptr::write_volatile(map.ptr().add(base + word) as *mut u64, 8) };
                }
            }
        }
        let bytes = new_probe();
        let flags = if probe == RawProbe::Refuse {
            0
        } else {
            WANTS_DIRECT
        };
        let probe_addr = match probe {
            RawProbe::Bogus(addr) => addr,
            _ => bytes.as_ptr() as u64,
        };
        let hello = Hello {
            capacity: capacity as u64,
            flags,
            probe_addr,
            probe: *bytes,
        }
        .encode();
        sys::send_fds(socket.as_raw_fd(), &hello, &[fd.as_raw_fd()])?;
        let mut reply = [0u8; handshake::field::REPLY_LEN];
        (&socket).read_exact(&mut reply)?;
        let reply = Reply::parse(&reply).map_err(|_| std::io::ErrorKind::InvalidData)?;
        std::hint::black_box(&bytes);
        let last = if probe == RawProbe::Honest {
            flags | SERVES_DIRECT
        } else {
            flags
        };
        (&socket).write_all(&Final { flags: last }.encode())?;
        let producer = ring::Producer::new(map.clone(), 0, capacity)
            .ok_or(std::io::ErrorKind::InvalidInput)?;
        Ok(RawPeer {
            producer: std::sync::Mutex::new(producer),
            map,
            socket,
            capacity,
            victim_serves: reply.flags & SERVES_DIRECT != 0,
        })
    }

    impl RawPeer {
        /// Bytes of shared memory (both rings).
        pub fn len(&self) -> usize {
            self.map.len()
        }

        /// Whether the mapping is empty (never).
        pub fn is_empty(&self) -> bool {
            self.map.len() == 0
        }

        /// Writes `bytes` at `offset` of the shared memory (clamped to its end).
        pub fn scribble(&self, offset: usize, bytes: &[u8]) {
            let offset = offset.min(self.map.len());
            let n = bytes.len().min(self.map.len() - offset);
            // SAFETY: the range is inside the mapping (clamped above); the victim treats
            // this memory as hostile input, which is what this function provides.
            unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.map.ptr().add(offset), n) }
        }

        /// Appends a well-formed record with the given fields to the ring the victim
        /// reads, as an honest producer would: `false` (nothing written) while the victim
        /// has not consumed enough to make room, or for a payload larger than a record.
        pub fn push_record(
            &self,
            kind: u16,
            flags: u16,
            token: u64,
            a: u64,
            b: u64,
            payload: &[u8],
        ) -> bool {
            let mut p = self.producer.lock().unwrap_or_else(|e| e.into_inner());
            if payload.len() > p.max_payload() {
                return false;
            }
            let h = ring::Header {
                kind,
                flags,
                len: 0,
                token,
                a,
                b,
            };
            p.push(h, &[payload]) == ring::Push::Done
        }

        /// Consumes what the victim sent since the last call and counts its ACKs:
        /// `(successes, errors)`. Stops at anything malformed (the raw peer may have
        /// scribbled over that ring too).
        pub fn drain_acks(&self) -> (usize, usize) {
            let base = ring::ring_bytes(self.capacity);
            let Some(mut c) = ring::Consumer::new(self.map.clone(), base, self.capacity) else {
                return (0, 0);
            };
            let (mut ok, mut err) = (0, 0);
            for _ in 0..100_000 {
                match c.peek() {
                    Ok(Some(h)) => {
                        if h.kind == endpoint::ACK {
                            if h.a == 0 {
                                ok += 1;
                            } else {
                                err += 1;
                            }
                        }
                        c.consume(&h);
                    }
                    _ => break,
                }
            }
            (ok, err)
        }

        /// How far the victim has consumed the ring this peer writes (bytes since the
        /// start): proof that records reached its handlers.
        pub fn victim_consumed(&self) -> u64 {
            let c = ring::Consumer::new(self.map.clone(), 0, self.capacity);
            c.map_or(0, |c| c.position())
        }

        /// Bytes one record with `payload_len` bytes of payload takes in the ring.
        pub fn record_bytes(payload_len: usize) -> u64 {
            ring::record_len(payload_len) as u64
        }

        /// Wakes the victim's progress thread (a byte on the socket, as an honest peer).
        pub fn signal(&self) {
            sys::wake_peer(self.socket.as_raw_fd());
        }

        /// This peer's end of the connection's socket, to attack with: make it blocking,
        /// flood it, stop reading it.
        pub fn socket(&self) -> &UnixStream {
            &self.socket
        }

        /// Raises the "consumer is parking" flag of the ring the victim writes, so that the
        /// victim sends a wake-up for every record it pushes (this peer never reads them
        /// unless it wants to).
        pub fn claim_to_sleep(&self) {
            let base = ring::ring_bytes(self.capacity);
            // The victim is the acceptor: it produces into the second ring.
            self.scribble(base + ring::SLEEPING, &1u32.to_le_bytes());
        }
    }
}
