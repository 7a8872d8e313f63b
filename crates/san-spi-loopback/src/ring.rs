//! A single-producer single-consumer ring of records in shared memory, safe against a
//! hostile peer.
//!
//! ```text
//! offset   0  head      AtomicU64  consumer's position (bytes, ever increasing)
//! offset  64  tail      AtomicU64  producer's position (where a producer resumes; the
//!                                   consumer never reads it)
//! offset 128  sleeping  AtomicU32  consumer is (about to be) parked, waiting for a wake-up
//! offset 192  data[capacity]       records, each a multiple of 64 bytes, never wrapping
//! ```
//!
//! A record is a *seal* (`u64`), a 32-byte header (`kind u16, flags u16, len u32, token
//! u64, a u64, b u64`, little-endian) and `len` payload bytes, padded to 64. A record that
//! would cross the end of the data area is preceded by a `PAD` record filling the rest.
//!
//! The seal says a record is there: the producer writes header and payload, then stores
//! the seal of the record's position (a bijective scramble of it, see [`seal`]) with
//! release. The consumer polls the seal at its own position, not a shared tail: the record
//! and the news that it arrived travel in the same cache line (one transfer for a small
//! message instead of two in a row). What a previous lap left at that offset carries the
//! seal of another position, and zeroed memory none.
//!
//! The peer is untrusted: every value read from shared memory — head, tail, header — is
//! copied once into private memory and validated before use; a violation is
//! [`Corrupt`], never a panic, an out-of-bounds access or a hang. Payload bytes are
//! copied out with the bounds of the validated header copy, so a peer rewriting a record
//! while it is read can only garble bytes it owns. Positions that start off the record grid
//! are corruption on first use. Seals and the head are published with release and read
//! with acquire; the sleep flag pairs with the seal through SeqCst fences on both sides (see
//! `Producer::consumer_sleeping`). The producer re-reads the head only when its cached copy
//! shows no room.
//!
//! # Safety
//!
//! The ring holds an `Arc<Mapping>`, so the memory outlives every access. The offsets
//! used are checked against the mapping length when the ring is created.

use crate::sys::Mapping;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

/// Bytes before the data area.
pub const RING_HEADER: usize = 192;
/// The seal and the header: the least a record takes before its payload.
pub const RECORD_HEADER: usize = 8 + HEADER_BYTES;
/// Payloads up to this many bytes follow the header in the same cache line.
const INLINE_PAYLOAD: usize = RECORD_ALIGN - RECORD_HEADER;
/// The header proper.
const HEADER_BYTES: usize = crate::wire::header::BYTES;
/// Alignment and granularity of records: a cache line, so a record with up to 24 payload
/// bytes is one line.
pub const RECORD_ALIGN: usize = 64;

const HEAD: usize = 0;
const TAIL: usize = 64;
pub(crate) const SLEEPING: usize = 128;

/// `PAD`: skip to the start of the data area.
pub const KIND_PAD: u16 = 0xFFFF;

/// A record header, as copied out of (or into) the ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Header {
    /// Record kind.
    pub kind: u16,
    /// Kind-specific flags.
    pub flags: u16,
    /// Payload length.
    pub len: u32,
    /// Operation token.
    pub token: u64,
    /// Kind-specific.
    pub a: u64,
    /// Kind-specific.
    pub b: u64,
}

impl Header {
    fn to_bytes(self) -> [u8; HEADER_BYTES] {
        use crate::wire::{header as f, put};
        let mut b = [0u8; HEADER_BYTES];
        put(&mut b, f::KIND, self.kind.into());
        put(&mut b, f::FLAGS, self.flags.into());
        put(&mut b, f::LEN, self.len.into());
        put(&mut b, f::TOKEN, self.token);
        put(&mut b, f::A, self.a);
        put(&mut b, f::B, self.b);
        b
    }

    fn from_bytes(b: &[u8; HEADER_BYTES]) -> Header {
        use crate::wire::{get, header as f};
        Header {
            kind: get(b, f::KIND) as u16,
            flags: get(b, f::FLAGS) as u16,
            len: get(b, f::LEN) as u32,
            token: get(b, f::TOKEN),
            a: get(b, f::A),
            b: get(b, f::B),
        }
    }
}

/// The seal of the record at (ever increasing) position `pos`: a bijection, so no two
/// positions share one, and far from the small numbers and zeros old payload is full of.
pub fn seal(pos: u64) -> u64 {
    pos.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5A4E_5344_5345_414C
}

/// Where the payload of `len` bytes starts in its record: right after the header when it
/// fits the header's cache line (a small message is one line), on the next line otherwise
/// (bulk copies into and out of the ring stay line-aligned).
pub fn payload_offset(len: usize) -> usize {
    if len <= INLINE_PAYLOAD {
        RECORD_HEADER
    } else {
        RECORD_ALIGN
    }
}

/// Bytes a record with `len` payload bytes takes.
pub fn record_len(len: usize) -> usize {
    (payload_offset(len) + len).div_ceil(RECORD_ALIGN) * RECORD_ALIGN
}

/// The peer broke the ring protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Corrupt(pub &'static str);

/// What putting a record into the ring came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Push {
    /// The record is in the ring.
    Done,
    /// No room now: try again once the consumer has made some.
    Full,
    /// The peer broke the ring protocol (its head is impossible): the connection fails.
    Corrupt(Corrupt),
}

/// Bytes of shared memory a ring of `capacity` data bytes takes.
pub fn ring_bytes(capacity: usize) -> usize {
    RING_HEADER + capacity
}

#[derive(Clone)]
struct Ring {
    map: Arc<Mapping>,
    base: usize,
    capacity: usize,
}

impl Ring {
    /// `capacity` must be a power of two ≥ 1024 and the ring must fit the mapping.
    fn new(map: Arc<Mapping>, base: usize, capacity: usize) -> Option<Ring> {
        let fits = base
            .checked_add(ring_bytes(capacity))
            .is_some_and(|end| end <= map.len());
        if !capacity.is_power_of_two() || capacity < 1024 || !base.is_multiple_of(64) || !fits {
            return None;
        }
        Some(Ring {
            map,
            base,
            capacity,
        })
    }

    fn atomic_u64(&self, at: usize) -> &AtomicU64 {
        // SAFETY: `base + at` is inside the mapping (checked in `new`), 8-aligned (the mapping
        // is page-aligned, `base` 64-aligned, `at` a multiple of 64), and the mapping lives as
        // long as `self`. Atomics tolerate the peer writing the same word.
        unsafe { &*(self.map.ptr().add(self.base + at) as *const AtomicU64) }
    }

    fn sleeping(&self) -> &AtomicU32 {
        // SAFETY: as for `atomic_u64`; the word is 4-aligned.
        unsafe { &*(self.map.ptr().add(self.base + SLEEPING) as *const AtomicU32) }
    }

    /// The seal word of the record at data offset `pos` (a multiple of `RECORD_ALIGN`).
    fn seal_at(&self, pos: usize) -> &AtomicU64 {
        assert!(pos + 8 <= self.capacity && pos.is_multiple_of(8));
        // SAFETY: inside the data area (asserted), 8-aligned (the data area starts 64-aligned
        // and `pos` is a multiple of 8), and the mapping lives as long as `self`.
        unsafe { &*(self.data().add(pos) as *const AtomicU64) }
    }

    /// The data-area offset of ever-increasing position `at` (the capacity is a power of
    /// two: a mask, not a division).
    #[inline]
    fn offset(&self, at: u64) -> usize {
        (at & (self.capacity as u64 - 1)) as usize
    }

    /// Whether the record at ever-increasing position `at` is sealed (has arrived). A
    /// position off the record grid (a peer set it) never is.
    fn sealed(&self, at: u64) -> bool {
        let pos = self.offset(at);
        pos.is_multiple_of(RECORD_ALIGN) && self.seal_at(pos).load(Ordering::Acquire) == seal(at)
    }

    fn data(&self) -> *mut u8 {
        // SAFETY: inside the mapping (checked in `new`).
        unsafe { self.map.ptr().add(self.base + RING_HEADER) }
    }

    /// Copies `src` into the data area at `pos`; `pos + src.len() <= capacity`.
    fn write(&self, pos: usize, src: &[u8]) {
        assert!(pos + src.len() <= self.capacity);
        // SAFETY: bounds asserted above; the data area is ours to write between tail and
        // head + capacity (a peer writing there too only garbles its own input).
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), self.data().add(pos), src.len()) }
    }

    /// Copies from the data area at `pos` into `dst`; `pos + dst.len() <= capacity`.
    fn read(&self, pos: usize, dst: &mut [u8]) {
        assert!(pos + dst.len() <= self.capacity);
        // SAFETY: bounds asserted above; bytes are copied as plain data, never referenced.
        unsafe { std::ptr::copy_nonoverlapping(self.data().add(pos), dst.as_mut_ptr(), dst.len()) }
    }

    /// Clears the ring header (only before the peer sees the memory).
    fn reset(&self) {
        self.atomic_u64(HEAD).store(0, Ordering::Relaxed);
        self.atomic_u64(TAIL).store(0, Ordering::Relaxed);
        self.sleeping().store(0, Ordering::Relaxed);
    }
}

/// The writing end of a ring.
pub struct Producer {
    ring: Ring,
    tail: u64,
    /// The consumer's head as last read: while it shows room, the shared word (a cache line
    /// the consumer writes) is not read again.
    cached_head: u64,
    /// The peer prepared (or scribbled before we looked) a tail off the record grid.
    off_grid: bool,
}

/// The reading end of a ring.
pub struct Consumer {
    ring: Ring,
    head: u64,
    /// The head started off the record grid (see `Producer::off_grid`).
    off_grid: bool,
    /// Records consumed so far (handled, whatever the handler made of them).
    records: u64,
}

/// A lock-free look at the next record's seal, for a poller that wants to know whether taking
/// the consumer (and its lock) is worth it.
pub struct Watch {
    ring: Ring,
}

impl Watch {
    /// Whether a record is sealed at `head` (the consumer's position, as it last published
    /// it to the poller). Only a hint: the consumer checks everything again.
    pub fn sealed(&self, head: u64) -> bool {
        self.ring.sealed(head)
    }
}

/// Copies `n` bytes. Small copies — the payload of a small message — are done inline with
/// two overlapping unaligned word moves instead of a call into `memcpy`.
///
/// # Safety
///
/// As for [`std::ptr::copy_nonoverlapping`].
#[inline]
unsafe fn copy_bytes(src: *const u8, dst: *mut u8, n: usize) {
    // Each arm's accesses stay inside `src..src + n` and `dst..dst + n` (the two halves
    // overlap when `n` is not twice the word size); unaligned integer moves need no alignment.
    // SAFETY: the caller's promise covers both ranges, so every access below is valid.
    unsafe {
        if (8..=16).contains(&n) {
            let a = std::ptr::read_unaligned(src as *const u64);
            let b = std::ptr::read_unaligned(src.add(n - 8) as *const u64);
            std::ptr::write_unaligned(dst as *mut u64, a);
            std::ptr::write_unaligned(dst.add(n - 8) as *mut u64, b);
        } else if (4..8).contains(&n) {
            let a = std::ptr::read_unaligned(src as *const u32);
            let b = std::ptr::read_unaligned(src.add(n - 4) as *const u32);
            std::ptr::write_unaligned(dst as *mut u32, a);
            std::ptr::write_unaligned(dst.add(n - 4) as *mut u32, b);
        } else {
            std::ptr::copy_nonoverlapping(src, dst, n);
        }
    }
}

/// Initialises a ring in fresh shared memory (before handing it to the peer).
pub fn init(map: &Arc<Mapping>, base: usize, capacity: usize) -> Option<()> {
    Ring::new(map.clone(), base, capacity)?.reset();
    Some(())
}

impl Producer {
    /// The producer of the ring at `base`; `None` if the geometry is invalid.
    pub fn new(map: Arc<Mapping>, base: usize, capacity: usize) -> Option<Producer> {
        let ring = Ring::new(map, base, capacity)?;
        let tail = ring.atomic_u64(TAIL).load(Ordering::Acquire);
        // The peer may have created this memory and may write it at any time, even before
        // we look: a position off the record grid is remembered as corruption and reported
        // on first use, like any other, instead of refusing the connection here.
        Some(Producer {
            ring,
            tail,
            cached_head: tail,
            off_grid: !tail.is_multiple_of(RECORD_ALIGN as u64),
        })
    }

    /// Largest payload one record may carry.
    pub fn max_payload(&self) -> usize {
        self.ring.capacity / 4 - RECORD_ALIGN
    }

    /// Appends one record whose payload is the concatenation of `parts`, or reports
    /// [`Push::Full`]; [`Push::Corrupt`] if the peer's head is impossible.
    pub fn push(&mut self, header: Header, parts: &[&[u8]]) -> Push {
        let raw: smallvec::SmallVec<[(*const u8, usize); 8]> =
            parts.iter().map(|p| (p.as_ptr(), p.len())).collect();
        // SAFETY: every part is a live slice borrowed for the duration of the call.
        unsafe { self.push_raw(header, &raw) }
    }

    /// [`push`](Self::push) with the payload gathered from raw `(pointer, length)` parts.
    ///
    /// # Safety
    ///
    /// Each part must be readable for its length for the duration of the call.
    pub unsafe fn push_raw(&mut self, header: Header, parts: &[(*const u8, usize)]) -> Push {
        let len = parts.iter().map(|p| p.1).sum();
        // SAFETY: the caller's promise, passed on; `len` is the parts' total.
        unsafe { self.push_parts(header, len, parts.iter().copied()) }
    }

    /// [`push_raw`](Self::push_raw) with the parts as an iterator and their total `len`
    /// known: a message's SGEs go into the ring with no list built in between.
    ///
    /// # Safety
    ///
    /// Each part must be readable for its length for the duration of the call.
    ///
    /// # Panics
    ///
    /// If the parts do not add up to `len`, or `len` exceeds
    /// [`max_payload`](Self::max_payload) (caller bugs, not peer input).
    #[inline]
    pub unsafe fn push_parts(
        &mut self,
        mut header: Header,
        len: usize,
        parts: impl IntoIterator<Item = (*const u8, usize)>,
    ) -> Push {
        if self.off_grid {
            return Push::Corrupt(Corrupt("the ring's tail started off the record grid"));
        }
        assert!(
            len <= self.max_payload(),
            "payload larger than a record may carry"
        );
        header.len = len as u32;
        let cap = self.ring.capacity as u64;
        let total = record_len(len);
        let pos = self.ring.offset(self.tail);
        let contiguous = self.ring.capacity - pos;
        let pad = if total > contiguous { contiguous } else { 0 };
        let need = (pad + total) as u64;
        // The cached head only ever trails the real one, so room it shows is real room.
        if self.tail.wrapping_sub(self.cached_head) + need > cap {
            let head = self.ring.atomic_u64(HEAD).load(Ordering::Acquire);
            let used = self.tail.wrapping_sub(head);
            if used > cap || head.wrapping_sub(self.cached_head) > cap {
                return Push::Corrupt(Corrupt("head is ahead of tail or more than a ring behind"));
            }
            self.cached_head = head;
            if used + need > cap {
                return Push::Full;
            }
        }
        if pad > 0 {
            let h = Header {
                kind: KIND_PAD,
                len: (pad - RECORD_HEADER) as u32,
                ..Header::default()
            };
            self.ring.write(pos + 8, &h.to_bytes());
            self.ring
                .seal_at(pos)
                .store(seal(self.tail), Ordering::Release);
            self.tail += pad as u64;
        }
        let pos = self.ring.offset(self.tail);
        self.ring.write(pos + 8, &header.to_bytes());
        let start = pos + payload_offset(len);
        let end = start + len;
        assert!(end <= self.ring.capacity);
        let mut at = start;
        for (ptr, n) in parts {
            assert!(n <= end - at, "the parts add up to more than `len`");
            // SAFETY: the caller guarantees `ptr..ptr + n` is readable; the destination is
            // inside this record's payload (asserted), which lies in the data area and is
            // free (between tail and head + capacity).
            unsafe { copy_bytes(ptr, self.ring.data().add(at), n) };
            at += n;
        }
        assert_eq!(at, end, "the parts add up to less than `len`");
        // The seal last, with release: the consumer that sees it sees the record. A plain
        // store (not a locked one, which would wait for the earlier lines first); the order
        // the sleep handshake needs comes from the fence in `consumer_sleeping`, after this.
        self.ring
            .seal_at(pos)
            .store(seal(self.tail), Ordering::Release);
        self.tail += total as u64;
        // Where a producer attaching later resumes. Nobody polls this line, so it stays in
        // our cache: the store costs no transfer.
        self.ring
            .atomic_u64(TAIL)
            .store(self.tail, Ordering::Release);
        Push::Done
    }

    /// Whether the consumer announced it is parking (then the producer sends it a wake-up
    /// byte on the socket). Call after pushing. The SeqCst fence orders our seal store before the flag
    /// load, as `prepare_sleep`'s orders its flag store before its seal load (Dekker):
    /// either the consumer sees the new record or we see it parking, never neither.
    pub fn consumer_sleeping(&self) -> bool {
        sleep::must_wake(&RingWords {
            ring: &self.ring,
            at: self.tail,
        })
    }
}

impl Consumer {
    /// The consumer of the ring at `base`; `None` if the geometry is invalid.
    pub fn new(map: Arc<Mapping>, base: usize, capacity: usize) -> Option<Consumer> {
        let ring = Ring::new(map, base, capacity)?;
        let head = ring.atomic_u64(HEAD).load(Ordering::Acquire);
        Some(Consumer {
            ring,
            head,
            off_grid: !head.is_multiple_of(RECORD_ALIGN as u64),
            records: 0,
        })
    }

    /// A [`Watch`] on this ring's tail.
    pub fn watch(&self) -> Watch {
        Watch {
            ring: self.ring.clone(),
        }
    }

    /// Records consumed so far.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// The consumer's position (its private copy, not the shared word).
    pub fn position(&self) -> u64 {
        self.head
    }

    /// The next record's header, skipping padding; `None` if the ring is empty.
    ///
    /// Always inlined: returned through memory, the header is stored field by field and
    /// loaded back whole, a store-forwarding stall on every record (`#[inline]` alone left
    /// it out of line in `consume_locked`).
    #[inline(always)]
    pub fn peek(&mut self) -> Result<Option<Header>, Corrupt> {
        if self.off_grid {
            return Err(Corrupt("the ring's head started off the record grid"));
        }
        for _ in 0..2 {
            if !self.ring.sealed(self.head) {
                return Ok(None);
            }
            let pos = self.ring.offset(self.head);
            let contiguous = self.ring.capacity - pos;
            let mut raw = [0u8; HEADER_BYTES];
            self.ring.read(pos + 8, &mut raw);
            let h = Header::from_bytes(&raw);
            if h.kind == KIND_PAD {
                if pos == 0 {
                    return Err(Corrupt("padding at the start of the data area"));
                }
                self.advance(contiguous);
                continue;
            }
            let total = record_len(h.len as usize);
            if total > contiguous || total > self.ring.capacity / 2 {
                return Err(Corrupt("record length runs past the ring end"));
            }
            return Ok(Some(h));
        }
        Err(Corrupt("padding followed by padding"))
    }

    /// Copies payload bytes `from..from + dst.len()` of the record `header` (as returned by
    /// the last `peek`) into `dst`.
    ///
    /// # Panics
    ///
    /// If the range is outside the record's payload (a caller bug, not peer input).
    pub fn payload(&self, header: &Header, from: usize, dst: &mut [u8]) {
        assert!(from + dst.len() <= header.len as usize);
        let pos = self.ring.offset(self.head);
        self.ring
            .read(pos + payload_offset(header.len as usize) + from, dst);
    }

    /// Copies payload bytes `from..from + len` of the record `header` to `dst`.
    ///
    /// # Safety
    ///
    /// `dst..dst + len` must be writable and not aliased by a reference for the call.
    ///
    /// # Panics
    ///
    /// If the range is outside the record's payload (a caller bug, not peer input).
    pub unsafe fn payload_raw(&self, header: &Header, from: usize, dst: *mut u8, len: usize) {
        assert!(from + len <= header.len as usize);
        let pos = self.ring.offset(self.head) + payload_offset(header.len as usize) + from;
        assert!(pos + len <= self.ring.capacity);
        // SAFETY: source inside the data area (asserted); destination by the caller's promise.
        unsafe { copy_bytes(self.ring.data().add(pos), dst, len) }
    }

    /// Releases the record `header` (as returned by the last `peek`) to the producer.
    pub fn consume(&mut self, header: &Header) {
        self.records += 1;
        self.advance(record_len(header.len as usize));
    }

    fn advance(&mut self, n: usize) {
        self.head += n as u64;
        self.ring
            .atomic_u64(HEAD)
            .store(self.head, Ordering::Release);
    }

    /// Announces that the consumer is about to park; returns `false` (and withdraws the
    /// announcement) if a record arrived meanwhile.
    ///
    /// With `head_blocked`, the record at the head cannot be handled now (it waits for
    /// something local), so records already in the ring are no reason to stay awake.
    pub fn prepare_sleep(&self, head_blocked: bool) -> bool {
        sleep::prepare(
            &RingWords {
                ring: &self.ring,
                at: self.head,
            },
            head_blocked,
        )
    }

    /// Withdraws a sleep announcement.
    pub fn woke(&self) {
        // Called on every poll: store only when set, so a polling consumer does not keep
        // pulling the cache line the producer reads on every push.
        if self.ring.sleeping().load(Ordering::Relaxed) != 0 {
            self.ring.sleeping().store(0, Ordering::Relaxed);
        }
    }

    /// Raw access for fault-injection tests: the mapping and the ring's base offset.
    #[cfg(test)]
    pub fn raw_parts(&self) -> (Arc<Mapping>, usize, usize) {
        (self.ring.map.clone(), self.ring.base, self.ring.capacity)
    }
}

/// The sleep handshake between a ring's consumer and its producer (Dekker's, with SeqCst
/// fences), written once over [`sleep::Words`] so that the ring runs it on its shared
/// words and the loom model (`loom_tests`) on loom's atomics — the same steps either way.
pub(crate) mod sleep {
    /// The words the handshake reads and writes.
    pub(crate) trait Words {
        /// Stores the consumer's "parking" flag (relaxed).
        fn set_sleeping(&self, v: u32);
        /// Loads the flag (relaxed).
        fn sleeping(&self) -> u32;
        /// Whether the record the consumer waits for is sealed (acquire).
        fn sealed(&self) -> bool;
        /// A SeqCst fence.
        fn fence(&self);
    }

    /// The consumer: announces it parks, then looks for a record; `false` (announcement
    /// withdrawn) when one is there and can be handled.
    pub(crate) fn prepare(w: &impl Words, head_blocked: bool) -> bool {
        w.set_sleeping(1);
        w.fence();
        if w.sealed() && !head_blocked {
            w.set_sleeping(0);
            return false;
        }
        true
    }

    /// The producer, after sealing a record: whether the consumer announced it parks (and
    /// so must be woken). Either the consumer sees the record or this sees the flag.
    pub(crate) fn must_wake(w: &impl Words) -> bool {
        w.fence();
        w.sleeping() != 0
    }
}

/// [`sleep::Words`] of a ring, for the record at position `at`.
struct RingWords<'a> {
    ring: &'a Ring,
    at: u64,
}

impl sleep::Words for RingWords<'_> {
    fn set_sleeping(&self, v: u32) {
        self.ring.sleeping().store(v, Ordering::Relaxed);
    }
    fn sleeping(&self) -> u32 {
        self.ring.sleeping().load(Ordering::Relaxed)
    }
    fn sealed(&self) -> bool {
        self.ring.sealed(self.at)
    }
    fn fence(&self) {
        std::sync::atomic::fence(Ordering::SeqCst);
    }
}

/// The sleep handshake under loom: `RUSTFLAGS="--cfg loom" cargo test -p san-spi-loopback
/// --release --lib loom` (run by `cargo xtask ci`).
#[cfg(all(test, loom))]
mod loom_tests {
    use super::sleep;
    use loom::sync::atomic::{fence, AtomicU32, Ordering};
    use loom::sync::Arc;

    #[derive(Default)]
    struct Model {
        sleeping: AtomicU32,
        seal: AtomicU32,
    }

    impl sleep::Words for Model {
        fn set_sleeping(&self, v: u32) {
            self.sleeping.store(v, Ordering::Relaxed);
        }
        fn sleeping(&self) -> u32 {
            self.sleeping.load(Ordering::Relaxed)
        }
        fn sealed(&self) -> bool {
            self.seal.load(Ordering::Acquire) != 0
        }
        fn fence(&self) {
            fence(Ordering::SeqCst);
        }
    }

    /// No lost wake-up: if the consumer parks, the producer that sealed a record meanwhile
    /// sees the announcement and wakes it — in every interleaving loom explores.
    #[test]
    fn loom_a_parked_consumer_is_always_woken() {
        loom::model(|| {
            let m = Arc::new(Model::default());
            let p = m.clone();
            let producer = loom::thread::spawn(move || {
                p.seal.store(1, Ordering::Release);
                sleep::must_wake(&*p)
            });
            let parks = sleep::prepare(&*m, false);
            let woken = producer.join().unwrap();
            assert!(!parks || woken, "the consumer parked and nobody woke it");
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys;

    fn ring(cap: usize) -> (Producer, Consumer) {
        let fd = sys::memfd("ring-test", ring_bytes(cap)).unwrap();
        let map = Arc::new(sys::Mapping::new(&fd, ring_bytes(cap)).unwrap());
        init(&map, 0, cap).unwrap();
        (
            Producer::new(map.clone(), 0, cap).unwrap(),
            Consumer::new(map, 0, cap).unwrap(),
        )
    }

    #[test]
    fn records_round_trip_in_order_across_wraps() {
        let (mut p, mut c) = ring(1024);
        let mut next_expected = 0u64;
        for i in 0..500u64 {
            let payload = vec![i as u8; (i as usize * 7) % 190];
            loop {
                match p.push(
                    Header {
                        kind: 1,
                        token: i,
                        ..Header::default()
                    },
                    &[&payload],
                ) {
                    Push::Done => break,
                    Push::Full => {
                        let h = c.peek().unwrap().unwrap();
                        let mut got = vec![0u8; h.len as usize];
                        c.payload(&h, 0, &mut got);
                        assert_eq!(h.token, next_expected);
                        assert!(got.iter().all(|&b| b == h.token as u8));
                        c.consume(&h);
                        next_expected += 1;
                    }
                    Push::Corrupt(e) => panic!("an honest consumer corrupted the ring: {e:?}"),
                }
            }
        }
        while let Some(h) = c.peek().unwrap() {
            assert_eq!(h.token, next_expected);
            c.consume(&h);
            next_expected += 1;
        }
        assert_eq!(next_expected, 500);
    }

    /// Memory a peer prepared with positions off the record grid is corrupt on first use.
    #[test]
    fn misaligned_initial_positions_are_refused() {
        let fd = sys::memfd("ring-test", ring_bytes(1024)).unwrap();
        let map = Arc::new(sys::Mapping::new(&fd, ring_bytes(1024)).unwrap());
        init(&map, 0, 1024).unwrap();
        let r = Ring::new(map.clone(), 0, 1024).unwrap();
        r.atomic_u64(TAIL).store(1017, Ordering::Release);
        r.atomic_u64(HEAD).store(5, Ordering::Release);
        let mut p = Producer::new(map.clone(), 0, 1024).unwrap();
        assert!(matches!(p.push(Header::default(), &[]), Push::Corrupt(_)));
        let mut c = Consumer::new(map, 0, 1024).unwrap();
        assert!(c.peek().is_err());
    }

    #[test]
    fn scribbled_records_are_corrupt_or_unseen_not_panics() {
        let (mut p, mut c) = ring(1024);
        p.push(
            Header {
                kind: 1,
                ..Header::default()
            },
            &[b"abc"],
        );
        let (map, base, _) = c.raw_parts();
        let r = Ring::new(map.clone(), base, 1024).unwrap();
        // A sealed record with an impossible length is corruption.
        let len_at = 8 + 4;
        r.write(len_at, &u32::MAX.to_le_bytes());
        assert!(c.peek().is_err());
        r.write(len_at, &3u32.to_le_bytes());
        assert!(matches!(c.peek(), Ok(Some(h)) if h.len == 3));
        // A record whose seal belongs to another position has not arrived; neither has
        // one in zeroed memory.
        r.seal_at(0).store(seal(1024), Ordering::Release);
        assert_eq!(c.peek(), Ok(None));
        r.seal_at(0).store(0, Ordering::Release);
        assert_eq!(c.peek(), Ok(None));
        // The shared tail means nothing to the consumer.
        r.atomic_u64(TAIL).store(5000, Ordering::Release);
        assert_eq!(c.peek(), Ok(None));
        // Padding at the start of the data area (it would skip a whole lap) is corruption.
        let pad = Header {
            kind: KIND_PAD,
            ..Header::default()
        };
        r.write(8, &pad.to_bytes());
        r.seal_at(0).store(seal(0), Ordering::Release);
        assert!(c.peek().is_err());
        // An impossible head is found out as soon as the producer needs to read it: when
        // its cached view of the head shows no room.
        r.atomic_u64(HEAD).store(99_999, Ordering::Release);
        let mut pushed = 0;
        let outcome = loop {
            match p.push(Header::default(), &[&[0u8; 150]]) {
                Push::Done => pushed += 1,
                other => break other,
            }
            assert!(pushed < 100, "the corrupt head was never noticed");
        };
        assert!(matches!(outcome, Push::Corrupt(_)), "{outcome:?}");
    }
}
