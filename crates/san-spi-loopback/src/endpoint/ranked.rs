//! The endpoint's locks, each with its rank in the lock order (see the module docs of
//! `endpoint`): a thread takes them in increasing rank only. Debug builds check it on every
//! acquisition — a thread-local list of the ranks it holds — and panic naming both locks;
//! release builds compile to a plain `Mutex`.

use std::ops::{Deref, DerefMut};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// A mutex with a rank and a name.
pub(crate) struct Ranked<T> {
    m: Mutex<T>,
    rank: u8,
    /// Named in the debug builds' lock-order panics.
    #[cfg_attr(not(debug_assertions), allow(dead_code))]
    name: &'static str,
}

#[cfg(debug_assertions)]
thread_local! {
    /// `(rank, name)` of every ranked lock this thread holds, in the order taken.
    static HELD: std::cell::RefCell<Vec<(u8, &'static str)>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl<T> Ranked<T> {
    /// `value` behind the lock `name` of rank `rank`.
    pub(crate) const fn new(rank: u8, name: &'static str, value: T) -> Ranked<T> {
        Ranked {
            m: Mutex::new(value),
            rank,
            name,
        }
    }

    /// Takes the lock, ignoring poisoning: every critical section leaves its state
    /// consistent before it can panic, so a panic elsewhere must not wedge the endpoint.
    ///
    /// # Panics
    ///
    /// In debug builds, if this thread holds a lock of this rank or a higher one.
    pub(crate) fn lock(&self) -> RankedGuard<'_, T> {
        #[cfg(debug_assertions)]
        HELD.with(|h| {
            let mut h = h.borrow_mut();
            if let Some(&(r, n)) = h.iter().find(|&&(r, _)| r >= self.rank) {
                panic!(
                    "lock order: taking `{}` (rank {}) while holding `{n}` (rank {r})",
                    self.name, self.rank
                );
            }
            h.push((self.rank, self.name));
        });
        RankedGuard {
            g: Some(self.m.lock().unwrap_or_else(|e| e.into_inner())),
            rank: self.rank,
        }
    }
}

impl<T> Ranked<T> {
    /// Takes the lock if it is free, without waiting (so without a place in the order: a
    /// try cannot deadlock); once held it counts for the locks taken under it.
    pub(crate) fn try_lock(&self) -> Option<RankedGuard<'_, T>> {
        let g = match self.m.try_lock() {
            Ok(g) => g,
            Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return None,
        };
        #[cfg(debug_assertions)]
        HELD.with(|h| h.borrow_mut().push((self.rank, self.name)));
        Some(RankedGuard {
            g: Some(g),
            rank: self.rank,
        })
    }
}

/// A held [`Ranked`] lock.
pub(crate) struct RankedGuard<'a, T> {
    /// Always `Some` but while a condition variable has it.
    g: Option<MutexGuard<'a, T>>,
    rank: u8,
}

impl<'a, T> RankedGuard<'a, T> {
    /// `Condvar::wait_timeout` on the held lock (which stays in this thread's held list:
    /// it is taken back before this returns).
    pub(crate) fn wait_timeout(mut self, cv: &Condvar, timeout: Duration) -> Self {
        let g = self.g.take().expect("held");
        let g = match cv.wait_timeout(g, timeout) {
            Ok((g, _)) => g,
            Err(e) => e.into_inner().0,
        };
        self.g = Some(g);
        self
    }
}

impl<T> Deref for RankedGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.g.as_ref().expect("held")
    }
}

impl<T> DerefMut for RankedGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        self.g.as_mut().expect("held")
    }
}

impl<T> Drop for RankedGuard<'_, T> {
    fn drop(&mut self) {
        #[cfg(debug_assertions)]
        HELD.with(|h| {
            let mut h = h.borrow_mut();
            if let Some(i) = h.iter().rposition(|&(r, _)| r == self.rank) {
                h.remove(i);
            }
        });
        let _ = self.rank;
    }
}

#[cfg(all(test, debug_assertions))]
mod tests {
    use super::*;

    #[test]
    fn locks_in_rank_order_are_taken() {
        let (a, b) = (Ranked::new(1, "a", ()), Ranked::new(2, "b", ()));
        let ga = a.lock();
        let gb = b.lock();
        drop((gb, ga));
        // Released: the lower rank can be taken again.
        drop(a.lock());
    }

    #[test]
    #[should_panic(expected = "lock order: taking `a` (rank 1) while holding `b` (rank 2)")]
    fn a_lower_rank_under_a_higher_one_panics() {
        let (a, b) = (Ranked::new(1, "a", ()), Ranked::new(2, "b", ()));
        let _gb = b.lock();
        let _ga = a.lock();
    }

    #[test]
    #[should_panic(expected = "lock order")]
    fn a_lock_taken_under_a_tried_one_is_checked() {
        let (a, b) = (Ranked::new(1, "a", ()), Ranked::new(2, "b", ()));
        let _gb = b.try_lock().expect("free");
        let _ga = a.lock();
    }
}
