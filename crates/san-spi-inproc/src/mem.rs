//! The protection domain ([`Memory`]) and the only `unsafe` code of the crate.
//!
//! Registered memory is addressed by raw process address: the application hands a pointer
//! to `WSPRegisterMemory` and later names bytes inside it by address (`WSABUFEX.buf`) or,
//! from the peer, by descriptor and offset. Nothing here ever forms a `&[u8]` or
//! `&mut [u8]` over registered memory — the application (or another transport) may be
//! using neighbouring bytes at the same moment, and a Rust reference would claim they do
//! not change. Bytes are moved with `core::ptr::copy` on raw pointers only, by
//! [`copy_runs`], and only over ranges just checked against a live registration while its
//! domain's lock is held.
//!
//! Every `unsafe` block below rests on the `# Safety` contract of [`Memory::register`]
//! (which [`Memory::register_with_key`] shares). It makes two promises, cited as:
//!
//! * **(P1) mapped**: `addr..addr + len` stays mapped until `deregister` returns and every
//!   operation that used the registration has completed;
//! * **(P2) no conflicting use**: nothing else uses those bytes in a way that conflicts
//!   with the registration's access while it lives (no one writes what the transport may
//!   read or write; no one reads what it may write).
//!
//! This transport finishes every copy inside the call that started it, holding the lock of
//! the domain that owns the registration, and `deregister` / `invalidate` take that same
//! lock: a range checked under the lock is therefore live, and by (P1) mapped, until the
//! copy ends.

use crate::descriptor::{Descriptor, LEN, SIGNED};
use crate::{lock, InprocTransport};
use san_spi_core::transport::{MemAccess, Memory, MemoryHandle, Sge};
use san_spi_core::WsaError;
use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Domain ids are unique in the process (they order domain locks, too).
static NEXT_DOMAIN: AtomicU64 = AtomicU64::new(1);

/// One protection domain: a registration table and the secret its check values use.
pub(crate) struct Domain {
    /// Carried in every descriptor exported from this domain.
    pub(crate) id: u64,
    /// Keys the hash behind registration keys and check values. `RandomState` is std's
    /// randomly keyed SipHash: unguessable enough for a worked example; a NIC uses its own
    /// key generator and a real MAC (or checks keys in hardware).
    secret: RandomState,
    regs: Mutex<Regs>,
}

/// The registration table of a domain.
struct Regs {
    by_key: HashMap<u64, Reg>,
    /// Bumped by every registration: the next one's generation.
    generation: u64,
}

/// One live registration.
#[derive(Debug, Clone, Copy)]
struct Reg {
    addr: u64,
    len: u64,
    access: MemAccess,
    generation: u64,
}

const TAG_KEY: u8 = 1;
const TAG_CHECK: u8 = 2;

impl Domain {
    /// A new, empty domain.
    pub(crate) fn new() -> Domain {
        Domain {
            id: NEXT_DOMAIN.fetch_add(1, Ordering::Relaxed),
            secret: RandomState::new(),
            regs: Mutex::new(Regs {
                by_key: HashMap::new(),
                generation: 0,
            }),
        }
    }

    /// The keyed hash of `bytes`, domain-separated by `tag`.
    fn keyed(&self, tag: u8, bytes: &[u8]) -> u64 {
        let mut h = self.secret.build_hasher();
        h.write_u8(tag);
        h.write(bytes);
        h.finish()
    }

    /// The check value of descriptor `d` (of its first [`SIGNED`] bytes).
    fn seal(&self, d: &Descriptor) -> u64 {
        self.keyed(TAG_CHECK, &d.encode()[..SIGNED])
    }

    /// Checks `sges` against the table now (post time): `Err(index)` of the first SGE that
    /// is not inside a live registration granting `need`; else the total bytes.
    pub(crate) fn check(&self, sges: &[Sge], need: MemAccess) -> Result<usize, usize> {
        lock(&self.regs).all(sges, need)
    }

    /// Where descriptor `d` and `offset..offset + len` lie in this domain, if `d` names a
    /// live registration of it exactly (key, generation, base, length, rights and check
    /// value) and grants `need`, and the range is inside it.
    fn region(
        &self,
        regs: &Regs,
        d: &Descriptor,
        offset: u64,
        len: usize,
        need: MemAccess,
    ) -> Option<u64> {
        let r = regs.by_key.get(&d.key)?;
        let same = d.domain == self.id
            && (r.addr, r.len, r.access, r.generation) == (d.base, d.len, d.rights, d.generation)
            && self.seal(d) == d.check;
        let end = offset.checked_add(len as u64)?;
        if !same || !r.access.contains(need) || end > r.len {
            return None;
        }
        Some(r.addr + offset)
    }

    /// Adds a registration (see [`Memory::register`]); `key` is the caller's, or chosen here.
    fn insert(
        &self,
        addr: u64,
        len: usize,
        access: MemAccess,
        key: Option<u64>,
    ) -> Result<MemoryHandle, WsaError> {
        if addr == 0 || addr.checked_add(len as u64).is_none() {
            return Err(WsaError::Fault);
        }
        if access.is_empty() {
            return Err(WsaError::Inval);
        }
        let mut regs = lock(&self.regs);
        regs.generation += 1;
        let generation = regs.generation;
        let key = match key {
            Some(k) if k == 0 || regs.by_key.contains_key(&k) => return Err(WsaError::Inval),
            Some(k) => k,
            None => {
                // Unguessable, non-zero and unused: the keyed hash of the generation.
                let mut salt = 0u64;
                loop {
                    let mut seed = [0u8; 16];
                    seed[..8].copy_from_slice(&generation.to_le_bytes());
                    seed[8..].copy_from_slice(&salt.to_le_bytes());
                    let k = self.keyed(TAG_KEY, &seed);
                    if k != 0 && !regs.by_key.contains_key(&k) {
                        break k;
                    }
                    salt += 1;
                }
            }
        };
        let len = len as u64;
        regs.by_key.insert(
            key,
            Reg {
                addr,
                len,
                access,
                generation,
            },
        );
        MemoryHandle::new(key).ok_or(WsaError::Inval)
    }
}

impl Regs {
    /// Whether `sge` is inside a live registration granting `need` (its handle's).
    fn holds(&self, sge: &Sge, need: MemAccess) -> bool {
        match (self.by_key.get(&sge.handle.raw()), sge.end()) {
            // `r.addr + r.len` cannot overflow: `insert` checked it.
            (Some(r), Some(end)) => {
                r.access.contains(need) && sge.addr >= r.addr && end <= r.addr + r.len
            }
            _ => false,
        }
    }

    /// All of `sges` hold (`Err(index)` of the first that does not); the total bytes.
    fn all(&self, sges: &[Sge], need: MemAccess) -> Result<usize, usize> {
        match sges.iter().position(|s| !self.holds(s, need)) {
            Some(index) => Err(index),
            None => Ok(total(sges)),
        }
    }
}

/// Bytes of `sges` together.
pub(crate) fn total(sges: &[Sge]) -> usize {
    sges.iter().map(|s| s.len as usize).sum()
}

/// `sges` as runs of raw memory.
fn runs(sges: &[Sge]) -> impl Iterator<Item = (u64, usize)> + '_ {
    sges.iter().map(|s| (s.addr, s.len as usize))
}

/// Runs `f` with the tables of `a` and `b` locked: once if they are one domain, otherwise
/// in ascending id, so two threads locking the same two domains cannot deadlock.
fn with_both<R>(a: &Domain, b: &Domain, f: impl FnOnce(&Regs, &Regs) -> R) -> R {
    if std::ptr::eq(a, b) {
        let g = lock(&a.regs);
        f(&g, &g)
    } else if a.id < b.id {
        let ga = lock(&a.regs);
        let gb = lock(&b.regs);
        f(&ga, &gb)
    } else {
        let gb = lock(&b.regs);
        let ga = lock(&a.regs);
        f(&ga, &gb)
    }
}

/// Copies from the runs of `src` into the runs of `dst`, in order, until either ends;
/// returns the bytes copied.
///
/// # Safety
///
/// For the whole call, every run of `dst` must be valid for writes and every run of `src`
/// valid for reads, and none of those bytes may be accessed by anyone else through a Rust
/// reference or concurrently written. Runs may overlap one another (each step is a
/// `memmove`).
unsafe fn copy_runs(
    dst: impl IntoIterator<Item = (u64, usize)>,
    src: impl IntoIterator<Item = (u64, usize)>,
) -> usize {
    let (mut dst, mut src) = (dst.into_iter(), src.into_iter());
    let ((mut d, mut dl), (mut s, mut sl), mut copied) = ((0u64, 0usize), (0u64, 0usize), 0);
    loop {
        if dl == 0 {
            match dst.next() {
                Some(run) => (d, dl) = run,
                None => return copied,
            }
            continue;
        }
        if sl == 0 {
            match src.next() {
                Some(run) => (s, sl) = run,
                None => return copied,
            }
            continue;
        }
        let n = dl.min(sl);
        // `s..s + n` lies within the current source run and `d..d + n` within the
        // current destination run (n is at most what remains of each), which the caller
        // guarantees valid for reads and writes and free of references and concurrent
        // writers for the whole call. `ptr::copy` allows the two to overlap. No reference
        // is formed: only raw pointers, made from the addresses the application gave.
        // SAFETY: within both runs, which the caller's contract makes valid (see above).
        unsafe { core::ptr::copy(s as *const u8, d as *mut u8, n) };
        (d, dl, s, sl, copied) = (d + n as u64, dl - n, s + n as u64, sl - n, copied + n);
    }
}

/// Which side of a message copy named memory that is not (or no longer) registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Bad {
    /// The sender's SGEs.
    Src,
    /// The receive's SGEs.
    Dst,
}

/// Copies a message from the sender's SGEs (in `src_dom`) into a receive's SGEs (in
/// `dst_dom`), up to the receive's size; returns the bytes copied.
pub(crate) fn copy_message(
    dst_dom: &Domain,
    dst: &[Sge],
    src_dom: &Domain,
    src: &[Sge],
) -> Result<usize, Bad> {
    with_both(dst_dom, src_dom, |dr, sr| {
        sr.all(src, MemAccess::READ).map_err(|_| Bad::Src)?;
        dr.all(dst, MemAccess::WRITE).map_err(|_| Bad::Dst)?;
        // Bounds — every SGE of both lists was just found inside a live
        // registration (`all`), with READ for the source and WRITE for the destination,
        // and `copy_runs` stays within the SGEs. Lifetime and concurrency — both domains'
        // locks are held until the copy returns, so neither registration can be
        // deregistered or invalidated meanwhile and, by (P1), the bytes stay mapped; every
        // other copy this transport makes into these domains takes the same locks, so none
        // runs concurrently. Aliasing — by (P2) the application neither writes the source
        // nor touches the destination while the operations are posted, and this crate
        // holds no reference to registered memory; overlap between the two is allowed.
        // SAFETY: bounds, lifetime and aliasing as argued just above ((P1), (P2)).
        Ok(unsafe { copy_runs(runs(dst), runs(src)) })
    })
}

/// An RDMA write (`write`) of local `sges` into the peer's region named by `d` at
/// `offset`, or a read of it into `sges`. `remote` is the **peer's** domain, where `d` is
/// resolved; `local` is the poster's. Nothing moves unless every check passes.
pub(crate) fn rdma(
    write: bool,
    remote: &Domain,
    d: &Descriptor,
    offset: u64,
    local: &Domain,
    sges: &[Sge],
) -> Result<usize, WsaError> {
    let (need_remote, need_local) = if write {
        (MemAccess::WRITE, MemAccess::READ)
    } else {
        (MemAccess::READ, MemAccess::WRITE)
    };
    with_both(remote, local, |rr, lr| {
        let len = lr.all(sges, need_local).map_err(|_| WsaError::Fault)?;
        let at = remote.region(rr, d, offset, len, need_remote);
        let region = std::iter::once((at.ok_or(WsaError::Fault)?, len));
        let copied = if write {
            // Bounds — `region` is `offset..offset + len` of a live registration
            // of the peer's domain that the descriptor names exactly and whose rights
            // allow WRITE (`region`), and the local SGEs are inside live registrations
            // with READ (`all`). Lifetime and concurrency — both domains' locks are held
            // across the copy, so neither registration ends before it returns and by (P1)
            // the bytes stay mapped; all of this transport's copies into these domains are
            // serialised by the same locks. Aliasing — (P2): the peer exported the region
            // with WRITE rights, so it does not use it in a way a write conflicts with,
            // and the local source is not written by its owner while the write is posted.
            // SAFETY: bounds, lifetime and aliasing as argued just above ((P1), (P2)).
            unsafe { copy_runs(region, runs(sges)) }
        } else {
            // SAFETY: as for the write above, with the roles exchanged: the peer's region
            // grants READ and is only read; the local SGEs are registered with WRITE and,
            // by (P2), not used by their owner while the read is posted.
            unsafe { copy_runs(runs(sges), region) }
        };
        Ok(copied)
    })
}

/// A receiver's staging buffer: bytes of messages that arrived before a receive was posted.
/// The memory is this crate's own (a boxed slice no registration can name), used FIFO.
pub(crate) struct Ring {
    buf: Box<[u8]>,
    head: usize,
    used: usize,
}

impl Ring {
    /// An empty ring of `capacity` bytes (not zero).
    pub(crate) fn new(capacity: usize) -> Ring {
        let buf = vec![0u8; capacity.max(1)].into_boxed_slice();
        Ring {
            buf,
            head: 0,
            used: 0,
        }
    }

    /// Bytes that still fit.
    pub(crate) fn free(&self) -> usize {
        self.buf.len() - self.used
    }

    /// The ring's bytes `head + from..head + from + len`, as at most two runs (it wraps).
    fn runs(&mut self, from: usize, len: usize) -> [(u64, usize); 2] {
        let cap = self.buf.len();
        let start = (self.head + from) % cap;
        let first = len.min(cap - start);
        let base = self.buf.as_mut_ptr() as u64;
        [(base + start as u64, first), (base, len - first)]
    }

    /// Appends the bytes of the sender's `src` (registered in `dom`): the whole message,
    /// which must fit ([`free`](Ring::free)).
    pub(crate) fn push(&mut self, dom: &Domain, src: &[Sge]) -> Result<usize, WsaError> {
        let regs = lock(&dom.regs);
        let len = regs
            .all(src, MemAccess::READ)
            .map_err(|_| WsaError::Fault)?;
        assert!(len <= self.free(), "staging overflow");
        let ring = self.runs(self.used, len);
        // Bounds — the ring runs are `len` free bytes of `self.buf` (len ≤ free, so
        // they end inside it), and the SGEs are inside live registrations with READ. The
        // ring is this crate's own heap memory, reached through `&mut self`, so no one
        // else accesses it. Lifetime and concurrency — `dom`'s lock is held across the
        // copy, so the registrations stay live and, by (P1), mapped; aliasing — by (P2)
        // the sender does not write its source while the send is posted.
        // SAFETY: bounds, lifetime and aliasing as argued just above ((P1), (P2)).
        let copied = unsafe { copy_runs(ring, runs(src)) };
        self.used += copied;
        Ok(copied)
    }

    /// Moves the oldest staged message, `len` bytes, into a receive's `dst` (registered
    /// in `dom`), as much as fits; the rest is dropped. On `Err` the message stays.
    pub(crate) fn pop_into(
        &mut self,
        len: usize,
        dom: &Domain,
        dst: &[Sge],
    ) -> Result<usize, WsaError> {
        let regs = lock(&dom.regs);
        regs.all(dst, MemAccess::WRITE)
            .map_err(|_| WsaError::Fault)?;
        let ring = self.runs(0, len.min(self.used));
        // Bounds — the ring runs are the oldest `len` staged bytes, inside
        // `self.buf`; the SGEs are inside live registrations with WRITE. The ring is ours
        // alone (`&mut self`). Lifetime and concurrency — `dom`'s lock is held, so the
        // registrations stay live and, by (P1), mapped; aliasing — by (P2) the receiver
        // does not touch its buffer while the receive is posted.
        // SAFETY: bounds, lifetime and aliasing as argued just above ((P1), (P2)).
        let copied = unsafe { copy_runs(runs(dst), ring) };
        self.discard(len);
        Ok(copied)
    }

    /// Drops the oldest `len` staged bytes.
    pub(crate) fn discard(&mut self, len: usize) {
        let len = len.min(self.used);
        self.head = (self.head + len) % self.buf.len();
        self.used -= len;
    }
}

impl Memory for InprocTransport {
    /// `WSPRegisterMemory` / `WSPRegisterRdmaMemory`. The contract: the caller promises
    /// (P1) and (P2) above, and the transport returns a handle that is never 0 and whose
    /// key is unguessable, so a stale or forged descriptor is refused. Here: a keyed hash
    /// of a per-domain generation counter, which the descriptor also carries.
    /// `WSAEFAULT` for a null or wrapping range, `WSAEINVAL` for no access at all.
    unsafe fn register(
        &self,
        addr: *mut u8,
        len: usize,
        access: MemAccess,
    ) -> Result<MemoryHandle, WsaError> {
        self.domain.insert(addr as u64, len, access, None)
    }

    /// As `register`, under the caller's `key` (`Capabilities::requested_keys` is true):
    /// the handle's value is `key`, `WSAEINVAL` for 0 or a key registered in this domain.
    /// A key reused after deregistration gets a new generation, so descriptors of the old
    /// registration stay stale.
    unsafe fn register_with_key(
        &self,
        addr: *mut u8,
        len: usize,
        access: MemAccess,
        key: u64,
    ) -> Result<MemoryHandle, WsaError> {
        self.domain.insert(addr as u64, len, access, Some(key))
    }

    /// `WSPDeregisterMemory`: later accesses through the handle are refused. Operations in
    /// flight must still complete; here none is ever in flight on memory (every copy ends
    /// inside its post, under the lock this call takes). `WSAEINVAL` for an unknown handle.
    fn deregister(&self, handle: MemoryHandle) -> Result<(), WsaError> {
        let removed = lock(&self.domain.regs).by_key.remove(&handle.raw());
        removed.map(|_| ()).ok_or(WsaError::Inval)
    }

    /// Writes the 56-byte descriptor of `handle` (see `descriptor.rs`) and returns its
    /// length: `WSAEINVAL` for an unknown handle, `WSAEFAULT` if `out` is too short.
    fn export(&self, handle: MemoryHandle, out: &mut [u8]) -> Result<usize, WsaError> {
        let regs = lock(&self.domain.regs);
        let r = regs.by_key.get(&handle.raw()).ok_or(WsaError::Inval)?;
        let out = out.get_mut(..LEN).ok_or(WsaError::Fault)?;
        let mut d = Descriptor {
            rights: r.access,
            key: handle.raw(),
            domain: self.domain.id,
            base: r.addr,
            len: r.len,
            generation: r.generation,
            check: 0,
        };
        d.check = self.domain.seal(&d);
        out.copy_from_slice(&d.encode());
        Ok(LEN)
    }

    /// `WSPMemoryRegistrationCacheCallback`: the application is about to free
    /// `addr..addr + len`, so **every** registration of this domain overlapping it is
    /// dropped (not only one starting there); returns how many. An empty range overlaps
    /// nothing.
    fn invalidate(&self, addr: u64, len: u64) -> usize {
        let end = addr.saturating_add(len);
        let mut regs = lock(&self.domain.regs);
        let before = regs.by_key.len();
        regs.by_key
            .retain(|_, r| !(len > 0 && r.addr < end && addr < r.addr + r.len));
        before - regs.by_key.len()
    }
}
