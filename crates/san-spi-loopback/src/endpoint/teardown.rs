//! Ending a connection: failing what is pending exactly once, ending the inbound side with
//! the right error (graceful end or reset), and the peer's hang-up.

use super::*;

impl Shared {
    /// Completes everything still pending with `error`, exactly once (each item is taken
    /// out of its queue under its lock before it completes).
    pub(super) fn fail_all(&self, error: WsaError) {
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
    pub(super) fn end_inbound(&self, inb: &mut Inbound, error: WsaError) {
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
    pub(super) fn inbound_ended(&self) -> bool {
        self.inbound_end.load(Ordering::Acquire) != 0
    }

    /// Fails the outbound side with `error`: RDMA operations waiting for the peer and jobs
    /// not yet in the ring complete with it, and later sends and RDMA are refused.
    pub(super) fn fail_outbound(&self, error: WsaError) {
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
    pub(super) fn break_connection(&self) {
        self.fail_all(WsaError::ConnReset);
    }

    /// The peer hung up. What it sent before it went away stays receivable: records
    /// waiting for a receive are delivered as receives are posted, and the inbound side
    /// ends where the records do — at its CLOSE (WSAEDISCON, a graceful close) or at the
    /// last record of a peer that died (WSAECONNRESET). What waits for an answer from the
    /// peer fails now: acknowledgements already in the ring ahead of any waiting message
    /// are taken first. Bounded: a hostile peer cannot keep this loop reading.
    pub(super) fn on_hangup(&self) {
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
}
