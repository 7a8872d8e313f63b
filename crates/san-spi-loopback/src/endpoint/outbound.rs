//! The outbound side: posting into the ring the peer reads. Sends take the fast path
//! (one record, straight in) when nothing is queued ahead; everything else becomes a job in
//! the FIFO that the owner of the `out` lock pumps, so the chunks of one operation are
//! contiguous. The peer is woken only when it announced it parks.

use super::*;
use crate::ring::Push;

/// What pumping one record of a job came to.
pub(super) enum Pumped {
    /// A record went into the ring; `job_done` when it was the job's last.
    Record { job_done: bool },
    /// No room: the job waits for the consumer.
    Full,
    /// The peer broke the ring: the connection fails.
    Corrupt,
}

impl Shared {
    /// Whether an RDMA operation over `sges` goes single copy: on a single-copy
    /// connection, whenever its SGEs fit one request and it is at most
    /// [`DIRECT_MAX_BYTES`]. There is no size floor: single copy is at least as fast as
    /// bouncing down to 4 KiB. Above the ceiling the bounce wins (measured by `san-spi bench
    /// loopback` on 2 vCPUs: 16 MiB at ~12.9 GB/s bounced vs ~9.6 GB/s single copy, 64 MiB
    /// at ~12 vs ~6 GB/s), because bouncing pipelines two copies on two cores while single
    /// copy is one copy on one.
    pub(super) fn direct(&self, sges: &[Sge]) -> bool {
        self.direct_out
            && sges.len() <= MAX_PIECES
            && total_len(sges)
                .is_some_and(|n| n <= DIRECT_MAX_BYTES.min(self.limits.single_copy_max))
    }

    /// Checks every SGE against the registry with `need`.
    pub(super) fn check_sges(&self, sges: &[Sge], need: MemAccess) -> Result<u64, PostError> {
        let g = self.registry.lock();
        check_sge_list(sges, self.limits.max_sge, |s| g.holds(s, need))
    }

    pub(super) fn signal_peer_if_sleeping(&self, out: &Outbound) {
        if out.producer.consumer_sleeping() {
            sys::wake_peer(self.socket.as_raw_fd());
        }
    }

    /// The fast path of a send: with nothing queued ahead of it, a message that fits one
    /// record goes straight into the ring — its SGEs checked once, through the outbound
    /// lock's registration cache, under that lock for the copy — and no job is built. `None` when the queued path must take it (jobs
    /// ahead, ring full, too long for one record, or a ring fault, which the queued path
    /// reports).
    pub(super) fn send_now(&self, sges: &[Sge], token: u64) -> Option<Result<(), PostError>> {
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
            Push::Done => {
                // Completed under `out`, so send completions keep the order of the wire.
                self.complete(token, Op::Send, Ok(total as u32));
                self.signal_peer_if_sleeping(out);
                Some(Ok(()))
            }
            Push::Full | Push::Corrupt(_) => None,
        }
    }

    /// Queues a job; if nothing is ahead of it, pumps right away in the caller's thread.
    pub(super) fn submit(&self, job: Job, internal: bool) -> Result<(), PostError> {
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
    pub(super) fn pump(&self, out: &mut Outbound) -> bool {
        let mut pushed = false;
        let max = out.producer.max_payload() as u64 - 8;
        while let Some(job) = out.jobs.front_mut() {
            let r = Self::pump_one(&self.registry, &mut out.producer, job, max);
            match r {
                Pumped::Record { job_done } => {
                    pushed = true;
                    if job_done {
                        let job = out.jobs.pop_front().expect("front exists");
                        self.finish_job(out, job);
                    }
                }
                Pumped::Full => break,
                Pumped::Corrupt => {
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

    pub(super) fn finish_job(&self, out: &mut Outbound, job: Job) {
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

    /// One record of `job`; [`Pumped::Record`] says whether the job is complete.
    pub(super) fn pump_one(
        registry: &Registry,
        p: &mut Producer,
        job: &mut Job,
        max: u64,
    ) -> Pumped {
        match &job.kind {
            JobKind::Send { sges, .. } => {
                let n = (job.total - job.sent).min(max);
                let mut flags = if job.sent == 0 { FIRST } else { 0 };
                if job.sent + n == job.total {
                    flags |= LAST;
                }
                let g = registry.lock();
                let parts = pieces(sges, job.sent, n);
                let valid = g.holds_all(sges, MemAccess::READ);
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
                match unsafe { p.push_raw(header, &raw) } {
                    Push::Full => Pumped::Full,
                    Push::Corrupt(_) => Pumped::Corrupt,
                    Push::Done if valid => {
                        job.sent += n;
                        Pumped::Record {
                            job_done: job.sent == job.total,
                        }
                    }
                    Push::Done => Pumped::Record { job_done: true },
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
                let valid = g.holds_all(sges, MemAccess::READ);
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
                    return match p.push(h, parts) {
                        Push::Full => Pumped::Full,
                        Push::Corrupt(_) => Pumped::Corrupt,
                        Push::Done => Pumped::Record { job_done: true },
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
                match unsafe { p.push_raw(h, &raw) } {
                    Push::Full => Pumped::Full,
                    Push::Corrupt(_) => Pumped::Corrupt,
                    Push::Done => {
                        job.sent += n;
                        Pumped::Record {
                            job_done: job.sent == job.total,
                        }
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
                match p.push(h, &[&len.to_le_bytes()]) {
                    Push::Full => Pumped::Full,
                    Push::Corrupt(_) => Pumped::Corrupt,
                    Push::Done => Pumped::Record { job_done: true },
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
                match unsafe { p.push_raw(h, &raw) } {
                    Push::Full => Pumped::Full,
                    Push::Corrupt(_) => Pumped::Corrupt,
                    Push::Done => {
                        if status != 0 {
                            return Pumped::Record { job_done: true };
                        }
                        job.sent += n;
                        Pumped::Record {
                            job_done: job.sent == job.total,
                        }
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
                let valid = g.holds_all(sges, need);
                drop(g);
                if !valid {
                    // `finish_job` completes it with an error (sent < total).
                    return Pumped::Record { job_done: true };
                }
                let mut payload = [0u8; wire::direct::len(MAX_PIECES)];
                let total = total_len(sges).unwrap_or(0);
                wire::put(&mut payload, wire::direct::TOTAL, total);
                for (i, s) in sges.iter().enumerate() {
                    wire::put(&mut payload, wire::direct::addr(i), s.addr);
                    wire::put(&mut payload, wire::direct::piece_len(i), s.len.into());
                }
                let h = Header {
                    kind: *kind,
                    token: *op,
                    a: *key,
                    b: *offset,
                    ..Header::default()
                };
                match p.push(h, &[&payload[..wire::direct::len(sges.len())]]) {
                    Push::Full => Pumped::Full,
                    Push::Corrupt(_) => Pumped::Corrupt,
                    Push::Done => {
                        job.sent = job.total;
                        Pumped::Record { job_done: true }
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
                match p.push(h, &[]) {
                    Push::Full => Pumped::Full,
                    Push::Corrupt(_) => Pumped::Corrupt,
                    Push::Done => Pumped::Record { job_done: true },
                }
            }
            JobKind::Close => match p.push(
                Header {
                    kind: CLOSE,
                    ..Header::default()
                },
                &[],
            ) {
                Push::Full => Pumped::Full,
                Push::Corrupt(_) => Pumped::Corrupt,
                Push::Done => Pumped::Record { job_done: true },
            },
        }
    }
}
