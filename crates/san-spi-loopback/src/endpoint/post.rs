//! The application's calls: the [`Endpoint`] implementation (posts, `poll`, `wait`,
//! `close`) and the RDMA post both operations share.

use super::*;

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
        if start.direct {
            self.shared
                .single_copy_posts
                .fetch_add(1, Ordering::Relaxed);
        }
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
            cq = cq.wait_timeout(&self.shared.cq_ready, deadline - now);
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
