//! `FaultInjector<T>` — a transport wrapper that makes completions arrive late, in small
//! batches, with spurious wake-ups: everything a correct client must already tolerate.
//!
//! Seeded (xorshift), so a failure reproduces; the seed is printed when an endpoint is
//! made, which cargo shows for a failing test. Order is preserved: completions are held
//! back as a queue and released from the front only.
//!
//! ```
//! use san_spi_testkit::fault::FaultInjector;
//! use san_spi_testkit::FakeTransport;
//!
//! let t = FaultInjector::new(FakeTransport::new(vec![]), 42);
//! assert_eq!(t.seed(), 42);
//! ```

use san_spi_core::transport::{
    Capabilities, Completion, Endpoint, Listener, LocalAddress, MemAccess, Memory, MemoryHandle,
    PostError, QosCapability, RemoteTarget, Sge, Transport, TransportControl, VendorOutcome,
};
use san_spi_core::WsaError;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Wraps a transport; see the module docs.
#[derive(Debug, Clone)]
pub struct FaultInjector<T> {
    inner: T,
    seed: u64,
}

impl<T> FaultInjector<T> {
    /// Wraps `inner`; `seed` drives every injected delay.
    pub fn new(inner: T, seed: u64) -> FaultInjector<T> {
        FaultInjector { inner, seed }
    }

    /// The seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The wrapped transport.
    pub fn into_inner(self) -> T {
        self.inner
    }
}

static ENDPOINTS: AtomicU64 = AtomicU64::new(1);

struct Held {
    rng: u64,
    queue: VecDeque<(Completion, u32)>,
}

impl Held {
    fn next(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        x
    }
}

/// An endpoint whose completions arrive late.
pub struct FaultyEndpoint<E> {
    inner: E,
    held: Mutex<Held>,
}

impl<E> std::fmt::Debug for FaultyEndpoint<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultyEndpoint").finish()
    }
}

impl<E: Endpoint> FaultyEndpoint<E> {
    fn wrap(inner: E, seed: u64) -> FaultyEndpoint<E> {
        let n = ENDPOINTS.fetch_add(1, Ordering::Relaxed);
        let rng = (seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1;
        eprintln!("fault injector: endpoint {n}, seed {seed}");
        FaultyEndpoint {
            inner,
            held: Mutex::new(Held {
                rng,
                queue: VecDeque::new(),
            }),
        }
    }

    fn held(&self) -> std::sync::MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl<E: Endpoint> Endpoint for FaultyEndpoint<E> {
    fn post_send(&self, sges: &[Sge], token: u64) -> Result<(), PostError> {
        self.inner.post_send(sges, token)
    }

    fn post_recv(&self, sges: &[Sge], token: u64) -> Result<(), PostError> {
        self.inner.post_recv(sges, token)
    }

    fn rdma_write(
        &self,
        sges: &[Sge],
        target: RemoteTarget<'_>,
        token: u64,
    ) -> Result<(), PostError> {
        self.inner.rdma_write(sges, target, token)
    }

    fn rdma_read(
        &self,
        sges: &[Sge],
        target: RemoteTarget<'_>,
        token: u64,
    ) -> Result<(), PostError> {
        self.inner.rdma_read(sges, target, token)
    }

    /// Takes what the transport finished, holds each for 0–2 further polls, and releases a random
    /// number of the ready ones from the front.
    fn poll(&self, out: &mut [Completion]) -> usize {
        let mut buf = [Completion::default(); 16];
        let mut held = self.held();
        loop {
            let n = self.inner.poll(&mut buf);
            for c in &buf[..n] {
                let delay = (held.next() % 4) as u32;
                held.queue.push_back((*c, delay));
            }
            if n < buf.len() {
                break;
            }
        }
        for e in held.queue.iter_mut() {
            e.1 = e.1.saturating_sub(1);
        }
        let limit = 1 + (held.next() as usize) % out.len().max(1);
        let mut given = 0;
        while given < limit.min(out.len()) {
            match held.queue.front() {
                Some(&(c, 0)) => {
                    out[given] = c;
                    held.queue.pop_front();
                    given += 1;
                }
                _ => break,
            }
        }
        given
    }

    /// Returns at once (a spurious wake-up) while completions are held back.
    fn wait(&self, timeout: Duration) -> bool {
        if !self.held().queue.is_empty() {
            return true;
        }
        self.inner.wait(timeout)
    }

    fn close(&self) {
        self.inner.close()
    }
}

/// A listener whose endpoints are faulty.
pub struct FaultyListener<L> {
    inner: L,
    seed: u64,
}

impl<L> std::fmt::Debug for FaultyListener<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultyListener").finish()
    }
}

#[async_trait::async_trait]
impl<L: Listener> Listener for FaultyListener<L> {
    type Endpoint = FaultyEndpoint<L::Endpoint>;

    async fn accept(&self) -> Result<Self::Endpoint, WsaError> {
        let ep = self.inner.accept().await?;
        Ok(FaultyEndpoint::wrap(ep, self.seed))
    }

    fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr()
    }
}

impl<T: TransportControl> TransportControl for FaultInjector<T> {
    fn is_up(&self) -> bool {
        self.inner.is_up()
    }
    fn local_addresses(&self) -> Result<Vec<LocalAddress>, WsaError> {
        self.inner.local_addresses()
    }
    fn qos(&self) -> Option<&dyn QosCapability> {
        self.inner.qos()
    }
    fn offers(&self, socket: u64, f: san_spi_core::guid::ExtensionFunction) -> bool {
        self.inner.offers(socket, f)
    }
    fn vendor_ioctl(
        &self,
        socket: u64,
        code: san_spi_core::ioctl::IoctlCode,
        input: Option<&[u8]>,
        output: Option<&mut [u8]>,
    ) -> Result<VendorOutcome, WsaError> {
        self.inner.vendor_ioctl(socket, code, input, output)
    }
}

impl<T: Memory> Memory for FaultInjector<T> {
    unsafe fn register(
        &self,
        addr: *mut u8,
        len: usize,
        access: MemAccess,
    ) -> Result<MemoryHandle, WsaError> {
        // SAFETY: the caller's promise is passed on unchanged.
        unsafe { self.inner.register(addr, len, access) }
    }
    unsafe fn register_with_key(
        &self,
        addr: *mut u8,
        len: usize,
        access: MemAccess,
        key: u64,
    ) -> Result<MemoryHandle, WsaError> {
        // SAFETY: the caller's promise is passed on unchanged.
        unsafe { self.inner.register_with_key(addr, len, access, key) }
    }
    fn deregister(&self, handle: MemoryHandle) -> Result<(), WsaError> {
        self.inner.deregister(handle)
    }
    fn export(&self, handle: MemoryHandle, out: &mut [u8]) -> Result<usize, WsaError> {
        self.inner.export(handle, out)
    }
    fn invalidate(&self, addr: u64, len: u64) -> usize {
        self.inner.invalidate(addr, len)
    }
}

#[async_trait::async_trait]
impl<T: Transport> Transport for FaultInjector<T> {
    type Endpoint = FaultyEndpoint<T::Endpoint>;
    type Listener = FaultyListener<T::Listener>;

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    async fn listen(&self, addr: SocketAddr) -> Result<Self::Listener, WsaError> {
        Ok(FaultyListener {
            inner: self.inner.listen(addr).await?,
            seed: self.seed,
        })
    }

    async fn connect(&self, addr: SocketAddr) -> Result<Self::Endpoint, WsaError> {
        Ok(FaultyEndpoint::wrap(
            self.inner.connect(addr).await?,
            self.seed,
        ))
    }
}
