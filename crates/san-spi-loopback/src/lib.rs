//! `san-spi-loopback` — a shared-memory [`Transport`] between endpoints on one host, in one
//! process or in two.
//!
//! - **Rendezvous**: a listener is an abstract-namespace Unix socket named after the
//!   transport's namespace and the listening address. The connecting side creates a
//!   sealed memfd holding two rings (one per direction) and two eventfds, and passes the
//!   three descriptors with `SCM_RIGHTS`. The socket stays open: its hang-up is how each
//!   side learns the other died.
//! - **Rings**: single-producer single-consumer, cache-line separated head and tail,
//!   acquire/release, bounded, wrap-safe (see `ring`).
//! - **Progress**: each endpoint runs a progress thread that consumes the inbound ring,
//!   serves RDMA requests against its registrations and pumps queued outbound work. It
//!   spins briefly, then parks on its eventfd (with the socket, for hang-up); a producer
//!   signals the eventfd only when the consumer announced it is parking, so an idle
//!   connection burns no CPU and a busy one makes no syscalls.
//! - **The peer is untrusted**: every index, length and key read from shared memory is
//!   validated; payload is copied once; remote accesses are checked against the
//!   registration (key with generation, bounds, rights) before a byte moves; a violation
//!   or a dead peer fails every pending operation with an error.
//! - **RDMA** is bounced through the ring (the owner of the memory copies, after
//!   validation).
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

mod endpoint;
mod registry;
mod ring;
mod sys;

pub use endpoint::{Limits, LoopbackEndpoint};
pub use registry::DESCRIPTOR_LEN;

use endpoint::Shared;
use registry::Registry;
use san_spi_core::transport::{
    Capabilities, LocalAddress, MemAccess, Memory, MemoryHandle, Transport, TransportControl,
};
use san_spi_core::WsaError;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr as UnixAddr, UnixListener, UnixStream};
use std::sync::Arc;

const HELLO_MAGIC: u32 = 0x5341_4E4C; // "LNAS"
const HELLO_VERSION: u32 = 1;
const HELLO_LEN: usize = 16;

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

    /// Sets the queue limits of new endpoints.
    pub fn with_limits(mut self, limits: Limits) -> LoopbackTransport {
        self.limits = limits;
        self
    }

    fn socket_name(&self, addr: &SocketAddr) -> Result<UnixAddr, WsaError> {
        let name = format!("san-spi-loopback/{}/{}", self.namespace, addr);
        UnixAddr::from_abstract_name(name.as_bytes()).map_err(|_| WsaError::Inval)
    }

    fn endpoint(
        &self,
        socket: UnixStream,
        fd: &OwnedFd,
        capacity: usize,
        connector: bool,
        efds: (OwnedFd, OwnedFd),
    ) -> Result<LoopbackEndpoint, WsaError> {
        let ring = ring::ring_bytes(capacity);
        let map = Arc::new(sys::Mapping::new(fd, 2 * ring).map_err(|_| WsaError::NoBufs)?);
        let (out_base, in_base) = if connector { (0, ring) } else { (ring, 0) };
        let producer =
            ring::Producer::new(map.clone(), out_base, capacity).ok_or(WsaError::Inval)?;
        let consumer = ring::Consumer::new(map, in_base, capacity).ok_or(WsaError::Inval)?;
        let (peer_efd, my_efd) = efds;
        Ok(LoopbackEndpoint::start(Shared::new(
            self.registry.clone(),
            self.limits,
            producer,
            consumer,
            peer_efd,
            my_efd,
            socket,
        )))
    }
}

impl TransportControl for LoopbackTransport {
    fn local_addresses(&self) -> Result<Vec<LocalAddress>, WsaError> {
        Ok(self.addresses.clone())
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

/// A listening loopback endpoint.
#[derive(Debug)]
pub struct LoopbackListener {
    transport: LoopbackTransport,
    listener: UnixListener,
    addr: SocketAddr,
}

#[async_trait::async_trait]
impl san_spi_core::transport::Listener for LoopbackListener {
    type Endpoint = LoopbackEndpoint;

    /// Blocks the calling thread until a peer connects (the loopback has no reactor).
    async fn accept(&self) -> Result<LoopbackEndpoint, WsaError> {
        loop {
            let (socket, _) = self.listener.accept().map_err(|_| WsaError::NetDown)?;
            match accept_hello(&socket) {
                Ok((fd, capacity, efd_acceptor, efd_connector)) => {
                    let ep = self.transport.endpoint(
                        socket.try_clone().map_err(|_| WsaError::NoBufs)?,
                        &fd,
                        capacity,
                        false,
                        (efd_connector, efd_acceptor),
                    )?;
                    // Tell the connector it is accepted.
                    use std::io::Write;
                    let mut s = &socket;
                    if s.write_all(&[1]).is_err() {
                        continue;
                    }
                    return Ok(ep);
                }
                // A malformed hello is the peer's problem: drop it and keep listening.
                Err(_) => continue,
            }
        }
    }

    fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

/// Reads and validates a connector's hello: (memfd, ring capacity, acceptor's eventfd,
/// connector's eventfd).
fn accept_hello(socket: &UnixStream) -> Result<(OwnedFd, usize, OwnedFd, OwnedFd), WsaError> {
    let mut hello = [0u8; HELLO_LEN];
    let (n, mut fds) =
        sys::recv_fds(socket.as_raw_fd(), &mut hello, 3).map_err(|_| WsaError::ConnReset)?;
    if n != HELLO_LEN || fds.len() != 3 {
        return Err(WsaError::ConnReset);
    }
    let magic = u32::from_le_bytes([hello[0], hello[1], hello[2], hello[3]]);
    let version = u32::from_le_bytes([hello[4], hello[5], hello[6], hello[7]]);
    let mut c = [0u8; 8];
    c.copy_from_slice(&hello[8..16]);
    let capacity = u64::from_le_bytes(c);
    if magic != HELLO_MAGIC
        || version != HELLO_VERSION
        || !capacity.is_power_of_two()
        || !(64 << 10..=1 << 30).contains(&capacity)
    {
        return Err(WsaError::ConnReset);
    }
    let capacity = capacity as usize;
    let efd_connector = fds.pop().expect("3 fds");
    let efd_acceptor = fds.pop().expect("3 fds");
    let fd = fds.pop().expect("3 fds");
    let len = sys::file_len(&fd).map_err(|_| WsaError::ConnReset)?;
    if !sys::is_size_sealed(&fd) || len < 2 * ring::ring_bytes(capacity) {
        return Err(WsaError::ConnReset);
    }
    Ok((fd, capacity, efd_acceptor, efd_connector))
}

#[async_trait::async_trait]
impl Transport for LoopbackTransport {
    type Endpoint = LoopbackEndpoint;
    type Listener = LoopbackListener;

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            max_sge: self.limits.max_sge,
            max_message: u32::MAX as usize,
            max_rdma: u32::MAX as usize,
            rdma_read: true,
            descriptor_len: DESCRIPTOR_LEN,
        }
    }

    async fn listen(&self, addr: SocketAddr) -> Result<LoopbackListener, WsaError> {
        let name = self.socket_name(&addr)?;
        let listener = UnixListener::bind_addr(&name).map_err(|_| WsaError::Inval)?;
        Ok(LoopbackListener {
            transport: self.clone(),
            listener,
            addr,
        })
    }

    async fn connect(&self, addr: SocketAddr) -> Result<LoopbackEndpoint, WsaError> {
        let name = self.socket_name(&addr)?;
        let socket = UnixStream::connect_addr(&name).map_err(|_| WsaError::NotConn)?;
        let capacity = self.ring_capacity;
        let ring = ring::ring_bytes(capacity);
        let fd = sys::memfd("san-spi-loopback", 2 * ring).map_err(|_| WsaError::NoBufs)?;
        {
            let map = Arc::new(sys::Mapping::new(&fd, 2 * ring).map_err(|_| WsaError::NoBufs)?);
            ring::init(&map, 0, capacity).ok_or(WsaError::Inval)?;
            ring::init(&map, ring, capacity).ok_or(WsaError::Inval)?;
        }
        let efd_acceptor = sys::eventfd().map_err(|_| WsaError::NoBufs)?;
        let efd_connector = sys::eventfd().map_err(|_| WsaError::NoBufs)?;
        let mut hello = [0u8; HELLO_LEN];
        hello[0..4].copy_from_slice(&HELLO_MAGIC.to_le_bytes());
        hello[4..8].copy_from_slice(&HELLO_VERSION.to_le_bytes());
        hello[8..16].copy_from_slice(&(capacity as u64).to_le_bytes());
        sys::send_fds(
            socket.as_raw_fd(),
            &hello,
            &[
                fd.as_raw_fd(),
                efd_acceptor.as_raw_fd(),
                efd_connector.as_raw_fd(),
            ],
        )
        .map_err(|_| WsaError::NotConn)?;
        use std::io::Read;
        let mut ok = [0u8; 1];
        let mut s = &socket;
        s.read_exact(&mut ok).map_err(|_| WsaError::ConnReset)?;
        self.endpoint(socket, &fd, capacity, true, (efd_acceptor, efd_connector))
    }
}

/// Fault injection for tests: the connecting side of the handshake without an endpoint,
/// with raw access to the shared memory, to play a hostile or dying peer.
#[doc(hidden)]
pub mod fault {
    use super::*;

    /// A raw connection to a listener.
    pub struct RawPeer {
        map: Arc<sys::Mapping>,
        efd_victim: OwnedFd,
        _efd_own: OwnedFd,
        _socket: UnixStream,
        /// Data bytes of each ring.
        pub capacity: usize,
    }

    impl std::fmt::Debug for RawPeer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("RawPeer")
                .field("len", &self.map.len())
                .finish()
        }
    }

    /// Connects to `addr` in `namespace` like [`Transport::connect`], but returns the raw
    /// shared memory instead of an endpoint.
    pub fn connect_raw(
        namespace: &str,
        addr: SocketAddr,
        capacity: usize,
    ) -> std::io::Result<RawPeer> {
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
        let efd_victim = sys::eventfd()?;
        let efd_own = sys::eventfd()?;
        let mut hello = [0u8; HELLO_LEN];
        hello[0..4].copy_from_slice(&HELLO_MAGIC.to_le_bytes());
        hello[4..8].copy_from_slice(&HELLO_VERSION.to_le_bytes());
        hello[8..16].copy_from_slice(&(capacity as u64).to_le_bytes());
        sys::send_fds(
            socket.as_raw_fd(),
            &hello,
            &[fd.as_raw_fd(), efd_victim.as_raw_fd(), efd_own.as_raw_fd()],
        )?;
        use std::io::Read;
        let mut ok = [0u8; 1];
        (&socket).read_exact(&mut ok)?;
        Ok(RawPeer {
            map,
            efd_victim,
            _efd_own: efd_own,
            _socket: socket,
            capacity,
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
        /// reads (ignores the victim's head: a full ring is the peer's problem).
        pub fn push_record(
            &self,
            kind: u16,
            flags: u16,
            token: u64,
            a: u64,
            b: u64,
            payload: &[u8],
        ) -> bool {
            match ring::Producer::new(self.map.clone(), 0, self.capacity) {
                Some(mut p) if payload.len() <= p.max_payload() => {
                    let h = ring::Header {
                        kind,
                        flags,
                        len: 0,
                        token,
                        a,
                        b,
                    };
                    matches!(p.push(h, &[payload]), Ok(Ok(())))
                }
                _ => false,
            }
        }

        /// Wakes the victim's progress thread.
        pub fn signal(&self) {
            sys::eventfd_signal(self.efd_victim.as_raw_fd());
        }
    }
}
