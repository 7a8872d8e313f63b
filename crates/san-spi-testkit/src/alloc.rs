//! [`CountingAllocator`]: the system allocator, counting allocations per thread, so the
//! suite can hold a transport that declares an allocation-free data plane to it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};

thread_local! {
    /// Allocations (and reallocations) made by this thread so far.
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

/// Whether the allocator of this process is a [`CountingAllocator`] (set on its first use).
static INSTALLED: AtomicBool = AtomicBool::new(false);

/// The system allocator, counting each thread's allocations. Install it in a test binary
/// whose harness sets [`Harness::ALLOCATION_FREE`](crate::Harness::ALLOCATION_FREE):
///
/// ```
/// #[global_allocator]
/// static ALLOCATOR: san_spi_testkit::CountingAllocator = san_spi_testkit::CountingAllocator;
///
/// let (n, v) = san_spi_testkit::allocations_during(|| vec![1u8; 10]).unwrap();
/// assert_eq!((n, v.len()), (1, 10));
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct CountingAllocator;

fn count() {
    INSTALLED.store(true, Ordering::Relaxed);
    // `try_with`: a thread being torn down has no counter any more; it allocates nothing
    // the suite measures.
    let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so the
// `GlobalAlloc` contract holds as it does for `System`; the counting touches only a
// const-initialised thread-local `Cell` without destructor (it never allocates) and an
// atomic.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: the caller's `layout` contract is passed on unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: as in `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: `ptr` was allocated by `System` (every allocation here is), with
        // `layout`, as the caller guarantees.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as in `realloc`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// Runs `f` and returns how many allocations this thread made during it, with `f`'s
/// result; `None` when the process's allocator is not a [`CountingAllocator`].
pub fn allocations_during<R>(f: impl FnOnce() -> R) -> Option<(u64, R)> {
    let before = ALLOCATIONS.with(|c| c.get());
    let r = f();
    let after = ALLOCATIONS.with(|c| c.get());
    if INSTALLED.load(Ordering::Relaxed) {
        Some((after - before, r))
    } else {
        None
    }
}
