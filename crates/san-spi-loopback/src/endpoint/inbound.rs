//! The inbound side: consuming the ring the peer writes, under the `inb` lock. Every record
//! is a peer's claim: each handler checks kinds, flags, sequence and lengths (with checked
//! arithmetic) and the registry before a byte moves; a lie is `Corrupt`, which fails the
//! connection.

use super::*;

impl Shared {
    /// Consumes inbound records until the ring is empty, a message waits for a receive, or
    /// `budget` records were handled. Returns whether anything was consumed.
    pub(super) fn consume(&self, budget: usize) -> bool {
        self.consume_until_blocked(budget).0
    }

    /// [`consume`](Self::consume), also reporting whether it stopped at a record that must
    /// wait (for a posted receive or for outbound room).
    pub(super) fn consume_until_blocked(&self, budget: usize) -> (bool, bool) {
        self.consume_locked(lock(&self.inb), budget, None)
    }

    /// The consuming loop, with the inbound lock already taken. Receive completions go to
    /// `sink` when given (and nothing older is queued), to the completion queue otherwise.
    pub(super) fn consume_locked(
        &self,
        mut inb: RankedGuard<'_, Inbound>,
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
    pub(super) fn drain_cq(&self, sink: &mut Sink<'_>) {
        if sink.n < sink.out.len() && self.cq_len.load(Ordering::Acquire) != 0 {
            self.drain_cq_locked(sink);
        }
    }

    pub(super) fn drain_cq_locked(&self, sink: &mut Sink<'_>) {
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
    pub(super) fn deliver(&self, inb: &mut Inbound, token: u64, result: Result<u32, WsaError>) {
        inb.done.push(Completion::new(token, Op::Recv, result));
    }

    /// Hands the pass's receive completions to `sink` while it has room and the queue holds
    /// nothing older; queues the rest under one lock.
    pub(super) fn flush_done(&self, inb: &mut Inbound, sink: Option<&mut Sink<'_>>) {
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
    pub(super) fn handle(&self, inb: &mut Inbound, h: &Header) -> Result<bool, Corrupt> {
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

    pub(super) fn on_send(&self, inb: &mut Inbound, h: &Header) -> Result<bool, Corrupt> {
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
    pub(super) fn receive_fast(&self, inb: &mut Inbound, sink: &mut Sink<'_>) -> bool {
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
    pub(super) fn take_recv(&self, inb: &mut Inbound) -> Option<PostedRecv> {
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
    pub(super) fn fill(
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

    pub(super) fn on_write(&self, inb: &mut Inbound, h: &Header) -> Result<bool, Corrupt> {
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

    pub(super) fn on_read_data(&self, inb: &mut Inbound, h: &Header) -> Result<bool, Corrupt> {
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
                    let valid = g.holds_all(sges, MemAccess::WRITE);
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
    pub(super) fn complete_pending(&self, p: Option<Pending>, result: Result<u32, WsaError>) {
        match p {
            Some(Pending::Write { token, .. }) => self.complete(token, Op::RdmaWrite, result),
            Some(Pending::Read { token, .. }) => self.complete(token, Op::RdmaRead, result),
            None => {}
        }
    }

    /// The result an ACK reports for an operation of `total` bytes. For a single-copy
    /// one (`local` = its SGEs, needing `need`), the peer must report every byte and our
    /// registrations must still stand.
    pub(super) fn ack_result(
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
            let valid = g.holds_all(sges, need);
            if !valid {
                return Err(WsaError::Fault);
            }
        }
        Ok(total as u32)
    }

    pub(super) fn on_ack(&self, h: &Header) -> Result<bool, Corrupt> {
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
    pub(super) fn on_direct(&self, inb: &mut Inbound, h: &Header) -> Result<bool, Corrupt> {
        let Some(peer) = self.peer.as_ref() else {
            return Err(Corrupt(
                "single-copy request on a connection that refused them",
            ));
        };
        let len = h.len as usize;
        let n = match wire::direct::pieces(len) {
            Some(n) if n <= MAX_PIECES => n,
            _ => return Err(Corrupt("malformed single-copy request")),
        };
        {
            let out = lock(&self.out);
            if out.internal >= self.limits.max_inflight {
                return Ok(false); // back-pressure on a flood of requests
            }
        }
        // Copied once out of shared memory, then parsed.
        let mut raw = [0u8; wire::direct::len(MAX_PIECES)];
        inb.consumer.payload(h, 0, &mut raw[..len]);
        let total = wire::get(&raw, wire::direct::TOTAL);
        let mut pieces = [(0u64, 0u64); MAX_PIECES];
        for (i, p) in pieces.iter_mut().take(n).enumerate() {
            *p = (
                wire::get(&raw, wire::direct::addr(i)),
                wire::get(&raw, wire::direct::piece_len(i)),
            );
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
}
