//! The RDMA descriptor: what `WSPRegisterRdmaMemory` hands the application to send to its
//! peer, and what the peer passes back in `WSPRdmaWrite` / `WSPRdmaRead`.
//!
//! It is self-contained bytes, little-endian, [`LEN`] long:
//!
//! | bytes | field |
//! |---|---|
//! | 0..4 | version ([`VERSION`]) |
//! | 4..8 | rights the peer has (`MEM_READ` / `MEM_WRITE` bits) |
//! | 8..16 | key (the registration handle's value) |
//! | 16..24 | domain id of the exporting transport |
//! | 24..32 | base address of the region |
//! | 32..40 | length of the region |
//! | 40..48 | generation of the registration |
//! | 48..56 | check value: a keyed hash of bytes 0..48 under the domain's secret |
//!
//! The bytes come from the network (from an application that may be hostile), so the owner
//! of the region trusts none of them: it looks the key up in its own table, requires every
//! field to match the live registration, and recomputes the check value (`mem.rs`). A
//! stale descriptor fails on the generation (or the missing key), a forged one on the check
//! value, one from another domain on the domain id. Only a malformed one (wrong length,
//! version or rights bits) is refused at post time, as `PostError::BadDescriptor`.

use san_spi_core::transport::MemAccess;

/// Bytes of a descriptor (`Capabilities::descriptor_len`).
pub(crate) const LEN: usize = 56;
/// The layout version this transport writes and accepts.
pub(crate) const VERSION: u32 = 1;
/// Bytes covered by the check value.
pub(crate) const SIGNED: usize = 48;

/// A decoded descriptor: what it claims, not yet checked against any registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Descriptor {
    pub(crate) rights: MemAccess,
    pub(crate) key: u64,
    pub(crate) domain: u64,
    pub(crate) base: u64,
    pub(crate) len: u64,
    pub(crate) generation: u64,
    pub(crate) check: u64,
}

impl Descriptor {
    /// The wire bytes.
    pub(crate) fn encode(&self) -> [u8; LEN] {
        let mut out = [0u8; LEN];
        out[0..4].copy_from_slice(&VERSION.to_le_bytes());
        out[4..8].copy_from_slice(&self.rights.bits().to_le_bytes());
        let words = [
            self.key,
            self.domain,
            self.base,
            self.len,
            self.generation,
            self.check,
        ];
        for (i, w) in words.iter().enumerate() {
            out[8 + 8 * i..16 + 8 * i].copy_from_slice(&w.to_le_bytes());
        }
        out
    }

    /// Parses `bytes`; `None` if malformed (wrong length, version, or rights bits).
    pub(crate) fn decode(bytes: &[u8]) -> Option<Descriptor> {
        if bytes.len() != LEN {
            return None;
        }
        let u32_at =
            |i: usize| u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
        let u64_at = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[i..i + 8]);
            u64::from_le_bytes(b)
        };
        if u32_at(0) != VERSION {
            return None;
        }
        Some(Descriptor {
            rights: MemAccess::from_bits(u32_at(4))?,
            key: u64_at(8),
            domain: u64_at(16),
            base: u64_at(24),
            len: u64_at(32),
            generation: u64_at(40),
            check: u64_at(48),
        })
    }
}
