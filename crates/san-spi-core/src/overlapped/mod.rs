//! Overlapped completion: how a request must be completed, and exactly once (R-OVL).
//!
//! [`CompletionMode::of`] derives the notification the caller asked for from what
//! `WSPIoctl` (or `WSPSend`, …) received. [`OperationTable`] holds every overlapped request
//! between the call that starts it and its one notification:
//!
//! ```text
//!  post ──► PENDING ──complete/abort──► CLAIMED ──┬─ upcall / poll-only ──────────► FREE
//!                                                 └─ APC: COMPLETED ──take_apc──► CLAIMED ──► FREE
//! ```
//!
//! - **Upcall** (port or event) and **event without port**: the winner of the claim writes
//!   `OffsetHigh`/`Offset`, calls `WPUCompleteOverlappedRequest`, and frees the slot: the
//!   result now lives in the caller's `WSAOVERLAPPED` (*delivered*).
//! - **Poll-only**: the winner writes all fields itself, `Internal` last; the caller
//!   *harvests* the result with `WSPGetOverlappedResult` ([`get_overlapped_result`]).
//! - **APC**: the winner writes the fields, parks the result in the slot (`COMPLETED`) and
//!   queues the provider's APC with the token as context; the APC *harvests* it with
//!   [`OperationTable::take_apc`] and calls the caller's routine.
//! - **Aborted**: [`OperationTable::abort_socket`] completes every pending request of a
//!   closing socket with `WSA_OPERATION_ABORTED`, through the same claim, so a completion
//!   racing with the close loses cleanly: one notification either way.
//!
//! Handles are [`Token`]s: a slot index and a generation packed into 32 bits (the APC
//! context). Every operation checks the slot's generation and state with one
//! compare-and-swap, so a stale, repeated or forged token is rejected without touching
//! the caller's memory.
//!
//! The table is a fixed array of slots allocated once, with a lock-free free list
//! (a Treiber stack with an ABA tag); posting and completing never allocate. All slot
//! fields are atomics published by the state word's release store and read after its
//! acquire load, so the module needs no `unsafe`. The loom models in `loom_tests.rs` check
//! complete vs close vs poll vs APC delivery.
//!
//! ```
//! use san_spi_core::overlapped::{CompletionMode, Delivery, Outcome, OperationTable, OverlappedRequest};
//! use san_spi_core::testing::FakeSwitch;
//!
//! let switch = FakeSwitch::new();
//! let table = OperationTable::with_capacity(64);
//! let req = OverlappedRequest { overlapped: 0x5000, event: 0x88, completion_routine: 0, thread_id: None };
//! let mode = CompletionMode::of(&req).unwrap();
//! assert_eq!(mode, CompletionMode::Upcall);
//!
//! let token = table.post(7, &req, mode, &switch).unwrap();
//! assert_eq!(table.complete(token, Outcome::ok(42), &switch), Ok(Delivery::Upcall));
//! assert!(table.complete(token, Outcome::ok(42), &switch).is_err()); // exactly once
//! assert_eq!(switch.upcalls().len(), 1);
//! ```

use crate::loom::{AtomicU32, AtomicU64, Ordering};
use crate::upcall::{OverlappedMemory, ThreadId, Upcalls, WSS_OPERATION_IN_PROGRESS};
use crate::WsaError;
use core::fmt;

#[cfg(all(test, loom))]
mod loom_tests;
#[cfg(all(test, not(loom)))]
mod tests;

/// What a caller passed for an overlapped request.
///
/// ```
/// use san_spi_core::overlapped::{CompletionMode, OverlappedRequest};
/// use san_spi_core::WsaError;
///
/// // `hEvent` with its low bit set: signal the event, skip the completion port.
/// let req = OverlappedRequest { overlapped: 0x5000, event: 0x89, completion_routine: 0, thread_id: None };
/// assert_eq!(CompletionMode::of(&req), Ok(CompletionMode::EventNoPort));
/// // A completion routine needs `lpThreadId`.
/// let apc = OverlappedRequest { completion_routine: 0x7000, ..req };
/// assert_eq!(CompletionMode::of(&apc), Err(WsaError::Fault));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverlappedRequest {
    /// `lpOverlapped`, the caller's address of its `WSAOVERLAPPED` (non-zero).
    pub overlapped: u64,
    /// `lpOverlapped->hEvent`.
    pub event: u64,
    /// `lpCompletionRoutine` (0 for NULL).
    pub completion_routine: u64,
    /// `*lpThreadId`, copied (`None` if `lpThreadId` was NULL).
    pub thread_id: Option<ThreadId>,
}

/// How the caller wants to hear of completion.
///
/// ```
/// use san_spi_core::overlapped::{CompletionMode, OverlappedRequest};
/// use san_spi_core::upcall::ThreadId;
///
/// assert_eq!(CompletionMode::of_optional(None), Ok(CompletionMode::Synchronous));
/// let poll = OverlappedRequest { overlapped: 0x5000, event: 1, completion_routine: 0, thread_id: None };
/// assert_eq!(CompletionMode::of(&poll), Ok(CompletionMode::PollOnly));
/// // A completion routine wins over `hEvent`.
/// let thread = ThreadId { thread_handle: 0x44, reserved: 0 };
/// let apc = OverlappedRequest { completion_routine: 0x7000, thread_id: Some(thread), ..poll };
/// assert_eq!(CompletionMode::of(&apc), Ok(CompletionMode::Apc(thread)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompletionMode {
    /// No `WSAOVERLAPPED`: the call itself returns the result.
    Synchronous,
    /// `WPUCompleteOverlappedRequest`; the switch signals the event and/or the port (R-OVL-2).
    Upcall,
    /// Low bit of `hEvent` set, rest non-zero: `WPUCompleteOverlappedRequest` signals the
    /// event and skips the completion port (R-OVL-3).
    EventNoPort,
    /// `hEvent` is exactly 1: no notification; the caller polls `WSPGetOverlappedResult` (R-OVL-3).
    PollOnly,
    /// A completion routine: `WPUQueueApc` in the caller's thread; `hEvent` is ignored (R-OVL-4).
    Apc(ThreadId),
}

impl CompletionMode {
    /// The mode for `request` (`None` = no `WSAOVERLAPPED`: synchronous).
    ///
    /// A completion routine without a thread id is `WSAEFAULT`: `lpThreadId` is a
    /// parameter the request needs.
    pub fn of(request: &OverlappedRequest) -> Result<CompletionMode, WsaError> {
        if request.completion_routine != 0 {
            return match request.thread_id {
                Some(t) => Ok(CompletionMode::Apc(t)),
                None => Err(WsaError::Fault),
            };
        }
        Ok(match request.event {
            1 => CompletionMode::PollOnly,
            e if e & 1 == 1 => CompletionMode::EventNoPort,
            _ => CompletionMode::Upcall,
        })
    }

    /// The mode for an optional request.
    pub fn of_optional(request: Option<&OverlappedRequest>) -> Result<CompletionMode, WsaError> {
        match request {
            Some(r) => CompletionMode::of(r),
            None => Ok(CompletionMode::Synchronous),
        }
    }

    fn encode(self) -> u32 {
        match self {
            CompletionMode::Synchronous => 0,
            CompletionMode::Upcall => 1,
            CompletionMode::EventNoPort => 2,
            CompletionMode::PollOnly => 3,
            CompletionMode::Apc(_) => 4,
        }
    }
}

/// A generation-tagged handle of an operation; fits 32 bits and is never 0.
///
/// ```
/// use san_spi_core::overlapped::Token;
///
/// assert!(Token::from_raw(0).is_none());
/// assert_eq!(Token::from_raw(0x1_0003).map(Token::raw), Some(0x1_0003));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Token(u32);

impl Token {
    /// The token with this value (an APC context), if non-zero. Whether it names a live
    /// operation is checked by the table.
    pub fn from_raw(raw: u32) -> Option<Token> {
        if raw == 0 {
            None
        } else {
            Some(Token(raw))
        }
    }

    /// The 32-bit value.
    pub fn raw(self) -> u32 {
        self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token({:#010x})", self.0)
    }
}

/// The result of an operation.
///
/// ```
/// use san_spi_core::overlapped::Outcome;
/// use san_spi_core::WsaError;
///
/// assert_eq!(Outcome::ok(42), Outcome { error: 0, bytes: 42, flags: 0 });
/// let aborted = Outcome::err(WsaError::OperationAborted);
/// assert_eq!((aborted.error, aborted.bytes), (995, 0));
/// // A partial message: MSG_PARTIAL (0x8000) in the flags.
/// let partial = Outcome { flags: 0x8000, ..Outcome::ok(1500) };
/// assert_eq!((partial.bytes, partial.flags), (1500, 0x8000));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// Winsock error code, 0 on success.
    pub error: u32,
    /// Bytes transferred.
    pub bytes: u32,
    /// Result flags (`Offset`; e.g. `MSG_PARTIAL` for receives).
    pub flags: u32,
}

impl Outcome {
    /// Success with `bytes` transferred.
    pub const fn ok(bytes: u32) -> Outcome {
        Outcome {
            error: 0,
            bytes,
            flags: 0,
        }
    }

    /// Failure with `error` and nothing transferred.
    pub const fn err(error: WsaError) -> Outcome {
        Outcome {
            error: error.code() as u32,
            bytes: 0,
            flags: 0,
        }
    }
}

/// How a completion was delivered.
///
/// ```
/// use san_spi_core::overlapped::{CompletionMode, Delivery, OperationTable, Outcome, OverlappedRequest};
/// use san_spi_core::testing::FakeSwitch;
///
/// let switch = FakeSwitch::new();
/// let table = OperationTable::with_capacity(4);
/// // `hEvent == 1`: no notification at all, the caller polls.
/// let req = OverlappedRequest { overlapped: 0x5000, event: 1, completion_routine: 0, thread_id: None };
/// let token = table.post(3, &req, CompletionMode::of(&req).unwrap(), &switch).unwrap();
/// assert_eq!(table.complete(token, Outcome::ok(8), &switch), Ok(Delivery::PollOnly));
/// assert!(switch.upcalls().is_empty());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Through `WPUCompleteOverlappedRequest`.
    Upcall,
    /// Written to the `WSAOVERLAPPED` for the caller to poll.
    PollOnly,
    /// An APC was queued; its context is the token.
    Apc,
}

/// Why a completion did not happen.
///
/// ```
/// use san_spi_core::overlapped::{CompleteError, CompletionMode, OperationTable, Outcome, OverlappedRequest};
/// use san_spi_core::testing::FakeSwitch;
/// use san_spi_core::WsaError;
///
/// let switch = FakeSwitch::new();
/// let table = OperationTable::with_capacity(4);
/// let req = OverlappedRequest { overlapped: 0x5000, event: 0, completion_routine: 0, thread_id: None };
/// let token = table.post(3, &req, CompletionMode::Upcall, &switch).unwrap();
/// switch.refuse_upcalls(Some(WsaError::NoBufs));
/// assert_eq!(table.complete(token, Outcome::ok(8), &switch), Err(CompleteError::Upcall(WsaError::NoBufs)));
/// // The operation is finished all the same: completing it again is stale.
/// assert_eq!(table.complete(token, Outcome::ok(8), &switch), Err(CompleteError::Stale));
/// assert_eq!(table.pending(), 0);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CompleteError {
    /// The token names no pending operation: already completed, aborted, or forged.
    #[error("the token names no pending operation (already completed, aborted or never issued)")]
    Stale,
    /// The operation was completed but the switch refused the notification.
    #[error("the switch refused the completion notification: {0}")]
    Upcall(WsaError),
}

/// The table is full: every slot holds a pending operation (WSAENOBUFS).
///
/// ```
/// use san_spi_core::overlapped::{CompletionMode, OperationTable, OverlappedRequest, TableFull};
/// use san_spi_core::testing::FakeSwitch;
///
/// let switch = FakeSwitch::new();
/// let table = OperationTable::with_capacity(2);
/// let req = OverlappedRequest { overlapped: 0x5000, event: 0, completion_routine: 0, thread_id: None };
/// table.post(1, &req, CompletionMode::Upcall, &switch).unwrap();
/// table.post(1, &req, CompletionMode::Upcall, &switch).unwrap();
/// assert_eq!(table.post(1, &req, CompletionMode::Upcall, &switch), Err(TableFull { capacity: 2 }));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("all {capacity} overlapped operation slots are in use")]
pub struct TableFull {
    /// Slots in the table.
    pub capacity: usize,
}

/// What the provider's APC function needs to call the caller's completion routine
/// `(dwError, cbTransferred, lpOverlapped, dwFlags = 0)` (R-OVL-5).
///
/// ```
/// use san_spi_core::overlapped::{ApcCall, CompleteError, CompletionMode, OperationTable, Outcome, OverlappedRequest};
/// use san_spi_core::testing::FakeSwitch;
/// use san_spi_core::upcall::ThreadId;
/// use san_spi_core::WsaError;
///
/// let switch = FakeSwitch::new();
/// let table = OperationTable::with_capacity(4);
/// let thread = ThreadId { thread_handle: 0x44, reserved: 0 };
/// let req = OverlappedRequest { overlapped: 0x900, event: 0, completion_routine: 0x7000, thread_id: Some(thread) };
/// let token = table.post(3, &req, CompletionMode::of(&req).unwrap(), &switch).unwrap();
/// table.complete(token, Outcome::err(WsaError::ConnReset), &switch).unwrap();
///
/// // The provider's APC runs in `thread` with the token as its context.
/// let context = switch.run_apcs(&thread)[0];
/// let call = ApcCall { routine: 0x7000, error: 10054, bytes: 0, overlapped: 0x900 };
/// assert_eq!(table.take_apc(context), Ok(call));
/// assert_eq!(table.take_apc(context), Err(CompleteError::Stale)); // only once
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApcCall {
    /// `lpCompletionRoutine`.
    pub routine: u64,
    /// `dwError`.
    pub error: u32,
    /// `cbTransferred`.
    pub bytes: u32,
    /// `lpOverlapped`.
    pub overlapped: u64,
}

/// What `WSPGetOverlappedResult` reports.
///
/// ```
/// use san_spi_core::overlapped::{
///     get_overlapped_result, CompletionMode, OperationTable, Outcome, OverlappedRequest, OverlappedResult,
/// };
/// use san_spi_core::testing::FakeSwitch;
///
/// let switch = FakeSwitch::new();
/// let table = OperationTable::with_capacity(4);
/// let req = OverlappedRequest { overlapped: 0x5000, event: 1, completion_routine: 0, thread_id: None };
/// let token = table.post(3, &req, CompletionMode::PollOnly, &switch).unwrap();
/// assert_eq!(get_overlapped_result(&switch, 0x5000), OverlappedResult::Incomplete);
///
/// table.complete(token, Outcome { flags: 0x8000, ..Outcome::ok(1500) }, &switch).unwrap();
/// assert_eq!(
///     get_overlapped_result(&switch, 0x5000),
///     OverlappedResult::Done { bytes: 1500, flags: 0x8000, error: 0 }
/// );
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverlappedResult {
    /// `Internal` is still `WSS_OPERATION_IN_PROGRESS`: `WSA_IO_INCOMPLETE` unless the caller waits.
    Incomplete,
    /// Done: `TRUE` if `error` is 0, else `FALSE` with `*lpErrno = error`.
    Done {
        /// `*lpcbTransfer`.
        bytes: u32,
        /// `*lpdwFlags`.
        flags: u32,
        /// The operation's Winsock error, 0 on success.
        error: u32,
    },
}

/// `WSPGetOverlappedResult` without waiting: reads the caller's `WSAOVERLAPPED`.
pub fn get_overlapped_result(mem: &impl OverlappedMemory, overlapped: u64) -> OverlappedResult {
    let f = mem.read(overlapped);
    if f.internal == WSS_OPERATION_IN_PROGRESS {
        OverlappedResult::Incomplete
    } else {
        OverlappedResult::Done {
            bytes: f.internal_high as u32,
            flags: f.offset,
            error: f.offset_high,
        }
    }
}

/// Slot states (low 32 bits of the state word; the high 32 bits hold the generation).
mod state {
    /// Not in use; on the free list.
    pub const FREE: u64 = 0;
    /// Posted; waiting for completion or abort.
    pub const PENDING: u64 = 1;
    /// Claimed by exactly one completer (or APC harvester), which finishes it.
    pub const CLAIMED: u64 = 2;
    /// APC mode: result parked, APC queued, waiting for `take_apc`.
    pub const COMPLETED: u64 = 3;

    pub const fn pack(generation: u32, state: u64) -> u64 {
        ((generation as u64) << 32) | state
    }

    pub const fn generation(word: u64) -> u32 {
        (word >> 32) as u32
    }

    pub const fn state(word: u64) -> u64 {
        word & 0xFFFF_FFFF
    }
}

/// One operation. Every field but `state` is written by the owner of the slot (the poster,
/// or the claimer) before a release store of `state`, and read after an acquire of it.
#[cfg_attr(not(loom), repr(align(64)))]
struct Slot {
    state: AtomicU64,
    next_free: AtomicU32,
    mode: AtomicU32,
    socket: AtomicU64,
    overlapped: AtomicU64,
    routine: AtomicU64,
    thread_handle: AtomicU64,
    thread_reserved: AtomicU64,
    /// `error << 32 | bytes`, parked for the APC.
    result: AtomicU64,
}

impl Slot {
    fn new(next_free: u32) -> Slot {
        Slot {
            state: AtomicU64::new(state::pack(0, state::FREE)),
            next_free: AtomicU32::new(next_free),
            mode: AtomicU32::new(0),
            socket: AtomicU64::new(0),
            overlapped: AtomicU64::new(0),
            routine: AtomicU64::new(0),
            thread_handle: AtomicU64::new(0),
            thread_reserved: AtomicU64::new(0),
            result: AtomicU64::new(0),
        }
    }
}

/// The pending overlapped operations of a provider.
///
/// Thread-safe: post, complete, abort and harvest from any thread. See the module docs.
///
/// ```
/// use san_spi_core::overlapped::{
///     get_overlapped_result, CompletionMode, OperationTable, OverlappedRequest, OverlappedResult,
/// };
/// use san_spi_core::testing::FakeSwitch;
///
/// let switch = FakeSwitch::new();
/// let table = OperationTable::with_capacity(100);
/// assert_eq!(table.capacity(), 128); // rounded up to a power of two
/// let req = |overlapped| OverlappedRequest { overlapped, event: 0, completion_routine: 0, thread_id: None };
/// let a = table.post(7, &req(0x1000), CompletionMode::Upcall, &switch).unwrap();
/// table.post(7, &req(0x2000), CompletionMode::Upcall, &switch).unwrap();
/// let c = table.post(8, &req(0x3000), CompletionMode::Upcall, &switch).unwrap();
/// assert_eq!(table.pending(), 3);
///
/// // Closing socket 7 aborts its two requests with WSA_OPERATION_ABORTED, each notified once.
/// assert_eq!(table.abort_socket(7, &switch), 2);
/// assert!(!table.is_pending(a) && table.is_pending(c));
/// assert_eq!(switch.completions_of(0x1000), 1);
/// assert_eq!(
///     get_overlapped_result(&switch, 0x2000),
///     OverlappedResult::Done { bytes: 0, flags: 0, error: 995 }
/// );
/// ```
pub struct OperationTable {
    slots: Box<[Slot]>,
    /// Free-list head: `tag << 32 | (index + 1)`, 0 in the low half when empty.
    free_head: AtomicU64,
    index_bits: u32,
}

impl fmt::Debug for OperationTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OperationTable")
            .field("capacity", &self.capacity())
            .field("pending", &self.pending())
            .finish()
    }
}

/// The largest table: 2^20 slots leaves 12 bits of generation in a token.
pub const MAX_CAPACITY: usize = 1 << 20;

impl OperationTable {
    /// A table of `capacity` slots, rounded up to a power of two between 2 and
    /// [`MAX_CAPACITY`]. All memory is allocated here, once.
    pub fn with_capacity(capacity: usize) -> OperationTable {
        let capacity = capacity.clamp(2, MAX_CAPACITY).next_power_of_two();
        let slots: Vec<Slot> = (0..capacity)
            .map(|i| {
                // Each slot links to the next; the last ends the list (0).
                let next = if i + 1 < capacity { i as u32 + 2 } else { 0 };
                Slot::new(next)
            })
            .collect();
        OperationTable {
            slots: slots.into_boxed_slice(),
            free_head: AtomicU64::new(1),
            index_bits: capacity.trailing_zeros(),
        }
    }

    /// Number of slots.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Operations currently posted and not yet finished (a snapshot).
    pub fn pending(&self) -> usize {
        self.slots
            .iter()
            .filter(|s| state::state(s.state.load(Ordering::Acquire)) != state::FREE)
            .count()
    }

    fn generation_mask(&self) -> u32 {
        u32::MAX >> self.index_bits
    }

    fn token(&self, generation: u32, index: usize) -> Token {
        Token((generation << self.index_bits) | index as u32)
    }

    /// The (generation, index) a token names; `None` for a generation of 0 (never issued).
    fn decode(&self, token: Token) -> Option<(u32, usize)> {
        let index = (token.0 & ((1u32 << self.index_bits) - 1)) as usize;
        let generation = token.0 >> self.index_bits;
        if generation == 0 {
            None
        } else {
            Some((generation, index))
        }
    }

    fn pop_free(&self) -> Option<usize> {
        let mut head = self.free_head.load(Ordering::Acquire);
        loop {
            let first = (head & 0xFFFF_FFFF) as u32;
            if first == 0 {
                return None;
            }
            let index = (first - 1) as usize;
            let next = self.slots[index].next_free.load(Ordering::Relaxed) as u64;
            let tag = (head >> 32).wrapping_add(1) & 0xFFFF_FFFF;
            match self.free_head.compare_exchange_weak(
                head,
                (tag << 32) | next,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Some(index),
                Err(actual) => head = actual,
            }
        }
    }

    fn push_free(&self, index: usize) {
        let mut head = self.free_head.load(Ordering::Relaxed);
        loop {
            self.slots[index]
                .next_free
                .store((head & 0xFFFF_FFFF) as u32, Ordering::Relaxed);
            let tag = (head >> 32).wrapping_add(1) & 0xFFFF_FFFF;
            match self.free_head.compare_exchange_weak(
                head,
                (tag << 32) | (index as u64 + 1),
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => return,
                Err(actual) => head = actual,
            }
        }
    }

    /// Takes slot `index` of `generation` from state `from` to `CLAIMED`: the one
    /// compare-and-swap every finishing path goes through, so exactly one of them wins.
    fn claim(&self, index: usize, generation: u32, from: u64) -> bool {
        self.slots[index]
            .state
            .compare_exchange(
                state::pack(generation, from),
                state::pack(generation, state::CLAIMED),
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
    }

    /// Frees a slot this thread has claimed.
    fn release(&self, index: usize, generation: u32) {
        self.slots[index]
            .state
            .store(state::pack(generation, state::FREE), Ordering::Release);
        self.push_free(index);
    }

    /// Starts tracking an overlapped request of `socket`: writes `Internal =
    /// WSS_OPERATION_IN_PROGRESS` and returns the token that completes it. `mode` must not be
    /// [`CompletionMode::Synchronous`].
    ///
    /// # Panics
    ///
    /// If `mode` is synchronous (a synchronous call has nothing to track).
    pub fn post(
        &self,
        socket: u64,
        request: &OverlappedRequest,
        mode: CompletionMode,
        mem: &impl OverlappedMemory,
    ) -> Result<Token, TableFull> {
        assert!(
            mode != CompletionMode::Synchronous,
            "a synchronous request is not posted"
        );
        let index = self.pop_free().ok_or(TableFull {
            capacity: self.capacity(),
        })?;
        let slot = &self.slots[index];
        let old = slot.state.load(Ordering::Relaxed);
        let mut generation = state::generation(old).wrapping_add(1) & self.generation_mask();
        if generation == 0 {
            generation = 1;
        }
        slot.socket.store(socket, Ordering::Relaxed);
        slot.overlapped.store(request.overlapped, Ordering::Relaxed);
        slot.routine
            .store(request.completion_routine, Ordering::Relaxed);
        let thread = match mode {
            CompletionMode::Apc(t) => t,
            _ => ThreadId::default(),
        };
        slot.thread_handle
            .store(thread.thread_handle, Ordering::Relaxed);
        slot.thread_reserved
            .store(thread.reserved, Ordering::Relaxed);
        slot.mode.store(mode.encode(), Ordering::Relaxed);
        mem.write_in_progress(request.overlapped);
        slot.state
            .store(state::pack(generation, state::PENDING), Ordering::Release);
        Ok(self.token(generation, index))
    }

    /// Completes the pending operation `token` with `outcome` and notifies the caller the
    /// way it asked, exactly once (R-OVL-6). A second completion, a completion after an
    /// abort, or a forged token is [`CompleteError::Stale`] and touches nothing.
    pub fn complete<E: Upcalls + OverlappedMemory>(
        &self,
        token: Token,
        outcome: Outcome,
        env: &E,
    ) -> Result<Delivery, CompleteError> {
        let (generation, index) = self.decode(token).ok_or(CompleteError::Stale)?;
        if !self.claim(index, generation, state::PENDING) {
            return Err(CompleteError::Stale);
        }
        let slot = &self.slots[index];
        let overlapped = slot.overlapped.load(Ordering::Relaxed);
        let socket = slot.socket.load(Ordering::Relaxed);
        let mode = slot.mode.load(Ordering::Relaxed);
        env.write_result(overlapped, outcome.error, outcome.flags);
        match mode {
            1 | 2 => {
                let r = env.complete_overlapped(socket, overlapped, outcome.error, outcome.bytes);
                self.release(index, generation);
                r.map(|()| Delivery::Upcall).map_err(CompleteError::Upcall)
            }
            3 => {
                env.write_done(overlapped, outcome.bytes);
                self.release(index, generation);
                Ok(Delivery::PollOnly)
            }
            _ => {
                let thread = ThreadId {
                    thread_handle: slot.thread_handle.load(Ordering::Relaxed),
                    reserved: slot.thread_reserved.load(Ordering::Relaxed),
                };
                slot.result.store(
                    ((outcome.error as u64) << 32) | outcome.bytes as u64,
                    Ordering::Relaxed,
                );
                env.write_done(overlapped, outcome.bytes);
                slot.state
                    .store(state::pack(generation, state::COMPLETED), Ordering::Release);
                match env.queue_apc(&thread, token.0 as u64) {
                    Ok(()) => Ok(Delivery::Apc),
                    Err(e) => {
                        // Not queued, so no APC can harvest it: reclaim the slot. The result
                        // stays readable through WSPGetOverlappedResult.
                        if self.claim(index, generation, state::COMPLETED) {
                            self.release(index, generation);
                        }
                        Err(CompleteError::Upcall(e))
                    }
                }
            }
        }
    }

    /// The provider's APC function calls this with its context: returns what the caller's
    /// completion routine must be called with, once. A stale or forged context is
    /// [`CompleteError::Stale`].
    pub fn take_apc(&self, context: u64) -> Result<ApcCall, CompleteError> {
        let token = u32::try_from(context)
            .ok()
            .and_then(Token::from_raw)
            .ok_or(CompleteError::Stale)?;
        let (generation, index) = self.decode(token).ok_or(CompleteError::Stale)?;
        if !self.claim(index, generation, state::COMPLETED) {
            return Err(CompleteError::Stale);
        }
        let slot = &self.slots[index];
        let result = slot.result.load(Ordering::Relaxed);
        let call = ApcCall {
            routine: slot.routine.load(Ordering::Relaxed),
            error: (result >> 32) as u32,
            bytes: result as u32,
            overlapped: slot.overlapped.load(Ordering::Relaxed),
        };
        self.release(index, generation);
        Ok(call)
    }

    /// Completes every pending operation of `socket` with `WSA_OPERATION_ABORTED` (R-OVL-6).
    /// Returns how many this call aborted; operations completed concurrently are not
    /// aborted twice.
    pub fn abort_socket<E: Upcalls + OverlappedMemory>(&self, socket: u64, env: &E) -> usize {
        let mut aborted = 0;
        for (index, slot) in self.slots.iter().enumerate() {
            let word = slot.state.load(Ordering::Acquire);
            if state::state(word) != state::PENDING || slot.socket.load(Ordering::Relaxed) != socket
            {
                continue;
            }
            let token = self.token(state::generation(word), index);
            match self.complete(token, Outcome::err(WsaError::OperationAborted), env) {
                Ok(_) | Err(CompleteError::Upcall(_)) => aborted += 1,
                Err(CompleteError::Stale) => {}
            }
        }
        aborted
    }

    /// Withdraws a request whose start failed after [`post`](Self::post): the call returns
    /// the error itself, so no notification is owed. Returns whether `token` was pending
    /// (a request already completed or aborted is left alone).
    pub fn forget(&self, token: Token) -> bool {
        let (generation, index) = match self.decode(token) {
            Some(d) => d,
            None => return false,
        };
        let claimed = self.claim(index, generation, state::PENDING);
        if claimed {
            self.release(index, generation);
        }
        claimed
    }

    /// Whether `token` names an operation that is still pending.
    pub fn is_pending(&self, token: Token) -> bool {
        self.decode(token).map_or(false, |(generation, index)| {
            self.slots[index].state.load(Ordering::Acquire)
                == state::pack(generation, state::PENDING)
        })
    }
}
