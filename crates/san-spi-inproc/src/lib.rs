//! `san-spi-inproc` — the portable reference transport: the worked example of the
//! transport traits of [`san_spi_core::transport`], with every endpoint in one process.
//!
//! A NIC vendor reads this crate top to bottom and replaces the copying with its hardware.
//! Each trait method says, where it is implemented, what the trait asks of it and how this
//! transport meets that.
//!
//! # Reading order
//!
//! 1. This file: the transport, its fabric (who can connect to whom), the control plane
//!    ([`TransportControl`], [`Transport::listen`], [`Transport::connect`],
//!    [`Listener::accept`]).
//! 2. `mem.rs`: the protection domain ([`Memory`]) and the only `unsafe` code of the crate —
//!    copying bytes in and out of registered memory.
//! 3. `descriptor.rs`: the self-contained RDMA descriptor a peer names a region with.
//! 4. `endpoint.rs`: the data plane ([`Endpoint`]): queues, message matching, RDMA, close.
//!
//! [`Memory`]: san_spi_core::transport::Memory
//! [`Endpoint`]: san_spi_core::transport::Endpoint
//!
//! # Fabrics and domains
//!
//! [`InprocTransport::new`] takes a *fabric name*. Transports created with the same name in
//! one process see each other's listeners, as two hosts on one network would; different
//! names never meet. Each transport instance has its **own** protection domain (its
//! registration table), as each process opening a NIC would: a remote descriptor is always
//! resolved in the domain of the endpoint's *peer*, never in the local one. A
//! [`Clone`] of a transport shares its domain (and fabric): it is the same "process".
//!
//! # Progress model
//!
//! There is no engine thread. All work is done **at post time, by whichever side posts**,
//! under the connection's one lock:
//!
//! * `post_send` delivers straight into the peer's oldest posted receive when one is
//!   waiting (zero copy); otherwise it copies the message into the receiver's staging
//!   buffer ([`STAGING_BYTES`]) and completes at once; when staging is full it leaves the
//!   send queued (not complete) and the receiver copies it directly when it posts a receive.
//! * `post_recv` takes the oldest waiting message, if any.
//! * `rdma_write` / `rdma_read` copy between the local SGEs and the peer's region at once.
//!
//! Completions are queued per endpoint; [`poll`](san_spi_core::transport::Endpoint::poll) takes them
//! and [`wait`](san_spi_core::transport::Endpoint::wait) parks on the connection's `Condvar` with a timeout. A real NIC does
//! the same work asynchronously; nothing in the trait contract depends on the difference.
//!
//! Lock order: a connection's lock, then domain locks in ascending domain id (one lock when
//! both ends share a domain). Registration calls take only their domain's lock, so
//! `deregister` cannot return while a copy through the registration is in progress.
//!
//! ```
//! use san_spi_core::transport::{block_on, Listener, Transport};
//! use san_spi_inproc::InprocTransport;
//!
//! let server = InprocTransport::new("doc-example");
//! let client = InprocTransport::new("doc-example"); // same fabric, its own domain
//! let addr = "198.18.0.1:7000".parse().unwrap();
//! let listener = block_on(server.listen(addr)).unwrap();
//! let c = block_on(client.connect(addr)).unwrap();
//! let s = block_on(listener.accept()).unwrap();
//! # drop((c, s));
//! ```

#![deny(unsafe_code)]

mod descriptor;
mod endpoint;
#[allow(unsafe_code)]
mod mem;

pub use endpoint::InprocEndpoint;

use mem::Domain;
use san_spi_core::guid::ExtensionFunction;
use san_spi_core::transport::{Capabilities, Listener, LocalAddress, Transport, TransportControl};
use san_spi_core::WsaError;
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll, Waker};

/// Most SGEs in one operation.
pub const MAX_SGE: usize = 16;
/// Largest message, and largest RDMA transfer, in bytes.
pub const MAX_TRANSFER: usize = 1 << 30;
/// Send-side operations (sends, RDMA writes and reads) an endpoint may have posted and not
/// yet polled; one more is [`PostError::QueueFull`](san_spi_core::transport::PostError).
pub const SEND_QUEUE_DEPTH: usize = 256;
/// Receives an endpoint may have posted and not yet polled.
pub const RECV_QUEUE_DEPTH: usize = 256;
/// Bytes of sent messages each endpoint buffers for its receives when none is posted.
pub const STAGING_BYTES: usize = 256 << 10;
/// Messages each endpoint buffers, at most, however small.
pub const STAGED_MESSAGES: usize = 1024;
/// Connections a listener holds before they are accepted; more are refused.
pub const BACKLOG: usize = 128;
/// The address a transport serves unless [`InprocTransport::with_addresses`] says otherwise
/// (198.18.0.1, from the benchmarking range of RFC 2544).
pub const DEFAULT_ADDRESS: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1));
/// First port handed out to a listen on port 0.
const EPHEMERAL_PORTS: u16 = 49152;

/// Locks `m`, ignoring poisoning: every critical section leaves its state consistent before
/// it can panic, so a panic elsewhere must not wedge the transport.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

// ---------------------------------------------------------------------------------------
// The fabric: a process-wide registry of listeners per fabric name.
// ---------------------------------------------------------------------------------------

/// The listeners of one fabric name.
struct Fabric {
    listeners: Mutex<HashMap<SocketAddr, Weak<Backlog>>>,
}

/// Every live fabric of the process. `Mutex::new` is `const` on 1.63, so no `OnceLock`.
static FABRICS: Mutex<Option<HashMap<String, Weak<Fabric>>>> = Mutex::new(None);

/// The fabric named `name`, created if no live transport uses it.
fn fabric(name: String) -> Arc<Fabric> {
    let mut all = lock(&FABRICS);
    let map = all.get_or_insert_with(HashMap::new);
    if let Some(f) = map.get(&name).and_then(Weak::upgrade) {
        return f;
    }
    map.retain(|_, f| f.strong_count() > 0);
    let f = Arc::new(Fabric {
        listeners: Mutex::new(HashMap::new()),
    });
    map.insert(name, Arc::downgrade(&f));
    f
}

// ---------------------------------------------------------------------------------------
// The transport.
// ---------------------------------------------------------------------------------------

/// The in-process transport: one fabric, one protection domain.
///
/// Cloning shares both (the clone is the same "process"); [`InprocTransport::new`] with the
/// same fabric name makes a transport that can connect to this one but has its own domain.
#[derive(Clone)]
pub struct InprocTransport {
    fabric: Arc<Fabric>,
    domain: Arc<Domain>,
    addresses: Arc<[IpAddr]>,
}

impl InprocTransport {
    /// A transport on the fabric `fabric_name`, with a new protection domain, serving
    /// [`DEFAULT_ADDRESS`].
    pub fn new(fabric_name: impl Into<String>) -> InprocTransport {
        InprocTransport {
            fabric: fabric(fabric_name.into()),
            domain: Arc::new(Domain::new()),
            addresses: Arc::from(vec![DEFAULT_ADDRESS]),
        }
    }

    /// Serves `addresses` instead (listed by [`TransportControl::local_addresses`], in this
    /// order; listening elsewhere is `WSAEADDRNOTAVAIL`).
    pub fn with_addresses(mut self, addresses: Vec<IpAddr>) -> InprocTransport {
        self.addresses = Arc::from(addresses);
        self
    }

    /// The id of this transport's protection domain, carried in every descriptor it exports.
    pub fn domain_id(&self) -> u64 {
        self.domain.id
    }
}

impl TransportControl for InprocTransport {
    /// `SIO_ADDRESS_LIST_QUERY` asks for the NICs' addresses in a stable order: here the
    /// configured ones, permanent, with port 0.
    fn local_addresses(&self) -> Result<Vec<LocalAddress>, WsaError> {
        let list = self.addresses.iter();
        Ok(list
            .map(|&ip| LocalAddress::new(SocketAddr::new(ip, 0)))
            .collect())
    }

    /// Which extension functions the switch may use: answered from the capabilities, so
    /// the two can never disagree.
    fn offers(&self, _socket: u64, f: ExtensionFunction) -> bool {
        self.capabilities().offers(f)
    }
}

#[san_spi_core::transport::async_trait]
impl Transport for InprocTransport {
    type Endpoint = InprocEndpoint;
    type Listener = InprocListener;

    /// What the switch may ask of an endpoint. Constructed through `Capabilities::new`, so
    /// fields added to the core later get their conservative default.
    fn capabilities(&self) -> Capabilities {
        Capabilities::new(MAX_SGE, MAX_TRANSFER, MAX_TRANSFER, descriptor::LEN)
            .with_rdma_read(true)
            .with_requested_keys(true)
    }

    /// `WSAEADDRNOTAVAIL` for an address this transport does not serve (the unspecified
    /// address is served: it listens on all of them), `WSAEADDRINUSE` when a live listener
    /// holds the address. Port 0 takes the first free ephemeral port.
    async fn listen(&self, addr: SocketAddr) -> Result<InprocListener, WsaError> {
        let ip = addr.ip();
        if !ip.is_unspecified() && !self.addresses.contains(&ip) {
            return Err(WsaError::AddrNotAvail);
        }
        let mut listeners = lock(&self.fabric.listeners);
        let taken = |a: &SocketAddr| listeners.get(a).map_or(false, |b| b.strong_count() > 0);
        let addr = if addr.port() != 0 {
            if taken(&addr) {
                return Err(WsaError::AddrInUse);
            }
            addr
        } else {
            let mut ports = (EPHEMERAL_PORTS..=u16::MAX).map(|p| SocketAddr::new(ip, p));
            ports.find(|a| !taken(a)).ok_or(WsaError::AddrInUse)?
        };
        let backlog = Arc::new(Backlog {
            domain: self.domain.clone(),
            state: Mutex::new(BacklogState {
                ready: VecDeque::new(),
                wakers: Vec::new(),
            }),
        });
        listeners.insert(addr, Arc::downgrade(&backlog));
        Ok(InprocListener {
            backlog,
            addr,
            fabric: self.fabric.clone(),
        })
    }

    /// `WSAECONNREFUSED` when nothing listens at `addr` on this fabric (or its backlog is
    /// full). Otherwise the connection is made at once: both endpoints are created here, the
    /// server's is queued on the listener, and the client's returned — the handshake of a
    /// real NIC (exchanging queue-pair numbers) reduces to sharing one `Arc`.
    async fn connect(&self, addr: SocketAddr) -> Result<InprocEndpoint, WsaError> {
        let backlog = {
            let listeners = lock(&self.fabric.listeners);
            let any = SocketAddr::new(unspecified_like(addr.ip()), addr.port());
            let found = listeners.get(&addr).and_then(Weak::upgrade);
            found.or_else(|| listeners.get(&any).and_then(Weak::upgrade))
        };
        let backlog = backlog.ok_or(WsaError::ConnRefused)?;
        let (client, server) = endpoint::connection(self.domain.clone(), backlog.domain.clone());
        let mut state = lock(&backlog.state);
        if state.ready.len() >= BACKLOG {
            return Err(WsaError::ConnRefused);
        }
        state.ready.push_back(server);
        for w in state.wakers.drain(..) {
            w.wake();
        }
        Ok(client)
    }
}

/// `0.0.0.0` or `::`, the family of `ip`.
fn unspecified_like(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        IpAddr::V6(_) => std::net::Ipv6Addr::UNSPECIFIED.into(),
    }
}

// ---------------------------------------------------------------------------------------
// The listener.
// ---------------------------------------------------------------------------------------

/// Connections made to a listener and not yet accepted.
struct Backlog {
    /// The listening transport's domain: the accepted endpoint's own.
    domain: Arc<Domain>,
    state: Mutex<BacklogState>,
}

struct BacklogState {
    ready: VecDeque<InprocEndpoint>,
    wakers: Vec<Waker>,
}

/// A listening endpoint; dropping it frees the address (queued connections are closed).
pub struct InprocListener {
    backlog: Arc<Backlog>,
    addr: SocketAddr,
    fabric: Arc<Fabric>,
}

#[san_spi_core::transport::async_trait]
impl Listener for InprocListener {
    type Endpoint = InprocEndpoint;

    /// The oldest connection not yet accepted; waits (as a future: the provider drives it
    /// with `block_on`, which parks the thread until `connect` wakes it) while there is none.
    async fn accept(&self) -> Result<InprocEndpoint, WsaError> {
        Ok(Accept(&self.backlog).await)
    }

    /// The address listened on (the ephemeral port chosen, if port 0 was asked for).
    fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for InprocListener {
    fn drop(&mut self) {
        let mut listeners = lock(&self.fabric.listeners);
        let ours = Arc::downgrade(&self.backlog);
        if listeners.get(&self.addr).map_or(false, |b| b.ptr_eq(&ours)) {
            listeners.remove(&self.addr);
        }
    }
}

/// The future of [`Listener::accept`] (`std::future::poll_fn` is newer than 1.63).
struct Accept<'a>(&'a Backlog);

impl Future for Accept<'_> {
    type Output = InprocEndpoint;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<InprocEndpoint> {
        let mut state = lock(&self.0.state);
        if let Some(ep) = state.ready.pop_front() {
            return Poll::Ready(ep);
        }
        if !state.wakers.iter().any(|w| w.will_wake(cx.waker())) {
            state.wakers.push(cx.waker().clone());
        }
        Poll::Pending
    }
}
