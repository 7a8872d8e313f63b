//! One connected endpoint: two rings in a shared memfd, a progress thread, a completion
//! queue.
//!
//! # Layout
//!
//! This module holds the state ([`Shared`], [`LoopbackEndpoint`]) and the lock order; the
//! code is split along the data paths: `outbound` (posting into the peer's ring),
//! `inbound` (consuming ours and handling each record), `teardown` (failing and ending),
//! `progress` (the progress thread and progress from `poll`), `post` (the [`Endpoint`]
//! calls of the application).
//!
//! # Lock order
//!
//! A thread holding one of the endpoint's locks takes only locks of a higher rank:
//!
//! `progress` (0) → `inb` (1) → `recvs` (2) → `out` (3) → `pending` (4) → `cq` (5) →
//! the registry's lock (innermost; it never waits for an endpoint lock).
//!
//! So a record handler (under `inb`) may queue a job (`out`), settle a pending operation
//! (`pending`) and complete (`cq`); a pump (under `out`) may complete but never consume.
//! A registry removal quiesces endpoints by taking `out` and `inb` one at a time, after
//! releasing its own lock. Every lock is a [`Ranked`](ranked::Ranked): debug builds check
//! the order on each acquisition and panic naming both locks (the whole test suite runs
//! with the check); release builds compile to plain mutexes. A `try_lock` cannot deadlock
//! and takes no place in the order, but what is taken under it is checked.
//!
//! Wire protocol (records of [`crate::ring`]):
//!
//! | kind | token | a | b | payload |
//! |---|---|---|---|---|
//! | `SEND` | — | — | total length (first) | message bytes; flags FIRST / LAST / ABORT |
//! | `WRITE` | op id | key | offset of this chunk | first chunk: total length (u64) then bytes |
//! | `ACK` | op id | status | bytes | — |
//! | `READ_REQ` | op id | key | offset | length (u64) |
//! | `READ_DATA` | op id | status | offset in the transfer | bytes; flags FIRST / LAST |
//! | `CLOSE` | — | — | — | — |
//! | `SC_WRITE` | op id | key | offset | total (u64), then ≤ 64 × (address u64, length u64) |
//! | `SC_READ` | op id | key | offset | total (u64), then ≤ 64 × (address u64, length u64) |
//!
//! `SC_WRITE` and `SC_READ` are the single-copy RDMA requests (kinds 7 and 8), sent only on
//! a connection where the target said it serves them (see the handshake in the crate
//! docs). Their pieces are the initiator's SGEs as addresses in the initiator's process,
//! validated by the initiator against its registrations when posted. The target checks the
//! request against its registry (key with generation, bounds over the whole range, rights:
//! WRITE for `SC_WRITE`, READ for `SC_READ`) and that the pieces add up to the total, then
//! copies itself — `process_vm_readv` from the pieces into its region for a write,
//! `process_vm_writev` from its region into the pieces for a read — in chunks, each under
//! the registry's read lock, at the pid the kernel named for the socket (never one from
//! the wire), and answers with an `ACK` (`a` = status, `b` = bytes). A failing or short
//! copy is an error status, never a crash. The initiator completes the operation with the
//! status, and with `WSAEFAULT` if the ACK reports fewer bytes than asked or one of its
//! own registrations vanished meanwhile. Until then the target may read (write) the
//! initiator's pieces: the memory must stay valid until the operation completes, as the
//! `Memory::register` contract requires (deregistering it does not stop the peer's copy).
//! Operations with more SGEs than a request carries, and every operation on a bounce
//! connection, use `WRITE` / `READ_REQ` instead. A single-copy request on a connection
//! that did not agree to serve them is a protocol violation.
//!
//! Only one producer writes each ring: the owner of the outbound lock, which pumps a FIFO
//! of jobs, so the chunks of one operation are contiguous. The owning side validates every
//! remote access (key with generation, bounds, rights) against its registry before a
//! byte moves; an RDMA write is validated over its whole length on the first chunk, so a
//! bad request touches nothing. Every index, length and key from the peer is checked;
//! a violation closes the connection with errors (`WSAECONNRESET`), never a panic.

use crate::direct::{self, Direction, Peer, MAX_PIECES};
use crate::registry::{self, descriptor_key, Quiesce, Registry};
use crate::ring::{Consumer, Corrupt, Header, Producer, Watch};
use crate::sys;
use crate::wire;
use san_spi_core::transport::{Completion, Endpoint, MemAccess, Op, PostError, RemoteTarget, Sge};
use san_spi_core::WsaError;
use smallvec::SmallVec;
use std::collections::{HashMap, VecDeque};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar};
use std::time::{Duration, Instant};

mod inbound;
mod outbound;
mod post;
mod progress;
mod ranked;
mod teardown;

use ranked::{Ranked, RankedGuard};

/// The lock order: a thread holding a lock takes only locks of a higher rank (checked in
/// debug builds by [`Ranked`]).
mod rank {
    pub(super) const PROGRESS: u8 = 0;
    pub(super) const INB: u8 = 1;
    pub(super) const RECVS: u8 = 2;
    pub(super) const OUT: u8 = 3;
    pub(super) const PENDING: u8 = 4;
    pub(super) const CQ: u8 = 5;
}

const SEND: u16 = 1;
const WRITE: u16 = 2;
pub(crate) const ACK: u16 = 3;
const READ_REQ: u16 = 4;
const READ_DATA: u16 = 5;
const CLOSE: u16 = 6;
const SC_WRITE: u16 = 7;
const SC_READ: u16 = 8;

/// How RDMA data moves on a connection.
///
/// ```
/// use san_spi_loopback::CopyMode;
///
/// assert_eq!(CopyMode::default(), CopyMode::SingleCopy);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CopyMode {
    /// The owner of the target region copies straight between it and the initiator's
    /// memory (`process_vm_readv` / `process_vm_writev`): one copy.
    #[default]
    SingleCopy,
    /// The data goes through the shared ring: the initiator copies into it, the target
    /// out of it (or the other way round for a read).
    Bounce,
}

/// The single-copy arrangement of a connection, settled in the handshake.
#[derive(Debug)]
pub(crate) struct Directions {
    /// The peer serves our single-copy requests.
    pub(crate) out: bool,
    /// We serve the peer's: the process the kernel names for the socket, reachable.
    pub(crate) peer: Option<Peer>,
}

/// Records one pass of the consumer handles at most.
const CONSUME_BUDGET: usize = 64;

const FIRST: u16 = 1;
const LAST: u16 = 2;
const ABORT: u16 = 4;

/// Largest RDMA operation that can go single copy (one request carries it); larger ones
/// bounce through the ring.
pub const DIRECT_MAX_BYTES: u64 = 4 << 20;

/// The default of [`Limits::single_copy_max`]: 0, every transfer bounces. Measured on this
/// project's machine kind (`san-spi bench loopback`, which runs both paths in one run and
/// prints the choice), bouncing through the ring was faster than single copy at every size
/// from 4 KiB to 4 MiB (at 1 MiB 43 against 11 GB/s, memcpy 51): `process_vm_readv` pins
/// and walks the peer's pages per call, the ring is two warm `memcpy`s. Set it (up to
/// [`DIRECT_MAX_BYTES`]) where single copy wins, e.g. when the peer's CPU is scarce.
pub const SINGLE_COPY_MAX_DEFAULT: u64 = 0;

/// Limits of one endpoint.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most SGEs per operation.
    pub max_sge: usize,
    /// Most operations queued for sending (sends, writes, read requests).
    pub max_jobs: usize,
    /// Most receives posted.
    pub max_recvs: usize,
    /// Most RDMA operations waiting for the peer.
    pub max_inflight: usize,
    /// Largest RDMA transfer that goes single copy on a connection that negotiated it
    /// ([`CopyMode::SingleCopy`]); larger ones bounce through the ring. At most
    /// [`DIRECT_MAX_BYTES`] takes effect. Default [`SINGLE_COPY_MAX_DEFAULT`].
    pub single_copy_max: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_sge: 16,
            max_jobs: 256,
            max_recvs: 256,
            max_inflight: 256,
            single_copy_max: SINGLE_COPY_MAX_DEFAULT,
        }
    }
}

type Sges = SmallVec<[Sge; 4]>;

#[derive(Debug)]
enum JobKind {
    Send {
        sges: Sges,
        token: u64,
    },
    Write {
        sges: Sges,
        key: u64,
        offset: u64,
        token: u64,
        op: u64,
    },
    ReadReq {
        key: u64,
        offset: u64,
        len: u64,
        op: u64,
    },
    /// A single-copy request (`SC_WRITE` or `SC_READ`): one record.
    Direct {
        kind: u16,
        sges: Sges,
        key: u64,
        offset: u64,
        op: u64,
    },
    ReadResp {
        op: u64,
        key: u64,
        offset: u64,
        len: u64,
        status: u32,
    },
    Ack {
        op: u64,
        status: u32,
        bytes: u64,
    },
    Close,
}

#[derive(Debug)]
struct Job {
    kind: JobKind,
    total: u64,
    sent: u64,
}

struct Outbound {
    producer: Producer,
    /// Registrations the fast send path checked (valid under this lock, see `registry`).
    cache: registry::Cache,
    jobs: VecDeque<Job>,
    /// Jobs the peer made us queue (ACKs, read responses): bounded to stop a flood.
    internal: usize,
}

#[derive(Debug)]
struct PostedRecv {
    sges: Sges,
    token: u64,
}

#[derive(Debug)]
enum Pending {
    Write {
        token: u64,
        total: u64,
        /// Single copy: the source SGEs, checked again when the ACK comes.
        direct: Option<Sges>,
    },
    Read {
        token: u64,
        sges: Sges,
        total: u64,
        received: u64,
        /// Single copy: completed by an ACK, not by READ_DATA.
        direct: bool,
    },
}

/// The receive in progress: a message being copied into a posted receive.
#[derive(Debug)]
struct Incoming {
    recv: PostedRecv,
    total: u64,
    received: u64,
    capacity: u64,
    error: Option<WsaError>,
}

/// The RDMA write being applied.
#[derive(Debug)]
struct IncomingWrite {
    op: u64,
    key: u64,
    start: u64,
    total: u64,
    received: u64,
    status: u32,
}

struct Inbound {
    consumer: Consumer,
    incoming: Option<Incoming>,
    write: Option<IncomingWrite>,
    /// Registrations receives were checked against (valid under this lock).
    cache: registry::Cache,
    /// Receives taken over from `Shared::recvs` all at once (the queue is swapped when
    /// this runs dry): one lock round trip per batch of receives, not per message.
    recvs: VecDeque<PostedRecv>,
    /// Receives used up (mirrored in `Shared::recvs_taken`).
    taken: u64,
    /// Receive completions of this pass, in order: handed straight to the polling caller
    /// when the completion queue is empty (no queue round trip), queued otherwise.
    done: Vec<Completion>,
}

/// Receives posted and not yet taken over by the consumer, in order.
struct Recvs {
    queue: VecDeque<PostedRecv>,
    /// Receives ever posted (`Shared::recvs_taken` counts those the consumer used up).
    posted: u64,
    /// Registrations posts were checked against (validation only: the copy checks again).
    cache: registry::Cache,
}

/// Room in a polling caller's completion array.
struct Sink<'a> {
    out: &'a mut [Completion],
    n: usize,
}

/// Aligned to two cache lines: the state of two endpoints (often allocated side by side)
/// never shares a line, so one side's polling does not slow the other's.
#[repr(align(128))]
pub(crate) struct Shared {
    registry: Arc<Registry>,
    limits: Limits,
    out: Ranked<Outbound>,
    inb: Ranked<Inbound>,
    cq: Ranked<VecDeque<Completion>>,
    cq_ready: Condvar,
    /// Threads blocked in `wait`: completions skip the (syscall) notify when there are none.
    /// Changed and read under the `cq` lock, so no wake-up is lost.
    cq_waiters: AtomicUsize,
    recvs: Ranked<Recvs>,
    /// Receives the consumer used up: written under `inb`, read by `post_recv` to bound
    /// the receives outstanding (posted minus taken) without a shared counter to update.
    recvs_taken: AtomicU64,
    pending: Ranked<HashMap<u64, Pending>>,
    next_op: AtomicU64,
    closed: AtomicBool,
    /// The outbound side is dead: the peer left, or the connection failed. Sends and RDMA
    /// are refused; receives go on while `inbound_end` is open.
    broken: AtomicBool,
    /// The peer hung up or closed: it adds nothing more to the inbound ring, so the ring
    /// running empty is the end of the inbound side.
    peer_gone: AtomicBool,
    /// How the inbound side ended (a WSA code; 0 while open): receives posted later fail
    /// with it at once. Changed under `inb` and `recvs` (see `end_inbound`).
    inbound_end: AtomicI32,
    /// Set where the connection must be failed but locks are held; the progress thread acts.
    needs_fail: AtomicBool,
    stop: AtomicBool,
    /// When an application thread last drove progress from `poll` (ns since `epoch`).
    last_poll: AtomicU64,
    /// Polls since `last_poll` was refreshed: the clock is read once every 32 polls.
    polls: AtomicU32,
    epoch: Instant,
    cq_capacity: usize,
    /// Completions in `cq`: written under its lock, read without it (a hint for fast paths;
    /// the lock is still taken before anything is removed).
    cq_len: AtomicUsize,
    /// Jobs queued in `out`: written under its lock, read without it, so a poll with nothing
    /// to pump does not take the lock.
    jobs_queued: AtomicUsize,
    /// The inbound ring's next seal, watched without the `inb` lock ...
    watch: Watch,
    /// ... against the consumer's position as of its last pass (written under `inb`).
    head_seen: AtomicU64,
    /// RDMA operations this endpoint posted as single-copy requests (diagnostics).
    single_copy_posts: AtomicU64,
    /// The progress thread is parked because an application thread polls: `post_recv`
    /// then leaves the wake-up to that thread's next poll (no syscall).
    poller_mode: AtomicBool,
    /// Our own wake-up: an eventfd this process created and never shares, so no peer can
    /// change its file state (its `O_NONBLOCK`) or its counter.
    my_efd: OwnedFd,
    /// The connection's socket: the peer's wake-ups arrive on it as bytes, ours leave on it
    /// with `MSG_DONTWAIT` on the call (`sys::wake_peer`); its hang-up says the peer died.
    socket: UnixStream,
    /// The peer serves our single-copy requests.
    direct_out: bool,
    /// We serve the peer's single-copy requests, copying with this process.
    peer: Option<Peer>,
}

/// A connected loopback endpoint.
pub struct LoopbackEndpoint {
    shared: Arc<Shared>,
    progress: Ranked<Option<std::thread::JoinHandle<()>>>,
}

impl std::fmt::Debug for LoopbackEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoopbackEndpoint")
            .field("closed", &self.shared.closed.load(Ordering::Relaxed))
            .field("broken", &self.shared.broken.load(Ordering::Relaxed))
            .field("copy_mode", &self.copy_mode())
            .field("peer_copy_mode", &self.peer_copy_mode())
            .finish()
    }
}

fn lock<T>(m: &Ranked<T>) -> RankedGuard<'_, T> {
    m.lock()
}

fn total_len(sges: &[Sge]) -> Option<u64> {
    sges.iter()
        .try_fold(0u64, |acc, s| acc.checked_add(s.len as u64))
}

/// Checks an SGE list for a post: at most `max_sge` entries, each accepted by `valid`, at
/// most 4 GiB in all. Returns the total length. The one place every post path's checks live;
/// `valid` is the registry (read lock or a lock's cache) with the access the post needs.
fn check_sge_list(
    sges: &[Sge],
    max_sge: usize,
    mut valid: impl FnMut(&Sge) -> bool,
) -> Result<u64, PostError> {
    if sges.len() > max_sge {
        return Err(PostError::TooLarge);
    }
    if let Some(index) = sges.iter().position(|s| !valid(s)) {
        return Err(PostError::InvalidSge { index });
    }
    match total_len(sges) {
        Some(total) if total <= u32::MAX as u64 => Ok(total),
        _ => Err(PostError::TooLarge),
    }
}

/// Walks `sges` from byte `from`, yielding `(process address, length)` pieces covering at
/// most `max` bytes. An iterator, not a collection: nothing is built or moved on the
/// receive path.
fn pieces(sges: &[Sge], from: u64, max: u64) -> impl Iterator<Item = (u64, usize)> + '_ {
    let mut skip = from;
    let mut left = max;
    sges.iter().filter_map(move |s| {
        let len = s.len as u64;
        if left == 0 {
            return None;
        }
        if skip >= len {
            skip -= len;
            return None;
        }
        let n = (len - skip).min(left);
        let piece = (s.addr + skip, n as usize);
        left -= n;
        skip = 0;
        Some(piece)
    })
}

impl Shared {
    pub(crate) fn new(
        registry: Arc<Registry>,
        limits: Limits,
        (producer, consumer): (Producer, Consumer),
        my_efd: OwnedFd,
        socket: UnixStream,
        directions: Directions,
    ) -> Shared {
        let watch = consumer.watch();
        let head_seen = AtomicU64::new(consumer.position());
        Shared {
            recvs_taken: AtomicU64::new(0),
            jobs_queued: AtomicUsize::new(0),
            watch,
            head_seen,
            poller_mode: AtomicBool::new(false),
            single_copy_posts: AtomicU64::new(0),
            registry,
            limits,
            out: Ranked::new(
                rank::OUT,
                "out",
                Outbound {
                    producer,
                    cache: registry::Cache::default(),
                    jobs: VecDeque::with_capacity(limits.max_jobs * 2 + limits.max_inflight),
                    internal: 0,
                },
            ),
            inb: Ranked::new(
                rank::INB,
                "inb",
                Inbound {
                    consumer,
                    incoming: None,
                    write: None,
                    cache: registry::Cache::default(),
                    recvs: VecDeque::with_capacity(limits.max_recvs),
                    taken: 0,
                    done: Vec::with_capacity(CONSUME_BUDGET),
                },
            ),
            cq: Ranked::new(
                rank::CQ,
                "cq",
                VecDeque::with_capacity(limits.max_jobs + limits.max_recvs + limits.max_inflight),
            ),
            cq_ready: Condvar::new(),
            cq_waiters: AtomicUsize::new(0),
            recvs: Ranked::new(
                rank::RECVS,
                "recvs",
                Recvs {
                    queue: VecDeque::with_capacity(limits.max_recvs),
                    posted: 0,
                    cache: registry::Cache::default(),
                },
            ),
            pending: Ranked::new(
                rank::PENDING,
                "pending",
                HashMap::with_capacity(limits.max_inflight),
            ),
            next_op: AtomicU64::new(1),
            closed: AtomicBool::new(false),
            broken: AtomicBool::new(false),
            peer_gone: AtomicBool::new(false),
            inbound_end: AtomicI32::new(0),
            needs_fail: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            last_poll: AtomicU64::new(0),
            polls: AtomicU32::new(0),
            epoch: Instant::now(),
            cq_capacity: limits.max_jobs + limits.max_recvs + limits.max_inflight,
            cq_len: AtomicUsize::new(0),
            my_efd,
            socket,
            direct_out: directions.out,
            peer: directions.peer,
        }
    }

    fn complete(&self, token: u64, op: Op, result: Result<u32, WsaError>) {
        let mut cq = lock(&self.cq);
        cq.push_back(Completion::new(token, op, result));
        self.cq_len.store(cq.len(), Ordering::Release);
        if self.cq_waiters.load(Ordering::Relaxed) > 0 {
            self.cq_ready.notify_all();
        }
    }

    fn is_down(&self) -> bool {
        self.closed.load(Ordering::Acquire) || self.broken.load(Ordering::Acquire)
    }

    /// Records an RDMA operation waiting for the peer, unless the endpoint is down.
    fn add_pending(&self, op: u64, p: Pending) -> Result<(), PostError> {
        let mut pending = lock(&self.pending);
        if self.is_down() {
            return Err(PostError::Closed);
        }
        if pending.len() >= self.limits.max_inflight {
            return Err(PostError::QueueFull);
        }
        pending.insert(op, p);
        Ok(())
    }

    fn usable(&self) -> Result<(), PostError> {
        if self.closed.load(Ordering::Acquire) || self.broken.load(Ordering::Acquire) {
            return Err(PostError::Closed);
        }
        self.cq_room()
    }

    /// Room for one more completion: when completions are not being polled, back-pressure
    /// instead of unbounded growth.
    fn cq_room(&self) -> Result<(), PostError> {
        if self.cq_len.load(Ordering::Acquire) >= self.cq_capacity {
            return Err(PostError::QueueFull);
        }
        Ok(())
    }
}

impl Quiesce for Shared {
    fn quiesce(&self) {
        // The two locks data-path copies check through a cache under; never held together
        // here, so no lock order is added.
        drop(lock(&self.out));
        drop(lock(&self.inb));
    }
}

impl LoopbackEndpoint {
    pub(crate) fn start(shared: Shared) -> LoopbackEndpoint {
        let shared = Arc::new(shared);
        let weak: std::sync::Weak<dyn Quiesce> = Arc::downgrade(&shared) as _;
        shared.registry.add_user(weak);
        let s2 = shared.clone();
        let handle = std::thread::Builder::new()
            .name("san-spi-loopback-progress".into())
            .spawn(move || s2.progress_loop())
            .expect("spawn the progress thread");
        LoopbackEndpoint {
            shared,
            progress: Ranked::new(rank::PROGRESS, "progress", Some(handle)),
        }
    }

    /// An endpoint without a progress thread: the fuzz entry drives it through `poll`
    /// alone (the application's inline progress), on this thread.
    #[cfg(feature = "fuzz")]
    pub(crate) fn unstarted(shared: Shared) -> LoopbackEndpoint {
        let shared = Arc::new(shared);
        let weak: std::sync::Weak<dyn Quiesce> = Arc::downgrade(&shared) as _;
        shared.registry.add_user(weak);
        LoopbackEndpoint {
            shared,
            progress: Ranked::new(rank::PROGRESS, "progress", None),
        }
    }

    /// How many records from the peer this endpoint has consumed (handled, whatever the
    /// handler made of them): what a hostile-peer test counts to prove its records reached
    /// the handlers.
    pub fn records_received(&self) -> u64 {
        lock(&self.shared.inb).consumer.records()
    }

    /// How many of the RDMA operations posted here went as single-copy requests (the rest
    /// bounced through the ring): which path [`Limits::single_copy_max`] chose.
    pub fn single_copy_posts(&self) -> u64 {
        self.shared.single_copy_posts.load(Ordering::Relaxed)
    }

    /// How the RDMA operations this endpoint posts can move their data: single copy when
    /// the peer agreed in the handshake to serve them (and could reach this process),
    /// bounce otherwise. On a single-copy connection each transfer still bounces when it is
    /// larger than [`Limits::single_copy_max`] (by default every one: see
    /// [`SINGLE_COPY_MAX_DEFAULT`]) or has more SGEs than a request carries (64).
    pub fn copy_mode(&self) -> CopyMode {
        if self.shared.direct_out {
            CopyMode::SingleCopy
        } else {
            CopyMode::Bounce
        }
    }

    /// How the peer's RDMA operations on this endpoint's memory move their data: single
    /// copy when this process serves them (it reached the peer's memory in the handshake).
    pub fn peer_copy_mode(&self) -> CopyMode {
        if self.shared.peer.is_some() {
            CopyMode::SingleCopy
        } else {
            CopyMode::Bounce
        }
    }

    /// Whether the connection is unusable (closed here, closed by the peer, or broken).
    pub fn is_closed(&self) -> bool {
        self.shared.is_down()
    }

    fn next_op(&self) -> u64 {
        self.shared.next_op.fetch_add(1, Ordering::Relaxed)
    }
}
