//! SAN sockets over a [`Transport`]: the socket lifecycle the provider's `WSP*` functions
//! implement, with every completion going through the overlapped state machine.
//!
//! [`SanSockets`] owns the transport, a [`Dispatcher`] (so `WSPIoctl` sees the same sockets)
//! and the descriptor table:
//!
//! ```text
//! socket ──bind──► Bound ──listen──► Listening ──accept──► (new socket) Connected
//!    └───────────────connect────────────────────────────► Connected ──close──► gone
//! ```
//!
//! Data calls (`send`, `recv`, `rdma_write`, `rdma_read`) take the caller's SGE list (the
//! `WSABUFEX`s with their registration handles) and an optional overlapped request:
//!
//! - **overlapped**: the request is posted in the operation table (its token is the
//!   transport token), the transport starts the work, and the call returns
//!   `WSA_IO_PENDING`; [`SanSockets::progress`] later moves the transport's completion into
//!   the table, which notifies the caller once, the way it asked (R-OVL);
//! - **blocking**: the call waits for its own completion, driving progress meanwhile;
//! - **nonblocking** (no overlapped, socket in nonblocking mode): a full transport queue is
//!   `WSAEWOULDBLOCK` (R-OVL-1); a blocking call waits for room instead (back-pressure).
//!   Once the transport has accepted the request it holds the caller's buffer, so the call
//!   then waits for the completion like a blocking one (the switch issues SAN data calls
//!   overlapped, so this path is a fallback).
//!
//! Closing a socket aborts its pending requests with `WSA_OPERATION_ABORTED`, exactly once
//! (the transport's later "aborted" completions find the tokens stale and are dropped).
//!
//! Options: `SO_MAX_RDMA_SIZE` (0x700D, read-only: the transport's largest RDMA transfer)
//! and `SO_RDMA_THRESHOLD_SIZE` (0x700E: the size from which the switch uses RDMA; read and
//! write), both `DWORD`s at level `SOL_SOCKET` (0xFFFF); others are `WSAENOPROTOOPT`.

use crate::addr::Width;
use crate::dispatch::{DispatchConfig, Dispatcher, IoctlRequest, IoctlReturn};
use crate::overlapped::{CompletionMode, Outcome, OverlappedRequest, Token};
use crate::transport::{
    block_on, Completion, Endpoint, Listener, LocalAddress, Op, PostError, QosCapability,
    RemoteTarget, Sge, Transport, TransportControl, VendorOutcome,
};
use crate::upcall::{OverlappedMemory, Upcalls};
use crate::WsaError;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

/// `SOL_SOCKET`.
pub const SOL_SOCKET: i32 = 0xFFFF;
/// `SO_MAX_RDMA_SIZE` (ws2san.h).
pub const SO_MAX_RDMA_SIZE: i32 = 0x700D;
/// `SO_RDMA_THRESHOLD_SIZE` (ws2san.h).
pub const SO_RDMA_THRESHOLD_SIZE: i32 = 0x700E;
/// Default `SO_RDMA_THRESHOLD_SIZE`: messages from 64 KiB go by RDMA.
pub const DEFAULT_RDMA_THRESHOLD: u32 = 64 << 10;

/// Tokens of blocking calls carry this bit; overlapped tokens fit 32 bits.
const SYNC_BIT: u64 = 1 << 63;

impl<T: TransportControl + ?Sized> TransportControl for Arc<T> {
    fn is_up(&self) -> bool {
        (**self).is_up()
    }
    fn local_addresses(&self) -> Result<Vec<LocalAddress>, WsaError> {
        (**self).local_addresses()
    }
    fn qos(&self) -> Option<&dyn QosCapability> {
        (**self).qos()
    }
    fn offers(&self, socket: u64, f: crate::guid::ExtensionFunction) -> bool {
        (**self).offers(socket, f)
    }
    fn vendor_ioctl(
        &self,
        socket: u64,
        code: crate::ioctl::IoctlCode,
        input: Option<&[u8]>,
        output: Option<&mut [u8]>,
    ) -> Result<VendorOutcome, WsaError> {
        (**self).vendor_ioctl(socket, code, input, output)
    }
}

enum State<T: Transport> {
    Created,
    Bound(SocketAddr),
    Listening(Arc<T::Listener>),
    Connected(Arc<T::Endpoint>),
}

struct Entry<T: Transport> {
    state: Mutex<State<T>>,
    rdma_threshold: AtomicU32,
}

/// Results of blocking calls, by sync token (whoever polls the endpoint files them here).
#[derive(Default)]
struct Waiters {
    done: Mutex<HashMap<u64, Result<u32, WsaError>>>,
}

/// The SAN sockets of one provider over one transport.
///
/// ```
/// use san_spi_core::addr::Width;
/// use san_spi_core::socket::SanSockets;
/// use san_spi_core::transport::Transport;
/// use san_spi_core::WsaError;
///
/// // WSPSocket, WSPBind and WSPConnect as a provider implements them, for any transport:
/// fn dial<T: Transport>(t: T, s: u64, to: std::net::SocketAddr) -> Result<SanSockets<T>, WsaError> {
///     let sockets = SanSockets::new(t, Width::host());
///     sockets.socket(s)?;
///     sockets.connect(s, to)?;
///     Ok(sockets)
/// }
/// ```
pub struct SanSockets<T: Transport> {
    transport: Arc<T>,
    dispatcher: Dispatcher<Arc<T>>,
    sockets: RwLock<HashMap<u64, Arc<Entry<T>>>>,
    waiters: Waiters,
    next_sync: AtomicU64,
}

impl<T: Transport> std::fmt::Debug for SanSockets<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SanSockets")
            .field("dispatcher", &self.dispatcher)
            .finish()
    }
}

/// The error for a data call the endpoint of a connected socket refused. `Closed` there
/// means the connection ended under the socket (the peer closed or went away, or the
/// connection failed; a socket closed here has left the table): WSAECONNRESET, as a
/// stream socket reports a connection the remote side ended.
fn refused(e: PostError) -> WsaError {
    match e {
        PostError::Closed => WsaError::ConnReset,
        e => e.wsa(),
    }
}

fn lock<X>(m: &Mutex<X>) -> MutexGuard<'_, X> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What a data call returns: done now with a byte count, or pending.
///
/// ```
/// use san_spi_core::socket::DataReturn;
///
/// let r = DataReturn::Complete { bytes: 5 };
/// assert_ne!(r, DataReturn::Pending);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataReturn {
    /// Return 0: completed, `bytes` transferred (blocking call).
    Complete {
        /// Bytes transferred.
        bytes: u32,
    },
    /// Return `SOCKET_ERROR` with `WSA_IO_PENDING`: the overlapped request completes later.
    Pending,
}

impl<T: Transport> SanSockets<T> {
    /// Sockets over `transport` for callers of `width`.
    pub fn new(transport: T, width: Width) -> SanSockets<T> {
        let transport = Arc::new(transport);
        SanSockets {
            dispatcher: Dispatcher::new(transport.clone(), DispatchConfig::new(width)),
            transport,
            sockets: RwLock::new(HashMap::new()),
            waiters: Waiters::default(),
            next_sync: AtomicU64::new(1),
        }
    }

    /// The transport.
    pub fn transport(&self) -> &T {
        &self.transport
    }

    /// The `WSPIoctl` dispatcher over the same sockets.
    pub fn dispatcher(&self) -> &Dispatcher<Arc<T>> {
        &self.dispatcher
    }

    /// `WSPIoctl`.
    pub fn ioctl<E: Upcalls + OverlappedMemory>(
        &self,
        req: IoctlRequest<'_>,
        env: &E,
    ) -> IoctlReturn {
        self.dispatcher.ioctl(req, env)
    }

    fn entry(&self, s: u64) -> Result<Arc<Entry<T>>, WsaError> {
        self.sockets
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&s)
            .cloned()
            .ok_or(WsaError::NotSock)
    }

    fn insert(&self, s: u64, state: State<T>) -> Result<(), WsaError> {
        let mut map = self.sockets.write().unwrap_or_else(|e| e.into_inner());
        if map.contains_key(&s) {
            return Err(WsaError::Inval);
        }
        self.dispatcher.open_socket(s)?;
        map.insert(
            s,
            Arc::new(Entry {
                state: Mutex::new(state),
                rdma_threshold: AtomicU32::new(DEFAULT_RDMA_THRESHOLD),
            }),
        );
        Ok(())
    }

    /// `WSPSocket`: a new socket with descriptor `s` (from `WPUCreateSocketHandle`).
    pub fn socket(&self, s: u64) -> Result<(), WsaError> {
        self.insert(s, State::Created)
    }

    /// `WSPBind`: only addresses of this provider's NICs (or the unspecified address with a
    /// port) are accepted.
    pub fn bind(&self, s: u64, addr: SocketAddr) -> Result<(), WsaError> {
        let e = self.entry(s)?;
        let mut st = lock(&e.state);
        if !matches!(*st, State::Created) {
            return Err(WsaError::Inval);
        }
        let local = self.transport.local_addresses()?;
        if !addr.ip().is_unspecified() && !local.iter().any(|l| l.addr.ip() == addr.ip()) {
            return Err(WsaError::AddrNotAvail);
        }
        *st = State::Bound(addr);
        Ok(())
    }

    /// `WSPListen`.
    pub fn listen(&self, s: u64) -> Result<(), WsaError> {
        let e = self.entry(s)?;
        let mut st = lock(&e.state);
        let addr = match &*st {
            State::Bound(a) => *a,
            State::Listening(_) => return Ok(()),
            _ => return Err(WsaError::Inval),
        };
        let l = block_on(self.transport.listen(addr))?;
        *st = State::Listening(Arc::new(l));
        Ok(())
    }

    /// `WSPAccept`: waits for a connection on listening socket `s` and makes it socket `new`.
    pub fn accept(&self, s: u64, new: u64) -> Result<(), WsaError> {
        let listener = match &*lock(&self.entry(s)?.state) {
            State::Listening(l) => l.clone(),
            _ => return Err(WsaError::Inval),
        };
        let ep = block_on(listener.accept())?;
        self.insert(new, State::Connected(Arc::new(ep)))
    }

    /// `WSPConnect`.
    pub fn connect(&self, s: u64, addr: SocketAddr) -> Result<(), WsaError> {
        let e = self.entry(s)?;
        let mut st = lock(&e.state);
        match &*st {
            State::Connected(_) => return Err(WsaError::IsConn),
            State::Listening(_) => return Err(WsaError::Inval),
            _ => {}
        }
        let ep = block_on(self.transport.connect(addr))?;
        *st = State::Connected(Arc::new(ep));
        Ok(())
    }

    /// Sets nonblocking mode (`FIONBIO` as the switch applies it).
    pub fn set_nonblocking(&self, s: u64, on: bool) -> Result<(), WsaError> {
        self.dispatcher.set_nonblocking(s, on)
    }

    fn endpoint(&self, s: u64) -> Result<Arc<T::Endpoint>, WsaError> {
        match &*lock(&self.entry(s)?.state) {
            State::Connected(ep) => Ok(ep.clone()),
            _ => Err(WsaError::NotConn),
        }
    }

    /// `WSPSend` with `WSABUFEX`s. On a connection the peer ended (it closed or went
    /// away): WSAECONNRESET.
    pub fn send<E: Upcalls + OverlappedMemory>(
        &self,
        s: u64,
        sges: &[Sge],
        overlapped: Option<OverlappedRequest>,
        env: &E,
    ) -> Result<DataReturn, WsaError> {
        self.data(s, overlapped, env, |ep, tok| ep.post_send(sges, tok))
    }

    /// `WSPRecv` with `WSABUFEX`s. After the peer's graceful close, once everything it sent
    /// has been received, a receive completes with zero bytes (the end of the stream).
    pub fn recv<E: Upcalls + OverlappedMemory>(
        &self,
        s: u64,
        sges: &[Sge],
        overlapped: Option<OverlappedRequest>,
        env: &E,
    ) -> Result<DataReturn, WsaError> {
        self.data(s, overlapped, env, |ep, tok| ep.post_recv(sges, tok))
    }

    /// `WSPRdmaWrite`.
    pub fn rdma_write<E: Upcalls + OverlappedMemory>(
        &self,
        s: u64,
        sges: &[Sge],
        target: RemoteTarget<'_>,
        overlapped: Option<OverlappedRequest>,
        env: &E,
    ) -> Result<DataReturn, WsaError> {
        self.data(s, overlapped, env, |ep, tok| {
            ep.rdma_write(sges, target, tok)
        })
    }

    /// `WSPRdmaRead`.
    pub fn rdma_read<E: Upcalls + OverlappedMemory>(
        &self,
        s: u64,
        sges: &[Sge],
        target: RemoteTarget<'_>,
        overlapped: Option<OverlappedRequest>,
        env: &E,
    ) -> Result<DataReturn, WsaError> {
        self.data(s, overlapped, env, |ep, tok| {
            ep.rdma_read(sges, target, tok)
        })
    }

    fn data<E: Upcalls + OverlappedMemory>(
        &self,
        s: u64,
        overlapped: Option<OverlappedRequest>,
        env: &E,
        post: impl Fn(&T::Endpoint, u64) -> Result<(), PostError>,
    ) -> Result<DataReturn, WsaError> {
        let ep = self.endpoint(s)?;
        let nonblocking = self.dispatcher.is_nonblocking(s).ok_or(WsaError::NotSock)?;
        let mode = CompletionMode::of_optional(overlapped.as_ref())?;
        if let (Some(ov), true) = (overlapped, mode != CompletionMode::Synchronous) {
            let ops = self.dispatcher.operations();
            let token = ops.post(s, &ov, mode, env).map_err(|_| WsaError::NoBufs)?;
            return match post(&ep, token.raw() as u64) {
                Ok(()) => Ok(DataReturn::Pending),
                Err(e) => {
                    ops.forget(token);
                    Err(if e == PostError::QueueFull && !nonblocking {
                        WsaError::NoBufs
                    } else if e == PostError::QueueFull {
                        WsaError::WouldBlock
                    } else {
                        refused(e)
                    })
                }
            };
        }
        // Blocking (or nonblocking without a WSAOVERLAPPED).
        let tok = SYNC_BIT | self.next_sync.fetch_add(1, Ordering::Relaxed);
        loop {
            match post(&ep, tok) {
                Ok(()) => break,
                Err(PostError::QueueFull) if nonblocking => return Err(WsaError::WouldBlock),
                Err(PostError::QueueFull) => {
                    self.progress_endpoint(&ep, env);
                    ep.wait(Duration::from_millis(1));
                }
                Err(e) => return Err(refused(e)),
            }
        }
        loop {
            if let Some(r) = lock(&self.waiters.done).remove(&tok) {
                return r.map(|bytes| DataReturn::Complete { bytes });
            }
            if self.progress_endpoint(&ep, env) == 0 {
                ep.wait(Duration::from_millis(10));
            }
        }
    }

    /// Moves one endpoint's completions into the operation table (overlapped requests,
    /// notified once) or to the blocking callers waiting for them.
    fn progress_endpoint<E: Upcalls + OverlappedMemory>(&self, ep: &T::Endpoint, env: &E) -> usize {
        let mut buf = [Completion::default(); 32];
        let mut total = 0;
        loop {
            let n = ep.poll(&mut buf);
            for c in &buf[..n] {
                self.deliver(c, env);
            }
            total += n;
            if n < buf.len() {
                return total;
            }
        }
    }

    fn deliver<E: Upcalls + OverlappedMemory>(&self, c: &Completion, env: &E) {
        let result = match (c.op, c.result) {
            // The peer closed gracefully and everything it sent was received: a stream
            // socket's receive reports the end as zero bytes, not as an error.
            (Op::Recv, Err(WsaError::Discon)) => Ok(0),
            (_, r) => r,
        };
        if c.token & SYNC_BIT != 0 {
            lock(&self.waiters.done).insert(c.token, result);
            return;
        }
        let token = match u32::try_from(c.token).ok().and_then(Token::from_raw) {
            Some(t) => t,
            None => return,
        };
        let outcome = match result {
            Ok(bytes) => Outcome::ok(bytes),
            Err(e) => Outcome::err(e),
        };
        // Stale after a close already aborted it: dropped, so the caller hears once.
        let _ = self.dispatcher.operations().complete(token, outcome, env);
    }

    /// Drives every connected socket: completions become notifications. The shim runs this
    /// from its progress thread; returns how many completions were delivered.
    pub fn progress<E: Upcalls + OverlappedMemory>(&self, env: &E) -> usize {
        let eps: Vec<Arc<T::Endpoint>> = self
            .sockets
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .filter_map(|e| match &*lock(&e.state) {
                State::Connected(ep) => Some(ep.clone()),
                _ => None,
            })
            .collect();
        eps.iter().map(|ep| self.progress_endpoint(ep, env)).sum()
    }

    /// `WSPGetSockOpt` at `SOL_SOCKET`: writes the `DWORD` value into `out`, returns its length.
    pub fn getsockopt(
        &self,
        s: u64,
        level: i32,
        name: i32,
        out: &mut [u8],
    ) -> Result<usize, WsaError> {
        let e = self.entry(s)?;
        if level != SOL_SOCKET {
            return Err(WsaError::NoProtoOpt);
        }
        let v: u32 = match name {
            SO_MAX_RDMA_SIZE => {
                u32::try_from(self.transport.capabilities().max_rdma).unwrap_or(u32::MAX)
            }
            SO_RDMA_THRESHOLD_SIZE => e.rdma_threshold.load(Ordering::Relaxed),
            _ => return Err(WsaError::NoProtoOpt),
        };
        let out = out.get_mut(..4).ok_or(WsaError::Fault)?;
        out.copy_from_slice(&v.to_le_bytes());
        Ok(4)
    }

    /// `WSPSetSockOpt` at `SOL_SOCKET`: `SO_RDMA_THRESHOLD_SIZE` takes a `DWORD`;
    /// `SO_MAX_RDMA_SIZE` is read-only (`WSAEINVAL`).
    pub fn setsockopt(&self, s: u64, level: i32, name: i32, value: &[u8]) -> Result<(), WsaError> {
        let e = self.entry(s)?;
        if level != SOL_SOCKET {
            return Err(WsaError::NoProtoOpt);
        }
        match name {
            SO_RDMA_THRESHOLD_SIZE => {
                let v = value.get(..4).ok_or(WsaError::Fault)?;
                let v = u32::from_le_bytes([v[0], v[1], v[2], v[3]]);
                e.rdma_threshold.store(v, Ordering::Relaxed);
                Ok(())
            }
            SO_MAX_RDMA_SIZE => Err(WsaError::Inval),
            _ => Err(WsaError::NoProtoOpt),
        }
    }

    /// `WSPCloseSocket`: pending requests complete with `WSA_OPERATION_ABORTED`, once; the
    /// connection ends.
    pub fn close<E: Upcalls + OverlappedMemory>(&self, s: u64, env: &E) -> Result<usize, WsaError> {
        let e = self
            .sockets
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&s)
            .ok_or(WsaError::NotSock)?;
        let aborted = self.dispatcher.close_socket(s, env)?;
        if let State::Connected(ep) = &*lock(&e.state) {
            ep.close();
            // Its own aborted completions find stale tokens; blocking waiters get theirs.
            self.progress_endpoint(ep, env);
        }
        Ok(aborted)
    }
}
