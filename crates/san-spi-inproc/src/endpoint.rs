//! The data plane: one connection, two endpoints, one lock.
//!
//! Each side of a connection has, under the connection's lock:
//!
//! * its completion queue, and two counters of operations posted and not yet polled
//!   (send side: sends, RDMA writes and reads; receive side) — a post beyond
//!   [`SEND_QUEUE_DEPTH`] or [`RECV_QUEUE_DEPTH`] is `PostError::QueueFull`, so the
//!   completion queue, allocated once, can never overflow;
//! * its receives waiting for a message, oldest first;
//! * its *inbox*, the messages sent to it and not yet received, oldest first: first those
//!   staged (copied into its staging ring; their sends already completed), then those
//!   still queued on the sender (their sends complete when a receive takes them).
//!
//! Invariant: receives wait only while the inbox is empty, and a message is staged only
//! while nothing is queued ahead of it, so both stay in the order they were posted. Every
//! queue is allocated when the connection is made; posting never allocates.

use crate::descriptor::Descriptor;
use crate::mem::{self, Bad, Domain, Ring};
use crate::{
    lock, MAX_SGE, MAX_TRANSFER, RECV_QUEUE_DEPTH, SEND_QUEUE_DEPTH, STAGED_MESSAGES, STAGING_BYTES,
};
use san_spi_core::transport::{
    Completion, Endpoint, MemAccess, MemoryHandle, Op, PostError, RemoteTarget, Sge,
};
use san_spi_core::WsaError;
use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// One end of a connection. Dropping it closes it.
pub struct InprocEndpoint {
    link: Arc<Link>,
    /// Which of `link.sides` is ours (0: the connecting side, 1: the accepted one).
    me: usize,
    /// Our transport's domain: where our SGEs are checked.
    domain: Arc<Domain>,
    /// The peer's domain: where descriptors we are given are resolved, and the peer's
    /// queued sends read from.
    peer_domain: Arc<Domain>,
}

/// What both endpoints of a connection share.
struct Link {
    sides: Mutex<[Side; 2]>,
    /// Signalled whenever a completion is queued on either side.
    ready: Condvar,
}

/// One side's state (see the module documentation).
struct Side {
    open: bool,
    cq: VecDeque<Completion>,
    /// Send-side operations posted and not yet polled.
    sends: usize,
    /// Receives posted and not yet polled.
    recvs_posted: usize,
    recvs: VecDeque<Posted>,
    /// Lengths of the staged messages in `staging`, oldest first.
    staged: VecDeque<usize>,
    staging: Ring,
    /// The peer's sends waiting for our receives.
    queued: VecDeque<Posted>,
}

impl Side {
    fn new() -> Side {
        Side {
            open: true,
            cq: VecDeque::with_capacity(SEND_QUEUE_DEPTH + RECV_QUEUE_DEPTH),
            sends: 0,
            recvs_posted: 0,
            recvs: VecDeque::with_capacity(RECV_QUEUE_DEPTH),
            staged: VecDeque::with_capacity(STAGED_MESSAGES),
            staging: Ring::new(STAGING_BYTES),
            queued: VecDeque::with_capacity(SEND_QUEUE_DEPTH),
        }
    }

    /// Queues a completion; the queue-depth counters guarantee room.
    fn complete(&mut self, token: u64, op: Op, result: Result<u32, WsaError>) {
        self.cq.push_back(Completion::new(token, op, result));
    }
}

/// A posted send or receive: its token, byte count and SGEs, copied (the caller's slice is
/// only borrowed for the call).
#[derive(Clone, Copy)]
struct Posted {
    token: u64,
    len: usize,
    n: usize,
    sges: [Sge; MAX_SGE],
}

impl Posted {
    fn new(list: &[Sge], token: u64, len: usize) -> Posted {
        let unused = Sge {
            handle: MemoryHandle::new(u64::MAX).expect("non-zero"),
            addr: 0,
            len: 0,
        };
        let mut sges = [unused; MAX_SGE];
        sges[..list.len()].copy_from_slice(list);
        Posted {
            token,
            len,
            n: list.len(),
            sges,
        }
    }

    fn sges(&self) -> &[Sge] {
        &self.sges[..self.n]
    }
}

/// A new connection between a client in `client` and a server in `server` (domains).
pub(crate) fn connection(
    client: Arc<Domain>,
    server: Arc<Domain>,
) -> (InprocEndpoint, InprocEndpoint) {
    let link = Arc::new(Link {
        sides: Mutex::new([Side::new(), Side::new()]),
        ready: Condvar::new(),
    });
    let end = |me: usize, domain: &Arc<Domain>, peer_domain: &Arc<Domain>| InprocEndpoint {
        link: link.clone(),
        me,
        domain: domain.clone(),
        peer_domain: peer_domain.clone(),
    };
    (end(0, &client, &server), end(1, &server, &client))
}

/// Our side and the peer's, both mutable.
fn split(sides: &mut [Side; 2], me: usize) -> (&mut Side, &mut Side) {
    let (a, b) = sides.split_at_mut(1);
    if me == 0 {
        (&mut a[0], &mut b[0])
    } else {
        (&mut b[0], &mut a[0])
    }
}

/// The result of a receive of `len` bytes into `room`: a message larger than the receive
/// fails it with `WSAEMSGSIZE` (the receive holds its first `room` bytes; the rest is lost).
fn fit(len: usize, room: usize) -> Result<u32, WsaError> {
    if len > room {
        Err(WsaError::MsgSize)
    } else {
        Ok(len as u32)
    }
}

/// Matches the receiver `r`'s inbox with its posted receives, oldest with oldest; then, if
/// the sender `s` has closed and the inbox is empty, ends the remaining receives with
/// `WSAEDISCON`. `r_dom` and `s_dom` are the two sides' domains.
fn pump(r: &mut Side, s: &mut Side, r_dom: &Domain, s_dom: &Domain) {
    while let Some(recv) = r.recvs.front().copied() {
        let result = if let Some(&len) = r.staged.front() {
            // A staged message: its send has completed already. If the receive's memory
            // is gone, the receive fails and the message waits for the next one.
            let moved = r.staging.pop_into(len, r_dom, recv.sges());
            if moved.is_ok() {
                r.staged.pop_front();
            }
            moved.and_then(|_| fit(len, recv.len))
        } else if let Some(send) = r.queued.front().copied() {
            // A send still queued on the sender: copy straight from its memory.
            match mem::copy_message(r_dom, recv.sges(), s_dom, send.sges()) {
                Ok(_) => {
                    r.queued.pop_front();
                    s.complete(send.token, Op::Send, Ok(send.len as u32));
                    fit(send.len, recv.len)
                }
                Err(Bad::Src) => {
                    // The sender deregistered its buffer: that send fails, no message.
                    r.queued.pop_front();
                    s.complete(send.token, Op::Send, Err(WsaError::Fault));
                    continue;
                }
                Err(Bad::Dst) => Err(WsaError::Fault),
            }
        } else if !s.open {
            Err(WsaError::Discon)
        } else {
            break;
        };
        r.recvs.pop_front();
        r.complete(recv.token, Op::Recv, result);
    }
}

impl InprocEndpoint {
    /// Checks an SGE list at post time: at most [`MAX_SGE`] entries and `max` bytes
    /// (`PostError::TooLarge`), each inside a live registration of *our* domain granting
    /// `need` (`PostError::InvalidSge`). Returns the total bytes.
    fn checked(&self, sges: &[Sge], need: MemAccess, max: usize) -> Result<usize, PostError> {
        let total: u64 = sges.iter().map(|s| u64::from(s.len)).sum();
        if sges.len() > MAX_SGE || total > max as u64 {
            return Err(PostError::TooLarge);
        }
        let checked = self.domain.check(sges, need);
        checked.map_err(|index| PostError::InvalidSge { index })
    }

    /// RDMA write (`Op::RdmaWrite`) or read, done now (see [`Endpoint::rdma_write`]).
    fn rdma(
        &self,
        op: Op,
        sges: &[Sge],
        target: RemoteTarget<'_>,
        token: u64,
    ) -> Result<(), PostError> {
        let write = op == Op::RdmaWrite;
        let mut sides = lock(&self.link.sides);
        let (me, peer) = split(&mut sides, self.me);
        if !me.open || !peer.open {
            return Err(PostError::Closed);
        }
        let d = Descriptor::decode(target.descriptor).ok_or(PostError::BadDescriptor)?;
        let need = if write {
            MemAccess::READ
        } else {
            MemAccess::WRITE
        };
        self.checked(sges, need, MAX_TRANSFER)?;
        if me.sends == SEND_QUEUE_DEPTH {
            return Err(PostError::QueueFull);
        }
        me.sends += 1;
        let moved = mem::rdma(
            write,
            &self.peer_domain,
            &d,
            target.offset,
            &self.domain,
            sges,
        );
        me.complete(token, op, moved.map(|n| n as u32));
        self.link.ready.notify_all();
        Ok(())
    }
}

impl Endpoint for InprocEndpoint {
    /// Sends the bytes of `sges` as one message. The contract: nothing is dropped, order
    /// and boundaries are kept, and the send completes once its buffer may be reused.
    /// Refused with `Closed` once either side has closed, `TooLarge` past [`MAX_SGE`] or
    /// [`MAX_TRANSFER`], `InvalidSge` for memory our domain does not grant `READ`, and
    /// `QueueFull` with [`SEND_QUEUE_DEPTH`] send-side operations not yet polled.
    ///
    /// Delivered at once into the peer's oldest waiting receive if there is one; else
    /// staged in the peer's ring (the send completes now) if it fits and nothing is queued
    /// ahead; else queued until the peer posts a receive.
    fn post_send(&self, sges: &[Sge], token: u64) -> Result<(), PostError> {
        let mut sides = lock(&self.link.sides);
        let (me, peer) = split(&mut sides, self.me);
        if !me.open || !peer.open {
            return Err(PostError::Closed);
        }
        let len = self.checked(sges, MemAccess::READ, MAX_TRANSFER)?;
        if me.sends == SEND_QUEUE_DEPTH {
            return Err(PostError::QueueFull);
        }
        me.sends += 1;
        let receive_waiting = !peer.recvs.is_empty();
        let fits = peer.staged.len() < STAGED_MESSAGES && len <= peer.staging.free();
        if !receive_waiting && peer.queued.is_empty() && fits {
            let staged = peer.staging.push(&self.domain, sges);
            if staged.is_ok() {
                peer.staged.push_back(len);
            }
            me.complete(token, Op::Send, staged.map(|n| n as u32));
        } else {
            peer.queued.push_back(Posted::new(sges, token, len));
        }
        pump(peer, me, &self.peer_domain, &self.domain);
        self.link.ready.notify_all();
        Ok(())
    }

    /// Posts a receive. The contract: receives are filled in the order posted, each by one
    /// whole message; a message larger than the receive fails that receive with
    /// `WSAEMSGSIZE` and nothing else. Accepted after the peer closed (it may still get a
    /// staged message, else `WSAEDISCON` at once); refused with `Closed` after our own
    /// close, `InvalidSge` for memory our domain does not grant `WRITE`, `QueueFull` with
    /// [`RECV_QUEUE_DEPTH`] receives not yet polled.
    fn post_recv(&self, sges: &[Sge], token: u64) -> Result<(), PostError> {
        let mut sides = lock(&self.link.sides);
        let (me, peer) = split(&mut sides, self.me);
        if !me.open {
            return Err(PostError::Closed);
        }
        let len = self.checked(sges, MemAccess::WRITE, MAX_TRANSFER)?;
        if me.recvs_posted == RECV_QUEUE_DEPTH {
            return Err(PostError::QueueFull);
        }
        me.recvs_posted += 1;
        me.recvs.push_back(Posted::new(sges, token, len));
        pump(me, peer, &self.domain, &self.peer_domain);
        self.link.ready.notify_all();
        Ok(())
    }

    /// Writes `sges` into the peer's region. The contract: the descriptor comes from the
    /// peer and is not trusted. Malformed (wrong length, version or rights bits): refused,
    /// `BadDescriptor`. Otherwise it is resolved in the **peer's** domain and must name a
    /// live registration exactly, with `WRITE` rights, and cover `offset..offset + len`;
    /// if not, the operation completes with `WSAEFAULT` and no byte moves. The copy is done
    /// here, so the write completes before this returns.
    fn rdma_write(
        &self,
        sges: &[Sge],
        target: RemoteTarget<'_>,
        token: u64,
    ) -> Result<(), PostError> {
        self.rdma(Op::RdmaWrite, sges, target, token)
    }

    /// Reads the peer's region into `sges`: as [`rdma_write`](Endpoint::rdma_write), with
    /// `READ` rights on the region and `WRITE` on the local SGEs.
    fn rdma_read(
        &self,
        sges: &[Sge],
        target: RemoteTarget<'_>,
        token: u64,
    ) -> Result<(), PostError> {
        self.rdma(Op::RdmaRead, sges, target, token)
    }

    /// Moves finished operations into `out`, oldest first. Each completion polled frees
    /// its operation's slot in the send or receive queue. There is no progress to drive:
    /// posts did the work.
    fn poll(&self, out: &mut [Completion]) -> usize {
        let mut sides = lock(&self.link.sides);
        let me = &mut sides[self.me];
        let mut n = 0;
        while n < out.len() {
            let c = match me.cq.pop_front() {
                Some(c) => c,
                None => break,
            };
            if c.op == Op::Recv {
                me.recvs_posted -= 1;
            } else {
                me.sends -= 1;
            }
            out[n] = c;
            n += 1;
        }
        n
    }

    /// Parks on the connection's `Condvar` until a completion is queued for us or
    /// `timeout` passes; returns whether one is ready. No spinning: completions are only
    /// ever made by a thread that holds the lock and signals.
    fn wait(&self, timeout: Duration) -> bool {
        let deadline = Instant::now().checked_add(timeout);
        let mut sides = lock(&self.link.sides);
        while sides[self.me].cq.is_empty() {
            let left = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()),
                None => Duration::from_secs(3600),
            };
            if left == Duration::ZERO {
                break;
            }
            let woken = self.link.ready.wait_timeout(sides, left);
            sides = woken.unwrap_or_else(|e| e.into_inner()).0;
        }
        !sides[self.me].cq.is_empty()
    }

    /// Closes, as `Endpoint::close` documents, all under the lock so no post can slip in
    /// between (which is what makes "exactly once" hold against racing posts):
    ///
    /// 1. our waiting receives, and our sends still queued at the peer (never sent),
    ///    complete with `WSA_OPERATION_ABORTED`; later posts are refused (`Closed`);
    /// 2. messages to us are dropped; the peer's sends still waiting for our receives fail
    ///    with `WSAECONNRESET`; its later sends and RDMA are refused;
    /// 3. the peer's receives still get every message whose send completed (staged at the
    ///    peer), then `WSAEDISCON`. A message is never cut short here, so a close never
    ///    causes `WSAECONNRESET` on a receive.
    ///
    /// Idempotent.
    fn close(&self) {
        let mut sides = lock(&self.link.sides);
        let (me, peer) = split(&mut sides, self.me);
        if !me.open {
            return;
        }
        me.open = false;
        let aborted = Err(WsaError::OperationAborted);
        while let Some(r) = me.recvs.pop_front() {
            me.complete(r.token, Op::Recv, aborted);
        }
        while let Some(s) = peer.queued.pop_front() {
            me.complete(s.token, Op::Send, aborted);
        }
        me.staging.discard(usize::MAX);
        me.staged.clear();
        while let Some(s) = me.queued.pop_front() {
            peer.complete(s.token, Op::Send, Err(WsaError::ConnReset));
        }
        pump(peer, me, &self.peer_domain, &self.domain);
        self.link.ready.notify_all();
    }
}

impl Drop for InprocEndpoint {
    /// An endpoint dropped without `close` closes gracefully: in one process the owner
    /// going away is not a crash, so the peer sees the same as for `close`.
    fn drop(&mut self) {
        self.close();
    }
}

impl std::fmt::Debug for InprocEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let side = if self.me == 0 { "client" } else { "server" };
        f.debug_struct("InprocEndpoint")
            .field("side", &side)
            .field("domain", &self.domain.id)
            .field("peer_domain", &self.peer_domain.id)
            .finish()
    }
}
