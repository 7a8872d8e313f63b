//! One connected endpoint: two rings in a shared memfd, a progress thread, a completion
//! queue.
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
use crate::ring::{Consumer, Corrupt, Full, Header, Producer, Watch};
use crate::sys;
use san_spi_core::transport::{Completion, Endpoint, MemAccess, Op, PostError, RemoteTarget, Sge};
use san_spi_core::WsaError;
use smallvec::SmallVec;
use std::collections::{HashMap, VecDeque};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

const SEND: u16 = 1;
const WRITE: u16 = 2;
pub(crate) const ACK: u16 = 3;
const READ_REQ: u16 = 4;
const READ_DATA: u16 = 5;
const CLOSE: u16 = 6;
const SC_WRITE: u16 = 7;
const SC_READ: u16 = 8;

/// Payload bytes of a single-copy request with `n` pieces.
const fn direct_len(n: usize) -> usize {
    8 + 16 * n
}

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

/// Largest RDMA operation that goes single copy; larger ones bounce through the ring.
pub const DIRECT_MAX_BYTES: u64 = 4 << 20;

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
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_sge: 16,
            max_jobs: 256,
            max_recvs: 256,
            max_inflight: 256,
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
    out: Mutex<Outbound>,
    inb: Mutex<Inbound>,
    cq: Mutex<VecDeque<Completion>>,
    cq_ready: Condvar,
    /// Threads blocked in `wait`: completions skip the (syscall) notify when there are none.
    /// Changed and read under the `cq` lock, so no wake-up is lost.
    cq_waiters: AtomicUsize,
    recvs: Mutex<Recvs>,
    /// Receives the consumer used up: written under `inb`, read by `post_recv` to bound
    /// the receives outstanding (posted minus taken) without a shared counter to update.
    recvs_taken: AtomicU64,
    pending: Mutex<HashMap<u64, Pending>>,
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
    progress: Mutex<Option<std::thread::JoinHandle<()>>>,
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

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
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
            registry,
            limits,
            out: Mutex::new(Outbound {
                producer,
                cache: registry::Cache::default(),
                jobs: VecDeque::with_capacity(limits.max_jobs * 2 + limits.max_inflight),
                internal: 0,
            }),
            inb: Mutex::new(Inbound {
                consumer,
                incoming: None,
                write: None,
                cache: registry::Cache::default(),
                recvs: VecDeque::with_capacity(limits.max_recvs),
                taken: 0,
                done: Vec::with_capacity(CONSUME_BUDGET),
            }),
            cq: Mutex::new(VecDeque::with_capacity(
                limits.max_jobs + limits.max_recvs + limits.max_inflight,
            )),
            cq_ready: Condvar::new(),
            cq_waiters: AtomicUsize::new(0),
            recvs: Mutex::new(Recvs {
                queue: VecDeque::with_capacity(limits.max_recvs),
                posted: 0,
                cache: registry::Cache::default(),
            }),
            pending: Mutex::new(HashMap::with_capacity(limits.max_inflight)),
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

    /// Whether an RDMA operation over `sges` goes single copy: on a single-copy
    /// connection, whenever its SGEs fit one request and it is at most
    /// [`DIRECT_MAX_BYTES`]. There is no size floor: single copy is at least as fast as
    /// bouncing down to 4 KiB. Above the ceiling the bounce wins (measured by `san-spi bench
    /// loopback` on 2 vCPUs: 16 MiB at ~12.9 GB/s bounced vs ~9.6 GB/s single copy, 64 MiB
    /// at ~12 vs ~6 GB/s), because bouncing pipelines two copies on two cores while single
    /// copy is one copy on one.
    fn direct(&self, sges: &[Sge]) -> bool {
        self.direct_out
            && sges.len() <= MAX_PIECES
            && total_len(sges).is_some_and(|n| n <= DIRECT_MAX_BYTES)
    }

    /// Checks every SGE against the registry with `need`.
    fn check_sges(&self, sges: &[Sge], need: MemAccess) -> Result<u64, PostError> {
        let g = self.registry.lock();
        check_sge_list(sges, self.limits.max_sge, |s| {
            g.check_local(s.handle.raw(), s.addr, s.len as u64, need)
                .is_some()
        })
    }

    fn signal_peer_if_sleeping(&self, out: &Outbound) {
        if out.producer.consumer_sleeping() {
            sys::wake_peer(self.socket.as_raw_fd());
        }
    }

    /// The fast path of a send: with nothing queued ahead of it, a message that fits one
    /// record goes straight into the ring — its SGEs checked once, through the outbound
    /// lock's registration cache, under that lock for the copy — and no job is built. `None` when the queued path must take it (jobs
    /// ahead, ring full, too long for one record, or a ring fault, which the queued path
    /// reports).
    fn send_now(&self, sges: &[Sge], token: u64) -> Option<Result<(), PostError>> {
        let mut out = lock(&self.out);
        if !out.jobs.is_empty() {
            return None;
        }
        // Checked under the lock `fail_all` drains with, as in `submit`.
        if self.is_down() {
            return Some(Err(PostError::Closed));
        }
        let out = &mut *out;
        let cache = &mut out.cache;
        let total = match check_sge_list(sges, self.limits.max_sge, |s| {
            self.registry.sge_cached(cache, s, MemAccess::READ)
        }) {
            Ok(total) => total,
            Err(e) => return Some(Err(e)),
        };
        if total > out.producer.max_payload() as u64 - 8 {
            return None;
        }
        let parts = sges
            .iter()
            .filter(|s| s.len > 0)
            .map(|s| (s.addr as *const u8, s.len as usize));
        let header = Header {
            kind: SEND,
            flags: FIRST | LAST,
            b: total,
            ..Header::default()
        };
        // SAFETY: every part lies in a registration checked through the cache of `out`,
        // which stays locked for the copy (a deregistration quiesces that lock before it
        // returns).
        match unsafe { out.producer.push_parts(header, total as usize, parts) } {
            Ok(Ok(())) => {
                // Completed under `out`, so send completions keep the order of the wire.
                self.complete(token, Op::Send, Ok(total as u32));
                self.signal_peer_if_sleeping(out);
                Some(Ok(()))
            }
            Ok(Err(Full)) | Err(_) => None,
        }
    }

    /// Queues a job; if nothing is ahead of it, pumps right away in the caller's thread.
    fn submit(&self, job: Job, internal: bool) -> Result<(), PostError> {
        let mut out = lock(&self.out);
        // Checked under the lock `fail_outbound` drains with, so no job slips in after the
        // drain. Internal jobs (answers to the peer) too: a peer that left reads no answer.
        if self.is_down() {
            return Err(PostError::Closed);
        }
        if !internal && out.jobs.len() - out.internal >= self.limits.max_jobs {
            return Err(PostError::QueueFull);
        }
        if internal {
            out.internal += 1;
        }
        out.jobs.push_back(job);
        let idle = out.jobs.len() == 1;
        if idle {
            self.pump(&mut out);
        } else {
            self.jobs_queued.store(out.jobs.len(), Ordering::Relaxed);
        }
        if !out.jobs.is_empty() {
            // The rest is the progress thread's.
            sys::eventfd_signal(self.my_efd.as_raw_fd());
        }
        Ok(())
    }

    /// Pushes as many records of queued jobs as fit. Returns whether anything was pushed.
    fn pump(&self, out: &mut Outbound) -> bool {
        let mut pushed = false;
        let max = out.producer.max_payload() as u64 - 8;
        while let Some(job) = out.jobs.front_mut() {
            let r = Self::pump_one(&self.registry, &mut out.producer, job, max);
            match r {
                Ok(Ok(done)) => {
                    pushed = true;
                    if done {
                        let job = out.jobs.pop_front().expect("front exists");
                        self.finish_job(out, job);
                    }
                }
                Ok(Err(Full)) => break,
                Err(_) => {
                    // `out` is held: the progress thread fails the connection.
                    self.needs_fail.store(true, Ordering::Release);
                    sys::eventfd_signal(self.my_efd.as_raw_fd());
                    break;
                }
            }
        }
        if pushed {
            self.signal_peer_if_sleeping(out);
        }
        self.jobs_queued.store(out.jobs.len(), Ordering::Relaxed);
        pushed
    }

    fn finish_job(&self, out: &mut Outbound, job: Job) {
        match job.kind {
            JobKind::Send { token, .. } => {
                let r = if job.sent == job.total {
                    Ok(job.total as u32)
                } else {
                    Err(WsaError::Fault) // a source registration vanished mid-message
                };
                self.complete(token, Op::Send, r);
            }
            JobKind::Write { token, op, .. } if job.sent < job.total => {
                lock(&self.pending).remove(&op);
                self.complete(token, Op::RdmaWrite, Err(WsaError::Fault));
            }
            // A local registration vanished before the request went out: never sent.
            JobKind::Direct { op, .. } if job.sent < job.total => {
                let p = lock(&self.pending).remove(&op);
                self.complete_pending(p, Err(WsaError::Fault));
            }
            JobKind::ReadResp { .. } | JobKind::Ack { .. } => out.internal -= 1,
            _ => {}
        }
    }

    /// One record of `job`. `Ok(Ok(true))` when the job is complete.
    fn pump_one(
        registry: &Registry,
        p: &mut Producer,
        job: &mut Job,
        max: u64,
    ) -> Result<Result<bool, Full>, Corrupt> {
        match &job.kind {
            JobKind::Send { sges, .. } => {
                let n = (job.total - job.sent).min(max);
                let mut flags = if job.sent == 0 { FIRST } else { 0 };
                if job.sent + n == job.total {
                    flags |= LAST;
                }
                let g = registry.lock();
                let parts = pieces(sges, job.sent, n);
                let valid = sges.iter().all(|s| {
                    g.check_local(s.handle.raw(), s.addr, s.len as u64, MemAccess::READ)
                        .is_some()
                });
                let header = Header {
                    kind: SEND,
                    flags: if valid {
                        flags
                    } else {
                        (FIRST * (job.sent == 0) as u16) | LAST | ABORT
                    },
                    b: job.total,
                    ..Header::default()
                };
                let raw: SmallVec<[(*const u8, usize); 8]> = if valid {
                    parts.map(|(a, l)| (a as *const u8, l)).collect()
                } else {
                    SmallVec::new()
                };
                // SAFETY: every piece lies in a registration checked under `g`, which stays
                // locked (deregistration waits) for the copy.
                match unsafe { p.push_raw(header, &raw) }? {
                    Err(Full) => Ok(Err(Full)),
                    Ok(()) if valid => {
                        job.sent += n;
                        Ok(Ok(job.sent == job.total))
                    }
                    Ok(()) => Ok(Ok(true)),
                }
            }
            JobKind::Write {
                sges,
                key,
                offset,
                op,
                ..
            } => {
                let first = job.sent == 0;
                let room = if first { max - 8 } else { max };
                let n = (job.total - job.sent).min(room);
                let mut flags = if first { FIRST } else { 0 };
                if job.sent + n == job.total {
                    flags |= LAST;
                }
                let g = registry.lock();
                let valid = sges.iter().all(|s| {
                    g.check_local(s.handle.raw(), s.addr, s.len as u64, MemAccess::READ)
                        .is_some()
                });
                if !valid {
                    // Tell the target to discard the rest; the op completes with an error.
                    let h = Header {
                        kind: WRITE,
                        flags: LAST | ABORT | if first { FIRST } else { 0 },
                        token: *op,
                        a: *key,
                        b: offset + job.sent,
                        ..Header::default()
                    };
                    let total = job.total.to_le_bytes();
                    let parts: &[&[u8]] = if first { &[&total] } else { &[] };
                    return match p.push(h, parts)? {
                        Err(Full) => Ok(Err(Full)),
                        Ok(()) => Ok(Ok(true)),
                    };
                }
                let total = job.total.to_le_bytes();
                let mut raw: SmallVec<[(*const u8, usize); 8]> = SmallVec::new();
                if first {
                    raw.push((total.as_ptr(), 8));
                }
                raw.extend(pieces(sges, job.sent, n).map(|(a, l)| (a as *const u8, l)));
                let h = Header {
                    kind: WRITE,
                    flags,
                    token: *op,
                    a: *key,
                    b: offset + job.sent,
                    ..Header::default()
                };
                // SAFETY: `total` is a live local; every other piece lies in a registration
                // checked under `g`, held for the copy.
                match unsafe { p.push_raw(h, &raw) }? {
                    Err(Full) => Ok(Err(Full)),
                    Ok(()) => {
                        job.sent += n;
                        Ok(Ok(job.sent == job.total))
                    }
                }
            }
            JobKind::ReadReq {
                key,
                offset,
                len,
                op,
            } => {
                let h = Header {
                    kind: READ_REQ,
                    token: *op,
                    a: *key,
                    b: *offset,
                    ..Header::default()
                };
                match p.push(h, &[&len.to_le_bytes()])? {
                    Err(Full) => Ok(Err(Full)),
                    Ok(()) => Ok(Ok(true)),
                }
            }
            JobKind::ReadResp {
                op,
                key,
                offset,
                len,
                status,
            } => {
                let n = (job.total - job.sent).min(max);
                let mut flags = if job.sent == 0 { FIRST } else { 0 };
                if job.sent + n == job.total {
                    flags |= LAST;
                }
                let g = registry.lock();
                let src = if *status == 0 {
                    g.check_remote(*key, offset + job.sent, n, MemAccess::READ)
                } else {
                    None
                };
                let (status, flags, raw): (u32, u16, SmallVec<[(*const u8, usize); 1]>) = match src
                {
                    Some(addr) => (
                        0,
                        flags,
                        smallvec::smallvec![(addr as *const u8, n as usize)],
                    ),
                    None => {
                        let st = if *status != 0 {
                            *status
                        } else {
                            WsaError::Fault.code() as u32
                        };
                        (st, flags | LAST, SmallVec::new())
                    }
                };
                let h = Header {
                    kind: READ_DATA,
                    flags,
                    token: *op,
                    a: status as u64,
                    b: job.sent,
                    ..Header::default()
                };
                let _ = len;
                // SAFETY: the source lies in a registration checked under `g`, held.
                match unsafe { p.push_raw(h, &raw) }? {
                    Err(Full) => Ok(Err(Full)),
                    Ok(()) => {
                        if status != 0 {
                            return Ok(Ok(true));
                        }
                        job.sent += n;
                        Ok(Ok(job.sent == job.total))
                    }
                }
            }
            JobKind::Direct {
                kind,
                sges,
                key,
                offset,
                op,
            } => {
                let need = if *kind == SC_WRITE {
                    MemAccess::READ
                } else {
                    MemAccess::WRITE
                };
                let g = registry.lock();
                let valid = sges.iter().all(|s| {
                    g.check_local(s.handle.raw(), s.addr, s.len as u64, need)
                        .is_some()
                });
                drop(g);
                if !valid {
                    // `finish_job` completes it with an error (sent < total).
                    return Ok(Ok(true));
                }
                let mut payload = [0u8; direct_len(MAX_PIECES)];
                let total = total_len(sges).unwrap_or(0);
                payload[..8].copy_from_slice(&total.to_le_bytes());
                for (i, s) in sges.iter().enumerate() {
                    let at = direct_len(i);
                    payload[at..at + 8].copy_from_slice(&s.addr.to_le_bytes());
                    payload[at + 8..at + 16].copy_from_slice(&(s.len as u64).to_le_bytes());
                }
                let h = Header {
                    kind: *kind,
                    token: *op,
                    a: *key,
                    b: *offset,
                    ..Header::default()
                };
                match p.push(h, &[&payload[..direct_len(sges.len())]])? {
                    Err(Full) => Ok(Err(Full)),
                    Ok(()) => {
                        job.sent = job.total;
                        Ok(Ok(true))
                    }
                }
            }
            JobKind::Ack { op, status, bytes } => {
                let h = Header {
                    kind: ACK,
                    token: *op,
                    a: *status as u64,
                    b: *bytes,
                    ..Header::default()
                };
                match p.push(h, &[])? {
                    Err(Full) => Ok(Err(Full)),
                    Ok(()) => Ok(Ok(true)),
                }
            }
            JobKind::Close => match p.push(
                Header {
                    kind: CLOSE,
                    ..Header::default()
                },
                &[],
            )? {
                Err(Full) => Ok(Err(Full)),
                Ok(()) => Ok(Ok(true)),
            },
        }
    }

    /// Consumes inbound records until the ring is empty, a message waits for a receive, or
    /// `budget` records were handled. Returns whether anything was consumed.
    fn consume(&self, budget: usize) -> bool {
        self.consume_until_blocked(budget).0
    }

    /// [`consume`](Self::consume), also reporting whether it stopped at a record that must
    /// wait (for a posted receive or for outbound room).
    fn consume_until_blocked(&self, budget: usize) -> (bool, bool) {
        self.consume_locked(lock(&self.inb), budget, None)
    }

    /// The consuming loop, with the inbound lock already taken. Receive completions go to
    /// `sink` when given (and nothing older is queued), to the completion queue otherwise.
    fn consume_locked(
        &self,
        mut inb: MutexGuard<'_, Inbound>,
        budget: usize,
        mut sink: Option<&mut Sink<'_>>,
    ) -> (bool, bool) {
        let mut did = false;
        let mut blocked = false;
        let mut empty = false;
        for _ in 0..budget.min(CONSUME_BUDGET) {
            if self.inbound_ended() {
                break; // nothing after the end is read (a peer may write on)
            }
            let h = match inb.consumer.peek() {
                Ok(Some(h)) => h,
                Ok(None) => {
                    empty = true;
                    break;
                }
                Err(_) => {
                    self.flush_done(&mut inb, sink);
                    drop(inb);
                    self.break_connection();
                    return (true, false);
                }
            };
            match self.handle(&mut inb, &h) {
                Ok(true) => {
                    inb.consumer.consume(&h);
                    did = true;
                }
                Ok(false) => {
                    // Waits for a posted receive or for outbound room.
                    blocked = true;
                    break;
                }
                Err(_) => {
                    self.flush_done(&mut inb, sink.take());
                    drop(inb);
                    self.break_connection();
                    return (true, false);
                }
            }
        }
        // The peer left without closing and its last record is consumed: the receives left
        // will never be filled. The ring is looked at again after the flag is read: the
        // empty look above may predate records the peer sealed before it left.
        if empty
            && self.peer_gone.load(Ordering::Acquire)
            && matches!(inb.consumer.peek(), Ok(None))
        {
            self.end_inbound(&mut inb, WsaError::ConnReset);
        }
        self.flush_done(&mut inb, sink);
        self.head_seen
            .store(inb.consumer.position(), Ordering::Relaxed);
        (did, blocked)
    }

    /// Moves queued completions into `sink` while it has room. The check is inlined into
    /// `poll` (it runs three times per call, mostly to find nothing).
    #[inline]
    fn drain_cq(&self, sink: &mut Sink<'_>) {
        if sink.n < sink.out.len() && self.cq_len.load(Ordering::Acquire) != 0 {
            self.drain_cq_locked(sink);
        }
    }

    fn drain_cq_locked(&self, sink: &mut Sink<'_>) {
        let mut cq = lock(&self.cq);
        let n = (sink.out.len() - sink.n).min(cq.len());
        for (slot, c) in sink.out[sink.n..sink.n + n].iter_mut().zip(cq.drain(..n)) {
            *slot = c;
        }
        sink.n += n;
        self.cq_len.store(cq.len(), Ordering::Release);
    }

    /// A receive completion made while consuming: kept in order in `inb.done` until the
    /// pass ends (see [`flush_done`](Self::flush_done)).
    fn deliver(&self, inb: &mut Inbound, token: u64, result: Result<u32, WsaError>) {
        inb.done.push(Completion::new(token, Op::Recv, result));
    }

    /// Hands the pass's receive completions to `sink` while it has room and the queue holds
    /// nothing older; queues the rest under one lock.
    fn flush_done(&self, inb: &mut Inbound, sink: Option<&mut Sink<'_>>) {
        if inb.done.is_empty() {
            return;
        }
        let mut from = 0;
        if let Some(sink) = sink {
            if self.cq_len.load(Ordering::Acquire) == 0 {
                let n = (sink.out.len() - sink.n).min(inb.done.len());
                sink.out[sink.n..sink.n + n].copy_from_slice(&inb.done[..n]);
                sink.n += n;
                from = n;
            }
        }
        if from < inb.done.len() {
            let mut cq = lock(&self.cq);
            cq.extend(inb.done[from..].iter().copied());
            self.cq_len.store(cq.len(), Ordering::Release);
            if self.cq_waiters.load(Ordering::Relaxed) > 0 {
                self.cq_ready.notify_all();
            }
        }
        inb.done.clear();
    }

    /// Handles one record; `Ok(false)` leaves it in the ring for later.
    fn handle(&self, inb: &mut Inbound, h: &Header) -> Result<bool, Corrupt> {
        match h.kind {
            SEND => self.on_send(inb, h),
            WRITE => self.on_write(inb, h),
            ACK => self.on_ack(h),
            SC_WRITE | SC_READ => self.on_direct(inb, h),
            READ_REQ => {
                if h.len != 8 {
                    return Err(Corrupt("READ_REQ payload is not a length"));
                }
                {
                    let out = lock(&self.out);
                    if out.internal >= self.limits.max_inflight {
                        return Ok(false); // back-pressure on a flood of requests
                    }
                }
                let mut len = [0u8; 8];
                inb.consumer.payload(h, 0, &mut len);
                let len = u64::from_le_bytes(len);
                let ok = self
                    .registry
                    .lock()
                    .check_remote(h.a, h.b, len, MemAccess::READ)
                    .is_some()
                    && len <= u32::MAX as u64;
                let status = if ok { 0 } else { WsaError::Fault.code() as u32 };
                let job = Job {
                    kind: JobKind::ReadResp {
                        op: h.token,
                        key: h.a,
                        offset: h.b,
                        len,
                        status,
                    },
                    total: if ok { len } else { 0 },
                    sent: 0,
                };
                let _ = self.submit(job, true);
                Ok(true)
            }
            READ_DATA => self.on_read_data(inb, h),
            CLOSE => {
                // The peer's orderly end: everything it sent is in the records before this
                // one, all consumed by now. The receives left learn of the end (WSAEDISCON);
                // what waits for the peer never gets an answer. Unless the close cut a
                // message short (the peer's close aborted a send under way): data was lost,
                // so the end is a reset, not an end of stream.
                self.broken.store(true, Ordering::Release);
                self.peer_gone.store(true, Ordering::Release);
                let end = if inb.incoming.is_some() {
                    WsaError::ConnReset
                } else {
                    WsaError::Discon
                };
                self.end_inbound(inb, end);
                self.fail_outbound(WsaError::ConnReset);
                Ok(true)
            }
            _ => Err(Corrupt("unknown record kind")),
        }
    }

    fn on_send(&self, inb: &mut Inbound, h: &Header) -> Result<bool, Corrupt> {
        let len = h.len as u64;
        if h.flags & FIRST != 0 {
            if inb.incoming.is_some() {
                return Err(Corrupt("a message started inside another"));
            }
            let Some(recv) = self.take_recv(inb) else {
                return Ok(false); // waits for a receive: nothing is dropped
            };
            let capacity = total_len(&recv.sges).unwrap_or(0);
            inb.incoming = Some(Incoming {
                recv,
                total: h.b,
                received: 0,
                capacity,
                error: None,
            });
        }
        let inc = match inb.incoming.as_mut() {
            Some(i) => i,
            None => return Err(Corrupt("message continuation without a start")),
        };
        if h.flags & ABORT != 0 {
            inc.error = Some(WsaError::ConnReset);
        } else {
            // Peer numbers: checked, a wrap is corruption like any other lie.
            if inc
                .received
                .checked_add(len)
                .is_none_or(|end| end > inc.total)
            {
                return Err(Corrupt("message longer than announced"));
            }
            let (sges, at, capacity) = (&inc.recv.sges, inc.received, inc.capacity);
            if let Some(e) = self.fill(&mut inb.cache, &inb.consumer, h, sges, at, capacity) {
                inc.error = Some(e);
            }
            inc.received += len;
        }
        if h.flags & LAST != 0 {
            let inc = inb.incoming.take().expect("present");
            let n = inc.received.min(inc.capacity) as u32;
            let r = match inc.error {
                None if inc.received == inc.total => Ok(n),
                None => {
                    // The receive was taken out of the queue: complete it before failing.
                    self.deliver(inb, inc.recv.token, Err(WsaError::ConnReset));
                    return Err(Corrupt("message shorter than announced"));
                }
                Some(e) => Err(e),
            };
            self.deliver(inb, inc.recv.token, r);
        }
        Ok(true)
    }

    /// The common case of a receive, straight through: the next record is a whole message,
    /// nothing is half received or waiting to be handed over, a receive is already taken
    /// over, and the polling caller's array has room with nothing older queued. The record
    /// is checked and copied exactly as [`on_send`](Self::on_send) would, and its completion
    /// goes into the caller's array. Returns `false`, having consumed nothing, when the
    /// general path must take the record (or there is none).
    #[inline]
    fn receive_fast(&self, inb: &mut Inbound, sink: &mut Sink<'_>) -> bool {
        if inb.incoming.is_some()
            || inb.recvs.is_empty()
            || !inb.done.is_empty()
            || sink.n == sink.out.len()
            || self.cq_len.load(Ordering::Acquire) != 0
            || self.inbound_ended()
        {
            return false;
        }
        let h = match inb.consumer.peek() {
            Ok(Some(h)) => h,
            _ => return false,
        };
        if h.kind != SEND || h.flags & (FIRST | LAST | ABORT) != FIRST | LAST || h.b != h.len as u64
        {
            return false;
        }
        let recv = inb.recvs.pop_front().expect("checked not empty");
        inb.taken += 1;
        self.recvs_taken.store(inb.taken, Ordering::Release);
        let capacity = total_len(&recv.sges).unwrap_or(0);
        let result = match self.fill(&mut inb.cache, &inb.consumer, &h, &recv.sges, 0, capacity) {
            None => Ok(h.len),
            Some(e) => Err(e),
        };
        inb.consumer.consume(&h);
        self.head_seen
            .store(inb.consumer.position(), Ordering::Relaxed);
        sink.out[sink.n] = Completion::new(recv.token, Op::Recv, result);
        sink.n += 1;
        true
    }

    /// The oldest posted receive, taking over everything posted so far when the private
    /// queue is empty (the emptied shared queue keeps its room).
    fn take_recv(&self, inb: &mut Inbound) -> Option<PostedRecv> {
        if inb.recvs.is_empty() {
            std::mem::swap(&mut lock(&self.recvs).queue, &mut inb.recvs);
        }
        let recv = inb.recvs.pop_front()?;
        inb.taken += 1;
        self.recvs_taken.store(inb.taken, Ordering::Release);
        Some(recv)
    }

    /// Copies the payload of send record `h` into a receive of `sges` (`capacity` bytes), at
    /// byte `received` of the message. `cache` and `consumer` are the inbound state's; the
    /// caller holds the `inb` lock. Returns what fails the receive: WSAEMSGSIZE when it
    /// overflows (what fits is copied), WSAEFAULT when its memory is no longer registered
    /// for writing (nothing is copied).
    fn fill(
        &self,
        cache: &mut registry::Cache,
        consumer: &Consumer,
        h: &Header,
        sges: &[Sge],
        received: u64,
        capacity: u64,
    ) -> Option<WsaError> {
        let len = h.len as u64;
        let room = capacity.saturating_sub(received).min(len);
        let mut error = (room < len).then_some(WsaError::MsgSize);
        if room > 0 {
            let valid = sges
                .iter()
                .all(|s| self.registry.sge_cached(cache, s, MemAccess::WRITE));
            if valid {
                let mut from = 0usize;
                for (addr, n) in pieces(sges, received, room) {
                    // SAFETY: the destination lies in a write-access registration checked
                    // through `cache`, part of `inb`, which the caller keeps locked for the
                    // copy (a deregistration quiesces that lock before returning).
                    unsafe { consumer.payload_raw(h, from, addr as *mut u8, n) };
                    from += n;
                }
            } else {
                error = Some(WsaError::Fault);
            }
        }
        error
    }

    fn on_write(&self, inb: &mut Inbound, h: &Header) -> Result<bool, Corrupt> {
        let mut data_at = 0usize;
        if h.flags & FIRST != 0 {
            if inb.write.is_some() || h.len < 8 {
                return Err(Corrupt("bad RDMA write start"));
            }
            {
                let out = lock(&self.out);
                if out.internal >= self.limits.max_inflight {
                    return Ok(false);
                }
            }
            let mut t = [0u8; 8];
            inb.consumer.payload(h, 0, &mut t);
            let total = u64::from_le_bytes(t);
            // Validate the whole range once, before any byte moves.
            let ok = total <= u32::MAX as u64
                && self
                    .registry
                    .lock()
                    .check_remote(h.a, h.b, total, MemAccess::WRITE)
                    .is_some();
            inb.write = Some(IncomingWrite {
                op: h.token,
                key: h.a,
                start: h.b,
                total,
                received: 0,
                status: if ok { 0 } else { WsaError::Fault.code() as u32 },
            });
            data_at = 8;
        }
        let w = match inb.write.as_mut() {
            Some(w) => w,
            None => return Err(Corrupt("RDMA write continuation without a start")),
        };
        if w.op != h.token || w.key != h.a {
            return Err(Corrupt("RDMA write chunks interleaved"));
        }
        let n = h.len as u64 - data_at as u64;
        if h.flags & ABORT != 0 {
            if w.status == 0 {
                w.status = WsaError::ConnReset.code() as u32;
            }
        } else {
            // `start` and `total` came from the peer: checked, a wrap is corruption.
            let at = w.start.checked_add(w.received);
            if at != Some(h.b) || w.received.checked_add(n).is_none_or(|end| end > w.total) {
                return Err(Corrupt("RDMA write chunk out of sequence"));
            }
            if w.status == 0 && n > 0 {
                let g = self.registry.lock();
                match g.check_remote(w.key, h.b, n, MemAccess::WRITE) {
                    // SAFETY: the destination was checked under `g` (held) against the
                    // registration's bounds and write right.
                    Some(addr) => unsafe {
                        inb.consumer
                            .payload_raw(h, data_at, addr as *mut u8, n as usize)
                    },
                    // Deregistered while in flight: the rest is discarded.
                    None => w.status = WsaError::Fault.code() as u32,
                }
            }
            w.received += n;
        }
        if h.flags & LAST != 0 {
            let w = inb.write.take().expect("present");
            let bytes = if w.status == 0 { w.received } else { 0 };
            let job = Job {
                kind: JobKind::Ack {
                    op: w.op,
                    status: w.status,
                    bytes,
                },
                total: 0,
                sent: 0,
            };
            let _ = self.submit(job, true);
        }
        Ok(true)
    }

    fn on_read_data(&self, inb: &mut Inbound, h: &Header) -> Result<bool, Corrupt> {
        let mut pending = lock(&self.pending);
        let (token, status_done) = match pending.get_mut(&h.token) {
            Some(Pending::Read { direct: true, .. }) => {
                return Err(Corrupt("read data for a single-copy read"))
            }
            Some(Pending::Read {
                token,
                sges,
                total,
                received,
                direct: false,
            }) => {
                let n = h.len as u64;
                if h.a == 0 {
                    if h.b != *received || received.checked_add(n).is_none_or(|end| end > *total) {
                        return Err(Corrupt("read data out of sequence"));
                    }
                    let g = self.registry.lock();
                    let valid = sges.iter().all(|s| {
                        g.check_local(s.handle.raw(), s.addr, s.len as u64, MemAccess::WRITE)
                            .is_some()
                    });
                    if valid {
                        let mut from = 0usize;
                        for (addr, len) in pieces(sges, *received, n) {
                            // SAFETY: destination checked under `g` (held) with write access.
                            unsafe { inb.consumer.payload_raw(h, from, addr as *mut u8, len) };
                            from += len;
                        }
                        *received += n;
                    }
                    let done = if !valid {
                        Some(Err(WsaError::Fault))
                    } else if h.flags & LAST != 0 {
                        if *received == *total {
                            Some(Ok(*total as u32))
                        } else {
                            return Err(Corrupt("read data shorter than requested"));
                        }
                    } else {
                        None
                    };
                    (*token, done)
                } else {
                    let e = WsaError::from_code(h.a as i32).unwrap_or(WsaError::Fault);
                    (*token, Some(Err(e)))
                }
            }
            Some(Pending::Write { .. }) => return Err(Corrupt("read data for a write")),
            // Data for an operation aborted locally: discard.
            None => return Ok(true),
        };
        if let Some(r) = status_done {
            pending.remove(&h.token);
            drop(pending);
            self.complete(token, Op::RdmaRead, r);
        }
        Ok(true)
    }

    /// Completes a pending RDMA operation (taken out of the table) with `result`.
    fn complete_pending(&self, p: Option<Pending>, result: Result<u32, WsaError>) {
        match p {
            Some(Pending::Write { token, .. }) => self.complete(token, Op::RdmaWrite, result),
            Some(Pending::Read { token, .. }) => self.complete(token, Op::RdmaRead, result),
            None => {}
        }
    }

    /// The result an ACK reports for an operation of `total` bytes. For a single-copy
    /// one (`local` = its SGEs, needing `need`), the peer must report every byte and our
    /// registrations must still stand.
    fn ack_result(
        &self,
        h: &Header,
        total: u64,
        local: Option<&[Sge]>,
        need: MemAccess,
    ) -> Result<u32, WsaError> {
        if h.a != 0 {
            return Err(WsaError::from_code(h.a as i32).unwrap_or(WsaError::Fault));
        }
        if let Some(sges) = local {
            if h.b != total {
                return Err(WsaError::Fault);
            }
            let g = self.registry.lock();
            let valid = sges.iter().all(|s| {
                g.check_local(s.handle.raw(), s.addr, s.len as u64, need)
                    .is_some()
            });
            if !valid {
                return Err(WsaError::Fault);
            }
        }
        Ok(total as u32)
    }

    fn on_ack(&self, h: &Header) -> Result<bool, Corrupt> {
        let mut pending = lock(&self.pending);
        match pending.remove(&h.token) {
            Some(Pending::Write {
                token,
                total,
                direct,
            }) => {
                drop(pending);
                let r = self.ack_result(h, total, direct.as_deref(), MemAccess::READ);
                self.complete(token, Op::RdmaWrite, r);
            }
            Some(Pending::Read {
                token,
                sges,
                total,
                direct: true,
                ..
            }) => {
                drop(pending);
                let r = self.ack_result(h, total, Some(&sges), MemAccess::WRITE);
                self.complete(token, Op::RdmaRead, r);
            }
            Some(other) => {
                pending.insert(h.token, other);
                return Err(Corrupt("ACK for a bounced read"));
            }
            // An operation failed or aborted locally meanwhile: nothing to complete.
            None => {}
        }
        Ok(true)
    }

    /// Serves a single-copy request of the peer (`SC_WRITE` / `SC_READ`): validates it,
    /// copies, queues the ACK.
    fn on_direct(&self, inb: &mut Inbound, h: &Header) -> Result<bool, Corrupt> {
        let Some(peer) = self.peer.as_ref() else {
            return Err(Corrupt(
                "single-copy request on a connection that refused them",
            ));
        };
        let len = h.len as usize;
        if len < direct_len(0)
            || !(len - direct_len(0)).is_multiple_of(16)
            || len > direct_len(MAX_PIECES)
        {
            return Err(Corrupt("malformed single-copy request"));
        }
        {
            let out = lock(&self.out);
            if out.internal >= self.limits.max_inflight {
                return Ok(false); // back-pressure on a flood of requests
            }
        }
        // Copied once out of shared memory, then parsed.
        let mut raw = [0u8; direct_len(MAX_PIECES)];
        inb.consumer.payload(h, 0, &mut raw[..len]);
        let word = |at: usize| {
            let mut v = [0u8; 8];
            v.copy_from_slice(&raw[at..at + 8]);
            u64::from_le_bytes(v)
        };
        let total = word(0);
        let n = (len - direct_len(0)) / 16;
        let mut pieces = [(0u64, 0u64); MAX_PIECES];
        for (i, p) in pieces.iter_mut().take(n).enumerate() {
            *p = (word(direct_len(i)), word(direct_len(i) + 8));
        }
        let direction = if h.kind == SC_WRITE {
            Direction::Pull
        } else {
            Direction::Push
        };
        let r = direct::serve(
            &self.registry,
            peer,
            direction,
            h.a,
            h.b,
            total,
            &pieces[..n],
        );
        let (status, bytes) = match r {
            Ok(b) => (0, b),
            Err(e) => (e.code() as u32, 0),
        };
        let job = Job {
            kind: JobKind::Ack {
                op: h.token,
                status,
                bytes,
            },
            total: 0,
            sent: 0,
        };
        let _ = self.submit(job, true);
        Ok(true)
    }

    /// Completes everything still pending with `error`, exactly once (each item is taken
    /// out of its queue under its lock before it completes).
    fn fail_all(&self, error: WsaError) {
        self.broken.store(true, Ordering::Release);
        self.end_inbound(&mut lock(&self.inb), error);
        self.fail_outbound(error);
    }

    /// Ends the inbound side: every receive not yet completed — the one being filled, those
    /// taken over, those still posted, oldest first — completes with `error`, and so does
    /// every receive posted from now on (`post_recv` reads `inbound_end`). Once only: the
    /// first end wins. Both queues are drained under `inb`, in the consumer's lock order
    /// (inb then recvs), and under `recvs` the pass's earlier receive completions, then
    /// these, are queued before the end is published: no receive slips between the queues
    /// unseen, and one posted after the end completes after them.
    fn end_inbound(&self, inb: &mut Inbound, error: WsaError) {
        if self.inbound_end.load(Ordering::Acquire) != 0 {
            return;
        }
        let mut all: Vec<PostedRecv> = inb.incoming.take().map(|i| i.recv).into_iter().collect();
        all.extend(inb.recvs.drain(..));
        let mut recvs = lock(&self.recvs);
        all.extend(recvs.queue.drain(..));
        for r in all {
            self.deliver(inb, r.token, Err(error));
        }
        self.flush_done(inb, None);
        self.inbound_end.store(error.code(), Ordering::Release);
        drop(recvs);
    }

    /// Whether the inbound side has ended (nothing more will be received).
    fn inbound_ended(&self) -> bool {
        self.inbound_end.load(Ordering::Acquire) != 0
    }

    /// Fails the outbound side with `error`: RDMA operations waiting for the peer and jobs
    /// not yet in the ring complete with it, and later sends and RDMA are refused.
    fn fail_outbound(&self, error: WsaError) {
        self.broken.store(true, Ordering::Release);
        let pending: Vec<Pending> = lock(&self.pending).drain().map(|(_, p)| p).collect();
        for p in pending {
            match p {
                Pending::Write { token, .. } => self.complete(token, Op::RdmaWrite, Err(error)),
                Pending::Read { token, .. } => self.complete(token, Op::RdmaRead, Err(error)),
            }
        }
        let jobs: Vec<Job> = {
            let mut out = lock(&self.out);
            out.internal = 0;
            self.jobs_queued.store(0, Ordering::Relaxed);
            out.jobs.drain(..).collect()
        };
        for j in jobs {
            match j.kind {
                JobKind::Send { token, .. } => self.complete(token, Op::Send, Err(error)),
                JobKind::Write { token, .. } => {
                    // Its pending entry was failed above if it had one.
                    let _ = token;
                }
                _ => {}
            }
        }
        self.cq_ready.notify_all();
    }

    /// The connection is unusable (the peer broke the protocol, or a ring failed): both
    /// sides end with WSAECONNRESET. Always runs: the outbound side may have died already
    /// (the peer left) while the inbound side still drained, and what is already failed
    /// has left its queues (`fail_all` completes each item once).
    fn break_connection(&self) {
        self.fail_all(WsaError::ConnReset);
    }

    fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    /// Whether an application thread polled within the last 2 ms (it then drives progress
    /// itself, and the progress thread stays out of its way).
    fn poller_active(&self) -> bool {
        let last = self.last_poll.load(Ordering::Relaxed);
        last != 0 && self.now_ns().saturating_sub(last) < 2_000_000
    }

    /// Progress from the application's `poll`: consume and pump without waiting for a lock
    /// the progress thread holds. No thread hand-off on the hot path, and no wake-up
    /// syscalls from the peer while we poll (the sleep announcement is withdrawn).
    fn progress_inline(&self, sink: &mut Sink<'_>) {
        // Reading the clock on every poll costs as much as the poll itself: refresh the
        // stamp every 32 polls (a spinning poller does that every few microseconds, far
        // inside the 2 ms window).
        // A plain load and store, not a locked add: concurrent pollers may lose a count,
        // which only moves the next clock reading.
        let polls = self.polls.load(Ordering::Relaxed);
        self.polls.store(polls.wrapping_add(1), Ordering::Relaxed);
        if polls.is_multiple_of(32) {
            self.last_poll
                .store(self.now_ns().max(1), Ordering::Relaxed);
        }
        if self.closed.load(Ordering::Acquire) || self.inbound_ended() {
            return;
        }
        // Locks only when there is something to do: a record not yet consumed (or one
        // waiting for a receive), or a job waiting for ring room.
        if self.watch.sealed(self.head_seen.load(Ordering::Relaxed)) {
            if let Ok(mut inb) = self.inb.try_lock() {
                inb.consumer.woke();
                if !self.receive_fast(&mut inb, sink) {
                    let _ = self.consume_locked(inb, CONSUME_BUDGET, Some(sink));
                }
            }
        }
        if self.jobs_queued.load(Ordering::Relaxed) != 0 {
            if let Ok(mut out) = self.out.try_lock() {
                if !out.jobs.is_empty() {
                    self.pump(&mut out);
                }
            }
        }
    }

    /// The peer hung up. What it sent before it went away stays receivable: records
    /// waiting for a receive are delivered as receives are posted, and the inbound side
    /// ends where the records do — at its CLOSE (WSAEDISCON, a graceful close) or at the
    /// last record of a peer that died (WSAECONNRESET). What waits for an answer from the
    /// peer fails now: acknowledgements already in the ring ahead of any waiting message
    /// are taken first. Bounded: a hostile peer cannot keep this loop reading.
    fn on_hangup(&self) {
        // New sends and RDMA are refused from here on (the endpoint reads as closed before
        // any receive can report the end).
        self.broken.store(true, Ordering::Release);
        self.peer_gone.store(true, Ordering::Release);
        for _ in 0..1024 {
            if !self.consume(64) {
                break;
            }
        }
        self.fail_outbound(WsaError::ConnReset);
    }

    /// The socket whose hang-up `sys::wait` watches for; none once the peer is gone (a
    /// hang-up stays readable, and would keep every wait from sleeping).
    fn hangup_fd(&self) -> RawFd {
        if self.peer_gone.load(Ordering::Acquire) {
            -1
        } else {
            self.socket.as_raw_fd()
        }
    }

    fn progress_loop(self: Arc<Self>) {
        let mut idle = 0u32;
        while !self.stop.load(Ordering::Acquire) {
            if self.needs_fail.swap(false, Ordering::AcqRel) {
                self.break_connection();
            }
            if self.broken.load(Ordering::Acquire) && self.inbound_ended() {
                // Nothing more can happen on this connection.
                std::thread::sleep(Duration::from_millis(5));
                if self.stop.load(Ordering::Acquire) {
                    break;
                }
                continue;
            }
            let (mut did, blocked) = self.consume_until_blocked(64);
            {
                let mut out = lock(&self.out);
                if !out.jobs.is_empty() {
                    did |= self.pump(&mut out);
                }
            }
            if did {
                idle = 0;
                continue;
            }
            if self.poller_active() {
                // The application polls and does the work inline: stay parked without
                // announcing it (so the peer makes no wake-up syscalls), checking for
                // hang-up and for the poller going quiet every 10 ms.
                // Stays set while the poller is active (not just across the wait): a `post_recv`
                // that finds it clear signals us, and a signal that lands while we pass
                // through this loop would keep waking us.
                self.poller_mode.store(true, Ordering::Relaxed);
                let r = sys::wait(self.my_efd.as_raw_fd(), self.hangup_fd(), 10);
                sys::eventfd_drain(self.my_efd.as_raw_fd());
                if r.hangup && !self.stop.load(Ordering::Acquire) {
                    self.on_hangup();
                }
                idle = 0;
                continue;
            }
            self.poller_mode.store(false, Ordering::Relaxed);
            idle += 1;
            if idle < 2000 {
                std::hint::spin_loop();
                continue;
            }
            let jobs_waiting = !lock(&self.out).jobs.is_empty();
            let inb = lock(&self.inb);
            // A record waiting for a receive does not keep us awake: `post_recv` signals
            // our eventfd (and the peer's next record brings a wake-up byte).
            let may_sleep = inb.consumer.prepare_sleep(blocked);
            drop(inb);
            if may_sleep {
                let timeout = if jobs_waiting { 1 } else { 50 };
                let r = sys::wait(self.my_efd.as_raw_fd(), self.hangup_fd(), timeout);
                lock(&self.inb).consumer.woke();
                sys::eventfd_drain(self.my_efd.as_raw_fd());
                if r.hangup && !self.stop.load(Ordering::Acquire) {
                    self.on_hangup();
                }
            }
            idle = 0;
        }
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
            progress: Mutex::new(Some(handle)),
        }
    }

    /// How many records from the peer this endpoint has consumed (handled, whatever the
    /// handler made of them): what a hostile-peer test counts to prove its records reached
    /// the handlers.
    pub fn records_received(&self) -> u64 {
        lock(&self.shared.inb).consumer.records()
    }

    /// How the RDMA operations this endpoint posts move their data: single copy when the
    /// peer agreed in the handshake to serve them (and could reach this process), bounce
    /// otherwise. Operations with more SGEs than a single-copy request carries (64)
    /// bounce either way.
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

/// What every RDMA post has worked out before it builds its own job.
struct RdmaStart {
    op: u64,
    key: u64,
    offset: u64,
    total: u64,
    direct: bool,
}

impl RdmaStart {
    /// The single-copy job of `kind` (`SC_WRITE` or `SC_READ`).
    fn direct_job(&self, kind: u16, sges: &[Sge]) -> JobKind {
        JobKind::Direct {
            kind,
            sges: sges.iter().copied().collect(),
            key: self.key,
            offset: self.offset,
            op: self.op,
        }
    }
}

impl LoopbackEndpoint {
    /// The part RDMA write and read share: checks (endpoint usable, descriptor well-formed,
    /// local SGEs registered with `need`), the pending entry that waits for the peer, and
    /// submitting the job — withdrawing the entry if the job cannot be queued.
    fn post_rdma(
        &self,
        sges: &[Sge],
        target: RemoteTarget<'_>,
        need: MemAccess,
        build: impl FnOnce(&RdmaStart) -> (Pending, Job),
    ) -> Result<(), PostError> {
        self.shared.usable()?;
        let key = descriptor_key(target.descriptor).ok_or(PostError::BadDescriptor)?;
        let total = self.shared.check_sges(sges, need)?;
        let start = RdmaStart {
            op: self.next_op(),
            key,
            offset: target.offset,
            total,
            direct: self.shared.direct(sges),
        };
        let (pending, job) = build(&start);
        self.shared.add_pending(start.op, pending)?;
        match self.shared.submit(job, false) {
            Ok(()) => Ok(()),
            // Whoever takes the pending entry owns the completion: if the connection failed
            // in between, `fail_all` took it and completed the operation with an error, so
            // the post stands (one completion, no error returned as well).
            Err(e) => match lock(&self.shared.pending).remove(&start.op) {
                Some(_) => Err(e),
                None => Ok(()),
            },
        }
    }
}

impl Endpoint for LoopbackEndpoint {
    fn post_send(&self, sges: &[Sge], token: u64) -> Result<(), PostError> {
        self.shared.usable()?;
        if let Some(r) = self.shared.send_now(sges, token) {
            return r;
        }
        let total = self.shared.check_sges(sges, MemAccess::READ)?;
        let job = Job {
            kind: JobKind::Send {
                sges: sges.iter().copied().collect(),
                token,
            },
            total,
            sent: 0,
        };
        self.shared.submit(job, false)
    }

    fn post_recv(&self, sges: &[Sge], token: u64) -> Result<(), PostError> {
        // Not `usable()`: receives go on after the peer left, until the inbound side ends.
        if self.shared.closed.load(Ordering::Acquire) {
            return Err(PostError::Closed);
        }
        self.shared.cq_room()?;
        {
            let mut guard = lock(&self.shared.recvs);
            let recvs = &mut *guard;
            let cache = &mut recvs.cache;
            let registry = &self.shared.registry;
            check_sge_list(sges, self.shared.limits.max_sge, |s| {
                registry.sge_cached(cache, s, MemAccess::WRITE)
            })?;
            match self.shared.inbound_end.load(Ordering::Acquire) {
                0 => {}
                code if code == WsaError::Discon.code() => {
                    // After a graceful close every receive reports the end, as a stream
                    // socket's receive keeps returning zero bytes; completed under `recvs`,
                    // so receives keep the order they were posted in.
                    self.shared.complete(token, Op::Recv, Err(WsaError::Discon));
                    return Ok(());
                }
                _ => return Err(PostError::Closed),
            }
            let taken = self.shared.recvs_taken.load(Ordering::Acquire);
            if recvs.posted.wrapping_sub(taken) >= self.shared.limits.max_recvs as u64 {
                return Err(PostError::QueueFull);
            }
            recvs.posted += 1;
            recvs.queue.push_back(PostedRecv {
                sges: sges.iter().copied().collect(),
                token,
            });
        }
        // A message may be waiting for exactly this receive: wake the progress thread,
        // unless the application polls (its next poll consumes it; no syscall then).
        if !self.shared.poller_mode.load(Ordering::Relaxed) {
            sys::eventfd_signal(self.shared.my_efd.as_raw_fd());
        }
        Ok(())
    }

    fn rdma_write(
        &self,
        sges: &[Sge],
        target: RemoteTarget<'_>,
        token: u64,
    ) -> Result<(), PostError> {
        self.post_rdma(sges, target, MemAccess::READ, |r| {
            let pending = Pending::Write {
                token,
                total: r.total,
                direct: r.direct.then(|| sges.iter().copied().collect()),
            };
            let (kind, total) = if r.direct {
                (r.direct_job(SC_WRITE, sges), 1)
            } else {
                let kind = JobKind::Write {
                    sges: sges.iter().copied().collect(),
                    key: r.key,
                    offset: r.offset,
                    token,
                    op: r.op,
                };
                (kind, r.total)
            };
            (
                pending,
                Job {
                    kind,
                    total,
                    sent: 0,
                },
            )
        })
    }

    fn rdma_read(
        &self,
        sges: &[Sge],
        target: RemoteTarget<'_>,
        token: u64,
    ) -> Result<(), PostError> {
        self.post_rdma(sges, target, MemAccess::WRITE, |r| {
            let pending = Pending::Read {
                token,
                sges: sges.iter().copied().collect(),
                total: r.total,
                received: 0,
                direct: r.direct,
            };
            let (kind, total) = if r.direct {
                (r.direct_job(SC_READ, sges), 1)
            } else {
                let kind = JobKind::ReadReq {
                    key: r.key,
                    offset: r.offset,
                    len: r.total,
                    op: r.op,
                };
                (kind, 0)
            };
            (
                pending,
                Job {
                    kind,
                    total,
                    sent: 0,
                },
            )
        })
    }

    fn poll(&self, out: &mut [Completion]) -> usize {
        // What is queued first (it is older), then progress, whose receive completions
        // come straight into `out` when nothing is queued, then whatever progress queued.
        let mut sink = Sink { out, n: 0 };
        self.shared.drain_cq(&mut sink);
        self.shared.progress_inline(&mut sink);
        self.shared.drain_cq(&mut sink);
        sink.n
    }

    fn wait(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        for _ in 0..200 {
            if self.shared.cq_len.load(Ordering::Acquire) > 0 {
                return true;
            }
            std::hint::spin_loop();
        }
        let mut cq = lock(&self.shared.cq);
        let waiters = &self.shared.cq_waiters;
        waiters.fetch_add(1, Ordering::Relaxed);
        while cq.is_empty() {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            cq = self
                .shared
                .cq_ready
                .wait_timeout(cq, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        waiters.fetch_sub(1, Ordering::Relaxed);
        !cq.is_empty()
    }

    fn close(&self) {
        if self.shared.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        // Pending work completes with WSA_OPERATION_ABORTED, once.
        let was_broken = self.shared.broken.load(Ordering::Acquire);
        self.shared.fail_all(WsaError::OperationAborted);
        if !was_broken {
            let mut out = lock(&self.shared.out);
            out.jobs.push_back(Job {
                kind: JobKind::Close,
                total: 0,
                sent: 0,
            });
            self.shared.pump(&mut out);
            drop(out);
            sys::wake_peer(self.shared.socket.as_raw_fd());
        }
        self.shared.stop.store(true, Ordering::Release);
        sys::eventfd_signal(self.shared.my_efd.as_raw_fd());
        let _ = self.shared.socket.shutdown(std::net::Shutdown::Both);
        if let Some(h) = lock(&self.progress).take() {
            if h.thread().id() != std::thread::current().id() {
                let _ = h.join();
            }
        }
    }
}

impl Drop for LoopbackEndpoint {
    fn drop(&mut self) {
        self.close();
    }
}
