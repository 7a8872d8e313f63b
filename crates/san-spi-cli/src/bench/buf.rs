//! Page-aligned buffers for the benchmark: [`AlignedBuf`] for the baselines, [`RegBuf`]
//! (the testkit's [`RegisteredBuf`]) for the transport.
//!
//! The bytes live in a raw allocation (never behind a `Box` or `&mut`), because the
//! transport reads and writes them from its progress threads while this thread holds the
//! buffer: every access from here goes through the raw pointer too.

use san_spi_core::transport::MemAccess;
use san_spi_loopback::LoopbackTransport;
use san_spi_testkit::RegisteredBuf;
use std::alloc::{alloc, dealloc, Layout};
use std::ptr::NonNull;

const ALIGN: usize = 4096;

/// A page-aligned heap buffer, every page written once (faulted in) at creation.
pub struct AlignedBuf {
    ptr: NonNull<u8>,
    layout: Layout,
}

// SAFETY: the buffer owns its allocation; it hands out raw pointers only, and the
// benchmarks that share it between threads order every access with atomics or with the
// transport's completions.
unsafe impl Send for AlignedBuf {}
// SAFETY: as above — `&AlignedBuf` gives access to raw pointers only.
unsafe impl Sync for AlignedBuf {}

impl AlignedBuf {
    /// `len` bytes (at least one), filled with a pattern derived from `seed`.
    pub fn new(len: usize, seed: u8) -> AlignedBuf {
        let layout = Layout::from_size_align(len.max(1), ALIGN).expect("benchmark sizes fit");
        // SAFETY: the layout has a non-zero size.
        let raw = unsafe { alloc(layout) };
        let ptr = NonNull::new(raw).unwrap_or_else(|| std::alloc::handle_alloc_error(layout));
        let b = AlignedBuf { ptr, layout };
        b.fill(seed);
        b
    }

    /// Writes the pattern of `seed` over every byte.
    pub fn fill(&self, seed: u8) {
        for i in 0..self.len() {
            // SAFETY: `i` is inside the allocation; nothing else touches it during setup.
            unsafe {
                self.ptr
                    .as_ptr()
                    .add(i)
                    .write((i as u8).wrapping_mul(31).wrapping_add(seed))
            };
        }
    }

    /// Bytes.
    pub fn len(&self) -> usize {
        self.layout.size()
    }

    /// The first byte.
    pub fn ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout, freed once.
        unsafe { dealloc(self.ptr.as_ptr(), self.layout) }
    }
}

/// A buffer registered with a loopback transport: the workspace's one registered-buffer
/// type, page-aligned like [`AlignedBuf`], so copies compare fairly with the baselines.
pub type RegBuf<'t> = RegisteredBuf<&'t LoopbackTransport>;

/// `len` bytes registered with `access`, filled with the pattern of `seed` (as
/// [`AlignedBuf::fill`]).
pub fn registered(
    t: &LoopbackTransport,
    len: usize,
    seed: u8,
    access: MemAccess,
) -> Result<RegBuf<'_>, String> {
    let b = RegisteredBuf::new(t, len, 0, access)
        .map_err(|e| format!("registering {len} bytes: {e}"))?;
    let pattern: Vec<u8> = (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect();
    b.write(0, &pattern);
    Ok(b)
}
