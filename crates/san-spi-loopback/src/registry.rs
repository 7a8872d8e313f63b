//! Memory registrations: one protection domain per transport.
//!
//! Each registration gets an unguessable 64-bit key: 48 random bits and a 16-bit
//! generation. The key is the local handle and, with the generation, goes into the
//! exported RDMA descriptor. Every access — local SGE or remote request — is checked
//! against key, generation, bounds and rights *before* a byte moves, under the
//! registry's read lock; deregistration takes the write lock, so it waits for a copy in
//! progress and every later access fails.
//!
//! Descriptor layout (32 bytes, little-endian): `magic u32 | access u32 | key u64 |
//! addr u64 | len u64`. Only the key and the generation inside it are trusted when a
//! descriptor comes back; address and length are informational.

use crate::sys;
use san_spi_core::transport::{MemAccess, MemoryHandle};
use san_spi_core::WsaError;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Keys are 48 random bits and a generation: already uniformly spread, so the table hashes
/// them by identity instead of running SipHash on every lookup of the data path. Lookups
/// with keys a peer chose cannot degrade it: only keys we generated are ever inserted.
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
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{RwLock, RwLockReadGuard};

/// Bytes of an exported descriptor.
pub const DESCRIPTOR_LEN: usize = 32;
const MAGIC: u32 = 0x5A4E_5344; // "DSNZ"

#[derive(Debug, Clone, Copy)]
struct Region {
    addr: u64,
    len: u64,
    access: MemAccess,
}

/// The registrations of one transport.
#[derive(Debug, Default)]
pub struct Registry {
    regions: RwLock<KeyMap<Region>>,
    generation: AtomicU16,
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
        if len == 0 || addr == 0 || addr.checked_add(len).is_none() || access.is_empty() {
            return Err(WsaError::Inval);
        }
        let generation = self.generation.fetch_add(1, Ordering::Relaxed) as u64;
        let mut regions = self.regions.write().unwrap_or_else(|e| e.into_inner());
        loop {
            let key = (sys::random_u64() << 16) | generation;
            if key != 0 && !regions.contains_key(&key) {
                regions.insert(key, Region { addr, len, access });
                return Ok(MemoryHandle::new(key).expect("key is non-zero"));
            }
        }
    }

    /// Removes a registration.
    pub fn deregister(&self, handle: MemoryHandle) -> Result<(), WsaError> {
        self.regions
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&handle.raw())
            .map(|_| ())
            .ok_or(WsaError::Inval)
    }

    /// The descriptor of `handle`.
    pub fn export(&self, handle: MemoryHandle, out: &mut [u8]) -> Result<usize, WsaError> {
        let regions = self.regions.read().unwrap_or_else(|e| e.into_inner());
        let r = regions.get(&handle.raw()).ok_or(WsaError::Inval)?;
        let out = out.get_mut(..DESCRIPTOR_LEN).ok_or(WsaError::Fault)?;
        out[0..4].copy_from_slice(&MAGIC.to_le_bytes());
        out[4..8].copy_from_slice(&r.access.bits().to_le_bytes());
        out[8..16].copy_from_slice(&handle.raw().to_le_bytes());
        out[16..24].copy_from_slice(&r.addr.to_le_bytes());
        out[24..32].copy_from_slice(&r.len.to_le_bytes());
        Ok(DESCRIPTOR_LEN)
    }

    /// Drops every registration overlapping `addr..addr + len`.
    pub fn invalidate(&self, addr: u64, len: u64) -> usize {
        let end = addr.saturating_add(len);
        let mut regions = self.regions.write().unwrap_or_else(|e| e.into_inner());
        let before = regions.len();
        regions.retain(|_, r| !(r.addr < end && addr < r.addr + r.len));
        before - regions.len()
    }

    /// Read-locks the registrations for a batch of checks and copies.
    pub fn lock(&self) -> Guard<'_> {
        Guard(self.regions.read().unwrap_or_else(|e| e.into_inner()))
    }
}

impl<'a> Guard<'a> {
    /// `len` bytes at process address `addr` inside registration `key` with `need`:
    /// returns `addr` back when valid.
    pub fn check_local(&self, key: u64, addr: u64, len: u64, need: MemAccess) -> Option<u64> {
        let r = self.0.get(&key)?;
        let end = addr.checked_add(len)?;
        if addr < r.addr || end > r.addr + r.len || !r.access.contains(need) {
            return None;
        }
        Some(addr)
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

/// The key a descriptor names, if it is well-formed.
pub fn descriptor_key(descriptor: &[u8]) -> Option<u64> {
    let d = descriptor.get(..DESCRIPTOR_LEN)?;
    let magic = u32::from_le_bytes([d[0], d[1], d[2], d[3]]);
    if magic != MAGIC {
        return None;
    }
    let mut k = [0u8; 8];
    k.copy_from_slice(&d[8..16]);
    Some(u64::from_le_bytes(k))
}
