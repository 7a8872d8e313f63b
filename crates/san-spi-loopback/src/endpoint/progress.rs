//! Who drives progress: the endpoint's progress thread (spin, then park on our own eventfd
//! and the socket) or, while the application polls, the application's `poll` itself.

use super::*;

impl Shared {
    pub(super) fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    /// Whether an application thread polled within the last 2 ms (it then drives progress
    /// itself, and the progress thread stays out of its way).
    pub(super) fn poller_active(&self) -> bool {
        let last = self.last_poll.load(Ordering::Relaxed);
        last != 0 && self.now_ns().saturating_sub(last) < 2_000_000
    }

    /// Progress from the application's `poll`: consume and pump without waiting for a lock
    /// the progress thread holds. No thread hand-off on the hot path, and no wake-up
    /// syscalls from the peer while we poll (the sleep announcement is withdrawn).
    pub(super) fn progress_inline(&self, sink: &mut Sink<'_>) {
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
            if let Some(mut inb) = self.inb.try_lock() {
                inb.consumer.woke();
                if !self.receive_fast(&mut inb, sink) {
                    let _ = self.consume_locked(inb, CONSUME_BUDGET, Some(sink));
                }
            }
        }
        if self.jobs_queued.load(Ordering::Relaxed) != 0 {
            if let Some(mut out) = self.out.try_lock() {
                if !out.jobs.is_empty() {
                    self.pump(&mut out);
                }
            }
        }
    }

    /// The socket whose hang-up `sys::wait` watches for; none once the peer is gone (a
    /// hang-up stays readable, and would keep every wait from sleeping).
    pub(super) fn hangup_fd(&self) -> RawFd {
        if self.peer_gone.load(Ordering::Acquire) {
            -1
        } else {
            self.socket.as_raw_fd()
        }
    }

    /// Polls without work before the progress thread parks.
    const SPIN_POLLS: u32 = 2000;

    pub(super) fn progress_loop(self: Arc<Self>) {
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
            idle = idle.saturating_add(1);
            if idle < Self::SPIN_POLLS {
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
                if !r.event {
                    // A timeout with nothing new: check once more and park again, without
                    // another spin (an idle connection wakes 20 times a second; spinning
                    // each time cost it ~8 % of a core).
                    continue;
                }
            }
            idle = 0;
        }
    }
}
