//! The far end of a connection under test: [`Peer`], what the suite asks of it, and
//! [`LocalPeer`], the far end in this process.
//!
//! Every behaviour of the suite holds one endpoint itself (the *local* end, with its own
//! transport) and drives the other end through [`Peer`]. Whether that end lives in this
//! process ([`LocalPeer`]) or in another one ([`crate::remote`]) is the only difference
//! between the in-process and the cross-process suites: one source per behaviour. The far
//! end has its own transport — its own registrations — as a second process would, so a
//! transport that resolves a peer's descriptor in its own table fails.
//!
//! Buffers of the peer are named by small numbers chosen by the test.

use crate::{wait_within, RegisteredBuf, TIMEOUT};
use san_spi_core::transport::{
    block_on, Completion, Endpoint, Listener, MemAccess, MemoryHandle, PostError, Sge, Transport,
};
use san_spi_core::WsaError;
use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The far end of a connection: its transport, its endpoint and its buffers.
///
/// Calls panic when the far end cannot do what is asked (a buffer it does not have, a
/// registration the transport refuses where the suite expects success): those are test
/// failures, not behaviours under test.
pub trait Peer: Send {
    /// Registers buffer `id`: `len` bytes of `fill`, with `access`.
    fn register(&mut self, id: u32, len: usize, fill: u8, access: MemAccess);
    /// Registers buffer `id` under the chosen `key` ([`Memory::register_with_key`](san_spi_core::transport::Memory::register_with_key)).
    fn register_with_key(
        &mut self,
        id: u32,
        len: usize,
        access: MemAccess,
        key: u64,
    ) -> Result<(), WsaError>;
    /// Registers `range` of buffer `of` again, as registration `id` (a buffer of its own
    /// for `descriptor`, `deregister`, `post_*`, but the bytes are `of`'s).
    fn register_part(&mut self, id: u32, of: u32, range: Range<usize>, access: MemAccess);
    /// Copies `bytes` into buffer `id` at `offset`.
    fn write(&mut self, id: u32, offset: usize, bytes: &[u8]);
    /// Fills buffer `id` with [`pattern`](crate::pattern)`(len, seed)`; returns its checksum.
    fn pattern(&mut self, id: u32, seed: u8) -> u64;
    /// The [`checksum`](crate::checksum) of `range` of buffer `id`.
    fn checksum(&mut self, id: u32, range: Range<usize>) -> u64;
    /// A copy of `range` of buffer `id` (keep it small across processes).
    fn read(&mut self, id: u32, range: Range<usize>) -> Vec<u8>;
    /// The exported descriptor of registration `id`.
    fn descriptor(&mut self, id: u32) -> Result<Vec<u8>, WsaError>;
    /// Deregisters registration `id` (its bytes stay readable).
    fn deregister(&mut self, id: u32);
    /// The cache callback over `range` of buffer `id`; returns how many registrations it
    /// dropped ([`Memory::invalidate`](san_spi_core::transport::Memory::invalidate)).
    fn invalidate(&mut self, id: u32, range: Range<usize>) -> usize;
    /// Posts a receive into `range` of registration `id`.
    fn post_recv(&mut self, id: u32, range: Range<usize>, token: u64) -> Result<(), PostError>;
    /// Posts a send of `range` of registration `id`.
    fn post_send(&mut self, id: u32, range: Range<usize>, token: u64) -> Result<(), PostError>;
    /// The next completion; panics after [`TIMEOUT`].
    fn wait(&mut self) -> Completion;
    /// A completion that arrives within `d`, if any.
    fn quiet(&mut self, d: Duration) -> Option<Completion>;
    /// Closes the endpoint.
    fn close(&mut self);
    /// Ends the far end's process at once (SIGKILL: nothing is closed, the kernel tears it
    /// down); false where the far end has no process of its own.
    fn kill(&mut self) -> bool {
        false
    }
}

enum Entry<T: Transport> {
    Buf(RegisteredBuf<Arc<T>>),
    /// A second registration of part of buffer `of`.
    Part {
        of: u32,
        start: usize,
        handle: Option<MemoryHandle>,
    },
}

/// The far end in this process: a transport of its own, the accepted endpoint, buffers.
pub struct LocalPeer<T: Transport> {
    t: Arc<T>,
    ep: T::Endpoint,
    bufs: HashMap<u32, Entry<T>>,
}

impl<T: Transport + 'static> LocalPeer<T>
where
    T::Endpoint: 'static,
{
    /// Listens on `addr` with `t` and returns a function that accepts the first
    /// connection (call it while the other end connects, e.g. from another thread).
    pub fn listen(
        t: T,
        addr: std::net::SocketAddr,
    ) -> Result<impl FnOnce() -> LocalPeer<T>, WsaError> {
        let listener = block_on(t.listen(addr))?;
        Ok(move || {
            let ep = block_on(listener.accept()).expect("accept");
            LocalPeer {
                t: Arc::new(t),
                ep,
                bufs: HashMap::new(),
            }
        })
    }
}

impl<T: Transport> LocalPeer<T> {
    /// The far end's endpoint.
    pub fn endpoint(&self) -> &T::Endpoint {
        &self.ep
    }

    fn buf(&self, id: u32) -> &RegisteredBuf<Arc<T>> {
        match self.bufs.get(&id) {
            Some(Entry::Buf(b)) => b,
            Some(Entry::Part { of, .. }) => self.buf(*of),
            None => panic!("the peer has no buffer {id}"),
        }
    }

    /// The SGE over `range` of registration `id` (relative to the registration).
    fn sge(&self, id: u32, range: Range<usize>) -> Sge {
        match self.bufs.get(&id) {
            Some(Entry::Buf(b)) => b.sge(range),
            Some(Entry::Part { of, start, handle }) => {
                let mut s = self.buf(*of).sge(start + range.start..start + range.end);
                s.handle = handle.expect("the part is deregistered");
                s
            }
            None => panic!("the peer has no buffer {id}"),
        }
    }
}

impl<T: Transport + 'static> Peer for LocalPeer<T> {
    fn register(&mut self, id: u32, len: usize, fill: u8, access: MemAccess) {
        let b = RegisteredBuf::new(self.t.clone(), len, fill, access)
            .unwrap_or_else(|e| panic!("the peer could not register {len} bytes: {e}"));
        self.bufs.insert(id, Entry::Buf(b));
    }

    fn register_with_key(
        &mut self,
        id: u32,
        len: usize,
        access: MemAccess,
        key: u64,
    ) -> Result<(), WsaError> {
        let b = RegisteredBuf::with_key(self.t.clone(), len, 0, access, key)?;
        self.bufs.insert(id, Entry::Buf(b));
        Ok(())
    }

    fn register_part(&mut self, id: u32, of: u32, range: Range<usize>, access: MemAccess) {
        let b = self.buf(of);
        assert!(range.end <= b.len(), "part outside buffer {of}");
        // SAFETY: the part lies inside buffer `of` (checked), which this peer keeps until
        // it is dropped; `drop` deregisters every part before it frees any buffer. The
        // bytes are only ever copied, never referenced (`RegisteredBuf`).
        let h = unsafe {
            self.t
                .register(b.as_ptr().add(range.start), range.len(), access)
        }
        .unwrap_or_else(|e| panic!("the peer could not register a part: {e}"));
        let start = range.start;
        self.bufs.insert(
            id,
            Entry::Part {
                of,
                start,
                handle: Some(h),
            },
        );
    }

    fn write(&mut self, id: u32, offset: usize, bytes: &[u8]) {
        self.buf(id).write(offset, bytes);
    }

    fn pattern(&mut self, id: u32, seed: u8) -> u64 {
        let b = self.buf(id);
        let p = crate::pattern(b.len(), seed);
        b.write(0, &p);
        crate::checksum(&p)
    }

    fn checksum(&mut self, id: u32, range: Range<usize>) -> u64 {
        self.buf(id).checksum(range)
    }

    fn read(&mut self, id: u32, range: Range<usize>) -> Vec<u8> {
        self.buf(id).to_vec(range)
    }

    fn descriptor(&mut self, id: u32) -> Result<Vec<u8>, WsaError> {
        match self.bufs.get(&id) {
            Some(Entry::Buf(b)) => b.descriptor(),
            Some(Entry::Part { handle, .. }) => {
                let mut d = vec![0u8; 1024];
                let n = self.t.export(handle.ok_or(WsaError::Inval)?, &mut d)?;
                d.truncate(n);
                Ok(d)
            }
            None => panic!("the peer has no buffer {id}"),
        }
    }

    fn deregister(&mut self, id: u32) {
        let t = &self.t;
        match self.bufs.get_mut(&id) {
            Some(Entry::Buf(b)) => b.deregister().expect("deregister"),
            Some(Entry::Part { handle, .. }) => {
                if let Some(h) = handle.take() {
                    t.deregister(h).expect("deregister");
                }
            }
            None => panic!("the peer has no buffer {id}"),
        }
    }

    fn invalidate(&mut self, id: u32, range: Range<usize>) -> usize {
        let addr = self.buf(id).addr() + range.start as u64;
        self.t.invalidate(addr, range.len() as u64)
    }

    fn post_recv(&mut self, id: u32, range: Range<usize>, token: u64) -> Result<(), PostError> {
        self.ep.post_recv(&[self.sge(id, range)], token)
    }

    fn post_send(&mut self, id: u32, range: Range<usize>, token: u64) -> Result<(), PostError> {
        self.ep.post_send(&[self.sge(id, range)], token)
    }

    fn wait(&mut self) -> Completion {
        wait_within(&self.ep, TIMEOUT)
    }

    fn quiet(&mut self, d: Duration) -> Option<Completion> {
        let deadline = Instant::now() + d;
        let mut c = [Completion::default(); 1];
        loop {
            if self.ep.poll(&mut c) == 1 {
                return Some(c[0]);
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            self.ep
                .wait((deadline - now).min(Duration::from_millis(10)));
        }
    }

    fn close(&mut self) {
        self.ep.close();
    }
}

impl<T: Transport> Drop for LocalPeer<T> {
    fn drop(&mut self) {
        // Parts first: their bytes belong to buffers freed after them.
        for e in self.bufs.values_mut() {
            if let Entry::Part { handle, .. } = e {
                if let Some(h) = handle.take() {
                    let _ = self.t.deregister(h);
                }
            }
        }
    }
}
