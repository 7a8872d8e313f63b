//! The provider's sockets: descriptor → state, sharded for concurrent lookups.

use crate::WsaError;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

/// Per-socket state the dispatcher consults.
///
/// ```
/// use san_spi_core::dispatch::SocketTable;
///
/// let table = SocketTable::new();
/// let state = table.insert(12).unwrap();
/// assert_eq!(state.descriptor(), 12);
/// assert!(!state.is_nonblocking() && !state.is_closed());
/// // The state is shared: a change is seen by every later lookup.
/// state.set_nonblocking(true);
/// assert!(table.get(12).unwrap().is_nonblocking());
/// ```
#[derive(Debug)]
pub struct SocketState {
    descriptor: u64,
    nonblocking: AtomicBool,
    closed: AtomicBool,
}

impl SocketState {
    fn new(descriptor: u64) -> SocketState {
        SocketState {
            descriptor,
            nonblocking: AtomicBool::new(false),
            closed: AtomicBool::new(false),
        }
    }

    /// The descriptor.
    pub fn descriptor(&self) -> u64 {
        self.descriptor
    }

    /// Whether the socket is in nonblocking mode.
    pub fn is_nonblocking(&self) -> bool {
        self.nonblocking.load(Ordering::Acquire)
    }

    /// Sets nonblocking mode.
    pub fn set_nonblocking(&self, nonblocking: bool) {
        self.nonblocking.store(nonblocking, Ordering::Release);
    }

    /// Whether the socket has been closed (calls still holding it must not start work).
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    pub(crate) fn mark_closed(&self) {
        self.closed.store(true, Ordering::SeqCst);
    }
}

const SHARDS: usize = 16;

/// Descriptor → [`SocketState`], in 16 shards so lookups on different sockets do not
/// contend.
///
/// ```
/// use san_spi_core::dispatch::SocketTable;
/// use san_spi_core::WsaError;
///
/// let table = SocketTable::new();
/// table.insert(4).unwrap();
/// assert_eq!(table.insert(4).unwrap_err(), WsaError::Inval); // already open
/// assert!(table.get(4).is_some());
/// assert_eq!(table.remove(4).map(|s| s.descriptor()), Some(4));
/// assert!(table.get(4).is_none() && table.remove(4).is_none());
/// ```
#[derive(Debug)]
pub struct SocketTable {
    shards: Vec<RwLock<HashMap<u64, Arc<SocketState>>>>,
}

impl Default for SocketTable {
    fn default() -> Self {
        SocketTable::new()
    }
}

impl SocketTable {
    /// An empty table.
    pub fn new() -> SocketTable {
        SocketTable {
            shards: (0..SHARDS).map(|_| RwLock::new(HashMap::new())).collect(),
        }
    }

    fn shard(&self, socket: u64) -> &RwLock<HashMap<u64, Arc<SocketState>>> {
        // Descriptors are multiples of 4 on Windows: mix the bits before picking a shard.
        let h = socket.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 60;
        &self.shards[h as usize % SHARDS]
    }

    /// Adds a socket; an open descriptor is `WSAEINVAL`.
    pub fn insert(&self, socket: u64) -> Result<Arc<SocketState>, WsaError> {
        let mut shard = self
            .shard(socket)
            .write()
            .unwrap_or_else(|e| e.into_inner());
        if shard.contains_key(&socket) {
            return Err(WsaError::Inval);
        }
        let state = Arc::new(SocketState::new(socket));
        shard.insert(socket, state.clone());
        Ok(state)
    }

    /// The socket's state, if open.
    pub fn get(&self, socket: u64) -> Option<Arc<SocketState>> {
        self.shard(socket)
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&socket)
            .cloned()
    }

    /// Removes and returns the socket's state.
    pub fn remove(&self, socket: u64) -> Option<Arc<SocketState>> {
        self.shard(socket)
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&socket)
    }
}
