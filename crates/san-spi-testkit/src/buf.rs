//! [`RegisteredBuf`]: heap bytes registered with a transport, the one registered-buffer
//! type of the workspace (the suite, the loopback's tests, the demo and the bench use it).
//!
//! Once registered, the bytes belong to the transport as much as to the program: a NIC (or
//! a peer process, or a progress thread) writes them whenever an operation says so, behind
//! the compiler's back. A Rust reference to them (`&[u8]`, `&mut [u8]`) would promise that
//! they do not change while it lives, so this type never hands one out. It keeps a raw
//! pointer, taken once when the memory is allocated, and moves bytes in and out **by copy**
//! ([`read`](RegisteredBuf::read), [`write`](RegisteredBuf::write),
//! [`fill`](RegisteredBuf::fill), [`to_vec`](RegisteredBuf::to_vec)), through `&self`:
//! the bytes are a raw allocation no reference ever covers, so no part of the program
//! assumes them unchanged or unshared.
//!
//! What it cannot decide for the program is *when* to look: bytes read while an operation
//! on them is still pending are whatever the transport has placed so far. The suite reads a
//! destination only after the operation's completion has been polled (which orders the
//! transport's writes before the read) and writes a source only while no operation uses it
//! — the same discipline a program owes a NIC.

use san_spi_core::transport::{MemAccess, Memory, MemoryHandle, Sge};
use san_spi_core::WsaError;
use std::alloc::Layout;
use std::ops::{Deref, Range};
use std::ptr::NonNull;

/// `len` heap bytes registered with a transport; deregistered and freed on drop.
///
/// `R` is how the buffer holds the transport: `&T` for a buffer that lives in one scope,
/// `Arc<T>` for one stored beside its transport.
///
/// ```
/// use san_spi_core::transport::MemAccess;
/// use san_spi_inproc::InprocTransport;
/// use san_spi_testkit::RegisteredBuf;
///
/// let t = InprocTransport::new("doc-registered-buf");
/// let b = RegisteredBuf::new(&t, 8, 0, MemAccess::READ_WRITE).unwrap();
/// b.write(2, b"hi");
/// assert_eq!(b.to_vec(0..4), [0, 0, b'h', b'i']);
/// assert_eq!(b.sge(2..4).len, 2);
/// ```
pub struct RegisteredBuf<R: Deref>
where
    R::Target: Memory,
{
    mem: R,
    /// The allocation: `len` bytes (at least one) aligned to [`ALIGN`], from `allocate`,
    /// freed in `drop` and never reached through a reference meanwhile.
    ptr: NonNull<u8>,
    len: usize,
    handle: Option<MemoryHandle>,
}

// SAFETY: the type owns its allocation (like a `Box<[u8]>`) and touches it only by copies
// through `&self` methods whose concurrent use is the same as a transport's: raw byte
// copies, no references; the raw pointer is the only thing making the type `!Send`.
unsafe impl<R: Deref + Send> Send for RegisteredBuf<R> where R::Target: Memory {}
// SAFETY: as for `Send`; every method takes `&self` and forms no reference to the bytes.
unsafe impl<R: Deref + Sync> Sync for RegisteredBuf<R> where R::Target: Memory {}

/// Alignment of every buffer: a page, as NICs register whole pages and as the bench
/// compares copies fairly with its baselines.
pub const ALIGN: usize = 4096;

fn layout(len: usize) -> Layout {
    // At least one byte: `alloc` takes no zero-sized layout.
    Layout::from_size_align(len.max(1), ALIGN).expect("buffer too large")
}

/// Allocates `len` bytes of `fill`, page-aligned, and returns the pointer to them, taken
/// once.
fn allocate(len: usize, fill: u8) -> NonNull<u8> {
    let layout = layout(len);
    // SAFETY: `layout` has a non-zero size.
    let raw = unsafe { std::alloc::alloc(layout) };
    let ptr = NonNull::new(raw).unwrap_or_else(|| std::alloc::handle_alloc_error(layout));
    // SAFETY: `ptr` is a fresh allocation of `layout.size()` ≥ `len` bytes that nothing
    // else knows of yet.
    unsafe { std::ptr::write_bytes(ptr.as_ptr(), fill, layout.size()) };
    ptr
}

impl<R: Deref> RegisteredBuf<R>
where
    R::Target: Memory,
{
    /// `len` bytes of `fill`, registered with `mem` for `access`.
    pub fn new(
        mem: R,
        len: usize,
        fill: u8,
        access: MemAccess,
    ) -> Result<RegisteredBuf<R>, WsaError> {
        Self::register(mem, len, fill, |mem, ptr| {
            // `ptr..ptr + len` is this value's own allocation: it stays mapped
            // until `drop`, which deregisters first; the program reaches it only by raw
            // copies (never a reference), so the transport's accesses break no aliasing
            // assumption. When to look is the caller's discipline (see the module docs).
            // SAFETY: our own allocation, alive until `drop` deregisters it; reached only by copy.
            unsafe { mem.register(ptr, len, access) }
        })
    }

    /// As [`new`](RegisteredBuf::new), under `key`, chosen by the caller
    /// ([`Memory::register_with_key`]).
    pub fn with_key(
        mem: R,
        len: usize,
        fill: u8,
        access: MemAccess,
        key: u64,
    ) -> Result<RegisteredBuf<R>, WsaError> {
        Self::register(mem, len, fill, |mem, ptr| {
            // SAFETY: as in `new`.
            unsafe { mem.register_with_key(ptr, len, access, key) }
        })
    }

    fn register(
        mem: R,
        len: usize,
        fill: u8,
        register: impl FnOnce(&R::Target, *mut u8) -> Result<MemoryHandle, WsaError>,
    ) -> Result<RegisteredBuf<R>, WsaError> {
        let mut buf = RegisteredBuf {
            mem,
            ptr: allocate(len, fill),
            len,
            handle: None,
        };
        buf.handle = Some(register(&*buf.mem, buf.ptr.as_ptr())?);
        Ok(buf)
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the buffer has no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The address of the first byte, as SGEs and the cache callback name it.
    pub fn addr(&self) -> u64 {
        self.ptr.as_ptr() as u64
    }

    /// The first byte, for registering parts of the buffer again (the caller keeps the
    /// buffer alive for as long as those registrations).
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// The registration handle, or `None` once deregistered.
    pub fn registration(&self) -> Option<MemoryHandle> {
        self.handle
    }

    /// The registration handle.
    ///
    /// # Panics
    ///
    /// If the buffer was deregistered.
    pub fn handle(&self) -> MemoryHandle {
        self.handle.expect("the buffer is deregistered")
    }

    /// One SGE over `range` of the buffer.
    ///
    /// # Panics
    ///
    /// If `range` is not inside the buffer or longer than `u32::MAX`.
    pub fn sge(&self, range: Range<usize>) -> Sge {
        self.check(&range);
        Sge {
            handle: self.handle(),
            addr: self.addr() + range.start as u64,
            len: u32::try_from(range.len()).expect("an SGE is at most u32::MAX bytes"),
        }
    }

    fn check(&self, range: &Range<usize>) {
        assert!(
            range.start <= range.end && range.end <= self.len,
            "{range:?} is outside a buffer of {} bytes",
            self.len
        );
    }

    /// Copies `out.len()` bytes from `offset` into `out`.
    ///
    /// # Panics
    ///
    /// If the range is outside the buffer.
    pub fn read(&self, offset: usize, out: &mut [u8]) {
        let end = offset.checked_add(out.len()).expect("range overflows");
        self.check(&(offset..end));
        // `offset..end` is inside the allocation (checked above), which lives as
        // long as `self`; `out` is the caller's own memory, distinct from ours (it is a
        // `&mut`, which cannot point into bytes we never lend out). Raw copy, no reference
        // to our bytes is formed.
        // SAFETY: in bounds (checked), distinct from `out`; a raw copy, no reference formed.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.ptr.as_ptr().add(offset),
                out.as_mut_ptr(),
                out.len(),
            )
        }
    }

    /// The bytes of `range`, copied.
    pub fn to_vec(&self, range: Range<usize>) -> Vec<u8> {
        self.check(&range);
        let mut v = vec![0u8; range.len()];
        self.read(range.start, &mut v);
        v
    }

    /// Copies `bytes` into the buffer at `offset`.
    ///
    /// # Panics
    ///
    /// If the range is outside the buffer.
    pub fn write(&self, offset: usize, bytes: &[u8]) {
        let end = offset.checked_add(bytes.len()).expect("range overflows");
        self.check(&(offset..end));
        // SAFETY: as in `read`, with the roles exchanged; writing through `&self` is
        // sound because no reference covers the bytes (only this raw pointer reaches
        // them), so none is invalidated.
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                self.ptr.as_ptr().add(offset),
                bytes.len(),
            )
        }
    }

    /// Sets every byte of `range` to `value`.
    pub fn fill(&self, range: Range<usize>, value: u8) {
        self.check(&range);
        // SAFETY: `range` is inside the allocation (checked), which lives as long as
        // `self`; a raw `memset`, no reference formed.
        unsafe { std::ptr::write_bytes(self.ptr.as_ptr().add(range.start), value, range.len()) }
    }

    /// Whether every byte of `range` is `value`.
    pub fn all(&self, range: Range<usize>, value: u8) -> bool {
        self.chunks(range, |c| c.iter().all(|&b| b == value))
    }

    /// The FNV-1a checksum of `range` (compares buffers across processes).
    pub fn checksum(&self, range: Range<usize>) -> u64 {
        let mut h = crate::FNV_START;
        self.chunks(range, |c| {
            h = crate::fnv(h, c);
            true
        });
        h
    }

    /// Calls `f` on copies of `range`, 64 KiB at a time, while it returns true.
    fn chunks(&self, range: Range<usize>, mut f: impl FnMut(&[u8]) -> bool) -> bool {
        self.check(&range);
        let mut chunk = vec![0u8; range.len().min(64 << 10)];
        let mut at = range.start;
        while at < range.end {
            let n = (range.end - at).min(chunk.len());
            self.read(at, &mut chunk[..n]);
            if !f(&chunk[..n]) {
                return false;
            }
            at += n;
        }
        true
    }

    /// The exported RDMA descriptor.
    pub fn descriptor(&self) -> Result<Vec<u8>, WsaError> {
        let mut d = vec![0u8; 1024];
        let n = self
            .mem
            .export(self.handle.ok_or(WsaError::Inval)?, &mut d)?;
        d.truncate(n);
        Ok(d)
    }

    /// Deregisters now (later calls do nothing).
    pub fn deregister(&mut self) -> Result<(), WsaError> {
        match self.handle.take() {
            Some(h) => self.mem.deregister(h),
            None => Ok(()),
        }
    }
}

impl<R: Deref> Drop for RegisteredBuf<R>
where
    R::Target: Memory,
{
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            let _ = self.mem.deregister(h);
        }
        // `ptr` came from `std::alloc::alloc(layout(len))` in `allocate` and is
        // freed only here, once. The registration is gone, so the transport no longer
        // addresses the bytes through it; operations still in flight on it are the
        // caller's to have completed first (the registration contract), as with any memory
        // a program frees.
        // SAFETY: allocated in `allocate` with this layout, freed once, after deregistering.
        unsafe { std::alloc::dealloc(self.ptr.as_ptr(), layout(self.len)) }
    }
}

impl<R: Deref> std::fmt::Debug for RegisteredBuf<R>
where
    R::Target: Memory,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegisteredBuf")
            .field("addr", &format_args!("{:#x}", self.addr()))
            .field("len", &self.len)
            .field("handle", &self.handle)
            .finish()
    }
}
