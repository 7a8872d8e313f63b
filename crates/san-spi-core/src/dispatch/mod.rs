//! `WSPIoctl` semantics over checked inputs (R-RET, R-EXT, R-QOS, R-ADDR-3/8, R-OVL).
//!
//! The shim validates the caller's pointers and hands [`Dispatcher::ioctl`] byte slices,
//! the output buffer's caller address, whether `lpcbBytesReturned` is there, and the
//! overlapped request; the dispatcher returns an [`IoctlReturn`] the shim turns into the
//! return value, `*lpErrno`, `*lpcbBytesReturned` and — for
//! `SIO_GET_EXTENSION_FUNCTION_POINTER` — the function pointer it writes.
//!
//! Rules, in the order they are checked:
//!
//! 1. unknown or closed descriptor → `WSAENOTSOCK` (R-RET-6);
//! 2. transport down → `WSAENETDOWN`;
//! 3. a completion routine without `lpThreadId` → `WSAEFAULT`;
//! 4. the code: `SIO_GET_EXTENSION_FUNCTION_POINTER` (R-EXT; an optional function the
//!    transport does not offer → `WSAEOPNOTSUPP`, R-EXT-5), `SIO_ADDRESS_LIST_QUERY`
//!    (R-ADDR), the four QoS codes (R-QOS), this provider's vendor codes (R-IOC-5);
//!    anything else → `WSAEINVAL` (R-RET-5).
//!
//! A call that fails returns `SOCKET_ERROR` and notifies nobody. A call that completes at
//! once returns 0; if it carried a `WSAOVERLAPPED`, the completion is also notified once
//! the way the caller asked, before the call returns (R-RET-8) — this is how the
//! always-blocking codes behave when an overlapped request is passed anyway (R-EXT-4,
//! R-ADDR-8). Only a QoS call the transport cannot finish now is left pending
//! (`WSA_IO_PENDING`, R-OVL-2) — or refused with `WSAEWOULDBLOCK` on a nonblocking socket
//! without a `WSAOVERLAPPED` (R-OVL-1).
//!
//! Closing a socket aborts its pending requests with `WSA_OPERATION_ABORTED` (R-OVL-6).
//!
//! ```
//! use san_spi_core::addr::Width;
//! use san_spi_core::dispatch::{DispatchConfig, Dispatcher, IoctlRequest, IoctlReturn};
//! use san_spi_core::guid::ExtensionFunction;
//! use san_spi_core::ioctl::SIO_GET_EXTENSION_FUNCTION_POINTER;
//! use san_spi_core::testing::FakeSwitch;
//! use san_spi_core::transport::{LocalAddress, TransportControl};
//! use san_spi_core::WsaError;
//!
//! struct NoAddrs;
//! impl TransportControl for NoAddrs {
//!     fn local_addresses(&self) -> Result<Vec<LocalAddress>, WsaError> { Ok(vec![]) }
//! }
//! let d = Dispatcher::new(NoAddrs, DispatchConfig::new(Width::W64));
//! d.open_socket(5).unwrap();
//! let guid = ExtensionFunction::RdmaWrite.windows_bytes();
//! let mut out = [0u8; 8];
//! let r = d.ioctl(
//!     IoctlRequest::new(5, SIO_GET_EXTENSION_FUNCTION_POINTER).input(&guid).output(&mut out, 0x1000),
//!     &FakeSwitch::new(),
//! );
//! assert_eq!(r, IoctlReturn::Complete { bytes_returned: 8, extension: Some(ExtensionFunction::RdmaWrite) });
//! assert_eq!(r.return_value(), 0);
//! ```

mod socket;

pub use socket::{SocketState, SocketTable};

use crate::addr::eligibility::classify;
use crate::addr::{AddrError, SocketAddressListRepr, Width};
use crate::guid::{ExtensionFunction, GuidError};
use crate::ioctl::{
    IoctlCode, SIO_ADDRESS_LIST_QUERY, SIO_GET_EXTENSION_FUNCTION_POINTER, SIO_GET_GROUP_QOS,
    SIO_GET_QOS, SIO_SET_GROUP_QOS, SIO_SET_QOS,
};
use crate::overlapped::{
    CompletionMode, OperationTable, Outcome, OverlappedRequest, TableFull, Token,
};
use crate::qos::{FlowSpec, QosError, QosRepr};
use crate::transport::{OwnedQos, QosCapability, TransportControl};
use crate::upcall::{OverlappedMemory, Upcalls};
use crate::WsaError;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

#[cfg(test)]
mod tests;

/// `SOCKET_ERROR`.
pub const SOCKET_ERROR: i32 = -1;

/// Settings of a dispatcher.
///
/// ```
/// use san_spi_core::addr::Width;
/// use san_spi_core::dispatch::{DispatchConfig, Dispatcher, IoctlRequest, IoctlReturn};
/// use san_spi_core::ioctl::{IoctlCode, IoctlFlags, IoctlType};
/// use san_spi_core::testing::{FakeSwitch, FakeTransport};
/// use san_spi_core::WsaError;
///
/// let config = DispatchConfig { vendor: Some(0x123), ..DispatchConfig::new(Width::W64) };
/// let d = Dispatcher::new(FakeTransport::new(vec![]), config);
/// assert_eq!(d.operations().capacity(), 4096);
/// d.open_socket(4).unwrap();
/// let switch = FakeSwitch::new();
/// let io = IoctlFlags::IN | IoctlFlags::OUT;
/// let ours = IoctlCode::new(io, IoctlType::Vendor, 0x123, 1);
/// let theirs = IoctlCode::new(io, IoctlType::Vendor, 0x456, 1);
///
/// // This provider's vendor codes reach the transport (the fake echoes the input) ...
/// let mut out = [0u8; 4];
/// let r = d.ioctl(IoctlRequest::new(4, ours).input(b"ping").output(&mut out, 0x1000), &switch);
/// assert_eq!(r, IoctlReturn::Complete { bytes_returned: 4, extension: None });
/// assert_eq!(&out, b"ping");
/// // ... another vendor's are WSAEINVAL.
/// let r = d.ioctl(IoctlRequest::new(4, theirs).input(b"ping").output(&mut out, 0x1000), &switch);
/// assert_eq!(r.errno(), Some(WsaError::Inval));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DispatchConfig {
    /// The pointer width of the callers (the DLL's own width).
    pub width: Width,
    /// The provider's vendor number in T = 3 codes, if it has one.
    pub vendor: Option<u16>,
    /// Slots of the overlapped operation table.
    pub max_pending: usize,
}

impl DispatchConfig {
    /// Defaults for callers of `width`: no vendor codes, 4096 pending operations.
    pub fn new(width: Width) -> DispatchConfig {
        DispatchConfig {
            width,
            vendor: None,
            max_pending: 4096,
        }
    }
}

/// The checked arguments of one `WSPIoctl` call.
///
/// ```
/// use san_spi_core::addr::Width;
/// use san_spi_core::dispatch::{DispatchConfig, Dispatcher, IoctlRequest, IoctlReturn};
/// use san_spi_core::ioctl::SIO_ADDRESS_LIST_QUERY;
/// use san_spi_core::testing::{FakeSwitch, FakeTransport};
/// use san_spi_core::transport::LocalAddress;
///
/// let nic = LocalAddress::new("192.0.2.10:0".parse().unwrap());
/// let d = Dispatcher::new(FakeTransport::new(vec![nic]), DispatchConfig::new(Width::W64));
/// d.open_socket(5).unwrap();
///
/// let mut out = [0u8; 64];
/// let req = IoctlRequest::new(5, SIO_ADDRESS_LIST_QUERY).output(&mut out, 0x1000);
/// assert!(req.input.is_none() && req.has_bytes_returned && req.overlapped.is_none());
/// let r = d.ioctl(req, &FakeSwitch::new());
/// // One SOCKET_ADDRESS (16 bytes at x64) after the 8-byte header, then a 16-byte SOCKADDR_IN.
/// assert_eq!(r, IoctlReturn::Complete { bytes_returned: 8 + 16 + 16, extension: None });
/// assert_eq!(&out[..4], &[1, 0, 0, 0]); // iAddressCount
/// ```
#[derive(Debug)]
pub struct IoctlRequest<'a> {
    /// `s`.
    pub socket: u64,
    /// `dwIoControlCode`.
    pub code: IoctlCode,
    /// `lpvInBuffer[..cbInBuffer]`, `None` if `lpvInBuffer` is NULL.
    pub input: Option<&'a [u8]>,
    /// The caller's address of `lpvInBuffer` (to locate pointers inside the input).
    pub input_base: u64,
    /// `lpvOutBuffer[..cbOutBuffer]`, `None` if `lpvOutBuffer` is NULL.
    pub output: Option<&'a mut [u8]>,
    /// The caller's address of `lpvOutBuffer` (self-pointing outputs are emitted for it).
    pub output_base: u64,
    /// Whether `lpcbBytesReturned` is a valid pointer.
    pub has_bytes_returned: bool,
    /// `lpOverlapped` and the completion routine and thread id, if overlapped.
    pub overlapped: Option<OverlappedRequest>,
}

impl<'a> IoctlRequest<'a> {
    /// A call on `socket` with `code`, no buffers, `lpcbBytesReturned` present, not overlapped.
    pub fn new(socket: u64, code: IoctlCode) -> IoctlRequest<'a> {
        IoctlRequest {
            socket,
            code,
            input: None,
            input_base: 0,
            output: None,
            output_base: 0,
            has_bytes_returned: true,
            overlapped: None,
        }
    }

    /// With an input buffer.
    pub fn input(mut self, input: &'a [u8]) -> Self {
        self.input = Some(input);
        self
    }

    /// With an input buffer at caller address `base`.
    pub fn input_at(mut self, input: &'a [u8], base: u64) -> Self {
        self.input = Some(input);
        self.input_base = base;
        self
    }

    /// With an output buffer at caller address `base`.
    pub fn output(mut self, output: &'a mut [u8], base: u64) -> Self {
        self.output = Some(output);
        self.output_base = base;
        self
    }

    /// With or without `lpcbBytesReturned`.
    pub fn bytes_returned(mut self, present: bool) -> Self {
        self.has_bytes_returned = present;
        self
    }

    /// Overlapped.
    pub fn overlapped(mut self, request: OverlappedRequest) -> Self {
        self.overlapped = Some(request);
        self
    }
}

/// What `WSPIoctl` returns (R-RET-2).
///
/// ```
/// use san_spi_core::addr::Width;
/// use san_spi_core::dispatch::{DispatchConfig, Dispatcher, IoctlRequest, IoctlReturn, SOCKET_ERROR};
/// use san_spi_core::ioctl::SIO_ADDRESS_LIST_QUERY;
/// use san_spi_core::testing::{FakeSwitch, FakeTransport};
/// use san_spi_core::transport::LocalAddress;
/// use san_spi_core::WsaError;
///
/// let nic = LocalAddress::new("192.0.2.10:0".parse().unwrap());
/// let d = Dispatcher::new(FakeTransport::new(vec![nic]), DispatchConfig::new(Width::W64));
/// let switch = FakeSwitch::new();
/// d.open_socket(5).unwrap();
///
/// // A too-small buffer: WSAEFAULT, and the size required at *lpcbBytesReturned.
/// let mut small = [0u8; 8];
/// let r = d.ioctl(IoctlRequest::new(5, SIO_ADDRESS_LIST_QUERY).output(&mut small, 0x1000), &switch);
/// assert_eq!(r, IoctlReturn::Error { error: WsaError::Fault, bytes_returned: Some(40) });
/// assert_eq!((r.return_value(), r.errno()), (SOCKET_ERROR, Some(WsaError::Fault)));
///
/// // A descriptor that was never opened.
/// let r = d.ioctl(IoctlRequest::new(99, SIO_ADDRESS_LIST_QUERY), &switch);
/// assert_eq!(r.errno(), Some(WsaError::NotSock));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum IoctlReturn {
    /// Return 0: completed now. `*lpcbBytesReturned = bytes_returned`. For
    /// `SIO_GET_EXTENSION_FUNCTION_POINTER` the shim writes the pointer of `extension`
    /// to the output buffer.
    Complete {
        /// `*lpcbBytesReturned`.
        bytes_returned: u32,
        /// The extension function requested, if that was the code.
        extension: Option<ExtensionFunction>,
    },
    /// Return `SOCKET_ERROR` with `*lpErrno = error` (`WSA_IO_PENDING` included). When
    /// `bytes_returned` is set (a too-small `SIO_ADDRESS_LIST_QUERY` buffer, R-ADDR-3), the
    /// shim stores it at `*lpcbBytesReturned`.
    Error {
        /// `*lpErrno`.
        error: WsaError,
        /// The size required, for `WSAEFAULT` on a too-small buffer.
        bytes_returned: Option<u32>,
    },
}

impl IoctlReturn {
    fn err(error: WsaError) -> IoctlReturn {
        IoctlReturn::Error {
            error,
            bytes_returned: None,
        }
    }

    /// 0 or `SOCKET_ERROR`.
    pub fn return_value(&self) -> i32 {
        match self {
            IoctlReturn::Complete { .. } => 0,
            IoctlReturn::Error { .. } => SOCKET_ERROR,
        }
    }

    /// `*lpErrno`, if an error is returned.
    pub fn errno(&self) -> Option<WsaError> {
        match self {
            IoctlReturn::Complete { .. } => None,
            IoctlReturn::Error { error, .. } => Some(*error),
        }
    }
}

/// A QoS request the transport could not finish when it was made.
#[derive(Debug)]
struct Deferred {
    token: Token,
    socket: u64,
    kind: DeferredKind,
}

#[derive(Debug)]
enum DeferredKind {
    Set(OwnedQos),
    Get { output: u64, capacity: usize },
}

/// Answers `WSPIoctl` for every socket of a provider. Thread-safe.
///
/// ```
/// use san_spi_core::addr::Width;
/// use san_spi_core::dispatch::{DispatchConfig, Dispatcher, IoctlRequest};
/// use san_spi_core::ioctl::SIO_SET_QOS;
/// use san_spi_core::overlapped::OverlappedRequest;
/// use san_spi_core::qos::{FlowSpec, QosRepr};
/// use san_spi_core::testing::{FakeSwitch, FakeTransport};
/// use san_spi_core::WsaError;
///
/// let d = Dispatcher::new(FakeTransport::with_qos(vec![]), DispatchConfig::new(Width::W64));
/// let switch = FakeSwitch::new();
/// d.open_socket(5).unwrap();
/// let qos = QosRepr { sending: FlowSpec::best_effort(1_000_000), receiving: FlowSpec::NULL, provider_specific: &[] };
/// let mut input = [0u8; 80];
/// qos.emit(&mut input, Width::W64, 0x7000).unwrap();
///
/// // The transport cannot apply the QoS yet: the overlapped call is left pending.
/// d.transport().qos_not_ready_for(1);
/// let ov = OverlappedRequest { overlapped: 0x9000, event: 0x88, completion_routine: 0, thread_id: None };
/// let r = d.ioctl(IoctlRequest::new(5, SIO_SET_QOS).input_at(&input, 0x7000).overlapped(ov), &switch);
/// assert_eq!(r.errno(), Some(WsaError::IoPending));
/// assert_eq!(switch.completions_of(0x9000), 0);
///
/// // Once the transport has made progress, the request completes and is notified once.
/// assert_eq!(d.poll_deferred(&switch), 1);
/// assert_eq!(switch.completions_of(0x9000), 1);
/// assert_eq!(d.close_socket(5, &switch), Ok(0)); // nothing left to abort
/// ```
pub struct Dispatcher<T> {
    transport: T,
    config: DispatchConfig,
    sockets: SocketTable,
    ops: OperationTable,
    deferred: Mutex<Vec<Deferred>>,
}

impl<T> std::fmt::Debug for Dispatcher<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher")
            .field("config", &self.config)
            .field("ops", &self.ops)
            .finish()
    }
}

/// Maps the errors of the marshalling modules to `WSPIoctl` codes, in one place.
fn addr_error(e: AddrError) -> IoctlReturn {
    match e {
        AddrError::BufferTooSmall { required, .. } => IoctlReturn::Error {
            error: WsaError::Fault,
            bytes_returned: u32::try_from(required).ok(),
        },
        AddrError::BaseOutOfRange { .. } => IoctlReturn::err(WsaError::Fault),
        _ => IoctlReturn::err(WsaError::Inval),
    }
}

fn qos_error(e: QosError) -> WsaError {
    match e {
        QosError::BufferTooSmall { .. }
        | QosError::BaseOutOfRange { .. }
        | QosError::ProviderSpecificOutOfBounds { .. } => WsaError::Fault,
        _ => WsaError::Inval,
    }
}

fn guid_error(e: GuidError) -> WsaError {
    match e {
        GuidError::Short { .. } => WsaError::Fault,
        GuidError::Unknown(_) => WsaError::Inval,
    }
}

/// Only R-RET-3 codes leave `WSPIoctl`; anything else a transport reports is WSAEINVAL.
fn wspioctl_code(e: WsaError) -> WsaError {
    if e.is_wspioctl_code() {
        e
    } else {
        WsaError::Inval
    }
}

impl<T: TransportControl> Dispatcher<T> {
    /// A dispatcher over `transport`.
    pub fn new(transport: T, config: DispatchConfig) -> Dispatcher<T> {
        Dispatcher {
            transport,
            config,
            sockets: SocketTable::new(),
            ops: OperationTable::with_capacity(config.max_pending),
            deferred: Mutex::new(Vec::new()),
        }
    }

    /// The transport.
    pub fn transport(&self) -> &T {
        &self.transport
    }

    /// The overlapped operation table (the shim's APC function calls `take_apc` on it).
    pub fn operations(&self) -> &OperationTable {
        &self.ops
    }

    /// The configuration.
    pub fn config(&self) -> &DispatchConfig {
        &self.config
    }

    /// Registers a new socket descriptor. A descriptor already open is `WSAEINVAL`.
    pub fn open_socket(&self, socket: u64) -> Result<Arc<SocketState>, WsaError> {
        self.sockets.insert(socket)
    }

    /// Sets the socket's blocking mode (`FIONBIO` / `WSPEventSelect`, as the switch does it).
    pub fn set_nonblocking(&self, socket: u64, nonblocking: bool) -> Result<(), WsaError> {
        self.sockets
            .get(socket)
            .ok_or(WsaError::NotSock)?
            .set_nonblocking(nonblocking);
        Ok(())
    }

    /// Whether `socket` is in nonblocking mode; `None` if it is not open.
    pub fn is_nonblocking(&self, socket: u64) -> Option<bool> {
        self.sockets.get(socket).map(|s| s.is_nonblocking())
    }

    /// Closes a socket: later calls get `WSAENOTSOCK`, and every pending request of the
    /// socket completes with `WSA_OPERATION_ABORTED`, notified once (R-OVL-6). Returns how
    /// many were aborted.
    pub fn close_socket<E: Upcalls + OverlappedMemory>(
        &self,
        socket: u64,
        env: &E,
    ) -> Result<usize, WsaError> {
        let state = self.sockets.remove(socket).ok_or(WsaError::NotSock)?;
        state.mark_closed();
        let aborted = self.ops.abort_socket(socket, env);
        self.lock_deferred().retain(|d| d.socket != socket);
        Ok(aborted)
    }

    fn lock_deferred(&self) -> std::sync::MutexGuard<'_, Vec<Deferred>> {
        self.deferred.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `WSPIoctl`.
    pub fn ioctl<E: Upcalls + OverlappedMemory>(
        &self,
        req: IoctlRequest<'_>,
        env: &E,
    ) -> IoctlReturn {
        let state = match self.sockets.get(req.socket) {
            Some(s) => s,
            None => return IoctlReturn::err(WsaError::NotSock),
        };
        if !self.transport.is_up() {
            return IoctlReturn::err(WsaError::NetDown);
        }
        let mode = match CompletionMode::of_optional(req.overlapped.as_ref()) {
            Ok(m) => m,
            Err(e) => return IoctlReturn::err(e),
        };
        let code = req.code;
        let (socket, overlapped) = (req.socket, req.overlapped);
        let result = if code == SIO_GET_EXTENSION_FUNCTION_POINTER {
            self.extension_function(&req)
        } else if code == SIO_ADDRESS_LIST_QUERY {
            self.address_list(req)
        } else if code == SIO_GET_QOS
            || code == SIO_SET_QOS
            || code == SIO_GET_GROUP_QOS
            || code == SIO_SET_GROUP_QOS
        {
            return self.qos_ioctl(req, &state, mode, env);
        } else if self.config.vendor.map_or(false, |v| code.is_vendor(v)) {
            self.vendor(req)
        } else {
            IoctlReturn::err(WsaError::Inval)
        };
        self.finish_now(result, (socket, overlapped), mode, env)
    }

    /// A call that completed (or failed) at once: notify an overlapped success, once.
    fn finish_now<E: Upcalls + OverlappedMemory>(
        &self,
        result: IoctlReturn,
        (socket, overlapped): (u64, Option<OverlappedRequest>),
        mode: CompletionMode,
        env: &E,
    ) -> IoctlReturn {
        if let (IoctlReturn::Complete { bytes_returned, .. }, Some(ov)) = (result, overlapped) {
            if mode != CompletionMode::Synchronous {
                match self.ops.post(socket, &ov, mode, env) {
                    Ok(token) => {
                        // A refused upcall cannot be reported to the caller any more: the call
                        // has succeeded. The result is in the WSAOVERLAPPED either way.
                        let _ = self.ops.complete(token, Outcome::ok(bytes_returned), env);
                    }
                    Err(TableFull { .. }) => return IoctlReturn::err(WsaError::NetDown),
                }
            }
        }
        result
    }

    fn extension_function(&self, req: &IoctlRequest<'_>) -> IoctlReturn {
        let width = self.config.width;
        let guid = match ExtensionFunction::from_windows_bytes(req.input.unwrap_or(&[])) {
            Err(GuidError::Short { .. }) => return IoctlReturn::err(WsaError::Fault),
            r => r,
        };
        let out_len = req.output.as_ref().map_or(0, |o| o.len());
        if out_len < width.pointer_len() || !req.has_bytes_returned {
            return IoctlReturn::err(WsaError::Fault);
        }
        match guid {
            Ok(f) if !self.transport.offers(req.socket, f) => IoctlReturn::err(WsaError::OpNotSupp),
            Ok(f) => IoctlReturn::Complete {
                bytes_returned: width.pointer_len() as u32,
                extension: Some(f),
            },
            Err(e) => IoctlReturn::err(guid_error(e)),
        }
    }

    /// The eligible addresses of the transport, in its order (R-ADDR-4..7).
    pub fn eligible_addresses(&self) -> Result<Vec<SocketAddr>, WsaError> {
        Ok(self
            .transport
            .local_addresses()?
            .into_iter()
            .filter(|a| classify(a.addr.ip(), a.temporary).is_keep())
            .map(|a| a.addr)
            .collect())
    }

    fn address_list(&self, req: IoctlRequest<'_>) -> IoctlReturn {
        if !req.has_bytes_returned {
            return IoctlReturn::err(WsaError::Fault);
        }
        let addrs = match self.eligible_addresses() {
            Ok(a) => a,
            Err(e) => return IoctlReturn::err(wspioctl_code(e)),
        };
        let repr = SocketAddressListRepr {
            addresses: &addrs[..],
        };
        let mut empty = [0u8; 0];
        let out = req.output.unwrap_or(&mut empty);
        match repr.emit(out, self.config.width, req.output_base) {
            Ok(n) => IoctlReturn::Complete {
                bytes_returned: n as u32,
                extension: None,
            },
            Err(e) => addr_error(e),
        }
    }

    fn vendor(&self, req: IoctlRequest<'_>) -> IoctlReturn {
        match self
            .transport
            .vendor_ioctl(req.socket, req.code, req.input, req.output)
        {
            Ok(v) => IoctlReturn::Complete {
                bytes_returned: v.bytes_returned,
                extension: None,
            },
            Err(e) => IoctlReturn::err(wspioctl_code(e)),
        }
    }

    fn qos_ioctl<E: Upcalls + OverlappedMemory>(
        &self,
        req: IoctlRequest<'_>,
        state: &SocketState,
        mode: CompletionMode,
        env: &E,
    ) -> IoctlReturn {
        let cap = match self.transport.qos() {
            Some(c) => c,
            None => return IoctlReturn::err(WsaError::NoProtoOpt),
        };
        let width = self.config.width;
        let code = req.code;
        let socket = req.socket;
        let overlapped = req.overlapped;
        if code == SIO_SET_GROUP_QOS {
            // Socket groups are not supported: no socket created one (R-QOS-4).
            return IoctlReturn::err(WsaError::NoProtoOpt);
        }
        if code == SIO_SET_QOS {
            // A non-empty ProviderSpecific must lie inside the input buffer: the core reads
            // caller memory only through the slices the shim checked.
            let input = req.input.unwrap_or(&[]);
            let repr = match QosRepr::parse(input, width, req.input_base) {
                Ok(r) => r,
                Err(e) => return IoctlReturn::err(qos_error(e)),
            };
            let owned = OwnedQos::from_repr(&repr);
            let attempt = |cap: &dyn QosCapability| cap.set_qos(socket, &owned.as_repr());
            return match self.run_qos(cap, state, socket, overlapped.is_some(), attempt) {
                QosStep::Done(Ok(())) => self.finish_now(
                    IoctlReturn::Complete {
                        bytes_returned: 0,
                        extension: None,
                    },
                    (socket, overlapped),
                    mode,
                    env,
                ),
                QosStep::Done(Err(e)) => IoctlReturn::err(wspioctl_code(e)),
                QosStep::Defer => self.defer(
                    socket,
                    state,
                    overlapped,
                    mode,
                    DeferredKind::Set(owned),
                    env,
                ),
            };
        }
        // SIO_GET_QOS / SIO_GET_GROUP_QOS.
        let group = code == SIO_GET_GROUP_QOS;
        let capacity = req.output.as_ref().map_or(0, |o| o.len());
        let base = req.output_base;
        let attempt = |cap: &dyn QosCapability| {
            if group {
                // Not in a group: both flow specs come back NULL (R-QOS-4).
                Ok(OwnedQos {
                    sending: FlowSpec::NULL,
                    receiving: FlowSpec::NULL,
                    provider_specific: Vec::new(),
                })
            } else {
                cap.get_qos(socket)
            }
        };
        match self.run_qos(cap, state, socket, overlapped.is_some(), attempt) {
            QosStep::Done(Ok(qos)) => {
                let repr = qos.as_repr();
                let mut empty = [0u8; 0];
                let out = req.output.unwrap_or(&mut empty);
                match repr.emit(out, width, base) {
                    Ok(n) => self.finish_now(
                        IoctlReturn::Complete {
                            bytes_returned: n as u32,
                            extension: None,
                        },
                        (socket, overlapped),
                        mode,
                        env,
                    ),
                    Err(QosError::BufferTooSmall { required, .. }) => IoctlReturn::Error {
                        error: WsaError::Fault,
                        bytes_returned: u32::try_from(required).ok(),
                    },
                    Err(e) => IoctlReturn::err(qos_error(e)),
                }
            }
            QosStep::Done(Err(e)) => IoctlReturn::err(wspioctl_code(e)),
            QosStep::Defer => {
                if capacity < crate::qos::qos_len(width) {
                    return IoctlReturn::Error {
                        error: WsaError::Fault,
                        bytes_returned: Some(crate::qos::qos_len(width) as u32),
                    };
                }
                self.defer(
                    socket,
                    state,
                    overlapped,
                    mode,
                    DeferredKind::Get {
                        output: base,
                        capacity,
                    },
                    env,
                )
            }
        }
    }

    /// Runs a QoS attempt the way the socket's mode asks.
    fn run_qos<R>(
        &self,
        cap: &dyn QosCapability,
        state: &SocketState,
        socket: u64,
        overlapped: bool,
        attempt: impl Fn(&dyn QosCapability) -> Result<R, WsaError>,
    ) -> QosStep<R> {
        loop {
            match attempt(cap) {
                Err(WsaError::WouldBlock) => {
                    if overlapped {
                        return QosStep::Defer;
                    }
                    if state.is_nonblocking() {
                        return QosStep::Done(Err(WsaError::WouldBlock));
                    }
                    if state.is_closed() {
                        return QosStep::Done(Err(WsaError::NotSock));
                    }
                    cap.wait(socket);
                }
                r => return QosStep::Done(r),
            }
        }
    }

    fn defer<E: Upcalls + OverlappedMemory>(
        &self,
        socket: u64,
        state: &SocketState,
        overlapped: Option<OverlappedRequest>,
        mode: CompletionMode,
        kind: DeferredKind,
        env: &E,
    ) -> IoctlReturn {
        let ov = match overlapped {
            Some(ov) => ov,
            None => return IoctlReturn::err(WsaError::WouldBlock),
        };
        let token = match self.ops.post(socket, &ov, mode, env) {
            Ok(t) => t,
            Err(_) => return IoctlReturn::err(WsaError::WouldBlock),
        };
        self.lock_deferred().push(Deferred {
            token,
            socket,
            kind,
        });
        // A close that raced with this call may have missed the new request: abort it here.
        if state.is_closed() {
            let _ = self
                .ops
                .complete(token, Outcome::err(WsaError::OperationAborted), env);
            self.lock_deferred().retain(|d| d.token != token);
        }
        IoctlReturn::err(WsaError::IoPending)
    }

    /// Retries the QoS requests left pending; completes (and notifies, once) those the
    /// transport can now finish. Returns how many completed. The shim calls this when the
    /// transport reports progress.
    pub fn poll_deferred<E: Upcalls + OverlappedMemory>(&self, env: &E) -> usize {
        let cap = match self.transport.qos() {
            Some(c) => c,
            None => return 0,
        };
        let width = self.config.width;
        let mut list = std::mem::take(&mut *self.lock_deferred());
        let mut done = 0;
        list.retain(|d| {
            if !self.ops.is_pending(d.token) {
                return false; // aborted by a close
            }
            let outcome = match &d.kind {
                DeferredKind::Set(qos) => match cap.set_qos(d.socket, &qos.as_repr()) {
                    Err(WsaError::WouldBlock) => return true,
                    Ok(()) => Outcome::ok(0),
                    Err(e) => Outcome::err(wspioctl_code(e)),
                },
                DeferredKind::Get { output, capacity } => match cap.get_qos(d.socket) {
                    Err(WsaError::WouldBlock) => return true,
                    Ok(qos) => {
                        let repr = qos.as_repr();
                        let len = repr.buffer_len(width);
                        if len > *capacity {
                            Outcome::err(WsaError::Fault)
                        } else {
                            let mut bytes = vec![0u8; len];
                            match repr.emit(&mut bytes, width, *output) {
                                Ok(n) => {
                                    env.write_output(*output, &bytes[..n]);
                                    Outcome::ok(n as u32)
                                }
                                Err(e) => Outcome::err(qos_error(e)),
                            }
                        }
                    }
                    Err(e) => Outcome::err(wspioctl_code(e)),
                },
            };
            if self.ops.complete(d.token, outcome, env).is_ok() {
                done += 1;
            }
            false
        });
        self.lock_deferred().extend(list);
        done
    }
}

enum QosStep<R> {
    Done(Result<R, WsaError>),
    Defer,
}
