//! `WPU*` — what a SAN provider asks of the Winsock switch, and the caller memory it writes.
//!
//! The core never calls Win32. The shim implements [`Upcalls`] over the switch's upcall
//! table (`WPUQueueApc`) and `WS2_32!WPUCompleteOverlappedRequest`, and [`OverlappedMemory`]
//! over the caller's `WSAOVERLAPPED` structures; tests use [`crate::testing::FakeSwitch`],
//! which records every call and emulates what the switch does to the `WSAOVERLAPPED`.
//!
//! # Which `WSAOVERLAPPED` fields carry what
//!
//! The typical provider implementation described with `WPUCompleteOverlappedRequest`:
//!
//! | field | written by | holds |
//! |---|---|---|
//! | `Internal` | provider at start; switch (or provider, when no notification goes through the switch) at the end | [`WSS_OPERATION_IN_PROGRESS`] while pending, anything else once done |
//! | `InternalHigh` | switch in `WPUCompleteOverlappedRequest`, or provider | bytes transferred; set before `Internal` changes |
//! | `OffsetHigh` | provider, before completing | the Winsock error code (0 on success) |
//! | `Offset` | provider, before completing | the operation's result flags |
//! | `hEvent` | caller | event handle; low bit set = no completion port; `1` alone = no notification |
//!
//! `WSPGetOverlappedResult` reads `Internal`, then `InternalHigh`, `OffsetHigh`, `Offset`
//! ([`crate::overlapped::get_overlapped_result`]).
//!
//! ```
//! use san_spi_core::testing::FakeSwitch;
//! use san_spi_core::upcall::{OverlappedMemory, Upcalls};
//!
//! let switch = FakeSwitch::new();
//! switch.write_result(0x1000, 0, 0);
//! switch.complete_overlapped(7, 0x1000, 0, 42).unwrap();
//! assert_eq!(switch.read(0x1000).internal_high, 42);
//! assert_eq!(switch.upcalls().len(), 1);
//! ```

use crate::WsaError;

/// `WSS_OPERATION_IN_PROGRESS` — `Internal` of a pending request.
pub const WSS_OPERATION_IN_PROGRESS: u64 = 0x103;

/// `WSATHREADID` — the thread an APC must run in, copied by value (R-OVL-4).
///
/// ```
/// use san_spi_core::overlapped::{CompletionMode, OverlappedRequest};
/// use san_spi_core::upcall::ThreadId;
///
/// // The request keeps its own copy of `*lpThreadId`: the caller's may be gone by completion.
/// let thread = ThreadId { thread_handle: 0x1c4, reserved: 0 };
/// let req = OverlappedRequest { overlapped: 0x900, event: 0, completion_routine: 0x7000, thread_id: Some(thread) };
/// assert_eq!(CompletionMode::of(&req), Ok(CompletionMode::Apc(thread)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ThreadId {
    /// `ThreadHandle`.
    pub thread_handle: u64,
    /// `Reserved`.
    pub reserved: u64,
}

/// The upcalls a provider makes to complete requests.
///
/// Implementations must be callable from any thread.
///
/// ```
/// use san_spi_core::upcall::{ThreadId, Upcalls};
/// use san_spi_core::WsaError;
/// use std::sync::Mutex;
///
/// /// Records completions; refuses APCs.
/// #[derive(Default)]
/// struct Recorder(Mutex<Vec<(u64, u32)>>);
///
/// impl Upcalls for Recorder {
///     fn complete_overlapped(&self, _socket: u64, overlapped: u64, _error: u32, bytes: u32) -> Result<(), WsaError> {
///         self.0.lock().unwrap().push((overlapped, bytes));
///         Ok(())
///     }
///
///     fn queue_apc(&self, _thread: &ThreadId, _context: u64) -> Result<(), WsaError> {
///         Err(WsaError::NoBufs)
///     }
/// }
///
/// let r = Recorder::default();
/// r.complete_overlapped(3, 0x5000, 0, 12).unwrap();
/// assert_eq!(*r.0.lock().unwrap(), vec![(0x5000, 12)]);
/// assert_eq!(r.queue_apc(&ThreadId::default(), 1), Err(WsaError::NoBufs));
/// ```
pub trait Upcalls: Send + Sync {
    /// `WPUCompleteOverlappedRequest(s, lpOverlapped, dwError, cbTransferred, &errno)`: notify
    /// through the event and/or completion port the caller chose. The switch sets
    /// `InternalHigh` to `bytes`, then `Internal` to a value other than
    /// [`WSS_OPERATION_IN_PROGRESS`].
    fn complete_overlapped(
        &self,
        socket: u64,
        overlapped: u64,
        error: u32,
        bytes: u32,
    ) -> Result<(), WsaError>;

    /// `WPUQueueApc(lpThreadId, lpfnUserApc, dwContext, &errno)`: run the provider's own APC
    /// function with `context` in `thread`. The APC function is the shim's; it passes
    /// `context` to [`crate::overlapped::OperationTable::take_apc`] and calls the caller's
    /// completion routine with what that returns.
    fn queue_apc(&self, thread: &ThreadId, context: u64) -> Result<(), WsaError>;
}

/// The fields of a caller's `WSAOVERLAPPED` (addressed by the caller's pointer value).
///
/// ```
/// use san_spi_core::overlapped::{get_overlapped_result, OverlappedResult};
/// use san_spi_core::testing::FakeSwitch;
/// use san_spi_core::upcall::OverlappedFields;
///
/// // A finished receive: 1500 bytes, MSG_PARTIAL (0x8000) in `Offset`, no error.
/// let switch = FakeSwitch::new();
/// let done = OverlappedFields { internal: 0, internal_high: 1500, offset: 0x8000, offset_high: 0 };
/// switch.set_fields(0x4000, done);
/// assert_eq!(
///     get_overlapped_result(&switch, 0x4000),
///     OverlappedResult::Done { bytes: 1500, flags: 0x8000, error: 0 }
/// );
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OverlappedFields {
    /// `Internal`.
    pub internal: u64,
    /// `InternalHigh`.
    pub internal_high: u64,
    /// `Offset`.
    pub offset: u32,
    /// `OffsetHigh`.
    pub offset_high: u32,
}

/// Access to the caller's `WSAOVERLAPPED` structures.
///
/// Implementations must be callable from any thread; a write of `Internal` must be a
/// release store and the read in [`read`](OverlappedMemory::read) must load `Internal`
/// with acquire before the other fields.
///
/// ```
/// use san_spi_core::overlapped::{get_overlapped_result, OverlappedResult};
/// use san_spi_core::upcall::{OverlappedFields, OverlappedMemory, WSS_OPERATION_IN_PROGRESS};
/// use std::collections::HashMap;
/// use std::sync::Mutex;
///
/// /// `WSAOVERLAPPED`s by address (a real shim writes caller memory with atomics).
/// #[derive(Default)]
/// struct Mem(Mutex<HashMap<u64, OverlappedFields>>);
///
/// impl OverlappedMemory for Mem {
///     fn write_in_progress(&self, ov: u64) {
///         self.0.lock().unwrap().entry(ov).or_default().internal = WSS_OPERATION_IN_PROGRESS;
///     }
///
///     fn write_result(&self, ov: u64, error: u32, flags: u32) {
///         let mut m = self.0.lock().unwrap();
///         let f = m.entry(ov).or_default();
///         f.offset_high = error;
///         f.offset = flags;
///     }
///
///     fn write_done(&self, ov: u64, bytes: u32) {
///         let mut m = self.0.lock().unwrap();
///         let f = m.entry(ov).or_default();
///         f.internal_high = u64::from(bytes);
///         f.internal = 0;
///     }
///
///     fn read(&self, ov: u64) -> OverlappedFields {
///         self.0.lock().unwrap().get(&ov).copied().unwrap_or_default()
///     }
///
///     fn write_output(&self, _address: u64, _bytes: &[u8]) {}
/// }
///
/// let mem = Mem::default();
/// mem.write_in_progress(0x3000);
/// assert_eq!(get_overlapped_result(&mem, 0x3000), OverlappedResult::Incomplete);
/// mem.write_result(0x3000, 0, 0);
/// mem.write_done(0x3000, 64);
/// assert_eq!(
///     get_overlapped_result(&mem, 0x3000),
///     OverlappedResult::Done { bytes: 64, flags: 0, error: 0 }
/// );
/// ```
pub trait OverlappedMemory: Send + Sync {
    /// `Internal = WSS_OPERATION_IN_PROGRESS`, before the request can complete.
    fn write_in_progress(&self, overlapped: u64);

    /// `OffsetHigh = error; Offset = flags`, before the completion is published.
    fn write_result(&self, overlapped: u64, error: u32, flags: u32);

    /// `InternalHigh = bytes`, then `Internal = 0`: publishes a completion that does not go
    /// through `WPUCompleteOverlappedRequest` (poll-only and APC modes).
    fn write_done(&self, overlapped: u64, bytes: u32);

    /// Reads the four fields.
    fn read(&self, overlapped: u64) -> OverlappedFields;

    /// Copies `bytes` to the caller's output buffer at `address` for a request that
    /// completes after its call returned. The overlapped contract keeps that buffer valid
    /// until the completion is notified; the dispatcher never writes more than the
    /// buffer length the call gave.
    fn write_output(&self, address: u64, bytes: &[u8]);
}
