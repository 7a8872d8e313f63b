//! [`CountingAllocator`]: the system allocator, counting allocations per thread, so the
//! suite can hold a transport that declares an allocation-free data plane to it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, Ordering};

/// Allocations (and reallocations) made by this thread so far: a const-initialised
/// `thread_local!` `Cell` without destructor, which never allocates.
#[cfg(not(windows))]
mod counter {
    use std::cell::Cell;

    thread_local! {
        /// Allocations (and reallocations) made by this thread so far.
        static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
    }

    /// Counts one allocation of this thread.
    pub(super) fn bump() {
        // `try_with`: a thread being torn down has no counter any more; it allocates
        // nothing the suite measures.
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
    }

    /// This thread's allocations so far.
    pub(super) fn get() -> u64 {
        ALLOCATIONS.with(|c| c.get())
    }
}

/// Allocations (and reallocations) made by this thread so far, on Windows: the value of a
/// raw Win32 TLS slot itself. Where std has no native thread-locals (rustc 1.63 for
/// `x86_64-pc-windows-gnu`, the provider DLL's toolchain), `thread_local!` creates its key
/// and each thread's slot with the global allocator — this one — so a counter kept there
/// would recurse into itself (and hang in the key's one-time initialisation). A TLS slot
/// holding the count as an integer never allocates.
#[cfg(windows)]
mod counter {
    use std::ffi::c_void;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[link(name = "kernel32")]
    extern "system" {
        fn TlsAlloc() -> u32;
        fn TlsFree(index: u32) -> i32;
        fn TlsGetValue(index: u32) -> *mut c_void;
        fn TlsSetValue(index: u32, value: *mut c_void) -> i32;
        fn GetLastError() -> u32;
        fn SetLastError(code: u32);
    }

    /// `TlsAlloc`'s failure value, also "not allocated yet" in [`INDEX`].
    const TLS_OUT_OF_INDEXES: u32 = u32::MAX;
    /// The process's TLS index for the counter, allocated on first use and never freed.
    static INDEX: AtomicU32 = AtomicU32::new(TLS_OUT_OF_INDEXES);

    /// The counter's TLS index, `None` if Windows has none left.
    fn index() -> Option<u32> {
        let i = INDEX.load(Ordering::Acquire);
        if i != TLS_OUT_OF_INDEXES {
            return Some(i);
        }
        // SAFETY: `TlsAlloc` has no preconditions.
        let new = unsafe { TlsAlloc() };
        if new == TLS_OUT_OF_INDEXES {
            return None;
        }
        match INDEX.compare_exchange(TLS_OUT_OF_INDEXES, new, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => Some(new),
            Err(winner) => {
                // SAFETY: `new` came from `TlsAlloc` above and was never published.
                unsafe { TlsFree(new) };
                Some(winner)
            }
        }
    }

    /// Counts one allocation of this thread.
    pub(super) fn bump() {
        // SAFETY: `GetLastError`/`SetLastError` have no preconditions; the last error is
        // kept because `TlsGetValue` clears it and the code under test may allocate
        // between a failing call and reading its error.
        let last = unsafe { GetLastError() };
        if let Some(i) = index() {
            // SAFETY: `i` is a live TLS index (never freed); the slot holds an integer
            // (null, i.e. 0, before this thread's first count), never dereferenced.
            unsafe {
                let n = TlsGetValue(i) as usize;
                TlsSetValue(i, n.wrapping_add(1) as *mut c_void);
            }
        }
        // SAFETY: as above.
        unsafe { SetLastError(last) };
    }

    /// This thread's allocations so far.
    pub(super) fn get() -> u64 {
        match index() {
            // SAFETY: as in `bump`.
            Some(i) => unsafe { TlsGetValue(i) as usize as u64 },
            None => 0,
        }
    }
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
    counter::bump();
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so the
// `GlobalAlloc` contract holds as it does for `System`; the counting touches only a
// per-thread counter that never allocates (see `counter`) and an atomic.
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
    let before = counter::get();
    let r = f();
    let after = counter::get();
    if INSTALLED.load(Ordering::Relaxed) {
        Some((after - before, r))
    } else {
        None
    }
}
