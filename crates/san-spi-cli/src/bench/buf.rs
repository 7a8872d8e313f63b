//! Page-aligned buffers for the benchmark, registered with a loopback transport or not.
//!
//! The bytes live in a raw allocation (never behind a `Box` or `&mut`), because the
//! transport reads and writes them from its progress threads while this thread holds the
//! buffer: every access from here goes through the raw pointer too.

use san_spi_core::transport::{MemAccess, Memory, MemoryHandle, Sge};
use san_spi_loopback::LoopbackTransport;
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

    /// Whether the first `len` bytes of both buffers are equal (read once no transfer runs).
    pub fn same_as(&self, other: &AlignedBuf, len: usize) -> bool {
        let len = len.min(self.len()).min(other.len());
        // SAFETY: both ranges are inside their allocations, and the caller checks only once
        // every operation on them has completed.
        unsafe {
            std::slice::from_raw_parts(self.ptr(), len)
                == std::slice::from_raw_parts(other.ptr(), len)
        }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout, freed once.
        unsafe { dealloc(self.ptr.as_ptr(), self.layout) }
    }
}

/// An [`AlignedBuf`] registered with a loopback transport; deregistered before it is freed.
pub struct RegBuf<'t> {
    t: &'t LoopbackTransport,
    handle: MemoryHandle,
    // Dropped after `drop` below deregisters: the transport never touches freed memory.
    buf: AlignedBuf,
}

impl<'t> RegBuf<'t> {
    /// `len` bytes registered with `access`.
    pub fn new(
        t: &'t LoopbackTransport,
        len: usize,
        seed: u8,
        access: MemAccess,
    ) -> Result<RegBuf<'t>, String> {
        let buf = AlignedBuf::new(len, seed);
        // SAFETY: the allocation stays mapped until `RegBuf::drop` has deregistered it
        // (the field is dropped after `drop` runs), and this module accesses it only
        // through raw pointers, after the completions of the operations that used it.
        let handle = unsafe { t.register(buf.ptr(), buf.len(), access) }
            .map_err(|e| format!("registering {len} bytes: {e}"))?;
        Ok(RegBuf { t, handle, buf })
    }

    /// One SGE of `len` bytes at `offset`.
    pub fn sge(&self, offset: usize, len: usize) -> Sge {
        assert!(offset + len <= self.buf.len());
        Sge {
            handle: self.handle,
            addr: self.buf.ptr() as u64 + offset as u64,
            len: len as u32,
        }
    }

    /// The exported RDMA descriptor.
    pub fn descriptor(&self) -> Result<Vec<u8>, String> {
        let mut d = vec![0u8; 256];
        let n = self
            .t
            .export(self.handle, &mut d)
            .map_err(|e| format!("export: {e}"))?;
        d.truncate(n);
        Ok(d)
    }

    /// The buffer.
    pub fn buf(&self) -> &AlignedBuf {
        &self.buf
    }
}

impl Drop for RegBuf<'_> {
    fn drop(&mut self) {
        let _ = self.t.deregister(self.handle);
    }
}
