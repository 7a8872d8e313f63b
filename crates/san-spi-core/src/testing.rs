//! A recording fake of the Winsock switch for tests — the core's own and a vendor's.
//!
//! Enabled by the `testing` feature. [`FakeSwitch`] implements [`Upcalls`] and
//! [`OverlappedMemory`]: it records every upcall in order, keeps each `WSAOVERLAPPED`'s
//! fields the way the real switch would leave them, keeps queued APCs per thread until
//! the test runs them, and can be told to refuse upcalls.
//!
//! ```
//! use san_spi_core::overlapped::{CompletionMode, OperationTable, Outcome, OverlappedRequest};
//! use san_spi_core::testing::{FakeSwitch, Upcall};
//! use san_spi_core::upcall::ThreadId;
//!
//! let switch = FakeSwitch::new();
//! let table = OperationTable::with_capacity(8);
//! let thread = ThreadId { thread_handle: 0x44, reserved: 0 };
//! let req = OverlappedRequest { overlapped: 0x900, event: 0, completion_routine: 0x7000, thread_id: Some(thread) };
//! let token = table.post(3, &req, CompletionMode::of(&req).unwrap(), &switch).unwrap();
//! table.complete(token, Outcome::ok(5), &switch).unwrap();
//! let contexts = switch.run_apcs(&thread);
//! assert_eq!(contexts, vec![token.raw() as u64]);
//! let call = table.take_apc(contexts[0]).unwrap();
//! assert_eq!((call.routine, call.bytes, call.overlapped), (0x7000, 5, 0x900));
//! assert!(matches!(switch.upcalls()[0], Upcall::QueueApc { .. }));
//! ```

use crate::upcall::{OverlappedFields, OverlappedMemory, ThreadId, Upcalls};
use crate::WsaError;
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

/// One recorded upcall.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upcall {
    /// `WPUCompleteOverlappedRequest`.
    CompleteOverlapped {
        /// `s`.
        socket: u64,
        /// `lpOverlapped`.
        overlapped: u64,
        /// `dwError`.
        error: u32,
        /// `cbTransferred`.
        bytes: u32,
    },
    /// `WPUQueueApc`.
    QueueApc {
        /// `*lpThreadId`.
        thread: ThreadId,
        /// `dwContext`.
        context: u64,
    },
}

#[derive(Default)]
struct Inner {
    memory: HashMap<u64, OverlappedFields>,
    upcalls: Vec<Upcall>,
    queued_apcs: HashMap<ThreadId, Vec<u64>>,
    refuse: Option<WsaError>,
}

/// The recording fake switch. Thread-safe.
#[derive(Default)]
pub struct FakeSwitch {
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for FakeSwitch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeSwitch")
            .field("upcalls", &self.lock().upcalls.len())
            .finish()
    }
}

impl FakeSwitch {
    /// A switch with no history.
    pub fn new() -> FakeSwitch {
        FakeSwitch::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panicking test thread must not hide the history from the others.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every upcall so far, in order.
    pub fn upcalls(&self) -> Vec<Upcall> {
        self.lock().upcalls.clone()
    }

    /// Upcalls that notified about `overlapped` (completions, and APCs whose context the
    /// caller maps to it), counted for exactly-once checks.
    pub fn completions_of(&self, overlapped: u64) -> usize {
        self.lock()
            .upcalls
            .iter()
            .filter(|u| matches!(u, Upcall::CompleteOverlapped { overlapped: o, .. } if *o == overlapped))
            .count()
    }

    /// Number of `WPUQueueApc` calls so far.
    pub fn apcs_queued(&self) -> usize {
        self.lock()
            .upcalls
            .iter()
            .filter(|u| matches!(u, Upcall::QueueApc { .. }))
            .count()
    }

    /// Number of APCs queued for `thread` and not yet run.
    pub fn queued_apcs(&self, thread: &ThreadId) -> usize {
        self.lock().queued_apcs.get(thread).map_or(0, Vec::len)
    }

    /// Runs `thread`'s queued APCs the way an alertable wait would: returns their contexts
    /// in queue order and forgets them.
    pub fn run_apcs(&self, thread: &ThreadId) -> Vec<u64> {
        self.lock().queued_apcs.remove(thread).unwrap_or_default()
    }

    /// From now on every upcall fails with `error` (`None` to accept again).
    pub fn refuse_upcalls(&self, error: Option<WsaError>) {
        self.lock().refuse = error;
    }

    /// Sets the fields of a `WSAOVERLAPPED` as a caller would before a call.
    pub fn set_fields(&self, overlapped: u64, fields: OverlappedFields) {
        self.lock().memory.insert(overlapped, fields);
    }
}

impl Upcalls for FakeSwitch {
    fn complete_overlapped(
        &self,
        socket: u64,
        overlapped: u64,
        error: u32,
        bytes: u32,
    ) -> Result<(), WsaError> {
        let mut g = self.lock();
        if let Some(e) = g.refuse {
            return Err(e);
        }
        g.upcalls.push(Upcall::CompleteOverlapped {
            socket,
            overlapped,
            error,
            bytes,
        });
        // What the switch does: InternalHigh first, then Internal.
        let f = g.memory.entry(overlapped).or_default();
        f.internal_high = bytes as u64;
        f.internal = 0;
        Ok(())
    }

    fn queue_apc(&self, thread: &ThreadId, context: u64) -> Result<(), WsaError> {
        let mut g = self.lock();
        if let Some(e) = g.refuse {
            return Err(e);
        }
        g.upcalls.push(Upcall::QueueApc {
            thread: *thread,
            context,
        });
        g.queued_apcs.entry(*thread).or_default().push(context);
        Ok(())
    }
}

impl OverlappedMemory for FakeSwitch {
    fn write_in_progress(&self, overlapped: u64) {
        self.lock().memory.entry(overlapped).or_default().internal =
            crate::upcall::WSS_OPERATION_IN_PROGRESS;
    }

    fn write_result(&self, overlapped: u64, error: u32, flags: u32) {
        let mut g = self.lock();
        let f = g.memory.entry(overlapped).or_default();
        f.offset_high = error;
        f.offset = flags;
    }

    fn write_done(&self, overlapped: u64, bytes: u32) {
        let mut g = self.lock();
        let f = g.memory.entry(overlapped).or_default();
        f.internal_high = bytes as u64;
        f.internal = 0;
    }

    fn read(&self, overlapped: u64) -> OverlappedFields {
        self.lock()
            .memory
            .get(&overlapped)
            .copied()
            .unwrap_or_default()
    }
}
