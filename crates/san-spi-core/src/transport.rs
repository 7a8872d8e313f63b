//! What `WSPIoctl` needs from a transport: its state, its addresses, QoS and vendor codes.
//!
//! [`TransportControl`] is the synchronous, rarely-called part of a transport that
//! [`crate::dispatch`] drives. Every method has a conservative default, so a transport
//! implements only what it supports: no QoS (→ `WSAENOPROTOOPT`), no vendor codes
//! (→ `WSAEINVAL`), always up. The data plane (send, receive, RDMA, completion polling)
//! is [`Memory`] and [`Endpoint`]; [`Transport`] adds connecting and listening, as `async`
//! methods written with [`async_trait`](macro@async_trait) (re-exported here, so an implementation needs no
//! dependency of its own: `#[san_spi_core::transport::async_trait]`). What each method
//! must guarantee is in the repository's `docs/transport-guide.md`; the conformance suite
//! of `san-spi-testkit` checks it.
//!
//! ```
//! use san_spi_core::transport::{LocalAddress, TransportControl};
//! use san_spi_core::WsaError;
//!
//! struct OneNic;
//! impl TransportControl for OneNic {
//!     fn local_addresses(&self) -> Result<Vec<LocalAddress>, WsaError> {
//!         Ok(vec![LocalAddress::new("192.0.2.10:0".parse().unwrap())])
//!     }
//! }
//! assert!(OneNic.is_up());
//! assert!(OneNic.qos().is_none());
//! ```

use crate::guid::ExtensionFunction;
use crate::ioctl::IoctlCode;
use crate::qos::{FlowSpec, QosRepr};
use crate::WsaError;
use std::net::SocketAddr;

/// The attribute [`Transport`] and [`Listener`] are written with; put it on their `impl`s.
pub use async_trait::async_trait;

/// An address of a NIC the transport serves.
///
/// ```
/// use san_spi_core::addr::eligibility::classify;
/// use san_spi_core::transport::LocalAddress;
///
/// let a = LocalAddress::new("[2001:db8::7]:0".parse().unwrap()).with_temporary(true);
/// assert!(!classify(a.addr.ip(), a.temporary).is_keep()); // privacy addresses are not listed
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct LocalAddress {
    /// The address (port 0; IPv6 link-local with its scope id).
    pub addr: SocketAddr,
    /// The OS marks it temporary (a privacy address): never listed (R-ADDR-6).
    pub temporary: bool,
}

impl LocalAddress {
    /// A permanent address.
    pub fn new(addr: SocketAddr) -> LocalAddress {
        LocalAddress {
            addr,
            temporary: false,
        }
    }

    /// The same address, marked temporary (or not).
    pub fn with_temporary(self, temporary: bool) -> LocalAddress {
        LocalAddress { temporary, ..self }
    }
}

/// A socket's QoS as a transport keeps it.
///
/// ```
/// use san_spi_core::addr::Width;
/// use san_spi_core::qos::{FlowSpec, QosRepr};
/// use san_spi_core::transport::OwnedQos;
///
/// let q = OwnedQos { sending: FlowSpec::best_effort(10), receiving: FlowSpec::NULL, provider_specific: vec![1, 2] };
/// assert_eq!(q.as_repr().buffer_len(Width::W64), 82);
/// assert_eq!(OwnedQos::from_repr(&q.as_repr()), q);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OwnedQos {
    /// `SendingFlowspec`.
    pub sending: FlowSpec,
    /// `ReceivingFlowspec`.
    pub receiving: FlowSpec,
    /// `ProviderSpecific` bytes.
    pub provider_specific: Vec<u8>,
}

impl OwnedQos {
    /// The borrowed form, for emitting.
    pub fn as_repr(&self) -> QosRepr<'_> {
        QosRepr {
            sending: self.sending,
            receiving: self.receiving,
            provider_specific: &self.provider_specific,
        }
    }

    /// A copy of a parsed `QOS`.
    pub fn from_repr(repr: &QosRepr<'_>) -> OwnedQos {
        OwnedQos {
            sending: repr.sending,
            receiving: repr.receiving,
            provider_specific: repr.provider_specific.to_vec(),
        }
    }
}

/// QoS support of a transport (R-QOS).
///
/// A method returns `Err(WsaError::WouldBlock)` when it cannot finish now; the dispatcher
/// then answers `WSAEWOULDBLOCK` on a nonblocking socket (R-OVL-1), keeps an overlapped
/// request pending until [`crate::dispatch::Dispatcher::poll_deferred`] finds it done, and
/// waits with [`wait`](QosCapability::wait) on a blocking socket.
///
/// ```
/// use san_spi_core::qos::QosRepr;
/// use san_spi_core::transport::{OwnedQos, QosCapability};
/// use san_spi_core::WsaError;
///
/// /// Honours best effort only.
/// struct BestEffortOnly;
/// impl QosCapability for BestEffortOnly {
///     fn get_qos(&self, _s: u64) -> Result<OwnedQos, WsaError> { Ok(OwnedQos::default()) }
///     fn set_qos(&self, _s: u64, q: &QosRepr<'_>) -> Result<(), WsaError> {
///         if q.sending.service_type == 1 { Ok(()) } else { Err(WsaError::OpNotSupp) }
///     }
/// }
/// let q = OwnedQos::default();
/// assert_eq!(BestEffortOnly.set_qos(1, &q.as_repr()), Err(WsaError::OpNotSupp));
/// ```
pub trait QosCapability: Send + Sync {
    /// The socket's current QoS (`SIO_GET_QOS`).
    fn get_qos(&self, socket: u64) -> Result<OwnedQos, WsaError>;

    /// Applies `qos` to the socket (`SIO_SET_QOS`); `Err(WsaError::OpNotSupp)` for flow specs
    /// it cannot honour (R-RET-7).
    fn set_qos(&self, socket: u64, qos: &QosRepr<'_>) -> Result<(), WsaError>;

    /// Blocks until a QoS call on `socket` may make progress. The default yields the thread.
    fn wait(&self, socket: u64) {
        let _ = socket;
        std::thread::yield_now();
    }
}

/// The result of a vendor-specific control code.
///
/// ```
/// use san_spi_core::transport::VendorOutcome;
///
/// assert_eq!(VendorOutcome { bytes_returned: 4 }.bytes_returned, 4);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VendorOutcome {
    /// Bytes written to the output buffer.
    pub bytes_returned: u32,
}

/// The control-plane queries `WSPIoctl` makes of a transport.
///
/// ```
/// use san_spi_core::transport::{LocalAddress, TransportControl};
/// use san_spi_core::WsaError;
///
/// struct Down;
/// impl TransportControl for Down {
///     fn is_up(&self) -> bool { false }
///     fn local_addresses(&self) -> Result<Vec<LocalAddress>, WsaError> { Err(WsaError::NetDown) }
/// }
/// assert!(!Down.is_up());
/// ```
pub trait TransportControl: Send + Sync {
    /// Whether the transport can be used; `false` makes every call `WSAENETDOWN`.
    fn is_up(&self) -> bool {
        true
    }

    /// The addresses of the NICs this transport serves, in a stable order (R-ADDR-4, R-ADDR-7).
    /// The dispatcher filters them by [`crate::addr::eligibility::classify`].
    fn local_addresses(&self) -> Result<Vec<LocalAddress>, WsaError>;

    /// Whether the socket's transport offers extension function `f`: `false` makes
    /// `SIO_GET_EXTENSION_FUNCTION_POINTER` answer `WSAEOPNOTSUPP` for its GUID, and the
    /// switch then does without it (R-EXT-5: `WSPRdmaRead` and
    /// `WSPMemoryRegistrationCacheCallback` are optional). A [`Transport`] answers from
    /// its [`Capabilities::offers`]; the default offers all seven.
    fn offers(&self, socket: u64, f: ExtensionFunction) -> bool {
        let _ = (socket, f);
        true
    }

    /// QoS support; `None` makes every QoS code `WSAENOPROTOOPT` (R-QOS-1).
    fn qos(&self) -> Option<&dyn QosCapability> {
        None
    }

    /// A vendor-specific code (T = 3 with the provider's vendor number, R-IOC-5). Errors
    /// outside the `WSPIoctl` set (R-RET-3) are reported as `WSAEINVAL`.
    fn vendor_ioctl(
        &self,
        socket: u64,
        code: IoctlCode,
        input: Option<&[u8]>,
        output: Option<&mut [u8]>,
    ) -> Result<VendorOutcome, WsaError> {
        let _ = (socket, code, input, output);
        Err(WsaError::Inval)
    }
}

// ---------------------------------------------------------------------------------------
// Data plane and memory.
// ---------------------------------------------------------------------------------------

bitflags::bitflags! {
    /// `MEM_READ` / `MEM_WRITE` / `MEM_READWRITE` — access rights of a registration.
    ///
    /// For an RDMA registration they are the rights of the *peer*: `READ` lets it read the
    /// region (`WSPRdmaRead`), `WRITE` lets it write (`WSPRdmaWrite`). For a local
    /// registration, `READ` allows the region as a send / RDMA-write source and `WRITE` as a
    /// receive / RDMA-read destination.
    ///
    /// ```
    /// use san_spi_core::transport::MemAccess;
    ///
    /// assert_eq!(MemAccess::READ_WRITE.bits(), 3); // MEM_READWRITE
    /// assert_eq!(MemAccess::from_bits(2), Some(MemAccess::WRITE));
    /// assert_eq!(MemAccess::from_bits(4), None);
    /// ```
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub struct MemAccess: u32 {
        /// `MEM_READ`.
        const READ = 1;
        /// `MEM_WRITE`.
        const WRITE = 2;
        /// `MEM_READWRITE`.
        const READ_WRITE = 3;
    }
}

/// A local registration (the `HANDLE` of `WSPRegisterMemory`); never 0.
///
/// ```
/// use san_spi_core::transport::MemoryHandle;
///
/// assert!(MemoryHandle::new(0).is_none());
/// assert_eq!(MemoryHandle::new(9).unwrap().raw(), 9);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MemoryHandle(core::num::NonZeroU64);

impl MemoryHandle {
    /// The handle with this value, if non-zero.
    pub fn new(raw: u64) -> Option<MemoryHandle> {
        core::num::NonZeroU64::new(raw).map(MemoryHandle)
    }

    /// The value.
    pub fn raw(self) -> u64 {
        self.0.get()
    }
}

/// `WSABUFEX` — one piece of a scatter/gather list: `len` bytes at process address
/// `addr`, inside the registration `handle`.
///
/// ```
/// use san_spi_core::transport::{MemoryHandle, Sge};
///
/// let sge = Sge { handle: MemoryHandle::new(1).unwrap(), addr: 0x1000, len: 64 };
/// assert_eq!(sge.end(), Some(0x1040));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sge {
    /// `handle`.
    pub handle: MemoryHandle,
    /// `buf`, as a process address.
    pub addr: u64,
    /// `len`.
    pub len: u32,
}

impl Sge {
    /// One past the last byte, if it does not overflow.
    pub fn end(&self) -> Option<u64> {
        self.addr.checked_add(self.len as u64)
    }
}

/// The peer's region an RDMA operation targets: its exported descriptor and an offset.
///
/// ```
/// use san_spi_core::transport::RemoteTarget;
///
/// let t = RemoteTarget { descriptor: &[0u8; 32], offset: 128 };
/// assert_eq!(t.offset, 128);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoteTarget<'a> {
    /// `lpTargetBufferDescriptor[..dwTargetDescriptorLength]`.
    pub descriptor: &'a [u8],
    /// `dwTargetBufferOffset`.
    pub offset: u64,
}

/// What kind of operation a completion reports.
///
/// ```
/// use san_spi_core::transport::Op;
///
/// assert_ne!(Op::Send, Op::Recv);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Op {
    /// A send.
    Send,
    /// A receive.
    Recv,
    /// An RDMA write.
    RdmaWrite,
    /// An RDMA read.
    RdmaRead,
}

/// A finished operation: the token it was posted with, passed through untouched, and its
/// result (bytes transferred, or the error).
///
/// ```
/// use san_spi_core::transport::{Completion, Op};
/// use san_spi_core::WsaError;
///
/// let c = Completion::new(7, Op::Recv, Err(WsaError::OperationAborted));
/// assert!(c.result.is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Completion {
    /// The token given when the operation was posted.
    pub token: u64,
    /// The operation.
    pub op: Op,
    /// Bytes transferred, or the error.
    pub result: Result<u32, WsaError>,
}

impl Completion {
    /// The completion of the operation posted with `token`.
    pub const fn new(token: u64, op: Op, result: Result<u32, WsaError>) -> Completion {
        Completion { token, op, result }
    }
}

impl Default for Completion {
    fn default() -> Self {
        Completion {
            token: 0,
            op: Op::Send,
            result: Ok(0),
        }
    }
}

/// Why an operation could not be posted. Nothing was started, nothing will complete.
///
/// ```
/// use san_spi_core::transport::PostError;
/// use san_spi_core::WsaError;
///
/// assert_eq!(PostError::QueueFull.wsa(), WsaError::NoBufs);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PostError {
    /// The send or receive queue is full: retry after completions drain (back-pressure).
    #[error("the queue is full; retry after completions drain")]
    QueueFull,
    /// The endpoint is closed, or its peer is gone.
    #[error("the endpoint is closed or its peer is gone")]
    Closed,
    /// An SGE is not inside a live registration with the rights it needs.
    #[error("SGE {index} is outside its registration or lacks the access it needs")]
    InvalidSge {
        /// Index in the list.
        index: usize,
    },
    /// More SGEs, or more bytes, than the transport takes in one operation.
    #[error("the operation is larger than the transport allows")]
    TooLarge,
    /// The remote descriptor is malformed.
    #[error("the RDMA descriptor is malformed")]
    BadDescriptor,
    /// The transport does not do this operation at all: RDMA read without
    /// [`Capabilities::rdma_read`].
    #[error("the transport does not support this operation")]
    NotSupported,
}

impl PostError {
    /// The Winsock error for the caller.
    pub fn wsa(self) -> WsaError {
        match self {
            PostError::QueueFull => WsaError::NoBufs,
            PostError::Closed => WsaError::NotConn,
            PostError::InvalidSge { .. } | PostError::BadDescriptor => WsaError::Fault,
            PostError::TooLarge => WsaError::Inval,
            PostError::NotSupported => WsaError::OpNotSupp,
        }
    }
}

/// What a transport can do.
///
/// ```
/// use san_spi_core::transport::Capabilities;
///
/// let c = Capabilities::new(16, 1 << 20, 1 << 30, 32).with_rdma_read(true);
/// assert!(c.rdma_read);
/// assert!(!c.requested_keys);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// Most SGEs in one operation.
    pub max_sge: usize,
    /// Largest message of one send.
    pub max_message: usize,
    /// Largest RDMA transfer (`SO_MAX_RDMA_SIZE`).
    pub max_rdma: usize,
    /// Whether RDMA read is supported.
    pub rdma_read: bool,
    /// Bytes of an exported RDMA descriptor.
    pub descriptor_len: usize,
    /// Whether [`Memory::register_with_key`] takes keys the provider chooses (as a
    /// libfabric domain without `FI_MR_PROV_KEY` does); otherwise only the transport
    /// chooses keys.
    pub requested_keys: bool,
}

impl Capabilities {
    /// A transport taking `max_sge` SGEs per operation, messages up to `max_message`
    /// bytes, RDMA transfers up to `max_rdma` bytes and exporting descriptors of
    /// `descriptor_len` bytes; without RDMA read and without provider-chosen keys until
    /// the `with_*` methods say otherwise. Fields added later get a conservative default.
    pub const fn new(
        max_sge: usize,
        max_message: usize,
        max_rdma: usize,
        descriptor_len: usize,
    ) -> Capabilities {
        Capabilities {
            max_sge,
            max_message,
            max_rdma,
            rdma_read: false,
            descriptor_len,
            requested_keys: false,
        }
    }

    /// Whether RDMA read is supported (`WSPRdmaRead`; without it the switch uses the
    /// write-based transfer protocol, R-EXT-5).
    pub const fn with_rdma_read(self, rdma_read: bool) -> Capabilities {
        Capabilities { rdma_read, ..self }
    }

    /// Whether [`Memory::register_with_key`] takes keys the provider chooses.
    pub const fn with_requested_keys(self, requested_keys: bool) -> Capabilities {
        Capabilities {
            requested_keys,
            ..self
        }
    }

    /// Whether a transport with these capabilities offers extension function `f`
    /// (R-EXT-5): RDMA read only with [`rdma_read`](Capabilities::rdma_read); the other
    /// six always.
    ///
    /// ```
    /// use san_spi_core::guid::ExtensionFunction;
    /// use san_spi_core::transport::Capabilities;
    ///
    /// let c = Capabilities::new(4, 1 << 20, 1 << 20, 32);
    /// assert!(!c.offers(ExtensionFunction::RdmaRead));
    /// assert!(c.with_rdma_read(true).offers(ExtensionFunction::RdmaRead));
    /// assert!(c.offers(ExtensionFunction::RdmaWrite));
    /// ```
    pub fn offers(&self, f: ExtensionFunction) -> bool {
        match f {
            ExtensionFunction::RdmaRead => self.rdma_read,
            _ => true,
        }
    }
}

/// Memory registration: one protection domain per transport.
///
/// Registration keys are the transport's to choose ([`register`](Memory::register):
/// unguessable, with a generation, so a stale or forged descriptor is rejected before a
/// byte moves, R-SAN-5) or, where [`Capabilities::requested_keys`] says so, the provider's
/// ([`register_with_key`](Memory::register_with_key), libfabric's `requested_key`).
///
/// ```
/// use san_spi_core::transport::{MemAccess, Memory, MemoryHandle};
/// use san_spi_core::WsaError;
///
/// /// Accepts registrations and exports 8-byte descriptors holding the handle.
/// struct Flat;
/// impl Memory for Flat {
///     unsafe fn register(&self, addr: *mut u8, _len: usize, _a: MemAccess) -> Result<MemoryHandle, WsaError> {
///         MemoryHandle::new(addr as u64).ok_or(WsaError::Fault)
///     }
///     fn deregister(&self, _h: MemoryHandle) -> Result<(), WsaError> { Ok(()) }
///     fn export(&self, h: MemoryHandle, out: &mut [u8]) -> Result<usize, WsaError> {
///         out.get_mut(..8).ok_or(WsaError::Fault)?.copy_from_slice(&h.raw().to_le_bytes());
///         Ok(8)
///     }
///     fn invalidate(&self, _addr: u64, _len: u64) -> usize { 0 }
/// }
/// let mut buf = [0u8; 16];
/// // SAFETY: `buf` outlives the registration.
/// let h = unsafe { Flat.register(buf.as_mut_ptr(), 16, MemAccess::READ) }.unwrap();
/// assert_eq!(Flat.export(h, &mut [0u8; 4]), Err(WsaError::Fault));
/// ```
pub trait Memory: Send + Sync {
    /// `WSPRegisterMemory` / `WSPRegisterRdmaMemory`: registers `len` bytes at `addr`.
    ///
    /// # Safety
    ///
    /// `addr..addr + len` must stay mapped, and must not be used by anything else in a way
    /// that conflicts with `access`, until [`deregister`](Memory::deregister) returns and
    /// every operation that used the registration has completed: the transport reads and
    /// writes it asynchronously, possibly from another thread or process.
    unsafe fn register(
        &self,
        addr: *mut u8,
        len: usize,
        access: MemAccess,
    ) -> Result<MemoryHandle, WsaError>;

    /// `WSPDeregisterMemory` / `WSPDeregisterRdmaMemory`. Later accesses through the
    /// registration are rejected; operations still in flight on it complete (usually with
    /// an error), and until they have, the transport may still touch the memory — which is
    /// why [`register`](Memory::register) asks the memory to outlive them.
    fn deregister(&self, handle: MemoryHandle) -> Result<(), WsaError>;

    /// Registers like [`register`](Memory::register), under `key`, chosen by the caller:
    /// the handle's raw value and the key a descriptor carries are `key`. Unguessable keys
    /// are then the caller's to choose. `WSAEOPNOTSUPP` from a transport that chooses its
    /// keys itself (the default; see [`Capabilities::requested_keys`]); `WSAEINVAL` for a
    /// key of 0 or one already registered.
    ///
    /// # Safety
    ///
    /// As for [`register`](Memory::register).
    unsafe fn register_with_key(
        &self,
        addr: *mut u8,
        len: usize,
        access: MemAccess,
        key: u64,
    ) -> Result<MemoryHandle, WsaError> {
        let _ = (addr, len, access, key);
        Err(WsaError::OpNotSupp)
    }

    /// Writes the RDMA descriptor of `handle` (what the peer needs to address it) into
    /// `out` and returns its length; `WSAEFAULT` if `out` is too short.
    fn export(&self, handle: MemoryHandle, out: &mut [u8]) -> Result<usize, WsaError>;

    /// `WSPMemoryRegistrationCacheCallback`: drops **every** registration overlapping
    /// `addr..addr + len`; returns how many (R-SAN-4).
    fn invalidate(&self, addr: u64, len: u64) -> usize;
}

/// A connected endpoint (one queue pair). Data-plane calls never block, never allocate and
/// never await; completions come back through [`poll`](Endpoint::poll).
///
/// Every transport passes the conformance suite of `san-spi-testkit`, which drives these
/// calls from both ends of a connection. A sketch of one exchange (`t` is a transport,
/// `src`/`dst` registered buffers):
///
/// ```text
/// server.post_recv(&[dst], 1)?;          // nothing completes yet
/// client.post_send(&[src], 2)?;          // the message waits for no one but the receive
/// server.wait(timeout); server.poll(&mut cs) → Completion { token: 1, op: Recv, result: Ok(n) }
/// ```
///
/// ```
/// use san_spi_core::transport::{Completion, Endpoint};
/// fn drain(ep: &impl Endpoint) -> usize {
///     let mut cs = [Completion::default(); 16];
///     ep.poll(&mut cs)
/// }
/// ```
pub trait Endpoint: Send + Sync {
    /// Sends the bytes of `sges` as one message.
    fn post_send(&self, sges: &[Sge], token: u64) -> Result<(), PostError>;

    /// Posts a receive buffer; incoming messages fill posted receives in order. A message
    /// that finds no receive posted waits for one: nothing is dropped.
    fn post_recv(&self, sges: &[Sge], token: u64) -> Result<(), PostError>;

    /// Writes the bytes of `sges` to the peer's region.
    fn rdma_write(
        &self,
        sges: &[Sge],
        target: RemoteTarget<'_>,
        token: u64,
    ) -> Result<(), PostError>;

    /// Reads the peer's region into `sges`.
    fn rdma_read(
        &self,
        sges: &[Sge],
        target: RemoteTarget<'_>,
        token: u64,
    ) -> Result<(), PostError>;

    /// Moves finished operations into `out`; returns how many. Also drives the transport's
    /// progress where it has no engine of its own.
    fn poll(&self, out: &mut [Completion]) -> usize;

    /// Blocks until a completion may be ready or `timeout` passes (spins briefly, then
    /// parks). Returns whether one may be ready.
    fn wait(&self, timeout: std::time::Duration) -> bool;

    /// Closes the endpoint: every pending operation completes with
    /// `WSA_OPERATION_ABORTED`, exactly once; later posts are refused
    /// ([`PostError::Closed`]).
    ///
    /// The peer sees a graceful close: every message sent before it is still delivered to
    /// the peer's receives, posted before or after the close; then each of its receives
    /// completes with `WSAEDISCON` ([`WsaError::Discon`], which the socket layer reports as
    /// a zero-byte receive) — or with `WSAECONNRESET` if the close cut a message short. Its operations waiting for an answer from this side fail with
    /// `WSAECONNRESET` and its later sends and RDMA are refused. A peer that goes away
    /// without closing (its process dies) is the same, except that the receives after its
    /// last whole message complete with `WSAECONNRESET`.
    fn close(&self);
}

/// A listening endpoint.
///
/// ```
/// use san_spi_core::transport::{block_on, Listener, Transport};
/// // Accepting without an async runtime, as the provider DLL does:
/// fn accept_one<T: Transport>(l: &T::Listener) -> bool {
///     block_on(l.accept()).is_ok()
/// }
/// ```
#[async_trait::async_trait]
pub trait Listener: Send + Sync {
    /// The endpoint type accepted.
    type Endpoint: Endpoint;

    /// The next connection.
    async fn accept(&self) -> Result<Self::Endpoint, WsaError>;

    /// The address listened on.
    fn local_addr(&self) -> SocketAddr;
}

/// A transport: one kind of NIC. Control plane async, data plane on [`Endpoint`].
///
/// ```
/// use san_spi_core::transport::{block_on, Transport};
/// use std::net::SocketAddr;
/// // The control plane from synchronous code (the provider's WSPConnect):
/// fn connect<T: Transport>(t: &T, to: SocketAddr) -> Option<T::Endpoint> {
///     block_on(t.connect(to)).ok()
/// }
/// ```
#[async_trait::async_trait]
pub trait Transport: TransportControl + Memory {
    /// Connected endpoints.
    type Endpoint: Endpoint;
    /// Listeners.
    type Listener: Listener<Endpoint = Self::Endpoint>;

    /// What it can do.
    fn capabilities(&self) -> Capabilities;

    /// Listens on `addr`: `WSAEADDRINUSE` when something already listens there,
    /// `WSAEADDRNOTAVAIL` for an address this transport does not serve.
    async fn listen(&self, addr: SocketAddr) -> Result<Self::Listener, WsaError>;

    /// Connects to `addr`: `WSAECONNREFUSED` when nothing listens there, `WSAECONNRESET`
    /// when the peer fails the handshake.
    async fn connect(&self, addr: SocketAddr) -> Result<Self::Endpoint, WsaError>;
}

/// Runs a future to completion on the current thread, parking it while the future waits.
///
/// The provider DLL has no async runtime: control-plane calls (`listen`, `connect`,
/// `accept`) are driven with this from the `extern "system"` functions.
///
/// ```
/// use san_spi_core::transport::block_on;
///
/// assert_eq!(block_on(async { 40 + 2 }), 42);
/// ```
pub fn block_on<F: core::future::Future>(future: F) -> F::Output {
    use std::sync::Arc;
    use std::task::{Context, Poll, Wake, Waker};

    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = Box::pin(future);
    loop {
        match future.as_mut().poll(&mut cx) {
            Poll::Ready(v) => return v,
            Poll::Pending => std::thread::park(),
        }
    }
}
