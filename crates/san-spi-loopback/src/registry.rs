//! Memory registrations: one protection domain per transport.
//!
//! Each registration gets an unguessable 64-bit key: 48 random bits and a 16-bit
//! generation. The key is the local handle and, with the generation, goes into the
//! exported RDMA descriptor. Every access — local SGE or remote request — is checked
//! against key, generation, bounds and rights *before* a byte moves, under the
//! registry's read lock; deregistration takes the write lock, so it waits for a copy in
//! progress and every later access fails.
//!
//! The data path checks through a [`Cache`] instead: a few registrations remembered by an
//! endpoint under the lock it copies with, valid while the registry's epoch is unchanged.
//! Every removal bumps the epoch and then *quiesces* every endpoint (takes and releases its
//! copy locks), so a copy that was checked against the old epoch has finished before
//! `deregister` returns, and every later check sees the new epoch and misses. No atomic
//! read-modify-write on the data path, and no cache line the two sides of a connection
//! both write.
//!
//! Descriptor layout: `crate::wire::descriptor` (32 bytes, little-endian: `magic u32 |
//! access u32 | key u64 | addr u64 | len u64`). Only the key and the generation inside it
//! are trusted when a descriptor comes back; address and length are informational.

use crate::sys;
use crate::wire::{descriptor as field, get, put};
use san_spi_core::transport::{MemAccess, MemoryHandle, Sge};
use san_spi_core::WsaError;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Keys are 48 random bits and a generation: already uniformly spread, so the table hashes
/// them by identity instead of running SipHash on every lookup of the data path. Only this
/// process inserts keys — random ones, or keys its own application chose through
/// `register_with_key` — so a peer, which can only look keys up, cannot shape the table;
/// keys an application chooses are its own business (a poor choice slows only itself).
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | b as u64;
        }
    }
    fn write_u64(&mut self, v: u64) {
        // The generation sits in the low bits: mix the random part down for hashbrown,
        // which takes its bucket from the low bits and its tag from the high ones.
        self.0 = v ^ (v >> 16).rotate_left(32);
    }
}

type KeyMap<V> = HashMap<u64, V, BuildHasherDefault<KeyHasher>>;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Mutex, RwLock, RwLockReadGuard, Weak};

/// Bytes of an exported descriptor.
pub const DESCRIPTOR_LEN: usize = field::BYTES;
const MAGIC: u32 = 0x5A4E_5344; // "DSNZ"

#[derive(Debug, Clone, Copy)]
struct Region {
    addr: u64,
    len: u64,
    access: MemAccess,
}

impl Region {
    /// A region to register: non-empty, not at address 0, not wrapping, some access.
    fn new(addr: u64, len: u64, access: MemAccess) -> Result<Region, WsaError> {
        if len == 0 || addr == 0 || addr.checked_add(len).is_none() || access.is_empty() {
            return Err(WsaError::Inval);
        }
        Ok(Region { addr, len, access })
    }

    /// `len` bytes at process address `addr` lie inside with `need`: returns `addr`.
    #[inline]
    fn check(&self, addr: u64, len: u64, need: MemAccess) -> Option<u64> {
        let end = addr.checked_add(len)?;
        if addr < self.addr || end > self.addr + self.len || !self.access.contains(need) {
            return None;
        }
        Some(addr)
    }
}

/// Something that copies under locks of its own with checks from a [`Cache`]: a removal
/// waits, through [`quiesce`](Quiesce::quiesce), until copies checked before it are done.
pub trait Quiesce: Send + Sync {
    /// Takes and releases every lock under which this user checks through a cache and
    /// copies.
    fn quiesce(&self);
}

/// The registrations of one transport.
#[derive(Default)]
pub struct Registry {
    regions: RwLock<KeyMap<Region>>,
    generation: AtomicU16,
    /// Bumped by every removal, under the write lock.
    epoch: AtomicU64,
    /// The users with caches, quiesced after every removal.
    users: Mutex<Vec<Weak<dyn Quiesce>>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("epoch", &self.epoch.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// Slots of a [`Cache`]: an operation names a handful of registrations.
const CACHE_SLOTS: usize = 4;

/// Registrations a user checked recently, valid for one registry epoch. Kept under the lock
/// the user copies with (see the module documentation).
#[derive(Debug, Default)]
pub struct Cache {
    epoch: u64,
    slots: [(u64, Option<Region>); CACHE_SLOTS],
    next: usize,
}

/// The registrations, read-locked: checks made through it stay true while it lives,
/// because deregistration needs the write lock.
pub struct Guard<'a>(RwLockReadGuard<'a, KeyMap<Region>>);

impl Registry {
    /// An empty registry.
    pub fn new() -> Registry {
        Registry::default()
    }

    /// Registers `addr..addr + len` with `access`.
    pub fn register(
        &self,
        addr: u64,
        len: u64,
        access: MemAccess,
    ) -> Result<MemoryHandle, WsaError> {
        let region = Region::new(addr, len, access)?;
        let generation = self.generation.fetch_add(1, Ordering::Relaxed) as u64;
        let mut regions = self.regions.write().unwrap_or_else(|e| e.into_inner());
        loop {
            let key = (sys::random_u64() << 16) | generation;
            if key != 0 && !regions.contains_key(&key) {
                regions.insert(key, region);
                return Ok(MemoryHandle::new(key).expect("key is non-zero"));
            }
        }
    }

    /// Registers `addr..addr + len` under `key`, chosen by the caller; `WSAEINVAL` for a
    /// key of 0 or one in use.
    pub fn register_with_key(
        &self,
        addr: u64,
        len: u64,
        access: MemAccess,
        key: u64,
    ) -> Result<MemoryHandle, WsaError> {
        let region = Region::new(addr, len, access)?;
        let handle = MemoryHandle::new(key).ok_or(WsaError::Inval)?;
        let mut regions = self.regions.write().unwrap_or_else(|e| e.into_inner());
        if regions.contains_key(&key) {
            return Err(WsaError::Inval);
        }
        regions.insert(key, region);
        Ok(handle)
    }

    /// Removes a registration; returns once no copy checked against it is still running.
    pub fn deregister(&self, handle: MemoryHandle) -> Result<(), WsaError> {
        let removed = {
            let mut regions = self.regions.write().unwrap_or_else(|e| e.into_inner());
            let r = regions.remove(&handle.raw());
            if r.is_some() {
                self.epoch.fetch_add(1, Ordering::Release);
            }
            r
        };
        removed.ok_or(WsaError::Inval)?;
        self.quiesce_users();
        Ok(())
    }

    /// Registers a user whose caches [`quiesce`](Quiesce::quiesce) covers.
    pub fn add_user(&self, user: Weak<dyn Quiesce>) {
        let mut users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        users.retain(|u| u.strong_count() > 0);
        users.push(user);
    }

    /// Waits for every user's copies checked before the last epoch bump.
    fn quiesce_users(&self) {
        let live: Vec<_> = {
            let mut users = self.users.lock().unwrap_or_else(|e| e.into_inner());
            users.retain(|u| u.strong_count() > 0);
            users.iter().filter_map(Weak::upgrade).collect()
        };
        for u in live {
            u.quiesce();
        }
    }

    /// [`Guard::check_local`] through `cache`: no lock when the registration was checked
    /// before in this epoch. The caller holds the lock it registered for quiescence (see
    /// [`add_user`](Self::add_user)) from this check until its copy is done.
    #[inline]
    pub fn check_cached(
        &self,
        cache: &mut Cache,
        key: u64,
        addr: u64,
        len: u64,
        need: MemAccess,
    ) -> Option<u64> {
        // The hit stays small enough to inline into every data path; the miss (a new epoch,
        // the registry's read lock, a map lookup) is out of line.
        if cache.epoch == self.epoch.load(Ordering::Acquire) {
            if let Some((_, Some(region))) = cache.slots.iter().find(|s| s.0 == key) {
                return region.check(addr, len, need);
            }
        }
        self.cache_miss(cache, key)?.check(addr, len, need)
    }

    /// Whether `sge` lies in a live registration with `need`, through `cache` (see
    /// [`check_cached`](Self::check_cached)).
    #[inline]
    pub fn sge_cached(&self, cache: &mut Cache, sge: &Sge, need: MemAccess) -> bool {
        self.check_cached(cache, sge.handle.raw(), sge.addr, sge.len as u64, need)
            .is_some()
    }

    /// Looks `key` up under the read lock and caches it (starting the cache afresh in a new
    /// epoch).
    #[cold]
    #[inline(never)]
    fn cache_miss(&self, cache: &mut Cache, key: u64) -> Option<Region> {
        let epoch = self.epoch.load(Ordering::Acquire);
        if cache.epoch != epoch {
            *cache = Cache {
                epoch,
                ..Cache::default()
            };
        }
        let region = {
            let regions = self.regions.read().unwrap_or_else(|e| e.into_inner());
            *regions.get(&key)?
        };
        let slot = cache.next % CACHE_SLOTS;
        cache.slots[slot] = (key, Some(region));
        cache.next = cache.next.wrapping_add(1);
        Some(region)
    }

    /// The descriptor of `handle`.
    pub fn export(&self, handle: MemoryHandle, out: &mut [u8]) -> Result<usize, WsaError> {
        let regions = self.regions.read().unwrap_or_else(|e| e.into_inner());
        let r = regions.get(&handle.raw()).ok_or(WsaError::Inval)?;
        let out = out.get_mut(..DESCRIPTOR_LEN).ok_or(WsaError::Fault)?;
        put(out, field::MAGIC, MAGIC.into());
        put(out, field::ACCESS, r.access.bits().into());
        put(out, field::KEY, handle.raw());
        put(out, field::ADDR, r.addr);
        put(out, field::LEN, r.len);
        Ok(DESCRIPTOR_LEN)
    }

    /// Drops every registration overlapping `addr..addr + len`.
    pub fn invalidate(&self, addr: u64, len: u64) -> usize {
        let end = addr.saturating_add(len);
        let mut regions = self.regions.write().unwrap_or_else(|e| e.into_inner());
        let before = regions.len();
        regions.retain(|_, r| !(r.addr < end && addr < r.addr + r.len));
        let dropped = before - regions.len();
        if dropped > 0 {
            self.epoch.fetch_add(1, Ordering::Release);
        }
        drop(regions);
        if dropped > 0 {
            self.quiesce_users();
        }
        dropped
    }

    /// Read-locks the registrations for a batch of checks and copies.
    pub fn lock(&self) -> Guard<'_> {
        Guard(self.regions.read().unwrap_or_else(|e| e.into_inner()))
    }
}

impl<'a> Guard<'a> {
    /// Whether `sge` lies inside a live registration of ours with `need`: the one check
    /// every local SGE goes through, at post time and again before each copy.
    pub fn holds(&self, sge: &Sge, need: MemAccess) -> bool {
        self.check_local(sge.handle.raw(), sge.addr, sge.len as u64, need)
            .is_some()
    }

    /// [`holds`](Guard::holds) for every SGE of `sges`.
    pub fn holds_all(&self, sges: &[Sge], need: MemAccess) -> bool {
        sges.iter().all(|s| self.holds(s, need))
    }

    /// `len` bytes at process address `addr` inside registration `key` with `need`:
    /// returns `addr` back when valid.
    pub fn check_local(&self, key: u64, addr: u64, len: u64, need: MemAccess) -> Option<u64> {
        self.0.get(&key)?.check(addr, len, need)
    }

    /// A remote access of `len` bytes at `offset` into registration `key` with `need`:
    /// returns the process address of the first byte when valid.
    pub fn check_remote(&self, key: u64, offset: u64, len: u64, need: MemAccess) -> Option<u64> {
        let r = self.0.get(&key)?;
        let end = offset.checked_add(len)?;
        if end > r.len || !r.access.contains(need) {
            return None;
        }
        Some(r.addr + offset)
    }
}

/// The key a descriptor names, if it is well-formed (exactly [`DESCRIPTOR_LEN`] bytes with
/// the magic).
pub fn descriptor_key(descriptor: &[u8]) -> Option<u64> {
    if descriptor.len() != DESCRIPTOR_LEN {
        return None;
    }
    if get(descriptor, field::MAGIC) != u64::from(MAGIC) {
        return None;
    }
    Some(get(descriptor, field::KEY))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    /// A user that "copies" while holding `lock`.
    struct User {
        lock: Mutex<Cache>,
    }

    impl Quiesce for User {
        fn quiesce(&self) {
            drop(self.lock.lock().unwrap());
        }
    }

    fn user(reg: &Registry) -> Arc<User> {
        let u = Arc::new(User {
            lock: Mutex::new(Cache::default()),
        });
        let weak: Weak<dyn Quiesce> = Arc::downgrade(&u) as _;
        reg.add_user(weak);
        u
    }

    #[test]
    fn cached_checks_follow_deregistration_and_invalidation() {
        let reg = Registry::new();
        let u = user(&reg);
        let h = reg.register(0x1000, 0x100, MemAccess::READ).unwrap();
        let k = reg.register(0x4000, 0x100, MemAccess::READ_WRITE).unwrap();
        let check = |key: u64, addr, len, need| {
            let mut c = u.lock.lock().unwrap();
            reg.check_cached(&mut c, key, addr, len, need)
        };
        assert_eq!(check(h.raw(), 0x1010, 0x10, MemAccess::READ), Some(0x1010));
        // A cache hit still enforces bounds and rights.
        assert_eq!(check(h.raw(), 0x10f8, 0x10, MemAccess::READ), None);
        assert_eq!(check(h.raw(), 0x1010, 0x10, MemAccess::WRITE), None);
        assert_eq!(check(0xdead_0000_0001, 0x1010, 0x10, MemAccess::READ), None);
        reg.deregister(h).unwrap();
        assert_eq!(check(h.raw(), 0x1010, 0x10, MemAccess::READ), None);
        assert_eq!(
            check(k.raw(), 0x4000, 0x100, MemAccess::WRITE),
            Some(0x4000)
        );
        assert_eq!(reg.invalidate(0x40ff, 1), 1);
        assert_eq!(check(k.raw(), 0x4000, 0x100, MemAccess::WRITE), None);
    }

    #[test]
    fn deregistration_waits_for_a_copy_checked_before_it() {
        let reg = Arc::new(Registry::new());
        let u = user(&reg);
        let h = reg.register(0x1000, 0x100, MemAccess::READ).unwrap();
        let mut held = u.lock.lock().unwrap();
        assert!(reg
            .check_cached(&mut held, h.raw(), 0x1000, 8, MemAccess::READ)
            .is_some());
        let done = Arc::new(AtomicBool::new(false));
        let t = {
            let (reg, done) = (reg.clone(), done.clone());
            std::thread::spawn(move || {
                reg.deregister(h).unwrap();
                done.store(true, Ordering::Release);
            })
        };
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(100) {
            assert!(
                !done.load(Ordering::Acquire),
                "deregister returned while a copy checked against it was running"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        // A check made now already misses (the epoch moved); the copy checked before
        // ends, and the removal completes.
        assert_eq!(
            reg.check_cached(&mut held, h.raw(), 0x1000, 8, MemAccess::READ),
            None
        );
        drop(held);
        t.join().unwrap();
        assert!(done.load(Ordering::Acquire));
        let mut c = u.lock.lock().unwrap();
        assert_eq!(
            reg.check_cached(&mut c, h.raw(), 0x1000, 8, MemAccess::READ),
            None
        );
    }

    #[test]
    fn dropped_users_are_not_quiesced() {
        let reg = Registry::new();
        drop(user(&reg));
        let h = reg.register(0x1000, 0x100, MemAccess::READ).unwrap();
        reg.deregister(h).unwrap();
        assert!(reg.users.lock().unwrap().is_empty());
    }
}
